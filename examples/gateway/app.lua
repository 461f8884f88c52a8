-- examples/gateway: an edge gateway. Clients connect to /gateway; every message is
-- forwarded through an edgews.pool to one of the backends (ip-hash on the client's
-- address, so a client keeps its backend while that backend is up) and the backend's
-- reply is sent back to that client. A backend that dies, stops answering or fails
-- requests is taken out by the health checks and the circuit breaker; a request that
-- was in flight on it is answered with an error and the next one goes to another
-- backend. Clients stay connected throughout.
--
--   GATEWAY_BACKENDS="ws://127.0.0.1:9001/ws,ws://127.0.0.1:9002/ws" \
--     edgews-lua --listen 0.0.0.0:8080 examples/gateway/app.lua
--   (backends: BACKEND_NAME=a edgews-lua --listen 127.0.0.1:9001 examples/gateway/backend.lua)
--
-- Protocol: every text or binary message is a request; the answer is the backend's
-- reply as is, or, when no backend could answer, a text message
--   {"type":"error","error":"<reason>"}
-- with reason "backend failed" (the request was sent and the backend failed before
-- replying: it may or may not have processed it), "timeout" (no reply within
-- GATEWAY_TIMEOUT seconds), "no healthy backend", "circuit open" (no backend can take
-- it now). GATEWAY_STICKY=connection hashes "ip:port" (each client connection its own
-- key) instead of the IP.
local edgews = require "edgews"

local urls = {}
for u in (os.getenv("GATEWAY_BACKENDS") or "ws://127.0.0.1:9001/ws,ws://127.0.0.1:9002/ws"):gmatch("[^,%s]+") do
  urls[#urls + 1] = { id = u:match("//([^/]+)") or u, url = u }
end
local timeout = tonumber(os.getenv("GATEWAY_TIMEOUT") or "") or 5
local per_connection = os.getenv("GATEWAY_STICKY") == "connection"

local pool = edgews.pool {
  name = "gateway",
  backends = urls,
  min_connections = 1,
  max_connections = 64,
  acquire_timeout = 2,
  load_balancing = "ip-hash",
  validate_on_checkout = false,
  health_check = { interval = 0.5, timeout = 1, unhealthy_threshold = 2, healthy_threshold = 2 },
  circuit_breaker = { failure_threshold = 3, recovery_timeout = 2 },
  reconnect = { initial = 0.05, max = 2 },
  connect = { timeout = 2 },
}

local function err_reply(reason)
  return '{"type":"error","error":"' .. reason .. '"}'
end

local app = edgews.app { path = "/gateway", max_message_size = 1048576 }

app:on("message", function(socket, msg, is_binary)
  local ip, port = socket:remote_addr()
  local key = per_connection and (ip .. ":" .. tostring(port)) or ip
  local ok, reply, bin = pcall(pool.with, pool, function(conn)
    if not conn:send(msg, is_binary) then error("backend failed", 0) end
    local r, b = conn:receive(timeout)
    if r == nil then error(b == "timeout" and "timeout" or "backend failed", 0) end
    return r, b
  end, { key = key })
  if not ok then return socket:send(err_reply(tostring(reply))) end
  if reply == nil then return socket:send(err_reply(tostring(bin))) end -- acquire failed
  socket:send(reply, bin)
end)

return app
