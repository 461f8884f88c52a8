-- Echo app whose message handler raises on the text message "boom": the server must
-- close that connection with 1011, log the error with file:line, run the app's
-- error handler, and keep serving every other connection.
local edgews = require "edgews"

local app = edgews.app {
  path = "/boom",
}

app:on("message", function(socket, data, is_binary)
  if data == "boom" then
    error("boom requested by the client") -- BOOM_LINE (spec checks boom_app.lua:<this line>)
  end
  socket:send(data, is_binary)
end)

app:on("error", function(socket, err)
  edgews.log.warn("error handler saw socket %d: %s", socket.id, err)
end)
