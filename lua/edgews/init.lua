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
-- Design. The C core owns sockets, frames and timers; the Lua side owns the
-- apps. This module is only the facade: it puts the modules together and names
-- what a script sees. Each concern is a module of its own, and every link
-- between them is made here, explicitly (no module sets another's fields):
--
--   edgews.app         the app object (handlers, middleware, routes, broadcast)
--   edgews.loader      the transactional loader: edgews.app{}, edgews.configure{},
--                      load and reload (it fills `apps` below)
--   edgews.dispatch    the core's events (open, message, close, auth, bus,
--                      pub/sub) run against `apps`, with per-socket queues
--   edgews.timers      edgews.sleep, edgews.timer, edgews.every
--   edgews.log         edgews.log.debug/info/warn/error
--   edgews.pipeline    the application layer of a message (auth gate, rate
--                      limits, middleware, router); edgews.workers, what
--                      crosses workers; the services (channel, pubsub, presence,
--                      notifications)
--
-- The core (core/lua/vm.c) calls the underscore fields below (_load,
-- _dispatch_*, _enqueue_*, _authenticate, _bus, _pubsub, _run_timer) and reads
-- _server_config, _Socket and _apps.

local core = require "edgews.core"
local socket = require "edgews.socket"
local pubsub = require "edgews.pubsub"
local workers = require "edgews.workers"
local timers = require "edgews.timers"
local app_mod = require "edgews.app"

local _M = { _VERSION = "0.1.0" }

_M._Socket = socket.metatable
_M.Socket = socket.methods -- add methods here to extend every socket

-- path -> app, for every app of the current script version; apps that a reload
-- removed stay here so their open connections keep their handlers. The loader
-- writes it, the dispatcher reads it.
local apps = {}

-- Pub/sub replaces the subscriptions a script makes while it loads only when that
-- version loads (see edgews.pubsub).
local loader = require("edgews.loader").new(apps, { begin = pubsub._begin_load, finish = pubsub._end_load })
local dispatch = require("edgews.dispatch").new(apps)
-- The core reads the handlers of an app here (does it have an open handler?) to
-- create a connection's socket object only when a script needs it.
_M._apps = apps

--- edgews.app{ path = "/x", ... } -> app   (see README for every field)
_M.app = loader.app
--- edgews.configure{ listen=, workers=, log_level=, drain_timeout=, ... }
_M.configure = loader.configure
--- edgews.static(prefix, dir [, opts]): static files (see README "Static files")
_M.static = loader.static

-- Called by the core (vm.c) to load or reload the script. -> true | nil, err
function _M._load(path)
  local ok, server_or_err = loader.load(path)
  if not ok then return nil, server_or_err end
  _M._server_config = server_or_err -- the script's edgews.configure{}, or nil
  return true
end

_M._dispatch_open = dispatch.open
_M._dispatch_message = dispatch.message
_M._dispatch_close = dispatch.close
_M._enqueue_message = dispatch.enqueue_message
_M._enqueue_close = dispatch.enqueue_close
_M._authenticate = dispatch.authenticate
_M._bus = dispatch.bus
_M._pubsub = dispatch.pubsub
_M._run_timer = timers.run

--- edgews.broadcast(sockets, data [, is_binary]) -> number of sockets it was queued for
_M.broadcast = app_mod.broadcast
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

--- edgews.sleep(seconds), edgews.timer(seconds, fn), edgews.every(seconds, fn)
_M.sleep = timers.sleep
_M.timer = timers.timer
_M.every = timers.every

--- edgews.log.debug/info/warn/error(fmt, ...): a log line with the caller's file:line
_M.log = require "edgews.log"

--- edgews.auth: authentication strategies (jwt, api_key, custom)
_M.auth = require "edgews.auth"
--- edgews.validate: field validation for messages (used by app:route's opts.validate)
_M.validate = require "edgews.validate"
--- edgews.jwt: sign/verify HS256/384/512 tokens
_M.jwt = require "edgews.jwt"
-- Outbound WebSocket connections and the connection pool (per worker).
_M.client = require "edgews.client"
_M.pool = require("edgews.pool").new

--- edgews.worker_id() -> 0-based id of the worker running this code
_M.worker_id = core.worker_id
--- edgews.workers() -> number of workers
_M.workers = core.workers
--- edgews.now() -> seconds (the worker loop's cached clock, millisecond steps)
_M.now = core.now
--- edgews.clock() -> seconds (the monotonic clock read at the call: it advances
-- while a handler runs; for measuring code)
_M.clock = core.clock
--- edgews.stats([all]) -> this worker's counters, or with all = true the sums
-- over every worker (plus rejections by reason and the application counters)
function _M.stats(all)
  if all then return core.stats_all() end
  return core.stats()
end

return _M
