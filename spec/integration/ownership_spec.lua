-- One process per listening port and per data directory: a second edgews-lua on the
-- same port refuses to start ("address already in use") instead of letting
-- SO_REUSEPORT split new connections between the two, and a second one on the same
-- --data refuses naming the holder's PID instead of writing interleaved offsets into
-- the same SQLite file. --reuse-port (or configure{reuse_port = true}) shares a port
-- on purpose. Both claims end with the process (also after SIGKILL).
local helper = require "spec.helper"

local ECHO = helper.ROOT .. "/examples/echo/app.lua"

describe("ownership of the port and the data directory #integration", function()
  after_each(function() helper.cleanup() end)

  -- Runs a second server that must refuse to start: exit status and its log.
  local function refused(args)
    local argv = { helper.BIN, "--workers", "1", "--no-watch" }
    for _, a in ipairs(args) do argv[#argv + 1] = a end
    local _, rc, _, err = helper.run(argv, 20)
    return rc, err
  end

  it("a second process on the same port refuses to start; the first keeps serving all connections", function()
    local a = helper.start_server { app = ECHO, workers = 2 }
    local rc, err = refused { "--listen", "127.0.0.1:" .. a.port, ECHO }
    assert.are.equal(1, rc, err)
    assert.matches("cannot listen on 127.0.0.1:" .. a.port .. ": address already in use", err, 1, true)
    assert.is_nil(err:find("listening on", 1, true))
    -- every new connection still reaches the first server (nobody shares its port)
    for _ = 1, 8 do helper.assert_ok(helper.py("echo", "--url", a:url "/echo", "--sizes", "10")) end
    assert.is_true(a:alive())
  end)

  it("the port is free again once the owner exited, even with connections in TIME_WAIT", function()
    local a = helper.start_server { app = ECHO, workers = 1 }
    local port = a.port
    helper.assert_ok(helper.py("echo", "--url", a:url "/echo", "--sizes", "10"))
    a:stop()
    local b = helper.start_server { app = ECHO, workers = 1, args = { "--listen", "127.0.0.1:" .. port } }
    assert.are.equal(port, b.port)
    helper.assert_ok(helper.py("echo", "--url", b:url "/echo", "--sizes", "10"))
  end)

  it("--reuse-port shares a port on purpose", function()
    local a = helper.start_server { app = ECHO, workers = 1, args = { "--reuse-port" } }
    local b = helper.start_server { app = ECHO, workers = 1,
      args = { "--listen", "127.0.0.1:" .. a.port, "--reuse-port" } }
    assert.are.equal(a.port, b.port)
    helper.assert_ok(helper.py("echo", "--url", b:url "/echo", "--sizes", "10"))
  end)

  it("a second process on the same data directory refuses, naming the holder's PID", function()
    local dir = helper.tmpdir()
    local a = helper.start_server { app = ECHO, workers = 1, args = { "--data", dir } }
    local rc, err = refused { "--listen", "127.0.0.1:0", "--data", dir, ECHO }
    assert.are.equal(1, rc, err)
    assert.matches("the data directory " .. dir .. " is in use by another edgews-lua (PID "
      .. a.pid .. ")", err, 1, true)
    assert.is_true(a:alive())
    -- released when the holder dies, even by SIGKILL
    a:signal "KILL"
    assert.is_true(a:wait(10))
    local b = helper.start_server { app = ECHO, workers = 1, args = { "--data", dir } }
    assert.is_true(b:alive())
  end)
end)
