-- Presence (edgews.presence) for presence_spec, driven by tests/clients/presence_client.py.
-- Each message is a JSON command; the answer is {"reply": op, ...}; presence events
-- of subscribed channels arrive as {"type":"presence", ...}.
--   {"op":"sub","ch":C}                        subscribe to C's events
--   {"op":"join","ch":C,"user":U,"status":S,"meta":M}   -> {ok, new}
--   {"op":"leave","ch":C}                      -> {ok, left}
--   {"op":"set","user":U,"status":S,"meta":M,"expire":E} -> {ok}
--   {"op":"get","users":[...]}                 -> {res = presence.get(...)}
--   {"op":"list","ch":C,"limit":L,"cursor":K}  -> {members, cursor}
--   {"op":"count","ch":C}                      -> {count}
--   {"op":"worker"}                            -> {worker}
--   {"op":"bad"}                               -> {error = the message of a misuse error}
-- /pa?user=U is the same with authentication: the user is U.
-- A short heartbeat (pinged after 0.3 s of silence, gone after 1 s) for the spec.
local edgews = require "edgews"
local cjson = require "cjson.safe"

local presence = edgews.presence
presence.configure { batch_interval = 0.1, heartbeat_interval = 0.3, heartbeat_timeout = 1 }

local app = edgews.app { path = "/p", heartbeat = false, max_buffered = 64 * 1024 * 1024 }

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
    if #v.channels == 0 then v.channels = nil end -- cjson would send [] as {}
  end
  return { res = res }
end

function handlers.list(_, m)
  local r = presence.list(m.ch, { limit = opt(m.limit), cursor = opt(m.cursor) })
  return { members = r.members, cursor = r.cursor or null, n = #r.members }
end

function handlers.count(_, m)
  return { count = presence.count(m.ch) }
end

function handlers.worker()
  return { worker = edgews.worker_id() }
end

function handlers.bad(socket)
  local ok, err = pcall(presence.join, "", socket)
  return { error = not ok and tostring(err) or "no error" }
end

local function on_message(socket, data)
  local m = cjson.decode(data)
  local h = m and handlers[m.op]
  local res = h and h(socket, m) or { error = "unknown op" }
  res.reply = m and m.op
  socket:send(cjson.encode(res))
end
app:on("message", on_message)

-- /pa?user=U: an authenticated app (the user is U, whatever a join says)
local authed = edgews.app { path = "/pa", heartbeat = false,
  auth = edgews.auth.custom(function(req) return { id = req.params.user } end) }
authed:on("message", on_message)
