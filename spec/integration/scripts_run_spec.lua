-- scripts/run from a directory outside the repository: the script and every other
-- relative path on its command line (here --data) are the caller's, not the
-- repository's (issue 10, rough edge 2: it used to cd into the repository first and
-- fail with "cannot open 'ok.lua'").
local helper = require "spec.helper"

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

describe("scripts/run", function()
  after_each(helper.cleanup)

  it("runs a script given relative to the caller's directory, with a relative --data", function()
    local dir = helper.tmpdir()
    helper.write_file(dir .. "/ok.lua", [[
local edgews = require "edgews"
edgews.app { path = "/ok" }:on("message", function(s, d) s:send(d) end)
]])
    assert(os.execute("mkdir " .. shell_quote(dir .. "/data")) == 0)
    -- sh execs scripts/run, which execs the server: one pid, ended by cleanup()
    local cmd = ("cd %s && exec %s ok.lua --listen 127.0.0.1:0 --workers 1 --data data"):format(
      shell_quote(dir), shell_quote(helper.ROOT .. "/scripts/run"))
    local p = helper.spawn({ "sh", "-c", cmd }, { kind = "server", dir = dir,
      stdout = dir .. "/stdout.log", stderr = dir .. "/stderr.log" })
    local function log() return helper.read_file(dir .. "/stderr.log") or "" end
    local listening = helper.wait_until(function()
      return log():match("listening on [^\n]-:(%d+)") or not p:alive()
    end, 60)
    assert.is_truthy(tonumber(listening), "server did not start:\n" .. log())
    -- the data directory is the one beside ok.lua (its lock holds the server's pid)
    assert.are.equal(tostring(p.pid), (helper.read_file(dir .. "/data/edgews.lock") or ""):match("%d+"))
    local res, rc = helper.py("echo", "--url", ("ws://127.0.0.1:%s/ok"):format(listening),
      "--sizes", "0,10")
    helper.assert_ok(res, rc)
  end)
end)
