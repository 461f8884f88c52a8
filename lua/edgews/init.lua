-- edgews: the Lua API of edgews-lua.
--
-- A script defines apps and the server calls their handlers:
--
--   local edgews = require "edgews"
--   local app = edgews.app { path = "/echo" }
--   app:on("message", function(socket, data, is_binary)
--     socket:send(data, is_binary)
--   end)
--
-- Design. The C core owns sockets, frames and timers; this module owns the
-- apps. Each worker thread runs the script in its own VM. The core calls four
-- dispatch functions below (open, message, close, error), each once per event
-- through one protected call; they find the app by the socket's path in the
-- current version of the script, so after a hot reload the next event on an
-- existing connection runs the new handlers while socket.ctx, which lives in the
-- socket table, survives. Loading is transactional: a script that fails to load
-- changes nothing (its half-registered apps and the modules it required are
-- discarded) and the error, with file:line, goes to the log.

local core = require "edgews.core"
local config = require "edgews.config"
local socket = require "edgews.socket"
local auth = require "edgews.auth"
local middleware = require "edgews.middleware"
local pipeline = require "edgews.pipeline"
local router = require "edgews.router"
local workers = require "edgews.workers"
local pubsub = require "edgews.pubsub"

local type, pairs, ipairs, error, tostring, select = type, pairs, ipairs, error, tostring, select
local xpcall, loadfile, setmetatable = xpcall, loadfile, setmetatable
local traceback, getinfo = debug.traceback, debug.getinfo
local string_format = string.format
local package_loaded = package.loaded

local _M = { _VERSION = "0.1.0" }

_M._Socket = socket.metatable
_M.Socket = socket.methods -- add methods here to extend every socket

-- path -> app, for every app of the current script version; apps that a reload
-- removed stay here so their open connections keep their handlers.
local apps = {}
workers.apps = apps
local loading -- while a script runs: { list = {...}, by_path = {...}, server = nil }

local App = {}
App.__index = App
local events = { open = "_on_open", message = "_on_message", close = "_on_close", error = "_on_error" }

--- app:on(event, handler) -> app
-- event: "open" (socket), "message" (socket, data, is_binary),
-- "close" (socket, code, reason), "error" (socket, err).
function App:on(event, fn)
  local field = events[event]
  if not field then
    error("app:on: unknown event '" .. tostring(event) .. "' (open, message, close, error)", 2)
  end
  if type(fn) ~= "function" then error("app:on: handler must be a function", 2) end
  if field == "_on_message" then field = "_raw_message" end
  self[field] = fn
  if field == "_raw_message" and not self._built then self._on_message = fn end
  return self
end

--- app:use(fn) -> app: a middleware fn(socket, msg, ctx, next) (see README)
function App:use(fn)
  if type(fn) ~= "function" then error("app:use: middleware must be a function(socket, msg, ctx, next)", 2) end
  self._chain = self._chain or middleware.new()
  self._chain:use(fn)
  return self
end

--- app:route(type, handler [, opts]) -> app: JSON messages {"type": type, ...} go to
-- handler(socket, body, ctx). opts.validate: a field schema (edgews.validate);
-- opts.rate_limit: limits for this type only.
function App:route(name, fn, opts)
  if not self._router then
    self._router = router.new { max_size = self.config.max_json_size, reply_error = pipeline.reply_error }
  end
  if opts and opts.rate_limit then
    local o = {}
    for k, v in pairs(opts) do o[k] = v end
    o._rate_limit = pipeline.rate_limit_config(o.rate_limit, 2)
    opts = o
  end
  self._router:route(name, fn, opts)
  return self
end

--- app:connection_count() -> open connections of this app on all workers
function App:connection_count()
  return core.connection_count(self.path)
end

--- app:close_all([code [, reason]]) -> number of sockets closed on this worker
-- Closes every socket of the app on every worker (others asynchronously).
function App:close_all(code, reason)
  code = code or 1001
  if not config.valid_close_code(code) then error("app:close_all: invalid close code " .. tostring(code), 2) end
  workers.close_all_others(self.path, code, reason)
  return self:_close_all_local(code, reason)
end

function App:_close_all_local(code, reason)
  local n = 0
  for _, s in ipairs(core.app_sockets(self.path)) do
    if s:close(code, reason) then n = n + 1 end
  end
  return n
end

-- Called once the script has loaded: the message path of the app.
function App:_finalize()
  self._built = true
  self._on_message = pipeline.build(self) or self._raw_message
end

--- app:sockets() -> list of this app's open sockets on this worker
function App:sockets()
  return core.app_sockets(self.path)
