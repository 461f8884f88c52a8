-- edgews.socket: the socket object handlers receive.
--
-- A socket is a plain Lua table created by the C core when a connection opens:
--   socket.id        number, unique in the process
--   socket.path      the app path it connected to
--   socket.protocol  the negotiated subprotocol, or nil
--   socket.ctx       a table for the application's per-connection state; it
--                    survives hot reloads
--   socket._c        the C connection (its address, a number), false once closed
-- Methods live in this module's metatable. Sending goes through the LuaJIT FFI
-- straight into the C write queue (no Lua/C stack marshalling on the hot path).
-- Failures return nil and a short error name ("closed", "backpressure", ...);
-- misuse (a non-string payload, an invalid close code) raises.

local ffi = require "ffi"
local core = require "edgews.core"
local config = require "edgews.config"

local type, error, tostring, pairs = type, error, tostring, pairs
local C = ffi.C
local error_names = core.error_names

ffi.cdef [[
int ews_ffi_send(uintptr_t conn, const char *p, size_t n, int binary);
double ews_ffi_buffered(uintptr_t conn);
]]

local _M = {}
local methods = {}
_M.methods = methods
_M.metatable = { __index = methods }

-- error code -> "closed", "backpressure", ...
local names = {}
for code, name in pairs(error_names) do names[code] = name:lower() end
function _M.error_name(code)
  return names[code] or ("error " .. tostring(code))
end
local error_name = _M.error_name

-- The same for the services' results (pub/sub, notifications): short names where
-- a caller branches on them ("closed", "backpressure", "shutdown"), words otherwise.
local texts = { inval = "invalid argument", nomem = "out of memory", io = "storage I/O error",
                nospace = "storage full" }
function _M.error_text(code)
  local n = error_name(code)
  if n == "nostore" then return core.errors[code] end
  return texts[n] or n
end

--- socket:send(data [, is_binary]) -> true | nil, err
-- Queues one message (a text frame unless is_binary). err is "closed" once the
-- connection is closing, "backpressure" when the slow-consumer policy applied.
function methods.send(self, data, is_binary)
  local c = self._c
  if type(data) ~= "string" then
    error("socket:send expects a string, got " .. type(data), 2)
  end
  if not c then return nil, "closed" end
  local rc = C.ews_ffi_send(c, data, #data, is_binary and 1 or 0)
  if rc == 0 then return true end
  return nil, error_name(rc)
end

--- socket:close([code [, reason]]) -> true | nil, err
-- Starts the close handshake. code defaults to 1000; reason is cut to fit a
-- control frame (123 bytes) at a UTF-8 boundary.
function methods.close(self, code, reason)
  code = code or 1000
  if not config.valid_close_code(code) then
    error("socket:close: invalid close code " .. tostring(code), 2)
  end
  if reason ~= nil and type(reason) ~= "string" then
    error("socket:close: reason must be a string", 2)
  end
  local c = self._c
  if not c then return nil, "closed" end
  local ok, rc = core.close(c, code, reason)
  if ok then return true end
  return nil, error_name(rc)
end

--- socket:ping([payload]) -> true | nil, err   (payload at most 125 bytes)
function methods.ping(self, payload)
  if payload ~= nil and (type(payload) ~= "string" or #payload > 125) then
    error("socket:ping: payload must be a string of at most 125 bytes", 2)
  end
  local c = self._c
  if not c then return nil, "closed" end
  local ok, rc = core.ping(c, payload)
  if ok then return true end
  return nil, error_name(rc)
end

--- socket:buffered_amount() -> bytes queued for this client and not yet written
function methods.buffered_amount(self)
  local c = self._c
  if not c then return 0 end
  return C.ews_ffi_buffered(c)
end

--- socket:remote_addr() -> ip, port | nil, err
function methods.remote_addr(self)
  local c = self._c
  if not c then return nil, "closed" end
  return core.remote_addr(c)
end

--- socket:is_open() -> boolean (false from the moment the connection ends)
function methods.is_open(self)
  return self._c ~= false and self._c ~= nil
end

return _M
