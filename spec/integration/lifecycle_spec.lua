-- Process lifecycle: graceful shutdown on SIGTERM/SIGINT, a raising Lua handler,
-- hot reload (file edits and SIGHUP), log line format.
-- RFC 6455 sections covered:
--   5.5.1          close frames initiated by the server, answered by the client
--   7.1.1, 7.1.2   closing the connection: server's close frame, the client's reply,
--                  then the server closes TCP (or gives up at the drain timeout when
--                  the client never replies)
--   7.4.1          status codes 1001 (going away: shutdown) and 1011 (unexpected
--                  condition: handler error)
-- Hot reload, handler isolation and logging are edgews-lua features (no RFC section).
local helper = require "spec.helper"
local cjson = require "cjson"

-- Starts a client that stays connected until the server closes; returns once the
-- client printed {"event":"connected"}.
local function spawn_hold(kind, url, secs)
  local argv
  if kind == "node" then
    argv = helper.node_argv("hold", "--url", url, "--seconds", secs, "--expect-code", "1001")
  elseif kind == "raw" then
    argv = helper.raw_argv("--url", url, "--case", "hold_silent", "--hold-seconds", secs)
  else
    argv = helper.py_argv("hold", "--url", url, "--seconds", secs, "--expect-code", "1001")
  end
  local p = helper.spawn(argv)
  local ev, err = p:read_json(5)
  assert(ev and ev.event == "connected", kind .. " client did not connect: "
    .. (ev and cjson.encode(ev) or tostring(err)) .. " " .. p:stderr())
  return p
end

-- Waits for a client to end; returns finished?, its last JSON line, stdout.
local function finish_json(p, timeout)
  local done, out = p:finish(timeout)
  local last
  for line in out:gmatch("[^\n]+") do
    if line:sub(1, 1) == "{" then last = cjson.decode(line) end
  end
  return done, last or {}, out
end

-- A `sequence --step` client: one message per step, replies read back.
local Seq = {}
Seq.__index = Seq

local function sequence(url, messages)
  local p = helper.spawn(helper.py_argv("sequence", "--url", url, "--send", messages, "--step"),
    { stdin = "pipe" })
  local ev, err = p:read_json(5)
  assert(ev and ev.event == "connected", "sequence client did not connect: "
    .. (ev and cjson.encode(ev) or tostring(err)) .. " " .. p:stderr())
  return setmetatable({ p = p }, Seq)
end

-- The reply to the next message (the first message is sent on connect).
function Seq:reply(step)
  if step then self.p:write("\n") end
  local ev, err = self.p:read_json(5)
  assert(ev, "no reply from the sequence client: " .. tostring(err) .. " " .. self.p:stderr())
  assert(ev.event == "reply", "connection closed instead of a reply: " .. cjson.encode(ev))
  return ev.reply
end

function Seq:finish()
  self.p:close_stdin()
  local done, res = finish_json(self.p, 10)
  assert(done, "sequence client did not finish")
  return res, self.p.code
end

-- One message on a fresh connection; returns the reply (or nil).
local function probe(url)
  local res = helper.run(helper.py_argv("sequence", "--url", url, "--send", "probe"), 10)
  return res.replies and res.replies[1]
end

