-- edgews.jwt: JSON Web Tokens (RFC 7519) signed with JWS HMAC algorithms
-- HS256, HS384, HS512 (RFC 7515, RFC 7518 3.2). Compact serialisation only.
--
-- API
--   jwt.sign(claims, key [, alg]) -> token          alg defaults to "HS256"
--   jwt.verify(token, key, opts)  -> claims | nil, err
--   jwt.decode_unverified(token)  -> header, claims | nil, err
--
-- verify options (opts is required; misuse such as a missing alg raises):
--   alg         required, the one accepted algorithm ("HS256"/"HS384"/"HS512").
--               The token's header must name exactly this algorithm: "none",
--               another HMAC size or anything else is refused, so the token
--               cannot choose how it is checked (no algorithm confusion).
--   leeway      seconds of clock skew allowed for exp and nbf (default 0)
--   iss         accepted issuer, or a list of them (default: not checked)
--   aud         accepted audience, or a list of them (default: not checked);
--               the token's aud may be a string or an array, any match accepts
--   now         function returning the current time in seconds (default os.time)
--   max_length  longest accepted token in bytes (default 8192)
--
-- verify error strings (stable):
--   "too long"               the token exceeds max_length
--   "malformed"              not a string, not exactly three non-empty
--                            dot-separated segments, bad base64url in a segment,
--                            header or payload not a JSON object
--   "unsupported algorithm"  header alg missing, "none", or not opts.alg
--   "unsupported header"     a "crit" header parameter (no extensions supported)
--   "bad signature"          the MAC does not match (compared in constant time)
--   "malformed claims"       exp, nbf or iat present but not a finite number
--   "expired"                exp <= now - leeway
--   "not yet valid"          nbf > now + leeway
--   "invalid issuer"         iss checked and missing or not accepted
--   "invalid audience"       aud checked and missing or no value accepted
--
-- Order: the header is checked and the signature verified before the payload
-- JSON is parsed, so unauthenticated payloads never reach the JSON parser. The
-- base64url of all three segments is validated first (strict, canonical, no
-- padding: see edgews.crypto). JSON numbers such as 1e999 decode to infinity and
-- NaN is refused by the parser; time claims must be finite, otherwise a NaN exp
-- would compare false and never expire.
--
-- decode_unverified does no verification at all (no signature, no algorithm, no
-- time checks): its result is for logging and debugging only and must never be
-- used to make a decision. It accepts an empty signature segment.

local crypto = require "edgews.crypto"
local cjson_safe = require "cjson.safe"

local type, error, tostring, pairs, ipairs = type, error, tostring, pairs, ipairs
local string_match = string.match
local math_huge = math.huge
local os_time = os.time
local hmac, equals = crypto.hmac, crypto.equals
local b64url_encode, b64url_decode = crypto.base64url_encode, crypto.base64url_decode

local _M = {}

-- Own parser/encoder instances: global cjson settings of the app are not touched.
local json = cjson_safe.new()
json.decode_max_depth(32)
json.decode_invalid_numbers(false)
local json_encode = require("cjson").new().encode -- raises on unencodable claims

local algs = { HS256 = "sha256", HS384 = "sha384", HS512 = "sha512" }
-- Encoded headers are fixed per algorithm (deterministic member order).
local encoded_header = {}
for alg in pairs(algs) do
  encoded_header[alg] = b64url_encode('{"alg":"' .. alg .. '","typ":"JWT"}')
end

local DEFAULT_MAX_LENGTH = 8192

local function check_key(fn, key)
  if type(key) ~= "string" or key == "" then
    error("jwt." .. fn .. ": key must be a non-empty string", 3)
  end
end

--- jwt.sign(claims, key [, alg]) -> token
function _M.sign(claims, key, alg)
  alg = alg or "HS256"
  if type(claims) ~= "table" then error("jwt.sign: claims must be a table", 2) end
  check_key("sign", key)
  local md = algs[alg]
  if not md then error("jwt.sign: unsupported algorithm " .. tostring(alg), 2) end
  local payload = json_encode(claims)
  if payload:sub(1, 1) ~= "{" then
    -- cjson encodes a table with only array keys as a JSON array.
    error("jwt.sign: claims must encode to a JSON object", 2)
  end
  local input = encoded_header[alg] .. "." .. b64url_encode(payload)
  return input .. "." .. b64url_encode(hmac(md, key, input))
end

