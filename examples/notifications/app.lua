-- The notifications example: each user's inbox (edgews.notifications, stored in
-- SQLite), delivered at once to every open tab of the user and otherwise on their
-- next connect; pending / delivered / read states, pages of the inbox, "mark all
-- read" and an unread count kept the same in every tab; priorities and expiry; an
-- admin sender (to one user or to everyone who has ever connected). Data lives in
-- data/ beside this file (or --data DIR).
--
--   scripts/run examples/notifications/app.lua
--   then open http://127.0.0.1:8080/ (the inbox) and http://127.0.0.1:8080/admin.html
--
-- The inbox: ws://127.0.0.1:8080/inbox?name=ada
--   {"type":"inbox","offset":0,"limit":10} -> {"type":"inbox","total":N,"unread":U,"offset":0,"limit":10,
--                                              "items":[{id,created_at,expires_at,state,data}]} (newest first)
--   {"type":"read","ids":[3,4]}            -> every tab of the user: {"type":"read","ids":[3,4],"unread":U}
--   {"type":"read_all"}                    -> every tab of the user: {"type":"read","all":true,"ids":[...],"unread":0}
--   pushed: {"type":"notification","id":5,"created_at":ms,"data":{title,body,priority,from}}
--   (data.priority is "low", "normal", "high" or "urgent")
-- The admin sender: ws://127.0.0.1:8080/admin (from the loopback address only; with
-- NOTIFY_ADMIN_KEY set, from anywhere with ?key=KEY)
--   {"type":"send","to":"ada","title":"hi","body":"...","priority":"high","ttl":3600}
--   {"type":"send","everyone":true,"title":"maintenance at 6"}   -> {"type":"sent","count":N,"delivered":D}
--   {"type":"users"}                                              -> {"type":"users","users":[...]}
-- ttl: seconds until the notification expires (expired ones are never shown again
-- and are swept from the store); absent or 0: it never expires.
local edgews = require "edgews"
local cjson = require "cjson"

local notifications, pubsub = edgews.notifications, edgews.pubsub

edgews.configure {
  data_dir = "data",
  notifications = { max_per_user = 1000, ttl = 0 },
  -- the user registry below: one message per user, kept forever
  pubsub = { max_queue_size = 100000, message_ttl = 0 },
}

-- The pages: public/ at /, and the browser client they import at /client/.
edgews.static("/", "public")
edgews.static("/client/", "../../client")

local NAME = "^[%w_%-]+$"
local PAGE_MAX = 50
local SCAN = 200 -- rows read at a time when counting or marking everything

local function send(socket, t) socket:send(cjson.encode(t)) end

