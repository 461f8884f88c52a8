-- Presence, app operations and pub/sub subscriptions across a cluster (README:
-- Running a cluster): three instances of spec/apps/cluster_presence_app.lua with
-- --workers 2 each and a real redis-server the spec starts on a free port.
--   * presence is the cluster's: count, list and get from any instance; a user on
--     two instances is joined once (its first connection anywhere) and left once
--     (its last), in the events every instance's subscribers get; presence.set on
--     one instance shows on the others
--   * app:connection_count() counts every instance's sockets; app:close_all()
--     closes them on every instance
--   * pub/sub: an instance holds a Redis subscription only for the topics it has
--     subscribers of (PUBSUB CHANNELS, a PUBLISH reaching nobody); a subscriber arriving on an
--     instance whose subscription is not effective yet still gets what was
--     published meanwhile (EDGEWS_TEST_TOPIC_SUBSCRIBE_DELAY_MS holds the SUBSCRIBE
--     back to open that window), and one arriving during a publish stream gets
--     every offset after its position exactly once; Lua subscribers run on every
--     instance
--   * the delivery latency through Redis is in /metrics and /health
--   * Redis restarted empty: each instance writes its members there again
--   * an instance that stops (SIGTERM) takes its members out of Redis as it ends
--   * an instance killed with SIGKILL: its members expire and the survivors
--     announce their leaves, once
local helper = require "spec.helper"
local cjson = require "cjson"

local rh = require "spec.redis_helper"
local free_port, redis_cli, http_get, health = rh.free_port, rh.redis_cli, rh.http_get, rh.health
local function start_redis(port, dir) return rh.start_redis(port, dir, { durable = false }) end

local function start_instance(rport, env)
  local srv = helper.start_server { app = helper.app "cluster_presence_app.lua", workers = 2,
    args = { "--redis", ("redis://127.0.0.1:%d"):format(rport) }, env = env }
  assert(helper.wait_until(function() return health(srv).status == "ok" end, 10),
    "instance did not connect to Redis:\n" .. srv:log())
  return srv
end

