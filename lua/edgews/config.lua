-- edgews.config: validation of the tables given to edgews.app{} and
-- edgews.configure{}. Pure Lua (no C), so it is unit-tested on its own.
--
-- Every function returns a new, normalised table (durations in seconds, sizes in
-- bytes) or raises an error naming the bad field. The caller passes the error
-- level so the message points at the user's script line, not at this file.

local type, pairs, ipairs, tostring, tonumber = type, pairs, ipairs, tostring, tonumber
local math_floor, math_max = math.floor, math.max
local string_format = string.format

local _M = {}

local function fail(level, fmt, ...)
  error(string_format(fmt, ...), level + 1)
end

-- A value as a message shows it: numbers as themselves (with `typed`, where a number
-- is not what was asked for: "number 3"), anything else with its type first, so
-- idle_timeout = "300" reads `got string "300"`, not `got 300`.
local function show(v, typed)
  local t = type(v)
  if t == "number" then return typed and "number " .. tostring(v) or tostring(v) end
  if t == "string" then
    if #v > 40 then v = v:sub(1, 40) .. "..." end
    return string_format("string %q", v):gsub("\\\n", "\\n")
  end
  if t == "boolean" then return "boolean " .. tostring(v) end
  if t == "nil" then return "nil" end
  return t -- a table or function: its address says nothing
end
_M.show = show

-- Edit distance (optimal string alignment: a swap of two neighbours costs 1).
local function distance(a, b)
  local la, lb = #a, #b
  if la == 0 then return lb end
  if lb == 0 then return la end
  local prev2, prev, cur = {}, {}, {}
  for j = 0, lb do prev[j] = j end
  for i = 1, la do
    cur[0] = i
    local ca = a:byte(i)
    for j = 1, lb do
      local cb = b:byte(j)
      local d = prev[j - 1] + (ca == cb and 0 or 1)
      if prev[j] + 1 < d then d = prev[j] + 1 end
      if cur[j - 1] + 1 < d then d = cur[j - 1] + 1 end
      if i > 1 and j > 1 and ca == b:byte(j - 1) and a:byte(i - 1) == cb and prev2[j - 2] + 1 < d then
        d = prev2[j - 2] + 1
      end
      cur[j] = d
    end
    prev2, prev, cur = prev, cur, prev2
  end
  return prev[lb]
end