-- Waits until a fresh connection is answered by the given version.
local function wait_version(url, version, timeout)
  return helper.wait_until(function()
    local r = probe(url)
    if r and r:sub(1, #version + 1) == version .. ":" then return r end
  end, timeout or 20, 0.1)
end

local function line_of(text, marker)
  local n = 0
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    if line:find(marker, 1, true) then return n end
  end
  error("marker not found: " .. marker)
end

describe("graceful shutdown #integration", function()
  after_each(function() helper.cleanup() end)

  local function shutdown_with(sig, workers)
    local srv = helper.start_server { app = helper.app "echo_app.lua", workers = workers,
                                      args = { "--drain-timeout", "5" } }
    local url = srv:url "/echo"
    local clients = {}
    for _ = 1, 3 do clients[#clients + 1] = spawn_hold("py", url, "20") end
    if helper.node_ws_available() then clients[#clients + 1] = spawn_hold("node", url, "20") end
    local t0 = helper.now()
    assert.is_true(srv:signal(sig))
    for _, p in ipairs(clients) do
      local done, res, out = finish_json(p, 10)
      assert.is_true(done, "client still running 10 s after SIG" .. sig)
      assert.are.equal(1001, res.close_code, out .. p:stderr())
      assert.are.equal(0, p.code, out .. p:stderr())
    end
    local exited, how, code = srv:wait(10)
    assert.is_true(exited, "server still running 10 s after SIG" .. sig .. "\n" .. srv:log())
    assert.are.equal("exited", how, srv:log())
    assert.are.equal(0, code, srv:log())
    -- every client answered the close frame, so there is nothing to wait for
    local elapsed = helper.now() - t0
    assert.is_true(elapsed < 4.5, ("exit took %.2f s with a 5 s drain timeout although"
      .. " every client completed the close handshake"):format(elapsed))
  end

  it("SIGTERM: every client gets close 1001, then the process exits 0", function()
    shutdown_with("TERM", 1)
  end)

  it("SIGINT with --workers 2: every client gets close 1001, then exit 0", function()
    shutdown_with("INT", 2)
  end)

  it("SIGTERM without clients: exits 0 promptly", function()
    local srv = helper.start_server { app = helper.app "echo_app.lua",
                                      args = { "--drain-timeout", "5" } }
    local t0 = helper.now()
    srv:signal("TERM")
    local exited, how, code = srv:wait(5)
    assert.is_true(exited, srv:log())
    assert.are.equal("exited", how)
    assert.are.equal(0, code, srv:log())
    assert.is_true(helper.now() - t0 < 3)
  end)

  it("a client that never answers the close frame is dropped at the drain timeout", function()
    local srv = helper.start_server { app = helper.app "echo_app.lua",
                                      args = { "--drain-timeout", "1" } }
    local url = srv:url "/echo"
    local silent = spawn_hold("raw", url, "8")
    local polite = spawn_hold("py", url, "8")
    local t0 = helper.now()
    srv:signal("TERM")
    local exited, how, code = srv:wait(6)
    local elapsed = helper.now() - t0
    assert.is_true(exited, "server still running 6 s after SIGTERM with --drain-timeout 1\n"
      .. srv:log())
    assert.are.equal("exited", how)
    assert.are.equal(0, code, srv:log())
    assert.is_true(elapsed < 4, ("exit took %.2f s with --drain-timeout 1"):format(elapsed))
    local done, res, out = finish_json(silent, 5)
    assert.is_true(done)
    assert.are.equal(1001, res.close_code, out)
    assert.is_true(res.tcp_closed, "server did not close TCP: " .. out)
    done, res, out = finish_json(polite, 5)
    assert.is_true(done)
    assert.are.equal(1001, res.close_code, out)
  end)
end)

describe("handler errors #integration", function()
  after_each(function() helper.cleanup() end)

  it("a raising handler closes only its connection with 1011 and logs file:line", function()
    local app = helper.app "boom_app.lua"
    local srv = helper.start_server { app = app }
    local url = srv:url "/boom"
    local other = sequence(url, "before,after,again")
    assert.are.equal("before", other:reply(false))

    local res = helper.assert_ok(helper.py("send", "--url", url, "--message", "boom",
      "--expect-close", "1011"))
    assert.are.equal(1011, res.close_code)

    -- the connection that was open at the same time still echoes
    assert.are.equal("after", other:reply(true))
    -- and so do new connections, with either client
    helper.assert_ok(helper.py("send", "--url", url, "--message", "fresh"))
    assert.are.equal("again", other:reply(true))
    local final, rc = other:finish()
    assert.are.equal(0, rc, cjson.encode(final))
    assert.are.equal(1000, final.close_code)

    local line = line_of(helper.read_file(app), "BOOM_LINE")
    assert.truthy(srv:wait_log("boom_app%.lua:" .. line, 3),
      "no error with boom_app.lua:" .. line .. " in the log:\n" .. srv:log())
    -- the app's error handler ran with the error, file:line included
    assert.truthy(srv:wait_log("error handler saw socket %d+: [^\n]*boom_app%.lua:" .. line
      .. ": boom requested by the client", 3), srv:log())
    assert.is_true(srv:alive())
  end)

  it("a second failure on another connection is isolated too", function()
    local srv = helper.start_server { app = helper.app "boom_app.lua" }
    local url = srv:url "/boom"
    for _ = 1, 2 do
      helper.assert_ok(helper.py("send", "--url", url, "--message", "boom",
        "--expect-close", "1011"))
    end
    helper.assert_ok(helper.py("echo", "--url", url, "--sizes", "0,126,65536"))
  end)
end)

describe("hot reload #integration #reload #lua", function()
  after_each(function() helper.cleanup() end)

  local template = helper.read_file(helper.app "reload_app.lua")

  -- The reload app with another VERSION; `rev` makes every revision a different size.
  local function source(version, rev, extra)
    local src = template:gsub('local VERSION = "v1"', ('local VERSION = %q'):format(version))
    return src .. (extra or "") .. "-- revision " .. rev .. " " .. ("x"):rep(rev) .. "\n"
  end

  local function start(dir)
    local app = dir .. "/app.lua"
    helper.write_file(app, source("v1", 1))
    local srv = helper.start_server { app = app }
    return srv, app, srv:url "/reload"
  end

  it("an edited app.lua runs on the same connection; socket.ctx survives", function()
    local srv, app, url = start(helper.tmpdir())
    local seq = sequence(url, "a,b,c")
    assert.are.equal("v1:1:a", seq:reply(false))
    helper.write_file(app, source("v2", 2))
    assert.truthy(wait_version(url, "v2"), "new connections never saw v2\n" .. srv:log())
    assert.are.equal("v2:2:b", seq:reply(true))
    assert.are.equal("v2:3:c", seq:reply(true))
    local res, rc = seq:finish()
    assert.are.equal(0, rc, cjson.encode(res))
    assert.are.equal(1000, res.close_code)
  end)

  it("an app.lua replaced by rename (as editors save) is reloaded too", function()
    local srv, app, url = start(helper.tmpdir())
    local seq = sequence(url, "a,b")
    assert.are.equal("v1:1:a", seq:reply(false))
    helper.replace_file(app, source("v2-renamed", 2))
    assert.truthy(wait_version(url, "v2-renamed"), "rename not picked up\n" .. srv:log())
    assert.are.equal("v2-renamed:2:b", seq:reply(true))
    -- and a second replacement after the first
    helper.replace_file(app, source("v3-renamed", 3))
    assert.truthy(wait_version(url, "v3-renamed"), "second rename not picked up\n" .. srv:log())
  end)

  it("a version with a syntax error is not loaded: old code runs, file:line logged", function()
    local srv, app, url = start(helper.tmpdir())
    local seq = sequence(url, "a,b,c")
    assert.are.equal("v1:1:a", seq:reply(false))

    local broken = source("v3", 3, "local broken = = 1 -- SYNTAX_ERROR\n")
    local err_line = line_of(broken, "SYNTAX_ERROR")
    local log_before = #srv:log()
    helper.write_file(app, broken)
    local where = srv:wait_log("app%.lua:(%d+)", 6, log_before + 1)
    assert.are.equal(tostring(err_line), where,
      "expected an error with app.lua:" .. err_line .. " in the log:\n" .. srv:log())

    assert.are.equal("v1:2:b", seq:reply(true))
    assert.are.equal("v1:1:probe", probe(url))

    helper.write_file(app, source("v4", 4))
    assert.truthy(wait_version(url, "v4"), "fixed version never loaded\n" .. srv:log())
    assert.are.equal("v4:3:c", seq:reply(true))
    local res, rc = seq:finish()
    assert.are.equal(0, rc, cjson.encode(res))
  end)

  it("editing a .lua module beside app.lua reloads the app with the new module", function()
    local dir = helper.tmpdir()
    local app = dir .. "/app.lua"
    local src = helper.read_file(helper.app "module_app.lua"):gsub("@DIR@", dir)
    helper.write_file(dir .. "/greeting.lua", 'return { text = "g1" }\n')
    helper.write_file(app, src)
    local srv = helper.start_server { app = app }
    local url = srv:url "/reload"
    local seq = sequence(url, "a,b")
    assert.are.equal("g1:1:a", seq:reply(false))
    helper.write_file(dir .. "/greeting.lua", 'return { text = "g2-module" }\n')
    assert.truthy(wait_version(url, "g2-module"), "module edit not picked up\n" .. srv:log())
    assert.are.equal("g2-module:2:b", seq:reply(true))
  end)

  it("SIGHUP reloads the app on existing connections", function()
    local dir = helper.tmpdir()
    local app = dir .. "/app.lua"
    helper.write_file(dir .. "/version.dat", "h1\n")
    helper.write_file(app, (helper.read_file(helper.app "sighup_app.lua"):gsub("@DIR@", dir)))
    local srv = helper.start_server { app = app }
    local url = srv:url "/reload"
    local seq = sequence(url, "a,b")
    assert.are.equal("h1:1:a", seq:reply(false))

    helper.write_file(dir .. "/version.dat", "h2-after-hup\n")
    helper.sleep(0.5)
    assert.are.equal("h1:1:probe", probe(url),
      "reloaded without SIGHUP: the watcher reacted to version.dat, a non-.lua file")
    assert.is_true(srv:signal("HUP"))
    assert.truthy(wait_version(url, "h2-after-hup"), "SIGHUP did not reload\n" .. srv:log())
    assert.are.equal("h2-after-hup:2:b", seq:reply(true))
    assert.is_true(srv:alive(), "SIGHUP ended the server")
  end)
end)

describe("logging #integration", function()
  after_each(function() helper.cleanup() end)

  local LEVELS = { DEBUG = true, INFO = true, WARN = true, ERROR = true }

  local function check_line(line)
    local ts, level, tag = line:match(
      "^(%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d[%d%.,]*[Z%d%+%-:]*) (%u+) %[([%w]+)%] ")
    assert(ts, "log line not in '<ISO8601> <LEVEL> [tag] message' form: " .. line)
    assert(LEVELS[level], "unknown level " .. level .. " in: " .. line)
    assert(tag == "main" or tag:match("^w%d+$"), "unknown tag [" .. tag .. "] in: " .. line)
    return level, tag
  end

  it("every line is '<ISO8601 time> <LEVEL> [main|wN] message'", function()
    local srv = helper.start_server { app = helper.app "echo_app.lua", workers = 2,
                                      log_level = "debug" }
    helper.assert_ok(helper.py("echo", "--url", srv:url "/echo", "--sizes", "5"))
    helper.assert_ok(helper.raw(srv:url "/echo", "http_unknown_path"))
    srv:stop()
    local n = 0
    for line in srv:log():gmatch("[^\n]+") do
      check_line(line)
      n = n + 1
    end
    assert.is_true(n > 0)
    local listening = srv:log():match("[^\n]*listening on[^\n]*")
    local _, tag = check_line(listening)
    assert.are.equal("main", tag)
  end)

  it("--log-level error: still prints 'listening on', and no DEBUG/INFO lines", function()
    local srv = helper.start_server { app = helper.app "echo_app.lua", log_level = "error",
                                      timeout = 5 }
    helper.assert_ok(helper.py("echo", "--url", srv:url "/echo", "--sizes", "5"))
    srv:stop()
    for line in srv:log():gmatch("[^\n]+") do
      if not line:find("listening on", 1, true) then
        local level = check_line(line)
        assert(level == "ERROR", "level " .. level .. " printed at --log-level error: " .. line)
      end
    end
  end)
end)
