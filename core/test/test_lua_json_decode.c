/* test_lua_json_decode.c — the message path's JSON decoder (lua/json_decode.h) against
 * lua-cjson itself: for hand-picked inputs (numbers, unicode, escapes, empty arrays and
 * objects, nulls, duplicate keys, deep nesting, every kind of invalid text) and for
 * thousands of generated documents and their truncated and byte-flipped mutants, the
 * decoder returns exactly what cjson.safe.decode returns: the same value types, the
 * same numbers bit for bit (-0 included), the same strings, cjson.null for null, the
 * same error message, and tables whose pairs() visit the fields in the same order (also
 * after a script adds fields: the tables have the same size).
 * It also checks the fast path is taken for strict JSON (it must not pass by handing
 * everything to cjson), and that the scan (ews_json_scan_type), on every one of those
 * texts, names a type only when the decoder itself builds an object whose "type" is
 * that string, and names it for the messages a router routes. */
#include <lauxlib.h>
#include <lualib.h>

#include "lua/json_decode.h"
#include "test.h"

static const char *script =
    "local cjson = require 'cjson.safe'\n"
    "local make, scan = ...\n"
    "local fallbacks = 0\n"
    "local fast = make(function(...) fallbacks = fallbacks + 1; return cjson.decode(...) end)\n"
    "local fmt = string.format\n"
    "local function same(a, b, path)\n"
    "  if type(a) ~= type(b) then return false, path .. ': ' .. type(a) .. ' vs ' .. type(b) end\n"
    "  if type(a) == 'number' then\n"
    "    if fmt('%.17g', a) ~= fmt('%.17g', b) or (a == 0 and 1 / a ~= 1 / b) then\n"
    "      return false, path .. ': ' .. fmt('%.17g vs %.17g', a, b) end\n"
    "    return true\n"
    "  end\n"
    "  if type(a) ~= 'table' then\n"
    "    if a ~= b then return false, path .. ': ' .. tostring(a) .. ' vs ' .. tostring(b) end\n"
    "    return true\n"
    "  end\n"
    "  if getmetatable(a) ~= getmetatable(b) then return false, path .. ': metatable' end\n"
    "  local ka, kb = next(a), next(b)\n"
    "  while ka ~= nil or kb ~= nil do\n"
    "    if ka ~= kb then return false, path .. ': pairs order ' .. tostring(ka) .. ' vs ' .. tostring(kb) end\n"
    "    local ok, why = same(a[ka], b[kb], path .. '.' .. tostring(ka))\n"
    "    if not ok then return false, why end\n"
    "    ka, kb = next(a, ka), next(b, kb)\n"
    "  end\n"
    "  if #a ~= #b then return false, path .. ': length' end\n"
    "  -- the same size too: fields a script adds later land in the same order\n"
    "  for i = 1, 9 do a['+' .. i], b['+' .. i] = i, i end\n"
    "  for i = 1, 3 do if a[i] == nil then a[i], b[i] = i, i end end\n"
    "  ka, kb = next(a), next(b)\n"
    "  while ka ~= nil or kb ~= nil do\n"
    "    if ka ~= kb then return false, path .. ': pairs order after adding fields ' .. tostring(ka) .. ' vs ' .. tostring(kb) end\n"
    "    ka, kb = next(a, ka), next(b, kb)\n"
    "  end\n"
    "  return true\n"
    "end\n"
    "local function check(s)\n"
    "  local a = { pcall(fast, s) }\n"
    "  local b = { pcall(cjson.decode, s) }\n"
    "  if #a ~= #b then return false, 'result count for ' .. fmt('%q', s) end\n"
    "  for i = 1, math.max(#a, #b) do\n"
    "    local ok, why = same(a[i], b[i], 'result ' .. i)\n"
    "    if not ok then return false, why .. ' for ' .. fmt('%q', s) end\n"
    "  end\n"
    "  return true\n"
    "end\n"
    "local failures = {}\n"
    "local named = 0 -- texts the scan named a type for\n"
    "local function expect(s, strict)\n"
    "  local before = fallbacks\n"
    "  local ok, why = check(s)\n"
    "  if not ok then failures[#failures + 1] = why end\n"
    "  if strict and fallbacks ~= before then failures[#failures + 1] = 'fell back on ' .. fmt('%q', s) end\n"
    "  local t = scan(s)\n"
    "  if t ~= nil then\n"
    "    named = named + 1\n"
    "    before = fallbacks\n"
    "    local v = fast(s)\n"
    "    if fallbacks ~= before or type(v) ~= 'table' or v.type ~= t or v[1] ~= nil then\n"
    "      failures[#failures + 1] = 'scan named ' .. fmt('%q', t) .. ' for ' .. fmt('%q', s)\n"
    "    end\n"
    "  end\n"
    "  return t\n"
    "end\n"
    /* the scan: what it names, and where it leaves the text to the decoder */
    "local function scans(s, want)\n"
    "  local t = expect(s, false)\n"
    "  if t ~= want then failures[#failures + 1] = 'scan of ' .. fmt('%q', s) .. ': ' .. tostring(t) .. ' vs ' .. tostring(want) end\n"
    "end\n"
    "scans('{\"type\":\"echo\",\"v\":12,\"d\":\"xyz\"}', 'echo')\n"
    "scans(' {\"a\":[1,{\"type\":\"in\"}],\"type\" : \"chat:message\", \"b\":{}} ', 'chat:message')\n"
    "scans('{\"type\":\"\"}', '')\n"
    "scans('{\"type\":\"a\",\"type\":\"b\"}', 'b')\n"
    "scans('{\"type\":1,\"type\":\"b\"}', 'b')\n"
    "scans('{\"type\":\"a\",\"type\":1}', nil)\n"
    "scans('{\"type\":null}', nil)\n"
    "scans('{\"type\":[\"a\"]}', nil)\n"
    "scans('{\"type\":\"a\\\\u0062\"}', nil)\n"
    "scans('{\"typ\\\\u0065\":\"x\"}', nil)\n"
    "scans('{\"type\":\"a\",\"x\\\\n\":1}', nil)\n"
    "scans('{\"x\":{\"type\":\"a\"}}', nil)\n"
    "scans('[{\"type\":\"a\"}]', nil)\n"
    "scans('{\"types\":\"a\",\"typ\":\"b\"}', nil)\n"
    "scans('{\"type\":\"a\"} x', nil)\n"
    "scans('{\"type\":\"a\",}', nil)\n"
    "scans('{\"type\":\"a\",\"n\":0x10}', nil)\n"
    "scans('{\"type\":\"a\",\"n\":1e999}', 'a')\n"
    "scans('{\"type\":\"a\",\"s\":\"\\\\ud83d\\\\ude00\"}', nil)\n"
    "scans('{\"type\":\"a\",\"n\":1.000000000000000000000000000000000000000000000000000000000000000001}', nil)\n"
    "scans('{\"type\":\"a\",\"d\":' .. string.rep('[', 63) .. string.rep(']', 63) .. '}', 'a')\n"
    "scans('{\"type\":\"a\",\"d\":' .. string.rep('[', 64) .. string.rep(']', 64) .. '}', nil)\n"
    "scans('{}', nil)\n"
    /* strict JSON: decoded by the fast path */
    "local strict = {\n"
    "  '{}', '[]', ' { } ', '[[]]', '{\"a\":[]}', '{\"a\":{}}', '[{}]', '0', '-0', '1', '-1',\n"
    "  '123456789012345', '-123456789012345', '1234567890123456', '12345678901234567890',\n"
    "  '9007199254740993', '1.5', '-1.5e10', '1E2', '1e-7', '0.1', '2.2250738585072014e-308',\n"
    "  '1.7976931348623157e308', '1e400', '-1e400', '4.9e-324', '1e-400', '0e0', '-0.0',\n"
    "  'true', 'false', 'null', '[null]', '{\"a\":null}', '[1,null,3]', '\"\"', '\"abc\"',\n"
    "  '\"\\\\\\\"\\\\/\\\\b\\\\f\\\\n\\\\r\\\\t\"', '\"\\\\u00e9\\\\u20AC\\\\u0041\\\\u07ff\\\\u0800\\\\uffff\"',\n"
    "  '\"caf\\195\\169 \\226\\130\\172 \\240\\159\\152\\128\"', '{\"a\":1,\"a\":2}', '{\"\":1}',\n"
    "  '{\"type\":\"echo\",\"v\":12,\"d\":\"xyz\"}', '[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17]',\n"
    "  '{\"b\":1,\"a\":2,\"c\":3,\"e\":4,\"d\":5,\"f\":6,\"g\":7,\"h\":8,\"i\":9}',\n"
    "  ' \\n\\r\\t[ 1 , 2 ]\\t\\r\\n ', '[\"a\\\\u0022b\"]', '{\"1\":1,\"2\":2}',\n"
    "}\n"
    "for _, s in ipairs(strict) do expect(s, true) end\n"
    /* not strict or not valid: cjson's own answer (its leniencies and its errors) */
    "local other = {\n"
    "  '', ' ', '{', '}', '[', ']', '{\"a\"}', '{\"a\":}', '{\"a\":1,}', '[1,]', '[,1]', '{,}',\n"
    "  '{a:1}', \"{'a':1}\", '01', '-01', '1.', '.5', '1e', '1e+', '+1', '-', '--1', '0x10',\n"
    "  'inf', '-inf', 'nan', 'Infinity', 'NaN', 'tru', 'truex', 'nul', 'nullx', 'falsey',\n"
    "  '\"abc', '\"a\\\\x\"', '\"\\\\u12\"', '\"\\\\u12G4\"', '\"\\\\ud83d\\\\ude00\"', '\"\\\\ud83d\"',\n"
    "  '\"\\\\ude00\"', '\"\\\\u0000\"', '\"a\\tb\"', '\"a\\nb\"', '\"a\\0b\"', '[1 2]', '{\"a\":1 \"b\":2}',\n"
    "  '{} {}', '[] x', '1 2', '\\239\\187\\191{}', '/* c */ {}', '[1]]', '{\"a\":[}', '[\"a\":1]',\n"
    "  '{\"a\":1}}', '1.5x', '[1.5e3.2]', '[-]', '[true false]', '{\"a\":1]', '[1}', '[{]}',\n"
    "}\n"
    "for _, s in ipairs(other) do expect(s, false) end\n"
    "expect(string.rep('[', 64) .. string.rep(']', 64), true)\n"
    "expect(string.rep('[', 65) .. string.rep(']', 65), false)\n"
    "expect(string.rep('[', 1001) .. string.rep(']', 1001), false)\n"
    "expect(string.rep('{\"a\":', 200) .. '1' .. string.rep('}', 200), false)\n"
    /* generated documents and their mutants */
    "local seed = 12345\n"
    "local function rnd(n) seed = (seed * 1103515245 + 12345) % 2147483648; return seed % n end\n"
    "local pieces = { 'a', 'b', 'z', ' ', '\\195\\169', '\\226\\130\\172', '\\\\n', '\\\\\"', '\\\\\\\\',\n"
    "  '\\\\u00e9', '\\\\u4e2d', '\\\\/', '\\\\t', 'x y', '0', '{', '[' }\n"
    "local function gen_string()\n"
    "  local t = {}\n"
    "  for i = 1, rnd(8) do t[i] = pieces[rnd(#pieces) + 1] end\n"
    "  return '\"' .. table.concat(t) .. '\"'\n"
    "end\n"
    "local nums = { '0', '-0', '7', '-42', '3.25', '1e3', '-2.5E-3', '123456789012345678',\n"
    "  '0.30000000000000004', '1e308', '5e-324', '999999999999999' }\n"
    "local function gen(depth)\n"
    "  local k = rnd(depth > 4 and 5 or 7)\n"
    "  if k == 0 then return nums[rnd(#nums) + 1] end\n"
    "  if k == 1 then return gen_string() end\n"
    "  if k == 2 then return ({ 'true', 'false', 'null' })[rnd(3) + 1] end\n"
    "  if k == 3 then return tostring(rnd(100000)) end\n"
    "  if k == 4 then return gen_string() end\n"
    "  local ws = ({ '', ' ', '\\n ' })[rnd(3) + 1]\n"
    "  local t = {}\n"
    "  if k == 5 then\n"
    "    for i = 1, rnd(6) do t[i] = gen(depth + 1) end\n"
    "    return '[' .. ws .. table.concat(t, ',' .. ws) .. ']'\n"
    "  end\n"
    "  for i = 1, rnd(9) do t[i] = (rnd(3) == 0 and '\"type\"' or gen_string()) .. ws .. ':' .. gen(depth + 1) end\n"
    "  return '{' .. ws .. table.concat(t, ',' .. ws) .. ws .. '}'\n"
    "end\n"
    "local flips = { '\"', '\\\\', ',', ':', '}', ']', '{', '[', ' ', '\\0', '\\1', 'e', '.', '-',\n"
    "  '+', '0', 'x', 'u', 'n', '\\255' }\n"
    "for i = 1, 3000 do\n"
    "  local doc = gen(0)\n"
    "  expect(doc, true)\n"
    "  expect(doc:sub(1, rnd(#doc + 1)), false)\n"
    "  local at = rnd(#doc) + 1\n"
    "  expect(doc:sub(1, at - 1) .. flips[rnd(#flips) + 1] .. doc:sub(at + 1), false)\n"
    "  expect(doc:sub(1, at - 1) .. doc:sub(at + 1), false)\n"
    "end\n"
    "if named < 100 then failures[#failures + 1] = 'the scan named a type for only ' .. named .. ' texts' end\n"
    /* the arguments cjson checks */
    "for _, args in ipairs({ {}, { '{}', 1 }, { 1 }, { true } }) do\n"
    "  local a = { pcall(fast, unpack(args)) }\n"
    "  local b = { pcall(cjson.decode, unpack(args)) }\n"
    "  local ok, why = same(a, b, 'args')\n"
    "  if not ok then failures[#failures + 1] = why end\n"
    "end\n"
    "return #failures, table.concat(failures, '\\n', 1, math.min(#failures, 20))\n";

