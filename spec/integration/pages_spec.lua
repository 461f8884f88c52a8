-- The example apps' pages (examples/{chat,notifications,collab}/public, served by the
-- server itself with edgews.static, importing client/edgews.js from /client/) in
-- headless Chromium, two pages per scenario, driven by tests/clients/pages_client.js:
-- chat both ways with typing and presence, a direct message and its unread count;
-- an inbox delivered on connect, paged, read in one tab and read in the other; two
-- editors typing at once converge and show each other's cursors at the right
-- characters. In each, the server is killed with SIGKILL and started again on the same
-- port and data directory: the pages show "reconnecting", come back by themselves and
-- lose or duplicate nothing. Screenshots go to $EDGEWS_ARTIFACTS/pages (default
-- build/artifacts/pages), printed once; they are not compared.
local helper = require "spec.helper"
local cjson = require "cjson"

local ARTIFACTS = (os.getenv("EDGEWS_ARTIFACTS") or (helper.ROOT .. "/build/artifacts")) .. "/pages"

-- Runs one scenario against examples/NAME/app.lua; returns the client's result.
local function run(name)
  os.execute("mkdir -p '" .. ARTIFACTS .. "'")
  local dir = helper.tmpdir()
  local app = helper.ROOT .. "/examples/" .. name .. "/app.lua"
  local args = { "--data", dir, "--no-watch", "--drain-timeout", "0.5" }
  local srv = helper.start_server { app = app, workers = 2, args = args }
  local port = srv.port
  local p = helper.spawn({ helper.NODE, helper.CLIENTS .. "/pages_client.js", name,
    "--base", srv:http_url "", "--shots", ARTIFACTS }, { stdin = "pipe" })
  local killed, restarted = false, false
  while true do
    local msg = p:read_json(60)
    assert.is_table(msg, "no output from the pages client; stderr: " .. p:stderr())
    if msg.step == "kill" then
      srv:signal "KILL"
      assert.is_true(srv:wait(5))
      killed = true
      p:write("killed\n")
    elseif msg.step == "restart" then
      local a = { "--listen", "127.0.0.1:" .. port }
      for _, x in ipairs(args) do a[#a + 1] = x end
      srv = helper.start_server { app = app, workers = 2, args = a }
      restarted = true
      p:write("restarted\n")
    else
      assert.is_true(p:wait(10))
      assert.is_true(msg.ok, cjson.encode(msg))
      assert.are.same({}, msg.pageErrors)
      assert.is_true(killed and restarted, "the scenario did not go through the restart")
      return msg
    end
  end
end

describe("the example apps' pages in headless Chromium #integration #browser #pages", function()
  setup(function() print("\npages_spec: screenshots in " .. ARTIFACTS) end)
  teardown(function() helper.cleanup() end)

  it("chat: messages both ways, typing, presence, a direct message; kill -9 and back, nothing lost or doubled", function()
    local r = run "chat"
    assert.are.equal("connected", r.connText)
    assert.are.equal("ada is typing…", r.typingSeen)
    assert.are.equal("", r.typingSelf) -- not sent back to its sender
    assert.are.equal("away", r.bobStatus)
    assert.are.equal("1 unread", r.dmBadge)
    assert.are.equal("New message from ada", r.dmNotice)
    assert.are.equal(0, r.dmBadgeAfter)
    assert.are.equal("1 unread", r.roomBadge)
    assert.matches("^reconnecting", r.reconnectingText)
    assert.are.equal(2, r.pendingWhileDown)
    local all = { "hello bob", "hi ada", "are you there?", "sent while down 1", "sent while down 2", "after restart" }
    assert.are.same(all, r.adaMessages)
    assert.are.same(all, r.bobMessages)
    assert.are.same(all, r.cyMessages) -- history on join
    -- an indicator not refreshed goes after 6 s, its sender still connected
    assert.is_true(r.danStillOpen)
    assert.is_number(r.typingExpiredAfter) -- within the client's bounded wait (15 s)
  end)

  it("notifications: delivered on connect, paged, live to two tabs, read state synced; kill -9 and back", function()
    local r = run "notifications"
    assert.are.same({ "n11", "n10", "n9", "n8", "n7" }, r.firstPage)
    assert.are.same({ "n6", "n5", "n4", "n3", "n2" }, r.page2)
    assert.are.equal("page 2 of 3", r.page2Label)
    assert.are.equal("n3", r.highOnPage2)
    assert.is_true(r.nextDisabled)
    assert.are.same({ "live one", "read" }, r.readSynced)
    assert.are.same({ "read", "read", "read", "read", "read" }, r.afterReadAll)
    assert.are.equal("server on fire", r.urgent)
    assert.matches("expires in", r.expires)
    assert.matches("^reconnecting", r.reconnectingText)
    assert.are.same({ "after the restart", "to everyone", "server on fire", "live one", "n11" }, r.afterRestart)
    assert.are.equal(3, r.badgeAfterRestart)
    local seen = {}
    for _, id in ipairs(r.ids) do
      assert.is_nil(seen[id], "notification " .. id .. " shown twice")
      seen[id] = true
    end
  end)

  it("collab: two editors typing at once converge, cursors at the right places, offline edits after kill -9", function()
    local r = run "collab"
    local both = "bob says: Hello 😀 world from ada"
    assert.are.same({ both, both }, r.converged)
    assert.are.equal(r.revisions[1], r.revisions[2])
    assert.are.same({ "ada (you)", "bob" }, r.people)
    assert.are.equal("world", r.adaSelectionOnBob)
    assert.are.equal(#"bob says: Hello " + 2 + #" world", r.adaCaretOnBob) -- UTF-16 units: the emoji is 2
    assert.are.equal("ada", r.adaCaretName)
    assert.are.equal(5, r.bobCaretOnAda)
    assert.matches("^reconnecting", r.connWhileDown)
    assert.matches("^unsaved changes", r.syncWhileDown)
    local final = "[offline bob] > " .. both .. " [offline ada]"
    assert.are.same({ final, final }, r.final)
    assert.are.equal(final, r.fresh)
  end)
end)
