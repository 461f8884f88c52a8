-- edgews.docs: collaborative plain-text documents, edited concurrently through
-- operational transformation (edgews.ot), kept in SQLite under --data.
--
--   local docs = edgews.docs
--   docs.configure { max_size = 1048576, max_lag = 1000 }       -- optional, at load time
--   docs.join(socket, "notes", { client = "c-8f3a", revision = 17, user = "ada" })
--   docs.edit(socket, "notes", { revision = 17, operation = { 5, "abc", -2 }, seq = 4 })
--   docs.cursor(socket, "notes", { revision = 17, selection = { ranges = { { anchor = 3, head = 3 } } } })
--   docs.leave(socket, "notes")
--
-- The socket receives (JSON text messages; see README "Collaborative editing"):
--   joined  {type, doc, client, revision, seq, text | ops, reload, cursors}
--   ack     {type, doc, revision, seq}           its own operation, committed
--   op      {type, doc, revision, operation, client, user, seq [, selection]}
--   cursor  {type, doc, revision, client, user, selection | null}
--   error   {type, doc, error, message [, seq] [, id]}
--
-- Design. One place commits a document: its owning worker, hash(name) % workers.
-- Every worker keeps the sessions (socket x document) of its own sockets; joins,
-- edits, cursors and leaves travel to the owner as cross-worker messages (in order:
-- one worker's messages to another arrive in the order they were posted), and the
-- owner sends each committed revision, built once as JSON, to every worker that has
-- sessions of the document, which hands it to its sessions (an ack to the author,
-- the op to the others). Because one thread runs each document's commits, revisions
-- are assigned without locks and every session sees them in one order.
--
-- The owner keeps the document in memory (edgews.docs.doc: text, revision, the last
-- max_lag operations, each client's last sequence number). A commit transforms the
-- incoming operation past those committed since its base revision, applies it, and
-- with --data appends it to SQLite (core.doc_append, waiting in the task that runs
-- it). Appends are pipelined: the next edit is transformed and submitted while the
-- previous waits for its fsync; completions come back in submission order, and a
-- revision is published (acknowledged, sent to the others, served to joiners) only
-- after its commit is durable. A failed append (disk full) fails every later one of
-- that document too (the store refuses a revision that does not continue the stored
-- ones); the owner then drops its in-memory state and reloads the document from the
-- store, so nothing unacknowledged survives. Without --data (or with persistence =
-- false) documents live in the owner's memory for the life of the process.
--
-- The interface a committer offers: commit(doc, base_rev, op, client, seq) ->
-- revision | nil, err, load(doc) -> text, revision, ops_since(doc, rev) -> ops:
-- `engine` below.
--
-- In a cluster (--redis: core.rdoc()), a document's log is in Redis, on its shard
-- (hub/engine_redis_docs.c), and each instance's owning worker keeps a copy of the
-- document in memory. A commit transforms the operation to the copy's revision and
-- asks Redis to append it at the next one (one script, compare-and-append on the
-- stored revision, which also records the client's seq and publishes the revision);
-- when another instance got there first, Redis answers with the revisions the copy
-- lacks, which are applied (and sent to this instance's sessions) before the
-- operation is transformed past them and offered again, at most COMMIT_TRIES times
-- (a committer that lost twice holds the document's turn until it commits, so that an
-- instance committing back to back cannot starve it; the others wait: "busy").
-- An instance's owner receives each committed revision of the documents it has
-- loaded (a bus message Redis publishes on ews:d:NAME, which the instance subscribes
-- to from the load until the unload, posted by the engine to the owning worker) and
-- applies it in revision order: one it already has is skipped, a gap is read from
-- the log, and so is what was committed before the subscription took effect. A join reads
-- what the copy lacks first, so a client rejoining on another instance gets what it
-- missed. Nothing is acknowledged before Redis has stored it; while the shard is
-- down, edits and joins are answered with the error "unavailable".

local core = require "edgews.core"
local workers = require "edgews.workers"
local Doc = require "edgews.docs.doc"
local ot = require "edgews.ot"
local cjson = require "cjson.safe"
local buffer = require "string.buffer"
local socket_mod = require "edgews.socket"

local type, pairs, tostring, error, next, pcall = type, pairs, tostring, error, next, pcall
local floor, fmt, concat, byte = math.floor, string.format, table.concat, string.byte
local json_encode = cjson.encode
local encode = buffer.encode
local error_text = socket_mod.error_text

local _M = {}

local config = { max_size = 1024 * 1024, max_op_size = 64 * 1024, max_lag = 1000,
                 snapshot_every = 100, history = 1000, persistence = true, unload_after = 30,
                 max_ranges = 32 }
local limits = {
  max_size = { 1, 256 * 1024 * 1024 }, max_op_size = { 16, 64 * 1024 * 1024 },
  max_lag = { 1, 100000 }, snapshot_every = { 1, 1000000 }, history = { 0, 1000000 },
  unload_after = { 0, 86400 }, max_ranges = { 1, 1000 },
}

local MAX_NAME, MAX_CLIENT = 256, 64

-- The loops that deliver revisions walk their tables with next() calls rather than
-- pairs(): Debian 12's LuaJIT (2.1.0~beta3+git20220320) can run a compiled or
-- blacklisted pairs() loop for the wrong number of iterations (LuaJIT issue #827),
-- which here would silently skip a session or a worker.

--- docs.configure{ max_size =, max_op_size =, max_lag =, snapshot_every =, history =,
-- persistence =, unload_after =, max_ranges = }: process-wide; call it while the
-- script loads (every worker runs the same script). history is raised to max_lag.
function _M.configure(t)
  if type(t) ~= "table" then error("docs.configure expects a table", 2) end
  local new = {}
  for k, v in pairs(config) do new[k] = v end
  for k, v in pairs(t) do
    if k == "persistence" then
      if type(v) ~= "boolean" then error("docs.configure: persistence must be a boolean", 2) end
    else
      local lim = limits[k]
      if not lim then error("docs.configure: unknown option '" .. tostring(k) .. "'", 2) end
      if type(v) ~= "number" or v ~= v or v < lim[1] or v > lim[2] or (k ~= "unload_after" and v ~= floor(v)) then
        error(fmt("docs.configure: %s must be %s in [%g, %g]", k,
          k == "unload_after" and "a number" or "an integer", lim[1], lim[2]), 2)
      end
    end
    new[k] = v
  end
  if new.history < new.max_lag then new.history = new.max_lag end
  config = new
  _M._apply_limits()
end

--- docs.config() -> a copy of the settings in force
function _M.config()
  local c = {}
  for k, v in pairs(config) do c[k] = v end
  return c
end

--- docs.persistent() -> true when documents are stored in SQLite (--data; not in a
-- cluster, where Redis stores them: docs.clustered())
function _M.persistent()
  return config.persistence and core.has_store() and not _M.clustered() or false
end

local function doc_opts()
  return { max_size = config.max_size, max_op_size = config.max_op_size, max_lag = config.max_lag,
           max_ranges = config.max_ranges }
end

-- ------------------------------------------------------------------ helpers

--- docs.owner(name) -> the worker that commits this document
local function owner_of(name)
  local h = 5381
  for i = 1, #name do h = (h * 33 + byte(name, i)) % 4294967296 end
  return h % core.workers()
end
_M.owner = owner_of

local function split_key(key)
  if not key then return nil, nil end
  local client = key:match("^[^:]*")
  return client, key:sub(#client + 2)
end

local function encode_selection(sel)
  if sel == nil then return "null" end
  local parts = {}
  local ranges = sel.ranges
  for i = 1, #ranges do parts[i] = fmt('{"anchor":%d,"head":%d}', ranges[i].anchor, ranges[i].head) end
  return '{"ranges":[' .. concat(parts, ",") .. "]}"
end

local function valid_id(id)
  local t = type(id)
  return (t == "string" and #id <= 256) or (t == "number" and id == id and id > -math.huge and id < math.huge)
end

local function error_json(name, code, message, seq, id)
  return json_encode { type = "error", doc = name, error = code, message = message,
                       seq = type(seq) == "number" and seq or nil, id = valid_id(id) and id or nil }
end

-- ------------------------------------------------------------ the cluster's log
-- A log entry in Redis: "REV SEQ KEYLEN:KEY" followed by the operation's JSON.

local COMMIT_TRIES = 20 -- compare-and-appends lost in a row before an edit is refused
local COMMIT_WAIT = 2    -- seconds an edit waits while other instances have the turn

local clustered_flag
local function clustered()
  if clustered_flag == nil then
    if core.rdoc == nil then clustered_flag = false
    else
      local c = core.rdoc() -- (nothing before a worker runs: asked again later)
      if c == nil then return false end
      clustered_flag = c
      if c then core.rdoc_resync(encode({ op = "docs_resync" })) end
    end
  end
  return clustered_flag
end
--- docs.clustered() -> true when documents are committed in the cluster's Redis (--redis)
_M.clustered = clustered

local function entry_text(rev, seq, key, json)
  key = key or ""
  return fmt("%d %d %d:%s%s", rev, seq or 0, #key, key, json)
end

local function parse_entry(s)
  local rev, seq, kl, p = s:match("^(%d+) (%d+) (%d+):()")
  if not rev then return nil end
  kl = tonumber(kl)
  return tonumber(rev), tonumber(seq), s:sub(p, p + kl - 1), s:sub(p + kl)
end
_M._parse_entry = parse_entry

local UNAVAILABLE = "the document store (Redis) is unavailable: "

-- This VM's mark on the cursors it publishes (its own come back from Redis).
local token
local function instance_token()
  if not token then
    token = fmt("%s-%d-%x", tostring({}):match("0x(%x+)") or "", core.worker_id(),
      floor(core.now() * 1e6) % 0x7fffffff)
  end
  return token
end

-- A cursor (c.sel nil: removed) for the document's owner on the other instances.
local function cursor_out(name, c)
  c.op, c.name, c.from = "docs_rcursor", name, instance_token()
  local ok, err = core.rdoc_publish(name, encode(c))
  if not ok then
    core.log(core.DEBUG, fmt("docs: %s: a cursor not sent to the other instances: %s", name, error_text(err)))
  end
end

-- The whole document as the store's loader returns it (core.doc_load's shape).
local function rload(name)
  local r, err = core.rdoc_read(name, -1)
  if not r then return nil, err end
  local stored = { rev = tonumber(r[1]), snapshot_rev = tonumber(r[3]), snapshot = r[4], ops = {} }
  for i = 5, #r do
    local rev, seq, key, json = parse_entry(r[i])
    if not rev then return nil, "a damaged log entry" end
    stored.ops[#stored.ops + 1] = { rev, seq, key, json }
  end
  return stored
end

local function op_entry_json(e)
  return fmt('{"revision":%d,"operation":%s,"client":%s,"user":%s,"seq":%s}', e.rev, e.json,
    json_encode(e.client or ""), json_encode(e.user or ""), e.seq and fmt("%d", e.seq) or "null")
end

-- ------------------------------------------------------------ session side
-- Every worker: its sockets' sessions. sessions[name][sid] = sess,
-- sess = { sock, name, client, user, key, live = last revision sent | false }.

local sessions = {}
local me -- this worker's id (known once a worker runs)

local function my_id()
  if not me then me = core.worker_id() end
  return me
end

local function session_of(sock, name)
  local t = sock.ctx._docs
  return t and t[name]
end

local function drop_session(sess)
  local list = sessions[sess.name]
  if list then
    list[sess.sock.id] = nil
    if next(list) == nil then sessions[sess.name] = nil end
  end
  local t = sess.sock.ctx._docs
  if t then
    t[sess.name] = nil
    if next(t) == nil then sess.sock.ctx._docs = nil end
  end
end

-- A message for one session (the join reply, an error).
local function to_session(m)
  local list = sessions[m.name]
  local sess = list and list[m.sid]
  if not sess then return end
  if m.kind == "joined" or m.kind == "join_failed" then
    -- the answer to this session's join (not to an earlier join of the same socket
    -- and document that it left meanwhile)
    if m.jid ~= sess.jid then return end
    if m.kind == "joined" then sess.live = m.rev else drop_session(sess) end
  end
  sess.sock:send(m.data)
end

-- A committed revision (or a cursor) of a document, for this worker's sessions.
local function deliver(m)
  local list = sessions[m.name]
  if not list then return end
  local rev = m.rev
  if m.kind == "cursor" then
    local sid, sess = next(list)
    while sid ~= nil do
      if sess.live == rev and sid ~= m.from then sess.sock:send(m.data) end
      sid, sess = next(list, sid)
    end
    return
  end
  local acks, key = m.acks, m.key
  local broken
  local sid, sess = next(list)
  while sid ~= nil do
    local live = sess.live
    if live and rev > live then
      if rev == live + 1 then
        sess.live = rev
        -- the author's sessions (its client on any connection) get the ack
        sess.sock:send(((acks and acks[sid]) or sess.key == key) and m.ack or m.data)
      else
        broken = broken or {}
        broken[#broken + 1] = sess
      end
    end
    sid, sess = next(list, sid)
  end
  if broken then
    for i = 1, #broken do
      -- A revision never reached this worker (its inbox was full): the session
      -- cannot go on from here; the client reconnects and catches up.
      local b = broken[i]
      core.log(core.WARN, fmt("docs: %s: revision %d arrived after %d; closing socket %d to resync",
        m.name, rev, b.live, b.sock.id))
      drop_session(b)
      b.sock:close(1011, "document stream interrupted")
    end
  end
end

-- ---------------------------------------------------------------- owner side
-- owned[name] = { doc = Doc | nil (reload on demand), pub = published revision,
--   pub_text, snap_rev, inflight = appends waiting, pending = { [rev] = entry },
--   watchers = { [worker] = sessions }, cursors = { [key] = {...} }, broken, timer,
--   hold = in a cluster, this instance's Redis subscription of the document (held
--   from its load until it is unloaded: core.rdoc_hold) }

local owned = {}
_M._owned = owned -- for tests and introspection

local function post_or_call(w, m, fn)
  if w == my_id() then return fn(m) end
  local ok, err = core.post(w, encode(m))
  if not ok then
    core.log(core.WARN, fmt("docs: message %s for worker %d refused: %s", m.op, w, error_text(err)))
    return nil
  end
  return true
end

local function reply(w, sid, name, kind, data, rev, jid)
  post_or_call(w, { op = "docs_to", name = name, sid = sid, kind = kind, data = data, rev = rev, jid = jid },
    to_session)
end

local function reply_error(m, code, message)
  reply(m.w, m.sid, m.name, "error", error_json(m.name, code, message, m.seq, m.id))
end

-- The workers with sessions of the document.
local function watching(o)
  local list, n = {}, 0
  local w, count = next(o.watchers)
  while w ~= nil do
    if count > 0 then n = n + 1; list[n] = w end
    w, count = next(o.watchers, w)
  end
  return list
end

-- Sends a message for the sessions (m: a revision or a cursor) to worker w.
local function send_to(w, m, blob)
  if w == my_id() then
    deliver(m)
    return blob
  end
  blob = blob or encode(m)
  local ok, err = core.post(w, blob)
  if not ok then
    core.log(core.WARN, fmt("docs: %s: revision %d for worker %d refused: %s", m.name, m.rev, w,
      error_text(err)))
  end
  return blob
end

-- Sends one cursor message to every worker with sessions.
local function broadcast(o, m)
  local list, blob = watching(o), nil
  for i = 1, #list do blob = send_to(list[i], m, blob) end
end

-- The document's state in memory: loaded from the store when persistent.
local function load(name, o)
  if o and o.doc then return o.doc end
  local d, stored, hold
  if clustered() then
    local err
    stored, err = rload(name)
    if stored == nil then
      return nil, "unavailable", UNAVAILABLE .. (type(err) == "string" and err or error_text(err))
    end
    -- This instance receives the document's revisions from now on (one SUBSCRIBE of
    -- ews:d:NAME); what is committed before that takes effect is read once it has
    -- (owner_subscribed).
    hold = o and o.hold
    if not hold then
      hold, err = core.rdoc_hold(name, encode({ op = "docs_subscribed", name = name }))
      if not hold then return nil, "unavailable", UNAVAILABLE .. error_text(err) end
    end
  elseif _M.persistent() then
    local err
    stored, err = core.doc_load(name, config.max_lag)
    if stored == nil then return nil, "storage_failed", error_text(err) end
  end
  if stored then
    local err
    d, err = Doc.restore(name, stored, doc_opts())
    if not d then
      core.log(core.ERROR, fmt("docs: %s cannot be loaded: %s", name, err))
      if hold and not (o and o.hold) then core.rdoc_unhold(hold) end
      return nil, "storage_failed", "the stored document is damaged: " .. err
    end
    for r = d.hist_from + 1, d.rev do
      local e = d.hist[r]
      e.client, e.user = split_key(e.key)
    end
  else
    d = Doc.new(name, doc_opts())
  end
  if not o then
    o = { watchers = {}, cursors = {}, pending = {}, inflight = 0 }
    owned[name] = o
  end
  o.doc, o.pub, o.pub_text, o.broken = d, d.rev, d.text, false
  o.hold = hold
  o.snap_rev = stored and stored.snapshot_rev or 0
  return d
end

local function schedule_unload(name, o)
  if not (_M.persistent() or clustered()) or o.timer then return end
  if #watching(o) > 0 then return end
  o.timer = core.timer(config.unload_after, function()
    o.timer = nil
    if #watching(o) > 0 then return end
    if o.inflight > 0 then return schedule_unload(name, o) end
    if owned[name] == o then owned[name] = nil end
    if o.hold then core.rdoc_unhold(o.hold); o.hold = nil end
  end, false)
end

local function cursor_json(name, rev, client, user, sel)
  return fmt('{"type":"cursor","doc":%s,"revision":%d,"client":%s,"user":%s,"selection":%s}',
    json_encode(name), rev, json_encode(client or ""), json_encode(user or ""), encode_selection(sel))
end

-- Revision e is durable: acknowledge it, send it to the others, serve it to joiners.
local function publish(o, e)
  local name = o.doc.name
  o.pub, o.pub_text, e.text = e.rev, e.text, nil
  local data = fmt('{"type":"op","doc":%s,"revision":%d,"operation":%s,"client":%s,"user":%s,"seq":%s%s}',
    json_encode(name), e.rev, e.json, json_encode(e.client or ""), json_encode(e.user or ""),
    e.seq and fmt("%d", e.seq) or "null", e.sel and (',"selection":' .. encode_selection(e.sel)) or "")
  local ack = fmt('{"type":"ack","doc":%s,"revision":%d,"seq":%s}', json_encode(name), e.rev,
    e.seq and fmt("%d", e.seq) or "null")
  -- per worker: the sessions to acknowledge (the author's, and those of resends of
  -- it; every session of the author's client gets the ack anyway)
  local acks = {}
  if e.author_w then acks[e.author_w] = { [e.author_sid] = true } end
  local extra = e.extra
  if extra then
    for i = 1, #extra do
      local w, sid = extra[i][1], extra[i][2]
      acks[w] = acks[w] or {}
      acks[w][sid] = true
    end
  end
  local list = watching(o)
  for i = 1, #list do
    local w = list[i]
    send_to(w, { op = "docs_out", name = name, rev = e.rev, data = data, ack = ack, acks = acks[w],
                 key = e.key })
  end
  if e.sel and e.key then
    o.cursors[e.key] = { rev = e.rev, sel = e.sel, client = e.client, user = e.user,
                         w = e.author_w, sid = e.author_sid }
  end
end

-- The cluster: the copy cannot go on from where it is (the revisions it lacks are no
-- longer in the log, or Redis lost some): it is dropped, loaded again when next
-- needed, and this instance's sessions of the document are closed (1011, as for a
-- revision that never arrived: deliver) so that their clients rejoin.
local INTERRUPT = 2 ^ 52
local function drop_copy(name, o, level, why)
  core.log(level, fmt("docs: %s: %s; reloading the document", name, why))
  o.doc, o.cursors = nil, {}
  broadcast(o, { op = "docs_out", name = name, rev = INTERRUPT, data = "", ack = "", key = false })
end

-- The cluster: revisions committed elsewhere (entries as Redis keeps them, list[i..])
-- applied to the copy in order and sent to this instance's sessions. A revision the
-- copy already has is skipped. false when the copy could not take one (then it is
-- dropped: drop_copy).
local function advance(o, list, i, sel)
  local d = o.doc
  for k = i, #list do
    local rev, seq, key, json = parse_entry(list[k])
    if not rev then
      drop_copy(d.name, o, core.ERROR, "a damaged log entry in Redis")
      return false
    end
    if rev > d.rev then
      local e, err = d:append(rev, seq, key, json)
      if not e then
        drop_copy(d.name, o, core.ERROR, err)
        return false
      end
      e.client, e.user = split_key(e.key)
      if sel and k == #list then e.sel = sel end -- (the selection sent with a live one)
      publish(o, e)
    end
  end
  return true
end

-- The cluster: reads the revisions the copy lacks from Redis. true | nil, code, msg
local function catch_up(name, o)
  local d = o.doc
  local r, err = core.rdoc_read(name, d.rev)
  if not r then return nil, "unavailable", UNAVAILABLE .. error_text(err) end
  local rev, first = tonumber(r[1]), tonumber(r[2])
  if rev < d.rev then
    drop_copy(name, o, core.ERROR, fmt("Redis has revision %d, this instance had %d (Redis lost revisions?)", rev, d.rev))
    return nil, "storage_failed", "the stored document is behind this instance's copy: reload the document"
  end
  if rev > d.rev and d.rev + 1 < first then
    drop_copy(name, o, core.WARN, fmt("revisions %d..%d are no longer in the log", d.rev + 1, first - 1))
    return true
  end
  advance(o, r, 5)
  return true
end

-- A revision committed by any instance, published by Redis (m.entry, m.sel).
local function owner_remote(m)
  local o = owned[m.name]
  local d = o and o.doc
  if not d then return end
  local rev = tonumber(m.entry:match("^(%d+)"))
  if not rev or rev <= d.rev then return end
  if rev == d.rev + 1 then return advance(o, { m.entry }, 1, m.sel) end
  local ok, _, msg = catch_up(m.name, o) -- a gap: read it from the log
  if not ok then core.log(core.WARN, fmt("docs: %s: cannot catch up: %s", m.name, msg)) end
end

-- This instance's subscription of the document took effect (core.rdoc_hold): the
-- revisions committed since the copy was read and before then did not reach it.
local function owner_subscribed(m)
  local o = owned[m.name]
  if not (o and o.doc) then return end
  local ok, _, msg = catch_up(m.name, o)
  if not ok then core.log(core.WARN, fmt("docs: %s: cannot catch up: %s", m.name, msg)) end
end

-- Redis's subscription was made again: every copy reads what it missed.
local function owner_resync()
  local name, o = next(owned)
  local names = {}
  while name ~= nil do
    if o.doc then names[#names + 1] = name end
    name, o = next(owned, name)
  end
  for i = 1, #names do
    o = owned[names[i]]
    if o and o.doc then
      local ok, _, msg = catch_up(names[i], o)
      if not ok then core.log(core.WARN, fmt("docs: %s: cannot catch up: %s", names[i], msg)) end
    end
  end
end

local function owner_join(m)
  local name = m.name
  local o = owned[name]
  local cached = o and o.doc
  local d, code, msg = load(name, o)
  if d and cached and clustered() then
    -- the copy may lack revisions still on their way: read them (one round trip)
    local ok
    ok, code, msg = catch_up(name, owned[name])
    d = ok and (owned[name].doc or load(name, owned[name])) or nil
    if ok and not d then code, msg = "unavailable", UNAVAILABLE .. "the document could not be loaded" end
  end
  if not d then
    return reply(m.w, m.sid, name, "join_failed", error_json(name, code, msg, nil, m.id), nil, m.jid)
  end
  o = owned[name]
  o.watchers[m.w] = (o.watchers[m.w] or 0) + 1
  if o.timer then core.timer_cancel(o.timer); o.timer = nil end
  local P = o.pub
  local since = m.since
  local last = d:last_seq(m.key)
  local parts = { fmt('{"type":"joined","doc":%s,"client":%s,"revision":%d,"seq":%s', json_encode(name),
    json_encode(m.client), P, last and fmt("%d", last) or "null") }
  local entries = since ~= nil and since <= P and d:since(since, P)
  if entries then
    local ops = {}
    for i = 1, #entries do ops[i] = op_entry_json(entries[i]) end
    parts[#parts + 1] = ',"ops":[' .. concat(ops, ",") .. "]"
  else
    parts[#parts + 1] = ',"text":' .. json_encode(o.pub_text)
    if since ~= nil then parts[#parts + 1] = ',"reload":true' end
  end
  local curs = {}
  local key, c = next(o.cursors)
  while key ~= nil do
    if key ~= m.key then
      local sel = d:move_selection(c.sel, c.rev, P, key)
      if sel then
        curs[#curs + 1] = fmt('{"client":%s,"user":%s,"selection":%s}', json_encode(c.client or ""),
          json_encode(c.user or ""), encode_selection(sel))
      end
    end
    key, c = next(o.cursors, key)
  end
  parts[#parts + 1] = ',"cursors":[' .. concat(curs, ",") .. "]}"
  reply(m.w, m.sid, name, "joined", concat(parts), P, m.jid)
end

local function owner_leave(m)
  local o = owned[m.name]
  if not o then return end
  local n = (o.watchers[m.w] or 1) - 1
  o.watchers[m.w] = n > 0 and n or nil
  local c = m.key and o.cursors[m.key]
  if c and c.w == m.w and c.sid == m.sid then
    o.cursors[m.key] = nil
    if o.doc then
      broadcast(o, { op = "docs_out", kind = "cursor", name = m.name, rev = o.pub, from = -1,
                     data = cursor_json(m.name, o.pub, c.client, c.user, nil) })
      if clustered() then
        cursor_out(m.name, { rev = o.pub, key = m.key, client = c.client, user = c.user })
      end
    end
  end
  schedule_unload(m.name, o)
end

-- ---------------------------------------------------------------- the committer
-- What commits a document, behind a small interface (README "The interface for the
-- cluster"): on the owning worker,
--   engine.commit(name, base, op, key, seq [, sel [, info]]) -> entry
--       | nil, "duplicate", rev | nil, code, message [, entry]
--     transforms op (made on revision `base`) past what was committed since,
--     applies it and returns once it is durable (it waits for the store); entry.rev
--     is its revision. A resend (the client's last seq again) is "duplicate" with the
--     revision it has (committed, or still being stored: engine.pending(name, rev)).
--     A failed append returns the entry as a fourth value. info's fields are copied
--     into the entry before it waits (the author, for the publishing).
--   engine.load(name) -> doc | nil, code, message   (text, rev, history in memory)
--   engine.ops_since(name, rev [, upto]) -> entries | nil (older than the history)
-- The revisions it commits are then published (publish below) in revision order.
local engine = {}
_M.engine = engine

function engine.load(name)
  return load(name, owned[name])
end

function engine.ops_since(name, rev, upto)
  local o = owned[name]
  local d = o and o.doc
  return d and d:since(rev, upto or o.pub)
end

function engine.pending(name, rev)
  local o = owned[name]
  return o and rev and o.pending[rev]
end

-- The cluster's commit: compare-and-append in Redis (see the top of this file).
local function rcommit(name, base, op, key, seq, sel, info)
  local o = owned[name]
  local d, code, msg = load(name, o)
  if not d then return nil, code, msg end
  o = owned[name]
  if type(base) == "number" and base > d.rev then
    -- the client has revisions this copy has not received yet
    local ok
    ok, code, msg = catch_up(name, o)
    if not ok then return nil, code, msg end
    d, code, msg = load(name, o)
    if not d then return nil, code, msg end
  end
  local token = instance_token()
  local lost, claimed = 0, false
  local deadline = core.now() + COMMIT_WAIT
  -- ends a commit that did not commit: the turn (if it holds it) goes back
  local function fail(c, m)
    if claimed then core.rdoc_release(name, token) end
    return nil, c, m
  end
  while true do
    local e
    e, code, msg = d:prepare(base, op, key, seq, sel)
    if not e then return fail(code, msg) end
    if info then for k, v in pairs(info) do e[k] = v end end
    local snapshot = e.rev - o.snap_rev >= config.snapshot_every and e.text or nil
    local entry = entry_text(e.rev, seq, key, e.json)
    local r, err = core.rdoc_commit(name, d.rev, entry, encode({ op = "docs_remote", name = name, entry = entry,
                                                                 sel = e.sel }),
                                    key or "", seq or 0, snapshot, config.history, token, lost > 0)
    if not r then
      return fail("unavailable", UNAVAILABLE .. error_text(err) .. "; nothing was committed unless a resend says so")
    end
    local st = r[1]
    if st == "ok" then
      d:accept(e)
      if snapshot then o.snap_rev = e.rev end
      return e
    elseif st == "conflict" then
      -- another instance committed first: take its revisions, then transform again
      lost = lost + 1
      claimed = r[3] == "1"
      if lost >= COMMIT_TRIES then
        return fail("conflict", fmt("the document kept changing: not committed after %d attempts; resend", lost))
      end
      if not advance(o, r, 4) then
        d, code, msg = load(name, o)
        if not d then return fail(code, msg) end
      end
    elseif st == "busy" then
      -- another instance that lost the race has the turn: wait a little (other
      -- edits of this document wait behind this one: owner_commit)
      if core.now() >= deadline or not pcall(core.sleep, 0.0005 + math.random() * 0.002) then
        return fail("conflict", "the document is busy (other instances are committing to it); resend")
      end
      o = owned[name]
      d, code, msg = load(name, o)
      if not d then return fail(code, msg) end
      o = owned[name]
    elseif st == "dup" then
      -- committed before (through another instance, or its reply was lost): the
      -- copy takes it, and the client's sessions get it as their ack
      if claimed then core.rdoc_release(name, token) end
      local ok, c2, m2 = catch_up(name, o)
      if not ok then return nil, c2, m2 end -- (the client resends: then it is taken)
      return nil, "duplicate", tonumber(r[2])
    elseif st == "stale" then
      return fail("stale_seq", fmt("seq %d is not above this client's last committed seq %s", seq, r[2]))
    elseif st == "old" then
      drop_copy(name, o, core.WARN, "the revisions after this instance's copy are no longer in the log")
      d, code, msg = load(name, o)
      if not d then return fail(code, msg) end
    else -- "behind": Redis lost revisions this copy has
      drop_copy(name, o, core.ERROR, fmt("Redis is at revision %s, this instance at %d (Redis lost revisions?)",
        tostring(r[2]), d.rev))
      return fail("storage_failed", "the stored document is behind this instance's copy: reload the document")
    end
    d = o.doc or d
  end
end

function engine.commit(name, base, op, key, seq, sel, info)
  if clustered() then return rcommit(name, base, op, key, seq, sel, info) end
  local o = owned[name]
  if o and o.broken then
    return nil, "storage_failed", "the document is being reloaded after a storage error: resend"
  end
  local d, code, msg = load(name, o)
  if not d then return nil, code, msg end
  o = owned[name]
  local e
  e, code, msg = d:commit(base, op, key, seq, sel)
  if not e then return nil, code, msg end
  if info then for k, v in pairs(info) do e[k] = v end end
  if not _M.persistent() then return e end
  local snapshot
  if e.rev - o.snap_rev >= config.snapshot_every then
    snapshot = e.text
    o.snap_rev = e.rev
  end
  o.pending[e.rev] = e
  o.inflight = o.inflight + 1
  local ok, err = core.doc_append(name, e.rev, e.key or "", e.seq or 0, e.json, snapshot, config.history)
  o.inflight = o.inflight - 1
  o.pending[e.rev] = nil
  if not ok then
    -- Not stored: this revision and every later one in memory are void (the store
    -- refuses them too). The document is reloaded from the store once the last
    -- append in flight has completed.
    local why = error_text(err)
    if not o.broken then
      core.log(core.ERROR, fmt("docs: %s: revision %d not stored (%s); reloading the document", name, e.rev, why))
    end
    o.broken = true
    e = { failed = e, why = why }
  end
  if o.broken and o.inflight == 0 then o.doc, o.broken = nil, false end
  if e.failed then return nil, "storage_failed", "not stored: " .. e.why, e.failed end
  return e
end

-- An edit from a session (m = { name, w, sid, key, client, user, rev, operation, seq,
-- sel, id }): committed, then acknowledged and sent to the others.
-- The cluster: a commit may wait (another instance has the document's turn), and
-- the edits of the document that came after it wait behind it, in order (a client's
-- edits are committed in the order it sent them).
local turns = {}
local function commit_in_turn(m, fn)
  local t = turns[m.name]
  if not t then t = { next = 0, serving = 0 }; turns[m.name] = t end
  local mine = t.next
  t.next = mine + 1
  while t.serving < mine and pcall(core.sleep, 0.001) do end
  local ok, err = pcall(fn, m)
  if t.serving < mine + 1 then t.serving = mine + 1 end
  if t.serving >= t.next and turns[m.name] == t then turns[m.name] = nil end
  if not ok then error(err, 0) end
end

local function commit_edit(m)
  local name = m.name
  local e, code, msg, failed = engine.commit(name, m.rev, m.operation, m.key, m.seq, m.sel,
    { client = m.client, user = m.user, author_w = m.w, author_sid = m.sid })
  if e then return publish(owned[name], e) end
  if code == "duplicate" then
    -- A resend of an op committed at revision msg. Not yet published: its ack goes
    -- to this session too when it is. Published: this session already got it (its
    -- ack, or the op in its catch-up), so there is nothing to say.
    local p = engine.pending(name, msg)
    if p and not (p.author_w == m.w and p.author_sid == m.sid) then
      p.extra = p.extra or {}
      p.extra[#p.extra + 1] = { m.w, m.sid }
    end
    return
  end
  reply_error(m, code, msg)
  local extra = failed and failed.extra or {}
  for i = 1, #extra do
    local x = extra[i]
    reply(x[1], x[2], name, "error", error_json(name, code, msg, m.seq, nil))
  end
end

local function owner_commit(m)
  if clustered() then return commit_in_turn(m, commit_edit) end
  return commit_edit(m)
end

local function owner_cursor(m)
  local o = owned[m.name]
  if not o then return reply_error(m, "not_joined", "the document is not open") end
  local d, code, msg = load(m.name, o)
  if not d then return reply_error(m, code, msg) end
  if type(m.rev) ~= "number" or m.rev > o.pub then
    return reply_error(m, "invalid_revision", fmt("revision must be an integer in 0..%d", o.pub))
  end
  local sel
  sel, code, msg = d:move_selection(m.sel, m.rev, o.pub, m.key)
  if not sel then return reply_error(m, code, msg) end
  o.cursors[m.key] = { rev = o.pub, sel = sel, client = m.client, user = m.user, w = m.w, sid = m.sid }
  broadcast(o, { op = "docs_out", kind = "cursor", name = m.name, rev = o.pub, from = m.sid,
                 data = cursor_json(m.name, o.pub, m.client, m.user, sel) })
  if clustered() then
    cursor_out(m.name, { rev = o.pub, key = m.key, client = m.client, user = m.user, sel = sel })
  end
end

-- The cluster: a cursor of another instance's client (sel nil: it left), moved to
-- this copy's revision and sent to this instance's sessions.
local function owner_rcursor(m)
  local o = owned[m.name]
  local d = o and o.doc
  if not d or m.from == instance_token() then return end
  if m.rev > d.rev then
    catch_up(m.name, o)
    d = o.doc
    if not d or m.rev > d.rev then return end
  end
  local sel
  if m.sel ~= nil then
    sel = d:move_selection(m.sel, m.rev, o.pub, m.key)
    if not sel then return end
    o.cursors[m.key] = { rev = o.pub, sel = sel, client = m.client, user = m.user }
  else
    local c = o.cursors[m.key]
    if not c or c.w then return end -- (a cursor of this instance's session stays)
    o.cursors[m.key] = nil
  end
  broadcast(o, { op = "docs_out", kind = "cursor", name = m.name, rev = o.pub, from = -1,
                 data = cursor_json(m.name, o.pub, m.client, m.user, sel) })
end

workers.ops.docs_join = owner_join
workers.ops.docs_leave = owner_leave
workers.ops.docs_edit = owner_commit
workers.ops.docs_cursor = owner_cursor
workers.ops.docs_out = deliver
workers.ops.docs_to = to_session
workers.ops.docs_remote = owner_remote
workers.ops.docs_resync = owner_resync
workers.ops.docs_subscribed = owner_subscribed
workers.ops.docs_rcursor = owner_rcursor

function _M._apply_limits()
  local opts = doc_opts()
  for _, o in pairs(owned) do if o.doc then o.doc:set_limits(opts) end end
end

-- ---------------------------------------------------------------- the API

local function check_socket(sock, what)
  if type(sock) ~= "table" or type(sock.id) ~= "number" or type(sock.ctx) ~= "table" then
    error(what .. " expects a socket", 3)
  end
end

local function check_name(name, what)
  if type(name) ~= "string" or name == "" or #name > MAX_NAME then
    error(what .. ": document name must be a non-empty string of at most 256 bytes", 3)
  end
end

local RETRY_FOR = 2 -- seconds a message to the owner is retried (see to_owner)

local function to_owner(m, fn)
  local w = owner_of(m.name)
  if w == my_id() then
    fn(m)
    return true
  end
  local blob = encode(m)
  local ok, err = core.post(w, blob)
  -- Refused: the owner's inbox is full, or the owner has not started yet (at start
  -- the first worker serves before the others run). Retried for a while inside a
  -- handler (the socket's later messages wait behind it, so order is kept).
  local deadline = core.now() + RETRY_FOR
  while not ok and core.now() < deadline and pcall(core.sleep, 0.01) do
    ok, err = core.post(w, blob)
  end
  if not ok then return nil, "overloaded", "the document's worker is not taking messages: " .. error_text(err) end
  return true
end

local client_seq, join_seq = 0, 0
local function new_client_id()
  client_seq = client_seq + 1
  return fmt("s%x-%x-%x", my_id(), client_seq, floor(core.now() * 1000) % 0x100000)
end

--- docs.join(socket, name [, { client =, revision =, user =, id = }]) -> true, client | nil, code, message
-- Opens the document for the socket. The socket is sent `joined` (the text, or the
-- ops after `revision` when the owner still has them), then every revision as it
-- is committed. client: the client's id (1..64 of [A-Za-z0-9_-]; generated when
-- absent), kept across reconnects so resent operations are recognised. user: shown
-- to the others (default socket.ctx.user.id).
function _M.join(sock, name, opts)
  check_socket(sock, "docs.join")
  check_name(name, "docs.join")
  opts = opts or {}
  local client = opts.client
  if client == nil then client = new_client_id()
  elseif type(client) ~= "string" or #client < 1 or #client > MAX_CLIENT or not client:match("^[%w_%-]+$") then
    return nil, "invalid_client", "client must be 1..64 letters, digits, _ or -"
  end
  local since = opts.revision
  if since ~= nil and (type(since) ~= "number" or since < 0 or since ~= floor(since) or since > ot.MAX_LENGTH) then
    return nil, "invalid_revision", "revision must be a non-negative integer"
  end
  if not sock:is_open() then return nil, "closed", "the socket is closed" end
  if session_of(sock, name) then return nil, "already_joined", "the socket has joined this document" end
  local user = opts.user
  if user == nil then user = sock.ctx.user and sock.ctx.user.id end
  user = user ~= nil and tostring(user) or ""
  local key = client .. ":" .. user
  join_seq = join_seq + 1
  local sess = { sock = sock, name = name, client = client, user = user, key = key, live = false,
                 jid = join_seq }
  local list = sessions[name]
  if not list then list = {}; sessions[name] = list end
  list[sock.id] = sess
  local t = sock.ctx._docs
  if not t then t = {}; sock.ctx._docs = t end
  t[name] = sess
  local ok, code, msg = to_owner({ op = "docs_join", name = name, w = my_id(), sid = sock.id, client = client,
                                   user = user, key = key, since = since, id = opts.id, jid = sess.jid },
                                 owner_join)
  if not ok then
    drop_session(sess)
    return nil, code, msg
  end
  return true, client
end

--- docs.edit(socket, name, { revision =, operation =, seq = [, selection =] [, id =] })
-- -> true | nil, code, message. The operation (ot.js TextOperation JSON as a Lua
-- array) was made on `revision`; seq (a positive integer, increasing per client)
-- lets a resend be recognised. The socket gets an ack (or an error) later.
function _M.edit(sock, name, body)
  check_socket(sock, "docs.edit")
  check_name(name, "docs.edit")
  if type(body) ~= "table" then error("docs.edit expects a table", 2) end
  local sess = session_of(sock, name)
  if not sess then return nil, "not_joined", "join the document first" end
  local op, err = ot.parse(body.operation)
  if not op then return nil, "invalid_operation", err end
  local sel = body.selection
  if sel ~= nil then
    sel, err = Doc.check_selection(sel, ot.MAX_LENGTH, config.max_ranges)
    if not sel then return nil, "invalid_selection", err end
  end
  return to_owner({ op = "docs_edit", name = name, w = my_id(), sid = sock.id, key = sess.key,
                    client = sess.client, user = sess.user, rev = body.revision, operation = op,
                    seq = body.seq, sel = sel, id = valid_id(body.id) and body.id or nil }, owner_commit)
end

--- docs.cursor(socket, name, { revision =, selection = }) -> true | nil, code, message
-- The selection (ot.js: { ranges = { { anchor =, head = } } }) in the document at
-- `revision`; the others receive it moved to the current revision.
function _M.cursor(sock, name, body)
  check_socket(sock, "docs.cursor")
  check_name(name, "docs.cursor")
  if type(body) ~= "table" then error("docs.cursor expects a table", 2) end
  local sess = session_of(sock, name)
  if not sess then return nil, "not_joined", "join the document first" end
  local sel, err = Doc.check_selection(body.selection, ot.MAX_LENGTH, config.max_ranges)
  if not sel then return nil, "invalid_selection", err end
  local rev = body.revision
  if type(rev) ~= "number" or rev < 0 or rev ~= floor(rev) then
    return nil, "invalid_revision", "revision must be a non-negative integer"
  end
  return to_owner({ op = "docs_cursor", name = name, w = my_id(), sid = sock.id, key = sess.key,
                    client = sess.client, user = sess.user, rev = rev, sel = sel,
                    id = valid_id(body.id) and body.id or nil }, owner_cursor)
end

--- docs.leave(socket, name) -> true | nil, "not_joined"
-- (Closing the socket leaves every document it joined.)
function _M.leave(sock, name)
  check_socket(sock, "docs.leave")
  check_name(name, "docs.leave")
  local sess = session_of(sock, name)
  if not sess then return nil, "not_joined", "the socket has not joined this document" end
  drop_session(sess)
  to_owner({ op = "docs_leave", name = name, w = my_id(), sid = sock.id, key = sess.key }, owner_leave)
  return true
end

--- docs.joined(socket) -> list of the documents the socket has joined
function _M.joined(sock)
  local out = {}
  local t = sock.ctx._docs
  if t then
    local name = next(t)
    while name ~= nil do
      out[#out + 1] = name
      name = next(t, name)
    end
  end
  table.sort(out)
  return out
end

-- The socket closed (init.lua's close dispatch): it leaves its documents.
function _M._on_close(sock)
  local names = _M.joined(sock)
  for i = 1, #names do _M.leave(sock, names[i]) end
end

return _M
