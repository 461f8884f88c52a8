-- edgews.ot: operational transformation of plain text, compatible with ot.js.
--
--   local ot = require "edgews.ot"
--   local a, b = { 1, "x", 2 }, { 3, "y" }           -- both made on "abc"
--   local a2, b2 = ot.transform(a, b)               -- a2 = {1,"x",3}, b2 = {4,"y"}
--   ot.apply(ot.apply("abc", a), b2) == ot.apply(ot.apply("abc", b), a2)  -- "axbcy"
--
-- API (UTF-16 units throughout; invalid input returns nil, err):
--   parse(op [, len]) -> op', base, target   validate (strictly; against a document
--                                            length if given), canonical copy
--   normalize(op) -> op'                     canonical copy; drops 0 and "" components
--   base_length(op), target_length(op) -> n, is_noop(op) -> bool
--   apply(doc, op [, len]) -> doc'           len: doc's UTF-16 length, if known
--   invert(op, doc [, len]) -> inverse       apply(apply(doc, op), inverse) == doc
--   transform(a, b) -> a', b'                a, b concurrent on the same document
--   compose(a, b) -> ab                      b follows a
--   transform_cursor(pos, op [, is_own]) -> pos'
--   transform_range({ anchor, head }, op [, is_own]) -> range'
--   transform_selection({ ranges = { range... } }, op [, is_own]) -> selection'
--   utf16_length(str) -> n | nil, "invalid UTF-8"
--   MAX_LENGTH = 2^53 - 1                    largest count or length accepted
--
-- Wire format. An operation is ot.js's TextOperation JSON, a Lua array as a JSON
-- decoder returns it: a positive integer n retains (skips) n characters, a string
-- inserts itself, a negative integer -n deletes n characters. An operation covers the
-- whole document: its base length (retains + deletes) is the length of the document
-- it applies to, its target length (retains + inserts) the length of the result.
-- The empty document's operations are {} and {"text"}.
--
-- Positions. Lengths and positions count UTF-16 code units, as JavaScript strings,
-- ot.js, CodeMirror and textarea selections do: a character of the Basic
-- Multilingual Plane is one unit, an astral character (U+10000 and up, such as most
-- emoji) is two (a surrogate pair). Documents and inserted text are UTF-8 Lua
-- strings. So in "a😀b" (6 bytes) the "b" is at position 3, and an operation that
-- retains 2 (or deletes 1 at position 1) would cut the pair in half: the engine
-- rejects it ("splits a surrogate pair"), as it rejects inserts that are not valid
-- UTF-8 (overlong forms, encoded surrogates, code points above U+10FFFF, truncated
-- or stray bytes). JSON decoders turn "\ud83d\ude00" into the 4-byte UTF-8 of U+1F600,
-- and must refuse a lone surrogate escape (lua-cjson does).
--
-- Conversion. Mapping a UTF-16 position to a byte offset needs a scan of the UTF-8
-- text before it. apply() walks the document once per operation, each seek starting
-- where the previous component ended, never from the start per component. Long
-- seeks read 8 bytes at a time through LuaJIT's FFI (about 0.4 ms per MB; a byte
-- loop, about 1-2 ns per byte, finishes each seek and is the whole scan on a plain
-- Lua without FFI). When the caller also passes the document's UTF-16 length (a
-- server keeps it anyway: the target length of the last operation), apply() knows
-- where the document ends without scanning: it seeks each position from the nearer
-- end (forward from the previous component, or backward from the end), copies the
-- trailing retain without looking at it, and once the bytes left equal the units
-- left (exactly when the rest is ASCII) it computes offsets instead of scanning; an
-- ASCII document then costs no scan at all. Every cut is checked to fall on a
-- character boundary, so a wrong length gives wrong positions or raises but never
-- broken UTF-8. A big result (64 KiB and more) is copied into one buffer and made
-- a string once, rather than a substring per retained span plus a concatenation:
-- making the new string is then most of the cost of an edit to a big document.
-- The document itself is trusted to be valid UTF-8 (it results from earlier
-- operations; check text from elsewhere with utf16_length first).
--
-- Canonical form. Every operation this module returns is canonical, as ot.js's
-- builder makes them: no empty components, adjacent components of one kind merged,
-- and an insert placed before a delete at the same position ({-1, "x"} becomes
-- {"x", -1}: both do the same). Inputs need not be canonical (transform, compose and
-- the cursor functions canonicalise them first, because the order of an insert and
-- a delete at one position decides tie-breaks); apply() takes them as they are.
--
-- Tie-break. transform(a, b) returns a', b' with apply(apply(d, a), b') ==
-- apply(apply(d, b), a'). When a and b insert at the same position, a's text comes
-- first, as in ot.js's TextOperation.transform(a, b). ot.js's Server transforms an
-- incoming operation against each committed one as transform(incoming, committed)
-- and its Client transforms its own pending operation as transform(pending, received):
-- both put the operation committed later first. A server talking to ot.js clients
-- must do the same to converge with them. Results equal ot.js 0.0.15's, component
-- for component (spec/unit/ot_otjs_spec.lua runs thousands of random cases through
-- ot.js under Node and compares).
--
-- Cursors. transform_cursor(pos, op, is_own) moves a position through an operation
-- as ot.js's Range.transform does: text inserted before the position shifts it
-- right, deleted text before it shifts it left, a position inside a deleted span
-- goes to the span's start. Text inserted exactly at the position is the one
-- choice: is_own = true puts the position after it (the author's caret follows its
-- typing; ot.js does this for every range), is_own = false/nil leaves it before
-- (another user's typing at your caret does not push it). Ranges are ot.js's
-- { anchor = n, head = n } (equal for a caret), selections { ranges = { ... } }.
--
-- Errors. Invalid input returns nil, err; nothing is changed (strings are
-- immutable and no argument is modified). Programming mistakes raise: a document
-- that is not a string, a length that is not a non-negative integer, a length
-- that does not belong to the document. The messages (N is the 1-based index of
-- the component in the array that was passed, B, L, P numbers):
--   "not an array"                          the operation is not a table with keys 1..n
--   "component N: unknown type"             neither a number nor a string (true, {}, null)
--   "component N: empty"                    0, -0 or ""
--   "component N: not an integer"           1.5, NaN, +-inf
--   "component N: too large"                a count, or the running base or target
--                                           length, above 2^53 - 1 (MAX_LENGTH)
--   "component N: invalid UTF-8"            an insert that is not valid UTF-8
--   "component N: retain past the end"      retains beyond the document's end
--   "component N: delete past the end"      deletes beyond the document's end
--   "component N: splits a surrogate pair"  a retain or delete ends inside an astral
--                                           character of the document
--   "base length B does not match document length L"   the operation ends early
--   "base lengths differ (B and L)"         transform: a and b start from different lengths
--   "target length B does not match base length L"     compose: b does not follow a
--   "splits a surrogate pair inserted by the first operation"   compose
--   "position is not an integer", "position P out of range (0..L)"   cursors
--   "range is not a table", "selection is not a table"
-- transform and compose prefix the errors of their arguments with "first operation: "
-- or "second operation: "; the selection functions prefix "anchor: ", "head: " and
-- "range N: ".

local type, pairs, next, tostring, error = type, pairs, next, tostring, error
local byte, sub, fmt = string.byte, string.sub, string.format
local concat = table.concat
local huge = math.huge

local _M = {}

-- Counts above this are rejected: beyond 2^53 doubles (and JavaScript numbers) stop
-- being exact integers.
local MAX_LENGTH = 2 ^ 53 - 1
_M.MAX_LENGTH = MAX_LENGTH

local SPLIT, END = 1, 2

-- Numbers in messages: integers exactly, anything else as tostring does.
local function num(n)
  if n % 1 == 0 and n >= -MAX_LENGTH and n <= MAX_LENGTH then return fmt("%d", n) end
  return tostring(n)
end

---------------------------------------------------------------------------------------
-- UTF-8 and UTF-16

-- The UTF-16 length of a UTF-8 string, or nil if it is not valid UTF-8 (RFC 3629:
-- shortest form, no surrogates, at most U+10FFFF).
local function u16len(s)
  local i, n, len = 1, 0, #s
  while i <= len do
    local c = byte(s, i)
    if c < 0x80 then
      i = i + 1; n = n + 1
    elseif c < 0xC2 then
      return nil
    elseif c < 0xE0 then
      local c2 = byte(s, i + 1)
      if not c2 or c2 < 0x80 or c2 > 0xBF then return nil end
      i = i + 2; n = n + 1
    elseif c < 0xF0 then
      local c2, c3 = byte(s, i + 1, i + 2)
      if not c3 or c2 < 0x80 or c2 > 0xBF or c3 < 0x80 or c3 > 0xBF
        or (c == 0xE0 and c2 < 0xA0) or (c == 0xED and c2 > 0x9F) then
        return nil
      end
      i = i + 3; n = n + 1
    elseif c < 0xF5 then
      local c2, c3, c4 = byte(s, i + 1, i + 3)
      if not c4 or c2 < 0x80 or c2 > 0xBF or c3 < 0x80 or c3 > 0xBF or c4 < 0x80 or c4 > 0xBF
        or (c == 0xF0 and c2 < 0x90) or (c == 0xF4 and c2 > 0x8F) then
        return nil
      end
      i = i + 4; n = n + 2
    else
      return nil
    end
  end
  return n
end

-- From byte index i (a character boundary) of valid UTF-8 s, the byte index n UTF-16
-- units further; nil, END if s ends first, nil, SPLIT if that lands inside a pair.
local function fwd_bytes(s, i, n)
  while n > 0 do
    local c = byte(s, i)
    if not c then return nil, END end
    if c < 0x80 then
      i = i + 1; n = n - 1
    elseif c < 0xE0 then
      i = i + 2; n = n - 1
    elseif c < 0xF0 then
      i = i + 3; n = n - 1
    elseif n == 1 then
      return nil, SPLIT
    else
      i = i + 4; n = n - 2
    end
  end
  return i
end

-- From byte index j (exclusive: a character boundary or #s + 1), the byte index n
-- units back; nil, END before the start, nil, SPLIT inside a pair.
local function back_bytes(s, j, n)
  while n > 0 do
    j = j - 1
    local c = byte(s, j)
    if not c then return nil, END end
    if c >= 0x80 then
      while c < 0xC0 do
        j = j - 1
        c = byte(s, j)
        if not c then return nil, END end
      end
      if c >= 0xF0 then
        if n == 1 then return nil, SPLIT end
        n = n - 1
      end
    end
    n = n - 1
  end
  return j
end

-- With LuaJIT's FFI, long seeks go 8 bytes at a time. In valid UTF-8 every character
-- has one lead byte (any byte but the continuations 10xxxxxx), and a character is 2
-- UTF-16 units when its lead is 11110xxx, else 1; so the units of the characters that
-- start in a word are (non-continuation bytes) + (bytes >= 0xF0), counted with bit
-- operations, and an ASCII word (no high bit) is simply 8. Words are read at 8-byte
-- aligned addresses (the bytes before the first one are counted singly), and the word
-- loop stops while more than 16 units remain (a word holds at most 9), so the byte loop
-- finishes the seek and detects a split pair. A character that straddles the last
-- word forward was counted by its lead, so its continuation bytes are stepped over;
-- backward, one that straddles was not, and the byte loop counts it.
local fwd, back = fwd_bytes, back_bytes
local ffi_ok, ffi = pcall(require, "ffi")
local bit_ok, bit = pcall(require, "bit")
if ffi_ok and bit_ok and type(ffi) == "table" and type(bit) == "table" then
  local band, bnot, lshift, rshift = bit.band, bit.bnot, bit.lshift, bit.rshift
  local cast, tonum = ffi.cast, tonumber
  local u8p, u64p, uptr = ffi.typeof("const uint8_t *"), ffi.typeof("const uint64_t *"),
    ffi.typeof("uintptr_t")
  -- (no 0x...ULL literals: the file must stay parseable by Lua 5.1)
  local HI = ffi.new("uint64_t", 0x80808080) * 0x100000001   -- 0x8080808080808080
  local ONES = ffi.new("uint64_t", 0x01010101) * 0x100000001 -- 0x0101010101010101

  -- Units of the characters whose lead byte is in word x. Each byte contributes
  -- 1 - (continuation) + (>= 0xF0), at most 2, so the 8 sums fit their bytes and one
  -- multiplication adds them up in the top byte. No branch: a branch would leave the
  -- compiled loop through a side exit, which boxes the 64-bit values.
  local function word_units(x)
    local c7 = band(x, HI)
    local x1 = lshift(x, 1)
    local cont = rshift(band(c7, bnot(x1)), 7)                                     -- 10xxxxxx
    local four = rshift(band(band(c7, x1), band(lshift(x, 2), lshift(x, 3))), 7)  -- 1111xxxx
    return tonum(rshift((ONES - cont + four) * ONES, 56))
  end

  local function units_of_byte(c)
    if c < 0x80 then return 1 end
    if c < 0xC0 then return 0 end
    if c < 0xF0 then return 1 end
    return 2
  end

  fwd = function(s, i, n)
    local len = #s
    if n > 32 and len - i > 64 then
      local p = cast(u8p, s)
      while n > 16 and tonum(cast(uptr, p + (i - 1))) % 8 ~= 0 do
        n = n - units_of_byte(p[i - 1])
        i = i + 1
      end
      local w = cast(u64p, p + (i - 1))
      local k, words = 0, (len - i + 1 - (len - i + 1) % 8) / 8
      while n > 16 and k < words do
        n = n - word_units(w[k])
        k = k + 1
      end
      i = i + 8 * k
      local c = p[i - 1] -- i <= len + 1: the terminating NUL at worst
      while c >= 0x80 and c < 0xC0 do
        i = i + 1
        c = p[i - 1]
      end
    end
    return fwd_bytes(s, i, n)
  end

  back = function(s, j, n)
    if n > 32 and j > 64 then
      local p = cast(u8p, s)
      while n > 16 and tonum(cast(uptr, p + (j - 1))) % 8 ~= 0 do
        j = j - 1
        n = n - units_of_byte(p[j - 1])
      end
      local words = (j - 1 - (j - 1) % 8) / 8
      local w = cast(u64p, p + (j - 1))
      local k = 0
      while n > 16 and k < words do
        k = k + 1
        n = n - word_units(w[-k])
      end
      j = j - 8 * k
      -- j may be inside a character whose lead is before j (not counted yet):
      -- back_bytes steps back to that lead and counts it
    end
    return back_bytes(s, j, n)
  end
end

-- The UTF-16 length of s from byte i on (s valid UTF-8).
local function units_from(s, i)
  local n, len = 0, #s
  while i <= len do
    local c = byte(s, i)
    if c < 0x80 then
      i = i + 1; n = n + 1
    elseif c < 0xE0 then
      i = i + 2; n = n + 1
    elseif c < 0xF0 then
      i = i + 3; n = n + 1
    else
      i = i + 4; n = n + 2
    end
  end
  return n
end

-- utf16_length(str) -> units | nil, "invalid UTF-8"
function _M.utf16_length(s)
  if type(s) ~= "string" then error("ot.utf16_length: string expected, got " .. type(s), 2) end
  local n = u16len(s)
  if not n then return nil, "invalid UTF-8" end
  return n
end

---------------------------------------------------------------------------------------
-- Validation

-- Checks a raw operation. Fills lens[k] with the UTF-16 length of each insert k.
-- limit (optional): the document length the operation must cover exactly.
-- lenient: empty components are accepted (normalize drops them).
-- Returns base, target, canonical (whether op already is in canonical form) or nil, err.
local function check(op, lens, limit, lenient)
  if type(op) ~= "table" then return nil, "not an array" end
  local n = #op
  -- Keys are counted with next() calls, not a pairs() loop: the LuaJIT of Debian 12
  -- (2.1.0~beta3+git20220320) can run a compiled or blacklisted pairs() loop for the
  -- wrong number of iterations (LuaJIT issue #827, fixed upstream in April 2022).
  local keys, k = 0, next(op)
  while k ~= nil do
    keys = keys + 1
    k = next(op, k)
  end
  if keys ~= n then return nil, "not an array" end
  local base, target = 0, 0
  local canonical = true
  local prev = 0 -- kind of the previous kept component: 1 retain, 2 insert, 3 delete
  for k = 1, n do
    local c = op[k]
    local t = type(c)
    if t == "number" then
      if c ~= c or c == huge or c == -huge or c % 1 ~= 0 then
        return nil, fmt("component %d: not an integer", k)
      end
      if c > 0 then
        if c > MAX_LENGTH then return nil, fmt("component %d: too large", k) end
        base = base + c
        target = target + c
        if limit and base > limit then return nil, fmt("component %d: retain past the end", k) end
        if prev == 1 then canonical = false end
        prev = 1
      elseif c < 0 then
        if c < -MAX_LENGTH then return nil, fmt("component %d: too large", k) end
        base = base - c
        if limit and base > limit then return nil, fmt("component %d: delete past the end", k) end
        if prev == 3 then canonical = false end
        prev = 3
      elseif lenient then
        canonical = false
      else
        return nil, fmt("component %d: empty", k)
      end
    elseif t == "string" then
      if c == "" then
        if not lenient then return nil, fmt("component %d: empty", k) end
        canonical = false
      else
        local u = u16len(c)
        if not u then return nil, fmt("component %d: invalid UTF-8", k) end
        target = target + u
        if lens then lens[k] = u end
        if prev >= 2 then canonical = false end -- insert after insert or after delete
        prev = 2
      end
    else
      return nil, fmt("component %d: unknown type", k)
    end
    if base > MAX_LENGTH or target > MAX_LENGTH then
      return nil, fmt("component %d: too large", k)
    end
  end
  if limit and base ~= limit then
    return nil, fmt("base length %s does not match document length %s", num(base), num(limit))
  end
  return base, target, canonical
end

local function check_len(len, fname, level)
  if len ~= nil and (type(len) ~= "number" or len < 0 or len % 1 ~= 0 or len > MAX_LENGTH) then
    error(fname .. ": document length must be a non-negative integer, got " .. tostring(len), level)
  end
end

---------------------------------------------------------------------------------------
-- Builder: appends components in canonical form (ot.js's retain/insert/delete). A
-- run of inserts and deletes between two retains is kept pending and flushed as one
-- insert (concatenated once) followed by one delete.

-- with_lens: also record the UTF-16 length of each insert of the result in .lens.
local function builder(with_lens)
  return { out = {}, lens = with_lens and {} or false, k = 0, ins = nil, more = nil, nins = 0,
           units = 0, del = 0 }
end

local function flush(b)
  local out, k = b.out, b.k
  if b.nins > 0 then
    k = k + 1
    out[k] = b.nins == 1 and b.ins or concat(b.more, "", 1, b.nins)
    if b.lens then b.lens[k] = b.units end
    b.ins, b.nins, b.units = nil, 0, 0
  end
  if b.del > 0 then
    k = k + 1
    out[k] = -b.del
    b.del = 0
  end
  b.k = k
end

local function b_retain(b, n)
  if b.nins > 0 or b.del > 0 then flush(b) end
  local out, k = b.out, b.k
  local last = out[k]
  if k > 0 and type(last) == "number" and last > 0 then
    out[k] = last + n
  else
    k = k + 1
    out[k] = n
    b.k = k
  end
end

local function b_insert(b, s, units)
  local nins = b.nins
  if nins == 0 then
    b.ins = s
  elseif nins == 1 then
    b.more = { b.ins, s }
  else
    b.more[nins + 1] = s
  end
  b.nins = nins + 1
  b.units = b.units + units
end

local function b_delete(b, n)
  b.del = b.del + n
end

local function b_done(b)
  flush(b)
  return b.out, b.lens
end

-- The canonical form of a checked op (and the UTF-16 lengths of its inserts).
local function canon(op, lens)
  local b = builder(true)
  for k = 1, #op do
    local c = op[k]
    if type(c) == "string" then
      if c ~= "" then b_insert(b, c, lens[k]) end
    elseif c > 0 then
      b_retain(b, c)
    elseif c < 0 then
      b_delete(b, -c)
    end
  end
  return b_done(b)
end

-- Checks op and returns it in canonical form (itself when it already is) with the
-- lengths of its inserts, base and target; or nil, err (prefixed with `who`).
local function prepare(op, who, lenient)
  local lens = {}
  local base, target, canonical = check(op, lens, nil, lenient)
  if not base then return nil, who and who .. target or target end
  if not canonical then op, lens = canon(op, lens) end
  return op, lens, base, target
end

---------------------------------------------------------------------------------------
-- Public: inspection and normal form

-- parse(op [, len]) -> canonical op, base, target | nil, err
-- Validates an operation received from a client (strictly: empty components are
-- errors) and, with len, against a document of that UTF-16 length.
function _M.parse(op, len)
  check_len(len, "ot.parse", 3)
  local lens = {}
  local base, target, canonical = check(op, lens, len, false)
  if not base then return nil, target end
  if not canonical then
    op = canon(op, lens)
  else
    local copy = {}
    for k = 1, #op do copy[k] = op[k] end
    op = copy
  end
  return op, base, target
end

-- normalize(op) -> canonical op | nil, err. Like parse, but empty components (0,
-- "") are dropped rather than rejected, for operations built piece by piece.
function _M.normalize(op)
  local lens = {}
  local base, err = check(op, lens, nil, true)
  if not base then return nil, err end
  return (canon(op, lens))
end

-- base_length(op), target_length(op) -> units | nil, err
function _M.base_length(op)
  local base, target = check(op, nil, nil, false)
  if not base then return nil, target end
  return base
end

function _M.target_length(op)
  local base, target = check(op, nil, nil, false)
  if not base then return nil, target end
  return target
end

-- is_noop(op) -> boolean | nil, err: true when applying op changes nothing.
function _M.is_noop(op)
  local base, target = check(op, nil, nil, false)
  if not base then return nil, target end
  for k = 1, #op do
    local c = op[k]
    if type(c) ~= "number" or c < 0 then return false end
  end
  return true
end

---------------------------------------------------------------------------------------
-- Apply and invert: one walk over the document

-- The byte index of UTF-16 position `target` of doc (byte length slen, UTF-16 length
-- len or nil), given a known boundary (u units, byte bi) with u <= target.
local function locate(doc, slen, len, u, bi, target, fname)
  if len then
    local j, why
    if len - u == slen + 1 - bi then
      j = bi + (target - u) -- the rest of the document is ASCII
    elseif target - u > len - target then
      j, why = back(doc, slen + 1, len - target)
    else
      j, why = fwd(doc, bi, target - u)
    end
    if why == SPLIT then return nil, SPLIT end
    local c = j and byte(doc, j)
    if not j or j > slen + 1 or (c and c >= 0x80 and c < 0xC0) then
      error(fname .. ": the document length passed is not the document's UTF-16 length", 4)
    end
    return j
  end
  return fwd(doc, bi, target - u)
end

-- The new document from the pieces walk() collected: insert strings, and spans
-- (first byte, byte after the last) of doc. Big results are copied straight into
-- one buffer with the FFI (one new string instead of a substring per span and the
-- concatenation); small ones, or without the FFI, go through sub() and concat().
local ffi_copy, ffi_string, scratch, scratch_size
if ffi_ok and type(ffi) == "table" then
  ffi_copy, ffi_string = ffi.copy, ffi.string
  scratch_size = 0
end
local BIG = 64 * 1024          -- results from this size on are assembled with the FFI
local SCRATCH_MAX = 4 * 1024 * 1024 -- a buffer up to this size is kept for the next call

local function assemble(doc, pieces, np, size)
  if np == 2 and pieces[1] == 1 and pieces[2] == #doc + 1 then return doc end
  if ffi_copy and size >= BIG then
    local buf = scratch
    if size > scratch_size then
      buf = ffi.new("uint8_t[?]", size)
      if size <= SCRATCH_MAX then scratch, scratch_size = buf, size end
    end
    local src = ffi.cast("const uint8_t *", doc)
    local at, i = 0, 1
    while i <= np do
      local x = pieces[i]
      if type(x) == "string" then
        ffi_copy(buf + at, x, #x)
        at = at + #x
        i = i + 1
      else
        local n = pieces[i + 1] - x
        ffi_copy(buf + at, src + (x - 1), n)
        at = at + n
        i = i + 2
      end
    end
    return ffi_string(buf, size)
  end
  local out, k, i = {}, 0, 1
  while i <= np do
    local x = pieces[i]
    k = k + 1
    if type(x) == "string" then
      out[k] = x
      i = i + 1
    else
      out[k] = sub(doc, x, pieces[i + 1] - 1)
      i = i + 2
    end
  end
  return concat(out, "", 1, k)
end

local function walk(doc, op, len, inverse, fname)
  if type(doc) ~= "string" then
    error(fname .. ": document must be a string, got " .. type(doc), 3)
  end
  check_len(len, fname, 4)
  local lens = inverse and {} or nil
  local base, err = check(op, lens, len, false)
  if not base then return nil, err end
  local slen = #doc
  local u, bi = 0, 1
  local pieces, np, size = {}, 0, 0 -- inserts (strings) and retained byte spans (2 numbers)
  local b = inverse and builder()
  for k = 1, #op do
    local c = op[k]
    if type(c) == "string" then
      if inverse then
        b_delete(b, lens[k])
      else
        np = np + 1
        pieces[np] = c
        size = size + #c
      end
    else
      local n = c > 0 and c or -c
      local j, why = locate(doc, slen, len, u, bi, u + n, fname)
      if not j then
        if why == SPLIT then return nil, fmt("component %d: splits a surrogate pair", k) end
        return nil, fmt("component %d: %s past the end", k, c > 0 and "retain" or "delete")
      end
      if c > 0 then
        if inverse then
          b_retain(b, n)
        else
          pieces[np + 1], pieces[np + 2] = bi, j
          np = np + 2
          size = size + (j - bi)
        end
      elseif inverse then
        b_insert(b, sub(doc, bi, j - 1), n)
      end
      u, bi = u + n, j
    end
  end
  if bi ~= slen + 1 then
    if len then
      error(fname .. ": the document length passed is not the document's UTF-16 length", 3)
    end
    return nil, fmt("base length %s does not match document length %s",
      num(u), num(u + units_from(doc, bi)))
  end
  if inverse then return (b_done(b)) end
  return assemble(doc, pieces, np, size)
end

-- apply(doc, op [, len]) -> new document | nil, err
-- len: doc's UTF-16 length, when the caller knows it (saves scanning the document).
function _M.apply(doc, op, len)
  local r, err = walk(doc, op, len, false, "ot.apply") -- not a tail call: error levels
  return r, err
end

-- invert(op, doc [, len]) -> the operation that undoes op | nil, err
-- doc is the document op applies to (the inverse reinserts the text op deletes).
function _M.invert(op, doc, len)
  local r, err = walk(doc, op, len, true, "ot.invert")
  return r, err
end

---------------------------------------------------------------------------------------
-- Transform and compose: ot.js's algorithms over canonical operations

-- transform(a, b) -> a', b' | nil, err
-- a and b apply to the same document; apply(apply(d, a), b') == apply(apply(d, b), a').
function _M.transform(a, b)
  local la, lb, base_a, base_b
  a, la, base_a = prepare(a, "first operation: ")
  if not a then return nil, la end
  b, lb, base_b = prepare(b, "second operation: ")
  if not b then return nil, lb end
  if base_a ~= base_b then
    return nil, fmt("base lengths differ (%s and %s)", num(base_a), num(base_b))
  end
  local A, B = builder(), builder()
  local i1, i2 = 1, 1
  local o1, o2 = a[1], b[1]
  while o1 ~= nil or o2 ~= nil do
    if type(o1) == "string" then -- a's insert first: the tie-break
      b_insert(A, o1, la[i1])
      b_retain(B, la[i1])
      i1 = i1 + 1; o1 = a[i1]
    elseif type(o2) == "string" then
      b_retain(A, lb[i2])
      b_insert(B, o2, lb[i2])
      i2 = i2 + 1; o2 = b[i2]
    elseif o1 > 0 and o2 > 0 then -- retain / retain
      local m
      if o1 > o2 then
        m = o2; o1 = o1 - o2; i2 = i2 + 1; o2 = b[i2]
      elseif o1 == o2 then
        m = o1; i1 = i1 + 1; o1 = a[i1]; i2 = i2 + 1; o2 = b[i2]
      else
        m = o1; o2 = o2 - o1; i1 = i1 + 1; o1 = a[i1]
      end
      b_retain(A, m)
      b_retain(B, m)
    elseif o1 < 0 and o2 < 0 then -- both delete the same text: nothing to do
      if o1 < o2 then
        o1 = o1 - o2; i2 = i2 + 1; o2 = b[i2]
      elseif o1 == o2 then
        i1 = i1 + 1; o1 = a[i1]; i2 = i2 + 1; o2 = b[i2]
      else
        o2 = o2 - o1; i1 = i1 + 1; o1 = a[i1]
      end
    elseif o1 < 0 then -- delete / retain
      local m
      if -o1 > o2 then
        m = o2; o1 = o1 + o2; i2 = i2 + 1; o2 = b[i2]
      elseif -o1 == o2 then
        m = o2; i1 = i1 + 1; o1 = a[i1]; i2 = i2 + 1; o2 = b[i2]
      else
        m = -o1; o2 = o2 + o1; i1 = i1 + 1; o1 = a[i1]
      end
      b_delete(A, m)
    else -- retain / delete
      local m
      if o1 > -o2 then
        m = -o2; o1 = o1 + o2; i2 = i2 + 1; o2 = b[i2]
      elseif o1 == -o2 then
        m = o1; i1 = i1 + 1; o1 = a[i1]; i2 = i2 + 1; o2 = b[i2]
      else
        m = o1; o2 = o2 + o1; i1 = i1 + 1; o1 = a[i1]
      end
      b_delete(B, m)
    end
  end
  return (b_done(A)), (b_done(B))
end

-- compose(a, b) -> ab | nil, err
-- b applies to a's result; apply(d, ab) == apply(apply(d, a), b).
function _M.compose(a, b)
  local la, lb, target_a, base_b, _
  a, la, _, target_a = prepare(a, "first operation: ")
  if not a then return nil, la end
  b, lb, base_b = prepare(b, "second operation: ")
  if not b then return nil, lb end
  if target_a ~= base_b then
    return nil, fmt("target length %s does not match base length %s", num(target_a), num(base_b))
  end
  local C = builder()
  local i1, i2 = 1, 1
  local o1, o2 = a[1], b[1]
  local p1, u1 = 1, la[1] -- when o1 is an insert: its unread part starts at byte p1, u1 units
  while o1 ~= nil or o2 ~= nil do
    if type(o1) == "number" and o1 < 0 then
      b_delete(C, -o1)
      i1 = i1 + 1; o1 = a[i1]; p1 = 1; u1 = la[i1]
    elseif type(o2) == "string" then
      b_insert(C, o2, lb[i2])
      i2 = i2 + 1; o2 = b[i2]
    elseif type(o1) == "string" then
      if o2 < 0 then -- b deletes (part of) what a inserted
        if u1 > -o2 then
          p1 = fwd(o1, p1, -o2)
          if not p1 then return nil, "splits a surrogate pair inserted by the first operation" end
          u1 = u1 + o2
          i2 = i2 + 1; o2 = b[i2]
        elseif u1 == -o2 then
          i1 = i1 + 1; o1 = a[i1]; p1 = 1; u1 = la[i1]
          i2 = i2 + 1; o2 = b[i2]
        else
          o2 = o2 + u1
          i1 = i1 + 1; o1 = a[i1]; p1 = 1; u1 = la[i1]
        end
      else -- b retains (part of) what a inserted
        if u1 > o2 then
          local q = fwd(o1, p1, o2)
          if not q then return nil, "splits a surrogate pair inserted by the first operation" end
          b_insert(C, sub(o1, p1, q - 1), o2)
          p1 = q; u1 = u1 - o2
          i2 = i2 + 1; o2 = b[i2]
        else
          b_insert(C, p1 == 1 and o1 or sub(o1, p1), u1)
          if u1 == o2 then
            i2 = i2 + 1; o2 = b[i2]
          else
            o2 = o2 - u1
          end
          i1 = i1 + 1; o1 = a[i1]; p1 = 1; u1 = la[i1]
        end
      end
    elseif o2 > 0 then -- retain / retain
      if o1 > o2 then
        b_retain(C, o2); o1 = o1 - o2; i2 = i2 + 1; o2 = b[i2]
      elseif o1 == o2 then
        b_retain(C, o1); i1 = i1 + 1; o1 = a[i1]; p1 = 1; u1 = la[i1]; i2 = i2 + 1; o2 = b[i2]
      else
        b_retain(C, o1); o2 = o2 - o1; i1 = i1 + 1; o1 = a[i1]; p1 = 1; u1 = la[i1]
      end
    else -- retain / delete
      if o1 > -o2 then
        b_delete(C, -o2); o1 = o1 + o2; i2 = i2 + 1; o2 = b[i2]
      elseif o1 == -o2 then
        b_delete(C, o1); i1 = i1 + 1; o1 = a[i1]; p1 = 1; u1 = la[i1]; i2 = i2 + 1; o2 = b[i2]
      else
        b_delete(C, o1); o2 = o2 + o1; i1 = i1 + 1; o1 = a[i1]; p1 = 1; u1 = la[i1]
      end
    end
  end
  return (b_done(C))
end

---------------------------------------------------------------------------------------
-- Cursors and selections (ot.js's Range.transform)

local function check_pos(pos, base)
  if type(pos) ~= "number" or pos ~= pos or pos % 1 ~= 0 then
    return nil, "position is not an integer"
  end
  if pos < 0 or pos > base then
    return nil, fmt("position %s out of range (0..%s)", num(pos), num(base))
  end
  return pos
end

-- op canonical with insert lengths lens; pos valid.
local function move(pos, op, lens, is_own)
  local rest, new = pos, pos -- rest: units of the base document still before pos
  for k = 1, #op do
    local c = op[k]
    if type(c) == "string" then
      if rest == 0 and not is_own then break end
      new = new + lens[k]
    elseif c > 0 then
      rest = rest - c
    else
      local d = -c
      new = new - (rest < d and rest or d)
      rest = rest - d
    end
    if rest < 0 then break end
  end
  return new
end

-- transform_cursor(pos, op [, is_own]) -> new position | nil, err
function _M.transform_cursor(pos, op, is_own)
  local lens, base
  op, lens, base = prepare(op)
  if not op then return nil, lens end
  local ok, err = check_pos(pos, base)
  if not ok then return nil, err end
  return move(pos, op, lens, is_own)
end

local function range(r, op, lens, base, is_own)
  if type(r) ~= "table" then return nil, "range is not a table" end
  local anchor, head = r.anchor, r.head
  local ok, err = check_pos(anchor, base)
  if not ok then return nil, "anchor: " .. err end
  ok, err = check_pos(head, base)
  if not ok then return nil, "head: " .. err end
  local a = move(anchor, op, lens, is_own)
  return { anchor = a, head = head == anchor and a or move(head, op, lens, is_own) }
end

-- transform_range({ anchor =, head = }, op [, is_own]) -> { anchor =, head = } | nil, err
function _M.transform_range(r, op, is_own)
  local lens, base
  op, lens, base = prepare(op)
  if not op then return nil, lens end
  return range(r, op, lens, base, is_own)
end

-- transform_selection({ ranges = { range, ... } } or { range, ... }, op [, is_own])
--   -> { ranges = { range, ... } } | nil, err
function _M.transform_selection(sel, op, is_own)
  local lens, base
  op, lens, base = prepare(op)
  if not op then return nil, lens end
  if type(sel) ~= "table" then return nil, "selection is not a table" end
  local ranges = sel.ranges or sel
  if type(ranges) ~= "table" then return nil, "selection is not a table" end
  local out = {}
  for i = 1, #ranges do
    local r, err = range(ranges[i], op, lens, base, is_own)
    if not r then return nil, fmt("range %d: %s", i, err) end
    out[i] = r
  end
  return { ranges = out }
end

return _M
