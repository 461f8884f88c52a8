-- Connections are bare sockets on one inner epoll per worker loop (core/net/poller.c),
-- read with read(2) and written with sendmsg(2); EPOLLOUT is asked for only while the
-- kernel refuses bytes. What the other specs would not notice if the poller went
-- wrong (tests/clients/poller_client.py, spec/apps/poller_app.lua):
--   * more sockets ready at once than one wake-up takes (1,100 > EWS_POLLER_BATCH,
--     made ready together while the loop is held busy): every one is served, each on
--     its own connection, and when all of them hang up at once every one is freed;
--   * slow readers with small windows, several at a time, over ws:// and wss://: a
--     6 MiB message cannot fit the socket (the kernel's send buffer is at most 4 MiB
--     here and the client's window 64 KiB), so the write stops at EAGAIN and resumes
--     from EPOLLOUT, more than once; every byte arrives, in order, and the connection
--     still works both ways afterwards.
local helper = require "spec.helper"

local function health_connections(c, srv)
  local h = c:call { op = "http", url = ("http://127.0.0.1:%d/health"):format(srv.port) }
  return h.json and h.json.connections
end

describe("the connections' poller #integration", function()
  local c
  setup(function() c = helper.app_client() end)
  teardown(function() helper.cleanup() end)

  it("serves more ready sockets than one wake-up takes, then frees them all", function()
    local srv = helper.start_server { app = helper.app "poller_app.lua", workers = 1 }
    local res, rc, out, err = helper.run({ helper.PYTHON, helper.CLIENTS .. "/poller_client.py",
      "many", "--url", srv:url "/poll", "--n", "1100", "--size", "300" }, 90)
    helper.assert_ok(res, rc, out, err)
    assert.are.equal(1099, res.echoed)
    -- all dropped at once: each hang-up is seen and each connection freed (the
    -- request asking is not counted)
    local n
    assert.is_truthy(helper.wait_until(function()
      n = health_connections(c, srv)
      return n == 0
    end, 30), "connections left: " .. tostring(n))
    srv:stop()
  end)

  for _, scheme in ipairs { "ws", "wss" } do
    it("slow readers over " .. scheme .. ":// get every byte after EAGAIN and EPOLLOUT", function()
      local certs = scheme == "wss" and helper.certs() or nil
      local srv = helper.start_server { app = helper.app "poller_app.lua", workers = 1,
        tls = certs }
      local argv = { helper.PYTHON, helper.CLIENTS .. "/poller_client.py", "slow",
        "--url", srv:url "/poll", "--clients", "3", "--rcvbuf", "65536" }
      if certs then
        argv[#argv + 1] = "--ca"
        argv[#argv + 1] = certs.ca
      end
      local res, rc, out, err = helper.run(argv, 150)
      helper.assert_ok(res, rc, out, err)
      assert.are.equal(3 * 9 * 1048576, res.bytes)
      srv:stop()
    end)
  end
end)
