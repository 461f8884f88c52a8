-- examples/gateway: clients -> gateway (edgews.pool, ip-hash) -> edgews-lua backends
-- (examples/gateway/backend.lua), with a backend killed and restarted while clients
-- stay connected.
local helper = require "spec.helper"
local cjson = require "cjson"

local backends, gw, cl = {}, nil, nil
local N = 16

local function start_backend(id, port)
  backends[id] = helper.start_server { app = helper.ROOT .. "/examples/gateway/backend.lua", workers = 1,
    port = port, env = { BACKEND_NAME = id } }
end

local function ask(i, msg)
  cl:call { op = "send", id = "c" .. i, data = msg }
  local r = cl:call { op = "recv", id = "c" .. i, n = 1, timeout = 10 }
  assert(not r.closed, "client " .. i .. " was disconnected")
  return r.messages[1]
end

describe("examples/gateway", function()
  setup(function()
    start_backend("a")
    start_backend("b")
    gw = helper.start_server { app = helper.ROOT .. "/examples/gateway/app.lua", workers = 2,
      env = { GATEWAY_BACKENDS = ("ws://127.0.0.1:%d/ws,ws://127.0.0.1:%d/ws"):format(backends.a.port,
        backends.b.port), GATEWAY_STICKY = "connection", GATEWAY_TIMEOUT = "2" } }
    cl = helper.app_client()
    for i = 1, N do cl:call { op = "open", id = "c" .. i, url = gw:url "/gateway" } end
  end)

  teardown(function()
    local report
    if gw then
      gw:stop()
      report = helper.sanitizer_report(gw:log())
    end
    helper.cleanup()
    assert(not report, report)
  end)

  local home = {}

  it("forwards each message to one backend per client and returns its reply", function()
    local used = {}
    for i = 1, N do
      for k = 1, 5 do
        local r = ask(i, "m" .. i .. "." .. k)
        local who, echo = r:match("^(%a):(.*)$")
        assert.are.equal("m" .. i .. "." .. k, echo)
        home[i] = home[i] or who
        assert.are.equal(home[i], who, "client " .. i .. " moved between backends")
        used[who] = true
      end
    end
    assert.is_true(used.a and used.b, "all clients on one backend")
  end)

  it("moves a dead backend's clients to the other one; they see at most an error reply", function()
    local port = backends.a.port
    backends.a:kill(0)
    for i = 1, N do
      local errors = 0
      local ok = helper.wait_until(function()
        local r = ask(i, "after")
        if r == "b:after" then return true end
        local e = r:sub(1, 1) == "{" and cjson.decode(r)
        assert(e and e.type == "error", "unexpected reply " .. r)
        errors = errors + 1
      end, 10, 0.05)
      assert(ok, "client " .. i .. " never reached b")
      -- clients of b never noticed; those of a got errors at most until the switch
      if home[i] == "b" then assert.are.equal(0, errors) end
    end
    start_backend("a", port)
    for i = 1, N do
      if home[i] == "a" then
        assert(helper.wait_until(function() return ask(i, "back") == "a:back" end, 10, 0.1),
          "client " .. i .. " did not return to a")
      end
    end
  end)
end)
