-- edgews.client: the server's outbound WebSocket client against reference servers
-- started here (tests/clients/outbound_ref_py.py: Python `websockets` and a raw
-- asyncio server; tests/clients/outbound_ref_node.js: Node `ws`). The app
-- (spec/apps/outbound_app.lua) runs every scenario from a timer task at start and
-- logs "OUTBOUND <name> <json>"; each `it` checks one scenario's line. /run runs a
-- scenario from a message handler (the same code waiting inside a handler).
-- RFC sections covered:
--   RFC 6455 4.1   the client's handshake: key, version, Sec-WebSocket-Accept check,
--                  subprotocols offered / refused when not offered, extra headers
--   RFC 6455 5.1, 5.3  every client frame masked, a fresh key per frame
--   RFC 6455 5.2, 5.4  7/16/64-bit lengths, fragmented messages from the server
--   RFC 6455 5.5.2-3   ping/pong both ways
--   RFC 6455 7.1.5, 7.4  close codes from the server and from us; 1007 on invalid
--                  UTF-8, 1009 over max_message_size
--   RFC 7692       permessage-deflate negotiated with websockets and ws
--   RFC 6125 / 5280  wss:// certificate verification: a test CA, the system store
--                  (refused), a wrong host name (refused), verify = false
local helper = require "spec.helper"
local cjson = require "cjson"

local results, srv, log
local certs, node

local function port_of(p, kind)
  local line, err = p:read_line(10)
  assert(line, "reference server did not start: " .. tostring(err) .. " " .. p:stderr())
  local k, port = line:match("listening (%w+) (%d+)")
  assert(k == kind, "unexpected line " .. line)
  return port
end

local function result(name)
  local r = results[name]
  assert(r, "no result for " .. name .. " in the server log:\n" .. log)
  return r
end

