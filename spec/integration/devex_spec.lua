-- Rough edges a new user hit (issue 10, items 3, 5, 6, 7 and 8), each driven through
-- the real server with edgews.testing: host names in --listen, the log lines an
-- operator reads (connections, refusals, reloads), /health and router errors in
-- /metrics, command-line mistakes, notifications without --data, and the order of
-- the open handler and pending notifications.
local helper = require "spec.helper"
package.path = helper.ROOT .. "/lua/?.lua;" .. package.path
local testing = require "edgews.testing"

local BIN = helper.BIN

-- Writes an app into a fresh directory -> its path.
local function app_file(source, name)
  local dir = testing.tmpdir()
  local path = dir .. "/" .. (name or "app.lua")
  helper.write_file(path, source)
  return path
end

local HELLO_APP = [[
local edgews = require "edgews"
local app = edgews.app { path = "/x" }
app:on("open", function(s) s:send("hi") end)
]]

local function start(o)
  o.bin = o.bin or BIN
  o.data = o.data or false
  return testing.start(o)
end

describe("--listen with a host name (issue 10, item 3) #integration", function()
  after_each(testing.cleanup)

  it("localhost is resolved at start and served", function()
    local srv = assert(start { app = app_file(HELLO_APP), workers = 1,
                               args = { "--listen", "localhost:0" } })
    assert.truthy(srv:log():find("--listen: localhost resolved to 127.0.0.1", 1, true), srv:log())
    assert.truthy(srv:log():find("listening on 127.0.0.1:" .. srv.port, 1, true), srv:log())
    local ws = assert(testing.connect(srv:url "/x"))
    assert.are.equal("hi", (ws:receive()))
  end)

  it("an IPv6 address in brackets is served and logged in brackets", function()
    local f = io.open("/proc/net/if_inet6")
    local v6 = f and f:read("*a"):find("00000000000000000000000000000001", 1, true)
    if f then f:close() end
    if not v6 then
      pending("no IPv6 loopback on this machine")
      return
    end
    local srv = assert(start { app = app_file(HELLO_APP), workers = 1, admin = true,
                               args = { "--listen", "[::1]:0", "--admin-listen", "[::1]:0" } })
    assert.truthy(srv:log():find("listening on [::1]:" .. srv.port, 1, true), srv:log())
    assert.truthy(srv:log():find("admin listener (/health, /metrics) on [::1]:" .. srv.admin_port, 1, true),
      srv:log())
    assert.are.equal(200, (testing.http(("http://[::1]:%d/health"):format(srv.admin_port))))
    local ws = assert(testing.connect(("ws://[::1]:%d/x"):format(srv.port)))
    assert.are.equal("hi", (ws:receive()))
  end)

  it("a name that does not resolve stops the start with one clear line", function()
    local srv, err = start { app = app_file(HELLO_APP), workers = 1,
                             args = { "--listen", "no-such-host.invalid:0" } }
    assert.is_nil(srv)
    assert.truthy(err:find("cannot resolve the host 'no-such-host.invalid' of --listen: ", 1, true), err)
    assert.is_nil(err:find("failed to start", 1, true), err)
  end)
end)

