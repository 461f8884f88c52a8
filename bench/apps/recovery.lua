-- The app of `edgews-bench recover` (bench/recover.c, scripts/bench-recovery): one
-- pub/sub topic, "bench", and text commands on /recovery:
--   F<n>      publish n messages (64 B strings; stored topics: one batch) -> f<last offset>
--   S<since>  subscribe this socket with since_offset (the replay, then live)
--             -> s<replayed>,<recovered 1|0>,<gap 1|0> once the replay is done
--   U         unsubscribe -> u
--   E...      echo (the bystander's latency probe)
-- Run with or without --data DIR (SQLite or memory history).
local edgews = require "edgews"
local pubsub = edgews.pubsub

edgews.configure { pubsub = { max_queue_size = 10000, max_recover = 10000 } }

local app = edgews.app { path = "/recovery", max_buffered = 64 * 1024 * 1024 }

local TOPIC, PAD = "bench", string.rep("x", 64)
local byte, sub, tonumber = string.byte, string.sub, tonumber
local E, S, U, F = byte "E", byte "S", byte "U", byte "F"

app:on("message", function(socket, data)
  local k = byte(data, 1)
  if k == E then
    socket:send(data)
  elseif k == S then
    local r, err = pubsub.subscribe(TOPIC, socket, { since_offset = tonumber(sub(data, 2)) })
    if not r then return socket:send("x" .. tostring(err)) end
    socket:send(("s%d,%d,%d"):format(r.replayed, r.recovered and 1 or 0, r.gap and 1 or 0))
  elseif k == U then
    pubsub.unsubscribe(TOPIC, socket)
    socket:send("u")
  elseif k == F then
    local n, last = tonumber(sub(data, 2)), nil
    for i = 1, n do last = pubsub.publish(TOPIC, PAD, { wait = i == n }) end
    socket:send("f" .. last.offset)
  end
end)
