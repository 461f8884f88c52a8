-- Large messages leave without a copy into the write queue when nothing is queued
-- before them in the loop iteration (net/conn_tx.c): a handler's run of a 6 MiB message
-- (more than the kernel takes while the client, with a small receive window, is not
-- reading: written in part, the rest queued) followed by small and large ones (queued
-- behind it) arrives complete, byte for byte and in order; echoes of large and
-- fragmented messages come back exact (spec/apps/burst_app.lua, spec/apps/burst_run.lua).
local helper = require "spec.helper"
local cjson = require "cjson"

-- The run burst_app.lua sends (the same module).
local run = require "spec.apps.burst_run"
local SIZES, body = run.SIZES, run.body

describe("large sends #integration", function()
  local srv, c
  setup(function()
    srv = helper.start_server { app = helper.app "burst_app.lua", workers = 1 }
    c = helper.app_client()
  end)
  teardown(function() helper.cleanup() end)

  it("a burst of small and large messages arrives exact and in order", function()
    for round = 1, 1 do
      local id = "b" .. round
      -- a 64 KiB receive window: the kernel soon takes only part of a large message
      local r = c:call { op = "open", id = id, url = srv:url "/burst", rcvbuf = 65536 }
      assert.are.equal(101, r.status, cjson.encode(r))
      c:call { op = "send", id = id, data = "burst" }
      -- nothing is read until the whole run was queued or written
      r = c:call { op = "recv", id = id, n = #SIZES, timeout = 20 }
      assert.are.equal(#SIZES, #r.messages)
      for i, size in ipairs(SIZES) do
        local got = r.messages[i]
        assert.are.equal(size, #got, "message " .. i)
        assert.is_true(got == body(i, size), "message " .. i .. " differs")
        assert.are.equal(i % 2 == 0, r.binary[i], "message " .. i .. " opcode")
      end
      c:call { op = "close", id = id }
    end
  end)

  it("echoes large messages exact, whole and fragmented (python websockets, node ws)", function()
    local url = srv:url "/burst"
    helper.assert_ok(helper.py("echo", "--url", url, "--sizes", "4095,4096,16384,65536,1048576"))
    helper.assert_ok(helper.py("echo", "--url", url, "--sizes", "4096,16384,1048576", "--binary"))
    helper.assert_ok(helper.py("fragmented", "--url", url, "--fragments", "5", "--size", "16384"))
    helper.assert_ok(helper.py("fragmented", "--url", url, "--binary", "--fragments", "9",
      "--size", "1048576"))
    helper.require_node_ws()
    helper.assert_ok(helper.node("echo", "--url", url, "--sizes", "4096,16384,1048576", "--binary"))
  end)
end)
