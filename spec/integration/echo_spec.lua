-- Echo through real clients (Python websockets 10.x and Node ws).
-- RFC 6455 sections covered:
--   4.1, 4.2.1, 4.2.2  opening handshake as real clients perform it
--   1.9, 4.2.2, 11.3.4 subprotocol negotiation (Sec-WebSocket-Protocol)
--   5.2                base framing: 7-bit (0, 125), 16-bit (126, 65535) and 64-bit
--                      (65536, 1 MiB) payload lengths, masking by the client
--   5.4                fragmentation (text fragments split inside code points too)
--   5.5.1, 7.4         close handshake, status code echoed (1000, 4000)
--   5.5.2, 5.5.3       ping answered by a pong with the same payload
--   5.6, 8.1           text (valid multi-byte UTF-8) and binary data frames
--   10.4               message over the configured limit closed with 1009
local helper = require "spec.helper"
local cjson = require "cjson"

local SIZES = "0,125,126,65535,65536,1048576"

describe("echo #integration", function()
  local srv, url

  setup(function()
    srv = helper.start_server { app = helper.app "echo_app.lua" }
    url = srv:url "/echo"
  end)
  teardown(function() helper.cleanup() end)
  after_each(function() helper.cleanup_clients() end)

  local clients = {
    { name = "python websockets", run = helper.py, check = function() end },
    { name = "node ws", run = helper.node, check = helper.require_node_ws },
  }

  for _, c in ipairs(clients) do
    describe(c.name, function()
      it("echoes text of sizes " .. SIZES .. " byte-for-byte", function()
        c.check()
        local res = helper.assert_ok(c.run("echo", "--url", url, "--sizes", SIZES))
        assert.are.equal(6, #res.results)
      end)

      it("echoes binary of sizes " .. SIZES .. " byte-for-byte", function()
        c.check()
        helper.assert_ok(c.run("echo", "--url", url, "--sizes", SIZES, "--binary"))
      end)

      it("reassembles a fragmented text message", function()
        c.check()
        helper.assert_ok(c.run("fragmented", "--url", url, "--fragments", "7", "--size", "70001"))
      end)

      it("reassembles a fragmented binary message", function()
        c.check()
        helper.assert_ok(c.run("fragmented", "--url", url, "--binary", "--fragments", "4",
          "--size", "200000"))
      end)

      it("answers a ping with a pong carrying the same payload", function()
        c.check()
        helper.assert_ok(c.run("ping", "--url", url, "--payload", "are-you-there"))
      end)

      it("echoes close code 1000", function()
        c.check()
        local res = helper.assert_ok(c.run("close", "--url", url, "--code", "1000"))
        assert.are.equal(1000, res.close_code)
      end)

      it("echoes close code 4000 (reason bye)", function()
        c.check()
        local res = helper.assert_ok(c.run("close", "--url", url, "--code", "4000",
          "--reason", "bye"))
        assert.are.equal(4000, res.close_code)
      end)

      it("picks the first client-offered subprotocol it supports", function()
        c.check()
        local res = helper.assert_ok(c.run("protocol", "--url", url, "--offer",
          "chat.v2,chat.v1", "--expect", "chat.v2"))
        assert.are.equal("chat.v2", res.protocol)
        res = helper.assert_ok(c.run("protocol", "--url", url, "--offer",
          "unknown.v9,chat.v1", "--expect", "chat.v1"))
        assert.are.equal("chat.v1", res.protocol)
      end)

      it("closes with 1009 when a message exceeds max_message_size", function()
        c.check()
        local res = helper.assert_ok(c.run("send", "--url", url, "--size",
          tostring(3 * 1024 * 1024), "--binary", "--expect-close", "1009"))
        assert.are.equal(1009, res.close_code)
      end)
    end)
  end

  -- Browsers fail a 101 that selects none of the protocols they offered, so the
  -- server says why instead: 400 with a JSON body.
  it("refuses with 400 when none of the offered subprotocols is supported", function()
    local c = helper.app_client()
    local r = c:call { op = "open", id = "np", url = url, protocols = { "x.v1", "y.v2" } }
    assert.are.equal(400, r.status, cjson.encode(r))
    assert.is_nil(r.headers["sec-websocket-accept"])
    assert.are.same({ error = "http_protocol",
                      message = "none of the offered subprotocols is supported" }, r.json)
  end)

  it("accepts without a subprotocol when the client offers none", function()
    helper.assert_ok(helper.py("protocol", "--url", url, "--offer", "", "--expect", "none"))
  end)

  it("serves several clients at the same time", function()
    local procs = {}
    for i = 1, 6 do
      procs[i] = helper.spawn(helper.py_argv("echo", "--url", url, "--sizes",
        "0,126,65536,300000", i % 2 == 0 and "--binary" or nil))
    end
    for _, p in ipairs(procs) do
      local done, out = p:finish(30)
      assert.is_true(done, "client did not finish: " .. out)
      assert.are.equal(0, p.code, out .. p:stderr())
    end
  end)
end)

describe("echo with --workers 2 #integration", function()
  local srv
  setup(function()
    srv = helper.start_server { app = helper.app "echo_app.lua", workers = 2 }
  end)
  teardown(function() helper.cleanup() end)

  it("every connection is served", function()
    local procs = {}
    for i = 1, 8 do
      procs[i] = helper.spawn(helper.py_argv("echo", "--url", srv:url "/echo", "--sizes",
        "1,125,70000"))
    end
    for _, p in ipairs(procs) do
      local done, out = p:finish(30)
      assert.is_true(done, "client did not finish: " .. out)
      assert.are.equal(0, p.code, out .. p:stderr())
    end
  end)
end)
