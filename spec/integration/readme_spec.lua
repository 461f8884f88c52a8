-- The README as a user reads it (issue 10): every ```lua block marked `app` in its
-- info string (a whole app) loads in the real server as pasted; the "Testing your
-- app" example (the blocks marked `file=PATH`) runs with busted from a directory
-- outside the repository, with the README's own LUA_PATH line; and the README
-- refers to nothing a user does not have.
local helper = require "spec.helper"

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local README = helper.read_file(helper.ROOT .. "/README.md")

-- { info =, code =, line = } for every fenced block of the given language
local function blocks(lang)
  local out = {}
  local pos = 1
  while true do
    local s, e, info, code = README:find("\n```" .. lang .. "([^\n]*)\n(.-\n)```", pos)
    if not s then break end
    local _, newlines = README:sub(1, s + 1):gsub("\n", "")
    out[#out + 1] = { info = info, code = code, line = newlines + 1 } -- the fence's line
    pos = e
  end
  return out
end

local function has_word(info, word)
  return (" " .. info .. " "):find("%s" .. word .. "%s") ~= nil
end

describe("README", function()
  after_each(helper.cleanup)

  local apps = {}
  for _, b in ipairs(blocks("lua")) do
    if has_word(b.info, "app") then apps[#apps + 1] = b end
  end

  it("marks its whole apps (at least the four it has)", function()
    assert.is_true(#apps >= 4, "found " .. #apps)
  end)

  for _, b in ipairs(apps) do
    it("has an app that loads as pasted (README.md:" .. b.line .. ")", function()
      local dir = helper.tmpdir()
      local app = dir .. "/app.lua"
      helper.write_file(app, b.code)
      assert(os.execute("mkdir " .. shell_quote(dir .. "/data")) == 0)
      local ok, srv = pcall(helper.start_server, { app = app, workers = 1,
        env = { JWT_SECRET = "readme-secret" }, args = { "--data", dir .. "/data" } })
      assert(ok, "README.md:" .. b.line .. ": the app does not start:\n" .. tostring(srv))
      assert.is_nil(srv:log():find(" ERROR ", 1, true), srv:log())
      assert.are.same({ "exited", 0 }, { srv:stop() })
    end)
  end

  it("has a Testing your app example that runs as pasted, outside the repository", function()
    local dir = helper.tmpdir()
    assert.is_nil(dir:find(helper.ROOT, 1, true))
    local app_dir = dir .. "/myapp"
    assert(os.execute("mkdir -p " .. shell_quote(app_dir .. "/spec") .. " " .. shell_quote(dir .. "/san")) == 0)
    local files, its = 0, 0
    for _, b in ipairs(blocks("lua")) do
      local path = b.info:match("file=(%S+)")
      if path then
        helper.write_file(app_dir .. "/" .. path, b.code)
        files = files + 1
        if path:find("_spec%.lua$") then its = its + select(2, b.code:gsub("\n%s*it%(", "")) end
      end
    end
    assert.are.equal(2, files)
    assert.is_true(its >= 3)
    -- the README's commands, with the clone's path for /path/to/edgews-lua
    local commands = README:match("\n```sh\n(export LUA_PATH=[^\n]*\ncd myapp && busted[^\n]*)\n```")
    assert(commands, "the README's `export LUA_PATH=...` / `cd myapp && busted` block is missing")
    commands = commands:gsub("/path/to/edgews%-lua", (helper.ROOT:gsub("%%", "%%%%")))
    local p = helper.spawn({ "sh", "-c", "cd " .. shell_quote(dir) .. " && " .. commands }, { env = {
      TMPDIR = dir, -- edgews.testing's directories
      ASAN_OPTIONS = (os.getenv("ASAN_OPTIONS") or "") .. ":log_path=" .. dir .. "/san/asan",
      UBSAN_OPTIONS = (os.getenv("UBSAN_OPTIONS") or "") .. ":log_path=" .. dir .. "/san/ubsan",
    } })
    local done, out = p:finish(120)
    out = out .. p:stderr()
    assert.is_true(done, out)
    assert.truthy(out:find(("%d successes / 0 failures / 0 errors"):format(its), 1, true), out)
    local reports = io.popen("cat " .. shell_quote(dir) .. "/san/* 2>/dev/null"):read("*a")
    assert.are.equal("", reports)
  end)

  it("speaks to its users only: no files they do not have, no internal names", function()
    assert.is_nil(README:find("seed library", 1, true))
    assert.is_nil(README:find("ARCHITECTURE.md", 1, true))
    assert.is_nil(README:find("](../", 1, true))
    assert.is_nil(README:find("`../", 1, true))
    for target in README:gmatch("%]%(([^)#]+)[^)]*%)") do
      if not target:find("^%a+:") then -- a relative link: a file of the repository
        assert.are.equal(0, require("posix.unistd").access(helper.ROOT .. "/" .. target, "r") or 1,
          "README links to a missing file: " .. target)
      end
    end
  end)
end)
