-- Template for the hot-reload specs (lifecycle_spec copies it to a temporary
-- directory as app.lua and rewrites the VERSION line). Every reply is
-- "<version>:<messages seen on this connection>:<message>"; the count lives in
-- socket.ctx, which must survive a reload.
local edgews = require "edgews"

local VERSION = "v1"

local app = edgews.app {
  path = "/reload",
}

app:on("message", function(socket, data)
  socket.ctx.count = (socket.ctx.count or 0) + 1
  socket:send(VERSION .. ":" .. socket.ctx.count .. ":" .. data)
end)
