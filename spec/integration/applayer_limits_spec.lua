-- Application layer with --workers 2 (spec/apps/applayer_limits_app.lua, driven by
-- tests/clients/app_client.py): every test spreads its connections over both workers
-- (each socket reports edgews.worker_id() and socket.id % 256 when it opens; they must
-- agree: the worker id is the low 8 bits of the id).
--   * connection limits across workers: max_connections (503 "full"),
--     max_connections_per_ip (429 "limit_ip"), max_connections_per_user with auth before
--     the upgrade (429 "limit_user") and with first-message auth (close 4429); the counts
--     go down when connections close
--   * Origin allow-list: listed origins pass, others get 403 "origin", no Origin passes
--   * rate limits: per connection (one rate_limited reply per message over the burst),
--     action = "close" (1008), per user across two connections on different workers
--     (shared buckets), a bytes budget, a per-route limit in app:route opts, and
--     edgews.ratelimit used by a script (the server's C token bucket through the FFI)
--   * cross-worker: edgews.user_sockets reaches the user's sockets on both workers,
--     app:broadcast with a filter excluding the sender reaches both workers,
--     app:connection_count() counts both workers; stand-ins of other workers' sockets
--     say is_open() == false and send -> nil, "closed" once those sockets closed.
local helper = require "spec.helper"
local cjson = require "cjson"

local SECRET = "spec-secret"

describe("application layer: limits, origins, rate limits, cross-worker #integration #lua", function()
  local srv, c

  setup(function()
    srv = helper.start_server { app = helper.app "applayer_limits_app.lua", workers = 2,
      args = { "--drain-timeout", "0.5" } }
    c = helper.app_client()
  end)
  teardown(function() helper.cleanup() end)

  local function token(sub)
    return c:call({ op = "jwt", secret = SECRET, claims = { sub = sub, exp = os.time() + 300 } }).token
  end

  local n = 0
  local function open(path, o)
    o = o or {}
    n = n + 1
    local id = "c" .. n
    local headers = o.headers or {}
    if o.user then headers.Authorization = "Bearer " .. token(o.user) end
    local r = c:call { op = "open", id = id, url = srv:url(path), headers = headers }
    r.id = id
    return r
  end

  local function recv(id, count, timeout)
    return c:call { op = "recv", id = id, n = count or 1, timeout = timeout or 3 }
  end

  -- the hello a socket gets when it opens -> worker id
  local function hello(id)
    local r = recv(id)
    local h = r.json[1]
    assert.are.equal("hello", h and h.type, "no hello: " .. cjson.encode(r))
    assert.are.equal(h.worker, h.low, "socket.id % 256 is not the worker id")
    return h.worker
  end

  local function close(id)
    local r = c:call { op = "close", id = id, timeout = 3 }
    assert.is_true(r.closed, "close handshake did not complete: " .. cjson.encode(r))
  end

  local function ask(id, msg, count)
    c:call { op = "send", id = id, data = cjson.encode(msg) }
    local r = recv(id, count or 1)
    assert.are.equal(count or 1, #r.messages, "replies: " .. cjson.encode(r))
    return r.json[1], r
  end

  local function silent(id, secs)
    local r = recv(id, 1, secs or 0.3)
    assert.are.equal(0, #r.messages, "unexpected message: " .. cjson.encode(r))
  end

  -- Opens connections until want[1] are open on worker 0 and want[2] on worker 1; a
  -- connection on a worker that has its share is closed again (the kernel picks the
  -- worker). o.auth_msg: a token sent as the first message (auth:ok expected).
  -- -> { [0] = {ids}, [1] = {ids} }
  local function open_spread(path, want, o)
    o = o or {}
    local got = { [0] = {}, [1] = {} }
    for _ = 1, 80 do
      if #got[0] >= want[1] and #got[1] >= want[2] then return got end
      local r = open(path, o)
      assert.are.equal(101, r.status, "while spreading: " .. cjson.encode(r))
      local w = hello(r.id)
      if #got[w] < want[w + 1] then
        if o.auth_msg then
          assert.are.equal("auth:ok", ask(r.id, { type = "auth", token = o.auth_msg }).type)
        end
        table.insert(got[w], r.id)
      else
        close(r.id)
      end
    end
    error("80 connections did not reach both workers: the kernel does not spread them?")
  end

  local function close_all(got)
    for w = 0, 1 do
      for _, id in ipairs(got[w]) do close(id) end
    end
  end

  describe("connection limits, across both workers", function()
    it("max_connections = 4: the 5th gets 503 with a JSON body; a slot frees on close", function()
      local got = open_spread("/capped", { 2, 2 })
      for _ = 1, 4 do -- several tries: whichever worker takes it refuses
        local r = open("/capped")
        assert.are.equal(503, r.status, cjson.encode(r))
        assert.are.equal("full", r.json and r.json.error, r.body)
        assert.are.equal("string", type(r.json.message))
      end
      close(got[1][1])
      local r = open("/capped")
      assert.are.equal(101, r.status, "after a close: " .. cjson.encode(r))
      hello(r.id)
      assert.are.equal(503, open("/capped").status)
      got[1][1] = r.id
      close_all(got)
    end)

    it("max_connections_per_ip = 3: the 4th gets 429; a slot frees on close", function()
      local got = open_spread("/perip", { 2, 1 })
      for _ = 1, 3 do
        local r = open("/perip")
        assert.are.equal(429, r.status, cjson.encode(r))
        assert.are.equal("limit_ip", r.json and r.json.error, r.body)
      end
      close(got[0][1])
      local r = open("/perip")
      assert.are.equal(101, r.status, cjson.encode(r))
      got[0][1] = r.id
      close_all(got)
    end)

    it("max_connections_per_user = 2 with auth before the upgrade: the 3rd gets 429", function()
      local got = open_spread("/peruser", { 1, 1 }, { user = "alice" })
      for _ = 1, 3 do
        local r = open("/peruser", { user = "alice" })
        assert.are.equal(429, r.status, cjson.encode(r))
        assert.are.equal("limit_user", r.json and r.json.error, r.body)
      end
      -- another user is not affected
      local bob = open("/peruser", { user = "bob" })
      assert.are.equal(101, bob.status)
      close(bob.id)
      close(got[1][1])
      local r = open("/peruser", { user = "alice" })
      assert.are.equal(101, r.status, "after a close: " .. cjson.encode(r))
      hello(r.id)
      assert.are.equal("alice", ask(r.id, { type = "where" }).user)
      got[1][1] = r.id
      close_all(got)
    end)

    it("max_connections_per_user = 2 with first-message auth: the 3rd is closed with 4429", function()
      local tok = token("alice")
      local got = open_spread("/peruser_msg", { 1, 1 }, { auth_msg = tok })
      for _ = 1, 2 do
        local r = open("/peruser_msg")
        assert.are.equal(101, r.status)
        hello(r.id)
        c:call { op = "send", id = r.id, data = cjson.encode { type = "auth", token = tok } }
        local cl = c:call { op = "wait_close", id = r.id, timeout = 3 }
        assert.are.equal(4429, cl.code, cjson.encode(cl))
        assert.are.equal(0, #cl.messages, "auth:ok sent before the close: " .. cjson.encode(cl))
      end
      close(got[0][1])
      local r = open("/peruser_msg")
      hello(r.id)
      assert.are.equal("auth:ok", ask(r.id, { type = "auth", token = tok }).type)
      got[0][1] = r.id
      close_all(got)
    end)
  end)

  describe("Origin allow-list", function()
    it("a listed Origin is accepted", function()
      for _, o in ipairs { "https://good.example", "http://localhost:3000" } do
        local r = open("/origin", { headers = { Origin = o } })
        assert.are.equal(101, r.status, o .. ": " .. cjson.encode(r))
        close(r.id)
      end
    end)

    it("another Origin gets 403 with a JSON body", function()
      for _, o in ipairs { "https://evil.example", "https://good.example.evil.example",
                           "http://good.example", "https://good.example:8443", "null" } do
        local r = open("/origin", { headers = { Origin = o } })
        assert.are.equal(403, r.status, o .. ": " .. cjson.encode(r))
        assert.are.equal("origin", r.json and r.json.error, r.body)
      end
    end)

    it("no Origin (a non-browser client) is accepted", function()
      local r = open("/origin")
      assert.are.equal(101, r.status, cjson.encode(r))
      hello(r.id)
      close(r.id)
    end)
  end)

  describe("rate limits", function()
    it("per connection: one rate_limited reply per message over the burst", function()
      local r = open("/rl_conn")
      hello(r.id)
      local datas = {}
      for i = 1, 5 do datas[i] = cjson.encode { type = "echo", i = i } end
      c:call { op = "send", id = r.id, datas = datas }
      local got = recv(r.id, 5)
      assert.are.equal(5, #got.messages, cjson.encode(got))
      for i = 1, 3 do assert.are.same({ type = "echo", i = i }, got.json[i]) end
      for i = 4, 5 do
        assert.are.equal("error", got.json[i].type)
        assert.are.equal("rate_limited", got.json[i].error)
      end
      silent(r.id)
      -- another connection has its own bucket
      local r2 = open("/rl_conn")
      hello(r2.id)
      assert.are.same({ type = "echo", i = 9 }, ask(r2.id, { type = "echo", i = 9 }))
      close(r.id)
      close(r2.id)
    end)

    it('action = "close": the message over the burst closes with 1008', function()
      local r = open("/rl_close")
      hello(r.id)
      c:call { op = "send", id = r.id, datas = { '{"type":"echo","i":1}', '{"type":"echo","i":2}',
        '{"type":"echo","i":3}' } }
      local cl = c:call { op = "wait_close", id = r.id, timeout = 3 }
      assert.are.equal(2, #cl.messages, cjson.encode(cl))
      assert.are.equal(1008, cl.code, cjson.encode(cl))
      assert.are.equal("rate limit exceeded", cl.reason)
    end)

    it("per user: two connections of the user on different workers share one bucket", function()
      local got = open_spread("/rl_user", { 1, 1 }, { user = "ratey" })
      local a, b = got[0][1], got[1][1]
      for _, id in ipairs { a, b, a, b } do -- 4 = the burst, spent on both workers
        assert.are.equal("echo", ask(id, { type = "echo" }).type)
      end
      for _, id in ipairs { a, b } do
        local e = ask(id, { type = "echo" })
        assert.are.equal("rate_limited", e.error, "worker bucket not shared: " .. cjson.encode(e))
      end
      -- another user has a bucket of its own
      local o = open("/rl_user", { user = "other" })
      hello(o.id)
      assert.are.equal("echo", ask(o.id, { type = "echo" }).type)
      close(o.id)
      close_all(got)
    end)

    it("bytes: a message that does not fit the byte budget is refused", function()
      local r = open("/rl_bytes")
      hello(r.id)
      local pad = ("x"):rep(40)
      -- {"type":"echo","pad":"xx..."}: 64 bytes of the 100-byte burst
      assert.are.equal("echo", ask(r.id, { type = "echo", pad = pad }).type)
      local e = ask(r.id, { type = "echo", pad = pad })
      assert.are.equal("rate_limited", e.error)
      assert.is_truthy(e.message:find("bytes", 1, true), e.message)
      -- a smaller one (27 bytes) still fits in what is left (36 bytes)
      assert.are.equal("echo", ask(r.id, { type = "echo", p = "short" }).type)
      close(r.id)
    end)

    it("a per-route rate_limit limits only that route", function()
      local r = open("/rl_route")
      hello(r.id)
      assert.are.equal("limited", ask(r.id, { type = "limited", n = 1 }).type)
      assert.are.equal("limited", ask(r.id, { type = "limited", n = 2 }).type)
      local e = ask(r.id, { type = "limited", n = 3, id = "q3" })
      assert.are.equal("error", e.type)
      assert.are.equal("rate_limited", e.error)
      assert.are.equal("q3", e.id, "the reply has the request's id: " .. cjson.encode(e))
      for i = 1, 5 do
        assert.are.same({ type = "echo", i = i }, ask(r.id, { type = "echo", i = i }))
      end
      assert.are.equal("rate_limited", ask(r.id, { type = "limited", n = 4 }).error)
      close(r.id)
    end)

    it("edgews.ratelimit in a script: the server's token bucket, a cost above burst never fits", function()
      local r = open("/rl_route")
      hello(r.id)
      local function take(key, n) return ask(r.id, { type = "take", key = key, n = n }) end
      local t = take("k", 6) -- burst 5
      assert.are.same({ false, "inf", 5, 0 }, { t.ok, t.retry, t.tokens, t.size })
      t = take("k", 2)
      assert.is_true(t.ok)
      assert.are.equal(1, t.size)
      assert.is_true(t.tokens >= 3 and t.tokens < 4, "tokens " .. t.tokens)
      t = take("k", 4) -- 3 and a little < 4 <= burst: a finite retry (about 5 s at 0.2/s)
      assert.is_false(t.ok)
      assert.is_true(type(t.retry) == "number" and t.retry > 0 and t.retry <= 5, "retry " .. tostring(t.retry))
      t = take("k", 6) -- the bucket is tracked now: still never
      assert.are.same({ false, "inf" }, { t.ok, t.retry })
      assert.is_true(take("other", 5).ok) -- keys are independent
      close(r.id)
    end)
  end)

  describe("cross-worker", function()
    local got, carol, carol_worker
    local bobs = {}

    it("sets up: bob has two sockets on each worker, carol one", function()
      got = open_spread("/xw", { 2, 2 }, { user = "bob" })
      bobs = { got[0][1], got[0][2], got[1][1], got[1][2] }
      local r = open("/xw", { user = "carol" })
      assert.are.equal(101, r.status)
      carol = r.id
      carol_worker = hello(carol)
    end)

    local function expect_each(ids, want_type, text)
      for _, id in ipairs(ids) do
        local r = recv(id, 1)
        local m = r.json[1]
        assert.are.equal(want_type, m and m.type, id .. ": " .. cjson.encode(r))
        assert.are.equal(text, m.text)
      end
    end

    it("edgews.user_sockets(uid) from one worker reaches the user's sockets on both", function()
      local reply = ask(carol, { type = "notify", uid = "bob", text = "hi bob" })
      assert.are.same({ type = "notified", n = 4 }, reply)
      expect_each(bobs, "note", "hi bob")
      -- from a bob socket on each worker: all four, the sender included
      for w = 0, 1 do
        local sender = got[w][1]
        c:call { op = "send", id = sender,
                 data = cjson.encode { type = "notify", uid = "bob", text = "w" .. w } }
        local r = recv(sender, 2)
        assert.are.equal("note", r.json[1].type, cjson.encode(r))
        assert.are.same({ type = "notified", n = 4 }, r.json[2])
        local others = {}
        for _, id in ipairs(bobs) do if id ~= sender then others[#others + 1] = id end end
        expect_each(others, "note", "w" .. w)
      end
      silent(carol, 0.2)
    end)

    it("app:broadcast with a filter excluding the sender reaches sockets on both workers", function()
      local reply = ask(carol, { type = "shout", text = "hello all" })
      assert.are.equal("shouted", reply.type)
      expect_each(bobs, "shout", "hello all")
      silent(carol, 0.3)
      -- from a bob socket on worker 1: carol and the three other bobs
      local sender = got[1][2]
      assert.are.equal("shouted", ask(sender, { type = "shout", text = "from bob" }).type)
      local others = { carol }
      for _, id in ipairs(bobs) do if id ~= sender then others[#others + 1] = id end end
      expect_each(others, "shout", "from bob")
      silent(sender, 0.3)
    end)

    it("app:connection_count() counts both workers", function()
      assert.are.same({ type = "count", n = 5 }, ask(carol, { type = "count" }))
      assert.are.same({ type = "count", n = 5 }, ask(got[0][1], { type = "count" }))
      assert.are.same({ type = "count", n = 5 }, ask(got[1][1], { type = "count" }))
      close(got[1][1])
      assert.are.same({ type = "count", n = 4 }, ask(got[0][1], { type = "count" }))
    end)

    it("a closed socket leaves edgews.user_sockets", function()
      local left = helper.wait_until(function()
        c:call { op = "send", id = carol,
                 data = cjson.encode { type = "notify", uid = "bob", text = "again" } }
        local r = recv(carol, 1)
        return r.json[1] and r.json[1].n == 3 and r.json[1]
      end, 3, 0.1)
      assert.are.same({ type = "notified", n = 3 }, left)
      assert.is_truthy(carol_worker)
    end)

    -- user: one socket on each worker; the worker-0 one keeps stand-ins of all of them.
    -- busy: the worker-1 socket's handler is waiting (edgews.sleep 30 s) when it closes,
    -- so its close event is queued behind that handler.
    local function stand_in_truth(user, busy)
      local d = open_spread("/xw", { 1, 1 }, { user = user })
      local here, there = d[0][1], d[1][1]
      assert.are.same({ type = "grabbed", n = 2 }, ask(here, { type = "grab", uid = user }))
      local function check()
        c:call { op = "send", id = here, data = cjson.encode { type = "check" } }
        -- the local socket is "here" itself: its ping-check arrives before the reply
        local r = recv(here, 2)
        local m = r.json[1] and r.json[1].type == "checked" and r.json[1] or r.json[2]
        assert.are.equal("checked", m and m.type, cjson.encode(r))
        local remote
        for _, e in ipairs(m.list) do if e.remote then remote = e end end
        assert.is_table(remote, "no stand-in: " .. cjson.encode(m))
        return remote
      end
      local remote = check()
      assert.are.equal(1, remote.worker)
      assert.is_true(remote.open, cjson.encode(remote))
      assert.is_true(remote.sent, cjson.encode(remote))
      local got = recv(there, 1)
      assert.are.equal("ping-check", got.json[1] and got.json[1].type, cjson.encode(got))
      if busy then c:call { op = "send", id = there, data = cjson.encode { type = "nap", secs = 30 } } end
      close(there)
      local after = helper.wait_until(function()
        local e = check()
        return not e.open and e
      end, 5, 0.1)
      assert.is_table(after, "the stand-in still says open after its socket closed")
      assert.is_false(after.sent)
      assert.are.equal("closed", after.err)
      close(here)
    end

    it("stand-ins of another worker's sockets tell the truth after those close", function()
      stand_in_truth("dora")
    end)

    it("... also when the closed socket's handler is still waiting", function()
      stand_in_truth("edna", true)
    end)
  end)
end)
