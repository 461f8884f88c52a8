-- edgews.crypto: crypto primitives for the application layer, through the
-- LuaJIT FFI. No hand-written cryptography: digests, HMAC and base64 are
-- mbedTLS 2.28 (libmbedcrypto); random bytes come from the kernel.
--
-- API
--   crypto.hmac(alg, key, data)     -> raw MAC   alg: "sha256" | "sha384" | "sha512"
--   crypto.hmac_sha256/384/512(key, data) -> raw MAC
--   crypto.sha256(data)             -> raw 32-byte digest
--   crypto.sha1(data)               -> raw 20-byte digest (WebSocket accept keys only)
--   crypto.base64_encode(s)         -> standard alphabet, '=' padded
--   crypto.base64_decode(s)         -> bytes | nil, "invalid base64"
--   crypto.base64url_encode(s)      -> url alphabet ('-', '_'), no padding (RFC 4648 5)
--   crypto.base64url_decode(s)      -> bytes | nil, "invalid base64"
--   crypto.equals(a, b)             -> boolean, content compared in constant time
--   crypto.random_bytes(n)          -> n bytes from the kernel CSPRNG (0 <= n <= 65536)
-- Misuse (a non-string argument, an unknown algorithm, a bad n) raises.
-- Input that is too large for base64 (over MAX_BASE64 bytes) gives nil, "too long".
--
-- Symbol resolution. Inside edgews-lua the executable links libmbedcrypto
-- dynamically, so its symbols are in the process and ffi.C finds them. Under
-- plain luajit/busted they are not, so the library is loaded by name
-- ("mbedcrypto" -> libmbedcrypto.so from libmbedtls-dev, then the runtime soname
-- "libmbedcrypto.so.7"). Only opaque types and functions are declared, so the
-- cdef is harmless when the module is loaded again (LuaJIT accepts identical
-- redeclarations of those, unlike struct bodies).
--
-- Decoding is strict: the standard decoder accepts only [A-Za-z0-9+/] with
-- correct '=' padding (length a multiple of 4); the url decoder accepts only
-- [A-Za-z0-9_-] and rejects any '='. Both reject non-canonical encodings (set
-- bits in the unused low bits of the last character), so one byte string has
-- exactly one accepted encoding (no malleable JWT signatures). The checks are in
-- Lua before mbedTLS sees the input, because mbedtls_base64_decode also tolerates
-- line breaks and spaces.
--
-- Constant-time comparison is done in Lua (XOR of every byte pair OR-ed into an
-- accumulator, no early exit). libmbedcrypto 2.28 exports mbedtls_ct_memcmp, but
-- it is declared only in an internal header (library/constant_time_internal.h),
-- not part of the public API, so it is not used. Lengths are not secret: strings
-- of different lengths compare unequal at once.
--
-- Random bytes: getrandom(2) from libc (the kernel CSPRNG, same source as
-- /dev/urandom but no file descriptor), falling back to reading /dev/urandom
-- where getrandom is unavailable. Not a per-VM mbedtls_ctr_drbg: its context
-- structs (mbedtls_entropy_context, mbedtls_ctr_drbg_context) have a layout that
-- depends on the library's build configuration and cannot be declared safely
-- through the FFI, and a user-space DRBG state is one more thing to reseed and to
-- keep fork-safe; the kernel already does both.
--
-- Memory: HMAC/digest output and random bytes go through fixed scratch buffers
-- allocated once per VM; base64 uses a scratch buffer that grows on demand up to
-- SCRATCH_MAX and is kept; larger inputs (at most MAX_BASE64) get a one-off
-- buffer that the GC reclaims.

local ffi = require "ffi"
local bit = require "bit"

local type, error, tostring, tonumber, pcall = type, error, tostring, tonumber, pcall
local pairs, ipairs, assert = pairs, ipairs, assert
local string_byte, string_find, string_gsub = string.byte, string.find, string.gsub
local table_concat = table.concat
local math_floor, math_max, math_min = math.floor, math.max, math.min
local bxor, bor, band = bit.bxor, bit.bor, bit.band
local ffi_new, ffi_string, ffi_errno = ffi.new, ffi.string, ffi.errno
local io_open = io.open

