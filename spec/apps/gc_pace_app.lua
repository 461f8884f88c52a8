-- gc_pace_spec: reports the worker VM's collector pause and heap on every message.
-- "collect..." runs a full collection first (the spec pads it to 16 KiB, so that
-- the period the collection ends always holds large garbage), "small" makes
-- small-object garbage and then collects, "setpause" sets the script's own pause;
-- anything else is only answered (its string is the garbage).
local edgews = require "edgews"

local app = edgews.app { path = "/gc" }

app:on("message", function(socket, data)
  if data == "small" then
    for i = 1, 20000 do local t = { i, x = i } end
  end
  if data == "setpause" then collectgarbage("setpause", 300) end
  local collect = data:sub(1, 7) == "collect"
  if collect or data == "small" or data == "setpause" then collectgarbage() end
  -- read the pause without changing it (no allocation in between)
  local p = collectgarbage("setpause", 200)
  collectgarbage("setpause", p)
  socket:send(string.format('{"pause":%d,"bytes":%d}', p, collectgarbage("count") * 1024))
end)
