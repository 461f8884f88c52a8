-- edgews.log: log lines from Lua, through the core's logger (tagged with the time,
-- the level and the worker).
--
--   edgews.log.info("socket %d closed: %s", id, reason)   -- string.format
--   edgews.log.warn("plain text")
--
-- Each line is prefixed with the caller's file:line. A line below the server's
-- log level costs one comparison (nothing is formatted).

local core = require "edgews.core"

local select, tostring = select, tostring
local getinfo = debug.getinfo
local string_format = string.format

local _M = {}

local function make_logger(level)
  return function(fmt, ...)
    if level < core.log_level() then return end
    local msg = select("#", ...) > 0 and string_format(fmt, ...) or tostring(fmt)
    local info = getinfo(2, "Sl")
    if info and info.currentline and info.currentline > 0 then
      msg = info.short_src .. ":" .. info.currentline .. ": " .. msg
    end
    core.log(level, msg)
  end
end

_M.debug = make_logger(core.DEBUG)
_M.info = make_logger(core.INFO)
_M.warn = make_logger(core.WARN)
_M.error = make_logger(core.ERROR)

return _M
