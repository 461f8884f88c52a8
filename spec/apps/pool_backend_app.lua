-- A backend for the pool specs (spec/integration/pool_spec.lua) and the gateway
-- example: /ws answers every message with "<BACKEND_NAME>:<message>". Control
-- messages: "mode:fail" (from then on every message is answered by closing with
-- 1011: a backend that fails every request), "mode:ok", "hold:<s>" (answer after s
-- seconds). GET /health is the server's own.
local edgews = require "edgews"
local name = os.getenv("BACKEND_NAME") or "backend"
local mode = "ok"

local app = edgews.app { path = "/ws" }
app:on("message", function(socket, msg)
  local m = msg:match("^mode:(%a+)$")
  if m then
    mode = m
    return socket:send(name .. ":mode " .. m)
  end
  if mode == "fail" then return socket:close(1011, "backend failing") end
  local secs = msg:match("^hold:([%d%.]+)$")
  if secs then edgews.sleep(tonumber(secs)) end
  socket:send(name .. ":" .. msg)
end)
return app
