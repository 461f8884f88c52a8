-- edgews.config: validation of the tables given to edgews.app{} and
-- edgews.configure{}. Pure Lua (no C), so it is unit-tested on its own.
--
-- Every function returns a new, normalised table (durations in seconds, sizes in
-- bytes) or raises an error naming the bad field. The caller passes the error
-- level so the message points at the user's script line, not at this file.

local type, pairs, ipairs, tostring, tonumber = type, pairs, ipairs, tostring, tonumber
local math_floor = math.floor
local string_format = string.format

local _M = {}

local function fail(level, fmt, ...)
  error(string_format(fmt, ...), level + 1)
end

local function is_int(v)
  return type(v) == "number" and v == math_floor(v) and v == v
end

-- A subprotocol name must be an HTTP token (RFC 6455 4.1: Sec-WebSocket-Protocol).
local function is_token(s)
  return type(s) == "string" and #s > 0 and not s:find("[^!#$%%&'*+%-.^_`|~%w]")
end

local app_fields = {
  path = true, protocols = true, max_message_size = true, max_frame_size = true,
  idle_timeout = true, heartbeat = true, max_buffered = true, on_backpressure = true,
  compression = true, origins = true, max_connections = true, max_connections_per_ip = true,
  max_connections_per_user = true, auth = true, rate_limit = true, max_json_size = true,
  notifications = true, handler_timeout = true,
}
local compression_fields = {
  mode = true, level = true, threshold = true, window_kb = true, client_no_context_takeover = true,
}
local window_kbs = { [1] = true, [2] = true, [4] = true, [8] = true, [16] = true, [32] = true }

local function check_number(level, t, name, min, max, integer)
  local v = t[name]
  if v == nil then return nil end
  if type(v) ~= "number" or v ~= v or v < min or v > max or (integer and not is_int(v)) then
    fail(level + 1, "%s must be a%s number in [%s, %s], got %s", name,
      integer and "n integer" or "", tostring(min), tostring(max), tostring(v))
  end
  return v
end

local DAY = 86400

-- handler_timeout: seconds a handler run may take; 0 = no limit. The watchdog polls
-- a few times per budget, at most every 10 ms, so budgets under 10 ms are refused.
local function check_timeout(level, t, who)
  local v = t.handler_timeout
  if v == nil then return nil end
  if type(v) ~= "number" or v ~= v or v < 0 or v > DAY or (v > 0 and v < 0.01) then
    fail(level + 1, "%s: handler_timeout must be 0 (no limit) or a number of seconds in [0.01, %d], got %s",
      who, DAY, tostring(v))
  end
  return v
end

