-- A real browser: headless Chromium (Debian's, driven by playwright-core through
-- tests/clients/browser_client.js) against the chat example, with its own
-- WebSocket implementation: rooms, a reconnect with {since_offset, epoch} that
-- replays exactly what was missed, a direct message waiting for its user; and
-- permessage-deflate as the browser negotiates it (shared and dedicated
-- compressors, a 1 KiB window), echoing text with multi-byte UTF-8 and binary of
-- 0 B to 200 KB unchanged.
local helper = require "spec.helper"
local cjson = require "cjson"

describe("headless Chromium #integration #browser", function()
  teardown(function() helper.cleanup() end)

  it("chat with recovery and notifications; permessage-deflate echoes", function()
    local chat = helper.start_server { app = helper.ROOT .. "/examples/chat/app.lua", workers = 2,
      args = { "--data", helper.tmpdir(), "--no-watch", "--drain-timeout", "0.5" } }
    local echo = helper.start_server { app = helper.app "deflate_app.lua", workers = 2 }
    local res, rc = helper.run({ "node", helper.CLIENTS .. "/browser_client.js",
      "--url", chat:url "/chat", "--echo-base", echo:url "" }, 90)
    assert.are.equal(0, rc, cjson.encode(res))
    assert.matches("HeadlessChrome", res.userAgent)
    assert.are.equal("one", res.first)
    assert.are.same({ "two", "three", "four" }, res.after_reconnect)
    assert.are.same({ 2, 3, 4 }, res.offsets)
    assert.are.same({ 2, false }, { res.replayed, res.gap })
    assert.is_false(res.dm_delivered_at_once)
    assert.are.same({ from = "ada", text = "while you were away" }, res.notification)
    assert.are.same({ extensions = "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
                      messages = 12, identical = true }, res.echo["/shared"])
    assert.are.same({ extensions = "permessage-deflate", messages = 12, identical = true },
      res.echo["/dedicated"])
    assert.are.same({ extensions = "permessage-deflate; server_max_window_bits=10", messages = 12,
                      identical = true }, res.echo["/dedicated-1k"])
  end)
end)
