-- A worker whose inbox overflows (inbox_spec): worker_inbox_limit is tiny, so a
-- worker that is busy for a moment refuses pub/sub messages posted to it, and its
-- subscribers must catch up from history instead of missing them.
-- Text commands on /ib (replies are JSON):
--   where          -> {"worker": id}
--   sub TOPIC      -> subscribes this socket (live, raw frames), {"subscribed": offset}
--   block SECS     -> keeps this worker's loop busy (no yield) for SECS, {"blocked": true}
--   pub TOPIC N    -> publishes N messages "1".."N" (without waiting), {"published": N}
local edgews = require "edgews"
local cjson = require "cjson"

edgews.configure { worker_inbox_limit = 16, handler_timeout = 30, pubsub = { max_queue_size = 100000 } }

local app = edgews.app { path = "/ib", max_buffered = 64 * 1024 * 1024 }

app:on("message", function(socket, data)
  local cmd, a, b = data:match("^(%S+)%s*(%S*)%s*(%S*)$")
  if cmd == "where" then
    socket:send(cjson.encode { worker = edgews.worker_id() })
  elseif cmd == "sub" then
    local r = assert(edgews.pubsub.subscribe(a, socket, { raw = true }))
    socket:send(cjson.encode { subscribed = r.offset })
  elseif cmd == "block" then
    edgews.log.info("blocking worker %d", edgews.worker_id())
    local t0 = os.clock()
    while os.clock() - t0 < tonumber(a) do end
    socket:send(cjson.encode { blocked = true })
  elseif cmd == "pub" then
    for i = 1, tonumber(b) do edgews.pubsub.publish(a, tostring(i), { wait = false }) end
    socket:send(cjson.encode { published = tonumber(b) })
  end
end)
