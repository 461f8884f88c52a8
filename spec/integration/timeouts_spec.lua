-- Heartbeat, idle timeout and the slow-consumer (backpressure) policies.
-- RFC 6455 sections covered:
--   5.5.2, 5.5.3   pings sent by the server as a keepalive; a client that answers
--                  with pongs stays, one that never answers is closed
--   7.1.1, 7.1.2   the server closing the connection (close frame, then TCP)
--   7.4.1          1008 (policy violation) for a client that does not read
--   10.4           limiting resources a client can hold
-- The close code for a heartbeat or idle timeout is not fixed by the contract: any
-- close frame is accepted there, and the code is printed in the client's result.
local helper = require "spec.helper"

describe("timeouts and backpressure #integration #lua", function()
  after_each(function() helper.cleanup() end)

  it("heartbeat: a client that never answers pings is closed", function()
    local srv = helper.start_server { app = helper.app "heartbeat_app.lua" }
    local res = helper.assert_ok(helper.raw(srv:url "/hb", "no_pong", "--hold-seconds", "5"))
    assert.is_true(res.pings_seen >= 1)
    -- interval 0.5 + timeout 0.5: well under 3 s
    assert.is_true(res.close_elapsed ~= nil and res.close_elapsed < 3,
      "closed after " .. tostring(res.close_elapsed))
  end)

  it("heartbeat: a client that answers pings stays connected", function()
    local srv = helper.start_server { app = helper.app "heartbeat_app.lua" }
    local p = helper.spawn(helper.py_argv("sequence", "--url", srv:url "/hb", "--send",
      "first,second", "--step"), { stdin = "pipe" })
    assert.are.equal("connected", (p:read_json(5) or {}).event)
    assert.are.equal("first", (p:read_json(5) or {}).reply)
    helper.sleep(2.2) -- four heartbeat intervals
    p:write("\n")
    local ev = p:read_json(5) or {}
    assert.are.equal("second", ev.reply, "connection did not survive the heartbeats: "
      .. require("cjson").encode(ev))
  end)

  it("heartbeat: a client that answers is pinged after each quiet interval, "
    .. "also when the timeout is longer than the interval", function()
    -- interval 0.5 s, timeout 5 s: 3 pings arrive within about 1.5 s (not 1 per 5 s)
    local srv = helper.start_server { app = helper.app "heartbeat_long_timeout_app.lua" }
    local res = helper.assert_ok(helper.node("pings", "--url", srv:url "/hb", "--count", "3",
      "--seconds", "4.5"))
    assert.are.equal(3, res.pings)
  end)

  it("idle_timeout: a silent connection is closed", function()
    local srv = helper.start_server { app = helper.app "idle_app.lua" }
    local res = helper.assert_ok(helper.py("hold", "--url", srv:url "/idle", "--seconds", "5"))
    assert.is_true(res.closed_by_server)
    assert.is_true(res.held < 3, "closed after " .. tostring(res.held) .. " s")
  end)

  it("idle_timeout: a connection sending every 0.4 s stays open", function()
    local srv = helper.start_server { app = helper.app "idle_app.lua" }
    local p = helper.spawn(helper.py_argv("sequence", "--url", srv:url "/idle", "--send",
      "a,b,c,d,e,f", "--step"), { stdin = "pipe" })
    assert.are.equal("connected", (p:read_json(5) or {}).event)
    assert.are.equal("a", (p:read_json(5) or {}).reply)
    for _, m in ipairs { "b", "c", "d", "e", "f" } do
      helper.sleep(0.4)
      p:write("\n")
      assert.are.equal(m, (p:read_json(5) or {}).reply)
    end
  end)

  it('on_backpressure = "close": a client that does not read gets 1008', function()
    local srv = helper.start_server { app = helper.app "bp_close_app.lua" }
    local res = helper.assert_ok(helper.raw(srv:url "/bp", "backpressure_close"))
    assert.are.equal(1008, res.close_code)
  end)

  it('on_backpressure = "drop": sends return nil, "backpressure"; the rest arrive', function()
    local srv = helper.start_server { app = helper.app "bp_drop_app.lua" }
    local res = helper.assert_ok(helper.raw(srv:url "/bp", "backpressure_drop"))
    assert.is_true(res.dropped > 0)
    assert.are.equal(res.sent, res.binary_frames)
  end)
end)
