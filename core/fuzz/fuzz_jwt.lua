-- fuzz_jwt.lua — the Lua half of fuzz_jwt.c: returns function(input) that runs the
-- real edgews.jwt / edgews.auth / edgews.crypto on the input and raises when one of
-- the oracles below fails. The references here are written independently of the
-- modules (character loops instead of patterns, mbedTLS called from C for MACs) and
-- follow the contracts in the modules' header comments.
--
-- Byte 0 picks the mode (mod 6); byte 1 the verify options (alg, leeway, iss, aud,
-- max_length). Modes:
--   0 raw token: jwt.verify, jwt.decode_unverified and the auth.jwt strategy (its
--     verify, and its authenticate with the token in the Authorization header, the
--     query string and the subprotocol list) on the rest of the input; the exact
--     error is predicted by the reference (length, three segments, strict canonical
--     base64url, header object, alg, crit, then "bad signature" unless the MAC is
--     right).
--   1 signed: header and payload JSON taken from the input (or a standard header),
--     base64url-encoded and MACed here, so verification reaches the claims: the result
--     (claims or the exact error: malformed, malformed claims, expired, not yet valid,
--     invalid issuer, invalid audience) must match the reference.
--   2 tampering: a token made by jwt.sign, changed by up to four edits from the input
--     (replace, insert, delete a byte): verify accepts it iff it is unchanged.
--   3 crypto: base64 and base64url decoders against strict reference decoders,
--     encode/decode round trips, HMAC and SHA-256 against mbedTLS called from C,
--     crypto.equals against ==.
--   4 sign round trip: claims decoded from the input, jwt.sign, then verify as in 1.
--   5 credentials in a request: raw Authorization header, query string and
--     Sec-WebSocket-Protocol value; auth.prepare and authenticate must not raise,
--     and find the credential a reference lookup finds.
-- In every mode nothing may raise (all inputs are data, not misuse) and every error
-- string must be one of the documented ones.

local jwt = require "edgews.jwt"
local auth = require "edgews.auth"
local crypto = require "edgews.crypto"
local cjson = require "cjson.safe"
local bit = require "bit"
local fuzz = fuzz -- luacheck: ignore (set by fuzz_jwt.c)

local byte, char, sub, format = string.byte, string.char, string.sub, string.format
local floor, huge = math.floor, math.huge
local concat = table.concat
local band, rshift, lshift, bor = bit.band, bit.rshift, bit.lshift, bit.bor

local KEY = "fuzz-key-0123456789abcdef"
local NOW = 1700000000
local ALGS = { "HS256", "HS384", "HS512" }
local MD = { HS256 = "sha256", HS384 = "sha384", HS512 = "sha512" }
local ERRORS = {
  ["too long"] = true, malformed = true, ["unsupported algorithm"] = true,
  ["unsupported header"] = true, ["bad signature"] = true, ["malformed claims"] = true,
  expired = true, ["not yet valid"] = true, ["invalid issuer"] = true,
  ["invalid audience"] = true,
}

local function check(cond, fmt, ...)
  if not cond then error("invariant: " .. format(fmt, ...), 2) end
end

