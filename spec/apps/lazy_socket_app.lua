-- Socket objects of an app without an open handler (lazy_socket_spec): the core
-- creates a connection's socket object only when a script first needs it. Each
-- text message to /quiet is a command (run with --workers 1):
--   count     -> socket.ctx.n incremented, as text (ctx survives between messages)
--   objects   -> how many socket objects exist in this VM (registry scan)
--   list      -> the ids of app:sockets(), comma-separated in ascending order; the
--                objects are remembered by id
--   same      -> "same" when this socket is the object app:sockets() returned for
--                its id earlier, "new" when app:sockets() never listed it
--   closed    -> what the close handler saw: "ID:same" (the object app:sockets()
--                returned for ID), "ID:new" (never listed) or "ID:other", comma-separated
--                in ascending order of ID
--   untouched -> how many close events were of sockets no message handler had seen
-- /silent has no handler but a message one (echo): no close event, no object
-- until a message. /proto (subprotocols p1, p2; no open handler) answers any message
-- with socket.protocol.
local edgews = require "edgews"

local quiet = edgews.app { path = "/quiet" }
local seen, closed, untouched = {}, {}, 0

local function sorted_ids(t)
  local ids = {}
  for id in pairs(t) do ids[#ids + 1] = id end
  table.sort(ids)
  for i, id in ipairs(ids) do
    ids[i] = ("%d"):format(id) .. (t[id] == true and "" or ":" .. t[id])
  end
  return table.concat(ids, ",")
end

local function identity(socket)
  local s = seen[socket.id]
  return s == nil and "new" or (s == socket and "same" or "other")
end

quiet:on("message", function(socket, data)
  socket.ctx.asked = true
  if data == "count" then
    socket.ctx.n = (socket.ctx.n or 0) + 1
    socket:send(tostring(socket.ctx.n))
  elseif data == "objects" then
    local n = 0
    for _, v in pairs(debug.getregistry()) do
      if type(v) == "table" and getmetatable(v) == edgews._Socket then n = n + 1 end
    end
    socket:send(tostring(n))
  elseif data == "list" then
    local ids = {}
    for _, s in ipairs(quiet:sockets()) do
      seen[s.id] = s
      ids[s.id] = true
    end
    socket:send(sorted_ids(ids))
  elseif data == "same" then
    socket:send(identity(socket))
  elseif data == "untouched" then
    socket:send(tostring(untouched))
  elseif data == "closed" then
    socket:send(sorted_ids(closed))
  end
end)

quiet:on("close", function(socket)
  closed[socket.id] = identity(socket)
  if not socket.ctx.asked then untouched = untouched + 1 end
end)

local silent = edgews.app { path = "/silent" }
silent:on("message", function(socket, data) socket:send(data) end)

local proto = edgews.app { path = "/proto", protocols = { "p1", "p2" } }
proto:on("message", function(socket) socket:send(tostring(socket.protocol)) end)
