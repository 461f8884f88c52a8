-- Authentication apps for applayer_auth_spec. Secret "spec-secret" for every JWT app.
--   /jwt      JWT HS256 before the upgrade (Authorization: Bearer, ?token=, a
--             "bearer.<token>" subprotocol entry beside chat.v1), iss "edgews-spec",
--             aud "spec-clients"; token refresh on
--   /msg      JWT by first message ({"type":"auth","token":...}), auth timeout 0.6 s,
--             max_message_size 1 MiB (the pre-auth limit is the default 16 KiB)
--   /msg_small  JWT by first message, auth.max_message_size = 1000, max_json_size =
--             500, compression on
--   /leeway   JWT before the upgrade with leeway = 30
--   /usermap  JWT before the upgrade, user = function(claims): id = claims.uid
--   /rl_refresh  JWT before the upgrade, rate_limit: 3 messages burst per connection
--   /key      API key (x-api-key header or ?api_key=): "key-good" -> user "key-user",
--             "key-revoked" -> 403, others -> 401; the validator waits 50 ms
--   /custom   custom validator that waits 0.2 s: x-user header -> that user,
--             x-deny -> 403 "denied", x-odd -> 401 with a message that needs JSON
--             escapes, otherwise 401 "who are you"
--   /slow     custom validator that waits 2 s with a 0.3 s auth timeout
--   /broken   custom validator that raises
-- Every app routes:
--   whoami   -> {"type":"whoami","user":ctx.user.id,"sub":claims.sub,"exp":...,
--                "seen_by_mw":<user id a middleware saw>,"protocol":socket.protocol}
--   long_timers -> starts edgews.timer(1 year), edgews.every(10 years) and
--                edgews.timer(math.huge), cancels them: {"type":"long_timers",
--                "cancelled":[true,true,true],"again":<cancel once more>,
--                "started":<timers added>,"left":<timers left after cancelling>}
--   sleep_long -> edgews.sleep(1 year), then {"type":"woke"} (never, in a test)
local edgews = require "edgews"
local cjson = require "cjson"

local SECRET = "spec-secret"

local function routes(app)
  app:use(function(socket, msg, ctx, next)
    ctx.seen_by_mw = ctx.user and ctx.user.id
    next()
  end)
  app:route("long_timers", function(socket, body)
    local n0 = edgews.stats().timers
    local t1 = edgews.timer(365 * 86400, function() end)
    local t2 = edgews.every(10 * 365 * 86400, function() end)
    local t3 = edgews.timer(math.huge, function() end)
    local started = edgews.stats().timers - n0
    local cancelled = { t1:cancel(), t2:cancel(), t3:cancel() }
    socket:send(cjson.encode { type = "long_timers", cancelled = cancelled, again = t1:cancel(),
      started = started, left = edgews.stats().timers - n0, id = body.id })
  end)
  app:route("sleep_long", function(socket)
    edgews.sleep(365 * 86400)
    socket:send(cjson.encode { type = "woke" })
  end)
  app:route("whoami", function(socket, body, ctx)
    local u = ctx.user or {}
    socket:send(cjson.encode {
      type = "whoami", user = u.id, sub = u.claims and u.claims.sub, exp = u.exp,
      seen_by_mw = ctx.seen_by_mw, protocol = socket.protocol or cjson.null, id = body.id,
      name = u.name,
    })
  end)
  return app
end

routes(edgews.app {
  path = "/jwt",
  protocols = { "chat.v1" },
  auth = edgews.auth.jwt { secret = SECRET, alg = "HS256", iss = "edgews-spec", aud = "spec-clients" },
})

routes(edgews.app {
  path = "/msg",
  max_message_size = 1024 * 1024,
  auth = edgews.auth.jwt { secret = SECRET, mode = "message", timeout = 0.6 },
})

routes(edgews.app {
  path = "/msg_small",
  max_json_size = 500,
  compression = { mode = "shared" },
  auth = edgews.auth.jwt { secret = SECRET, mode = "message", timeout = 5, max_message_size = 1000 },
})

routes(edgews.app {
  path = "/leeway",
  auth = edgews.auth.jwt { secret = SECRET, leeway = 30 },
})

routes(edgews.app {
  path = "/usermap",
  auth = edgews.auth.jwt { secret = SECRET, user = function(claims)
    return { id = claims.uid, exp = claims.exp, claims = claims }
  end },
})

routes(edgews.app {
  path = "/rl_refresh",
  rate_limit = { messages = { rate = 0.2, burst = 3 } },
  auth = edgews.auth.jwt { secret = SECRET },
})

routes(edgews.app {
  path = "/key",
  auth = edgews.auth.api_key {
    validate = function(key, req)
      edgews.sleep(0.05)
      if key == "key-good" then return { id = "key-user", name = req.path } end
      if key == "key-revoked" then return nil, "key revoked", 403 end
      return nil, "unknown key"
    end,
  },
})

routes(edgews.app {
  path = "/custom",
  auth = edgews.auth.custom(function(req)
    edgews.sleep(0.2)
    if req.headers["x-user"] then return { id = req.headers["x-user"], name = req.params.name } end
    if req.headers["x-deny"] then return nil, "denied", 403 end
    if req.headers["x-odd"] then return nil, 'say "please" \\ then\n\t\195\169' end
    return nil, "who are you"
  end, { timeout = 2 }),
})

routes(edgews.app {
  path = "/slow",
  auth = edgews.auth.custom(function()
    edgews.sleep(2)
    return { id = "too-late" }
  end, { timeout = 0.3 }),
})

routes(edgews.app {
  path = "/broken",
  auth = function(req)
    error("validator exploded")
  end,
})
