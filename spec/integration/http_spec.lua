-- The HTTP side: /health, and every way an opening handshake can be refused
-- (tests/clients/raw_client.py "http" cases: exact status, required header, and the
-- server closing the connection after each error answer).
-- RFC 6455 sections covered:
--   4.1           the client's handshake requirements the server relies on
--   4.2.1         reading the client's opening handshake: GET, HTTP/1.1, Host,
--                 Upgrade, Connection, Sec-WebSocket-Key (16 bytes base64),
--                 Sec-WebSocket-Version
--   4.2.2         refusing: 400 for a bad request, 426 + Sec-WebSocket-Version: 13
--                 for an unsupported version (also 4.4)
--   4.4           supporting multiple versions: answering with the supported one
--   10.1, 10.7    not trusting client input: malformed heads, oversize heads (431),
--                 heads that never complete (handshake timeout)
-- Also RFC 9110/9112 statuses used by the server: 404, 405, 431, 505.
local helper = require "spec.helper"
describe("http #integration", function()
  local srv, url

  setup(function()
    -- echo_app.lua sets handshake_timeout = 2
    srv = helper.start_server { app = helper.app "echo_app.lua" }
    url = srv:url "/echo"
  end)
  teardown(function() helper.cleanup() end)
  after_each(function() helper.cleanup_clients() end)

  -- one `it` per case of `raw_client.py --list` (the table lives in the client)
  for _, c in ipairs(helper.raw_cases("http")) do
    it(("%s -> %s (%s)"):format(c.case, tostring(c.expected), c.description), function()
      local res, rc, out, err = helper.raw(url, c.case, "--slow-timeout", "12")
      helper.assert_ok(res, rc, out, err)
    end)
  end

  it("GET /health answers JSON with status ok", function()
    local res = helper.assert_ok(helper.raw(url, "health"))
    assert.are.equal("ok", res.json.status)
  end)

  it("answers /health while WebSocket clients are connected", function()
    local hold = helper.spawn(helper.py_argv("hold", "--url", url, "--seconds", "20"))
    local ev = hold:read_json(5)
    assert.are.same({ event = "connected" }, ev)
    helper.assert_ok(helper.raw(url, "health"))
  end)
end)

describe("handshake_timeout #integration", function()
  teardown(function() helper.cleanup() end)

  it("configure{handshake_timeout = 2}: a stalled head is closed in time", function()
    local srv = helper.start_server { app = helper.app "handshake_timeout_app.lua" }
    local url = srv:url "/echo"
    helper.assert_ok(helper.py("echo", "--url", url, "--sizes", "3"))
    local res = helper.assert_ok(helper.raw(url, "http_slow_head", "--slow-timeout", "8"))
    assert.is_true(res.closed_after < 5, "closed after " .. tostring(res.closed_after) .. " s")
  end)
end)

describe("configuration errors #integration", function()
  teardown(function() helper.cleanup() end)

  it("an app field that does not exist stops the start with file:line", function()
    local dir = helper.tmpdir()
    local app = dir .. "/bad_app.lua"
    helper.write_file(app, 'local edgews = require "edgews"\n'
      .. 'edgews.app { path = "/x", handshake_timeout = 2 }\n')
    local ok, err = pcall(helper.start_server, { app = app, timeout = 5 })
    assert.is_false(ok)
    assert.is_truthy(tostring(err):find("bad_app.lua:2: edgews.app: unknown field 'handshake_timeout'", 1, true),
      tostring(err))
  end)
end)
