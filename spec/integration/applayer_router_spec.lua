-- Application layer, message path: the middleware chain (order, short-circuit, code
-- after next() running after the handler, next() after edgews.sleep) and the JSON
-- router's error replies, end to end through the server (spec/apps/applayer_router_app.lua,
-- driven by tests/clients/app_client.py). Every router error is exactly one
-- {"type":"error","error":CODE,...} reply and the connection stays open; a route handler
-- (or a middleware) that raises answers {"type":"error","error":"handler_error","id":ID},
-- logs file:line, runs the app's error handler and keeps the connection.
local helper = require "spec.helper"
local cjson = require "cjson"

local function line_of(path, marker)
  local n = 0
  for line in io.lines(path) do
    n = n + 1
    if line:find(marker, 1, true) then return n end
  end
  error("marker " .. marker .. " not found in " .. path)
end

describe("application layer: middleware and router #integration #lua", function()
  local srv, url, c
  local app_path = helper.app "applayer_router_app.lua"

  setup(function()
    srv = helper.start_server { app = app_path, workers = 1,
      args = { "--drain-timeout", "0.5" } }
    url = srv:url "/router"
    c = helper.app_client()
  end)
  teardown(function() helper.cleanup() end)

  -- a fresh connection, named uniquely
  local function connect() return c:open_next(url, "r") end

  -- sends `data` (a string, or a table encoded as JSON) and returns the decoded replies
  local function ask(id, data, replies, opts)
    opts = opts or {}
    c:call { op = "send", id = id, data = type(data) == "table" and cjson.encode(data) or data,
             binary = opts.binary }
    local r = c:call { op = "recv", id = id, n = replies or 1, timeout = opts.timeout or 3 }
    assert.are.equal(replies or 1, #r.messages, "replies: " .. cjson.encode(r))
    return r.json, r
  end

  -- The next message of the connection is the echo of a fresh marker: proves the
  -- connection is open and that nothing else (a second error reply) came before it.
  local function assert_still_open(id)
    local marker = "m" .. math.random(1, 1e9)
    local replies = ask(id, { type = "echo", marker = marker })
    assert.are.same({ type = "echo", marker = marker }, replies[1])
  end

  it("middlewares run in the order of app:use, then the route handler", function()
    local id = connect()
    local replies = ask(id, { type = "trace", id = 7 }, 2)
    assert.are.same({ type = "trace", id = 7, trace = { "m1", "m2", "m3", "handler" } }, replies[1])
  end)

  it("code after next() runs after the handler, innermost first", function()
    local id = connect()
    local replies = ask(id, { type = "trace" }, 2)
    assert.are.equal("trace", replies[1].type) -- the handler's reply comes first
    assert.are.same({ type = "after", trace = { "m1", "m2", "m3", "handler", "m3:after",
      "m2:after", "m1:after" } }, replies[2])
  end)

  it("a middleware that does not call next() stops the chain", function()
    local id = connect()
    local replies = ask(id, { type = "blocked" })
    assert.are.same({ type = "blocked", trace = { "m1", "m2" } }, replies[1])
    -- the route handler ("reached") did not run: the next message is the echo
    assert_still_open(id)
  end)

  it("next() after edgews.sleep continues the chain; later messages wait their turn", function()
    local id = connect()
    local t0 = helper.now()
    c:call { op = "send", id = id, datas = {
      cjson.encode { type = "trace", delay = 0.3, id = "slow" },
      cjson.encode { type = "echo", after = "slow" },
    } }
    local r = c:call { op = "recv", id = id, n = 3, timeout = 5 }
    assert.are.equal(3, #r.messages, cjson.encode(r))
    local trace = r.json[1].trace
    assert.are.equal("slow", r.json[1].id)
    assert.are.same({ "m1", "m2" }, { trace[1], trace[2] })
    local slept = tonumber(trace[3]:match("^m3:slept:([%d.]+)$"))
    assert.is_truthy(slept, "trace " .. cjson.encode(trace))
    assert.is_true(slept >= 0.29, "slept " .. slept)
    assert.are.equal("handler", trace[4])
    assert.are.equal("after", r.json[2].type)
    assert.are.same({ type = "echo", after = "slow" }, r.json[3])
    assert.is_true(helper.now() - t0 >= 0.3)
  end)

  describe("router errors: exactly one error reply, the connection stays open", function()
    local cases = {
      { name = "invalid_json", send = '{"type":"echo",' },
      { name = "invalid_json (not JSON at all)", code = "invalid_json", send = "hello" },
      { name = "invalid_message (a JSON array)", code = "invalid_message", send = '[{"type":"echo"}]' },
      { name = "invalid_message (a JSON string)", code = "invalid_message", send = '"echo"' },
      { name = "missing_type", send = '{"id":5,"text":"no type"}', id = 5 },
      { name = "missing_type (type not a string)", code = "missing_type",
        send = '{"type":7,"id":"x"}', id = "x" },
      { name = "unknown_type", send = '{"type":"nope","id":"q1"}', id = "q1" },
      { name = "message_too_large (max_json_size = 256)", code = "message_too_large",
        send = '{"type":"echo","pad":"' .. ("x"):rep(300) .. '"}', details = { max_size = 256 } },
      { name = "binary_not_supported", send = '{"type":"echo"}', binary = true },
    }
    for _, case in ipairs(cases) do
      it(case.name, function()
        local id = connect()
        local replies, r = ask(id, case.send, 1, { binary = case.binary })
        local e = replies[1]
        assert.are.equal(false, r.binary[1])
        assert.are.equal("table", type(e), "reply is not JSON: " .. tostring(r.messages[1]))
        assert.are.equal("error", e.type)
        assert.are.equal(case.code or case.name, e.error)
        assert.are.equal("string", type(e.message))
        if case.id ~= nil then assert.are.equal(case.id, e.id) else assert.is_nil(e.id) end
        if case.details then
          assert.are.same(case.details, e.details, case.code or case.name
            .. ": the reply lacks the details the router documents: " .. r.messages[1])
        end
        assert_still_open(id)
      end)
    end

    it("validation_failed, with the failing fields in details", function()
      local id = connect()
      local replies = ask(id, { type = "validated", id = 3, name = "much too long", n = 11 })
      local e = replies[1]
      assert.are.equal("error", e.type)
      assert.are.equal("validation_failed", e.error)
      assert.are.equal(3, e.id)
      assert.are.equal(2, #e.details, cjson.encode(e))
      table.sort(e.details, function(a, b) return a.field < b.field end)
      assert.are.equal("n", e.details[1].field)
      assert.are.equal("max", e.details[1].error)
      assert.are.equal("name", e.details[2].field)
      assert.are.equal("max_length", e.details[2].error)
      -- a required field missing
      replies = ask(id, { type = "validated" })
      assert.are.equal("validation_failed", replies[1].error)
      assert.are.same({ field = "name", error = "required" },
        { field = replies[1].details[1].field, error = replies[1].details[1].error })
      -- and a valid one reaches the handler
      assert.are.same({ type = "valid" }, ask(id, { type = "validated", name = "abc", n = 2 })[1])
      assert_still_open(id)
    end)

    it("several errors in a row each get their own reply, in order", function()
      local id = connect()
      c:call { op = "send", id = id, datas = { "nope", "[]", '{"a":1}', '{"type":"zzz"}',
        '{"type":"echo","k":1}' } }
      local r = c:call { op = "recv", id = id, n = 5, timeout = 3 }
      assert.are.equal(5, #r.messages, cjson.encode(r))
      local codes = {}
      for i = 1, 4 do codes[i] = r.json[i].error end
      assert.are.same({ "invalid_json", "invalid_message", "missing_type", "unknown_type" }, codes)
      assert.are.same({ type = "echo", k = 1 }, r.json[5])
      -- nothing more arrives
      local extra = c:call { op = "recv", id = id, n = 1, timeout = 0.3 }
      assert.are.equal(0, #extra.messages, cjson.encode(extra))
    end)
  end)

  describe("handler errors", function()
    it("a route handler that raises -> handler_error with the id; file:line in the log", function()
      local id = connect()
      local replies = ask(id, { type = "boom", id = "req-42" })
      local e = replies[1]
      assert.are.equal("error", e.type)
      assert.are.equal("handler_error", e.error)
      assert.are.equal("req-42", e.id)
      assert_still_open(id)
      local line = line_of(app_path, "ROUTE_BOOM_LINE")
      assert.is_truthy(srv:wait_log("applayer_router_app%.lua:" .. line .. ": route exploded", 3),
        "no file:line for the handler error in the log:\n" .. srv:log())
      -- the app's "error" handler got the error (first line, with file:line)
      local le = ask(id, { type = "last_error" })[1]
      local where = "applayer_router_app.lua:" .. line .. ": route exploded"
      assert.is_truthy(tostring(le.err):find(where, 1, true),
        cjson.encode(le))
    end)

    it("a numeric id is echoed; no id -> no id field", function()
      local id = connect()
      assert.are.equal(99, ask(id, { type = "boom", id = 99 })[1].id)
      local e = ask(id, { type = "boom" })[1]
      assert.are.equal("handler_error", e.error)
      assert.is_nil(e.id)
      assert_still_open(id)
    end)

    it("a middleware that raises -> handler_error too, the connection stays", function()
      local id = connect()
      local e = ask(id, { type = "echo", mw_boom = true, id = "mw" })[1]
      assert.are.equal("handler_error", e.error)
      assert.are.equal("mw", e.id)
      assert_still_open(id)
      local line = line_of(app_path, "MW_BOOM_LINE")
      assert.is_truthy(srv:wait_log("applayer_router_app%.lua:" .. line .. ": middleware exploded", 3),
        "no file:line for the middleware error in the log")
    end)
  end)
end)
