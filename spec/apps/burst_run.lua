-- The run of messages burst_app.lua sends on "burst" and large_send_spec.lua checks:
-- SIZES (bytes, in order) and body(i, size), message i filled with a pattern that
-- names its place in the run. The first one is larger than the kernel takes at once
-- (the client's window is small), so it is written in part and the rest queued; the
-- others queue behind it.
local M = {}

M.SIZES = { 6 * 1048576, 16384, 70000, 1048576, 1048576, 10, 70000, 5000, 3, 1048576,
  4096, 4095, 200000, 17, 16384, 65536, 1 }

function M.body(i, size)
  local head = string.format("#%d:%d:", i, size)
  local unit = head .. string.rep(string.char(97 + i % 26), 61) .. "\n"
  local s = string.rep(unit, math.floor(size / #unit) + 1)
  return s:sub(1, size)
end

return M
