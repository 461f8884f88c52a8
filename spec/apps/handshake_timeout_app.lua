-- handshake_timeout is server-wide (the request head is read before the path, and
-- so the app, is known): set with edgews.configure. A head that never completes is
-- closed after 2 s (http_spec).
local edgews = require "edgews"

edgews.configure { handshake_timeout = 2 }

local app = edgews.app {
  path = "/echo",
}

app:on("message", function(socket, data, is_binary)
  socket:send(data, is_binary)
end)
