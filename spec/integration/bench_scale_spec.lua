-- bench_scale_spec: `scripts/bench-scale quick` end to end (the smoke mode of the
-- cluster scale benchmark, bench/README.md): 2 edgews-lua instances on one port
-- (--reuse-port) over a redis-server the script starts, 2 generator processes of 1,000
-- connections each bound to their own loopback source addresses, every connection
-- subscribed to one pub/sub topic, 3 publishes. It checks what is counted, never how
-- fast: every connection subscribed, every delivery arrived and was verified (envelope,
-- epoch, consecutive offsets, payload bytes) by the generators, and the script cleaned
-- up after itself. Needs redis-server (scripts/deps) and build/edgews-bench.
local helper = require "spec.helper"
local cjson = require "cjson"

local signal = require "posix.signal"

describe("scripts/bench-scale quick #integration #cluster #bench", function()
  teardown(function() helper.cleanup() end)

  it("subscribes 2,000 connections over 2 instances and verifies every delivery", function()
    local bench = helper.ROOT .. "/build/edgews-bench"
    assert(io.open(bench, "r"), "build/edgews-bench is missing (scripts/build release)")
    local res, rc, _, err = helper.run({ "env", "BENCH_NO_BUILD=1", "SCALE_BIN=" .. helper.BIN,
      helper.ROOT .. "/scripts/bench-scale", "quick" }, 180)
    local why = cjson.encode(res) .. "\n" .. tostring(err)
    assert.are.equal(0, rc, why)
    assert.is_true(res.ok, why)
    assert.are.equal(0, res.errors, why)
    assert.are.equal(2000, res.conns, why)
    assert.are.equal(2, res.instances, why)
    assert.are.equal(2000, res.subscribed, why)
    assert.are.equal(0, res.failed, why)
    -- both instances served connections (one port, SO_REUSEPORT), and together all
    assert.are.equal(2, #res.per_instance, why)
    local on_servers = 0
    for _, inst in ipairs(res.per_instance) do
      assert.is_true(inst.conns > 0, why)
      on_servers = on_servers + inst.conns
    end
    assert.are.equal(2000, on_servers, why)
    -- every publish reached every connection, verified by its generator
    assert.are.equal(res.conns * res.messages, res.verified, why)
    assert.are.equal(res.messages, #res.per_message, why)
    for _, n in ipairs(res.per_message) do assert.are.equal(2000, n, why) end
    assert.is_true(res.epochs_agree, why)
    assert.are.equal(res.messages, res.publisher.acked, why)
    assert.are.equal(res.messages, res.publisher.last_offset - res.publisher.first_offset + 1, why)
    assert.are.equal(0, res.sanitizer_reports, why)
    -- the script stopped what it started: instances, redis-server, generators
    assert.are.equal(2 + 1 + 2, #res.pids, why)
    for _, pid in ipairs(res.pids) do
      assert.is_nil(signal.kill(pid, 0), "process " .. pid .. " outlived the script")
    end
  end)
end)
