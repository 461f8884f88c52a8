-- The systemd units in deploy/ (issue 10): checked by `systemd-analyze verify`
-- (Debian's systemd package; scripts/deps installs it) with our binary in place of
-- /usr/local/bin/edgews-lua, checked for what the README's "Deploying" promises
-- (a dedicated user, SIGHUP on reload, the open-file limit, the data directory,
-- the admin listener), and their command lines run: the server starts with exactly
-- the flags of ExecStart (paths and ports swapped for temporary ones), ExecReload
-- reloads it, and KillSignal stops it with exit status 0 within TimeoutStopSec.
local helper = require "spec.helper"
package.path = helper.ROOT .. "/lua/?.lua;" .. package.path
local http = require("edgews.testing").http

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local INSTALLED = "/usr/local/bin/edgews-lua"

-- { [section] = { key = { values... } } } of a unit file (comments skipped)
local function parse_unit(text)
  local unit, section = {}, nil
  for line in text:gmatch("[^\n]*") do
    local name = line:match("^%[([%w]+)%]$")
    if name then
      section = name
      unit[section] = unit[section] or {}
    elseif section and not line:find("^%s*[#;]") and line:find("=") then
      local k, v = line:match("^([%w]+)=(.*)$")
      assert(k, "malformed line: " .. line)
      unit[section][k] = unit[section][k] or {}
      table.insert(unit[section][k], v)
    end
  end
  return unit
end

local function one(unit, section, key)
  local v = unit[section] and unit[section][key]
  return v and v[#v]
end

local function has_systemd_analyze()
  local ok = os.execute("command -v systemd-analyze >/dev/null 2>&1")
  return ok == 0 or ok == true
end

local UNITS = {
  -- file, instance name to verify it as, variables of ExecStart (template only)
  { file = "edgews-lua.service", as = "edgews-lua.service" },
  { file = "edgews-lua@.service", as = "edgews-lua@a.service", instance = "a" },
}

describe("deploy/", function()
  after_each(helper.cleanup)

  for _, u in ipairs(UNITS) do
    local path = helper.ROOT .. "/deploy/" .. u.file
    local text = helper.read_file(path) or ""

    describe(u.file, function()
      local unit = parse_unit(text)

      it("passes systemd-analyze verify with no warning", function()
        assert.is_true(has_systemd_analyze(), "systemd-analyze is missing (scripts/deps installs systemd)")
        local dir = helper.tmpdir()
        local copy = dir .. "/" .. u.as
        assert.truthy(text:find(INSTALLED, 1, true))
        helper.write_file(copy, (text:gsub(INSTALLED:gsub("%p", "%%%0"), helper.BIN)))
        local p = io.popen(("systemd-analyze verify %s 2>&1; echo rc=$?"):format(shell_quote(copy)))
        local out = p:read("*a")
        p:close()
        assert.are.equal("rc=0\n", out)
      end)

      it("runs as a dedicated user, reloads with SIGHUP, raises the open-file limit", function()
        local user = one(unit, "Service", "User")
        assert.truthy(user and user ~= "root" and user ~= "0", "User= " .. tostring(user))
        assert.are.equal("/bin/kill -HUP $MAINPID", one(unit, "Service", "ExecReload"))
        assert.are.equal("SIGTERM", one(unit, "Service", "KillSignal"))
        assert.is_true(tonumber(one(unit, "Service", "TimeoutStopSec")) > 5) -- the drain timeout
        assert.is_true(tonumber(one(unit, "Service", "LimitNOFILE")) >= 65536)
        assert.is_nil(one(unit, "Service", "MemoryDenyWriteExecute")) -- LuaJIT's JIT writes code
        assert.are.equal("multi-user.target", one(unit, "Install", "WantedBy"))
      end)

      it("keeps its data in its StateDirectory and /health, /metrics on the admin listener", function()
        local exec = one(unit, "Service", "ExecStart")
        local state = one(unit, "Service", "StateDirectory")
        assert.truthy(state)
        assert.truthy(exec:find("^" .. INSTALLED:gsub("%p", "%%%0") .. " "), exec)
        assert.truthy(exec:find(" %-%-data /var/lib/" .. state:gsub("%p", "%%%0") .. " "), exec)
        assert.truthy(exec:find(" %-%-admin%-listen "), exec)
        assert.truthy(exec:find(" %-%-no%-watch "), exec)
      end)

      it("starts, reloads and stops with its own command lines", function()
        local dir = helper.tmpdir()
        local app = dir .. "/app.lua"
        helper.write_file(app, 'local edgews = require "edgews"\n'
          .. 'edgews.app { path = "/ws" }:on("message", function(s, d) s:send(d) end)\n')
        local state = one(unit, "Service", "StateDirectory"):gsub("%%i", u.instance or "")
        local env = {
          LISTEN = "127.0.0.1:0", ADMIN_LISTEN = "127.0.0.1:0", APP = app, EDGEWS_ARGS = "--workers 1",
        }
        local exec = one(unit, "Service", "ExecStart"):gsub("%%i", u.instance or "")
        exec = exec:gsub("%${([%w_]+)}", env):gsub("%$([%w_]+)", env)
        exec = exec:gsub("0%.0%.0%.0:%d+", "127.0.0.1:0"):gsub("127%.0%.0%.1:%d+", "127.0.0.1:0")
        exec = exec:gsub("/var/lib/" .. state:gsub("%p", "%%%0"), dir .. "/data")
        exec = exec:gsub("/srv/edgews%-lua/app%.lua", app)
        local argv = {}
        for w in exec:gmatch("%S+") do argv[#argv + 1] = w end
        argv[1] = helper.BIN
        assert(os.execute("mkdir " .. shell_quote(dir .. "/data")) == 0)
        -- the unit's flags plus --workers 1 (the template's EDGEWS_ARGS has it)
        if not u.instance then table.insert(argv, 2, "--workers"); table.insert(argv, 3, "1") end
        local srv = helper.spawn(argv, { kind = "server", dir = dir, stdout = dir .. "/out.log",
                                        stderr = dir .. "/err.log" })
        local function log() return helper.read_file(dir .. "/err.log") or "" end
        local admin = helper.wait_until(function()
          return log():match("admin listener [^\n]- on 127%.0%.0%.1:(%d+)") or not srv:alive()
        end, 10)
        assert.truthy(tonumber(admin), "did not start:\n" .. log())
        local port = assert(tonumber(log():match("listening on 127%.0%.0%.1:(%d+)")))
        assert.are.equal(tostring(srv.pid), (helper.read_file(dir .. "/data/edgews.lock") or ""):match("%d+"))
        -- /health on the admin listener only
        assert.are.equal(200, (http(("http://127.0.0.1:%s/health"):format(admin))))
        assert.are.equal(200, (http(("http://127.0.0.1:%s/metrics"):format(admin))))
        assert.are.equal(404, (http(("http://127.0.0.1:%d/health"):format(port))))
        assert.are.equal(404, (http(("http://127.0.0.1:%d/metrics"):format(port))))
        -- ExecReload, as systemd runs it
        local reload = one(unit, "Service", "ExecReload"):gsub("%$MAINPID", tostring(srv.pid))
        local rc = os.execute(reload)
        assert.is_true(rc == 0 or rc == true, reload)
        assert.truthy(helper.wait_until(function() return log():find("reloading", 1, true) end, 5), log())
        -- KillSignal, then the exit within TimeoutStopSec
        assert.is_true(srv:signal(one(unit, "Service", "KillSignal"):gsub("^SIG", "")))
        local exited, how, code = srv:wait(tonumber(one(unit, "Service", "TimeoutStopSec")))
        assert.is_true(exited, log())
        assert.are.same({ "exited", 0 }, { how, code })
      end)
    end)
  end
end)
