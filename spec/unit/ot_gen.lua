-- Random documents and operations for the edgews.ot specs (ot_spec.lua,
-- ot_otjs_spec.lua). Deterministic: its own generator (Park-Miller), so a seed gives
-- the same cases on every machine and under Lua 5.1 or LuaJIT, whatever else calls
-- math.random.
local G = {}

local Rng = {}
Rng.__index = Rng

function G.rng(seed)
  return setmetatable({ s = seed % 2147483646 + 1 }, Rng)
end

function Rng:float() -- [0, 1)
  self.s = self.s * 16807 % 2147483647
  return (self.s - 1) / 2147483646
end

function Rng:int(lo, hi) -- lo..hi inclusive
  return lo + math.floor(self:float() * (hi - lo + 1))
end

function Rng:pick(t)
  return t[self:int(1, #t)]
end

-- Characters by UTF-8 length; the UTF-16 width of the 4-byte ones is 2.
G.ASCII = { "a", "b", "c", "x", "y", "z", "0", "7", " ", "\n", "-", "\"", "\\", "/" }
G.TWO = { "é", "ß", "Ω", "ж", "ñ", "\194\128" }                    -- U+0080 too
G.THREE = { "€", "中", "日", "あ", "\239\191\189", "\224\160\128", "\239\191\191" } -- U+FFFD, U+0800, U+FFFF
G.FOUR = { "😀", "𝄞", "🎉", "𠜎", "\240\144\128\128", "\244\143\191\191" } -- U+10000, U+10FFFF

-- A document profile: which character classes, with weights.
G.PROFILES = {
  ascii = { { G.ASCII, 1 } },
  latin = { { G.ASCII, 6 }, { G.TWO, 2 } },
  cjk = { { G.THREE, 5 }, { G.ASCII, 1 } },
  emoji = { { G.FOUR, 3 }, { G.ASCII, 2 } },
  mixed = { { G.ASCII, 3 }, { G.TWO, 1 }, { G.THREE, 1 }, { G.FOUR, 1 } },
  astral = { { G.FOUR, 1 } },
}
G.PROFILE_NAMES = { "ascii", "latin", "cjk", "emoji", "mixed", "astral" }

local function width(ch)
  return #ch == 4 and 2 or 1
end
G.width = width

function G.char(r, profile)
  local total = 0
  for _, e in ipairs(profile) do total = total + e[2] end
  local x = r:float() * total
  for _, e in ipairs(profile) do
    x = x - e[2]
    if x < 0 then return r:pick(e[1]) end
  end
  return r:pick(profile[#profile][1])
end

-- A random text of n characters.
function G.text(r, profile, n)
  local t = {}
  for i = 1, n do t[i] = G.char(r, profile) end
  return table.concat(t)
end

-- The characters of a (valid) UTF-8 string.
function G.chars(s)
  local t = {}
  for ch in s:gmatch("[%z\1-\127\194-\244][\128-\191]*") do t[#t + 1] = ch end
  return t
end

function G.units(s)
  local n = 0
  for _, ch in ipairs(G.chars(s)) do n = n + width(ch) end
  return n
end

-- A random document: up to max_chars characters of a random (or the given) profile.
function G.doc(r, max_chars, profile)
  profile = profile or G.PROFILES[r:pick(G.PROFILE_NAMES)]
  return G.text(r, profile, r:int(0, max_chars)), profile
end

-- A random operation on document s, cutting only at character boundaries.
-- raw = true: sometimes not canonical (split retains, a delete before an insert,
-- consecutive inserts), as a client may send them.
function G.op(r, s, profile, raw)
  local chars = G.chars(s)
  local out = {}
  local function push(c)
    local last = out[#out]
    if not raw or r:float() < 0.7 then
      if type(c) == "number" and type(last) == "number" and (c > 0) == (last > 0) then
        out[#out] = last + c
        return
      elseif type(c) == "string" and type(last) == "string" then
        out[#out] = last .. c
        return
      end
    end
    out[#out + 1] = c
  end
  local i, n = 1, #chars
  local p_ins, p_del = r:float() * 0.3, r:float() * 0.4
  while i <= n do
    local x = r:float()
    if x < p_ins then
      push(G.text(r, profile, r:int(1, 4)))
    elseif x < p_ins + p_del then
      local k, units = r:int(1, math.min(n - i + 1, 4)), 0
      for j = i, i + k - 1 do units = units + width(chars[j]) end
      push(-units)
      i = i + k
    else
      local k, units = r:int(1, math.min(n - i + 1, 6)), 0
      for j = i, i + k - 1 do units = units + width(chars[j]) end
      push(units)
      i = i + k
    end
  end
  if r:float() < 0.3 then push(G.text(r, profile, r:int(1, 3))) end
  return out
end

-- Unit positions of a document that are character boundaries (0..units).
function G.boundaries(s)
  local t, u = { 0 }, 0
  for _, ch in ipairs(G.chars(s)) do
    u = u + width(ch)
    t[#t + 1] = u
  end
  return t
end

return G
