-- The Lua socket object of an app without an open handler is created when a script
-- first needs it (README "Sockets"): its first message, app:sockets(), or the close
-- handler. What a script sees must not change: one object per connection, the same
-- every time, ctx kept between messages, the close handler run for a connection
-- that never sent anything. spec/apps/lazy_socket_app.lua answers the commands.
local helper = require "spec.helper"

describe("lazy socket objects #integration #lua", function()
  local srv, url

  setup(function()
    srv = helper.start_server { app = helper.app "lazy_socket_app.lua", workers = 1 }
    url = srv:url "/quiet"
  end)
  teardown(function() helper.cleanup() end)
  after_each(function() helper.cleanup_clients() end)

  local function seq(messages, u)
    return helper.assert_ok(helper.run(helper.py_argv("sequence", "--url", u or url, "--send", messages)))
  end

  -- n idle connections (they send nothing) to u
  local function hold(n, u)
    local ps = {}
    for i = 1, n do
      ps[i] = helper.spawn(helper.py_argv("hold", "--url", u, "--seconds", "30"))
      local ev = ps[i]:read_json(5)
      assert(ev and ev.event == "connected", "idle client did not connect: " .. ps[i]:stderr())
    end
    return ps
  end

  local function ids(s)
    local t = {}
    for id in s:gmatch("%d+") do t[#t + 1] = id end
    return t
  end

  it("idle connections of an app without an open handler have no socket object", function()
    local idle = hold(5, url)
    hold(3, srv:url "/silent")
    -- only the asking connection has one
    assert.are.equal("1", seq("objects").replies[1])
    for _, p in ipairs(idle) do p:kill(0) end
  end)

  it("ctx survives between messages of a connection created lazily", function()
    assert.are.same({ "1", "2", "3" }, seq("count,count,count").replies)
  end)

  it("app:sockets() lists a socket created at its first message as the same object", function()
    local before = #ids(seq("list").replies[1]) -- the asking connection
    local p = helper.spawn(helper.py_argv("sequence", "--url", url, "--send", "same,same", "--step"),
      { stdin = "pipe" })
    assert.are.equal("connected", (p:read_json(5) or {}).event)
    assert.are.equal("new", assert(p:read_json(5)).reply) -- not listed yet
    local listed = ids(seq("list").replies[1])
    assert.are.equal(before + 1, #listed)
    p:write("\n")
    assert.are.equal("same", assert(p:read_json(5)).reply)
    p:close_stdin()
  end)

  it("an idle connection listed by app:sockets() is the same object in its close handler", function()
    local before = ids(seq("list").replies[1])
    local idle = hold(1, url)
    local listed
    assert.is_true(helper.wait_until(function()
      listed = ids(seq("list").replies[1])
      return #listed > #before
    end, 5), "app:sockets() did not list the idle connection")
    local known = {}
    for _, id in ipairs(before) do known[id] = true end
    local id
    for _, x in ipairs(listed) do
      if not known[x] then id = x end
    end
    idle[1]:kill(0)
    local closed
    assert.is_true(helper.wait_until(function()
      closed = seq("closed").replies[1]
      return closed:find(id .. ":", 1, true) ~= nil
    end, 5), "no close event for the idle connection")
    assert.truthy(closed:find(id .. ":same", 1, true), closed)
  end)

  it("socket.protocol is there without an open handler", function()
    local res = helper.assert_ok(helper.run(helper.py_argv("sequence", "--url", srv:url "/proto",
      "--send", "which", "--offer", "p2,p1")))
    assert.are.equal("p2", res.replies[1])
  end)

  it("the close handler runs for a connection that never sent a message", function()
    local before = tonumber(seq("untouched").replies[1])
    local idle = hold(2, url)
    for _, q in ipairs(idle) do q:kill(0) end
    assert.is_true(helper.wait_until(function()
      return tonumber(seq("untouched").replies[1]) == before + 2
    end, 5), "the close handler did not run for the idle connections")
  end)
end)
