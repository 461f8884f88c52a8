-- Apps for the browser client's specs (client/edgews.js; spec/integration/client_spec.lua
-- drives tests/clients/client_scenarios.mjs against them). JWT secret "client-secret".
--   /plain    no auth
--   /jwt      JWT before the upgrade (?token= or a bearer.<token> subprotocol beside
--             "app.v1"), refresh on
--   /jwtmsg   JWT by first message ({"type":"auth","token":...}), timeout 2 s
--   /deflate  no auth, permessage-deflate (shared compressor, threshold 64)
-- Every app routes (replies echo the request's id):
--   echo     {...}                     -> {"type":"echo","body":{...},"user":...}
--   slow     {secs, close?}            -> {"type":"slow"} after sleeping secs (with close:
--                                         the socket is closed with that code instead)
--   boom     {}                        -> the route raises (a handler_error reply)
--   close    {code, reason}            -> the server closes the socket with that code
--   follow   {topic, since_offset, epoch} -> {"type":"following", epoch, offset,
--                                         replayed, gap}; then pub/gap frames
--   unfollow {topic}                   -> {"type":"unfollowed"}
--   publish  {topic, data}             -> {"type":"published", epoch, offset}
--   reset    {topic}                   -> {"type":"reset", epoch}
--   whoami   {}                        -> {"type":"whoami", user, exp}
--   log      {text}                    -> appended to the connection-independent
--                                         list `log`: {"type":"logged", n}
--   get_log  {}                        -> {"type":"log", n, text = the items joined by ","}
local edgews = require "edgews"
local cjson = require "cjson"

local pubsub = edgews.pubsub
local SECRET = "client-secret"

local log = {} -- per worker (the specs run one worker)

local function reply(socket, body, t)
  t.id = body.id
  socket:send(cjson.encode(t))
end

local function routes(app)
  app:route("echo", function(socket, body, ctx)
    local copy = {}
    for k, v in pairs(body) do if k ~= "type" and k ~= "id" then copy[k] = v end end
    reply(socket, body, { type = "echo", body = copy, user = ctx.user and ctx.user.id or cjson.null })
  end)
  app:route("slow", function(socket, body)
    edgews.sleep(tonumber(body.secs) or 1)
    if body.close then return socket:close(body.close, "closed instead of a reply") end
    reply(socket, body, { type = "slow" })
  end)
  app:route("boom", function()
    error("boom on purpose")
  end)
  app:route("close", function(socket, body)
    socket:close(body.code, body.reason or "")
  end, { validate = { code = { type = "integer", required = true } } })
  app:route("follow", function(socket, body)
    local r, err = pubsub.subscribe(body.topic, socket, { since_offset = body.since_offset, epoch = body.epoch })
    if not r then return reply(socket, body, { type = "error", error = err }) end
    reply(socket, body, { type = "following", topic = body.topic, epoch = r.epoch, offset = r.offset,
                          replayed = r.replayed, gap = r.gap })
  end, { validate = { topic = { type = "string", required = true },
                      since_offset = { type = "integer", min = 0 },
                      epoch = { type = "string" } } })
  app:route("unfollow", function(socket, body)
    pubsub.unsubscribe(body.topic, socket)
    reply(socket, body, { type = "unfollowed", topic = body.topic })
  end)
  app:route("publish", function(socket, body)
    local r, err = pubsub.publish(body.topic, body.data)
    if not r then return reply(socket, body, { type = "error", error = err }) end
    reply(socket, body, { type = "published", epoch = r.epoch, offset = r.offset })
  end)
  app:route("reset", function(socket, body)
    local r = pubsub.reset(body.topic)
    reply(socket, body, { type = "reset", epoch = r.epoch })
  end)
  app:route("whoami", function(socket, body, ctx)
    local u = ctx.user or {}
    reply(socket, body, { type = "whoami", user = u.id or cjson.null, exp = u.exp or cjson.null })
  end)
  app:route("log", function(socket, body)
    log[#log + 1] = body.text
    reply(socket, body, { type = "logged", n = #log })
  end)
  app:route("get_log", function(socket, body)
    reply(socket, body, { type = "log", n = #log, text = table.concat(log, ",") })
  end)
  return app
end

routes(edgews.app { path = "/plain" })
routes(edgews.app { path = "/deflate", compression = { mode = "shared", threshold = 64 } })
routes(edgews.app {
  path = "/jwt",
  protocols = { "app.v1" },
  auth = edgews.auth.jwt { secret = SECRET },
})
routes(edgews.app {
  path = "/jwtmsg",
  auth = edgews.auth.jwt { secret = SECRET, mode = "message", timeout = 2 },
})
