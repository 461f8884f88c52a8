-- Presence (edgews.presence) for presence_spec, driven by tests/clients/presence_client.py
-- (and cluster_spec). The ops of presence_common.lua on /p, and:
--   {"op":"worker"}                            -> {worker}
--   {"op":"bad"}                               -> {error = the message of a misuse error}
-- /pa?user=U is the same with authentication: the user is U.
-- A short heartbeat (pinged after 0.3 s of silence, gone after 1 s) for the spec.
local edgews = require "edgews"

local _, handlers, on_message = require("presence_common") {
  path = "/p", heartbeat_interval = 0.3, heartbeat_timeout = 1 }

function handlers.worker()
  return { worker = edgews.worker_id() }
end

function handlers.bad(socket)
  local ok, err = pcall(edgews.presence.join, "", socket)
  return { error = not ok and tostring(err) or "no error" }
end

-- /pa?user=U: an authenticated app (the user is U, whatever a join says)
local authed = edgews.app { path = "/pa", heartbeat = false,
  auth = edgews.auth.custom(function(req) return { id = req.params.user } end) }
authed:on("message", on_message)
