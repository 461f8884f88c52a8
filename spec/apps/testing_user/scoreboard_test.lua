-- A user's spec for scoreboard.lua, written against edgews.testing only. testing_spec
-- copies it (as scoreboard_spec.lua) with the app into a directory outside the
-- repository and runs `busted --lua=luajit` there with LUA_PATH set as the README
-- says. It exercises every part of the module against the real server.
local testing = require "edgews.testing"

local SECRET = "test-secret"

describe("the scoreboard app", function()
  local srv

  before_each(function()
    srv = assert(testing.start { app = "scoreboard.lua",
                                 env = { JWT_SECRET = SECRET, BOARD_NAME = "finals" } })
  end)

  after_each(function()
    testing.cleanup()
  end)

  local function connect(user, opts)
    opts = opts or {}
    opts.query = opts.query or { token = testing.jwt({ sub = user }, SECRET) }
    local ws = assert(testing.connect(srv:url "/live", opts))
    local welcome = assert(ws:receive_json())
    assert.are.same({ type = "welcome", user = user, board = "finals" }, welcome)
    return ws
  end

  it("starts on a free port with a temporary data directory and the environment", function()
    assert.is_true(srv.port > 0)
    assert.truthy(srv.data_dir and srv.data_dir:find("^/"))
    assert.truthy(srv:log():find("listening on 127.0.0.1:" .. srv.port, 1, true))
    connect("ada") -- BOARD_NAME came through the environment
    local status, body = testing.http(srv:http_url "/health")
    assert.are.equal(200, status)
    assert.truthy(body:find('"status":"ok"', 1, true))
  end)

  it("authenticates with the token in the query, a header or a subprotocol", function()
    connect("ada")
    connect("bob", { headers = { Authorization = "Bearer " .. testing.jwt({ sub = "bob" }, SECRET) } })
    local ws = connect("cy", { query = {},
      protocols = { "bearer." .. testing.jwt({ sub = "cy" }, SECRET), "score.v1" } })
    assert.are.equal("score.v1", ws.protocol)
  end)

  it("refuses a missing, wrongly signed or expired token with 401", function()
    local ws, err, res = testing.connect(srv:url "/live")
    assert.is_nil(ws)
    assert.are.equal(401, res.status)
    assert.truthy(err:find("^HTTP 401"))
    ws, err = testing.connect(srv:url "/live", { query = { token = testing.jwt({ sub = "eve" }, "wrong") } })
    assert.is_nil(ws)
    assert.truthy(err:find("bad signature", 1, true), err)
    ws, err = testing.connect(srv:url "/live",
      { query = { token = testing.jwt({ sub = "eve", exp = os.time() - 10 }, SECRET) } })
    assert.is_nil(ws)
    assert.truthy(err:find("expired", 1, true), err)
  end)

  it("publishes a score to every follower and logs it", function()
    local a, b = connect("ada"), connect("bob")
    for _, ws in ipairs { a, b } do
      assert(ws:send_json { type = "follow" })
      assert.are.equal("following", assert(ws:receive_json()).type)
    end
    local mark = srv:log_mark()
    assert(a:send_json { type = "score", points = 7 })
    for _, ws in ipairs { a, b } do
      local pub = assert(ws:wait_json("pub"))
      assert.are.same({ by = "ada", points = 7 }, pub.data)
      assert.are.equal(1, pub.offset)
    end
    assert.are.equal("7 by ada", srv:wait_log("score (%d+ by %w+)", 5, { since = mark }))
  end)

  it("answers an invalid message with a validation error and keeps the connection", function()
    local ws = connect("ada")
    assert(ws:send_json { type = "score", points = 101, id = "r1" })
    local reply = assert(ws:receive_json())
    assert.are.equal("validation_failed", reply.error)
    assert.are.equal("r1", reply.id)
    -- a JSON null in an optional field counts as absent
    assert(ws:send_json { type = "follow", since_offset = 0, epoch = testing.null })
    assert.are.equal("following", assert(ws:receive_json()).type)
  end)

  it("sees the server's close code", function()
    local ws = connect("ada")
    assert(ws:send_json { type = "bye" })
    local code, reason = ws:expect_close(4000)
    assert.are.equal(4000, code)
    assert.are.equal("bye", reason)
    assert.is_false(ws:is_open())
    local ok, err = ws:send("late")
    assert.is_nil(ok)
    assert.are.equal("closed", err)
  end)

  it("closes with a handshake, and says so when the code is not the expected one", function()
    local ws = connect("ada")
    assert.are.equal(4001, (ws:close(4001, "done")))
    ws = connect("bob")
    assert(ws:send_json { type = "bye" })
    local ok, err = ws:expect_close(1000)
    assert.is_nil(ok)
    assert.are.equal('expected close 1000, got close 4000 "bye"', err)
  end)

  it("keeps stored history across a restart and a SIGKILL, on the same port", function()
    local ws = connect("ada")
    assert(ws:send_json { type = "follow" })
    local following = assert(ws:receive_json())
    for points = 1, 3 do assert(ws:send_json { type = "score", points = points }) end
    local last = assert(ws:wait_json(function(m) return m.type == "pub" and m.offset == 3 end))
    local port = srv.port

    local how, code = srv:stop()
    assert.are.same({ "exited", 0 }, { how, code })
    local closed, why = ws:receive()
    assert.is_nil(closed)
    assert.are.equal("closed", why)
    assert(srv:restart())
    assert.are.equal(port, srv.port)

    ws = connect("ada")
    assert(ws:send_json { type = "follow", since_offset = 1, epoch = last.epoch })
    for offset = 2, 3 do
      local m = assert(ws:wait_json("pub"))
      assert.are.equal(offset, m.offset)
    end
    assert.is_nil(following.epoch) -- the topic had no message when it was followed

    assert.are.same({ "killed", 9 }, { srv:kill() })
    assert.is_false(srv:alive())
    assert(srv:restart())
    ws = connect("ada")
    assert(ws:send_json { type = "follow", since_offset = 0 })
    assert.are.equal(3, assert(ws:wait_json("following")).offset)
  end)

  it("serves /health and /metrics on an admin listener, reloads on SIGHUP, restarts on a new port", function()
    local admin = assert(testing.start { app = "scoreboard.lua", admin = true, data = false,
                                         env = { JWT_SECRET = SECRET } })
    assert.is_nil(admin.data_dir)
    assert.are.equal(200, (testing.http(admin:admin_url "/metrics")))
    assert.are.equal(404, (testing.http(admin:http_url "/metrics")))
    local mark = admin:log_mark()
    assert(admin:signal("HUP"))
    assert(admin:wait_log("reloading", 5, { since = mark, plain = true }))
    assert(admin:restart { new_port = true })
    assert.are.equal(200, (testing.http(admin:admin_url "/health")))
    assert(testing.connect(admin:url "/echo"))
    assert.has_error(function() srv:admin_url() end) -- srv has no admin listener
  end)

  it("waits for conditions with a timeout", function()
    local clients = {}
    for i = 1, 3 do clients[i] = connect("u" .. i) end
    local n = testing.wait_until(function()
      local _, body = testing.http(srv:http_url "/health")
      local c = tonumber(body and body:match('"connections":(%d+)'))
      return c and c >= 3 and c
    end, 5)
    assert.is_truthy(n)
    local v, err = testing.wait_until(function() return false end, 0.1)
    assert.is_nil(v)
    assert.are.equal("timeout", err)
  end)

  it("ends a dropped connection even when another server was started meanwhile", function()
    local ws = connect("ada")
    local other = assert(testing.start { app = "scoreboard.lua", env = { JWT_SECRET = SECRET } })
    assert.are_not.equal(srv.port, other.port)
    ws:drop() -- the server sees the TCP connection end (no process kept a copy of it)
    local function connections()
      local _, body = testing.http(srv:http_url "/health")
      return tonumber(body and body:match('"connections":(%d+)'))
    end
    assert.is_truthy(testing.wait_until(function() return connections() <= 1 end, 5),
      "the dropped connection is still open")
  end)

  it("echoes text and binary messages and answers the server's pings", function()
    local ws = assert(testing.connect(srv:url "/echo"))
    assert(ws:send("hello"))
    assert.are.same({ "hello", "text" }, { ws:receive() })
    local blob = ("\0\255"):rep(70000)
    assert(ws:send_binary(blob))
    local data, kind = ws:receive()
    assert.are.equal("binary", kind)
    assert.are.equal(blob, data)
    -- quiet while receiving: the server's pings are answered, so it keeps the
    -- connection (unanswered, it would close with 1001 "ping timeout")
    local seen = testing.wait_until(function()
      local none, err = ws:receive(0.1)
      assert(none == nil and err == "timeout", "expected nothing, got " .. tostring(none or err))
      return ws.pings >= 2
    end, 10)
    assert.is_true(seen)
    assert(ws:send("still here"))
    assert.are.equal("still here", (ws:receive()))
  end)

  it("reports a server that cannot start, with its log", function()
    local f = assert(io.open("broken.lua", "w"))
    f:write("local edgews = require 'edgews'\nedgews.app { path = '/x', idle_timeout = '300' }\n")
    f:close()
    local bad, err = testing.start { app = "broken.lua" }
    os.remove("broken.lua")
    assert.is_nil(bad)
    assert.truthy(err:find("exited", 1, true), err)
    assert.truthy(err:find('broken.lua:2: edgews.app: idle_timeout must be a number in [0, 86400], got string "300"',
      1, true), err)
  end)

  it("raises on misuse", function()
    assert.has_error(function() testing.start { app = "scoreboard.lua", worker = 2 } end,
      "start: unknown option 'worker' (did you mean 'workers'?)")
    assert.has_error(function() testing.connect("wss://127.0.0.1:1/") end)
    assert.has_error(function() testing.jwt("ada", SECRET) end, "jwt: claims must be a table")
  end)
end)
