-- What the collaborative-editing and chat specs share: a scripted session of
-- WebSocket clients over tests/clients/app_client.py (open, send, wait for a message,
-- join, edit, ack), the ot.js fuzz driver's command line (tests/clients/collab_fuzz.js)
-- and the checks on its result.
local helper = require "spec.helper"
local cjson = require "cjson"
local assert = require "luassert"
package.path = helper.ROOT .. "/lua/?.lua;" .. package.path
local ot = require "edgews.ot"

local M = {}

-- A scripted session. o.client(): the app_client to use now (specs replace it after a
-- restart); o.url(name, ...): the URL `open(name, ...)` connects to (only open needs
-- it); o.poll: seconds one recv waits (default 0.3); o.fail_on_error: every "error"
-- message until_msg reads fails the test (default: only acked() fails on one;
-- answer() returns it).
function M.session(o)
  local S = { n = 0 } -- n: how many connections open() opened
  local poll = o.poll or 0.3

  -- opens a connection (101 expected); its id is the name and the count
  function S.open(name, ...)
    S.n = S.n + 1
    local id = name .. S.n
    local r = o.client():call { op = "open", id = id, url = o.url(name, ...) }
    assert.are.equal(101, r.status, cjson.encode(r))
    return id
  end

  -- sends a table as JSON (a string as it is)
  function S.send(id, t)
    o.client():call { op = "send", id = id, data = type(t) == "string" and t or cjson.encode(t) }
  end

  -- reads until `pred` accepted a message (returns it and everything read)
  function S.until_msg(id, pred, timeout)
    local seen = {}
    local deadline = helper.now() + (timeout or 5)
    while helper.now() < deadline do
      local r = o.client():call { op = "recv", id = id, n = 1, timeout = poll }
      for _, m in ipairs(r.json or {}) do
        if o.fail_on_error and m.type == "error" then error("error: " .. cjson.encode(m), 2) end
        seen[#seen + 1] = m
        if pred(m) then return m, seen end
      end
      if r.closed then break end
    end
    error("no matching message; got " .. cjson.encode(seen), 2)
  end

  -- the next message of one of these types (others are skipped)
  function S.next_msg(id, types, timeout)
    local deadline = helper.now() + (timeout or 5)
    while helper.now() < deadline do
      local r = o.client():call { op = "recv", id = id, n = 1, timeout = poll }
      for _, m in ipairs(r.json or {}) do if types[m.type] then return m end end
    end
    error("no message of the expected types", 2)
  end

  -- a predicate: a message of type t (of document doc, when given)
  function S.typed(t, doc)
    return function(m) return m.type == t and (doc == nil or m.doc == doc) end
  end

  -- nothing of these types arrives for `secs`
  function S.quiet(id, types, secs)
    local r = o.client():call { op = "recv", id = id, n = 1000, timeout = secs or 0.4 }
    for _, m in ipairs(r.json or {}) do
      if types[m.type] then error("unexpected " .. cjson.encode(m), 2) end
    end
  end

  -- joins doc (extra fields added to the message); returns the joined and all read
  function S.join(id, doc, extra)
    local t = { type = "join", doc = doc }
    for k, v in pairs(extra or {}) do t[k] = v end
    S.send(id, t)
    return S.until_msg(id, S.typed("joined", doc))
  end

  function S.edit(id, doc, rev, op, seq, extra)
    local t = { type = "edit", doc = doc, revision = rev, operation = op, seq = seq }
    for k, v in pairs(extra or {}) do t[k] = v end
    S.send(id, t)
  end

  -- the next ack or error of doc
  function S.answer(id, doc)
    return S.until_msg(id, function(m)
      return (m.type == "ack" or m.type == "error") and m.doc == doc
    end)
  end

  -- the next ack of doc; an error message fails the test
  function S.acked(id, doc)
    return S.until_msg(id, function(m)
      if m.type == "error" then error("error: " .. cjson.encode(m), 3) end
      return m.type == "ack" and m.doc == doc
    end)
  end

  -- doc's text and revision, as a new reader joining it sees them
  function S.text_of(doc, ...)
    local j = S.join(S.open("reader", ...), doc)
    return j.text, j.revision
  end

  return S
end

-- collab_fuzz.js's argv: `to` is one URL (--url) or a list of instances' URLs (--urls)
function M.fuzz(to, doc, extra)
  local argv = { helper.NODE, helper.CLIENTS .. "/collab_fuzz.js" }
  if type(to) == "table" then
    argv[#argv + 1] = "--urls"; argv[#argv + 1] = table.concat(to, ",")
  else
    argv[#argv + 1] = "--url"; argv[#argv + 1] = to
  end
  for _, a in ipairs { "--doc", doc } do argv[#argv + 1] = a end
  for _, a in ipairs(extra or {}) do argv[#argv + 1] = a end
  return argv
end

-- The text of a stored log replayed from the empty document (the log must have every
-- revision from 1).
function M.replay(log)
  local text = ""
  for i, o in ipairs(log.ops) do
    assert.are.equal(i, o[1], "the log has every revision from 1")
    text = assert(ot.apply(text, o[4]))
  end
  return text
end

-- Every acknowledgement a client got is in the stored log ({ ops = { { rev,
-- "client:user", seq, op } } }): its revision holds that client's operation with that
-- seq. Returns how many there were.
function M.assert_acks_stored(res, log)
  local by_rev = {}
  for _, o in ipairs(log.ops) do by_rev[o[1]] = o end
  local n = 0
  for _, c in ipairs(res.clients) do
    for _, a in ipairs(c.acks) do
      local o = by_rev[a[2]]
      assert(o, c.client .. ": acknowledged revision " .. a[2] .. " is not stored")
      assert.are.same({ c.client .. ":" .. c.user, a[1] }, { o[2], o[3] })
      n = n + 1
    end
  end
  return n
end

-- The fuzz run succeeded and every client ended with the server's text and revision.
function M.check_converged(res)
  assert(res.ok, "clients failed: " .. cjson.encode(res.errors or res))
  for _, c in ipairs(res.clients) do
    assert.are.equal(res.server.text, c.text)
    assert.are.equal(res.server.revision, c.revision)
  end
end

return M
