-- Unit specs for lua/edgews/ratelimit.lua: the pure refill/consume functions,
-- single buckets and keyed limiters with an injected clock (burst, steady rate,
-- retry_after, fractional refill, costs above burst, a clock going backwards),
-- the memory bound (100k keys over simulated time), and the C implementation
-- against the pure-Lua reference model (spec/unit/ratelimit_model.lua) on random
-- inputs.
--
-- The token bucket is C (core/hub/ratelimit.c). Outside the server the module
-- loads it from build/libedgews_ratelimit.so (or EDGEWS_RATELIMIT_LIB), so these
-- specs run the very code the server runs: build first (scripts/build).
package.path = "./lua/?.lua;./lua/?/init.lua;./spec/unit/?.lua;" .. package.path
local ratelimit = require "edgews.ratelimit"
local model = require "ratelimit_model"

local function clock(t0)
  local c = { t = t0 or 1000 }
  c.now = function() return c.t end
  return c
end

local function near(expected, got)
  assert.is_true(math.abs(expected - got) < 1e-9, ("expected %.12g, got %.12g"):format(expected, got))
end

describe("edgews.ratelimit", function()
  describe("refill (pure)", function()
    it("adds elapsed * rate, capped at burst", function()
      assert.are.equal(3, ratelimit.refill(1, 10, 11, 2, 5))
      assert.are.equal(5, ratelimit.refill(1, 10, 13, 2, 5))
      assert.are.equal(5, ratelimit.refill(5, 10, 100, 2, 5))
    end)

    it("refills fractions", function()
      near(0.25, ratelimit.refill(0, 0, 0.125, 2, 5))
      near(1.5, ratelimit.refill(1.2, 7, 7.1, 3, 10))
    end)

    it("adds nothing when no time passed or the clock went backwards", function()
      assert.are.equal(1, ratelimit.refill(1, 10, 10, 2, 5))
      assert.are.equal(1, ratelimit.refill(1, 10, 9, 2, 5))
    end)
  end)

  describe("consume (pure)", function()
    it("takes n when available", function()
      assert.are.same({ true, 2, 0 }, { ratelimit.consume(5, 3, 1, 5) })
      assert.are.same({ true, 0, 0 }, { ratelimit.consume(3, 3, 1, 5) })
    end)

    it("takes nothing otherwise and says how long until n are there", function()
      assert.are.same({ false, 1, 1 }, { ratelimit.consume(1, 3, 2, 5) })
      local ok, left, retry = ratelimit.consume(0.5, 1, 4, 5)
      assert.is_false(ok)
      assert.are.equal(0.5, left)
      near(0.125, retry)
    end)

    it("never fits a cost above burst", function()
      assert.are.same({ false, 5, math.huge }, { ratelimit.consume(5, 6, 1, 5) })
    end)
  end)

  describe("limiter", function()
    it("allows a burst, then the steady rate", function()
      local c = clock()
      local l = ratelimit.new { rate = 2, burst = 3, now = c.now }
      for _ = 1, 3 do assert.is_true(l:take("ip")) end
      local ok, retry = l:take("ip")
      assert.is_false(ok)
      near(0.5, retry)
      -- steady state: one token every 0.5 s, 20 s -> 40 takes
      local allowed = 0
      for _ = 1, 400 do
        c.t = c.t + 0.05
        if l:take("ip") then allowed = allowed + 1 end
      end
      assert.is_true(allowed == 40 or allowed == 39, "allowed " .. allowed)
    end)

    it("reports retry_after for the missing tokens, and that wait suffices", function()
      local c = clock()
      local l = ratelimit.new { rate = 4, burst = 2, now = c.now }
      assert.is_true(l:take("k", 2))
      c.t = c.t + 0.1 -- 0.4 tokens
      local ok, retry = l:take("k", 1)
      assert.is_false(ok)
      near(0.15, retry)
      c.t = c.t + retry - 1e-6
      assert.is_false((l:take("k", 1)))
      c.t = c.t + 2e-6
      assert.is_true(l:take("k", 1))
    end)

    it("refills fractionally between takes", function()
      local c = clock() -- binary fractions: exact arithmetic
      local l = ratelimit.new { rate = 8, burst = 1, now = c.now }
      assert.is_true(l:take("k"))
      c.t = c.t + 1 / 16
      assert.are.equal(0.5, l:tokens("k"))
      c.t = c.t + 1 / 32
      assert.are.equal(0.75, l:tokens("k"))
      local ok, retry = l:take("k")
      assert.is_false(ok)
      assert.are.equal(1 / 32, retry)
      c.t = c.t + 1 / 32
      assert.is_true(l:take("k"))
      assert.are.equal(0, l:tokens("k"))
    end)

    it("costs n tokens (a byte budget)", function()
      local c = clock()
      local l = ratelimit.new { rate = 1000, burst = 4096, now = c.now }
      assert.is_true(l:take("u", 4000))
      local ok, retry = l:take("u", 100)
      assert.is_false(ok)
      near(0.004, retry)
      assert.is_true(l:take("u", 96))
      assert.is_true(l:take("u", 0)) -- free
    end)

    it("rejects a cost above burst forever, without draining the bucket", function()
      local c = clock()
      local l = ratelimit.new { rate = 1, burst = 5, now = c.now }
      assert.are.same({ false, math.huge }, { l:take("k", 6) })
      assert.are.equal(0, l:size()) -- still full: not tracked
      assert.is_true(l:take("k", 5))
      c.t = c.t + 1e6
      assert.are.same({ false, math.huge }, { l:take("k", 6) })
    end)

    it("keeps keys independent", function()
      local c = clock()
      local l = ratelimit.new { rate = 1, burst = 1, now = c.now }
      assert.is_true(l:take("a"))
      assert.is_false((l:take("a")))
      assert.is_true(l:take("b"))
      assert.is_true(l:take(42))
      assert.is_true(l:take(true))
    end)

    it("reset makes a key's bucket full again", function()
      local c = clock()
      local l = ratelimit.new { rate = 1, burst = 2, now = c.now }
      l:take("a", 2)
      l:take("b", 2)
      assert.is_false((l:take("a")))
      l:reset("a")
      assert.are.equal(2, l:tokens("a"))
      assert.is_true(l:take("a", 2))
      assert.is_false((l:take("b"))) -- others untouched
      l:reset("nobody")              -- unknown keys are fine
    end)

    it("does not mint tokens when the clock goes backwards", function()
      local c = clock(100)
      local l = ratelimit.new { rate = 1, burst = 2, now = c.now }
      assert.is_true(l:take("k", 2))
      c.t = 50
      assert.is_false((l:take("k")))
      c.t = 100.5
      assert.is_false((l:take("k"))) -- only 0.5 s since the last real time
      c.t = 101
      assert.is_true(l:take("k"))
    end)

    it("drops keys whose bucket is full again (lossless)", function()
      local c = clock()
      local l = ratelimit.new { rate = 1, burst = 3, now = c.now }
      l:take("a", 3)
      assert.are.equal(1, l:size())
      c.t = c.t + 3 -- a is full again
      l:take("b")
      l:take("c")
      assert.are.equal(3, l:tokens("a"))
      assert.are.equal(2, l:size()) -- b and c: a was dropped
    end)

    it("keeps memory O(active keys): 100k keys over simulated time", function()
      local c = clock()
      -- a new key every millisecond, each taking one token; buckets refill in
      -- 1 / rate = 0.1 s, so about 100 keys are ever not full. What the limiter
      -- holds is counted directly (tracked keys, and the bytes of the C limiter's
      -- arrays, tables and records: at most 256 a key plus a constant), not read
      -- off the heap, whose size depends on string interning and on when the
      -- collector runs.
      local l = ratelimit.new { rate = 10, burst = 20, now = c.now }
      local max_size, max_memory = 0, 0
      for i = 1, 100000 do
        c.t = c.t + 0.001
        assert.is_true(l:take("10.0." .. i))
        if l:size() > max_size then max_size = l:size() end
        if i % 1000 == 0 then
          local m = l:_memory()
          assert.is_true(m <= 1024 + 256 * l:size(), m .. " bytes for " .. l:size() .. " keys")
          if m > max_memory then max_memory = m end
        end
      end
      assert.is_true(max_size <= 200, "tracked " .. max_size .. " keys")
      assert.is_true(max_memory <= 1024 + 256 * 200, "the limiter held " .. max_memory .. " bytes")
      -- heavy users stay tracked while idle ones go
      for _ = 1, 10 do l:take("heavy", 2) end
      for i = 1, 1000 do c.t = c.t + 0.001; l:take("late" .. i) end
      assert.is_true(l:tokens("heavy") < 20) -- still tracked (an untracked key has burst)
    end)

    it("keeps memory O(active keys) when each key drains its bucket", function()
      local c = clock()
      -- bursts refill in 10 s; 100 new keys per second -> about 1000 not full
      local l = ratelimit.new { rate = 2, burst = 20, now = c.now }
      local max_size = 0
      for i = 1, 100000 do
        c.t = c.t + 0.01
        l:take(i, 20)
        if l:size() > max_size then max_size = l:size() end
      end
      assert.is_true(max_size <= 2000, "tracked " .. max_size .. " keys")
    end)

    it("rejects bad options and arguments, at the caller's line", function()
      local now = function() return 0 end
      local cases = {
        { function() ratelimit.new { rate = 0, burst = 1, now = now } end, "rate must be" },
        { function() ratelimit.new { rate = 1, burst = -1, now = now } end, "burst must be" },
        { function() ratelimit.new { rate = 1, burst = 1 } end, "now must be a clock function" },
        { function() ratelimit.new { rate = 1, burst = 1, now = now, size = 3 } end, "unknown field 'size'" },
        { function() ratelimit.new(5) end, "expects a table" },
        { function() ratelimit.new({ rate = 1, burst = 1, now = now }):take(nil) end, "key must not be nil" },
        { function() ratelimit.new({ rate = 1, burst = 1, now = now }):take("k", -1) end, "n must be" },
        { function() ratelimit.new({ rate = 1, burst = 1, now = now }):take("k", "1") end, "n must be" },
        { function() ratelimit.bucket(1, 1) end, "now must be a clock function" },
        { function() ratelimit.bucket(1 / 0, 1, now) end, "rate must be" },
      }
      for i, case in ipairs(cases) do
        local ok, err = pcall(case[1])
        assert.is_false(ok, "case " .. i)
        assert.matches("ratelimit_spec.lua:%d+: .*" .. case[2], err)
      end
    end)
  end)

  describe("bucket", function()
    it("is a single token bucket with the same behaviour", function()
      local c = clock()
      local b = ratelimit.bucket(2, 3, c.now)
      assert.are.equal(3, b:tokens())
      assert.is_true(b:take())
      assert.is_true(b:take(2))
      local ok, retry = b:take()
      assert.is_false(ok)
      near(0.5, retry)
      c.t = c.t + 0.25
      near(0.5, b:tokens())
      c.t = c.t + 0.25
      assert.is_true(b:take())
      assert.are.same({ false, math.huge }, { b:take(4) })
      b:reset()
      assert.are.equal(3, b:tokens())
    end)
  end)

  -- The token bucket is C; the reference is the pure-Lua model it replaced. Random
  -- rates, bursts, costs (0, fractions, exactly burst, above burst), clock steps
  -- (small, large, backwards) and keys of every kind; every answer must be the
  -- same number, not a close one. Seeded: a failure names its seed.
  describe("the C implementation against the reference model", function()
    local function rng(seed)
      math.randomseed(seed)
      return math.random
    end

    local function cost(r, burst)
      local c = r()
      if c < 0.1 then return 0 end
      if c < 0.2 then return burst end
      if c < 0.3 then return burst + 0.5 + math.floor(r() * 3) end
      if c < 0.6 then return 1 end
      return r() * burst * 1.2
    end

    local function step(r, t)
      local c = r()
      if c < 0.05 then return t - r() * 5 end
      if c < 0.1 then return t end
      if c < 0.6 then return t + r() * 0.2 end
      if c < 0.65 then return t + r() * 100 end
      return t + r() * 1 / 64
    end

    it("refill and consume give the same numbers", function()
      local r = rng(7)
      for i = 1, 20000 do
        local rate, burst = 0.1 + r() * 50, 0.5 + r() * 20
        local tokens, last = r() * burst, 1000 + r() * 10
        local now = last + (r() - 0.2) * 2
        assert.are.equal(model.refill(tokens, last, now, rate, burst),
          ratelimit.refill(tokens, last, now, rate, burst), "refill, case " .. i)
        local n = cost(r, burst)
        assert.are.same({ model.consume(tokens, n, rate, burst) },
          { ratelimit.consume(tokens, n, rate, burst) }, "consume, case " .. i)
      end
    end)

    it("a single bucket answers alike", function()
      for seed = 1, 50 do
        local r = rng(seed)
        local rate, burst = 0.2 + r() * 20, 1 + math.floor(r() * 10)
        local c = clock()
        local a, b = model.bucket(rate, burst, c.now), ratelimit.bucket(rate, burst, c.now)
        for op = 1, 400 do
          c.t = step(r, c.t)
          if r() < 0.02 then
            a:reset(); b:reset()
          else
            local n = cost(r, burst)
            assert.are.same({ a:take(n) }, { b:take(n) }, ("seed %d op %d"):format(seed, op))
          end
          assert.are.equal(a:tokens(), b:tokens(), ("seed %d op %d tokens"):format(seed, op))
        end
      end
    end)

    it("a limiter answers alike, tracks the same keys, and keys compare as Lua table keys", function()
      local objects = { {}, {}, function() end }
      local keys = { "a", "b", "", "10.0.0.1", "1", 1, 2, 0, -0, 1.5, 2 ^ 53, -7, true, false,
                     objects[1], objects[2], objects[3] }
      for seed = 1, 100 do
        local r = rng(1000 + seed)
        local rate, burst = 0.2 + r() * 20, 1 + math.floor(r() * 10)
        local c = clock()
        local a = model.new { rate = rate, burst = burst, now = c.now }
        local b = ratelimit.new { rate = rate, burst = burst, now = c.now }
        for op = 1, 500 do
          local where = ("seed %d op %d"):format(1000 + seed, op)
          c.t = step(r, c.t)
          local key = keys[math.floor(r() * #keys) + 1]
          local what = r()
          if what < 0.03 then
            a:reset(key); b:reset(key)
          elseif what < 0.1 then
            assert.are.equal(a:tokens(key), b:tokens(key), where .. " tokens")
          else
            local n = cost(r, burst)
            assert.are.same({ a:take(key, n) }, { b:take(key, n) }, where)
          end
          assert.are.equal(a:size(), b:size(), where .. " size")
        end
      end
    end)
  end)
end)
