-- Pub/sub and notifications for realtime_spec (run with --workers 2, with or
-- without --data). JSON routes on /rt; the user is ?user=NAME (custom auth at the
-- upgrade), so notifications reach a user's sockets on any worker.
--   subscribe   {topic, since_offset?, epoch?, raw?} -> subscribed {...}
--   unsubscribe {topic}                              -> unsubscribed
--   publish     {topic, data, nowait?}               -> published {epoch, offset}
--   history     {topic, since_offset?, limit?}       -> history {...}
--   fill        {topic, n, size}                     -> filled {offset}: n messages
--                                                      of about size bytes, in one turn
--   probe       {}                                   -> probe {subscribing, worker}:
--                                                      handlers of this worker waiting
--                                                      in pubsub.subscribe
--   notify      {user, data, ttl?}                   -> stored {id, delivered}
--   pending / list {limit?, offset?}                 -> the caller's notifications
--   read        {ids}                                -> marked {changed}
-- The "audit" topic has a load-time Lua subscriber that republishes every message
-- to "audit.log" as {seen = offset, worker = id}: once per message in the process.
-- Limits come from the environment: RT_MAXQ, RT_TTL, RT_NMAX, RT_NTTL.
-- /rtdrop is a second app with on_backpressure = "drop" and max_buffered = 64 KiB
-- and the routes subscribe, unsubscribe, whoami and probe.
local edgews = require "edgews"
local pubsub, notifications = edgews.pubsub, edgews.notifications

local function env_num(name)
  local v = os.getenv(name)
  return v and tonumber(v) or nil
end

edgews.configure {
  pubsub = { max_queue_size = env_num("RT_MAXQ"), message_ttl = env_num("RT_TTL"),
             max_recover = env_num("RT_MAXREC") },
  notifications = { max_per_user = env_num("RT_NMAX"), ttl = env_num("RT_NTTL") },
}

pubsub.subscribe("audit", function(msg)
  pubsub.publish("audit.log", { seen = msg.offset, worker = edgews.worker_id(), data = msg.data })
end)

local app = edgews.app {
  path = "/rt",
  max_buffered = 16 * 1024 * 1024,
  notifications = true,
  auth = edgews.auth.custom(function(req)
    local user = req.params.user
    if user and user ~= "" then return { id = user } end
    return { id = "anon" }
  end),
}

local cjson = require "cjson"
local function send(socket, t) socket:send(cjson.encode(t)) end

local function fail(socket, msg, err)
  send(socket, { type = "error", error = tostring(err), id = msg.id })
end

local drop_app = edgews.app {
  path = "/rtdrop",
  max_buffered = 64 * 1024,
  on_backpressure = "drop",
  auth = edgews.auth.custom(function(req) return { id = req.params.user or "anon" } end),
}

local subscribing = 0 -- handlers of this worker waiting in pubsub.subscribe

for _, a in ipairs { app, drop_app } do
  a:route("subscribe", function(socket, msg)
    subscribing = subscribing + 1
    local r, err = pubsub.subscribe(msg.topic, socket, {
      since_offset = msg.since_offset, epoch = msg.epoch, raw = msg.raw })
    subscribing = subscribing - 1
    if not r then return fail(socket, msg, err) end
    r.type, r.topic, r.worker = "subscribed", msg.topic, edgews.worker_id()
    send(socket, r)
  end)

  a:route("unsubscribe", function(socket, msg)
    local ok, err = pubsub.unsubscribe(msg.topic, socket)
    send(socket, { type = ok and "unsubscribed" or "error", error = err, topic = msg.topic })
  end)

  a:route("probe", function(socket)
    send(socket, { type = "probe", subscribing = subscribing, worker = edgews.worker_id() })
  end)
end

drop_app:route("whoami", function(socket)
  send(socket, { type = "whoami", worker = edgews.worker_id() })
end)

app:route("fill", function(socket, msg)
  local pad = string.rep("f", msg.size or 0)
  local last
  for i = 1, msg.n do
    last = pubsub.publish(msg.topic, { i = i, pad = pad }, { wait = i == msg.n })
    if not last then return fail(socket, msg, "publish failed") end
  end
  send(socket, { type = "filled", offset = last.offset, epoch = last.epoch })
end)

app:route("publish", function(socket, msg)
  local r, err = pubsub.publish(msg.topic, msg.data, { wait = not msg.nowait })
  if not r then return fail(socket, msg, err) end
  if r == true then r = {} end
  r.type, r.id = "published", msg.id
  send(socket, r)
end)

app:route("reset", function(socket, msg)
  local r, err = pubsub.reset(msg.topic)
  if not r then return fail(socket, msg, err) end
  send(socket, { type = "reset", epoch = r.epoch })
end)

app:route("retention", function(socket, msg)
  local ok, err = pubsub.retention(msg.topic, { max_queue_size = msg.max_queue_size, message_ttl = msg.message_ttl })
  send(socket, ok and { type = "retention" } or { type = "error", error = err })
end)

app:route("history", function(socket, msg)
  local h, err = pubsub.history(msg.topic, { since_offset = msg.since_offset, limit = msg.limit })
  if not h then return fail(socket, msg, err) end
  h.type = "history"
  send(socket, h)
end)

app:route("notify", function(socket, msg)
  local r, err = notifications.store(msg.user, msg.data, { ttl = msg.ttl })
  if not r then return fail(socket, msg, err) end
  r.type, r.seq = "stored", msg.seq
  send(socket, r)
end)

app:route("pending", function(socket, msg)
  local rows, total = notifications.pending(socket.ctx.user.id, { limit = msg.limit })
  send(socket, { type = "pending", items = rows, total = total })
end)

app:route("list", function(socket, msg)
  local r, err = notifications.list(msg.user or socket.ctx.user.id, { limit = msg.limit, offset = msg.offset })
  if not r then return fail(socket, msg, err) end
  r.type = "list"
  send(socket, r)
end)

app:route("read", function(socket, msg)
  local n, err = notifications.mark_read(socket.ctx.user.id, msg.ids)
  if not n then return fail(socket, msg, err) end
  send(socket, { type = "marked", changed = n })
end)

app:route("whoami", function(socket)
  send(socket, { type = "whoami", user = socket.ctx.user.id, worker = edgews.worker_id() })
end)

-- Publishes n messages and subscribes the caller with since_offset in the same
-- handler turn: the history holds them and so does this worker's inbox (memory
-- topics post synchronously), so each must still arrive exactly once.
app:route("burst_then_subscribe", function(socket, msg)
  local last
  for i = 1, msg.n do last = pubsub.publish(msg.topic, { i = i }, { wait = i == msg.n }) end
  local r, err = pubsub.subscribe(msg.topic, socket, { since_offset = msg.since_offset or 0 })
  if not r then return fail(socket, msg, err) end
  r.type, r.topic, r.last = "subscribed", msg.topic, last and last.offset
  send(socket, r)
end)
