-- Unit specs for lua/edgews/crypto.lua: HMAC against the RFC 4231 vectors,
-- SHA-256, strict base64/base64url, constant-time comparison and random bytes.
-- Plain LuaJIT, no server: the module loads libmbedcrypto itself.
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local crypto = require "edgews.crypto"
local bit = require "bit"

local function hex(s)
  return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

local function rep_byte(b, n) return string.rep(string.char(b), n) end

describe("edgews.crypto.hmac", function()
  -- RFC 4231 section 4: test cases 1, 2, 3, 4, 6, 7 (5 is a truncated output).
  local key4 = {}
  for i = 1, 25 do key4[i] = string.char(i) end
  local vectors = {
    { 1, rep_byte(0x0b, 20), "Hi There",
      "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
      "afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59cfaea9ea9076ede7f4af152e8b2fa9cb6",
      "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cdedaa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854" },
    { 2, "Jefe", "what do ya want for nothing?",
      "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
      "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e8e2240ca5e69e2c78b3239ecfab21649",
      "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737" },
    { 3, rep_byte(0xaa, 20), rep_byte(0xdd, 50),
      "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
      "88062608d3e6ad8a0aa2ace014c8a86f0aa635d947ac9febe83ef4e55966144b2a5ab39dc13814b94e3ab6e101a34f27",
      "fa73b0089d56a284efb0f0756c890be9b1b5dbdd8ee81a3655f83e33b2279d39bf3e848279a722c806b485a47e67c807b946a337bee8942674278859e13292fb" },
    { 4, table.concat(key4), rep_byte(0xcd, 50),
      "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
      "3e8a69b7783c25851933ab6290af6ca77a9981480850009cc5577c6e1f573b4e6801dd23c4a7d679ccf8a386c674cffb",
      "b0ba465637458c6990e5a8c5f61d4af7e576d97ff94b872de76f8050361ee3dba91ca5c11aa25eb4d679275cc5788063a5f19741120c4f2de2adebeb10a298dd" },
    { 6, rep_byte(0xaa, 131), "Test Using Larger Than Block-Size Key - Hash Key First",
      "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
      "4ece084485813e9088d2c63a041bc5b44f9ef1012a2b588f3cd11f05033ac4c60c2ef6ab4030fe8296248df163f44952",
      "80b24263c7c1a3ebb71493c1dd7be8b49b46d1f41b4aeec1121b013783f8f3526b56d037e05f2598bd0fd2215d6a1e5295e64f73f63f0aec8b915a985d786598" },
    { 7, rep_byte(0xaa, 131),
      "This is a test using a larger than block-size key and a larger than block-size data."
        .. " The key needs to be hashed before being used by the HMAC algorithm.",
      "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
      "6617178e941f020d351e2f254e8fd32c602420feb0b8fb9adccebb82461e99c5a678cc31e799176d3860e6110c46523e",
      "e37b6a775dc87dbaa4dfa9f96e5e3ffddebd71f8867289865df5a32d20cdc944b6022cac3c4982b10d5eeb55c3e4de15134676fb6de0446065c97440fa8c6a58" },
  }
  for _, v in ipairs(vectors) do
    local n, key, data = v[1], v[2], v[3]
    it("matches RFC 4231 test case " .. n .. " for SHA-256, SHA-384 and SHA-512", function()
      assert.are.equal(v[4], hex(crypto.hmac("sha256", key, data)))
      assert.are.equal(v[5], hex(crypto.hmac("sha384", key, data)))
      assert.are.equal(v[6], hex(crypto.hmac("sha512", key, data)))
      assert.are.equal(v[4], hex(crypto.hmac_sha256(key, data)))
      assert.are.equal(v[5], hex(crypto.hmac_sha384(key, data)))
      assert.are.equal(v[6], hex(crypto.hmac_sha512(key, data)))
    end)
  end

  it("returns a fresh string each call (the scratch buffer is not shared)", function()
    local a = crypto.hmac_sha512("k", "one")
    local b = crypto.hmac_sha256("k", "two")
    assert.are.equal(64, #a)
    assert.are.equal(32, #b)
    assert.are.equal(a, crypto.hmac_sha512("k", "one"))
  end)

  it("raises on misuse", function()
    assert.has_error(function() crypto.hmac("md5", "k", "d") end)
    assert.has_error(function() crypto.hmac("sha256", nil, "d") end)
    assert.has_error(function() crypto.hmac("sha256", "k", 42) end)
  end)
end)

describe("edgews.crypto.sha256", function()
  it("matches the FIPS 180-2 examples", function()
    assert.are.equal("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
      hex(crypto.sha256("")))
    assert.are.equal("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
      hex(crypto.sha256("abc")))
    assert.are.equal("248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
      hex(crypto.sha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")))
  end)
end)

describe("edgews.crypto.sha1", function()
  it("matches the FIPS 180-2 examples and the RFC 6455 accept key", function()
    assert.are.equal("da39a3ee5e6b4b0d3255bfef95601890afd80709", hex(crypto.sha1("")))
    assert.are.equal("a9993e364706816aba3e25717850c26c9cd0d89d", hex(crypto.sha1("abc")))
    -- RFC 6455 1.3: the key "dGhlIHNhbXBsZSBub25jZQ==" is accepted as "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert.are.equal("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", crypto.base64_encode(crypto.sha1(
      "dGhlIHNhbXBsZSBub25jZQ==258EAFA5-E914-47DA-95CA-C5AB0DC85B11")))
    assert.has_error(function() crypto.sha1(1) end)
  end)

  it("is not an HMAC algorithm", function()
    assert.has_error(function() crypto.hmac("sha1", "k", "d") end)
  end)
end)

describe("edgews.crypto base64", function()
  it("encodes the RFC 4648 section 10 examples", function()
    local ex = { [""] = "", f = "Zg==", fo = "Zm8=", foo = "Zm9v", foob = "Zm9vYg==",
      fooba = "Zm9vYmE=", foobar = "Zm9vYmFy" }
    for plain, enc in pairs(ex) do
      assert.are.equal(enc, crypto.base64_encode(plain))
      assert.are.equal(plain, crypto.base64_decode(enc))
      local url = enc:gsub("=", "")
      assert.are.equal(url, crypto.base64url_encode(plain))
      assert.are.equal(plain, crypto.base64url_decode(url))
    end
  end)

  it("uses the url alphabet for base64url", function()
    local s = "\251\255\191" -- "+/+/" in the standard alphabet
    assert.are.equal("+/+/", crypto.base64_encode(s))
    assert.are.equal("-_-_", crypto.base64url_encode(s))
    assert.are.equal(s, crypto.base64url_decode("-_-_"))
  end)

  it("round-trips random bytes of every length 0..64", function()
    for n = 0, 64 do
      for _ = 1, 8 do
        local s = crypto.random_bytes(n)
        local e = crypto.base64_encode(s)
        assert.are.equal(0, #e % 4)
        assert.are.equal(s, crypto.base64_decode(e))
        local u = crypto.base64url_encode(s)
        assert.is_nil(u:find("[^A-Za-z0-9_%-]"))
        assert.are.equal(s, crypto.base64url_decode(u))
      end
    end
  end)

  it("round-trips inputs larger than the scratch buffer", function()
    local s = crypto.random_bytes(65536) .. crypto.random_bytes(65536)
    assert.are.equal(s, crypto.base64_decode(crypto.base64_encode(s)))
    assert.are.equal(s, crypto.base64url_decode(crypto.base64url_encode(s)))
  end)

  local bad_std = {
    "Zg", "Zg=", "Zm9vY", "Z===", "====", "Zg=a", "=Zg=", "Zm=v", "Zm9v\n", "Zm9\n", " Zm9v", "Zm 9", "Zm9v Zm9v",
    "Zm9-", "Zm9_", "Zm9v!A==", "Zh==", "Zm9=", "Zm\0v",
  }
  for _, s in ipairs(bad_std) do
    it("base64_decode rejects " .. string.format("%q", s), function()
      local v, err = crypto.base64_decode(s)
      assert.is_nil(v)
      assert.are.equal("invalid base64", err)
    end)
  end

  local bad_url = {
    "Z", "Zg=", "Zg==", "Zm9vYg==", "Zm9v+", "Zm9v/w", "Zm9v\n", "Zm 9v", "Zm9v.", "Zh", "Zm9",
    "Zm9vY", "Zm\0v", "Zm9vYmF=",
  }
  for _, s in ipairs(bad_url) do
    it("base64url_decode rejects " .. string.format("%q", s), function()
      local v, err = crypto.base64url_decode(s)
      assert.is_nil(v)
      assert.are.equal("invalid base64", err)
    end)
  end

  it("raises on non-string input", function()
    assert.has_error(function() crypto.base64_encode(nil) end)
    assert.has_error(function() crypto.base64_decode(1) end)
    assert.has_error(function() crypto.base64url_encode({}) end)
    assert.has_error(function() crypto.base64url_decode(false) end)
  end)
end)

describe("edgews.crypto.equals", function()
  it("is true for equal strings", function()
    assert.is_true(crypto.equals("", ""))
    assert.is_true(crypto.equals("abc", "abc"))
    local s = crypto.random_bytes(64)
    assert.is_true(crypto.equals(s, s:sub(1)))
  end)

  it("is false for strings that differ in any single byte", function()
    local s = crypto.random_bytes(32)
    for i = 1, #s do
      local flipped = s:sub(1, i - 1) .. string.char(bit.bxor(s:byte(i), 1)) .. s:sub(i + 1)
      assert.is_false(crypto.equals(s, flipped))
    end
    assert.is_false(crypto.equals("\0", "\128"))
  end)

  it("is false for different lengths, including a prefix", function()
    assert.is_false(crypto.equals("abc", "abcd"))
    assert.is_false(crypto.equals("abcd", "abc"))
    assert.is_false(crypto.equals("", "a"))
  end)

  it("raises on non-strings", function()
    assert.has_error(function() crypto.equals("a", nil) end)
    assert.has_error(function() crypto.equals(1, "1") end)
  end)
end)

describe("edgews.crypto.random_bytes", function()
  it("returns exactly n bytes", function()
    for _, n in ipairs({ 0, 1, 16, 255, 256, 257, 1000, 65536 }) do
      assert.are.equal(n, #crypto.random_bytes(n))
    end
  end)

  it("does not repeat", function()
    local seen = {}
    for _ = 1, 1000 do
      local s = crypto.random_bytes(16)
      assert.is_nil(seen[s])
      seen[s] = true
    end
    -- A long output is not a repeated chunk.
    local long = crypto.random_bytes(1024)
    assert.are_not.equal(long:sub(1, 256), long:sub(257, 512))
  end)

  it("covers all byte values over a large sample", function()
    local counts = {}
    local s = crypto.random_bytes(65536)
    for i = 1, #s do counts[s:byte(i)] = true end
    for b = 0, 255 do assert.is_true(counts[b], "byte " .. b .. " never seen") end
  end)

  it("raises on a bad n", function()
    for _, n in ipairs({ -1, 1.5, 65537, 0 / 0, math.huge, "8" }) do
      assert.has_error(function() crypto.random_bytes(n) end)
    end
    assert.has_error(function() crypto.random_bytes() end)
  end)
end)
