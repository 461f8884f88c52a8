-- edgews.pool against real backends: edgews-lua instances started here
-- (spec/apps/pool_backend_app.lua), killed, stopped (SIGSTOP: a backend that no
-- longer answers pings) and restarted on the same port. The pool runs in another
-- edgews-lua (spec/apps/pool_app.lua) driven over its /ctl WebSocket.
local helper = require "spec.helper"
local cjson = require "cjson"
local dirent = require "posix.dirent"
local psignal = require "posix.signal"

local backends, srv, ctl = {}, nil, nil

local function start_backend(id, port)
  local b = helper.start_server { app = helper.app "pool_backend_app.lua", workers = 1, port = port,
    env = { BACKEND_NAME = id } }
  backends[id] = b
  return b
end

local function call(cmd, timeout)
  ctl:call { op = "send", id = "ctl", data = cjson.encode(cmd) }
  local r = ctl:call { op = "recv", id = "ctl", n = 1, timeout = timeout or 30 }
  assert(r.json and r.json[1], "no answer to " .. cmd.op .. ": " .. cjson.encode(r))
  return r.json[1]
end

local function stats(name) return call { op = "stats", name = name } end

local function fd_count(pid)
  local n = 0
  for _ in dirent.files("/proc/" .. pid .. "/fd") do n = n + 1 end
  return n - 2 -- . and ..
end

local function count_of(list, item)
  local n = 0
  for _, v in ipairs(list) do if v == item then n = n + 1 end end
  return n
end

