-- edgews.ratelimit: token-bucket rate limits, per key (IP, user, connection).
--
--   local ratelimit = require "edgews.ratelimit"
--   local per_ip = ratelimit.new { rate = 20, burst = 40, now = edgews.now }
--   local ok, retry_after = per_ip:take(ip)          -- one message
--   local ok, retry_after = bytes:take(user, #data)  -- a byte budget
--   if not ok then socket:send(...retry in retry_after seconds...) end
--
-- A bucket holds up to `burst` tokens and gains `rate` tokens per second; a
-- take of n tokens succeeds when the bucket holds at least n, and then removes
-- them. A failed take removes nothing and returns retry_after, the seconds
-- until n tokens will be there (math.huge when n > burst: such a cost never
-- fits; callers that report retry_after to clients must handle that, e.g. by
-- rejecting the message as too large). Tokens are fractional. A clock that goes
-- backwards refills nothing, and a bucket's time never moves back, so a clock
-- jump cannot mint tokens. The same answers come from the limits shared by all
-- workers (core.take: per user, per IP).
--
-- The algorithm is two pure functions of numbers, which the specs test directly:
--   ratelimit.refill(tokens, last, now, rate, burst) -> tokens
--   ratelimit.consume(tokens, n, rate, burst) -> ok, tokens, retry_after
--
-- Design. This module is a binding: the token bucket exists once, in C
-- (core/hub/ratelimit.c; the shared limits of core/hub/buckets.c use the same
-- code), called through the LuaJIT FFI, which compiles a take into a direct call
-- (as socket:send is). Buckets refill lazily, from the time of their last take:
-- no timers. A key absent from a limiter is a full bucket, so a bucket that is
-- full again is dropped without changing any answer; the limiter keeps only
-- buckets that are not full, and each take examines the next few buckets of an
-- incremental sweep, so its memory is O(active keys) (keys that took tokens
-- within the last burst / rate seconds), however large the keyspace (the spec
-- checks it with 100k keys). A limiter belongs to the VM that made it (one worker
-- thread: no lock); its C memory is freed when it is collected.
--
-- Where the C code comes from: inside edgews-lua the executable exports it
-- (ffi.C); elsewhere (busted, tools) this module loads the shared library the
-- build makes, PREFIX/lib/libedgews_ratelimit.so of an installation (cmake
-- --install), else build/libedgews_ratelimit.so of the clone, or the file named by
-- EDGEWS_RATELIMIT_LIB. Without either, requiring the module works and using it
-- raises an error saying so.
--
-- Keys may be any value but nil and NaN, compared as Lua table keys are: strings
-- by content, numbers by value (0 and -0 are one key), anything else by identity
-- (tables, functions, booleans: each gets a number of its own, remembered in a
-- weak table, so a key that is collected can never be asked about again and its
-- bucket simply ages out).

local ffi = require "ffi"

local type, pairs, error, tostring, tonumber, setmetatable, pcall =
  type, pairs, error, tostring, tonumber, setmetatable, pcall
local math_huge = math.huge

-- (once per process: a module loaded again, as the specs do, must not redefine them)
if not pcall(ffi.typeof, "ews_tb_t") then ffi.cdef [[
typedef struct ews_tb { double tokens, last; } ews_tb_t;
typedef struct ews_limiter ews_limiter_t;
double ews_tb_refill(double tokens, double last, double now, double rate, double burst);
int ews_tb_consume(double tokens, double n, double rate, double burst, double out[2]);
int ews_tb_take(ews_tb_t *b, double n, double now, double rate, double burst, double *retry_after);
ews_limiter_t *ews_limiter_new(double rate, double burst);
void ews_limiter_free(ews_limiter_t *l);
int ews_limiter_take(ews_limiter_t *l, int kind, const char *key, size_t len, double n, double now,
                     double *retry_after);
double ews_limiter_tokens(const ews_limiter_t *l, int kind, const char *key, size_t len, double now);
void ews_limiter_reset(ews_limiter_t *l, int kind, const char *key, size_t len);
size_t ews_limiter_size(const ews_limiter_t *l);
size_t ews_limiter_memory(const ews_limiter_t *l);
]] end

local _M = {}

-- ------------------------------------------------------------- the C code

local function find_library()
  if pcall(function() return ffi.C.ews_limiter_take end) then return ffi.C end
  local path = os.getenv("EDGEWS_RATELIMIT_LIB")
  if not path then
    local src = debug.getinfo(1, "S").source
    local dir = src:sub(1, 1) == "@" and src:sub(2):match("^(.*)/[^/]*$") or "."
    -- an installation (PREFIX/share/lua/5.1/edgews -> PREFIX/lib) first, then the clone
    local installed = dir .. "/../../../../lib/libedgews_ratelimit.so"
    local f = io.open(installed, "rb")
    if f then
      f:close()
      path = installed
    else
      path = dir .. "/../../build/libedgews_ratelimit.so"
    end
  end
  local ok, lib = pcall(ffi.load, path)
  if ok then return lib end
  return nil, "edgews.ratelimit: the C token bucket is not available: run inside edgews-lua, or "
    .. "build " .. path .. " (scripts/build) or set EDGEWS_RATELIMIT_LIB (" .. tostring(lib) .. ")"
end

local C, missing = find_library()
if not C then
  C = setmetatable({}, { __index = function() error(missing, 3) end })
end

local STRING, NUMBER, OBJECT = 0, 1, 2
local retry_buf = ffi.new("double[1]")
local pair_buf = ffi.new("double[2]")
local num_buf = ffi.new("double[1]")
local num_key = ffi.cast("const char *", num_buf)

-- Keys that are neither strings nor numbers: value -> a number of its own.
local ids = setmetatable({}, { __mode = "k" })
local next_id = 0
local function object_id(key)
  local id = ids[key]
  if not id then
    next_id = next_id + 1
    id = next_id
    ids[key] = id
  end
  return id
end

-- -> kind, pointer, length of the key's bytes (numbers and ids through num_buf,
-- which is valid until the next call)
local function key_bytes(key)
  local t = type(key)
  if t == "string" then return STRING, key, #key end
  if t == "number" then
    if key == 0 then key = 0 end -- -0 and 0 are one key
    num_buf[0] = key
    return NUMBER, num_key, 8
  end
  num_buf[0] = object_id(key)
  return OBJECT, num_key, 8