describe("the log an operator reads (issue 10, item 5) #integration", function()
  after_each(testing.cleanup)

  local function count(s, plain)
    local n, i = 0, 1
    while true do
      local a, b = s:find(plain, i, true)
      if not a then return n end
      n, i = n + 1, b + 1
    end
  end

  it("at debug, a connection's open and close are one line each", function()
    local srv = assert(start { app = app_file(HELLO_APP), workers = 1, log_level = "debug" })
    local ws = assert(testing.connect(srv:url "/x"))
    assert.are.equal("hi", (ws:receive()))
    assert.are.equal(1000, (ws:close(1000, "bye")))
    local id = assert(srv:wait_log("conn (%d+): opened /x from 127%.0%.0%.1:%d+"))
    assert(srv:wait_log("conn " .. id .. ": closed 1000 \"bye\" after %d+%.%d s %(/x%)"))
  end)

  it("refused connections are logged at info with the cause, a burst as a count", function()
    local srv = assert(start { app = app_file(HELLO_APP), workers = 1 })
    local N = 40
    for _ = 1, N do assert.are.equal(404, (testing.http(srv:http_url "/nope"))) end
    -- every refusal is either a line of its own or in a count
    local logged, counted
    assert(testing.wait_until(function()
      local log = srv:log()
      logged = count(log, "refused a connection from 127.0.0.1 to /nope: 404 not found")
      counted = 0
      for n in log:gmatch("refused (%d+) more connections? in the last") do counted = counted + tonumber(n) end
      return logged + counted == N
    end, 5), srv:log())
    assert.is_true(counted > 0, srv:log())
    assert.is_true(logged < N, srv:log())
  end)

  it("a handler that fails on every message logs a few lines a second and a count", function()
    local srv = assert(start { app = app_file([[
local edgews = require "edgews"
local app = edgews.app { path = "/boom" }
app:route("boom", function() error("boom " .. 42) end)
]]), workers = 1 })
    local ws = assert(testing.connect(srv:url "/boom"))
    local N = 40
    for _ = 1, N do
      assert(ws:send_json { type = "boom" })
      assert.are.equal("handler_error", assert(ws:receive_json()).error)
    end
    local logged, counted
    assert(testing.wait_until(function()
      local log = srv:log()
      logged = count(log, "route handler error (conn ")
      counted = 0
      for n in log:gmatch("(%d+) more handler errors? in the last") do counted = counted + tonumber(n) end
      return logged + counted == N
    end, 5), srv:log())
    assert.is_true(counted > 0, srv:log())
    assert.truthy(srv:log():find(":3: boom 42", 1, true), srv:log())
  end)

  it("a reload says how it went, once: reloaded in N workers", function()
    local path = app_file(HELLO_APP)
    local srv = assert(start { app = path, workers = 2, watch = false })
    local mark = srv:log_mark()
    assert(srv:signal("HUP"))
    assert(srv:wait_log("reloaded " .. path .. " (SIGHUP): 2 workers run the new version",
                        5, { plain = true, since = mark }))
    local one = assert(start { app = path, workers = 1, watch = false })
    assert(one:signal("HUP"))
    assert(one:wait_log("reloaded " .. path .. " (SIGHUP): 1 worker runs the new version", 5, { plain = true }))
  end)

  it("a failed reload is one ERROR line, cause and file:line first; the old version runs", function()
    local path = app_file(HELLO_APP)
    local srv = assert(start { app = path, workers = 2, watch = false })
    helper.write_file(path, 'local edgews = require "edgews"\nlocal app = edgews.app { path = "/x" }\n'
      .. 'local t = nil\nt.x = 1\n')
    local mark = srv:log_mark()
    assert(srv:signal("HUP"))
    assert(srv:wait_log("reload failed, the old version keeps running: " .. path
      .. ":4: attempt to index local 't' (a nil value)", 5, { plain = true, since = mark }))
    assert.are.equal(1, count(srv:log():sub(mark), "ERROR"), srv:log())
    assert.is_nil(srv:log():find("stack traceback", 1, true), srv:log())
    local ws = assert(testing.connect(srv:url "/x"))
    assert.are.equal("hi", (ws:receive()))
  end)

  it("a reload that fails in some workers only says so once, with the count", function()
    local dir = testing.tmpdir()
    local path = dir .. "/app.lua"
    helper.write_file(path, HELLO_APP .. ([[
if edgews.worker_id() == 1 and io.open(%q) then error("worker 1 refuses this version") end
]]):format(dir .. "/fail"))
    local srv = assert(start { app = path, workers = 2, watch = false })
    helper.write_file(dir .. "/fail", "")
    local mark = srv:log_mark()
    assert(srv:signal("HUP"))
    assert(srv:wait_log("reload failed in 1 of 2 workers, which keep the old version: " .. path
      .. ":4: worker 1 refuses this version", 5, { plain = true, since = mark }))
    assert.are.equal(1, count(srv:log():sub(mark), "ERROR"), srv:log())
  end)

  it("a script that fails at start is one line with file:line, the traceback at debug", function()
    local path = app_file('local edgews = require "edgews"\n'
      .. 'edgews.app { path = "/x", idle_timeout = "300" }\n')
    local srv, err = start { app = path, workers = 2 }
    assert.is_nil(srv)
    assert.truthy(err:find(path .. ":2: edgews.app: idle_timeout must be a number", 1, true), err)
    assert.are.equal(1, count(err, "ERROR"), err)
    assert.is_nil(err:find("stack traceback", 1, true), err)
    srv, err = start { app = path, workers = 2, log_level = "debug" }
    assert.is_nil(srv)
    assert.truthy(err:find("stack traceback", 1, true), err)
  end)

  it("an error raised inside the edgews modules names the user's line too", function()
    local path = app_file('local edgews = require "edgews"\nlocal app = edgews.app { path = "/x" }\n'
      .. 'app:route(5, function() end)\n')
    local srv, err = start { app = path, workers = 1 }
    assert.is_nil(srv)
    assert.truthy(err:find("router:route: type must be a non-empty string, got 5 (called from "
      .. path .. ":3)", 1, true), err)
  end)
end)

