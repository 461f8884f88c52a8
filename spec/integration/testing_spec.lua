-- edgews.testing as a user runs it (issue 10): a user's app and spec
-- (spec/apps/testing_user/) copied into a directory outside the repository and run
-- there with `busted --lua=luajit`, LUA_PATH set as the README's "Testing your app"
-- says, against the server named by EDGEWS_BIN (the release or the ASan+UBSan build);
-- and how the module finds the server binary (EDGEWS_BIN, PATH, a source tree, an
-- installed layout).
local helper = require "spec.helper"

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function sh(cmd)
  local ok = os.execute(cmd)
  assert(ok == 0 or ok == true, "failed: " .. cmd)
end

-- LUA_PATH as the README tells users to set it (for a clone at ROOT).
local LUA_PATH = ("%s/lua/?.lua;%s/lua/?/init.lua;;"):format(helper.ROOT, helper.ROOT)

-- Runs `busted --lua=luajit -o TAP` in dir; returns ok count, not-ok count, output.
-- Sanitizer reports of the servers it starts go to files in dir/san (none expected).
local function run_busted(dir, env, timeout)
  sh("mkdir -p " .. shell_quote(dir .. "/san") .. " " .. shell_quote(dir .. "/tmp"))
  env = env or {}
  env.TMPDIR = dir .. "/tmp" -- where edgews.testing makes its directories
  env.LUA_PATH = env.LUA_PATH or LUA_PATH
  env.ASAN_OPTIONS = (os.getenv("ASAN_OPTIONS") or "") .. ":log_path=" .. dir .. "/san/asan"
  env.UBSAN_OPTIONS = (os.getenv("UBSAN_OPTIONS") or "") .. ":log_path=" .. dir .. "/san/ubsan"
  local p = helper.spawn({ "sh", "-c", "cd " .. shell_quote(dir) .. " && exec busted --lua=luajit -o TAP" },
    { env = env })
  local done, out = p:finish(timeout or 120)
  if not done then p:kill(0) end
  local ok = select(2, out:gsub("\nok %d+", "")) + (out:find("^ok %d+") and 1 or 0)
  local notok = select(2, out:gsub("not ok %d+", ""))
  local reports = io.popen("cat " .. shell_quote(dir) .. "/san/* 2>/dev/null"):read("*a")
  return ok, notok, out .. (p:stderr() or ""), reports, done
end

local function count_its(path)
  return select(2, helper.read_file(path):gsub('\n%s*it%("', ""))
end

