-- edgews.notifications: per-user notifications stored in SQLite (the seed
-- library's NotificationManager), delivered at once to a user who is online on
-- any worker, otherwise when they next connect.
--
--   local notifications = edgews.notifications
--   local n = notifications.store("u42", { text = "hi" }, { ttl = 3600 })
--   -- n = { id = 17, created_at = ms, delivered = true|false }
--   notifications.pending("u42")            -- oldest first
--   notifications.mark_read("u42", { 17 })
--   notifications.list("u42", { limit = 20, offset = 0 })  -- newest first, total
--
-- store() returns only after the notification is committed and fsynced (it
-- survives SIGKILL right after). Sockets receive
--   {"type":"notification","id":17,"created_at":1790000000000,"data":{...}}
-- A notification is marked delivered once it was queued to a socket of its user;
-- read when the app says so. Needs a data directory (--data DIR).

local core = require "edgews.core"
local cjson = require "cjson.safe"
local workers = require "edgews.workers"
local socket_mod = require "edgews.socket"
local buffer = require "string.buffer"

local type, error, tostring, ipairs, pairs, math_floor, concat =
  type, error, tostring, ipairs, pairs, math.floor, table.concat
local error_name = socket_mod.error_text
local encode = buffer.encode

local _M = {}

local STATE = { pending = 0, delivered = 1, read = 2 }
local NO_STORE = "no data directory (start with --data DIR)"
local MAX_PENDING_ON_CONNECT = 1000

local function check_user(user, what)
  if type(user) == "number" then user = tostring(user) end
  if type(user) ~= "string" or user == "" or #user > 1024 then
    error("notifications." .. what .. ": user must be a non-empty string or a number", 3)
  end
  return user
end

local function frame(id, created_at, payload)
  return concat({ '{"type":"notification","id":', ("%d"):format(id), ',"created_at":',
                  ("%d"):format(created_at), ',"data":', payload, "}" })
end

-- Each socket remembers the ids it was sent, so a notification that reaches it
-- both by the live push and by the pending read at connect goes out once.
local function seen_set(sock)
  local ctx = sock.ctx
  local s = ctx._notif_seen
  if not s then
    s = { n = 0 }
    ctx._notif_seen = s
  end
  return s
end

local function send_once(sock, id, text)
  local seen = seen_set(sock)
  if seen[id] then return false end
  if seen.n >= 1024 then -- keep it bounded: forget the older half
    local keep = { n = 0 }
    local ids = {}
    for k in pairs(seen) do if k ~= "n" then ids[#ids + 1] = k end end
    table.sort(ids)
    for i = #ids - 511, #ids do if i >= 1 then keep[ids[i]] = true; keep.n = keep.n + 1 end end
    seen = keep
    sock.ctx._notif_seen = keep
  end
  if not sock:send(text) then return false end
  seen[id] = true
  seen.n = seen.n + 1
  return true
end

-- Delivers to this worker's sockets of uid; marks delivered (without waiting) if
-- at least one socket took it. -> true when delivered here.
-- A socket whose open handler has not finished (hold) keeps a live notification
-- for later (release), so the app's welcome goes out first; it counts as delivered
-- only once sent.
local MAX_HELD = 1024

local function deliver_local(uid, id, created_at, payload)
  local text = frame(id, created_at, payload)
  local any = false
  for _, s in ipairs(workers.local_user_sockets(uid)) do
    local held = s.ctx._notif_hold
    if held then
      if #held < MAX_HELD then held[#held + 1] = { id, text } end
    elseif send_once(s, id, text) then
      any = true
    end
  end
  if any then core.notif_mark(uid, { id }, STATE.delivered, false) end
  return any
end

workers.register_op("notify", function(m)
  deliver_local(m.uid, m.id, m.created_at, m.payload)
end)

--- notifications.store(user, data [, { ttl = seconds }]) -> { id, created_at,
--  delivered } | nil, err. Waits (inside a handler) for the commit. data: any
--  JSON value (a string is stored as a JSON string). ttl: seconds; 0/nil = the
--  configured default (notifications.ttl), -1 = never expires.
function _M.store(user, data, opts)
  user = check_user(user, "store")
  if not core.notif_available() then return nil, NO_STORE end
  local payload, err = cjson.encode(data)
  if not payload then error("notifications.store: data cannot be encoded as JSON: " .. tostring(err), 2) end
  local ttl = opts and opts.ttl or 0
  if type(ttl) ~= "number" or ttl ~= math_floor(ttl) or ttl < -1 then
    error("notifications.store: ttl must be an integer number of seconds (or -1)", 2)
  end
  local id, created_at = core.notif_store(user, payload, ttl)
  if id == nil then return nil, error_name(created_at) end
  if id == true then return true end -- outside a handler: stored later, not delivered
  -- Stored. Deliver now to every worker where the user has a socket; a socket
  -- that connects meanwhile reads it as pending (it registers before reading).
  local delivered = false
  local me = core.worker_id()
  local done = {} -- workers already handled (a user may have many sockets on each)
  for _, e in ipairs(core.user_list(user)) do
    -- e[3]: a worker of another instance of a cluster (which reads and marks the
    -- same notifications, kept in Redis)
    local w, inst = e[1], e[3]
    local key = inst and (inst .. ":" .. w) or w
    if not done[key] then
      done[key] = true
      if w == me and not inst then
        if deliver_local(user, id, created_at, payload) then delivered = true end
      elseif core.post(w, encode({ op = "notify", uid = user, id = id, created_at = created_at,
                                   payload = payload }), inst) then
        delivered = true
      end
    end
  end
  return { id = id, created_at = created_at, delivered = delivered }
end

local function decode_rows(rows)
  for _, r in ipairs(rows) do r.data = cjson.decode(r.data) end
  return rows
end

--- notifications.pending(user [, { limit = 100 }]) -> list (oldest first), total
function _M.pending(user, opts)
  user = check_user(user, "pending")
  if not core.notif_available() then return nil, NO_STORE end
  local rows, total = core.notif_pending(user, opts and opts.limit or 100)
  if not rows then return nil, error_name(total) end
  return decode_rows(rows), total
end

--- notifications.list(user [, { limit = 20, offset = 0 }])
---   -> { total = n, items = { {id, created_at, expires_at, state, data}, ... } }
function _M.list(user, opts)
  user = check_user(user, "list")
  if not core.notif_available() then return nil, NO_STORE end
  local limit = opts and opts.limit or 20
  local offset = opts and opts.offset or 0
  if type(limit) ~= "number" or limit < 0 or type(offset) ~= "number" or offset < 0 then
    error("notifications.list: limit and offset must be non-negative numbers", 2)
  end
  local rows, total = core.notif_list(user, limit, offset)
  if not rows then return nil, error_name(total) end
  return { total = total, items = decode_rows(rows) }
end

local function mark(what, user, ids, state)
  user = check_user(user, what)
  if type(ids) == "number" then ids = { ids } end
  if type(ids) ~= "table" or #ids == 0 or #ids > 1000 then
    error("notifications." .. what .. ": ids must be a number or a list of 1..1000 numbers", 3)
  end
  if not core.notif_available() then return nil, NO_STORE end
  local changed, err = core.notif_mark(user, ids, state, true)
  if changed == nil then return nil, error_name(err) end
  return changed
end

--- notifications.mark_delivered(user, ids) -> number changed | nil, err
function _M.mark_delivered(user, ids) return mark("mark_delivered", user, ids, STATE.delivered) end
--- notifications.mark_read(user, ids) -> number changed | nil, err
function _M.mark_read(user, ids) return mark("mark_read", user, ids, STATE.read) end

--- notifications.deliver_pending(socket, user) -> number sent
-- Sends the user's pending notifications to the socket and marks them
-- delivered. Runs by itself when a socket of an app with `notifications = true`
-- gets its user (auth: edgews.pipeline calls it).
function _M.deliver_pending(sock, user)
  user = check_user(user, "deliver_pending")
  if not core.notif_available() then return 0 end
  local rows = core.notif_pending(user, MAX_PENDING_ON_CONNECT)
  if not rows then return 0 end
  local ids = {}
  for _, r in ipairs(rows) do
    if send_once(sock, r.id, frame(r.id, r.created_at, r.data)) then ids[#ids + 1] = r.id end
  end
  if #ids > 0 then core.notif_mark(user, ids, STATE.delivered, false) end
  return #ids
end

--- notifications.hold(socket, user): until release, live notifications for the
-- socket wait (edgews.pipeline: while the open handler runs).
function _M.hold(sock, user)
  sock.ctx._notif_hold = { user = user }
end

--- notifications.release(socket) -> number sent: sends the user's pending
-- notifications (oldest first), then those that arrived live while held and that
-- another socket took (each goes out once), and marks them delivered.
function _M.release(sock)
  local held = sock.ctx._notif_hold
  if not held then return 0 end
  sock.ctx._notif_hold = nil
  local n = _M.deliver_pending(sock, held.user)
  local ids = {}
  for _, h in ipairs(held) do
    if send_once(sock, h[1], h[2]) then ids[#ids + 1] = h[1] end
  end
  if #ids > 0 then core.notif_mark(held.user, ids, STATE.delivered, false) end
  return n + #ids
end

--- notifications.available() -> true when the server has a data directory
function _M.available() return core.notif_available() end

return _M
