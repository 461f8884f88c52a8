-- Unit specs for lua/edgews/router.lua: routing JSON messages by "type", every
-- error code (exactly one reply_error call, connection left alone), the JSON
-- shape of router.error_message, id echo, the validation hook, separable decode.
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local router = require "edgews.router"
local validate = require "edgews.validate"
local cjson = require "cjson.safe"

-- A reply_error double that records its calls.
local function recorder()
  local calls = {}
  local function reply(socket, code, message, details, id)
    calls[#calls + 1] = { socket = socket, code = code, message = message, details = details, id = id }
  end
  return reply, calls
end

describe("edgews.router", function()
  local r, handled, sock
  before_each(function()
    handled = {}
    sock = { id = 1 }
    r = router.new { max_size = 200 }
    r:route("join", function(s, data, ctx) handled[#handled + 1] = { "join", s, data, ctx } end,
      { validate = { room = { type = "string", required = true, max_length = 8 } }, auth = true })
    r:route("say", function(s, data, ctx) handled[#handled + 1] = { "say", s, data, ctx } end)
  end)

  describe("dispatch", function()
    it("routes by type to the right handler with the decoded table and ctx", function()
      local reply, calls = recorder()
      local ctx = {}
      assert.is_true(r:dispatch(sock, '{"type":"say","text":"hi"}', false, ctx, reply))
      assert.is_true(r:dispatch(sock, '{"type":"join","room":"lobby"}', false, ctx, reply))
      assert.are.equal(0, #calls)
      assert.are.equal(2, #handled)
      assert.are.equal("say", handled[1][1])
      assert.are.equal(sock, handled[1][2])
      assert.are.same({ type = "say", text = "hi" }, handled[1][3])
      assert.are.equal(ctx, handled[1][4])
      assert.are.equal("join", handled[2][1])
      assert.are.equal("lobby", handled[2][3].room)
    end)

    -- { name, raw, is_binary, code, details (or nil), id (or nil) }
    local failures = {
      { "too large", '{"type":"say","text":"' .. ("x"):rep(200) .. '"}', false, "message_too_large",
        { max_size = 200 } },
      { "too large, even binary", ("\0"):rep(201), true, "message_too_large", { max_size = 200 } },
      { "binary", '{"type":"say"}', true, "binary_not_supported" },
      { "broken JSON", '{"type":"say"', false, "invalid_json" },
      { "empty text", "", false, "invalid_json" },
      { "a JSON array", '[{"type":"say"}]', false, "invalid_message" },
      { "an empty JSON array", " [ ] ", false, "invalid_message" },
      { "a JSON string", '"say"', false, "invalid_message" },
      { "a JSON number", "42", false, "invalid_message" },
      { "JSON null", "null", false, "invalid_message" },
      { "JSON true", "true", false, "invalid_message" },
      { "no type", '{"text":"hi","id":5}', false, "missing_type", nil, 5 },
      { "an empty object", "{}", false, "missing_type" },
      { "a numeric type", '{"type":1,"id":"a"}', false, "missing_type", nil, "a" },
      { "a null type", '{"type":null}', false, "missing_type" },
      { "an unknown type", '{"type":"dance","id":"r1"}', false, "unknown_type", nil, "r1" },
      { "a failing validation", '{"type":"join","room":"far-too-long","id":9}', false, "validation_failed",
        { { field = "room", error = "max_length", message = "room must be at most 8 bytes" } }, 9 },
      { "a missing required field", '{"type":"join"}', false, "validation_failed",
        { { field = "room", error = "required", message = "room is required" } } },
      { "a null required field", '{"type":"join","room":null}', false, "validation_failed",
        { { field = "room", error = "required", message = "room is required" } } },
    }
    for _, f in ipairs(failures) do
      it("replies " .. f[4] .. " exactly once for " .. f[1] .. ", returns false, runs no handler", function()
        local reply, calls = recorder()
        local closed = false
        sock.close = function() closed = true end
        assert.is_false(r:dispatch(sock, f[2], f[3], {}, reply))
        assert.are.equal(1, #calls)
        local c = calls[1]
        assert.are.equal(sock, c.socket)
        assert.are.equal(f[4], c.code)
        assert.are.equal("string", type(c.message))
        assert.is_true(#c.message > 0)
        assert.are.same(f[5], c.details)
        assert.are.equal(f[6], c.id)
        assert.are.equal(0, #handled)
        assert.is_false(closed)
      end)
    end

    it("echoes only string or number ids", function()
      local reply, calls = recorder()
      r:dispatch(sock, '{"type":"nope","id":{"x":1}}', false, nil, reply)
      r:dispatch(sock, '{"type":"nope","id":true}', false, nil, reply)
      r:dispatch(sock, '{"type":"nope","id":1.5}', false, nil, reply)
      assert.is_nil(calls[1].id)
      assert.is_nil(calls[2].id)
      assert.are.equal(1.5, calls[3].id)
    end)

    it("keeps client text short in messages", function()
      local reply, calls = recorder()
      local big = router.new { max_size = 10000 }
      big:dispatch(sock, '{"type":"' .. ("t"):rep(5000) .. '"}', false, nil, reply)
      assert.are.equal("unknown_type", calls[1].code)
      assert.is_true(#calls[1].message < 120)
    end)

    it("uses the reply_error given to new when dispatch gets none", function()
      local reply, calls = recorder()
      local r2 = router.new { reply_error = reply }
      assert.is_false(r2:dispatch(sock, "nope", false, {}))
      assert.are.equal("invalid_json", calls[1].code)
    end)

    it("by default sends router.error_message through socket:send", function()
      local sent = {}
      local s = { send = function(self, data, is_binary) sent[#sent + 1] = { self, data, is_binary } end }
      assert.is_false(router.new():dispatch(s, '{"type":"x","id":3}', false, {}))
      assert.are.equal(1, #sent)
      assert.are.equal(s, sent[1][1])
      assert.is_falsy(sent[1][3])
      local reply = cjson.decode(sent[1][2])
      assert.are.same({ type = "error", error = "unknown_type", message = reply.message, id = 3 }, reply)
    end)

    it("lets handler errors propagate (the dispatcher replies handler_error)", function()
      r:route("boom", function() error("handler broke") end)
      local reply, calls = recorder()
      local ok, err = pcall(r.dispatch, r, sock, '{"type":"boom"}', false, {}, reply)
      assert.is_false(ok)
      assert.matches("handler broke", err)
      assert.are.equal(0, #calls)
    end)

    it("accepts a message exactly max_size bytes long", function()
      local raw = '{"type":"say","t":"' .. ("x"):rep(200 - 21) .. '"}'
      assert.are.equal(200, #raw)
      assert.is_true(r:dispatch(sock, raw, false, {}, recorder()))
    end)

    it("treats a codec that raises like one that returns nil, err", function()
      local raising = {
        decode = function() error("kaboom") end, encode = cjson.encode,
      }
      local reply, calls = recorder()
      assert.is_false(router.new { json = raising }:dispatch(sock, "{}", false, {}, reply))
      assert.are.equal("invalid_json", calls[1].code)
      assert.matches("kaboom", calls[1].message)
    end)

    it("raises on a non-string raw message (a dispatcher bug), at the caller's line", function()
      local ok, err = pcall(function() r:dispatch(sock, nil, false, {}, recorder()) end)
      assert.is_false(ok)
      assert.matches("router_spec.lua:%d+: router:dispatch: raw message must be a string", err)
    end)
  end)

  describe("decode + dispatch_decoded", function()
    it("hands a route an optional field sent as null as absent (nil)", function()
      local seen = {}
      r:route("follow", function(_, body) seen[#seen + 1] = body end,
        { validate = { topic = { type = "string", required = true },
                       epoch = { type = "string", max_length = 16 } } })
      local reply, calls = recorder()
      assert.is_true(r:dispatch(sock, '{"type":"follow","topic":"t","epoch":null}', false, {}, reply))
      assert.are.equal(0, #calls)
      assert.are.equal(1, #seen)
      assert.is_nil(seen[1].epoch)
      assert.are.equal("t", seen[1].topic)
      -- a required field sent as null is still refused
      assert.is_false(r:dispatch(sock, '{"type":"follow","topic":null}', false, {}, reply))
      assert.are.equal("validation_failed", calls[1].code)
    end)

    it("decodes separately so middleware can look before routing", function()
      local data = assert(r:decode('{"type":"say","id":1}', false))
      assert.are.same({ type = "say", id = 1 }, data)
      data.seen = true
      assert.is_true(r:dispatch_decoded(sock, data, "ctx", recorder()))
      assert.is_true(handled[1][3].seen)
      assert.are.equal("ctx", handled[1][4])
    end)

    it("returns nil, code, message (, details) on failure", function()
      local data, code, message, details = r:decode(("x"):rep(201), false)
      assert.is_nil(data)
      assert.are.equal("message_too_large", code)
      assert.matches("201 bytes", message)
      assert.are.same({ max_size = 200 }, details)
      assert.are.equal("invalid_json", select(2, r:decode("{", false)))
      assert.are.equal("binary_not_supported", select(2, r:decode("{}", true)))
      assert.are.equal("invalid_message", select(2, r:decode("[1]", false)))
    end)

    it("reports missing_type, unknown_type, validation_failed from dispatch_decoded", function()
      local reply, calls = recorder()
      assert.is_false(r:dispatch_decoded(sock, { id = 1 }, nil, reply))
      assert.is_false(r:dispatch_decoded(sock, { type = "x" }, nil, reply))
      assert.is_false(r:dispatch_decoded(sock, { type = "join", room = 5 }, nil, reply))
      assert.are.same({ "missing_type", "unknown_type", "validation_failed" },
        { calls[1].code, calls[2].code, calls[3].code })
      assert.are.equal(1, calls[1].id)
      assert.are.same({ { field = "room", error = "type", message = "room must be a string" } }, calls[3].details)
    end)
  end)

  describe("routes", function()
    it("get returns the handler and the opts as given", function()
      local h = function() end
      local opts = { auth = "admin", rate = 5 }
      r:route("admin", h, opts)
      local gh, gopts = r:get("admin")
      assert.are.equal(h, gh)
      assert.are.equal(opts, gopts)
      assert.are.equal("function", type((r:get("say"))))
      assert.is_nil(select(2, r:get("say")))
      assert.is_nil(r:get("nope"))
    end)

    it("accepts a compiled checker as opts.validate", function()
      local reply, calls = recorder()
      r:route("n", function() end, { validate = validate.compile { n = { type = "integer" } } })
      assert.is_false(r:dispatch(sock, '{"type":"n","n":1.5}', false, nil, reply))
      assert.are.equal("validation_failed", calls[1].code)
      assert.are.equal("n", calls[1].details[1].field)
    end)

    local bad = {
      { "a non-string type", function(rt) rt:route(1, function() end) end, "type must be a non%-empty string" },
      { "an empty type", function(rt) rt:route("", function() end) end, "type must be a non%-empty string" },
      { "a non-function handler", function(rt) rt:route("a", "h") end, "handler must be a function" },
      { "non-table opts", function(rt) rt:route("a", function() end, 5) end, "opts must be a table" },
      { "a type routed twice", function(rt) rt:route("say", function() end) end, "'say' is already routed" },
      { "a bad schema", function(rt) rt:route("a", function() end, { validate = { x = { typ = "string" } } }) end,
        "unknown rule 'typ'" },
      { "a non-table validate", function(rt) rt:route("a", function() end, { validate = "x" }) end,
        "opts.validate must be a schema" },
    }
    for _, b in ipairs(bad) do
      it("raises at the caller's line for " .. b[1], function()
        local ok, err = pcall(b[2], r)
        assert.is_false(ok)
        assert.matches("router_spec.lua:%d+: .*" .. b[3], err)
      end)
    end

    it("blames the given level (for wrappers such as app:route)", function()
      local function wrapper(name) r:route(name, function() end, { validate = { x = { bad = 1 } } }, 2) end
      local blamed
      local ok, err = pcall(function()
        blamed = debug.getinfo(1, "l").currentline + 1
        wrapper("w") -- this line is blamed
      end)
      assert.is_false(ok)
      assert.are.equal(blamed, tonumber(err:match("router_spec.lua:(%d+):")), err)
      ok, err = pcall(function()
        blamed = debug.getinfo(1, "l").currentline + 1
        wrapper(5) -- and this one
      end)
      assert.are.equal(blamed, tonumber(err:match("router_spec.lua:(%d+):")), err)
    end)

    it("rejects bad router.new options", function()
      assert.has_error(function() router.new { max = 1 } end)
      assert.has_error(function() router.new { max_size = -1 } end)
      assert.has_error(function() router.new { json = {} } end)
      assert.has_error(function() router.new { reply_error = 1 } end)
      assert.are.equal(64 * 1024, router.new().max_size)
    end)
  end)

  describe("error_message", function()
    it("builds the JSON error reply with code, message, details and id", function()
      local details = { { field = "room", error = "required", message = "room is required" } }
      local s = router.error_message("validation_failed", "invalid fields", details, "req-1")
      assert.are.equal("string", type(s))
      assert.are.same({
        type = "error", error = "validation_failed", message = "invalid fields", details = details, id = "req-1",
      }, cjson.decode(s))
    end)

    it("omits details and id when absent", function()
      local t = cjson.decode(router.error_message("unknown_type", "unknown message type 'x'"))
      assert.are.same({ type = "error", error = "unknown_type", message = "unknown message type 'x'" }, t)
    end)

    it("round-trips what dispatch reports", function()
      local got
      r:dispatch(sock, '{"type":"join","room":"way-too-long-room","id":42}', false, nil,
        function(_, code, message, details, id) got = router.error_message(code, message, details, id) end)
      local t = cjson.decode(got)
      assert.are.equal("error", t.type)
      assert.are.equal("validation_failed", t.error)
      assert.are.equal(42, t.id)
      assert.are.equal("room", t.details[1].field)
      assert.are.equal("max_length", t.details[1].error)
    end)

    it("uses the router's codec for r:error_message", function()
      local codec = { decode = cjson.decode, encode = function(t) return "ENC:" .. t.error end }
      assert.are.equal("ENC:x", router.new({ json = codec }):error_message("x", "m"))
    end)
  end)
end)
