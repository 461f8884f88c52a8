-- Unit specs for lua/edgews/auth.lua: the JWT strategy's verify (a token must name its
-- user: `sub`, or an id from the app's user function), its leeway and first-message
-- size options, and the API-key strategy's size option. Plain LuaJIT, no server; the
-- clock is injected through opts.now.
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local auth = require "edgews.auth"
local jwt = require "edgews.jwt"

local KEY = "a-test-key-of-at-least-32-bytes!"
local NOW = 1700000000
local function clock() return NOW end

local function token(claims)
  return jwt.sign(claims, KEY, "HS256")
end

describe("edgews.auth.jwt", function()
  it("the default user is {id = sub, exp, claims}", function()
    local s = auth.jwt { secret = KEY, now = clock }
    local u = s.verify(token { sub = "alice", exp = NOW + 60 })
    assert.are.equal("alice", u.id)
    assert.are.equal(NOW + 60, u.exp)
    assert.are.equal("alice", u.claims.sub)
  end)

  it("refuses a token without sub, or with an empty or non-string sub", function()
    local s = auth.jwt { secret = KEY, now = clock }
    for _, claims in ipairs { { exp = NOW + 60 }, { sub = "" }, { sub = 42 }, { sub = { "x" } } } do
      local u, err = s.verify(token(claims))
      assert.is_nil(u)
      assert.are.equal("missing subject", err)
    end
  end)

  it("takes the id from the app's user function; refuses a user without one", function()
    local s = auth.jwt { secret = KEY, now = clock, user = function(c)
      return { id = c.uid, exp = c.exp }
    end }
    assert.are.equal("u1", s.verify(token { uid = "u1" }).id)
    assert.are.equal(7, s.verify(token { uid = 7 }).id)
    for _, uid in ipairs { "", false, { 1 } } do
      local u, err = s.verify(token { sub = "alice", uid = uid })
      assert.is_nil(u)
      assert.are.equal("no user id", err)
    end
    local nan = auth.jwt { secret = KEY, now = clock, user = function() return { id = 0 / 0 } end }
    assert.are.equal("no user id", select(2, nan.verify(token { sub = "alice" })))
    local u, err = s.verify(token { sub = "alice" })
    assert.is_nil(u)
    assert.are.equal("no user id", err)
  end)

  it("keeps leeway for the expiry deadline and validates it", function()
    assert.are.equal(0, auth.jwt({ secret = KEY }).leeway)
    assert.are.equal(30, auth.jwt({ secret = KEY, leeway = 30 }).leeway)
    for _, bad in ipairs { -1, "30", 0 / 0, math.huge } do
      assert.has_error(function() auth.jwt { secret = KEY, leeway = bad } end)
    end
  end)

  it("max_message_size: 16 KiB by default, a whole positive number", function()
    assert.are.equal(16384, auth.jwt({ secret = KEY, mode = "message" }).max_message_size)
    assert.are.equal(1000, auth.jwt({ secret = KEY, mode = "message", max_message_size = 1000 }).max_message_size)
    assert.are.equal(2048, auth.api_key({ validate = function() end, max_message_size = 2048 }).max_message_size)
    for _, bad in ipairs { 0, -5, 1.5, "10", 2 ^ 31 } do
      assert.has_error(function() auth.jwt { secret = KEY, max_message_size = bad } end)
    end
  end)

  it("timeout must be a positive, finite number", function()
    for _, bad in ipairs { 0, -1, 0 / 0, math.huge, "5" } do
      assert.has_error(function() auth.jwt { secret = KEY, timeout = bad } end)
    end
  end)
end)
