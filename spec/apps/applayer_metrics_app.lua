-- Traffic for applayer_metrics_spec (run with --workers 2). JWT secret "spec-secret".
--   /m      origins = { "https://ok.example" }, JWT before the upgrade, 5 messages
--           burst per connection (0.2/s); routes echo and boom (raises)
--   /stats  no auth: route stats -> {"type":"stats","all":edgews.stats(true),
--           "mine":edgews.stats(),"worker":W}
-- Every socket gets {"type":"hello","worker":W} when it opens.
local edgews = require "edgews"
local cjson = require "cjson"

local function hello(app)
  app:on("open", function(socket)
    socket:send(cjson.encode { type = "hello", worker = edgews.worker_id() })
  end)
  return app
end

local m = hello(edgews.app {
  path = "/m",
  origins = { "https://ok.example" },
  auth = edgews.auth.jwt { secret = "spec-secret" },
  rate_limit = { messages = { rate = 0.2, burst = 5 } },
})
m:route("echo", function(socket, body) socket:send(cjson.encode(body)) end)
m:route("boom", function() error("boom for the metrics") end)

local stats = hello(edgews.app { path = "/stats" })
stats:route("stats", function(socket)
  socket:send(cjson.encode { type = "stats", all = edgews.stats(true), mine = edgews.stats(),
    worker = edgews.worker_id() })
end)
