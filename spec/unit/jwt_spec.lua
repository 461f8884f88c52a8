-- Unit specs for lua/edgews/jwt.lua: the RFC 7515 A.1 example, sign/verify round
-- trips, and the attacks verify must refuse (alg none, algorithm swap,
-- tampering, time claims, issuer/audience, malformed tokens, crit, length).
-- Plain LuaJIT, no server; the clock is injected through opts.now.
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local jwt = require "edgews.jwt"
local crypto = require "edgews.crypto"
local bit = require "bit"

local b64 = crypto.base64url_encode
local KEY = "a-test-key-of-at-least-32-bytes!"
local NOW = 1700000000
local function clock(t) return function() return t end end

-- A token from raw header/payload JSON text, signed (unless sig is given).
local function forge(header, payload, key, md, sig)
  local input = b64(header) .. "." .. b64(payload)
  return input .. "." .. (sig or b64(crypto.hmac(md or "sha256", key or KEY, input)))
end

local function opts(t)
  t = t or {}
  t.alg = t.alg or "HS256"
  t.now = t.now or clock(NOW)
  return t
end

local function rejects(token, err, o, key)
  local claims, e = jwt.verify(token, key or KEY, opts(o))
  assert.is_nil(claims)
  assert.are.equal(err, e)
end

