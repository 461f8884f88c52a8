-- bench/ot_bench.lua: cost of the operational-transform engine (lua/edgews/ot.lua).
--
--   luajit bench/ot_bench.lua [--quick]
--
-- 1. transform one client operation against a backlog of 1,000 committed operations
--    (what a server does for a client 1,000 revisions behind): typing-sized edits on a
--    10,000-character document, ASCII and mixed (2-, 3-, 4-byte) text.
-- 2. apply one edit to a 1 MB document, ASCII and multi-byte (CJK with emoji), at the
--    start, the middle, the end and random places, with and without the document's
--    UTF-16 length (a server knows it: the target length of the last operation).
-- 3. utf16_length of 1 MB, and compose of the 1,000-op backlog into one operation.
-- CPU time (os.clock), median of several runs; µs per operation.
local root = (arg and arg[0] or ""):match("^(.*)/bench/[^/]*$") or "."
package.path = root .. "/lua/?.lua;" .. root .. "/spec/?.lua;" .. package.path
local ot = require "edgews.ot"
local G = require "unit.ot_gen"

local quick = arg and arg[1] == "--quick"
local RUNS = quick and 3 or 9

local function median(t)
  table.sort(t)
  return t[math.floor((#t + 1) / 2)]
end

-- µs per call of fn, median over RUNS runs of `reps` calls each
local function measure(reps, fn)
  fn() -- warm up (and let the JIT compile)
  local times = {}
  for r = 1, RUNS do
    local t0 = os.clock()
    for _ = 1, reps do fn() end
    times[r] = (os.clock() - t0) / reps * 1e6
  end
  return median(times)
end

local function row(name, us, note)
  print(("%-62s %12.1f µs%s"):format(name, us, note and ("  " .. note) or ""))
end

print(("edgews.ot benchmark (%s, %s)"):format(jit and jit.version or _VERSION,
  quick and "quick" or "median of " .. RUNS .. " runs"))

-- 1. transform against a 1,000-op backlog ------------------------------------------
local r = G.rng(1)
for _, name in ipairs { "ascii", "mixed" } do
  local profile = G.PROFILES[name]
  local doc = G.text(r, profile, 10000)
  local len = ot.utf16_length(doc)
  local bounds = G.boundaries(doc)
  -- an edit: insert 1-3 characters or delete 1-2 at a random character boundary
  local function edit(dlen, b)
    local i = r:int(1, #b - 1)
    local p = b[i]
    local op
    if r:float() < 0.7 then
      op = { p, G.text(r, profile, r:int(1, 3)), dlen - p }
    else
      local q = b[math.min(#b, i + r:int(1, 2))]
      op = { p, -(q - p), dlen - q }
    end
    if op[1] == 0 then table.remove(op, 1) end
    if op[#op] == 0 then op[#op] = nil end
    return op
  end
  local backlog, d, dlen = {}, doc, len
  for i = 1, 1000 do
    local op = edit(dlen, G.boundaries(d))
    backlog[i] = op
    d = assert(ot.apply(d, op, dlen))
    dlen = ot.target_length(op)
  end
  local client = edit(len, bounds)
  local final
  local us = measure(quick and 5 or 20, function()
    local a = client
    for i = 1, #backlog do a = ot.transform(a, backlog[i]) end
    final = a
  end)
  assert(ot.apply(d, final, dlen))
  row(("transform vs 1,000-op backlog (%s, 10k chars)"):format(name), us,
    ("%.2f µs per transform"):format(us / 1000))
  local composed
  us = measure(quick and 1 or 3, function()
    local c = backlog[1]
    for i = 2, #backlog do c = ot.compose(c, backlog[i]) end
    composed = c
  end)
  assert(ot.apply(doc, composed, len) == d)
  row(("compose the 1,000-op backlog into one (%s)"):format(name), us)
end

-- 2. apply to a 1 MB document ------------------------------------------------------
-- Every call inserts a different counter, so every result is a new 1 MB string (a
-- repeated result would be found in LuaJIT's string table and cost nothing). The
-- "copy floor" is what making that new string costs with sub() and .. alone.
local MB = 1024 * 1024
local docs = {
  { "ASCII", string.rep("The quick brown fox jumps over the lazy dog. ", math.ceil(MB / 45)):sub(1, MB) },
  { "multi-byte", (string.rep("漢字かな交じり文😀é ", math.ceil(MB / 33))) },
}
local counter = 0
local sink -- luacheck: ignore (written only: keeps the measured result alive)
local function tag()
  counter = counter + 1
  return tostring(counter)
end
for _, e in ipairs(docs) do
  local name, doc = e[1], e[2]
  local len = assert(ot.utf16_length(doc))
  local function at(frac) -- a character boundary near frac of the document
    local want = math.floor(len * frac)
    if ot.apply(doc, { want, len - want }, len) then return want end
    return want - 1 -- it was inside a surrogate pair
  end
  print(("apply to a %s document: %d bytes, %d UTF-16 units"):format(name, #doc, len))
  row("  utf16_length (validates UTF-8 and counts)", measure(quick and 2 or 5, function()
    ot.utf16_length(doc)
  end))
  local half = math.floor(#doc / 2) -- (the floor copies bytes; boundaries do not matter)
  row("  copy floor: doc:sub(1, n) .. x .. doc:sub(n + 1)", measure(quick and 20 or 100, function()
    sink = doc:sub(1, half) .. tag() .. doc:sub(half + 1) -- kept, or LuaJIT drops it
  end))
  for _, spot in ipairs { { "start", 0.0001 }, { "middle", 0.5 }, { "end", 0.9999 } } do
    local p = at(spot[2])
    row(("  insert at the %s, length known"):format(spot[1]), measure(quick and 20 or 100, function()
      assert(ot.apply(doc, { p, tag(), len - p }, len))
    end))
    row(("  insert at the %s, length not passed"):format(spot[1]), measure(quick and 10 or 50, function()
      assert(ot.apply(doc, { p, tag(), len - p }))
    end))
  end
  local spots = {}
  local rr = G.rng(5)
  for i = 1, 64 do spots[i] = at(rr:float()) end
  local k = 0
  row("  insert at random places, length known", measure(quick and 64 or 256, function()
    k = k % #spots + 1
    assert(ot.apply(doc, { spots[k], tag(), len - spots[k] }, len))
  end))
  row("  insert at random places, length not passed", measure(quick and 32 or 128, function()
    k = k % #spots + 1
    assert(ot.apply(doc, { spots[k], tag(), len - spots[k] }))
  end))
  local p = at(0.5)
  local q = at(0.5) + 2 == at(0.5 + 2 / len) and p + 2 or p + 3
  row("  replace 2-3 units in the middle, length known", measure(quick and 20 or 100, function()
    assert(ot.apply(doc, { p, tag(), p - q, len - q }, len))
  end))
end
