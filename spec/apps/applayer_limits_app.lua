-- Connection limits, Origin allow-list, rate limits and cross-worker delivery for
-- applayer_limits_spec (run with --workers 2). JWT secret "spec-secret" (no iss/aud).
-- Every socket gets {"type":"hello","worker":W,"low":socket.id % 256} when it opens
-- (open events are not rate limited), and every app routes:
--   where -> {"type":"where","worker":W,"low":socket.id % 256,"user":ctx.user.id}
--   echo  -> the message, re-encoded
-- Apps:
--   /capped      max_connections = 4
--   /perip       max_connections_per_ip = 3
--   /peruser     JWT before the upgrade, max_connections_per_user = 2
--   /peruser_msg JWT by first message, max_connections_per_user = 2
--   /origin      origins = { "https://good.example", "http://localhost:3000" }
--   /rl_conn     3 messages burst per connection (0.2/s), answers rate_limited
--   /rl_close    2 messages burst per connection, action = "close" (1008)
--   /rl_user     JWT; 4 messages burst per user, shared by the user's connections
--   /rl_bytes    100 bytes burst per connection (1 byte/s)
--   /rl_route    route "limited" has its own limit (2 burst); echo and where do not;
--                take {key, n}: edgews.ratelimit in the script (rate 0.2/s, burst 5,
--                one limiter per worker) -> {"type":"took","ok":bool,"retry":s|"inf",
--                "tokens":t,"size":keys held}
--   /xw          JWT; notify {uid, text}: edgews.user_sockets(uid) each get
--                {"type":"note","text":...,"from":W}; reply {"type":"notified","n":#list}
--                shout {text}: app:broadcast to all but the sender;
--                reply {"type":"shouted","n":<queued on this worker>}
--                count: {"type":"count","n":app:connection_count()}
--                grab {uid}: keeps edgews.user_sockets(uid) (on this worker) for check;
--                reply {"type":"grabbed","n":#list}
--                check: for each kept socket {id, worker, remote, open = is_open(),
--                sent = send(...) == true, err}; reply {"type":"checked","list":[...]}
--                (the kept sockets get {"type":"ping-check"} when sent is true)
--                nap {secs}: edgews.sleep(secs), then {"type":"napped"}
local edgews = require "edgews"
local cjson = require "cjson"

local SECRET = "spec-secret"
local slow = { rate = 0.2 } -- tokens per second: nothing refills during a test

local function common(app)
  app:on("open", function(socket)
    socket:send(cjson.encode { type = "hello", worker = edgews.worker_id(), low = socket.id % 256 })
  end)
  app:route("where", function(socket, body, ctx)
    socket:send(cjson.encode { type = "where", worker = edgews.worker_id(), low = socket.id % 256,
      user = ctx.user and ctx.user.id or cjson.null })
  end)
  app:route("echo", function(socket, body)
    socket:send(cjson.encode(body))
  end)
  return app
end

local function limit(messages, extra)
  local t = { messages = { rate = slow.rate, burst = messages } }
  for k, v in pairs(extra or {}) do t[k] = v end
  return t
end

common(edgews.app { path = "/capped", max_connections = 4 })
common(edgews.app { path = "/perip", max_connections_per_ip = 3 })
common(edgews.app { path = "/peruser", max_connections_per_user = 2,
  auth = edgews.auth.jwt { secret = SECRET } })
common(edgews.app { path = "/peruser_msg", max_connections_per_user = 2,
  auth = edgews.auth.jwt { secret = SECRET, mode = "message", timeout = 5 } })
common(edgews.app { path = "/origin", origins = { "https://good.example", "http://localhost:3000" } })
common(edgews.app { path = "/rl_conn", rate_limit = limit(3) })
common(edgews.app { path = "/rl_close", rate_limit = limit(2, { action = "close" }) })
common(edgews.app { path = "/rl_user", rate_limit = limit(4, { per = "user" }),
  auth = edgews.auth.jwt { secret = SECRET } })
common(edgews.app { path = "/rl_bytes", rate_limit = { bytes = { rate = 1, burst = 100 } } })

local rl_route = common(edgews.app { path = "/rl_route" })
rl_route:route("limited", function(socket, body)
  socket:send(cjson.encode { type = "limited", n = body.n })
end, { rate_limit = limit(2) })
local script_limiter = require("edgews.ratelimit").new { rate = slow.rate, burst = 5, now = edgews.now }
rl_route:route("take", function(socket, body)
  local ok, retry = script_limiter:take(body.key, body.n)
  socket:send(cjson.encode { type = "took", ok = ok, retry = retry == math.huge and "inf" or retry,
    tokens = script_limiter:tokens(body.key), size = script_limiter:size() })
end)

local xw = common(edgews.app { path = "/xw", auth = edgews.auth.jwt { secret = SECRET } })

xw:route("notify", function(socket, body)
  local list = edgews.user_sockets(body.uid)
  local msg = cjson.encode { type = "note", text = body.text, from = edgews.worker_id() }
  for _, s in ipairs(list) do s:send(msg) end
  socket:send(cjson.encode { type = "notified", n = #list })
end)

-- shout_all {text}: app:broadcast to every socket of the app, the sender too, with no
-- filter (cluster_spec: it reaches the other instances too)
xw:route("shout_all", function(socket, body)
  local n = xw:broadcast(cjson.encode { type = "shout", text = body.text })
  socket:send(cjson.encode { type = "shouted", n = n })
end)

xw:route("shout", function(socket, body)
  local sender = socket.id
  local n = xw:broadcast(cjson.encode { type = "shout", text = body.text }, false,
    function(s) return s.id ~= sender end)
  socket:send(cjson.encode { type = "shouted", n = n })
end)

local kept = {}
xw:route("grab", function(socket, body)
  kept = edgews.user_sockets(body.uid)
  socket:send(cjson.encode { type = "grabbed", n = #kept })
end)

xw:route("check", function(socket)
  local list = {}
  for i, s in ipairs(kept) do
    local open = s:is_open()
    local ok, err = s:send(cjson.encode { type = "ping-check" })
    list[i] = { id = s.id, worker = s.worker or edgews.worker_id(), remote = s.is_remote == true,
      open = open, sent = ok == true, err = err or cjson.null }
  end
  socket:send(cjson.encode { type = "checked", list = list })
end)

xw:route("nap", function(socket, body)
  edgews.sleep(body.secs)
  socket:send(cjson.encode { type = "napped" })
end)

xw:route("count", function(socket)
  socket:send(cjson.encode { type = "count", n = xw:connection_count() })
end)
