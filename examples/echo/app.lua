-- The echo example: every message comes back as it was sent (text as text,
-- binary as binary). Run it with `scripts/run examples/echo/app.lua` and connect
-- to ws://127.0.0.1:8080/echo. Edit this file while it runs: the next message on
-- every open connection runs the new code.
local edgews = require "edgews"

local echo = edgews.app {
  path = "/echo",
  max_message_size = 16 * 1024 * 1024,
  idle_timeout = 300,
  heartbeat = { interval = 30, timeout = 10 },
}

echo:on("message", function(socket, data, is_binary)
  socket:send(data, is_binary)
end)
