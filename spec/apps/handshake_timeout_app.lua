-- The contract lists handshake_timeout among edgews.app's fields: an app that sets
-- it must load, and a head that never completes is closed after 2 s (http_spec).
local edgews = require "edgews"

local app = edgews.app {
  path = "/echo",
  handshake_timeout = 2,
}

app:on("message", function(socket, data, is_binary)
  socket:send(data, is_binary)
end)