end

--- app:broadcast(data [, is_binary [, filter]]) -> number queued on this worker
-- Sends to every open socket of the app, on every worker, for which
-- filter(socket) is true (all when no filter). On each worker the frame is built,
-- and compressed, once. Other workers deliver asynchronously; the filter crosses
-- workers as bytecode with copies of its upvalues (see edgews.workers).
function App:broadcast(data, is_binary, filter)
  if type(data) ~= "string" then error("app:broadcast expects a string", 2) end
  if filter ~= nil and type(filter) ~= "function" then error("app:broadcast: filter must be a function", 2) end
  workers.broadcast_others(self.path, data, is_binary, filter, 2)
  return self:_broadcast_local(data, is_binary, filter)
end

-- This worker's part of a broadcast.
function App:_broadcast_local(data, is_binary, filter)
  local list = core.app_sockets(self.path)
  if filter then
    local kept, n = {}, 0
    for i = 1, #list do
      local s = list[i]
      if filter(s) then n = n + 1; kept[n] = s end
    end
    list = kept
  end
  return core.fanout(list, data, is_binary)
end

--- edgews.app{ path = "/x", ... } -> app   (see README for every field)
function _M.app(t)
  if not loading then error("edgews.app must be called while the script loads", 2) end
  local c = config.app(t, 2)
  if loading.by_path[c.path] then error("edgews.app: path " .. c.path .. " is defined twice", 2) end
  local app = setmetatable({ path = c.path, config = c }, App)
  if t.auth ~= nil then
    app._auth = auth.normalize(t.auth, 2)
    c.auth_before_upgrade = app._auth.mode == "upgrade"
    c.auth_timeout = app._auth.timeout
    c.token_protocol_prefix = app._auth.protocol_prefix -- never selected as the subprotocol
    -- until a first-message auth succeeds, the core holds messages to this size
    if app._auth.mode == "message" then c.auth_max_message_size = app._auth.max_message_size end
  end
  if t.rate_limit ~= nil then app._rate_limit = pipeline.rate_limit_config(t.rate_limit, 2) end
  loading.by_path[c.path] = app
  loading.list[#loading.list + 1] = app
  return app
end

--- edgews.configure{ listen=, workers=, log_level=, drain_timeout=, ... }
-- Server-wide settings; command-line flags override them. Read when the server
-- starts (changes on reload are ignored, except that they are validated).
function _M.configure(t)
  if not loading then error("edgews.configure must be called while the script loads", 2) end
  loading.server = config.server(t, 2)
  -- The rest of this load runs under the new budget (a script that needs long to load
  -- says so before it does).
  if loading.server.handler_timeout then core.set_run_budget(loading.server.handler_timeout) end
end

-- Called by the core (vm.c) to load or reload the script. -> true | nil, err
local baseline -- modules loaded before any script: never unloaded
function _M._load(path)
  if not baseline then
    baseline = {}
    for k in pairs(package_loaded) do baseline[k] = true end
  end
  -- Forget the script's own modules so `require` picks up their new versions;
  -- keep the old ones to put back if this version fails.
  local previous = {}
  for k, v in pairs(package_loaded) do
    if not baseline[k] then
      previous[k] = v
      package_loaded[k] = nil
    end
  end
  loading = { list = {}, by_path = {} }
  pubsub._begin_load()
  local fn, err = loadfile(path)
  local ok = fn ~= nil
  if ok then ok, err = xpcall(fn, traceback) end
  if ok and #loading.list == 0 then
    ok, err = false, path .. ": the script defines no app (call edgews.app{ path = ... })"
  end
  pubsub._end_load(ok)
  local new = loading
  loading = nil
  if not ok then
    for k in pairs(package_loaded) do
      if not baseline[k] then package_loaded[k] = nil end
    end
    for k, v in pairs(previous) do package_loaded[k] = v end
    return nil, tostring(err)
  end
  local routes = {}
  for i, app in ipairs(new.list) do
    app:_finalize()
    apps[app.path] = app
    routes[i] = app.config
  end
  core.set_routes(routes)
  _M._server_config = new.server
  return true
end

-- Dispatch: the core runs each event in a task (a pooled coroutine), so a
-- handler may wait (edgews.sleep, and the pool or storage later). While a task of
-- a socket waits, the core hands that socket's later events to the _enqueue_*
-- functions instead; the waiting task runs them, in order, when its handler is
-- done (drain). Handler errors are caught here: logged with file:line by the core,
-- passed to the app's error handler, and the connection is closed with 1011.
local queues = setmetatable({}, { __mode = "k" }) -- socket -> queued events

local function first_line(s)
  return (s:match("^[^\n]*"))
end

local function handler_failed(sock, app, event, err)
  err = tostring(err)
  core.handler_error(sock._c, event, err)
  local h = app and app._on_error
  if h then
    local ok, e2 = xpcall(h, traceback, sock, first_line(err))
    if not ok then core.handler_error(false, "error", tostring(e2)) end
  end
end

local function call(sock, event, field, a, b)
  local app = apps[sock.path]
  local h = app and app[field]
  if not h then return end
  local ok, err = xpcall(h, traceback, sock, a, b)
  if not ok then handler_failed(sock, app, event, err) end
end

-- Runs the events that queued up while this task waited. A queue is a list of
-- (kind, a, b) triples: kind 1 = message (data, is_binary), 2 = close (code, reason).
local function drain(sock)
  local q = queues[sock]
  while q do
    local i = q.head
    if i > q.tail then
      queues[sock] = nil
      return
    end
    local kind, a, b = q[i], q[i + 1], q[i + 2]
    q[i], q[i + 1], q[i + 2] = nil, nil, nil
    q.head = i + 3
    if kind == 1 then
      call(sock, "message", "_on_message", a, b)
    else
      call(sock, "close", "_on_close", a, b)
    end
    q = queues[sock]
  end
end

local function enqueue(sock, kind, a, b)
  local q = queues[sock]
  if not q then
    q = { head = 1, tail = 0 }
    queues[sock] = q
  end
  local t = q.tail
  q[t + 1], q[t + 2], q[t + 3] = kind, a, b
  q.tail = t + 3
  return (q.tail - q.head + 1) / 3
end

function _M._dispatch_open(sock)
  local app = apps[sock.path]
  if app and app._auth then pipeline.on_open(app, sock) end
  call(sock, "open", "_on_open")
  if queues[sock] then drain(sock) end
end

function _M._dispatch_message(sock, data, is_binary)
  call(sock, "message", "_on_message", data, is_binary)
  if queues[sock] then drain(sock) end
end

function _M._dispatch_close(sock, code, reason)
  if sock.ctx._auth then pipeline.on_close(sock) end
  if sock.ctx._docs then _M.docs._on_close(sock) end
  call(sock, "close", "_on_close", code, reason)
end

-- A message from another worker (edgews.workers).
function _M._bus(blob)
  local ok, err = xpcall(workers.dispatch, traceback, blob, apps)
  if not ok then core.handler_error(false, "bus", tostring(err)) end
end

--- edgews.user_sockets(user_id) -> the user's sockets on every worker (see README)
_M.user_sockets = workers.user_sockets

--- edgews.channel(name) -> a channel (subscribe, unsubscribe, publish, count)
_M.channel = require("edgews.channel").channel
--- edgews.presence: who is present in which channel, and user status (see README)
_M.presence = require "edgews.presence"

--- edgews.notifications: per-user stored notifications (see README)
_M.notifications = require "edgews.notifications"

--- edgews.docs: collaborative documents (OT), stored under --data (see README)
_M.docs = require "edgews.docs"

--- edgews.pubsub: topics with offsets, epochs, history and recovery (see README)
_M.pubsub = pubsub
function _M._pubsub(topic, epoch, offset, time, data, json)
  local ok, err = xpcall(pubsub._dispatch, traceback, topic, epoch, offset, time, data, json)
  if not ok then core.handler_error(false, "pubsub", tostring(err)) end
end

-- Before the 101, for an app with auth in "upgrade" mode: runs the strategy on
-- the request (it may wait) and tells the core the verdict.
function _M._authenticate(path, req)
  local app = apps[path]
  local strat = app and app._auth
  if not strat or not strat.authenticate then
    return core.auth_done(false, nil, 401, "no authenticator")
  end
  auth.prepare(req)
  local ok, user, err, status = xpcall(strat.authenticate, traceback, req)
  if not ok then
    core.handler_error(false, "auth", tostring(user))
    return core.auth_done(false, nil, 401, "authentication error")
  end
  if type(user) == "table" then return core.auth_done(true, user) end
  core.count("auth_failures")
  return core.auth_done(false, nil, status == 403 and 403 or 401, err and tostring(err) or "unauthorized")
end

-- -> number of events queued for the socket (the core stops reading past a limit)
function _M._enqueue_message(sock, data, is_binary)
  return enqueue(sock, 1, data, is_binary)
end

function _M._enqueue_close(sock, code, reason)
  -- The connection has ended now (its close event waits behind a handler): other
  -- workers' stand-ins of the socket must say so at once (edgews.user_sockets).
  if sock.ctx._auth then workers.remove_user(sock) end
  return enqueue(sock, 2, code, reason)
end

function _M._run_timer(fn)
  local ok, err = xpcall(fn, traceback)
  if not ok then core.handler_error(false, "timer", tostring(err)) end
end

--- edgews.broadcast(sockets, data [, is_binary]) -> number of sockets it was queued for
-- One message to many sockets (of this worker): framed once and, for sockets that
-- negotiated compression, compressed once (per window size); each socket's
-- write queue references the same buffer.
function _M.broadcast(sockets, data, is_binary)
  if type(sockets) ~= "table" then error("edgews.broadcast expects a list of sockets", 2) end
  if type(data) ~= "string" then error("edgews.broadcast expects a string", 2) end
  return core.fanout(sockets, data, is_binary)
end

--- edgews.sleep(seconds): waits inside a handler (the handler's task is parked;
-- the worker serves everyone else meanwhile). Events of the same socket that
-- arrive meanwhile run after this handler returns, in order. Timers take any
-- non-negative number of seconds (millisecond resolution, no upper limit:
-- math.huge waits forever).
function _M.sleep(secs)
  if type(secs) ~= "number" or not (secs >= 0) then error("edgews.sleep: seconds expected", 2) end
  return core.sleep(secs)
end

local Timer = {}
Timer.__index = Timer
--- timer:cancel() -> true if it had not fired (or, for edgews.every, was running)
function Timer:cancel()
  return core.timer_cancel(self.id)
end

--- edgews.timer(seconds, fn) -> timer: runs fn once, later, in a task of its own
-- (it may wait too). An error in fn is logged with file:line.
function _M.timer(secs, fn)
  if type(secs) ~= "number" or not (secs >= 0) then error("edgews.timer: seconds expected", 2) end
  if type(fn) ~= "function" then error("edgews.timer: function expected", 2) end
  return setmetatable({ id = core.timer(secs, fn, false) }, Timer)
end

--- edgews.every(seconds, fn) -> timer: runs fn every `seconds` until cancelled.
-- A run that the watchdog stops (handler_timeout, max_lua_memory) cancels the timer:
-- a job that runs away once would otherwise stall the worker at every interval.
function _M.every(secs, fn)
  if type(secs) ~= "number" or not (secs >= 0.001) then error("edgews.every: seconds >= 0.001 expected", 2) end
  if type(fn) ~= "function" then error("edgews.every: function expected", 2) end
  local t = setmetatable({}, Timer)
  t.id = core.timer(secs, function()
    local ok, err = xpcall(fn, traceback)
    if not ok and core.handler_error(false, "timer", tostring(err)) then
      core.timer_cancel(t.id)
      core.log(core.ERROR, "edgews.every: the timer was cancelled (its run was stopped)")
    end
  end, true)
  return t
end

-- Logging: edgews.log.info("fmt", ...) writes a log line tagged with the
-- worker and prefixed with the caller's file:line.
local log = {}
_M.log = log
local function make_logger(level)
  return function(fmt, ...)
    if level < core.log_level() then return end
    local msg = select("#", ...) > 0 and string_format(fmt, ...) or tostring(fmt)
    local info = getinfo(2, "Sl")
    if info and info.currentline and info.currentline > 0 then
      msg = info.short_src .. ":" .. info.currentline .. ": " .. msg
    end
    core.log(level, msg)
  end
end
log.debug = make_logger(core.DEBUG)
log.info = make_logger(core.INFO)
log.warn = make_logger(core.WARN)
log.error = make_logger(core.ERROR)

--- edgews.auth: authentication strategies (jwt, api_key, custom)
_M.auth = auth
--- edgews.validate: field validation for messages (used by app:route's opts.validate)
_M.validate = require "edgews.validate"
--- edgews.jwt: sign/verify HS256/384/512 tokens
_M.jwt = require "edgews.jwt"

--- edgews.worker_id() -> 0-based id of the worker running this code
_M.worker_id = core.worker_id
--- edgews.workers() -> number of workers
_M.workers = core.workers
--- edgews.now() -> seconds (the worker loop's cached clock, millisecond steps)
_M.now = core.now
--- edgews.stats([all]) -> this worker's counters, or with all = true the sums
-- over every worker (plus rejections by reason and the application counters)
function _M.stats(all)
  if all then return core.stats_all() end
  return core.stats()
end

return _M
