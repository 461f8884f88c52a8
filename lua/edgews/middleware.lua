-- edgews.middleware: an onion (Koa-style) chain of message middlewares.
--
--   local middleware = require "edgews.middleware"
--   local chain = middleware.new()
--   chain:use(function(socket, msg, ctx, next)
--     local t0 = edgews.now()
--     next()                                   -- runs the rest of the chain
--     edgews.log.debug("took %.3f s", edgews.now() - t0)   -- after downstream
--   end)
--   chain:use(function(socket, msg, ctx, next)
--     if not ctx.user then return socket:close(4401, "unauthorized") end  -- stops
--     next()
--   end)
--   local completed = chain:run(socket, msg, ctx, function(socket, msg, ctx) ... end)
--
-- Semantics.
--   * chain:run calls the middlewares in the order of use(), each as
--     fn(socket, msg, ctx, next); next() runs the next middleware, and after the
--     last one final(socket, msg, ctx). next() returns what that call returned.
--   * A middleware that returns without calling next() stops the chain: final
--     does not run and run() returns false; run() returns true when final ran.
--   * Code after next() runs once everything downstream has returned (onion).
--   * A middleware may wait (edgews.sleep, or any coroutine.yield of the task
--     running the chain) before or after calling next(): the runner keeps no
--     state on the C stack and has no pcall, so yields pass straight through.
--   * next() called twice by the same middleware raises, also after a caught
--     downstream error (a middleware may pcall(next) to handle errors, but not
--     retry); so does next() called after its run stopped early. Use next()
--     only while your middleware runs: a next kept and called after the run
--     completed fails too, unless its run state was meanwhile reused by another
--     run that waits in the same middleware (see the design; not detectable
--     without allocating per run).
--   * Errors raised by a middleware or by final (and the misuse errors above)
--     propagate, untouched, to the caller of run(): no pcall in the runner, so
--     the traceback still reaches the line that raised.
--
-- Design: no allocation per run (a pcall-free runner, one closure per
-- middleware per run state, not per message). A run needs per-run state
-- (socket, msg, ctx, final, which middleware may call next) and each
-- middleware needs a next that knows its own position, so "called twice" can
-- be told from a legitimate call even after a downstream error was caught.
-- Both live in a run state: a table plus one next closure per middleware,
-- bound to that table and to the middleware's index j. next_j checks
-- state.max == j (j is the deepest middleware started, so it has not called
-- next yet), sets max = j + 1 and tail-calls middleware j + 1 (or final).
-- A run takes a state from the chain's spare slot (one run at a time: the
-- common case), else from a pool, else builds one (a table and n closures),
-- and gives it back when the run completes: a warm run costs a dozen field
-- stores (~13 ns for three middlewares with LuaJIT 2.1). A state is *not*
-- given back when the run stopped early (a next that was never called may be
-- kept and called later: it must keep failing, not drive an unrelated run) or
-- raised (the state is left to the GC). Concurrent runs (one waiting while
-- another starts) and nested runs (a chain run from inside one of its own
-- middlewares or final) each hold their own state. The alternative, one
-- static next per position finding the run through coroutine.running(), was
-- measured at ~60 ns per run: the JIT does not compile coroutine.running.
-- use() after runs started is allowed: it replaces the middleware list (copy
-- on write) and empties the pool; runs in flight finish with the old list.

local type, error, setmetatable = type, error, setmetatable

local _M = {}

local POOL_MAX = 64 -- run states kept per chain (more are only needed while runs wait)

local Chain = {}
Chain.__index = Chain

--- middleware.new() -> chain
function _M.new()
  return setmetatable({ fns = {}, n = 0, spare = false, pool = {}, npool = 0 }, Chain)
end

--- chain:use(fn) -> chain       fn(socket, msg, ctx, next)
function Chain:use(fn)
  if type(fn) ~= "function" then
    error("middleware: use() expects a function(socket, msg, ctx, next), got " .. type(fn), 2)
  end
  local old, n = self.fns, self.n
  local fns = {}
  for i = 1, n do fns[i] = old[i] end
  fns[n + 1] = fn
  self.fns, self.n = fns, n + 1
  self.spare, self.pool, self.npool = false, {}, 0
  return self
end

--- chain:count() -> number of middlewares
function Chain:count()
  return self.n
end

-- A run state for the chain's current middleware list: the table and its nexts.
-- Built from the last middleware back, so each next holds the one after it.
local function new_state(fns, n)
  -- max: the middleware allowed to call next (the deepest started); 0 when idle
  local r = { fns = fns, max = 0, socket = false, msg = false, ctx = false, final = false, first = false }
  local after -- the next of middleware j + 1
  for j = n, 1, -1 do
    local k, fn, nxt = j + 1, fns[j + 1], after -- fn: nil for the last middleware (calls final)
    after = function()
      local m = r.max
      if m ~= j then
        if m == 0 then error("middleware: next() called after the chain finished", 2) end
        if m > j then error("middleware: next() called twice", 2) end
        error("middleware: next() called by a middleware that is not running", 2)
      end
      r.max = k
      if fn then return fn(r.socket, r.msg, r.ctx, nxt) end
      return r.final(r.socket, r.msg, r.ctx)
    end
  end
  r.first = after
  return r
end

--- chain:run(socket, msg, ctx, final) -> true if final ran, false if a middleware stopped the chain
function Chain:run(socket, msg, ctx, final)
  if type(final) ~= "function" then
    error("middleware: run() expects final to be a function(socket, msg, ctx), got " .. type(final), 2)
  end
  local n = self.n
  if n == 0 then
    final(socket, msg, ctx)
    return true
  end
  local fns = self.fns
  local r = self.spare -- the common case: no other run of this chain is waiting
  if r then
    self.spare = false
  else
    local k = self.npool
    if k > 0 then
      local pool = self.pool
      r = pool[k]
      pool[k] = nil
      self.npool = k - 1
    else
      r = new_state(fns, n)
    end
  end
  r.max = 1
  r.socket, r.msg, r.ctx, r.final = socket, msg, ctx, final
  fns[1](socket, msg, ctx, r.first)
  local completed = r.max > n
  r.max = 0
  r.socket, r.msg, r.ctx, r.final = nil, nil, nil, nil
  if completed and r.fns == self.fns then
    if not self.spare then
      self.spare = r
    else
      local k = self.npool
      if k < POOL_MAX then
        self.pool[k + 1] = r
        self.npool = k + 1
      end
    end
  end
  return completed
end

return _M
