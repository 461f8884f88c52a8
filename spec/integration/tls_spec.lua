-- wss:// : the TLS listener (--tls-cert/--tls-key or edgews.configure{tls=}), the
-- optional plain listener, the TLS handshake under the handshake timeout, SIGHUP
-- certificate reload. Certificates come from scripts/gen-test-cert (a new CA per run);
-- clients trust only that CA (--ca), never the system's.
-- RFC sections covered:
--   RFC 6455 3, 4.1     wss:// URIs: TLS first, then the opening handshake over it
--   RFC 6455 5.2, 5.4   framing over TLS: 7/16/64-bit lengths, fragmentation
--   RFC 6455 7.1.1, 7.4.1  close 1001 on graceful shutdown, over TLS
--   RFC 6455 10.6       confidentiality: the client verifies the server certificate
--                       (chain to the trusted CA, name 127.0.0.1 / localhost)
--   RFC 5246 (TLS 1.2)  7.2.2 handshake_failure / protocol_version alerts, E.1 (no
--                       downgrade to TLS 1.1), 7.4.1.2 ClientHello; RFC 8446 is NOT
--                       offered (TLS 1.3 refused)
--   RFC 5289, RFC 7905  ECDHE with AES-128/256-GCM and ChaCha20-Poly1305
--   RFC 8422 5.1        supported groups x25519 and secp256r1 (the server prefers x25519)
--   RFC 2818            HTTP over TLS: GET /health
local helper = require "spec.helper"
local cjson = require "cjson"

local SIZES = "0,125,126,65536,1048576"

local function enc(v)
  local ok, s = pcall(cjson.encode, v)
  return ok and s or tostring(v)
end

-- A `sequence --step` client (one message per step) that stays connected.
local function open_sequence(url, ca, messages)
  local p = helper.spawn(helper.py_argv("sequence", "--url", url, "--ca", ca, "--send",
    messages, "--step"), { stdin = "pipe" })
  local ev, err = p:read_json(5)
  assert(ev and ev.event == "connected", "sequence client did not connect: "
    .. (ev and enc(ev) or tostring(err)) .. " " .. p:stderr())
  local first = p:read_json(5)
  assert(first and first.event == "reply", "no first reply: " .. enc(first) .. p:stderr())
  return p, first.reply
end

local function next_reply(p)
  p:write("\n")
  local ev, err = p:read_json(5)
  assert(ev, "sequence client: no reply: " .. tostring(err) .. " " .. p:stderr())
  assert(ev.event == "reply", "sequence client: connection closed: " .. enc(ev))
  return ev.reply
end

-- A client run that must fail on the client's side, with the server still up.
local function assert_fails(res, rc, pattern, what)
  assert.are_not.equal(0, rc, what .. " succeeded: " .. helper.describe(res, rc))
  assert.is_false(res.ok, what .. ": " .. enc(res))
  assert.truthy(tostring(res.error or ""):find(pattern),
    what .. ": expected an error matching '" .. pattern .. "', got " .. enc(res))
end

-- openssl s_client -brief; returns rc, its combined output.
local function s_client(port, ca, ...)
  local p = helper.spawn({ "openssl", "s_client", "-connect", "127.0.0.1:" .. port,
    "-CAfile", ca, "-verify_return_error", "-brief", ... })
  local done, out = p:finish(10)
  assert(done, "openssl s_client did not finish")
  return p.code, out .. p:stderr()
end

-- The last JSON line of a client's output.
local function last_json(out)
  local last
  for line in out:gmatch("[^\n]+") do
    if line:sub(1, 1) == "{" then last = line end
  end
  assert(last, "no JSON line in: " .. out)
  return cjson.decode(last)
end

local function debug_tls_lines(srv)
  local n = 0
  for line in srv:log():gmatch("[^\n]+") do
    if line:find(" DEBUG ", 1, true) and line:find("TLS", 1, true) then n = n + 1 end
  end
  return n
end

