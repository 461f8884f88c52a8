-- edgews.presence: who is online, and who is in which channel, across every worker
-- (process-wide tables in C, hub/presence.c) and, with --redis, every instance of the
-- cluster (hub/engine_redis_presence.c).
--
--   local presence = edgews.presence
--   presence.configure { heartbeat_timeout = 30 }        -- optional, at load time
--   edgews.channel("room:1"):subscribe(socket)          -- to receive the events
--   presence.join("room:1", socket, { status = "online", meta = { name = "Ann" } })
--   presence.list("room:1", { limit = 50 })  --> { members = {...}, cursor = ... }
--   presence.set("u1", "away", { note = "lunch" }, { expire = 600 })
--   presence.get({ "u1", "u2" })  --> { u1 = { status=, meta=, online=, channels= }, ... }
--
-- A member is a user (socket.ctx.user.id when the app authenticates, else
-- opts.user, else the socket id) with one or more connections in the channel: the
-- user is present while any of them is. Joins and leaves are announced to the
-- channel's subscribers in batches, one message per channel per batch_interval:
--   {"type":"presence","channel":"room:1","joins":[{"user":"u1","status":"online",
--    "meta":{...}}],"leaves":["u2"]}
-- A connection leaves every channel when it closes, and when nothing (no frame, no
-- pong) was heard from it for heartbeat_timeout seconds (it is pinged after
-- heartbeat_interval of silence, so a live client answers in time).
--
-- Misuse (a bad channel name, a socket that is not one, meta that is not JSON
-- material) raises; runtime failures return nil, err ("closed", "not joined", ...).

local core = require "edgews.core"
local socket_mod = require "edgews.socket"

local type, error, tostring, pairs, ipairs, require, math_floor, string_format =
  type, error, tostring, pairs, ipairs, require, math.floor, string.format
local error_name = socket_mod.error_name

local _M = {}

local MAX_NAME, MAX_USER, MAX_STATUS, MAX_META = 500, 256, 64, 8192
local DAY = 86400

local config = { batch_interval = 0.1, heartbeat_interval = 25, heartbeat_timeout = 60,
                 status_expiration = 300 }
local limits = { batch_interval = { 0.005, 60 }, heartbeat_interval = { 0, DAY },
                 heartbeat_timeout = { 0, DAY }, status_expiration = { 0, 365 * DAY } }

local json -- cjson.safe, loaded when first needed
local function codec()
  if not json then json = require "cjson.safe" end
  return json
end

--- presence.configure{ batch_interval=, heartbeat_interval=, heartbeat_timeout=,
-- status_expiration= } (seconds; 0 turns a heartbeat part or the expiry off).
-- Process-wide: call it while the script loads (every worker runs the same script).
function _M.configure(t)
  if type(t) ~= "table" then error("presence.configure expects a table", 2) end
  for k, v in pairs(t) do
    local lim = limits[k]
    if not lim then error("presence.configure: unknown option '" .. tostring(k) .. "'", 2) end
    if type(v) ~= "number" or v ~= v or v < lim[1] or v > lim[2] then
      error(string_format("presence.configure: %s must be a number in [%g, %g]", k, lim[1], lim[2]), 2)
    end
  end
  for k, v in pairs(t) do config[k] = v end
  core.presence_configure(config.batch_interval, config.heartbeat_interval, config.heartbeat_timeout,
    config.status_expiration)
end

--- presence.config() -> a copy of the current settings
function _M.config()
  local c = {}
  for k, v in pairs(config) do c[k] = v end
  return c
end

local function check_channel(name, what)
  if type(name) ~= "string" or name == "" or #name > MAX_NAME then
    error(what .. ": channel must be a non-empty string of at most 500 bytes, got " .. tostring(name), 3)
  end
end

local function check_socket(s, what)
  if type(s) ~= "table" or type(s.id) ~= "number" then error(what .. " expects a socket", 3) end
end

-- level: of the caller of the public function, counted from user_string.
local function user_string(v, what, level)
  local t = type(v)
  if t == "number" then
    v = (v == math_floor(v) and v >= -2^53 and v <= 2^53) and string_format("%d", v) or tostring(v)
  elseif t ~= "string" then
    error(what .. ": user id must be a string or a number, got " .. t, level)
  end
  if v == "" or #v > MAX_USER then error(what .. ": user id must be 1 to 256 bytes", level) end
  return v
end

