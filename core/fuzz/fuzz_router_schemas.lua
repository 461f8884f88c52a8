-- fuzz_router_schemas.lua — the routes of the fuzzed app (fuzz_router_app.lua) and
-- the driver's reference (fuzz_router.lua) read from here: schemas that use every
-- rule of edgews.validate (types, lengths, bounds, enum, pattern, nested fields, array
-- items, items with fields, more failing fields than MAX_ERRORS).
local many = {}
for i = 1, 25 do many[string.format("f%02d", i)] = { type = "integer", required = true, min = 0 } end

return {
  path = "/fuzz",
  max_json_size = 2048,
  validated = {
    join = {
      room = { type = "string", required = true, min_length = 1, max_length = 32, pattern = "^[%w_-]+$" },
      limit = { type = "integer", min = 1, max = 100 },
      mode = { enum = { "read", "write", 7, true } },
    },
    say = {
      room = { type = "string", required = true },
      text = { type = "string", required = true, max_length = 64 },
      tags = { type = "array", max_length = 4, items = { type = "string", min_length = 1, max_length = 8 } },
      meta = { type = "table", fields = {
        lang = { type = "string", enum = { "en", "fr" } },
        score = { type = "number", min = -1.5, max = 1e6 },
        deep = { type = "table", fields = { ok = { type = "boolean", required = true } } },
      } },
      flag = { type = "boolean" },
    },
    list = {
      items = { type = "array", required = true, min_length = 1,
                items = { type = "table", fields = { k = { type = "string", required = true },
                                                      n = { type = "integer", max = 9 } } } },
    },
    many = many,
    any = {},
  },
  -- routes without a schema: "plain" answers, "boom" raises, "stop" is stopped by a
  -- middleware before its handler
  plain = { "plain", "boom", "stop" },
}
