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

  -- Chromium fails a connection whose 101 selects none of the protocols it offered
  -- (RFC 6455 allows that; browsers do not), so the server selects one or says 400.
  it("subprotocols: an app without protocols selects the first non-token entry; bearer.<token> auth works; no match is a 400", function()
    local srv = helper.start_server { app = helper.app "protocols_app.lua", workers = 1 }
    local c = helper.app_client()
    local tok = c:call({ op = "jwt", secret = "browser-secret",
                         claims = { sub = "zoe", exp = os.time() + 600 } }).token
    local cases = {
      { name = "plain_list", url = srv:url "/plain", protocols = { "chat", "superchat" } },
      { name = "plain_after_token", url = srv:url "/plain", protocols = { "bearer.abc", "graphql-ws" } },
      { name = "plain_none", url = srv:url "/plain" },
      { name = "plain_token_only", url = srv:url "/plain", protocols = { "bearer.abc" } },
      { name = "listed_client_order", url = srv:url "/listed", protocols = { "x", "chat.v1", "chat.v2" } },
      { name = "listed_no_match", url = srv:url "/listed", protocols = { "mqtt" } },
      { name = "jwt_subprotocol", url = srv:url "/jwt", protocols = { "bearer." .. tok, "app.v1" } },
    }
    local res, rc = helper.run({ "node", helper.CLIENTS .. "/browser_protocols.js",
      "--cases", cjson.encode(cases) }, 90)
    assert.are.equal(0, rc, cjson.encode(res))
    assert.are.same({ opened = true, protocol = "chat", message = { protocol = "chat", user = "" } },
      { opened = res.plain_list.opened, protocol = res.plain_list.protocol, message = res.plain_list.message })
    assert.are.equal("graphql-ws", res.plain_after_token.protocol)
    assert.are.same({ protocol = "graphql-ws", user = "" }, res.plain_after_token.message)
    assert.are.same({ protocol = "", user = "" }, res.plain_none.message)
    assert.are.equal("chat.v1", res.listed_client_order.protocol)
    assert.are.same({ protocol = "chat.v1", user = "" }, res.listed_client_order.message)
    assert.are.same({ protocol = "app.v1", user = "zoe" }, res.jwt_subprotocol.message)
    -- refused before the upgrade: the browser reports 1006 and never opens
    for _, k in ipairs { "plain_token_only", "listed_no_match" } do
      assert.is_false(res[k].opened, k)
      assert.are.equal(1006, res[k].code, k)
    end
    -- what the browser could not show: the 400 and its reason
    for _, case in ipairs { { "/plain", { "bearer.abc" } }, { "/listed", { "mqtt" } } } do
      local r = c:call { op = "open", id = case[1], url = srv:url(case[1]), protocols = case[2] }
      assert.are.equal(400, r.status, cjson.encode(r))
      assert.are.equal("http_protocol", r.json.error)
    end
  end)
end)
