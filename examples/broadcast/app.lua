-- The fan-out example: every connection to /broadcast is a subscriber, and every
-- message any client sends goes to all of them, the sender included (the standard
-- fan-out benchmark protocol). One frame is built per message and every
-- subscriber's write queue points at it; with --compression shared it is also
-- compressed once for all subscribers.
local edgews = require "edgews"

local room = edgews.app {
  path = "/broadcast",
  max_message_size = 64 * 1024,
  idle_timeout = 600,
  max_buffered = 1024 * 1024,
  on_backpressure = "drop", -- a slow subscriber loses messages, never slows the others
}

room:on("message", function(_, data, is_binary)
  room:broadcast(data, is_binary)
end)