describe("/health and router errors in /metrics (issue 10, item 6) #integration", function()
  after_each(testing.cleanup)

  local ROUTED_APP = [[
local edgews = require "edgews"
local app = edgews.app { path = "/r" }
app:route("ping", function(s) s:send('{"type":"pong"}') end,
  { validate = { n = { type = "integer", required = true } } })
]]

  -- sum of the samples of a metric whose labels include `labels`
  local function metric(body, name, labels)
    local total = 0
    for line in body:gmatch("[^\n]+") do
      local n, lab, v = line:match("^([%w_]+){([^}]*)} (%S+)$")
      if n == name then
        local ok = true
        for k, want in pairs(labels or {}) do
          if not lab:find(k .. '="' .. want .. '"', 1, true) then ok = false end
        end
        if ok then total = total + tonumber(v) end
      end
    end
    return total
  end

  it("/health and connections_open do not count the request asking", function()
    local srv = assert(start { app = app_file(ROUTED_APP), workers = 2 })
    local cjson = require "cjson"
    -- (an earlier request's connection may linger until the client's FIN is read:
    -- poll until the counts settle; they never include the request asking)
    local function settles(want)
      local h, m
      local ok = testing.wait_until(function()
        local status, body = testing.http(srv:http_url "/health")
        assert.are.equal(200, status)
        h = cjson.decode(body).connections
        m = metric(select(2, testing.http(srv:http_url "/metrics")), "edgews_connections_open")
        return h == want and m == want
      end, 5)
      return ok, ("/health %s, /metrics %s, want %d"):format(tostring(h), tostring(m), want)
    end
    assert(settles(0))
    local ws = assert(testing.connect(srv:url "/r"))
    assert(ws:send_json { type = "ping", n = 1 })
    assert(ws:wait_json("pong"))
    assert(settles(1))
  end)

  it("every router error is counted, by code", function()
    local srv = assert(start { app = app_file(ROUTED_APP), workers = 1 })
    local ws = assert(testing.connect(srv:url "/r"))
    local sends = {
      { '{"type":"nope"}', "unknown_type" }, { '{"type":"nope"}', "unknown_type" },
      { '{"n":1}', "missing_type" }, { '{"type":"ping"}', "validation_failed" },
      { "not json", "invalid_json" }, { "[1]", "invalid_message" },
    }
    for _, s in ipairs(sends) do
      assert(ws:send(s[1]))
      assert.are.equal(s[2], assert(ws:receive_json()).error)
    end
    local _, body = testing.http(srv:http_url "/metrics")
    assert.truthy(body:find("# TYPE edgews_router_errors_total counter", 1, true), body)
    assert.are.equal(6, metric(body, "edgews_router_errors_total"))
    local want = { unknown_type = 2, missing_type = 1, validation_failed = 1, invalid_json = 1,
                   invalid_message = 1, message_too_large = 0, binary_not_supported = 0 }
    for code, n in pairs(want) do
      assert.are.equal(n, metric(body, "edgews_router_errors_total", { worker = "0", code = code }), code)
    end
  end)
end)

