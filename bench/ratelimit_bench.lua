-- bench/ratelimit_bench.lua: cost of one rate-limit take (lua/edgews/ratelimit.lua,
-- the C token bucket through the LuaJIT FFI) against the pure-Lua limiter it
-- replaced (spec/unit/ratelimit_model.lua), on the pipeline's per-connection pattern.
--
--   scripts/build && luajit bench/ratelimit_bench.lua [--quick]
--
-- 1. per connection: 1,000 sockets (number keys) taking one token each in turn,
--    the clock advancing 1 µs per take (all buckets stay tracked);
-- 2. per key of a large keyspace: a new string key every take (an IP per message),
--    so the sweep drops a full bucket for each one it adds;
-- 3. one bucket (ratelimit.bucket).
-- CPU time (os.clock), median of several runs; ns per take. Each implementation
-- and case runs in a process of its own (traces compiled for one would otherwise
-- be reused, and fail their guards, for the other).
local root = (arg and arg[0] or ""):match("^(.*)/bench/[^/]*$") or "."
package.path = root .. "/lua/?.lua;" .. root .. "/spec/unit/?.lua;" .. package.path

local quick, impl_name, case_no = false, nil, nil
for i = 1, arg and #arg or 0 do
  if arg[i] == "--quick" then quick = true
  elseif arg[i] == "--impl" then impl_name, case_no = arg[i + 1], tonumber(arg[i + 2]) end
end
local RUNS = quick and 3 or 9
local N = quick and 200000 or 2000000

local function median(t)
  table.sort(t)
  return t[math.floor((#t + 1) / 2)]
end

local function measure(fn)
  fn(N / 10) -- warm up (and let the JIT compile)
  local times = {}
  for r = 1, RUNS do
    local t0 = os.clock()
    fn(N)
    times[r] = (os.clock() - t0) / N * 1e9
  end
  return median(times)
end

local function per_connection(impl)
  local t = 0
  local l = impl.new { rate = 1e6, burst = 1e6, now = function() return t end }
  return function(n)
    local ok = 0
    for i = 1, n do
      t = t + 1e-6
      if l:take(i % 1000 + 1, 1) then ok = ok + 1 end
    end
    return ok
  end
end

local function keyspace(impl)
  local t = 0
  local l = impl.new { rate = 10, burst = 20, now = function() return t end }
  local keys = {}
  for i = 1, 4096 do keys[i] = "10.0." .. i end
  return function(n)
    for i = 1, n do
      t = t + 0.001
      l:take(keys[i % 4096 + 1], 1)
    end
  end
end

local function single(impl)
  local t = 0
  local b = impl.bucket(1e6, 1e6, function() return t end)
  return function(n)
    for _ = 1, n do
      t = t + 1e-6
      b:take(1)
    end
  end
end

local cases = { { "per connection (1,000 number keys)", per_connection },
                { "large keyspace (a new string key per take)", keyspace },
                { "one bucket", single } }

if impl_name then -- a child: one implementation, one case
  local impl = impl_name == "lua" and require "ratelimit_model" or require "edgews.ratelimit"
  io.write(("%.1f\n"):format(measure(cases[case_no][2](impl))))
  return
end

local function child(name, i)
  local p = assert(io.popen(("luajit %q --impl %s %d%s"):format(arg[0], name, i, quick and " --quick" or "")))
  local out = p:read("*a")
  p:close()
  return tonumber(out) or error("child failed: " .. out)
end

print(("%-46s %10s %10s"):format("take", "Lua (ns)", "C/FFI (ns)"))
for i, case in ipairs(cases) do
  print(("%-46s %10.1f %10.1f"):format(case[1], child("lua", i), child("c", i)))
end
