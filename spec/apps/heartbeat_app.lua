-- Heartbeat every 0.5 s, 0.5 s to answer: a client that never answers pings is
-- closed within about a second; one that answers (every real client) stays.
local edgews = require "edgews"

local app = edgews.app {
  path = "/hb",
  heartbeat = { interval = 0.5, timeout = 0.5 },
}

app:on("message", function(socket, data, is_binary)
  socket:send(data, is_binary)
end)
