-- Middleware chain and JSON router for applayer_router_spec.
-- Three middlewares append to ctx.trace; m1 also sends a second message after
-- next() returned (onion order); m2 stops the chain for {"type":"blocked"}; m3
-- waits {"delay": s} seconds with edgews.sleep before calling next; a middleware
-- raises for {"mw_boom": true}. Routes:
--   trace      -> {"type":"trace","trace":[...],"id":id}
--   echo       -> the decoded message, re-encoded
--   blocked    -> {"type":"reached"} (never: m2 stops the chain first)
--   boom       -> raises (handler_error); the app's error handler records it
--   last_error -> {"type":"last_error","err":<what the error handler got>}
--   validated  -> {"type":"valid"}; schema: name string 1..5 required, n integer 1..10
local edgews = require "edgews"
local cjson = require "cjson"

local app = edgews.app { path = "/router", max_json_size = 256 }

app:use(function(socket, msg, ctx, next)
  ctx.trace = { "m1" }
  if msg.body.mw_boom then error("middleware exploded") end -- MW_BOOM_LINE
  next()
  ctx.trace[#ctx.trace + 1] = "m1:after"
  if msg.body.type == "trace" then
    socket:send(cjson.encode { type = "after", trace = ctx.trace })
  end
end)

app:use(function(socket, msg, ctx, next)
  ctx.trace[#ctx.trace + 1] = "m2"
  if msg.body.type == "blocked" then
    socket:send(cjson.encode { type = "blocked", trace = ctx.trace })
    return -- no next(): the chain stops here
  end
  next()
  ctx.trace[#ctx.trace + 1] = "m2:after"
end)

app:use(function(socket, msg, ctx, next)
  local delay = tonumber(msg.body.delay)
  if delay then
    local t0 = edgews.now()
    edgews.sleep(delay)
    ctx.trace[#ctx.trace + 1] = ("m3:slept:%.3f"):format(edgews.now() - t0)
  else
    ctx.trace[#ctx.trace + 1] = "m3"
  end
  next()
  ctx.trace[#ctx.trace + 1] = "m3:after"
end)

app:route("trace", function(socket, body, ctx)
  ctx.trace[#ctx.trace + 1] = "handler"
  socket:send(cjson.encode { type = "trace", trace = ctx.trace, id = body.id })
end)

app:route("echo", function(socket, body)
  socket:send(cjson.encode(body))
end)

app:route("blocked", function(socket)
  socket:send('{"type":"reached"}')
end)

app:route("boom", function()
  error("route exploded") -- ROUTE_BOOM_LINE
end)

app:route("last_error", function(socket, body, ctx)
  socket:send(cjson.encode { type = "last_error", err = ctx.last_error or cjson.null })
end)

app:route("validated", function(socket)
  socket:send('{"type":"valid"}')
end, {
  validate = {
    name = { type = "string", required = true, min_length = 1, max_length = 5 },
    n = { type = "integer", min = 1, max = 10 },
  },
})

app:on("error", function(socket, err)
  socket.ctx.last_error = err
end)