static int l_scan(lua_State *L) {
  size_t n, tn;
  const char *s = luaL_checklstring(L, 1, &n), *t;
  if (!ews_json_scan_type(s, n, &t, &tn)) return 0;
  lua_pushlstring(L, t, tn);
  return 1;
}

static int l_make(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  ews_json_push_decoder(L, 1);
  return 1;
}

TEST(identical_to_cjson) {
  lua_State *L = luaL_newstate();
  CHECK(L != NULL);
  if (!L) return;
  luaL_openlibs(L);
  int r = luaL_loadbuffer(L, script, strlen(script), "=json_decode_test");
  if (r != 0) fprintf(stderr, "%s\n", lua_tostring(L, -1));
  CHECK_EQ(r, 0);
  if (r == 0) {
    lua_pushcfunction(L, l_make);
    lua_pushcfunction(L, l_scan);
    r = lua_pcall(L, 2, 2, 0);
    if (r != 0) fprintf(stderr, "%s\n", lua_tostring(L, -1));
    CHECK_EQ(r, 0);
    if (r == 0) {
      if (lua_tonumber(L, -2) != 0) fprintf(stderr, "%s\n", lua_tostring(L, -1));
      CHECK_EQ(lua_tonumber(L, -2), 0);
    }
  }
  lua_close(L);
}

int main(void) {
  RUN(identical_to_cjson);
  return TEST_EXIT();
}
