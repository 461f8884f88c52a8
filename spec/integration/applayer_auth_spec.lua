-- Application layer, authentication, end to end (spec/apps/applayer_auth_app.lua, driven
-- by tests/clients/app_client.py, which also makes the JWTs):
--   * before the upgrade: JWT HS256 in "Authorization: Bearer", in ?token=, and as a
--     "bearer.<token>" Sec-WebSocket-Protocol entry next to a real protocol (the 101
--     selects the real one); API key in x-api-key and ?api_key= with a Lua validator that
--     waits; a custom validator that waits, one that outlasts the auth timeout (401
--     auth_timeout) and one that raises; failures are 401 (403 when the validator says
--     so) with a JSON body and no upgrade; JWT attacks (alg none, HS512 on an HS256 app,
--     tampered payload, wrong key, expired, nbf in the future, wrong iss/aud); ctx.user
--     in later middleware and handlers
--   * first-message auth (mode = "message"): auth:ok, 4401 for a bad token or a non-auth
--     first message, 4408 when nothing comes in time
--   * token refresh: auth:refreshed keeps the connection past the first token's exp; an
--     unrefreshed connection is closed with 4403 at exp; a refresh to an earlier exp
--     moves the deadline; a refresh for another subject is refused with an error reply
--     and the connection stays; refreshes count against the rate limit
--   * long-lived tokens (1 and 10 years) work before the upgrade, by first message and
--     in a refresh; edgews.timer/every/sleep take delays of years (and math.huge)
--   * leeway applies to the expiry deadline (exp + leeway), not only at the upgrade
--   * a token without `sub` is refused (401 / 4401) unless the app's user function
--     gives an id
--   * until first-message auth succeeds, messages are capped at auth.max_message_size
--     (1009 from the frame header, before the payload; inflated size too), and the
--     first message is bounded by max_json_size; after auth:ok the app's limit applies
local helper = require "spec.helper"
local cjson = require "cjson"

local SECRET = "spec-secret"

