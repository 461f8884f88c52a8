-- edgews.pool: a pool of outbound WebSocket connections (edgews.client) to several
-- backends, per worker: load balancing, a FIFO of waiting acquirers, idle eviction,
-- validation on checkout, active health checks, a circuit breaker and reconnection
-- with exponential backoff and jitter.
--
--   local pool = edgews.pool {
--     name = "chat",                              -- a reload replaces the pool of that name
--     backends = { { id = "a", url = "ws://10.0.0.1:8080/chat", weight = 2 },
--                  { id = "b", url = "ws://10.0.0.2:8080/chat" } },
--     min_connections = 1, max_connections = 16,  -- per backend, per worker
--     max_total_connections = 24,                  -- all backends, per worker
--     acquire_timeout = 5, idle_timeout = 60, eviction_interval = 5,
--     validate_on_checkout = { timeout = 1 },      -- ping, and a pong within 1 s
--     load_balancing = "ip-hash",
--     health_check = { interval = 5, timeout = 2, unhealthy_threshold = 3,
--                      healthy_threshold = 2, path = "/health" },
--     circuit_breaker = { failure_threshold = 5, recovery_timeout = 30 },
--     reconnect = { initial = 0.1, max = 30, multiplier = 2, jitter = "full" },
--     connect = { protocols = {"chat.v1"}, timeout = 5, compression = true },
--   }
--   local conn, err = pool:acquire { key = socket.ctx.ip, timeout = 2 }
--   conn:send(msg) ; local reply = conn:receive(5) ; pool:release(conn)
--   pool:with(function(conn) ... end, { key = ... })   -- always releases
--
-- Why per worker: each worker's loop owns its connections (like its server-side
-- ones), so the pool needs no locks; a backend then sees up to workers x
-- max_connections connections from one server. The scheduling here is Lua on the
-- worker's loop; the connections themselves are the C core's (core/net/client.c).
local core = require "edgews.core"
local client = require "edgews.client"
local timers = require "edgews.timers"
local balancer = require "edgews.pool.balancer"
local breaker_mod = require "edgews.pool.breaker"
local backoff_mod = require "edgews.pool.backoff"

local type, error, pairs, ipairs, tostring, setmetatable, pcall, select, unpack =
  type, error, pairs, ipairs, tostring, setmetatable, pcall, select, unpack
local remove, insert, concat, min, max, floor = table.remove, table.insert, table.concat,
  math.min, math.max, math.floor
local now = core.now

local _M = {}
local Pool = {}
Pool.__index = Pool
_M.Pool = Pool

local Conn = {}
Conn.__index = Conn
_M.Conn = Conn

local pools = {} -- this worker's pools, by name

local EVENTS = {
  ["backend-healthy"] = true, ["backend-unhealthy"] = true, ["circuit-open"] = true,
  ["circuit-close"] = true, ["circuit-half-open"] = true,
}

-- ---------------------------------------------------------------- configuration

local function num(v, name, def, lo, int)
  if v == nil then return def end
  if type(v) ~= "number" or not (v >= lo) or (int and v % 1 ~= 0) then
    error(("edgews.pool: %s must be %s >= %s"):format(name, int and "an integer" or "a number", lo), 4)
  end
  return v
end

local function check_backends(list)
  if type(list) ~= "table" or #list == 0 then error("edgews.pool: backends must be a non-empty list", 3) end
  local out, seen = {}, {}
  for i, b in ipairs(list) do
    if type(b) ~= "table" then error("edgews.pool: backends[" .. i .. "] must be a table", 3) end
    local id = b.id or b[1] or ("backend" .. i)
    local url = b.url or b[2]
    local w = b.weight or b[3] or 1
    if type(url) ~= "string" or not (url:match("^[wW][sS][sS]?://")) then
      error("edgews.pool: backends[" .. i .. "].url must be a ws:// or wss:// URL", 3)
    end
    if type(w) ~= "number" or not (w > 0) then error("edgews.pool: backends[" .. i .. "].weight must be > 0", 3) end
    id = tostring(id)
    if seen[id] then error("edgews.pool: duplicate backend id " .. id, 3) end
    seen[id] = true
    out[i] = { id = id, url = url, weight = w }
  end
  return out
end

