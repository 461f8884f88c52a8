-- Routes whose handlers never read their body, for applayer_unbuilt_spec: the router
-- checks such a message and finds its type without building the body; msg.body is
-- built when something first reads it. The middleware reports what msg held before
-- anything read it (ctx.unbuilt: no body field yet) and, for "peek", reads msg.body.
local edgews = require "edgews"
local cjson = require "cjson"

local app = edgews.app { path = "/unbuilt", max_json_size = 256 }

app:use(function(socket, msg, ctx, next)
  ctx.unbuilt = rawget(msg, "body") == nil
  ctx.type = msg.type
  ctx.peeked = nil
  if msg.type == "peek" then ctx.peeked = msg.body end -- reading it builds it
  if msg.type == "swap" then -- built from msg.data as it is when first read
    msg.data = '{"type":"swap","x":2}'
    ctx.peeked = msg.body
  elseif msg.type == "swapbad" then
    msg.data = "not json"
    ctx.peeked = msg.body -- raises: handler_error
  end
  next()
end)

-- handlers that never read their body parameter
app:route("ping", function(socket, body, ctx)
  socket:send(cjson.encode { type = "pong", unbuilt = ctx.unbuilt, seen = ctx.type })
end)
app:route("peek", function(socket, _, ctx)
  socket:send(cjson.encode { type = "peeked", unbuilt = ctx.unbuilt, body = ctx.peeked,
    same = ctx.peeked == ctx.peeked })
end)
app:route("swap", function(socket, _, ctx)
  socket:send(cjson.encode { type = "swapped", x = ctx.peeked.x })
end)
app:route("swapbad", function(socket, _, ctx)
  socket:send(cjson.encode { type = "unreachable" })
end)
app:route("boom", function(socket, body, ctx)
  error("unbuilt handler exploded")
end)
app:route("limited", function(socket, body, ctx)
  socket:send(cjson.encode { type = "ok", unbuilt = ctx.unbuilt })
end, { rate_limit = { messages = { rate = 0.001, burst = 1 } } })

-- handlers that read it, or a schema that checks it: built before the chain
app:route("echo", function(socket, body, ctx)
  socket:send(cjson.encode { type = "echo", unbuilt = ctx.unbuilt, text = body.text })
end)
app:route("checked", function(socket, body, ctx)
  socket:send(cjson.encode { type = "checked", unbuilt = ctx.unbuilt })
end, { validate = { n = { type = "number", required = true } } })