describe("edgews.pool with real backends", function()
  setup(function()
    for _, id in ipairs { "a", "b", "c", "d" } do start_backend(id) end
    srv = helper.start_server { app = helper.app "pool_app.lua", workers = 1,
      env = { BACKENDS = ("a=%d,b=%d,c=%d,d=%d"):format(backends.a.port, backends.b.port,
        backends.c.port, backends.d.port) } }
    ctl = helper.app_client()
    ctl:call { op = "open", id = "ctl", url = srv:url "/ctl" }
  end)

  teardown(function()
    local report
    for _, b in pairs(backends) do psignal.kill(b.pid, psignal.SIGCONT) end
    if srv and srv:alive() then
      srv:stop()
      report = helper.sanitizer_report(srv:log())
    end
    helper.cleanup()
    assert(not report, report)
  end)

  it("leaks no sockets over 10,000 acquire/release cycles with failures", function()
    local pid = srv.pid
    local base = fd_count(pid)
    call { op = "new", name = "leak", only = { "a", "b" }, config = { max_connections = 4 } }
    local r = call({ op = "cycle", name = "leak", n = 10000, fail_every = 20 }, 120)
    assert.are.same({}, r.errors)
    assert.are.equal(10000, r.counts.a + r.counts.b)
    local s = stats("leak").stats
    assert.are.equal(500, s.backends.a.request_failures + s.backends.b.request_failures)
    assert.is_true(s.total <= 2, "more connections than needed: " .. s.total)
    call { op = "close", name = "leak" }
    assert(helper.wait_until(function() return fd_count(pid) == base end, 5),
      ("fds %d, baseline %d"):format(fd_count(pid), base))
  end)

  it("round-robin: exact shares over 10,000 acquisitions", function()
    call { op = "new", name = "rr", only = { "a", "b", "c" }, config = { load_balancing = "round-robin" } }
    local r = call({ op = "cycle", name = "rr", n = 10000 }, 60)
    assert.are.same({ a = 3334, b = 3333, c = 3333 }, r.counts)
    assert.are.equal(3, r.conns) -- one connection per backend, reused
    call { op = "close", name = "rr" }
  end)

  it("weighted-round-robin: shares within 2% of the weights", function()
    call { op = "new", name = "wrr", only = { "a", "b", "c" }, weights = { a = 5, b = 3, c = 2 },
      config = { load_balancing = "weighted-round-robin" } }
    local r = call({ op = "cycle", name = "wrr", n = 10000 }, 60)
    assert.is_true(math.abs(r.counts.a / 10000 - 0.5) <= 0.02)
    assert.is_true(math.abs(r.counts.b / 10000 - 0.3) <= 0.02)
    assert.is_true(math.abs(r.counts.c / 10000 - 0.2) <= 0.02)
    call { op = "close", name = "wrr" }
  end)

  it("least-connections avoids the backend holding the most connections", function()
    call { op = "new", name = "lc", only = { "a", "b", "c" }, config = { load_balancing = "least-connections" } }
    local h = call { op = "hold", name = "lc", tag = "lc", k = 5 }
    local held = {}
    for _, g in ipairs(h.got) do held[g.backend] = (held[g.backend] or 0) + 1 end
    local busiest, most = nil, 0
    for id, n in pairs(held) do if n > most then busiest, most = id, n end end
    assert.are.equal(2, most)
    local r = call { op = "cycle", name = "lc", n = 300 }
    assert.is_nil(r.counts[busiest])
    call { op = "release", name = "lc", tag = "lc" }
    r = call { op = "cycle", name = "lc", n = 300 }
    assert.are.same({ a = 100, b = 100, c = 100 }, r.counts)
    call { op = "close", name = "lc" }
  end)

  it("ip-hash: stable; a backend killed is marked unhealthy and moves only its keys; restarted, healthy again", function()
    call { op = "new", name = "ih", only = { "a", "b", "c" }, config = { load_balancing = "ip-hash",
      health_check = { interval = 0.1, timeout = 0.5, unhealthy_threshold = 2, healthy_threshold = 2 } } }
    local first = call({ op = "cycle", name = "ih", n = 600, keys = true }, 60).per_key
    local again = call({ op = "cycle", name = "ih", n = 600, keys = true }, 60).per_key
    assert.are.same(first, again)
    local port = backends.c.port
    backends.c:kill(0)
    assert(helper.wait_until(function()
      return stats("ih").stats.backends.c.state == "unhealthy"
    end, 5), "c not marked unhealthy")
    local moved_ok, moved_other, on_c = 0, 0, 0
    local after = call({ op = "cycle", name = "ih", n = 600, keys = true }, 60).per_key
    for k, id in pairs(first) do
      assert.are_not.equal("c", after[k])
      if id == "c" then on_c = on_c + 1 if after[k] ~= "c" then moved_ok = moved_ok + 1 end
      elseif after[k] ~= id then moved_other = moved_other + 1 end
    end
    assert.are.equal(0, moved_other)
    assert.are.equal(on_c, moved_ok)
    assert.is_true(on_c > 0 and on_c / 600 <= 1 / 3 * 1.5, "c had " .. on_c .. " keys")
    start_backend("c", port)
    assert(helper.wait_until(function()
      return stats("ih").stats.backends.c.state == "healthy"
    end, 5), "c not marked healthy again")
    local back = call({ op = "cycle", name = "ih", n = 600, keys = true }, 60).per_key
    assert.are.same(first, back)
    local ev = stats("ih").events
    assert.are.equal(1, count_of(ev, "backend-unhealthy c"))
    assert.are.equal(1, count_of(ev, "backend-healthy c"))
    assert.are.equal(0, count_of(ev, "backend-unhealthy a") + count_of(ev, "backend-unhealthy b"))
    call { op = "close", name = "ih" }
  end)

  it("no healthy backend: acquire answers so, at once", function()
    call { op = "new", name = "dead", extra = { { id = "z", url = "ws://127.0.0.1:1/ws" } },
      only = {}, config = { health_check = { interval = 0.05, timeout = 0.2, unhealthy_threshold = 1 } } }
    assert(helper.wait_until(function()
      return stats("dead").stats.backends.z.state == "unhealthy"
    end, 5))
    local r = call { op = "request", name = "dead" }
    assert.are.equal("no healthy backend", r.error)
    call { op = "close", name = "dead" }
  end)

  it("exhaustion: waiters are served in FIFO order, time out with \"timeout\", and the pool shrinks back to min_connections", function()
    call { op = "new", name = "ex", only = { "a" }, config = { min_connections = 1, max_connections = 2,
      idle_timeout = 0.3, eviction_interval = 0.1 } }
    local h = call { op = "hold", name = "ex", tag = "ex", k = 2 }
    assert.are_not.equal(h.got[1].id, h.got[2].id)
    call { op = "waiters", name = "ex", tag = "w", k = 4, timeouts = { 3, 3, 0.3, 3 }, hold_for = 0.05 }
    assert(helper.wait_until(function() return #call({ op = "waited", tag = "w" }).results == 1 end, 3))
    local r = call { op = "waited", tag = "w" }
    assert.are.same({ i = 3, err = "timeout" }, r.results[1])
    assert.are.equal(3, stats("ex").stats.waiting)
    call { op = "release", name = "ex", tag = "ex" }
    assert(helper.wait_until(function() return #call({ op = "waited", tag = "w" }).results == 4 end, 5))
    r = call { op = "waited", tag = "w" }
    local order = {}
    for k = 2, 4 do
      order[#order + 1] = r.results[k].i
      assert.is_not_nil(r.results[k].id)
    end
    assert.are.same({ 1, 2, 4 }, order)
    local s = stats("ex").stats
    assert.is_true(s.total <= 2)
    assert(helper.wait_until(function()
      local st = stats("ex").stats
      return st.total == 1 and st.idle == 1 and st.active == 0
    end, 5), "did not shrink back to min_connections: " .. cjson.encode(stats("ex").stats))
    call { op = "close", name = "ex" }
  end)

  it("circuit breaker: open after failures, half-open probe, open again, then closed", function()
    call { op = "new", name = "cb", only = { "b" }, config = {
      circuit_breaker = { failure_threshold = 3, recovery_timeout = 0.5 } } }
    assert.are.equal("b:ok", call({ op = "request", name = "cb", msg = "ok" }).reply)
    assert.are.equal("b:mode fail", call({ op = "direct", id = "b", msg = "mode:fail" }).reply)
    for _ = 1, 3 do
      assert.matches("request failed", call({ op = "request", name = "cb" }).error)
    end
    assert.are.equal("open", stats("cb").stats.backends.b.circuit)
    assert.are.equal("circuit open", call({ op = "request", name = "cb" }).error)
    helper.sleep(0.6) -- the recovery timeout, on the pool's clock
    assert.matches("request failed", call({ op = "request", name = "cb" }).error) -- the probe fails
    assert.are.equal("open", stats("cb").stats.backends.b.circuit)
    assert.are.equal("b:mode ok", call({ op = "direct", id = "b", msg = "mode:ok" }).reply)
    helper.sleep(0.6)
    assert.are.equal("b:again", call({ op = "request", name = "cb", msg = "again" }).reply)
    assert.are.equal("closed", stats("cb").stats.backends.b.circuit)
    assert.are.same({ "circuit-open b", "circuit-half-open b", "circuit-open b", "circuit-half-open b",
      "circuit-close b" }, stats("cb").events)
    call { op = "close", name = "cb" }
  end)

  it("reconnects with exponential backoff and full jitter", function()
    call { op = "new", name = "rb", only = {}, extra = { { id = "z", url = "ws://127.0.0.1:1/ws" } },
      config = { reconnect = { initial = 0.02, max = 0.16, multiplier = 2, jitter = "full" },
        circuit_breaker = { failure_threshold = 1000 } } }
    local r = call { op = "request", name = "rb", acquire_timeout = 1.5 }
    assert.are.equal("timeout", r.error)
    local d = stats("rb").stats.backends.z.reconnect_delays
    assert.is_true(#d >= 6, "only " .. #d .. " attempts")
    local below = 0
    for i, v in ipairs(d) do
      local ceiling = math.min(0.16, 0.02 * 2 ^ (i - 1))
      assert.is_true(v >= 0 and v < ceiling, ("delay %d = %g, ceiling %g"):format(i, v, ceiling))
      if v < ceiling * 0.9 then below = below + 1 end
    end
    assert.is_true(below >= 1) -- jittered, not the ceiling every time
    call { op = "close", name = "rb" }
  end)

  it("validate_on_checkout detects a backend that stopped answering pings", function()
    call { op = "new", name = "va", only = { "d" }, config = { validate_on_checkout = { timeout = 0.3 },
      connect = { timeout = 0.4 }, reconnect = { initial = 0.05, max = 0.1 } } }
    assert.are.equal("d:one", call({ op = "request", name = "va", msg = "one" }).reply)
    psignal.kill(backends.d.pid, psignal.SIGSTOP)
    assert(helper.wait_until(function() -- every thread of it stopped
      for tid in dirent.files("/proc/" .. backends.d.pid .. "/task") do
        if tid:match("^%d+$") then
          local st = helper.read_file("/proc/" .. backends.d.pid .. "/task/" .. tid .. "/status") or ""
          if not st:find("State:%s+T") then return false end
        end
      end
      return true
    end, 5), "backend d did not stop")
    local r = call { op = "request", name = "va", acquire_timeout = 1 }
    assert.are.equal("timeout", r.error, cjson.encode(r))
    assert.is_true(stats("va").stats.backends.d.validation_failures >= 1)
    psignal.kill(backends.d.pid, psignal.SIGCONT)
    assert(helper.wait_until(function()
      return call({ op = "request", name = "va", msg = "two", acquire_timeout = 2 }).reply == "d:two"
    end, 5))
    call { op = "close", name = "va" }
  end)

  it("closes a released connection that has unread messages instead of reusing it", function()
    call { op = "new", name = "un", only = { "a" } }
    assert.are.same({ reused = false, reply = "a:next" }, call { op = "unread", name = "un" })
    call { op = "close", name = "un" }
  end)

  it("a pool created again under its name (a reload) replaces the old one", function()
    local r = call { op = "replace", name = "again", only = { "a" } }
    assert.are.same({ old_acquire = "pool closed", old_conn_state_before_release = "open",
      old_conn_state_after_release = "closed", same = true }, r)
  end)

  it("is exposed in /metrics", function()
    call { op = "new", name = "m", only = { "a" }, config = { eviction_interval = 0.05 } }
    assert.are.equal("a:x", call({ op = "request", name = "m", msg = "x" }).reply)
    local body
    assert(helper.wait_until(function()
      body = ctl:call({ op = "http", url = srv:http_url "/metrics" }).body
      return body:find('edgews_pool_acquired_total{worker="0",pool="m",backend="a"} 1', 1, true)
    end, 3), body)
    assert.matches("# TYPE edgews_pool_connections gauge", body)
    assert.matches('edgews_pool_connections{worker="0",pool="m",backend="a",state="idle"} 1', body, 1, true)
    assert.matches('edgews_pool_circuit_state{worker="0",pool="m",backend="a"} 0', body, 1, true)
    call { op = "close", name = "m" }
  end)

  it("shuts down cleanly with acquirers waiting and a receive in progress", function()
    call { op = "new", name = "sd", only = { "a" }, config = { max_connections = 1 } }
    call { op = "hold", name = "sd", tag = "sd", k = 1 }
    call { op = "waiters", name = "sd", tag = "sd", k = 3, timeout = 60 }
    assert(helper.wait_until(function() return stats("sd").stats.waiting == 3 end, 5))
    -- a handler parked in receive on a backend that holds its reply for 30 s
    call { op = "new", name = "sd2", only = { "b" } }
    ctl:call { op = "send", id = "ctl", data = cjson.encode { op = "request", name = "sd2", msg = "hold:30",
      timeout = 60 } }
    -- /ctl's handler is now parked in receive (events of that socket wait): ask on another
    ctl:call { op = "open", id = "ctl2", url = srv:url "/ctl" }
    assert(helper.wait_until(function()
      ctl:call { op = "send", id = "ctl2", data = cjson.encode { op = "stats", name = "sd2" } }
      local r = ctl:call { op = "recv", id = "ctl2", n = 1, timeout = 5 }
      return r.json[1].stats.active == 1
    end, 5), "the request did not start")
    local how, code = srv:stop(10)
    assert.are.equal("exited", how)
    assert.are.equal(0, code)
    local report = helper.sanitizer_report(srv:log())
    assert(not report, report)
  end)
end)
