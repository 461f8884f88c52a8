-- Unit specs for lua/edgews/middleware.lua: order, short-circuit, the onion
-- order of code after next(), waiting (coroutine yields) inside a middleware,
-- next() misuse, error propagation, nested and concurrent runs, pooling.
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local middleware = require "edgews.middleware"

-- A middleware that logs "<name>>" before next() and "<name><" after it.
local function logger(log, name)
  return function(socket, msg, ctx, next)
    log[#log + 1] = name .. ">"
    next()
    log[#log + 1] = name .. "<"
  end
end

describe("edgews.middleware", function()
  it("runs the middlewares in order, then final, with the same arguments", function()
    local chain, seen = middleware.new(), {}
    local sock, msg, ctx = {}, { type = "x" }, {}
    for i = 1, 3 do
      chain:use(function(s, m, c, next)
        seen[#seen + 1] = i
        assert.are.equal(sock, s); assert.are.equal(msg, m); assert.are.equal(ctx, c)
        next()
      end)
    end
    local ok = chain:run(sock, msg, ctx, function(s, m, c)
      seen[#seen + 1] = "final"
      assert.are.equal(sock, s); assert.are.equal(msg, m); assert.are.equal(ctx, c)
    end)
    assert.is_true(ok)
    assert.are.same({ 1, 2, 3, "final" }, seen)
  end)

  it("calls final directly for an empty chain", function()
    local called = 0
    assert.is_true(middleware.new():run(1, 2, 3, function(s, m, c)
      assert.are.same({ 1, 2, 3 }, { s, m, c })
      called = called + 1
    end))
    assert.are.equal(1, called)
  end)

  it("stops when a middleware does not call next (short-circuit)", function()
    local log = {}
    local chain = middleware.new()
      :use(logger(log, "a"))
      :use(function(s, m, c, next) log[#log + 1] = "stop" end)
      :use(logger(log, "c"))
    local ok = chain:run({}, {}, {}, function() log[#log + 1] = "final" end)
    assert.is_false(ok)
    assert.are.same({ "a>", "stop", "a<" }, log)
  end)

  it("runs code after next() once downstream completed (onion order)", function()
    local log = {}
    local chain = middleware.new():use(logger(log, "a")):use(logger(log, "b")):use(logger(log, "c"))
    chain:run({}, {}, {}, function() log[#log + 1] = "final" end)
    assert.are.same({ "a>", "b>", "c>", "final", "c<", "b<", "a<" }, log)
  end)

  it("returns from next() what downstream returned", function()
    local got
    local chain = middleware.new()
      :use(function(s, m, c, next) got = { next() } end)
      :use(function(s, m, c, next) return next() end)
    chain:run({}, {}, {}, function() return 1, "two" end)
    assert.are.same({ 1, "two" }, got)
  end)

  it("lets middleware share per-message state through ctx", function()
    local chain = middleware.new()
      :use(function(s, m, c, next) c.user = "ann"; next() end)
    local user
    chain:run({}, {}, {}, function(s, m, c) user = c.user end)
    assert.are.equal("ann", user)
  end)

  describe("waiting", function()
    it("continues when next() is called after the middleware waited (a yield)", function()
      local log = {}
      local chain = middleware.new()
        :use(logger(log, "a"))
        :use(function(s, m, c, next)
          log[#log + 1] = "wait"
          local v = coroutine.yield("waiting")
          log[#log + 1] = "woke " .. v
          next()
          coroutine.yield("after")
          log[#log + 1] = "b<"
        end)
        :use(logger(log, "c"))
      local result
      local co = coroutine.create(function()
        result = chain:run({}, {}, {}, function() log[#log + 1] = "final" end)
      end)
      assert.are.same({ true, "waiting" }, { coroutine.resume(co) })
      assert.are.same({ "a>", "wait" }, log)
      assert.are.same({ true, "after" }, { coroutine.resume(co, "up") })
      assert.are.same({ "a>", "wait", "woke up", "c>", "final", "c<" }, log)
      assert.are.same({ true }, { coroutine.resume(co) })
      assert.are.equal("dead", coroutine.status(co))
      assert.is_true(result)
      assert.are.same({ "a>", "wait", "woke up", "c>", "final", "c<", "b<", "a<" }, log)
    end)

    it("keeps concurrent runs of one chain apart while one of them waits", function()
      local seen = {}
      local chain = middleware.new()
        :use(function(s, m, c, next)
          if m.wait then coroutine.yield() end
          next()
        end)
        :use(function(s, m, c, next) c.mark = m.name; next() end)
      local final = function(s, m, c) seen[#seen + 1] = m.name .. ":" .. c.mark .. ":" .. s.id end
      local waiting = coroutine.create(function()
        chain:run({ id = 1 }, { wait = true, name = "slow" }, {}, final)
      end)
      assert.is_true(coroutine.resume(waiting))      -- parked in middleware 1
      for i = 2, 4 do                                -- other runs meanwhile
        chain:run({ id = i }, { name = "fast" .. i }, {}, final)
      end
      assert.is_true(coroutine.resume(waiting))
      assert.are.same({ "fast2:fast2:2", "fast3:fast3:3", "fast4:fast4:4", "slow:slow:1" }, seen)
    end)

    it("waits inside final and the middlewares resume after it", function()
      local log = {}
      local chain = middleware.new():use(logger(log, "a"))
      local co = coroutine.wrap(function()
        chain:run({}, {}, {}, function() coroutine.yield(); log[#log + 1] = "final" end)
        return "done"
      end)
      co()
      assert.are.same({ "a>" }, log)
      assert.are.equal("done", co())
      assert.are.same({ "a>", "final", "a<" }, log)
    end)
  end)

  describe("misuse", function()
    it("raises when next() is called twice, at the caller's line", function()
      local chain = middleware.new():use(function(s, m, c, next)
        next()
        next() -- line to blame
      end)
      local ok, err = pcall(chain.run, chain, {}, {}, {}, function() end)
      assert.is_false(ok)
      assert.matches("middleware_spec.lua:%d+: middleware: next%(%) called twice", err)
    end)

    it("raises when next() is called again after a caught downstream error", function()
      local finals = 0
      local chain = middleware.new()
        :use(function(s, m, c, next)
          local ok = pcall(next)
          assert.is_false(ok)
          next() -- a retry: must not run anything again
        end)
        :use(function(s, m, c, next) error("boom") end)
      local ok, err = pcall(chain.run, chain, {}, {}, {}, function() finals = finals + 1 end)
      assert.is_false(ok)
      assert.matches("next%(%) called twice", err)
      assert.are.equal(0, finals)
    end)

    it("raises when a kept next() is called after the run stopped", function()
      local kept
      local chain = middleware.new()
        :use(function(s, m, c, next) kept = next end) -- stops the chain
      assert.is_false(chain:run({}, {}, {}, function() error("final must not run") end))
      chain:run({}, {}, {}, function() end) -- another run of the same chain
      local ok, err = pcall(kept)
      assert.is_false(ok)
      assert.matches("called after the chain finished", err)
    end)

    it("raises when a kept next() is called after the run completed", function()
      local kept
      local chain = middleware.new():use(function(s, m, c, next) kept = next; next() end)
      assert.is_true(chain:run({}, {}, {}, function() end))
      local ok, err = pcall(kept)
      assert.is_false(ok)
      assert.matches("called after the chain finished", err)
    end)

    it("rejects a non-function middleware or final, at the caller's line", function()
      local chain = middleware.new()
      local ok, err = pcall(function() chain:use("nope") end)
      assert.is_false(ok)
      assert.matches("middleware_spec.lua:%d+: middleware: use%(%) expects a function", err)
      ok, err = pcall(function() chain:run({}, {}, {}, nil) end)
      assert.is_false(ok)
      assert.matches("middleware_spec.lua:%d+: middleware: run%(%) expects final", err)
    end)
  end)

  describe("errors", function()
    it("propagate from a middleware to the caller of run, with their own location", function()
      local log = {}
      local chain = middleware.new()
        :use(logger(log, "a"))
        :use(function() error("bad thing") end)
      local ok, err = pcall(chain.run, chain, {}, {}, {}, function() end)
      assert.is_false(ok)
      assert.matches("middleware_spec.lua:%d+: bad thing", err)
      assert.are.same({ "a>" }, log) -- no code after next() ran
    end)

    it("propagate from final, and keep their traceback (no pcall in between)", function()
      local chain = middleware.new():use(function(s, m, c, next) next() end)
      local function failing_final() error({ code = 42 }) end
      local ok, err = pcall(chain.run, chain, {}, {}, {}, failing_final)
      assert.is_false(ok)
      assert.are.same({ code = 42 }, err) -- error objects pass untouched
      local function failing_final2() error("deep") end
      ok, err = xpcall(chain.run, debug.traceback, chain, {}, {}, {}, failing_final2)
      assert.is_false(ok)
      assert.matches("middleware_spec.lua:%d+: in function", err) -- reaches the raise site
    end)

    it("leave the chain usable for the next run", function()
      local fail = true
      local chain = middleware.new()
        :use(function(s, m, c, next) next() end)
        :use(function(s, m, c, next) if fail then error("once") end; next() end)
      assert.is_false(pcall(chain.run, chain, {}, {}, {}, function() end))
      fail = false
      local done = false
      assert.is_true(chain:run({}, {}, {}, function() done = true end))
      assert.is_true(done)
    end)
  end)

  it("supports a chain run from inside its own final (nested runs)", function()
    local log = {}
    local chain = middleware.new():use(logger(log, "a"))
    local depth = 0
    local function final(s, m, c)
      log[#log + 1] = "final" .. m.n
      if m.n < 3 then
        depth = depth + 1
        assert.is_true(chain:run(s, { n = m.n + 1 }, c, final))
      end
    end
    assert.is_true(chain:run({}, { n = 1 }, {}, final))
    assert.are.same({ "a>", "final1", "a>", "final2", "a>", "final3", "a<", "a<", "a<" }, log)
  end)

  it("keeps an outer run intact when a nested run's error was caught", function()
    local log = {}
    local chain = middleware.new()
    chain:use(function(s, m, c, next)
      if m.outer then
        local ok = pcall(chain.run, chain, s, { outer = false }, c, function() end)
        log[#log + 1] = "inner failed: " .. tostring(not ok)
      else
        error("inner")
      end
      next()
    end)
    assert.is_true(chain:run({}, { outer = true }, {}, function() log[#log + 1] = "final" end))
    assert.are.same({ "inner failed: true", "final" }, log)
  end)

  it("picks up middlewares added after runs started", function()
    local log = {}
    local chain = middleware.new():use(logger(log, "a"))
    chain:run({}, {}, {}, function() end) -- warms the pool for one middleware
    chain:use(logger(log, "b"))
    assert.are.equal(2, chain:count())
    log[1], log[2] = nil, nil
    assert.is_true(chain:run({}, {}, {}, function() log[#log + 1] = "final" end))
    assert.are.same({ "a>", "b>", "final", "b<", "a<" }, log)
  end)

  it("allocates nothing per run once warm (pooled run states)", function()
    local chain = middleware.new()
    for _ = 1, 3 do chain:use(function(s, m, c, next) next() end) end
    local final = function() end
    local sock, msg, ctx = {}, {}, {}
    for _ = 1, 20000 do chain:run(sock, msg, ctx, final) end -- warm: pool and JIT traces
    collectgarbage("collect")
    collectgarbage("stop")
    local before = collectgarbage("count")
    for _ = 1, 100000 do chain:run(sock, msg, ctx, final) end
    local grown = (collectgarbage("count") - before) * 1024
    collectgarbage("restart")
    -- one small table per run would be >= 3 MB; JIT traces compiled meanwhile
    -- are GC objects too (a few KB, independent of the number of runs)
    assert.is_true(grown < 64 * 1024, "grew by " .. grown .. " bytes over 100000 runs")
  end)
end)
