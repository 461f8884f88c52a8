-- edgews.pipeline: what happens to a message of an app that uses the application
-- layer (auth = ..., rate_limit = ..., app:use, app:route). In order:
--
--   1. authentication gate: with auth in "message" mode, the first message must be
--      {"type":"auth", <token|key>: ...}; until it succeeds nothing else runs (and
--      the core holds the connection to auth.max_message_size per message).
--   2. rate limits: token buckets per connection, per user and per IP, for
--      messages and bytes; over the limit answers {"type":"error","error":
--      "rate_limited"} or closes with 1008, as configured. A refresh counts too.
--   2b. {"type":"auth:refresh","token":...} renews a JWT user (both modes; same
--      user id only).
--   3. JSON decode (when the app has routes): invalid input gets one error reply
--      with a stable code (edgews.router) and the connection stays open.
--   4. middleware chain: fn(socket, msg, ctx, next), msg = { data =, is_binary =,
--      type =, body = <decoded table> }, ctx = socket.ctx. When the route's handler
--      never reads its body (edgews.router: r:peek), the text is only checked in 3
--      and msg.body is built the first time something reads it (msg's metatable).
--   5. the route's handler (socket, body, ctx) or, without routes, the app's
--      "message" handler (socket, data, is_binary).
-- Errors raised in 4 and 5 are logged with file:line, passed to the app's error
-- handler and answered with {"type":"error","error":"handler_error"}; the
-- connection stays open (unlike a plain "message" handler, whose error closes it
-- with 1011).
--
-- Close codes (documented in the README): 4401 authentication failed or
-- required, 4408 no authentication in time, 4403 token expired, 4429 too many
-- connections for the user, 1008 rate limit (action = "close"), 1009 a first
-- message over max_json_size.
--
-- Deadlines (the first-message timeout, a token's exp + leeway) are kept by the
-- core on the worker's timer wheel (core.auth_deadline), which closes with 4408 or
-- 4403 itself: no Lua timer per connection, any length, and a refresh moves it.

local core = require "edgews.core"
local socket_mod = require "edgews.socket"
local workers = require "edgews.workers"
local router_mod = require "edgews.router"
local ratelimit = require "edgews.ratelimit"
local notifications = require "edgews.notifications"
local cjson = require "cjson.safe"

local type, pairs, ipairs, tostring, tonumber, xpcall, error, setmetatable =
  type, pairs, ipairs, tostring, tonumber, xpcall, error, setmetatable
local traceback = debug.traceback
local string_find = string.find

local _M = {}

local CLOSE_AUTH_FAILED, CLOSE_AUTH_TIMEOUT, CLOSE_TOKEN_EXPIRED, CLOSE_USER_LIMIT =
  4401, 4408, 4403, 4429
_M.CLOSE_AUTH_FAILED, _M.CLOSE_AUTH_TIMEOUT = CLOSE_AUTH_FAILED, CLOSE_AUTH_TIMEOUT
_M.CLOSE_TOKEN_EXPIRED, _M.CLOSE_USER_LIMIT = CLOSE_TOKEN_EXPIRED, CLOSE_USER_LIMIT

local function reply_error(socket, code, message, details, id)
  socket:send(router_mod.error_message(code, message, details, id))
end
_M.reply_error = reply_error

-- The router's error replies (missing_type, unknown_type, validation_failed), counted
-- by code in /metrics (edgews_router_errors_total{code=...}).
local function reply_router_error(socket, code, message, details, id)
  core.count("router_errors", code)
  return reply_error(socket, code, message, details, id)
end

local function first_line(s) return (tostring(s):match("^[^\n]*")) end

-- ---------------------------------------------------------------- rate limits

local dims = { connection = true, user = true, ip = true }

--- Validates and normalises a rate_limit table:
--   { messages = { rate =, burst = }, bytes = { rate =, burst = },
--     per = "connection" | "user" | "ip" | { ... }, action = "error" | "close" }
function _M.rate_limit_config(t, level)
  level = (level or 1) + 1
  if type(t) ~= "table" then error("rate_limit must be a table", level) end
  local c = { action = t.action or "error", per = {}, limits = {} }
  if c.action ~= "error" and c.action ~= "close" then
    error("rate_limit.action must be \"error\" or \"close\"", level)
  end
  local per = t.per or "connection"
  if type(per) == "string" then per = { per } end
  for _, p in ipairs(per) do
    if not dims[p] then error("rate_limit.per: unknown '" .. tostring(p) .. "' (connection, user, ip)", level) end
    c.per[#c.per + 1] = p
  end
  for _, what in ipairs({ "messages", "bytes" }) do
    local l = t[what]
    if l ~= nil then
      if type(l) ~= "table" or type(l.rate) ~= "number" or l.rate <= 0 then
        error("rate_limit." .. what .. " must be { rate = n > 0, burst = n }", level)
      end
      local burst = l.burst or l.rate
      if type(burst) ~= "number" or burst < 1 then error("rate_limit." .. what .. ".burst must be >= 1", level) end
      c.limits[#c.limits + 1] = { what = what, rate = l.rate, burst = burst }
    end
  end
  if #c.limits == 0 then error("rate_limit needs messages = {...} and/or bytes = {...}", level) end
  for k in pairs(t) do
    if k ~= "messages" and k ~= "bytes" and k ~= "per" and k ~= "action" then
      error("rate_limit: unknown field '" .. tostring(k) .. "'", level)
    end
  end
  return c
end

-- Per-connection buckets live on this worker (a connection never moves); per
-- user and per IP they are shared by all workers (core.take).
local local_limiters = setmetatable({}, { __mode = "k" })

local function limiter_for(cfg, lim)
  local key = cfg
  local byl = local_limiters[key]
  if not byl then byl = {}; local_limiters[key] = byl end
  local l = byl[lim]
  if not l then
    l = ratelimit.new { rate = lim.rate, burst = lim.burst, now = core.now }
    byl[lim] = l
  end
  return l
end

-- -> true, or false after answering / closing (the answer carries `id`, the
-- request's id when it is known)
local function within_limits(cfg, scope, socket, data, id)
  for _, lim in ipairs(cfg.limits) do
    local cost = lim.what == "bytes" and #data or 1
    for _, p in ipairs(cfg.per) do
      local ok
      if p == "connection" then
        ok = limiter_for(cfg, lim):take(socket.id, cost)
      else
        local who
        if p == "user" then
          local u = socket.ctx.user
          who = u and u.id ~= nil and tostring(u.id)
        else
          who = socket:remote_addr()
        end
        if who then
          ok = core.take(scope .. "\0" .. p .. "\0" .. lim.what .. "\0" .. who, lim.rate, lim.burst, cost)
        else
          ok = true
        end
      end
      if not ok then
        core.count("rate_limited")
        if cfg.action == "close" then
          socket:close(1008, "rate limit exceeded")
        else
          reply_error(socket, "rate_limited", "rate limit exceeded (" .. lim.what .. " per " .. p .. ")",
            nil, id)
        end
        return false
      end
    end
  end
  return true
end

-- ------------------------------------------------------------- authentication

-- Sets the connection's authentication deadline in the core (see core.auth_deadline).
-- A deadline that cannot be kept (out of memory) must not leave the connection
-- authenticated forever: it is closed with 1011 instead.
local function set_deadline(socket, kind, t)
  local c = socket._c
  if not c then return end
  local ok, code = core.auth_deadline(c, kind, t)
  if not ok and socket_mod.error_name(code) ~= "closed" then
    socket:close(1011, "cannot keep the authentication deadline")
  end
end

-- The connection's expiry: exp + the strategy's leeway, on the core's timer wheel
-- (replacing an earlier one; no exp: none).
local function expire_later(app, socket, user)
  local exp = type(user) == "table" and tonumber(user.exp)
  if exp then
    set_deadline(socket, "expiry", exp + (app._auth.leeway or 0))
  else
    set_deadline(socket, nil)
  end
end
_M.expire_later = expire_later

-- Registers the socket for its user (edgews.user_sockets); a socket of an app
-- with `notifications = true` is then sent the user's pending notifications.
-- The pending ones wait for release_notifications: after the open handler (or the
-- auth:ok reply), so the app's own first message goes out first.
local function register_user(app, socket, user)
  local uid = workers.add_user(socket, user)
  if uid and app.config.notifications then notifications.hold(socket, uid) end
end

--- After the open handler ran (edgews.dispatch): the held notifications go out.
function _M.release_notifications(socket)
  if socket.ctx._notif_hold then notifications.release(socket) end
end

--- Called when a socket of an app with auth opens.
function _M.on_open(app, socket)
  local strat = app._auth
  if strat.mode == "upgrade" then
    register_user(app, socket, socket.ctx.user)
    expire_later(app, socket, socket.ctx.user)
    return
  end
  set_deadline(socket, "timeout", strat.timeout)
end

function _M.on_close(socket)
  workers.remove_user(socket)
end

local function accept_user(app, socket, user)
  if user.id ~= nil and socket._c then
    local ok = core.count_user(socket._c, tostring(user.id))
    if not ok then
      socket:close(CLOSE_USER_LIMIT, "too many connections for this user")
      return false
    end
  end
  socket.ctx.user = user
  if socket._c then core.authenticated(socket._c) end
  register_user(app, socket, user)
  expire_later(app, socket, user)
  return true
end

-- The first message of a "message"-mode socket. -> nothing (handled)
local function first_message(app, socket, data)
  local strat = app._auth
  if #data > (app.config.max_json_size or router_mod.DEFAULT_MAX_SIZE) then
    core.count("auth_failures")
    socket:close(1009, "authentication message too large")
    return
  end
  local msg = cjson.decode(data)
  local cred = type(msg) == "table" and msg.type == "auth" and msg[strat.field]
  if not cred then
    core.count("auth_failures")
    socket:close(CLOSE_AUTH_FAILED, "authentication required")
    return
  end
  local user, err = strat.verify(cred)
  if not user then
    core.count("auth_failures")
    socket:close(CLOSE_AUTH_FAILED, "authentication failed: " .. tostring(err))
    return
  end
  if socket:is_open() and accept_user(app, socket, user) then
    socket:send(cjson.encode({ type = "auth:ok", user = user.id }))
  end
  _M.release_notifications(socket)
end

-- {"type":"auth:refresh","token":...}: -> true when it was one (handled)
local function maybe_refresh(app, socket, data)
  if not string_find(data, "auth:refresh", 1, true) then return false end
  local msg = cjson.decode(data)
  if type(msg) ~= "table" or msg.type ~= "auth:refresh" then return false end
  local strat = app._auth
  local user, err = nil, "refresh is not supported"
  if strat.refresh and strat.verify then user, err = strat.verify(msg.token) end
  local old = socket.ctx.user
  -- Same user only: the connection is registered (user_sockets, per-user limits)
  -- under its id. A connection without an id cannot become someone.
  if user and not (old and old.id ~= nil and tostring(user.id) == tostring(old.id)) then
    user, err = nil, "token is for another user"
  end
  if not user then
    core.count("auth_failures")
    reply_error(socket, "auth_failed", "token refresh failed: " .. tostring(err), nil, msg.id)
    return true
  end
  socket.ctx.user = user
  expire_later(app, socket, user)
  socket:send(cjson.encode({ type = "auth:refreshed", exp = user.exp, id = msg.id }))
  return true
end

-- ----------------------------------------------------------------- the pipeline

local function handler_error(app, socket, err, id)
  core.handler_error(socket._c, "route", tostring(err), true)
  local h = app._on_error
  if h then
    local ok, e2 = xpcall(h, traceback, socket, first_line(err))
    if not ok then core.handler_error(false, "error", tostring(e2)) end
  end
  reply_error(socket, "handler_error", "the handler failed", nil, id)
end

-- settled: called when a message's middlewares and route have returned, as a place
-- for LuaJIT's traces to end. A route handler that calls into C (socket:send, the
-- JSON decoder) continues in a stitched trace, which records the way back up: the
-- middlewares' unwinding, the chain's bookkeeping, run's return. LuaJIT 2.1 cannot
-- record a return into a pcall frame that the trace did not enter ("NYI: return to
-- lower frame"), so that trace was aborted and the whole way back ran in the
-- interpreter for every message. Without the xpcall in the message function the
-- same abort happens at the dispatcher's xpcall (measured), so the xpcall stays and
-- the trace ends before it: the recorder stops and links when it reaches a function
-- that has a trace of its own ending in a C call (one that ends in a plain return
-- is inlined instead). settled's is made when this module loads, by calling it
-- from the interpreter until it is hot; its one C call is os.time (no effects;
-- time(2) is a vDSO read). Without the JIT (or after jit.flush) it is only a
-- call. bench/PROFILE.md has the measurements.
local os_time = os.time
local function settled() os_time() end
if jit then
  local function warm() for _ = 1, 300 do settled() end end
  jit.off(warm)
  warm()
end

-- The key of a message's type in a msg whose body is not built yet (r:peek).
local UNBUILT = setmetatable({}, { __tostring = function() return "edgews.pipeline.UNBUILT" end })

--- Builds the message function of an app (nil when it needs none).
function _M.build(app)
  local router, chain, rl, strat = app._router, app._chain, app._rate_limit, app._auth
  if not (router or chain or rl or strat) then return nil end
  local raw_handler = app._raw_message
  local scope = app.path

  -- msg.body of a message routed without it: decoded from msg.data when first read
  -- (r:peek said the decoder builds it), then a plain field. A middleware that put
  -- something else in msg.data first gets that decoded, or this error.
  local unbuilt_mt = {
    __index = function(m, k)
      if k ~= "body" then return nil end
      local body, _, message = router:decode(m.data, m.is_binary)
      if not body then error("msg.body: msg.data is not a JSON object any more: " .. tostring(message), 2) end
      rawset(m, "body", body)
      return body
    end,
  }

  local function final(socket, msg, ctx)
    if router then
      local name = rawget(msg, UNBUILT)
      -- (a route with a rate limit is never peeked: its reply carries the id)
      if name and rawget(msg, "body") == nil and router:dispatch_unbuilt(socket, name, ctx) then
        return true
      end
      local body = msg.body
      local _, opts = router:get(body.type)
      local route_rl = opts and opts._rate_limit
      if route_rl then
        local id = body.id
        if type(id) ~= "string" and type(id) ~= "number" then id = nil end
        if not within_limits(route_rl, scope .. "\0" .. body.type, socket, msg.data, id) then return end
      end
      return router:dispatch_decoded(socket, body, ctx, reply_router_error)
    elseif raw_handler then
      return raw_handler(socket, msg.data, msg.is_binary)
    end
  end

  -- Not tail calls: the way back from the route handler must pass through settled
  -- (see above) before run returns into xpcall. Also for a message whose body was
  -- never built: with other routes' traffic its way back runs in side traces that
  -- abort there too (applayer_jit_spec); bench/PROFILE.md has what it costs.
  local function run(socket, msg)
    if chain then chain:run(socket, msg, socket.ctx, final) else final(socket, msg, socket.ctx) end
    settled()
  end

  return function(socket, data, is_binary)
    if strat and strat.mode == "message" and not socket.ctx.user then
      return first_message(app, socket, data)
    end
    -- Before anything is parsed: a refresh (a JSON decode and an HMAC) counts too.
    if rl and not within_limits(rl, scope, socket, data) then return end
    -- A message peek names is certainly of that type (a route's), not a refresh.
    local name = router and router:peek(data, is_binary)
    if strat and not name and maybe_refresh(app, socket, data) then return end
    local msg
    if name then
      msg = setmetatable({ data = data, is_binary = is_binary, type = name, [UNBUILT] = name },
        unbuilt_mt)
    else
      -- all four fields from the start: adding two later would rehash the table
      msg = { data = data, is_binary = is_binary, type = false, body = false }
    end
    if router and not name then
      local body, code, message, details = router:decode(data, is_binary)
      if not body then
        core.count("router_errors", code)
        return reply_error(socket, code, message, details)
      end
      msg.body, msg.type = body, body.type
    end
    local ok, err = xpcall(run, traceback, socket, msg)
    if not ok then
      -- the request's id (building the body of an unbuilt msg here, without raising)
      local body = rawget(msg, "body")
      if body == nil and rawget(msg, UNBUILT) then body = router:decode(msg.data, msg.is_binary) end
      local id = body and body.id
      handler_error(app, socket, err, (type(id) == "string" or type(id) == "number") and id or nil)
    end
  end
end

return _M
