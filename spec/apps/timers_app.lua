-- Lua timers on every worker at once, for timers_spec (run with --workers 2). As soon as
-- the script has loaded on a worker, that worker creates and cancels 40,000
-- edgews.timer timers (200 per 1 ms tick, all workers in parallel) and then logs
--   "timers on worker W: created N, cancelled C, ids increasing: true|false, pending P"
-- (P = edgews.stats().timers once its own edgews.every is cancelled). /t is a
-- placeholder app (the script must define one).
local edgews = require "edgews"
local core = require "edgews.core"

edgews.app { path = "/t" }

if core.in_worker then
  local created, cancelled, increasing, last = 0, 0, true, 0
  local ticker
  ticker = edgews.every(0.001, function()
    for _ = 1, 200 do
      local t = edgews.timer(3600, function() end)
      created = created + 1
      if t.id <= last then increasing = false end
      last = t.id
      if t:cancel() then cancelled = cancelled + 1 end
    end
    if created >= 40000 then
      ticker:cancel()
      edgews.log.info("timers on worker %d: created %d, cancelled %d, ids increasing: %s, pending %d",
        edgews.worker_id(), created, cancelled, tostring(increasing), edgews.stats().timers)
    end
  end)
end
