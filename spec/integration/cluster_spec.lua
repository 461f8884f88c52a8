-- The cluster over Redis (README: Running a cluster): three instances of
-- spec/apps/channels_app.lua with --workers 2 each, joined by a real redis-server the
-- spec starts on a free port (appendonly yes, appendfsync always). Channel publishes
-- on any instance reach the subscribers on every instance (clients spread over the
-- instances and their workers), exactly once each and in each publisher's order;
-- Redis stopped and restarted under the instances (local delivery goes on, /health
-- says degraded, the instances resubscribe); an instance killed with SIGKILL; two
-- Redis shards with one down; bad --redis URLs refused. Pub/sub (spec/apps/realtime_app.lua)
-- with cluster-wide offsets: publishers on every instance, subscribers recovering with
-- since_offset on another instance than the one they left, every acknowledged offset
-- exactly once and in order; publishes refused with "unavailable" while Redis is
-- down (kill -9), the history kept by Redis's append-only file across its restart;
-- a topic's retention and the gap it causes.
local helper = require "spec.helper"
local cjson = require "cjson"

local rh = require "spec.redis_helper"
local free_port, redis_cli, start_redis = rh.free_port, rh.redis_cli, rh.start_redis
local http_get, health = rh.http_get, rh.health

local function metric(srv, name)
  local v = http_get(srv, "/metrics"):match("\n" .. name .. " (%d+)")
  return tonumber(v)
end

