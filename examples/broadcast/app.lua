-- The fan-out example: every connection to /broadcast is a subscriber, and every
-- message any client sends goes to all of them, the sender included (the standard
-- fan-out benchmark protocol).
--
-- By default the message is published on a channel: the frame is built once into
-- one shared buffer that every subscriber's write queue points at, on every
-- worker; with --compression shared it is also compressed once per worker for all
-- compressing subscribers.
--
-- With BROADCAST_MODE=pubsub it goes through a pub/sub topic instead: each message
-- gets an offset and is kept in the topic's history (in memory, or in SQLite with
-- --data DIR, where it is delivered only once committed and fsynced); subscribers
-- are "raw" (they get the message alone, not the JSON envelope), and publishes do
-- not wait for their commit, so a burst is stored in one batched transaction.
local edgews = require "edgews"

local mode = os.getenv("BROADCAST_MODE") or "channel"
assert(mode == "channel" or mode == "pubsub", "BROADCAST_MODE must be channel or pubsub")

local everyone = edgews.channel("broadcast")
local pubsub = edgews.pubsub
local NOWAIT = { wait = false }
local RAW = { raw = true }

local room = edgews.app {
  path = "/broadcast",
  max_message_size = 64 * 1024,
  idle_timeout = 600,
  max_buffered = 1024 * 1024,
  on_backpressure = "drop", -- a slow subscriber loses messages, never slows the others
}

if mode == "channel" then
  room:on("open", function(socket)
    everyone:subscribe(socket)
  end)
  room:on("message", function(_, data, is_binary)
    everyone:publish(data, { binary = is_binary })
  end)
else
  room:on("open", function(socket)
    assert(pubsub.subscribe("broadcast", socket, RAW))
  end)
  room:on("message", function(socket, data)
    local ok, err = pubsub.publish("broadcast", data, NOWAIT)
    if not ok then socket:send('{"type":"error","error":"' .. tostring(err) .. '"}') end
  end)
end
