-- A micro-benchmark of Lua timers (not part of scripts/bench): when a client connects
-- to /t, creates N edgews.timer timers and cancels them in creation order (the worst
-- order for a list scan), for N = 1,000, 10,000 and 50,000, logs the times and closes.
--   build/edgews-lua --listen 127.0.0.1:18931 --workers 1 bench/apps/timers_cancel.lua &
--   /usr/bin/python3 -c 'import asyncio, websockets
--   async def m():
--       async with websockets.connect("ws://127.0.0.1:18931/t") as ws: await ws.wait_closed()
--   asyncio.run(m())'
-- Measured on the 2-core development machine (commit 142b226 -> the id table):
-- 50,000 cancels took 17.4 s (347 us each) with the list scan, 27 ms (0.5 us) now.
local edgews = require "edgews"

local app = edgews.app { path = "/t" }

app:on("open", function(socket)
  for _, n in ipairs { 1000, 10000, 50000 } do
    local ts = {}
    local t0 = os.clock()
    for i = 1, n do ts[i] = edgews.timer(3600, function() end) end
    local t1 = os.clock()
    for i = 1, n do ts[i]:cancel() end
    local t2 = os.clock()
    edgews.log.info("timers: n=%d create %.1f ms, cancel %.1f ms (%.2f us per cancel)", n,
      (t1 - t0) * 1000, (t2 - t1) * 1000, (t2 - t1) * 1e6 / n)
  end
  socket:close()
end)
