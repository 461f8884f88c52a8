-- A user's app for testing_spec: a JWT-authenticated live scoreboard. testing_spec
-- copies it with scoreboard_test.lua (renamed scoreboard_spec.lua) into a directory
-- outside the repository and runs busted there, as a user of edgews.testing would.
--   /live (JWT from JWT_SECRET; subprotocol "score.v1")
--     on open                      -> {"type":"welcome","user":ID,"board":BOARD_NAME}
--     {"type":"follow","since_offset":N?,"epoch":E?} -> following {epoch, offset}, then
--                                     the "scores" topic (history from --data)
--     {"type":"score","points":N}  -> published to "scores"; logs "score N by ID"
--     {"type":"bye"}               -> the server closes with 4000 "bye"
--   /echo: echoes text and binary; a client quiet for 0.2 s is pinged (and closed
--          with 1001 "ping timeout" when it does not answer within 2 s)
local edgews = require "edgews"
local cjson = require "cjson"

local live = edgews.app {
  path = "/live",
  protocols = { "score.v1" },
  auth = edgews.auth.jwt { secret = os.getenv("JWT_SECRET") },
}

live:on("open", function(socket)
  socket:send(cjson.encode { type = "welcome", user = socket.ctx.user.id,
                             board = os.getenv("BOARD_NAME") or "default" })
end)

live:route("follow", function(socket, msg)
  local r = assert(edgews.pubsub.subscribe("scores", socket,
    { since_offset = msg.since_offset, epoch = msg.epoch }))
  socket:send(cjson.encode { type = "following", epoch = r.epoch, offset = r.offset })
end, { validate = { since_offset = { type = "integer", min = 0 },
                    epoch = { type = "string", max_length = 16 } } })

live:route("score", function(socket, msg, ctx)
  assert(edgews.pubsub.publish("scores", { by = ctx.user.id, points = msg.points }))
  edgews.log.info("score %d by %s", msg.points, ctx.user.id)
end, { validate = { points = { type = "integer", required = true, min = 0, max = 100 } } })

live:route("bye", function(socket)
  socket:close(4000, "bye")
end)

local echo = edgews.app { path = "/echo", heartbeat = { interval = 0.2, timeout = 2 } }
echo:on("message", function(socket, data, is_binary)
  socket:send(data, is_binary)
end)
