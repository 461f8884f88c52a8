-- The soak test's app (scripts/soak, client: edgews-bench churn). JWT auth before
-- the upgrade (?token=, HS256, secret SOAK_SECRET or "soak-secret"), one room per
-- connection: a pub/sub topic with stored history (run it with --data DIR), a
-- presence channel, and presence events to the room's members.
--   {"type":"join","room":"r7"}  -> {"type":"joined","room":"r7","epoch":..,"offset":N}
--                                   then every message of the room, live
--   {"type":"say","room":"r7","text":".."} -> {"type":"said","offset":N} once stored
--   {"type":"who","room":"r7"}   -> {"type":"who","count":N}
-- Members receive {"type":"pub",...} messages and batched {"type":"presence",...}
-- events. Closing the socket ends its subscription and its presence.
local edgews = require "edgews"
local cjson = require "cjson"

local pubsub, presence = edgews.pubsub, edgews.presence

edgews.configure {
  pubsub = { max_queue_size = 100 },   -- the history kept per room
}

local app = edgews.app {
  path = "/soak",
  auth = edgews.auth.jwt { secret = os.getenv("SOAK_SECRET") or "soak-secret" },
  max_json_size = 4096,
  max_connections_per_user = 2,
}

local room_rule = { type = "string", required = true, max_length = 32, pattern = "^[%w_%-]+$" }

local function send(socket, t) socket:send(cjson.encode(t)) end

app:route("join", function(socket, body)
  local r, err = pubsub.subscribe("soak:" .. body.room, socket)
  if not r then return send(socket, { type = "error", error = err }) end
  edgews.channel("room:" .. body.room):subscribe(socket)
  presence.join("room:" .. body.room, socket)
  send(socket, { type = "joined", room = body.room, epoch = r.epoch, offset = r.offset })
end, { validate = { room = room_rule } })

app:route("say", function(socket, body, ctx)
  local r, err = pubsub.publish("soak:" .. body.room, { user = ctx.user.id, text = body.text })
  if not r then return send(socket, { type = "error", error = err }) end
  send(socket, { type = "said", offset = r.offset })
end, { validate = { room = room_rule, text = { type = "string", required = true, max_length = 500 } } })

app:route("who", function(socket, body)
  send(socket, { type = "who", room = body.room, count = presence.count("room:" .. body.room) })
end, { validate = { room = room_rule } })
