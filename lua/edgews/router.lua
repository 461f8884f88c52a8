-- edgews.router: routes JSON text messages to handlers by their "type" field.
--
--   local router = require "edgews.router"
--   local r = router.new { max_size = 64 * 1024 }
--   r:route("join", function(socket, data, ctx) ... end,
--           { validate = { room = { type = "string", required = true, max_length = 64 } } })
--   app:on("message", function(socket, raw, is_binary)
--     r:dispatch(socket, raw, is_binary, socket.ctx, function(socket, code, message, details, id)
--       socket:send(router.error_message(code, message, details, id))
--     end)
--   end)
--
-- Messages are JSON objects: {"type": "join", "id": 7, "room": "lobby"}. The
-- handler gets the decoded table. When a message cannot be routed, dispatch
-- calls reply_error(socket, code, message, details, id) exactly once, returns
-- false and leaves the connection open. The codes, checked in this order, are
-- stable (clients may match on them):
--
--   message_too_large     #raw > max_size; details = { max_size = n }
--   binary_not_supported  a binary frame (this router speaks JSON text)
--   invalid_json          the text is not valid JSON
--   invalid_message       valid JSON that is not an object ([], "x", 1, null, ...)
--   missing_type          no "type" field, or it is not a string
--   unknown_type          no route for that type
--   validation_failed     the route's schema rejected the fields; details = the
--                         list of { field =, error =, message = } (edgews.validate)
--
-- id: the message's "id" field when it is a string or a finite number (nil
-- before the message is decoded, and for other values, such as 1e999, which
-- decodes to infinity, and NaN, which JSON cannot carry back): the reply echoes
-- it so a client can correlate the error with its request. The reply helper
-- router.error_message builds the standard reply:
--   {"type":"error","error":<code>,"message":<text>,"details":<details>,"id":<id>}
-- ("details" and "id" only when present). The handler error code
-- "handler_error" belongs to the dispatcher that calls the router: errors raised
-- by handlers propagate untouched (no pcall here).
--
-- Design. The router is independent of the server: the codec and the reply
-- function are arguments, so it is unit-tested with plain tables. Decoding is a
-- separate step (r:decode) so a middleware chain can inspect the decoded table
-- before r:dispatch_decoded routes it; r:dispatch is the two in one. A route's
-- opts are kept as given (r:get returns them) so the dispatcher may read its
-- own per-route settings; opts.validate (a schema or a compiled checker) is
-- compiled when the route is added, so a bad schema fails at load. A route
-- whose handler never reads its data (edgews.paramuse) and that has no schema
-- can be dispatched without building the table: r:peek checks the text and
-- finds its type without decoding it (default codec only), r:dispatch_unbuilt
-- calls the handler with nil for the data. The codec
-- is cjson.safe-like: decode(s) -> value | nil, err (one that raises is caught),
-- encode(t) -> string, and its JSON null (codec.null) counts as an absent field.

local validate = require "edgews.validate"
local paramuse = require "edgews.paramuse"

local require, type, pairs, error, tostring, pcall, next, setmetatable =
  require, type, pairs, error, tostring, pcall, next, setmetatable
local string_format, string_sub, string_find, string_byte = string.format, string.sub, string.find, string.byte
local math_huge = math.huge

local _M = {}

_M.DEFAULT_MAX_SIZE = 64 * 1024

local default_json -- require "cjson.safe", loaded when first needed
local function get_default_json()
  if not default_json then default_json = require "cjson.safe" end
  return default_json
end

local Router = {}
Router.__index = Router

local new_fields = { max_size = true, json = true, reply_error = true }

-- For messages: a client-supplied string, shortened and never raw in a format.
-- The cut never splits a UTF-8 character (the reply goes out as a text frame, which
-- must be valid UTF-8; the string itself is, coming from a text frame).
local function shown(s)
  if #s <= 64 then return s end
  local n = 64
  local b = string_byte(s, n + 1)
  while n > 0 and b >= 0x80 and b < 0xC0 do -- a continuation byte: back up
    n = n - 1
    b = string_byte(s, n + 1)
  end
  return string_sub(s, 1, n) .. "..."
end

