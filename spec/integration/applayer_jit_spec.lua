-- Application layer under LuaJIT: the way back from a route handler (the middlewares'
-- code after next(), the chain's bookkeeping) runs in compiled traces. A handler that
-- calls into C (socket:send) continues in a stitched trace that records that way
-- back; LuaJIT aborts such a trace when it returns into a pcall frame it did not
-- enter ("NYI: return to lower frame"), which sent all of it to the interpreter for
-- every message (bench/PROFILE.md, "JSON routing"). edgews.pipeline ends those traces
-- before its xpcall; this counts the aborts the app sees (jit.attach) over 3,000
-- routed messages on one connection, then 2,000 to a route whose handler never reads
-- its body (no C call before the xpcall: nothing to end there).
local helper = require "spec.helper"
local cjson = require "cjson"

describe("application layer: compiled way back from routes #integration #lua", function()
  local srv, c
  setup(function()
    srv = helper.start_server { app = helper.app "applayer_jit_app.lua", workers = 1 }
    c = helper.app_client()
  end)
  teardown(function() helper.cleanup() end)

  it("no trace aborts with 'return to lower frame' on the route path", function()
    local r = c:call { op = "open", id = "j", url = srv:url "/jit" }
    assert.are.equal(101, r.status, cjson.encode(r))
    local total = 0
    for batch = 1, 6 do
      local datas = {}
      for i = 1, 500 do
        datas[i] = cjson.encode { type = "echo", text = "m" .. batch .. "." .. i }
      end
      c:call { op = "send", id = "j", datas = datas }
      r = c:call { op = "recv", id = "j", n = #datas, timeout = 10 }
      assert.are.equal(#datas, #r.messages)
      assert.are.equal("m" .. batch .. ".500", r.messages[#r.messages])
      total = total + #r.messages
    end
    assert.are.equal(3000, total)
    -- and messages of a route whose handler never reads its body (no settled call)
    for batch = 1, 4 do
      local datas = {}
      for i = 1, 500 do datas[i] = '{"type":"relay","i":' .. i .. '}' end
      c:call { op = "send", id = "j", datas = datas }
      r = c:call { op = "recv", id = "j", n = #datas, timeout = 10 }
      assert.are.equal(#datas, #r.messages)
      assert.are.equal("relay", r.messages[#r.messages])
    end
    c:call { op = "send", id = "j", data = cjson.encode { type = "aborts" } }
    r = c:call { op = "recv", id = "j", n = 1, timeout = 5 }
    assert.are.equal(1, #r.messages)
    assert.are.same({}, cjson.decode(r.messages[1]))
  end)
end)
