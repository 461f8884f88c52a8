-- edgews.validate: validation of the fields of a decoded message.
--
--   local validate = require "edgews.validate"
--   local join = validate.compile {
--     room = { type = "string", required = true, max_length = 64, pattern = "^[%w_-]+$" },
--     limit = { type = "integer", min = 1, max = 100 },
--     mode = { enum = { "read", "write" } },
--     tags = { type = "array", max_length = 10, items = { type = "string", max_length = 32 } },
--     user = { type = "table", fields = { name = { type = "string", required = true } } },
--   }
--   local ok, errors = join:check(data)         -- or validate.check(data, schema)
--   -- errors = { { field = "room", error = "max_length", message = "room must be at most 64 bytes" }, ... }
--
-- A schema maps field names to rules. Rule keys:
--   type        "string" | "number" | "integer" | "boolean" | "table" | "array";
--               omitted: any type. "number" and "integer" reject NaN and +-inf;
--               "array" is a table whose keys are exactly 1..n ({} counts as
--               both an empty array and an empty table: JSON decoders cannot
--               tell [] from {}); "table" is any table.
--   required    true: the field must be present (nil or the JSON null given to
--               check() count as absent). Absent optional fields pass; an
--               optional field (of the schema or of a nested `fields` schema)
--               whose value is that JSON null is removed from the data
--               (set to nil), so the code after check() sees it absent. A null
--               array item stays in its array (removing it would shift the rest).
--   min_length, max_length   strings: length in bytes; arrays: number of items.
--   min, max    numbers: inclusive bounds.
--   enum        a list of allowed values (compared with ==).
--   pattern     a Lua pattern the string must match somewhere (string.find,
--               plain = false): anchor it with ^...$ to match the whole value.
--   fields      (type "table") a nested schema; errors name "user.name".
--   items       (type "array") a rule for every item; errors name "tags[0]"
--               (the index as in the JSON array: 0-based).
--
-- Error codes (the `error` field of each entry): "required", "type",
-- "min_length", "max_length", "min", "max", "enum", "pattern". Each field
-- reports at most one error, the first failing rule in the order type,
-- min_length, max_length, min, max, enum, pattern (length is checked before the
-- pattern runs, so max_length bounds the pattern's cost). Fields are checked in
-- name order, so the list is stable; it stops after MAX_ERRORS entries. A
-- value that is not a table fails with a single { field = "", error = "type" }.
-- Fields the schema does not name are ignored.
--
-- Design. A schema is a programming artefact, so mistakes in it (an unknown
-- rule key, a bad type name, max_length on a number, a malformed pattern) raise
-- when it is compiled, at load, with the level pointing at the caller. Data is
-- input, so check() never raises on it, whatever its shape. compile() turns the
-- schema into a sorted list of rules (enum as a set, error paths precomputed);
-- check() allocates nothing when the data is valid, except the index paths of
-- array items checked with `items`. check() also accepts a raw schema: it is compiled on
-- first use and cached by identity (weak keys), so do not mutate a schema after
-- using it.

local type, pairs, ipairs, error, tostring, setmetatable, getmetatable, pcall =
  type, pairs, ipairs, error, tostring, setmetatable, getmetatable, pcall
local math_floor, math_huge = math.floor, math.huge
local string_find, string_format = string.find, string.format
local table_sort, table_concat = table.sort, table.concat

local _M = {}

_M.MAX_ERRORS = 20

local Checker = {}
Checker.__index = Checker

local types = { string = true, number = true, integer = true, boolean = true, table = true, array = true }
local rule_keys = {
  type = true, required = true, min_length = true, max_length = true, min = true, max = true,
  enum = true, pattern = true, fields = true, items = true,
}
-- rule key -> the declared types it applies to
local needs = {
  min_length = { string = true, array = true }, max_length = { string = true, array = true },
  min = { number = true, integer = true }, max = { number = true, integer = true },
  pattern = { string = true }, fields = { table = true }, items = { array = true },
}

local function is_count(v)
  return type(v) == "number" and v >= 0 and v == math_floor(v) and v < math_huge
end

local function is_finite(v)
  return type(v) == "number" and v == v and v > -math_huge and v < math_huge
end

local compile_schema

-- rule table -> compiled rule. path: the field's name as reported in errors,
-- relative to the nearest enclosing array item ("user.name"; "" for an item
-- itself, ".name" for a field of an item); where: the same for schema errors.
local function compile_rule(rule, path, where, level)
  if type(rule) ~= "table" then
    error(string_format("validate: %s: rule must be a table, got %s", where, type(rule)), level)
  end
  for k in pairs(rule) do
    if not rule_keys[k] then
      error(string_format("validate: %s: unknown rule '%s'", where, tostring(k)), level)
    end
  end
  local t = rule.type
  if t ~= nil and not types[t] then
    error(string_format("validate: %s: unknown type '%s' (string, number, integer, boolean, table, array)",
      where, tostring(t)), level)
  end
  for k, allowed in pairs(needs) do
    if rule[k] ~= nil and not allowed[t] then
      local list = {}
      for a in pairs(allowed) do list[#list + 1] = a end
      table_sort(list)
      error(string_format("validate: %s: '%s' needs type %s", where, k, table_concat(list, " or ")), level)
    end
  end
  if rule.required ~= nil and type(rule.required) ~= "boolean" then
    error(string_format("validate: %s: required must be a boolean", where), level)
  end
  for _, k in ipairs { "min_length", "max_length" } do
    if rule[k] ~= nil and not is_count(rule[k]) then
      error(string_format("validate: %s: %s must be a non-negative integer", where, k), level)
    end
  end
  for _, k in ipairs { "min", "max" } do
    if rule[k] ~= nil and not is_finite(rule[k]) then
      error(string_format("validate: %s: %s must be a finite number", where, k), level)
    end
  end
  if rule.min_length and rule.max_length and rule.min_length > rule.max_length then
    error(string_format("validate: %s: min_length > max_length", where), level)
  end
  if rule.min and rule.max and rule.min > rule.max then
    error(string_format("validate: %s: min > max", where), level)
  end
  local c = {
    path = path, type = t, required = rule.required == true,
    min_length = rule.min_length, max_length = rule.max_length, min = rule.min, max = rule.max,
    pattern = rule.pattern,
  }
  if rule.pattern ~= nil then
    local p = rule.pattern
    if type(p) ~= "string" then
      error(string_format("validate: %s: pattern must be a string", where), level)
    end
    local ok, err = pcall(string_find, "", p)
    if not ok then
      error(string_format("validate: %s: bad pattern: %s", where, tostring(err)), level)
    end
  end
  if rule.enum ~= nil then
    local e = rule.enum
    if type(e) ~= "table" or e[1] == nil then
      error(string_format("validate: %s: enum must be a non-empty list", where), level)
    end
    local set, shown = {}, {}
    for i, v in ipairs(e) do
      if v ~= v then error(string_format("validate: %s: enum contains NaN", where), level) end
      set[v] = true
      shown[i] = tostring(v)
    end
    c.enum = set
    c.enum_text = table_concat(shown, ", ")
  end
  if rule.fields ~= nil then
    c.fields = compile_schema(rule.fields, path .. ".", where .. ".", level + 1)
  end
  if rule.items ~= nil then
    c.items = compile_rule(rule.items, "", where .. "[]", level + 1)
  end
  return c
end

-- schema -> list of compiled rules, sorted by name
compile_schema = function(schema, prefix, where, level)
  if type(schema) ~= "table" then
    error(string_format("validate: %s must be a table, got %s",
      where == "" and "schema" or ("fields of " .. where:sub(1, -2)), type(schema)), level)
  end
  local names = {}
  for k in pairs(schema) do
    if type(k) ~= "string" then
      error(string_format("validate: %sfield names must be strings, got %s", where, tostring(k)), level)
    end
    names[#names + 1] = k
  end
  table_sort(names)
  local list = {}
  for i, k in ipairs(names) do
    local r = compile_rule(schema[k], prefix .. k, where .. k, level + 1)
    r.name = k
    list[i] = r
  end
  return list
end

--- validate.compile(schema [, level]) -> checker
-- Raises on a bad schema; level (default 1) is relative to the caller, as for
-- error(): a function wrapping compile passes 2 to blame its own caller.
function _M.compile(schema, level)
  if getmetatable(schema) == Checker then return schema end
  level = (level or 1) + 1
  return setmetatable({ rules = compile_schema(schema, "", "", level + 1) }, Checker)
end

--- validate.is_checker(v) -> true if v was returned by compile
function _M.is_checker(v)
  return getmetatable(v) == Checker
end

local function is_array(t)
  local n = #t
  local count = 0
  for _ in pairs(t) do
    count = count + 1
    if count > n then return false end
  end
  return count == n
end

local type_text = {
  string = "a string", number = "a number", integer = "an integer", boolean = "a boolean",
  table = "an object", array = "an array",
}

local function type_ok(t, v)
  local vt = type(v)
  if t == "string" or t == "boolean" or t == "table" then return vt == t end
  if t == "number" then return is_finite(v) end
  if t == "integer" then return is_finite(v) and v == math_floor(v) end
  return vt == "table" and is_array(v) -- "array"
end

local check_list

-- Appends an error (the list is created on the first one). base: the path of
-- the enclosing array item ("" outside arrays), r.path: the rest.
local function add(errors, base, r, code, text)
  errors = errors or {}
  if #errors < _M.MAX_ERRORS then
    local field = base == "" and r.path or base .. r.path
    errors[#errors + 1] = { field = field, error = code, message = field .. text }
  end
  return errors
end

-- Checks one value against a compiled rule; returns errors (nil while none).
local function check_value(r, v, base, errors, null)
  if v == nil or (null ~= nil and v == null) then
    if r.required then return add(errors, base, r, "required", " is required") end
    return errors
  end
  local t = r.type
  if t and not type_ok(t, v) then
    return add(errors, base, r, "type", " must be " .. type_text[t])
  end
  local len
  if r.min_length or r.max_length then len = #v end
  if r.min_length and len < r.min_length then
    return add(errors, base, r, "min_length", string_format(" must be at least %d %s",
      r.min_length, t == "string" and "bytes" or "items"))
  end
  if r.max_length and len > r.max_length then
    return add(errors, base, r, "max_length", string_format(" must be at most %d %s",
      r.max_length, t == "string" and "bytes" or "items"))
  end
  if r.min and v < r.min then
    return add(errors, base, r, "min", string_format(" must be at least %.14g", r.min))
  end
  if r.max and v > r.max then
    return add(errors, base, r, "max", string_format(" must be at most %.14g", r.max))
  end
  if r.enum and not r.enum[v] then
    return add(errors, base, r, "enum", " must be one of: " .. r.enum_text)
  end
  if r.pattern and not string_find(v, r.pattern) then
    return add(errors, base, r, "pattern", " has an invalid format")
  end
  if r.fields then
    errors = check_list(r.fields, v, base, errors, null)
  end
  local items = r.items
  if items then
    local path = base .. r.path
    for i = 1, #v do
      if errors and #errors >= _M.MAX_ERRORS then break end
      errors = check_value(items, v[i], path .. "[" .. (i - 1) .. "]", errors, null)
    end
  end
  return errors
end

check_list = function(rules, data, base, errors, null)
  for i = 1, #rules do
    local r = rules[i]
    local v = data[r.name]
    if null ~= nil and v == null and not r.required then
      -- an optional field sent as JSON null is absent: the handler sees nil, as
      -- when the client left it out (not a null it would pass on, e.g. as an epoch)
      data[r.name] = nil
      v = nil
    end
    errors = check_value(r, v, base, errors, null)
    if errors and #errors >= _M.MAX_ERRORS then break end
  end
  return errors
end

--- checker:check(data [, null]) -> true | nil, errors
-- null: the decoder's JSON null value (cjson.null), treated as absent: optional
-- fields holding it are set to nil in data.
function Checker:check(data, null)
  if type(data) ~= "table" then
    return nil, { { field = "", error = "type", message = "the message must be an object" } }
  end
  local errors = check_list(self.rules, data, "", nil, null)
  if errors then return nil, errors end
  return true
end
Checker.__call = Checker.check

local cache = setmetatable({}, { __mode = "k" })

--- validate.check(data, schema [, null]) -> true | nil, errors
-- schema: a checker or a raw schema (compiled once and cached).
function _M.check(data, schema, null)
  local c = schema
  if getmetatable(c) ~= Checker then
    c = cache[schema]
    if not c then
      c = _M.compile(schema, 2)
      cache[schema] = c
    end
  end
  return c:check(data, null)
end

return _M
