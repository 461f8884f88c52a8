-- Fan-out: one message to many sockets, framed once and compressed once
-- (RFC 7692 7.2.1: the same compressed payload is valid for every receiver when the
-- server uses no context takeover), and app:broadcast with a filter.
local helper = require "spec.helper"
local cjson = require "cjson"

describe("fan-out #integration", function()
  local srv, url
  setup(function()
    srv = helper.start_server { app = helper.app "fanout_app.lua", workers = 1 }
    url = srv:url "/fan"
  end)
  teardown(function() helper.cleanup() end)

  local function run(count, msg, expect, listen)
    local res, rc = helper.run({ helper.PYTHON, helper.CLIENTS .. "/fanout.py", "--url", url,
      "--count", tostring(count), "--send", msg, "--expect", tostring(expect or 1),
      "--listen", tostring(listen or 2) })
    assert.are.equal(0, rc, cjson.encode(res))
    return res
  end

  it("every socket gets the broadcast, compressed once for all of them", function()
    local payload = string.rep("a compressible broadcast payload ", 20)
    local before = cjson.decode(helper.assert_ok(helper.py("sequence", "--url", url, "--send",
      "stats")).replies[1]).messages_compressed
    local res = run(30, "all:" .. payload)
    for i, got in ipairs(res.received) do
      assert.are.same({ payload }, got, "socket " .. i)
      assert.truthy(res.extensions[i] and res.extensions[i]:find("permessage%-deflate"))
    end
    local after = cjson.decode(helper.assert_ok(helper.py("sequence", "--url", url, "--send",
      "stats")).replies[1]).messages_compressed
    -- one compression for the 30 receivers (the stats client does not negotiate
    -- compression, so its replies add none)
    assert.are.equal(before + 1, after)
  end)

  it("a filter excludes the sender", function()
    local res = run(5, "others:hello everyone", 1, 0.7)
    assert.are.same({}, res.received[1])
    for i = 2, 5 do assert.are.same({ "hello everyone" }, res.received[i]) end
  end)
end)
