-- Handlers run as coroutines: edgews.sleep inside a handler, per-connection order
-- while a handler waits, other connections unaffected, errors after a wait, the
-- close event after queued messages, edgews.timer and edgews.every.
-- (No RFC 6455 section: this is the Lua execution model.)
local helper = require "spec.helper"

local function line_of(text, marker)
  local n = 0
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    if line:find(marker, 1, true) then return n end
  end
end

describe("async handlers #integration", function()
  local srv, url
  setup(function()
    srv = helper.start_server { app = helper.app "async_app.lua", workers = 1 }
    url = srv:url "/async"
  end)
  teardown(function() helper.cleanup() end)

  it("a handler waits with edgews.sleep; later messages of the socket run after it, in order", function()
    local res = helper.assert_ok(helper.py("burst", "--url", url, "--send",
      "sleep:300:a,b,sleep:100:c,d", "--expect", "4"))
    assert.are.same({ "a", "b", "c", "d" }, res.received)
    assert.is_true(res.elapsed >= 0.4, "elapsed " .. res.elapsed)
  end)

  it("other connections are served while a handler waits", function()
    -- Asserted by order, not by speed: the quick client is answered while the slow
    -- handler is still asleep (it sleeps 6 s; the slow client has not reported).
    local slow = helper.spawn(helper.py_argv("burst", "--url", url, "--send", "sleep:6000:slow",
      "--expect", "1", "--timeout", "20"))
    assert.truthy(helper.wait_until(function() return srv:log():find("handling sleep:6000:slow", 1, true) end, 10))
    local res = helper.assert_ok(helper.py("burst", "--url", url, "--send", "quick", "--expect", "1"))
    assert.are.same({ "quick" }, res.received)
    assert.is_nil(slow:read_json(0), "the slow handler finished first")
    local done = slow:read_json(20)
    assert.are.same({ "slow" }, done and done.received)
  end)

  it("an error after a wait closes that socket with 1011 and logs file:line", function()
    local res = helper.assert_ok(helper.py("send", "--url", url, "--message", "fail:50",
      "--expect-close", "1011"))
    assert.are.equal(1011, res.close_code)
    local line = line_of(helper.read_file(helper.app "async_app.lua"), "FAIL_LINE")
    assert.truthy(srv:wait_log("async_app%.lua:" .. line .. ": failed after sleeping", 3), srv:log())
    helper.assert_ok(helper.py("echo", "--url", url, "--sizes", "0,126"))
  end)

  it("a close during a wait: queued messages run first, the close event last", function()
    local before = #srv:log()
    helper.assert_ok(helper.py("burst", "--url", url, "--send", "sleep:300:x,m1,m2",
      "--close-after-send"))
    local log = srv:wait_log("close event on %d+", 5, before + 1) and srv:log():sub(before + 1)
    assert.truthy(log, "before=" .. before .. "\n" .. srv:log())
    local p1 = log:find("handling m1", 1, true)
    local p2 = log:find("handling m2", 1, true)
    local pc = log:find("close event on", 1, true)
    assert.truthy(p1 and p2 and pc, log)
    assert.is_true(p1 < p2 and p2 < pc, log)
  end)

  it("edgews.every runs until cancelled and edgews.timer runs once", function()
    local res = helper.assert_ok(helper.py("burst", "--url", url, "--send", "ticks:3,later",
      "--expect", "4", "--listen", "3"))
    table.sort(res.received)
    assert.are.same({ "later", "tick 1", "tick 2", "tick 3" }, res.received)
    -- no third tick arrives after the cancel (the client waits for one in vain)
    local res2 = helper.py("burst", "--url", url, "--send", "ticks:2", "--expect", "3",
      "--listen", "0.6")
    assert.are.same({ "tick 1", "tick 2" }, res2.received)
  end)
end)
