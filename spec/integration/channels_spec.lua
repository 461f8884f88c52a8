-- Channels (edgews.channel) with --workers 2: fan-out to 1,000 subscribers across
-- workers with exact counts and per-publisher order, exclude, counts across
-- workers, unsubscribe and subscriptions ending with the socket, and a subscriber
-- that stops reading not holding the others back.
local helper = require "spec.helper"
local cjson = require "cjson"

describe("channels #integration", function()
  local srv, url
  setup(function()
    srv = helper.start_server { app = helper.app "channels_app.lua", workers = 2 }
    url = srv:url "/ch"
  end)
  teardown(function() helper.cleanup() end)

  local function fanout(...)
    local argv = { helper.PYTHON, helper.CLIENTS .. "/channel_fanout.py", "--url", url, ... }
    local res, rc = helper.run(argv, 60)
    assert.are.equal(0, rc, cjson.encode(res))
    return res
  end

  it("a publish reaches 1,000 subscribers on both workers, every message, in order", function()
    local res = fanout("--subscribers", "1000", "--messages", "20", "--channel", "big")
    assert.are.equal(1000, res.subscribers)
    assert.are.same({ "worker:0", "worker:1" }, res.workers)
    assert.are.equal(1000, res.complete)
    assert.is_true(res.in_order)
    assert.are.same({ 20 }, res.counts)
    assert.are.equal("count:1000", res.count) -- subscribers counted on both workers
  end)

  it("subscribers that stop reading do not hold the others back", function()
    local res = fanout("--subscribers", "20", "--messages", "100", "--size", "8000", "--slow", "3",
      "--channel", "slow")
    assert.are.equal(20, res.complete)
    assert.is_true(res.in_order)
    assert.is_true(res.elapsed < 3, "took " .. res.elapsed .. " s")
  end)

  it("exclude skips the publisher; a subscription ends with its socket", function()
    local res = helper.assert_ok(helper.py("burst", "--url", url, "--send",
      "sub:room,pubx:room:hello,pub:room:world,count:room", "--expect", "3"))
    assert.are.same({ "subscribed:room", "world", "count:1" }, res.received)
    local function count()
      local c = helper.py("burst", "--url", url, "--send", "count:room", "--expect", "1")
      return c.received and c.received[1]
    end
    helper.wait_until(function() return count() == "count:0" end, 5)
    assert.are.equal("count:0", count())
  end)

  it("unsubscribe stops deliveries", function()
    local res = helper.assert_ok(helper.py("burst", "--url", url, "--send",
      "sub:u,pub:u:one,unsub:u,pub:u:two,unsub:u,count:u", "--expect", "5"))
    assert.are.same({ "subscribed:u", "one", "unsubscribed:u", "not subscribed", "count:0" }, res.received)
  end)

  it("app:close_all closes the app's sockets on both workers", function()
    local holders, workers_seen = {}, {}
    for i = 1, 8 do
      local h = helper.spawn(helper.py_argv("hold", "--url", url, "--seconds", "60", "--expect-code", "4000"))
      holders[i] = h
      assert.are.equal("connected", (h:read_json(5) or {}).event)
    end
    -- which workers hold them (socket ids carry the worker in their low 8 bits: ask
    -- a few fresh sockets instead, the kernel spreads them the same way)
    -- (until both answered: which worker accepts is the kernel's choice, and a busy
    -- worker may take several in a row; bounded)
    helper.wait_until(function()
      local r = helper.py("burst", "--url", url, "--send", "worker", "--expect", "1")
      workers_seen[r.received and r.received[1] or "?"] = true
      return workers_seen["worker:0"] and workers_seen["worker:1"]
    end, 20)
    assert.is_true(workers_seen["worker:0"] and workers_seen["worker:1"], "one worker only")
    helper.py("burst", "--url", url, "--send", "closeall", "--close-after-send")
    for i, h in ipairs(holders) do
      local res = h:read_json(10) or {}
      assert.are.equal(4000, res.close_code, "holder " .. i .. ": " .. cjson.encode(res))
    end
  end)
end)

