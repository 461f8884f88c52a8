-- App for spec/integration/applayer_jit_spec.lua: a routed echo through two
-- middlewares (one with code after next()), with LuaJIT's trace aborts recorded.
-- {"type":"echo","text":T} answers T; {"type":"relay"} answers the previous message's
-- type (its body is never built); {"type":"aborts"} answers the JSON list of the
-- "return to lower frame" aborts seen since the script loaded ("file:line msg").
local edgews = require "edgews"
local cjson = require "cjson"
local vmdef = require "jit.vmdef"
local jutil = require "jit.util"

local aborts = {}
jit.attach(function(what, _, func, pc, code, extra)
  if what ~= "abort" then return end
  local msg = vmdef.traceerr[code] or tostring(code)
  if type(extra) == "number" or type(extra) == "string" then msg = msg:format(extra) end
  if not msg:find("return to lower frame", 1, true) then return end
  local info = type(func) == "function" and jutil.funcinfo(func, pc) or {}
  aborts[#aborts + 1] = tostring(info.loc or "?") .. " " .. msg
end, "trace")

local app = edgews.app { path = "/jit", heartbeat = false }

app:use(function(socket, msg, ctx, next)
  ctx.n = (ctx.n or 0) + 1
  next()
end)

app:use(function(socket, msg, ctx, next)
  next()
  ctx.last_type = msg.type
end)

app:route("echo", function(socket, body)
  socket:send(body.text)
end)

-- a handler that never reads its body (routed without building it)
app:route("relay", function(socket, _, ctx)
  socket:send(ctx.last_type or "relay")
end)

app:route("aborts", function(socket)
  socket:send(cjson.encode(aborts))
end)
