-- Template for the "module beside the app" reload spec (copied to a temporary
-- directory as app.lua, @DIR@ replaced by that directory). The reply prefix comes
-- from greeting.lua beside it; editing greeting.lua must reload the app with the
-- new module (the server watches the .lua files beside app.lua).
local edgews = require "edgews"

package.path = "@DIR@/?.lua;" .. package.path
local greeting = require "greeting"

local app = edgews.app {
  path = "/reload",
}

app:on("message", function(socket, data)
  socket.ctx.count = (socket.ctx.count or 0) + 1
  socket:send(greeting.text .. ":" .. socket.ctx.count .. ":" .. data)
end)
