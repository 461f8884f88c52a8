-- A worker's inbox is bounded (configure{worker_inbox_limit}); messages posted to a
-- worker whose inbox is full are refused and counted (edgews_inbox_dropped_total).
-- Pub/sub must still never leave a silent hole: the worker's subscribers catch up
-- from history. Here worker 1 is kept busy while worker 0 publishes 300 messages to
-- a topic a socket on worker 1 follows; its inbox (16) overflows; the subscriber
-- still receives 1..300, each once, in order.
local helper = require "spec.helper"
local cjson = require "cjson"

describe("bounded worker inboxes #integration", function()
  after_each(function() helper.cleanup() end)

  for _, backend in ipairs { "memory", "sqlite" } do
    it(backend .. ": a subscriber on a worker whose inbox overflowed gets every offset once, in order", function()
      local args = { "--no-watch" }
      if backend == "sqlite" then args[#args + 1] = "--data"; args[#args + 1] = helper.tmpdir() end
      local srv = helper.start_server { app = helper.app "inbox_app.lua", workers = 2, args = args }
      local c = helper.app_client()
      -- one socket on worker 0 (publisher), two on worker 1 (subscriber, blocker)
      local on, n = { [0] = {}, [1] = {} }, 0
      while (#on[0] < 1 or #on[1] < 2) and n < 200 do
        n = n + 1
        local id = "s" .. n
        assert.are.equal(101, c:call({ op = "open", id = id, url = srv:url "/ib" }).status)
        c:call { op = "send", id = id, data = "where" }
        local w = c:call({ op = "recv", id = id, n = 1, timeout = 5 }).json[1].worker
        on[w][#on[w] + 1] = id
      end
      assert.is_true(#on[0] >= 1 and #on[1] >= 2, "could not get sockets on both workers")
      local pub, sub, blocker = on[0][1], on[1][1], on[1][2]
      c:call { op = "send", id = sub, data = "sub t" }
      assert.is_number(c:call({ op = "recv", id = sub, n = 1, timeout = 5 }).json[1].subscribed)
      c:call { op = "send", id = blocker, data = "block 2" }
      assert.truthy(srv:wait_log("blocking worker 1", 10))
      c:call { op = "send", id = pub, data = "pub t 300" }
      assert.are.equal(300, c:call({ op = "recv", id = pub, n = 1, timeout = 10 }).json[1].published)
      local got = c:call { op = "recv", id = sub, n = 300, timeout = 30 }
      local want = {}
      for i = 1, 300 do want[i] = tostring(i) end
      assert.are.same(want, got.messages)
      -- nothing more (no duplicate) arrives
      local more = c:call { op = "recv", id = sub, n = 1, timeout = 0.5 }
      assert.are.same({}, more.messages)
      -- the overflow did happen
      local f = assert(io.popen("curl -s --max-time 10 " .. srv:http_url "/metrics"))
      local body = f:read("*a")
      f:close()
      local dropped = tonumber(body:match('edgews_inbox_dropped_total{worker="1"} (%d+)'))
      assert.is_true(dropped and dropped > 0, "worker 1 dropped nothing:\n" .. body:sub(1, 300))
    end)
  end
end)
