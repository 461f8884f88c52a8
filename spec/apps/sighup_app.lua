-- Template for the SIGHUP reload spec (copied to a temporary directory as app.lua,
-- with @DIR@ replaced by that directory). The version comes from version.dat, a
-- file the watcher does not watch (not .lua), so only a SIGHUP-triggered reload
-- makes a new version visible.
local edgews = require "edgews"

local f = io.open("@DIR@/version.dat", "r")
local VERSION = f and f:read("*l") or "none"
if f then f:close() end

local app = edgews.app {
  path = "/reload",
}

app:on("message", function(socket, data)
  socket.ctx.count = (socket.ctx.count or 0) + 1
  socket:send(VERSION .. ":" .. socket.ctx.count .. ":" .. data)
end)
