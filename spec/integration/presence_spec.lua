-- Presence (edgews.presence) with --workers 2 and real clients
-- (tests/clients/presence_client.py against spec/apps/presence_app.lua): a user
-- with connections on both workers, events to subscribers on both workers,
-- batching of 1,000 joins, heartbeat timeout of a silent client, status expiry,
-- get/list (cursor pages)/count, and misuse raising.
local helper = require "spec.helper"
local cjson = require "cjson"

describe("presence #integration", function()
  local srv, url, cl
  setup(function()
    srv = helper.start_server { app = helper.app "presence_app.lua", workers = 2 }
    url = srv:url "/p"
    cl = helper.spawn({ helper.PYTHON, helper.CLIENTS .. "/presence_client.py" }, { stdin = "pipe" })
  end)
  teardown(function() helper.cleanup() end)

  local function cmd(t)
    cl:write(cjson.encode(t) .. "\n")
    local res, err = cl:read_json(30)
    assert(res, "presence_client: no answer (" .. tostring(err) .. "): " .. cl:stderr():sub(1, 2000))
    assert(res.ok == true, "presence_client " .. t.op .. ": " .. tostring(res.error))
    return res
  end
  local function call(id, msg) return cmd { op = "call", id = id, msg = msg }.reply end
  local function events(id, min, settle, timeout)
    return cmd { op = "events", id = id, min = min or 0, settle = settle or 0, timeout = timeout or 5 }.events
  end
  local function list(x) -- cjson decodes an empty Lua table as {}
    return (type(x) == "table" and next(x) == nil) and {} or x
  end
  local function count(ch) return call("s0", { op = "count", ch = ch }).count end

  it("opens subscribers on both workers", function()
    assert.are.equal(0, cmd({ op = "open_on", id = "s0", url = url, worker = 0 }).worker)
    assert.are.equal(1, cmd({ op = "open_on", id = "s1", url = url, worker = 1 }).worker)
  end)

  it("status and meta changes of present members arrive as updates on both workers", function()
    for _, s in ipairs { "s0", "s1" } do call(s, { op = "sub", ch = "upd" }) end
    cmd { op = "open_on", id = "u0", url = url, worker = 0 }
    cmd { op = "open_on", id = "u1", url = url, worker = 1 }
    call("u0", { op = "join", ch = "upd", user = "uma", status = "online" })
    call("u1", { op = "join", ch = "upd", user = "vic" })
    for _, s in ipairs { "s0", "s1" } do events(s, 1, 0.3) end
    call("u0", { op = "join", ch = "upd", user = "uma", status = "away", meta = { mood = "tea" } })
    call("u1", { op = "set", user = "vic", status = "busy" }) -- vic shows the global status
    for _, s in ipairs { "s0", "s1" } do
      local ups = {}
      for _, e in ipairs(events(s, 1, 0.4)) do
        assert.are.same({}, list(e.joins))
        assert.are.same({}, list(e.leaves))
        for _, u in ipairs(e.updates) do ups[u.user] = { u.status, u.meta } end
      end
      assert.are.same({ uma = { "away", { mood = "tea" } }, vic = { "busy", {} } }, ups)
    end
    call("u1", { op = "set", user = "vic", status = cjson.null })
    cmd { op = "close", id = "u0" }
    cmd { op = "close", id = "u1" }
    for _, s in ipairs { "s0", "s1" } do events(s, 1, 0.6) end -- drain them all
  end)

  it("a user with connections on both workers joins once and leaves after the last", function()
    for _, s in ipairs { "s0", "s1" } do assert.is_true(call(s, { op = "sub", ch = "room" }).ok) end
    cmd { op = "open_on", id = "a0", url = url, worker = 0 }
    cmd { op = "open_on", id = "a1", url = url, worker = 1 }
    local r = call("a0", { op = "join", ch = "room", user = "alice", meta = { name = "Alice" } })
    assert.are.same({ reply = "join", ok = true, new = true }, r)
    r = call("a1", { op = "join", ch = "room", user = "alice", status = "busy" })
    assert.are.same({ reply = "join", ok = true, new = false }, r)
    for _, s in ipairs { "s0", "s1" } do
      local ev = events(s, 1, 0.3)
      ev[1].leaves = list(ev[1].leaves)
      -- the second connection is not a join; its status wins when both land in one
      -- batch, else the join carries "online" and the next batch an update to "busy"
      local w = { { type = "presence", channel = "room", leaves = {},
                    joins = { { user = "alice", status = "busy", meta = { name = "Alice" } } } } }
      if #ev == 2 then
        w[1].joins[1].status = "online"
        w[2] = { type = "presence", channel = "room", joins = {}, leaves = {},
                 updates = { { user = "alice", status = "busy", meta = { name = "Alice" } } } }
        ev[2].joins, ev[2].leaves = list(ev[2].joins), list(ev[2].leaves)
      end
      assert.are.same(w, ev)
    end
    assert.are.equal(1, count("room"))
    local l = call("s0", { op = "list", ch = "room" })
    assert.are.same({ { user = "alice", status = "busy", meta = { name = "Alice" }, connections = 2 } },
      l.members)
    assert.are.equal(cjson.null, l.cursor)
    -- one of two connections closes: still present, no event
    cmd { op = "close", id = "a0" }
    assert.are.same({}, events("s0", 0, 0.4))
    assert.are.same({}, events("s1", 0, 0))
    assert.are.equal(1, count("room"))
    assert.are.equal(1, call("s1", { op = "list", ch = "room" }).members[1].connections)
    -- the last one closes: one leave on both workers
    cmd { op = "close", id = "a1" }
    for _, s in ipairs { "s0", "s1" } do
      local ev = events(s, 1, 0.3)
      assert.are.equal(1, #ev)
      assert.are.same({ "alice" }, ev[1].leaves)
      assert.are.same({}, list(ev[1].joins))
    end
    assert.are.equal(0, count("room"))
    -- explicit leave, and leave of a socket that is not in the channel
    cmd { op = "open", id = "b", url = url }
    assert.is_true(call("b", { op = "join", ch = "room2", user = "bob" }).ok)
    assert.are.same({ reply = "leave", ok = true, left = true }, call("b", { op = "leave", ch = "room2" }))
    assert.are.same({ reply = "leave", ok = false, left = "not joined" }, call("b", { op = "leave", ch = "room2" }))
    cmd { op = "close", id = "b" }
  end)

  it("batches 1,000 joins into few events per subscriber, with every user exactly once", function()
    for _, s in ipairs { "s0", "s1" } do assert.is_true(call(s, { op = "sub", ch = "crowd" }).ok) end
    local N = 1000
    local t0 = helper.now()
    local b = cmd { op = "bulk", url = url, prefix = "m", n = N, ch = "crowd" }
    assert.are.same({ 0, 1 }, b.workers)
    assert.are.equal(N, count("crowd"))
    local function union(ev, field)
      local seen, total = {}, 0
      for _, e in ipairs(ev) do
        assert.are.equal("crowd", e.channel)
        for _, j in ipairs(list(e[field])) do
          local u = field == "joins" and j.user or j
          seen[u] = true
          total = total + 1
        end
      end
      local n = 0
      for u in pairs(seen) do
        assert.is_truthy(u:match("^m%d+$"))
        n = n + 1
      end
      return n, total
    end
    local counts = {}
    for _, s in ipairs { "s0", "s1" } do
      local ev = events(s, 1, 0.5)
      local users, total = union(ev, "joins")
      assert.are.equal(N, users)
      assert.are.equal(N, total) -- no user announced twice
      assert.is_true(#ev <= 60, #ev .. " events for " .. N .. " joins")
      counts[#counts + 1] = #ev
    end
    cmd { op = "bulk_close", prefix = "m" }
    for _, s in ipairs { "s0", "s1" } do
      local ev = events(s, 1, 0.6)
      local users, total = union(ev, "leaves")
      assert.are.equal(N, users)
      assert.are.equal(N, total)
      assert.is_true(#ev <= 30, #ev .. " events for " .. N .. " leaves")
    end
    assert.are.equal(0, count("crowd"))
    print(("\n  1,000 joins in %.2f s: %d and %d events per subscriber"):format(helper.now() - t0,
      counts[1], counts[2]))
  end)

  it("a connection that stops answering leaves after heartbeat_timeout; a live one stays", function()
    assert.is_true(call("s1", { op = "sub", ch = "hb" }).ok)
    cmd { op = "open_on", id = "ghost", url = url, worker = 0 }
    cmd { op = "open_on", id = "live", url = url, worker = 1 }
    assert.is_true(call("ghost", { op = "join", ch = "hb", user = "ghost" }).ok)
    assert.is_true(call("live", { op = "join", ch = "hb", user = "live" }).ok)
    -- the two joins (one per worker) may come in one batch or two
    local joined, deadline = {}, helper.now() + 10
    while #joined < 2 and helper.now() < deadline do
      for _, e in ipairs(events("s1", 1, 0.3)) do
        for _, j in ipairs(list(e.joins)) do joined[#joined + 1] = j.user end
      end
    end
    table.sort(joined)
    assert.are.same({ "ghost", "live" }, joined)
    local t0 = helper.now()
    cmd { op = "mute", id = "ghost" } -- neither sends nor answers pings from now on
    local ev = events("s1", 1, 0, 4)
    local waited = helper.now() - t0
    assert.are.equal(1, #ev)
    assert.are.same({ "ghost" }, ev[1].leaves)
    -- silent since its last pong, at most heartbeat_interval (0.3 s) before the mute
    assert.is_true(waited >= 0.6 and waited < 2, "left after " .. waited .. " s")
    -- the live client never sends either, but answers the presence pings
    helper.sleep(1.2)
    assert.are.same({}, events("s1", 0, 0))
    assert.are.equal(1, count("hb"))
    assert.are.equal("live", call("s1", { op = "list", ch = "hb" }).members[1].user)
    cmd { op = "close", id = "live" }
  end)

  it("a status expires back to the default; get reports online and channels", function()
    cmd { op = "open", id = "sue", url = url }
    assert.is_true(call("sue", { op = "join", ch = "st", user = "sue" }).ok)
    assert.is_true(call("s0", { op = "set", user = "sue", status = "away", meta = { note = "lunch" },
                                expire = 0.6 }).ok)
    assert.is_true(call("s0", { op = "set", user = "zed", status = "dnd" }).ok) -- no connection
    local g = call("s1", { op = "get", users = { "sue", "zed", "nobody" } }).res
    assert.are.same({
      sue = { status = "away", meta = { note = "lunch" }, online = true, channels = { "st" } },
      zed = { status = "dnd", online = false },
      nobody = { status = "offline", online = false },
    }, g)
    -- a member without a status of its own shows the user's
    assert.are.equal("away", call("s1", { op = "list", ch = "st" }).members[1].status)
    helper.sleep(0.8)
    g = call("s0", { op = "get", users = { "sue", "zed" } }).res
    assert.are.same({ status = "online", online = true, channels = { "st" } }, g.sue)
    assert.are.same({ status = "dnd", online = false }, g.zed) -- default expiry is 300 s
    assert.are.equal("online", call("s1", { op = "list", ch = "st" }).members[1].status)
    cmd { op = "close", id = "sue" }
    assert.is_truthy(helper.wait_until(function()
      return call("s0", { op = "get", users = { "sue" } }).res.sue.status == "offline"
    end, 3))
    assert.are.same({ status = "offline", online = false }, call("s0", { op = "get", users = { "sue" } }).res.sue)
    assert.is_true(call("s0", { op = "set", user = "zed" }).ok) -- cleared
    assert.are.equal("offline", call("s0", { op = "get", users = { "zed" } }).res.zed.status)
  end)

  it("list pages with a stable cursor; count counts users on both workers", function()
    cmd { op = "bulk", url = url, prefix = "pg", n = 7, ch = "pages" }
    assert.are.equal(7, count("pages"))
    local users, cursor, pages = {}, nil, 0
    repeat
      local r = call("s1", { op = "list", ch = "pages", limit = 3, cursor = cursor })
      pages = pages + 1
      for _, m in ipairs(list(r.members)) do
        users[#users + 1] = m.user
        assert.are.equal(1, m.connections)
        assert.are.equal("online", m.status)
      end
      cursor = r.cursor ~= cjson.null and r.cursor or nil
    until not cursor or pages > 5
    assert.are.equal(3, pages)
    assert.are.same({ "pg0", "pg1", "pg2", "pg3", "pg4", "pg5", "pg6" }, users)
    local r = call("s1", { op = "list", ch = "pages", limit = 10, cursor = "pg4" })
    assert.are.equal(2, r.n)
    assert.are.equal(0, call("s1", { op = "list", ch = "nothing" }).n)
    cmd { op = "bulk_close", prefix = "pg" }
    assert.is_truthy(helper.wait_until(function() return count("pages") == 0 end, 3))
  end)

  it("an authenticated socket is its user, and online without joining anything", function()
    cmd { op = "open", id = "carl", url = srv:url "/pa?user=carl" }
    assert.are.same({ status = "online", online = true }, call("s0", { op = "get", users = { "carl" } }).res.carl)
    assert.are.same({ reply = "join", ok = true, new = true },
      call("carl", { op = "join", ch = "authroom", user = "not-carl" }))
    local m = call("s1", { op = "list", ch = "authroom" }).members
    assert.are.same({ { user = "carl", status = "online", meta = {}, connections = 1 } }, m)
    cmd { op = "close", id = "carl" }
    assert.is_truthy(helper.wait_until(function()
      return call("s0", { op = "get", users = { "carl" } }).res.carl.status == "offline"
    end, 3))
    assert.are.equal(0, count("authroom"))
  end)

  it("misuse raises a clear error", function()
    local e = call("s0", { op = "bad" }).error
    assert.is_truthy(e:find("presence.join: channel must be a non-empty string", 1, true), e)
  end)
end)
