-- The app of `edgews-bench scale` (bench/scale.c, scripts/bench-scale): one pub/sub
-- topic, "scale", that every connection follows, and two text commands on /scale:
--   S          subscribe this socket to the topic (live, with the JSON envelope)
--              -> s<the topic's last offset>
--   P<data>    publish <data> to the topic; answered once the publish returned (in a
--              cluster: once Redis ran the publish script) -> p<offset>
-- anything else, or a failure -> x<reason>.
--
-- SCALE_HEARTBEAT (seconds, default 30; 0 turns pings off) sets the app's heartbeat
-- interval, with a timeout of max(10, interval): scripts/bench-scale measures what the
-- servers spend on pinging 100,000 idle connections.
local edgews = require "edgews"
local pubsub = edgews.pubsub

local TOPIC = "scale"
local hb = tonumber(os.getenv("SCALE_HEARTBEAT") or "30") or 30

local app = edgews.app {
  path = "/scale",
  max_message_size = 64 * 1024,
  heartbeat = hb > 0 and { interval = hb, timeout = math.max(10, hb) } or false,
}

local byte, sub = string.byte, string.sub
local S, P = byte "S", byte "P"

app:on("message", function(socket, data)
  local k = byte(data, 1)
  if k == S then
    local r, err = pubsub.subscribe(TOPIC, socket)
    if not r then return socket:send("x" .. tostring(err)) end
    socket:send("s" .. r.offset)
  elseif k == P then
    local r, err = pubsub.publish(TOPIC, sub(data, 2))
    if not r then return socket:send("x" .. tostring(err)) end
    socket:send("p" .. r.offset)
  else
    socket:send("xunknown command")
  end
end)
