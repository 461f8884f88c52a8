-- idle_timeout = 1 s: a connection with no messages for a second is closed; one
-- that sends a message every 0.4 s stays.
local edgews = require "edgews"

local app = edgews.app {
  path = "/idle",
  idle_timeout = 1,
}

app:on("message", function(socket, data, is_binary)
  socket:send(data, is_binary)
end)