local function start_instance(redis_urls, o)
  o = o or {}
  local args = {}
  for _, u in ipairs(redis_urls) do
    args[#args + 1] = "--redis"
    args[#args + 1] = u
  end
  local srv = helper.start_server { app = helper.app(o.app or "channels_app.lua"), workers = 2,
                                    args = args, env = o.env }
  assert(helper.wait_until(function() return health(srv).status == "ok" end, 10),
    "instance did not connect to Redis:\n" .. srv:log())
  return srv
end

local function fanout(urls, ...)
  local argv = { helper.PYTHON, helper.CLIENTS .. "/cluster_fanout.py", "--urls",
    table.concat(urls, ","), ... }
  local res, rc = helper.run(argv, 60)
  assert.are.equal(0, rc, cjson.encode(res))
  return res
end

describe("cluster over Redis #integration", function()
  local rport, rdir, redis, inst, urls
  setup(function()
    rport, rdir = free_port(), helper.tmpdir()
    redis = start_redis(rport, rdir)
    inst, urls = {}, {}
    for i = 1, 3 do
      inst[i] = start_instance { ("redis://127.0.0.1:%d/0"):format(rport) }
      urls[i] = inst[i]:url "/ch"
    end
  end)
  teardown(function() helper.cleanup() end)

  it("a publish on any instance reaches every subscriber on every instance once, in order", function()
    local res = fanout(urls, "--subscribers", "30", "--publishers", "0,1,2", "--messages", "200",
      "--channel", "all")
    assert.is_true(res.synced, cjson.encode(res))
    assert.are.equal(90, res.subscribers)
    for i = 1, 3 do -- clients spread over the instances and over both workers of each
      assert.are.same({ "worker:0", "worker:1" }, res.workers[i])
    end
    assert.are.equal(0, res.duplicates)
    assert.are.equal(0, res.missing)
    assert.are.equal(90, res.complete) -- each publisher's 1..200, in order, exactly once
  end)

  it("holds one Redis subscription per channel per instance, and lets go of it; counts "
    .. "every instance's subscribers", function()
    local c = helper.app_client()
    for i = 1, 3 do
      for k = 1, 3 do -- three sockets per instance on the same channel
        local id = ("s%d_%d"):format(i, k)
        c:call { op = "open", id = id, url = urls[i] }
        c:call { op = "send", id = id, data = "sub:one" }
        assert.are.same({ "subscribed:one" }, c:call { op = "recv", id = id }.messages)
      end
    end
    assert(helper.wait_until(function()
      return redis_cli(rport, "PUBSUB", "NUMSUB", "ews:c:one"):match("ews:c:one\n(%d+)") == "3"
    end, 5), "want 3 subscriptions: " .. redis_cli(rport, "PUBSUB", "NUMSUB", "ews:c:one"))
    for i = 1, 3 do
      assert(helper.wait_until(function() return metric(inst[i], "edgews_redis_subscriptions") == 1 end, 5))
    end
    -- channel:count() counts the subscribers of every instance
    for i = 1, 3 do
      local id = ("s%d_1"):format(i)
      assert(helper.wait_until(function()
        c:call { op = "send", id = id, data = "count:one" }
        return c:call({ op = "recv", id = id }).messages[1] == "count:9"
      end, 5), "instance " .. i .. " does not count 9")
    end
    for i = 1, 3 do
      for k = 1, 3 do c:call { op = "close", id = ("s%d_%d"):format(i, k) } end
    end
    assert(helper.wait_until(function()
      return redis_cli(rport, "PUBSUB", "NUMSUB", "ews:c:one"):match("ews:c:one\n(%d+)") == "0"
    end, 5), "subscriptions left: " .. redis_cli(rport, "PUBSUB", "NUMSUB", "ews:c:one"))
    assert(helper.wait_until(function() return redis_cli(rport, "EXISTS", "ews:c:one") == "0\n"
      and redis_cli(rport, "HLEN", "ews:cc:one"):match("%d+") == "0" end, 5), "counts left")
    c:kill(0)
  end)

  it("while Redis is down publishes reach local subscribers and /health is degraded; "
    .. "after it returns every instance resubscribes", function()
    local c = helper.app_client()
    for i = 1, 3 do
      c:call { op = "open", id = "r" .. i, url = urls[i] }
      c:call { op = "send", id = "r" .. i, data = "sub:outage" }
      assert.are.same({ "subscribed:outage" }, c:call { op = "recv", id = "r" .. i }.messages)
    end
    c:call { op = "open", id = "p1", url = urls[1] }
    -- wait until a publish on instance 1 crosses to 2 and 3
    local n = 0
    assert(helper.wait_until(function()
      n = n + 1
      c:call { op = "send", id = "p1", data = "pub:outage:warm" .. n }
      local got = c:call { op = "recv", id = "r3", timeout = 0.2 }.messages
      return #got > 0
    end, 10), "no delivery across instances")
    for i = 1, 3 do c:call { op = "recv", id = "r" .. i, n = 1000, timeout = 0.3 } end -- drain

    redis:kill(0)
    for i = 1, 3 do
      assert(helper.wait_until(function() return health(inst[i]).status == "degraded" end, 10),
        "instance " .. i .. " health: " .. cjson.encode(health(inst[i])))
    end
    assert.are.equal(0, health(inst[1]).cluster.connected)
    c:call { op = "send", id = "p1", data = "pub:outage:local" }
    assert.are.same({ "local" }, c:call { op = "recv", id = "r1" }.messages)
    assert.are.same({}, c:call { op = "recv", id = "r2", timeout = 0.5 }.messages)
    assert.is_true((metric(inst[1], "edgews_redis_channel_dropped_total") or 0) >= 1)
    assert.truthy(http_get(inst[1], "/metrics"):find('edgews_redis_shard_up{shard="127.0.0.1:'
      .. rport .. '/0",last_error="[^"]+"} 0'))

    redis = start_redis(rport, rdir)
    for i = 1, 3 do
      assert(helper.wait_until(function() return health(inst[i]).status == "ok" end, 10),
        "instance " .. i .. " did not reconnect: " .. inst[i]:log())
    end
    assert(helper.wait_until(function()
      return redis_cli(rport, "PUBSUB", "NUMSUB", "ews:c:outage"):match("ews:c:outage\n(%d+)") == "3"
    end, 5), "not resubscribed")
    c:call { op = "send", id = "p1", data = "pub:outage:back" }
    for i = 1, 3 do
      assert.are.same({ "back" }, c:call { op = "recv", id = "r" .. i }.messages)
    end
    c:kill(0)
  end)

  it("an instance killed with SIGKILL leaves the others serving", function()
    inst[3]:signal "KILL"
    assert.is_true(inst[3]:wait(5))
    local res = fanout({ urls[1], urls[2] }, "--subscribers", "20", "--publishers", "0,1",
      "--messages", "50", "--channel", "afterkill")
    assert.is_true(res.synced, cjson.encode(res))
    assert.are.equal(40, res.complete)
    assert.are.equal(0, res.duplicates)
  end)
end)

describe("same-port instances #integration", function()
  teardown(function() helper.cleanup() end)

  it("three instances sharing one port with --reuse-port act as one server", function()
    local rport = free_port()
    start_redis(rport, helper.tmpdir())
    local port = free_port()
    local inst = {}
    for i = 1, 3 do
      inst[i] = helper.start_server { app = helper.app "channels_app.lua", workers = 2,
        args = { "--redis", ("redis://127.0.0.1:%d"):format(rport), "--reuse-port",
                 "--listen", ("127.0.0.1:%d"):format(port), "--admin-listen", "127.0.0.1:0" } }
      assert.are.equal(port, inst[i].port)
      inst[i].admin_port = tonumber(inst[i]:wait_log("admin listener %(/health, /metrics%) on [%d.]+:(%d+)", 5))
      assert.truthy(inst[i].admin_port)
    end
    for i = 1, 3 do
      assert(helper.wait_until(function() return health(inst[i]).status == "ok" end, 10))
    end
    -- 40 subscribers on the one port: the kernel spreads them over the processes
    local url = ("ws://127.0.0.1:%d/ch"):format(port)
    local urls = {}
    for i = 1, 4 do urls[i] = url end
    local res = fanout(urls, "--subscribers", "10", "--publishers", "0,1", "--messages", "50",
      "--channel", "oneport")
    assert.is_true(res.synced, cjson.encode(res))
    assert.are.equal(40, res.complete)
    assert.are.equal(0, res.duplicates)
    -- messages crossed processes
    local crossed = 0
    for i = 1, 3 do crossed = crossed + (metric(inst[i], "edgews_redis_channel_received_total") or 0) end
    assert.is_true(crossed > 0)
    -- 12 sockets on the one port land on more than one process: more than one
    -- instance holds the channel's Redis subscription
    local c = helper.app_client()
    for k = 1, 12 do
      c:call { op = "open", id = "k" .. k, url = url }
      c:call { op = "send", id = "k" .. k, data = "sub:spread" }
      assert.are.same({ "subscribed:spread" }, c:call { op = "recv", id = "k" .. k }.messages)
    end
    assert(helper.wait_until(function()
      local n = tonumber(redis_cli(rport, "PUBSUB", "NUMSUB", "ews:c:spread"):match("ews:c:spread\n(%d+)"))
      return n and n >= 2
    end, 5), "every socket on one process")
    c:kill(0)
  end)
end)

describe("cluster over two Redis shards #integration", function()
  teardown(function() helper.cleanup() end)

  it("spreads channels over both shards; with one down the other's channels still cross", function()
    local p1, p2 = free_port(), free_port()
    local r1 = start_redis(p1, helper.tmpdir())
    start_redis(p2, helper.tmpdir())
    local shards = { ("redis://127.0.0.1:%d"):format(p1), ("redis://127.0.0.1:%d/0"):format(p2) }
    -- the second instance lists the shards in the other order: the same ring
    local a = start_instance(shards)
    local b = start_instance { shards[2], shards[1] }
    local ua, ub = a:url "/ch", b:url "/ch"
    local c = helper.app_client()
    c:call { op = "open", id = "a", url = ua }
    c:call { op = "open", id = "b", url = ub }
    c:call { op = "open", id = "pa", url = ua }
    local names = {}
    for i = 1, 16 do names[i] = "shard" .. i end
    for _, ch in ipairs(names) do
      c:call { op = "send", id = "a", data = "sub:" .. ch }
      c:call { op = "recv", id = "a" }
      c:call { op = "send", id = "b", data = "sub:" .. ch }
      c:call { op = "recv", id = "b" }
    end
    local on = { {}, {} }
    assert(helper.wait_until(function()
      on = { {}, {} }
      for s, port in ipairs { p1, p2 } do
        for ch in redis_cli(port, "PUBSUB", "CHANNELS", "ews:c:*"):gmatch("ews:c:(%S+)") do
          on[s][ch] = true
        end
      end
      local n = 0
      for _, ch in ipairs(names) do
        if on[1][ch] or on[2][ch] then n = n + 1 end
      end
      return n == #names
    end, 5), "not every channel subscribed")
    local n1, n2 = 0, 0
    for _, ch in ipairs(names) do
      assert.is_false(on[1][ch] == true and on[2][ch] == true, ch .. " on both shards")
      if on[1][ch] then n1 = n1 + 1 else n2 = n2 + 1 end
    end
    assert.is_true(n1 > 0 and n2 > 0, ("%d and %d channels per shard"):format(n1, n2))
    -- every channel crosses from a to b
    for _, ch in ipairs(names) do
      assert(helper.wait_until(function()
        c:call { op = "send", id = "pa", data = "pub:" .. ch .. ":x" }
        return #c:call({ op = "recv", id = "b", timeout = 0.2 }).messages > 0
      end, 5), ch .. " did not cross")
    end
    c:call { op = "recv", id = "b", n = 1000, timeout = 0.3 }
    c:call { op = "recv", id = "a", n = 1000, timeout = 0.3 }

    r1:kill(0) -- shard 1 down
    assert(helper.wait_until(function() return health(a).status == "degraded" end, 10))
    local hc = health(a).cluster
    assert.are.same({ 2, 1 }, { hc.shards, hc.connected })
    for _, ch in ipairs(names) do
      c:call { op = "send", id = "pa", data = "pub:" .. ch .. ":y" }
      assert.are.same({ "y" }, c:call { op = "recv", id = "a" }.messages) -- local: always
      local got = c:call { op = "recv", id = "b", timeout = on[2][ch] and 2 or 0.2 }.messages
      if on[2][ch] then
        assert.are.same({ "y" }, got) -- the live shard's channels still cross
      else
        assert.are.same({}, got)
      end
    end
    c:kill(0)
  end)
end)

describe("cluster configuration #integration", function()
  teardown(function() helper.cleanup() end)

  it("refuses a bad --redis URL", function()
    for _, bad in ipairs { "http://h:1", "redis://h:99999", "redis://h?color=red", "unix:rel" } do
      local p = helper.spawn({ helper.BIN, "--redis", bad, helper.app "channels_app.lua" })
      local done = p:wait(10)
      assert.is_true(done)
      assert.are.equal(2, p.code)
      assert.truthy(p:stderr():find("bad --redis", 1, true), p:stderr())
    end
  end)

  it("takes configure{redis = ...} and starts degraded when Redis is not there", function()
    local dir = helper.tmpdir()
    local port = free_port()
    helper.write_file(dir .. "/app.lua", ([[
local edgews = require "edgews"
edgews.configure { redis = { "redis://127.0.0.1:%d/1?connect_timeout=0.5" } }
edgews.app { path = "/x" }:on("message", function(s, d) s:send(d) end)
]]):format(port))
    local srv = helper.start_server { app = dir .. "/app.lua", workers = 1 }
    assert(helper.wait_until(function() return health(srv).status == "degraded" end, 5))
    assert.truthy(srv:wait_log("cannot connect", 5))
    local r = start_redis(port, helper.tmpdir())
    assert(helper.wait_until(function() return health(srv).status == "ok" end, 10),
      "did not connect once Redis started: " .. srv:log())
    r:kill(0)
  end)
end)

describe("pub/sub in a cluster #integration", function()
  local rport, rdir, redis, inst, urls
  setup(function()
    rport, rdir = free_port(), helper.tmpdir()
    redis = start_redis(rport, rdir)
    inst, urls = {}, {}
    for i = 1, 3 do
      inst[i] = start_instance({ ("redis://127.0.0.1:%d"):format(rport) },
        { app = "realtime_app.lua" })
      urls[i] = inst[i]:url "/rt"
    end
  end)
  teardown(function() helper.cleanup() end)

  local function json_of(c, id, timeout)
    local r = c:call { op = "recv", id = id, timeout = timeout or 5 }
    assert.are.equal(1, #r.messages, "no message on " .. id)
    return cjson.decode(r.messages[1])
  end
  local function request(c, id, t)
    c:call { op = "send", id = id, data = cjson.encode(t) }
    return json_of(c, id)
  end

  it("offsets are the cluster's: subscribers recovering on other instances see each once, in order", function()
    local argv = { helper.PYTHON, helper.CLIENTS .. "/pubsub_recovery.py", "--url",
      table.concat(urls, ","), "--topic", "load", "--publishers", "3", "--messages", "60",
      "--subscribers", "6", "--reconnects", "4", "--interval", "0.003" }
    local res, rc = helper.run(argv, 90)
    assert.are.equal(0, rc, cjson.encode(res))
    assert.are.equal(180, res.published)
    assert.is_true(res.offsets_unique, "offsets are not 1..180 once each")
    for i, sub in ipairs(res.subscribers) do
      assert.are.equal(0, sub.duplicates, "subscriber " .. i)
      assert.are.equal(0, sub.missing, "subscriber " .. i)
      assert.is_true(sub.in_order, "subscriber " .. i)
      assert.is_true(sub.instances >= 2, "subscriber " .. i .. " stayed on one instance")
    end
  end)

  it("while Redis is down a publish returns unavailable; what was acknowledged survives its kill -9", function()
    local c = helper.app_client()
    c:call { op = "open", id = "s", url = urls[2] .. "?user=s" }
    c:call { op = "open", id = "p", url = urls[1] .. "?user=p" }
    local sub = request(c, "s", { type = "subscribe", topic = "dur" })
    assert.are.equal("subscribed", sub.type)
    for i = 1, 3 do
      local r = request(c, "p", { type = "publish", topic = "dur", data = "m" .. i })
      assert.are.equal("published", r.type)
      assert.are.equal(i, r.offset)
      local m = json_of(c, "s")
      assert.are.same({ "pub", i, "m" .. i }, { m.type, m.offset, m.data })
    end
    redis:signal "KILL"
    assert.is_true(redis:wait(5))
    assert(helper.wait_until(function() return health(inst[1]).status == "degraded" end, 10))
    local r = request(c, "p", { type = "publish", topic = "dur", data = "lost" })
    assert.are.same({ "error", "unavailable" }, { r.type, r.error })
    r = request(c, "p", { type = "history", topic = "dur" })
    assert.are.same({ "error", "unavailable" }, { r.type, r.error })

    redis = start_redis(rport, rdir) -- the same append-only file
    for i = 1, 3 do
      assert(helper.wait_until(function() return health(inst[i]).status == "ok" end, 10))
    end
    r = request(c, "p", { type = "publish", topic = "dur", data = "m4" })
    assert.are.equal(4, r.offset) -- the offsets go on: nothing acknowledged was lost
    local m = json_of(c, "s")
    assert.are.same({ "pub", 4, "m4" }, { m.type, m.offset, m.data })
    assert.are.same({}, c:call { op = "recv", id = "s", timeout = 0.3 }.messages) -- "lost" never came
    -- a subscriber on the third instance recovers the whole history from the stream
    c:call { op = "open", id = "t", url = urls[3] .. "?user=t" }
    c:call { op = "send", id = "t", data = cjson.encode { type = "subscribe", topic = "dur", since_offset = 0 } }
    local got = c:call { op = "recv", id = "t", n = 5, timeout = 5 }.messages
    local offs = {}
    for _, raw in ipairs(got) do
      local x = cjson.decode(raw)
      if x.type == "pub" then offs[#offs + 1] = x.offset end
    end
    assert.are.same({ 1, 2, 3, 4 }, offs, cjson.encode(got))
    c:kill(0)
  end)

  it("Redis killed and restarted mid-traffic: publishes fail cleanly, every subscriber ends "
    .. "with every acknowledged offset exactly once, in order", function()
    -- publishers on every instance go on until 300 each were acknowledged; six
    -- subscribers reconnect to other instances 4 times, retrying refused subscribes
    local p = helper.spawn { helper.PYTHON, helper.CLIENTS .. "/pubsub_recovery.py", "--url",
      table.concat(urls, ","), "--topic", "outage", "--publishers", "3", "--messages", "300",
      "--subscribers", "6", "--reconnects", "4", "--interval", "0.01", "--tolerate-errors" }
    local line = p:read_line(30)
    assert.truthy(line and line:find("publishing", 1, true), "client: " .. tostring(line) .. p:stderr())
    helper.sleep(0.5) -- traffic flows (the outage's timing, not a synchronisation)
    redis:signal "KILL"
    assert.is_true(redis:wait(5))
    for i = 1, 3 do
      assert(helper.wait_until(function() return health(inst[i]).status == "degraded" end, 10))
    end
    redis = start_redis(rport, rdir)
    local done, out = p:finish(120)
    assert.is_true(done, "client did not finish: " .. p:stderr())
    local res
    for l in out:gmatch("[^\n]+") do res = l end
    res = cjson.decode(res)
    assert.are.equal(900, res.published)
    assert.is_true(res.offsets_unique)
    assert.is_true(res.publish_errors > 0, "no publish was refused: the outage was missed")
    for i, sub in ipairs(res.subscribers) do
      local what = "subscriber " .. i .. ": " .. cjson.encode(sub)
      assert.are.equal(0, sub.duplicates, what)
      assert.are.equal(0, sub.missing, what)
      assert.is_true(sub.in_order, what)
    end
  end)

  it("keeps a topic's retention in its stream and recovers past it with a gap", function()
    local c = helper.app_client()
    c:call { op = "open", id = "p", url = urls[1] .. "?user=p" }
    local r = request(c, "p", { type = "retention", topic = "ret", max_queue_size = 50 })
    assert.are.equal("retention", r.type)
    r = request(c, "p", { type = "fill", topic = "ret", n = 60 })
    assert.are.same({ "filled", 60 }, { r.type, r.offset })
    assert.are.equal("50", redis_cli(rport, "XLEN", "ews:ps:ret"):match("%d+"))
    c:call { op = "open", id = "s", url = urls[3] .. "?user=s" }
    c:call { op = "send", id = "s", data = cjson.encode { type = "subscribe", topic = "ret", since_offset = 5, epoch = r.epoch } }
    local got = c:call { op = "recv", id = "s", n = 52, timeout = 5 }.messages
    local gap = cjson.decode(got[1])
    assert.are.same({ "gap", 6, 10, "retention" }, { gap.type, gap.from, gap.to, gap.reason })
    local offs = {}
    for _, raw in ipairs(got) do
      local x = cjson.decode(raw)
      if x.type == "pub" then offs[#offs + 1] = x.offset end
    end
    assert.are.equal(50, #offs)
    assert.are.same({ 11, 60 }, { offs[1], offs[50] })
    -- a retention set on another instance applies at once
    r = request(c, "s", { type = "retention", topic = "ret", max_queue_size = 20 })
    assert.are.equal("retention", r.type)
    assert.are.equal("20", redis_cli(rport, "XLEN", "ews:ps:ret"):match("%d+"))
    c:kill(0)
  end)
end)

describe("presence in a cluster #integration", function()
  teardown(function() helper.cleanup() end)

  it("join and leave events reach the channel's subscribers on every instance; "
    .. "members and counts are the cluster's", function()
    local rport = free_port()
    start_redis(rport, helper.tmpdir())
    local r = { ("redis://127.0.0.1:%d"):format(rport) }
    local a = start_instance(r, { app = "presence_app.lua" })
    local b = start_instance(r, { app = "presence_app.lua" })
    local c = helper.app_client()
    c:call { op = "open", id = "a", url = a:url "/p" }
    c:call { op = "open", id = "b", url = b:url "/p" }
    local function call(id, t)
      c:call { op = "send", id = id, data = cjson.encode(t) }
      for _ = 1, 20 do
        local m = cjson.decode(c:call({ op = "recv", id = id }).messages[1])
        if m.reply then return m end
      end
    end
    assert.is_true(call("a", { op = "sub", ch = "room" }).ok)
    assert(helper.wait_until(function()
      return redis_cli(rport, "PUBSUB", "NUMSUB", "ews:c:room"):match("ews:c:room\n(%d+)") == "1"
    end, 5))
    assert.is_true(call("b", { op = "join", ch = "room", user = "bo" }).ok)
    local function event(kind)
      local found
      helper.wait_until(function()
        local got = c:call({ op = "recv", id = "a", timeout = 0.5 }).messages
        for _, raw in ipairs(got) do
          local m = cjson.decode(raw)
          local first = m.type == "presence" and type(m[kind]) == "table" and m[kind][1]
          if first == "bo" or (type(first) == "table" and first.user == "bo") then found = m end
        end
        return found
      end, 5)
      return found
    end
    local ev = event("joins")
    assert.truthy(ev, "no join event crossed the instances")
    assert.are.equal("room", ev.channel)
    -- the member is instance b's, counted on both (cluster_presence_spec has more)
    assert.are.equal(1, call("b", { op = "count", ch = "room" }).count)
    assert.are.equal(1, call("a", { op = "count", ch = "room" }).count)
    assert.is_true(call("b", { op = "leave", ch = "room" }).ok)
    assert.truthy(event("leaves"), "no leave event crossed the instances")
    c:kill(0)
  end)
end)

describe("users in a cluster #integration", function()
  teardown(function() helper.cleanup() end)

  it("edgews.user_sockets finds a user's sockets on every instance and sends to them; "
    .. "app:broadcast reaches every instance; an instance killed with SIGKILL stops being listed", function()
    local rport = free_port()
    start_redis(rport, helper.tmpdir())
    local r = { ("redis://127.0.0.1:%d"):format(rport) }
    local inst = {}
    for i = 1, 3 do inst[i] = start_instance(r, { app = "applayer_limits_app.lua" }) end
    local c = helper.app_client()
    local function token(sub)
      return c:call({ op = "jwt", secret = "spec-secret", claims = { sub = sub, exp = os.time() + 300 } }).token
    end
    local function open(id, i, user)
      c:call { op = "open", id = id, url = inst[i]:url "/xw",
               headers = { Authorization = "Bearer " .. token(user) } }
      c:call { op = "recv", id = id, timeout = 3 } -- its hello
    end
    local function ask(id, msg)
      c:call { op = "send", id = id, data = cjson.encode(msg) }
      local got = c:call { op = "recv", id = id, timeout = 5 }
      return got.json[1]
    end
    open("ann2", 2, "ann")
    open("ann3", 3, "ann")
    open("bob1", 1, "bob")
    local n
    assert(helper.wait_until(function() -- the registry is written behind the socket's open
      n = ask("bob1", { type = "notify", uid = "ann", text = "hi" }).n
      if n < 2 then
        for _, id in ipairs { "ann2", "ann3" } do c:call { op = "recv", id = id, n = 10, timeout = 0.1 } end
      end
      return n == 2
    end, 5), "ann's sockets on instances 2 and 3 were not both found: " .. tostring(n))
    for _, id in ipairs { "ann2", "ann3" } do
      local m = c:call({ op = "recv", id = id, timeout = 5 }).json[1]
      assert.are.same({ "note", "hi" }, { m and m.type, m and m.text }, id)
    end
    -- app:broadcast reaches the app's sockets on every instance
    c:call { op = "send", id = "bob1", data = cjson.encode { type = "shout_all", text = "all" } }
    local seen = {}
    for _, id in ipairs { "bob1", "ann2", "ann3" } do
      local want = id == "bob1" and 2 or 1 -- the sender also gets its "shouted"
      for _, m in ipairs(c:call({ op = "recv", id = id, n = want, timeout = 5 }).json) do
        if m.type == "shout" and m.text == "all" then seen[id] = true end
      end
      c:call { op = "recv", id = id, n = 10, timeout = 0.1 }
    end
    assert.are.same({ bob1 = true, ann2 = true, ann3 = true }, seen)
    -- a closed socket leaves the registry
    c:call { op = "close", id = "ann3" }
    assert(helper.wait_until(function() return ask("bob1", { type = "notify", uid = "ann", text = "x" }).n == 1 end, 5))
    c:call { op = "recv", id = "ann2", n = 10, timeout = 0.3 }
    -- an instance that dies: its sockets are not listed once its liveness key expired
    inst[2]:signal "KILL"
    assert.is_true(inst[2]:wait(5))
    assert(helper.wait_until(function() return ask("bob1", { type = "notify", uid = "ann", text = "y" }).n == 0 end, 10),
      "the dead instance's socket is still listed")
    c:kill(0)
  end)
end)

describe("notifications in a cluster #integration", function()
  teardown(function() helper.cleanup() end)

  it("are kept in Redis: delivered to a user on another instance, marked there, pending "
    .. "on connect anywhere, and kept across kill -9 of the storing instance and of Redis", function()
    local rport, rdir = free_port(), helper.tmpdir()
    local redis = start_redis(rport, rdir)
    local r = { ("redis://127.0.0.1:%d"):format(rport) }
    local inst = {}
    for i = 1, 3 do inst[i] = start_instance(r, { app = "realtime_app.lua" }) end
    local c = helper.app_client()
    local function json_of(id, timeout)
      local got = c:call { op = "recv", id = id, timeout = timeout or 5 }
      assert.are.equal(1, #got.messages, "no message on " .. id)
      return cjson.decode(got.messages[1])
    end
    local function request(id, t)
      c:call { op = "send", id = id, data = cjson.encode(t) }
      return json_of(id)
    end
    c:call { op = "open", id = "ann", url = inst[2]:url "/rt?user=ann" }
    c:call { op = "open", id = "p", url = inst[1]:url "/rt?user=p" }
    assert(helper.wait_until(function()
      return redis_cli(rport, "HLEN", "ews:u:ann"):match("%d+") == "1"
    end, 5), "ann's socket not registered")
    local st = request("p", { type = "notify", user = "ann", data = { text = "hello" } })
    assert.are.equal("stored", st.type)
    assert.is_true(st.delivered)
    local m = json_of("ann") -- live, on instance 2
    assert.are.same({ "notification", st.id, "hello" }, { m.type, m.id, m.data.text })
    -- instance 2 marked it delivered, in Redis: instance 3 lists it so
    c:call { op = "open", id = "q", url = inst[3]:url "/rt?user=q" }
    assert(helper.wait_until(function()
      local l = request("q", { type = "list", user = "ann" })
      return l.total == 1 and l.items[1].state == "delivered"
    end, 5))
    -- a user who is offline gets it when connecting to any instance
    local st2 = request("p", { type = "notify", user = "cy", data = { text = "later" } })
    assert.is_false(st2.delivered)
    inst[1]:signal "KILL" -- the storing instance
    assert.is_true(inst[1]:wait(5))
    redis:signal "KILL"
    assert.is_true(redis:wait(5))
    redis = start_redis(rport, rdir) -- its append-only file
    assert(helper.wait_until(function() return health(inst[3]).status == "ok" end, 10))
    c:call { op = "open", id = "cy", url = inst[3]:url "/rt?user=cy" }
    m = json_of("cy")
    assert.are.same({ "notification", st2.id, "later" }, { m.type, m.id, m.data.text })
    local l = request("q", { type = "list", user = "ann" })
    assert.are.same({ 1, st.id, "delivered" }, { l.total, l.items[1].id, l.items[1].state })
    c:kill(0)
  end)
end)