-- A client of the app: call() sends a command and returns its reply; the events
-- that come meanwhile (presence events, pub/sub messages) are kept per socket.
local function client()
  local c = helper.app_client()
  local self = { c = c, events = {} }
  function self.open(id, srv)
    c:call { op = "open", id = id, url = srv:url "/cp" }
    self.events[id] = {}
  end
  function self.call(id, t)
    c:call { op = "send", id = id, data = cjson.encode(t) }
    for _ = 1, 1000 do
      local got = c:call { op = "recv", id = id, timeout = 5 }
      assert(#got.messages == 1, "no reply to " .. t.op .. " on " .. id)
      local m = cjson.decode(got.messages[1])
      if m.reply == t.op then return m end
      table.insert(self.events[id], m)
    end
  end
  -- Reads what arrived on id within timeout into its events.
  function self.drain(id, timeout)
    local got = c:call { op = "recv", id = id, n = 10000, timeout = timeout or 0.3 }
    for _, raw in ipairs(got.messages) do table.insert(self.events[id], cjson.decode(raw)) end
    return got
  end
  -- How many times user u was announced as kind ("joins", "leaves") on id's channel ch.
  function self.announced(id, ch, kind, u)
    local n = 0
    for _, m in ipairs(self.events[id]) do
      if m.type == "presence" and m.channel == ch then
        for _, e in ipairs(m[kind] or {}) do
          if e == u or (type(e) == "table" and e.user == u) then n = n + 1 end
        end
      end
    end
    return n
  end
  return self
end

local function numsub(rport, chan)
  return tonumber(redis_cli(rport, "PUBSUB", "NUMSUB", chan):match("\n(%d+)")) or 0
end

describe("presence and app operations in a cluster #integration", function()
  local rport, inst
  setup(function()
    rport = free_port()
    start_redis(rport, helper.tmpdir())
    inst = {}
    for i = 1, 3 do inst[i] = start_instance(rport, { CP_NAME = "i" .. i }) end
  end)
  teardown(function() helper.cleanup() end)

  it("app:connection_count() counts every instance's sockets; app:close_all() closes them "
    .. "on every instance", function()
    local k = client()
    local ids = {}
    for i, n in ipairs { 2, 3, 1 } do
      for j = 1, n do
        local id = ("c%d_%d"):format(i, j)
        k.open(id, inst[i])
        ids[#ids + 1] = id
      end
    end
    for i = 1, 3 do
      local n
      assert(helper.wait_until(function()
        n = k.call(("c%d_1"):format(i), { op = "conns" }).count
        return n == 6
      end, 5), "instance " .. i .. " counts " .. tostring(n) .. " sockets, not 6")
    end
    k.c:call { op = "close", id = "c3_1" }
    assert(helper.wait_until(function() return k.call("c1_1", { op = "conns" }).count == 5 end, 5))
    -- close_all from instance 2 closes the sockets of all three (its own caller too)
    k.c:call { op = "send", id = "c2_1", data = cjson.encode { op = "close_all" } }
    for _, id in ipairs(ids) do
      if id ~= "c3_1" then
        local got = k.c:call { op = "wait_close", id = id, timeout = 5 }
        assert.are.equal(4001, got.code, id)
      end
    end
    k.c:kill(0)
  end)

  it("members, counts and lists are the cluster's; a user on two instances is joined once "
    .. "and left once on every instance", function()
    local k = client()
    for i = 1, 3 do
      k.open("s" .. i, inst[i])
      assert.is_true(k.call("s" .. i, { op = "sub", ch = "room" }).ok)
    end
    assert(helper.wait_until(function() return numsub(rport, "ews:c:room") == 3 end, 5))
    k.open("ann1", inst[1])
    k.open("bob2", inst[2])
    k.open("ann3", inst[3])
    local j = k.call("ann1", { op = "join", ch = "room", user = "ann", status = "here", meta = { n = 1 } })
    assert.are.same({ true, true }, { j.ok, j.new })
    j = k.call("bob2", { op = "join", ch = "room", user = "bob" })
    assert.are.same({ true, true }, { j.ok, j.new })
    -- every instance counts both once their batches reached Redis
    for i = 1, 3 do
      assert(helper.wait_until(function() return k.call("s" .. i, { op = "count", ch = "room" }).count == 2 end, 5),
        "instance " .. i .. " does not count 2")
    end
    -- ann on a second instance is not new
    j = k.call("ann3", { op = "join", ch = "room", user = "ann" })
    assert.are.same({ true, false }, { j.ok, j.new })
    for i = 1, 3 do
      assert.are.equal(2, k.call("s" .. i, { op = "count", ch = "room" }).count)
    end
    -- the list from any instance: ann with her connections on both instances
    for i = 1, 3 do
      local l
      assert(helper.wait_until(function()
        l = k.call("s" .. i, { op = "list", ch = "room" })
        return l.n == 2 and l.members[1].connections == 2
      end, 5), "instance " .. i .. ": " .. cjson.encode(l))
      assert.are.same({ "ann", "bob" }, { l.members[1].user, l.members[2].user })
      assert.are.equal(1, l.members[2].connections)
      assert.are.equal(cjson.null, l.cursor)
    end
    -- pages across instances: one member at a time
    local p1 = k.call("s2", { op = "list", ch = "room", limit = 1 })
    assert.are.same({ 1, "ann", "ann" }, { p1.n, p1.members[1].user, p1.cursor })
    local p2 = k.call("s2", { op = "list", ch = "room", limit = 1, cursor = p1.cursor })
    assert.are.same({ 1, "bob" }, { p2.n, p2.members[1].user })
    -- instance 1's status and meta for ann, seen from instance 2
    local l = k.call("s2", { op = "list", ch = "room" })
    assert.are.same({ "here", { n = 1 } }, { l.members[1].status, l.members[1].meta })
    -- presence.get from an instance where the user has no socket
    local g = k.call("s1", { op = "get", users = { "bob", "zed" } }).res
    assert.are.same({ "room" }, g.bob.channels)
    assert.is_true(g.bob.online)
    assert.are.equal("online", g.bob.status)
    assert.is_false(g.zed.online)
    assert.are.equal("offline", g.zed.status)
    -- leaving one of two instances is not a leave
    local lv = k.call("ann1", { op = "leave", ch = "room" })
    assert.are.same({ true, false }, { lv.ok, lv.left })
    -- (is_new and user_left see the other instances as of their last batch: wait
    -- until instance 1's has reached Redis, as instance 2 sees it)
    assert(helper.wait_until(function()
      local x = k.call("s2", { op = "list", ch = "room" })
      return x.n == 2 and x.members[1].connections == 1
    end, 5))
    lv = k.call("ann3", { op = "leave", ch = "room" })
    assert.are.same({ true, true }, { lv.ok, lv.left })
    for i = 1, 3 do
      assert(helper.wait_until(function() return k.call("s" .. i, { op = "count", ch = "room" }).count == 1 end, 5))
    end
    -- every subscriber: ann joined once and left once, bob joined once
    for i = 1, 3 do
      local id = "s" .. i
      assert(helper.wait_until(function()
        k.drain(id, 0.2)
        return k.announced(id, "room", "leaves", "ann") >= 1
      end, 5), id .. " never heard ann leave: " .. cjson.encode(k.events[id]))
      k.drain(id, 0.5) -- anything more that comes
      assert.are.equal(1, k.announced(id, "room", "joins", "ann"), id .. ": " .. cjson.encode(k.events[id]))
      assert.are.equal(1, k.announced(id, "room", "leaves", "ann"), id .. ": " .. cjson.encode(k.events[id]))
      assert.are.equal(1, k.announced(id, "room", "joins", "bob"), id .. ": " .. cjson.encode(k.events[id]))
      assert.are.equal(0, k.announced(id, "room", "leaves", "bob"), id)
    end
    k.c:kill(0)
  end)

  it("presence.set on one instance is presence.get's status on the others, and is announced "
    .. "once for a user on two instances", function()
    local k = client()
    k.open("a", inst[1])
    k.open("c", inst[3])
    assert.is_true(k.call("a", { op = "set", user = "cy", status = "away", meta = { note = "lunch" } }).ok)
    local g
    assert(helper.wait_until(function()
      g = k.call("c", { op = "get", users = { "cy" } }).res.cy
      return g.status == "away"
    end, 5), "instance 3 sees " .. cjson.encode(g))
    assert.are.same({ note = "lunch" }, g.meta)
    -- a user present on two instances whose global status changes: one update
    k.open("s", inst[3])
    assert.is_true(k.call("s", { op = "sub", ch = "room3" }).ok)
    assert(helper.wait_until(function() return numsub(rport, "ews:c:room3") == 1 end, 5))
    k.open("d1", inst[1])
    k.open("d2", inst[2])
    k.call("d1", { op = "join", ch = "room3", user = "dee" })
    k.call("d2", { op = "join", ch = "room3", user = "dee" })
    assert(helper.wait_until(function()
      local l = k.call("s", { op = "list", ch = "room3" })
      return l.n == 1 and l.members[1].connections == 2
    end, 5))
    assert.is_true(k.call("c", { op = "set", user = "dee", status = "away" }).ok)
    local function updates()
      local n = 0
      for _, m in ipairs(k.events.s) do
        for _, u in ipairs(m.type == "presence" and m.updates or {}) do
          if u.user == "dee" and u.status == "away" then n = n + 1 end
        end
      end
      return n
    end
    assert(helper.wait_until(function()
      k.drain("s", 0.2)
      return updates() >= 1
    end, 5), "no update: " .. cjson.encode(k.events.s))
    k.drain("s", 0.5)
    assert.are.equal(1, updates(), cjson.encode(k.events.s))
    assert.are.equal(1, k.announced("s", "room3", "joins", "dee"))
    k.c:kill(0)
  end)

  it("each instance subscribes only to the topics it has subscribers of; Lua subscribers "
    .. "run on every instance; the delivery latency is measured", function()
    local k = client()
    for i = 1, 3 do k.open("x" .. i, inst[i]) end
    -- the Lua subscriber of "lua" (every worker): every instance holds ews:p:lua
    assert(helper.wait_until(function() return numsub(rport, "ews:p:lua") == 3 end, 5),
      "ews:p:lua: " .. redis_cli(rport, "PUBSUB", "NUMSUB", "ews:p:lua"))
    -- no pattern subscription at all (topics, channels and documents each have their
    -- own): a PUBLISH on a topic nobody follows reaches no Redis client
    assert.are.equal("0", redis_cli(rport, "PUBSUB", "NUMPAT"):match("%d+"))
    assert.are.equal("0", redis_cli(rport, "PUBLISH", "ews:p:nobody-follows", "x"):match("%d+"))
    -- a socket subscriber on instance 2 only
    local s = k.call("x2", { op = "psub", topic = "narrow" })
    assert.is_table(s.sub)
    assert(helper.wait_until(function() return numsub(rport, "ews:p:narrow") == 1 end, 5))
    local chans = redis_cli(rport, "PUBSUB", "CHANNELS", "ews:p:*")
    assert.truthy(chans:find("ews:p:narrow", 1, true))
    for i = 1, 5 do
      assert.are.equal(i, k.call("x1", { op = "pub", topic = "narrow", data = "m" .. i }).offset)
    end
    assert(helper.wait_until(function()
      k.drain("x2", 0.2)
      local n = 0
      for _, m in ipairs(k.events.x2) do if m.type == "pub" then n = n + 1 end end
      return n == 5
    end, 5))
    -- the Lua subscriber of every instance gets every offset once, in order (each
    -- reports on channel lua.seen, which x1 follows)
    assert.is_true(k.call("x1", { op = "sub", ch = "lua.seen" }).ok)
    assert(helper.wait_until(function() return numsub(rport, "ews:c:lua.seen") == 1 end, 5))
    for i = 1, 4 do k.call("x3", { op = "pub", topic = "lua", data = i }) end
    local seen
    assert(helper.wait_until(function()
      k.drain("x1", 0.2)
      seen = { i1 = {}, i2 = {}, i3 = {} }
      local n = 0
      for _, m in ipairs(k.events.x1) do
        if m.name then table.insert(seen[m.name], m.offset); n = n + 1 end
      end
      return n >= 12
    end, 5), "Lua subscribers: " .. cjson.encode(seen))
    k.drain("x1", 0.3)
    assert.are.same({ i1 = { 1, 2, 3, 4 }, i2 = { 1, 2, 3, 4 }, i3 = { 1, 2, 3, 4 } }, seen)
    -- the subscriber leaves: instance 2 lets go of the topic
    k.c:call { op = "close", id = "x2" }
    assert(helper.wait_until(function() return numsub(rport, "ews:p:narrow") == 0 end, 5))
    -- delivery latency through Redis: messages of other instances arrived here
    local body = http_get(inst[2], "/metrics")
    local sum = tonumber(body:match("\nedgews_redis_delivery_seconds_sum ([%d.e+-]+)"))
    local count = tonumber(body:match("\nedgews_redis_delivery_seconds_count (%d+)"))
    assert.truthy(sum and count, body)
    assert.is_true(count >= 9, "deliveries counted: " .. tostring(count))
    assert.is_true(sum > 0 and sum / count < 5, "mean delivery " .. tostring(sum / count) .. " s")
    local h = health(inst[2]).cluster
    assert.is_true(h.deliveries >= 9)
    assert.is_true(h.delivery_ms > 0 and h.delivery_ms < 5000, cjson.encode(h))
    assert.is_true(h.publish_ms >= 0)
    k.c:kill(0)
  end)

  it("a subscriber arriving during a publish stream gets every offset after its position "
    .. "exactly once", function()
    local k = client()
    k.open("p", inst[1])
    for round = 1, 3 do
      local topic = "stream" .. round
      -- the publisher runs 3000 publishes in one turn of instance 1; the subscriber
      -- arrives on instance 3 (no subscription of the topic there yet) meanwhile
      k.c:call { op = "send", id = "p", data = cjson.encode { op = "fill", topic = topic, n = 3000 } }
      k.open("s", inst[3])
      local sub = k.call("s", { op = "psub", topic = topic }).sub
      assert.is_table(sub, "subscribe failed")
      local from = sub.offset
      local done = k.c:call { op = "recv", id = "p", timeout = 20 } -- the fill's reply
      assert.are.equal(3000, cjson.decode(done.messages[1]).offset)
      local offs = {}
      assert(helper.wait_until(function()
        k.drain("s", 0.2)
        offs = {}
        for _, m in ipairs(k.events.s) do
          if m.type == "pub" and m.topic == topic then offs[#offs + 1] = m.offset end
        end
        return #offs >= 3000 - from
      end, 20), ("round %d: from %d, got %d"):format(round, from, #offs))
      k.drain("s", 0.3)
      offs = {}
      for _, m in ipairs(k.events.s) do
        if m.type == "pub" and m.topic == topic then offs[#offs + 1] = m.offset end
      end
      assert.are.equal(3000 - from, #offs, "round " .. round .. ": duplicates")
      for i, o in ipairs(offs) do
        if o ~= from + i then error(("round %d: offset %d at %d (from %d)"):format(round, o, i, from)) end
      end
      k.c:call { op = "close", id = "s" }
    end
    k.c:kill(0)
  end)

  it("an instance killed with SIGKILL: its members expire and the survivors announce "
    .. "their leaves once", function()
    local k = client()
    k.open("s1", inst[1])
    k.open("s2", inst[2])
    for i = 1, 2 do assert.is_true(k.call("s" .. i, { op = "sub", ch = "room2" }).ok) end
    assert(helper.wait_until(function() return numsub(rport, "ews:c:room2") == 2 end, 5))
    k.open("dan3", inst[3])
    k.open("eve1", inst[1])
    k.call("dan3", { op = "join", ch = "room2", user = "dan" })
    k.call("eve1", { op = "join", ch = "room2", user = "eve" })
    assert(helper.wait_until(function() return k.call("s2", { op = "count", ch = "room2" }).count == 2 end, 5))
    inst[3]:signal "KILL"
    assert.is_true(inst[3]:wait(5))
    -- within the liveness key's 5 s (and a sweep): dan is gone everywhere
    for i = 1, 2 do
      assert(helper.wait_until(function() return k.call("s" .. i, { op = "count", ch = "room2" }).count == 1 end, 10),
        "instance " .. i .. " still counts dan")
    end
    local l = k.call("s1", { op = "list", ch = "room2" })
    assert.are.same({ 1, "eve" }, { l.n, l.members[1].user })
    for i = 1, 2 do
      local id = "s" .. i
      assert(helper.wait_until(function()
        k.drain(id, 0.2)
        return k.announced(id, "room2", "leaves", "dan") >= 1
      end, 5), id .. " never heard dan leave")
      k.drain(id, 0.5)
      assert.are.equal(1, k.announced(id, "room2", "leaves", "dan"), id .. ": " .. cjson.encode(k.events[id]))
      assert.are.equal(0, k.announced(id, "room2", "leaves", "eve"), id)
    end
    k.c:kill(0)
  end)
end)

describe("a topic subscription of a cluster that takes effect late #integration", function()
  teardown(function() helper.cleanup() end)

  it("a subscriber gets what was published between its subscribe and its instance's "
    .. "SUBSCRIBE taking effect", function()
    local rport = free_port()
    start_redis(rport, helper.tmpdir())
    local a = start_instance(rport)
    local k = client()
    k.open("p", a)
    -- topic "lua" (which b's Lua subscriber follows) has a history before b starts
    assert.are.equal(1, k.call("p", { op = "pub", topic = "lua", data = "old" }).offset)
    -- b sends a topic's SUBSCRIBE 1.5 s after it is wanted
    local b = start_instance(rport, { EDGEWS_TEST_TOPIC_SUBSCRIBE_DELAY_MS = "1500" })
    k.open("s", b)
    assert.are.equal(1, k.call("p", { op = "pub", topic = "late", data = "before" }).offset)
    local sub = k.call("s", { op = "psub", topic = "late" }).sub
    assert.are.equal(1, sub.offset)
    -- published while b's subscription is not in Redis yet
    assert.are.equal(0, numsub(rport, "ews:p:late"))
    assert.are.equal(2, k.call("p", { op = "pub", topic = "late", data = "inside" }).offset)
    assert.are.equal(0, numsub(rport, "ews:p:late"), "the window closed too early for this test")
    local got
    assert(helper.wait_until(function()
      k.drain("s", 0.2)
      got = {}
      for _, m in ipairs(k.events.s) do if m.type == "pub" then got[#got + 1] = m.offset end end
      return #got >= 1
    end, 6), "the message published inside the window never came")
    assert.are.same({ 2 }, got)
    assert.are.equal(3, k.call("p", { op = "pub", topic = "late", data = "after" }).offset)
    assert(helper.wait_until(function()
      k.drain("s", 0.2)
      got = {}
      for _, m in ipairs(k.events.s) do if m.type == "pub" then got[#got + 1] = m.offset end end
      return #got >= 2
    end, 5))
    k.drain("s", 0.3)
    got = {}
    for _, m in ipairs(k.events.s) do if m.type == "pub" then got[#got + 1] = m.offset end end
    assert.are.same({ 2, 3 }, got)
    -- b's Lua subscriber of "lua" started from its arrival: nothing was missed
    assert(helper.wait_until(function() return numsub(rport, "ews:p:lua") == 2 end, 5))
    assert.is_nil(b:log():find("missed messages", 1, true), b:log())
    k.c:kill(0)
  end)
end)

describe("presence over two Redis shards #integration", function()
  teardown(function() helper.cleanup() end)

  it("counts members of channels on either shard from another instance (every shard knows "
    .. "which instances are alive)", function()
    local p1, p2 = free_port(), free_port()
    start_redis(p1, helper.tmpdir())
    start_redis(p2, helper.tmpdir())
    local args = { "--redis", ("redis://127.0.0.1:%d"):format(p1), "--redis", ("redis://127.0.0.1:%d"):format(p2) }
    local function start()
      local srv = helper.start_server { app = helper.app "cluster_presence_app.lua", workers = 2, args = args }
      assert(helper.wait_until(function() return health(srv).status == "ok" end, 10), srv:log())
      return srv
    end
    local a, b = start(), start()
    local k = client()
    k.open("m", a)
    k.open("q", b)
    -- 12 channels: their keys spread over both shards, wherever a's liveness key is
    for i = 1, 12 do k.call("m", { op = "join", ch = "sh" .. i, user = "u" }) end
    local on
    assert(helper.wait_until(function()
      on = { 0, 0 }
      for s, port in ipairs { p1, p2 } do
        for _ in redis_cli(port, "KEYS", "ews:yu:sh*"):gmatch("ews:yu:sh%d+") do on[s] = on[s] + 1 end
      end
      return on[1] + on[2] == 12
    end, 5), "members not mirrored: " .. on[1] .. " + " .. on[2])
    assert.is_true(on[1] > 0 and on[2] > 0, "all on one shard")
    -- each count first removes the members of instances whose liveness key is gone
    -- from the channel's shard
    for i = 1, 12 do
      assert.are.equal(1, k.call("q", { op = "count", ch = "sh" .. i }).count, "sh" .. i)
    end
    k.c:kill(0)
  end)
end)

describe("presence across a Redis restart #integration", function()
  teardown(function() helper.cleanup() end)

  it("each instance writes its members again when Redis comes back empty; changes made "
    .. "during the outage are counted then", function()
    local rport, rdir = free_port(), helper.tmpdir()
    local redis = start_redis(rport, rdir)
    local a, b = start_instance(rport), start_instance(rport)
    local k = client()
    k.open("m1", a)
    k.open("m2", b)
    k.open("m3", b)
    k.call("m1", { op = "join", ch = "rs", user = "u1" })
    k.call("m2", { op = "join", ch = "rs", user = "u2" })
    assert(helper.wait_until(function() return k.call("m1", { op = "count", ch = "rs" }).count == 2 end, 5))
    redis:signal "KILL" -- no persistence: it comes back empty
    assert.is_true(redis:wait(5))
    for _, srv in ipairs { a, b } do
      assert(helper.wait_until(function() return health(srv).status == "degraded" end, 10))
    end
    -- while it is down: each instance counts its own
    assert.are.equal(1, k.call("m1", { op = "count", ch = "rs" }).count)
    k.call("m3", { op = "join", ch = "rs", user = "u3" })
    assert.is_true(k.call("m1", { op = "leave", ch = "rs" }).left)
    redis = start_redis(rport, rdir)
    for _, srv in ipairs { a, b } do
      assert(helper.wait_until(function() return health(srv).status == "ok" end, 10))
    end
    local l
    assert(helper.wait_until(function()
      l = k.call("m1", { op = "list", ch = "rs" })
      return l.n == 2
    end, 5), "after the restart instance a lists " .. cjson.encode(l))
    assert.are.same({ "u2", "u3" }, { l.members[1].user, l.members[2].user })
    assert.are.equal(2, k.call("m1", { op = "count", ch = "rs" }).count)
    k.c:kill(0)
  end)
end)

describe("an instance that stops #integration", function()
  teardown(function() helper.cleanup() end)

  it("takes its members and its liveness key out of Redis; the others announce the leaves",
    function()
    local rport = free_port()
    start_redis(rport, helper.tmpdir())
    local a, b = start_instance(rport), start_instance(rport)
    local id = b:wait_log("cluster: instance (%x+)", 5)
    assert.truthy(id)
    local k = client()
    k.open("s", a)
    assert.is_true(k.call("s", { op = "sub", ch = "bye" }).ok)
    assert(helper.wait_until(function() return numsub(rport, "ews:c:bye") == 1 end, 5))
    k.open("m", b)
    k.call("m", { op = "join", ch = "bye", user = "gus" })
    assert(helper.wait_until(function() return k.call("s", { op = "count", ch = "bye" }).count == 1 end, 5))
    b:signal "TERM"
    assert.is_true(b:wait(10))
    -- gone from Redis as the process ended (not 5 s later)
    assert.are.equal("0", redis_cli(rport, "EXISTS", "ews:i:" .. id):match("%d+"))
    assert.is_nil(redis_cli(rport, "SMEMBERS", "ews:yi"):find(id, 1, true))
    assert.are.equal("0", redis_cli(rport, "EXISTS", "ews:yu:bye"):match("%d+"))
    assert(helper.wait_until(function()
      k.drain("s", 0.2)
      return k.announced("s", "bye", "leaves", "gus") >= 1
    end, 5), "no leave: " .. cjson.encode(k.events.s))
    k.drain("s", 0.3)
    assert.are.equal(1, k.announced("s", "bye", "leaves", "gus"))
    assert.are.equal(0, k.call("s", { op = "count", ch = "bye" }).count)
    k.c:kill(0)
  end)
end)
