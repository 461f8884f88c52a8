-- edgews.timers: edgews.sleep, edgews.timer and edgews.every on the core's Lua
-- timers (core/lua/api_timer.c: one libuv timer each, found by id).
--
--   edgews.sleep(0.5)                           -- inside a handler: waits
--   local t = edgews.timer(2, fn)  ; t:cancel()  -- once, later, in a task of its own
--   local t = edgews.every(1, fn)  ; t:cancel()  -- periodically
--
-- Delays are seconds: any non-negative number (millisecond resolution, no upper
-- limit: math.huge never fires); a negative number or NaN raises. A timer's
-- function runs through run(fn) below, called by the core in a task, so it may
-- wait too; its errors are logged with file:line.

local core = require "edgews.core"

local type, error, tostring, xpcall, setmetatable = type, error, tostring, xpcall, setmetatable
local traceback = debug.traceback

local _M = {}

--- edgews.sleep(seconds): waits inside a handler (the handler's task is parked;
-- the worker serves everyone else meanwhile). Events of the same socket that
-- arrive meanwhile run after this handler returns, in order.
function _M.sleep(secs)
  if type(secs) ~= "number" or not (secs >= 0) then error("edgews.sleep: seconds expected", 2) end
  return core.sleep(secs)
end

local Timer = {}
Timer.__index = Timer
--- timer:cancel() -> true if it had not fired (or, for edgews.every, was running)
function Timer:cancel()
  return core.timer_cancel(self.id)
end

--- edgews.timer(seconds, fn) -> timer: runs fn once, later, in a task of its own
-- (it may wait too). An error in fn is logged with file:line.
function _M.timer(secs, fn)
  if type(secs) ~= "number" or not (secs >= 0) then error("edgews.timer: seconds expected", 2) end
  if type(fn) ~= "function" then error("edgews.timer: function expected", 2) end
  return setmetatable({ id = core.timer(secs, fn, false) }, Timer)
end

--- edgews.every(seconds, fn) -> timer: runs fn every `seconds` until cancelled.
-- A run that the watchdog stops (handler_timeout, max_lua_memory) cancels the timer:
-- a job that runs away once would otherwise stall the worker at every interval.
function _M.every(secs, fn)
  if type(secs) ~= "number" or not (secs >= 0.001) then error("edgews.every: seconds >= 0.001 expected", 2) end
  if type(fn) ~= "function" then error("edgews.every: function expected", 2) end
  local t = setmetatable({}, Timer)
  t.id = core.timer(secs, function()
    local ok, err = xpcall(fn, traceback)
    if not ok and core.handler_error(false, "timer", tostring(err)) then
      core.timer_cancel(t.id)
      core.log(core.ERROR, "edgews.every: the timer was cancelled (its run was stopped)")
    end
  end, true)
  return t
end

--- The core runs a due timer's function through this (in a task).
function _M.run(fn)
  local ok, err = xpcall(fn, traceback)
  if not ok then core.handler_error(false, "timer", tostring(err)) end
end

return _M
