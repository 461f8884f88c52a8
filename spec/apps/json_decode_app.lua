-- For spec/integration/json_decode_spec.lua: the router decodes every message with
-- its default codec (the core's decoder, edgews.json); the "show" route answers with
-- a canonical dump of the body the handler got and of what lua-cjson itself makes of
-- the same text, so the spec can see they are the same (values, number bits, null,
-- the order pairs() visits fields in).
local edgews = require "edgews"
local cjson = require "cjson.safe"

local app = edgews.app { path = "/j", heartbeat = false }

local function dump(v, out)
  local t = type(v)
  if t == "table" then
    out[#out + 1] = "{"
    local k = next(v)
    while k ~= nil do
      dump(k, out)
      out[#out + 1] = "="
      dump(v[k], out)
      out[#out + 1] = ","
      k = next(v, k)
    end
    out[#out + 1] = "#" .. #v .. "}"
  elseif t == "number" then
    out[#out + 1] = string.format("n%.17g", v) .. (v == 0 and 1 / v < 0 and "-" or "")
  elseif t == "string" then
    out[#out + 1] = string.format("%q", v)
  elseif v == cjson.null then
    out[#out + 1] = "null"
  else
    out[#out + 1] = tostring(v)
  end
  return out
end

app:use(function(socket, msg, ctx, next)
  ctx.raw = msg.data
  next()
end)

app:route("show", function(socket, body, ctx)
  socket:send(cjson.encode {
    type = "shown",
    router = table.concat(dump(body, {})),
    cjson = table.concat(dump((cjson.decode(ctx.raw)), {})),
    fast = require("edgews.json").fast,
  })
end)
