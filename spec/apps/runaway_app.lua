-- Runaway handlers for runaway_spec: each message names a way to run away (the lines
-- the spec looks for in the log are marked). Anything else is echoed.
--   loop     while true do end (the JIT compiles it)
--   count    for i = 1, 1e12 do x = x + i end (compiled, arithmetic)
--   interp   a loop in a function the JIT may not compile (jit.off)
--   pcall    a loop inside pcall, inside a loop: pcall must not swallow the stop
--   alloc    a table that grows forever (max_lua_memory)
--   big      builds ~40 MB and lets it go (under the limit: must work)
--   timer    a timer whose function loops; the socket gets "armed"
--   every    edgews.every: sends "tick N"; the second run loops, so the timer stops
--   sleepy   waits 5 x 0.1 s (longer than the budget in total, never in one run)
--   bcast    app:broadcast with a filter that loops: it runs here and, as a message of
--            the bus, on every other worker (for each socket of the app there)
--   wid      answers the worker's id
-- /fast and /slow are the same app with budgets of their own (0.1 s, 30 s). /routed routes JSON:
-- {"type":"spin"} loops, {"type":"echo","text":...} answers "routed <text>".
local edgews = require "edgews"

edgews.configure { handler_timeout = 0.3, max_lua_memory = 64 * 1048576 }

local app = edgews.app { path = "/runaway" }
local fast = edgews.app { path = "/fast", handler_timeout = 0.1 }
-- Memory runaways are stopped by the memory limit, not by time.
local slow = edgews.app { path = "/slow", handler_timeout = 30 }

local function interp_loop()
  local n = 0
  while true do n = n + 1 end -- INTERP_LINE
end
jit.off(interp_loop)

local function spin()
  while true do end
end

local function handle(socket, data)
  if data == "loop" then
    while true do end -- LOOP_LINE
  elseif data == "count" then
    local x = 0
    for i = 1, 1e12 do x = x + i end -- COUNT_LINE
    socket:send(tostring(x))
  elseif data == "interp" then
    interp_loop()
  elseif data == "pcall" then
    while true do pcall(spin) end -- PCALL_LINE (the stop escapes here)
  elseif data == "alloc" then
    local t, i = {}, 0
    while true do i = i + 1; t[i] = ("x"):rep(1000) .. i end -- ALLOC_LINE
  elseif data == "big" then
    local t = {}
    for i = 1, 400000 do t[i] = { i, i } end
    socket:send("big " .. #t)
  elseif data == "timer" then
    edgews.timer(0, function()
      while true do end -- TIMER_LINE
    end)
    socket:send("armed")
  elseif data == "every" then
    local n = 0
    edgews.every(0.05, function()
      n = n + 1
      socket:send("tick " .. n)
      if n == 2 then
        while true do end -- EVERY_LINE
      end
    end)
  elseif data == "bcast" then
    app:broadcast("never", false, function()
      while true do end -- BCAST_LINE
    end)
  elseif data == "wid" then
    socket:send(tostring(edgews.worker_id()))
  elseif data == "sleepy" then
    for _ = 1, 5 do edgews.sleep(0.1) end
    socket:send("slept")
  else
    socket:send(data)
  end
end

app:on("message", handle)
fast:on("message", handle)
slow:on("message", handle)

local routed = edgews.app { path = "/routed" }
routed:route("spin", function()
  while true do end -- ROUTE_LINE
end)
routed:route("echo", function(socket, body)
  socket:send("routed " .. tostring(body.text))
end)
