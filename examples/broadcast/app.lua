-- The fan-out example: every connection to /broadcast is a subscriber, and every
-- message any client sends goes to all of them, the sender included (the standard
-- fan-out benchmark protocol). The message is published on a channel: the frame
-- is built once into one shared buffer that every subscriber's write queue points
-- at, on every worker; with --compression shared it is also compressed once per
-- worker for all compressing subscribers.
local edgews = require "edgews"

local everyone = edgews.channel("broadcast")

local room = edgews.app {
  path = "/broadcast",
  max_message_size = 64 * 1024,
  idle_timeout = 600,
  max_buffered = 1024 * 1024,
  on_backpressure = "drop", -- a slow subscriber loses messages, never slows the others
}

room:on("open", function(socket)
  everyone:subscribe(socket)
end)

room:on("message", function(_, data, is_binary)
  everyone:publish(data, { binary = is_binary })
end)
