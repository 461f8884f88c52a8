-- edgews.auth: authentication strategies for edgews.app{ auth = ... }.
--
--   auth = edgews.auth.jwt { secret = os.getenv("JWT_SECRET"), alg = "HS256" }
--   auth = edgews.auth.jwt { secret = s, mode = "message", timeout = 5 }
--   auth = edgews.auth.api_key { header = "x-api-key", validate = function(key, req) ... end }
--   auth = edgews.auth.custom(function(req) ... return user end, { timeout = 3 })
--
-- A strategy is a table the dispatcher in init.lua drives:
--   mode          "upgrade": decided before the 101 from the request (headers,
--                 query string, subprotocol token); failure is an HTTP 401/403
--                 with a JSON body and no upgrade.
--                 "message": the upgrade happens, then the first message must be
--                 {"type":"auth", "token": ...} (JWT) or {"type":"auth","key": ...}
--                 (API key) within `timeout` seconds; failure closes with 4401,
--                 no auth in time with 4408.
--   authenticate  function(req) -> user | nil, err [, status]   (mode "upgrade")
--   verify        function(credential, req_or_nil) -> user | nil, err  (tokens/keys
--                 in messages: first-message auth and token refresh)
--   field         the credential's field in an auth message ("token" or "key")
--   timeout       seconds the authenticator (or the first message) may take
--   max_message_size  ("message" mode) bytes a message may have until the
--                 connection has authenticated (default 16 KiB): the core closes
--                 a bigger one with 1009 from its frame header
--   refresh       true when {"type":"auth:refresh","token":...} renews the user
--   leeway        seconds added to user.exp before the connection expires (JWT)
-- A user is a table; user.id (string or number) identifies the user for the
-- per-user connection limit and edgews.user_sockets; user.exp (seconds since the
-- epoch), when set, closes the connection with 4403 at exp (+ leeway) unless a
-- refresh comes first. A JWT user must have an id: a token without `sub` is
-- refused unless the app's user function gives one, and a refresh must be for the
-- same id (an anonymous connection could otherwise be refreshed into anyone).
-- Validators may wait (they run in the connection's task). The request table:
-- method, path, query (raw), params (parsed query), headers (lower-case names),
-- remote_addr, remote_port, protocols (offered subprotocols, a list).

local jwt = require "edgews.jwt"

local type, error, tostring, ipairs, setmetatable, getmetatable =
  type, error, tostring, ipairs, setmetatable, getmetatable
local string_gsub, string_char, string_lower, tonumber = string.gsub, string.char, string.lower, tonumber

local _M = {}

local Strategy = {}
Strategy.__index = Strategy
_M.Strategy = Strategy

local function unescape(s)
  s = string_gsub(s, "+", " ")
  return (string_gsub(s, "%%(%x%x)", function(h) return string_char(tonumber(h, 16)) end))
end

--- auth.parse_query("a=1&b=x%20y") -> { a = "1", b = "x y" }
function _M.parse_query(q)
  local t = {}
  if type(q) ~= "string" then return t end
  for pair in q:gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=?(.*)$")
    if k and k ~= "" then t[unescape(k)] = unescape(v) end
  end
  return t
end

--- auth.protocols(req) -> list of the offered subprotocols
function _M.protocols(req)
  local list = {}
  local v = req.headers and req.headers["sec-websocket-protocol"]
  if v then
    for p in v:gmatch("[^,%s]+") do list[#list + 1] = p end
  end
  return list
end

local DEFAULT_AUTH_MAX_MESSAGE = 16 * 1024

local function check_mode(opts, level)
  local mode = opts.mode or "upgrade"
  if mode ~= "upgrade" and mode ~= "message" then
    error("edgews.auth: mode must be \"upgrade\" or \"message\"", level + 1)
  end
  local timeout = opts.timeout or 10
  if type(timeout) ~= "number" or not (timeout > 0) or timeout == math.huge then
    error("edgews.auth: timeout must be a positive number of seconds", level + 1)
  end
  local max = opts.max_message_size or DEFAULT_AUTH_MAX_MESSAGE
  if type(max) ~= "number" or max < 1 or max > 2 ^ 31 - 1 or max % 1 ~= 0 then
    error("edgews.auth: max_message_size must be a whole number of bytes (1 .. 2^31-1)", level + 1)
  end
  return mode, timeout, max
end

-- Where a credential is looked up before the upgrade, in order.
local function find_credential(req, o)
  for _, src in ipairs(o.from) do
    if src == "header" then
      local h = req.headers[o.header]
      if h then
        if o.scheme then
          local tok = h:match("^[Bb][Ee][Aa][Rr][Ee][Rr]%s+(%S+)%s*$")
          if tok then return tok end
        else
          return h
        end
      end
    elseif src == "query" then
      local v = req.params[o.query_param]
      if v and v ~= "" then return v end
    elseif src == "protocol" then
      -- Browsers cannot set headers: the token travels as a subprotocol entry
      -- "<prefix><token>" next to the real protocol (never selected by the server).
      for _, p in ipairs(req.protocols) do
        if p:sub(1, #o.protocol_prefix) == o.protocol_prefix then
          return p:sub(#o.protocol_prefix + 1)
        end
      end
    end
  end
end

local function strategy(mode, timeout, verify, field, o)
  local s = setmetatable({ mode = mode, timeout = timeout, verify = verify, field = field,
                           refresh = o.refresh, leeway = o.leeway or 0,
                           max_message_size = o.max_message_size,
                           protocol_prefix = o.protocol_prefix }, Strategy)
  if mode == "upgrade" then
    s.authenticate = function(req)
      local cred = find_credential(req, o)
      if not cred then return nil, "missing credentials", 401 end
      return verify(cred, req)
    end
  end
  return s
end

local sources = { header = true, query = true, protocol = true }

local function check_from(from, level)
  if type(from) ~= "table" or #from == 0 then error("edgews.auth: from must be a non-empty list", level + 1) end
  for _, f in ipairs(from) do
    if not sources[f] then
      error("edgews.auth: unknown credential source '" .. tostring(f) .. "' (header, query, protocol)", level + 1)
    end
  end
end

--- auth.jwt{ secret =, alg = "HS256", iss =, aud =, leeway = 0, mode =, timeout =,
--            max_message_size = 16384, from = {"header", "query", "protocol"},
--            query_param = "token", protocol_prefix = "bearer.",
--            user = function(claims) -> user }
-- The default user is { id = claims.sub, exp = claims.exp, claims = claims }; a
-- token without a `sub` (a non-empty string) is refused ("missing subject"), as is
-- a user from the user function without an id (a string or a number).
-- Token refresh is on: {"type":"auth:refresh","token":...} with a token for the
-- same user id renews the user and its expiry.
function _M.jwt(opts)
  if type(opts) ~= "table" then error("edgews.auth.jwt expects a table", 2) end
  if type(opts.secret) ~= "string" or #opts.secret == 0 then
    error("edgews.auth.jwt: secret must be a non-empty string", 2)
  end
  local alg = opts.alg or "HS256"
  if alg ~= "HS256" and alg ~= "HS384" and alg ~= "HS512" then
    error("edgews.auth.jwt: alg must be HS256, HS384 or HS512", 2)
  end
  local mode, timeout, max_message_size = check_mode(opts, 2)
  local from = opts.from or { "header", "query", "protocol" }
  check_from(from, 2)
  if opts.user ~= nil and type(opts.user) ~= "function" then
    error("edgews.auth.jwt: user must be a function(claims) -> user", 2)
  end
  local to_user = opts.user
  local leeway = opts.leeway or 0
  if type(leeway) ~= "number" or not (leeway >= 0) or leeway == math.huge then
    error("edgews.auth.jwt: leeway must be a non-negative number of seconds", 2)
  end
  local vopts = { alg = alg, iss = opts.iss, aud = opts.aud, leeway = leeway, now = opts.now }
  local secret = opts.secret
  local function verify(token)
    if type(token) ~= "string" then return nil, "malformed" end
    local claims, err = jwt.verify(token, secret, vopts)
    if not claims then return nil, err end
    if not to_user then
      local sub = claims.sub
      if type(sub) ~= "string" or sub == "" then return nil, "missing subject" end
      return { id = sub, exp = claims.exp, claims = claims }
    end
    local user, uerr = to_user(claims)
    if not user then return nil, uerr or "rejected" end
    local id = type(user) == "table" and user.id
    if not ((type(id) == "string" and id ~= "") or (type(id) == "number" and id == id)) then
      return nil, "no user id"
    end
    return user
  end
  return strategy(mode, timeout, verify, "token", {
    from = from, header = "authorization", scheme = "bearer", query_param = opts.query_param or "token",
    protocol_prefix = opts.protocol_prefix or "bearer.", refresh = opts.refresh ~= false,
    leeway = leeway, max_message_size = max_message_size,
  })
end

--- auth.api_key{ validate = function(key, req) -> user | nil, err, header = "x-api-key",
--                query_param = "api_key", from = {"header", "query"}, mode =, timeout = }
function _M.api_key(opts)
  if type(opts) ~= "table" or type(opts.validate) ~= "function" then
    error("edgews.auth.api_key expects { validate = function(key, req) ... }", 2)
  end
  local mode, timeout, max_message_size = check_mode(opts, 2)
  local from = opts.from or { "header", "query" }
  check_from(from, 2)
  local validate = opts.validate
  return strategy(mode, timeout, function(key, req) return validate(key, req) end, "key", {
    from = from, header = string_lower(opts.header or "x-api-key"),
    query_param = opts.query_param or "api_key", protocol_prefix = opts.protocol_prefix or "key.",
    max_message_size = max_message_size,
  })
end

--- auth.custom(function(req) -> user | nil, err [, status], { timeout = }) — a
-- validator of the whole request, before the upgrade (status 401 or 403).
function _M.custom(fn, opts)
  if type(fn) ~= "function" then error("edgews.auth.custom expects a function(req)", 2) end
  opts = opts or {}
  local _, timeout = check_mode({ timeout = opts.timeout }, 2)
  return setmetatable({ mode = "upgrade", timeout = timeout, authenticate = fn }, Strategy)
end

--- Normalises app{ auth = ... }: a strategy, or a plain function (custom).
function _M.normalize(a, level)
  if type(a) == "function" then return _M.custom(a) end
  if type(a) == "table" and getmetatable(a) == Strategy then return a end
  error("edgews.app: auth must be edgews.auth.jwt{...}, edgews.auth.api_key{...}, "
    .. "edgews.auth.custom(fn) or a function(req)", level + 1)
end

-- Used by the dispatcher: fills req.params and req.protocols.
function _M.prepare(req)
  req.params = _M.parse_query(req.query)
  req.protocols = _M.protocols(req)
  return req
end

return _M
