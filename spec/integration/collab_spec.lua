-- The collaboration example (examples/collab/app.lua, edgews.docs) end to end on
-- --workers 2: ot.js's own client state machine under Node (tests/clients/
-- collab_fuzz.js, 8 editors typing random edits with random delays, dropping their
-- connections and resending what was not acknowledged) converging on one text that
-- equals the stored log replayed from the empty document; every acknowledged
-- operation surviving SIGTERM and SIGKILL; a resend after a lost ack committed once;
-- bad input answered with errors and never changing the document; the limits;
-- cursors and selections moved through concurrent edits; presence with name and
-- colour. Scripted checks use tests/clients/app_client.py.
local helper = require "spec.helper"
local cjson = require "cjson"
package.path = helper.ROOT .. "/lua/?.lua;" .. package.path
local ot = require "edgews.ot"
local collab = require "spec.collab_helper"

local APP = helper.ROOT .. "/examples/collab/app.lua"

local function start(o)
  o = o or {}
  local args = { "--drain-timeout", "0.5", "--no-watch" }
  if o.data then args[#args + 1] = "--data"; args[#args + 1] = o.data end
  if o.port then args[#args + 1] = "--listen"; args[#args + 1] = "127.0.0.1:" .. o.port end
  return helper.start_server { app = APP, workers = 2, args = args, env = o.env }
end

-- The document as stored (tests/clients/docs_log.py).
local function stored(dir, doc)
  local res, rc, out, err = helper.run({ helper.PYTHON, helper.CLIENTS .. "/docs_log.py", dir, doc }, 20)
  assert(rc == 0 and res.exists ~= nil, helper.describe(res, rc, out, err))
  return res
end

local replay, assert_acks_stored, check_converged = collab.replay, collab.assert_acks_stored, collab.check_converged

local function fuzz(srv, doc, extra) return collab.fuzz(srv:url "/collab", doc, extra) end

local function sum(clients, field)
  local n = 0
  for _, c in ipairs(clients) do n = n + c[field] end
  return n
end

describe("examples/collab: concurrent editors #integration #collab", function()
  setup(function() helper.require_node_ws() end)
  teardown(function() helper.cleanup() end)

  it("8 ot.js clients typing, dropping and resending converge; the text is the stored log replayed", function()
    local dir = helper.tmpdir()
    local srv = start { data = dir }
    local res, rc, out, err = helper.run(fuzz(srv, "fuzz", { "--clients", "8", "--ops", "50", "--seed", "11",
      "--drop", "0.08", "--timeout", "60" }), 90)
    assert(rc == 0, helper.describe(res, rc, out, err))
    check_converged(res)
    -- what the run went through
    local workers = {}
    for _, c in ipairs(res.clients) do for _, w in ipairs(c.workers) do workers[w] = true end end
    assert.is_true(workers[0] and workers[1], "the clients were not on both workers")
    assert.is_true(sum(res.clients, "reconnects") > 0, "no client reconnected")
    assert.is_true(sum(res.clients, "resends") > 0, "no operation was resent")
    -- (each client commits at least its first edit; how many of its later edits ot.js
    -- composes into one while it waits for an ack depends on the machine's speed)
    assert.is_true(res.server.revision >= 8, "revision " .. tostring(res.server.revision))
    assert.are.equal(0, select(2, srv:stop()))
    local log = stored(dir, "fuzz")
    assert.are.equal(res.server.revision, log.rev)
    assert.are.equal(res.server.text, replay(log))
    assert.are.equal(log.rev, assert_acks_stored(res, log)) -- each revision acknowledged once
    assert.is_nil(srv:log():find("ERROR", 1, true), srv:log())
  end)

  it("converge in memory too (no --data)", function()
    local srv = start { env = { COLLAB_DATA_DIR = "" } }
    local res, rc, out, err = helper.run(fuzz(srv, "mem", { "--clients", "8", "--ops", "30", "--seed", "5",
      "--drop", "0.08" }), 90)
    assert(rc == 0, helper.describe(res, rc, out, err))
    check_converged(res)
    assert.is_true(res.server.revision >= 8, "revision " .. tostring(res.server.revision)) -- (see above)
    assert.is_nil(srv:log():find("data store", 1, true), srv:log())
  end)

  it("every acknowledged operation survives SIGKILL in the middle of the typing", function()
    local dir = helper.tmpdir()
    local srv = start { data = dir }
    local port = srv.port
    local p = helper.spawn(fuzz(srv, "kill", { "--clients", "8", "--ops", "60", "--seed", "23",
      "--drop", "0.03", "--progress", "40", "--timeout", "90" }))
    -- kill -9 once 120 operations have been acknowledged, while they keep typing
    local line
    repeat line = p:read_line(60) until line == nil or line == "ACKS 120"
    assert.are.equal("ACKS 120", line, p:stderr())
    assert.is_true(srv:signal "KILL")
    srv:wait(5)
    srv = start { data = dir, port = port } -- the clients reconnect to the same port
    local done, out = p:finish(90)
    assert.is_true(done, "the clients did not finish: " .. out .. p:stderr())
    local res = cjson.decode(out:match("[^\n]*{[^\n]*}%s*$"))
    check_converged(res)
    assert.are.equal(0, select(2, srv:stop()))
    local log = stored(dir, "kill")
    assert.are.equal(res.server.text, replay(log))
    assert.are.equal(log.rev, assert_acks_stored(res, log))
    assert.is_true(log.rev > 120)
  end)
end)

describe("examples/collab: protocol #integration #collab", function()
  local srv, c, dir
  setup(function()
    dir = helper.tmpdir()
    srv = start { data = dir }
    c = helper.app_client()
  end)
  teardown(function() helper.cleanup() end)

  local S = collab.session {
    client = function() return c end,
    url = function(name, query) return srv:url("/collab?name=" .. name .. (query or "")) end,
  }
  local open, send, until_msg, typed, quiet = S.open, S.send, S.until_msg, S.typed, S.quiet
  local join, edit, acked, text_of = S.join, S.edit, S.acked, S.text_of

  it("join, edit, ack; the others get the op; a rejoin with a revision gets only what it missed", function()
    local ada, bob = open "ada", open "bob"
    local j = join(ada, "r1", { client = "ca" })
    assert.are.same({ "ca", 0, "", {}, cjson.null }, { j.client, j.revision, j.text, j.cursors, j.seq })
    join(bob, "r1", { client = "cb" })
    edit(ada, "r1", 0, { "héllo 😀" }, 1)
    assert.are.same({ type = "ack", doc = "r1", revision = 1, seq = 1 }, acked(ada, "r1"))
    local op = until_msg(bob, typed("op", "r1"))
    assert.are.same({ 1, { "héllo 😀" }, "ca", "ada", 1 }, { op.revision, op.operation, op.client, op.user, op.seq })
    -- bob, still at revision 1, and ada at revision 1 insert at the same place concurrently
    edit(bob, "r1", 1, { 8, " bob" }, 1)
    edit(ada, "r1", 1, { 8, " ada" }, 2)
    acked(bob, "r1"); acked(ada, "r1")
    local t = text_of "r1"
    assert.is_true(t == "héllo 😀 bob ada" or t == "héllo 😀 ada bob", t)
    for i = 4, 6 do
      edit(ada, "r1", i - 1, { ot.utf16_length(text_of "r1"), "." }, i)
      acked(ada, "r1")
    end
    local full, rev = text_of "r1"
    assert.are.equal(6, rev)
    -- the server restarts; a client that has revision 3 gets 4..6 only
    assert.are.equal(0, select(2, srv:stop()))
    srv = start { data = dir }
    c = helper.app_client()
    local carol = open "carol"
    j = join(carol, "r1", { client = "cc", revision = 3 })
    assert.is_nil(j.text)
    assert.are.equal(6, j.revision)
    local revs = {}
    for i, o in ipairs(j.ops) do revs[i] = o.revision end
    assert.are.same({ 4, 5, 6 }, revs)
    assert.are.same({ "ca", "ada", 4, { ot.utf16_length(full) - 3, "." } },
      { j.ops[1].client, j.ops[1].user, j.ops[1].seq, j.ops[1].operation })
    assert.are.equal(full, (text_of "r1"))
  end)

  it("a resend after a lost ack is not applied twice; a second connection of the client gets the ack too", function()
    local a = open "ann"
    join(a, "dup", { client = "cx" })
    edit(a, "dup", 0, { "one" }, 1)
    assert.are.equal(1, acked(a, "dup").revision)
    c:call { op = "drop", id = a } -- as if the ack had been lost
    local a2 = open "ann"
    local j = join(a2, "dup", { client = "cx", revision = 0 })
    -- the catch-up shows the client its own op: that is its ack; `seq` is the last
    -- committed seq of this client
    assert.are.same({ 1, "cx", 1 }, { j.ops[1].revision, j.ops[1].client, j.ops[1].seq })
    assert.are.equal(1, j.seq)
    edit(a2, "dup", 0, { "one" }, 1)           -- a client that resends anyway
    quiet(a2, { ack = true, error = true, op = true })
    edit(a2, "dup", 1, { 3, " two" }, 2)
    assert.are.equal(2, acked(a2, "dup").revision)
    assert.are.same({ "one two", 2 }, { text_of "dup" })
    -- two connections of one client send the same op (a resend racing the original):
    -- committed once, both are acknowledged
    local b1, b2 = open "ben", open "ben"
    join(b1, "dup", { client = "cy" }); join(b2, "dup", { client = "cy" })
    edit(b1, "dup", 2, { 7, "!" }, 1)
    edit(b2, "dup", 2, { 7, "!" }, 1)
    assert.are.equal(3, acked(b1, "dup").revision)
    assert.are.equal(3, acked(b2, "dup").revision)
    quiet(b1, { ack = true, op = true }); quiet(b2, { ack = true, op = true })
    assert.are.same({ "one two!", 3 }, { text_of "dup" })
    local log = stored(dir, "dup")
    assert.are.equal(3, #log.ops)
  end)

  it("join, leave and join again at once: one joined, for the second join", function()
    -- a document owned by the other worker, so that the first join's answer is still on
    -- its way when the socket leaves and joins again
    local id = open "jo"
    local w = until_msg(id, typed "welcome").worker
    local function owner(name)
      local h = 5381
      for i = 1, #name do h = (h * 33 + name:byte(i)) % 4294967296 end
      return h % 2
    end
    local doc
    for i = 1, 100 do
      if owner("rj" .. i) ~= w then doc = "rj" .. i; break end
    end
    c:call { op = "send", id = id, datas = {
      cjson.encode { type = "join", doc = doc, client = "cj" },
      cjson.encode { type = "leave", doc = doc },
      cjson.encode { type = "join", doc = doc, client = "cj" } } }
    local r = c:call { op = "recv", id = id, n = 1000, timeout = 0.6 }
    local seq = {}
    for _, m in ipairs(r.json or {}) do
      if m.type == "joined" or m.type == "left" then seq[#seq + 1] = m.type end
    end
    -- When the three arrive together the first join's answer, come back after its leave,
    -- is dropped: one joined, for the second join. When the first answer comes back
    -- before the server has read the leave (a slow machine, or the frames read in
    -- separate turns), it is a joined of its own: joined, left, joined. Never a joined
    -- that ends up after the leave it was answered for, never a second joined for one join.
    local s = table.concat(seq, ",")
    assert.is_true(s == "left,joined" or s == "joined,left,joined", s)
    edit(id, doc, 0, { "ok" }, 1)
    assert.are.equal(1, acked(id, doc).revision)
  end)

  it("bad messages get an error reply and never change the document", function()
    local s = open "eve"
    join(s, "bad", { client = "ce" })
    edit(s, "bad", 0, { "a😀b" }, 1)
    acked(s, "bad")
    local cases = {
      { "{not json", "invalid_json" },
      { '{"doc":"bad"}', "missing_type" },
      { { type = "nope" }, "unknown_type" },
      { { type = "edit", doc = "bad", revision = 1, operation = "x", seq = 2 }, "validation_failed" },
      { { type = "edit", doc = "bad", revision = -1, operation = { 4 }, seq = 2 }, "validation_failed" },
      { { type = "edit", doc = "bad", revision = 1, operation = { 4 }, seq = 0 }, "validation_failed" },
      { { type = "edit", doc = "bad!", revision = 1, operation = { 4 }, seq = 2 }, "validation_failed" },
      { { type = "edit", doc = "other", revision = 1, operation = { 4 }, seq = 2 }, "not_joined" },
      { { type = "edit", doc = "bad", revision = 1, operation = { 4, true }, seq = 2 }, "invalid_operation" },
      { { type = "edit", doc = "bad", revision = 1, operation = { 4, 0 }, seq = 2 }, "invalid_operation" },
      { { type = "edit", doc = "bad", revision = 1, operation = { 1.5, 2.5 }, seq = 2 }, "invalid_operation" },
      { { type = "edit", doc = "bad", revision = 1, operation = { 9 }, seq = 2 }, "invalid_operation" },
      { { type = "edit", doc = "bad", revision = 1, operation = { 3 }, seq = 2 }, "invalid_operation" },
      { { type = "edit", doc = "bad", revision = 1, operation = { 2, "x", 2 }, seq = 2 }, "invalid_operation" },
      { { type = "edit", doc = "bad", revision = 1, operation = { 1, -1, 2 }, seq = 2 }, "invalid_operation" },
      { '{"type":"edit","doc":"bad","revision":1,"operation":[4,"\\ud800"],"seq":2}', "invalid_json" },
      { { type = "edit", doc = "bad", revision = 7, operation = { 4 }, seq = 2 }, "invalid_revision" },
      { { type = "edit", doc = "bad", revision = 1, operation = { 4, "x" }, seq = 2,
          selection = { ranges = { { anchor = 9, head = 0 } } } }, "invalid_selection" },
      { { type = "cursor", doc = "bad", revision = 1, selection = { ranges = { { anchor = 5, head = 0 } } } }, "invalid_selection" },
      { { type = "cursor", doc = "bad", revision = 1, selection = { ranges = { { anchor = -1, head = 0 } } } }, "invalid_selection" },
      { { type = "cursor", doc = "bad", revision = 3, selection = { ranges = {} } }, "invalid_revision" },
      { { type = "join", doc = "bad" }, "already_joined" },
      { { type = "join", doc = "x", client = "no spaces" }, "validation_failed" },
      { { type = "leave", doc = "never" }, "not_joined" },
      { { type = "edit", doc = "bad", revision = 1, operation = { 4, "!" }, seq = 0.5 }, "validation_failed" },
    }
    for i, case in ipairs(cases) do
      local msg = case[1]
      if type(msg) == "table" then msg.id = i end
      send(s, msg)
      local e = until_msg(s, typed "error")
      assert.are.equal(case[2], e.error, "case " .. i .. ": " .. cjson.encode(e))
      if type(msg) == "table" then assert.are.equal(i, e.id) end
    end
    c:call { op = "send", id = s, data = "binary", binary = true }
    assert.are.equal("binary_not_supported", until_msg(s, typed "error").error)
    quiet(s, { ack = true, op = true })
    assert.are.same({ "a😀b", 1 }, { text_of "bad" })
    -- the connection still works
    edit(s, "bad", 1, { 4, "!" }, 2)
    assert.are.equal(2, acked(s, "bad").revision)
    assert.are.same({ "a😀b!", 2 }, { text_of "bad" })
  end)

  it("cursors and selections are moved through concurrent edits; presence has names and colours", function()
    local ada, bob = open("ada", "&color=%23112233"), open "bob"
    local _, before_joined = join(ada, "cur", { client = "ca" })
    -- ada's join is announced (a join and a leave in one batch would cancel out); the
    -- announcement may come before the `joined` reply (the join waits for the member
    -- list, and the presence batch can go out meanwhile), so look there too
    local function ada_joins(m)
      if m.type ~= "presence" then return false end
      for _, x in ipairs(m.joins) do if x.user == "ada" then return true end end
      return false
    end
    local announced = false
    for _, m in ipairs(before_joined) do announced = announced or ada_joins(m) end
    if not announced then until_msg(ada, ada_joins) end
    edit(ada, "cur", 0, { "hello world" }, 1)
    acked(ada, "cur")
    -- bob sees ada with her colour in the members list (before or after `joined`)
    local function ada_listed(m)
      if m.type ~= "members" then return false end
      for _, x in ipairs(m.members) do
        if x.user == "ada" and x.color == "#112233" and x.name == "ada" then return true end
      end
    end
    local _, seen = join(bob, "cur", { client = "cb" })
    local listed = false
    for _, m in ipairs(seen) do listed = listed or ada_listed(m) end
    if not listed then until_msg(bob, ada_listed) end
    edit(bob, "cur", 1, { "XX", 11 }, 1)
    acked(bob, "cur")
    -- ada has not seen revision 2: her selection of "world" at revision 1 reaches bob at 2
    send(ada, { type = "cursor", doc = "cur", revision = 1, selection = { ranges = { { anchor = 6, head = 11 } } } })
    local cur = until_msg(bob, typed("cursor", "cur"))
    assert.are.same({ 2, "ca", "ada", { ranges = { { anchor = 8, head = 13 } } } },
      { cur.revision, cur.client, cur.user, cur.selection })
    -- an edit made at revision 1 with the caret after it: both moved past "XX"
    edit(ada, "cur", 1, { 11, "!" }, 2, { selection = { ranges = { { anchor = 12, head = 12 } } } })
    local op = until_msg(bob, typed("op", "cur"))
    assert.are.same({ 3, { 13, "!" }, { ranges = { { anchor = 14, head = 14 } } } },
      { op.revision, op.operation, op.selection })
    -- a newcomer gets the cursors as they are now
    local carol = open "carol"
    local j = join(carol, "cur")
    assert.are.same({ { client = "ca", user = "ada", selection = { ranges = { { anchor = 14, head = 14 } } } } },
      j.cursors)
    -- ada leaves: her cursor goes, and so does she
    send(ada, { type = "leave", doc = "cur" })
    until_msg(ada, typed("left", "cur"))
    -- (in either order: presence events come in batches)
    local gone_cursor, gone_member
    until_msg(bob, function(m)
      if m.type == "cursor" and m.doc == "cur" then
        assert.are.same({ "ca", cjson.null }, { m.client, m.selection })
        gone_cursor = true
      elseif m.type == "presence" then
        for _, u in ipairs(m.leaves) do if u == "ada" then gone_member = true end end
      end
      return gone_cursor and gone_member
    end)
  end)
end)

describe("examples/collab: limits #integration #collab", function()
  local srv, c
  setup(function()
    srv = start { data = helper.tmpdir(), env = { COLLAB_MAX_SIZE = "64", COLLAB_MAX_OP_SIZE = "48",
      COLLAB_MAX_LAG = "5", COLLAB_OPS_RATE = "4", COLLAB_OPS_BURST = "4" } }
    c = helper.app_client()
  end)
  teardown(function() helper.cleanup() end)

  local S = collab.session {
    client = function() return c end,
    url = function(name) return srv:url("/collab?name=" .. name) end,
  }
  local open, send, next_msg = S.open, S.send, S.next_msg
  local function edit(id, doc, rev, op, seq)
    send(id, { type = "edit", doc = doc, revision = rev, operation = op, seq = seq, id = seq })
    return next_msg(id, { ack = true, error = true })
  end

  it("document size, operation size, revision lag and edits per second", function()
    local s = open "lim"
    send(s, { type = "join", doc = "l", client = "cl" })
    next_msg(s, { joined = true })
    assert.are.equal("ack", edit(s, "l", 0, { string.rep("a", 40) }, 1).type)
    assert.are.equal("operation_too_large", edit(s, "l", 1, { 40, string.rep("b", 45) }, 2).error)
    assert.are.equal("ack", edit(s, "l", 1, { 40, string.rep("é", 10) }, 3).type)     -- 60 bytes
    local e = edit(s, "l", 2, { 50, "12345" }, 4)                                        -- 65 > 64
    assert.are.same({ "error", "document_too_large", 4 }, { e.type, e.error, e.id })
    -- the rate: 4 edits burst, 4 a second; wait for the bucket to fill again
    helper.sleep(1.1)
    local len = 50
    for i = 1, 4 do -- each deletes the last character
      assert.are.equal("ack", edit(s, "l", i + 1, { len - 1, -1 }, 10 + i).type)
      len = len - 1
    end
    local limited = 0
    for i = 1, 6 do
      local r = edit(s, "l", 6, { "x", len }, 20 + i)
      if r.error == "rate_limited" then limited = limited + 1 end
    end
    assert.is_true(limited >= 4, "rate-limited: " .. limited)
    -- the lag: the document is at revision 6 or more; revision 0 is more than 5 behind
    helper.sleep(1.1)
    local t = open "late"
    send(t, { type = "join", doc = "l", client = "cz", revision = 0 })
    local j = next_msg(t, { joined = true })
    assert.is_true(j.reload)
    assert.is_string(j.text)
    assert.are.equal("revision_too_old", edit(t, "l", 0, { 40 }, 1).error)
    local t2 = open "late"
    send(t2, { type = "join", doc = "l", client = "cz2", revision = j.revision - 2 })
    local j2 = next_msg(t2, { joined = true })
    assert.is_nil(j2.text)
    assert.are.equal(2, #j2.ops)
  end)
end)

-- A disk that refuses writes (RLIMIT_FSIZE lowered under the running server, as in
-- disk_full_spec): edits are answered storage_failed and never acknowledged nor
-- sent to the others; once writes work again, the same edit resent is committed
-- as the next revision; the stored log has every acknowledged revision, no hole.
describe("examples/collab: a refusing disk #integration #collab #diskfull", function()
  teardown(function() helper.cleanup() end)

  local function file_size(path)
    local f = io.open(path, "rb")
    if not f then return 0 end
    local n = f:seek("end")
    f:close()
    return n
  end
  local function prlimit(pid, v)
    local res, rc = helper.run({ "prlimit", "--pid", tostring(pid), "--fsize=" .. v .. ":unlimited" }, 10)
    assert(rc == 0, cjson.encode(res))
  end

  it("refuses what it cannot store, acknowledges nothing unstored, goes on after", function()
    local dir = helper.tmpdir() .. "/data"
    local srv = start { data = dir }
    local c = helper.app_client()
    local function open(name)
      local r = c:call { op = "open", id = name, url = srv:url("/collab?name=" .. name) }
      assert.are.equal(101, r.status)
      return name
    end
    local S = collab.session { client = function() return c end }
    local function next_msg(id, types) return S.next_msg(id, types, 10) end
    local w, o = open "writer", open "other"
    for _, id in ipairs { w, o } do
      c:call { op = "send", id = id, data = cjson.encode { type = "join", doc = "full", client = "c" .. id } }
      next_msg(id, { joined = true })
    end
    local rev, len, seq = 0, 0, 0
    local big = ("y"):rep(3000) -- every edit needs fresh pages
    local function edit(s)
      c:call { op = "send", id = w, data = cjson.encode { type = "edit", doc = "full", revision = rev,
        operation = len > 0 and { len, big } or { big }, seq = s } }
      return next_msg(w, { ack = true, error = true })
    end
    local function ok(m)
      assert.are.equal("ack", m.type, cjson.encode(m))
      assert.are.equal(rev + 1, m.revision)
      rev, len = m.revision, len + #big
      assert.are.equal(rev, next_msg(o, { op = true }).revision) -- the other one sees it
    end
    for _ = 1, 5 do seq = seq + 1; ok(edit(seq)) end

    local max = 0
    for _, f in ipairs { dir .. "/edgews.db", dir .. "/edgews.db-wal", srv.stderr_path } do
      max = math.max(max, file_size(f))
    end
    prlimit(srv.pid, max + 32 * 1024)
    -- until 5 edits were refused (a checkpoint may let some through)
    local refused, acked = 0, {}
    for _ = 1, 200 do
      if refused >= 5 then break end
      seq = seq + 1
      local m = edit(seq)
      if m.type == "ack" then
        assert.are.equal(rev + 1, m.revision)
        rev, len = m.revision, len + #big
        acked[#acked + 1] = rev
      else
        assert.are.same({ "storage_failed", seq }, { m.error, m.seq })
        refused = refused + 1
        seq = seq - 1 -- the same edit is resent: it was not committed
      end
    end
    assert.is_true(refused >= 5, "edits refused: " .. refused)
    prlimit(srv.pid, "unlimited")
    -- the refused edit, resent with the same seq, is committed now (the owner reloads
    -- the document from the store after a failed append: it may answer
    -- storage_failed once more while the last appends in flight complete)
    local m
    for _ = 1, 20 do
      m = edit(seq + 1)
      if m.type == "ack" then break end
      helper.sleep(0.05)
    end
    seq = seq + 1
    -- `other` saw exactly the acknowledged revisions, in order
    local r = c:call { op = "recv", id = o, n = 1000, timeout = 0.5 }
    local revs = {}
    for _, x in ipairs(r.json or {}) do if x.type == "op" then revs[#revs + 1] = x.revision end end
    assert.are.equal("ack", m.type, cjson.encode(m))
    assert.are.equal(rev + 1, m.revision)
    rev = m.revision
    acked[#acked + 1] = rev
    -- (the op of the last one may still be on its way to `other`)
    helper.wait_until(function()
      local more = c:call { op = "recv", id = o, n = 1, timeout = 0.2 }
      for _, x in ipairs(more.json or {}) do if x.type == "op" then revs[#revs + 1] = x.revision end end
      return #revs >= #acked
    end, 5)
    assert.are.same(acked, revs)
    assert.are.equal(0, select(2, srv:stop()))
    local log = stored(dir, "full")
    assert.are.equal(rev, log.rev)
    assert.are.equal(rev, #log.ops)
    local text = replay(log)
    assert.are.equal(rev * #big, #text)
    for i, o2 in ipairs(log.ops) do assert.are.same({ "cwriter:writer" }, { o2[2] }, "revision " .. i) end
  end)
end)