describe("mistakes said at once (issue 10, item 7) #integration", function()
  after_each(function()
    testing.cleanup()
    helper.cleanup()
  end)

  local function lines(s)
    local t = {}
    for l in (s or ""):gmatch("[^\n]+") do t[#t + 1] = l end
    return t
  end

  it("an unknown flag is one line naming it, the closest flag and --help; exit status 2", function()
    local app = app_file(HELLO_APP)
    local _, rc, out, err = helper.run({ BIN, "--worker", "2", app }, 10)
    assert.are.equal(2, rc)
    assert.are.equal("", out)
    assert.are.same({ "edgews-lua: unknown option '--worker' (did you mean --workers? see edgews-lua --help)" },
      lines(err))
    _, rc, out, err = helper.run({ BIN, "--frobnicate", app }, 10)
    assert.are.equal(2, rc)
    assert.are.same({ "edgews-lua: unknown option '--frobnicate' (see edgews-lua --help)" }, lines(err))
    _, rc, out, err = helper.run({ BIN, app, "--listen" }, 10)
    assert.are.equal(2, rc)
    assert.are.same({ "edgews-lua: --listen needs a value (see edgews-lua --help)" }, lines(err))
  end)

  it("notifications = true without --data is said once when the app loads", function()
    local path = app_file([[
local edgews = require "edgews"
local app = edgews.app { path = "/n", notifications = true }
]])
    local srv = assert(start { app = path, workers = 2 })
    local want = path .. ":2: app /n has notifications = true, but the server has no data directory"
    assert(srv:wait_log(want, 5, { plain = true }))
    local mark = srv:log_mark()
    assert(srv:signal("HUP"))
    assert(srv:wait_log("reloaded ", 5, { plain = true, since = mark }))
    assert(srv:wait_log(want, 5, { plain = true, since = mark }))
    local n = 0
    for _ in srv:log():gmatch("WARN [^\n]*notifications = true") do n = n + 1 end
    assert.are.equal(2, n, srv:log()) -- once at start, once at the reload: not per worker
    srv:stop()
    srv = assert(start { app = path, workers = 2, data = true })
    assert.is_nil(srv:log():find("notifications = true", 1, true), srv:log())
  end)
end)

describe("the open handler's welcome before notifications (issue 10, item 8) #integration", function()
  after_each(testing.cleanup)

  local SECRET = "s3cret"
  local NOTIFY_APP = [[
local edgews = require "edgews"
local cjson = require "cjson"
local app = edgews.app { path = "/n", notifications = true,
                         auth = edgews.auth.jwt { secret = os.getenv("JWT_SECRET") } }
app:on("open", function(s)
  if s.ctx.user.id == "self" then  -- stored (and pushed live) while this handler runs
    assert(edgews.notifications.store("self", { text = "live" }))
  end
  s:send(cjson.encode { type = "welcome" })
end)
app:route("notify", function(s, msg)
  assert(edgews.notifications.store(msg.to, { text = msg.text }))
  s:send(cjson.encode { type = "stored" })
end)
]]
  local MSG_APP = [[
local edgews = require "edgews"
local cjson = require "cjson"
local app = edgews.app { path = "/m", notifications = true,
                         auth = edgews.auth.jwt { secret = os.getenv("JWT_SECRET"), mode = "message" } }
app:route("notify", function(s, msg)
  assert(edgews.notifications.store(msg.to, { text = msg.text }))
  s:send(cjson.encode { type = "stored" })
end)
]]

  local function connect(srv, user)
    return assert(testing.connect(srv:url "/n", { query = { token = testing.jwt({ sub = user }, SECRET) } }))
  end

  it("pending notifications come after the open handler's first message", function()
    local srv = assert(start { app = app_file(NOTIFY_APP), data = true, workers = 2,
                               env = { JWT_SECRET = SECRET } })
    local ada = connect(srv, "ada")
    assert.are.equal("welcome", assert(ada:receive_json()).type)
    for i = 1, 3 do
      assert(ada:send_json { type = "notify", to = "bob", text = "n" .. i })
      assert(ada:wait_json("stored"))
    end
    local bob = connect(srv, "bob")
    assert.are.equal("welcome", assert(bob:receive_json()).type)
    for i = 1, 3 do
      local m = assert(bob:receive_json())
      assert.are.equal("notification", m.type)
      assert.are.equal("n" .. i, m.data.text)
    end
  end)

  it("a notification pushed while the open handler runs waits for it too, and comes once", function()
    local srv = assert(start { app = app_file(NOTIFY_APP), data = true, workers = 1,
                               env = { JWT_SECRET = SECRET } })
    local ws = connect(srv, "self")
    assert.are.equal("welcome", assert(ws:receive_json()).type)
    local m = assert(ws:receive_json())
    assert.are.equal("notification", m.type)
    assert.are.equal("live", m.data.text)
    local more = ws:receive(0.3)
    assert.is_nil(more, "a second copy: " .. tostring(more))
    -- and it was marked delivered: a new connection does not get it again
    ws:close()
    local again = connect(srv, "self")
    assert.are.equal("welcome", assert(again:receive_json()).type)
    m = assert(again:receive_json())
    assert.are.equal("live", m.data.text) -- the one its own open handler stored now
    assert.is_nil((again:receive(0.3)))
  end)

  it("with first-message auth, auth:ok comes before the pending notifications", function()
    local srv = assert(start { app = app_file(MSG_APP), data = true, workers = 1,
                               env = { JWT_SECRET = SECRET } })
    local ada = assert(testing.connect(srv:url "/m"))
    assert(ada:send_json { type = "auth", token = testing.jwt({ sub = "ada" }, SECRET) })
    assert.are.equal("auth:ok", assert(ada:receive_json()).type)
    assert(ada:send_json { type = "notify", to = "bob", text = "hi" })
    assert(ada:wait_json("stored"))
    local bob = assert(testing.connect(srv:url "/m"))
    assert(bob:send_json { type = "auth", token = testing.jwt({ sub = "bob" }, SECRET) })
    assert.are.equal("auth:ok", assert(bob:receive_json()).type)
    assert.are.equal("hi", assert(bob:receive_json()).data.text)
  end)
end)

describe("edgews.clock(), a clock that advances while a handler runs (issue 10, item 4) #integration", function()
  after_each(testing.cleanup)

  it("advances within one run while edgews.now() stands still", function()
    local srv = assert(start { app = app_file([[
local edgews = require "edgews"
local cjson = require "cjson"
local app = edgews.app { path = "/c" }
app:route("clock", function(s)
  local n0, c0 = edgews.now(), edgews.clock()
  local c1, spins = c0, 0
  while c1 == c0 and spins < 1e7 do c1, spins = edgews.clock(), spins + 1 end
  s:send(cjson.encode { type = "clock", advanced = c1 > c0, now_still = edgews.now() == n0,
                        number = type(c0) == "number" })
end)
]]), workers = 1 })
    local ws = assert(testing.connect(srv:url "/c"))
    assert(ws:send_json { type = "clock" })
    assert.are.same({ type = "clock", advanced = true, now_still = true, number = true },
      assert(ws:receive_json()))
  end)
end)