describe("application layer: authentication #integration #lua", function()
  local srv, c
  local app_path = helper.app "applayer_auth_app.lua"

  setup(function()
    srv = helper.start_server { app = app_path, workers = 1,
      args = { "--drain-timeout", "0.5" } }
    c = helper.app_client()
  end)
  teardown(function() helper.cleanup() end)

  local function url(path) return srv:url(path) end

  -- A JWT: claims default to a valid token for alice on the /jwt app; opts are the
  -- client's jwt fields (alg, header, sign_alg, unsigned, payload, secret).
  local function token(claims, opts)
    local t = { op = "jwt", secret = SECRET, claims = {
      sub = "alice", iss = "edgews-spec", aud = "spec-clients", exp = os.time() + 60 } }
    for k, v in pairs(claims or {}) do t.claims[k] = v end
    for k, v in pairs(opts or {}) do t[k] = v end
    return c:call(t).token
  end

  local n = 0
  local function open(path, o)
    o = o or {}
    n = n + 1
    local id = o.id or ("a" .. n)
    local t0 = helper.now()
    local r = c:call { op = "open", id = id, url = url(path), headers = o.headers,
                       protocols = o.protocols, timeout = o.timeout }
    r.id, r.elapsed = id, helper.now() - t0
    return r
  end

  local function ask(id, msg, timeout)
    c:call { op = "send", id = id, data = cjson.encode(msg) }
    local r = c:call { op = "recv", id = id, n = 1, timeout = timeout or 3 }
    assert.are.equal(1, #r.messages, "no reply: " .. cjson.encode(r))
    return r.json[1]
  end

  local function assert_upgraded(r)
    assert.are.equal(101, r.status, "expected 101, got " .. cjson.encode(r))
    assert.is_true(r.accept_ok)
  end

  -- status and JSON body of a refused upgrade; no 101, no connection kept
  local function assert_refused(r, status, err, message)
    assert.are.equal(status, r.status, "got " .. cjson.encode(r))
    assert.is_nil(r.headers["sec-websocket-accept"])
    assert.are.equal("table", type(r.json), "body is not JSON: " .. tostring(r.body))
    assert.are.equal(err, r.json.error, cjson.encode(r.json))
    if message then assert.are.equal(message, r.json.message) end
    assert.are.equal("application/json", r.headers["content-type"])
    for _, x in ipairs(c:call({ op = "open_ids" }).ids) do
      assert.are_not.equal(r.id, x, "the refused connection is open")
    end
  end

  describe("before the upgrade: JWT", function()
    it("in Authorization: Bearer; ctx.user reaches middleware and handlers", function()
      local r = open("/jwt", { headers = { Authorization = "Bearer " .. token() } })
      assert_upgraded(r)
      local who = ask(r.id, { type = "whoami" })
      assert.are.equal("alice", who.user)
      assert.are.equal("alice", who.sub)
      assert.are.equal("alice", who.seen_by_mw)
      -- and on a later message too
      assert.are.equal("alice", ask(r.id, { type = "whoami" }).user)
    end)

    it("in the query string (?token=)", function()
      local r = open("/jwt?x=1&token=" .. token { sub = "bob" })
      assert_upgraded(r)
      assert.are.equal("bob", ask(r.id, { type = "whoami" }).user)
    end)

    it("as a Sec-WebSocket-Protocol entry bearer.<token>; the real protocol is selected", function()
      local r = open("/jwt", { protocols = { "chat.v1", "bearer." .. token { sub = "carol" } } })
      assert_upgraded(r)
      assert.are.equal("chat.v1", r.protocol)
      local who = ask(r.id, { type = "whoami" })
      assert.are.equal("carol", who.user)
      assert.are.equal("chat.v1", who.protocol)
    end)

    it("the token entry may come first in the offer; it is never selected", function()
      local r = open("/jwt", { protocols = { "bearer." .. token { sub = "dave" }, "chat.v1" } })
      assert_upgraded(r)
      assert.are.equal("chat.v1", r.protocol)
      assert.are.equal("dave", ask(r.id, { type = "whoami" }).user)
    end)

    it("no credentials -> 401 with a JSON body, no upgrade", function()
      assert_refused(open("/jwt"), 401, "unauthorized", "missing credentials")
    end)

    it("Authorization without the Bearer scheme -> 401", function()
      assert_refused(open("/jwt", { headers = { Authorization = "Basic " .. token() } }), 401,
        "unauthorized", "missing credentials")
    end)

    local attacks = {
      { "alg none, no signature", function()
          return token(nil, { header = { alg = "none", typ = "JWT" }, unsigned = true }) end,
        "malformed" },
      { "alg none with a valid HS256 signature", function()
          return token(nil, { header = { alg = "none", typ = "JWT" }, sign_alg = "HS256" }) end,
        "unsupported algorithm" },
      { "HS512 token on an HS256 app (same secret)", function()
          return token(nil, { alg = "HS512" }) end, "unsupported algorithm" },
      { "HS256 header, HS512 signature", function()
          return token(nil, { alg = "HS256", sign_alg = "HS512" }) end, "bad signature" },
      { "tampered payload (sub changed after signing)", function()
          return token(nil, { payload = { sub = "admin", iss = "edgews-spec", aud = "spec-clients",
            exp = os.time() + 60 } }) end, "bad signature" },
      { "signed with another secret", function()
          return token(nil, { secret = "not-the-secret" }) end, "bad signature" },
      { "expired", function() return token { exp = os.time() - 5 } end, "expired" },
      { "nbf in the future", function() return token { nbf = os.time() + 120 } end, "not yet valid" },
      { "wrong iss", function() return token { iss = "someone-else" } end, "invalid issuer" },
      { "no iss", function() return token { iss = cjson.null } end, "invalid issuer" },
      { "wrong aud", function() return token { aud = "other-clients" } end, "invalid audience" },
      { "not a JWT", function() return "abc.def" end, "malformed" },
    }
    for _, a in ipairs(attacks) do
      it("rejects " .. a[1] .. " -> 401 " .. a[3], function()
        local tok = a[2]()
        assert_refused(open("/jwt", { headers = { Authorization = "Bearer " .. tok } }), 401,
          "unauthorized", a[3])
        -- the same token in the query string and as a subprotocol entry
        assert_refused(open("/jwt?token=" .. tok), 401, "unauthorized", a[3])
        assert_refused(open("/jwt", { protocols = { "chat.v1", "bearer." .. tok } }), 401,
          "unauthorized", a[3])
      end)
    end
  end)

  describe("before the upgrade: API key and custom validators", function()
    it("API key in x-api-key, checked by a Lua validator that waits", function()
      local r = open("/key", { headers = { ["X-Api-Key"] = "key-good" } })
      assert_upgraded(r)
      local who = ask(r.id, { type = "whoami" })
      assert.are.equal("key-user", who.user)
      assert.are.equal("/key", who.name) -- the validator saw the request
    end)

    it("API key in ?api_key=", function()
      local r = open("/key?api_key=key-good")
      assert_upgraded(r)
      assert.are.equal("key-user", ask(r.id, { type = "whoami" }).user)
    end)

    it("an unknown key -> 401, a key the validator refuses with 403 -> 403, none -> 401", function()
      assert_refused(open("/key", { headers = { ["x-api-key"] = "key-bad" } }), 401, "unauthorized",
        "unknown key")
      assert_refused(open("/key?api_key=key-revoked"), 403, "forbidden", "key revoked")
      assert_refused(open("/key"), 401, "unauthorized", "missing credentials")
    end)

    it("a custom validator that waits (edgews.sleep 0.2 s) lets the upgrade through", function()
      local r = open("/custom?name=n1", { headers = { ["x-user"] = "erin" } })
      assert_upgraded(r)
      assert.is_true(r.elapsed >= 0.19, "elapsed " .. r.elapsed)
      local who = ask(r.id, { type = "whoami" })
      assert.are.equal("erin", who.user)
      assert.are.equal("n1", who.name)
    end)

    it("a custom validator refuses with 403 or 401", function()
      assert_refused(open("/custom", { headers = { ["x-deny"] = "1" } }), 403, "forbidden", "denied")
      assert_refused(open("/custom"), 401, "unauthorized", "who are you")
    end)

    it("the validator's message reaches the client intact (quotes, backslash, control bytes, UTF-8)", function()
      assert_refused(open("/custom", { headers = { ["x-odd"] = "1" } }), 401, "unauthorized",
        'say "please" \\ then\n\t\195\169')
    end)

    it("a validator that outlasts the auth timeout -> 401 auth_timeout", function()
      local r = open("/slow")
      assert_refused(r, 401, "auth_timeout")
      assert.is_true(r.elapsed >= 0.25 and r.elapsed < 1.5, "elapsed " .. r.elapsed)
    end)

    it("a validator that raises -> 401, the error is logged with file:line", function()
      assert_refused(open("/broken"), 401, "unauthorized")
      assert.is_truthy(srv:wait_log("applayer_auth_app%.lua:%d+: validator exploded", 3),
        "no file:line in the log:\n" .. srv:log())
    end)
  end)

  describe("first-message auth (mode = message)", function()
    it('{"type":"auth","token":...} -> auth:ok, then the handlers see ctx.user', function()
      local r = open("/msg")
      assert_upgraded(r)
      local ok = ask(r.id, { type = "auth", token = token { sub = "frank" } })
      assert.are.same({ type = "auth:ok", user = "frank" }, ok)
      local who = ask(r.id, { type = "whoami" })
      assert.are.equal("frank", who.user)
      assert.are.equal("frank", who.seen_by_mw)
    end)

    it("a bad token -> close 4401", function()
      local r = open("/msg")
      assert_upgraded(r)
      c:call { op = "send", id = r.id, data = cjson.encode { type = "auth",
        token = token({ sub = "frank" }, { secret = "wrong" }) } }
      local cl = c:call { op = "wait_close", id = r.id, timeout = 3 }
      assert.are.equal(4401, cl.code, cjson.encode(cl))
      assert.are.equal(0, #cl.messages)
    end)

    it("an expired token -> close 4401", function()
      local r = open("/msg")
      c:call { op = "send", id = r.id, data = cjson.encode { type = "auth",
        token = token { exp = os.time() - 10 } } }
      assert.are.equal(4401, c:call({ op = "wait_close", id = r.id, timeout = 3 }).code)
    end)

    it("a first message that is not an auth message -> close 4401", function()
      local r = open("/msg")
      c:call { op = "send", id = r.id, data = cjson.encode { type = "whoami" } }
      local cl = c:call { op = "wait_close", id = r.id, timeout = 3 }
      assert.are.equal(4401, cl.code, cjson.encode(cl))
      assert.are.equal(0, #cl.messages, "the handler ran before auth: " .. cjson.encode(cl))
    end)

    it("no auth message within the timeout (0.6 s) -> close 4408", function()
      local r = open("/msg")
      assert_upgraded(r)
      local cl = c:call { op = "wait_close", id = r.id, timeout = 4 }
      assert.are.equal(4408, cl.code, cjson.encode(cl))
      assert.is_true(cl.elapsed >= 0.4 and cl.elapsed < 2.5, "elapsed " .. cl.elapsed)
    end)

    it("a token without sub -> close 4401 \"missing subject\"", function()
      local r = open("/msg")
      assert_upgraded(r)
      c:call { op = "send", id = r.id, data = cjson.encode { type = "auth", token = token { sub = cjson.null } } }
      local cl = c:call { op = "wait_close", id = r.id, timeout = 3 }
      assert.are.equal(4401, cl.code, cjson.encode(cl))
      assert.are.equal("authentication failed: missing subject", cl.reason)
      assert.are.equal(0, #cl.messages, cjson.encode(cl))
    end)

    it("a connection that authenticated in time is not closed by the auth timeout", function()
      local r = open("/msg")
      assert.are.equal("auth:ok", ask(r.id, { type = "auth", token = token() }).type)
      helper.sleep(0.8)
      assert.are.equal("alice", ask(r.id, { type = "whoami" }).user)
    end)
  end)

  describe("token refresh and expiry", function()
    it("auth:refresh keeps a connection past the first exp; without it 4403 at exp", function()
      local exp = os.time() + 2
      local a = open("/jwt", { headers = { Authorization = "Bearer " .. token { exp = exp } } })
      local b = open("/jwt", { headers = { Authorization = "Bearer " .. token { exp = exp } } })
      assert_upgraded(a)
      assert_upgraded(b)
      local new_exp = os.time() + 60
      local rr = ask(a.id, { type = "auth:refresh", id = "r1", token = token { exp = new_exp } })
      assert.are.same({ type = "auth:refreshed", exp = new_exp, id = "r1" }, rr)
      -- b is closed with 4403 when exp passes
      local cl = c:call { op = "wait_close", id = b.id, timeout = 5 }
      assert.are.equal(4403, cl.code, cjson.encode(cl))
      assert.are.equal("token expired", cl.reason)
      local now = c:call({ op = "now" }).time
      assert.is_true(now >= exp - 0.1, ("closed %.2f s before exp"):format(exp - now))
      -- a outlives its first token
      helper.sleep(0.5)
      local who = ask(a.id, { type = "whoami" })
      assert.are.equal("alice", who.user)
      assert.are.equal(new_exp, who.exp)
    end)

    it("a refresh for another subject is refused with an error reply; the connection stays", function()
      local a = open("/jwt", { headers = { Authorization = "Bearer " .. token() } })
      assert_upgraded(a)
      local e = ask(a.id, { type = "auth:refresh", id = 5, token = token { sub = "mallory" } })
      assert.are.equal("error", e.type)
      assert.are.equal("auth_failed", e.error)
      assert.are.equal(5, e.id)
      assert.are.equal("alice", ask(a.id, { type = "whoami" }).user)
      -- an invalid token is refused the same way
      e = ask(a.id, { type = "auth:refresh", id = 6, token = token { exp = os.time() - 1 } })
      assert.are.equal("auth_failed", e.error)
      assert.are.equal(6, e.id)
      assert.are.equal("alice", ask(a.id, { type = "whoami" }).user)
    end)

    it("a refresh to an earlier exp moves the deadline: 4403 at the new exp", function()
      local a = open("/jwt", { headers = { Authorization = "Bearer " .. token { exp = os.time() + 300 } } })
      assert_upgraded(a)
      local exp = os.time() + 2
      local rr = ask(a.id, { type = "auth:refresh", token = token { exp = exp } })
      assert.are.same({ type = "auth:refreshed", exp = exp }, rr)
      local cl = c:call { op = "wait_close", id = a.id, timeout = 6 }
      assert.are.equal(4403, cl.code, cjson.encode(cl))
      assert.are.equal("token expired", cl.reason)
      local now = c:call({ op = "now" }).time
      assert.is_true(now >= exp - 0.1, ("closed %.2f s before exp"):format(exp - now))
    end)

    it("refreshes count against the rate limit (3 burst): the 4th and later are rate_limited", function()
      local a = open("/rl_refresh", { headers = { Authorization = "Bearer " .. token() } })
      assert_upgraded(a)
      local datas = {}
      for i = 1, 6 do
        datas[i] = cjson.encode { type = "auth:refresh", id = i, token = token { exp = os.time() + 100 + i } }
      end
      c:call { op = "send", id = a.id, datas = datas }
      local r = c:call { op = "recv", id = a.id, n = 6, timeout = 3 }
      assert.are.equal(6, #r.messages, cjson.encode(r))
      for i = 1, 3 do assert.are.equal("auth:refreshed", r.json[i].type, cjson.encode(r.json[i])) end
      for i = 4, 6 do
        assert.are.equal("error", r.json[i].type, cjson.encode(r.json[i]))
        assert.are.equal("rate_limited", r.json[i].error)
      end
    end)

    it("a refresh without the same user is refused on a first-message connection too", function()
      local r = open("/msg")
      assert.are.equal("auth:ok", ask(r.id, { type = "auth", token = token { sub = "gina" } }).type)
      local e = ask(r.id, { type = "auth:refresh", id = "x", token = token { sub = "admin" } })
      assert.are.equal("auth_failed", e.error)
      assert.are.equal("x", e.id)
      assert.are.equal("gina", ask(r.id, { type = "whoami" }).user)
    end)

    it("first-message auth connections refresh too", function()
      local r = open("/msg")
      local ok = ask(r.id, { type = "auth", token = token { exp = os.time() + 30 } })
      assert.are.equal("auth:ok", ok.type)
      local new_exp = os.time() + 90
      local rr = ask(r.id, { type = "auth:refresh", token = token { exp = new_exp } })
      assert.are.equal("auth:refreshed", rr.type)
      assert.are.equal(new_exp, rr.exp)
      assert.are.equal(new_exp, ask(r.id, { type = "whoami" }).exp)
    end)
  end)

  describe("long-lived tokens and long timers", function()
    local YEAR = 365 * 86400

    it("a token valid for a year, or ten, is accepted before the upgrade and the connection stays", function()
      for _, years in ipairs { 1, 10 } do
        local exp = os.time() + years * YEAR
        local r = open("/jwt", { headers = { Authorization = "Bearer " .. token { exp = exp } } })
        assert_upgraded(r)
        local who = ask(r.id, { type = "whoami" })
        assert.are.equal("whoami", who.type, cjson.encode(who))
        assert.are.equal(exp, who.exp)
        assert.are.equal("alice", ask(r.id, { type = "whoami" }).user)
      end
    end)

    it("by first message and in a refresh", function()
      local r = open("/msg")
      local ok = ask(r.id, { type = "auth", token = token { exp = os.time() + YEAR } })
      assert.are.equal("auth:ok", ok.type, cjson.encode(ok))
      local exp = os.time() + 10 * YEAR
      local rr = ask(r.id, { type = "auth:refresh", token = token { exp = exp } })
      assert.are.same({ type = "auth:refreshed", exp = exp }, rr)
      assert.are.equal(exp, ask(r.id, { type = "whoami" }).exp)
    end)

    it("edgews.timer/every take delays of years and math.huge; cancel works on each", function()
      local r = open("/jwt", { headers = { Authorization = "Bearer " .. token() } })
      local m = ask(r.id, { type = "long_timers", id = 1 })
      assert.are.same({ type = "long_timers", cancelled = { true, true, true }, again = false,
        started = 3, left = 0, id = 1 }, m)
    end)

    it("edgews.sleep takes a year: the handler waits (no error), the socket still closes cleanly", function()
      local r = open("/jwt", { headers = { Authorization = "Bearer " .. token() } })
      c:call { op = "send", id = r.id, data = cjson.encode { type = "sleep_long" } }
      local got = c:call { op = "recv", id = r.id, n = 1, timeout = 0.5 }
      assert.are.equal(0, #got.messages, "the handler did not wait: " .. cjson.encode(got))
      local cl = c:call { op = "close", id = r.id, timeout = 3 }
      assert.are.equal(1000, cl.code, cjson.encode(cl))
    end)
  end)

  describe("leeway", function()
    it("a token expired 10 s ago with leeway 30 is accepted and kept open", function()
      local r = open("/leeway", { headers = { Authorization = "Bearer " .. token { exp = os.time() - 10 } } })
      assert_upgraded(r)
      assert.are.equal("alice", ask(r.id, { type = "whoami" }).user)
      helper.sleep(1.2)
      assert.are.equal("alice", ask(r.id, { type = "whoami" }).user)
    end)

    it("the connection expires at exp + leeway (4403)", function()
      local exp = os.time() - 28
      local r = open("/leeway", { headers = { Authorization = "Bearer " .. token { exp = exp } } })
      assert_upgraded(r)
      local cl = c:call { op = "wait_close", id = r.id, timeout = 6 }
      assert.are.equal(4403, cl.code, cjson.encode(cl))
      local now = c:call({ op = "now" }).time
      assert.is_true(now >= exp + 30 - 0.1, ("closed %.2f s before exp + leeway"):format(exp + 30 - now))
    end)
  end)

  describe("tokens without sub", function()
    it("are refused before the upgrade: 401 missing subject", function()
      assert_refused(open("/jwt", { headers = { Authorization = "Bearer " .. token { sub = cjson.null } } }),
        401, "unauthorized", "missing subject")
      assert_refused(open("/jwt", { headers = { Authorization = "Bearer " .. token { sub = "" } } }),
        401, "unauthorized", "missing subject")
    end)

    it("are accepted when the app's user function gives an id; refused when it gives none", function()
      local r = open("/usermap", { headers = { Authorization = "Bearer " .. token { sub = cjson.null, uid = "u-42" } } })
      assert_upgraded(r)
      assert.are.equal("u-42", ask(r.id, { type = "whoami" }).user)
      -- a refresh must keep that id
      local e = ask(r.id, { type = "auth:refresh", token = token { sub = cjson.null, uid = "u-43" } })
      assert.are.equal("auth_failed", e.error)
      assert.are.equal("auth:refreshed",
        ask(r.id, { type = "auth:refresh", token = token { sub = cjson.null, uid = "u-42" } }).type)
      assert_refused(open("/usermap", { headers = { Authorization = "Bearer " .. token { sub = "alice" } } }),
        401, "unauthorized", "no user id")
    end)
  end)

  describe("size limit until first-message auth", function()
    local function first_message_closes(path, data, code)
      local r = open(path)
      assert_upgraded(r)
      c:call { op = "send", id = r.id, data = data }
      local cl = c:call { op = "wait_close", id = r.id, timeout = 3 }
      assert.are.equal(code, cl.code, cjson.encode(cl))
      return cl
    end

    it("a frame header announcing 1 MB closes 1009 at once, before any payload", function()
      local r = open("/msg")
      assert_upgraded(r)
      c:call { op = "send_header", id = r.id, length = 1024 * 1024 }
      local cl = c:call { op = "wait_close", id = r.id, timeout = 3 }
      assert.are.equal(1009, cl.code, cjson.encode(cl))
      assert.is_true(cl.elapsed < 0.5, "not at once: " .. cl.elapsed)
    end)

    it("a 20,000-byte first message closes 1009; exactly 16 KiB is read", function()
      first_message_closes("/msg", cjson.encode { type = "auth", token = token(), pad = ("x"):rep(20000) }, 1009)
      local r = open("/msg")
      local msg = cjson.encode { type = "auth", token = token(), pad = "" }
      msg = msg:gsub('"pad":""', '"pad":"' .. ("x"):rep(16384 - #msg) .. '"')
      assert.are.equal(16384, #msg)
      c:call { op = "send", id = r.id, data = msg }
      local ok = c:call { op = "recv", id = r.id, n = 1, timeout = 3 }
      assert.are.equal("auth:ok", ok.json[1] and ok.json[1].type, cjson.encode(ok))
      -- after auth:ok the app's own limit (1 MiB) applies
      local who = ask(r.id, { type = "whoami", pad = ("y"):rep(30000) })
      assert.are.equal("alice", who.user)
    end)

    it("auth.max_message_size bounds the inflated size of a compressed first message", function()
      -- 20,000 'a' deflate to a few dozen bytes on the wire: only the inflater sees the size
      local res = helper.py("send", "--url", url("/msg_small"), "--compression", "deflate",
        "--message", ("a"):rep(20000), "--expect-close", "1009", "--timeout", "3")
      assert.are.equal(1009, res.close_code, cjson.encode(res))
      assert.are.equal("message exceeds the maximum message size", res.close_reason, cjson.encode(res))
    end)

    it("a first message over max_json_size (but under the auth limit) closes 1009", function()
      local data = cjson.encode { type = "auth", token = token(), pad = ("x"):rep(600) }
      assert.is_true(#data > 500 and #data < 1000, #data)
      local cl = first_message_closes("/msg_small", data, 1009)
      assert.are.equal("authentication message too large", cl.reason)
    end)
  end)
end)
