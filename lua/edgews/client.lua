-- edgews.client: outbound WebSocket connections (ws:// and wss://) from the server
-- to other WebSocket servers, cosocket style (core/lua/api_client.c over
-- core/net/client.c: the server's own frame, deflate, TLS and timer code).
--
--   local ws, err = edgews.client.connect("wss://feed.example/v1", {
--     protocols = {"feed.v1"}, headers = {Authorization = "Bearer ..."},
--     timeout = 5, compression = true })
--   ws:send("hello")                       -- true | nil, err
--   local data, is_binary = ws:receive(2)  -- waits; nil, "timeout" | "closed" | why
--   ws:close(1000, "bye")
--
-- connect and receive wait, so they are called from a handler, a timer or any task
-- (not from a script's top level: connect from edgews.timer(0, fn) there). A
-- connection belongs to the worker that opened it. Failures return nil, err;
-- misuse (a wrong argument type) raises.

local core = require "edgews.core"
local timers = require "edgews.timers"

local type, error, pairs, ipairs, tostring, setmetatable, concat =
  type, error, pairs, ipairs, tostring, setmetatable, table.concat
local floor = math.floor
local running = coroutine.running

local CANNOT_WAIT = "edgews.client.connect can only wait inside a handler, a timer or a task"
  .. " (at load time, connect from edgews.timer(0, fn))"

local _M = {}

local Client = {}
Client.__index = Client
_M.Client = Client

local function token(s)
  return type(s) == "string" and s ~= "" and not s:find("[^%w!#$%%&'*+%-.^_`|~]")
end

-- Headers the handshake owns: a user value would break it.
local reserved = {
  host = true, upgrade = true, connection = true, ["sec-websocket-key"] = true,
  ["sec-websocket-version"] = true, ["sec-websocket-protocol"] = true,
  ["sec-websocket-extensions"] = true,
}

local function secs_ms(v, name, def)
  if v == nil then return def end
  if type(v) ~= "number" or not (v >= 0) then
    error("edgews.client.connect: " .. name .. " must be seconds >= 0", 3)
  end
  return floor(v * 1000 + 0.5)
end

-- The checked options in the form core.client_open takes.
local function options(opts)
  local o = { wait = 1 }
  if opts.headers ~= nil then
    if type(opts.headers) ~= "table" then error("edgews.client.connect: headers must be a table", 3) end
    local lines = {}
    for k, v in pairs(opts.headers) do
      if not token(k) then error("edgews.client.connect: bad header name " .. tostring(k), 3) end
      if reserved[k:lower()] then error("edgews.client.connect: header " .. k .. " is set by the handshake", 3) end
      v = tostring(v)
      if v:find("[%c]") then error("edgews.client.connect: bad value for header " .. k, 3) end
      lines[#lines + 1] = k .. ": " .. v .. "\r\n"
    end
    o.headers = concat(lines)
  end
  local p = opts.protocols
  if p ~= nil then
    if type(p) == "string" then p = { p } end
    if type(p) ~= "table" then error("edgews.client.connect: protocols must be a string or a list", 3) end
    for _, name in ipairs(p) do
      if not token(name) then error("edgews.client.connect: bad subprotocol " .. tostring(name), 3) end
    end
    if #p > 0 then o.protocols = concat(p, ", ") end
  end
  o.timeout_ms = secs_ms(opts.timeout, "timeout", 10000)
  if o.timeout_ms == 0 then o.timeout_ms = 1 end
  local mm = opts.max_message_size
  if mm ~= nil and (type(mm) ~= "number" or mm < 0) then
    error("edgews.client.connect: max_message_size must be bytes >= 0 (0: no limit)", 3)
  end
  o.max_message = mm or 1048576
  local c = opts.compression
  if c ~= nil and c ~= false then
    if c == true then c = {} end
    if type(c) ~= "table" then error("edgews.client.connect: compression must be a boolean or a table", 3) end
    o.compression = 1
    o.compress_threshold = c.threshold or 64
  end
  if opts.max_buffered ~= nil then o.max_buffered = opts.max_buffered end
  o.ping_interval_ms = secs_ms(opts.ping_interval, "ping_interval", 0)
  o.ping_timeout_ms = secs_ms(opts.ping_timeout, "ping_timeout", 10000)
  if opts.ca_file ~= nil then
    if type(opts.ca_file) ~= "string" then error("edgews.client.connect: ca_file must be a path", 3) end
    o.ca_file = opts.ca_file
  end
  if opts.verify ~= nil then o.verify = opts.verify and 1 or 0 end
  return o
end

--- edgews.client.connect(url, opts) -> client | nil, err
-- Waits until the opening handshake is done (at most opts.timeout seconds).
function _M.connect(url, opts)
  if type(url) ~= "string" then error("edgews.client.connect: url string expected", 2) end
  if opts ~= nil and type(opts) ~= "table" then error("edgews.client.connect: options table expected", 2) end
  if not running() then error(CANNOT_WAIT, 2) end -- a script's top level (the C side checks too)
  local h, err = core.client_open(url, options(opts or {}))
  if not h then return nil, err end
  local ok
  ok, err = core.client_wait_open(h)
  if not ok then return nil, err end
  return setmetatable({ _h = h, url = url, protocol = core.client_protocol(h) }, Client)
end

--- client:send(data [, is_binary]) -> true | nil, err ("closed", "backpressure", ...)
function Client:send(data, is_binary)
  if type(data) ~= "string" then error("client:send: string expected", 2) end
  return core.client_send(self._h, data, is_binary)
end

--- client:receive([timeout]) -> data, is_binary | nil, err
-- err: "timeout", "closed" (the close handshake ended the session; see
-- client:close_status()), or why the connection failed. Messages that arrived
-- before the close are still returned first.
function Client:receive(timeout)
  if timeout ~= nil and (type(timeout) ~= "number" or not (timeout >= 0)) then
    error("client:receive: timeout must be seconds >= 0", 2)
  end
  return core.client_receive(self._h, timeout and floor(timeout * 1000 + 0.5) or -1)
end

--- client:ping([payload]) -> true | nil, err (the pong is handled by the core)
function Client:ping(payload)
  return core.client_ping(self._h, payload)
end

--- client:ping_wait([timeout]) -> true | nil, err: a ping, then waits for the pong
-- (at most timeout seconds, default 5): "timeout" when none came.
function Client:ping_wait(timeout)
  if timeout ~= nil and (type(timeout) ~= "number" or not (timeout >= 0)) then
    error("client:ping_wait: timeout must be seconds >= 0", 2)
  end
  return core.client_ping_wait(self._h, floor((timeout or 5) * 1000 + 0.5))
end

--- client:close([code [, reason]]) -> true | nil, "closed"
function Client:close(code, reason)
  if code ~= nil and not (type(code) == "number" and code % 1 == 0 and
      ((code >= 1000 and code <= 1003) or (code >= 1007 and code <= 1014) or (code >= 3000 and code <= 4999))) then
    error("client:close: close code 1000-1003, 1007-1014 or 3000-4999 expected", 2)
  end
  return core.client_close(self._h, code or 1000, reason and tostring(reason) or "")
end

--- client:state() -> "connecting" | "open" | "closed"
function Client:state()
  return (core.client_state(self._h))
end

--- client:close_status() -> code, reason (nil before the session ended)
function Client:close_status()
  local _, code, reason = core.client_state(self._h)
  return code, reason
end

--- client:on(event, fn): push style. "message" runs fn(data, is_binary) for every
-- message (a task reads for you; do not call receive yourself then), "close" runs
-- fn(code, reason) once when the session ends. Returns the client.
function Client:on(event, fn)
  if event ~= "message" and event ~= "close" then error("client:on: \"message\" or \"close\" expected", 2) end
  if type(fn) ~= "function" then error("client:on: function expected", 2) end
  self["_on_" .. event] = fn
  if not self._reader then
    self._reader = true
    timers.timer(0, function()
      while true do
        local data, bin = self:receive()
        if data == nil then break end
        if self._on_message then self._on_message(data, bin) end
      end
      if self._on_close then self._on_close(self:close_status()) end
    end)
  end
  return self
end

--- edgews.client.probe(url, path [, timeout [, opts]]) -> status | nil, err
-- An HTTP GET of path on url's host and port (https for wss://, verified as connect
-- does; opts: ca_file, verify): the answer's status code (any, 200 or not), or nil
-- and why no answer came (connect/TLS failure, "timeout"). Waits like connect.
function _M.probe(url, path, timeout, opts)
  if type(url) ~= "string" then error("edgews.client.probe: url string expected", 2) end
  if type(path) ~= "string" or path:sub(1, 1) ~= "/" then error("edgews.client.probe: path /... expected", 2) end
  opts = opts or {}
  local o = { probe_path = path, timeout_ms = secs_ms(timeout, "timeout", 5000), ca_file = opts.ca_file,
    wait = 1 }
  if o.timeout_ms == 0 then o.timeout_ms = 1 end
  if opts.verify ~= nil then o.verify = opts.verify and 1 or 0 end
  local h, err = core.client_open(url, o)
  if not h then return nil, err end
  return core.client_wait_open(h)
end

return _M
