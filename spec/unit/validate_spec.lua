-- Unit specs for lua/edgews/validate.lua: each rule, error entries, nested
-- fields and array items, schema mistakes raising at compile (with the
-- caller's line), and bad data never raising.
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local validate = require "edgews.validate"

local function errors_of(schema, data, null)
  local ok, errors = validate.check(data, schema, null)
  if ok then return {} end
  assert.is_nil(ok)
  return errors
end

-- the { field, error } pairs of the errors
local function codes(schema, data, null)
  local out = {}
  for i, e in ipairs(errors_of(schema, data, null)) do
    assert.are.equal("string", type(e.message))
    out[i] = e.field .. ":" .. e.error
  end
  return out
end

describe("edgews.validate", function()
  describe("rules", function()
    it("passes valid data with true and no errors", function()
      local ok, errors = validate.check({ a = "x", n = 3 }, { a = { type = "string" }, n = { type = "integer" } })
      assert.is_true(ok)
      assert.is_nil(errors)
    end)

    it("required: absent, and the JSON null given to check, fail; optional absent passes", function()
      local NULL = {}
      local schema = { a = { required = true }, b = { type = "string" } }
      assert.are.same({ "a:required" }, codes(schema, {}))
      assert.are.same({ "a:required" }, codes(schema, { a = NULL }, NULL))
      assert.are.same({}, codes(schema, { a = false }))         -- false is present
      assert.are.same({}, codes(schema, { a = 1, b = NULL }, NULL)) -- null optional = absent
      assert.are.same({ { field = "a", error = "required", message = "a is required" } },
        errors_of(schema, {}))
    end)

    it("removes an optional field sent as the JSON null, so the caller sees it absent", function()
      local NULL = {}
      local schema = {
        room = { type = "string", required = true },
        epoch = { type = "string", max_length = 16 },
        user = { type = "table", fields = { name = { type = "string" } } },
        tags = { type = "array", items = { type = "string" } },
      }
      local data = { room = "r", epoch = NULL, user = { name = NULL }, tags = { "a", NULL } }
      assert.is_true(validate.check(data, schema, NULL))
      assert.is_nil(data.epoch)                 -- a handler passing it on passes nil
      assert.is_nil(data.user.name)             -- nested fields too
      assert.are.equal(NULL, data.tags[2])      -- array items keep their place
      assert.are.equal("r", data.room)
      -- a required field sent as null still fails, and is left as sent
      local bad = { room = NULL }
      assert.are.same({ "room:required" }, codes(schema, bad, NULL))
      assert.are.equal(NULL, bad.room)
      -- without a null value given, nothing is treated as null
      local plain = { room = "r", epoch = false }
      assert.are.same({ "epoch:type" }, codes(schema, plain))
    end)

    local type_cases = {
      { "string", "x", { 1, true, {} } },
      { "number", 1.5, { "1", true, {}, 0 / 0, math.huge, -math.huge } },
      { "integer", -3, { 1.5, "1", 0 / 0, math.huge } },
      { "boolean", false, { 0, "true", {} } },
      { "table", { a = 1 }, { "x", 1, true } },
      { "array", { 1, 2, 3 }, { { a = 1 }, { 1, nil, 3 }, { 1, x = 2 }, "x" } },
    }
    for _, c in ipairs(type_cases) do
      it("type " .. c[1] .. ": accepts its type, rejects others", function()
        local schema = { f = { type = c[1] } }
        assert.are.same({}, codes(schema, { f = c[2] }))
        for _, bad in ipairs(c[3]) do
          assert.are.same({ "f:type" }, codes(schema, { f = bad }), c[1] .. " vs " .. tostring(bad))
        end
      end)
    end

    it("type messages name the expected type", function()
      assert.are.equal("f must be an integer", errors_of({ f = { type = "integer" } }, { f = "1" })[1].message)
      assert.are.equal("f must be an array", errors_of({ f = { type = "array" } }, { f = 1 })[1].message)
    end)

    it("an empty table is both an array and a table (JSON [] and {} decode alike)", function()
      assert.are.same({}, codes({ f = { type = "array" }, g = { type = "table" } }, { f = {}, g = {} }))
    end)

    it("max_length / min_length count bytes of strings and items of arrays", function()
      local s = { f = { type = "string", min_length = 2, max_length = 4 } }
      assert.are.same({}, codes(s, { f = "ab" }))
      assert.are.same({}, codes(s, { f = "abcd" }))
      assert.are.same({ "f:min_length" }, codes(s, { f = "a" }))
      assert.are.same({ "f:max_length" }, codes(s, { f = "abcde" }))
      assert.are.same({ "f:max_length" }, codes(s, { f = "éé!" })) -- 5 bytes
      assert.are.equal("f must be at most 4 bytes", errors_of(s, { f = "abcde" })[1].message)
      local a = { f = { type = "array", min_length = 1, max_length = 2 } }
      assert.are.same({}, codes(a, { f = { 1, 2 } }))
      assert.are.same({ "f:min_length" }, codes(a, { f = {} }))
      assert.are.same({ "f:max_length" }, codes(a, { f = { 1, 2, 3 } }))
      assert.are.equal("f must be at most 2 items", errors_of(a, { f = { 1, 2, 3 } })[1].message)
    end)

    it("min / max bound numbers inclusively", function()
      local s = { f = { type = "number", min = -1, max = 2.5 } }
      assert.are.same({}, codes(s, { f = -1 }))
      assert.are.same({}, codes(s, { f = 2.5 }))
      assert.are.same({ "f:min" }, codes(s, { f = -1.01 }))
      assert.are.same({ "f:max" }, codes(s, { f = 3 }))
      assert.are.equal("f must be at most 2.5", errors_of(s, { f = 3 })[1].message)
    end)

    it("enum allows only the listed values", function()
      local s = { f = { enum = { "read", "write", 3 } } }
      assert.are.same({}, codes(s, { f = "read" }))
      assert.are.same({}, codes(s, { f = 3 }))
      assert.are.same({ "f:enum" }, codes(s, { f = "READ" }))
      assert.are.same({ "f:enum" }, codes(s, { f = {} }))
      assert.are.same({ "f:enum" }, codes(s, { f = 0 / 0 }))
      assert.are.equal("f must be one of: read, write, 3", errors_of(s, { f = "x" })[1].message)
    end)

    it("pattern matches with string.find (anchor it for a full match)", function()
      assert.are.same({}, codes({ f = { type = "string", pattern = "%d" } }, { f = "ab1" }))
      local s = { f = { type = "string", pattern = "^[%w_-]+$" } }
      assert.are.same({}, codes(s, { f = "room_1-a" }))
      assert.are.same({ "f:pattern" }, codes(s, { f = "room 1" }))
      assert.are.same({ "f:pattern" }, codes(s, { f = "" }))
    end)

    it("reports one error per field, the first failing rule, length before pattern", function()
      local s = { f = { type = "string", max_length = 3, pattern = "^%d+$" } }
      assert.are.same({ "f:max_length" }, codes(s, { f = "abcdef" }))
      assert.are.same({ "f:pattern" }, codes(s, { f = "abc" }))
      assert.are.same({ "f:type" }, codes(s, { f = 12 }))
    end)

    it("lists every failing field, sorted by name", function()
      local s = { c = { type = "string" }, a = { required = true }, b = { type = "integer" } }
      assert.are.same({ "a:required", "b:type", "c:type" }, codes(s, { b = 1.5, c = 1 }))
    end)

    it("ignores fields the schema does not name", function()
      assert.are.same({}, codes({ a = { type = "string" } }, { a = "x", type = "join", extra = { 1 } }))
    end)

    it("nested fields report dotted paths", function()
      local s = { user = { type = "table", required = true, fields = {
        name = { type = "string", required = true },
        age = { type = "integer", min = 0 },
      } } }
      assert.are.same({}, codes(s, { user = { name = "ann", age = 3 } }))
      assert.are.same({ "user.age:min", "user.name:required" }, codes(s, { user = { age = -1 } }))
      assert.are.same({ "user:type" }, codes(s, { user = "ann" }))
    end)

    it("items check every array item, with 0-based index paths", function()
      local s = { tags = { type = "array", max_length = 5, items = { type = "string", max_length = 3 } },
        pts = { type = "array", items = { type = "table", fields = { x = { type = "number", required = true } } } } }
      assert.are.same({}, codes(s, { tags = { "a", "bc" }, pts = { { x = 1 } } }))
      assert.are.same({ "pts[1].x:required", "tags[0]:max_length", "tags[2]:type" },
        codes(s, { tags = { "abcd", "ok", 5 }, pts = { { x = 1 }, {} } }))
    end)

    it("stops after MAX_ERRORS errors", function()
      local s = { f = { type = "array", items = { type = "string" } } }
      local many = {}
      for i = 1, 1000 do many[i] = i end
      assert.are.equal(validate.MAX_ERRORS, #errors_of(s, { f = many }))
    end)
  end)

  describe("bad data never raises", function()
    local schema = validate.compile {
      s = { type = "string", required = true, min_length = 1, max_length = 5, pattern = "^%a+$" },
      n = { type = "number", min = 0, max = 10 },
      e = { enum = { "a", "b" } },
      t = { type = "table", fields = { x = { type = "integer" } } },
      a = { type = "array", max_length = 3, items = { type = "table", fields = { y = { type = "string" } } } },
      any = {},
    }
    local values = { "x", "", 0, -1, 1e300, 0 / 0, math.huge, true, false, {}, { 1, 2 }, { x = "no" },
      { { y = 1 }, "z" }, function() end, coroutine.create(function() end), io.stdout }
    it("for any value of any field, and for non-table data", function()
      for _, data in ipairs { nil, 1, "str", true, function() end } do
        local ok, errors = schema:check(data)
        assert.is_nil(ok)
        assert.are.same({ { field = "", error = "type", message = "the message must be an object" } }, errors)
      end
      local n = 0
      for _, field in ipairs { "s", "n", "e", "t", "a", "any" } do
        for _, v in ipairs(values) do
          local ok, res = pcall(schema.check, schema, { [field] = v, s = field == "s" and v or "ok" })
          assert.is_true(ok, "raised on " .. field .. " = " .. tostring(v) .. ": " .. tostring(res))
          n = n + 1
        end
      end
      assert.is_true(n > 90)
    end)
  end)

  describe("compile", function()
    it("returns a checker usable as checker:check, checker(...) and validate.check", function()
      local c = validate.compile { a = { type = "string", required = true } }
      assert.is_true(validate.is_checker(c))
      assert.is_true(c:check({ a = "x" }))
      assert.is_true(c({ a = "x" }))
      assert.is_true(validate.check({ a = "x" }, c))
      assert.is_nil(c:check({}))
      assert.are.equal(c, validate.compile(c)) -- compiling a checker is a no-op
    end)

    it("compiles a raw schema given to check only once", function()
      local schema = { a = { type = "string" } }
      assert.is_true(validate.check({ a = "x" }, schema))
      schema.a.type = "number" -- mutation after first use is not seen (documented)
      assert.is_true(validate.check({ a = "x" }, schema))
    end)

    local bad = {
      { "a non-table schema", "x", "schema must be a table" },
      { "a non-string field name", { [1] = { type = "string" } }, "field names must be strings" },
      { "a non-table rule", { a = "string" }, "a: rule must be a table" },
      { "an unknown rule key", { a = { type = "string", maxlen = 3 } }, "a: unknown rule 'maxlen'" },
      { "an unknown type", { a = { type = "str" } }, "a: unknown type 'str'" },
      { "max_length on a number", { a = { type = "number", max_length = 3 } }, "a: 'max_length' needs type" },
      { "min without a type", { a = { min = 3 } }, "a: 'min' needs type" },
      { "pattern on an array", { a = { type = "array", pattern = "x" } }, "a: 'pattern' needs type" },
      { "a negative max_length", { a = { type = "string", max_length = -1 } }, "max_length must be" },
      { "a fractional min_length", { a = { type = "string", min_length = 1.5 } }, "min_length must be" },
      { "a NaN min", { a = { type = "number", min = 0 / 0 } }, "min must be a finite number" },
      { "min > max", { a = { type = "number", min = 2, max = 1 } }, "min > max" },
      { "min_length > max_length", { a = { type = "string", min_length = 2, max_length = 1 } },
        "min_length > max_length" },
      { "a non-boolean required", { a = { required = "yes" } }, "required must be a boolean" },
      { "an empty enum", { a = { enum = {} } }, "enum must be a non%-empty list" },
      { "a malformed pattern", { a = { type = "string", pattern = "[a" } }, "a: bad pattern" },
      { "a non-string pattern", { a = { type = "string", pattern = 5 } }, "pattern must be a string" },
      { "an unknown key in nested fields", { u = { type = "table", fields = { n = { typ = "string" } } } },
        "u.n: unknown rule 'typ'" },
      { "deeper nesting", { u = { type = "table", fields = { v = { type = "table", fields = {
        w = { type = "string", bogus = true } } } } } }, "u.v.w: unknown rule 'bogus'" },
      { "an unknown key in items", { t = { type = "array", items = { type = "string", len = 1 } } },
        "t%[%]: unknown rule 'len'" },
      { "fields of items", { t = { type = "array", items = { type = "table", fields = { x = { nope = 1 } } } } },
        "t%[%]%.x: unknown rule 'nope'" },
      { "non-table fields", { u = { type = "table", fields = 3 } }, "fields of u must be a table" },
    }
    for _, b in ipairs(bad) do
      it("raises for " .. b[1] .. ", at the caller's line", function()
        local ok, err = pcall(function() local c = validate.compile(b[2]); return c end)
        assert.is_false(ok)
        assert.matches("validate_spec.lua:%d+: validate: .*" .. b[3], err)
      end)
    end

    it("raises at the caller's line from check with a bad raw schema", function()
      local ok, err = pcall(function() local r = validate.check({}, { a = { tpye = "string" } }); return r end)
      assert.is_false(ok)
      assert.matches("validate_spec.lua:%d+: validate: a: unknown rule 'tpye'", err)
    end)

    it("blames the given level (for wrappers)", function()
      local function wrapper(schema) local c = validate.compile(schema, 2); return c end
      local blamed
      local ok, err = pcall(function()
        blamed = debug.getinfo(1, "l").currentline + 1
        local c = wrapper({ a = { x = 1 } }) -- this line is blamed
        return c
      end)
      assert.is_false(ok)
      assert.are.equal(blamed, tonumber(err:match("validate_spec.lua:(%d+):")))
    end)
  end)
end)