-- edgews.app{...}: returns the normalised app configuration.
function _M.app(t, level)
  level = (level or 1) + 1
  if type(t) ~= "table" then fail(level, "edgews.app expects a table, got %s", type(t)) end
  for k in pairs(t) do
    if not app_fields[k] then fail(level, "edgews.app: unknown field '%s'", tostring(k)) end
  end
  local path = t.path
  if type(path) ~= "string" or path:sub(1, 1) ~= "/" or path:find("[%s%?#%c]") then
    fail(level, "edgews.app: path must be a string starting with '/' (no spaces, '?' or '#'), got %s",
      tostring(path))
  end
  if path == "/health" then fail(level, "edgews.app: path /health is reserved") end
  local c = { path = path, protocols = {} }
  if t.protocols ~= nil then
    if type(t.protocols) ~= "table" then fail(level, "edgews.app: protocols must be a list of names") end
    local seen = {}
    for i, p in ipairs(t.protocols) do
      if not is_token(p) then fail(level, "edgews.app: protocols[%d] is not a valid token", i) end
      if not seen[p] then c.protocols[#c.protocols + 1] = p; seen[p] = true end
    end
  end
  c.max_message_size = check_number(level, t, "max_message_size", 0, 2 ^ 31 - 1, true) or 1024 * 1024
  c.max_frame_size = check_number(level, t, "max_frame_size", 0, 2 ^ 31 - 1, true) or c.max_message_size
  c.idle_timeout = check_number(level, t, "idle_timeout", 0, DAY, false) or 0
  c.max_buffered = check_number(level, t, "max_buffered", 0, 2 ^ 31 - 1, true) or 4 * 1024 * 1024
  local hb = t.heartbeat
  if hb == false then
    c.heartbeat_interval, c.heartbeat_timeout = 0, 0
  elseif hb == nil then
    c.heartbeat_interval, c.heartbeat_timeout = 30, 10
  elseif type(hb) == "table" then
    c.heartbeat_interval = check_number(level, hb, "interval", 0, DAY, false) or 30
    c.heartbeat_timeout = check_number(level, hb, "timeout", 0.01, DAY, false) or 10
  else
    fail(level, "edgews.app: heartbeat must be a table {interval=, timeout=} or false")
  end
  local bp = t.on_backpressure or "close"
  if bp ~= "close" and bp ~= "drop" then
    fail(level, "edgews.app: on_backpressure must be \"close\" or \"drop\", got %s", tostring(bp))
  end
  c.on_backpressure = bp
  if t.origins ~= nil then
    if type(t.origins) ~= "table" then fail(level, "edgews.app: origins must be a list of strings") end
    c.origins = {}
    for i, o in ipairs(t.origins) do
      if type(o) ~= "string" or o == "" then fail(level, "edgews.app: origins[%d] must be a string", i) end
      c.origins[i] = o
    end
  end
  c.max_connections = check_number(level, t, "max_connections", 0, 2 ^ 31 - 1, true) or 0
  c.max_connections_per_ip = check_number(level, t, "max_connections_per_ip", 0, 2 ^ 31 - 1, true) or 0
  c.max_connections_per_user = check_number(level, t, "max_connections_per_user", 0, 2 ^ 31 - 1, true) or 0
  c.max_json_size = check_number(level, t, "max_json_size", 1, 2 ^ 31 - 1, true)
  if t.notifications ~= nil and type(t.notifications) ~= "boolean" then
    fail(level, "edgews.app: notifications must be a boolean")
  end
  c.notifications = t.notifications
  c.handler_timeout = check_timeout(level, t, "edgews.app")
  local z = t.compression
  if z == false or z == nil then
    c.compression = { mode = "off" }
  elseif type(z) == "table" then
    for k in pairs(z) do
      if not compression_fields[k] then
        fail(level, "edgews.app: compression: unknown field '%s'", tostring(k))
      end
    end
    local mode = z.mode or "shared"
    if mode ~= "shared" and mode ~= "dedicated" and mode ~= "off" then
      fail(level, "edgews.app: compression.mode must be \"shared\", \"dedicated\" or \"off\"")
    end
    local zc = { mode = mode }
    zc.level = check_number(level, z, "level", 0, 9, true) or 1
    zc.threshold = check_number(level, z, "threshold", 0, 2 ^ 31 - 1, true) or 64
    zc.window_kb = check_number(level, z, "window_kb", 1, 32, true) or 32
    if not window_kbs[zc.window_kb] then
      fail(level, "edgews.app: compression.window_kb must be 1, 2, 4, 8, 16 or 32")
    end
    if z.client_no_context_takeover ~= nil then
      if type(z.client_no_context_takeover) ~= "boolean" then
        fail(level, "edgews.app: compression.client_no_context_takeover must be a boolean")
      end
      zc.client_no_context_takeover = z.client_no_context_takeover
    end
    c.compression = zc
  else
    fail(level, "edgews.app: compression must be a table { mode = ... } or false")
  end
  return c
end

local server_fields = {
  listen = true, workers = true, log_level = true, drain_timeout = true,
  handshake_timeout = true, close_timeout = true, max_head_size = true,
  max_headers = true, backlog = true, watch = true, tls = true, plain_listen = true,
  admin_listen = true, metrics = true, health = true, data_dir = true, pubsub = true,
  notifications = true, reuse_port = true, max_message_memory = true, worker_inbox_limit = true,
  handler_timeout = true, max_lua_memory = true,
}
local log_levels = { debug = true, info = true, warn = true, error = true, off = true }

-- edgews.configure{...}: returns the normalised server configuration.
function _M.server(t, level)
  level = (level or 1) + 1
  if type(t) ~= "table" then fail(level, "edgews.configure expects a table, got %s", type(t)) end
  for k in pairs(t) do
    if not server_fields[k] then fail(level, "edgews.configure: unknown field '%s'", tostring(k)) end
  end
  local c = {}
  for _, name in ipairs({ "metrics", "health" }) do
    if t[name] ~= nil and type(t[name]) ~= "boolean" then
      fail(level, "edgews.configure: %s must be a boolean", name)
    end
    c[name] = t[name]
  end
  for _, name in ipairs({ "listen", "plain_listen", "admin_listen" }) do
    local v = t[name]
    if v ~= nil then
      if type(v) ~= "string" or not v:match("^%[?[%w%.:%-]*%]?:%d+$") then
        fail(level, "edgews.configure: %s must be \"HOST:PORT\", got %s", name, tostring(v))
      end
      local port = tonumber(v:match(":(%d+)$"))
      if port > 65535 then fail(level, "edgews.configure: port %d out of range", port) end
      c[name] = v
    end
  end
  if t.tls ~= nil then
    local tls = t.tls
    if type(tls) ~= "table" or type(tls.cert) ~= "string" or type(tls.key) ~= "string" then
      fail(level, "edgews.configure: tls must be { cert = \"file.pem\", key = \"file.pem\" }")
    end
    for k in pairs(tls) do
      if k ~= "cert" and k ~= "key" then fail(level, "edgews.configure: tls: unknown field '%s'", tostring(k)) end
    end
    c.tls = { cert = tls.cert, key = tls.key }
  end
  c.workers = check_number(level, t, "workers", 1, 256, true)
  if t.log_level ~= nil and not log_levels[t.log_level] then
    fail(level, "edgews.configure: log_level must be debug, info, warn, error or off")
  end
  c.log_level = t.log_level
  c.drain_timeout = check_number(level, t, "drain_timeout", 0, 3600, false)
  c.handshake_timeout = check_number(level, t, "handshake_timeout", 0.01, 3600, false)
  c.close_timeout = check_number(level, t, "close_timeout", 0.01, 3600, false)
  c.max_head_size = check_number(level, t, "max_head_size", 256, 1024 * 1024, true)
  c.max_headers = check_number(level, t, "max_headers", 1, 64, true)
  c.backlog = check_number(level, t, "backlog", 1, 65535, true)
  c.handler_timeout = check_timeout(level, t, "edgews.configure")
  local mem = t.max_lua_memory
  if mem ~= nil and (not is_int(mem) or (mem ~= 0 and (mem < 8 * 1048576 or mem > 2 ^ 50))) then
    fail(level, "edgews.configure: max_lua_memory must be 0 (no limit) or a number of bytes "
      .. "in [8 MiB, 2^50], got %s", tostring(mem))
  end
  c.max_lua_memory = mem
  if t.watch ~= nil and type(t.watch) ~= "boolean" then
    fail(level, "edgews.configure: watch must be a boolean")
  end
  c.watch = t.watch
  if t.reuse_port ~= nil and type(t.reuse_port) ~= "boolean" then
    fail(level, "edgews.configure: reuse_port must be a boolean")
  end
  c.reuse_port = t.reuse_port
  c.max_message_memory = check_number(level, t, "max_message_memory", 0, 2 ^ 50, true)
  c.worker_inbox_limit = check_number(level, t, "worker_inbox_limit", 16, 2 ^ 31, true)
  if t.data_dir ~= nil and (type(t.data_dir) ~= "string" or t.data_dir == "") then
    fail(level, "edgews.configure: data_dir must be a directory path")
  end
  c.data_dir = t.data_dir
  local function section(name, fields)
    local v = t[name]
    if v == nil then return nil end
    if type(v) ~= "table" then fail(level + 1, "edgews.configure: %s must be a table", name) end
    for k in pairs(v) do
      if not fields[k] then fail(level + 1, "edgews.configure: %s: unknown field '%s'", name, tostring(k)) end
    end
    return v
  end
  local ps = section("pubsub", { persistence = true, max_queue_size = true, message_ttl = true,
                                 max_recover = true })
  if ps then
    if ps.persistence ~= nil and type(ps.persistence) ~= "boolean" then
      fail(level, "edgews.configure: pubsub.persistence must be a boolean")
    end
    c.pubsub = {
      persistence = ps.persistence,
      max_queue_size = check_number(level, ps, "max_queue_size", 0, 2 ^ 31 - 1, true),
      message_ttl = check_number(level, ps, "message_ttl", 0, 2 ^ 31 - 1, true),
      max_recover = check_number(level, ps, "max_recover", 0, 1e8, true),
    }
  end
  local ns = section("notifications", { max_per_user = true, ttl = true })
  if ns then
    c.notifications = {
      max_per_user = check_number(level, ns, "max_per_user", 0, 2 ^ 31 - 1, true),
      ttl = check_number(level, ns, "ttl", 0, 2 ^ 31 - 1, true),
    }
  end
  return c
end

-- Close codes an application may send (RFC 6455 7.4): 1000-1003, 1007-1014 and
-- 3000-4999.
function _M.valid_close_code(code)
  return is_int(code) and ((code >= 1000 and code <= 1003) or (code >= 1007 and code <= 1014)
    or (code >= 3000 and code <= 4999))
end

return _M
