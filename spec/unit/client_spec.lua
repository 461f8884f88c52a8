-- The browser client library (client/edgews.js): its Node unit tests
-- (tests/clients/client_unit.test.mjs: a fake socket and mock timers, no server) run
-- with node's test runner; and the collab editor page's OT module
-- (tests/clients/collab_page_ot.test.mjs, against ot.js). What involves the server is in
-- spec/integration/client_spec.lua and client_browser_spec.lua.
local ROOT = (debug.getinfo(1, "S").source:sub(2):match("^(.*)/spec/unit/[^/]*$")) or "."

-- Runs a shell command; -> its output, its exit status.
local function run(cmd)
  local tmp = os.tmpname()
  local status = os.execute(cmd .. " >" .. tmp .. " 2>&1")
  local f = io.open(tmp, "rb")
  local out = f and f:read("*a") or ""
  if f then f:close() end
  os.remove(tmp)
  if status == true then status = 0 elseif type(status) ~= "number" then status = 1 end
  return out, status
end

describe("client/edgews.js unit tests (node --test)", function()
  it("pass, all of them", function()
    local node = os.getenv("EDGEWS_NODE") or "node"
    local out, rc = run(("cd '%s' && '%s' --test --test-reporter=tap tests/clients/client_unit.test.mjs"):format(ROOT, node))
    local pass = tonumber(out:match("\n# pass (%d+)"))
    local fail = tonumber(out:match("\n# fail (%d+)"))
    assert.are.equal(0, rc, out)
    assert.are.equal(0, fail, out)
    -- the file has 26 tests: fewer means some were not run
    assert.is_true(pass and pass >= 26, out)
  end)
end)

describe("examples/collab/public/ot.js (the editor page's OT) against ot.js (node --test)", function()
  it("gives ot.js's results on random operations; diff and cursor moves", function()
    local node = os.getenv("EDGEWS_NODE") or "node"
    local out, rc = run(("cd '%s' && '%s' --test --test-reporter=tap tests/clients/collab_page_ot.test.mjs"):format(ROOT, node))
    local pass = tonumber(out:match("\n# pass (%d+)"))
    assert.are.equal(0, rc, out)
    assert.are.equal(3, pass, out)
  end)
end)

describe("client/edgews.d.ts", function()
  it("type-checks the README's uses under tsc --strict and refuses wrong ones", function()
    local tsc = ROOT .. "/node_modules/.bin/tsc"
    assert.is_true(io.open(tsc) ~= nil, "typescript is missing: run `npm ci` in the repository root")
    local out, rc = run(("cd '%s' && '%s' --noEmit --strict --target es2022 --module esnext "
      .. "--moduleResolution bundler --lib es2022,dom tests/clients/client_types.ts"):format(ROOT, tsc))
    assert.are.equal(0, rc, out)
  end)
end)
