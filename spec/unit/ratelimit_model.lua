-- The reference model of edgews.ratelimit for the specs: the pure-Lua token bucket
-- and keyed limiter that lua/edgews/ratelimit.lua was before the bucket moved to C
-- (core/hub/ratelimit.c). ratelimit_spec.lua checks that the C implementation gives
-- exactly the answers of this one (ok, retry_after, tokens, tracked keys) on random
-- inputs. It is test code only: the server has one token bucket, the C one.
--
-- A bucket holds up to `burst` tokens and gains `rate` per second; a take of n
-- succeeds when it holds n; a failed take removes nothing and answers the seconds
-- until n will be there (math.huge when n > burst). A clock that goes back refills
-- nothing and `last` never moves back. A limiter keeps only buckets that are not
-- full (a missing key is a full bucket) in dense parallel arrays, and each take
-- examines the next SWEEP slots of an incremental sweep, dropping full buckets.

local type, pairs, error, tostring, setmetatable = type, pairs, error, tostring, setmetatable
local math_huge = math.huge

local _M = {}

local SWEEP = 4 -- slots examined per take

local function check_rate_burst(fn, rate, burst, level)
  if type(rate) ~= "number" or not (rate > 0) or rate == math_huge then
    error(fn .. ": rate must be a positive number of tokens per second, got " .. tostring(rate), level + 1)
  end
  if type(burst) ~= "number" or not (burst > 0) or burst == math_huge then
    error(fn .. ": burst must be a positive number of tokens, got " .. tostring(burst), level + 1)
  end
end

--- ratelimit.refill(tokens, last, now, rate, burst) -> tokens
-- The bucket's tokens at `now`, given `tokens` at time `last`.
local function refill(tokens, last, now, rate, burst)
  if now <= last then return tokens end
  tokens = tokens + (now - last) * rate
  if tokens > burst then return burst end
  return tokens
end
_M.refill = refill

--- ratelimit.consume(tokens, n, rate, burst) -> ok, tokens, retry_after
-- Takes n from a (refilled) bucket: ok, tokens - n, 0 when it holds n;
-- otherwise false, tokens, seconds until it will (math.huge if n > burst).
local function consume(tokens, n, rate, burst)
  if n <= tokens then return true, tokens - n, 0 end
  if n > burst then return false, tokens, math_huge end
  return false, tokens, (n - tokens) / rate
end
_M.consume = consume

local function check_n(n)
  if type(n) ~= "number" or not (n >= 0) then
    error("ratelimit: take: n must be a non-negative number, got " .. tostring(n), 3)
  end
end

-- A single bucket --------------------------------------------------------

local Bucket = {}
Bucket.__index = Bucket

--- ratelimit.bucket(rate, burst, now) -> bucket (starts full); now: clock function (seconds)
function _M.bucket(rate, burst, now)
  check_rate_burst("ratelimit.bucket", rate, burst, 2)
  if type(now) ~= "function" then error("ratelimit.bucket: now must be a clock function", 2) end
  return setmetatable({ rate = rate, burst = burst, now = now, tok = burst, last = -math_huge }, Bucket)
end

--- bucket:take([n]) -> true | false, retry_after
function Bucket:take(n)
  n = n or 1
  check_n(n)
  local t = self.now()
  local last = self.last
  local ok, left, retry = consume(refill(self.tok, last, t, self.rate, self.burst), n, self.rate, self.burst)
  self.tok = left
  if t > last then self.last = t end
  if ok then return true end
  return false, retry
end

--- bucket:tokens() -> the tokens available now
function Bucket:tokens()
  return refill(self.tok, self.last, self.now(), self.rate, self.burst)
end

--- bucket:reset(): full again
function Bucket:reset()
  self.tok, self.last = self.burst, -math_huge
end

-- A limiter: one bucket per key -----------------------------------------

local Limiter = {}
Limiter.__index = Limiter

local new_fields = { rate = true, burst = true, now = true }

--- ratelimit.new{ rate = tokens per second, burst = tokens, now = clock function } -> limiter
function _M.new(opts)
  if type(opts) ~= "table" then error("ratelimit.new expects a table {rate=, burst=, now=}", 2) end
  for k in pairs(opts) do
    if not new_fields[k] then error("ratelimit.new: unknown field '" .. tostring(k) .. "'", 2) end
  end
  check_rate_burst("ratelimit.new", opts.rate, opts.burst, 2)
  if type(opts.now) ~= "function" then error("ratelimit.new: now must be a clock function (seconds)", 2) end
  return setmetatable({
    rate = opts.rate, burst = opts.burst, now = opts.now,
    slot = {},                     -- key -> slot
    key = {}, tok = {}, at = {},   -- slot -> key, tokens, time of the last take
    count = 0, cursor = 1,
  }, Limiter)
end

-- Removes slot i: the last slot moves into it.
local function remove(self, i)
  local n = self.count
  local keys, tokens, last = self.key, self.tok, self.at
  self.slot[keys[i]] = nil
  if i ~= n then
    local k = keys[n]
    keys[i], tokens[i], last[i] = k, tokens[n], last[n]
    self.slot[k] = i
  end
  keys[n], tokens[n], last[n] = nil, nil, nil
  self.count = n - 1
end

-- Examines up to SWEEP slots from the cursor, dropping buckets full at t.
local function sweep(self, t)
  local rate, burst = self.rate, self.burst
  local tokens, last = self.tok, self.at
  local c = self.cursor
  for _ = 1, SWEEP do
    if c > self.count then
      c = 1
      if self.count == 0 then break end
    end
    if refill(tokens[c], last[c], t, rate, burst) >= burst then
      remove(self, c) -- another bucket moved into slot c: examine it next
    else
      c = c + 1
    end
  end
  self.cursor = c
end

--- limiter:take(key [, n]) -> true | false, retry_after
-- n: the cost in tokens (default 1; e.g. #data for a byte budget).
function Limiter:take(key, n)
  if key == nil or key ~= key then error("ratelimit: take: key must not be nil or NaN", 2) end
  n = n or 1
  check_n(n)
  local t = self.now()
  local rate, burst = self.rate, self.burst
  local i = self.slot[key]
  local ok, left, retry
  if i then
    local l = self.at[i]
    ok, left, retry = consume(refill(self.tok[i], l, t, rate, burst), n, rate, burst)
    self.tok[i] = left
    if t > l then self.at[i] = t end
  else
    ok, left, retry = consume(burst, n, rate, burst)
    if left < burst then
      i = self.count + 1
      self.count = i
      self.slot[key] = i
      self.key[i], self.tok[i], self.at[i] = key, left, t
    end
  end
  sweep(self, t)
  if ok then return true end
  return false, retry
end

--- limiter:tokens(key) -> the tokens key's bucket holds now (burst when untracked)
function Limiter:tokens(key)
  local i = self.slot[key]
  if not i then return self.burst end
  return refill(self.tok[i], self.at[i], self.now(), self.rate, self.burst)
end

--- limiter:reset(key): the key's bucket is full again
function Limiter:reset(key)
  local i = self.slot[key]
  if i then remove(self, i) end
end

--- limiter:size() -> number of keys tracked (buckets not known to be full)
function Limiter:size()
  return self.count
end

return _M
