-- Apps for deflate_engine_spec: echo with the shared compressor on libdeflate
-- (compression.engine = "libdeflate") at level 1 and 9, and on zlib for contrast.
-- threshold 0: every message, even the empty one, goes out compressed.
local edgews = require "edgews"

local apps = {
  { "/ld",   { mode = "shared", engine = "libdeflate", threshold = 0 } },
  { "/ld9",  { mode = "shared", engine = "libdeflate", threshold = 0, level = 9 } },
  { "/zlib", { mode = "shared", threshold = 0 } },
}

for _, a in ipairs(apps) do
  local app = edgews.app { path = a[1], compression = a[2], max_message_size = 1024 * 1024 }
  app:on("message", function(socket, data, is_binary)
    socket:send(data, is_binary)
  end)
end
