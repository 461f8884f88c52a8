-- edgews.pool.backoff: reconnection delays, exponential with jitter (pure Lua; the
-- random source is injectable so specs can check the distribution).
--
--   local b = backoff.new { initial = 0.1, max = 30, multiplier = 2, jitter = "full" }
--   b:delay(attempt [, rand]) -> seconds   -- attempt 1 = the first retry
--
-- The ceiling of attempt n is min(max, initial * multiplier^(n-1)); "full" jitter
-- (AWS's "Exponential Backoff And Jitter") draws uniformly from [0, ceiling), "equal"
-- from [ceiling/2, ceiling), "none" is the ceiling itself.
local type, error, random, min = type, error, math.random, math.min

local _M = {}
local B = {}
B.__index = B

local function num(v, name, def, lo)
  if v == nil then return def end
  if type(v) ~= "number" or not (v >= lo) then error("reconnect." .. name .. " must be a number >= " .. lo, 4) end
  return v
end

function _M.new(o)
  o = o or {}
  if type(o) ~= "table" then error("reconnect must be a table", 3) end
  local b = setmetatable({
    initial = num(o.initial, "initial", 0.1, 0),
    max = num(o.max, "max", 30, 0),
    multiplier = num(o.multiplier, "multiplier", 2, 1),
    jitter = o.jitter or "full",
  }, B)
  if b.jitter ~= "full" and b.jitter ~= "equal" and b.jitter ~= "none" then
    error('reconnect.jitter must be "full", "equal" or "none"', 3)
  end
  if b.max < b.initial then error("reconnect.max must be >= reconnect.initial", 3) end
  return b
end

function B:ceiling(attempt)
  if attempt < 1 then attempt = 1 end
  return min(self.max, self.initial * self.multiplier ^ (attempt - 1))
end

function B:delay(attempt, rand)
  local c = self:ceiling(attempt)
  rand = rand or random
  if self.jitter == "full" then return c * rand() end
  if self.jitter == "equal" then return c / 2 + c / 2 * rand() end
  return c
end

return _M
