-- bench/docs_bench.lua: cost of a commit in the committer's document
-- (lua/edgews/docs/doc.lua), the part of an edit that edgews.docs runs on the
-- document's owning worker: validate, transform past the revisions committed after
-- the client's base, apply, encode the result as JSON, keep it in the history.
--
--   luajit bench/docs_bench.lua [--quick]
--
-- Rows: a typing-sized edit made on the newest revision; an edit made 1,000
-- revisions behind (a client catching up: 1,000 transforms, then the apply);
-- Doc.restore of a document from a snapshot and the 1,000 operations after it
-- (what loading a document from SQLite costs, once per load). 10,000-character
-- documents, ASCII and mixed (2-, 3-, 4-byte characters). CPU time (os.clock),
-- median of several runs; µs per operation.
local root = (arg and arg[0] or ""):match("^(.*)/bench/[^/]*$") or "."
package.path = root .. "/lua/?.lua;" .. root .. "/spec/?.lua;" .. package.path
local Doc = require "edgews.docs.doc"
local G = require "unit.ot_gen"

local quick = arg and arg[1] == "--quick"
local RUNS = quick and 3 or 9
local OPTS = { max_lag = 2000, max_size = 64 * 1024 * 1024 }

local function median(t)
  table.sort(t)
  return t[math.floor((#t + 1) / 2)]
end

local function row(name, us)
  print(("%-62s %12.1f µs"):format(name, us))
end

-- An insert of a few characters at a random character boundary of a document
-- whose boundaries (UTF-16 positions) are b.
local function typing(r, b, profile)
  local p = b[r:int(1, #b)]
  local len = b[#b]
  local op = {}
  if p > 0 then op[#op + 1] = p end
  op[#op + 1] = G.text(r, profile, r:int(1, 3))
  if len - p > 0 then op[#op + 1] = len - p end
  return op
end

-- A document with `n` revisions of typing after a 10,000-character first one; the
-- ops as the store keeps them.
local function build(profile, seed, n)
  local r = G.rng(seed)
  local d = Doc.new("bench", OPTS)
  local first = G.text(r, profile, 10000)
  assert(d:commit(0, { first }))
  local snapshot, ops = d.text, {}
  for i = 1, n do
    local e = assert(d:commit(d.rev, typing(r, G.boundaries(d.text), profile), "c:u", i))
    ops[i] = { e.rev, i, "c:u", e.json }
  end
  return d, snapshot, ops, r
end

print(("edgews.docs commit benchmark (%s)"):format(jit and jit.version or _VERSION))
for _, name in ipairs { "ascii", "mixed" } do
  local profile = G.PROFILES[name]
  local d, snapshot, ops, r = build(profile, 7, 1000)

  -- at the newest revision (the boundaries are computed outside the timed part)
  local head = {}
  for k = 1, RUNS do
    local reps = quick and 100 or 400
    local total = 0
    for _ = 1, reps do
      local edit = typing(r, { 0, d.len }, profile) -- at the start or the end
      local t0 = os.clock()
      assert(d:commit(d.rev, edit))
      total = total + os.clock() - t0
    end
    head[k] = total / reps * 1e6
  end
  row(("commit an edit made on the newest revision (%s, 10k chars)"):format(name), median(head))

  -- 1,000 revisions behind: an insert into the document as it was then
  local behind = {}
  for k = 1, RUNS do
    local reps = quick and 5 or 20
    local t0 = os.clock()
    for _ = 1, reps do
      local base = d.rev - 1000
      assert(d:commit(base, { "x", d:len_at(base) }))
    end
    behind[k] = (os.clock() - t0) / reps * 1e6
  end
  row(("commit an edit made 1,000 revisions behind (%s, 10k chars)"):format(name), median(behind))

  -- load: the snapshot at revision 1 and the 1,000 ops after it
  local stored = { rev = 1001, snapshot_rev = 1, snapshot = snapshot, ops = ops }
  local expect = build(profile, 7, 1000).text
  local load = {}
  for k = 1, RUNS do
    local t0 = os.clock()
    local back = assert(Doc.restore("r", stored, OPTS))
    load[k] = (os.clock() - t0) * 1e6
    assert(back.text == expect)
  end
  row(("load: snapshot + 1,000 ops replayed (%s, 10k chars)"):format(name), median(load))
end