local function check(cfg)
  if type(cfg) ~= "table" then error("edgews.pool: configuration table expected", 3) end
  local c = {}
  c.name = cfg.name ~= nil and tostring(cfg.name) or "default"
  c.backends = check_backends(cfg.backends)
  c.min = num(cfg.min_connections, "min_connections", 0, 0, true)
  c.max = num(cfg.max_connections, "max_connections", 10, 1, true)
  if c.min > c.max then error("edgews.pool: min_connections must be <= max_connections", 3) end
  c.max_total = num(cfg.max_total_connections, "max_total_connections", c.max * #c.backends, 1, true)
  c.acquire_timeout = num(cfg.acquire_timeout, "acquire_timeout", 5, 0)
  c.idle_timeout = num(cfg.idle_timeout, "idle_timeout", 60, 0)
  c.eviction_interval = num(cfg.eviction_interval, "eviction_interval", 5, 0.01)
  local v = cfg.validate_on_checkout
  if v == true then v = {} end
  if v ~= nil and v ~= false and type(v) ~= "table" then
    error("edgews.pool: validate_on_checkout must be a boolean or { timeout = s }", 3)
  end
  c.validate = v and num(v.timeout, "validate_on_checkout.timeout", 1, 0) or nil
  c.lb = balancer.new(cfg.load_balancing)
  local hc = cfg.health_check
  if hc ~= nil and hc ~= false then
    if hc == true then hc = {} end
    if type(hc) ~= "table" then error("edgews.pool: health_check must be a table", 3) end
    c.hc = {
      interval = num(hc.interval, "health_check.interval", 5, 0.01),
      timeout = num(hc.timeout, "health_check.timeout", 2, 0.001),
      unhealthy = num(hc.unhealthy_threshold, "health_check.unhealthy_threshold", 3, 1, true),
      healthy = num(hc.healthy_threshold, "health_check.healthy_threshold", 2, 1, true),
      path = hc.path or "/health",
    }
    if type(c.hc.path) ~= "string" or c.hc.path:sub(1, 1) ~= "/" then
      error("edgews.pool: health_check.path must start with /", 3)
    end
  end
  c.breaker = cfg.circuit_breaker or {}
  breaker_mod.new(c.breaker, now) -- validates
  c.backoff = backoff_mod.new(cfg.reconnect)
  local conn = cfg.connect or {}
  if type(conn) ~= "table" then error("edgews.pool: connect must be a table of client options", 3) end
  c.connect = conn
  return c
end

-- ---------------------------------------------------------------- events

function Pool:on(event, fn)
  if not EVENTS[event] then error("pool:on: unknown event " .. tostring(event), 2) end
  if type(fn) ~= "function" then error("pool:on: function expected", 2) end
  local l = self.handlers[event] or {}
  l[#l + 1] = fn
  self.handlers[event] = l
  return self
end

function Pool:_emit(event, b, info)
  self.events[event] = (self.events[event] or 0) + 1
  for _, fn in ipairs(self.handlers[event] or {}) do
    local ok, err = pcall(fn, b.id, info)
    if not ok then core.log(core.ERROR, "pool " .. self.name .. ": " .. event .. " handler: " .. tostring(err)) end
  end
end

-- ---------------------------------------------------------------- the FIFO

-- Wakes the first waiter with values (a connection, or "retry"). true if one was woken.
function Pool:_wake_one(...)
  while #self.waiters > 0 do
    local w = remove(self.waiters, 1)
    if core.wake(w.id, ...) then return true end
  end
  return false
end

function Pool:_wake_all(...)
  while #self.waiters > 0 do
    local w = remove(self.waiters, 1)
    core.wake(w.id, ...)
  end
end

-- Waits for a handed-over connection, a "retry" or until `untill` (seconds, loop
-- time). Returns conn | "retry" | nil, "timeout".
function Pool:_wait(untill, key)
  local id = core.wait_new()
  local entry = { id = id, key = key }
  self.waiters[#self.waiters + 1] = entry
  -- Rounded up: the loop's clock has millisecond steps, and waking before `untill`
  -- would find nothing changed.
  local ms = max(0, math.ceil((untill - now()) * 1000))
  local v, err = core.wait(id, ms)
  for i, w in ipairs(self.waiters) do
    if w == entry then remove(self.waiters, i) break end
  end
  if v == nil then return nil, err end
  return v
end

-- ---------------------------------------------------------------- connections

local function update_latency(b, secs)
  b.latency = b.latency and (b.latency * 0.8 + secs * 0.2) or secs
end

function Pool:_discard(conn, code, reason)
  local b = conn._b
  if conn._alive then
    conn._alive = false
    b.total = b.total - 1
    self.total = self.total - 1
  end
  if conn.ws:state() == "open" then conn.ws:close(code or 1000, reason or "") end
end

function Pool:_connect_failed(b, err)
  b.failures = b.failures + 1
  b.attempt = b.attempt + 1
  local d = self.backoff:delay(b.attempt)
  b.next_connect = now() + d
  b.last_error = err
  b.delays[#b.delays + 1] = d
  if #b.delays > 64 then remove(b.delays, 1) end
  b.breaker:failure()
end

-- Opens one connection to b (the slot is counted while connecting). conn | nil, err
function Pool:_open(b)
  b.total = b.total + 1
  self.total = self.total + 1
  b.connecting = b.connecting + 1
  local t0 = now()
  local ws, err = client.connect(b.url, self.connect_opts)
  b.connecting = b.connecting - 1
  if not ws or self.closed then
    b.total = b.total - 1
    self.total = self.total - 1
    if ws then ws:close(1001, "pool closed") return nil, "pool closed" end
    self:_connect_failed(b, err)
    self:_wake_one("retry") -- capacity is free again
    return nil, err
  end
  b.attempt = 0
  update_latency(b, now() - t0)
  self.seq = self.seq + 1
  return setmetatable({ ws = ws, backend = b.id, id = self.seq, _b = b, _pool = self,
    _alive = true, _out = false, created = now(), last_used = now() }, Conn)
end

function Pool:_checkout(conn)
  local b = conn._b
  conn._out = true
  b.inflight = b.inflight + 1
  self.acquired = self.acquired + 1
  b.acquired = b.acquired + 1
  return conn
end

-- A backend that may take a request now (health, circuit).
local function usable(b)
  return b.healthy and b.breaker:would_allow()
end

local function can_open(self, b, t)
  return b.total < self.max and self.total < self.max_total and t >= b.next_connect
end

-- One attempt: a connection, or nil + "wait" (+ when to retry), or nil + an error.
function Pool:_try(key)
  local cands, healthy = {}, 0
  for _, b in ipairs(self.backends) do
    if b.healthy then
      healthy = healthy + 1
      if b.breaker:would_allow() then cands[#cands + 1] = b end
    end
  end
  if healthy == 0 then return nil, "no healthy backend" end
  if #cands == 0 then return nil, "circuit open" end
  local t = now()
  local first = self.lb:pick(cands, key)
  local order = { first }
  if self.lb.name ~= "ip-hash" then -- stickiness first; otherwise any that can serve
    for _, b in ipairs(cands) do if b ~= first then order[#order + 1] = b end end
  end
  local retry_at
  for _, b in ipairs(order) do
    -- an idle connection first (the most recently used: the others can age out)
    while #b.idle > 0 do
      local conn = remove(b.idle)
      if conn.ws:state() ~= "open" then
        self:_discard(conn)
      elseif not b.breaker:allow() then
        b.idle[#b.idle + 1] = conn
        break
      else
        return conn, nil, nil, true -- from the idle list: validated on checkout
      end
    end
    if can_open(self, b, t) then
      if b.breaker:allow() then
        local conn, err = self:_open(b)
        if conn then return conn end
        if self.closed then return nil, "pool closed" end
        if b.breaker:current() == "open" then b.breaker:release_probe() end
        return nil, "wait", now() -- another candidate, or another try
      end
    elseif t < b.next_connect and b.total < self.max then
      retry_at = min(retry_at or b.next_connect, b.next_connect)
    end
  end
  return nil, "wait", retry_at
end

--- pool:acquire([{ key = ..., timeout = s }]) -> conn | nil, err
-- err: "timeout", "no healthy backend", "circuit open", "pool closed". Waiters are
-- served in arrival order.
function Pool:acquire(o)
  if o ~= nil and type(o) ~= "table" then error("pool:acquire: options table expected", 2) end
  o = o or {}
  if self.closed then return nil, "pool closed" end
  local timeout = o.timeout or self.acquire_timeout
  if type(timeout) ~= "number" or not (timeout >= 0) then error("pool:acquire: timeout must be seconds >= 0", 2) end
  local deadline = now() + timeout
  local key = o.key
  if self.lb.name == "ip-hash" and key == nil then error("pool:acquire: ip-hash needs a key", 2) end
  local handed, from_idle
  if #self.waiters > 0 then -- FIFO: behind those already waiting
    local v, err = self:_wait(deadline, key)
    if v == nil then return nil, err end
    if v ~= "retry" then handed = v end
  end
  while not handed do
    if self.closed then return nil, "pool closed" end
    local conn, err, retry_at, idle = self:_try(key)
    if conn then
      handed, from_idle = conn, idle
      break
    end
    if err ~= "wait" then return nil, err end
    if now() >= deadline then return nil, "timeout" end
    if retry_at and retry_at <= now() then
      -- try again at once (another candidate after a failed connect)
    else
      local v, werr = self:_wait(retry_at and min(retry_at, deadline) or deadline, key)
      if v == nil and now() >= deadline then return nil, werr end
      if v and v ~= "retry" then handed = v end
    end
  end
  local conn = handed
  -- Only a connection that sat in the idle list is validated: a new one has just
  -- done its handshake, one handed over by a release has just served a request.
  if self.validate and from_idle then
    local ok = conn.ws:ping_wait(self.validate)
    if not ok then
      local b = conn._b
      self:_discard(conn, 1001, "validation failed")
      b.failures = b.failures + 1
      b.validation_failures = b.validation_failures + 1
      b.breaker:failure()
      self:_wake_one("retry")
      local left = deadline - now()
      if left <= 0 then return nil, "timeout" end
      return self:acquire { key = key, timeout = left }
    end
  end
  conn.last_used = now()
  return self:_checkout(conn)
end

--- pool:release(conn [, err]): gives the connection back. With err (the request
-- failed), the backend's failure counts (circuit breaker) and the connection is
-- closed; without, the request counts as a success. A closed connection is dropped.
function Pool:release(conn, err)
  if type(conn) ~= "table" or conn._pool ~= self then error("pool:release: a connection of this pool expected", 2) end
  if not conn._out then error("pool:release: connection is not checked out (released twice?)", 2) end
  local b = conn._b
  conn._out = false
  b.inflight = b.inflight - 1
  conn.last_used = now()
  if err then
    b.failures = b.failures + 1
    b.request_failures = b.request_failures + 1
    b.breaker:failure()
    self:_discard(conn, 1011, "request failed")
    self:_wake_one("retry")
    return
  end
  b.breaker:success()
  -- Unread messages would reach the connection's next user: close it instead.
  local state, _, _, unread = core.client_state(conn.ws._h)
  if unread > 0 and state == "open" then
    self:_discard(conn, 1000, "unread messages")
    self:_wake_one("retry")
    return
  end
  if self.closed or state ~= "open" or not b.healthy then
    self:_discard(conn, 1001, self.closed and "pool closed" or "")
    self:_wake_one("retry")
    return
  end
  -- Straight to the first waiter that may take it (ip-hash waiters retry instead,
  -- so that they stay on their backend).
  while #self.waiters > 0 do
    local w = remove(self.waiters, 1)
    if w.key ~= nil and self.lb.name == "ip-hash" then
      if core.wake(w.id, "retry") then
        b.idle[#b.idle + 1] = conn
        return
      end
    elseif core.wake(w.id, conn) then
      return
    end
  end
  b.idle[#b.idle + 1] = conn
end

--- pool:with(fn [, acquire options]) -> fn's results | nil, err: runs fn(conn) and
-- always releases; an error raised by fn counts as a failed request and is raised
-- again after the release.
function Pool:with(fn, o)
  if type(fn) ~= "function" then error("pool:with: function expected", 2) end
  local conn, err = self:acquire(o)
  if not conn then return nil, err end
  local res = { pcall(fn, conn) }
  if res[1] then
    if conn._out then self:release(conn) end
    return unpack(res, 2, table.maxn(res))
  end
  if conn._out then self:release(conn, res[2] or "error") end
  error(res[2], 0)
end

-- ---------------------------------------------------------------- the pooled connection

function Conn:send(data, is_binary) return self.ws:send(data, is_binary) end
function Conn:receive(timeout) return self.ws:receive(timeout) end
function Conn:ping_wait(timeout) return self.ws:ping_wait(timeout) end
function Conn:state() return self.ws:state() end
function Conn:close(code, reason) return self.ws:close(code, reason) end

-- ---------------------------------------------------------------- maintenance

-- Evicts idle connections past idle_timeout (keeping min_connections) and refills
-- each usable backend up to min_connections.
function Pool:_maintain()
  if self.closed then return end
  local t = now()
  for _, b in ipairs(self.backends) do
    local keep = {}
    for _, conn in ipairs(b.idle) do
      if conn.ws:state() ~= "open" then
        self:_discard(conn)
      elseif t - conn.last_used >= self.idle_timeout and b.total > self.min then
        self:_discard(conn, 1000, "idle")
        self.evicted = self.evicted + 1
      else
        keep[#keep + 1] = conn
      end
    end
    b.idle = keep
    if b.healthy and b.breaker:current() == "closed" then
      local missing = self.min - b.total
      for _ = 1, missing do
        if not can_open(self, b, t) then break end
        b.total = b.total + 1 -- reserve the slot before the task runs
        self.total = self.total + 1
        timers.timer(0, function()
          b.total = b.total - 1
          self.total = self.total - 1
          if self.closed or not can_open(self, b, now()) then return end
          local conn = self:_open(b)
          if conn then
            if self.closed then return self:_discard(conn, 1001, "pool closed") end
            if not self:_wake_one(conn) then b.idle[#b.idle + 1] = conn end
          end
        end)
      end
    end
  end
  self:_publish_metrics()
end

function Pool:_set_health(b, healthy)
  if b.healthy == healthy then return end
  b.healthy = healthy
  if not healthy then
    for _, conn in ipairs(b.idle) do self:_discard(conn, 1001, "backend unhealthy") end
    b.idle = {}
    self:_emit("backend-unhealthy", b, { error = b.last_check_error })
  else
    self:_emit("backend-healthy", b, {})
    self:_wake_one("retry")
  end
  self:_publish_metrics()
end

function Pool:_check(b)
  if b.checking or self.closed then return end
  b.checking = true
  local hc = self.hc
  local t0 = now()
  local status, err = client.probe(b.url, hc.path, hc.timeout, self.connect_opts)
  b.checking = false
  if self.closed then return end
  b.last_check = now()
  if status and status >= 200 and status < 300 then
    update_latency(b, now() - t0)
    b.check_ok, b.check_fail = b.check_ok + 1, 0
    b.last_check_error = nil
    if not b.healthy and b.check_ok >= hc.healthy then self:_set_health(b, true) end
  else
    b.last_check_error = err or ("HTTP " .. tostring(status))
    b.check_fail, b.check_ok = b.check_fail + 1, 0
    if b.healthy and b.check_fail >= hc.unhealthy then self:_set_health(b, false) end
  end
end

-- ---------------------------------------------------------------- stats, health, close

--- pool:stats() -> { active, idle, connecting, waiting, total, acquired, evicted,
-- backends = { [id] = { connections, idle, in_flight, connecting, failures, state,
-- circuit, latency, weight, reconnect_attempt, acquired } } }
function Pool:stats()
  local s = { active = 0, idle = 0, connecting = 0, waiting = #self.waiters, total = self.total,
    acquired = self.acquired, evicted = self.evicted, backends = {} }
  for _, b in ipairs(self.backends) do
    s.active = s.active + b.inflight
    s.idle = s.idle + #b.idle
    s.connecting = s.connecting + b.connecting
    s.backends[b.id] = { connections = b.total, idle = #b.idle, in_flight = b.inflight,
      connecting = b.connecting, failures = b.failures, state = b.healthy and "healthy" or "unhealthy",
      circuit = b.breaker:current(), latency = b.latency, weight = b.weight,
      reconnect_attempt = b.attempt, acquired = b.acquired,
      request_failures = b.request_failures, validation_failures = b.validation_failures,
      reconnect_delays = { unpack(b.delays) } }
  end
  return s
end

--- pool:health() -> { status = "healthy" | "degraded" | "unhealthy", healthy, total,
-- backends = { [id] = { healthy, circuit, last_check, last_error, latency } } }
function Pool:health()
  local h = { healthy = 0, total = #self.backends, backends = {} }
  for _, b in ipairs(self.backends) do
    local ok = b.healthy and b.breaker:current() ~= "open"
    if ok then h.healthy = h.healthy + 1 end
    h.backends[b.id] = { healthy = b.healthy, circuit = b.breaker:current(), last_check = b.last_check,
      last_error = b.last_check_error or b.last_error, latency = b.latency }
  end
  h.status = h.healthy == h.total and "healthy" or h.healthy == 0 and "unhealthy" or "degraded"
  return h
end

local CIRCUIT = { closed = 0, half_open = 1, open = 2 }

-- The /metrics lines of this worker's pools (core.pool_metrics: one text per family).
function Pool:_publish_metrics()
  if not core.pool_metrics then return end
  local fam = { {}, {}, {}, {}, {}, {} }
  local wid = core.worker_id and core.worker_id() or 0
  for _, p in pairs(pools) do
    local pl = ('worker="%d",pool="%s"'):format(wid, (p.name:gsub('[\\"\n]', "_")))
    fam[2][#fam[2] + 1] = ("edgews_pool_waiting{%s} %d\n"):format(pl, #p.waiters)
    for _, b in ipairs(p.backends) do
      local l = ('%s,backend="%s"'):format(pl, (b.id:gsub('[\\"\n]', "_")))
      fam[1][#fam[1] + 1] = ("edgews_pool_connections{%s,state=\"idle\"} %d\n"):format(l, #b.idle)
      fam[1][#fam[1] + 1] = ("edgews_pool_connections{%s,state=\"in_flight\"} %d\n"):format(l, b.inflight)
      fam[1][#fam[1] + 1] = ("edgews_pool_connections{%s,state=\"connecting\"} %d\n"):format(l, b.connecting)
      fam[3][#fam[3] + 1] = ("edgews_pool_backend_healthy{%s} %d\n"):format(l, b.healthy and 1 or 0)
      fam[4][#fam[4] + 1] = ("edgews_pool_circuit_state{%s} %d\n"):format(l, CIRCUIT[b.breaker:current()])
      fam[5][#fam[5] + 1] = ("edgews_pool_failures_total{%s} %d\n"):format(l, b.failures)
      fam[6][#fam[6] + 1] = ("edgews_pool_acquired_total{%s} %d\n"):format(l, b.acquired)
    end
  end
  for i = 1, 6 do core.pool_metrics(i - 1, concat(fam[i])) end
end

--- pool:close(): refuses new acquisitions, wakes waiters with nil, "pool closed",
-- closes idle connections (1001) and those in use when they are released.
function Pool:close()
  if self.closed then return end
  self.closed = true
  for _, t in ipairs(self.timers) do t:cancel() end
  self:_wake_all(nil, "pool closed")
  for _, b in ipairs(self.backends) do
    for _, conn in ipairs(b.idle) do self:_discard(conn, 1001, "pool closed") end
    b.idle = {}
  end
  if pools[self.name] == self then pools[self.name] = nil end
  self:_publish_metrics()
end

-- ---------------------------------------------------------------- creation

--- edgews.pool(config) -> pool. Creating a pool whose name is taken on this worker
-- (a reload runs the script again) closes the old one.
function _M.new(cfg)
  local c = check(cfg)
  local self = setmetatable({ name = c.name, max = c.max, min = c.min, max_total = c.max_total,
    acquire_timeout = c.acquire_timeout, idle_timeout = c.idle_timeout, validate = c.validate,
    lb = c.lb, hc = c.hc, backoff = c.backoff, connect_opts = c.connect,
    backends = {}, by_id = {}, waiters = {}, handlers = {}, events = {}, timers = {},
    total = 0, seq = 0, acquired = 0, evicted = 0, closed = false }, Pool)
  for _, d in ipairs(c.backends) do
    local b = { id = d.id, url = d.url, weight = d.weight, idle = {}, total = 0, inflight = 0,
      connecting = 0, failures = 0, request_failures = 0, validation_failures = 0, attempt = 0,
      next_connect = 0, delays = {}, healthy = true, check_ok = 0, check_fail = 0, acquired = 0 }
    b.breaker = breaker_mod.new(c.breaker, now, function(new)
      local ev = new == "open" and "circuit-open" or new == "closed" and "circuit-close" or "circuit-half-open"
      self:_emit(ev, b, { state = new })
    end)
    self.backends[#self.backends + 1] = b
    self.by_id[b.id] = b
  end
  local old = pools[self.name]
  if old then old:close() end
  pools[self.name] = self
  if core.in_worker then
    -- Timers start in the worker only (the main thread reads the script for its
    -- configuration and never runs it).
    self.timers[#self.timers + 1] = timers.timer(0, function() self:_maintain() end)
    self.timers[#self.timers + 1] = timers.every(c.eviction_interval, function() self:_maintain() end)
    if self.hc then
      self.timers[#self.timers + 1] = timers.every(self.hc.interval, function()
        for _, b in ipairs(self.backends) do
          timers.timer(0, function() self:_check(b) end)
        end
      end)
    end
  end
  return self
end

--- The pool of this name on this worker, or nil.
function _M.get(name)
  return pools[name or "default"]
end

return _M
