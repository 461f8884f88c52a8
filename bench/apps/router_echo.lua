-- Benchmark app for the application layer: echo through JWT authentication (before
-- the upgrade), three middlewares and the JSON router, on /echo (the path the
-- generator uses). The generator sends {"type":"echo",...} messages and connects
-- with ?token=<HS256 token signed with BENCH_JWT_SECRET>; the reply is the message
-- as received (the first middleware keeps the raw text for the route).
local edgews = require "edgews"

local app = edgews.app {
  path = "/echo",
  auth = edgews.auth.jwt { secret = os.getenv("BENCH_JWT_SECRET") or "edgews-bench-secret" },
  max_json_size = 64 * 1024,
  heartbeat = false,
}

app:use(function(socket, msg, ctx, next) -- keeps the raw text; counts
  ctx.raw = msg.data
  ctx.n = (ctx.n or 0) + 1
  next()
end)

app:use(function(socket, msg, ctx, next) -- an authorization gate
  if not ctx.user then return socket:close(4401, "unauthorized") end
  next()
end)

app:use(function(socket, msg, ctx, next) -- per-type accounting after the handler
  next()
  ctx.last_type = msg.type
end)

app:route("echo", function(socket, body, ctx)
  socket:send(ctx.raw)
end)
