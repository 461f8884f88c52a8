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
  self[field] = fn
  return self
end

--- edgews.app{ path = "/x", ... } -> app   (see README for every field)
function _M.app(t)
  if not loading then error("edgews.app must be called while the script loads", 2) end
  local c = config.app(t, 2)
  if loading.by_path[c.path] then error("edgews.app: path " .. c.path .. " is defined twice", 2) end
  local app = setmetatable({ path = c.path, config = c }, App)
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
  local fn, err = loadfile(path)
  local ok = fn ~= nil
  if ok then ok, err = xpcall(fn, traceback) end
  if ok and #loading.list == 0 then
    ok, err = false, path .. ": the script defines no app (call edgews.app{ path = ... })"
  end
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
    apps[app.path] = app
    routes[i] = app.config
  end
  core.set_routes(routes)
  _M._server_config = new.server
  return true
end

-- Dispatch: one call per event from the core. An app can be missing only for
-- a socket whose path a reload removed and that was never seen; not possible
-- while apps keeps removed paths, but stay defensive and cheap.
function _M._dispatch_open(sock)
  local app = apps[sock.path]
  local h = app and app._on_open
  if h then return h(sock) end
end

function _M._dispatch_message(sock, data, is_binary)
  local app = apps[sock.path]
  local h = app and app._on_message
  if h then return h(sock, data, is_binary) end
end

function _M._dispatch_close(sock, code, reason)
  local app = apps[sock.path]
  local h = app and app._on_close
  if h then return h(sock, code, reason) end
end

function _M._dispatch_error(sock, err)
  local app = apps[sock.path]
  local h = app and app._on_error
  if h then return h(sock, err) end
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

--- edgews.worker_id() -> 0-based id of the worker running this code
_M.worker_id = core.worker_id
--- edgews.workers() -> number of workers
_M.workers = core.workers
--- edgews.now() -> seconds (the worker loop's cached clock, millisecond steps)
_M.now = core.now
--- edgews.stats() -> this worker's counters
_M.stats = core.stats

return _M
