-- permessage-deflate apps for compression_spec: one echo app per compression setting.
-- Every app but /dedicated-16m has a 1 MiB message limit (the decompression-bomb test
-- relies on it).
local edgews = require "edgews"

edgews.configure { handshake_timeout = 2 }

local MiB = 1024 * 1024

local apps = {
  -- path                  compression
  { "/shared",            { mode = "shared", threshold = 64 } },
  { "/shared-default",    { mode = "shared" } },             -- every default
  { "/threshold-1000",    { mode = "shared", threshold = 1000 } },
  { "/dedicated",         { mode = "dedicated" } },          -- 32 KiB window
  { "/dedicated-1k",      { mode = "dedicated", window_kb = 1 } },
  { "/dedicated-8k-cnct", { mode = "dedicated", window_kb = 8, level = 9,
                            client_no_context_takeover = true } },
  { "/shared-cnct",       { mode = "shared", client_no_context_takeover = true } },
  { "/shared-no-cnct",    { mode = "shared", client_no_context_takeover = false } },
  { "/off",               false },
  { "/off-mode",          { mode = "off" } },
}

-- with a 16 MiB message limit: room for a hostile message of many final blocks
apps[#apps + 1] = { "/dedicated-16m", { mode = "dedicated" }, 16 * MiB }

for _, a in ipairs(apps) do
  local app = edgews.app {
    path = a[1],
    compression = a[2],
    max_message_size = a[3] or MiB,
    idle_timeout = 0,
  }
  app:on("message", function(socket, data, is_binary)
    socket:send(data, is_binary)
  end)
end
