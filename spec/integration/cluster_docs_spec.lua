-- Collaborative documents across a cluster (README: Collaborative editing, "In a
-- cluster"; Running a cluster, "What crosses instances: documents"): a real
-- redis-server on a free port (appendonly yes, appendfsync always) and three
-- instances of examples/collab/app.lua with --workers 2 each. ot.js's client state
-- machine under Node (tests/clients/collab_fuzz.js --urls: editors spread over the
-- instances, every reconnect rejoining on the next instance, lost acks resent)
-- converges on one text on every instance, equal to the Redis log replayed from the
-- empty document, each revision acknowledged once; a resend after a lost ack on
-- another instance is committed once; a rejoin on another instance gets only what it
-- missed; while Redis is down edits are answered "unavailable" and nothing is
-- acknowledged, and they go on once it is back; kill -9 of an instance in the middle
-- of the typing and kill -9 + restart of Redis keep every acknowledged operation;
-- snapshots and the log's trimming with small limits. Scripted checks use
-- tests/clients/app_client.py.
local helper = require "spec.helper"
local cjson = require "cjson"
package.path = helper.ROOT .. "/lua/?.lua;" .. package.path
local ot = require "edgews.ot"
local collab = require "spec.collab_helper"

local APP = helper.ROOT .. "/examples/collab/app.lua"

local rh = require "spec.redis_helper"
local free_port, redis_cli, start_redis, health = rh.free_port, rh.redis_cli, rh.start_redis, rh.health

local function start_instance(rport, env)
  local e = { COLLAB_DATA_DIR = "" }
  for k, v in pairs(env or {}) do e[k] = v end
  local srv = helper.start_server { app = APP, workers = 2, env = e,
    args = { "--redis", ("redis://127.0.0.1:%d/0"):format(rport), "--drain-timeout", "0.5", "--no-watch" } }
  assert(helper.wait_until(function() return health(srv).status == "ok" end, 10),
    "instance did not connect to Redis:\n" .. srv:log())
  return srv
end

-- The document's log as Redis keeps it: { rev, first, ops = { { rev, "client:user", seq, op } } }
local function redis_log(port, doc)
  local meta = redis_cli(port, "HMGET", "ews:dm:" .. doc, "rev", "first")
  local rev, first = meta:match("^(%d*)\n(%d*)\n")
  local out = { rev = tonumber(rev) or 0, first = tonumber(first) or 1, ops = {} }
  -- one element per line: the operations' JSON has no raw newline (it is escaped)
  local raw = redis_cli(port, "--no-raw", "LRANGE", "ews:dl:" .. doc, "0", "-1")
  for line in raw:gmatch("[^\n]+") do
    local q = line:match('^%s*%d+%) "(.*)"$') or line:match('^"(.*)"$')
    if q then
      -- redis-cli quotes like C: \" \\ \n \xHH
      local parts, i = {}, 1
      while i <= #q do
        local ch = q:sub(i, i)
        if ch ~= "\\" then parts[#parts + 1] = ch; i = i + 1
        elseif q:sub(i + 1, i + 1) == "x" then
          parts[#parts + 1] = string.char(tonumber(q:sub(i + 2, i + 3), 16)); i = i + 4
        else
          local e = q:sub(i + 1, i + 1)
          parts[#parts + 1] = ({ n = "\n", r = "\r", t = "\t", a = "\a", b = "\b" })[e] or e
          i = i + 2
        end
      end
      local s = table.concat(parts)
      local r, seq, kl, p = s:match("^(%d+) (%d+) (%d+):()")
      kl = tonumber(kl)
      out.ops[#out.ops + 1] = { tonumber(r), s:sub(p, p + kl - 1), tonumber(seq), cjson.decode(s:sub(p + kl)) }
    end
  end
  return out
end

local function replay(log)
  assert.are.equal(1, log.first, "the log starts at revision 1")
  local text = collab.replay(log)
  assert.are.equal(log.rev, #log.ops)
  return text
end

local assert_acks_stored, check_converged, fuzz = collab.assert_acks_stored, collab.check_converged, collab.fuzz

describe("examples/collab across a cluster over Redis #integration #collab #cluster", function()
  local rport, rdir, redis, inst, urls
  setup(function()
    helper.require_node_ws()
    rport, rdir = free_port(), helper.tmpdir()
    redis = start_redis(rport, rdir)
    inst, urls = {}, {}
    for i = 1, 3 do
      inst[i] = start_instance(rport)
      urls[i] = inst[i]:url "/collab"
    end
  end)
  teardown(function() helper.cleanup() end)

  it("ot.js editors spread over 3 instances converge; the text is the Redis log replayed", function()
    local res, rc, out, err = helper.run(fuzz(urls, "fuzz", { "--clients", "9", "--ops", "40", "--seed", "7",
      "--drop", "0.08", "--timeout", "60" }), 90)
    assert(rc == 0, helper.describe(res, rc, out, err))
    check_converged(res)
    assert.are.same({ 0, 1, 2 }, res.observed) -- every instance serves the same text and revision
    local seen, workers = {}, {}
    for _, c in ipairs(res.clients) do
      for _, u in ipairs(c.urls) do seen[u] = true end
      for _, w in ipairs(c.workers) do workers[w] = true end
    end
    assert.is_true(seen[0] and seen[1] and seen[2], "the editors were not on every instance")
    assert.is_true(workers[0] and workers[1], "the editors were not on both workers")
    local reconnects, resends = 0, 0
    for _, c in ipairs(res.clients) do reconnects, resends = reconnects + c.reconnects, resends + c.resends end
    assert.is_true(reconnects > 0, "no editor rejoined on another instance")
    assert.is_true(resends > 0, "no operation was resent")
    assert.is_true(res.server.revision >= 9, "revision " .. tostring(res.server.revision))
    local log = redis_log(rport, "fuzz")
    assert.are.equal(res.server.revision, log.rev)
    assert.are.equal(res.server.text, replay(log))
    assert.are.equal(log.rev, assert_acks_stored(res, log)) -- each revision acknowledged once
    for i = 1, 3 do assert.is_nil(inst[i]:log():find("ERROR", 1, true), inst[i]:log()) end
  end)

  describe("scripted", function()
    local c
    setup(function() c = helper.app_client() end)

    local S = collab.session {
      client = function() return c end,
      url = function(name, i) return urls[i] .. "?name=" .. name end,
    }
    local function open(i, name) return S.open(name, i) end
    local function text_of(i, doc) return S.text_of(doc, i) end
    local send, until_msg, typed, quiet = S.send, S.until_msg, S.typed, S.quiet
    local join, edit, answer, acked = S.join, S.edit, S.answer, S.acked

    it("an op committed on one instance reaches the editors of the others; a rejoin on another "
      .. "instance gets only what it missed", function()
      local a, b, cc = open(1, "ada"), open(2, "bob"), open(3, "cat")
      join(a, "r1", { client = "ca" }); join(b, "r1", { client = "cb" }); join(cc, "r1", { client = "cc" })
      edit(a, "r1", 0, { "héllo 😀" }, 1)
      assert.are.same({ type = "ack", doc = "r1", revision = 1, seq = 1 }, acked(a, "r1"))
      for _, id in ipairs { b, cc } do
        local op = until_msg(id, typed("op", "r1"))
        assert.are.same({ 1, { "héllo 😀" }, "ca", "ada", 1 }, { op.revision, op.operation, op.client, op.user, op.seq })
      end
      -- concurrent edits on two instances, both made on revision 1: transformed, both committed
      edit(b, "r1", 1, { 8, " bob" }, 1)
      edit(cc, "r1", 1, { 8, " cat" }, 1)
      local rb, rc = acked(b, "r1").revision, acked(cc, "r1").revision
      assert.are.same({ 2, 3 }, { math.min(rb, rc), math.max(rb, rc) })
      local t = text_of(1, "r1")
      assert.is_true(t == "héllo 😀 bob cat" or t == "héllo 😀 cat bob", t)
      for i = 1, 3 do assert.are.same({ t, 3 }, { text_of(i, "r1") }) end
      -- ada (instance 1) leaves at revision 1 and comes back on instance 3
      c:call { op = "close", id = a }
      edit(b, "r1", 3, { ot.utf16_length(t), "!" }, 2)
      assert.are.equal(4, acked(b, "r1").revision)
      local a2 = open(3, "ada")
      local j = join(a2, "r1", { client = "ca", revision = 1 })
      assert.is_nil(j.text)
      assert.are.equal(4, j.revision)
      local revs = {}
      for i, o in ipairs(j.ops) do revs[i] = o.revision end
      assert.are.same({ 2, 3, 4 }, revs)
      assert.are.equal(1, j.seq)
    end)

    it("a cursor reaches the editors of every instance, moved to their revision; its leave too", function()
      local a, b, cc = open(1, "ada"), open(2, "bob"), open(3, "cat")
      join(a, "cur", { client = "ca" }); join(b, "cur", { client = "cb" }); join(cc, "cur", { client = "cc" })
      edit(a, "cur", 0, { "hello" }, 1)
      assert.are.equal(1, acked(a, "cur").revision)
      until_msg(b, typed("op", "cur")); until_msg(cc, typed("op", "cur"))
      send(cc, { type = "cursor", doc = "cur", revision = 1, selection = { ranges = { { anchor = 1, head = 3 } } } })
      for _, id in ipairs { a, b } do
        local m = until_msg(id, typed("cursor", "cur"))
        assert.are.same({ 1, "cc", "cat", { ranges = { { anchor = 1, head = 3 } } } },
          { m.revision, m.client, m.user, m.selection })
      end
      -- an insert before it on instance 1 moves it; a joiner on instance 2 sees it moved
      edit(a, "cur", 1, { "> ", 5 }, 2)
      assert.are.equal(2, acked(a, "cur").revision)
      until_msg(b, typed("op", "cur"))
      local d = open(2, "dan")
      local j = join(d, "cur", { client = "cd" })
      assert.are.same({ { client = "cc", user = "cat", selection = { ranges = { { anchor = 3, head = 5 } } } } },
        j.cursors)
      send(cc, { type = "leave", doc = "cur" })
      for _, id in ipairs { a, b, d } do
        local m = until_msg(id, typed("cursor", "cur"))
        assert.are.same({ "cc", cjson.null }, { m.client, m.selection })
      end
    end)

    it("a resend after a lost ack, on another instance, is committed once", function()
      local a = open(1, "ann")
      join(a, "dup", { client = "cx" })
      edit(a, "dup", 0, { "one" }, 1)
      assert.are.equal(1, acked(a, "dup").revision)
      c:call { op = "drop", id = a } -- as if the ack had been lost
      for i = 2, 3 do
        local a2 = open(i, "ann")
        local j = join(a2, "dup", { client = "cx", revision = 0 })
        assert.are.same({ 1, "cx", 1 }, { j.ops[1].revision, j.ops[1].client, j.ops[1].seq })
        assert.are.equal(1, j.seq)
        edit(a2, "dup", 0, { "one" }, 1) -- resent anyway
        quiet(a2, { ack = true, error = true, op = true })
      end
      -- a resend that reaches an instance before the revision it duplicates: Redis
      -- recognises the client's seq
      local b = open(2, "ben")
      join(b, "dup", { client = "cy" })
      edit(b, "dup", 1, { 3, "!" }, 1)
      assert.are.equal(2, acked(b, "dup").revision)
      local b3 = open(3, "ben")
      join(b3, "dup", { client = "cy", revision = 1 })
      edit(b3, "dup", 1, { 3, "!" }, 1)
      quiet(b3, { error = true })
      assert.are.same({ "one!", 2 }, { text_of(1, "dup") })
      -- two connections of one client on two instances send the same op at once (a
      -- resend racing the original): committed once, both acknowledged
      local c1, c2 = open(1, "cy"), open(3, "cy")
      join(c1, "dup", { client = "cz" }); join(c2, "dup", { client = "cz" })
      c:call { op = "send", id = c1, data = cjson.encode { type = "edit", doc = "dup", revision = 2,
        operation = { 4, "?" }, seq = 1 } }
      c:call { op = "send", id = c2, data = cjson.encode { type = "edit", doc = "dup", revision = 2,
        operation = { 4, "?" }, seq = 1 } }
      assert.are.equal(3, acked(c1, "dup").revision)
      assert.are.equal(3, acked(c2, "dup").revision)
      quiet(c1, { ack = true, op = true, error = true }); quiet(c2, { ack = true, op = true, error = true })
      assert.are.same({ "one!?", 3 }, { text_of(2, "dup") })
      local log = redis_log(rport, "dup")
      assert.are.equal(3, #log.ops)
      assert.are.equal("1:2", (redis_cli(rport, "HGET", "ews:dk:dup", "cy:ben"):gsub("%s+$", "")))
    end)

    it("a copy ahead of what Redis has (Redis lost the document) is dropped: the edit is not "
      .. "acknowledged, the instance's editors are closed and rejoin on what Redis has", function()
      local a, b = open(1, "fay"), open(1, "gus")
      join(a, "lost", { client = "cf" }); join(b, "lost", { client = "cg" })
      edit(a, "lost", 0, { "abc" }, 1)
      assert.are.equal(1, acked(a, "lost").revision)
      until_msg(b, typed("op", "lost"))
      redis_cli(rport, "DEL", "ews:dm:lost", "ews:dl:lost", "ews:dk:lost") -- as a Redis without persistence
      edit(a, "lost", 1, { 3, "d" }, 2)
      -- refused (storage_failed), and every session of the document on the instance is
      -- closed with 1011: the author's too (the refusal may not reach it first)
      for _, id in ipairs { a, b } do
        local deadline, r = helper.now() + 5, nil
        repeat r = c:call { op = "recv", id = id, n = 1000, timeout = 0.3 } until r.closed or helper.now() > deadline
        assert.are.same({ true, 1011 }, { r.closed, r.code })
        for _, msg in ipairs(r.json or {}) do
          assert.is_true(msg.type ~= "ack" and (msg.type ~= "error" or msg.error == "storage_failed"), cjson.encode(msg))
        end
      end
      local b2 = open(1, "gus")
      local j = join(b2, "lost", { client = "cg", revision = 1 })
      assert.are.same({ "", 0, true }, { j.text, j.revision, j.reload })
      edit(b2, "lost", 0, { "new" }, 1)
      assert.are.equal(1, acked(b2, "lost").revision)
      assert.are.same({ "new", 1 }, { text_of(2, "lost") })
    end)

    it("while Redis is down an edit is answered unavailable and nothing is acknowledged; "
      .. "after it returns the editors go on", function()
      local a, b = open(1, "dee"), open(2, "eli")
      join(a, "down", { client = "cd" }); join(b, "down", { client = "ce" })
      edit(a, "down", 0, { "x" }, 1)
      assert.are.equal(1, acked(a, "down").revision)
      until_msg(b, typed("op", "down"))
      redis:signal "KILL"
      assert.is_true(redis:wait(5))
      assert(helper.wait_until(function() return health(inst[1]).status == "degraded" end, 10))
      edit(a, "down", 1, { 1, "y" }, 2)
      local m = answer(a, "down")
      assert.are.same({ "error", "unavailable", 2 }, { m.type, m.error, m.seq })
      assert.truthy(m.message:find("Redis", 1, true), m.message)
      quiet(b, { op = true })
      -- a join (of a loaded document, and of one no instance has) is refused too
      for _, doc in ipairs { "down", "down-new" } do
        local j = open(2, "hal")
        send(j, { type = "join", doc = doc })
        local e = until_msg(j, function(x) return x.type == "joined" or x.type == "error" end)
        assert.are.same({ "error", "unavailable" }, { e.type, e.error })
      end
      redis = start_redis(rport, rdir)
      for i = 1, 3 do
        assert(helper.wait_until(function() return health(inst[i]).status == "ok" end, 10))
      end
      edit(a, "down", 1, { 1, "y" }, 2) -- the resend
      assert.are.equal(2, acked(a, "down").revision)
      assert.are.equal(2, until_msg(b, typed("op", "down")).revision)
      edit(b, "down", 2, { 2, "z" }, 1)
      assert.are.equal(3, acked(b, "down").revision)
      assert.are.same({ "xyz", 3 }, { text_of(3, "down") })
      local log = redis_log(rport, "down")
      assert.are.equal("xyz", replay(log))
    end)
  end)

  it("kill -9 of an instance mid-typing and kill -9 + restart of Redis keep every acknowledged op", function()
    local p = helper.spawn(fuzz(urls, "kill", { "--clients", "9", "--ops", "60", "--seed", "23",
      "--drop", "0.03", "--progress", "20", "--timeout", "90" }))
    local line
    repeat line = p:read_line(60) until line == nil or line == "ACKS 40"
    assert.are.equal("ACKS 40", line, p:stderr())
    assert.is_true(inst[3]:signal "KILL")
    assert.is_true(inst[3]:wait(5))
    repeat line = p:read_line(60) until line == nil or line == "ACKS 80"
    assert.are.equal("ACKS 80", line, p:stderr())
    assert.is_true(redis:signal "KILL")
    assert.is_true(redis:wait(5))
    redis = start_redis(rport, rdir)
    local done, out = p:finish(90)
    assert.is_true(done, "the clients did not finish: " .. out .. p:stderr())
    local res = cjson.decode(out:match("[^\n]*{[^\n]*}%s*$"))
    check_converged(res)
    assert.are.same({ 0, 1 }, res.observed)
    local log = redis_log(rport, "kill")
    assert.are.equal(res.server.revision, log.rev)
    assert.are.equal(res.server.text, replay(log))
    assert.are.equal(log.rev, assert_acks_stored(res, log))
    assert.is_true(log.rev > 80)
  end)
end)

describe("documents in Redis: snapshots and the log's trimming #integration #collab #cluster", function()
  teardown(function() helper.cleanup() end)

  it("keeps the last `history` operations and a snapshot (also with --data); a new instance loads the document", function()
    local rport = free_port()
    start_redis(rport, helper.tmpdir())
    local env = { COLLAB_HISTORY = "10", COLLAB_MAX_LAG = "10", COLLAB_SNAPSHOT_EVERY = "7" }
    -- (the first instance has a data directory: documents still go to Redis)
    local s1 = start_instance(rport, { COLLAB_HISTORY = "10", COLLAB_MAX_LAG = "10", COLLAB_SNAPSHOT_EVERY = "7",
                                       COLLAB_DATA_DIR = helper.tmpdir() })
    local c = helper.app_client()
    local function msg(id, t)
      local deadline = helper.now() + 5
      while helper.now() < deadline do
        local r = c:call { op = "recv", id = id, n = 1, timeout = 0.3 }
        for _, m in ipairs(r.json or {}) do
          if m.type == "error" then error(cjson.encode(m), 2) end
          if m.type == t then return m end
        end
      end
      error("no " .. t, 2)
    end
    c:call { op = "open", id = "w", url = s1:url "/collab?name=wes" }
    c:call { op = "send", id = "w", data = cjson.encode { type = "join", doc = "trim", client = "cw" } }
    msg("w", "joined")
    local text = ""
    for i = 1, 40 do
      local piece = tostring(i % 10)
      c:call { op = "send", id = "w", data = cjson.encode { type = "edit", doc = "trim", revision = i - 1,
        operation = i == 1 and { piece } or { #text, piece }, seq = i } }
      assert.are.equal(i, msg("w", "ack").revision)
      text = text .. piece
    end
    -- snapshot at 35 (every 7); the log keeps what is after min(35, 40 - 10)
    local meta = redis_cli(rport, "HMGET", "ews:dm:trim", "rev", "first", "srev")
    assert.are.same({ "40", "31", "35" }, { meta:match("^(%d+)\n(%d+)\n(%d+)") })
    assert.are.equal("10", (redis_cli(rport, "LLEN", "ews:dl:trim"):gsub("%s+$", "")))
    local s2 = start_instance(rport, env)
    c:call { op = "open", id = "r", url = s2:url "/collab?name=rae" }
    c:call { op = "send", id = "r", data = cjson.encode { type = "join", doc = "trim" } }
    local j = msg("r", "joined")
    assert.are.same({ text, 40 }, { j.text, j.revision })
    -- a rejoin within the history gets the ops; one older than the log reloads
    c:call { op = "open", id = "r2", url = s2:url "/collab?name=rae" }
    c:call { op = "send", id = "r2", data = cjson.encode { type = "join", doc = "trim", revision = 33 } }
    j = msg("r2", "joined")
    assert.are.equal(7, #j.ops)
    c:call { op = "open", id = "r3", url = s2:url "/collab?name=rae" }
    c:call { op = "send", id = "r3", data = cjson.encode { type = "join", doc = "trim", revision = 5 } }
    j = msg("r3", "joined")
    assert.are.same({ text, true }, { j.text, j.reload })
    c:kill(0)
  end)
end)

describe("documents in Redis: two instances typing into one document at full speed #integration #collab #cluster", function()
  teardown(function() helper.cleanup() end)

  -- edgews-bench collab (bench/collab.c) on each instance, the same document: every
  -- editor types as fast as its acks come back and checks that every revision it gets
  -- is the next one. An instance whose copy is always a little behind (it applies the
  -- other's revisions before it retries) must not be starved by one that commits back
  -- to back: no edit refused, both instances commit.
  it("no edit is refused and both instances commit", function()
    local rport = free_port()
    start_redis(rport, helper.tmpdir())
    local env = { COLLAB_OPS_RATE = "100000000", COLLAB_OPS_BURST = "100000000" }
    local s = { start_instance(rport, env), start_instance(rport, env) }
    local gens = {}
    for i = 1, 2 do
      gens[i] = helper.spawn({ helper.ROOT .. "/build/edgews-bench", "collab", "--url", s[i]:url "/collab",
        "-c", "4", "--docs", "1", "--duration", "2", "--warmup", "0.3", "--json" },
        { env = { EDGEWS_BENCH_COLLAB_RUN = "7", EDGEWS_BENCH_COLLAB_FIRST = tostring(i * 100) } })
    end
    for i = 1, 2 do
      local done, out = gens[i]:finish(60)
      assert.is_true(done, "generator " .. i .. " did not finish")
      local res = cjson.decode(out:match("[^\n]*{[^\n]*}%s*$") or "{}")
      assert.are.equal(0, res.errors, "generator " .. i .. ": " .. out .. gens[i]:stderr())
      assert.is_true((res.ops or 0) > 0, "instance " .. i .. " committed nothing: " .. out .. gens[i]:stderr())
    end
    for i = 1, 2 do assert.is_nil(s[i]:log():find("ERROR", 1, true), s[i]:log()) end
  end)
end)

-- README: Running a cluster, "What crosses instances: documents". An instance holds
-- one SUBSCRIBE of ews:d:<doc> while it has the document loaded (editors on any of
-- its workers) and lets it go when it unloads it; no pattern subscription. A
-- revision committed elsewhere while the SUBSCRIBE is on its way is read from the
-- log once it takes effect (EDGEWS_TEST_DOC_SUBSCRIBE_DELAY_MS holds the SUBSCRIBE
-- back on the third instance so that edits land inside that window).
describe("documents in Redis: one subscription per loaded document #integration #collab #cluster", function()
  local rport, inst, c
  setup(function()
    rport = free_port()
    start_redis(rport, helper.tmpdir())
    inst = {
      start_instance(rport, { COLLAB_UNLOAD_AFTER = "1" }),
      start_instance(rport, { COLLAB_UNLOAD_AFTER = "1" }),
      start_instance(rport, { COLLAB_UNLOAD_AFTER = "1", EDGEWS_TEST_DOC_SUBSCRIBE_DELAY_MS = "3000" }),
    }
    c = helper.app_client()
  end)
  teardown(function()
    if c then c:kill(0) end
    helper.cleanup()
  end)

  local function numsub(chan)
    return tonumber(redis_cli(rport, "PUBSUB", "NUMSUB", chan):match("\n(%d+)")) or 0
  end
  local function numpat() return tonumber(redis_cli(rport, "PUBSUB", "NUMPAT"):match("%d+")) end
  -- every message until pred matches one (errors fail the test)
  local S = collab.session {
    client = function() return c end,
    url = function(name, i) return inst[i]:url("/collab?name=" .. name) end,
    fail_on_error = true,
  }
  local function open(i, name) return S.open(name, i) end
  local send, until_msg = S.send, S.until_msg
  local function join(id, doc, client) return S.join(id, doc, { client = client }) end
  local function edit_acked(id, doc, rev, op, seq)
    S.edit(id, doc, rev, op, seq)
    return S.acked(id, doc).revision
  end

  it("no pattern subscription; an instance subscribes to a document only while it has it loaded", function()
    assert.are.equal(0, numpat())
    local a = open(1, "ada")
    join(a, "nar", "ca")
    assert(helper.wait_until(function() return numsub("ews:d:nar") == 1 end, 5),
      "ews:d:nar: " .. redis_cli(rport, "PUBSUB", "NUMSUB", "ews:d:nar"))
    -- a document nobody edits: no instance receives its channel
    assert.are.equal("0", redis_cli(rport, "PUBLISH", "ews:d:nobody-edits", "x"):match("%d+"))
    local b = open(2, "bob")
    join(b, "nar", "cb")
    assert(helper.wait_until(function() return numsub("ews:d:nar") == 2 end, 5))
    assert.are.equal(1, edit_acked(a, "nar", 0, { "hi" }, 1))
    local op = until_msg(b, function(m) return m.type == "op" end)
    assert.are.same({ 1, { "hi" } }, { op.revision, op.operation })
    -- a cursor crosses on the same channel
    send(a, { type = "cursor", doc = "nar", revision = 1, selection = { ranges = { { anchor = 1, head = 2 } } } })
    local cur = until_msg(b, function(m) return m.type == "cursor" end)
    assert.are.same({ "ca", 1, 2 }, { cur.client, cur.selection.ranges[1].anchor, cur.selection.ranges[1].head })
    -- bob leaves: instance 2 unloads the document (unload_after 1 s) and unsubscribes
    c:call { op = "close", id = b }
    assert(helper.wait_until(function() return numsub("ews:d:nar") == 1 end, 6),
      "instance 2 kept ews:d:nar: " .. redis_cli(rport, "PUBSUB", "NUMSUB", "ews:d:nar"))
    -- ... and loads it again (the next revision reaches the new editor)
    local b2 = open(2, "bob")
    local j = join(b2, "nar", "cb")
    assert.are.same({ "hi", 1 }, { j.text, j.revision })
    assert(helper.wait_until(function() return numsub("ews:d:nar") == 2 end, 5))
    assert.are.equal(2, edit_acked(a, "nar", 1, { 2, "!" }, 2))
    op = until_msg(b2, function(m) return m.type == "op" end)
    assert.are.equal(2, op.revision)
    assert.are.equal(0, numpat())
    for i = 1, 3 do assert.is_nil(inst[i]:log():find("ERROR", 1, true), inst[i]:log()) end
  end)

  it("revisions committed elsewhere before the new instance's SUBSCRIBE takes effect reach its "
    .. "editors exactly once", function()
    local a = open(1, "ada")
    join(a, "win", "ca")
    assert.are.equal(1, edit_acked(a, "win", 0, { "x" }, 1))
    local e = open(3, "eve") -- instance 3 holds its SUBSCRIBE back 3 s
    local j = join(e, "win", "ce")
    assert.are.same({ "x", 1 }, { j.text, j.revision })
    for rev = 2, 4 do
      assert.are.equal(rev, edit_acked(a, "win", rev - 1, { rev - 1, tostring(rev) }, rev))
    end
    -- the edits were inside the window: instance 3 is not subscribed yet
    assert.are.equal(1, numsub("ews:d:win"))
    local _, seen = until_msg(e, function(m) return m.type == "op" and m.revision == 4 end, 10)
    assert.are.equal(2, numsub("ews:d:win"))
    -- one more after the window, then nothing else
    assert.are.equal(5, edit_acked(a, "win", 4, { 4, "5" }, 5))
    local _, more = until_msg(e, function(m) return m.type == "op" and m.revision == 5 end)
    local r = c:call { op = "recv", id = e, n = 100, timeout = 0.5 }
    local revs = {}
    for _, list in ipairs { seen, more, r.json or {} } do
      for _, m in ipairs(list) do
        if m.type == "op" then revs[#revs + 1] = m.revision end
      end
    end
    assert.are.same({ 2, 3, 4, 5 }, revs)
    local t = join(open(3, "rae"), "win")
    assert.are.same({ "x2345", 5 }, { t.text, t.revision })
    assert.is_nil(inst[3]:log():find("ERROR", 1, true), inst[3]:log())
  end)
end)
