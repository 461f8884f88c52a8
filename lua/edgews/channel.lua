-- edgews.channel: named channels (the seed library's Broadcaster) on the C core's
-- fan-out (hub/channels.c).
--
--   local room = edgews.channel("room:42")
--   room:subscribe(socket)
--   room:publish('{"type":"msg","text":"hi"}', { exclude = socket })
--   room:count()            -- subscribers on every worker
--
-- A publish from any worker reaches the subscribers on every worker; the frame is
-- built once into one shared buffer (compressed once per worker for compressing
-- subscribers); each publisher's messages arrive in order; a slow subscriber is
-- handled by its app's backpressure policy and never slows the others. A
-- subscription ends when its socket closes. Channel handles are plain tables (a
-- name): a channel costs nothing until someone subscribes, and nothing again once
-- the last subscriber leaves.

local core = require "edgews.core"
local socket_mod = require "edgews.socket"

local type, error, setmetatable, tostring = type, error, setmetatable, tostring
local error_name = socket_mod.error_name

local _M = {}

local Channel = {}
Channel.__index = Channel
_M.Channel = Channel

local function check_socket(s, what)
  if type(s) ~= "table" or s.id == nil then error("channel:" .. what .. " expects a socket", 3) end
end

--- channel:subscribe(socket) -> true | nil, err ("closed")
function Channel:subscribe(socket)
  check_socket(socket, "subscribe")
  local c = socket._c
  if not c then return nil, "closed" end
  local ok, rc = core.subscribe(c, self.name)
  if ok then return true end
  return nil, error_name(rc)
end

--- channel:unsubscribe(socket) -> true | nil, "not subscribed"
function Channel:unsubscribe(socket)
  check_socket(socket, "unsubscribe")
  local c = socket._c
  if not c then return nil, "closed" end
  local ok = core.unsubscribe(c, self.name)
  if ok then return true end
  return nil, "not subscribed"
end

--- channel:publish(data [, opts]) -> number of subscribers on this worker it was
-- queued for (other workers deliver asynchronously). opts.exclude: a socket (or a
-- socket id) that does not get it; opts.binary: a binary message.
function Channel:publish(data, opts)
  if type(data) ~= "string" then error("channel:publish expects a string", 2) end
  local exclude, binary = 0, false
  if opts then
    local ex = opts.exclude
    if type(ex) == "table" then exclude = ex.id elseif type(ex) == "number" then exclude = ex end
    binary = opts.binary and true or false
  end
  local n, rc = core.publish(self.name, data, binary, exclude)
  if n then return n end
  return nil, error_name(rc)
end

--- channel:count() -> subscribers on every worker
function Channel:count()
  return core.channel_count(self.name)
end

--- edgews.channel(name) -> channel
function _M.channel(name)
  if type(name) ~= "string" or name == "" or #name > 500 then
    error("edgews.channel: name must be a non-empty string of at most 500 bytes, got " .. tostring(name), 2)
  end
  return setmetatable({ name = name }, Channel)
end

return _M
