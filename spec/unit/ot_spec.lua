-- Unit specs for lua/edgews/ot.lua: UTF-16 lengths and UTF-8 validation, apply with
-- multi-byte and astral text, every invalid operation rejected with its message,
-- canonical form, transform (tie-break), compose, invert, cursors and selections,
-- misuse raising; then property tests with fixed seeds over random documents and
-- random concurrent operations (TP1, compose, invert, cursors in range, apply against
-- a reference model, corrupted operations rejected).
package.path = "./lua/?.lua;./spec/?.lua;" .. package.path
local ot = require "edgews.ot"
local G = require "unit.ot_gen"

-- A readable form of an operation (cjson refuses NaN).
local function show(op)
  if type(op) ~= "table" then return tostring(op) end
  local t = {}
  for i = 1, #op do
    local c = op[i]
    t[i] = type(c) == "string" and ("%q"):format(c) or tostring(c)
  end
  return "[" .. table.concat(t, ",") .. "]"
end

local function copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

-- Reference model: a document as an array of UTF-16 units, an astral character as
-- its 4 bytes followed by a "" placeholder for the low surrogate.
local function units_of(s)
  local u = {}
  for _, ch in ipairs(G.chars(s)) do
    u[#u + 1] = ch
    if #ch == 4 then u[#u + 1] = "" end
  end
  return u
end

local function ref_apply(s, op)
  local u, out, pos = units_of(s), {}, 1
  local function boundary(p) return u[p] ~= "" end -- p: 1-based unit index or #u + 1
  for _, c in ipairs(op) do
    if type(c) == "string" then
      out[#out + 1] = c
    else
      local n = math.abs(c)
      if pos + n - 1 > #u then return nil, "past the end" end
      if not boundary(pos + n) then return nil, "split" end
      if c > 0 then for i = pos, pos + n - 1 do out[#out + 1] = u[i] end end
      pos = pos + n
    end
  end
  if pos ~= #u + 1 then return nil, "short" end
  return table.concat(out)
end

local function is_canonical(op)
  for i = 1, #op do
    local c, p = op[i], op[i - 1]
    if c == 0 or c == "" then return false end
    if p ~= nil then
      if type(c) == "string" and type(p) == "string" then return false end
      if type(c) == "number" and type(p) == "number" and (c > 0) == (p > 0) then return false end
      if type(c) == "string" and type(p) == "number" and p < 0 then return false end
    end
  end
  return true
end

-- ot.js's Range.transform with the is_own rule, on a unit-expanded operation.
local function ref_cursor(pos, op, is_own)
  local consumed, new = 0, 0
  local op2 = assert(ot.normalize(op))
  -- inserts at base position q move the cursor if q < pos, or q == pos and is_own;
  -- kept units before pos count once.
  for _, c in ipairs(op2) do
    if type(c) == "string" then
      if consumed < pos or (consumed == pos and is_own) then new = new + G.units(c) end
    elseif c > 0 then
      new = new + math.max(0, math.min(c, pos - consumed))
      consumed = consumed + c
    else
      consumed = consumed - c
    end
  end
  return new
end

-- The same module loaded as plain Lua 5.1 would run it: no FFI, no bit library.
local function load_plain()
  local chunk = assert(loadfile("lua/edgews/ot.lua"))
  local env = setmetatable({
    require = function(name)
      if name == "ffi" or name == "bit" then error("module '" .. name .. "' not found") end
      return require(name)
    end,
  }, { __index = _G })
  setfenv(chunk, env)
  return chunk()
end

-- Long documents (the FFI word scan runs for seeks of more than 32 units), edits
-- at random character boundaries and at random unit positions (inside a pair: must
-- be refused), with and without the length, against the reference model.
local function long_documents(impl, seed, iters)
  local r = G.rng(seed)
  for _ = 1, iters do
    local doc = G.doc(r, 2500)
    local bounds = G.boundaries(doc)
    local len = bounds[#bounds]
    local is_bound = {}
    for _, b in ipairs(bounds) do is_bound[b] = true end
    for _ = 1, 4 do
      local p = r:float() < 0.7 and r:pick(bounds) or r:int(0, len)
      local q = math.min(len, p + r:int(0, 80))
      if r:float() < 0.5 then q = r:pick(bounds) end
      if q < p then p, q = q, p end
      local op = assert(ot.normalize({ p, "[é😀]", -(q - p), len - q }))
      local want = ref_apply(doc, op)
      for _, l in ipairs { len, false } do
        local got, err = impl.apply(doc, op, l or nil)
        if is_bound[p] and is_bound[q] then
          assert.are.equal(want, got)
          local inv = assert(impl.invert(op, doc, l or nil))
          assert.are.equal(doc, impl.apply(got, inv))
        else
          assert.is_nil(got)
          assert.is_truthy(err:find("splits a surrogate pair", 1, true), err)
        end
      end
    end
  end
end

describe("edgews.ot", function()
  it("does what the README's examples say", function()
    assert.are.equal("a😀!b", ot.apply("a😀b", { 3, "!", 1 }))
    assert.are.same({ nil, "component 1: splits a surrogate pair" }, { ot.apply("a😀b", { 2, "!", 2 }) })
    assert.are.equal("ab", ot.apply("a😀b", { 1, -2, 1 }))
    assert.are.equal(4, ot.utf16_length("a😀b"))
    local op, base, target = ot.parse({ 5, "abc", -2 })
    assert.are.same({ 5, "abc", -2 }, op)
    assert.are.equal(7, base)
    assert.are.equal(8, target)
    assert.are.equal("a😀b", require("cjson").decode('["a\\ud83d\\ude00b"]')[1])
  end)

  describe("utf16_length", function()
    local valid = {
      { "", 0 }, { "abc", 3 }, { "é", 1 }, { "€", 1 }, { "😀", 2 }, { "a😀b", 4 },
      { "\0", 1 }, { "\194\128", 1 }, { "\223\191", 1 }, { "\224\160\128", 1 },
      { "\237\159\191", 1 }, { "\238\128\128", 1 }, { "\239\191\191", 1 },
      { "\240\144\128\128", 2 }, { "\244\143\191\191", 2 }, { "中文😀é", 5 },
    }
    for _, c in ipairs(valid) do
      it("counts " .. ("%q"):format(c[1]) .. " as " .. c[2] .. " units", function()
        assert.are.equal(c[2], ot.utf16_length(c[1]))
      end)
    end

    local invalid = {
      { "\128", "stray continuation byte" },
      { "a\191", "stray continuation byte after ASCII" },
      { "\192\128", "overlong NUL (C0 80)" },
      { "\193\191", "overlong (C1)" },
      { "\224\128\128", "overlong 3-byte" },
      { "\224\159\191", "overlong 3-byte (E0 9F)" },
      { "\240\128\128\128", "overlong 4-byte" },
      { "\240\143\191\191", "overlong 4-byte (F0 8F)" },
      { "\237\160\128", "encoded high surrogate U+D800" },
      { "\237\191\191", "encoded low surrogate U+DFFF" },
      { "\237\160\189\237\184\128", "CESU-8 surrogate pair" },
      { "\244\144\128\128", "above U+10FFFF" },
      { "\245\128\128\128", "F5 lead" },
      { "\255", "FF" },
      { "\226\130", "truncated 3-byte" },
      { "\240\159\152", "truncated 4-byte" },
      { "\195", "truncated 2-byte" },
      { "\195a", "2-byte lead then ASCII" },
      { "\226\40\161", "bad second byte" },
    }
    for _, c in ipairs(invalid) do
      it("rejects " .. c[2], function()
        local n, err = ot.utf16_length(c[1])
        assert.is_nil(n)
        assert.are.equal("invalid UTF-8", err)
      end)
    end

    it("raises for a non-string", function()
      assert.has_error(function() ot.utf16_length(1) end, "ot.utf16_length: string expected, got number")
    end)
  end)

  describe("apply", function()
    local cases = {
      { "", {}, "" },
      { "", { "abc" }, "abc" },
      { "abc", { 3 }, "abc" },
      { "abc", { -3 }, "" },
      { "abc", { 1, "X", 2 }, "aXbc" },
      { "abc", { 1, -1, 1 }, "ac" },
      { "abc", { -1, "Z", 2 }, "Zbc" },
      { "abc", { "Z", -1, 2 }, "Zbc" },
      { "abc", { 1, 1, 1, "!" }, "abc!" },
      { "a😀b", { 3, "X", 1 }, "a😀Xb" },   -- after "a😀" is position 3
      { "a😀b", { 1, -2, 1 }, "ab" },
      { "a😀b", { 1, "é", 3 }, "aé😀b" },
      { "😀😀", { 2, "x", 2 }, "😀x😀" },
      { "中文", { 1, "€", 1 }, "中€文" },
      { "héllo", { 1, -1, "e", 3 }, "hello" },
      { "x", { 1, "\244\143\191\191" }, "x\244\143\191\191" },
    }
    for _, c in ipairs(cases) do
      it(("%q + %s"):format(c[1], show(c[2])), function()
        assert.are.equal(c[3], ot.apply(c[1], c[2]))
        assert.are.equal(c[3], ot.apply(c[1], c[2], ot.utf16_length(c[1])))
        assert.are.equal(c[3], ref_apply(c[1], c[2]))
      end)
    end

    it("with the document's length, seeks from either end and through ASCII tails", function()
      local doc = string.rep("é", 100) .. string.rep("a", 100) .. "😀" .. string.rep("b", 50)
      local len = assert(ot.utf16_length(doc))
      assert.are.equal(252, len)
      for _, op in ipairs {
        { 50, "X", 202 }, { 150, "X", 102 }, { 200, -2, "Y", 50 }, { 202, "Z", 50 },
        { 251, "!", 1 }, { 252, "!" }, { 99, -3, 150 }, { -252 },
      } do
        assert.are.equal(ref_apply(doc, op), ot.apply(doc, op, len))
        assert.are.equal(ref_apply(doc, op), ot.apply(doc, op))
      end
      local _, err = ot.apply(doc, { 201, 51 }, len)
      assert.are.equal("component 1: splits a surrogate pair", err)
    end)

    it("raises for a wrong length rather than cut a character", function()
      local msg = "ot.apply: the document length passed is not the document's UTF-16 length"
      assert.has_error(function() ot.apply("aé", { 2, "x", 1 }, 3) end, msg)   -- "ASCII" tail
      assert.has_error(function() ot.apply("éa", { 1, "x", 2 }, 3) end, msg)
      assert.has_error(function() ot.apply("ab", { 6, "x", 4 }, 10) end, msg)  -- back past the start
      assert.has_error(function() ot.apply("ab", { 3, "x", 7 }, 10) end, msg)  -- on past the end
      assert.has_error(function() ot.apply("aéb", { 2, "x", 2 }, 4) end, msg)
      assert.has_error(function() ot.invert({ 2, "x", 1 }, "aé", 3) end,
        "ot.invert: the document length passed is not the document's UTF-16 length")
    end)

    it("raises for misuse", function()
      assert.has_error(function() ot.apply(nil, {}) end, "ot.apply: document must be a string, got nil")
      assert.has_error(function() ot.apply("a", { 1 }, -1) end)
      assert.has_error(function() ot.apply("a", { 1 }, 1.5) end)
      assert.has_error(function() ot.apply("a", { 1 }, "1") end)
      assert.has_error(function() ot.invert({ 1 }, 5) end, "ot.invert: document must be a string, got number")
      assert.has_error(function() ot.parse({ 1 }, 0 / 0) end)
    end)
  end)

  describe("invalid operations", function()
    -- { document, operation, message }
    local cases = {
      { "abc", "abc", "not an array" },
      { "abc", 3, "not an array" },
      { "abc", { 3, x = 1 }, "not an array" },
      { "abc", { 1, nil, 2 }, "not an array" },
      { "abc", { 3, true }, "component 2: unknown type" },
      { "abc", { {}, 3 }, "component 1: unknown type" },
      { "abc", { 3, 0 }, "component 2: empty" },
      { "abc", { -0, 3 }, "component 1: empty" },
      { "abc", { "", 3 }, "component 1: empty" },
      { "abc", { 1.5, 1.5 }, "component 1: not an integer" },
      { "abc", { 3, -0.5 }, "component 2: not an integer" },
      { "abc", { 0 / 0 }, "component 1: not an integer" },
      { "abc", { math.huge }, "component 1: not an integer" },
      { "abc", { -math.huge }, "component 1: not an integer" },
      { "abc", { 2 ^ 53 }, "component 1: too large" },
      { "abc", { -2 ^ 60 }, "component 1: too large" },
      { "abc", { 1e300 }, "component 1: too large" },
      { "abc", { 3, "\255" }, "component 2: invalid UTF-8" },
      { "abc", { 3, "\237\160\128" }, "component 2: invalid UTF-8" },
      { "abc", { 4 }, "component 1: retain past the end" },
      { "abc", { 2, "x", 2 }, "component 3: retain past the end" },
      { "abc", { 1, -3 }, "component 2: delete past the end" },
      { "abc", { 2 }, "base length 2 does not match document length 3" },
      { "abc", {}, "base length 0 does not match document length 3" },
      { "", { 1 }, "component 1: retain past the end" },
      { "a😀b", { 2, 2 }, "component 1: splits a surrogate pair" },
      { "a😀b", { 1, -1, 2 }, "component 2: splits a surrogate pair" },
      { "😀", { 1, "x", 1 }, "component 1: splits a surrogate pair" },
      { "😀", { -1, 1 }, "component 1: splits a surrogate pair" },
      { "😀", { 2, 1 }, "component 2: retain past the end" },
    }
    for _, c in ipairs(cases) do
      local name = show(c[2])
      it(("%q + %s: %s"):format(c[1], name, c[3]), function()
        local doc = c[1]
        local before = type(c[2]) == "table" and copy(c[2])
        local r, err = ot.apply(doc, c[2])
        assert.is_nil(r)
        assert.are.equal(c[3], err)
        r, err = ot.apply(doc, c[2], ot.utf16_length(doc))
        assert.is_nil(r)
        assert.are.equal(c[3], err)
        r, err = ot.invert(c[2], doc)
        assert.is_nil(r)
        assert.are.equal(c[3], err)
        if before then assert.are.equal(show(before), show(c[2])) end -- the operation is untouched
        assert.are.equal(c[1], doc)
      end)
    end

    it("parse checks against a length; the length-free functions check the rest", function()
      assert.are.same({ nil, "component 1: retain past the end" }, { ot.parse({ 4 }, 3) })
      assert.are.same({ nil, "base length 2 does not match document length 3" }, { ot.parse({ 2 }, 3) })
      assert.are.same({ nil, "component 2: empty" }, { ot.parse({ 1, "" }) })
      assert.are.same({ nil, "component 2: too large" }, { ot.parse({ 2 ^ 52, 2 ^ 52 }) })
      assert.are.same({ nil, "component 3: too large" }, { ot.target_length({ 2 ^ 52, "x", 2 ^ 52 }) })
      assert.are.same({ nil, "component 1: retain past the end" }, { ot.parse({ 2 ^ 52, 2 ^ 52 }, 3) })
      assert.are.same({ nil, "component 1: unknown type" }, { ot.base_length({ false }) })
      assert.are.same({ nil, "not an array" }, { ot.target_length("x") })
      assert.are.same({ nil, "first operation: component 1: empty" }, { ot.transform({ 0 }, { 1 }) })
      assert.are.same({ nil, "second operation: component 2: invalid UTF-8" },
        { ot.transform({ 1 }, { 1, "\192\128" }) })
      assert.are.same({ nil, "base lengths differ (1 and 2)" }, { ot.transform({ 1 }, { 2 }) })
      assert.are.same({ nil, "first operation: not an array" }, { ot.compose(nil, { 1 }) })
      assert.are.same({ nil, "target length 1 does not match base length 2" }, { ot.compose({ 1 }, { 2 }) })
      assert.are.same({ nil, "splits a surrogate pair inserted by the first operation" },
        { ot.compose({ "a😀" }, { 2, "x", 1 }) })
      assert.are.same({ nil, "splits a surrogate pair inserted by the first operation" },
        { ot.compose({ "😀b" }, { -1, 2 }) })
      assert.are.same({ nil, "component 1: not an integer" }, { ot.transform_cursor(0, { 0.5 }) })
    end)
  end)

  describe("canonical form", function()
    local cases = {
      { {}, {} },
      { { 1, 2 }, { 3 } },
      { { -1, -2, 3 }, { -3, 3 } },
      { { "a", "b" }, { "ab" } },
      { { -1, "a" }, { "a", -1 } },
      { { "a", -1, "b", -2, 1, "c" }, { "ab", -3, 1, "c" } },
      { { 2, -1, "x", -1, "y", 2, 2 }, { 2, "xy", -2, 4 } },
    }
    for _, c in ipairs(cases) do
      it(show(c[1]) .. " -> " .. show(c[2]), function()
        local op, base, target = ot.parse(c[1])
        assert.are.same(c[2], op)
        assert.are.equal(ot.base_length(c[1]), base)
        assert.are.equal(ot.target_length(c[1]), target)
        assert.are.same(c[2], ot.normalize(c[1]))
      end)
    end

    it("normalize drops empty components, parse rejects them", function()
      assert.are.same({ 3, "ab" }, ot.normalize({ 1, 0, 2, "", "a", -0, "b", "" }))
      assert.are.same({}, ot.normalize({ 0, "" }))
      assert.are.same({ nil, "component 2: empty" }, { ot.parse({ 1, 0 }) })
      assert.are.same({ nil, "component 1: not an integer" }, { ot.normalize({ 0.5 }) })
    end)

    it("parse returns a copy, lengths in UTF-16 units", function()
      local op = { 3, "😀é" }
      local p, base, target = ot.parse(op, 3)
      assert.are.same(op, p)
      assert.are_not.equal(op, p)
      assert.are.equal(3, base)
      assert.are.equal(6, target)
      assert.are.equal(3, ot.base_length({ 1, -2, "😀" }))
      assert.are.equal(3, ot.target_length({ 1, -2, "😀" }))
    end)

    it("is_noop", function()
      assert.is_true(ot.is_noop({}))
      assert.is_true(ot.is_noop({ 5 }))
      assert.is_true(ot.is_noop({ 2, 3 }))
      assert.is_false(ot.is_noop({ 2, "x" }))
      assert.is_false(ot.is_noop({ -1 }))
      assert.are.same({ nil, "component 1: empty" }, { ot.is_noop({ 0 }) })
    end)
  end)

  describe("transform", function()
    -- { document, a, b, a', b' }
    local cases = {
      { "abc", { 1, "x", 2 }, { 3, "y" }, { 1, "x", 3 }, { 4, "y" } },
      { "", { "a" }, { "b" }, { "a", 1 }, { 1, "b" } },            -- a's insert goes first
      { "ab", { 1, "😀", 1 }, { 1, "é", 1 }, { 1, "😀", 2 }, { 3, "é", 1 } },
      { "abc", { -3 }, { -3 }, {}, {} },
      { "abcd", { 1, -2, 1 }, { 2, -2 }, { 1, -1 }, { 1, -1 } },
      { "a😀b", { 1, -2, 1 }, { 3, "x", 1 }, { 1, -2, 2 }, { 1, "x", 1 } },
      { "abc", { -1, "Z", 2 }, { "Y", 3 }, { "Z", 1, -1, 2 }, { 1, "Y", 2 } }, -- input reordered
    }
    for _, c in ipairs(cases) do
      it(("%q: %s vs %s"):format(c[1], show(c[2]), show(c[3])), function()
        local a2, b2 = ot.transform(c[2], c[3])
        assert.are.same(c[4], a2)
        assert.are.same(c[5], b2)
        assert.are.equal(ot.apply(ot.apply(c[1], c[2]), b2), ot.apply(ot.apply(c[1], c[3]), a2))
      end)
    end

    it("the tie-break is by argument order", function()
      local a2, b2 = ot.transform({ 1, "A", 1 }, { 1, "B", 1 })
      assert.are.equal("xABy", ot.apply(ot.apply("xy", { 1, "A", 1 }), b2))
      assert.are.equal("xABy", ot.apply(ot.apply("xy", { 1, "B", 1 }), a2))
      local b3, a3 = ot.transform({ 1, "B", 1 }, { 1, "A", 1 })
      assert.are.equal("xBAy", ot.apply(ot.apply("xy", { 1, "A", 1 }), b3))
      assert.are.equal("xBAy", ot.apply(ot.apply("xy", { 1, "B", 1 }), a3))
    end)

    it("does not modify its arguments", function()
      local a, b = { -1, "x", 1, 1 }, { 1, 1, "y" }
      ot.transform(a, b)
      assert.are.same({ -1, "x", 1, 1 }, a)
      assert.are.same({ 1, 1, "y" }, b)
    end)
  end)

  describe("compose and invert", function()
    it("composes", function()
      assert.are.same({ "ab😀c" }, ot.compose({ "a😀c" }, { 1, "b", 3 }))
      assert.are.same({ 1, "Y", 2 }, ot.compose({ 1, "X", 2 }, { 1, "Y", -1, 2 }))
      assert.are.same({ 1, "Y", -1, 1 }, ot.compose({ 1, "X", 2 }, { 1, "Y", -1, -1, 1 }))
      assert.are.same({ -3 }, ot.compose({ -1, 2 }, { -2 }))
      assert.are.same({ "ac" }, ot.compose({ "a😀c" }, { 1, -2, 1 }))
      assert.are.same({ 2, "😀" }, ot.compose({ 2, "x😀" }, { 2, -1, 2 }))
      assert.are.same({}, ot.compose({}, {}))
    end)

    it("inverts", function()
      assert.are.same({ 1, -1, 1 }, ot.invert({ 1, "X", 1 }, "ab"))
      assert.are.same({ 1, "😀", -1, 1 }, ot.invert({ 1, "Z", -2, 1 }, "a😀b"))
      assert.are.same({ "中文" }, ot.invert({ -2 }, "中文"))
      assert.are.same({ 1, "😀", -1, 1 }, ot.invert({ 1, "Z", -2, 1 }, "a😀b", 4))
      local inv = ot.invert({ 1, -2, "Z", 1 }, "a😀b")
      assert.are.equal("a😀b", ot.apply(ot.apply("a😀b", { 1, -2, "Z", 1 }), inv))
    end)
  end)

  describe("cursors and selections", function()
    -- { position, operation, is_own = false result, is_own = true result }
    local cases = {
      { 0, { "ab", 2 }, 0, 2 },
      { 1, { 1, "ab", 1 }, 1, 3 },
      { 2, { 1, "ab", 1 }, 4, 4 },
      { 1, { 2, "ab" }, 1, 1 },
      { 2, { -1, 1 }, 1, 1 },
      { 2, { 1, -1 }, 1, 1 },
      { 3, { 1, -3, 1 }, 1, 1 },             -- inside a deleted span: its start
      { 3, { 1, "xy", -3, 1 }, 3, 3 },       -- replaced span: after the replacement
      { 4, { 1, "xy", -3, 1 }, 3, 3 },
      { 5, { 5, "😀" }, 5, 7 },
      { 2, { 1, "😀", 1, "é", 1 }, 4, 5 },
      { 0, {}, 0, 0 },
    }
    for _, c in ipairs(cases) do
      it(("%d through %s"):format(c[1], show(c[2])), function()
        assert.are.equal(c[3], ot.transform_cursor(c[1], c[2]))
        assert.are.equal(c[3], ot.transform_cursor(c[1], c[2], false))
        assert.are.equal(c[4], ot.transform_cursor(c[1], c[2], true))
      end)
    end

    it("rejects positions that are not in the document", function()
      assert.are.same({ nil, "position 4 out of range (0..3)" }, { ot.transform_cursor(4, { 3 }) })
      assert.are.same({ nil, "position -1 out of range (0..3)" }, { ot.transform_cursor(-1, { 3 }) })
      assert.are.same({ nil, "position is not an integer" }, { ot.transform_cursor(1.5, { 3 }) })
      assert.are.same({ nil, "position is not an integer" }, { ot.transform_cursor(0 / 0, { 3 }) })
      assert.are.same({ nil, "position is not an integer" }, { ot.transform_cursor("1", { 3 }) })
      assert.are.same({ nil, "position 1e+300 out of range (0..3)" }, { ot.transform_cursor(1e300, { 3 }) })
    end)

    it("transforms ranges and selections (ot.js's JSON)", function()
      assert.are.same({ anchor = 3, head = 6 }, ot.transform_range({ anchor = 1, head = 4 }, { "xy", 4 }))
      assert.are.same({ anchor = 1, head = 4 }, ot.transform_range({ anchor = 1, head = 2 }, { 2, "xy", 2 }, true))
      assert.are.same({ anchor = 1, head = 2 }, ot.transform_range({ anchor = 1, head = 2 }, { 2, "xy", 2 }, false))
      assert.are.same({ anchor = 4, head = 1 }, ot.transform_range({ anchor = 4, head = 1 }, { 4, "x" }))
      assert.are.same({ ranges = { { anchor = 0, head = 0 }, { anchor = 2, head = 1 } } },
        ot.transform_selection({ ranges = { { anchor = 0, head = 0 }, { anchor = 3, head = 1 } } }, { 1, -1, 2 }))
      assert.are.same({ ranges = { { anchor = 3, head = 3 } } },
        ot.transform_selection({ { anchor = 1, head = 1 } }, { "xy", 4 }))
      assert.are.same({ ranges = {} }, ot.transform_selection({ ranges = {} }, { 1 }))
      assert.are.same({ nil, "range is not a table" }, { ot.transform_range(1, { 1 }) })
      assert.are.same({ nil, "head: position 5 out of range (0..1)" },
        { ot.transform_range({ anchor = 0, head = 5 }, { 1 }) })
      assert.are.same({ nil, "anchor: position is not an integer" }, { ot.transform_range({ head = 0 }, { 1 }) })
      assert.are.same({ nil, "range 2: range is not a table" },
        { ot.transform_selection({ ranges = { { anchor = 0, head = 0 }, "x" } }, { 1 }) })
      assert.are.same({ nil, "selection is not a table" }, { ot.transform_selection(nil, { 1 }) })
      assert.are.same({ nil, "component 1: empty" }, { ot.transform_selection({}, { 0 }) })
    end)
  end)

  describe("long documents", function()
    it("seeks through long documents as the reference model does: 250 documents", function()
      long_documents(ot, 555, 250)
    end)

    it("assembles big results (64 KiB and more) as the small ones", function()
      local doc = string.rep("ab😀é中", 20000) -- 260,000 bytes
      local len = ot.utf16_length(doc)
      local op = { 7, "X", -3, len - 10 - 6, "YZ", 6, "W" }
      local want = ref_apply(doc, op)
      assert.are.equal(want, ot.apply(doc, op, len))
      assert.are.equal(want, ot.apply(doc, op))
      assert.are.equal(want, load_plain().apply(doc, op))
      assert.are.equal(doc, ot.apply(doc, { len }, len)) -- a no-op returns the document
    end)
  end)

  describe("without the FFI (the plain Lua path)", function()
    local plain = load_plain()

    it("seeks through long documents: 100 documents", function()
      long_documents(plain, 556, 100)
    end)

    it("TP1 and compose hold and the results equal the FFI path's: 600 random pairs", function()
      local r = G.rng(8080)
      for _ = 1, 600 do
        local doc, profile = G.doc(r, 40)
        local a, b = G.op(r, doc, profile, true), G.op(r, doc, profile, true)
        local a2, b2 = plain.transform(a, b)
        assert.are.same({ ot.transform(a, b) }, { a2, b2 })
        local da = plain.apply(doc, a)
        assert.are.equal(ot.apply(doc, a), da)
        assert.are.equal(plain.apply(da, b2), plain.apply(plain.apply(doc, b), a2))
        local c = G.op(r, da, profile, true)
        assert.are.equal(plain.apply(da, c), plain.apply(doc, plain.compose(a, c)))
      end
    end)
  end)

  describe("properties (fixed seeds)", function()
    it("TP1, apply against the reference model, canonical results: 3,000 random pairs", function()
      local r = G.rng(20240601)
      for iter = 1, 3000 do
        local doc, profile = G.doc(r, iter % 10 == 0 and 200 or 24)
        local a, b = G.op(r, doc, profile, true), G.op(r, doc, profile, true)
        local da, db = ot.apply(doc, a), ot.apply(doc, b)
        assert.are.equal(ref_apply(doc, a), da)
        assert.are.equal(ref_apply(doc, b), db)
        assert.are.equal(da, ot.apply(doc, a, ot.utf16_length(doc)))
        local a2, b2 = ot.transform(a, b)
        assert.is_truthy(a2, b2)
        assert.is_true(is_canonical(a2) and is_canonical(b2))
        assert.are.equal(ot.target_length(b), ot.base_length(a2))
        assert.are.equal(ot.target_length(a), ot.base_length(b2))
        local left, right = ot.apply(da, b2), ot.apply(db, a2)
        if left == nil or left ~= right then
          error(("TP1 failed at %d: doc %q a %s b %s"):format(iter, doc,
            show(a), show(b)))
        end
        assert.are.equal(ref_apply(da, b2), left)
        assert.are.equal(ot.utf16_length(left), ot.target_length(a2))
        assert.are.equal(ot.utf16_length(left), ot.target_length(b2))
      end
    end)

    it("compose agrees with sequential application; invert undoes: 2,000 random cases", function()
      local r = G.rng(77)
      for _ = 1, 2000 do
        local doc, profile = G.doc(r, 30)
        local a = G.op(r, doc, profile, true)
        local da = assert(ot.apply(doc, a))
        local b = G.op(r, da, profile, true)
        local dab = assert(ot.apply(da, b))
        local ab = assert(ot.compose(a, b))
        assert.is_true(is_canonical(ab))
        assert.are.equal(dab, ot.apply(doc, ab))
        local inv = assert(ot.invert(a, doc))
        assert.is_true(is_canonical(inv))
        assert.are.equal(doc, ot.apply(da, inv))
        assert.are.same(inv, ot.invert(a, doc, ot.utf16_length(doc)))
        -- the inverse of a composition undoes both
        assert.are.equal(doc, ot.apply(dab, ot.invert(ab, doc)))
        -- and inverting twice gives the canonical operation back
        assert.are.same(ot.normalize(a), ot.invert(inv, da))
      end
    end)

    it("cursors and ranges stay in range and follow ot.js's rule: 3,000 random cases", function()
      local r = G.rng(4242)
      for _ = 1, 3000 do
        local doc, profile = G.doc(r, 24)
        local op = G.op(r, doc, profile, true)
        local base, target = ot.base_length(op), ot.target_length(op)
        local bounds = G.boundaries(doc)
        local on_boundary = r:float() < 0.8
        local pos = on_boundary and r:pick(bounds) or r:int(0, base)
        for _, own in ipairs { false, true } do
          local p = ot.transform_cursor(pos, op, own)
          assert.is_true(p >= 0 and p <= target)
          assert.are.equal(ref_cursor(pos, op, own), p)
        end
        local anchor, head = r:int(0, base), r:int(0, base)
        local rg = ot.transform_range({ anchor = anchor, head = head }, op, true)
        assert.are.same({ anchor = ot.transform_cursor(anchor, op, true),
                          head = ot.transform_cursor(head, op, true) }, rg)
        assert.is_true(rg.anchor >= 0 and rg.anchor <= target and rg.head >= 0 and rg.head <= target)
        -- a cursor on a character boundary stays on one
        if on_boundary then
          local p = ot.transform_cursor(pos, op, r:float() < 0.5)
          local after = ot.apply(doc, op)
          local ok = false
          for _, q in ipairs(G.boundaries(after)) do ok = ok or q == p end
          assert.is_true(ok, "cursor inside a pair")
        end
      end
    end)

    it("every corrupted operation is rejected and the document is unchanged: 3,000 cases", function()
      local r = G.rng(9)
      local kinds = { "longer", "shorter", "bad utf8", "empty", "fraction", "split", "type", "nan" }
      local seen = {}
      for _ = 1, 3000 do
        local doc, profile = G.doc(r, 20, r:float() < 0.5 and G.PROFILES.emoji or nil)
        local op = G.op(r, doc, profile, false)
        local kind = r:pick(kinds)
        local bad = copy(op)
        local i = r:int(1, #bad + 1)
        local expect
        if kind == "longer" then
          table.insert(bad, i, r:pick { 1, -1, 3 })
          expect = { "past the end", "splits a surrogate pair" }
        elseif kind == "shorter" then
          local nums = {}
          for k, c in ipairs(bad) do if type(c) == "number" then nums[#nums + 1] = k end end
          if #nums == 0 then
            bad[#bad + 1] = 1
            expect = { "past the end" }
          else
            table.remove(bad, r:pick(nums))
            expect = { "does not match", "splits a surrogate pair" }
          end
        elseif kind == "bad utf8" then
          table.insert(bad, i, "x" .. r:pick { "\255", "\192\175", "\237\176\128", "\244\144\128\128", "\226\130" })
          expect = { "invalid UTF-8" }
        elseif kind == "empty" then
          table.insert(bad, i, r:pick { 0, -0, "" })
          expect = { "empty" }
        elseif kind == "fraction" then
          table.insert(bad, i, r:pick { 0.5, -1.25, 2 ^ 53 + 0.0, math.huge })
          expect = { "not an integer", "too large" }
        elseif kind == "nan" then
          table.insert(bad, i, 0 / 0)
          expect = { "not an integer" }
        elseif kind == "type" then
          table.insert(bad, i, r:pick { true, false, {}, print })
          expect = { "unknown type" }
        else -- split: a boundary moved into an astral character
          local u, at = 0, nil
          for _, ch in ipairs(G.chars(doc)) do
            if #ch == 4 then at = u; break end
            u = u + G.width(ch)
          end
          if not at then
            bad = "x"
            expect = { "not an array" }
          else
            local base = ot.utf16_length(doc)
            if r:float() < 0.5 then
              bad = { at + 1, base - at - 1 }
            else
              bad = at > 0 and { at, -1, base - at - 1 } or { -1, base - 1 }
            end
            expect = { "splits a surrogate pair" }
          end
        end
        local keep = type(bad) == "table" and copy(bad)
        local function expected(err)
          for _, e in ipairs(expect) do
            if err:find(e, 1, true) then return true end
          end
          return false
        end
        local res, err = ot.apply(doc, bad)
        assert.is_nil(res)
        assert.is_true(expected(err), ("%s: %s"):format(kind, err))
        res, err = ot.apply(doc, bad, ot.utf16_length(doc))
        assert.is_nil(res)
        assert.is_true(expected(err), ("%s (len): %s"):format(kind, err))
        if keep then assert.are.equal(show(keep), show(bad)) end
        seen[kind] = true
      end
      for _, k in ipairs(kinds) do assert.is_true(seen[k], k) end
    end)
  end)
end)
