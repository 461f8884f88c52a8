-- The process-wide budget for incoming message memory (--max-message-memory): 1,000
-- connections each start a 15 MB fragmented binary message and stop before its end
-- (tests/clients/memory_flood.py). Without a budget that is 15 GB of reassembly
-- buffers; with it the server's peak RSS stays within the budget (plus its base), the
-- connections that would pass it are closed with 1013, /metrics counts them, and a
-- bystander connection is served throughout. Every charged byte is credited back.
local helper = require "spec.helper"
local cjson = require "cjson"

local function status_kib(pid, field)
  local s = helper.read_file("/proc/" .. pid .. "/status") or ""
  return tonumber(s:match(field .. ":%s*(%d+)"))
end

local function metric(srv, name)
  local f = assert(io.popen("curl -s --max-time 10 " .. srv:http_url "/metrics"))
  local body = f:read("*a")
  f:close()
  return tonumber(body:match("\n" .. name .. " (%d+)"))
end

describe("message memory budget #integration", function()
  after_each(function() helper.cleanup() end)

  it("1,000 connections stalling 15 MB messages: RSS within the budget, 1013 for the rest, a bystander served", function()
    local budget_mib = 64
    local srv = helper.start_server { app = helper.ROOT .. "/examples/echo/app.lua", workers = 2,
      args = { "--max-message-memory", tostring(budget_mib), "--no-watch" } }
    -- warm: both workers have served a connection
    for _ = 1, 4 do helper.assert_ok(helper.py("echo", "--url", srv:url "/echo", "--sizes", "100")) end
    local hwm0 = assert(status_kib(srv.pid, "VmHWM"))
    local res, rc = helper.run({ helper.PYTHON, helper.CLIENTS .. "/memory_flood.py",
      "--url", srv:url "/echo", "--conns", "1000", "--size", "15000000", "--parallel", "50" }, 300)
    assert.are.equal(0, rc, cjson.encode(res))
    local hwm1 = assert(status_kib(srv.pid, "VmHWM"))
    -- the budget, plus slack for 1,000 connections' own state and the allocator
    local grew_mib = (hwm1 - hwm0) / 1024
    assert.is_true(grew_mib < budget_mib + 40, ("peak RSS grew by %.1f MiB with a %d MiB budget (%s)")
      :format(grew_mib, budget_mib, cjson.encode(res)))
    -- most were refused, with 1013; the rest finished sending without exceeding it
    local refused = res.closed["1013"] or 0
    assert.is_true(refused > 500, cjson.encode(res))
    for code in pairs(res.closed) do
      assert.is_true(code == "1013" or code == "open", "unexpected close " .. code)
    end
    assert.are.equal(res.bystander.sent, res.bystander.echoed)
    assert.is_true(res.bystander.echoed >= 10, cjson.encode(res.bystander))
    assert.are.equal(refused, metric(srv, "edgews_message_memory_refused_total"))
    assert.are.equal(budget_mib * 1048576, metric(srv, "edgews_message_memory_limit_bytes"))
    -- the clients are gone: every byte charged is credited back
    assert.truthy(helper.wait_until(function()
      return metric(srv, "edgews_message_memory_bytes") == 0
    end, 10))
    assert.is_true(srv:alive())
    helper.assert_ok(helper.py("echo", "--url", srv:url "/echo", "--sizes", "100,200000"))
  end)
end)
