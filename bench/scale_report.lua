-- bench/scale_report.lua — the arithmetic of scripts/bench-scale (run with luajit):
--   scale SCALE.json                  part 1: reads the generators' and the publisher's
--                                     output and latency samples named in SCALE.json;
--                                     a summary on stderr, one JSON line on stdout
--   fanout FANOUT.jsonl PUBLAT.jsonl  part 2: medians per row, the same way
--   markdown SCALE_SUMMARY FANOUT_SUMMARY DATE COMMIT MACHINE LIMITS PINNING LOAD
--                                     the "Cluster scale" section of bench/RESULTS.md,
--                                     with the projection of a 1,000,000-connection
--                                     deployment computed from the measured figures
local cjson = require "cjson"

local function read(path)
  local f = assert(io.open(path, "r"))
  local s = f:read("*a")
  f:close()
  return s
end

local function lines_json(path)
  local out = {}
  local f = io.open(path, "r")
  if not f then return out end
  for line in f:lines() do
    if line:sub(1, 1) == "{" then
      local ok, doc = pcall(cjson.decode, line)
      if ok then out[#out + 1] = doc end
    end
  end
  f:close()
  return out
end

local function median(t)
  local s = {}
  for i, v in ipairs(t) do s[i] = v end
  table.sort(s)
  local n = #s
  if n == 0 then return nil end
  if n % 2 == 1 then return s[(n + 1) / 2] end
  return (s[n / 2] + s[n / 2 + 1]) / 2
end

-- quantile of a sorted array (nearest rank)
local function q(sorted, p)
  local n = #sorted
  if n == 0 then return nil end
  local i = math.ceil(p * n)
  if i < 1 then i = 1 end
  return sorted[i]
end

local function say(fmt, ...) io.stderr:write(fmt:format(...), "\n") end

local function commas(n, dec)
  if n == nil then return "n/a" end
  local s = string.format("%." .. (dec or 0) .. "f", n)
  local int, frac = s:match("^(-?%d+)(.*)$")
  int = int:reverse():gsub("(%d%d%d)", "%1,"):reverse():gsub("^(-?),", "%1")
  return int .. frac
end

local mode = arg[1]

-- ---- part 1 ----------------------------------------------------------------------------

if mode == "scale" then
  local S = cjson.decode(read(arg[2]))
  local work = S.work
  local r = { conns = S.conns, instances = S.instances, gens = S.gens, messages = S.messages,
              heartbeat = S.heartbeat, idle_s = S.idle_s, interval = S.interval, errors = 0,
              first_errors = {} }
  local t0, ready, epoch = math.huge, 0, nil
  local opened, subscribed, failed, verified, expected = 0, 0, 0, 0, 0
  local pings = 0
  local per_msg = {}
  local epochs_agree = true
  for g = 0, S.gens - 1 do
    local docs = lines_json(("%s/gen-%d.out"):format(work, g))
    local done, st = nil, {}
    for _, d in ipairs(docs) do
      if d.event == "done" then done = d end
      if d.event == "status" then st[#st + 1] = d end
    end
    if not done then
      r.errors = r.errors + 1
      r.first_errors[#r.first_errors + 1] = ("generator %d reported no result"):format(g)
    else
      t0 = math.min(t0, done.t0_ns)
      ready = math.max(ready, done.ready_ns)
      opened = opened + done.opened
      subscribed = subscribed + done.subscribed
      failed = failed + done.failed
      verified = verified + done.verified
      expected = expected + done.expected
      r.errors = r.errors + done.errors
      if done.first_error ~= cjson.null and done.first_error then
        r.first_errors[#r.first_errors + 1] = done.first_error
      end
      for k, v in ipairs(done.per_message) do per_msg[k] = (per_msg[k] or 0) + v end
      if done.epoch ~= "" then
        if epoch and epoch ~= done.epoch then epochs_agree = false end
        epoch = epoch or done.epoch
      end
    end
    if #st >= 2 then pings = pings + (st[2].pings - st[1].pings) end
  end
  r.opened, r.subscribed, r.failed = opened, subscribed, failed
  r.verified, r.expected_per_run = verified, S.conns * S.messages
  r.verified_reported_expected = expected
  r.per_message = per_msg
  r.epochs_agree = epochs_agree
  r.connect_s = ready > 0 and (ready - t0) / 1e9 or nil
  r.connect_per_s = r.connect_s and subscribed / r.connect_s or nil
  r.connect_cpu_s = S.connect_cpu_s
  r.connect_cpu_us_per_conn = subscribed > 0 and S.connect_cpu_s * 1e6 / subscribed or nil

  -- memory
  local before, after, conns_on = 0, 0, 0
  r.per_instance = {}
  for i = 1, #S.rss_before do
    local c = S.inst_conns[i] or 0
    before, after, conns_on = before + S.rss_before[i], after + S.rss_after[i], conns_on + c
    r.per_instance[i] = { conns = c, rss_before = S.rss_before[i], rss_after = S.rss_after[i],
      per_conn = c > 0 and (S.rss_after[i] - S.rss_before[i]) / c or nil }
  end
  r.server_conns = conns_on
  r.rss_before, r.rss_after = before, after
  r.rss_per_conn = subscribed > 0 and (after - before) / subscribed or nil
  r.redis_rss_before, r.redis_rss_after = S.redis_rss_before, S.redis_rss_after
  r.slab_per_conn = subscribed > 0 and (S.slab_after - S.slab_before) / subscribed or nil
  r.tcp_mem_delta = S.tcp_mem_after - S.tcp_mem_before
  r.gen_rss = S.gen_rss

  -- heartbeats
  r.baseline_cpu_per_s = S.baseline_cpu_per_s
  r.idle_cpu_per_s = S.idle_cpu_s / S.idle_s
  r.idle_inst_cpu_per_s = S.idle_inst_cpu_s / S.idle_s
  r.heartbeat_cpu_per_s = r.idle_cpu_per_s - S.baseline_cpu_per_s
  r.pings = pings
  r.pings_per_s = pings / S.idle_s
  r.us_per_ping = pings > 0 and r.heartbeat_cpu_per_s * S.idle_s * 1e6 / pings or nil

  -- deliveries: the latency of each publish over every connection
  local lat = {}
  for k = 0, S.messages - 1 do lat[k] = {} end
  for g = 0, S.gens - 1 do
    local f = io.open(("%s/samples-%d.txt"):format(work, g), "r")
    if f then
      for line in f:lines() do
        local k, ns = line:match("^(%d+) (%d+)$")
        k = tonumber(k)
        if k and lat[k] then local t = lat[k]; t[#t + 1] = tonumber(ns) / 1e6 end
      end
      f:close()
    end
  end
  r.publishes = {}
  local p50s, p99s, maxs = {}, {}, {}
  for k = 0, S.messages - 1 do
    local t = lat[k]
    table.sort(t)
    local m = { n = #t, p50_ms = q(t, 0.5), p99_ms = q(t, 0.99), max_ms = t[#t] }
    r.publishes[#r.publishes + 1] = m
    if m.n > 0 then
      p50s[#p50s + 1], p99s[#p99s + 1], maxs[#maxs + 1] = m.p50_ms, m.p99_ms, m.max_ms
    end
  end
  r.p50_ms, r.p99_ms, r.max_ms = median(p50s), median(p99s), median(maxs)
  local pub
  for _, d in ipairs(lines_json(work .. "/pub.out")) do if d.event == "done" then pub = d end end
  if pub then
    r.publisher = { acked = pub.acked, ack_us = pub.ack_us, ack_p50_us = median(pub.ack_us or {}),
      errors = pub.errors, first_offset = pub.first_offset, last_offset = pub.last_offset }
    r.errors = r.errors + pub.errors
    if pub.first_error ~= cjson.null and pub.first_error then
      r.first_errors[#r.first_errors + 1] = pub.first_error
    end
  else
    r.errors = r.errors + 1
    r.first_errors[#r.first_errors + 1] = "the publisher reported no result"
  end
  local deliveries = verified
  r.publish_cpu_s = S.publish_cpu_s
  r.publish_wall_s = S.publish_wall_s
  -- the publish phase also had the idle servers' heartbeats running: take them out
  r.publish_cpu_net_s = S.publish_cpu_s - r.idle_cpu_per_s * S.publish_wall_s
  r.us_per_delivery = deliveries > 0 and r.publish_cpu_net_s * 1e6 / deliveries or nil
  r.load = { connect = S.load_connect, idle = S.load_idle, publish = S.load_publish }
  r.pids = S.pids
  r.max_pending, r.srcs_per_gen, r.per_src = S.max_pending, S.srcs_per_gen, S.per_src
  r.date, r.commit = S.date, S.commit
  r.sanitizer_reports = S.sanitizer_reports
  r.ok = r.errors == 0 and subscribed == S.conns and verified == S.conns * S.messages and
         epochs_agree and S.publisher_rc == 0 and S.sanitizer_reports == 0
  for k = 1, S.messages do
    if (per_msg[k] or 0) ~= S.conns then r.ok = false end
  end

  say("part 1: %s connections over %d instances", commas(subscribed), S.instances)
  say("  subscribed %s of %s (failed %d) in %.2f s (%s/s); servers' CPU %.1f us per connection",
    commas(subscribed), commas(S.conns), failed, r.connect_s or -1, commas(r.connect_per_s),
    r.connect_cpu_us_per_conn or -1)
  say("  server RSS %.1f -> %.1f MiB: %s bytes per connection (kernel slab +%s bytes per connection, both ends)",
    before / 1048576, after / 1048576, commas(r.rss_per_conn), commas(r.slab_per_conn))
  for i, p in ipairs(r.per_instance) do
    say("    instance %d: %s connections, %.1f -> %.1f MiB, %s B/conn", i, commas(p.conns),
      p.rss_before / 1048576, p.rss_after / 1048576, commas(p.per_conn))
  end
  say("  idle: servers %.3f CPU s/s (%.3f before connecting), %s pings/s answered -> %.2f us per ping",
    r.idle_cpu_per_s, S.baseline_cpu_per_s, commas(r.pings_per_s), r.us_per_ping or -1)
  for k, m in ipairs(r.publishes) do
    say("  publish %d: %s deliveries verified, p50 %.1f ms, p99 %.1f ms, max %.1f ms", k,
      commas(per_msg[k] or 0), m.p50_ms or -1, m.p99_ms or -1, m.max_ms or -1)
  end
  say("  verified %s of %s deliveries; errors %d%s", commas(verified), commas(S.conns * S.messages),
    r.errors, #r.first_errors > 0 and (" -- first: " .. r.first_errors[1]) or "")
  say("  servers' CPU per delivery %.2f us; ok: %s", r.us_per_delivery or -1, tostring(r.ok))
  print(cjson.encode(r))
  os.exit(0)
end

-- ---- part 2 ----------------------------------------------------------------------------

if mode == "fanout" then
  local rows, order = {}, {}
  local ok = true
  for _, d in ipairs(lines_json(arg[2])) do
    local key = d.mode .. ":" .. d.instances
    if not rows[key] then
      rows[key] = { mode = d.mode, instances = d.instances, runs = {} }
      order[#order + 1] = key
    end
    local res = d.res
    if d.rc ~= 0 or res == cjson.null or not res or res.errors ~= 0 then ok = false end
    if res and res ~= cjson.null then
      res.redis_cpu_s = d.redis_cpu_s
      res.load = d.load
      table.insert(rows[key].runs, res)
    end
  end
  local out = { rows = {}, publat = {}, ok = ok, date = arg[4], commit = arg[5], load_end = arg[6] }
  for _, key in ipairs(order) do
    local row = rows[key]
    local function med(f)
      local t = {}
      for _, r in ipairs(row.runs) do
        local v = f(r)
        if type(v) == "number" then t[#t + 1] = v end
      end
      return median(t)
    end
    local errors = 0
    for _, r in ipairs(row.runs) do errors = errors + (r.errors or 0) end
    local m = {
      mode = row.mode, instances = row.instances, runs = #row.runs, errors = errors,
      deliveries_per_sec = med(function(r) return r.deliveries_per_sec end),
      published_per_sec = med(function(r) return r.published_per_sec end),
      p50_us = med(function(r) return r.p50_us end),
      p99_us = med(function(r) return r.p99_us end),
      server_cpu_us_per_delivery = med(function(r) return r.server_cpu_us_per_delivery end),
      server_cpu_util = med(function(r) return r.server_cpu_util end),
      gen_cpu_util = med(function(r) return r.gen_cpu_util end),
      redis_us_per_publish = med(function(r)
        if r.redis_cpu_s and r.published and r.published > 0 and row.instances > 1 then
          -- redis CPU over the whole generator run (opening, warmup and drain too) per
          -- message published while measuring, spread over the run: an upper bound of
          -- its cost per publish
          return r.redis_cpu_s * 1e6 / (r.published_per_sec * (r.duration_s + 2))
        end
      end),
    }
    out.rows[#out.rows + 1] = m
    say("  %-7s x%d: %s deliveries/s, p50 %.1f us, p99 %.1f us, %.3f us/delivery (servers%s), %d runs, %d errors",
      m.mode, m.instances, commas(m.deliveries_per_sec), m.p50_us or -1, m.p99_us or -1,
      m.server_cpu_us_per_delivery or -1, row.instances > 1 and " + redis" or "", m.runs, errors)
  end
  local pl, porder = {}, {}
  for _, d in ipairs(lines_json(arg[3])) do
    local key = d.instances .. ":" .. d.subs
    if not pl[key] then
      porder[#porder + 1] = key
      pl[key] = { instances = d.instances, subs = d.subs, runs = 0, ack50 = {}, ack99 = {},
                  ackmax = {}, d50 = {}, d99 = {}, errors = 0, verified = 0, expected = 0 }
    end
    local e = pl[key]
    e.runs = e.runs + 1
    if d.rc ~= 0 or d.pub == cjson.null or (d.subs > 0 and d.rcv == cjson.null) then
      ok = false
      e.errors = e.errors + 1
    else
      e.ack50[#e.ack50 + 1] = d.pub.ack_p50_us
      e.ack99[#e.ack99 + 1] = d.pub.ack_p99_us
      e.ackmax[#e.ackmax + 1] = d.pub.ack_max_us
      e.errors = e.errors + d.pub.errors
      if d.subs > 0 then
        e.d50[#e.d50 + 1] = d.rcv.p50_us
        e.d99[#e.d99 + 1] = d.rcv.p99_us
        e.errors = e.errors + d.rcv.errors
        e.verified = e.verified + d.rcv.verified
        e.expected = e.expected + d.subs * d.pub.messages
        if d.rcv.verified ~= d.subs * d.pub.messages then ok = false end
      end
    end
  end
  for _, key in ipairs(porder) do
    local e = pl[key]
    local k = e.instances
    do
      local m = { instances = k, subs = e.subs, runs = e.runs, errors = e.errors, verified = e.verified,
        expected = e.expected, ack_p50_us = median(e.ack50), ack_p99_us = median(e.ack99),
        ack_max_us = median(e.ackmax), delivery_p50_us = median(e.d50),
        delivery_p99_us = median(e.d99) }
      if m.errors > 0 then ok = false end
      out.publat[#out.publat + 1] = m
      say("  publish -> ack, %d instance(s)%s, %d subscribers: p50 %.1f us, p99 %.1f us; delivery p50 %.1f us, p99 %.1f us; verified %s of %s",
        k, k > 1 and " + Redis" or "", e.subs, m.ack_p50_us or -1, m.ack_p99_us or -1,
        m.delivery_p50_us or -1, m.delivery_p99_us or -1, commas(m.verified), commas(m.expected))
    end
  end
  out.ok = ok
  print(cjson.encode(out))
  os.exit(0)
end

-- ---- markdown ----------------------------------------------------------------------------

if mode == "markdown" then
  local A = cjson.decode(read(arg[2]))
  local B = cjson.decode(read(arg[3]))
  local date, commit, machine, limits, pinning, load_end = arg[4], arg[5], arg[6], arg[7], arg[8], arg[9]
  local L = {}
  local function p(fmt, ...) L[#L + 1] = select("#", ...) > 0 and fmt:format(...) or fmt end
  local MiB = 1048576
  p("## Cluster scale")
  p("")
  local when = ("on %s (commit %s)"):format(A.date or date, A.commit or commit)
  if A.date and B.date then
    when = ("(part 1, %s connections: %s, commit %s; part 2, fan-out and publish latency: finished %s, commit %s, load average then %s)"):format(
      commas(A.conns), A.date, A.commit, B.date, B.commit, B.load_end or "?")
  end
  p("Generated by `scripts/bench-scale` %s. Machine: %s. Load average (1, 5, 15 min) of part 1 while connecting %s, at the end of the idle window %s, after the publishes %s%s: the machine is shared with other engineers' builds and tests, which disturbs every absolute number here (CPU per connection, per ping and per delivery much less than throughput and latency).",
    when, machine, A.load.connect, A.load.idle, A.load.publish,
    B.load_end and "" or ("; at the end " .. tostring(load_end)))
  p("")
  p("Limits of the machine (none raised; no root): %s. Placement: %s.", limits, pinning)
  p("")
  p("### %s concurrent WebSocket connections, one port, %d instances, one Redis", commas(A.conns), A.instances)
  p("")
  p("%d `edgews-lua --workers 1 --reuse-port --redis redis://127.0.0.1:PORT/0` instances on one port (each its own `--admin-listen`) with bench/apps/scale.lua, one redis-server (persistence off), %d `edgews-bench scale` generators of %s connections each, every generator bound to %d loopback source address(es) of its own (127.0.0.2, 127.0.0.3, ...: at most %s connections per address towards the one server address, see bench/README.md) and under the open-file limit. Every connection subscribes to the **pub/sub topic** `scale` (not a channel: offsets, epochs and the Redis stream are on the path) and waits; a connection counts when its subscribe was answered.",
    A.instances, A.gens, commas(math.ceil(A.conns / A.gens)), A.srcs_per_gen or 1, commas(A.per_src))
  p("")
  p("| measure | value |")
  p("|---|---:|")
  p("| connections subscribed | %s of %s (failed %d) |", commas(A.subscribed), commas(A.conns), A.failed)
  p("| time to connect and subscribe all (first connect -> last subscribe answer) | %.1f s (%s connections/s) |", A.connect_s or -1, commas(A.connect_per_s))
  p("| servers' CPU per connection opened and subscribed (instances + Redis) | %.1f µs |", A.connect_cpu_us_per_conn or -1)
  p("| server RSS before -> after (sum of the instances) | %.1f -> %.1f MiB |", A.rss_before / MiB, A.rss_after / MiB)
  p("| **server RSS per connection** (growth / connections) | **%s bytes** |", commas(A.rss_per_conn))
  p("| Redis RSS before -> after | %.1f -> %.1f MiB |", A.redis_rss_before / MiB, A.redis_rss_after / MiB)
  p("| kernel slab growth per connection (both ends of a loopback connection: not in any RSS) | %s bytes |", commas(A.slab_per_conn))
  p("| idle servers' CPU before connecting (instances + Redis) | %.3f s/s |", A.baseline_cpu_per_s)
  p("| idle servers' CPU at %s connections, heartbeat every %d s (%d s window) | %.3f s/s (instances alone %.3f) |", commas(A.subscribed), A.heartbeat, A.idle_s, A.idle_cpu_per_s, A.idle_inst_cpu_per_s)
  p("| **CPU per second on heartbeats** (the difference) | **%.3f s/s = %.1f%% of a core** |", A.heartbeat_cpu_per_s, A.heartbeat_cpu_per_s * 100)
  p("| pings answered in the window (counted by the generators) | %s/s, %.2f µs of server CPU each |", commas(A.pings_per_s), A.us_per_ping or -1)
  p("| publishes, each to every connection | %d, %s s apart |", A.messages, tostring(A.interval))
  p("| **deliveries verified** | **%s of %s** |", commas(A.verified), commas(A.conns * A.messages))
  p("| delivery latency, median over the publishes: p50 / p99 / max | **%s / %s / %s ms** |", commas(A.p50_ms, 1), commas(A.p99_ms, 1), commas(A.max_ms, 1))
  p("| servers' CPU per delivery (publish phase, heartbeat CPU taken out) | %.2f µs |", A.us_per_delivery or -1)
  p("")
  p("Per publish (delivery latency = the generator's read of the frame - the publisher's send time in the payload, same machine clock, over all %s connections):", commas(A.conns))
  p("")
  p("| publish | deliveries verified | p50 ms | p99 ms | max ms | publish -> ack ms |")
  p("|---:|---:|---:|---:|---:|---:|")
  for k, m in ipairs(A.publishes) do
    local ack = A.publisher and A.publisher.ack_us and A.publisher.ack_us[k]
    p("| %d | %s | %s | %s | %s | %s |", k, commas(A.per_message[k] or 0), commas(m.p50_ms, 1), commas(m.p99_ms, 1), commas(m.max_ms, 1),
      ack and commas(ack / 1000, 1) or "n/a")
  end
  p("")
  p("What a publish to everyone costs: %.2f µs of server CPU per connection, i.e. one `send` per connection of a frame built once per instance (on loopback the sender's system call also runs the receiving socket's TCP path); the %s deliveries of one publish are %.2f s of CPU 0, which the %d instances and Redis share: on a quiet machine that is the floor of the slowest delivery's latency. The latencies measured are several times that because other processes held both CPUs (the load averages above) and the generators read %s sockets on one CPU; a publish sent while the previous one's deliveries were still going waits behind them on the publisher's instance, which delays its ack too (publishes after the first).",
    A.us_per_delivery or -1, commas(A.conns), (A.us_per_delivery or 0) * A.conns / 1e6, A.instances, commas(A.conns))
  p("")
  p("Per instance (the kernel's `SO_REUSEPORT` spread):")
  p("")
  p("| instance | connections | RSS before MiB | RSS after MiB | bytes per connection |")
  p("|---:|---:|---:|---:|---:|")
  for i, x in ipairs(A.per_instance) do
    p("| %d | %s | %.1f | %.1f | %s |", i, commas(x.conns), x.rss_before / MiB, x.rss_after / MiB, commas(x.per_conn))
  end
  p("")
  p("Every generator checks every message: the envelope (`type`, `topic`, the same `epoch` on every message and in every generator), offsets exactly one past the previous one from the offset its subscribe answered (none missing, repeated or reordered), and every byte of the %d-byte payload. The publisher (`edgews-bench scale --publish`, its connection on whichever instance the kernel picked) waits for each publish's ack (`pubsub.publish` returned: Redis ran the publish script) before the next one. All on one machine: the generators share CPU 1 and read %s sockets, so delivery latency includes their scheduling; the servers and Redis share CPU 0.", 64, commas(A.conns))
  p("")

  p("Opening: a join is the TCP connect, the upgrade and the subscribe's answer; each generator keeps at most %s joins in flight (`--max-pending`). In a cluster a live `pubsub.subscribe` reads the topic's last offset from Redis with one round trip from the worker's thread (README: Running a cluster), so the servers' CPU per join above includes Redis's part and the workers' waits are part of the time to connect all.", commas(A.max_pending))
  p("")
  p("### Cross-instance fan-out: 1,000 subscribers, 1 instance vs 2 instances + Redis")
  p("")
  p("The fan-out scenario of `scripts/bench` (`edgews-bench fanout -c 1000 -s 64 --rate 0 --window 64`, 10 s after 2 s, examples/broadcast/app.lua on /broadcast; the publisher is subscribed too), on 1 instance without Redis and on 2 instances joined by one redis-server, the subscribers split evenly over the two (`--spread`: even connections to the first instance, odd to the second; the publisher on the first), so half of every message's deliveries cross Redis. Both instances and Redis are pinned to CPU 0 with the single instance's one core: the 2-instance rows measure what crossing Redis costs, not added capacity. Taking turns, %d run(s), medians; server CPU = instances + Redis.", B.rows[1] and B.rows[1].runs or 0)
  p("")
  p("| mode | instances | deliveries/s | published msgs/s | p50 µs | p99 µs | server CPU µs/delivery | server CPU util | generator CPU util | Redis CPU µs/publish (upper bound) | errors | runs |")
  p("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
  local by = {}
  for _, m in ipairs(B.rows) do
    by[m.mode .. m.instances] = m
    p("| %s | %s | %s | %s | %s | %s | %.3f | %.0f%% | %.0f%% | %s | %d | %d |",
      m.mode == "channel" and "channel" or "pub/sub (history: memory / Redis stream)",
      m.instances == 1 and "1, no Redis" or "2 + Redis",
      commas(m.deliveries_per_sec), commas(m.published_per_sec), commas(m.p50_us, 1), commas(m.p99_us, 1),
      m.server_cpu_us_per_delivery or -1, (m.server_cpu_util or 0) * 100, (m.gen_cpu_util or 0) * 100,
      m.redis_us_per_publish and ("%.1f"):format(m.redis_us_per_publish) or "-", m.errors, m.runs)
  end
  p("")
  local starved = false
  for _, mode in ipairs({ "channel", "pubsub" }) do
    local a, b = by[mode .. 1], by[mode .. 2]
    if a and b and a.deliveries_per_sec and b.deliveries_per_sec then
      p("- %s: crossing Redis costs %+.0f%% server CPU per delivery (%.3f -> %.3f µs, instances and Redis together; Redis itself %s µs per message published); 2 instances + Redis delivered %.0f%% of the single instance's deliveries/s.",
        mode == "channel" and "Channel" or "Pub/sub",
        100 * (b.server_cpu_us_per_delivery / a.server_cpu_us_per_delivery - 1),
        a.server_cpu_us_per_delivery, b.server_cpu_us_per_delivery,
        b.redis_us_per_publish and ("%.1f"):format(b.redis_us_per_publish) or "n/a",
        100 * b.deliveries_per_sec / a.deliveries_per_sec)
      if (a.server_cpu_util or 1) < 0.8 then starved = true end
    end
  end
  if starved then
    p("")
    p("The deliveries/s columns compare CPU shares here, not designs: the single instance got %.0f%% of CPU 0 (channel) while the machine's other processes took the rest, and 3 processes (2 instances + Redis) get more of a shared CPU than 1 (%.0f%%); the generator, which bounds this scenario on a quiet machine (see the fan-out sections above: 7.1M deliveries/s), was starved too. Server CPU per delivery is the comparison that holds.",
      100 * (by.channel1 and by.channel1.server_cpu_util or 0), 100 * (by.channel2 and by.channel2.server_cpu_util or 0))
  end
  p("")
  p("Publish latency through Redis (`edgews-bench scale --publish --interval 0`: 1,000 publishes of bench/apps/scale.lua, each sent when the previous one's ack arrived, with 1,000 subscribers verifying every delivery (the count below sums the runs); publish -> ack = the WebSocket round trip of `P...` -> `p<offset>`, i.e. the handler's `pubsub.publish` returning, which in a cluster waits for Redis to run the publish script):")
  p("")
  p("| setup | subscribers | publish -> ack p50 µs | p99 µs | max µs | delivery p50 µs | delivery p99 µs | deliveries verified | errors | runs |")
  p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
  local pl = {}
  for _, m in ipairs(B.publat) do
    pl[m.instances .. ":" .. m.subs] = m
    p("| %s | %s | %s | %s | %s | %s | %s | %s | %d | %d |", m.instances == 1 and "1 instance, memory history" or "2 instances + Redis",
      commas(m.subs), commas(m.ack_p50_us, 1), commas(m.ack_p99_us, 1), commas(m.ack_max_us, 1),
      m.subs > 0 and commas(m.delivery_p50_us, 1) or "-", m.subs > 0 and commas(m.delivery_p99_us, 1) or "-",
      m.subs > 0 and (commas(m.verified) .. " of " .. commas(m.expected)) or "-", m.errors, m.runs)
  end
  local a, b = pl["1:0"], pl["2:0"]
  if a and b and a.ack_p50_us and b.ack_p50_us then
    p("")
    local d99 = (b.ack_p99_us or 0) - (a.ack_p99_us or 0)
    p("Without subscribers, Redis adds %.0f µs to the median publish -> ack: the publish script's round trip from the instance's Redis thread and back to the worker. %s",
      b.ack_p50_us - a.ack_p50_us, d99 > 0 and ("At the p99: %.0f µs."):format(d99)
        or "The p99s are the machine's scheduling noise (milliseconds, both rows), not Redis.")
    p("")
    p("With 1,000 subscribers the ack comes from the worker that also writes the previous publish's deliveries, so those rows measure the CPU share each setup got on the shared machine again (see above), not Redis.")
  end
  p("")

  -- projection
  p("### Projection: 1,000,000 connections (a projection from the figures above, not a measurement)")
  p("")
  local N = 1e6
  local fd_room = 18000 -- per process: open-file limit 20,000, 10% for the kernel's uneven spread
  local per_inst = 15000
  local inst = math.ceil(N / per_inst)
  local rss_conn = A.rss_per_conn or 0
  local base_rss = A.rss_before / A.instances
  local slab = A.slab_per_conn or 0
  local mem_srv = N * rss_conn + inst * base_rss
  local hb_us = A.us_per_ping or 0
  local hb30 = N / 30 * hb_us / 1e6
  local del_us = A.us_per_delivery or 0
  local conn_us = A.connect_cpu_us_per_conn or 0
  p("Inputs (measured above): %s bytes of server RSS per connection, %.1f MiB per idle instance, %s bytes of kernel slab per connection (both ends on loopback: about half of it is the server's socket), %.2f µs of server CPU per heartbeat ping, %.2f µs per delivery at %s subscribers, %.1f µs per connection opened and subscribed.",
    commas(rss_conn), base_rss / MiB, commas(slab), hb_us, del_us, commas(A.conns), conn_us)
  p("")
  p("| item | arithmetic | projection |")
  p("|---|---|---:|")
  p("| instances (with the open-file limit of 20,000 per process kept) | 1,000,000 / %s connections per instance (%d%% of the limit, room for an uneven spread) | **%d instances** (`--workers 1`; with a raised limit, fewer instances of `--workers N`, the same totals below) |",
    commas(per_inst), math.floor(per_inst / 20000 * 100), inst)
  p("| server memory | 1,000,000 x %s B + %d x %.1f MiB | **%.1f GiB** |", commas(rss_conn), inst, base_rss / MiB, mem_srv / 2^30)
  p("| kernel memory for the server sockets | 1,000,000 x %s B / 2 (idle: no buffers held) | %.1f GiB |", commas(slab), N * slab / 2 / 2^30)
  p("| heartbeats, 30 s interval (the default) | 1,000,000 / 30 s x %.2f µs | %.2f cores |", hb_us, hb30)
  p("| one publish to all 1,000,000 | 1,000,000 x %.2f µs | %.1f core-seconds (1 publish per second to everyone keeps ~%.0f cores busy) |",
    del_us, N * del_us / 1e6, math.ceil(N * del_us / 1e6))
  p("| reconnect storm: all 1,000,000 connect and subscribe again | 1,000,000 x %.1f µs | %.0f core-seconds (%.0f s on 8 cores) |", conn_us, N * conn_us / 1e6, N * conn_us / 1e6 / 8)
  local cores = math.ceil(hb30 + N * del_us / 1e6 * 1 + 1)
  p("| cores for 1 publish/s to everyone + heartbeats + one core of headroom | %.2f + %.1f + 1 | **~%d cores** (e.g. %d machines of 8 cores, %d instances each) |",
    hb30, N * del_us / 1e6, cores, math.ceil(cores / 8), math.ceil(inst / math.ceil(cores / 8)))
  local rp = by["pubsub2"] and by["pubsub2"].redis_us_per_publish
  p("| Redis | nothing per connection (each instance holds one subscription per topic its connections follow); per publish one script run plus one write to each of the %d instances; measured %s µs of Redis CPU per pub/sub publish with 2 instances | **1 shard** holds the connections; one Redis core runs between %s publishes/s (the measured cost independent of the instance count) and %s publishes/s (all of it growing with the instances): shard by topic (`--redis` repeated) above that |",
    inst, rp and ("%.1f"):format(rp) or "n/a", rp and commas(1e6 / rp) or "n/a",
    rp and commas(1e6 / (rp * inst / 2)) or "n/a")
  p("")
  p("Assumptions: connections are idle except for the heartbeat and the publishes; every connection follows the topic published to (the worst case: one publish = 1,000,000 deliveries); the per-connection costs measured at %s connections stay linear (instances are independent: each instance here held ~%s connections, as in the projection); TLS, compression, authentication and presence are off (each adds memory and CPU per connection: see the idle-memory and TLS sections above); clients are on other machines (here each connection's client end also cost this machine's kernel memory and CPU).",
    commas(A.conns), commas(math.floor(A.conns / A.instances)))
  print(table.concat(L, "\n"))
  os.exit(0)
end

io.stderr:write("usage: luajit bench/scale_report.lua scale|fanout|markdown ...\n")
os.exit(2)