describe("wss:// listener #integration #lua", function()
  local certs, srv, url

  setup(function()
    certs = helper.certs()
    srv = helper.start_server { app = helper.app "echo_app.lua", tls = certs, plain = true,
                                log_level = "debug" }
    url = srv:url "/echo"
  end)
  teardown(function() helper.cleanup() end)
  after_each(function() helper.cleanup_clients() end)

  it("logs the TLS listener and the plain listener", function()
    assert.truthy(srv:log():find("listening on 127%.0%.0%.1:" .. srv.port .. " %(TLS%)"), srv:log())
    assert.truthy(srv:log():find("plain listener on 127%.0%.0%.1:" .. srv.plain_port), srv:log())
    assert.are.equal("wss", url:match("^(%a+):"))
  end)

  -- An idle wss:// connection drops its record cipher contexts after a quiet second
  -- or two (debug log line) and builds them again for the next record; each quiet
  -- spell releases them again.
  it("an idle connection releases its cipher contexts and keeps working", function()
    local p = helper.spawn(helper.py_argv("sequence", "--url", url, "--ca", certs.ca,
      "--send", "one,two,three", "--step"), { stdin = "pipe" })
    assert.are.equal("connected", (p:read_json(5) or {}).event)
    assert.are.equal("one", assert(p:read_json(5)).reply)
    local id -- the newest connection: this one
    for x in srv:log():gmatch("conn (%d+): opened /echo") do id = x end
    assert(id, "no opened line")
    local released = "conn " .. id .. ": quiet: TLS cipher contexts released"
    local function releases()
      local n = 0
      for _ in srv:log():gmatch(released) do n = n + 1 end
      return n
    end
    for round, msg in ipairs { "two", "three" } do
      assert.is_true(helper.wait_until(function() return releases() >= round end, 8),
        "no release after quiet spell " .. round .. ": " .. srv:log():sub(-2000))
      p:write("\n")
      assert.are.equal(msg, assert(p:read_json(5)).reply)
    end
    p:close_stdin()
    assert.is_true(p:finish(5))
  end)

  local clients = {
    { name = "python websockets", run = helper.py, check = function() end },
    { name = "node ws", run = helper.node, check = helper.require_node_ws },
  }
  for _, c in ipairs(clients) do
    describe(c.name, function()
      it("echoes text of sizes " .. SIZES .. " over TLS 1.2, certificate verified", function()
        c.check()
        local res = helper.assert_ok(c.run("echo", "--url", url, "--ca", certs.ca, "--sizes", SIZES))
        assert.are.equal(5, #res.results)
        assert.are.equal("TLSv1.2", res.tls and res.tls.version, enc(res))
        assert.truthy(tostring(res.tls.cipher):find("^ECDHE%-"), enc(res))
      end)

      it("echoes binary of sizes " .. SIZES .. " over TLS", function()
        c.check()
        helper.assert_ok(c.run("echo", "--url", url, "--ca", certs.ca, "--sizes", SIZES, "--binary"))
      end)

      it("reassembles fragmented text and binary messages over TLS", function()
        c.check()
        helper.assert_ok(c.run("fragmented", "--url", url, "--ca", certs.ca, "--fragments", "7",
          "--size", "70001"))
        helper.assert_ok(c.run("fragmented", "--url", url, "--ca", certs.ca, "--binary",
          "--fragments", "4", "--size", "300000"))
      end)

      it("fails verification against another CA (client side), server stays up", function()
        c.check()
        local other = helper.new_certs()
        local res, rc = c.run("echo", "--url", url, "--ca", other.ca, "--sizes", "1")
        assert_fails(res, rc, c.run == helper.py and "CERTIFICATE_VERIFY_FAILED"
          or "certificate", "a client trusting another CA")
        helper.assert_ok(c.run("echo", "--url", url, "--ca", certs.ca, "--sizes", "10"))
      end)
    end)
  end

  it("serves the plain listener at the same time as wss://", function()
    local a = helper.spawn(helper.py_argv("echo", "--url", url, "--ca", certs.ca, "--sizes",
      "0,126,65536,1048576", "--binary"))
    local b = helper.spawn(helper.py_argv("echo", "--url", srv:plain_url "/echo", "--sizes",
      "0,126,65536,1048576", "--binary"))
    for _, p in ipairs { a, b } do
      local done, out = p:finish(20)
      assert.is_true(done, "client did not finish")
      assert.are.equal(0, p.code, out .. p:stderr())
    end
    -- the plain listener really is plain: no TLS on it
    local res = helper.assert_ok(helper.py("echo", "--url", srv:plain_url "/echo", "--sizes", "5"))
    assert.is_nil(res.tls)
  end)

  it("answers GET /health over https (python and curl, CA verified)", function()
    local res = helper.assert_ok(helper.py("http-get", "--url", srv:http_url "/health",
      "--ca", certs.ca))
    assert.are.equal("ok", res.json and res.json.status, enc(res))
    local cres, rc, out, err = helper.run({ "curl", "-sS", "--max-time", "5", "--cacert",
      certs.ca, srv:http_url "/health" }, 10)
    assert.are.equal(0, rc, tostring(out) .. tostring(err))
    assert.are.equal("ok", cres.status, out)
    -- curl without the CA refuses the certificate
    local _, rc2 = helper.run({ "curl", "-sS", "--max-time", "5", srv:http_url "/health" }, 10)
    assert.are_not.equal(0, rc2)
  end)

  it("negotiates ChaCha20-Poly1305 and AES-256-GCM when the client allows only those",
    function()
      local res = helper.assert_ok(helper.py("echo", "--url", url, "--ca", certs.ca, "--sizes",
        "0,70000", "--tls-max", "1.2", "--ciphers",
        "ECDHE-RSA-CHACHA20-POLY1305:ECDHE-ECDSA-CHACHA20-POLY1305"))
      assert.truthy(res.tls.cipher:find("CHACHA20%-POLY1305"), enc(res))
      res = helper.assert_ok(helper.py("echo", "--url", url, "--ca", certs.ca, "--sizes",
        "0,70000", "--tls-max", "1.2", "--ciphers",
        "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES256-GCM-SHA384"))
      assert.truthy(res.tls.cipher:find("AES256%-GCM"), enc(res))
    end)

  it("refuses TLS 1.1, TLS 1.3 and non-ECDHE suites; the server stays up", function()
    local before = debug_tls_lines(srv)
    local res, rc = helper.py("echo", "--url", url, "--ca", certs.ca, "--sizes", "1",
      "--tls-min", "1.0", "--tls-max", "1.1")
    -- the alert comes from the server: the client did offer TLS 1.1
    assert_fails(res, rc, "PROTOCOL_VERSION", "a TLS 1.1 client")
    res, rc = helper.py("echo", "--url", url, "--ca", certs.ca, "--sizes", "1", "--tls-min", "1.3")
    assert_fails(res, rc, "SSL", "a TLS 1.3-only client")
    res, rc = helper.py("echo", "--url", url, "--ca", certs.ca, "--sizes", "1", "--tls-max", "1.2",
      "--ciphers", "AES128-GCM-SHA256:AES256-GCM-SHA384")
    assert_fails(res, rc, "HANDSHAKE_FAILURE", "a client without ECDHE suites")
    helper.assert_ok(helper.py("echo", "--url", url, "--ca", certs.ca, "--sizes", "10"))
    assert.is_true(debug_tls_lines(srv) >= before + 3,
      "expected a DEBUG line naming TLS for each refused handshake:\n" .. srv:log())
  end)

  it("uses x25519 when offered, else secp256r1; no other group", function()
    local rc, out = s_client(srv.port, certs.ca, "-tls1_2", "-groups", "X25519:P-256")
    assert.are.equal(0, rc, out)
    assert.truthy(out:find("Verification: OK", 1, true), out)
    assert.truthy(out:find("Server Temp Key: X25519", 1, true), out)
    rc, out = s_client(srv.port, certs.ca, "-tls1_2", "-groups", "P-384:P-256")
    assert.are.equal(0, rc, out)
    assert.truthy(out:find("Server Temp Key: ECDH, prime256v1", 1, true), out)
    rc, out = s_client(srv.port, certs.ca, "-tls1_2", "-groups", "P-384")
    assert.are_not.equal(0, rc, out)
  end)

  it("drops a stalled TLS handshake within handshake_timeout (TLS counts); others unaffected",
    function()
      local seq = open_sequence(url, certs.ca, "before,during,after")
      local silent = helper.spawn(helper.raw_argv("--url", url, "--case", "tls_silent",
        "--slow-timeout", "8"))
      local half = helper.spawn(helper.raw_argv("--url", url, "--case", "tls_half_hello",
        "--slow-timeout", "8"))
      -- TLS done after 1.2 s, then an HTTP head that never ends: the timeout runs from
      -- connect, so the close comes at ~2 s, not at ~3.2 s
      local slow = helper.spawn(helper.raw_argv("--url", url, "--case", "tls_slow_then_head",
        "--tls-delay", "1.2", "--slow-timeout", "8"))
      helper.sleep(0.3)
      assert.are.equal("during", next_reply(seq))
      helper.assert_ok(helper.py("echo", "--url", url, "--ca", certs.ca, "--sizes", "100"))
      for _, p in ipairs { silent, half, slow } do
        local done, out = p:finish(12)
        assert.is_true(done, "raw client did not finish")
        local res = last_json(out)
        assert.is_true(res.ok, enc(res))
        -- echo_app.lua: handshake_timeout = 2
        assert.is_true(res.closed_after >= 1.5 and res.closed_after <= 2.9,
          res.case .. ": closed after " .. res.closed_after .. " s, handshake_timeout is 2 s: "
            .. enc(res))
      end
      assert.are.equal("after", next_reply(seq))
    end)

  it("closes garbage and plain HTTP on the TLS port at once; others are unaffected",
    function()
      local seq = open_sequence(url, certs.ca, "before,after")
      local before = debug_tls_lines(srv)
      for _, case in ipairs { "tls_garbage", "tls_plain_http" } do
        local res = helper.assert_ok(helper.raw(url, case))
        assert.is_true(res.closed_after < 1.5, case .. ": closed after " .. res.closed_after
          .. " s (should not wait for the 2 s handshake timeout)")
        assert.is_falsy(res.http_response, case .. ": the TLS port answered in plain HTTP")
      end
      assert.truthy(helper.wait_until(function() return debug_tls_lines(srv) >= before + 2 end, 2),
        "no DEBUG line saying why the TLS connections were closed:\n" .. srv:log())
      assert.are.equal("after", next_reply(seq))
      helper.assert_ok(helper.py("echo", "--url", url, "--ca", certs.ca, "--sizes", "100"))
      assert.is_true(srv:alive())
    end)
end)

describe("wss:// configured by the script #integration #lua", function()
  after_each(function() helper.cleanup() end)

  it("edgews.configure{ tls = relative paths, plain_listen } serves wss:// and ws://",
    function()
      local dir = helper.tmpdir()
      local certs = helper.certs()
      local mk = os.execute("mkdir -p " .. dir .. "/certs")
      assert(mk == 0 or mk == true)
      for _, f in ipairs { "chain.crt", "server.key" } do
        helper.write_file(dir .. "/certs/" .. f, helper.read_file(certs.dir .. "/" .. f))
      end
      helper.write_file(dir .. "/app.lua", helper.read_file(helper.app "tls_config_app.lua"))
      local srv = helper.start_server { app = dir .. "/app.lua", expect_tls = true,
                                        expect_plain = true }
      local res = helper.assert_ok(helper.py("echo", "--url", srv:url "/echo", "--ca", certs.ca,
        "--sizes", "0,126,65536"))
      assert.are.equal("TLSv1.2", res.tls.version)
      helper.assert_ok(helper.py("echo", "--url", srv:plain_url "/echo", "--sizes", "0,126,65536"))
    end)
end)

describe("SIGHUP certificate reload #integration #lua", function()
  local dir, old, srv, url, held

  -- Puts a certificate set's chain and key (or the given key bytes) where the server
  -- reads them (atomic renames).
  local function install(set, key_bytes)
    helper.replace_file(dir .. "/chain.crt", helper.read_file(set.chain))
    helper.replace_file(dir .. "/server.key", key_bytes or helper.read_file(set.key))
  end

  setup(function()
    dir = helper.tmpdir()
    old = helper.new_certs()
    install(old)
    srv = helper.start_server { app = helper.app "echo_app.lua",
                                tls = { chain = dir .. "/chain.crt", key = dir .. "/server.key" },
                                args = { "--no-watch" } }
    url = srv:url "/echo"
  end)
  teardown(function() helper.cleanup() end)

  local new
  it("new connections use a certificate from a new CA; an open one keeps working",
    function()
      local first
      held, first = open_sequence(url, old.ca, "one,two,three,four")
      assert.are.equal("one", first)
      new = helper.new_certs()
      install(new)
      assert.is_true(srv:signal("HUP"))
      assert.truthy(srv:wait_log("TLS certificate reloaded", 5), srv:log())
      helper.assert_ok(helper.py("echo", "--url", url, "--ca", new.ca, "--sizes", "0,126,65536"))
      if helper.node_ws_available() then
        helper.assert_ok(helper.node("echo", "--url", url, "--ca", new.ca, "--sizes", "0,126"))
      end
      local res, rc = helper.py("echo", "--url", url, "--ca", old.ca, "--sizes", "1")
      assert_fails(res, rc, "CERTIFICATE_VERIFY_FAILED", "a client trusting only the old CA")
      assert.are.equal("two", next_reply(held))
    end)

  it("a garbage key file is refused and the current certificate stays", function()
    assert(new, "depends on the previous test")
    local third = helper.new_certs()
    local log_len = #srv:log()
    install(third, "-----BEGIN EC PRIVATE KEY-----\nbm90IGEga2V5\n-----END EC PRIVATE KEY-----\n")
    assert.is_true(srv:signal("HUP"))
    assert.truthy(srv:wait_log("TLS reload failed, keeping the current certificate: [^\n]+", 5,
      log_len), srv:log())
    assert.is_true(srv:alive())
    helper.assert_ok(helper.py("echo", "--url", url, "--ca", new.ca, "--sizes", "0,126,65536"))
    local res, rc = helper.py("echo", "--url", url, "--ca", third.ca, "--sizes", "1")
    assert_fails(res, rc, "CERTIFICATE_VERIFY_FAILED", "a client trusting only the refused CA")
    assert.are.equal("three", next_reply(held))
  end)
end)

describe("graceful shutdown over TLS #integration #lua", function()
  after_each(function() helper.cleanup() end)

  it("SIGTERM closes wss:// clients with 1001 and exits 0", function()
    local certs = helper.certs()
    local srv = helper.start_server { app = helper.app "echo_app.lua", tls = certs,
                                      args = { "--drain-timeout", "5" } }
    local url = srv:url "/echo"
    local argvs = { helper.py_argv("hold", "--url", url, "--ca", certs.ca, "--seconds", "15",
      "--expect-code", "1001") }
    if helper.node_ws_available() then
      argvs[2] = helper.node_argv("hold", "--url", url, "--ca", certs.ca, "--seconds", "15",
        "--expect-code", "1001")
    end
    local procs = {}
    for i, argv in ipairs(argvs) do
      procs[i] = helper.spawn(argv)
      local ev = procs[i]:read_json(5)
      assert(ev and ev.event == "connected", "client did not connect: " .. procs[i]:stderr())
    end
    assert.is_true(srv:signal("TERM"))
    for _, p in ipairs(procs) do
      local done, out = p:finish(10)
      assert.is_true(done, "client still running 10 s after SIGTERM")
      local res = last_json(out)
      assert.are.equal(1001, res.close_code, out)
      assert.is_true(res.ok, out)
    end
    local exited, how, code = srv:wait(8)
    assert.is_true(exited, srv:log())
    assert.are.equal("exited", how)
    assert.are.equal(0, code, srv:log())
  end)
end)
