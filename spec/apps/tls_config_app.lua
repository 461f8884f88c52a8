-- TLS set by the script (tls_spec): the spec copies this file into a temporary
-- directory as app.lua, next to a certs/ directory made by scripts/gen-test-cert.
-- The paths are relative, so they resolve against the script's directory.
local edgews = require "edgews"

edgews.configure {
  tls = { cert = "certs/chain.crt", key = "certs/server.key" },
  plain_listen = "127.0.0.1:0",
  handshake_timeout = 2,
}

local app = edgews.app {
  path = "/echo",
  max_message_size = 2 * 1024 * 1024,
  idle_timeout = 0,
}

app:on("message", function(socket, data, is_binary)
  socket:send(data, is_binary)
end)
