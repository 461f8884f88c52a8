-- The presence test app, shared by presence_app.lua (presence_spec, cluster_spec) and
-- cluster_presence_app.lua (cluster_presence_spec). Each message is a JSON command;
-- the answer is {"reply": op, ...}; presence events of subscribed channels arrive as
-- {"type":"presence", ...}.
--   {"op":"sub","ch":C}                                  subscribe to C's events
--   {"op":"join","ch":C,"user":U,"status":S,"meta":M}     -> {ok, new}
--   {"op":"leave","ch":C}                                -> {ok, left}
--   {"op":"set","user":U,"status":S,"meta":M,"expire":E} -> {ok}
--   {"op":"get","users":[...]}                           -> {res = presence.get(...)}
--   {"op":"list","ch":C,"limit":L,"cursor":K}            -> {members, cursor, n}
--   {"op":"count","ch":C}                                -> {count}
-- o.path: the app's path; o.heartbeat_interval, o.heartbeat_timeout: presence's;
-- o.sort_channels: get's channel lists sorted; o.omit_empty: list leaves out an empty
-- members list. Returns the app, the handlers (an app adds its own ops: handlers[op] =
-- function(socket, message) -> reply table) and the message handler (for more apps).
return function(o)
  local edgews = require "edgews"
  local cjson = require "cjson.safe"

  local presence = edgews.presence
  presence.configure { batch_interval = 0.1, heartbeat_interval = o.heartbeat_interval,
    heartbeat_timeout = o.heartbeat_timeout }

  local app = edgews.app { path = o.path, heartbeat = false, max_buffered = 64 * 1024 * 1024 }

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
    local ok, new = presence.join(m.ch, socket,
      { user = opt(m.user), status = opt(m.status), meta = opt(m.meta) })
    return { ok = ok or false, new = new }
  end

  function handlers.leave(socket, m)
    local ok, left = presence.leave(m.ch, socket)
    return { ok = ok or false, left = left }
  end

  function handlers.set(_, m)
    local ok, err = presence.set(m.user, opt(m.status), opt(m.meta),
      m.expire and { expire = m.expire } or nil)
    return { ok = ok or false, err = err }
  end

  function handlers.get(_, m)
    local res = presence.get(m.users)
    for _, v in pairs(res) do
      if #v.channels == 0 then v.channels = nil -- cjson would send [] as {}
      elseif o.sort_channels then table.sort(v.channels) end
    end
    return { res = res }
  end

  function handlers.list(_, m)
    local r = presence.list(m.ch, { limit = opt(m.limit), cursor = opt(m.cursor) })
    local members = r.members
    if o.omit_empty and #members == 0 then members = nil end
    return { members = members, cursor = r.cursor or null, n = #r.members }
  end

  function handlers.count(_, m)
    return { count = presence.count(m.ch) }
  end

  local function on_message(socket, data)
    local m = cjson.decode(data)
    local h = m and handlers[m.op]
    local res = h and h(socket, m) or { error = "unknown op" }
    res.reply = m and m.op
    socket:send(cjson.encode(res))
  end
  app:on("message", on_message)

  return app, handlers, on_message
end
