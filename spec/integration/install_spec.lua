-- `cmake --install` (issue 10, README "Installing"): the build the specs run against
-- (the directory of EDGEWS_BIN, or build/) is installed into a temporary prefix; the
-- installed binary loads the installed modules (not the clone's), EDGEWS_LUA_PATH
-- overrides them, a binary without modules says where it looked; and a user's app
-- and busted spec in a directory outside the repository run against the
-- installation alone: LUA_PATH names only the prefix, PATH has no edgews-lua and
-- EDGEWS_BIN is unset, so edgews.testing finds PREFIX/bin/edgews-lua beside itself.
local helper = require "spec.helper"

local function q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function sh(cmd)
  local ok = os.execute(cmd)
  assert(ok == 0 or ok == true, "failed: " .. cmd)
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

local PLAIN_PATH = "/usr/bin:/bin"

describe("cmake --install #integration", function()
  local top, prefix

  setup(function()
    local build = helper.BIN:match("^(.*)/[^/]*$")
    assert(exists(build .. "/CMakeCache.txt"), "not a CMake build directory: " .. build)
    -- (not helper.tmpdir(): helper.cleanup removes those after each test)
    top = assert(require("posix.stdlib").mkdtemp((os.getenv("TMPDIR") or "/tmp") .. "/edgews-install-XXXXXX"))
    prefix = top .. "/prefix"
    assert.is_nil(prefix:find(helper.ROOT, 1, true))
    sh(("cmake --install %s --prefix %s >/dev/null"):format(q(build), q(prefix)))
  end)

  teardown(function()
    if top then sh("rm -rf " .. q(top)) end
  end)

  after_each(helper.cleanup)

  it("installs the server, its modules, edgews.testing, the client and the rate-limit library", function()
    for _, f in ipairs { "bin/edgews-lua", "share/lua/5.1/edgews/init.lua", "share/lua/5.1/edgews/testing.lua",
                         "share/lua/5.1/edgews/testing/client.lua", "share/lua/5.1/edgews/docs/doc.lua",
                         "lib/libedgews_ratelimit.so", "share/edgews-lua/client/edgews.js",
                         "share/edgews-lua/client/edgews.d.ts", "share/edgews-lua/examples/chat/app.lua",
                         "share/doc/edgews-lua/README.md" } do
      assert.is_true(exists(prefix .. "/" .. f), f .. " not installed")
    end
    assert.are.equal(0, require("posix.unistd").access(prefix .. "/bin/edgews-lua", "x"))
  end)

  it("edgews.ratelimit works outside the server with the installed library", function()
    local cache = helper.read_file(helper.BIN:match("^(.*)/[^/]*$") .. "/CMakeCache.txt") or ""
    local san = cache:match("EDGEWS_SANITIZE:STRING=(%S*)")
    if san and san ~= "" and san ~= "OFF" then
      pending("a sanitizer build's library loads only into a sanitized process")
      return
    end
    local p = helper.spawn({ "luajit", "-e", "local r = require('edgews.ratelimit'); "
      .. "local t = 0; local l = r.new { rate = 1, burst = 2, now = function() return t end }; "
      .. "print(l:take('k'), l:take('k'), (l:take('k')))" },
      { env = { LUA_PATH = prefix .. "/share/lua/5.1/?.lua;;", PATH = PLAIN_PATH } })
    local done, out = p:finish(20)
    assert(done)
    assert.are.equal("true\ttrue\tfalse\n", out, p:stderr())
  end)

  -- Starts the installed binary on a script whose load fails inside the edgews
  -- modules: the error names the module file it came from -> the log.
  local function module_dir_of_error(env)
    local dir = helper.tmpdir()
    helper.write_file(dir .. "/app.lua", 'local edgews = require "edgews"\n'
      .. 'local app = edgews.app { path = "/x" }\napp:route(5, function() end)\n')
    local e = { PATH = PLAIN_PATH }
    for k, v in pairs(env or {}) do e[k] = v end
    local p = helper.spawn({ prefix .. "/bin/edgews-lua", "--listen", "127.0.0.1:0", "--workers", "1",
                             dir .. "/app.lua" }, { env = e })
    local done = p:finish(20)
    assert(done, "the server did not exit")
    assert.are.same({ "exited", 1 }, { p.how, p.code })
    return p:stderr()
  end

  it("the installed binary loads the installed modules, from any directory", function()
    local log = module_dir_of_error { EDGEWS_LUA_PATH = "" }
    -- (Lua shortens a long file name to its tail: "...ll-AbCdEf/prefix/share/...")
    assert.truthy(log:find("/prefix/share/lua/5.1/edgews/app.lua:", 1, true), log)
    assert.truthy(log:find("(called from ", 1, true), log)
    assert.is_nil(log:find(helper.ROOT .. "/lua/", 1, true), log)
  end)

  it("EDGEWS_LUA_PATH names another module directory; a missing one is said", function()
    local other = helper.tmpdir() .. "/mods"
    sh(("cp -r %s %s"):format(q(prefix .. "/share/lua/5.1"), q(other)))
    local log = module_dir_of_error { EDGEWS_LUA_PATH = other }
    assert.truthy(log:find("/mods/edgews/app.lua:", 1, true), log)
    assert.is_nil(log:find("/prefix/share/lua/5.1/edgews/", 1, true), log)
    log = module_dir_of_error { EDGEWS_LUA_PATH = other .. "/none" }
    assert.truthy(log:find("cannot find the edgews Lua modules in " .. other .. "/none (set EDGEWS_LUA_PATH",
      1, true), log)
  end)

  it("a user's busted spec outside the repository runs against the installation alone", function()
    local dir = helper.tmpdir()
    local src = helper.ROOT .. "/spec/apps/testing_user/"
    sh(("mkdir -p %s/spec %s/tmp && cp %s %s/ && cp %s %s/spec/scoreboard_spec.lua"):format(q(dir), q(dir),
      q(src .. "scoreboard.lua"), q(dir), q(src .. "scoreboard_test.lua"), q(dir)))
    -- and one more spec: the binary edgews.testing uses is the installed one
    helper.write_file(dir .. "/spec/where_spec.lua", ([[
local testing = require "edgews.testing"
describe("the installation", function()
  it("provides the server binary", function()
    assert.are.equal(%q, testing.server_binary())
  end)
end)
]]):format(require("posix.stdlib").realpath(prefix .. "/bin/edgews-lua")))
    local want = select(2, helper.read_file(src .. "scoreboard_test.lua"):gsub('\n%s*it%("', "")) + 1
    local env = {
      LUA_PATH = prefix .. "/share/lua/5.1/?.lua;" .. prefix .. "/share/lua/5.1/?/init.lua;;",
      PATH = PLAIN_PATH, EDGEWS_BIN = "", EDGEWS_LUA_PATH = "", TMPDIR = dir .. "/tmp",
    }
    local p = helper.spawn({ "sh", "-c", "cd " .. q(dir) .. " && exec busted --lua=luajit -o TAP" }, { env = env })
    local done, out = p:finish(180)
    if not done then p:kill(0) end
    assert.is_true(done, "busted did not finish:\n" .. tostring(out))
    local ok = select(2, ("\n" .. out):gsub("\nok %d+", ""))
    local notok = select(2, out:gsub("not ok %d+", ""))
    assert.are.equal(0, notok, out .. (p:stderr() or ""))
    assert.are.equal(want, ok, out .. (p:stderr() or ""))
  end)
end)
