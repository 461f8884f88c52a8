-- Echo app for the integration specs: echoes every message with its type.
-- Limits are chosen for the tests: 1 MiB messages pass, 2 MiB + 1 gets 1009
-- (tests/clients/raw_client.py --max-size defaults to 2 MiB to match).
local edgews = require "edgews"

-- A short handshake timeout for http_slow_head. The server applies it before the
-- request path (and so the app) is known, so it is set server-wide here; the
-- contract's per-app `handshake_timeout` field is checked by http_spec.
edgews.configure { handshake_timeout = 2 }

local app = edgews.app {
  path = "/echo",
  protocols = { "chat.v1", "chat.v2" },
  max_message_size = 2 * 1024 * 1024,
  max_frame_size = 2 * 1024 * 1024,
  idle_timeout = 0,
}

app:on("message", function(socket, data, is_binary)
  socket:send(data, is_binary)
end)
