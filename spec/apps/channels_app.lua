-- Channels for channels_spec. Text commands:
--   sub:<ch>          subscribe; replies "subscribed:<ch>"
--   unsub:<ch>        unsubscribe; replies "unsubscribed:<ch>" or "not subscribed"
--   pub:<ch>:<text>   publish <text> to <ch> (the sender too, when subscribed)
--   pubx:<ch>:<text>  publish, excluding the sender
--   count:<ch>        replies "count:<n>" (subscribers on every worker)
--   worker            replies "worker:<id>"
--   closeall          app:close_all(4000, "bye"): every socket of the app, every worker
local edgews = require "edgews"

local app = edgews.app { path = "/ch", max_buffered = 8 * 1024 * 1024, on_backpressure = "drop",
                         heartbeat = false }

app:on("message", function(socket, data)
  local cmd, rest = data:match("^(%a+):?(.*)$")
  if cmd == "sub" then
    assert(edgews.channel(rest):subscribe(socket))
    socket:send("subscribed:" .. rest)
  elseif cmd == "unsub" then
    local ok, err = edgews.channel(rest):unsubscribe(socket)
    socket:send(ok and ("unsubscribed:" .. rest) or err)
  elseif cmd == "pub" or cmd == "pubx" then
    local ch, text = rest:match("^([^:]*):(.*)$")
    edgews.channel(ch):publish(text, cmd == "pubx" and { exclude = socket } or nil)
  elseif cmd == "count" then
    socket:send("count:" .. edgews.channel(rest):count())
  elseif cmd == "closeall" then
    app:close_all(4000, "bye")
  elseif cmd == "worker" then
    socket:send("worker:" .. edgews.worker_id())
  end
end)
