-- edgews.loader: the transactional script loader (edgews.app, edgews.configure,
-- and the core's load and reload of the script).
--
--   local loader = require("edgews.loader").new(apps, { begin = fn(), finish = fn(ok) })
--   loader.app(t), loader.configure(t)     -- edgews.app{} and edgews.configure{}
--   loader.static(prefix, dir [, opts])    -- edgews.static(...)
--   loader.load(path) -> true, server_config | nil, err
--
-- `apps` is the registry the loader fills (path -> app of the current script
-- version) and the dispatcher reads; apps that a reload removed stay in it so
-- their open connections keep their handlers. The hooks run around every load:
-- `begin()` before the script runs, `finish(ok)` after it, whatever happened
-- (pub/sub uses them to replace load-time subscriptions only when a version
-- loads). Both are given by the caller: the loader requires no service.
--
-- A load is a transaction. The script's own modules (everything `require`d that
-- was not loaded before the first script) are unloaded first so `require` sees
-- their new versions, and put back if this version fails; the apps the script
-- defines replace the current ones only when the whole script ran, defined at
-- least one app (or static mount), and every app was valid; the static mounts are
-- replaced with the apps (core.set_static). A failure changes nothing and comes
-- back as the error with file:line (the traceback follows it).

local core = require "edgews.core"
local config = require "edgews.config"
local app_mod = require "edgews.app"

local type, pairs, ipairs, error, tostring, xpcall, loadfile =
  type, pairs, ipairs, error, tostring, xpcall, loadfile
local traceback = debug.traceback
local package_loaded = package.loaded

local _M = {}

local function noop() end

-- What a version that loads may still get wrong, said when it loads (once: by
-- worker 0; the main thread's configuration VM has no data store to ask about).
local function warn_about(list)
  if core.worker_id() ~= 0 then return end
  for _, app in ipairs(list) do
    if app.config.notifications and not core.has_store() then
      core.log(core.WARN, (app._defined_at and (app._defined_at .. ": ") or "")
        .. "app " .. app.path .. " has notifications = true, but the server has no data "
        .. "directory (start it with --data DIR): notifications.store returns nil, \"no data "
        .. "directory\" and no pending notification is delivered")
    end
  end
end

--- loader.new(apps, hooks) -> the loader of one VM (see the top of the file)
function _M.new(apps, hooks)
  if type(apps) ~= "table" then error("loader.new: apps must be a table", 2) end
  hooks = hooks or {}
  local begin, finish = hooks.begin or noop, hooks.finish or noop
  local self = {}
  local loading -- while a script runs: { list = {...}, by_path = {...}, server = nil }
  local baseline -- modules loaded before any script: never unloaded

  --- edgews.app{ path = "/x", ... } -> app   (see README for every field)
  function self.app(t)
    if not loading then error("edgews.app must be called while the script loads", 2) end
    local c = config.app(t, 2)
    if loading.by_path[c.path] then error("edgews.app: path " .. c.path .. " is defined twice", 2) end
    local app = app_mod.new(c, t, 2)
    local info = debug.getinfo(2, "Sl")
    app._defined_at = info and info.currentline and info.currentline > 0
      and (info.short_src .. ":" .. info.currentline) or nil
    loading.by_path[c.path] = app
    loading.list[#loading.list + 1] = app
    return app
  end

  --- edgews.static(prefix, dir [, opts]): serve the files of dir (relative to the
  -- script's directory) under the path prefix; opts: cache_control, index.
  function self.static(prefix, dir, opts)
    if not loading then error("edgews.static must be called while the script loads", 2) end
    local m = config.static(prefix, dir, opts, 2)
    if loading.static_by[m.prefix] then
      error("edgews.static: prefix " .. (m.prefix == "" and "/" or m.prefix) .. " is mounted twice", 2)
    end
    local full = m.dir:sub(1, 1) == "/" and m.dir or loading.dir .. "/" .. m.dir
    local root, err = core.static_root(full)
    if not root then error(("edgews.static: cannot serve %s: %s"):format(full, tostring(err)), 2) end
    m.root = root
    loading.static_by[m.prefix] = m
    loading.statics[#loading.statics + 1] = m
  end

  --- edgews.configure{ listen=, workers=, log_level=, drain_timeout=, ... }
  -- Server-wide settings; command-line flags override them. Read when the server
  -- starts (changes on reload are ignored, except that they are validated).
  function self.configure(t)
    if not loading then error("edgews.configure must be called while the script loads", 2) end
    loading.server = config.server(t, 2)
    -- The rest of this load runs under the new budget (a script that needs long to load
    -- says so before it does).
    if loading.server.handler_timeout then core.set_run_budget(loading.server.handler_timeout) end
  end

  --- loader.load(path) -> true, server_config (nil when the script set none) | nil, err
  function self.load(path)
    if not baseline then
      baseline = {}
      for k in pairs(package_loaded) do baseline[k] = true end
    end
    -- Forget the script's own modules so `require` picks up their new versions;
    -- keep the old ones to put back if this version fails.
    local previous = {}
    for k, v in pairs(package_loaded) do
      if not baseline[k] then
        previous[k] = v
        package_loaded[k] = nil
      end
    end
    loading = { list = {}, by_path = {}, statics = {}, static_by = {},
                dir = path:match("^(.*)/[^/]*$") or "." }
    begin()
    local fn, err = loadfile(path)
    local ok = fn ~= nil
    if ok then ok, err = xpcall(fn, traceback) end
    if ok and #loading.list == 0 and #loading.statics == 0 then
      ok, err = false, path .. ": the script defines no app (call edgews.app{ path = ... })"
    end
    finish(ok)
    local new = loading
    loading = nil
    if not ok then
      for k in pairs(package_loaded) do
        if not baseline[k] then package_loaded[k] = nil end
      end
      for k, v in pairs(previous) do package_loaded[k] = v end
      return nil, tostring(err)
    end
    local routes = {}
    for i, app in ipairs(new.list) do
      app:_finalize()
      apps[app.path] = app
      routes[i] = app.config
    end
    core.set_routes(routes)
    core.set_static(new.statics)
    warn_about(new.list)
    return true, new.server
  end

  return self
end

return _M
