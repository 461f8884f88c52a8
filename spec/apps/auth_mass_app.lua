-- One JWT app for applayer_auth_mass_spec (secret "spec-secret"), run with one worker:
--   /mass   JWT before the upgrade (?token=); route stats -> {"type":"stats",
--           "timers":<this worker's pending Lua timers>,"connections":<open here>,
--           "auth_expired":<connections closed 4403, all workers>}
local edgews = require "edgews"
local cjson = require "cjson"

local app = edgews.app {
  path = "/mass",
  heartbeat = false,
  auth = edgews.auth.jwt { secret = "spec-secret" },
}

app:route("stats", function(socket)
  local mine, all = edgews.stats(), edgews.stats(true)
  socket:send(cjson.encode { type = "stats", timers = mine.timers, connections = mine.connections,
    auth_expired = all.auth_expired })
end)