-- The known name closest to a misspelled one, or nil when none is close: at most 2
-- edits (a quarter of the name's length for long names), ties by name order.
local function closest(name, known)
  if type(name) ~= "string" then return nil end
  local best, best_d
  local limit = math_max(2, math_floor(#name / 4))
  for k in pairs(known) do
    local d = distance(name, k)
    if d <= limit and (not best_d or d < best_d or (d == best_d and k < best)) then
      best, best_d = k, d
    end
  end
  if best or #name < 4 then return best end
  -- a name cut short or with something added ("max_queue" for "max_queue_size")
  for k in pairs(known) do
    if k:sub(1, #name) == name or name:sub(1, #k) == k then
      if not best or #k < #best or (#k == #best and k < best) then best = k end
    end
  end
  return best
end

-- Raises for the first key of t that is not in known: "WHO: unknown field 'x'"
-- and, when a known name is close, " (did you mean 'y'?)". Keys are looked at in
-- sorted order, so the message does not depend on table iteration order.
local function check_fields(level, t, known, who)
  local bad
  for k in pairs(t) do
    if not known[k] and (bad == nil or tostring(k) < tostring(bad)) then bad = k end
  end
  if bad == nil then return end
  local hint = closest(bad, known)
  fail(level + 1, "%s: unknown field '%s'%s", who, tostring(bad),
    hint and string_format(" (did you mean '%s'?)", hint) or "")
end
_M.closest = closest

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
  engine = true,
}
local window_kbs = { [1] = true, [2] = true, [4] = true, [8] = true, [16] = true, [32] = true }

-- who: the prefix of the message ("edgews.app: ", SRV_PS)
local function check_number(level, t, name, min, max, integer, who)
  local v = t[name]
  if v == nil then return nil end
  if type(v) ~= "number" or v ~= v or v < min or v > max or (integer and not is_int(v)) then
    fail(level + 1, "%s%s must be a%s number in [%s, %s], got %s", who, name,
      integer and "n integer" or "", tostring(min), tostring(max), show(v))
  end
  return v
end

local DAY = 86400
-- prefixes of check_number's messages
local APP, APP_HB, APP_Z = "edgews.app: ", "edgews.app: heartbeat.", "edgews.app: compression."
local SRV, SRV_PS, SRV_NS = "edgews.configure: ", "edgews.configure: pubsub.", "edgews.configure: notifications."

-- handler_timeout: seconds a handler run may take; 0 = no limit. The watchdog polls
-- a few times per budget, at most every 10 ms, so budgets under 10 ms are refused.
local function check_timeout(level, t, who)
  local v = t.handler_timeout
  if v == nil then return nil end
  if type(v) ~= "number" or v ~= v or v < 0 or v > DAY or (v > 0 and v < 0.01) then
    fail(level + 1, "%s: handler_timeout must be 0 (no limit) or a number of seconds in [0.01, %d], got %s",
      who, DAY, show(v))
  end
  return v
end

-- edgews.app{...}: returns the normalised app configuration.
function _M.app(t, level)
  level = (level or 1) + 1
  if type(t) ~= "table" then fail(level, "edgews.app expects a table, got %s", type(t)) end
  check_fields(level, t, app_fields, "edgews.app")
  local path = t.path
  if type(path) ~= "string" or path:sub(1, 1) ~= "/" or path:find("[%s%?#%c]") then
    fail(level, "edgews.app: path must be a string starting with '/' (no spaces, '?' or '#'), got %s",
      show(path, true))
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
  c.max_message_size = check_number(level, t, "max_message_size", 0, 2 ^ 31 - 1, true, APP) or 1024 * 1024
  c.max_frame_size = check_number(level, t, "max_frame_size", 0, 2 ^ 31 - 1, true, APP) or c.max_message_size
  c.idle_timeout = check_number(level, t, "idle_timeout", 0, DAY, false, APP) or 0
  c.max_buffered = check_number(level, t, "max_buffered", 0, 2 ^ 31 - 1, true, APP) or 4 * 1024 * 1024
  local hb = t.heartbeat
  if hb == false then
    c.heartbeat_interval, c.heartbeat_timeout = 0, 0
  elseif hb == nil then
    c.heartbeat_interval, c.heartbeat_timeout = 30, 10
  elseif type(hb) == "table" then
    check_fields(level, hb, { interval = true, timeout = true }, "edgews.app: heartbeat")
    c.heartbeat_interval = check_number(level, hb, "interval", 0, DAY, false, APP_HB) or 30
    c.heartbeat_timeout = check_number(level, hb, "timeout", 0.01, DAY, false, APP_HB) or 10
  else
    fail(level, "edgews.app: heartbeat must be a table {interval=, timeout=} or false, got %s", show(hb))
  end
  local bp = t.on_backpressure or "close"
  if bp ~= "close" and bp ~= "drop" then
    fail(level, "edgews.app: on_backpressure must be \"close\" or \"drop\", got %s", show(bp))
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
  c.max_connections = check_number(level, t, "max_connections", 0, 2 ^ 31 - 1, true, APP) or 0
  c.max_connections_per_ip = check_number(level, t, "max_connections_per_ip", 0, 2 ^ 31 - 1, true, APP) or 0
  c.max_connections_per_user = check_number(level, t, "max_connections_per_user", 0, 2 ^ 31 - 1, true, APP) or 0
  c.max_json_size = check_number(level, t, "max_json_size", 1, 2 ^ 31 - 1, true, APP)
  if t.notifications ~= nil and type(t.notifications) ~= "boolean" then
    fail(level, "edgews.app: notifications must be a boolean, got %s", show(t.notifications))
  end
  c.notifications = t.notifications
  c.handler_timeout = check_timeout(level, t, "edgews.app")
  local z = t.compression
  if z == false or z == nil then
    c.compression = { mode = "off" }
  elseif type(z) == "table" then
    check_fields(level, z, compression_fields, "edgews.app: compression")
    local mode = z.mode or "shared"
    if mode ~= "shared" and mode ~= "dedicated" and mode ~= "off" then
      fail(level, "edgews.app: compression.mode must be \"shared\", \"dedicated\" or \"off\"")
    end
    local zc = { mode = mode }
    zc.level = check_number(level, z, "level", 0, 9, true, APP_Z) or 1
    zc.threshold = check_number(level, z, "threshold", 0, 2 ^ 31 - 1, true, APP_Z) or 64
    zc.window_kb = check_number(level, z, "window_kb", 1, 32, true, APP_Z) or 32
    if not window_kbs[zc.window_kb] then
      fail(level, "edgews.app: compression.window_kb must be 1, 2, 4, 8, 16 or 32")
    end
    if z.client_no_context_takeover ~= nil then
      if type(z.client_no_context_takeover) ~= "boolean" then
        fail(level, "edgews.app: compression.client_no_context_takeover must be a boolean")
      end
      zc.client_no_context_takeover = z.client_no_context_takeover
    end
    if z.engine ~= nil then
      if z.engine ~= "zlib" and z.engine ~= "libdeflate" then
        fail(level, "edgews.app: compression.engine must be \"zlib\" or \"libdeflate\", got %s",
          show(z.engine))
      end
      if z.engine == "libdeflate" and mode ~= "shared" then
        fail(level, "edgews.app: compression.engine = \"libdeflate\" needs mode = \"shared\", got mode = \"%s\"", mode)
      end
      zc.engine = z.engine
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
  handler_timeout = true, max_lua_memory = true, redis = true,
}
local log_levels = { debug = true, info = true, warn = true, error = true, off = true }

-- edgews.configure{...}: returns the normalised server configuration.
function _M.server(t, level)
  level = (level or 1) + 1
  if type(t) ~= "table" then fail(level, "edgews.configure expects a table, got %s", type(t)) end
  check_fields(level, t, server_fields, "edgews.configure")
  local c = {}
  for _, name in ipairs({ "metrics", "health" }) do
    if t[name] ~= nil and type(t[name]) ~= "boolean" then
      fail(level, "edgews.configure: %s must be a boolean, got %s", name, show(t[name]))
    end
    c[name] = t[name]
  end
  for _, name in ipairs({ "listen", "plain_listen", "admin_listen" }) do
    local v = t[name]
    if v ~= nil then
      if type(v) ~= "string" or not v:match("^%[?[%w%.:%-]*%]?:%d+$") then
        fail(level, "edgews.configure: %s must be \"HOST:PORT\", got %s", name, show(v))
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
    check_fields(level, tls, { cert = true, key = true }, "edgews.configure: tls")
    c.tls = { cert = tls.cert, key = tls.key }
  end
  c.workers = check_number(level, t, "workers", 1, 256, true, SRV)
  if t.log_level ~= nil and not log_levels[t.log_level] then
    fail(level, "edgews.configure: log_level must be debug, info, warn, error or off, got %s",
      show(t.log_level))
  end
  c.log_level = t.log_level
  c.drain_timeout = check_number(level, t, "drain_timeout", 0, 3600, false, SRV)
  c.handshake_timeout = check_number(level, t, "handshake_timeout", 0.01, 3600, false, SRV)
  c.close_timeout = check_number(level, t, "close_timeout", 0.01, 3600, false, SRV)
  c.max_head_size = check_number(level, t, "max_head_size", 256, 1024 * 1024, true, SRV)
  c.max_headers = check_number(level, t, "max_headers", 1, 64, true, SRV)
  c.backlog = check_number(level, t, "backlog", 1, 65535, true, SRV)
  c.handler_timeout = check_timeout(level, t, "edgews.configure")
  local mem = t.max_lua_memory
  if mem ~= nil and (not is_int(mem) or (mem ~= 0 and (mem < 8 * 1048576 or mem > 2 ^ 50))) then
    fail(level, "edgews.configure: max_lua_memory must be 0 (no limit) or a number of bytes "
      .. "in [8 MiB, 2^50], got %s", show(mem))
  end
  c.max_lua_memory = mem
  if t.watch ~= nil and type(t.watch) ~= "boolean" then
    fail(level, "edgews.configure: watch must be a boolean, got %s", show(t.watch))
  end
  c.watch = t.watch
  if t.reuse_port ~= nil and type(t.reuse_port) ~= "boolean" then
    fail(level, "edgews.configure: reuse_port must be a boolean, got %s", show(t.reuse_port))
  end
  c.reuse_port = t.reuse_port
  c.max_message_memory = check_number(level, t, "max_message_memory", 0, 2 ^ 50, true, SRV)
  c.worker_inbox_limit = check_number(level, t, "worker_inbox_limit", 16, 2 ^ 31, true, SRV)
  if t.data_dir ~= nil and (type(t.data_dir) ~= "string" or t.data_dir == "") then
    fail(level, "edgews.configure: data_dir must be a directory path, got %s", show(t.data_dir))
  end
  c.data_dir = t.data_dir
  -- redis = "URL" or { "URL", ... }: the URLs themselves are checked by the C side.
  if t.redis ~= nil then
    local ok = type(t.redis) == "string" and t.redis ~= ""
    if type(t.redis) == "table" then
      ok = #t.redis >= 1
      for i = 1, #t.redis do
        if type(t.redis[i]) ~= "string" or t.redis[i] == "" then ok = false end
      end
    end
    if not ok then
      fail(level, "edgews.configure: redis must be a URL or a list of URLs, got %s", show(t.redis))
    end
  end
  c.redis = t.redis
  local function section(name, fields)
    local v = t[name]
    if v == nil then return nil end
    if type(v) ~= "table" then
      fail(level + 1, "edgews.configure: %s must be a table, got %s", name, show(v))
    end
    check_fields(level + 1, v, fields, "edgews.configure: " .. name)
    return v
  end
  local ps = section("pubsub", { persistence = true, max_queue_size = true, message_ttl = true,
                                 max_recover = true })
  if ps then
    if ps.persistence ~= nil and type(ps.persistence) ~= "boolean" then
      fail(level, "edgews.configure: pubsub.persistence must be a boolean, got %s", show(ps.persistence))
    end
    c.pubsub = {
      persistence = ps.persistence,
      max_queue_size = check_number(level, ps, "max_queue_size", 0, 2 ^ 31 - 1, true, SRV_PS),
      message_ttl = check_number(level, ps, "message_ttl", 0, 2 ^ 31 - 1, true, SRV_PS),
      max_recover = check_number(level, ps, "max_recover", 0, 1e8, true, SRV_PS),
    }
  end
  local ns = section("notifications", { max_per_user = true, ttl = true })
  if ns then
    c.notifications = {
      max_per_user = check_number(level, ns, "max_per_user", 0, 2 ^ 31 - 1, true, SRV_NS),
      ttl = check_number(level, ns, "ttl", 0, 2 ^ 31 - 1, true, SRV_NS),
    }
  end
  return c
end

local static_fields = { cache_control = true, index = true }

-- edgews.static(prefix, dir [, opts]): returns { prefix =, dir =, cache_control =,
-- index = } (cache_control / index nil for "none"). The directory is resolved by the
-- caller (the loader: relative to the script's directory, and it must exist).
function _M.static(prefix, dir, opts, level)
  level = (level or 1) + 1
  -- A prefix is a plain path: no '%' (it is matched against the path as sent), no
  -- empty, "." or ".." segment, no spaces, '?', '#' or control characters.
  if type(prefix) ~= "string" or prefix:sub(1, 1) ~= "/" or #prefix > 256
    or prefix:find("[^%w%-%._~!$&'()*+,;=:@/]") or prefix:find("//", 1, true)
    or ("/" .. prefix .. "/"):find("/%.%.?/") then
    fail(level, "edgews.static: prefix must be a path starting with '/' (letters, digits and "
      .. "-._~!$&'()*+,;=:@ between single '/'s, no '.' or '..' segment, at most 256 bytes), got %s",
      show(prefix, true))
  end
  if prefix ~= "/" then prefix = prefix:gsub("/$", "") end
  if type(dir) ~= "string" or dir == "" or dir:find("%z") then
    fail(level, "edgews.static: dir must be a directory path (relative to the script's directory), got %s",
      show(dir, true))
  end
  local c = { prefix = prefix, dir = dir, cache_control = "no-cache", index = "index.html" }
  if opts == nil then return c end
  if type(opts) ~= "table" then
    fail(level, "edgews.static: opts must be a table { cache_control =, index = }, got %s", show(opts, true))
  end
  check_fields(level, opts, static_fields, "edgews.static")
  local cc = opts.cache_control
  if cc == false then
    c.cache_control = nil
  elseif cc ~= nil then
    if type(cc) ~= "string" or cc == "" or #cc > 256 or cc:find("[%c\128-\255]") then
      fail(level, "edgews.static: cache_control must be a header value (visible ASCII and spaces, "
        .. "at most 256 bytes) or false for none, got %s", show(cc))
    end
    c.cache_control = cc
  end
  local index = opts.index
  if index == false then
    c.index = nil
  elseif index ~= nil then
    if type(index) ~= "string" or index == "" or #index > 255 or index:find("[/%c\\]")
      or index:sub(1, 1) == "." then
      fail(level, "edgews.static: index must be a file name (no '/', not starting with '.') or false "
        .. "for none, got %s", show(index))
    end
    c.index = index
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
