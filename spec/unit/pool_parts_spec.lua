-- The pool's pure parts: load-balancing strategies (edgews.pool.balancer), the
-- circuit breaker (edgews.pool.breaker, with a fake clock) and reconnection backoff
-- (edgews.pool.backoff, with a seeded random source; checked statistically).
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local balancer = require "edgews.pool.balancer"
local breaker = require "edgews.pool.breaker"
local backoff = require "edgews.pool.backoff"

local function backends(spec)
  local l = {}
  for i, w in ipairs(spec) do l[i] = { id = "b" .. i, weight = w, inflight = 0 } end
  return l
end

local function count(lb, cands, n, keyf)
  local c = {}
  for i = 1, n do
    local b = lb:pick(cands, keyf and keyf(i))
    c[b.id] = (c[b.id] or 0) + 1
  end
  return c
end

-- A small deterministic generator (xorshift), so statistical checks never flake.
local function rng(seed)
  local bit = require "bit"
  local s = seed
  return function()
    s = bit.bxor(s, bit.lshift(s, 13))
    s = bit.bxor(s, bit.rshift(s, 17))
    s = bit.bxor(s, bit.lshift(s, 5))
    local v = s < 0 and s + 4294967296 or s
    return v / 4294967296
  end
end

describe("pool balancer", function()
  it("round-robin gives each backend exactly its share of 10,000 picks", function()
    local c = count(balancer.new("round-robin"), backends { 1, 1, 1, 1 }, 10000)
    assert.are.same({ b1 = 2500, b2 = 2500, b3 = 2500, b4 = 2500 }, c)
    c = count(balancer.new("round-robin"), backends { 1, 1, 1 }, 10000)
    assert.are.same({ b1 = 3334, b2 = 3333, b3 = 3333 }, c)
  end)

  it("weighted round-robin follows the weights within 2% (exactly, per cycle)", function()
    local cands = backends { 5, 3, 2 }
    local c = count(balancer.new("weighted-round-robin"), cands, 10000)
    assert.are.same({ b1 = 5000, b2 = 3000, b3 = 2000 }, c)
    -- smooth: no backend twice in a row when its weight is under half the total
    local lb, last = balancer.new("weighted-round-robin"), nil
    for _ = 1, 100 do
      local b = lb:pick(backends { 1, 1, 1 })
      assert.are_not.equal(last, b.id)
      last = b.id
    end
    c = count(balancer.new("weighted-round-robin"), backends { 7, 1.5, 0.5 }, 9000)
    assert.is_true(math.abs(c.b1 / 9000 - 7 / 9) < 0.02)
    assert.is_true(math.abs(c.b2 / 9000 - 1.5 / 9) < 0.02)
    assert.is_true(math.abs(c.b3 / 9000 - 0.5 / 9) < 0.02)
  end)

  it("least-connections picks the least loaded, in turn among equals", function()
    local cands = backends { 1, 1, 1 }
    cands[1].inflight, cands[2].inflight, cands[3].inflight = 5, 2, 9
    local lb = balancer.new("least-connections")
    assert.are.equal("b2", lb:pick(cands).id)
    -- simulated uneven hold times: b1 holds 1 tick, b2 3 ticks, b3 9 ticks
    cands = backends { 1, 1, 1 }
    local hold = { b1 = 1, b2 = 3, b3 = 9 }
    local active, got = {}, { b1 = 0, b2 = 0, b3 = 0 }
    for tick = 1, 10000 do
      for i = #active, 1, -1 do
        if active[i].until_ <= tick then
          active[i].b.inflight = active[i].b.inflight - 1
          table.remove(active, i)
        end
      end
      for _ = 1, 3 do
        local b = lb:pick(cands)
        b.inflight = b.inflight + 1
        got[b.id] = got[b.id] + 1
        active[#active + 1] = { b = b, until_ = tick + hold[b.id] }
      end
    end
    -- the faster a backend frees its connections, the more it is given
    assert.is_true(got.b1 > got.b2 and got.b2 > got.b3, require("cjson").encode(got))
    assert.is_true(cands[3].inflight <= cands[1].inflight + 9)
  end)

  it("least-connections weighs by weight", function()
    local cands = backends { 3, 1 }
    cands[1].inflight, cands[2].inflight = 2, 1 -- 0.67 vs 1 per unit
    assert.are.equal("b1", balancer.new("least-connections"):pick(cands).id)
  end)

  it("ip-hash is stable and moves at most 1/N of the keys when a backend leaves", function()
    local lb = balancer.new("ip-hash")
    local all = backends { 1, 1, 1, 1, 1 }
    local before = {}
    for i = 1, 10000 do before[i] = lb:pick(all, "10.0." .. (i % 256) .. "." .. i).id end
    for i = 1, 10000 do assert.are.equal(before[i], lb:pick(all, "10.0." .. (i % 256) .. "." .. i).id) end
    -- every backend gets a fair share (160 points each)
    local share = {}
    for _, id in ipairs(before) do share[id] = (share[id] or 0) + 1 end
    for _, n in pairs(share) do assert.is_true(n > 1200 and n < 2800, tostring(n)) end
    local without = { all[1], all[2], all[4], all[5] } -- b3 leaves
    local moved = 0
    for i = 1, 10000 do
      local id = lb:pick(without, "10.0." .. (i % 256) .. "." .. i).id
      if before[i] == "b3" then
        assert.are_not.equal("b3", id)
      elseif id ~= before[i] then
        moved = moved + 1
      end
    end
    assert.are.equal(0, moved) -- only b3's keys moved
    local b3 = share.b3
    assert.is_true(b3 <= 10000 / 5 * 1.4) -- its share was about 1/N
  end)

  it("ip-hash needs a key, and unknown strategies are refused", function()
    assert.has_error(function() balancer.new("ip-hash"):pick(backends { 1, 1 }) end)
    assert.has_error(function() balancer.new("random") end)
  end)

  it("hash32 matches known values and spreads", function()
    assert.are.equal(balancer.hash32("a"), balancer.hash32("a"))
    assert.are_not.equal(balancer.hash32("a"), balancer.hash32("b"))
    local h = balancer.hash32("hello")
    assert.is_true(h >= 0 and h < 2 ^ 32)
  end)
end)

describe("pool circuit breaker", function()
  local t, changes
  local function clock() return t end
  local function new(o)
    t, changes = 0, {}
    return breaker.new(o, clock, function(new, old) changes[#changes + 1] = old .. ">" .. new end)
  end

  it("opens after failure_threshold consecutive failures; a success resets the count", function()
    local br = new { failure_threshold = 3, recovery_timeout = 10 }
    br:failure(); br:failure(); br:success(); br:failure(); br:failure()
    assert.are.equal("closed", br:current())
    br:failure()
    assert.are.equal("open", br:current())
    assert.is_false(br:allow())
    assert.are.same({ "closed>open" }, changes)
  end)

  it("lets one probe through after recovery_timeout: success closes, failure reopens", function()
    local br = new { failure_threshold = 1, recovery_timeout = 10 }
    br:failure()
    t = 9.99
    assert.is_false(br:would_allow())
    assert.is_false(br:allow())
    t = 10
    assert.is_true(br:allow())
    assert.are.equal("half_open", br:current())
    assert.is_false(br:allow()) -- one probe only
    br:failure()
    assert.are.equal("open", br:current())
    t = 15
    assert.is_false(br:allow()) -- a new recovery period from the failed probe
    t = 20
    assert.is_true(br:allow())
    br:success()
    assert.are.equal("closed", br:current())
    assert.are.same({ "closed>open", "open>half_open", "half_open>open", "open>half_open", "half_open>closed" }, changes)
  end)

  it("checks its options", function()
    assert.has_error(function() breaker.new({ failure_threshold = 0 }, clock) end)
    assert.has_error(function() breaker.new({ recovery_timeout = -1 }, clock) end)
  end)
end)

describe("pool reconnect backoff", function()
  it("grows by the multiplier up to max", function()
    local b = backoff.new { initial = 0.1, max = 2, multiplier = 2, jitter = "none" }
    assert.are.same({ 0.1, 0.2, 0.4, 0.8, 1.6, 2, 2 },
      { b:delay(1), b:delay(2), b:delay(3), b:delay(4), b:delay(5), b:delay(6), b:delay(20) })
  end)

  it("full jitter is uniform on [0, ceiling): mean, spread and bounds over 20,000 draws", function()
    local b = backoff.new { initial = 1, max = 30, multiplier = 2, jitter = "full" }
    local r = rng(12345)
    for attempt = 1, 6 do
      local ceil = math.min(30, 2 ^ (attempt - 1))
      local n, sum, lo, hi, buckets = 20000, 0, math.huge, -1, { 0, 0, 0, 0 }
      for _ = 1, n do
        local d = b:delay(attempt, r)
        assert.is_true(d >= 0 and d < ceil)
        sum = sum + d
        lo, hi = math.min(lo, d), math.max(hi, d)
        local q = math.floor(d / ceil * 4) + 1
        buckets[q] = buckets[q] + 1
      end
      assert.is_true(math.abs(sum / n / ceil - 0.5) < 0.02)
      for q = 1, 4 do assert.is_true(math.abs(buckets[q] / n - 0.25) < 0.02) end
      assert.is_true(lo < ceil * 0.01 and hi > ceil * 0.99)
    end
  end)

  it("equal jitter stays in [ceiling/2, ceiling)", function()
    local b = backoff.new { initial = 4, max = 4, jitter = "equal" }
    local r = rng(99)
    for _ = 1, 1000 do
      local d = b:delay(1, r)
      assert.is_true(d >= 2 and d < 4)
    end
  end)

  it("checks its options", function()
    assert.has_error(function() backoff.new { jitter = "some" } end)
    assert.has_error(function() backoff.new { initial = 5, max = 1 } end)
    assert.has_error(function() backoff.new { multiplier = 0.5 } end)
  end)
end)
