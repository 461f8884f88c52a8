-- Fan-out for fanout_spec: "all:<text>" broadcasts <text> to every socket of the
-- app (app:broadcast); "others:<text>" to every socket but the sender (filter);
-- "stats" replies with edgews.stats() as JSON (messages_compressed counts
-- compressions, so the spec can check a broadcast is compressed once).
local edgews = require "edgews"
local cjson = require "cjson"

local app = edgews.app { path = "/fan", compression = { mode = "shared", threshold = 16 } }

app:on("message", function(socket, data)
  local text = data:match("^all:(.*)$")
  if text then
    app:broadcast(text)
    return
  end
  text = data:match("^others:(.*)$")
  if text then
    app:broadcast(text, false, function(s) return s ~= socket end)
    return
  end
  if data == "stats" then
    socket:send(cjson.encode(edgews.stats()))
  end
end)
