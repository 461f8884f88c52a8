-- GET /metrics (Prometheus text format) and GET /health with --workers 2, checked against
-- the traffic the spec generates (spec/apps/applayer_metrics_app.lua, driven by
-- tests/clients/app_client.py): the text parses (a small parser below: HELP/TYPE comments,
-- `name{labels} value` samples, each family typed once, histogram buckets cumulative with
-- +Inf = count); messages_in_total summed over the workers covers the messages sent;
-- connections_rejected_total by reason (origin, unauthorized), auth_failures_total,
-- rate_limited_total, router_errors_total and errors_total{kind="handler"} equal what the
-- spec caused; the edgews_handler_seconds count covers the messages; edgews.stats(true)
-- agrees. /health: status, uptime (sane from the first request on), workers,
-- connections. --admin-listen moves both to the admin listener (the main port answers
-- 404 for them); edgews.configure{ metrics = false } turns /metrics off.
local helper = require "spec.helper"
local cjson = require "cjson"

local SECRET = "spec-secret"

-- ------------------------------------------------------------ Prometheus text parser

local METRIC_NAME = "[%a_:][%w_:]*"
local TYPES = { counter = true, gauge = true, histogram = true, summary = true, untyped = true }

local function parse_value(s)
  if s == "+Inf" then return math.huge end
  if s == "-Inf" then return -math.huge end
  if s == "NaN" then return 0 / 0 end
  return tonumber(s)
end

-- The family a sample belongs to (histogram samples have suffixes).
local function family_of(types, name)
  if types[name] then return name end
  local base = name:match("^(.*)_bucket$") or name:match("^(.*)_sum$") or name:match("^(.*)_count$")
  if base and (types[base] == "histogram" or types[base] == "summary") then return base end
end

