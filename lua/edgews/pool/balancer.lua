-- edgews.pool.balancer: choosing a backend for an acquisition (pure Lua).
--
--   local lb = balancer.new("weighted-round-robin")
--   local b = lb:pick(candidates, key)   -- candidates: array of backends
--                                        -- { id, weight, inflight }; key: ip-hash's
--
-- "round-robin"           each candidate in turn (exact over a stable set)
-- "least-connections"     the fewest in flight per unit of weight; ties in turn
-- "weighted-round-robin"  smooth weighted round robin (nginx): over any window of
--                         sum(weights) picks each backend gets exactly its weight
-- "ip-hash"               consistent hashing of key (e.g. the client's address) on a
--                         ring of 160 points per unit of weight per backend, built
--                         from the candidates: removing a backend moves only the keys
--                         it had; the others stay where they were
local bit = require "bit"
local band, bxor, rshift, lshift, tobit = bit.band, bit.bxor, bit.rshift, bit.lshift, bit.tobit
local byte, floor, sort, concat, type, error, tostring = string.byte, math.floor, table.sort,
  table.concat, type, error, tostring

local _M = {}
local LB = {}
LB.__index = LB

local POINTS = 160

local function mul32(a, b)
  local lo, hi = band(b, 0xffff), rshift(b, 16)
  return tobit(tobit(a * lo) + lshift(tobit(a * hi), 16))
end

--- hash32(s) -> 0 .. 2^32-1: FNV-1a with murmur3's finaliser.
local function hash32(s)
  local h = tobit(0x811c9dc5)
  for i = 1, #s do h = mul32(bxor(h, byte(s, i)), 16777619) end
  h = bxor(h, rshift(h, 16))
  h = mul32(h, tobit(0x85ebca6b))
  h = bxor(h, rshift(h, 13))
  h = mul32(h, tobit(0xc2b2ae35))
  h = bxor(h, rshift(h, 16))
  return h < 0 and h + 4294967296 or h
end
_M.hash32 = hash32

local strategies = {
  ["round-robin"] = true, ["least-connections"] = true,
  ["weighted-round-robin"] = true, ["ip-hash"] = true,
}

function _M.new(name)
  name = name or "round-robin"
  if not strategies[name] then
    error('load_balancing must be "round-robin", "least-connections", "weighted-round-robin" or "ip-hash"', 3)
  end
  return setmetatable({ name = name, i = 0, current = {}, rings = {} }, LB)
end

local function ring_for(self, cands)
  local ids = {}
  for i = 1, #cands do ids[i] = cands[i].id .. "*" .. (cands[i].weight or 1) end
  local sig = concat(ids, "\0")
  local ring = self.rings[sig]
  if ring then return ring end
  ring = { h = {}, b = {} }
  local pts = {}
  for _, c in ipairs(cands) do
    local n = floor(POINTS * (c.weight or 1) + 0.5)
    if n < 1 then n = 1 end
    for k = 1, n do pts[#pts + 1] = { hash32(tostring(c.id) .. "#" .. k), c.id } end
  end
  sort(pts, function(a, b) return a[1] < b[1] or (a[1] == b[1] and a[2] < b[2]) end)
  for i, p in ipairs(pts) do ring.h[i], ring.b[i] = p[1], p[2] end
  -- A few sets are live at a time (all healthy, all but one...): keep a handful.
  self.nrings = (self.nrings or 0) + 1
  if self.nrings > 16 then self.rings, self.nrings = {}, 1 end
  self.rings[sig] = ring
  return ring
end

-- The ring position's backend id for key.
function LB:ring_owner(cands, key)
  local ring = ring_for(self, cands)
  local h = hash32(tostring(key))
  local hs = ring.h
  local lo, hi = 1, #hs
  if h > hs[hi] then return ring.b[1] end
  while lo < hi do
    local mid = floor((lo + hi) / 2)
    if hs[mid] < h then lo = mid + 1 else hi = mid end
  end
  return ring.b[lo]
end

function LB:pick(cands, key)
  local n = #cands
  if n == 0 then return nil end
  if n == 1 then return cands[1] end
  local name = self.name
  if name == "round-robin" then
    self.i = self.i + 1
    return cands[(self.i - 1) % n + 1]
  elseif name == "least-connections" then
    self.i = self.i + 1
    local start = (self.i - 1) % n
    local best, bl
    for k = 0, n - 1 do
      local c = cands[(start + k) % n + 1]
      local load = (c.inflight or 0) / (c.weight or 1)
      if not best or load < bl then best, bl = c, load end
    end
    return best
  elseif name == "weighted-round-robin" then
    local cur, total, best = self.current, 0, nil
    for i = 1, n do
      local c = cands[i]
      local w = c.weight or 1
      cur[c.id] = (cur[c.id] or 0) + w
      total = total + w
      if not best or cur[c.id] > cur[best.id] then best = c end
    end
    cur[best.id] = cur[best.id] - total
    return best
  else -- ip-hash
    if key == nil then
      error("ip-hash needs a key: pool:acquire{ key = ... }", 3)
    end
    local id = self:ring_owner(cands, key)
    for i = 1, n do
      if cands[i].id == id then return cands[i] end
    end
  end
end

return _M
