-- client/edgews.js in headless Chromium (tests/clients/client_browser.js, the browser's
-- own WebSocket): connect, request and subscribe against the chat example; permessage-
-- deflate as Chromium negotiates it, a subscription across a server-side close, and a
-- token as a bearer.<token> subprotocol against spec/apps/client_app.lua.
local helper = require "spec.helper"
local cjson = require "cjson"

describe("client/edgews.js in headless Chromium #integration #browser #client", function()
  teardown(function() helper.cleanup() end)

  it("connects, requests and subscribes; deflate; reconnects and resubscribes; bearer subprotocol", function()
    local chat = helper.start_server { app = helper.ROOT .. "/examples/chat/app.lua", workers = 2,
      args = { "--data", helper.tmpdir(), "--no-watch", "--drain-timeout", "0.5" } }
    local app = helper.start_server { app = helper.app "client_app.lua", workers = 1 }
    local c = helper.app_client()
    local token = c:call({ op = "jwt", secret = "client-secret",
                           claims = { sub = "zoe", exp = os.time() + 600 } }).token
    local res, rc = helper.run({ helper.NODE, helper.CLIENTS .. "/client_browser.js",
      "--chat", chat:url "/chat", "--app", app:url "", "--token", token }, 90)
    assert.are.equal(0, rc, cjson.encode(res))
    assert.matches("HeadlessChrome", res.userAgent)
    assert.are.same({}, res.pageErrors)
    assert.are.equal(1, res.readyState)
    assert.are.same({ "ada", "bob" }, res.who)
    assert.are.same({ offset = 1, text = "hello from bob", user = "bob" }, res.pub)
    assert.are.equal("unknown_type", res.unknown)
    assert.are.equal(2, res.closingState)
    assert.are.same({ state = 3, code = 1000, willReconnect = false }, res.closed)
    assert.are.equal("permessage-deflate; server_no_context_takeover; client_no_context_takeover", res.extensions)
    assert.is_true(res.bigEcho)
    -- closed with 1013: backoff (random = 1: the first step, 50 ms), then the
    -- resubscribe from offset 1 (nothing to replay), then offset 2 live
    assert.are.same({ { "close", 1013, "backoff" }, { "reconnecting", 50 } }, res.events)
    assert.are.same({ offset = 1, replayed = 0 }, res.resubscribed)
    assert.are.same({ 1, 2 }, res.offsets)
    assert.are.same({ protocol = "app.v1", user = "zoe" }, res.jwt)
  end)
end)