-- Arrays that may be empty must stay arrays in JSON.
local function with_array(t, key, list)
  local head = cjson.encode(t)
  return head:sub(1, -2) .. (head == "{}" and "" or ",") .. ('"%s":'):format(key)
    .. (#list > 0 and cjson.encode(list) or "[]") .. "}"
end

local function to_user(user, text)
  for _, s in ipairs(edgews.user_sockets(user)) do s:send(text) end
end

-- "Everyone" is every user who has ever connected: each first connect appends the
-- name to a stored pub/sub topic; each worker reads what it has not read yet.
local USERS = "notify:users"
local known, known_upto = {}, 0

local function refresh_known()
  while true do
    local h = pubsub.history(USERS, { since_offset = known_upto, limit = 500 })
    if not h or #h.messages == 0 then return end
    for _, m in ipairs(h.messages) do
      known[m.data] = true
      known_upto = m.offset
    end
  end
end

local function register(user)
  refresh_known()
  if known[user] then return end
  known[user] = true
  pubsub.publish(USERS, user)
end

local function known_list()
  refresh_known()
  local list = {}
  for u in pairs(known) do list[#list + 1] = u end
  table.sort(list)
  return list
end

-- Unread = pending or delivered, read from the store (at most max_per_user rows).
local function unread_ids(user)
  local ids, offset = {}, 0
  while true do
    local l = notifications.list(user, { limit = SCAN, offset = offset })
    if not l then return nil end
    for _, n in ipairs(l.items) do
      if n.state ~= "read" then ids[#ids + 1] = n.id end
    end
    offset = offset + #l.items
    if #l.items < SCAN or offset >= l.total then return ids end
  end
end

-- ------------------------------------------------------------------ the inbox

local inbox = edgews.app {
  path = "/inbox",
  auth = edgews.auth.custom(function(req)
    local name = req.params.name
    if not name or not name:match(NAME) or #name > 32 then
      return nil, "give a name: /inbox?name=ada (letters, digits, _ or -)", 401
    end
    return { id = name }
  end),
  notifications = true, -- what is pending is sent when the socket gets its user
  max_connections_per_user = 10,
  rate_limit = { messages = { rate = 20, burst = 40 } },
  max_json_size = 16 * 1024,
}

inbox:on("open", function(socket)
  register(socket.ctx.user.id)
  send(socket, { type = "welcome", user = socket.ctx.user.id })
end)

inbox:route("inbox", function(socket, body, ctx)
  local limit, offset = body.limit or 10, body.offset or 0
  local l, err = notifications.list(ctx.user.id, { limit = limit, offset = offset })
  if not l then return send(socket, { type = "error", error = err }) end
  local ids = unread_ids(ctx.user.id) or {}
  local items = {}
  for i, n in ipairs(l.items) do
    items[i] = { id = n.id, created_at = n.created_at, expires_at = n.expires_at, state = n.state, data = n.data }
  end
  socket:send(with_array({ type = "inbox", total = l.total, unread = #ids, offset = offset, limit = limit },
    "items", items))
end, { validate = { limit = { type = "integer", min = 1, max = PAGE_MAX }, offset = { type = "integer", min = 0 } } })

inbox:route("read", function(socket, body, ctx)
  local n, err = notifications.mark_read(ctx.user.id, body.ids)
  if not n then return send(socket, { type = "error", error = err }) end
  local left = unread_ids(ctx.user.id) or {}
  to_user(ctx.user.id, with_array({ type = "read", unread = #left }, "ids", body.ids))
end, { validate = { ids = { type = "array", required = true, min_length = 1, max_length = 1000,
                            items = { type = "integer", min = 1 } } } })

inbox:route("read_all", function(socket, body, ctx)
  local ids = unread_ids(ctx.user.id) or {}
  for i = 1, #ids, 1000 do
    local chunk = { unpack(ids, i, math.min(#ids, i + 999)) }
    local n, err = notifications.mark_read(ctx.user.id, chunk)
    if not n then return send(socket, { type = "error", error = err }) end
  end
  to_user(ctx.user.id, with_array({ type = "read", all = true, unread = 0 }, "ids", ids))
end)

-- ------------------------------------------------------------------ the admin sender

local admin_key = os.getenv("NOTIFY_ADMIN_KEY")

local admin = edgews.app {
  path = "/admin",
  auth = edgews.auth.custom(function(req)
    if admin_key and admin_key ~= "" then
      if req.params.key == admin_key then return { id = "admin" } end
      return nil, "wrong or missing ?key=", 403
    end
    if req.remote_addr == "127.0.0.1" or req.remote_addr == "::1" then return { id = "admin" } end
    return nil, "the admin sender is for the loopback address (or set NOTIFY_ADMIN_KEY)", 403
  end),
  max_json_size = 16 * 1024,
}

admin:route("send", function(socket, body)
  local to
  if body.everyone then
    to = known_list()
  elseif body.to then
    to = { body.to }
  else
    return send(socket, { type = "error", error = "validation_failed", message = "give `to` or `everyone`", id = body.id })
  end
  local ttl = body.ttl and body.ttl > 0 and body.ttl or -1
  -- expires_at in the data too: the live frame carries only id, created_at and data
  local data = { title = body.title, body = body.body, priority = body.priority or "normal", from = "admin",
                 expires_at = ttl > 0 and (os.time() + ttl) * 1000 or nil }
  local count, delivered = 0, 0
  for _, user in ipairs(to) do
    local r, err = notifications.store(user, data, { ttl = ttl })
    if not r then return send(socket, { type = "error", error = err, count = count, id = body.id }) end
    count = count + 1
    if r.delivered then delivered = delivered + 1 end
  end
  send(socket, { type = "sent", count = count, delivered = delivered })
end, { validate = {
  to = { type = "string", max_length = 32, pattern = NAME },
  everyone = { type = "boolean" },
  title = { type = "string", required = true, min_length = 1, max_length = 200 },
  body = { type = "string", max_length = 2000 },
  priority = { type = "string", enum = { "low", "normal", "high", "urgent" } },
  ttl = { type = "integer", min = 0, max = 365 * 24 * 3600 },
} })

admin:route("users", function(socket)
  socket:send(with_array({ type = "users" }, "users", known_list()))
end)
