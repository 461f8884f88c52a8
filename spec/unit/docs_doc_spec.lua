-- Unit specs for lua/edgews/docs/doc.lua, the committer's document: revisions,
-- transformation past concurrent commits (ot.js's server tie-break), deduplication
-- of resends, every refusal leaving the document untouched, selections, history,
-- restoring from a stored snapshot + log; then a property test with fixed seeds:
-- simulated ot.js-style clients (one operation in flight, the rest buffered) editing
-- one document concurrently through per-client FIFO links that drop at random
-- (in-flight messages lost or not, acks lost) and reconnect with a catch-up and a
-- resend, until all converge on the committed text.
package.path = "./lua/?.lua;./spec/?.lua;" .. package.path
local Doc = require "edgews.docs.doc"
local ot = require "edgews.ot"
local G = require "unit.ot_gen"

local function commit_ok(d, ...)
  local e, code, msg = d:commit(...)
  assert(e, tostring(code) .. ": " .. tostring(msg))
  return e
end

local function two(a, b) return a, b end

local function snapshot(d)
  return { text = d.text, rev = d.rev, len = d.len, nclients = d.nclients }
end

describe("docs.doc", function()
  it("commits revisions in order and keeps text and UTF-16 length", function()
    local d = Doc.new("a")
    local e = commit_ok(d, 0, { "héllo 😀" }, "c1:u", 1)
    assert.same({ 1, '["héllo 😀"]', 0, 8 }, { e.rev, e.json, e.base_len, e.len })
    e = commit_ok(d, 1, { 8, "!" }, "c1:u", 2)
    assert.same({ 2, "héllo 😀!", 9 }, { d.rev, d.text, d.len })
    assert.equal("[8,\"!\"]", e.json)
  end)

  it("prepare leaves the document untouched; accept records it; append takes a revision committed elsewhere", function()
    local d = Doc.new("p")
    commit_ok(d, 0, { "abc" }, "c1:u", 1)
    local before = snapshot(d)
    local e = assert(d:prepare(0, { "X" }, "c2:v", 1))
    assert.same({ 2, "Xabc", '["X",3]' }, { e.rev, e.text, e.json }) -- transformed past revision 1
    assert.same(before, snapshot(d))
    assert.is_nil(d:last_seq("c2:v"))
    -- a revision committed elsewhere first: the prepared entry is void, prepare again
    local r = assert(d:append(2, 4, "c3:w", '["<",3]'))
    assert.same({ 2, "<abc", 4, "c3:w" }, { d.rev, d.text, r.seq, r.key })
    assert.equal(4, d:last_seq("c3:w"))
    e = assert(d:prepare(0, { "X" }, "c2:v", 1))
    assert.same({ 3, "X<abc" }, { e.rev, e.text })
    d:accept(e)
    assert.same({ 3, "X<abc", 5 }, { d.rev, d.text, d.len })
    assert.same({ nil, "duplicate", 3 }, { d:prepare(0, { "X" }, "c2:v", 1) })
    -- append refuses a gap, a revision it has, and an operation of another length
    local snap = snapshot(d)
    assert.is_nil((d:append(5, 0, "", '[5,"y"]')))
    assert.is_nil((d:append(3, 0, "", '[5,"y"]')))
    assert.is_nil((d:append(4, 0, "", '[4,"y"]')))
    assert.same(snap, snapshot(d))
    r = assert(d:append(4, 0, "", '[5,"y"]'))
    assert.same({ nil, nil, "X<abcy" }, { r.key, r.seq, d.text })
  end)

  it("transforms an operation past those committed after its base; the later one goes first at a tie", function()
    local d = Doc.new("t")
    commit_ok(d, 0, { "abc" }, "c1:u", 1)
    commit_ok(d, 1, { 1, "X", 2 }, "c1:u", 2)        -- aXbc
    local e = commit_ok(d, 1, { 1, "Y", 2 }, "c2:v", 1) -- made on "abc": Y at 1 as well
    assert.equal("aYXbc", d.text)                      -- incoming first, as ot.js's server
    assert.same({ 1, "Y", 3 }, e.op)
    assert.equal("[1,\"Y\",3]", e.json)
    e = commit_ok(d, 1, { -1, 2 }, "c3:w", 1)          -- delete "a", made on "abc"
    assert.equal("YXbc", d.text)
    assert.same({ -1, 4 }, e.op)
  end)

  it("recognises a resend (same client, same seq) and refuses an older seq", function()
    local d = Doc.new("d")
    commit_ok(d, 0, { "a" }, "c1:u", 5)
    local e, code, rev = d:commit(0, { "a" }, "c1:u", 5)
    assert.is_nil(e)
    assert.same({ "duplicate", 1 }, { code, rev })
    -- an older seq: a late copy of an op committed before the last one
    assert.same({ nil, "stale_seq" }, { two(d:commit(1, { 1, "b" }, "c1:u", 4)) })
    assert.equal("a", d.text)
    assert.equal(5, d:last_seq("c1:u"))
    assert.is_nil(d:last_seq("c9:u"))
    -- another user's client with the same id is another client
    commit_ok(d, 0, { "z" }, "c1:v", 5)
    assert.equal("za", d.text)
    -- no seq: no deduplication
    commit_ok(d, 2, { 2, "!" })
    commit_ok(d, 3, { 3, "!" })
    assert.equal("za!!", d.text)
    -- a resend that comes after later commits still finds its revision
    commit_ok(d, 4, { "q", 4 }, "c2:u", 1)
    commit_ok(d, 5, { 5, "r" }, "c3:u", 1)
    assert.same({ nil, "duplicate", 5 }, { d:commit(4, { "q", 4 }, "c2:u", 1) })
  end)

  it("refuses bad input with a code and leaves the document untouched", function()
    local d = Doc.new("bad", { max_size = 12, max_op_size = 40, max_lag = 3 })
    commit_ok(d, 0, { "a😀b" }, "c:u", 1)
    local before = snapshot(d)
    local cases = {
      { 2, { 4 }, "invalid_revision" },                   -- future revision
      { -1, { 4 }, "invalid_revision" },
      { 0.5, { 4 }, "invalid_revision" },
      { 1, "x", "invalid_operation" },                      -- not an array
      { 1, { 4, true }, "invalid_operation" },             -- unknown component
      { 1, { 4, 0 }, "invalid_operation" },                -- empty component
      { 1, { 2.5, 1.5 }, "invalid_operation" },            -- not integers
      { 1, { 5 }, "invalid_operation" },                   -- retain past the end
      { 1, { 3 }, "invalid_operation" },                   -- base length mismatch
      { 1, { 2, -1, 1 }, "invalid_operation" },            -- splits the surrogate pair
      { 1, { 4, "\237\160\128" }, "invalid_operation" },   -- an encoded surrogate
      { 1, { 4, string.rep("x", 40) }, "operation_too_large" },
      { 1, { 4, string.rep("é", 5) }, "document_too_large" },  -- 6 + 10 bytes > 12
      { 0, { "x" }, "invalid_operation" },                 -- base 0 had length 0: fine, but ...
    }
    cases[#cases] = { 1, { 4 }, "invalid_selection", { ranges = { { anchor = 5, head = 0 } } } }
    cases[#cases + 1] = { 1, { 4 }, "invalid_selection", { ranges = { { anchor = 1.5, head = 0 } } } }
    cases[#cases + 1] = { 1, { 4 }, "invalid_selection", "no" }
    for i, c in ipairs(cases) do
      local e, code, msg = d:commit(c[1], c[2], "c:u", 10 + i, c[4])
      assert.is_nil(e, "case " .. i)
      assert.equal(c[3], code, "case " .. i .. ": " .. tostring(msg))
      assert.equal("string", type(msg))
      assert.same(before, snapshot(d), "case " .. i)
    end
    assert.same({ nil, "invalid_seq" }, { two(d:commit(1, { 4 }, "c:u", 0)) })
    assert.same({ nil, "invalid_seq" }, { two(d:commit(1, { 4 }, "c:u", 1.5)) })
    -- a commit that shrinks a document over the limit is allowed
    d.max_size = 2
    commit_ok(d, 1, { 1, -2, 1 }, "c:u", 100)
    assert.equal("ab", d.text)
  end)

  it("refuses a base more than max_lag behind (the client must reload)", function()
    local d = Doc.new("lag", { max_lag = 3 })
    commit_ok(d, 0, { "x" })
    for i = 2, 5 do commit_ok(d, i - 1, { i - 1, "x" }) end
    assert.same({ nil, "revision_too_old" }, { two(d:commit(1, { 1, "y" })) })
    commit_ok(d, 2, { 2, "y" })
    assert.is_nil(d:since(2))
    assert.equal(3, #d:since(3))
    assert.equal(1, #d:since(3, 4))
    assert.same({}, d:since(6))
    assert.is_nil(d:since(7))
  end)

  it("moves a selection sent with an edit past concurrent ops, and cursors between revisions", function()
    local d = Doc.new("s")
    commit_ok(d, 0, { "hello" }, "a:u", 1)
    commit_ok(d, 1, { "XX", 5 }, "b:v", 1)           -- XXhello
    -- made on "hello": insert "!" at the end, caret after it (6)
    local e = commit_ok(d, 1, { 5, "!" }, "a:u", 2, { ranges = { { anchor = 6, head = 6 } } })
    assert.same({ ranges = { { anchor = 8, head = 8 } } }, e.sel)
    -- a cursor at revision 1 (in "hello", at 2) moved to revision 3
    assert.same({ ranges = { { anchor = 4, head = 4 } } }, d:move_selection({ ranges = { { anchor = 2, head = 2 } } }, 1, 3, "a:u"))
    -- at an insert of its own client the position moves after it, otherwise not
    assert.same({ ranges = { { anchor = 2, head = 2 } } }, d:move_selection({ { anchor = 0, head = 0 } }, 1, 2, "b:v"))
    assert.same({ ranges = { { anchor = 0, head = 0 } } }, d:move_selection({ { anchor = 0, head = 0 } }, 1, 2, "a:u"))
    assert.same({ nil, "invalid_selection" }, { two(d:move_selection({ { anchor = 6, head = 0 } }, 1, 3)) })
    assert.same({ nil, "invalid_revision" }, { two(d:move_selection({ { anchor = 0, head = 0 } }, 4, 3)) })
  end)

  it("encodes operations as JSON exactly (integers, escapes, the empty operation)", function()
    assert.equal("[]", Doc.encode({}))
    assert.equal('[3,"a\\"b\\\\\\n",-2,9007199254740991]', Doc.encode({ 3, "a\"b\\\n", -2, 9007199254740991 }))
  end)

  it("restores a document from a snapshot and the log, with history and dedup records", function()
    local r = G.rng(42)
    local d = Doc.new("r", { max_lag = 10 })
    local stored_ops, snap, snap_rev = {}, "", 0
    for i = 1, 40 do
      local op = G.op(r, d.text, G.PROFILES.mixed)
      local e = commit_ok(d, d.rev, op, "c" .. (i % 3) .. ":u", i)
      stored_ops[#stored_ops + 1] = { e.rev, i, e.key, e.json }
      if i % 15 == 0 then snap, snap_rev = d.text, d.rev end
    end
    -- what the store keeps: ops after min(snapshot_rev, rev - 10) = 30
    local kept = {}
    for _, o in ipairs(stored_ops) do if o[1] > 30 then kept[#kept + 1] = o end end
    local back = assert(Doc.restore("r", { rev = 40, snapshot_rev = snap_rev, snapshot = snap, ops = kept },
      { max_lag = 10 }))
    assert.same({ d.text, d.rev, d.len }, { back.text, back.rev, back.len })
    assert.equal(30, back.hist_from)
    assert.same({ nil, "duplicate", 40 }, { back:commit(30, { d:len_at(30) }, "c1:u", 40) })
    local e = commit_ok(back, 35, { ot.target_length(stored_ops[35][4] and d.hist[35].op), "!" }, "c9:u", 1)
    commit_ok(d, 35, { ot.target_length(d.hist[35].op), "!" }, "c9:u", 1)
    assert.equal(d.text, back.text)
    assert.equal(41, e.rev)
    -- a hole in the log, or a log that ends early, is refused
    local holed = {}
    for i, o in ipairs(kept) do if i ~= 3 then holed[#holed + 1] = o end end
    assert.is_nil(Doc.restore("r", { rev = 40, snapshot_rev = snap_rev, snapshot = snap, ops = holed }))
    kept[#kept] = nil
    assert.is_nil(Doc.restore("r", { rev = 40, snapshot_rev = snap_rev, snapshot = snap, ops = kept }))
    assert.is_nil(Doc.restore("r", { rev = 3, snapshot_rev = 3, snapshot = "\255", ops = {} }))
  end)
end)

-- ----------------------------------------------------------------- simulation

-- An ot.js-style client: one operation in flight (outstanding), later edits composed
-- into a buffer; a server op transforms both.
local Client = {}
Client.__index = Client

local function new_client(i)
  return setmetatable({ key = "c" .. i .. ":u", rev = 0, doc = "", seq = 0, out = nil, buf = nil,
                        inbox = {}, connected = true, joined = true }, Client)
end

function Client:edit(op, send)
  self.doc = assert(ot.apply(self.doc, op))
  if self.out then
    self.buf = self.buf and assert(ot.compose(self.buf, op)) or op
  else
    self.seq = self.seq + 1
    self.out, self.out_seq = op, self.seq
    send(self, self.rev, op, self.seq)
  end
end

function Client:ack(send)
  self.rev = self.rev + 1
  if self.buf then
    self.seq = self.seq + 1
    self.out, self.out_seq, self.buf = self.buf, self.seq, nil
    send(self, self.rev, self.out, self.seq)
  else
    self.out = nil
  end
end

function Client:server_op(op)
  self.rev = self.rev + 1
  if self.out then
    local o2, op2 = assert(ot.transform(self.out, op))
    self.out = o2
    if self.buf then
      local b2, op3 = assert(ot.transform(self.buf, op2))
      self.buf, op2 = b2, op3
    end
    op = op2
  end
  self.doc = assert(ot.apply(self.doc, op))
end

local function simulate(seed, nclients, steps)
  local r = G.rng(seed)
  local profile = G.PROFILES[r:pick(G.PROFILE_NAMES)]
  local d = Doc.new("sim", { max_lag = 100000 })
  local clients, uplinks = {}, {}
  for i = 1, nclients do
    clients[i] = new_client(i)
    uplinks[i] = {}
  end
  local stats = { dups = 0, drops = 0 }
  local stale = {} -- messages of dropped connections still on their way: { i, m }
  local function send(c, rev, op, seq)
    for i, x in ipairs(clients) do
      if x == c then uplinks[i][#uplinks[i] + 1] = { rev = rev, op = op, seq = seq } end
    end
  end
  local function commit(i, m)
    local c = clients[i]
    local e, code, msg = d:commit(m.rev, m.op, c.key, m.seq)
    if not e then
      -- a resend of the last committed op, or a late copy of an older one (its
      -- connection is gone: the error reaches nobody)
      assert(code == "duplicate" or code == "stale_seq", tostring(code) .. ": " .. tostring(msg))
      stats.dups = stats.dups + 1
      return
    end
    for _, x in ipairs(clients) do
      if x.connected then x.inbox[#x.inbox + 1] = { rev = e.rev, op = e.op, key = e.key, seq = e.seq } end
    end
  end
  local function serve(i) commit(i, table.remove(uplinks[i], 1)) end
  local function serve_stale()
    local k = r:int(1, #stale)
    local x = table.remove(stale, k)
    commit(x[1], x[2])
  end
  local function receive(c)
    local m = table.remove(c.inbox, 1)
    assert(m.rev == c.rev + 1, "revisions arrive in order")
    if m.key == c.key then
      assert(c.out and m.seq == c.out_seq, "an ack for the outstanding op")
      c:ack(send)
    else
      c:server_op(m.op)
    end
  end
  local function drop(i)
    local c = clients[i]
    c.connected = false
    c.inbox = {}
    -- what was sent may have been lost with the connection, or still be on its way
    -- (to arrive before or after what the next connection sends)
    for _, m in ipairs(uplinks[i]) do
      if r:float() < 0.6 then stale[#stale + 1] = { i, m } end
    end
    uplinks[i] = {}
    stats.drops = stats.drops + 1
  end
  local function reconnect(i)
    local c = clients[i]
    c.connected = true
    local missed = assert(d:since(c.rev))
    for _, e in ipairs(missed) do
      if e.key == c.key then
        assert(c.out and e.seq == c.out_seq, "own op in the catch-up is the outstanding one")
        c:ack(function() end) -- a buffer that became outstanding goes out below
      else
        c:server_op(e.op)
      end
    end
    -- resend what is outstanding (same seq), or send the buffer that became it
    if c.out then send(c, c.rev, c.out, c.out_seq) end
  end
  for _ = 1, steps do
    local i = r:int(1, nclients)
    local c = clients[i]
    local x = r:float()
    if x < 0.35 then
      c:edit(G.op(r, c.doc, profile), send)
    elseif x < 0.55 then
      if #uplinks[i] > 0 then serve(i) end
    elseif x < 0.85 then
      if c.connected and #c.inbox > 0 then receive(c) end
    elseif x < 0.9 then
      if #stale > 0 then serve_stale() end
    elseif x < 0.95 then
      if c.connected then drop(i) end
    elseif not c.connected then
      reconnect(i)
    end
  end
  -- quiesce
  for i, c in ipairs(clients) do if not c.connected then reconnect(i) end end
  local busy = true
  while busy do
    busy = false
    if #stale > 0 and r:float() < 0.5 then serve_stale(); busy = true end
    for i, c in ipairs(clients) do
      if #uplinks[i] > 0 then serve(i); busy = true end
      if #c.inbox > 0 then receive(c); busy = true end
    end
    if #stale > 0 then busy = true end
  end
  -- the log replayed from the empty document
  local replay = ""
  for rev = 1, d.rev do replay = assert(ot.apply(replay, d.hist[rev].op)) end
  return d, clients, replay, stats
end

describe("docs.doc concurrency (simulated clients, fixed seeds)", function()
  it("converges: every client, the committed text and the log replayed from empty agree", function()
    local dups, drops, revs = 0, 0, 0
    for seed = 1, 300 do
      local d, clients, replay, st = simulate(seed, 2 + seed % 5, 150)
      for i, c in ipairs(clients) do
        assert(c.out == nil and c.buf == nil, "seed " .. seed .. ": client " .. i .. " still has edits")
        assert(c.rev == d.rev, "seed " .. seed .. ": client " .. i .. " at " .. c.rev .. ", document at " .. d.rev)
        assert(c.doc == d.text, "seed " .. seed .. ": client " .. i .. " differs")
      end
      assert(replay == d.text, "seed " .. seed .. ": log replay differs")
      dups, drops, revs = dups + st.dups, drops + st.drops, revs + d.rev
    end
    -- the runs did exercise resends and drops
    assert.is_true(dups > 50, "duplicates: " .. dups)
    assert.is_true(drops > 300, "drops: " .. drops)
    assert.is_true(revs > 3000, "revisions: " .. revs)
  end)
end)
