-- Mass expiry (spec/apps/auth_mass_app.lua, tests/clients/mass_auth.py): 10,000
-- JWT-authenticated sockets on one worker, each refreshed to a token that expires at the
-- same second. Every one is closed with 4403 "token expired", none before its exp, and
-- the whole batch completes within a generous bound (a completion check, not a speed
-- target: bench/ has the timings). Expiry deadlines live on the worker's timer wheel:
-- 10,000 authenticated sockets with an exp hold no Lua timer.
local helper = require "spec.helper"
local cjson = require "cjson"

local SECRET = "spec-secret"
local N = 10000

describe("application layer: mass token expiry #integration #lua", function()
  local srv, c

  setup(function()
    srv = helper.start_server { app = helper.app "auth_mass_app.lua", workers = 1,
      args = { "--drain-timeout", "0.5" } }
    c = helper.app_client()
  end)
  teardown(function() helper.cleanup() end)

  local function stats()
    c:call { op = "send", id = "obs", data = cjson.encode { type = "stats" } }
    local r = c:call { op = "recv", id = "obs", n = 1, timeout = 5 }
    assert.are.equal("stats", r.json[1] and r.json[1].type, cjson.encode(r))
    return r.json[1]
  end

  it("10,000 sockets whose tokens expire at the same second all close 4403, promptly", function()
    -- an observer whose token has no exp
    local tok = c:call({ op = "jwt", secret = SECRET, claims = { sub = "observer" } }).token
    local o = c:call { op = "open", id = "obs", url = srv:url("/mass?token=" .. tok) }
    assert.are.equal(101, o.status, cjson.encode(o))

    local p = helper.spawn({ helper.PYTHON, helper.CLIENTS .. "/mass_auth.py", "--url", srv:url "/mass",
      "--secret", SECRET, "--count", tostring(N), "--expire-in", "6", "--timeout", "120" },
      { stdin = "pipe" })
    local ev = p:read_json(120)
    assert.are.same({ event = "open", n = N }, ev, "opening: " .. tostring(p:stderr()))
    local s = stats()
    assert.are.equal(N + 1, s.connections)
    assert.are.equal(0, s.timers, "authenticated sockets hold Lua timers")
    p:write("\n")
    local rf = p:read_json(120)
    assert.are.equal("refreshed", rf and rf.event, cjson.encode(rf))
    assert.are.equal(N, rf.n)
    assert.are.equal(0, stats().timers)

    local res = p:read_json(120)
    assert.is_table(res, "no result: " .. tostring(p:stderr()))
    assert.is_false(res.timed_out, cjson.encode(res))
    assert.are.same({ ["4403"] = N }, res.codes)
    assert.are.same({ ["token expired"] = N }, res.reasons)
    assert.is_true(res.first_close >= res.exp - 0.1,
      ("closed %.2f s before exp"):format(res.exp - res.first_close))
    -- the server forgot them all; the observer (no exp) stays
    local left = helper.wait_until(function()
      local st = stats()
      return st.connections == 1 and st
    end, 30, 0.2)
    assert.is_table(left, "connections left: " .. cjson.encode(stats()))
    assert.are.equal(N, left.auth_expired)
    assert.are.equal(0, left.timers)
    io.stderr:write(("  [mass expiry: %d closed %.2f s after exp, the last %.2f s after]\n"):format(
      N, res.first_close - res.exp, res.last_close - res.exp))
  end)
end)