ffi.cdef [[
typedef struct mbedtls_md_info_t mbedtls_md_info_t;
const mbedtls_md_info_t *mbedtls_md_info_from_type(int md_type);
unsigned char mbedtls_md_get_size(const mbedtls_md_info_t *md_info);
int mbedtls_md(const mbedtls_md_info_t *md_info, const char *input, size_t ilen,
               unsigned char *output);
int mbedtls_md_hmac(const mbedtls_md_info_t *md_info, const char *key, size_t keylen,
                    const char *input, size_t ilen, unsigned char *output);
int mbedtls_base64_encode(unsigned char *dst, size_t dlen, size_t *olen,
                          const char *src, size_t slen);
int mbedtls_base64_decode(unsigned char *dst, size_t dlen, size_t *olen,
                          const char *src, size_t slen);
long getrandom(void *buf, size_t buflen, unsigned int flags);
]]

local _M = {}

-- mbedtls_md_type_t values, from /usr/include/mbedtls/md.h (2.28): NONE=0, MD2,
-- MD4, MD5, SHA1, SHA224, SHA256, SHA384, SHA512, RIPEMD160.
local MBEDTLS_MD_SHA1, MBEDTLS_MD_SHA256, MBEDTLS_MD_SHA384, MBEDTLS_MD_SHA512 = 4, 6, 7, 8
local MD_MAX_SIZE = 64

_M.MAX_BASE64 = 16 * 1024 * 1024 -- decoded bytes
local SCRATCH_MAX = 64 * 1024
local RANDOM_MAX = 65536

