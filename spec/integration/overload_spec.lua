-- Overload: the server runs out of file descriptors. RFC 6455 has nothing to say
-- here; this checks the process model (issue: "when accept fails with EMFILE, shed
-- load instead of spinning"): connections beyond the limit are refused, the
-- listener does not spin, the connections already open keep working, and the
-- server accepts again once descriptors are free.
local helper = require "spec.helper"

-- CPU seconds (user + system) the process has used, from /proc/PID/stat.
local function cpu_seconds(pid)
  local stat = helper.read_file("/proc/" .. pid .. "/stat") or ""
  local fields = {}
  for f in stat:gsub("^.-%) ", ""):gmatch("%S+") do fields[#fields + 1] = f end
  -- after "pid (comm) ", field 1 is state; utime and stime are fields 12 and 13
  return (tonumber(fields[12]) + tonumber(fields[13])) / 100
end

describe("overload #integration", function()
  after_each(function() helper.cleanup() end)

  it("sheds connections past the open-file limit without spinning, then recovers", function()
    local dir = helper.tmpdir()
    local wrapper = dir .. "/limited.sh"
    helper.write_file(wrapper, ("#!/bin/sh\nulimit -n 64\nexec %s \"$@\"\n"):format(helper.BIN))
    os.execute("chmod +x " .. wrapper)
    local srv = helper.start_server { app = helper.app "echo_app.lua", workers = 1, bin = wrapper }

    local flood = helper.spawn({ helper.PYTHON, helper.CLIENTS .. "/flood.py", "--url",
      srv:url "/echo", "--count", "150", "--hold", "1.5", "--timeout", "3" })
    -- While the flood holds its connections, the server must idle, not spin on accept.
    local line = flood:read_json(20)
    assert.are.equal("holding", line and line.event)
    local c0, t0 = cpu_seconds(srv.pid), helper.now()
    helper.sleep(1)
    local used = (cpu_seconds(srv.pid) - c0) / (helper.now() - t0)
    assert.is_true(used < 0.5, ("server used %.0f%% of a core while full"):format(used * 100))
    local res = flood:read_json(20)
    assert.is_truthy(res, "flood client gave no result")
    assert.is_true(res.opened > 20, "too few connections opened: " .. tostring(res.opened))
    assert.is_true(res.failed > 0, "the descriptor limit was never reached")
    assert.are.equal(res.opened, res.echoed, "an open connection stopped working")

    -- Descriptors are free again: new connections are served.
    helper.wait_until(function()
      local r = helper.py("echo", "--url", srv:url "/echo", "--sizes", "0,125")
      return r.ok
    end, 10)
    helper.assert_ok(helper.py("echo", "--url", srv:url "/echo", "--sizes", "0,125,126"))
  end)
end)
