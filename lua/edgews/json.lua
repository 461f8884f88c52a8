-- edgews.json: the JSON codec of the message path (edgews.router's default).
--
--   local json = require "edgews.json"
--   json.decode(text) -> value | nil, err     (cjson.safe's contract)
--   json.encode, json.null                    (cjson.safe's own)
--
-- Inside the server, decode is the core's decoder (core/lua/json_decode.h): it builds
-- exactly the values lua-cjson builds, faster, and hands everything else (invalid
-- JSON, cjson's leniencies, deep nesting) to cjson.safe.decode, so what a script sees
-- (values, errors, messages) is cjson's. Outside the server (plain LuaJIT, the unit
-- specs) decode is cjson.safe.decode itself.

local cjson = require "cjson.safe"

local _M = { encode = cjson.encode, null = cjson.null, cjson_decode = cjson.decode }

local ok, core = pcall(require, "edgews.core")
if ok and type(core) == "table" and core.json_decoder then
  _M.decode = core.json_decoder(cjson.decode)
  _M.fast = true
else
  _M.decode = cjson.decode
  _M.fast = false
end

return _M
