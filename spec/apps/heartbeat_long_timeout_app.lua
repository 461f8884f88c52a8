-- Heartbeat every 0.5 s with a long 5 s timeout: a client that answers each ping at
-- once must be pinged again after every quiet half second, not every 5 s.
local edgews = require "edgews"

local app = edgews.app {
  path = "/hb",
  heartbeat = { interval = 0.5, timeout = 5 },
}

app:on("message", function(socket, data, is_binary)
  socket:send(data, is_binary)
end)
