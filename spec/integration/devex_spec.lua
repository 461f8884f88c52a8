-- Rough edges a new user hit (issue 10, items 3, 5, 6, 7 and 8), each driven through
-- the real server with edgews.testing: host names in --listen, the log lines an
-- operator reads (connections, refusals, reloads), /health and router errors in
-- /metrics, command-line mistakes, notifications without --data, and the order of
-- the open handler and pending notifications.
local helper = require "spec.helper"
package.path = helper.ROOT .. "/lua/?.lua;" .. package.path
local testing = require "edgews.testing"

local BIN = helper.BIN

-- Writes an app into a fresh directory -> its path.
local function app_file(source, name)
  local dir = testing.tmpdir()
  local path = dir .. "/" .. (name or "app.lua")
  helper.write_file(path, source)
  return path
end

local HELLO_APP = [[
local edgews = require "edgews"
local app = edgews.app { path = "/x" }
app:on("open", function(s) s:send("hi") end)
]]

local function start(o)
  o.bin = o.bin or BIN
  o.data = o.data or false
  return testing.start(o)
end

describe("--listen with a host name (issue 10, item 3) #integration", function()
  after_each(testing.cleanup)

  it("localhost is resolved at start and served", function()
    local srv = assert(start { app = app_file(HELLO_APP), workers = 1,
                               args = { "--listen", "localhost:0" } })
    assert.truthy(srv:log():find("--listen: localhost resolved to 127.0.0.1", 1, true), srv:log())
    assert.truthy(srv:log():find("listening on 127.0.0.1:" .. srv.port, 1, true), srv:log())
    local ws = assert(testing.connect(srv:url "/x"))
    assert.are.equal("hi", (ws:receive()))
  end)

  it("an IPv6 address in brackets is served and logged in brackets", function()
    local f = io.open("/proc/net/if_inet6")
    local v6 = f and f:read("*a"):find("00000000000000000000000000000001", 1, true)
    if f then f:close() end
    if not v6 then
      pending("no IPv6 loopback on this machine")
      return
    end
    local srv = assert(start { app = app_file(HELLO_APP), workers = 1,
                               args = { "--listen", "[::1]:0" } })
    assert.truthy(srv:log():find("listening on [::1]:" .. srv.port, 1, true), srv:log())
    local ws = assert(testing.connect(("ws://[::1]:%d/x"):format(srv.port)))
    assert.are.equal("hi", (ws:receive()))
  end)

  it("a name that does not resolve stops the start with one clear line", function()
    local srv, err = start { app = app_file(HELLO_APP), workers = 1,
                             args = { "--listen", "no-such-host.invalid:0" } }
    assert.is_nil(srv)
    assert.truthy(err:find("cannot resolve the host 'no-such-host.invalid' of --listen: ", 1, true), err)
    assert.is_nil(err:find("failed to start", 1, true), err)
  end)
end)
