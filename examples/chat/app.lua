-- The chat example: rooms as pub/sub topics with history (a reconnecting client gets
-- what it missed), presence per room, direct messages as stored notifications (an
-- offline user gets them on the next connect), JSON messages routed by type and
-- validated, a logging middleware, per-connection rate limits, and a user name from
-- the query string (a custom authenticator: a real deployment would use
-- edgews.auth.jwt). History and notifications live in SQLite under data/ beside this
-- file (or --data DIR).
--
--   scripts/run examples/chat/app.lua
--   then connect to ws://127.0.0.1:8080/chat?name=ada and send:
--     {"type":"join","room":"lobby"}                 -> joined {epoch, offset}, then live
--     {"type":"join","room":"lobby","since_offset":12,"epoch":"..."}  -> missed ones first
--     {"type":"say","room":"lobby","text":"hello"}   -> {"type":"pub",...,"data":{user,text}}
--     {"type":"who","room":"lobby"}                  -> the room's members (presence)
--     {"type":"leave","room":"lobby"}
--     {"type":"dm","to":"bob","text":"hi"}           -> stored; delivered now or on connect
--     {"type":"read","ids":[3]}                      -> mark direct messages read
--   Room members also receive {"type":"presence","channel":"room:lobby","joins":[...],
--   "leaves":[...]} events, batched.
local edgews = require "edgews"
local cjson = require "cjson"

local pubsub, presence, notifications = edgews.pubsub, edgews.presence, edgews.notifications

edgews.configure {
  data_dir = "data",
  pubsub = { max_queue_size = 1000, message_ttl = 7 * 24 * 3600 },
  notifications = { max_per_user = 500, ttl = 30 * 24 * 3600 },
}

local chat = edgews.app {
  path = "/chat",
  auth = edgews.auth.custom(function(req)
    local name = req.params.name
    if not name or not name:match("^[%w_%-]+$") or #name > 32 then
      return nil, "give a name: /chat?name=ada (letters, digits, _ or -)", 401
    end
    return { id = name }
  end),
  notifications = true, -- direct messages waiting for this user are sent on connect
  max_connections_per_user = 5,
  rate_limit = { messages = { rate = 10, burst = 20 } },
  max_json_size = 8 * 1024,
}

local room_rule = { type = "string", required = true, max_length = 64, pattern = "^[%w_%-]+$" }
local offset_rule = { type = "integer", min = 0 }

local function send(socket, t) socket:send(cjson.encode(t)) end
local function topic(room) return "chat:" .. room end
local function members(room) return "room:" .. room end -- presence and its events

chat:use(function(socket, msg, ctx, next)
  local t0 = edgews.now()
  next()
  edgews.log.debug("%s from %s took %.1f ms", tostring(msg.type), ctx.user.id, (edgews.now() - t0) * 1000)
end)

chat:route("join", function(socket, body)
  local r, err = pubsub.subscribe(topic(body.room), socket,
    { since_offset = body.since_offset, epoch = body.epoch })
  if not r then return send(socket, { type = "error", error = err }) end
  edgews.channel(members(body.room)):subscribe(socket)
  presence.join(members(body.room), socket)
  send(socket, { type = "joined", room = body.room, epoch = r.epoch, offset = r.offset,
                 replayed = r.replayed, gap = r.gap })
end, { validate = { room = room_rule, since_offset = offset_rule,
                    epoch = { type = "string", max_length = 16 } } })

chat:route("leave", function(socket, body)
  pubsub.unsubscribe(topic(body.room), socket)
  edgews.channel(members(body.room)):unsubscribe(socket)
  presence.leave(members(body.room), socket)
  send(socket, { type = "left", room = body.room })
end, { validate = { room = room_rule } })

chat:route("say", function(socket, body, ctx)
  local r, err = pubsub.publish(topic(body.room), { user = ctx.user.id, text = body.text })
  if not r then return send(socket, { type = "error", error = err }) end
end, { validate = { room = room_rule, text = { type = "string", required = true, max_length = 2000 } } })

chat:route("who", function(socket, body)
  local list = presence.list(members(body.room), { limit = 100 })
  local names = {}
  for i, m in ipairs(list.members) do names[i] = m.user end
  send(socket, { type = "who", room = body.room, users = names,
                 count = presence.count(members(body.room)) })
end, { validate = { room = room_rule } })

chat:route("dm", function(socket, body, ctx)
  local r, err = notifications.store(body.to, { from = ctx.user.id, text = body.text })
  if not r then return send(socket, { type = "error", error = err }) end
  send(socket, { type = "dm:sent", to = body.to, id = r.id, delivered = r.delivered })
end, { validate = { to = { type = "string", required = true, max_length = 32 },
                    text = { type = "string", required = true, max_length = 2000 } } })

chat:route("read", function(socket, body, ctx)
  local n, err = notifications.mark_read(ctx.user.id, body.ids)
  send(socket, n and { type = "read", changed = n } or { type = "error", error = err })
end, { validate = { ids = { type = "array", required = true, min_length = 1, max_length = 1000,
                                          items = { type = "integer", min = 1 } } } })

chat:on("open", function(socket)
  send(socket, { type = "welcome", user = socket.ctx.user.id })
end)
