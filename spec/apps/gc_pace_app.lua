-- gc_pace_spec: reports the worker VM's collector pause and heap on every message.
-- "collect" runs a full collection first, "setpause" sets the script's own pause.
local edgews = require "edgews"

local app = edgews.app { path = "/gc" }

app:on("message", function(socket, data)
  if data == "setpause" then collectgarbage("setpause", 300) end
  if data == "collect" or data == "setpause" then collectgarbage() end
  -- read the pause without changing it (no allocation in between)
  local p = collectgarbage("setpause", 200)
  collectgarbage("setpause", p)
  socket:send(string.format('{"pause":%d,"bytes":%d}', p, collectgarbage("count") * 1024))
end)