-- An id the reply can echo: a string, or a number JSON can write (not NaN/inf).
local function is_id(v)
  local t = type(v)
  return t == "string" or (t == "number" and v == v and v ~= math_huge and v ~= -math_huge)
end

local function error_message(json, code, message, details, id)
  if type(code) ~= "string" then error("router.error_message: code must be a string", 3) end
  if not is_id(id) then id = nil end -- never fail the reply over an id it cannot carry
  local t = { type = "error", error = code, message = message, details = details, id = id }
  local s, err = json.encode(t)
  if not s then error("router.error_message: cannot encode: " .. tostring(err), 3) end
  return s
end

--- router.error_message(code, message, details, id [, json]) -> JSON text
-- The standard error reply; details and id are omitted when nil, and so is an
-- id that is not a string or a finite number. json: the codec (default
-- cjson.safe).
function _M.error_message(code, message, details, id, json)
  return error_message(json or get_default_json(), code, message, details, id)
end

local function default_reply_error(socket, code, message, details, id)
  return socket:send(_M.error_message(code, message, details, id))
end

--- router.new{ max_size = bytes, json = codec, reply_error = fn } -> router
-- max_size: default 64 KiB; json: default cjson.safe; reply_error: the default
-- for dispatch's last argument, itself defaulting to
-- socket:send(router.error_message(code, message, details, id)).
function _M.new(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("router.new expects a table, got " .. type(opts), 2) end
  for k in pairs(opts) do
    if not new_fields[k] then error("router.new: unknown field '" .. tostring(k) .. "'", 2) end
  end
  local max_size = opts.max_size or _M.DEFAULT_MAX_SIZE
  if type(max_size) ~= "number" or max_size < 0 or max_size ~= max_size then
    error("router.new: max_size must be a non-negative number of bytes", 2)
  end
  local json = opts.json or get_default_json()
  if type(json) ~= "table" or type(json.decode) ~= "function" or type(json.encode) ~= "function" then
    error("router.new: json must be a codec with decode and encode functions", 2)
  end
  local reply = opts.reply_error or default_reply_error
  if type(reply) ~= "function" then error("router.new: reply_error must be a function", 2) end
  -- The default codec decodes with edgews.json (cjson's values and errors, faster),
  -- which never raises on bad input: no pcall around it.
  local decode_fn, decode_safe, scan_type = json.decode, false, false
  if json == get_default_json() then
    local fast = require("edgews.json")
    decode_fn, decode_safe, scan_type = fast.decode, true, fast.scan_type or false
  end
  return setmetatable({
    max_size = max_size, json = json, decode_fn = decode_fn, decode_safe = decode_safe,
    scan_type = scan_type,
    null = json.null, reply_error = reply, routes = {},
  }, Router)
end

--- r:route(type, handler [, opts [, level]]) -> r        handler(socket, data, ctx)
-- opts.validate: a schema (see edgews.validate) or a compiled checker; other
-- opts fields are kept for the dispatcher (r:get). A type routed twice raises.
-- level (default 1, as for error()): a wrapper passes 2 to blame its caller.
function Router:route(name, handler, opts, level)
  level = (level or 1) + 1
  if type(name) ~= "string" or name == "" then
    error("router:route: type must be a non-empty string, got " .. tostring(name), level)
  end
  if type(handler) ~= "function" then
    error("router:route: handler must be a function(socket, data, ctx)", level)
  end
  if opts ~= nil and type(opts) ~= "table" then error("router:route: opts must be a table", level) end
  if self.routes[name] then error("router:route: type '" .. name .. "' is already routed", level) end
  local check
  if opts and opts.validate ~= nil then
    if type(opts.validate) ~= "table" then
      error("router:route: opts.validate must be a schema table", level)
    end
    check = validate.compile(opts.validate, level)
  end
  -- a per-route rate limit's reply carries the message's id: its data is built
  self.routes[name] = { handler = handler, opts = opts, check = check,
    unbuilt = not check and not (opts and opts.rate_limit) and not paramuse.reads(handler, 2) }
  return self
end

--- r:get(type) -> handler, opts | nil
function Router:get(name)
  local route = self.routes[name]
  if route then return route.handler, route.opts end
  return nil
end

--- r:peek(raw, is_binary) -> type | nil
-- The message's type when it can be routed without building its data: the text
-- is a JSON object that the decoder would build itself (so r:decode would
-- succeed; default codec only), within max_size, its "type" a string whose
-- route has no schema, no rate_limit and a handler that never reads its data.
-- nil: decode it.
function Router:peek(raw, is_binary)
  local scan = self.scan_type
  if not scan or is_binary or #raw > self.max_size then return nil end
  local name = scan(raw)
  local route = name and self.routes[name]
  if route and route.unbuilt then return name end
  return nil
end

--- r:dispatch_unbuilt(socket, type, ctx) -> true | false
-- Runs the route of a type r:peek returned, its handler getting nil for the data;
-- false (nothing run) when that type has no such route (any more).
function Router:dispatch_unbuilt(socket, name, ctx)
  local route = self.routes[name]
  if not (route and route.unbuilt) then return false end
  route.handler(socket, nil, ctx)
  return true
end

--- r:decode(raw, is_binary) -> data | nil, code, message, details
-- The checks up to invalid_message: data is a decoded JSON object (a table).
function Router:decode(raw, is_binary)
  if type(raw) ~= "string" then error("router:decode: raw message must be a string", 2) end
  local size = #raw
  if size > self.max_size then
    return nil, "message_too_large",
      string_format("message of %d bytes exceeds the limit of %d bytes", size, self.max_size),
      { max_size = self.max_size }
  end
  if is_binary then
    return nil, "binary_not_supported", "binary messages are not supported: send JSON text"
  end
  local data, err
  if self.decode_safe then
    data, err = self.decode_fn(raw)
  else
    local ok
    ok, data, err = pcall(self.decode_fn, raw)
    if not ok then data, err = nil, data end
  end
  if data == nil then
    return nil, "invalid_json", "invalid JSON: " .. shown(tostring(err or "decode failed"))
  end
  -- An object, not an array: JSON object keys are strings, so data[1] means an
  -- array; an empty table is [] or {}: look at the text (only when there is no
  -- "type", to keep next(), which the JIT does not compile, off the hot path).
  if type(data) ~= "table" or data[1] ~= nil
    or (data.type == nil and next(data) == nil and not string_find(raw, "^%s*{")) then
    return nil, "invalid_message", "a message must be a JSON object"
  end
  return data
end

--- r:dispatch_decoded(socket, data, ctx [, reply_error]) -> true | false
-- Routes a decoded message (from r:decode): missing_type, unknown_type and
-- validation_failed are reported here; otherwise the handler runs and the
-- result is true. Handler errors propagate.
function Router:dispatch_decoded(socket, data, ctx, reply_error)
  reply_error = reply_error or self.reply_error
  local name = data.type
  if type(name) ~= "string" then
    local id = data.id
    reply_error(socket, "missing_type", 'a message needs a string "type" field', nil,
      is_id(id) and id or nil)
    return false
  end
  local route = self.routes[name]
  if not route then
    local id = data.id
    reply_error(socket, "unknown_type", "unknown message type '" .. shown(name) .. "'", nil,
      is_id(id) and id or nil)
    return false
  end
  local check = route.check
  if check then
    local ok, errors = check:check(data, self.null)
    if not ok then
      local id = data.id
      reply_error(socket, "validation_failed", "invalid fields in '" .. name .. "' message", errors,
        is_id(id) and id or nil)
      return false
    end
  end
  route.handler(socket, data, ctx)
  return true
end

--- r:dispatch(socket, raw, is_binary, ctx [, reply_error]) -> true | false
-- decode + dispatch_decoded. reply_error(socket, code, message, details, id) is
-- called exactly once per failure; it defaults to the one given to new.
function Router:dispatch(socket, raw, is_binary, ctx, reply_error)
  if type(raw) ~= "string" then error("router:dispatch: raw message must be a string", 2) end
  local data, code, message, details = self:decode(raw, is_binary)
  if not data then
    reply_error = reply_error or self.reply_error
    reply_error(socket, code, message, details, nil)
    return false
  end
  return self:dispatch_decoded(socket, data, ctx, reply_error)
end

--- r:error_message(code, message, details, id) -> JSON text, encoded with this router's codec
function Router:error_message(code, message, details, id)
  return error_message(self.json, code, message, details, id)
end

return _M