local function show(v)
  if type(v) == "string" then return format("%q", #v > 200 and sub(v, 1, 200) .. "..." or v) end
  return tostring(v)
end

-- ------------------------------------------------------------------ references

local URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
local STD = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function values(alphabet)
  local t = {}
  for i = 1, 64 do t[byte(alphabet, i)] = i - 1 end
  return t
end
local URLV, STDV = values(URL), values(STD)

-- Decodes characters of one alphabet, 6 bits at a time; nil if a character is
-- outside it, if a lone character is left, or if the unused low bits are not 0.
local function ref_decode(s, vals)
  if #s % 4 == 1 then return nil end
  local out, acc, nbits = {}, 0, 0
  for i = 1, #s do
    local v = vals[byte(s, i)]
    if not v then return nil end
    acc = acc * 64 + v
    nbits = nbits + 6
    if nbits >= 8 then
      nbits = nbits - 8
      local d = 2 ^ nbits
      out[#out + 1] = char(floor(acc / d))
      acc = acc % d
    end
  end
  if acc ~= 0 then return nil end
  return concat(out)
end

local function ref_b64url_decode(s) return ref_decode(s, URLV) end

local function ref_b64_decode(s)
  if #s % 4 ~= 0 then return nil end
  local pads = 0
  while pads < 2 and sub(s, #s - pads, #s - pads) == "=" and #s - pads >= 1 do pads = pads + 1 end
  local data = sub(s, 1, #s - pads)
  return ref_decode(data, STDV)
end

local function ref_encode(s, alphabet, pad)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = byte(s, i, i + 2)
    local n = lshift(a, 16) + lshift(b or 0, 8) + (c or 0)
    local k = c and 4 or b and 3 or 2
    for j = 1, k do
      local v = band(rshift(n, 18 - 6 * (j - 1)), 63)
      out[#out + 1] = sub(alphabet, v + 1, v + 1)
    end
    if pad then out[#out + 1] = ("="):rep(4 - k) end
  end
  return concat(out)
end
local function ref_b64url_encode(s) return ref_encode(s, URL, false) end

-- A JSON object as jwt.lua must accept it: text starting (after JSON whitespace)
-- with "{" that a strict decoder reads as a table. Own decoder instance with the
-- limits jwt.lua documents (depth 32, no NaN/Infinity/hex literals).
local strict = cjson.new()
strict.decode_max_depth(32)
strict.decode_invalid_numbers(false)
local function ref_object(text)
  local i = 1
  while true do
    local c = byte(text, i)
    if c == 32 or c == 9 or c == 10 or c == 13 then i = i + 1 else break end
  end
  if byte(text, i) ~= 123 then return nil end -- "{"
  local v = strict.decode(text)
  if type(v) ~= "table" then return nil end
  return v
end

local function finite(v) return type(v) == "number" and v == v and v ~= huge and v ~= -huge end

local function deep_equal(a, b)
  if type(a) ~= type(b) then return false end
  if type(a) ~= "table" then return a == b or (a ~= a and b ~= b) end
  for k, v in pairs(a) do if not deep_equal(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end

-- Splits at ".": the list of segments (character loop, no patterns).
local function segments(token)
  local list, start = {}, 1
  for i = 1, #token do
    if byte(token, i) == 46 then
      list[#list + 1] = sub(token, start, i - 1)
      start = i + 1
    end
  end
  list[#list + 1] = sub(token, start)
  return list
end

-- Options from one byte.
local function options(b)
  local o = { alg = ALGS[b % 3 + 1], now = function() return NOW end }
  if band(b, 4) ~= 0 then o.leeway = 30 end
  if band(b, 8) ~= 0 then o.iss = band(b, 64) ~= 0 and { "iss-a", "iss-b" } or "iss-a" end
  if band(b, 16) ~= 0 then o.aud = { "aud-a", "aud-b" } end
  if band(b, 32) ~= 0 then o.max_length = 100 end
  return o
end

local function in_list(list, v)
  if type(v) ~= "string" then return false end
  if type(list) == "string" then return list == v end
  for i = 1, #list do if list[i] == v then return true end end
  return false
end

-- The result jwt.verify must give: claims (a table) or nil, err.
local function ref_verify(token, key, o)
  if #token > (o.max_length or 8192) then return nil, "too long" end
  local seg = segments(token)
  if #seg ~= 3 or seg[1] == "" or seg[2] == "" or seg[3] == "" then return nil, "malformed" end
  local hj, pj, sig = ref_b64url_decode(seg[1]), ref_b64url_decode(seg[2]), ref_b64url_decode(seg[3])
  if not (hj and pj and sig) then return nil, "malformed" end
  local header = ref_object(hj)
  if not header then return nil, "malformed" end
  if header.alg ~= o.alg then return nil, "unsupported algorithm" end
  if header.crit ~= nil then return nil, "unsupported header" end
  if fuzz.hmac(MD[o.alg], key, seg[1] .. "." .. seg[2]) ~= sig then return nil, "bad signature" end
  local claims = ref_object(pj)
  if not claims then return nil, "malformed" end
  for _, name in ipairs { "exp", "nbf", "iat" } do
    if claims[name] ~= nil and not finite(claims[name]) then return nil, "malformed claims" end
  end
  local leeway = o.leeway or 0
  if claims.exp ~= nil and claims.exp <= NOW - leeway then return nil, "expired" end
  if claims.nbf ~= nil and claims.nbf > NOW + leeway then return nil, "not yet valid" end
  if o.iss and not in_list(o.iss, claims.iss) then return nil, "invalid issuer" end
  if o.aud then
    local aud, ok = claims.aud, false
    if type(aud) == "string" then
      ok = in_list(o.aud, aud)
    elseif type(aud) == "table" then
      local i = 1
      while aud[i] ~= nil do
        if in_list(o.aud, aud[i]) then ok = true end
        i = i + 1
      end
    end
    if not ok then return nil, "invalid audience" end
  end
  return claims
end

-- The options an auth.jwt strategy verifies with: it has no max_length option.
local function default_length(o)
  local o2 = {}
  for k, v in pairs(o) do o2[k] = v end
  o2.max_length = nil
  return o2
end

-- jwt.verify against the reference; also through the auth.jwt strategy.
local function verify_both(token, o)
  local ok, claims, err = pcall(jwt.verify, token, KEY, o)
  check(ok, "jwt.verify raised on %s: %s", show(token), show(claims))
  local want, werr = ref_verify(token, KEY, o)
  if want then
    check(claims ~= nil, "verify refused %s (%s), the reference accepts it", show(token), show(err))
    check(deep_equal(claims, want), "verify returned other claims for %s", show(token))
  else
    check(claims == nil, "verify accepted %s, the reference says %s", show(token), werr)
    check(err == werr, "verify said %s for %s, the reference %s", show(err), show(token), werr)
  end
  check(claims ~= nil or ERRORS[err], "undocumented error %s", show(err))

  local strat = auth.jwt { secret = KEY, alg = o.alg, leeway = o.leeway, iss = o.iss, aud = o.aud,
                           now = o.now }
  -- the strategy has no max_length option: it verifies with the default limit
  local ok2, user, uerr = pcall(strat.verify, token)
  check(ok2, "auth strategy verify raised: %s", show(user))
  local sclaims, serr = ref_verify(token, KEY, default_length(o))
  if sclaims and (type(sclaims.sub) ~= "string" or sclaims.sub == "") then
    -- a token must name its user (README: tokens without sub are refused)
    check(user == nil and uerr == "missing subject",
      "auth strategy accepted a token without a subject (%s)", show(uerr))
  elseif sclaims then
    check(user and deep_equal(user.claims, sclaims) and user.exp == sclaims.exp and user.id == sclaims.sub,
      "auth strategy user differs from the claims")
  else
    check(user == nil and uerr == serr, "auth strategy said %s, the reference %s", show(uerr), serr)
  end
  return claims, err, strat
end

-- --------------------------------------------------------------------- modes

local check_authenticate -- below

local function mode_raw(o, token)
  local claims, err, strat = verify_both(token, o)
  if claims then
    local seg = segments(token)
    check(fuzz.hmac(MD[o.alg], KEY, seg[1] .. "." .. seg[2]) == ref_b64url_decode(seg[3]),
      "accepted a token without its MAC")
  end

  -- decode_unverified: the same structure rules, an empty signature allowed, no checks
  local ok, h, c = pcall(jwt.decode_unverified, token)
  check(ok, "decode_unverified raised: %s", show(h))
  local seg = segments(token)
  local want_ok = #token <= 8192 and #seg == 3 and seg[1] ~= "" and seg[2] ~= ""
  local hj = want_ok and ref_b64url_decode(seg[1])
  local pj = want_ok and ref_b64url_decode(seg[2])
  want_ok = want_ok and hj and pj and ref_b64url_decode(seg[3]) and ref_object(hj) and ref_object(pj)
  if want_ok then
    check(h ~= nil and deep_equal(h, ref_object(hj)) and deep_equal(c, ref_object(pj)),
      "decode_unverified refused %s: %s", show(token), show(c))
  else
    check(h == nil and (c == "malformed" or c == "too long"), "decode_unverified accepted %s", show(token))
  end

  -- the strategy's lookup before the upgrade: header, query, subprotocol
  local escaped = token:gsub("[^%w%-_.]", function(x) return format("%%%02X", byte(x)) end)
  check_authenticate(strat, o, "Bearer " .. token, nil, nil)
  check_authenticate(strat, o, nil, "a=1&token=" .. escaped, nil)
  check_authenticate(strat, o, nil, nil, "chat, bearer." .. token)
end

local function sign_input(o, header_json, payload_json)
  local input = ref_b64url_encode(header_json) .. "." .. ref_b64url_encode(payload_json)
  return input .. "." .. ref_b64url_encode(fuzz.hmac(MD[o.alg], KEY, input))
end

local function mode_signed(o, rest, b2)
  local header, payload
  if band(b2, 1) == 1 then
    header = '{"alg":"' .. o.alg .. '","typ":"JWT"}'
    payload = rest
  else
    local cut = #rest > 0 and (b2 % (#rest + 1)) or 0
    header, payload = sub(rest, 1, cut), sub(rest, cut + 1)
  end
  verify_both(sign_input(o, header, payload), o)
end

local function mode_tamper(o, rest)
  o.max_length = nil
  local claims = { sub = "user-1", exp = NOW + 600, iss = "iss-a", aud = "aud-a" }
  local token = jwt.sign(claims, KEY, o.alg)
  check(verify_both(token, o), "a fresh token was refused")
  local t = token
  local i = 1
  while i + 2 <= #rest and i <= 12 do
    local op, pos, v = byte(rest, i, i + 2)
    pos = pos * 4 % (#t + 1) + 1
    op = op % 3
    if op == 0 then t = sub(t, 1, pos - 1) .. char(v) .. sub(t, pos + 1)
    elseif op == 1 then t = sub(t, 1, pos - 1) .. char(v) .. sub(t, pos)
    else t = sub(t, 1, pos - 1) .. sub(t, pos + 1) end
    i = i + 3
  end
  local got = verify_both(t, o)
  check((got ~= nil) == (t == token), "a changed token %s was accepted", show(t))
  -- another configured algorithm never accepts it
  local o2 = options(0)
  o2.alg = ALGS[(({ HS256 = 1, HS384 = 2, HS512 = 0 })[o.alg]) + 1]
  local c2, e2 = jwt.verify(token, KEY, o2)
  check(c2 == nil and e2 == "unsupported algorithm", "algorithm swap: %s", show(e2))
end

local function mode_crypto(rest, b1)
  -- decoders against the references
  for _, pair in ipairs {
    { crypto.base64url_decode, ref_b64url_decode, crypto.base64url_encode },
    { crypto.base64_decode, ref_b64_decode, crypto.base64_encode },
  } do
    local dec, ref, enc = pair[1], pair[2], pair[3]
    local ok, got, err = pcall(dec, rest)
    check(ok, "decoder raised: %s", show(got))
    local want = ref(rest)
    check(got == want, "decoded %s as %s, the reference %s", show(rest), show(got), show(want))
    if not got then check(err == "invalid base64", "decoder error %s", show(err)) end
    if got then check(enc(got) == rest, "not canonical: %s", show(rest)) end
    local e = enc(rest)
    check(dec(e) == rest and ref(e) == rest, "encode/decode round trip of %s", show(rest))
  end
  check(crypto.base64url_encode(rest) == ref_b64url_encode(rest), "base64url_encode differs")
  check(crypto.base64_encode(rest) == ref_encode(rest, STD, true), "base64_encode differs")
  -- MACs and digests against mbedTLS called from C
  local cut = #rest > 0 and b1 % (#rest + 1) or 0
  local k, d = sub(rest, 1, cut), sub(rest, cut + 1)
  for _, md in ipairs { "sha256", "sha384", "sha512" } do
    check(crypto.hmac(md, k, d) == fuzz.hmac(md, k, d), "hmac %s differs", md)
  end
  check(crypto.sha256(rest) == fuzz.sha256(rest), "sha256 differs")
  check(crypto.equals(k, d) == (k == d), "equals(%s, %s)", show(k), show(d))
  check(crypto.equals(rest, rest), "equals(s, s) is false")
  if #rest > 0 then
    local flipped = sub(rest, 1, cut) .. char(bit.bxor(byte(rest, cut + 1) or 0, bor(b1, 1)) % 256)
      .. sub(rest, cut + 2)
    check(not crypto.equals(rest, flipped), "equals ignores a changed byte")
  end
end

local function mode_sign(o, rest)
  local claims = cjson.decode(rest)
  if type(claims) ~= "table" then return end
  local ok, token = pcall(jwt.sign, claims, KEY, o.alg)
  if not ok then
    -- documented: claims that cjson cannot encode, or that encode to an array
    check(type(token) == "string", "sign raised a non-string")
    return
  end
  o.max_length = nil
  local seg = segments(token)
  check(#seg == 3, "sign made %s", show(token))
  check(ref_object(ref_b64url_decode(seg[1])).alg == o.alg, "header alg")
  verify_both(token, o)
end

-- Credential lookup order: Authorization "Bearer <token>", query "token", then the
-- first subprotocol entry "bearer.<token>".
local function unescape(s)
  local out, i = {}, 1
  while i <= #s do
    local c = sub(s, i, i)
    local hex = sub(s, i + 1, i + 2)
    if c == "+" then
      out[#out + 1] = " "
    elseif c == "%" and #hex == 2 and tonumber(hex, 16) and not hex:find("[^%x]") then
      out[#out + 1] = char(tonumber(hex, 16))
      i = i + 2
    else
      out[#out + 1] = c
    end
    i = i + 1
  end
  return concat(out)
end

local function ref_credential(authz, query, protos)
  if authz then
    local low = authz:lower()
    if sub(low, 1, 6) == "bearer" then
      local rest = sub(authz, 7)
      local ws = rest:match("^[ \t\n\r\v\f]+")
      if ws then
        local tok, trail = rest:sub(#ws + 1):match("^(%S+)(.*)$")
        if tok and not trail:find("%S") then return tok end
      end
    end
  end
  local token
  for pair in (query or ""):gmatch("[^&]+") do
    local eq = pair:find("=", 1, true)
    local k = unescape(eq and sub(pair, 1, eq - 1) or pair)
    if k == "token" then token = unescape(eq and sub(pair, eq + 1) or "") end
  end
  if token and token ~= "" then return token end
  if protos then
    for p in protos:gmatch("[^,%s]+") do
      if sub(p, 1, 7) == "bearer." then return sub(p, 8) end
    end
  end
end

-- authenticate(prepare(req)) against the reference lookup and verification.
check_authenticate = function(strat, o, authz, query, protos)
  local req = { headers = { authorization = authz, ["sec-websocket-protocol"] = protos }, query = query }
  local ok, user, err, status = pcall(function() return strat.authenticate(auth.prepare(req)) end)
  check(ok, "authenticate raised: %s", show(user))
  local cred = ref_credential(authz, query, protos)
  if not cred then
    check(user == nil and err == "missing credentials" and status == 401,
      "no credential, yet authenticate said %s", show(err))
  else
    local want, werr = ref_verify(cred, KEY, default_length(o))
    if want and (type(want.sub) ~= "string" or want.sub == "") then
      want, werr = nil, "missing subject" -- a token must name its user
    end
    check((user ~= nil) == (want ~= nil) and (user or err == werr),
      "credential %s: authenticate said %s, the reference %s", show(cred), show(err), show(werr))
  end
end

local function mode_request(o, rest, b2)
  local a = b2 % (#rest + 1)
  local b = a + (byte(rest, 1) or 0) % (#rest - a + 1)
  local authz, query, protos = sub(rest, 1, a), sub(rest, a + 1, b), sub(rest, b + 1)
  local strat = auth.jwt { secret = KEY, alg = o.alg, leeway = o.leeway, iss = o.iss, aud = o.aud,
                           now = o.now }
  check_authenticate(strat, o, authz ~= "" and authz or nil, query, protos ~= "" and protos or nil)
end

return function(input)
  local b0, b1, b2 = byte(input, 1, 3)
  b0, b1, b2 = b0 or 0, b1 or 0, b2 or 0
  local mode = b0 % 6
  local o = options(b1)
  if mode == 0 then
    mode_raw(o, sub(input, 3))
  elseif mode == 1 then
    mode_signed(o, sub(input, 4), b2)
  elseif mode == 2 then
    mode_tamper(o, sub(input, 3))
  elseif mode == 3 then
    mode_crypto(sub(input, 3), b1)
  elseif mode == 4 then
    mode_sign(o, sub(input, 3))
  else
    mode_request(o, sub(input, 4), b2)
  end
end