-- The library: symbols already in the process (the server), else load it.
local lib
do
  local ok = pcall(function() return ffi.C.mbedtls_md_hmac end)
  if ok then
    lib = ffi.C
  else
    local errs = {}
    for _, name in ipairs({ "mbedcrypto", "libmbedcrypto.so.7" }) do
      local ok2, l = pcall(ffi.load, name)
      if ok2 then lib = l; break end
      errs[#errs + 1] = tostring(l)
    end
    if not lib then
      error("edgews.crypto: cannot find libmbedcrypto: " .. table_concat(errs, "; "))
    end
  end
end
_M.library = (lib == ffi.C) and "process" or "loaded"

local md_info = {
  sha256 = lib.mbedtls_md_info_from_type(MBEDTLS_MD_SHA256),
  sha384 = lib.mbedtls_md_info_from_type(MBEDTLS_MD_SHA384),
  sha512 = lib.mbedtls_md_info_from_type(MBEDTLS_MD_SHA512),
}
local md_size = {}
for name, info in pairs(md_info) do
  if info == nil then error("edgews.crypto: libmbedcrypto lacks " .. name) end
  md_size[name] = lib.mbedtls_md_get_size(info)
  assert(md_size[name] <= MD_MAX_SIZE)
end

local md_out = ffi_new("unsigned char[?]", MD_MAX_SIZE)
local olen = ffi_new("size_t[1]")

local function check_string(fn, what, v)
  if type(v) ~= "string" then
    error("crypto." .. fn .. ": " .. what .. " must be a string, got " .. type(v), 3)
  end
end

--- crypto.hmac(alg, key, data) -> raw MAC bytes
function _M.hmac(alg, key, data)
  local info = md_info[alg]
  if not info then error("crypto.hmac: unknown algorithm " .. tostring(alg), 2) end
  check_string("hmac", "key", key)
  check_string("hmac", "data", data)
  if lib.mbedtls_md_hmac(info, key, #key, data, #data, md_out) ~= 0 then
    error("crypto.hmac: mbedtls_md_hmac failed", 2) -- only on bad input data
  end
  return ffi_string(md_out, md_size[alg])
end
local hmac = _M.hmac

function _M.hmac_sha256(key, data) return hmac("sha256", key, data) end
function _M.hmac_sha384(key, data) return hmac("sha384", key, data) end
function _M.hmac_sha512(key, data) return hmac("sha512", key, data) end

-- SHA-1 only for the WebSocket accept key (RFC 6455 4.2.2), which edgews.testing's
-- client checks; never offered for HMAC (not in md_info).
local sha1_info = lib.mbedtls_md_info_from_type(MBEDTLS_MD_SHA1)

--- crypto.sha1(data) -> raw 20-byte digest (for the WebSocket accept key only)
function _M.sha1(data)
  check_string("sha1", "data", data)
  if sha1_info == nil then error("crypto.sha1: libmbedcrypto lacks sha1", 2) end
  if lib.mbedtls_md(sha1_info, data, #data, md_out) ~= 0 then
    error("crypto.sha1: mbedtls_md failed", 2)
  end
  return ffi_string(md_out, 20)
end

--- crypto.sha256(data) -> raw 32-byte digest
function _M.sha256(data)
  check_string("sha256", "data", data)
  if lib.mbedtls_md(md_info.sha256, data, #data, md_out) ~= 0 then
    error("crypto.sha256: mbedtls_md failed", 2)
  end
  return ffi_string(md_out, md_size.sha256)
end

-- base64 scratch buffer: grows on demand up to SCRATCH_MAX and is kept.
local scratch, scratch_size = ffi_new("unsigned char[?]", 1024), 1024
local function buffer(n)
  if n <= scratch_size then return scratch end
  if n > SCRATCH_MAX then return ffi_new("unsigned char[?]", n) end
  scratch_size = math_max(n, math_min(scratch_size * 2, SCRATCH_MAX))
  scratch = ffi_new("unsigned char[?]", scratch_size)
  return scratch
end

local function encode(fn, s)
  local n = #s
  if n > _M.MAX_BASE64 then return nil, "too long" end
  local need = math_floor((n + 2) / 3) * 4 + 1 -- mbedtls writes a NUL
  local buf = buffer(need)
  if lib.mbedtls_base64_encode(buf, need, olen, s, n) ~= 0 then
    error("crypto." .. fn .. ": mbedtls_base64_encode failed", 3)
  end
  return ffi_string(buf, olen[0])
end

-- 6-bit value of each standard-alphabet character (for the canonical check).
local b64value = {}
do
  local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
  for i = 1, 64 do b64value[string_byte(alphabet, i)] = i - 1 end
end

-- s: standard alphabet, padding already validated. Returns bytes or nil, err.
local function decode(s, data_len)
  local n = #s
  if n == 0 then return "" end
  local rem = data_len % 4
  if rem == 1 then return nil, "invalid base64" end
  if rem ~= 0 then
    -- The last data character carries 4 (rem 2) or 2 (rem 3) unused bits: zero.
    local v = b64value[string_byte(s, data_len)]
    if band(v, rem == 2 and 15 or 3) ~= 0 then return nil, "invalid base64" end
  end
  local need = math_floor(n / 4) * 3
  if need > _M.MAX_BASE64 + 2 then return nil, "too long" end
  local buf = buffer(need)
  if lib.mbedtls_base64_decode(buf, need, olen, s, n) ~= 0 then
    return nil, "invalid base64"
  end
  return ffi_string(buf, olen[0])
end

--- crypto.base64_encode(s) -> standard base64 with '=' padding
function _M.base64_encode(s)
  check_string("base64_encode", "input", s)
  return encode("base64_encode", s)
end

--- crypto.base64_decode(s) -> bytes | nil, "invalid base64" | nil, "too long"
function _M.base64_decode(s)
  check_string("base64_decode", "input", s)
  local n = #s
  if n % 4 ~= 0 or string_find(s, "[^A-Za-z0-9+/=]") then return nil, "invalid base64" end
  local p = string_find(s, "=", 1, true)
  if p and p < n - 1 then return nil, "invalid base64" end -- '=' only in the last 2
  if p == n - 1 and string_byte(s, n) ~= 61 then return nil, "invalid base64" end
  return decode(s, p and p - 1 or n)
end

local to_url = { ["+"] = "-", ["/"] = "_", ["="] = "" }
local from_url = { ["-"] = "+", ["_"] = "/" }
local pads = { "", "==", "=" } -- by #s % 4 (0, 2, 3; 1 is invalid)

--- crypto.base64url_encode(s) -> url-safe base64 without padding
function _M.base64url_encode(s)
  check_string("base64url_encode", "input", s)
  local e, err = encode("base64url_encode", s)
  if not e then return nil, err end
  return (string_gsub(e, "[+/=]", to_url))
end

--- crypto.base64url_decode(s) -> bytes | nil, "invalid base64" | nil, "too long"
function _M.base64url_decode(s)
  check_string("base64url_decode", "input", s)
  local n = #s
  local rem = n % 4
  if rem == 1 or string_find(s, "[^A-Za-z0-9_%-]") then return nil, "invalid base64" end
  local std = string_gsub(s, "[-_]", from_url)
  if rem ~= 0 then std = std .. pads[rem] end
  return decode(std, n)
end

--- crypto.equals(a, b) -> boolean. Every byte is compared (no early exit), so
-- the time depends only on the length, not on where the strings differ.
function _M.equals(a, b)
  check_string("equals", "a", a)
  check_string("equals", "b", b)
  local n = #a
  if n ~= #b then return false end
  local acc = 0
  for i = 1, n do
    acc = bor(acc, bxor(string_byte(a, i), string_byte(b, i)))
  end
  return acc == 0
end

-- Random bytes: getrandom(2) if libc has it, else /dev/urandom.
local RANDOM_CHUNK = 256 -- getrandom never returns short for <= 256 bytes
local rand_buf = ffi_new("unsigned char[?]", RANDOM_CHUNK)
local EINTR, ENOSYS = 4, 38
local have_getrandom = pcall(function() return ffi.C.getrandom end)
local urandom -- file handle, opened on first use

local function urandom_read(n)
  if not urandom then
    local f, err = io_open("/dev/urandom", "rb")
    if not f then error("crypto.random_bytes: cannot open /dev/urandom: " .. tostring(err), 3) end
    f:setvbuf("no")
    urandom = f
  end
  local s = urandom:read(n)
  if not s or #s ~= n then error("crypto.random_bytes: short read from /dev/urandom", 3) end
  return s
end

local function random_chunk(n)
  while have_getrandom do
    local got = ffi.C.getrandom(rand_buf, n, 0)
    if got == n then return ffi_string(rand_buf, n) end
    if got >= 0 then
      -- Short read (not expected for <= 256 bytes); top up from /dev/urandom.
      return ffi_string(rand_buf, got) .. urandom_read(n - tonumber(got))
    end
    local e = ffi_errno()
    if e == ENOSYS then
      have_getrandom = false
    elseif e ~= EINTR then
      error("crypto.random_bytes: getrandom failed, errno " .. e, 3)
    end
  end
  return urandom_read(n)
end

--- crypto.random_bytes(n) -> n random bytes (0 <= n <= 65536)
function _M.random_bytes(n)
  if type(n) ~= "number" or n ~= math_floor(n) or n < 0 or n > RANDOM_MAX then
    error("crypto.random_bytes: n must be an integer in [0, " .. RANDOM_MAX .. "], got "
      .. tostring(n), 2)
  end
  if n <= RANDOM_CHUNK then return n == 0 and "" or random_chunk(n) end
  local parts = {}
  while n > 0 do
    local k = n < RANDOM_CHUNK and n or RANDOM_CHUNK
    parts[#parts + 1] = random_chunk(k)
    n = n - k
  end
  return table_concat(parts)
end

return _M
