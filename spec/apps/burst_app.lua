-- For spec/integration/large_send_spec.lua: "burst" answers with a run of messages of
-- mixed sizes: the first, large, leaves without the write queue (written in part, the
-- rest queued), the others are queued behind it and coalesce; each is filled with a
-- pattern that names its place in the run. Anything else comes back as it is.
local edgews = require "edgews"

local app = edgews.app { path = "/burst", heartbeat = false, max_message_size = 4 * 1024 * 1024,
  max_buffered = 32 * 1024 * 1024 }

local run = require "burst_run" -- the sizes and contents
local SIZES, body = run.SIZES, run.body

-- built once, so the run goes out in one tight loop: faster than the client drains it
local BODIES = {}
for i, size in ipairs(SIZES) do BODIES[i] = body(i, size) end

app:on("message", function(socket, data, is_binary)
  if data == "burst" then
    for i = 1, #BODIES do
      assert(socket:send(BODIES[i], i % 2 == 0))
    end
  else
    socket:send(data, is_binary)
  end
end)
