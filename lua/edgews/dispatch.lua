-- edgews.dispatch: the events the C core hands to Lua, run against the apps of the
-- current script version.
--
--   local dispatch = require("edgews.dispatch").new(apps)   -- apps: path -> app
--   dispatch.open(sock), dispatch.message(sock, data, is_binary), dispatch.close(sock, code, reason)
--   dispatch.enqueue_message(...), dispatch.enqueue_close(...) -> events queued
--   dispatch.authenticate(path, req), dispatch.bus(blob), dispatch.pubsub(...)
--
-- The core calls each of these once per event, through one protected call, in a
-- task (a pooled coroutine), so a handler may wait (edgews.sleep, storage, ...).
-- The app is found by the socket's path at every event, so after a hot reload the
-- next event on an existing connection runs the new handlers while socket.ctx,
-- which lives in the socket table, survives.
--
-- While a task of a socket waits, the core hands that socket's later events to
-- the enqueue_* functions instead; the waiting task runs them, in order, when its
-- handler is done (drain): one socket's handlers never interleave. Handler errors
-- are caught here: logged with file:line by the core, passed to the app's error
-- handler, and the connection is closed with 1011.

local core = require "edgews.core"
local auth = require "edgews.auth"
local pipeline = require "edgews.pipeline"
local workers = require "edgews.workers"
local pubsub = require "edgews.pubsub"
local docs = require "edgews.docs"

local type, error, tostring, xpcall, setmetatable = type, error, tostring, xpcall, setmetatable
local traceback = debug.traceback

local _M = {}

local function first_line(s)
  return (s:match("^[^\n]*"))
end

--- dispatch.new(apps) -> the dispatcher of one VM (see the top of the file)
function _M.new(apps)
  if type(apps) ~= "table" then error("dispatch.new: apps must be a table", 2) end
  local self = {}
  local queues = setmetatable({}, { __mode = "k" }) -- socket -> queued events

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

  function self.open(sock)
    local app = apps[sock.path]
    if app and app._auth then pipeline.on_open(app, sock) end
    call(sock, "open", "_on_open")
    -- pending notifications after the app's welcome (README: Notifications)
    if sock.ctx._notif_hold then pipeline.release_notifications(sock) end
    if queues[sock] then drain(sock) end
  end

  function self.message(sock, data, is_binary)
    call(sock, "message", "_on_message", data, is_binary)
    if queues[sock] then drain(sock) end
  end

  function self.close(sock, code, reason)
    if sock.ctx._auth then pipeline.on_close(sock) end
    if sock.ctx._docs then docs._on_close(sock) end
    call(sock, "close", "_on_close", code, reason)
  end

  -- -> number of events queued for the socket (the core stops reading past a limit)
  function self.enqueue_message(sock, data, is_binary)
    return enqueue(sock, 1, data, is_binary)
  end

  function self.enqueue_close(sock, code, reason)
    -- The connection has ended now (its close event waits behind a handler): other
    -- workers' stand-ins of the socket must say so at once (edgews.user_sockets).
    if sock.ctx._auth then workers.remove_user(sock) end
    return enqueue(sock, 2, code, reason)
  end

  -- Before the 101, for an app with auth in "upgrade" mode: runs the strategy on
  -- the request (it may wait) and tells the core the verdict.
  function self.authenticate(path, req)
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

  -- A message from another worker (edgews.workers).
  function self.bus(blob)
    local ok, err = xpcall(workers.dispatch, traceback, blob, apps)
    if not ok then core.handler_error(false, "bus", tostring(err)) end
  end

  -- A pub/sub message for this worker's Lua subscribers (edgews.pubsub).
  function self.pubsub(topic, epoch, offset, time, data, json)
    local ok, err = xpcall(pubsub._dispatch, traceback, topic, epoch, offset, time, data, json)
    if not ok then core.handler_error(false, "pubsub", tostring(err)) end
  end

  return self
end

return _M
