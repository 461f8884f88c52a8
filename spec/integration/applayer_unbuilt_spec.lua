-- Application layer: routes whose handler never reads its body are dispatched without
-- building it (README "Application layer"), end to end through the server
-- (spec/apps/applayer_unbuilt_app.lua, tests/clients/app_client.py). The message is
-- still checked as JSON, every router error is the same reply, msg.body is built (and
-- is lua-cjson's table) when a middleware reads it, a handler error and a per-route
-- rate limit still echo the request's id, and anything the scan cannot vouch for
-- (escapes in the type, lua-cjson's leniencies) takes the building path.
local helper = require "spec.helper"
local cjson = require "cjson"

describe("application layer: routes that never read the body #integration #lua", function()
  local srv, url, c
  setup(function()
    srv = helper.start_server { app = helper.app "applayer_unbuilt_app.lua", workers = 1,
      args = { "--drain-timeout", "0.5" } }
    url = srv:url "/unbuilt"
    c = helper.app_client()
  end)
  teardown(function() helper.cleanup() end)

  -- a fresh connection, named uniquely
  local function connect() return c:open_next(url, "u") end

  local function ask(id, data, binary)
    c:call { op = "send", id = id, data = type(data) == "table" and cjson.encode(data) or data,
             binary = binary }
    local r = c:call { op = "recv", id = id, n = 1, timeout = 3 }
    assert.are.equal(1, #r.messages, "replies: " .. cjson.encode(r))
    return r.json[1]
  end

  it("a handler that never reads its body runs without it being built", function()
    local id = connect()
    assert.are.same({ type = "pong", unbuilt = true, seen = "ping" },
      ask(id, '{"id":1,"type":"ping","x":[1,{"y":"z"}],"s":"caf\\u00e9"}'))
    -- the last "type" wins, as in the decoded table
    assert.are.same({ type = "pong", unbuilt = true, seen = "ping" },
      ask(id, '{"type":"echo","type":"ping"}'))
  end)

  it("a handler that reads its body, or a schema, gets it built before the chain", function()
    local id = connect()
    assert.are.same({ type = "echo", unbuilt = false, text = "hi" },
      ask(id, { type = "echo", text = "hi" }))
    assert.are.same({ type = "checked", unbuilt = false }, ask(id, { type = "checked", n = 1 }))
    local e = ask(id, { type = "checked", id = 5 })
    assert.are.equal("validation_failed", e.error)
    assert.are.equal(5, e.id)
  end)

  it("msg.body is built when a middleware reads it, as lua-cjson's table", function()
    local id = connect()
    local r = ask(id, '{"type":"peek","a":[1,2,3],"o":{"k":true},"n":null,"id":"p1"}')
    assert.are.equal("peeked", r.type)
    assert.is_true(r.unbuilt)
    assert.is_true(r.same) -- read twice, one table
    assert.are.same({ type = "peek", a = { 1, 2, 3 }, o = { k = true }, n = cjson.null, id = "p1" }, r.body)
  end)

  it("msg.body is built from msg.data as it is when first read", function()
    local id = connect()
    assert.are.same({ type = "swapped", x = 2 }, ask(id, '{"type":"swap","x":1}'))
    local e = ask(id, '{"type":"swapbad","id":8}')
    assert.are.equal("handler_error", e.error)
    assert.are.same({ type = "pong", unbuilt = true, seen = "ping" }, ask(id, '{"type":"ping"}'))
  end)

  it("a raising handler's reply carries the request's id", function()
    local id = connect()
    local e = ask(id, '{"type":"boom","id":42}')
    assert.are.same({ type = "error", error = "handler_error", message = "the handler failed", id = 42 }, e)
    assert.are.same({ type = "pong", unbuilt = true, seen = "ping" }, ask(id, '{"type":"ping"}'))
  end)

  it("a per-route rate limit's reply carries the request's id", function()
    local id = connect()
    -- a route with a rate limit is not peeked: its body is built before the chain
    assert.are.same({ type = "ok", unbuilt = false }, ask(id, '{"type":"limited","id":1}'))
    local e = ask(id, '{"type":"limited","id":"second"}')
    assert.are.equal("rate_limited", e.error)
    assert.are.equal("second", e.id)
  end)

  it("what the scan cannot vouch for is decoded as before", function()
    local id = connect()
    -- an escape in the type or in a top-level key: routed after building
    assert.are.same({ type = "pong", unbuilt = false, seen = "ping" }, ask(id, '{"type":"pi\\u006eg"}'))
    assert.are.same({ type = "pong", unbuilt = false, seen = "ping" }, ask(id, '{"typ\\u0065":"ping"}'))
    -- lua-cjson's leniencies still decode (by lua-cjson)
    assert.are.same({ type = "pong", unbuilt = false, seen = "ping" }, ask(id, '{"type":"ping","n":0x10}'))
    assert.are.same({ type = "pong", unbuilt = false, seen = "ping" }, ask(id, '{"type":"ping","s":"a\tb"}'))
  end)

  it("every router error is the same reply as for any route", function()
    local id = connect()
    local function code(data, binary) return ask(id, data, binary).error end
    local e = ask(id, '{"type":"ping",}')
    assert.are.equal("invalid_json", e.error)
    assert.matches("^invalid JSON: ", e.message)
    assert.are.equal("invalid_json", code('{"type":"ping"} x'))
    assert.are.equal("invalid_message", code('[{"type":"ping"}]'))
    assert.are.equal("missing_type", code('{"type":1}'))
    assert.are.equal("missing_type", code('{"type":"ping","type":null}'))
    e = ask(id, '{"type":"nope","id":3}')
    assert.are.equal("unknown_type", e.error)
    assert.are.equal(3, e.id)
    assert.are.equal("binary_not_supported", code('{"type":"ping"}', true))
    assert.are.equal("message_too_large", code('{"type":"ping","pad":"' .. string.rep("x", 300) .. '"}'))
    assert.are.same({ type = "pong", unbuilt = true, seen = "ping" }, ask(id, '{"type":"ping"}'))
  end)
end)
