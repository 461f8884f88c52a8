-- fuzz_router.lua — the Lua half of fuzz_router.c: returns function(input) that
-- passes the input as one WebSocket message to the app of fuzz_router_app.lua through
-- edgews._dispatch_message (the function the C core calls for every message: the app
-- pipeline, JSON decoding, the middleware chain, type lookup, validation, handlers,
-- error replies), with a stand-in socket that records what is sent, and then to a
-- standalone edgews.router with the same routes through r:dispatch. Raises when an
-- oracle fails.
--
-- Byte 0 bit 0: a binary frame. The rest is the message. Text that is not UTF-8 is
-- skipped: the core refuses it (1007) before Lua sees it.
--
-- Oracles (from router.lua's and validate.lua's contracts, with references written
-- here: object-ness from the text, a naive recursive validator on the raw schemas):
--  - exactly one reply per message (none when a middleware stops it), and it is a
--    text message of valid UTF-8 (the core sends it as a text frame) and valid JSON;
--  - an error reply is {"type":"error","error":code,"message":text,...} with the code
--    the reference predicts, in the documented order (message_too_large,
--    binary_not_supported, invalid_json, invalid_message, missing_type, unknown_type,
--    validation_failed), the request's id when it is a string or a finite number
--    (as the JSON encoder writes it), details = { max_size } or the exact list of
--    { field, error } the reference validator finds (at most MAX_ERRORS, in order);
--  - a handler runs only for a message that passes, and only its route's handler;
--    a handler that raises gets one handler_error reply and the app's error handler
--    is called once; nothing else ever reaches the error handler;
--  - r:dispatch of a standalone router agrees with the pipeline (code, id, details)
--    and never raises; router.error_message encodes what dispatch reports;
--  - the router's decoder (edgews.json, the core's decoder in this VM) returns what
--    lua-cjson returns for the message text: the same values (numbers bit for bit),
--    the same error message, tables whose pairs() visit the same keys in the same
--    order.

local edgews = require "edgews"
local router = require "edgews.router"
local validate = require "edgews.validate"
local cjson = require "cjson.safe"
local schemas = require "fuzz_router_schemas"
local log = require "fuzz_router_log"
local fuzz = fuzz -- luacheck: ignore (set by fuzz_router.c)

local byte, sub, format, find = string.byte, string.sub, string.format, string.find
local floor, huge = math.floor, math.huge
local null = cjson.null
local MAX_ERRORS = validate.MAX_ERRORS

local json = require "edgews.json"

local function check(cond, fmt, ...)
  if not cond then error("invariant: " .. format(fmt, ...), 2) end
end

