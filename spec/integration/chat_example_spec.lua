-- The chat example (examples/chat/app.lua) end to end with --workers 2: rooms as
-- pub/sub topics (history replayed on reconnect), presence events and `who`,
-- direct messages as notifications (delivered now, or on the next connect), and
-- the restart of the server keeping rooms' history and pending messages.
-- Also what its page uses: history on join, typing to the others only, status, the
-- sender's copy of a direct message and the dms list.
local helper = require "spec.helper"
local cjson = require "cjson"
local collab = require "spec.collab_helper"

describe("examples/chat #integration #realtime", function()
  local srv, c, dir
  local app = helper.ROOT .. "/examples/chat/app.lua"

  local function start()
    srv = helper.start_server { app = app, workers = 2,
      args = { "--data", dir, "--drain-timeout", "0.5", "--no-watch" } }
  end

  setup(function()
    dir = helper.tmpdir()
    start()
    c = helper.app_client()
  end)
  teardown(function() helper.cleanup() end)

  local S = collab.session {
    client = function() return c end,
    url = function(name) return srv:url("/chat?name=" .. name) end,
    poll = 0.5,
  }
  local open, send, until_msg, typed = S.open, S.send, S.until_msg, S.typed

  it("rooms with history, presence and direct messages", function()
    local ada = open "ada"
    until_msg(ada, typed "welcome")
    send(ada, { type = "join", room = "lobby" })
    local joined = until_msg(ada, typed "joined")
    assert.are.equal(0, joined.offset)
    local bob = open "bob"
    send(bob, { type = "join", room = "lobby" })
    until_msg(bob, typed "joined")
    -- ada sees bob join (a batched presence event)
    until_msg(ada, function(m)
      if m.type ~= "presence" then return false end
      for _, j in ipairs(m.joins) do if j.user == "bob" then return true end end
    end)
    send(bob, { type = "who", room = "lobby" })
    local who = until_msg(bob, typed "who")
    table.sort(who.users)
    assert.are.same({ "ada", "bob" }, who.users)
    send(ada, { type = "say", room = "lobby", text = "hello" })
    local m = until_msg(bob, typed "pub")
    assert.are.same({ user = "ada", text = "hello" }, m.data)
    local epoch, last = m.epoch, m.offset
    -- bob goes away; ada talks; bob comes back with his position and gets the rest
    c:call { op = "close", id = bob }
    send(ada, { type = "say", room = "lobby", text = "are you there?" })
    send(ada, { type = "say", room = "lobby", text = "bob?" })
    until_msg(ada, function(x) return x.type == "pub" and x.data.text == "bob?" end)
    local bob2 = open "bob"
    send(bob2, { type = "join", room = "lobby", since_offset = last, epoch = epoch })
    local j, seen = until_msg(bob2, typed "joined")
    local texts = {}
    for _, x in ipairs(seen) do if x.type == "pub" then texts[#texts + 1] = x.data.text end end
    assert.are.same({ "are you there?", "bob?" }, texts)
    assert.are.same({ 2, false }, { j.replayed, j.gap })
    -- a direct message to an offline user waits for the next connect
    send(ada, { type = "dm", to = "carol", text = "call me" })
    local sent = until_msg(ada, typed "dm:sent")
    assert.is_false(sent.delivered)
    local carol = open "carol"
    local note = until_msg(carol, typed "notification")
    assert.are.same({ sent.id, { from = "ada", text = "call me" } }, { note.id, note.data })
    send(carol, { type = "read", ids = { note.id } })
    assert.are.equal(1, until_msg(carol, typed "read").changed)
    -- to an online user: at once
    send(carol, { type = "dm", to = "ada", text = "hi ada" })
    assert.is_true(until_msg(carol, typed "dm:sent").delivered)
    assert.are.equal("hi ada", until_msg(ada, typed "notification").data.text)
    -- bad input gets the router's error reply
    send(ada, { type = "join", room = "no spaces allowed" })
    assert.are.equal("validation_failed", until_msg(ada, typed "error").error)

    -- a restart keeps the room's history and the undelivered direct messages
    send(ada, { type = "dm", to = "dave", text = "after the restart" })
    assert.is_false(until_msg(ada, typed "dm:sent").delivered)
    assert.are.equal(0, select(2, srv:stop()))
    start()
    local bob3 = open "bob"
    send(bob3, { type = "join", room = "lobby", since_offset = 0, epoch = epoch })
    local _, all = until_msg(bob3, typed "joined")
    local count = 0
    for _, x in ipairs(all) do if x.type == "pub" then count = count + 1 end end
    assert.are.equal(3, count)
    local dave = open "dave"
    assert.are.equal("after the restart", until_msg(dave, typed "notification").data.text)
  end)

  -- what the page (examples/chat/public) uses: history on join, cid, typing to the
  -- others only, status, the sender's copy of a direct message and the dms list
  it("history on join, typing to the others only, status, dms both ways", function()
    local room = "page" .. S.n
    local eve = open "eve"
    send(eve, { type = "join", room = room })
    until_msg(eve, typed "joined")
    for i = 1, 5 do send(eve, { type = "say", room = room, text = "m" .. i, cid = "c" .. i }) end
    local last = until_msg(eve, function(m) return m.type == "pub" and m.data.text == "m5" end)
    assert.are.same({ user = "eve", text = "m5", cid = "c5" }, last.data)
    -- a join without a position may ask for the last N messages
    local fay = open "fay"
    send(fay, { type = "typing", room = room, typing = true })
    assert.are.equal("not_joined", until_msg(fay, typed "error").error)
    send(fay, { type = "join", room = room, history = 3 })
    local j, seen = until_msg(fay, typed "joined")
    local texts = {}
    for _, x in ipairs(seen) do if x.type == "pub" then texts[#texts + 1] = x.data.text end end
    assert.are.same({ "m3", "m4", "m5" }, texts)
    assert.are.same({ 3, false }, { j.replayed, j.gap })
    -- typing goes to the others, not back to the sender: eve's stream up to her
    -- next message has none
    send(eve, { type = "typing", room = room, typing = true })
    local t = until_msg(fay, typed "typing")
    assert.are.same({ room = room, user = "eve", typing = true }, { room = t.room, user = t.user, typing = t.typing })
    send(eve, { type = "say", room = room, text = "marker" })
    local _, eves = until_msg(eve, function(m) return m.type == "pub" and m.data.text == "marker" end)
    for _, x in ipairs(eves) do assert.are_not.equal("typing", x.type, cjson.encode(eves)) end
    -- status: members see it as a presence update (or in the join, when eve's join
    -- is still in the same batch); online clears it
    local function shows(user, status)
      return function(m)
        if m.type ~= "presence" then return false end
        for _, list in ipairs { m.updates or {}, m.joins or {} } do
          for _, u in ipairs(list) do
            if u.user == user and u.status == status then return true end
          end
        end
      end
    end
    send(eve, { type = "status", status = "away" })
    until_msg(fay, shows("eve", "away"))
    send(fay, { type = "who", room = room })
    local who = until_msg(fay, typed "who")
    local st = {}
    for _, m in ipairs(who.members) do st[m.user] = m.status end
    assert.are.same({ eve = "away", fay = "online" }, st)
    send(eve, { type = "status", status = "online" })
    until_msg(fay, shows("eve", "online"))
    -- a direct message: the recipient's notification, the sender's read copy, both
    -- in the dms lists
    send(eve, { type = "dm", to = "fay", text = "psst", cid = "d1" })
    assert.are.equal("d1", until_msg(eve, typed "dm:sent").cid)
    assert.are.same({ from = "eve", text = "psst", cid = "d1" }, until_msg(fay, typed "notification").data)
    send(eve, { type = "dms" })
    local mine = until_msg(eve, typed "dms")
    assert.are.same({ from = "eve", to = "fay", text = "psst", cid = "d1" }, mine.items[1].data)
    assert.are.equal("read", mine.items[1].state)
    send(fay, { type = "dms", limit = 5 })
    local theirs = until_msg(fay, typed "dms")
    assert.are.same({ from = "eve", text = "psst", cid = "d1" }, theirs.items[1].data)
    assert.are.equal("delivered", theirs.items[1].state)
  end)
end)
