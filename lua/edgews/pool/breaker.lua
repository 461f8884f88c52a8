-- edgews.pool.breaker: a circuit breaker (pure Lua, the clock is injectable).
--
--   closed    requests flow; failure_threshold consecutive failures -> open
--   open      requests are refused until recovery_timeout seconds have passed,
--             then the next request is let through as the one probe: half-open
--   half_open one probe in flight, others refused; its success -> closed, its
--             failure -> open again (for another recovery_timeout)
--
--   local br = breaker.new({ failure_threshold = 5, recovery_timeout = 30 }, clock, on_change)
--   if br:allow() then ... br:success() / br:failure() end
-- on_change(new_state, old_state) runs once per transition.
local type, error = type, error

local _M = {}
local Br = {}
Br.__index = Br

function _M.new(o, clock, on_change)
  o = o or {}
  if type(o) ~= "table" then error("circuit_breaker must be a table", 3) end
  local ft, rt = o.failure_threshold or 5, o.recovery_timeout or 30
  if type(ft) ~= "number" or ft < 1 or ft % 1 ~= 0 then error("circuit_breaker.failure_threshold must be an integer >= 1", 3) end
  if type(rt) ~= "number" or not (rt >= 0) then error("circuit_breaker.recovery_timeout must be seconds >= 0", 3) end
  return setmetatable({ threshold = ft, recovery = rt, clock = clock, on_change = on_change,
    state = "closed", failures = 0, opened_at = 0, probing = false }, Br)
end

function Br:_set(s)
  local old = self.state
  if old == s then return end
  self.state = s
  if self.on_change then self.on_change(s, old) end
end

-- The state now (an open circuit whose recovery time passed reads "half_open" only
-- once a request was let through).
function Br:current()
  return self.state
end

-- May a request go to this backend now? In half-open, true for the one probe.
function Br:allow()
  if self.state == "closed" then return true end
  if self.state == "open" then
    if self.clock() - self.opened_at < self.recovery then return false end
    self:_set("half_open")
    self.probing = true
    return true
  end
  -- half_open
  if self.probing then return false end
  self.probing = true
  return true
end

-- Would allow() say yes (without taking the probe)?
function Br:would_allow()
  if self.state == "closed" then return true end
  if self.state == "open" then return self.clock() - self.opened_at >= self.recovery end
  return not self.probing
end

function Br:success()
  self.failures = 0
  self.probing = false
  if self.state ~= "closed" then self:_set("closed") end
end

function Br:failure()
  self.failures = self.failures + 1
  if self.state == "half_open" then
    self.probing = false
    self.opened_at = self.clock()
    self:_set("open")
  elseif self.state == "closed" and self.failures >= self.threshold then
    self.opened_at = self.clock()
    self:_set("open")
  end
end

-- A probe that ended without a verdict (released unused): let another try.
function Br:release_probe()
  if self.state == "half_open" then self.probing = false end
end

return _M
