-- A second SIGTERM at random moments of a graceful drain (tests/clients/shutdown_race.py):
-- the echo example with 4 workers and two clients that never answer the close, and
-- the chat example with 4 workers under publish load with presence. 25 rounds each;
-- every round must exit 0 with no abort or sanitizer report. (Workers' locks used to
-- be destroyed while other threads could still post to them: glibc returned EINVAL
-- and libuv aborted in about 7 rounds of 10.)
local helper = require "spec.helper"
local cjson = require "cjson"

describe("shutdown under a second signal #integration", function()
  teardown(function() helper.cleanup() end)

  local function race(scenario, app, extra)
    local argv = { helper.PYTHON, helper.CLIENTS .. "/shutdown_race.py", "--bin", helper.BIN,
             "--app", app, "--scenario", scenario, "--rounds", "25", "--parallel", "4",
             "--workers", "4", "--drain-timeout", "3", "--max-delay", "1.5" }
    for _, a in ipairs(extra or {}) do argv[#argv + 1] = a end
    local res, rc = helper.run(argv, 600)
    assert.are.equal(0, rc, cjson.encode(res))
    assert.are.equal(25, res.ok, cjson.encode(res))
    return res
  end

  it("echo: two clients never answer the close; a second SIGTERM within 1.5 s exits 0, 25 of 25", function()
    race("echo", helper.ROOT .. "/examples/echo/app.lua")
  end)

  it("chat: publish load with presence; a second SIGTERM at a random moment exits 0, 25 of 25", function()
    local res = race("chat", helper.ROOT .. "/examples/chat/app.lua", { "--data-root", helper.tmpdir() })
    assert.is_true(res.seen.pub > 0 and res.seen.presence > 0, cjson.encode(res.seen))
  end)
end)
