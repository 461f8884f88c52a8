-- Hand-crafted frames that real clients never send (tests/clients/raw_client.py, one
-- case per `it`; the expected close code of each case is in the client's table).
-- RFC 6455 sections covered:
--   5.1           client frames must be masked (unmasked -> 1002)
--   5.2           RSV1/2/3 without an extension, reserved opcodes 0x3-0x7 / 0xB-0xF,
--                 64-bit length with the top bit set (-> 1002)
--   5.4           fragmentation rules: continuation without a start, a new data
--                 frame inside a fragmented message, control frames between fragments
--   5.5           control frames: payload <= 125, never fragmented
--   5.5.1         close payload of 1 byte, close answered (code echoed), empty close
--   5.5.2, 5.5.3  ping with 125 bytes answered by a pong
--   7.1.5, 7.4.1, 7.4.2  valid and invalid status codes in a client's close frame
--   7.1.7, 7.2.1  failing the connection: close frame with the code, then TCP close
--   8.1           invalid UTF-8 in text (also across fragments, fail-fast) and in a
--                 close reason (-> 1007)
--   10.4          frame / message over the configured size, 2^62 length header
--                 refused immediately (-> 1009)
local helper = require "spec.helper"
describe("protocol errors #integration", function()
  local srv, url

  setup(function()
    srv = helper.start_server { app = helper.app "echo_app.lua" }
    url = srv:url "/echo"
  end)
  teardown(function() helper.cleanup() end)
  after_each(function() helper.cleanup_clients() end)

  -- one `it` per case of `raw_client.py --list` (the table lives in the client)
  for _, c in ipairs(helper.raw_cases("frames")) do
    it(("%s -> %s (%s)"):format(c.case, tostring(c.expected), c.description), function()
      local res, rc, out, err = helper.raw(url, c.case, "--max-size", tostring(2 * 1024 * 1024))
      helper.assert_ok(res, rc, out, err)
      if c.case == "length_2_62" or c.case == "length_top_bit" then
        -- refused from the header alone, without waiting for data that never comes
        assert.is_true(res.close_elapsed < 2, "close came after " .. tostring(res.close_elapsed))
      end
    end)
  end

  it("survives every case above: /health still answers and echo still works", function()
    helper.assert_ok(helper.raw(url, "health"))
    helper.assert_ok(helper.py("echo", "--url", url, "--sizes", "0,126,65536"))
    assert.is_true(srv:alive(), "server exited:\n" .. srv:log())
  end)
end)