describe("edgews.jwt RFC 7515 appendix A.1", function()
  local token = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9"
    .. ".eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ"
    .. ".dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
  local key = crypto.base64url_decode(
    "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow")

  it("decodes the JWK key", function()
    assert.are.equal(64, #key)
  end)

  it("verifies before its exp", function()
    local claims, err = jwt.verify(token, key, { alg = "HS256", now = clock(1300819379) })
    assert.is_nil(err)
    assert.are.same({ iss = "joe", exp = 1300819380, ["http://example.com/is_root"] = true }, claims)
  end)

  it("is expired at and after its exp", function()
    rejects(token, "expired", { now = clock(1300819380) }, key)
    rejects(token, "expired", { now = os.time }, key) -- the default clock is also os.time
    local claims, err = jwt.verify(token, key, { alg = "HS256" })
    assert.is_nil(claims)
    assert.are.equal("expired", err)
  end)

  it("is refused with another key or another configured algorithm", function()
    rejects(token, "bad signature", { now = clock(1300819379) }, KEY)
    rejects(token, "unsupported algorithm", { alg = "HS512", now = clock(1300819379) }, key)
  end)
end)

describe("edgews.jwt round trips", function()
  for _, alg in ipairs({ "HS256", "HS384", "HS512" }) do
    it("signs and verifies " .. alg, function()
      local claims = { sub = "user-1", n = 42, ok = true, nested = { a = { 1, 2, 3 } },
        s = "ü/\"\\", exp = NOW + 60, nbf = NOW, iat = NOW }
      local token = jwt.sign(claims, KEY, alg)
      assert.is_truthy(token:match("^[%w_-]+%.[%w_-]+%.[%w_-]+$"))
      local got, err = jwt.verify(token, KEY, opts({ alg = alg }))
      assert.is_nil(err)
      assert.are.same(claims, got)
      local header = jwt.decode_unverified(token)
      assert.are.same({ alg = alg, typ = "JWT" }, header)
    end)
  end

  it("defaults to HS256", function()
    local token = jwt.sign({ a = 1 }, KEY)
    assert.are.equal("HS256", (jwt.decode_unverified(token)).alg)
    assert.are.same({ a = 1 }, jwt.verify(token, KEY, opts()))
  end)

  it("signs an empty claims table as an object", function()
    local token = jwt.sign({}, KEY)
    assert.are.same({}, jwt.verify(token, KEY, opts()))
  end)

  it("accepts a token built by another encoder (whitespace, member order)", function()
    local token = forge('{ "typ" : "JWT" ,\r\n "alg" : "HS256" }', ' {"sub":"x"} ')
    assert.are.same({ sub = "x" }, jwt.verify(token, KEY, opts()))
  end)
end)

describe("edgews.jwt algorithm attacks", function()
  it("rejects alg none without a signature", function()
    local token = forge('{"alg":"none","typ":"JWT"}', '{"sub":"admin"}', nil, nil, "")
    rejects(token, "malformed")
  end)

  it("rejects alg none with a signature", function()
    for _, name in ipairs({ "none", "None", "NONE" }) do
      rejects(forge('{"alg":"' .. name .. '"}', '{"sub":"admin"}'), "unsupported algorithm")
    end
  end)

  it("rejects a header without alg or with a non-string alg", function()
    rejects(forge('{"typ":"JWT"}', '{}'), "unsupported algorithm")
    rejects(forge('{"alg":256}', '{}'), "unsupported algorithm")
    rejects(forge('{"alg":["HS256"]}', '{}'), "unsupported algorithm")
    rejects(forge('{"alg":null}', '{}'), "unsupported algorithm")
  end)

  it("rejects an HS512 token when HS256 is configured, and the reverse", function()
    local t512 = jwt.sign({ sub = "x" }, KEY, "HS512")
    rejects(t512, "unsupported algorithm", { alg = "HS256" })
    local t256 = jwt.sign({ sub = "x" }, KEY, "HS256")
    rejects(t256, "unsupported algorithm", { alg = "HS512" })
    rejects(t256, "unsupported algorithm", { alg = "HS384" })
  end)

  it("rejects an HS256 header carrying an HS512 MAC", function()
    rejects(forge('{"alg":"HS256"}', '{}', KEY, "sha512"), "bad signature")
  end)

  it("uses the last alg member when the header repeats it", function()
    rejects(forge('{"alg":"HS256","alg":"none"}', '{}'), "unsupported algorithm")
  end)

  it("rejects a crit header", function()
    rejects(forge('{"alg":"HS256","crit":["exp"],"exp":1}', '{}'), "unsupported header")
    rejects(forge('{"alg":"HS256","crit":[]}', '{}'), "unsupported header")
  end)
end)

describe("edgews.jwt tampering", function()
  local token = jwt.sign({ sub = "user", role = "reader" }, KEY)
  local h, p, s = token:match("^(.-)%.(.-)%.(.*)$")
  local sig = crypto.base64url_decode(s)

  it("rejects a tampered payload", function()
    rejects(h .. "." .. b64('{"role":"admin","sub":"user"}') .. "." .. s, "bad signature")
  end)

  it("rejects a tampered header", function()
    rejects(b64('{"alg":"HS256","typ":"JWT","kid":"x"}') .. "." .. p .. "." .. s, "bad signature")
  end)

  it("rejects a signature with any single bit flipped", function()
    for i = 1, #sig do
      for _, mask in ipairs({ 1, 128 }) do
        local bad = sig:sub(1, i - 1) .. string.char(bit.bxor(sig:byte(i), mask)) .. sig:sub(i + 1)
        rejects(h .. "." .. p .. "." .. b64(bad), "bad signature")
      end
    end
  end)

  it("rejects a truncated or extended signature", function()
    rejects(h .. "." .. p .. "." .. b64(sig:sub(1, -2)), "bad signature")
    rejects(h .. "." .. p .. "." .. b64(sig:sub(1, 16)), "bad signature")
    rejects(h .. "." .. p .. "." .. b64(sig:sub(1, 1)), "bad signature")
    rejects(h .. "." .. p .. "." .. b64(sig .. "\0"), "bad signature")
    local claims = jwt.verify(h .. "." .. p .. "." .. s:sub(1, -2), KEY, opts())
    assert.is_nil(claims)
  end)

  it("rejects a token signed with another key", function()
    rejects(jwt.sign({ sub = "user" }, KEY .. "x"), "bad signature")
  end)

  it("rejects a non-canonical signature encoding", function()
    -- 32 bytes -> 43 characters, the last one carries 2 unused bits.
    local last = s:sub(-1)
    local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    local v = alphabet:find(last, 1, true) - 1
    local other = alphabet:sub(v + 2, v + 2) -- v + 1: sets the lowest unused bit
    rejects(h .. "." .. p .. "." .. s:sub(1, -2) .. other, "malformed")
  end)
end)

describe("edgews.jwt time claims", function()
  it("rejects an expired token, exp == now included", function()
    rejects(jwt.sign({ exp = NOW - 1 }, KEY), "expired")
    rejects(jwt.sign({ exp = NOW }, KEY), "expired")
    assert.is_table(jwt.verify(jwt.sign({ exp = NOW + 1 }, KEY), KEY, opts()))
  end)

  it("rejects a token not yet valid", function()
    rejects(jwt.sign({ nbf = NOW + 1 }, KEY), "not yet valid")
    assert.is_table(jwt.verify(jwt.sign({ nbf = NOW }, KEY), KEY, opts()))
  end)

  it("accepts a just-expired token within the leeway, not beyond", function()
    local token = jwt.sign({ exp = NOW - 5 }, KEY)
    assert.is_table(jwt.verify(token, KEY, opts({ leeway = 10 })))
    assert.is_table(jwt.verify(token, KEY, opts({ leeway = 5.5 })))
    rejects(token, "expired", { leeway = 5 })
    rejects(token, "expired", { leeway = 4 })
  end)

  it("accepts an nbf slightly in the future within the leeway", function()
    local token = jwt.sign({ nbf = NOW + 5 }, KEY)
    assert.is_table(jwt.verify(token, KEY, opts({ leeway = 5 })))
    rejects(token, "not yet valid", { leeway = 4 })
  end)

  it("checks against the injected clock", function()
    local token = jwt.sign({ nbf = 100, exp = 200 }, KEY)
    rejects(token, "not yet valid", { now = clock(99) })
    assert.is_table(jwt.verify(token, KEY, opts({ now = clock(100) })))
    assert.is_table(jwt.verify(token, KEY, opts({ now = clock(199.5) })))
    rejects(token, "expired", { now = clock(200) })
  end)

  it("rejects exp, nbf or iat that are not finite numbers", function()
    rejects(jwt.sign({ exp = tostring(NOW + 60) }, KEY), "malformed claims")
    rejects(jwt.sign({ nbf = true }, KEY), "malformed claims")
    rejects(jwt.sign({ iat = "now" }, KEY), "malformed claims")
    rejects(jwt.sign({ exp = { NOW + 60 } }, KEY), "malformed claims")
    rejects(forge('{"alg":"HS256"}', '{"exp":null}'), "malformed claims")
    rejects(forge('{"alg":"HS256"}', '{"exp":1e999}'), "malformed claims")
    rejects(forge('{"alg":"HS256"}', '{"nbf":-1e999}'), "malformed claims")
    -- NaN is not JSON; the parser refuses it.
    rejects(forge('{"alg":"HS256"}', '{"exp":NaN}'), "malformed")
  end)
end)

describe("edgews.jwt issuer and audience", function()
  it("accepts a matching issuer, given as a string or a list", function()
    local token = jwt.sign({ iss = "https://auth.example" }, KEY)
    assert.is_table(jwt.verify(token, KEY, opts({ iss = "https://auth.example" })))
    assert.is_table(jwt.verify(token, KEY, opts({ iss = { "other", "https://auth.example" } })))
  end)

  it("rejects a wrong or missing issuer", function()
    rejects(jwt.sign({ iss = "evil" }, KEY), "invalid issuer", { iss = "https://auth.example" })
    rejects(jwt.sign({ iss = "evil" }, KEY), "invalid issuer", { iss = { "a", "b" } })
    rejects(jwt.sign({ sub = "x" }, KEY), "invalid issuer", { iss = "https://auth.example" })
    rejects(jwt.sign({ iss = { "https://auth.example" } }, KEY), "invalid issuer",
      { iss = "https://auth.example" })
  end)

  it("does not check iss or aud unless asked", function()
    assert.is_table(jwt.verify(jwt.sign({ iss = "any", aud = 5 }, KEY), KEY, opts()))
  end)

  it("accepts a matching audience in string and array forms", function()
    local s = jwt.sign({ aud = "api" }, KEY)
    local a = jwt.sign({ aud = { "web", "api" } }, KEY)
    for _, token in ipairs({ s, a }) do
      assert.is_table(jwt.verify(token, KEY, opts({ aud = "api" })))
      assert.is_table(jwt.verify(token, KEY, opts({ aud = { "x", "api" } })))
    end
  end)

  it("rejects a wrong or missing audience in string and array forms", function()
    rejects(jwt.sign({ aud = "web" }, KEY), "invalid audience", { aud = "api" })
    rejects(jwt.sign({ aud = "web" }, KEY), "invalid audience", { aud = { "api", "admin" } })
    rejects(jwt.sign({ aud = { "web", "mobile" } }, KEY), "invalid audience", { aud = "api" })
    rejects(jwt.sign({ aud = { "web" } }, KEY), "invalid audience", { aud = { "api", "x" } })
    rejects(jwt.sign({ aud = {} }, KEY), "invalid audience", { aud = "api" })
    rejects(jwt.sign({ sub = "x" }, KEY), "invalid audience", { aud = "api" })
    rejects(jwt.sign({ aud = 1 }, KEY), "invalid audience", { aud = "1" })
    rejects(forge('{"alg":"HS256"}', '{"aud":{"api":true}}'), "invalid audience", { aud = "api" })
    rejects(forge('{"alg":"HS256"}', '{"aud":[null,1,"web"]}'), "invalid audience", { aud = "api" })
  end)
end)

describe("edgews.jwt malformed tokens", function()
  local good = jwt.sign({ sub = "x" }, KEY)
  local h, p, s = good:match("^(.-)%.(.-)%.(.*)$")

  local cases = {
    { "two segments", h .. "." .. p },
    { "four segments", good .. "." .. s },
    { "one segment", h },
    { "an empty string", "" },
    { "only dots", ".." },
    { "an empty header", "." .. p .. "." .. s },
    { "an empty payload", h .. ".." .. s },
    { "an empty signature", h .. "." .. p .. "." },
    { "padding in a segment", h .. "=." .. p .. "." .. s },
    { "a standard-alphabet character", h .. "." .. p .. "+." .. s },
    { "a space", h .. " ." .. p .. "." .. s },
    { "a trailing newline", good .. "\n" },
    { "an impossible segment length", h .. "A." .. p .. "." .. s },
    { "a header that is not JSON", b64("alg=HS256") .. "." .. p .. "." .. s },
    { "a header that is a JSON array", forge('["alg","HS256"]', '{}') },
    { "a header that is a JSON string", forge('"HS256"', '{}') },
    { "a header with trailing garbage", forge('{"alg":"HS256"}x', '{}') },
    { "a payload that is a JSON array", forge('{"alg":"HS256"}', '[1,2]') },
    { "a payload that is an empty JSON array", forge('{"alg":"HS256"}', '[]') },
    { "a payload that is a JSON string", forge('{"alg":"HS256"}', '"sub"') },
    { "a payload that is a JSON number", forge('{"alg":"HS256"}', '42') },
    { "a payload that is not JSON", forge('{"alg":"HS256"}', '{sub:1}') },
    { "a payload that is truncated JSON", forge('{"alg":"HS256"}', '{"sub":"x"') },
  }
  for _, case in ipairs(cases) do
    it("rejects " .. case[1], function()
      rejects(case[2], "malformed")
    end)
  end

  it("rejects a token that is not a string", function()
    for _, v in ipairs({ 42, {}, true }) do rejects(v, "malformed") end
    rejects(nil, "malformed")
  end)

  it("rejects nesting deeper than the parser allows", function()
    rejects(forge('{"alg":"HS256"}', '{"a":' .. ("["):rep(100) .. ("]"):rep(100) .. "}"),
      "malformed")
  end)
end)

describe("edgews.jwt length limit", function()
  it("rejects a token over 8192 bytes by default", function()
    local big = jwt.sign({ data = ("x"):rep(7000) }, KEY)
    assert.is_true(#big > 8192)
    rejects(big, "too long")
    assert.is_table(jwt.verify(big, KEY, opts({ max_length = #big })))
  end)

  it("honours max_length exactly", function()
    local token = jwt.sign({ sub = "x" }, KEY)
    assert.is_table(jwt.verify(token, KEY, opts({ max_length = #token })))
    rejects(token, "too long", { max_length = #token - 1 })
  end)

  it("checks the length before anything else", function()
    rejects(("!"):rep(9000), "too long")
  end)
end)

describe("edgews.jwt.decode_unverified", function()
  it("returns header and claims without any verification", function()
    local token = forge('{"alg":"HS256","kid":"k1"}', '{"sub":"x","exp":1}', "wrong key")
    local header, claims = jwt.decode_unverified(token)
    assert.are.same({ alg = "HS256", kid = "k1" }, header)
    assert.are.same({ sub = "x", exp = 1 }, claims)
  end)

  it("accepts an unsigned token but rejects malformed ones", function()
    local header, claims = jwt.decode_unverified(forge('{"alg":"none"}', '{"a":1}', nil, nil, ""))
    assert.are.same({ alg = "none" }, header)
    assert.are.same({ a = 1 }, claims)
    for _, t in ipairs({ "a.b", "", forge('{"alg":"HS256"}', '[1]'), 5 }) do
      local hh, err = jwt.decode_unverified(t)
      assert.is_nil(hh)
      assert.are.equal("malformed", err)
    end
  end)
end)

describe("edgews.jwt misuse", function()
  local token = jwt.sign({ sub = "x" }, KEY)

  it("raises when verify has no usable alg", function()
    assert.has_error(function() jwt.verify(token, KEY) end)
    assert.has_error(function() jwt.verify(token, KEY, {}) end)
    assert.has_error(function() jwt.verify(token, KEY, { alg = "none" }) end)
    assert.has_error(function() jwt.verify(token, KEY, { alg = "RS256" }) end)
    assert.has_error(function() jwt.verify(token, KEY, { alg = "hs256" }) end)
  end)

  it("raises on bad keys and options", function()
    assert.has_error(function() jwt.verify(token, "", opts()) end)
    assert.has_error(function() jwt.verify(token, nil, opts()) end)
    assert.has_error(function() jwt.verify(token, KEY, opts({ leeway = -1 })) end)
    assert.has_error(function() jwt.verify(token, KEY, opts({ leeway = 0 / 0 })) end)
    assert.has_error(function() jwt.verify(token, KEY, opts({ now = 5 })) end)
    assert.has_error(function() jwt.verify(token, KEY, opts({ max_length = 0 })) end)
    assert.has_error(function() jwt.verify(token, KEY, opts({ iss = 5 })) end)
    assert.has_error(function() jwt.verify(token, KEY, opts({ aud = {} })) end)
    assert.has_error(function() jwt.verify(token, KEY, opts({ aud = { "a", 1 } })) end)
    assert.has_error(function() jwt.verify(token, KEY, opts({ now = function() return "x" end })) end)
  end)

  it("raises on bad sign arguments", function()
    assert.has_error(function() jwt.sign("claims", KEY) end)
    assert.has_error(function() jwt.sign({ 1, 2 }, KEY) end)
    assert.has_error(function() jwt.sign({}, "") end)
    assert.has_error(function() jwt.sign({}, KEY, "none") end)
    assert.has_error(function() jwt.sign({}, KEY, "RS256") end)
    assert.has_error(function() jwt.sign({ f = print }, KEY) end)
  end)
end)
