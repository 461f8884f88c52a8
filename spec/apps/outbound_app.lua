-- The outbound client's conformance app (spec/integration/outbound_client_spec.lua):
-- at start it runs every scenario against the reference servers named in the
-- environment (OUTBOUND_PY, OUTBOUND_RAW, OUTBOUND_NODE, OUTBOUND_TLS: ports;
-- OUTBOUND_CA: the test CA) and logs one line per scenario:
--   OUTBOUND <name> <json result>
-- /run is a WebSocket route that runs one scenario on demand from a handler
-- (message: the scenario's name) and answers its JSON.
local edgews = require "edgews"
local cjson = require "cjson"

local PY, RAW, NODE, TLS = os.getenv("OUTBOUND_PY"), os.getenv("OUTBOUND_RAW"),
  os.getenv("OUTBOUND_NODE"), os.getenv("OUTBOUND_TLS")
local CA = os.getenv("OUTBOUND_CA")

local function url(port, path) return ("ws://127.0.0.1:%s%s"):format(port, path) end

local function echo_pair(u, opts)
  local ws, err = edgews.client.connect(u, opts)
  if not ws then return { err = err } end
  local r = {}
  assert(ws:send("hello"))
  r.text, r.text_bin = ws:receive(5)
  assert(ws:send("\0\1\2\255", true))
  local b, bb = ws:receive(5)
  r.bin_ok, r.bin_bin = b == "\0\1\2\255", bb
  local big = ("0123456789abcdef"):rep(12800) -- 200 KiB: a 64-bit length
  assert(ws:send(big))
  local got = ws:receive(5)
  r.big_ok = got == big
  assert(ws:send("__info__"))
  local info = ws:receive(5)
  r.info = info and cjson.decode(info)
  r.protocol = ws.protocol
  r.closed = ws:close(1000, "done")
  r.after_close = select(2, ws:send("x"))
  return r
end

local scenarios = {}

scenarios.py_echo = function()
  return echo_pair(url(PY, "/echo"), { protocols = { "nope", "chat.v2" }, headers = { ["X-Test"] = "42" } })
end
scenarios.node_echo = function()
  return echo_pair(url(NODE, "/echo"), { protocols = "chat.v2", headers = { ["X-Test"] = "43" } })
end
scenarios.py_deflate = function()
  return echo_pair(url(PY, "/echo"), { compression = true })
end
scenarios.node_deflate = function()
  return echo_pair(url(NODE, "/echo"), { compression = { threshold = 0 } })
end
scenarios.py_fragments = function()
  local ws, err = edgews.client.connect(url(PY, "/fragments"))
  if not ws then return { err = err } end
  local m, bin = ws:receive(5)
  ws:close()
  return { msg = m, bin = bin }
end
scenarios.node_fragments = function()
  local ws, err = edgews.client.connect(url(NODE, "/fragments"))
  if not ws then return { err = err } end
  local m, bin = ws:receive(5)
  ws:close()
  return { hex = m and (m:gsub(".", function(c) return ("%02x"):format(c:byte()) end)), bin = bin }
end
local function bad_utf8(u)
  local ws, err = edgews.client.connect(u)
  if not ws then return { err = err } end
  local m, e = ws:receive(5)
  local code, reason = ws:close_status()
  return { msg = m, err = e, code = code, reason = reason }
end
scenarios.raw_badutf8 = function() return bad_utf8(url(RAW, "/badutf8")) end
scenarios.node_badutf8 = function() return bad_utf8(url(NODE, "/badutf8")) end
local function server_close(u)
  local ws, err = edgews.client.connect(u)
  if not ws then return { err = err } end
  local m, e = ws:receive(5)
  local code, reason = ws:close_status()
  return { msg = m, err = e, code = code, reason = reason, state = ws:state() }
end
scenarios.py_close = function() return server_close(url(PY, "/close?code=4001&reason=bye")) end
scenarios.node_close = function() return server_close(url(NODE, "/close?code=4002&reason=later")) end
scenarios.client_close = function()
  local ws, err = edgews.client.connect(url(NODE, "/echo"))
  if not ws then return { err = err } end
  local ok = ws:close(4003, "client done")
  local m, e = ws:receive(5)
  local code, reason = ws:close_status()
  return { ok = ok, err = e, code = code, reason = reason }
end
scenarios.raw_mask = function()
  local ws, err = edgews.client.connect(url(RAW, "/mask"))
  if not ws then return { err = err } end
  for _ = 1, 20 do assert(ws:send("same payload")) end
  local m = ws:receive(5)
  ws:close(1000)
  return m and cjson.decode(m) or { err = "no answer" }
end
scenarios.max_message = function()
  local ws, err = edgews.client.connect(url(PY, "/big?size=5000"), { max_message_size = 1000 })
  if not ws then return { err = err } end
  local m, e = ws:receive(5)
  local code, reason = ws:close_status()
  return { msg = m, err = e, code = code, reason = reason }
end
scenarios.max_message_ok = function()
  local ws, err = edgews.client.connect(url(PY, "/big?size=5000"), { max_message_size = 5000 })
  if not ws then return { err = err } end
  local m = ws:receive(5)
  ws:close()
  return { len = m and #m }
end
scenarios.receive_timeout = function()
  local ws, err = edgews.client.connect(url(PY, "/echo"))
  if not ws then return { err = err } end
  local t0 = edgews.now()
  local m, e = ws:receive(0.2)
  local waited = edgews.now() - t0
  assert(ws:send("still there"))
  local m2 = ws:receive(5)
  ws:close()
  return { msg = m, err = e, waited = waited, after = m2 }
end
scenarios.ping = function()
  local ws, err = edgews.client.connect(url(PY, "/echo"), { ping_interval = 0.1, ping_timeout = 2 })
  if not ws then return { err = err } end
  local ok = ws:ping("p")
  edgews.sleep(0.5) -- the server pings us too (--ping-interval); both sides answer
  assert(ws:send("alive"))
  local m = ws:receive(5)
  ws:close()
  return { ping = ok, msg = m, state = ws:state() }
end
scenarios.ping_timeout = function()
  local ws, err = edgews.client.connect(url(RAW, "/deaf"), { ping_interval = 0.1, ping_timeout = 0.3 })
  if not ws then return { err = err } end
  local t0 = edgews.now()
  local m, e = ws:receive(5)
  local code, reason = ws:close_status()
  return { msg = m, err = e, code = code, reason = reason, waited = edgews.now() - t0 }
end
scenarios.probe = function()
  local r = {}
  r.plain = { edgews.client.probe(url(RAW, "/x"), "/404", 2) }
  r.tls = { edgews.client.probe(("wss://localhost:%s/echo"):format(TLS), "/health", 2, { ca_file = CA }) }
  r.tls_untrusted = { edgews.client.probe(("wss://localhost:%s/echo"):format(TLS), "/health", 2) }
  r.refused = { edgews.client.probe("ws://127.0.0.1:1/", "/health", 2) }
  return r
end
scenarios.refused = function()
  local ws, err = edgews.client.connect("ws://127.0.0.1:1/x", { timeout = 2 })
  return { ws = ws ~= nil, err = err }
end
scenarios.not_found = function()
  local ws, err = edgews.client.connect(url(RAW, "/404"), { timeout = 2 })
  return { ws = ws ~= nil, err = err }
end
scenarios.bad_accept = function()
  local ws, err = edgews.client.connect(url(RAW, "/badaccept"), { timeout = 2 })
  return { ws = ws ~= nil, err = err }
end
scenarios.bad_protocol = function()
  local ws, err = edgews.client.connect(url(RAW, "/proto"), { timeout = 2, protocols = { "chat.v1" } })
  return { ws = ws ~= nil, err = err }
end
scenarios.connect_timeout = function()
  local t0 = edgews.now()
  local ws, err = edgews.client.connect(url(RAW, "/silent"), { timeout = 0.3 })
  return { ws = ws ~= nil, err = err, waited = edgews.now() - t0 }
end
scenarios.bad_url = function()
  local ws, err = edgews.client.connect("http://example.com/")
  return { ws = ws ~= nil, err = err }
end
scenarios.wss_ca = function()
  return echo_pair(("wss://localhost:%s/echo"):format(TLS), { ca_file = CA })
end
scenarios.wss_system_store = function()
  local ws, err = edgews.client.connect(("wss://localhost:%s/echo"):format(TLS), { timeout = 3 })
  return { ws = ws ~= nil, err = err }
end
scenarios.wss_wrong_name = function()
  local ws, err = edgews.client.connect(("wss://127.0.0.1:%s/echo"):format(TLS), { timeout = 3, ca_file = CA })
  return { ws = ws ~= nil, err = err }
end
scenarios.wss_noverify = function()
  return echo_pair(("wss://localhost:%s/echo"):format(TLS), { verify = false })
end
scenarios.on_message = function()
  local ws, err = edgews.client.connect(url(NODE, "/echo"))
  if not ws then return { err = err } end
  local got, closed = {}, nil
  ws:on("message", function(m) got[#got + 1] = m end)
  ws:on("close", function(code) closed = code end)
  for i = 1, 3 do ws:send("m" .. i) end
  for _ = 1, 100 do
    if #got == 3 then break end
    edgews.sleep(0.02)
  end
  ws:close(1000)
  for _ = 1, 100 do
    if closed then break end
    edgews.sleep(0.02)
  end
  return { got = got, closed = closed }
end

scenarios.burst_close = function()
  local ws, err = edgews.client.connect(url(NODE, "/burst-close"))
  if not ws then return { err = err } end
  edgews.sleep(0.3) -- everything has arrived, the session is over
  local got = {}
  for _ = 1, 4 do got[#got + 1] = ws:receive(1) or "nil" end
  local _, e = ws:receive(1)
  local code, reason = ws:close_status()
  return { got = got, err = e, code = code, reason = reason }
end
scenarios.flood = function()
  local ws, err = edgews.client.connect(url(NODE, "/flood"))
  if not ws then return { err = err } end
  edgews.sleep(0.5) -- 1,000 messages arrive meanwhile: past 256 the connection pauses
  local n, in_order = 0, true
  for i = 1, 1000 do
    local m = ws:receive(5)
    if m ~= "f" .. i then in_order = false break end
    n = n + 1
  end
  assert(ws:send("after"))
  local last = ws:receive(5)
  ws:close()
  return { n = n, in_order = in_order, last = last }
end
scenarios.collected = function()
  do
    local ws = edgews.client.connect(url(NODE, "/echo?gc"))
    if not ws then return { err = "no connection" } end
  end
  collectgarbage()
  collectgarbage()
  return { done = true }
end

local order = {}
for name in pairs(scenarios) do order[#order + 1] = name end
table.sort(order)

local function run(name)
  local ok, res = pcall(scenarios[name])
  if not ok then res = { error = tostring(res) } end
  return res
end

if PY and require("edgews.core").in_worker then
  -- At load time nothing can wait: connect raises (misuse), it does not connect.
  local ok, err = pcall(edgews.client.connect, url(PY, "/echo"))
  edgews.log.info("OUTBOUND load_time " .. cjson.encode { ok = ok, err = tostring(err) })
end

if PY and edgews.worker_id() == 0 then
  edgews.timer(0, function()
    for _, name in ipairs(order) do
      local res = run(name)
      edgews.log.info("OUTBOUND " .. name .. " " .. cjson.encode(res))
    end
    edgews.log.info("OUTBOUND-DONE")
  end)
end

local app = edgews.app { path = "/run" }
app:on("message", function(socket, msg)
  if not scenarios[msg] then return socket:send(cjson.encode { error = "no such scenario" }) end
  socket:send(cjson.encode(run(msg)))
end)
return app
