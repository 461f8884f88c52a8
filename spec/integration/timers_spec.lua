-- Lua timers with two workers creating and cancelling at the same time
-- (spec/apps/timers_app.lua): each worker's timer ids increase (they come from a
-- counter of that worker: a counter shared by the worker threads was a data race),
-- every cancel of a pending timer succeeds and nothing stays pending. Run against a
-- ThreadSanitizer build (EDGEWS_BIN), the log must hold no race report.
local helper = require "spec.helper"

describe("Lua timers on two workers at once #integration", function()
  teardown(function() helper.cleanup() end)

  it("per-worker ids, every cancel succeeds, nothing left pending, no race report", function()
    local srv = helper.start_server { app = helper.app "timers_app.lua", workers = 2 }
    for w = 0, 1 do
      local pat = "timers on worker " .. w .. ": created (%d+), cancelled (%d+), ids increasing: (%a+), pending (%d+)"
      assert.truthy(srv:wait_log(pat, 15), "worker " .. w .. " did not finish:\n" .. srv:log())
      local created, cancelled, increasing, pending = srv:log():match(pat)
      assert.are.equal(40000, tonumber(created))
      assert.are.equal(40000, tonumber(cancelled))
      assert.are.equal("true", increasing)
      assert.are.equal("0", pending)
    end
    assert.is_nil(srv:log():find("ThreadSanitizer", 1, true), srv:log())
  end)
end)