describe("edgews.testing", function()
  after_each(helper.cleanup)

  it("runs a user's spec from a directory outside the repository", function()
    local dir = helper.tmpdir()
    assert.is_nil(dir:find(helper.ROOT, 1, true))
    local src = helper.ROOT .. "/spec/apps/testing_user/"
    sh(("mkdir %s/spec && cp %s %s/ && cp %s %s/spec/scoreboard_spec.lua"):format(shell_quote(dir),
      shell_quote(src .. "scoreboard.lua"), shell_quote(dir), shell_quote(src .. "scoreboard_test.lua"),
      shell_quote(dir)))
    local want = count_its(src .. "scoreboard_test.lua")
    assert.is_true(want >= 10)
    local ok, notok, out, reports, done = run_busted(dir)
    assert.is_true(done, "busted did not finish:\n" .. out)
    assert.are.equal("", reports, "sanitizer report from a server:\n" .. reports)
    assert.are.equal(0, notok, out)
    assert.are.equal(want, ok, out)
    -- the servers are gone and cleanup() removed every directory it made
    local left = io.popen("ls -A " .. shell_quote(dir .. "/tmp")):read("*a")
    assert.are.equal("", left)
    -- ("[s]" so that the pattern does not match the shell running pgrep)
    local procs = io.popen("pgrep -f " .. shell_quote(dir .. "/[s]coreboard.lua")):read("*a")
    assert.are.equal("", procs)
  end)

  it("leaves no server behind when the test process is killed", function()
    local dir = helper.tmpdir()
    helper.write_file(dir .. "/app.lua", 'require("edgews").app { path = "/x" }\n')
    local script = ("local t = require 'edgews.testing'; local s = assert(t.start { app = %q }); "
      .. "print(s.pid); io.stdout:flush(); t.sleep(60)"):format(dir .. "/app.lua")
    local p = helper.spawn({ "luajit", "-e", script }, { env = { LUA_PATH = LUA_PATH, TMPDIR = dir } })
    local pid = tonumber(p:read_line(20))
    assert.is_truthy(pid, p:stderr())
    local function running() -- alive and not a zombie
      local stat = helper.read_file("/proc/" .. pid .. "/stat")
      return stat ~= nil and not stat:match("^%d+ %b() Z")
    end
    finally(function() -- should the server survive, end it anyway
      if running() then require("posix.signal").kill(pid, 9) end
    end)
    assert.is_true(running())
    p:signal("KILL")
    assert.is_truthy(helper.wait_until(function() return not running() end, 5), "the server outlived its test")
  end)

  describe("finds the server binary", function()
    -- The path server_binary() prints with the given environment (or its error).
    local function lookup(env)
      local p = helper.spawn({ "luajit", "-e",
        "local ok, v = pcall(require('edgews.testing').server_binary); print(ok and v or 'error: ' .. v)" },
        { env = env })
      local done, out = p:finish(20)
      assert(done, "luajit did not finish")
      return (out:gsub("\n$", "")), p:stderr()
    end

    local function stub(path)
      sh("mkdir -p " .. shell_quote(path:match("^(.*)/")))
      helper.write_file(path, "#!/bin/sh\nexit 0\n")
      sh("chmod +x " .. shell_quote(path))
    end

    local real_build = helper.ROOT .. "/build/edgews-lua"
    local plain_path = "/usr/bin:/bin"

    it("from EDGEWS_BIN first, and says when it is not executable", function()
      local dir = helper.tmpdir()
      stub(dir .. "/bin/edgews-lua")
      stub(dir .. "/other/edgews-lua")
      assert.are.equal(dir .. "/other/edgews-lua", lookup { LUA_PATH = LUA_PATH,
        EDGEWS_BIN = dir .. "/other/edgews-lua", PATH = dir .. "/bin:" .. plain_path })
      local out = lookup { LUA_PATH = LUA_PATH, EDGEWS_BIN = dir .. "/missing", PATH = plain_path }
      assert.truthy(out:find("^error: .*EDGEWS_BIN=" .. dir:gsub("%p", "%%%0") .. "/missing is not an executable file"), out)
    end)

    it("then edgews-lua on PATH", function()
      local dir = helper.tmpdir()
      stub(dir .. "/bin/edgews-lua")
      assert.are.equal(dir .. "/bin/edgews-lua", lookup { LUA_PATH = LUA_PATH, EDGEWS_BIN = "",
        PATH = dir .. "/bin:" .. plain_path })
    end)

    it("then build/edgews-lua of the source tree the module is in", function()
      assert.are.equal(0, require("posix.unistd").access(real_build, "x"), "build the release first")
      local want = require("posix.stdlib").realpath(real_build)
      assert.are.equal(want, lookup { LUA_PATH = LUA_PATH, EDGEWS_BIN = "", PATH = plain_path })
    end)

    it("or PREFIX/bin/edgews-lua of an installation (modules in PREFIX/share/lua/5.1)", function()
      local prefix = helper.tmpdir()
      local share = prefix .. "/share/lua/5.1/edgews"
      sh(("mkdir -p %s/testing && cp %s/lua/edgews/*.lua %s/ && cp %s/lua/edgews/testing/*.lua %s/testing/")
        :format(shell_quote(share), shell_quote(helper.ROOT), shell_quote(share), shell_quote(helper.ROOT),
          shell_quote(share)))
      local env = { LUA_PATH = prefix .. "/share/lua/5.1/?.lua;;", EDGEWS_BIN = "", PATH = plain_path }
      local out = lookup(env)
      assert.truthy(out:find("^error: edgews.testing: cannot find the edgews%-lua binary %(set EDGEWS_BIN to it%)"), out)
      stub(prefix .. "/bin/edgews-lua")
      assert.are.equal(prefix .. "/bin/edgews-lua", lookup(env))
    end)
  end)
end)
