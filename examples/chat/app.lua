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
--     {"type":"join","room":"lobby","history":50}    -> the last 50 messages first
--     {"type":"join","room":"lobby","since_offset":12,"epoch":"..."}  -> missed ones first
--     {"type":"say","room":"lobby","text":"hello","cid":"k3x"}
--                                                    -> {"type":"pub",...,"data":{user,text,cid}}
--     {"type":"typing","room":"lobby","typing":true} -> the room's others get {"type":"typing",...}
--     {"type":"status","status":"away"}              -> presence status (online, away, busy)
--     {"type":"who","room":"lobby"}                  -> the room's members (presence)
--     {"type":"leave","room":"lobby"}
--     {"type":"dm","to":"bob","text":"hi"}           -> stored; delivered now or on connect
--     {"type":"dms","limit":50}                      -> recent direct messages, both ways
--     {"type":"read","ids":[3]}                      -> mark direct messages read
--   Room members also receive {"type":"presence","channel":"room:lobby","joins":[...],
--   "leaves":[...],"updates":[...]} events, batched.
--   The page (public/, client/edgews.js) is served at http://127.0.0.1:8080/.
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

-- The page: public/ at /, and the browser client it imports at /client/.
edgews.static("/", "public")
edgews.static("/client/", "../../client")

local function send(socket, t) socket:send(cjson.encode(t)) end
local function topic(room) return "chat:" .. room end
local function members(room) return "room:" .. room end -- presence and its events

chat:use(function(socket, msg, ctx, next)
  local t0 = edgews.now()
  next()
  edgews.log.debug("%s from %s took %.1f ms", tostring(msg.type), ctx.user.id, (edgews.now() - t0) * 1000)
end)

-- A join without a position may ask for the room's last `history` messages: they
-- are replayed (from the stored history) before the socket goes live.
local function history_start(room, n)
  if not n or n <= 0 then return nil end
  local h = pubsub.history(topic(room), { since_offset = 0, limit = 0 })
  if not h or not h.last_offset or h.last_offset == 0 then return nil end
  return math.max(0, h.last_offset - n), h.epoch
end

chat:route("join", function(socket, body, ctx)
  local since, epoch = body.since_offset, body.epoch
  if since == nil then since, epoch = history_start(body.room, body.history) end
  local r, err = pubsub.subscribe(topic(body.room), socket, { since_offset = since, epoch = epoch })
  if not r then return send(socket, { type = "error", error = err }) end
  ctx.rooms = ctx.rooms or {}
  ctx.rooms[body.room] = true
  edgews.channel(members(body.room)):subscribe(socket)
  presence.join(members(body.room), socket)
  send(socket, { type = "joined", room = body.room, epoch = r.epoch, offset = r.offset,
                 replayed = r.replayed, gap = r.gap })
end, { validate = { room = room_rule, since_offset = offset_rule,
                    epoch = { type = "string", max_length = 16 },
                    history = { type = "integer", min = 0, max = 200 } } })

chat:route("leave", function(socket, body, ctx)
  if ctx.rooms then ctx.rooms[body.room] = nil end
  pubsub.unsubscribe(topic(body.room), socket)
  edgews.channel(members(body.room)):unsubscribe(socket)
  presence.leave(members(body.room), socket)
  send(socket, { type = "left", room = body.room })
end, { validate = { room = room_rule } })

chat:route("say", function(socket, body, ctx)
  -- cid: the sender's id for this message, so a page that resends after a
  -- reconnect can tell whether its first copy was stored (and show it once)
  local r, err = pubsub.publish(topic(body.room), { user = ctx.user.id, text = body.text, cid = body.cid })
  if not r then return send(socket, { type = "error", error = err, cid = body.cid }) end
end, { validate = { room = room_rule, text = { type = "string", required = true, max_length = 2000 },
                    cid = { type = "string", max_length = 64 } } })

-- Typing indicators: to the room's other members (not stored, not sent back to
-- the sender). A page sends typing=true again every few seconds while its user
-- types and false when they stop; receivers drop an indicator not refreshed for
-- 6 s (a page that went away without saying so).
chat:route("typing", function(socket, body, ctx)
  if not (ctx.rooms and ctx.rooms[body.room]) then
    return send(socket, { type = "error", error = "not_joined", room = body.room })
  end
  edgews.channel(members(body.room)):publish(cjson.encode {
    type = "typing", room = body.room, user = ctx.user.id, typing = body.typing }, { exclude = socket })
end, { validate = { room = room_rule, typing = { type = "boolean", required = true } },
       rate_limit = { messages = { rate = 2, burst = 5 } } })

-- The user's status (presence's global status, shown in every room's member list
-- and announced as presence "updates"): away or busy for 10 minutes at most; online
-- clears it (the default: online while connected, offline once gone).
chat:route("status", function(socket, body, ctx)
  if body.status == "online" then
    presence.set(ctx.user.id, nil)
  else
    presence.set(ctx.user.id, body.status, nil, { expire = 600 })
  end
end, { validate = { status = { type = "string", required = true, enum = { "online", "away", "busy" } } } })

chat:route("who", function(socket, body)
  local list = presence.list(members(body.room), { limit = 100 })
  local names, who = {}, {}
  for i, m in ipairs(list.members) do
    names[i] = m.user
    who[i] = { user = m.user, status = m.status }
  end
  send(socket, { type = "who", room = body.room, users = names, members = who,
                 count = presence.count(members(body.room)) })
end, { validate = { room = room_rule } })

chat:route("dm", function(socket, body, ctx)
  local r, err = notifications.store(body.to, { from = ctx.user.id, text = body.text, cid = body.cid })
  if not r then return send(socket, { type = "error", error = err, cid = body.cid }) end
  -- the sender's copy (for their other tabs and the conversation after a reload),
  -- read from the start; skipped when writing to oneself
  if body.to ~= ctx.user.id then
    local mine = notifications.store(ctx.user.id, { from = ctx.user.id, to = body.to, text = body.text,
                                                    cid = body.cid })
    if mine then notifications.mark_read(ctx.user.id, { mine.id }) end
  end
  send(socket, { type = "dm:sent", to = body.to, id = r.id, delivered = r.delivered, cid = body.cid })
end, { validate = { to = { type = "string", required = true, max_length = 32, pattern = "^[%w_%-]+$" },
                    text = { type = "string", required = true, max_length = 2000 },
                    cid = { type = "string", max_length = 64 } } })

-- Recent direct messages, newest first, with their state (the page's unread
-- counts and conversations after a reload).
chat:route("dms", function(socket, body, ctx)
  local l, err = notifications.list(ctx.user.id, { limit = body.limit or 50 })
  if not l then return send(socket, { type = "error", error = err }) end
  local items = {}
  for i, n in ipairs(l.items) do
    items[i] = { id = n.id, created_at = n.created_at, state = n.state, data = n.data }
  end
  socket:send(cjson.encode { type = "dms", total = l.total }:sub(1, -2) .. ',"items":'
    .. (#items > 0 and cjson.encode(items) or "[]") .. "}")
end, { validate = { limit = { type = "integer", min = 1, max = 200 } } })

chat:route("read", function(socket, body, ctx)
  local n, err = notifications.mark_read(ctx.user.id, body.ids)
  send(socket, n and { type = "read", changed = n } or { type = "error", error = err })
end, { validate = { ids = { type = "array", required = true, min_length = 1, max_length = 1000,
                                          items = { type = "integer", min = 1 } } } })

chat:on("open", function(socket)
  send(socket, { type = "welcome", user = socket.ctx.user.id })
end)
