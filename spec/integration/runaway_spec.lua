-- Runaway scripts: a handler, route, timer or script body that loops forever (as
-- interpreted or as JIT-compiled code) or grows its heap without bound is stopped
-- (handler_timeout, max_lua_memory): its socket is closed with 1011, the log has the
-- looping code's file:line, and another connection on the same worker keeps being
-- served. (No RFC section: this is the Lua execution model; see README "Runaway
-- handlers".)
local helper = require "spec.helper"

local APP = helper.app "runaway_app.lua"

local function line_of(text, marker)
  local n = 0
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    if line:find(marker, 1, true) then return n end
  end
  error("marker " .. marker .. " not found")
end

local app_src = helper.read_file(APP)
local function app_line(marker) return line_of(app_src, marker) end

-- The log pattern of a stop at `marker` in the runaway app.
local function stop_pattern(marker, what)
  return "runaway_app%.lua:" .. app_line(marker) .. ": stopped: " .. what
end

describe("runaway handlers #integration #lua", function()
  local srv, c
  setup(function()
    srv = helper.start_server { app = APP, workers = 1 }
    c = helper.app_client()
  end)
  teardown(function() helper.cleanup() end)

  -- A bystander on the same (only) worker: open before, served after.
  local n = 0
  local function bystander()
    n = n + 1
    local id = "b" .. n
    assert.are.equal(101, c:call { op = "open", id = id, url = srv:url "/runaway" }.status)
    return id
  end
  local function echo(id, text)
    c:call { op = "send", id = id, data = text }
    local r = c:call { op = "recv", id = id, timeout = 10 }
    assert.are.same({ text }, r.messages)
  end

  -- Sends `msg` on a fresh connection to `path`, a message from the bystander right
  -- behind it, and checks: the runaway socket closed with 1011, the bystander's
  -- echo arrived, the log names the line.
  local function runs_away(path, msg, pattern)
    local by = bystander()
    n = n + 1
    local id = "r" .. n
    assert.are.equal(101, c:call { op = "open", id = id, url = srv:url(path) }.status)
    local before = #srv:log()
    c:call { op = "send", id = id, data = msg }
    c:call { op = "send", id = by, data = "while it ran" }
    local closed = c:call { op = "wait_close", id = id, timeout = 10 }
    assert.are.equal(1011, closed.code, "closed: " .. require("cjson").encode(closed))
    local r = c:call { op = "recv", id = by, timeout = 10 }
    assert.are.same({ "while it ran" }, r.messages)
    assert.truthy(srv:wait_log(pattern, 5, before + 1), "no '" .. pattern .. "' in:\n" .. srv:log())
    echo(by, "after")
    c:call { op = "close", id = by }
  end

  it("a loop the JIT compiled (while true do end) is stopped", function()
    runs_away("/runaway", "loop", stop_pattern("LOOP_LINE", "ran longer than handler_timeout %(0%.3 s%)"))
  end)

  it("a compiled arithmetic loop (for i = 1, 1e12 do x = x + i end) is stopped", function()
    runs_away("/runaway", "count", stop_pattern("COUNT_LINE", "ran longer than handler_timeout"))
  end)

  it("an interpreted loop (jit.off) is stopped", function()
    runs_away("/runaway", "interp", stop_pattern("INTERP_LINE", "ran longer than handler_timeout"))
  end)

  it("a pcall inside the loop does not swallow the stop", function()
    runs_away("/runaway", "pcall", stop_pattern("PCALL_LINE", "ran longer than handler_timeout"))
  end)

  it("an app's own handler_timeout applies to its handlers", function()
    runs_away("/fast", "loop", stop_pattern("LOOP_LINE", "ran longer than handler_timeout %(0%.1 s%)"))
  end)

  it("a route handler that loops closes its socket with 1011 (route errors otherwise keep it open)", function()
    runs_away("/routed", '{"type":"spin"}', stop_pattern("ROUTE_LINE", "ran longer than handler_timeout"))
  end)

  it("a heap that grows without bound is stopped at max_lua_memory and the memory comes back", function()
    local limit = "the Lua heap of this worker passed max_lua_memory %(64 MiB%)"
    for _ = 1, 2 do
      runs_away("/slow", "alloc", stop_pattern("ALLOC_LINE", limit))
      -- ~40 MB under a 64 MiB limit: only works when the stopped handler's heap was
      -- reclaimed (on /slow, so that a loaded machine cannot make it a time stop)
      n = n + 1
      local by = "big" .. n
      assert.are.equal(101, c:call { op = "open", id = by, url = srv:url "/slow" }.status)
      c:call { op = "send", id = by, data = "big" }
      local r = c:call { op = "recv", id = by, timeout = 10 }
      assert.are.same({ "big 400000" }, r.messages)
      c:call { op = "close", id = by }
    end
  end)

  it("a timer that loops is stopped; its socket and the others are served on", function()
    local by = bystander()
    local id = bystander()
    local before = #srv:log()
    c:call { op = "send", id = id, data = "timer" }
    assert.are.same({ "armed" }, c:call { op = "recv", id = id, timeout = 10 }.messages)
    assert.truthy(srv:wait_log(stop_pattern("TIMER_LINE", "ran longer than handler_timeout"), 5, before + 1),
      srv:log())
    assert.truthy(srv:log():find("timer handler error", before + 1, true), srv:log())
    echo(by, "after the timer")
    echo(id, "its socket too")
  end)

  it("an edgews.every whose run is stopped is cancelled", function()
    local id = bystander()
    local before = #srv:log()
    c:call { op = "send", id = id, data = "every" }
    local r = c:call { op = "recv", id = id, n = 2, timeout = 10 }
    assert.are.same({ "tick 1", "tick 2" }, r.messages)
    assert.truthy(srv:wait_log(stop_pattern("EVERY_LINE", "ran longer than handler_timeout"), 5, before + 1),
      srv:log())
    assert.truthy(srv:wait_log("the timer was cancelled", 5, before + 1), srv:log())
    -- every 0.05 s it would have run again by now: nothing more arrives
    local more = c:call { op = "recv", id = id, timeout = 0.6 }
    assert.are.same({}, more.messages)
    echo(id, "still served")
  end)

  it("the budget is per run: a handler that waits longer in total is not stopped", function()
    local id = bystander()
    c:call { op = "send", id = id, data = "sleepy" }
    assert.are.same({ "slept" }, c:call { op = "recv", id = id, timeout = 10 }.messages)
  end)
end)

describe("runaway bus tasks #integration #lua", function()
  teardown(function() helper.cleanup() end)

  it("a broadcast filter that loops is stopped on the sending worker and on the other", function()
    local srv = helper.start_server { app = APP, workers = 2 }
    local c = helper.app_client()
    -- a connection on each worker (the kernel spreads them; ask each where it is)
    local on = {}
    for i = 1, 40 do
      if on["0"] and on["1"] then break end
      local id = "w" .. i
      assert.are.equal(101, c:call { op = "open", id = id, url = srv:url "/runaway" }.status)
      c:call { op = "send", id = id, data = "wid" }
      local wid = c:call { op = "recv", id = id, timeout = 10 }.messages[1]
      if on[wid] then c:call { op = "close", id = id } else on[wid] = id end
    end
    assert.truthy(on["0"] and on["1"], "no connection landed on one of the workers")
    c:call { op = "send", id = on["0"], data = "bcast" }
    assert.are.equal(1011, c:call { op = "wait_close", id = on["0"], timeout = 10 }.code)
    local pattern = stop_pattern("BCAST_LINE", "ran longer than handler_timeout")
    assert.truthy(srv:wait_log("message handler error %(conn %d+%): [^\n]*" .. pattern, 5), srv:log())
    assert.truthy(srv:wait_log("bus handler error %(conn 0%): [^\n]*" .. pattern, 5), srv:log())
    -- worker 1 serves on, its socket too (a bus task has no connection to close)
    c:call { op = "send", id = on["1"], data = "still there" }
    assert.are.same({ "still there" }, c:call { op = "recv", id = on["1"], timeout = 10 }.messages)
  end)
end)

describe("runaway script bodies #integration #lua #reload", function()
  after_each(function() helper.cleanup() end)

  local function script(version, body)
    return ([[
local edgews = require "edgews"
edgews.configure { handler_timeout = 0.2 }
local app = edgews.app { path = "/v" }
app:on("message", function(socket, data) socket:send(%q .. ":" .. data) end)
%s
]]):format(version, body or "")
  end

  it("a reload whose body loops forever fails like a load error; the old version keeps serving", function()
    local dir = helper.tmpdir()
    local path = dir .. "/app.lua"
    helper.write_file(path, script("v1"))
    local srv = helper.start_server { app = path, workers = 1 }
    local c = helper.app_client()
    assert.are.equal(101, c:call { op = "open", id = "old", url = srv:url "/v" }.status)
    c:call { op = "send", id = "old", data = "a" }
    assert.are.same({ "v1:a" }, c:call { op = "recv", id = "old" }.messages)

    local looping = script("v2", "while true do end -- LOAD_LOOP\n")
    local before = #srv:log()
    helper.write_file(path, looping)
    local pattern = "app%.lua:" .. line_of(looping, "LOAD_LOOP") .. ": stopped: ran longer than handler_timeout"
    assert.truthy(srv:wait_log(pattern, 10, before + 1), "no stop in:\n" .. srv:log())
    c:call { op = "send", id = "old", data = "b" }
    assert.are.same({ "v1:b" }, c:call { op = "recv", id = "old", timeout = 10 }.messages)
    assert.are.equal(101, c:call { op = "open", id = "new", url = srv:url "/v" }.status)
    c:call { op = "send", id = "new", data = "c" }
    assert.are.same({ "v1:c" }, c:call { op = "recv", id = "new", timeout = 10 }.messages)

    -- and the worker still takes the next good version
    helper.write_file(path, script("v3"))
    assert.truthy(helper.wait_until(function()
      c:call { op = "send", id = "old", data = "d" }
      local r = c:call { op = "recv", id = "old", timeout = 2 }
      return r.messages[1] == "v3:d"
    end, 10), srv:log())
  end)

  it("a script whose body loops forever at start-up fails to start, with file:line", function()
    local dir = helper.tmpdir()
    local path = dir .. "/app.lua"
    local looping = script("v1", "while true do end -- START_LOOP\n")
    helper.write_file(path, looping)
    local p = helper.spawn({ helper.BIN, "--listen", "127.0.0.1:0", "--workers", "1", path },
      { kind = "server" })
    local done, how, code = p:wait(10)
    assert.is_true(done, "still running after 10 s")
    assert.are.equal("exited", how)
    assert.are.equal(1, code)
    local log = p:stderr()
    -- the budget edgews.configure set applies to the rest of the load
    assert.truthy(log:find("app.lua:" .. line_of(looping, "START_LOOP")
      .. ": stopped: ran longer than handler_timeout (0.2 s)", 1, true), log)
  end)
end)
