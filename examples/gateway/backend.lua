-- examples/gateway's backend: answers every message on /ws with "<BACKEND_NAME>:<message>"
-- (GET /health is the server's own, which the gateway's health checks use).
local edgews = require "edgews"
local name = os.getenv("BACKEND_NAME") or "backend"
local app = edgews.app { path = "/ws", max_message_size = 1048576 }
app:on("message", function(socket, msg, is_binary)
  socket:send(name .. ":" .. msg, is_binary)
end)
return app
