-- The pace of a worker VM's garbage collector (README "Runaway handlers", collection
-- pace): after a cycle whose garbage was mostly large blocks (16 KiB messages), the
-- next one starts once the heap has grown by the larger of its live data and 4 MiB;
-- after small objects, LuaJIT's default; a script's own collectgarbage("setpause") is
-- kept. Through the server: the worker's VM reports its pause (spec/apps/gc_pace_app.lua).
local helper = require "spec.helper"
local cjson = require "cjson"

describe("garbage collector pace #integration #lua", function()
  local srv, url, c
  setup(function()
    srv = helper.start_server { app = helper.app "gc_pace_app.lua", workers = 1 }
    url = srv:url "/gc"
    c = helper.app_client()
  end)
  teardown(function() helper.cleanup() end)

  local function ask(id, data)
    c:call { op = "send", id = id, data = data }
    local r = c:call { op = "recv", id = id, n = 1, timeout = 3 }
    assert.are.equal(1, #r.messages, "replies: " .. cjson.encode(r))
    return r.json[1]
  end

  it("large messages: the heap grows by 4 MiB between cycles; small garbage: the default", function()
    local id = c:open_next(url, "g")
    for i = 1, 40 do ask(id, ("%05d"):format(i) .. ("x"):rep(16384)) end
    -- padded: a cycle that ended during the last message would otherwise leave a
    -- period of only small allocations before this collection
    local r = ask(id, "collect" .. ("z"):rep(16384))
    local live = r.bytes
    assert.is_true(live < 4 * 1048576, "live heap " .. live)
    -- threshold = heap * pause / 100 ~= live + 4 MiB (the heap measured a little later)
    local want = 100 * (live + 4 * 1048576) / live
    assert.is_true(math.abs(r.pause - want) <= want * 0.05,
      ("pause %d, expected ~%d for %d bytes live"):format(r.pause, want, live))
    assert.is_true(r.pause > 200)
    assert.are.equal(200, ask(id, "small").pause)
  end)

  -- after the one above: the pacer stops for good in this worker's VM
  it("a script's own pause is kept, also after further cycles", function()
    local id = c:open_next(url, "s")
    assert.are.equal(300, ask(id, "setpause").pause)
    for i = 1, 40 do ask(id, ("%05d"):format(i) .. ("y"):rep(16384)) end
    assert.are.equal(300, ask(id, "collect" .. ("z"):rep(16384)).pause)
    assert.are.equal(300, ask(id, "small").pause)
  end)
end)
