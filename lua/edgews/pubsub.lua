-- edgews.pubsub: topics with offsets, an epoch and history (the seed library's
-- PubSub), on the C core's sequencers and fan-out (hub/pubsub.c).
--
--   local pubsub = edgews.pubsub
--   local pos = pubsub.publish("news", { title = "hi" })  -- { epoch, offset, time }
--   local unsubscribe = pubsub.subscribe("news", function(msg) ... end)
--   pubsub.subscribe("news", socket, { since_offset = 41, epoch = "9f..." })
--   pubsub.history("news", { since_offset = 0, limit = 100 })
--
-- With a data directory (--data DIR) topics are stored in SQLite and a publish
-- waits (inside a handler) until its message is committed and fsynced; it is
-- delivered to subscribers only once stored. Without one, history is a ring in
-- memory. Every message gets the topic's next offset; all workers see a topic's
-- messages in offset order. A socket subscribed with since_offset (and the epoch
-- it had) first gets what it missed, then live messages, with no gap and no
-- duplicate, or an explicit {"type":"gap"} message first when part of it is gone.

local core = require "edgews.core"
local cjson = require "cjson.safe"
local socket_mod = require "edgews.socket"

local type, error, tostring, tonumber, pairs, ipairs, next, xpcall, traceback, math_floor =
  type, error, tostring, tonumber, pairs, ipairs, next, xpcall, debug.traceback, math.floor
local error_name = socket_mod.error_text

local _M = {}

local function check_topic(topic, what)
  if type(topic) ~= "string" or topic == "" or #topic > 500 then
    error("pubsub." .. what .. ": topic must be a non-empty string of at most 500 bytes, got "
      .. tostring(topic), 3)
  end
end

-- A stored topic that has never had a message has no epoch yet (the core says 0).
local NO_EPOCH = "0000000000000000"
local function epoch_or_nil(e)
  if e == NO_EPOCH then return nil end
  return e
end

local function check_offset(v, what)
  if v == nil then return nil end
  if type(v) == "string" then v = tonumber(v) end
  if type(v) ~= "number" or v < 0 or v ~= math_floor(v) or v >= 2 ^ 53 then
    return nil, what .. " must be a non-negative integer"
  end
  return v
end

--- pubsub.publish(topic, data [, opts]) -> { epoch = "hex", offset = n, time = ms }
--  | true (stored topics with opts.wait == false: queued, order kept)
--  | nil, err ("backpressure": the store's queue is full; "invalid argument": data
--  is not valid UTF-8; ...). data: a string (delivered as a JSON string in the
--  envelope, as is to raw subscribers) or a table/number/boolean (JSON).
function _M.publish(topic, data, opts)
  check_topic(topic, "publish")
  local payload, json
  local t = type(data)
  if t == "string" then
    payload, json = data, false
  elseif t == "table" or t == "number" or t == "boolean" then
    local err
    payload, err = cjson.encode(data)
    if not payload then error("pubsub.publish: data cannot be encoded as JSON: " .. tostring(err), 2) end
    json = true
  else
    error("pubsub.publish: data must be a string or a JSON value, got " .. t, 2)
  end
  local wait = not (opts and opts.wait == false)
  local epoch, offset, time = core.pubsub_publish(topic, payload, json, wait)
  if epoch == nil then return nil, error_name(offset) end
  if epoch == true then return true end
  return { epoch = epoch, offset = offset, time = time }
end

-- ------------------------------------------------------------ Lua subscribers

local subs = {}      -- topic -> { [entry] = true }
local gen = 0        -- the script version being loaded (load-time subscriptions)
local loading = false

local function add_lua(topic, fn)
  local set = subs[topic]
  if not set then
    local ok, rc = core.pubsub_lua(topic, 1)
    if not ok then return nil, error_name(rc) end
    set = {}
    subs[topic] = set
  end
  local entry = { fn = fn, gen = loading and gen or nil }
  set[entry] = true
  return entry
end

local function remove_lua(topic, entry)
  local set = subs[topic]
  if not set or not set[entry] then return false end
  set[entry] = nil
  if next(set) == nil then
    subs[topic] = nil
    core.pubsub_lua(topic, -1)
  end
  return true
end

local function noop() return false end

local function subscribe_fn(topic, fn)
  -- The script loads once per worker: a subscription made while it loads runs on
  -- one worker only (the topic's owner), so each message reaches it once.
  if not core.in_worker then return noop end
  if loading and core.pubsub_owner(topic) ~= core.worker_id() then return noop end
  local entry, err = add_lua(topic, fn)
  if not entry then return nil, err end
  return function() return remove_lua(topic, entry) end
end

--- The core calls this for a message of a topic with Lua subscribers here.
function _M._dispatch(topic, epoch, offset, time, data, json)
  local set = subs[topic]
  if not set then return end
  local value = data
  if json then value = cjson.decode(data) end
  local msg = { topic = topic, epoch = epoch, offset = offset, time = time, data = value }
  for entry in pairs(set) do
    local ok, err = xpcall(entry.fn, traceback, msg)
    if not ok then core.handler_error(false, "pubsub " .. topic, tostring(err)) end
  end
end

-- Script reloads: load-time subscriptions of the previous version end when the
-- new version loads; those of a version that failed to load are dropped.
function _M._begin_load()
  gen = gen + 1
  loading = true
end

function _M._end_load(ok)
  loading = false
  for topic, set in pairs(subs) do
    for entry in pairs(set) do
      if entry.gen and ((ok and entry.gen < gen) or (not ok and entry.gen == gen)) then
        remove_lua(topic, entry)
      end
    end
  end
end

-- ------------------------------------------------------------ socket subscribers

-- What a socket subscription's failures say (the core's codes by name).
local SUB_ERRORS = {
  again = "already subscribing", -- its first replay is still going on
  stopped = "unsubscribed",      -- while its replay was going on
}

