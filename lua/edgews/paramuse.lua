-- edgews.paramuse: whether a Lua function can read one of its parameters, from its
-- bytecode (LuaJIT's jit.util). The router uses it to call a route handler that never
-- reads its body without building that body.
--
--   local paramuse = require "edgews.paramuse"
--   paramuse.reads(function(socket, body, ctx) socket:send(ctx.raw) end, 2) --> false
--
-- The answer errs one way only: false means no instruction of the function reads the
-- parameter's slot and no closure made in it has an upvalue of the parameter's name;
-- everything else is true. So a slot written before it is read, a range of slots that
-- includes it (a call, a return, a loop's base), a vararg function, a C function, a
-- function without debug names that makes closures, or anything this module cannot
-- inspect (no jit.util) counts as reading it. A read through the debug library
-- (debug.getlocal of the handler's frame) is not seen.

local ok_ju, ju = pcall(require, "jit.util")
local ok_bit, bit = pcall(require, "bit")

local type, pcall, math_huge = type, pcall, math.huge
local getlocal = debug.getlocal

local _M = {}

-- operand modes (LuaJIT's BCMode) that name slots read (a dst, mode 1, is a write),
-- and the closure prototype of FNEW
local BASE, VAR, RBASE, FUNC = 2, 3, 4, 12

local band, shr = ok_bit and bit.band, ok_bit and bit.rshift

local function opcode_of(fn, pc)
  local ins = ju.funcbc(fn, pc)
  return ins and band(ins, 0xff)
end

-- Opcodes with an rbase A that read no slot from A (RET0: returns nothing; UCLO:
-- closes upvalues, what they capture is seen at FNEW) or only A (RET1). Taken from
-- compiled samples, so no opcode table of a particular LuaJIT version is assumed.
local RET0, RET1, UCLO
if ok_ju and ok_bit and type(ju.funcbc) == "function" then
  local ok = pcall(function()
    RET0 = opcode_of(function() end, 1)
    RET1 = opcode_of(function(a) return a end, 1)
    local sample = function() -- a loop body's closure closes its upvalue with UCLO
      for _ = 1, 2 do local x; local _ = function() return x end end
    end
    local fnew
    for pc = 1, 64 do
      local ins, m = ju.funcbc(sample, pc)
      if not ins then break end
      if band(shr(m, 7), 15) == FUNC then fnew = pc end
      if fnew and pc == fnew + 1 then UCLO = band(ins, 0xff) end
    end
  end)
  if not ok or not (RET0 and RET1 and UCLO) or RET0 == RET1 then RET0, RET1, UCLO = nil, nil, nil end
end

--- paramuse.reads(fn, n) -> boolean: may fn read its n-th parameter (1-based)?
function _M.reads(fn, n)
  if type(fn) ~= "function" or not UCLO then return true end
  local info = ju.funcinfo(fn)
  if type(info) ~= "table" or info.ffid or type(info.params) ~= "number" then return true end
  if info.isvararg then return true end
  if info.params < n then return false end
  local slot = n - 1
  local name = getlocal(fn, n)
  for pc = 1, math_huge do
    local ins, m = ju.funcbc(fn, pc)
    if not ins then break end
    local op = band(ins, 0xff)
    local ma, mb, mc = band(m, 7), band(shr(m, 3), 15), band(shr(m, 7), 15)
    local a, d = band(shr(ins, 8), 0xff), shr(ins, 16)
    local b, c = shr(ins, 24), band(d, 0xff)
    if mb == 0 then c = d end
    if ma == VAR then
      if a == slot then return true end
    elseif ma == BASE then
      if a <= slot then return true end
    elseif ma == RBASE then
      if op == RET1 then
        if a == slot then return true end
      elseif op ~= RET0 and op ~= UCLO and a <= slot then
        return true
      end
    end
    if (mb == VAR and b == slot) or ((mb == BASE or mb == RBASE) and b <= slot) then return true end
    if (mc == VAR and c == slot) or ((mc == BASE or mc == RBASE) and c <= slot) then return true end
    if mc == FUNC then -- a closure: does it capture the parameter?
      if not name then return true end
      local child = ju.funck(fn, -c - 1)
      for i = 0, 255 do
        local uv = ju.funcuvname(child, i)
        if uv == nil then break end
        if uv == name then return true end
      end
    end
  end
  return false
end

return _M
