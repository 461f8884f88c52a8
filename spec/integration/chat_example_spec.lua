-- The chat example (examples/chat/app.lua) end to end with --workers 2: rooms as
-- pub/sub topics (history replayed on reconnect), presence events and `who`,
-- direct messages as notifications (delivered now, or on the next connect), and
-- the restart of the server keeping rooms' history and pending messages.
local helper = require "spec.helper"
local cjson = require "cjson"

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

  local n = 0
  local function open(name)
    n = n + 1
    local id = name .. n
    local r = c:call { op = "open", id = id, url = srv:url("/chat?name=" .. name) }
    assert.are.equal(101, r.status, cjson.encode(r))
    return id
  end
  local function send(id, t) c:call { op = "send", id = id, data = cjson.encode(t) } end
  -- reads until `pred` accepted a message (returns it and everything read)
  local function until_msg(id, pred, timeout)
    local seen = {}
    local deadline = helper.now() + (timeout or 5)
    while helper.now() < deadline do
      local r = c:call { op = "recv", id = id, n = 1, timeout = 0.5 }
      for _, m in ipairs(r.json or {}) do
        seen[#seen + 1] = m
        if pred(m) then return m, seen end
      end
      if r.closed then break end
    end
    error("no matching message; got " .. cjson.encode(seen), 2)
  end
  local function typed(t) return function(m) return m.type == t end end

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
end)
