-- The browser client library (client/edgews.js) under Node against the real server:
-- tests/clients/client_scenarios.mjs (the `ws` package as the WebSocket) against
-- spec/apps/client_app.lua and examples/chat: request/reply (ids, error codes,
-- timeouts, a disconnect), the offline queue's bound, the reconnect policy per close
-- code, JWT refresh timing (query, bearer subprotocol, first message) and the 4401 /
-- 4403 / HTTP 401 paths, and subscriptions that survive kill -9 and a SIGTERM drain
-- of the chat example (restarted on the same port and data directory).
local helper = require "spec.helper"
local cjson = require "cjson"

local SCENARIOS = helper.CLIENTS .. "/client_scenarios.mjs"

describe("client/edgews.js under Node #integration #client", function()
  local srv
  setup(function()
    helper.require_node_ws()
    srv = helper.start_server { app = helper.app "client_app.lua", workers = 1 }
  end)
  teardown(function() helper.cleanup() end)

  local function scenario(name, timeout)
    local res, rc, out, err = helper.run({ helper.NODE, SCENARIOS, name, "--base", srv:url "" }, timeout or 60)
    assert.are.equal(0, rc, helper.describe(res, rc, out, err))
    assert.is_true(res.ok)
    return res
  end

  it("requests: matched by id, rejected with the server's error code, timeouts, a disconnect; deflate", function()
    local r = scenario "requests"
    assert.are.same({ nope = "unknown_type", boom = "handler_error", close = "validation_failed" }, r.errs)
    assert.are.equal("timeout", r.timeout)
    assert.are.equal("disconnected", r.lost)
    assert.matches("permessage%-deflate", r.extensions)
  end)

  it("offline queue: bounded; 'reject' refuses the newest, 'drop-oldest' drops the oldest; FIFO on reconnect", function()
    local r = scenario "queue"
    assert.are.same({ "r1", "r2", "r3" }, r.reject.delivered)
    assert.are.same({ true, true, true, false, false }, r.reject.accepted)
    assert.are.same({ "d3", "d4", "d5" }, r["drop-oldest"].delivered)
    assert.are.equal("queue_full", r["drop-oldest"].request)
  end)

  it("close codes: stop on 1000, immediate on 1001, backoff on 1008/1011/1013/4xxx, a new token after 4401/4403", function()
    local r = scenario "closecodes"
    assert.are.same({ "stop", false }, { r["1000"].decision, r["1000"].willReconnect })
    assert.are.same({ "immediate", 0, true }, { r["1001"].decision, r["1001"].delay, r["1001"].reopened })
    for _, code in ipairs { "1008", "1011", "1013", "4000", "4408", "4429" } do
      assert.are.same({ "backoff", 100, true }, { r[code].decision, r[code].delay, r[code].reopened }, code)
    end
    assert.are.same({ reasons = { "connect", "rejected" }, sockets = 2 }, r["4401"])
    assert.are.same({ reasons = { "connect", "expired" }, sockets = 2 }, r["4403"])
  end)

  it("tokens: refreshed before expiry (query, bearer subprotocol, first message); 4401, 4403 and HTTP 401 wait for a new token", function()
    local r = scenario("auth", 90)
    for _, mode in ipairs { "query", "protocol", "message" } do
      assert.is_true(r[mode].refreshes >= 2, mode .. ": " .. cjson.encode(r[mode]))
      for _, t in ipairs(r[mode].timing) do
        assert.is_true(t.refreshedAfter >= t.lifetime / 2 and t.refreshedAfter < t.lifetime, cjson.encode(t))
      end
    end
    assert.are.same({ code = 4401, user = "ann", sockets = 2 }, r.first_message)
    assert.are.same({ code = 4403, decision = "auth", reopened = true }, r.expired)
    assert.are.same({ sockets = 2 }, r.http401)
  end)

  it("subscriptions survive kill -9 and a SIGTERM drain of examples/chat: every message once, in order", function()
    local dir = helper.tmpdir()
    local chat = helper.ROOT .. "/examples/chat/app.lua"
    local args = { "--data", dir, "--no-watch", "--drain-timeout", "0.5" }
    local chat_srv = helper.start_server { app = chat, workers = 2, args = args }
    local port = chat_srv.port
    local function restart()
      local a = { "--listen", "127.0.0.1:" .. port }
      for _, x in ipairs(args) do a[#a + 1] = x end
      chat_srv = helper.start_server { app = chat, workers = 2, args = a }
    end
    local p = helper.spawn({ helper.NODE, SCENARIOS, "restart", "--url", chat_srv:url "/chat" }, { stdin = "pipe" })
    local function expect_step(name)
      local msg = p:read_json(30)
      assert.is_table(msg, "no step from the client; stderr: " .. p:stderr())
      assert.are.equal(name, msg.step, cjson.encode(msg))
    end
    expect_step "kill"
    chat_srv:signal "KILL"
    assert.is_true(chat_srv:wait(5))
    restart()
    p:write("restarted\n")
    expect_step "term"
    chat_srv:signal "TERM"
    local exited, how, code = chat_srv:wait(10)
    assert.are.same({ true, "exited", 0 }, { exited, how, code })
    restart()
    p:write("restarted\n")
    local res = p:read_json(30)
    assert.is_table(res, "no result; stderr: " .. p:stderr())
    assert.is_true(res.ok, cjson.encode(res))
    assert.are.same({ 1, 2, 3, 4, 5, 6, 7, 8 }, res.offsets)
    assert.are.same({ "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8" }, res.texts)
    assert.are.equal(1006, res.close1)
    assert.are.same({ code = 1001, decision = "immediate" }, res.closeTerm)
    assert.are.equal(0, res.termDelays[1])
    -- the recovery after kill -9: since_offset 3 of the same epoch, 3 replayed, no gap
    local recovered
    for _, j in ipairs(res.joins) do if j.since_offset == 3 then recovered = j end end
    assert.are.same({ since_offset = 3, epoch = res.epoch, replayed = 3, gap = false }, recovered)
  end)
end)
