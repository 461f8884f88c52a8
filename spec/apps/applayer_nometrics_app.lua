-- edgews.configure{ metrics = false }: GET /metrics is 404, /health still answers
-- (applayer_metrics_spec).
local edgews = require "edgews"

edgews.configure { metrics = false }

edgews.app { path = "/x" }:on("message", function(socket, data) socket:send(data) end)
