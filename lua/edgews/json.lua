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
  -- scan_type(text) -> type | nil: text is an object decode builds itself, with a
  -- "type" string (see core/lua/json_decode.h); nil: decode and see. Through the
  -- FFI: a compiled trace calls it without leaving the trace.
  local ffi = require "ffi"
  local has = pcall(ffi.cdef, "int ews_ffi_json_scan_type(const char *p, size_t n, size_t *span);")
  local C = ffi.C
  if has and pcall(function() return C.ews_ffi_json_scan_type end) then
    local scan, span, string_sub, tonumber = C.ews_ffi_json_scan_type, ffi.new("size_t[2]"), string.sub, tonumber
    _M.scan_type = function(text)
      if scan(text, #text, span) == 1 then
        local at = tonumber(span[0])
        return string_sub(text, at + 1, at + tonumber(span[1]))
      end
      return nil
    end
  end
  _M.fast = true
else
  _M.decode = cjson.decode
  _M.fast = false
end

return _M
