-- Cross-check of lua/edgews/ot.lua against ot.js itself (npm `ot` 0.0.15, run by
-- tests/clients/ot_otjs.js under Node): random documents (ASCII, 2-, 3- and 4-byte
-- UTF-8, astral characters) and random concurrent operations, made here with a fixed
-- seed and exchanged as JSON, must give the same normalised operations, transformed
-- pairs, composed operations, inverses, documents and cursor positions; pairs whose
-- lengths do not fit must be refused by both. Needs node and `npm ci` at the root.
package.path = "./lua/?.lua;./spec/?.lua;" .. package.path
local ot = require "edgews.ot"
local G = require "unit.ot_gen"
local cjson = require "cjson"

local CASES = 3000

local function run_node(cases)
  local input = os.tmpname()
  local output = os.tmpname()
  local f = assert(io.open(input, "wb"))
  f:write(cjson.encode(cases))
  f:close()
  local status = os.execute(("node tests/clients/ot_otjs.js %s > %s"):format(input, output))
  os.remove(input)
  f = assert(io.open(output, "rb"))
  local text = f:read("*a")
  f:close()
  os.remove(output)
  assert(status == 0 or status == true, "node tests/clients/ot_otjs.js failed")
  return cjson.decode(text)
end

local function make_cases(seed)
  local r = G.rng(seed)
  local cases = {}
  for i = 1, CASES do
    local doc, profile = G.doc(r, i % 25 == 0 and 300 or 30)
    local a = G.op(r, doc, profile, true)
    local b, c
    local kind = r:float()
    if kind < 0.05 then
      b = G.op(r, doc .. G.text(r, profile, r:int(1, 3)), profile, true) -- longer base
    else
      b = G.op(r, doc, profile, true)
    end
    local da = assert(ot.apply(doc, a))
    if kind > 0.95 then
      c = G.op(r, da .. "x", profile, true) -- does not follow a
    else
      c = G.op(r, da, profile, true)
    end
    local base = ot.base_length(a)
    local bounds = G.boundaries(doc)
    local cursors, ranges = {}, {}
    for j = 1, 3 do
      cursors[j] = r:float() < 0.7 and r:pick(bounds) or r:int(0, base)
      ranges[j] = { anchor = r:int(0, base), head = r:int(0, base) }
    end
    cases[i] = { doc = doc, a = a, b = b, c = c, cursors = cursors, ranges = ranges }
  end
  return cases
end

describe("edgews.ot against ot.js 0.0.15", function()
  local cases, results

  setup(function()
    cases = make_cases(31337)
    results = run_node(cases)
  end)

  it("got one answer per case", function()
    assert.are.equal(#cases, #results)
  end)

  it("normalises as ot.js's fromJSON does", function()
    for i, k in ipairs(cases) do
      assert.are.same(results[i].na, ot.normalize(k.a), "case " .. i)
      assert.are.same(results[i].nb, ot.normalize(k.b), "case " .. i)
    end
  end)

  it("transforms to the same pairs (tie-break included) and documents", function()
    local refused = 0
    for i, k in ipairs(cases) do
      local res = results[i]
      local ap, bp = ot.transform(k.a, k.b)
      if res.terr then
        refused = refused + 1
        assert.is_nil(ap, "case " .. i)
        assert.is_truthy(bp:find("base lengths differ", 1, true))
      else
        assert.are.same(res.ap, ap, "case " .. i)
        assert.are.same(res.bp, bp, "case " .. i)
        assert.are.equal(res.dab, ot.apply(ot.apply(k.doc, k.a), bp))
        assert.are.equal(res.dba, ot.apply(ot.apply(k.doc, k.b), ap))
        assert.are.equal(res.dab, res.dba)
      end
    end
    assert.is_true(refused > 50 and refused < 300, "mismatched pairs: " .. refused)
  end)

  it("applies, inverts and composes alike", function()
    local refused = 0
    for i, k in ipairs(cases) do
      local res = results[i]
      assert.is_nil(res.aerr)
      assert.are.equal(res.da, ot.apply(k.doc, k.a))
      assert.are.same(res.inv, ot.invert(k.a, k.doc), "case " .. i)
      local comp, err = ot.compose(k.a, k.c)
      if res.cerr then
        refused = refused + 1
        assert.is_nil(comp, "case " .. i)
        assert.is_truthy(err:find("does not match base length", 1, true))
      else
        assert.are.same(res.comp, comp, "case " .. i)
        assert.are.equal(res.dc, ot.apply(k.doc, comp))
      end
    end
    assert.is_true(refused > 50 and refused < 300, "mismatched compositions: " .. refused)
  end)

  it("moves cursors and ranges as ot.js's Range.transform (is_own = true)", function()
    for i, k in ipairs(cases) do
      local res = results[i]
      for j, p in ipairs(k.cursors) do
        assert.are.equal(res.cur[j], ot.transform_cursor(p, k.a, true), "case " .. i)
      end
      for j, rg in ipairs(k.ranges) do
        assert.are.same(res.rng[j], ot.transform_range(rg, k.a, true), "case " .. i)
      end
    end
  end)

  it("covers astral characters and documents that are not ASCII", function()
    local astral, multi = 0, 0
    for _, k in ipairs(cases) do
      if k.doc:find("[\240-\244]") then astral = astral + 1 end
      if k.doc:find("[\194-\239]") then multi = multi + 1 end
    end
    assert.is_true(astral > CASES / 4, "astral: " .. astral)
    assert.is_true(multi > CASES / 4, "multi-byte: " .. multi)
  end)
end)
