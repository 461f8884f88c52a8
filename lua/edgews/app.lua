-- edgews.app: the app object that edgews.app{} returns (handlers, middleware,
-- routes, broadcast), and edgews.broadcast.
--
--   local app = app_mod.new(c, t, level) -- the loader, for edgews.app{t}
--   app:on("message", fn); app:use(mw); app:route("type", fn, opts)
--   app:_finalize()                     -- the loader, once the script has loaded
--
-- An app knows nothing of loading or of the current script version: the loader
-- (edgews.loader) decides which apps serve which paths, the dispatcher
-- (edgews.dispatch) calls their handlers. Handlers are kept in fields the
-- dispatcher reads: _on_open, _on_message (the pipeline built at _finalize, or
-- the plain "message" handler), _on_close, _on_error.

local core = require "edgews.core"
local config = require "edgews.config"
local auth = require "edgews.auth"
local middleware = require "edgews.middleware"
local pipeline = require "edgews.pipeline"
local router = require "edgews.router"
local workers = require "edgews.workers"

local type, pairs, ipairs, error, tostring, setmetatable = type, pairs, ipairs, error, tostring, setmetatable

local _M = {}

local App = {}
App.__index = App
_M.App = App
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

--- app:connection_count() -> open connections of this app on all workers (in a
-- cluster: of every live instance, the others' as they wrote them, ~0.1 s behind)
function App:connection_count()
  return core.connection_count(self.path)
end

--- app:close_all([code [, reason]]) -> number of sockets closed on this worker
-- Closes every socket of the app on every worker (others asynchronously; in a
-- cluster also on every other instance, as app:broadcast travels).
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

--- app_mod.new(c, t, level) -> app: builds the app of edgews.app{t}, whose
-- config c = config.app(t) the caller validated; errors in t.auth and
-- t.rate_limit point `level` frames up (at the user's script).
function _M.new(c, t, level)
  level = (level or 1) + 1
  local app = setmetatable({ path = c.path, config = c }, App)
  if t.auth ~= nil then
    app._auth = auth.normalize(t.auth, level)
    c.auth_before_upgrade = app._auth.mode == "upgrade"
    c.auth_timeout = app._auth.timeout
    c.token_protocol_prefix = app._auth.protocol_prefix -- never selected as the subprotocol
    -- until a first-message auth succeeds, the core holds messages to this size
    if app._auth.mode == "message" then c.auth_max_message_size = app._auth.max_message_size end
  end
  if t.rate_limit ~= nil then app._rate_limit = pipeline.rate_limit_config(t.rate_limit, level) end
  return app
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

return _M
