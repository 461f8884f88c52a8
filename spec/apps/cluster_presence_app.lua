-- Presence, app operations and pub/sub across a cluster, for cluster_presence_spec
-- (three instances with --workers 2 and --redis). Each message is a JSON command;
-- the answer is {"reply": op, ...}; presence events of subscribed channels and
-- pub/sub messages arrive as they are ({"type":"presence",...}, {"type":"pub",...}).
--   {"op":"sub","ch":C}                                  subscribe to C's events
--   {"op":"join","ch":C,"user":U,"status":S,"meta":M}     -> {ok, new}
--   {"op":"leave","ch":C}                                -> {ok, left}
--   {"op":"set","user":U,"status":S,"meta":M,"expire":E} -> {ok}
--   {"op":"get","users":[...]}                           -> {res}
--   {"op":"list","ch":C,"limit":L,"cursor":K}            -> {members, cursor, n}
--   {"op":"count","ch":C}                                -> {count}
--   {"op":"conns"}                                       -> {count = app:connection_count()}
--   {"op":"close_all"}                                   -> {closed}: app:close_all(4001, "all")
--   {"op":"psub","topic":T}                              -> {sub = pubsub.subscribe(...)}
--   {"op":"pub","topic":T,"data":D}                      -> {offset}
--   {"op":"fill","topic":T,"n":N}                        -> {offset}: N publishes in one turn
-- The Lua subscriber of topic "lua" (one per instance, on one of its workers)
-- publishes {"name": CP_NAME (the environment's), "offset": n} on channel "lua.seen"
-- for every message it gets.
local edgews = require "edgews"
local cjson = require "cjson.safe"

local presence, pubsub = edgews.presence, edgews.pubsub
presence.configure { batch_interval = 0.1, heartbeat_interval = 0, heartbeat_timeout = 0 }

local app = edgews.app { path = "/cp", heartbeat = false, max_buffered = 64 * 1024 * 1024 }

local NAME = os.getenv("CP_NAME") or "?"
pubsub.subscribe("lua", function(msg)
  edgews.channel("lua.seen"):publish(cjson.encode { name = NAME, offset = msg.offset })
end)

local null = cjson.null
local function opt(v)
  if v == null then return nil end
  return v
end

local handlers = {}

function handlers.sub(socket, m)
  return { ok = edgews.channel(m.ch):subscribe(socket) }
end

function handlers.join(socket, m)
  local ok, new = presence.join(m.ch, socket, { user = opt(m.user), status = opt(m.status), meta = opt(m.meta) })
  return { ok = ok or false, new = new }
end

function handlers.leave(socket, m)
  local ok, left = presence.leave(m.ch, socket)
  return { ok = ok or false, left = left }
end

function handlers.set(_, m)
  local ok, err = presence.set(m.user, opt(m.status), opt(m.meta), m.expire and { expire = m.expire } or nil)
  return { ok = ok or false, err = err }
end

function handlers.get(_, m)
  local res = presence.get(m.users)
  for _, v in pairs(res) do
    if #v.channels == 0 then v.channels = nil else table.sort(v.channels) end
  end
  return { res = res }
end

function handlers.list(_, m)
  local r = presence.list(m.ch, { limit = opt(m.limit), cursor = opt(m.cursor) })
  return { members = #r.members > 0 and r.members or nil, cursor = r.cursor or null, n = #r.members }
end

function handlers.count(_, m)
  return { count = presence.count(m.ch) }
end

function handlers.conns()
  return { count = app:connection_count() }
end

function handlers.close_all()
  return { closed = app:close_all(4001, "all") }
end

function handlers.psub(socket, m)
  local r, err = pubsub.subscribe(m.topic, socket)
  return { sub = r or null, err = err }
end

function handlers.pub(_, m)
  local r, err = pubsub.publish(m.topic, m.data, { wait = true })
  return { offset = r and r.offset or null, err = err }
end

function handlers.fill(_, m)
  local last
  for i = 1, m.n do
    last = pubsub.publish(m.topic, { i = i }, { wait = i == m.n })
    if not last then return { err = "publish failed" } end
  end
  return { offset = last.offset }
end

app:on("message", function(socket, data)
  local m = cjson.decode(data)
  local h = m and handlers[m.op]
  local res = h and h(socket, m) or { error = "unknown op" }
  res.reply = m and m.op
  socket:send(cjson.encode(res))
end)