-- JSON text -> table, only if it is an object.
local function decode_object(text)
  if not string_match(text, "^[ \t\r\n]*{") then return nil end
  local v = json.decode(text)
  if type(v) ~= "table" then return nil end
  return v
end

-- token -> header (table), signing input, payload bytes, signature bytes | nil, err
local function split(token, max_length, allow_empty_sig)
  if type(token) ~= "string" then return nil, "malformed" end
  if #token > max_length then return nil, "too long" end
  local h, p, s = string_match(token, "^([^.]+)%.([^.]+)%.([^.]*)$")
  if not h or (s == "" and not allow_empty_sig) then return nil, "malformed" end
  local header_json = b64url_decode(h)
  local payload = b64url_decode(p)
  local sig = b64url_decode(s)
  if not (header_json and payload and sig) then return nil, "malformed" end
  local header = decode_object(header_json)
  if not header then return nil, "malformed" end
  return header, h .. "." .. p, payload, sig
end

local function finite(v)
  return type(v) == "number" and v == v and v ~= math_huge and v ~= -math_huge
end

local function string_or_list(fn, name, v)
  if v == nil then return nil end
  if type(v) == "string" then return { v } end
  if type(v) == "table" and #v > 0 then
    for i, x in ipairs(v) do
      if type(x) ~= "string" then
        error("jwt." .. fn .. ": opts." .. name .. "[" .. i .. "] must be a string", 3)
      end
    end
    return v
  end
  error("jwt." .. fn .. ": opts." .. name .. " must be a string or a non-empty list of strings", 3)
end

local function member(list, v)
  if type(v) ~= "string" then return false end
  for _, x in ipairs(list) do
    if x == v then return true end
  end
  return false
end

--- jwt.verify(token, key, opts) -> claims | nil, err
function _M.verify(token, key, opts)
  check_key("verify", key)
  if type(opts) ~= "table" then error("jwt.verify: opts must be a table with alg", 2) end
  local alg = opts.alg
  local md = algs[alg]
  if not md then error("jwt.verify: opts.alg must be HS256, HS384 or HS512", 2) end
  local leeway = opts.leeway or 0
  if not finite(leeway) or leeway < 0 then
    error("jwt.verify: opts.leeway must be a non-negative number", 2)
  end
  local max_length = opts.max_length or DEFAULT_MAX_LENGTH
  if not finite(max_length) or max_length < 1 then
    error("jwt.verify: opts.max_length must be a positive number", 2)
  end
  local now = opts.now or os_time
  if type(now) ~= "function" then error("jwt.verify: opts.now must be a function", 2) end
  local issuers = string_or_list("verify", "iss", opts.iss)
  local audiences = string_or_list("verify", "aud", opts.aud)

  local header, input, payload, sig = split(token, max_length, false)
  if not header then return nil, input end
  if header.alg ~= alg then return nil, "unsupported algorithm" end
  if header.crit ~= nil then return nil, "unsupported header" end
  if not equals(hmac(md, key, input), sig) then return nil, "bad signature" end

  local claims = decode_object(payload)
  if not claims then return nil, "malformed" end
  local exp, nbf, iat = claims.exp, claims.nbf, claims.iat
  if (exp ~= nil and not finite(exp)) or (nbf ~= nil and not finite(nbf))
      or (iat ~= nil and not finite(iat)) then
    return nil, "malformed claims"
  end
  local t = now()
  if not finite(t) then error("jwt.verify: opts.now() must return a number", 2) end
  if exp ~= nil and exp <= t - leeway then return nil, "expired" end
  if nbf ~= nil and nbf > t + leeway then return nil, "not yet valid" end
  if issuers and not member(issuers, claims.iss) then return nil, "invalid issuer" end
  if audiences then
    local aud, ok = claims.aud, false
    if type(aud) == "string" then
      ok = member(audiences, aud)
    elseif type(aud) == "table" then
      for _, a in ipairs(aud) do
        if member(audiences, a) then ok = true; break end
      end
    end
    if not ok then return nil, "invalid audience" end
  end
  return claims
end

--- jwt.decode_unverified(token) -> header, claims | nil, err
-- NO VERIFICATION: for logging and debugging only.
function _M.decode_unverified(token)
  local header, err, payload = split(token, DEFAULT_MAX_LENGTH, true)
  if not header then return nil, err end
  local claims = decode_object(payload)
  if not claims then return nil, "malformed" end
  return header, claims
end

return _M