-- -> { types = {name = type}, help = {name = text}, samples = {{name, labels, value}} }
-- Raises with the offending line on anything that is not valid exposition text.
local function parse_prometheus(text)
  assert(text:sub(-1) == "\n", "the text does not end with a newline")
  local m = { types = {}, help = {}, samples = {} }
  local lineno = 0
  for line in text:gmatch("([^\n]*)\n") do
    lineno = lineno + 1
    local function bad(why) error(("line %d: %s: %q"):format(lineno, why, line), 0) end
    if line == "" then
      -- blank lines are allowed
    elseif line:sub(1, 1) == "#" then
      local kind, name, rest = line:match("^# (%u+) (" .. METRIC_NAME .. ") ?(.*)$")
      if kind == "TYPE" then
        if not TYPES[rest] then bad("unknown type") end
        if m.types[name] then bad("TYPE given twice") end
        for _, s in ipairs(m.samples) do
          if s.name == name or family_of({ [name] = rest }, s.name) == name then
            bad("TYPE after samples of the family")
          end
        end
        m.types[name] = rest
      elseif kind == "HELP" then
        if m.help[name] then bad("HELP given twice") end
        m.help[name] = rest
      elseif not line:match("^# ") and line ~= "#" then
        bad("malformed comment")
      end
    else
      local name, rest = line:match("^(" .. METRIC_NAME .. ")(.*)$")
      if not name then bad("no metric name") end
      local labels = {}
      local lbl, after = rest:match("^(%b{})(.*)$")
      if lbl then
        local inner = lbl:sub(2, -2)
        local rebuilt = {}
        for k, v in inner:gmatch('([%a_][%w_]*)="([^"\\]*)"') do
          if labels[k] then bad("label given twice") end
          labels[k] = v
          rebuilt[#rebuilt + 1] = ('%s="%s"'):format(k, v)
        end
        if table.concat(rebuilt, ",") ~= inner:gsub(",$", "") then bad("malformed labels") end
        rest = after
      end
      local v, ts = rest:match("^ (%S+)( ?%-?%d*)$")
      local value = v and parse_value(v)
      if value == nil then bad("malformed value") end
      if ts ~= "" and not ts:match("^ %-?%d+$") then bad("malformed timestamp") end
      if not family_of(m.types, name) then bad("sample without a TYPE") end
      m.samples[#m.samples + 1] = { name = name, labels = labels, value = value }
    end
  end
  return m
end

-- sum of the samples named `name` whose labels include `match`
local function sum(m, name, match)
  local total, found = 0, false
  for _, s in ipairs(m.samples) do
    if s.name == name then
      local ok = true
      for k, v in pairs(match or {}) do
        if s.labels[k] ~= v then ok = false end
      end
      if ok then total, found = total + s.value, true end
    end
  end
  assert(found, "no sample " .. name .. " " .. cjson.encode(match or {}))
  return total
end

-- Histogram sanity, per worker: buckets cumulative in le order, +Inf = _count.
local function check_histogram(m, name)
  local by_worker = {}
  for _, s in ipairs(m.samples) do
    local w = s.labels.worker
    if s.name == name .. "_bucket" then
      by_worker[w] = by_worker[w] or { buckets = {} }
      table.insert(by_worker[w].buckets, { le = parse_value(s.labels.le), n = s.value })
    elseif s.name == name .. "_count" then
      by_worker[w] = by_worker[w] or { buckets = {} }
      by_worker[w].count = s.value
    elseif s.name == name .. "_sum" then
      by_worker[w] = by_worker[w] or { buckets = {} }
      by_worker[w].sum = s.value
    end
  end
  local workers = 0
  for w, h in pairs(by_worker) do
    workers = workers + 1
    assert(#h.buckets > 1, "worker " .. w .. ": no buckets")
    for i = 2, #h.buckets do
      assert(h.buckets[i].le > h.buckets[i - 1].le, "worker " .. w .. ": le not increasing")
      assert(h.buckets[i].n >= h.buckets[i - 1].n, "worker " .. w .. ": buckets not cumulative")
    end
    assert(h.buckets[#h.buckets].le == math.huge, "worker " .. w .. ": no +Inf bucket")
    assert(h.buckets[#h.buckets].n == h.count, "worker " .. w .. ": +Inf bucket ~= count")
    assert(h.sum and h.sum >= 0, "worker " .. w .. ": no _sum")
  end
  return workers
end

-- ------------------------------------------------------------------------------ specs

describe("/metrics and /health #integration #lua", function()
  local c

  setup(function() c = helper.app_client() end)
  teardown(function() helper.cleanup() end)

  local function http(port, path)
    return c:call { op = "http", url = ("http://127.0.0.1:%d%s"):format(port, path) }
  end

  describe("counters match the traffic", function()
    local srv, sent, opened = nil, 0, {}
    local n = 0

    local function token(sub, secret)
      return c:call({ op = "jwt", secret = secret or SECRET,
        claims = { sub = sub, exp = os.time() + 300 } }).token
    end

    local function open(path, headers)
      n = n + 1
      local r = c:call { op = "open", id = "m" .. n, url = srv:url(path), headers = headers }
      r.id = "m" .. n
      return r
    end

    local function send(id, msgs, replies)
      local datas = {}
      for i, m in ipairs(msgs) do datas[i] = type(m) == "table" and cjson.encode(m) or m end
      c:call { op = "send", id = id, datas = datas }
      sent = sent + #datas
      local r = c:call { op = "recv", id = id, n = replies or #datas, timeout = 3 }
      assert.are.equal(replies or #datas, #r.messages, cjson.encode(r))
      return r.json
    end

    local function stats_now(id)
      return send(id, { { type = "stats" } })[1]
    end

    it("/health is sane from the first request on (uptime never wraps)", function()
      srv = helper.start_server { app = helper.app "applayer_metrics_app.lua", workers = 2,
        args = { "--drain-timeout", "0.5" } }
      -- poll through the first whole second of the server's life
      local seen, t0 = {}, helper.now()
      repeat
        local h = http(srv.port, "/health")
        assert.are.equal(200, h.status)
        seen[#seen + 1] = h.json.uptime
        if h.json.uptime < 0 or h.json.uptime > 5 then
          helper.fail(("/health uptime %s right after start (the first second: %s)")
            :format(tostring(h.json.uptime), cjson.encode(seen)))
        end
        helper.sleep(0.05)
      until h.json.uptime >= 1 or helper.now() - t0 > 1.5
    end)

    it("generates traffic: rejections, auth failures, messages, rate limits, errors", function()
      -- 3 refused for their Origin (before auth: no token needed to be refused)
      for _, o in ipairs { "https://evil.example", "null", "https://ok.example.evil" } do
        local r = open("/m", { Origin = o, Authorization = "Bearer " .. token("x") })
        assert.are.equal(403, r.status, cjson.encode(r))
      end
      -- 2 authentication failures
      assert.are.equal(401, open("/m").status)
      assert.are.equal(401, open("/m", { Authorization = "Bearer " .. token("x", "wrong") }).status)
      -- 4 authenticated connections, 6 messages each: 5 echoes + 1 rate_limited; the
      -- first two also send an invalid JSON message and a raising route (before the limit)
      for i = 1, 4 do
        local r = open("/m", { Origin = "https://ok.example",
                               Authorization = "Bearer " .. token("u" .. i) })
        assert.are.equal(101, r.status, cjson.encode(r))
        assert.are.equal("hello", c:call({ op = "recv", id = r.id, n = 1 }).json[1].type)
        opened[#opened + 1] = r.id
        local msgs = {}
        if i <= 2 then
          msgs = { "not json", { type = "boom", id = i } }
        end
        while #msgs < 5 do msgs[#msgs + 1] = { type = "echo", i = #msgs } end
        msgs[6] = { type = "echo", over = true }
        local replies = send(r.id, msgs)
        assert.are.equal("rate_limited", replies[6].error)
        if i <= 2 then
          assert.are.equal("invalid_json", replies[1].error)
          assert.are.equal("handler_error", replies[2].error)
        end
      end
    end)

    it("GET /metrics parses as Prometheus text and the numbers match", function()
      local st = open("/stats")
      assert.are.equal(101, st.status)
      c:call { op = "recv", id = st.id, n = 1 }
      local stats = stats_now(st.id)
      local r = http(srv.port, "/metrics")
      assert.are.equal(200, r.status)
      assert.are.equal("text/plain; version=0.0.4", r.headers["content-type"])
      local ok, m = pcall(parse_prometheus, r.body)
      assert(ok, "not Prometheus text: " .. tostring(m) .. "\n" .. r.body)

      assert.are.equal(2, sum(m, "edgews_workers"))
      local up = sum(m, "edgews_uptime_seconds")
      assert.is_true(up >= 0 and up < 120, "uptime " .. up)
      assert.is_true(sum(m, "edgews_messages_in_total") >= sent,
        ("messages_in_total %d < %d sent"):format(sum(m, "edgews_messages_in_total"), sent))
      -- every message sent got one reply (plus a hello per socket)
      assert.is_true(sum(m, "edgews_messages_out_total") >= sent,
        "messages_out_total " .. sum(m, "edgews_messages_out_total"))
      assert.are.equal(3, sum(m, "edgews_connections_rejected_total", { reason = "origin" }))
      assert.are.equal(2, sum(m, "edgews_connections_rejected_total", { reason = "unauthorized" }))
      assert.are.equal(0, sum(m, "edgews_connections_rejected_total", { reason = "max_connections" }))
      assert.are.equal(2, sum(m, "edgews_auth_failures_total"))
      assert.are.equal(4, sum(m, "edgews_rate_limited_total"))
      assert.are.equal(2, sum(m, "edgews_router_errors_total"))
      assert.are.equal(2, sum(m, "edgews_router_errors_total", { code = "invalid_json" }))
      assert.are.equal(2, sum(m, "edgews_errors_total", { kind = "handler" }))
      -- both workers report every family
      for _, name in ipairs { "edgews_messages_in_total", "edgews_connections_open",
                              "edgews_auth_failures_total" } do
        for w = 0, 1 do sum(m, name, { worker = tostring(w) }) end
      end
      assert.are.equal(2, check_histogram(m, "edgews_handler_seconds"))
      assert.is_true(sum(m, "edgews_handler_seconds_count") >= sent,
        ("handler_seconds_count %d < %d messages"):format(sum(m, "edgews_handler_seconds_count"), sent))
      -- open now: the 4 /m sockets and the /stats socket (exact counts: see the gauge test)
      assert.is_true(sum(m, "edgews_connections_open") >= 5)

      -- edgews.stats(true), taken just before, agrees
      local all = stats.all
      assert.are.equal(2, all.workers)
      assert.are.equal(3, all.rejected.origin)
      assert.are.equal(2, all.rejected.unauthorized)
      assert.are.equal(2, all.auth_failures)
      assert.are.equal(4, all.rate_limited)
      assert.are.equal(2, all.router_errors)
      assert.are.equal(2, all.router_errors_by_code.invalid_json)
      assert.are.equal(2, all.handler_errors)
      local min = sum(m, "edgews_messages_in_total")
      assert.is_true(all.messages_in <= min and all.messages_in >= min - 1,
        ("stats(true).messages_in %d, /metrics %d"):format(all.messages_in, min))
      local ct = sum(m, "edgews_connections_total")
      assert.is_true(all.connections_total <= ct and all.connections_total >= ct - 1,
        ("stats(true).connections_total %d, /metrics %d"):format(all.connections_total, ct))
      -- edgews.stats(): this worker's line in /metrics
      local mine = sum(m, "edgews_messages_in_total", { worker = tostring(stats.worker) })
      assert.is_true(stats.mine.messages_in <= mine and stats.mine.messages_in >= mine - 1,
        ("stats().messages_in %d, /metrics worker %d: %d"):format(stats.mine.messages_in,
          stats.worker, mine))
    end)

    it("GET /health: status, uptime, workers, connections", function()
      local h = http(srv.port, "/health")
      assert.are.equal(200, h.status)
      assert.are.equal("application/json", h.headers["content-type"])
      assert.are.equal("ok", h.json.status)
      assert.are.equal(2, h.json.workers)
      assert.are.equal("number", type(h.json.uptime)) -- its range: the first test
      assert.is_true(h.json.uptime >= 0)
      assert.are.equal("number", type(h.json.connections)) -- exact counts: the gauge test
      assert.is_true(h.json.connections >= 5, "connections " .. tostring(h.json.connections))
      for _, id in ipairs(opened) do c:call { op = "close", id = id } end
    end)
  end)

  it("connections_open and /health connections drop as soon as refused clients hang up", function()
    -- close_timeout (5 s) is the longest a server may wait for a client that does not
    -- hang up; these clients do, right after reading the refusal
    local srv = helper.start_server { app = helper.app "applayer_metrics_app.lua", workers = 1,
      args = { "--drain-timeout", "0.5" } }
    local ws = {}
    for i = 1, 2 do
      local r = c:call { op = "open", id = "g" .. i, url = srv:url "/stats" }
      assert.are.equal(101, r.status)
      ws[i] = "g" .. i
    end
    local refused = {
      { "origin", { Origin = "https://evil.example" }, 403 },
      { "no token", {}, 401 },
      { "bad token", { Authorization = "Bearer x.y.z" }, 401 },
    }
    local function gauges()
      local h = http(srv.port, "/health").json.connections
      local m = sum(parse_prometheus(http(srv.port, "/metrics").body), "edgews_connections_open")
      return h, m
    end
    -- 2 sockets; the request asking does not count itself (issue 10, item 6)
    assert.are.same({ 2, 2 }, { gauges() })
    for _, case in ipairs(refused) do
      local r = c:call { op = "open", id = "x", url = srv:url "/m", headers = case[2] }
      assert.are.equal(case[3], r.status, case[1])
      local t0 = helper.now()
      local h, m
      local settled = helper.wait_until(function()
        h, m = gauges()
        return h == 2 and m == 2
      end, 1.5)
      assert(settled, ("%s (%d): 1.5 s after the client hung up, /health connections = %d, "
        .. "connections_open = %d; expected 2 (the 2 sockets)"):format(
          case[1], case[3], h, m))
      assert.is_true(helper.now() - t0 < 1.5)
    end
    for _, id in ipairs(ws) do c:call { op = "close", id = id } end
    assert.is_truthy(helper.wait_until(function() return gauges() == 0 end, 1.5),
      "closed WebSockets still counted: " .. tostring(gauges()))
  end)

  it("--admin-listen: /health and /metrics move to the admin port; the main port 404s them", function()
    local srv = helper.start_server { app = helper.app "applayer_metrics_app.lua", workers = 2,
      args = { "--admin-listen", "127.0.0.1:0", "--drain-timeout", "0.5" } }
    local admin = tonumber(srv:wait_log(
      "admin listener %(/health, /metrics%) on 127%.0%.0%.1:(%d+)", 5))
    assert.is_truthy(admin, "no admin listener line in the log:\n" .. srv:log())
    assert.are_not.equal(srv.port, admin)
    for _, path in ipairs { "/health", "/metrics" } do
      local r = http(srv.port, path)
      assert.are.equal(404, r.status, "main port " .. path .. ": " .. cjson.encode(r))
    end
    local h = http(admin, "/health")
    assert.are.equal(200, h.status)
    assert.are.equal("ok", h.json.status)
    assert.are.equal(2, h.json.workers)
    local m = http(admin, "/metrics")
    assert.are.equal(200, m.status)
    local ok, parsed = pcall(parse_prometheus, m.body)
    assert(ok, tostring(parsed))
    assert.are.equal(2, sum(parsed, "edgews_workers"))
    -- the admin port serves no app; the main port still does
    local via_admin = c:call { op = "open", id = "adm",
                               url = ("ws://127.0.0.1:%d/stats"):format(admin) }
    assert.are.equal(404, via_admin.status)
    local r = c:call { op = "open", id = "main", url = srv:url "/stats" }
    assert.are.equal(101, r.status)
    c:call { op = "close", id = "main" }
  end)

  it("edgews.configure{ metrics = false }: /metrics is 404, /health still answers", function()
    local srv = helper.start_server { app = helper.app "applayer_nometrics_app.lua", workers = 1,
      args = { "--drain-timeout", "0.5" } }
    assert.are.equal(404, http(srv.port, "/metrics").status)
    local h = http(srv.port, "/health")
    assert.are.equal(200, h.status)
    assert.are.equal("ok", h.json.status)
  end)
end)