local function check_status(s, what)
  if s ~= nil and (type(s) ~= "string" or s == "" or #s > MAX_STATUS) then
    error(what .. ": status must be a non-empty string of at most 64 bytes", 3)
  end
end

local function encode_meta(meta, what)
  if meta == nil then return nil end
  local text, err = codec().encode(meta)
  if not text then error(what .. ": meta cannot be encoded as JSON: " .. tostring(err), 3) end
  if #text > MAX_META then error(what .. ": meta is over 8192 bytes of JSON", 3) end
  return text
end

local function decode_meta(text)
  if text == nil then return nil end
  return (codec().decode(text))
end

-- The user a socket is present as.
local function user_of(socket, opts, what)
  local u = socket.ctx and socket.ctx.user
  if type(u) == "table" and u.id ~= nil then return user_string(u.id, what, 4) end
  if opts and opts.user ~= nil then return user_string(opts.user, what, 4) end
  return string_format("%d", socket.id)
end

--- presence.join(channel, socket [, { status=, meta=, user= }]) -> true, is_new | nil, err
-- is_new: the user was not present in the channel before (a second tab is not new).
-- Joining again with the same socket updates status and meta.
function _M.join(channel, socket, opts)
  check_channel(channel, "presence.join")
  check_socket(socket, "presence.join")
  if opts ~= nil and type(opts) ~= "table" then error("presence.join: opts must be a table", 2) end
  local status = opts and opts.status
  check_status(status, "presence.join")
  local meta = encode_meta(opts and opts.meta, "presence.join")
  local uid = user_of(socket, opts, "presence.join")
  local c = socket._c
  if not c then return nil, "closed" end
  local ok, rc = core.presence_join(c, channel, uid, status, meta)
  if ok then return true, rc end
  return nil, error_name(rc)
end

--- presence.leave(channel, socket) -> true, user_left | nil, "not joined"
-- user_left is false while the user has other connections in the channel.
function _M.leave(channel, socket)
  check_channel(channel, "presence.leave")
  check_socket(socket, "presence.leave")
  local ok, left = core.presence_leave(socket.id, channel)
  if ok then return true, left end
  return nil, "not joined"
end

--- presence.set(user_id, status [, meta [, { expire = s }]]) -> true | nil, err
-- The user's global status (status nil: back to the default). It lasts expire
-- seconds (default status_expiration; 0: until changed), then reverts to the
-- default: "online" while the user has a live connection on any worker, else
-- "offline". Members that joined without a status of their own show it.
function _M.set(uid, status, meta, opts)
  uid = user_string(uid, "presence.set", 3)
  check_status(status, "presence.set")
  if opts ~= nil and type(opts) ~= "table" then error("presence.set: opts must be a table", 2) end
  local expire = opts and opts.expire
  if expire == nil then
    expire = config.status_expiration
  elseif type(expire) ~= "number" or expire < 0 or expire ~= expire then
    error("presence.set: expire must be a number of seconds >= 0", 2)
  end
  local text = encode_meta(meta, "presence.set")
  local ok, rc = core.presence_set(uid, status, text, expire)
  if ok then return true end
  return nil, error_name(rc)
end

--- presence.get({ user_id, ... }) -> { [user_id] = { status=, meta=, online=, channels= } }
-- online: a live connection on any worker (a member connection, or an
-- authenticated socket); channels: the channels the user is present in.
function _M.get(ids)
  if type(ids) ~= "table" then error("presence.get expects a list of user ids", 2) end
  local list = {}
  for i, id in ipairs(ids) do list[i] = user_string(id, "presence.get", 3) end
  local res, rc = core.presence_get(list)
  if not res then return nil, error_name(rc) end
  for _, v in pairs(res) do v.meta = decode_meta(v.meta) end
  return res
end

--- presence.list(channel [, { limit = 100, cursor = }]) -> { members = {...}, cursor = next | nil }
-- Members in user-id order (bytewise): { user=, status=, meta=, connections= }.
-- Pass the returned cursor to get the next page; it is nil on the last page.
function _M.list(channel, opts)
  check_channel(channel, "presence.list")
  if opts ~= nil and type(opts) ~= "table" then error("presence.list: opts must be a table", 2) end
  local limit = opts and opts.limit or 100
  if type(limit) ~= "number" or limit < 1 or limit > 10000 or limit ~= math_floor(limit) then
    error("presence.list: limit must be an integer in [1, 10000]", 2)
  end
  local cursor = opts and opts.cursor
  if cursor ~= nil and type(cursor) ~= "string" then error("presence.list: cursor must be a string", 2) end
  local members, next_cursor = core.presence_list(channel, cursor, limit)
  if not members then return nil, error_name(next_cursor) end
  for _, m in ipairs(members) do m.meta = decode_meta(m.meta) end
  return { members = members, cursor = next_cursor }
end

--- presence.count(channel) -> users present in the channel (all workers)
function _M.count(channel)
  check_channel(channel, "presence.count")
  return core.presence_count(channel)
end

--- presence.flush() -> number of events published: sends the pending batch now
-- instead of at the next batch interval.
function _M.flush()
  return core.presence_flush()
end

return _M
