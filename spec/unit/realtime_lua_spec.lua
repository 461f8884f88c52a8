-- Unit specs for lua/edgews/pubsub.lua and lua/edgews/notifications.lua: argument
-- checks, what they hand to the C core, how results and error codes come back,
-- Lua subscribers across script loads, and where a stored notification goes. The
-- C core is a recording double of edgews.core; realtime_spec runs the same paths
-- through the real server.
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path

local calls, core

local function fresh(opts)
  opts = opts or {}
  for k in pairs(package.loaded) do
    if k:match("^edgews") then package.loaded[k] = nil end
  end
  calls = {}
  local function rec(name, ret)
    return function(...)
      calls[#calls + 1] = { name, ... }
      if type(ret) == "function" then return ret(...) end
      if ret ~= nil then return ret end
    end
  end
  core = {
    error_names = { [-3] = "INVAL", [-5] = "BACKPRESSURE", [-90] = "NOSTORE", [-8] = "IO" },
    errors = { [-90] = "no data directory (start with --data DIR)" },
    in_worker = true,
    worker_id = function() return opts.me or 0 end,
    workers = function() return 2 end,
    pubsub_owner = function(topic) return opts.owner or 0 end,
    pubsub_publish = rec("publish", opts.publish or function() return "00000000000000ab", 7, 1000 end),
    pubsub_lua = rec("lua", true),
    pubsub_subscribe = rec("subscribe", function() return "00000000000000ab", 9, true, 2, false end),
    pubsub_history = rec("history", function()
      return { epoch = "ab", first_offset = 1, last_offset = 1,
               messages = { { offset = 1, time = 5, data = '{"a":1}', json = true } } }
    end),
    handler_error = rec("handler_error"),
    has_store = function() return opts.store ~= false end,
    notif_available = function() return opts.store ~= false end,
    notif_store = rec("notif_store", function() return 41, 123 end),
    notif_mark = rec("notif_mark", 1),
    notif_pending = rec("notif_pending", function() return {}, 0 end),
    user_list = function() return opts.users or {} end,
    user_add = rec("user_add"),
    post = rec("post", true),
  }
  package.loaded["edgews.core"] = core
  package.preload["edgews.core"] = function() return core end
  package.loaded["edgews.socket"] = { error_name = function(c) return (core.error_names[c] or "?"):lower() end }
  package.loaded["edgews.socket"].error_text = function(c)
    local n = package.loaded["edgews.socket"].error_name(c)
    if n == "nostore" then return core.errors[c] end
    return ({ inval = "invalid argument", io = "storage I/O error" })[n] or n
  end
  return require "edgews.pubsub", require "edgews.notifications", require "edgews.workers"
end

local function find(name)
  for _, c in ipairs(calls) do if c[1] == name then return c end end
end

describe("edgews.pubsub", function()
  it("publishes strings as strings and other values as JSON, waiting by default", function()
    local pubsub = fresh()
    assert.are.same({ epoch = "00000000000000ab", offset = 7, time = 1000 }, pubsub.publish("t", "hi"))
    assert.are.same({ "publish", "t", "hi", false, true }, calls[1])
    pubsub.publish("t", { a = 1 }, { wait = false })
    assert.are.same({ "publish", "t", '{"a":1}', true, false }, calls[2])
  end)

  it("raises on misuse and returns readable errors", function()
    local pubsub = fresh { publish = function() return nil, -5 end }
    assert.has_error(function() pubsub.publish("", "x") end)
    assert.has_error(function() pubsub.publish(("t"):rep(501), "x") end)
    assert.has_error(function() pubsub.publish("t", function() end) end)
    assert.are.same({ nil, "backpressure" }, { pubsub.publish("t", "x") })
    pubsub = fresh { publish = function() return nil, -3 end }
    assert.are.same({ nil, "invalid argument" }, { pubsub.publish("t", "\255") })
  end)

  it("validates recovery positions and reports recovery only when asked", function()
    local pubsub = fresh()
    local sock = { id = 1, _c = 1234 }
    local r = pubsub.subscribe("t", sock, { since_offset = "5", epoch = "AB12" })
    assert.are.same({ "subscribe", 1234, "t", true, 5, "AB12", false }, calls[1])
    assert.are.same({ epoch = "00000000000000ab", offset = 9, recovered = true, replayed = 2, gap = false }, r)
    r = pubsub.subscribe("t", sock)
    assert.is_nil(r.recovered)
    assert.are.same({ nil, "since_offset must be a non-negative integer" },
      { pubsub.subscribe("t", sock, { since_offset = -1 }) })
    assert.are.same({ nil, "since_offset must be a non-negative integer" },
      { pubsub.subscribe("t", sock, { since_offset = 1.5 }) })
    assert.are.same({ nil, "epoch must be the hex string a message carried" },
      { pubsub.subscribe("t", sock, { since_offset = 1, epoch = "xyz" }) })
    assert.are.same({ nil, "closed" }, { pubsub.subscribe("t", { id = 2, _c = false }) })
    core.pubsub_subscribe = function() return "0000000000000000", 0, false, 0, false end
    assert.is_nil(pubsub.subscribe("t", sock).epoch) -- a stored topic without messages yet
  end)

  it("counts Lua subscribers per topic in the core and decodes JSON for them", function()
    local pubsub = fresh()
    local got = {}
    local u1 = pubsub.subscribe("t", function(m) got[#got + 1] = m end)
    local u2 = pubsub.subscribe("t", function() error("boom") end)
    assert.are.same({ "lua", "t", 1 }, calls[1])
    assert.are.equal(1, #calls) -- the second subscription is Lua-side only
    pubsub._dispatch("t", "ab", 3, 99, '{"x":[1,2]}', true)
    assert.are.same({ { topic = "t", epoch = "ab", offset = 3, time = 99, data = { x = { 1, 2 } } } }, got)
    assert.truthy(find "handler_error") -- one failing subscriber does not stop the others
    assert.is_true(u1())
    assert.is_false(u1())
    assert.is_true(u2())
    assert.are.same({ "lua", "t", -1 }, calls[#calls])
  end)

  it("load-time subscribers run on the topic's owner only and are replaced by a reload", function()
    local pubsub = fresh { owner = 1, me = 0 }
    pubsub._begin_load()
    local noop = pubsub.subscribe("t", function() end)
    pubsub._end_load(true)
    assert.is_false(noop())
    assert.is_nil(find "lua") -- not this worker's

    pubsub = fresh { owner = 0, me = 0 }
    local n1, n2 = 0, 0
    pubsub._begin_load()
    pubsub.subscribe("t", function() n1 = n1 + 1 end)
    pubsub._end_load(true)
    pubsub._begin_load()                                   -- a reload that fails
    pubsub.subscribe("t", function() n2 = n2 + 100 end)
    pubsub._end_load(false)
    pubsub._dispatch("t", "ab", 1, 0, "1", true)
    assert.are.same({ 1, 0 }, { n1, n2 })
    pubsub._begin_load()                                   -- a reload that works
    pubsub.subscribe("t", function() n2 = n2 + 1 end)
    pubsub._end_load(true)
    pubsub._dispatch("t", "ab", 2, 0, "1", true)
    assert.are.same({ 1, 1 }, { n1, n2 })
  end)

  it("decodes history payloads", function()
    local pubsub = fresh()
    local h = pubsub.history("t", { since_offset = 0, limit = 5 })
    assert.are.same({ { offset = 1, time = 5, data = { a = 1 } } }, h.messages)
    assert.are.same({ "history", "t", 0, 5 }, calls[1])
  end)
end)

describe("edgews.notifications", function()
  it("without a data directory every call says so", function()
    local _, notifications = fresh { store = false }
    assert.are.same({ nil, "no data directory (start with --data DIR)" }, { notifications.store("u", 1) })
    assert.are.same({ nil, "no data directory (start with --data DIR)" }, { notifications.list("u") })
    assert.are.same({ nil, "no data directory (start with --data DIR)" }, { notifications.mark_read("u", 1) })
  end)

  it("checks its arguments", function()
    local _, notifications = fresh()
    assert.has_error(function() notifications.store("", 1) end)
    assert.has_error(function() notifications.store("u", 1, { ttl = 1.5 }) end)
    assert.has_error(function() notifications.store("u", function() end) end)
    assert.has_error(function() notifications.mark_read("u", {}) end)
  end)

  it("delivers a stored notification to local sockets once and posts it to other workers", function()
    local _, notifications, workers = fresh { me = 0, users = { { 0, 1 }, { 1, 2 }, { 1, 3 }, { 0, 4 } } }
    local sent = {}
    local sock = { id = 1, ctx = {}, send = function(_, t) sent[#sent + 1] = t; return true end }
    workers.add_user(sock, { id = "u" })
    local r = notifications.store("u", { hi = 1 })
    assert.are.same({ id = 41, created_at = 123, delivered = true }, r)
    assert.are.same({ '{"type":"notification","id":41,"created_at":123,"data":{"hi":1}}' }, sent)
    local posts = 0
    for _, c in ipairs(calls) do if c[1] == "post" then posts = posts + 1; assert.are.equal(1, c[2]) end end
    assert.are.equal(1, posts) -- one post for worker 1, however many sockets it has
    local mark = find "notif_mark"
    assert.are.same({ "notif_mark", "u", { 41 }, 1, false }, mark)
    -- the same id reaching the socket again (pending read racing the push) is not re-sent
    workers.ops.notify { uid = "u", id = 41, created_at = 123, payload = '{"hi":1}' }
    assert.are.equal(1, #sent)
  end)
end)