local function show(v)
  if type(v) == "string" then return format("%q", #v > 300 and sub(v, 1, 300) .. "..." or v) end
  if type(v) == "table" then
    local s = cjson.encode(v)
    return s or tostring(v)
  end
  return tostring(v)
end

-- ----------------------------------------------------------- the stand-in socket

local sent = {}
local Sock = {}
Sock.__index = Sock
function Sock.send(self, data, is_binary)
  check(type(data) == "string", "send of a %s", type(data))
  sent[#sent + 1] = { data = data, binary = is_binary }
  return true
end
function Sock.close(self, code, reason)
  sent[#sent + 1] = { close = code, reason = reason }
  return true
end
function Sock.is_open() return true end
function Sock.remote_addr() return "127.0.0.1", 40000 end
function Sock.buffered_amount() return 0 end

-- --------------------------------------------------------------------- reference

local function finite(v) return type(v) == "number" and v == v and v > -huge and v < huge end

local function is_array(t)
  local n = 0
  for k in pairs(t) do
    if type(k) ~= "number" or k < 1 or k ~= floor(k) then return false end
    n = n + 1
  end
  for i = 1, n do if t[i] == nil then return false end end
  return true
end

local function type_ok(t, v)
  if t == "string" or t == "boolean" or t == "table" then return type(v) == t end
  if t == "number" then return finite(v) end
  if t == "integer" then return finite(v) and v == floor(v) end
  return type(v) == "table" and is_array(v)
end

local function sorted_names(schema)
  local names = {}
  for k in pairs(schema) do names[#names + 1] = k end
  table.sort(names)
  return names
end

local ref_value
local function ref_fields(schema, data, prefix, errors)
  for _, name in ipairs(sorted_names(schema)) do
    ref_value(schema[name], data[name], prefix .. name, errors)
  end
end

-- Appends { field, error } for v against rule (the first failing rule only).
ref_value = function(rule, v, path, errors)
  if v == nil or v == null then
    if rule.required then errors[#errors + 1] = { field = path, error = "required" } end
    return
  end
  local function fail(code) errors[#errors + 1] = { field = path, error = code } end
  if rule.type and not type_ok(rule.type, v) then return fail("type") end
  if rule.min_length and #v < rule.min_length then return fail("min_length") end
  if rule.max_length and #v > rule.max_length then return fail("max_length") end
  if rule.min and v < rule.min then return fail("min") end
  if rule.max and v > rule.max then return fail("max") end
  if rule.enum then
    local found = false
    for _, e in ipairs(rule.enum) do if e == v then found = true end end
    if not found then return fail("enum") end
  end
  if rule.pattern and not find(v, rule.pattern) then return fail("pattern") end
  if rule.fields then ref_fields(rule.fields, v, path .. ".", errors) end
  if rule.items then
    for i = 1, #v do ref_value(rule.items, v[i], path .. "[" .. (i - 1) .. "]", errors) end
  end
end

local function ref_validate(schema, data)
  local errors = {}
  ref_fields(schema, data, "", errors)
  while #errors > MAX_ERRORS do errors[#errors] = nil end
  return errors
end

local routes = {}
for name in pairs(schemas.validated) do routes[name] = true end
for _, name in ipairs(schemas.plain) do routes[name] = true end

-- What must happen: code (nil when a handler runs), id, details, route handled.
local function expect(raw, is_binary)
  if #raw > schemas.max_json_size then
    return { code = "message_too_large", details = { max_size = schemas.max_json_size } }
  end
  if is_binary then return { code = "binary_not_supported" } end
  local v = cjson.decode(raw)
  if v == nil then return { code = "invalid_json" } end
  local first = raw:match("^[ \t\r\n]*(.)")
  if type(v) ~= "table" or first ~= "{" then return { code = "invalid_message" } end
  local id = v.id
  if not (type(id) == "string" or finite(id)) then id = nil end
  if type(v.type) ~= "string" then return { code = "missing_type", id = id } end
  if not routes[v.type] then return { code = "unknown_type", id = id } end
  local schema = schemas.validated[v.type]
  if schema then
    local errors = ref_validate(schema, v)
    if #errors > 0 then return { code = "validation_failed", id = id, details = errors } end
  end
  if v.type == "boom" then return { code = "handler_error", id = id, raised = true } end
  if v.type == "stop" then return { stopped = true } end
  return { route = v.type }
end

-- The id as it comes back through the JSON encoder (numbers: 14 significant digits).
local function as_sent(id)
  if id == nil then return nil end
  return cjson.decode(cjson.encode { id })[1]
end

local function same_details(got, want)
  if want == nil then return got == nil end
  if type(got) ~= "table" then return false end
  if want.max_size then return got.max_size == want.max_size end
  if #got ~= #want then return false end
  for i, w in ipairs(want) do
    local g = got[i]
    if type(g) ~= "table" or g.field ~= w.field or g.error ~= w.error or type(g.message) ~= "string"
      or sub(g.message, 1, #w.field) ~= w.field then
      return false
    end
  end
  return true
end

-- ------------------------------------------------------- the standalone router

local standalone = router.new { max_size = schemas.max_json_size }
local function noop() end
for name, schema in pairs(schemas.validated) do standalone:route(name, noop, { validate = schema }) end
for _, name in ipairs(schemas.plain) do standalone:route(name, noop) end

-- The decoder against lua-cjson: nil when the same, else where they differ.
local function differs(a, b, path)
  if type(a) ~= type(b) then return path .. ": " .. type(a) .. " vs " .. type(b) end
  if type(a) == "number" then
    if format("%.17g", a) ~= format("%.17g", b) or (a == 0 and 1 / a ~= 1 / b) then
      return path .. format(": %.17g vs %.17g", a, b)
    end
    return nil
  end
  if type(a) ~= "table" then return a ~= b and (path .. ": " .. show(a) .. " vs " .. show(b)) or nil end
  local ka, kb = next(a), next(b)
  while ka ~= nil or kb ~= nil do
    if ka ~= kb then return path .. ": pairs order " .. show(ka) .. " vs " .. show(kb) end
    local d = differs(a[ka], b[kb], path .. "." .. tostring(ka))
    if d then return d end
    ka, kb = next(a, ka), next(b, kb)
  end
  return nil
end

return function(input)
  local is_binary = (byte(input, 1) or 0) % 2 == 1
  local raw = sub(input, 2)
  check(json.fast, "the router's decoder is not the core's")
  do
    local a1, a2 = json.decode(raw)
    local b1, b2 = cjson.decode(raw)
    local d = differs(a1, b1, "value") or differs(a2, b2, "error")
    check(d == nil, "edgews.json and lua-cjson differ on %s: %s", show(raw), tostring(d))
  end
  if not is_binary and not fuzz.utf8_valid(raw) then return end
  local want = expect(raw, is_binary)

  -- 1. the app's pipeline, entered where the core enters it
  for i = #sent, 1, -1 do sent[i] = nil end
  for i = #log.errors, 1, -1 do log.errors[i] = nil end
  log.raw = raw
  local sock = setmetatable({ id = 1, path = schemas.path, ctx = {}, _c = true }, Sock)
  edgews._dispatch_message(sock, raw, is_binary)

  if want.stopped then
    check(#sent == 0, "a stopped message got a reply: %s", show(sent[1] and sent[1].data))
  else
    check(#sent == 1, "%d replies to %s (want %s; errors: %s)", #sent, show(raw),
      show(want.code or want.route), show(log.errors[1]))
    local s = sent[1]
    check(s.data and not s.binary, "the reply is not a text message")
    check(fuzz.utf8_valid(s.data), "the reply is not valid UTF-8: %s", show(s.data))
    local reply = cjson.decode(s.data)
    check(type(reply) == "table", "the reply is not JSON: %s", show(s.data))
    if want.code then
      check(reply.type == "error" and reply.error == want.code,
        "reply %s to %s, want %s", show(s.data), show(raw), want.code)
      check(type(reply.message) == "string" and #reply.message > 0, "no message")
      check(reply.id == as_sent(want.id), "reply id %s, want %s", show(reply.id), show(want.id))
      check(same_details(reply.details, want.details), "details %s, want %s", show(reply.details),
        show(want.details))
    else
      check(reply.type == "ok" and reply.route == want.route, "reply %s, want the %s handler",
        show(s.data), want.route)
    end
  end
  if want.raised then
    check(#log.errors == 1 and find(log.errors[1], "boom from the handler", 1, true),
      "error handler saw %s", show(log.errors[1]))
  else
    check(#log.errors == 0, "unexpected error: %s", show(log.errors[1]))
  end

  -- 2. a standalone router: r:dispatch with a recording reply function
  local calls = {}
  local ok, res = pcall(standalone.dispatch, standalone, sock, raw, is_binary, {},
    function(_, code, message, details, id)
      calls[#calls + 1] = { code = code, message = message, details = details, id = id }
    end)
  check(ok, "r:dispatch raised: %s", show(res))
  if want.code and want.code ~= "handler_error" then
    check(res == false and #calls == 1 and calls[1].code == want.code, "r:dispatch said %s, want %s",
      show(calls[1] and calls[1].code), want.code)
    local c = calls[1]
    check(c.id == want.id, "r:dispatch id %s, want %s",
      show(c.id), show(want.id))
    check(same_details(c.details, want.details), "r:dispatch details %s", show(c.details))
    local ok2, text = pcall(router.error_message, c.code, c.message, c.details, c.id)
    check(ok2 and fuzz.utf8_valid(text), "error_message failed: %s", show(text))
  else
    check(res == true and #calls == 0, "r:dispatch refused a valid message: %s", show(calls[1]))
  end
end
