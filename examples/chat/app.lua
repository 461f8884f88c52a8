-- The chat example: rooms on channels, JSON messages routed by type and validated,
-- a logging middleware, per-connection rate limits, and a user name from the query
-- string (a custom authenticator: a real deployment would use edgews.auth.jwt).
--
--   scripts/run examples/chat/app.lua
--   then connect to ws://127.0.0.1:8080/chat?name=ada and send:
--     {"type":"join","room":"lobby"}
--     {"type":"say","room":"lobby","text":"hello"}
--     {"type":"leave","room":"lobby"}
--     {"type":"who"}                      -> how many are connected, on every worker
--     {"type":"dm","to":"bob","text":"hi"} -> to every connection of user bob
local edgews = require "edgews"
local cjson = require "cjson"

local chat = edgews.app {
  path = "/chat",
  auth = edgews.auth.custom(function(req)
    local name = req.params.name
    if not name or not name:match("^[%w_%-]+$") or #name > 32 then
      return nil, "give a name: /chat?name=ada (letters, digits, _ or -)", 401
    end
    return { id = name }
  end),
  max_connections_per_user = 5,
  rate_limit = { messages = { rate = 10, burst = 20 } },
  max_json_size = 8 * 1024,
}

local room_rule = { type = "string", required = true, max_length = 64, pattern = "^[%w_%-:]+$" }

local function room(name) return edgews.channel("chat:" .. name) end

chat:use(function(socket, msg, ctx, next)
  local t0 = edgews.now()
  next()
  edgews.log.debug("%s from %s took %.1f ms", tostring(msg.type), ctx.user.id, (edgews.now() - t0) * 1000)
end)

chat:route("join", function(socket, body, ctx)
  room(body.room):subscribe(socket)
  room(body.room):publish(cjson.encode { type = "joined", room = body.room, user = ctx.user.id })
end, { validate = { room = room_rule } })

chat:route("leave", function(socket, body, ctx)
  room(body.room):unsubscribe(socket)
  room(body.room):publish(cjson.encode { type = "left", room = body.room, user = ctx.user.id })
end, { validate = { room = room_rule } })

chat:route("say", function(socket, body, ctx)
  room(body.room):publish(cjson.encode {
    type = "message", room = body.room, user = ctx.user.id, text = body.text, at = os.time(),
  })
end, { validate = { room = room_rule, text = { type = "string", required = true, max_length = 2000 } } })

chat:route("dm", function(socket, body, ctx)
  local n = 0
  for _, s in ipairs(edgews.user_sockets(body.to)) do
    s:send(cjson.encode { type = "dm", from = ctx.user.id, text = body.text })
    n = n + 1
  end
  socket:send(cjson.encode { type = "dm:sent", to = body.to, connections = n })
end, { validate = { to = { type = "string", required = true, max_length = 32 },
                    text = { type = "string", required = true, max_length = 2000 } } })

chat:route("who", function(socket)
  socket:send(cjson.encode { type = "who", connections = chat:connection_count() })
end)

chat:on("open", function(socket)
  socket:send(cjson.encode { type = "welcome", user = socket.ctx.user.id })
end)
