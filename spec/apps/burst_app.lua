-- For spec/integration/large_send_spec.lua: "burst" answers with a run of messages of
-- mixed sizes (small ones that coalesce in the write queue, large ones that go out
-- without it), each filled with a pattern that names its place in the run; "echo:"
-- prefixed messages come back as they are.
local edgews = require "edgews"

local app = edgews.app { path = "/burst", heartbeat = false, max_message_size = 4 * 1024 * 1024,
  max_buffered = 32 * 1024 * 1024 }

local SIZES = { 16384, 70000 } -- then 6 MiB without a pause: more than the kernel takes
for _ = 1, 6 do SIZES[#SIZES + 1] = 1048576 end
for _, n in ipairs { 10, 70000, 5000, 3, 1048576, 4096, 4095, 200000, 17, 16384, 65536, 1 } do
  SIZES[#SIZES + 1] = n
end

local function body(i, size)
  local head = string.format("#%d:%d:", i, size)
  local unit = head .. string.rep(string.char(97 + i % 26), 61) .. "\n"
  local s = string.rep(unit, math.floor(size / #unit) + 1)
  return s:sub(1, size)
end

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
