-- The slow-consumer test app, shared by bp_close_app.lua and bp_drop_app.lua: on
-- "flood:N" the handler sends N binary messages of 64 KiB at once to a client that does
-- not read; max_buffered is 256 KiB, so the queue overflows. Each send's result is
-- counted in socket.ctx; "report" answers
-- "sent=<true results>,backpressure=<nil,'backpressure' results>,other=<other>".
return function(policy)
  local edgews = require "edgews"

  local app = edgews.app {
    path = "/bp",
    max_buffered = 256 * 1024,
    on_backpressure = policy,
  }

  local chunk = ("z"):rep(64 * 1024)

  app:on("message", function(socket, data)
    local n = tonumber(data:match("^flood:(%d+)$"))
    if n then
      local c = socket.ctx
      c.sent, c.bp, c.other = c.sent or 0, c.bp or 0, c.other or 0
      for _ = 1, n do
        local ok, err = socket:send(chunk, true)
        if ok == true then
          c.sent = c.sent + 1
        elseif ok == nil and err == "backpressure" then
          c.bp = c.bp + 1
        else
          c.other = c.other + 1
          c.other_err = tostring(err)
        end
      end
    elseif data == "report" then
      local c = socket.ctx
      socket:send(("sent=%d,backpressure=%d,other=%d,other_err=%s"):format(c.sent or 0,
        c.bp or 0, c.other or 0, tostring(c.other_err)))
    else
      socket:send(data)
    end
  end)
end
