-- fuzz_router_app.lua — the app fuzz_router.c loads into a real edgews VM (through
-- edgews._load, as the server loads a script): JSON routes with the schemas of
-- fuzz_router_schemas.lua, two middlewares and an error handler. Handlers answer
-- {"type":"ok","route":<type>} so the driver can tell a handled message from an
-- error reply; what the error handler sees is kept in package.loaded.fuzz_router_log.
local edgews = require "edgews"
local cjson = require "cjson"
local schemas = require "fuzz_router_schemas"

local log = { errors = {} }
package.loaded.fuzz_router_log = log

local app = edgews.app { path = schemas.path, max_json_size = schemas.max_json_size }

app:use(function(socket, msg, ctx, next)
  -- the message table the pipeline builds: raw data, decoded body, its type
  if msg.data ~= log.raw or msg.body.type ~= msg.type or ctx ~= socket.ctx then
    error("fuzz: middleware saw an inconsistent message")
  end
  return next()
end)
app:use(function(socket, msg, ctx, next)
  if msg.type == "stop" then return end -- stops the chain: no handler, no reply
  return next()
end)

local function ok(socket, body)
  socket:send(cjson.encode { type = "ok", route = body.type })
end
for name, schema in pairs(schemas.validated) do
  app:route(name, ok, { validate = schema })
end
app:route("plain", ok)
app:route("stop", ok)
app:route("boom", function() error("boom from the handler") end)

app:on("error", function(socket, err)
  log.errors[#log.errors + 1] = err
end)
