-- The pool specs' driver (spec/integration/pool_spec.lua): /ctl takes one JSON
-- command per message, runs it against this worker's pools in the handler and answers
-- JSON. BACKENDS="a=PORT,b=PORT,..." names the backends (ws://127.0.0.1:PORT/ws).
local edgews = require "edgews"
local cjson = require "cjson"

edgews.configure { handler_timeout = 20 }

local ports = {}
for id, port in (os.getenv("BACKENDS") or ""):gmatch("(%w+)=(%d+)") do ports[#ports + 1] = { id = id, port = port } end

local pools, events = {}, {}

local function backends(only, weights)
  local l = {}
  for _, b in ipairs(ports) do
    if not only or only[b.id] then
      l[#l + 1] = { id = b.id, url = ("ws://127.0.0.1:%s/ws"):format(b.port), weight = weights and weights[b.id] or 1 }
    end
  end
  return l
end

local function set(list) if not list then return nil end local s = {} for _, v in ipairs(list) do s[v] = true end return s end

local held = {} -- connections held across commands, by tag

local ops = {}

function ops.new(c)
  local cfg = c.config or {}
  cfg.name = c.name
  cfg.backends = backends(set(c.only), c.weights)
  for _, b in ipairs(c.extra or {}) do cfg.backends[#cfg.backends + 1] = b end
  local p = edgews.pool(cfg)
  pools[c.name] = p
  events[c.name] = {}
  for _, ev in ipairs { "backend-healthy", "backend-unhealthy", "circuit-open", "circuit-close", "circuit-half-open" } do
    p:on(ev, function(id) table.insert(events[c.name], ev .. " " .. id) end)
  end
  return {}
end

-- n acquire/release cycles; returns the backends chosen (counts, and per key).
function ops.cycle(c)
  local p = pools[c.name]
  local counts, per_key, ids, errors = {}, {}, {}, {}
  for i = 1, c.n do
    local key = c.keys and ("10.1." .. (i % 250) .. "." .. i) or nil
    local conn, err = p:acquire { key = key, timeout = c.timeout or 2 }
    if conn then
      counts[conn.backend] = (counts[conn.backend] or 0) + 1
      if key then per_key[key] = conn.backend end
      ids[conn.id] = true
      local failed = c.fail_every and i % c.fail_every == 0
      if c.exchange or failed then
        conn:send(failed and "x" or ("m" .. i))
        conn:receive(2)
      end
      p:release(conn, failed and "injected failure" or nil)
    else
      errors[err] = (errors[err] or 0) + 1
    end
  end
  local nids = 0
  for _ in pairs(ids) do nids = nids + 1 end
  return { counts = counts, per_key = c.keys and per_key or nil, conns = nids, errors = errors }
end

-- Holds k connections under tag (acquired with key); answers their backends and ids.
function ops.hold(c)
  local p = pools[c.name]
  held[c.tag] = held[c.tag] or {}
  local got = {}
  for _ = 1, c.k do
    local conn, err = p:acquire { timeout = c.timeout or 2, key = c.key }
    if not conn then return { error = err, got = got } end
    held[c.tag][#held[c.tag] + 1] = conn
    got[#got + 1] = { backend = conn.backend, id = conn.id }
  end
  return { got = got }
end

function ops.release(c)
  local p = pools[c.name]
  local l = held[c.tag] or {}
  local n = c.k or #l
  for _ = 1, n do
    local conn = table.remove(l, 1)
    if conn then p:release(conn) end
  end
  return { left = #l }
end

-- Starts k acquirers in order (each its own task), recording when each got a
-- connection (or its error); with hold_for, each keeps its connection that long.
local waits = {}
function ops.waiters(c)
  local p = pools[c.name]
  waits[c.tag] = {}
  for i = 1, c.k do
    edgews.timer(0.01 * i, function()
      local conn, err = p:acquire { timeout = c.timeouts and c.timeouts[i] or c.timeout }
      table.insert(waits[c.tag], { i = i, id = conn and conn.id, err = err })
      if conn then
        if c.hold_for then edgews.sleep(c.hold_for) end
        p:release(conn)
      end
    end)
  end
  return {}
end

function ops.waited(c) return { results = waits[c.tag] or {} } end

-- One request through pool:with: send msg, expect "<backend>:<msg>" back.
function ops.request(c)
  local p = pools[c.name]
  local ok, res, err = pcall(p.with, p, function(conn)
    assert(conn:send(c.msg or "hi"))
    local reply, e = conn:receive(c.timeout or 2)
    if not reply then error("request failed: " .. tostring(e), 0) end
    return reply
  end, { key = c.key, timeout = c.acquire_timeout or 1 })
  if not ok then return { error = res } end
  return { reply = res, error = err }
end

-- A request whose reply is left unread: the pool must not hand that connection on.
function ops.unread(c)
  local p = pools[c.name]
  local conn = assert(p:acquire { timeout = 2 })
  local first = conn.id
  conn:send("left behind")
  edgews.sleep(0.2) -- the reply arrives and stays unread
  p:release(conn)
  local again = assert(p:acquire { timeout = 2 })
  again:send("next")
  local reply = again:receive(2)
  p:release(again)
  return { reused = again.id == first, reply = reply }
end

function ops.stats(c)
  local s = pools[c.name]:stats()
  return { stats = s, health = pools[c.name]:health(), events = events[c.name] }
end

-- A pool created again under the same name (what a reload does) closes the old one.
function ops.replace(c)
  local old = edgews.pool { name = c.name, backends = backends(set(c.only)) }
  local held_conn = old:acquire { timeout = 2 }
  local new = edgews.pool { name = c.name, backends = backends(set(c.only)) }
  local conn, err = old:acquire { timeout = 0.1 }
  local r = { old_acquire = err, old_conn_state_before_release = held_conn and held_conn:state() }
  if held_conn then old:release(held_conn) end
  r.old_conn_state_after_release = held_conn and held_conn:state()
  r.same = require("edgews.pool").get(c.name) == new
  new:close()
  return r
end

function ops.close(c)
  pools[c.name]:close()
  return {}
end

-- A direct connection (not through a pool) to backend id: sends msg, answers the reply.
function ops.direct(c)
  for _, b in ipairs(backends()) do
    if b.id == c.id then
      local ws, err = edgews.client.connect(b.url, { timeout = 2 })
      if not ws then return { error = err } end
      ws:send(c.msg)
      local reply, e = ws:receive(2)
      ws:close()
      return { reply = reply, error = e }
    end
  end
  return { error = "no such backend" }
end

local app = edgews.app { path = "/ctl", handler_timeout = 60 }
app:on("message", function(socket, msg)
  local c = cjson.decode(msg)
  local ok, res = pcall(ops[c.op], c)
  if not ok then res = { error = tostring(res) } end
  socket:send(cjson.encode(res))
end)
return app
