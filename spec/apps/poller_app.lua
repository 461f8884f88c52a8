-- For spec/integration/poller_spec.lua: "hold S" keeps the worker's loop busy for S
-- seconds (so that many sockets become readable while it does: they are then taken
-- from the loop's poller in batches), "burst N" answers with N deterministic binary
-- messages of 1 MiB each after a 6 MiB one (more than the kernel takes while a slow
-- client is not reading: written in part, the rest waits for EPOLLOUT), anything else
-- comes back as it is.
local edgews = require "edgews"

edgews.configure { handler_timeout = 10 }

local app = edgews.app { path = "/poll", heartbeat = false, max_message_size = 8 * 1024 * 1024,
  max_buffered = 64 * 1024 * 1024 }

local function body(i, size)
  local unit = string.format("#%d:%d:", i, size) .. string.rep(string.char(97 + i % 26), 53) .. "\n"
  return string.rep(unit, math.floor(size / #unit) + 1):sub(1, size)
end

app:on("message", function(socket, data, is_binary)
  local hold = data:match("^hold (%d+%.?%d*)$")
  local burst = data:match("^burst (%d+)$")
  if hold then
    local t = os.clock() + tonumber(hold)
    while os.clock() < t do end
    socket:send("held")
  elseif burst then
    for i = 1, tonumber(burst) do
      assert(socket:send(body(i, i == 1 and 6 * 1048576 or 1048576), true))
    end
  else
    socket:send(data, is_binary)
  end
end)
