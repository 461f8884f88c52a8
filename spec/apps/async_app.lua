-- Handlers that wait (edgews.sleep) and timers (edgews.timer / edgews.every), for
-- async_spec. Messages: "sleep:<ms>:<text>" replies <text> after sleeping;
-- "fail:<ms>" raises after sleeping (the line marked for the spec); "ticks:<n>" sends "tick <i>" n
-- times from edgews.every(0.05) and then cancels it; "later" replies "later" from
-- edgews.timer(0.1); anything else is echoed at once. Every handled message and
-- the close event are logged, so the spec can check their order.
local edgews = require "edgews"

local app = edgews.app { path = "/async" }

app:on("message", function(socket, data)
  edgews.log.info("handling %s on %d", data, socket.id)
  local ms, text = data:match("^sleep:(%d+):(.*)$")
  if ms then
    edgews.sleep(tonumber(ms) / 1000)
    socket:send(text)
    return
  end
  ms = data:match("^fail:(%d+)$")
  if ms then
    edgews.sleep(tonumber(ms) / 1000)
    error("failed after sleeping") -- FAIL_LINE
  end
  local n = data:match("^ticks:(%d+)$")
  if n then
    local i, t = 0, nil
    t = edgews.every(0.05, function()
      i = i + 1
      socket:send("tick " .. i)
      if i >= tonumber(n) then t:cancel() end
    end)
    return
  end
  if data == "later" then
    edgews.timer(0.1, function() socket:send("later") end)
    return
  end
  socket:send(data)
end)

app:on("close", function(socket, code)
  edgews.log.info("close event on %d (%d)", socket.id, code)
end)
