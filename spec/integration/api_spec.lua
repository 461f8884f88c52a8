-- The Lua socket API seen from the wire (spec/apps/api_app.lua answers what the API
-- returned): socket.id, socket.protocol, socket.ctx with the open event,
-- socket:remote_addr(), socket:buffered_amount(), socket:send() results,
-- socket:close(code, reason), socket:ping(payload), the close event.
-- RFC 6455 sections covered:
--   1.9, 4.2.2, 11.3.4   the negotiated subprotocol as the application sees it
--   5.5.1, 7.1.2, 7.4    a close initiated by the server with an application code
--                        and reason; the code the client sent reaching the app
--   5.5.2                a ping sent by the application
--   5.6                  binary messages sent by the application
local helper = require "spec.helper"
local cjson = require "cjson"

-- Runs `sequence --send <messages>` on a fresh connection; returns the result.
local function seq(url, messages, ...)
  return helper.run(helper.py_argv("sequence", "--url", url, "--send", messages, ...))
end

describe("socket API #integration #lua", function()
  local srv, url

  setup(function()
    srv = helper.start_server { app = helper.app "api_app.lua", workers = 1 }
    url = srv:url "/api"
  end)
  teardown(function() helper.cleanup() end)
  after_each(function() helper.cleanup_clients() end)

  it("socket.id, remote_addr, buffered_amount, ctx set by the open handler", function()
    local res = helper.assert_ok(seq(url, "info"))
    local info = cjson.decode(res.replies[1])
    assert.are.equal("number", info.id_type)
    assert.are.equal("127.0.0.1", info.ip)
    assert.is_true(type(info.port) == "number" and info.port > 0 and info.port < 65536)
    assert.are.equal("number", type(info.buffered))
    assert.is_true(info.buffered >= 0)
    assert.is_true(info.opened, "the open handler did not run before the first message")
    assert.are.equal(helper.null, info.protocol)
  end)

  it("socket.id is unique among connections open at the same time", function()
    local clients, ids = {}, {}
    for i = 1, 5 do
      local p = helper.spawn(helper.py_argv("sequence", "--url", url, "--send", "info,info",
        "--step"), { stdin = "pipe" })
      assert.are.equal("connected", (p:read_json(5) or {}).event)
      local ev = assert(p:read_json(5))
      clients[i] = p
      local id = cjson.decode(ev.reply).id
      assert.is_nil(ids[id], "id " .. tostring(id) .. " given twice")
      ids[id] = true
    end
    for _, p in ipairs(clients) do
      p:write("\n")
      assert.truthy(p:read_json(5))
      p:close_stdin()
    end
  end)

  it("socket.protocol is the negotiated subprotocol", function()
    -- the app supports p1 and p2; the client prefers p2
    local res = helper.assert_ok(seq(url, "info", "--offer", "p9,p2,p1"))
    assert.are.equal("p2", cjson.decode(res.replies[1]).protocol)
  end)

  it("socket:send returns true", function()
    -- the handler sends "x", then the result of that send
    local res = helper.assert_ok(seq(url, "sendresult", "--replies", "2"))
    assert.are.equal("true,nil", res.replies[1])
  end)

  it("socket:send(data, true) sends a binary message", function()
    local p = helper.spawn(helper.py_argv("sequence", "--url", url, "--send", "binary:abc"))
    assert.are.equal("connected", (p:read_json(5) or {}).event)
    local ev = assert(p:read_json(5))
    assert.are.equal("abc", ev.reply)
    assert.is_true(ev.binary, "reply was a text message")
  end)

  it("socket:close(4001, reason) reaches the client with that code and reason", function()
    local res = helper.assert_ok(seq(url, "close:4001:app says bye", "--expect-close", "4001"))
    assert.are.equal(4001, res.close_code)
    assert.are.equal("app says bye", res.close_reason)
  end)

  it("socket:close() without a code closes normally (1000, or no status code)", function()
    local res = seq(url, "close")
    assert.is_true(res.close_received, helper.describe(res))
    assert.is_truthy(res.close_code == 1000 or res.close_code == 1005,
      "close code " .. tostring(res.close_code))
  end)

  it("socket:ping(payload) sends a ping with that payload", function()
    helper.assert_ok(helper.raw(url, "server_ping"))
  end)

  it("the close event gets the code and reason the client sent", function()
    local p = helper.spawn(helper.py_argv("sequence", "--url", url, "--send", "info",
      "--close-code", "4000", "--close-reason", "bye"))
    local done, out = p:finish(10)
    assert.is_true(done and p.code == 0, out .. p:stderr())
    local id = cjson.decode(cjson.decode(out:match("[^\n]*\"reply\"[^\n]*")).reply).id
    -- the close event may run just after the client saw the close handshake end
    local reply = helper.wait_until(function()
      local r = helper.assert_ok(seq(url, "closed:" .. tostring(id))).replies[1]
      if r ~= "none" then return r end
    end, 3, 0.1)
    assert.are.equal("4000:bye", reply)
  end)
end)