end

-- ---------------------------------------------------------------- checks

local function check_rate_burst(fn, rate, burst, level)
  if type(rate) ~= "number" or not (rate > 0) or rate == math_huge then
    error(fn .. ": rate must be a positive number of tokens per second, got " .. tostring(rate), level + 1)
  end
  if type(burst) ~= "number" or not (burst > 0) or burst == math_huge then
    error(fn .. ": burst must be a positive number of tokens, got " .. tostring(burst), level + 1)
  end
end

local function check_n(n)
  if type(n) ~= "number" or not (n >= 0) then
    error("ratelimit: take: n must be a non-negative number, got " .. tostring(n), 3)
  end
end

-- ------------------------------------------------------- the pure functions

--- ratelimit.refill(tokens, last, now, rate, burst) -> tokens
-- The bucket's tokens at `now`, given `tokens` at time `last`.
function _M.refill(tokens, last, now, rate, burst)
  return C.ews_tb_refill(tokens, last, now, rate, burst)
end

--- ratelimit.consume(tokens, n, rate, burst) -> ok, tokens, retry_after
-- Takes n from a (refilled) bucket: ok, tokens - n, 0 when it holds n;
-- otherwise false, tokens, seconds until it will (math.huge if n > burst).
function _M.consume(tokens, n, rate, burst)
  local ok = C.ews_tb_consume(tokens, n, rate, burst, pair_buf) == 1
  return ok, pair_buf[0], pair_buf[1]
end

-- A single bucket --------------------------------------------------------

local Bucket = {}
Bucket.__index = Bucket

--- ratelimit.bucket(rate, burst, now) -> bucket (starts full); now: clock function (seconds)
function _M.bucket(rate, burst, now)
  check_rate_burst("ratelimit.bucket", rate, burst, 2)
  if type(now) ~= "function" then error("ratelimit.bucket: now must be a clock function", 2) end
  local b = ffi.new("ews_tb_t", burst, -math_huge)
  return setmetatable({ rate = rate, burst = burst, now = now, b = b }, Bucket)
end

--- bucket:take([n]) -> true | false, retry_after
function Bucket:take(n)
  n = n or 1
  check_n(n)
  if C.ews_tb_take(self.b, n, self.now(), self.rate, self.burst, retry_buf) == 1 then return true end
  return false, retry_buf[0]
end

--- bucket:tokens() -> the tokens available now
function Bucket:tokens()
  local b = self.b
  return C.ews_tb_refill(b.tokens, b.last, self.now(), self.rate, self.burst)
end

--- bucket:reset(): full again
function Bucket:reset()
  self.b.tokens, self.b.last = self.burst, -math_huge
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
  local c = C.ews_limiter_new(opts.rate, opts.burst)
  if c == nil then error("ratelimit.new: out of memory", 2) end
  return setmetatable({ rate = opts.rate, burst = opts.burst, now = opts.now,
                        c = ffi.gc(c, C.ews_limiter_free) }, Limiter)
end

--- limiter:take(key [, n]) -> true | false, retry_after
-- n: the cost in tokens (default 1; e.g. #data for a byte budget).
function Limiter:take(key, n)
  if key == nil or key ~= key then error("ratelimit: take: key must not be nil or NaN", 2) end
  n = n or 1
  check_n(n)
  local t = self.now()
  local kind, p, len = key_bytes(key)
  if C.ews_limiter_take(self.c, kind, p, len, n, t, retry_buf) == 1 then return true end
  return false, retry_buf[0]
end

--- limiter:tokens(key) -> the tokens key's bucket holds now (burst when untracked)
function Limiter:tokens(key)
  if key == nil or key ~= key then return self.burst end
  local kind, p, len = key_bytes(key)
  return C.ews_limiter_tokens(self.c, kind, p, len, self.now())
end

--- limiter:reset(key): the key's bucket is full again
function Limiter:reset(key)
  if key == nil or key ~= key then return end
  local kind, p, len = key_bytes(key)
  C.ews_limiter_reset(self.c, kind, p, len)
end

--- limiter:size() -> number of keys tracked (buckets not known to be full)
function Limiter:size()
  return tonumber(C.ews_limiter_size(self.c))
end

-- limiter:_memory() -> bytes the C limiter holds (for the specs)
function Limiter:_memory()
  return tonumber(C.ews_limiter_memory(self.c))
end

return _M