local function subscribe_socket(topic, sock, opts)
  local c = sock._c
  if not c then return nil, "closed" end
  local since, epoch, raw, err
  if opts then
    since, err = check_offset(opts.since_offset, "since_offset")
    if err then return nil, err end
    epoch = opts.epoch
    if epoch ~= nil and (type(epoch) ~= "string" or not epoch:match("^%x+$") or #epoch > 16) then
      return nil, "epoch must be the hex string a message carried"
    end
    raw = opts.raw and true or false
  end
  local e, offset, recovered, replayed, gap, already, pending =
    core.pubsub_subscribe(c, topic, since ~= nil, since or 0, epoch, raw)
  if not e then return nil, SUB_ERRORS[error_name(offset)] or error_name(offset) end
  local r = { epoch = epoch_or_nil(e), offset = offset, replayed = replayed, gap = gap }
  if since ~= nil then r.recovered = recovered end -- only when recovery was asked for
  if already then r.already = true end
  if pending then r.pending = true end
  return r
end

--- pubsub.subscribe(topic, fn) -> unsubscribe function
--- pubsub.subscribe(topic, socket [, { since_offset =, epoch =, raw = }])
---   -> { epoch, offset, recovered, replayed, gap } | nil, err
function _M.subscribe(topic, target, opts)
  check_topic(topic, "subscribe")
  local t = type(target)
  if t == "function" then return subscribe_fn(topic, target) end
  if t == "table" and target.id ~= nil then return subscribe_socket(topic, target, opts) end
  error("pubsub.subscribe expects a function or a socket, got " .. t, 2)
end

--- pubsub.unsubscribe(topic, socket) -> true | nil, "not subscribed"
function _M.unsubscribe(topic, sock)
  check_topic(topic, "unsubscribe")
  if type(sock) ~= "table" or sock.id == nil then error("pubsub.unsubscribe expects a socket", 2) end
  local c = sock._c
  if not c then return nil, "closed" end
  if core.pubsub_unsubscribe(c, topic) then return true end
  return nil, "not subscribed"
end

--- pubsub.history(topic [, { since_offset = 0, limit = 100 }])
---   -> { epoch, first_offset, last_offset, messages = { {offset, time, data}, ... } }
function _M.history(topic, opts)
  check_topic(topic, "history")
  local since, err = check_offset(opts and opts.since_offset, "since_offset")
  if err then return nil, err end
  local limit = opts and opts.limit or 100
  if type(limit) ~= "number" or limit < 0 then return nil, "limit must be a non-negative number" end
  local h, rc = core.pubsub_history(topic, since or 0, limit)
  if not h then return nil, error_name(rc) end
  h.epoch = epoch_or_nil(h.epoch)
  for _, m in ipairs(h.messages) do
    if m.json then m.data = cjson.decode(m.data) end
    m.json = nil
  end
  return h
end

--- pubsub.reset(topic) -> { epoch = "hex" } | true (stored, outside a handler)
--  | nil, err. A new epoch: history dropped, offsets restart at 1.
function _M.reset(topic)
  check_topic(topic, "reset")
  local epoch, err = core.pubsub_reset(topic)
  if epoch == nil then return nil, error_name(err) end
  if epoch == true then return true end
  return { epoch = epoch }
end

--- pubsub.retention(topic, { max_queue_size = n, message_ttl = s }) -> true | nil, err
--  The topic's own bounds (0 = unlimited / forever; a field left out = the
--  configured default), applied at once; stored topics keep them across restarts.
function _M.retention(topic, opts)
  check_topic(topic, "retention")
  if type(opts) ~= "table" then error("pubsub.retention expects a table of bounds", 2) end
  local function bound(name)
    local v = opts[name]
    if v == nil then return -1 end
    if type(v) ~= "number" or v < 0 or v ~= math_floor(v) or v >= 2 ^ 31 then
      error("pubsub.retention: " .. name .. " must be a non-negative integer", 3)
    end
    return v
  end
  local epoch, err = core.pubsub_retention(topic, bound("max_queue_size"), bound("message_ttl"))
  if epoch == nil then return nil, error_name(err) end
  return true
end

--- pubsub.local_count(topic) -> sockets subscribed on this worker
function _M.local_count(topic)
  check_topic(topic, "local_count")
  return core.pubsub_local_count(topic)
end

--- pubsub.persistent() -> true when topics are stored on disk
function _M.persistent() return core.pubsub_persistent() end

return _M