describe("outbound client (edgews.client)", function()
  setup(function()
    helper.require_node_ws()
    certs = helper.certs()
    local py = helper.spawn({ helper.PYTHON, helper.CLIENTS .. "/outbound_ref_py.py", "--ping-interval", "0.1" })
    local py_port, raw_port = port_of(py, "ws"), port_of(py, "raw")
    local tls = helper.spawn({ helper.PYTHON, helper.CLIENTS .. "/outbound_ref_py.py", "--tls",
      certs.chain, certs.key })
    local tls_port = port_of(tls, "ws")
    node = helper.spawn({ helper.NODE, helper.CLIENTS .. "/outbound_ref_node.js" })
    local node_port = port_of(node, "ws")
    srv = helper.start_server { app = helper.app "outbound_app.lua", workers = 1,
      env = { OUTBOUND_PY = py_port, OUTBOUND_RAW = raw_port, OUTBOUND_NODE = node_port,
              OUTBOUND_TLS = tls_port, OUTBOUND_CA = certs.ca } }
    assert(srv:wait_log("OUTBOUND%-DONE", 60), "scenarios did not finish:\n" .. srv:log())
    log = srv:log()
    results = {}
    for name, js in log:gmatch("OUTBOUND (%S+) (%b{})") do results[name] = cjson.decode(js) end
  end)

  teardown(function()
    if srv then srv:stop() end
    local report = srv and helper.sanitizer_report(srv:log())
    helper.cleanup()
    assert(not report, report)
  end)

  for _, who in ipairs { "py", "node" } do
    it("echoes text, binary and a 200 KiB message with " .. who .. ", offering subprotocols and headers", function()
      local r = result(who .. "_echo")
      assert.are.equal("hello", r.text)
      assert.is_false(r.text_bin)
      assert.is_true(r.bin_ok)
      assert.is_true(r.bin_bin)
      assert.is_true(r.big_ok)
      assert.are.equal("chat.v2", r.protocol)
      assert.are.equal("chat.v2", r.info.subprotocol)
      assert.are.equal(who == "py" and "42" or "43", r.info.headers["x-test"])
      assert.is_true(r.closed)
      assert.are.equal("closed", r.after_close)
    end)

    it("negotiates permessage-deflate with " .. who, function()
      local r = result(who .. "_deflate")
      assert.is_true(r.big_ok)
      assert.is_true(r.bin_ok)
      assert.are.equal("hello", r.text)
      local ext = r.info.extensions
      if type(ext) == "table" then ext = table.concat(ext, ",") end
      assert.matches("permessage%-deflate", ext)
      assert.matches("client_max_window_bits", r.info.headers["sec-websocket-extensions"])
    end)

    it("reassembles a fragmented message from " .. who, function()
      local r = result(who .. "_fragments")
      if who == "py" then
        assert.are.same({ msg = "frag-mented-message", bin = false }, r)
      else
        assert.are.same({ hex = "010203040500", bin = true }, r)
      end
    end)

    it("fails invalid UTF-8 text from " .. who .. " with 1007", function()
      local r = result((who == "py" and "raw" or who) .. "_badutf8")
      assert.is_nil(r.msg)
      assert.are.equal("closed", r.err)
      assert.are.equal(1007, r.code)
    end)

    it("reports the close code and reason " .. who .. " sends", function()
      local r = result(who .. "_close")
      assert.are.equal("closed", r.err)
      assert.are.equal(who == "py" and 4001 or 4002, r.code)
      assert.are.equal(who == "py" and "bye" or "later", r.reason)
    end)
  end

  it("sends its own close code, and the server sees it", function()
    local r = result("client_close")
    assert.is_true(r.ok)
    assert.are.equal(4003, r.code)
    assert.are.equal("closed", r.err)
    -- Node's ws printed what it received (its lines come in the scenarios' order).
    local seen = helper.wait_until(function()
      local line = node:read_line(0.2)
      return line and line:find("closed /echo 4003 client done", 1, true)
    end, 5)
    assert(seen, "node ws did not see close 4003")
  end)

  it("masks every frame with a fresh key", function()
    local r = result("raw_mask")
    assert.are.equal(20, r.masked)
    assert.is_true(r.payload_ok)
    assert.is_true(r.distinct >= 19, "masks repeat: " .. tostring(r.distinct))
  end)

  it("closes with 1009 past max_message_size and accepts a message at the limit", function()
    local r = result("max_message")
    assert.are.equal(1009, r.code)
    assert.are.equal("closed", r.err)
    assert.matches("maximum message size", r.reason)
    assert.are.equal(5000, result("max_message_ok").len)
  end)

  it("answers pings and sends its own", function()
    local r = result("ping")
    assert.is_true(r.ping)
    assert.are.equal("alive", r.msg)
  end)

  it("fails a connection whose server stops answering pings (ping_timeout, 1001)", function()
    local r = result("ping_timeout")
    assert.are.equal("closed", r.err)
    assert.are.equal(1001, r.code)
    assert.are.equal("ping timeout", r.reason)
    assert.is_true(r.waited >= 0.35, tostring(r.waited)) -- interval + timeout, not earlier
  end)

  it("times out a receive without losing the connection", function()
    local r = result("receive_timeout")
    assert.are.equal("timeout", r.err)
    assert.is_true(r.waited >= 0.15)
    assert.are.equal("still there", r.after)
  end)

  it("reports connect, handshake and URL failures as nil, err", function()
    assert.are.same({ ws = false, err = "connect: connection refused" }, result("refused"))
    assert.are.same({ ws = false, err = "handshake: server answered 404 Not Found" }, result("not_found"))
    assert.are.same({ ws = false, err = "handshake: Sec-WebSocket-Accept does not match the key" },
      result("bad_accept"))
    assert.are.same({ ws = false, err = "handshake: server selected a subprotocol we did not offer: never.offered" },
      result("bad_protocol"))
    assert.are.same({ ws = false, err = "bad url: http://example.com/" }, result("bad_url"))
    local t = result("connect_timeout")
    assert.are.equal("timeout", t.err)
    assert.is_true(t.waited >= 0.25)
  end)

  it("connects over wss:// trusting a CA file", function()
    local r = result("wss_ca")
    assert.are.equal("hello", r.text)
    assert.is_true(r.big_ok)
    assert.is_true(r.bin_ok)
  end)

  it("refuses a certificate the system store does not trust, and a wrong host name", function()
    local r = result("wss_system_store")
    assert.is_false(r.ws)
    assert.matches("^tls: certificate verification failed: .*not correctly signed", r.err)
    r = result("wss_wrong_name")
    assert.is_false(r.ws)
    assert.matches("^tls: certificate verification failed: .*[Cc]ommon [Nn]ame", r.err)
  end)

  it("probes with an HTTP GET (plain and over verified TLS) and answers the status", function()
    local r = result("probe")
    assert.are.same({ 404 }, r.plain)
    assert.is_number(r.tls[1]) -- websockets answers a plain GET with an error status
    assert.is_true(r.tls[1] >= 400 and r.tls[1] < 500, tostring(r.tls[1]))
    assert.are.equal(cjson.null, r.tls_untrusted[1])
    assert.matches("^tls: certificate verification failed", r.tls_untrusted[2])
    assert.are.same({ cjson.null, "connect: connection refused" }, r.refused)
  end)

  it("connects with verify = false", function()
    assert.are.equal("hello", result("wss_noverify").text)
  end)

  it("delivers messages to ws:on(\"message\") and runs on(\"close\")", function()
    assert.are.same({ got = { "m1", "m2", "m3" }, closed = 1000 }, result("on_message"))
  end)

  it("returns the messages that came before a close, then \"closed\"", function()
    assert.are.same({ got = { "b1", "b2", "b3", "nil" }, err = "closed", code = 4005, reason = "after burst" },
      result("burst_close"))
  end)

  it("keeps 1,000 unread messages in order (reading paused past 256) and goes on", function()
    assert.are.same({ n = 1000, in_order = true, last = "after" }, result("flood"))
  end)

  it("closes a collected client with 1001", function()
    assert.are.same({ done = true }, result("collected"))
    local seen = helper.wait_until(function()
      local line = node:read_line(0.2)
      return line and line:find("closed /echo 1001 client collected", 1, true)
    end, 5)
    assert(seen, "node ws did not see close 1001")
  end)

  it("raises when connect is called where it cannot wait (a script's top level)", function()
    local r = result("load_time")
    assert.is_false(r.ok)
    assert.matches("can only wait inside a handler, a timer or a task", r.err)
  end)

  it("works from a message handler", function()
    local code = [[
import asyncio, sys, websockets
async def main():
    async with websockets.connect(sys.argv[1]) as ws:
        await ws.send(sys.argv[2])
        print(await asyncio.wait_for(ws.recv(), 10))
asyncio.run(main())
]]
    local res, rc, out, err = helper.run({ helper.PYTHON, "-c", code, srv:url "/run", "raw_mask" })
    assert(rc == 0, helper.describe(res, rc, out, err))
    assert.are.equal(20, res.masked)
    res, rc, out, err = helper.run({ helper.PYTHON, "-c", code, srv:url "/run", "refused" })
    assert(rc == 0, helper.describe(res, rc, out, err))
    assert.are.equal("connect: connection refused", res.err)
  end)
end)
