-- edgews.docs.doc: one collaborative document in memory, the committer's view.
--
--   local Doc = require "edgews.docs.doc"
--   local d = Doc.new("notes", { max_lag = 1000 })
--   local e = d:commit(0, { "hello" }, "c1:ada", 1)    -- e.rev == 1, e.json == '["hello"]'
--   local e2, code = d:commit(0, { "hi " }, "c2:bob", 1) -- transformed past rev 1
--   d.text, d.rev, d.len                                  -- "hi hello", 2, 8 (UTF-16 units)
--
-- Pure Lua on top of edgews.ot, no server: the document's owner (lua/edgews/docs.lua)
-- keeps one of these per loaded document and is the only place that commits to it.
-- A commit takes an operation made on revision `base` (the revision the client had
-- when it made it), transforms it past every operation committed after `base`
-- (ot.transform(incoming, committed): the operation committed later goes first at a
-- tie, as ot.js's server does), applies it and records it as revision rev + 1.
--
-- What it keeps: the text, its length in UTF-16 units, the last `keep` operations
-- (entries: the canonical operation, its JSON, author, sequence number, lengths), and
-- for deduplication each client's last sequence number and the revision it was
-- committed at. A client key is the caller's (edgews.docs uses "client:user", so one
-- user cannot collide with another's client id).
--
-- Errors leave the document untouched and return nil, code, message:
--   invalid_revision     base is not an integer in 0..rev
--   revision_too_old     base is more than max_lag behind, or older than the kept
--                        history: the client must reload the document
--   invalid_seq          seq is not a positive integer
--   stale_seq            seq is below the client's last committed one (a late copy
--                        of an old operation, or a client id reused from seq 1)
--   invalid_operation    ot.parse/transform/apply refused it (the message says why),
--                        or its base length is not the document's length at `base`
--   operation_too_large  the operation's JSON is over max_op_size bytes
--   document_too_large   the result would be over max_size bytes (UTF-8) and larger
--                        than the document is
--   invalid_selection    the selection is not { ranges = { { anchor, head }... } }
--                        with integer positions in the document
-- A sequence number equal to the client's last committed one is a duplicate (a
-- resend after a lost ack): commit returns nil, "duplicate", the revision it was
-- committed at. Doc:last_seq(key) tells a (re)joining client where it stands.

local ot = require "edgews.ot"
local cjson = require "cjson.safe"

local type, tostring, pairs, next, setmetatable = type, tostring, pairs, next, setmetatable
local floor, fmt, concat = math.floor, string.format, table.concat
local json_encode = cjson.encode

local _M = {}

local Doc = {}
Doc.__index = Doc
_M.Doc = Doc

local DEFAULTS = { max_size = 1024 * 1024, max_op_size = 64 * 1024, max_lag = 1000,
                   max_ranges = 32 }
_M.DEFAULTS = DEFAULTS

local function is_int(n)
  return type(n) == "number" and n == floor(n) and n >= 0 and n <= ot.MAX_LENGTH
end

--- encode(op) -> JSON text of a (canonical) operation: integers as integers,
-- strings escaped by cjson, [] for the empty operation.
function _M.encode(op)
  local n = #op
  if n == 0 then return "[]" end
  local parts = {}
  for i = 1, n do
    local c = op[i]
    if type(c) == "string" then parts[i] = json_encode(c)
    else parts[i] = fmt("%d", c) end
  end
  return "[" .. concat(parts, ",") .. "]"
end
local encode = _M.encode

--- check_selection(sel, len, max_ranges) -> { ranges = { {anchor=, head=}... } } | nil, err
-- A clean copy of an ot.js selection whose positions lie in 0..len.
function _M.check_selection(sel, len, max_ranges)
  if type(sel) ~= "table" then return nil, "selection is not a table" end
  local ranges = sel.ranges
  if ranges == nil then ranges = sel end
  if type(ranges) ~= "table" then return nil, "selection is not a table" end
  local n = #ranges
  if n > (max_ranges or DEFAULTS.max_ranges) then return nil, "too many ranges" end
  local k = next(ranges) -- next() calls, not pairs(): see edgews.ot's check
  while k ~= nil do
    if type(k) ~= "number" or k < 1 or k > n or k ~= floor(k) then return nil, "ranges is not an array" end
    k = next(ranges, k)
  end
  local out = {}
  for i = 1, n do
    local r = ranges[i]
    if type(r) ~= "table" then return nil, fmt("range %d: range is not a table", i) end
    local a, h = r.anchor, r.head
    if not is_int(a) or not is_int(h) then return nil, fmt("range %d: position is not an integer", i) end
    if a > len or h > len then return nil, fmt("range %d: position out of range (0..%d)", i, len) end
    out[i] = { anchor = a, head = h }
  end
  return { ranges = out }
end
local check_selection = _M.check_selection

--- Doc.new(name, opts) -> an empty document at revision 0.
-- opts: max_size, max_op_size, max_lag (also how many ops are kept), max_ranges.
function _M.new(name, opts)
  opts = opts or {}
  local d = setmetatable({
    name = name, text = "", len = 0, rev = 0,
    hist = {},        -- rev -> entry, for revisions hist_from+1 .. rev
    hist_from = 0,
    clients = {},     -- key -> { seq = n, rev = r }
    nclients = 0,
    max_size = opts.max_size or DEFAULTS.max_size,
    max_op_size = opts.max_op_size or DEFAULTS.max_op_size,
    max_lag = opts.max_lag or DEFAULTS.max_lag,
    max_ranges = opts.max_ranges or DEFAULTS.max_ranges,
  }, Doc)
  return d
end

--- Doc:set_limits(opts): new limits for a loaded document (a reload of the script).
function Doc:set_limits(opts)
  for _, k in pairs { "max_size", "max_op_size", "max_lag", "max_ranges" } do
    if opts[k] then self[k] = opts[k] end
  end
  self:_trim()
end

-- Drops history beyond max_lag, and dedup records older than the history.
function Doc:_trim()
  local hist, from, keep = self.hist, self.hist_from, self.max_lag
  while self.rev - from > keep do
    from = from + 1
    hist[from] = nil
  end
  self.hist_from = from
  -- Clients whose last op left the history cannot be deduplicated any more: their
  -- resend would be too old anyway. Pruned now and then, not per commit.
  if self.nclients > 64 and self.rev % 64 == 0 then
    local n = 0
    for k, c in pairs(self.clients) do
      if c.rev <= from then self.clients[k] = nil else n = n + 1 end
    end
    self.nclients = n
  end
end

function Doc:_remember(key, seq, rev)
  if key == nil or seq == nil then return end
  local c = self.clients[key]
  if c then c.seq, c.rev = seq, rev
  else
    self.clients[key] = { seq = seq, rev = rev }
    self.nclients = self.nclients + 1
  end
end

--- Doc:last_seq(key) -> the client's last committed seq (nil: none kept)
function Doc:last_seq(key)
  local c = key and self.clients[key]
  return c and c.seq
end

--- Doc:len_at(rev) -> the document's length in UTF-16 units at that revision, or
-- nil when it is older than the history.
function Doc:len_at(rev)
  if rev == self.rev then return self.len end
  local e = self.hist[rev + 1]
  return e and e.base_len
end

--- Doc:commit(base, op, key, seq [, selection]) -> entry | nil, code, message
-- entry = { rev, op (canonical, transformed), json, key, seq, base_len, len, text
-- (the text after it), sel (the selection moved past concurrent ops, or nil) }.
-- key/seq may be nil (no deduplication). It is Doc:prepare then Doc:accept.
function Doc:commit(base, op, key, seq, sel)
  local e, code, msg = self:prepare(base, op, key, seq, sel)
  if not e then return nil, code, msg end
  self:accept(e)
  return e
end

--- Doc:prepare(base, op, key, seq [, selection]) -> entry | nil, code, message
-- What commit would record as revision rev + 1, without changing the document (a
-- committer elsewhere, the cluster's Redis, decides whether it is recorded).
function Doc:prepare(base, op, key, seq, sel)
  if seq ~= nil then
    if type(seq) ~= "number" or seq < 1 or seq ~= floor(seq) or seq > ot.MAX_LENGTH then
      return nil, "invalid_seq", "seq must be a positive integer"
    end
    local c = key and self.clients[key]
    if c and seq <= c.seq then
      -- A client has one operation in flight and sends the next only once that one
      -- is acknowledged: its last seq again is a resend of that operation; a lower
      -- one is a late copy of an older one (from a connection that died), or a
      -- client that reused its id and started counting again: refused.
      if seq == c.seq then return nil, "duplicate", c.rev end
      return nil, "stale_seq", fmt("seq %d is not above this client's last committed seq %d", seq, c.seq)
    end
  end
  if not is_int(base) or base > self.rev then
    return nil, "invalid_revision", fmt("revision must be an integer in 0..%d", self.rev)
  end
  if self.rev - base > self.max_lag or base < self.hist_from then
    return nil, "revision_too_old",
      fmt("revision %d is too far behind %d (at most %d): reload the document", base, self.rev, self.max_lag)
  end
  local parsed, blen, tlen = ot.parse(op)
  if not parsed then return nil, "invalid_operation", blen end
  local json = encode(parsed)
  if #json > self.max_op_size then
    return nil, "operation_too_large", fmt("the operation is %d bytes of JSON (at most %d)", #json, self.max_op_size)
  end
  local at = self:len_at(base)
  if blen ~= at then
    return nil, "invalid_operation",
      fmt("base length %d does not match the document's length %d at revision %d", blen, at, base)
  end
  if sel ~= nil then
    local err
    sel, err = check_selection(sel, tlen, self.max_ranges)
    if not sel then return nil, "invalid_selection", err end
  end
  local hist = self.hist
  local a = parsed
  for r = base + 1, self.rev do
    local b2
    a, b2 = ot.transform(a, hist[r].op)
    if not a then return nil, "invalid_operation", b2 end
    if sel then sel = ot.transform_selection(sel, b2) end
  end
  if a ~= parsed then json = encode(a) end
  local text, err = ot.apply(self.text, a, self.len)
  if not text then return nil, "invalid_operation", err end
  if #text > self.max_size and #text > #self.text then
    return nil, "document_too_large",
      fmt("the document would be %d bytes (at most %d)", #text, self.max_size)
  end
  local rev = self.rev + 1
  return { rev = rev, op = a, json = json, key = key, seq = seq, base_len = self.len,
           len = ot.target_length(a), text = text, sel = sel }
end

--- Doc:accept(entry): records an entry that Doc:prepare made for this revision.
function Doc:accept(entry)
  local rev = entry.rev
  self.hist[rev] = entry
  self.rev, self.text, self.len = rev, entry.text, entry.len
  self:_remember(entry.key, entry.seq, rev)
  self:_trim()
end

--- Doc:append(rev, seq, key, json) -> entry | nil, err: a revision committed
-- elsewhere (rev must be self.rev + 1; json its operation on self.rev).
function Doc:append(rev, seq, key, json)
  if rev ~= self.rev + 1 then return nil, fmt("revision %d does not follow %d", rev, self.rev) end
  local parsed, blen, tlen = ot.parse(cjson.decode(json))
  if not parsed then return nil, fmt("revision %d: %s", rev, tostring(blen)) end
  if blen ~= self.len then return nil, fmt("revision %d: base length %d, document %d", rev, blen, self.len) end
  local text, err = ot.apply(self.text, parsed, self.len)
  if not text then return nil, fmt("revision %d: %s", rev, err) end
  if key == "" then key = nil end
  if seq == 0 then seq = nil end
  local entry = { rev = rev, op = parsed, json = json, key = key, seq = seq, base_len = blen,
                  len = tlen, text = text }
  self:accept(entry)
  return entry
end

--- Doc:since(rev) -> list of the entries after rev (oldest first), or nil when
-- some of them are no longer kept.
function Doc:since(rev, upto)
  upto = upto or self.rev
  if rev < self.hist_from or rev > upto then return nil end
  local out, hist = {}, self.hist
  for r = rev + 1, upto do out[#out + 1] = hist[r] end
  return out
end

--- Doc:move_selection(sel, from, to, key) -> the selection (made at revision
-- `from`) moved through revisions from+1..to, or nil, code, message. Positions at
-- an insert of the same client move after it (its own typing), others stay.
function Doc:move_selection(sel, from, to, key)
  if not is_int(from) or from > to then
    return nil, "invalid_revision", fmt("revision must be an integer in 0..%d", to)
  end
  if from < self.hist_from then
    return nil, "revision_too_old", fmt("revision %d is too far behind %d", from, to)
  end
  local s, err = check_selection(sel, self:len_at(from), self.max_ranges)
  if not s then return nil, "invalid_selection", err end
  local hist = self.hist
  for r = from + 1, to do
    local e = hist[r]
    s = ot.transform_selection(s, e.op, key ~= nil and e.key == key)
  end
  return s
end

--- Doc.restore(name, stored, opts) -> doc | nil, err
-- stored = { rev, snapshot_rev, snapshot, ops = { { rev, seq, key, json }... } }
-- (the ops after min(snapshot_rev, rev - history), ascending): the text is the
-- snapshot with the ops after it applied; the last max_lag ops become the history
-- and their authors' sequence numbers the deduplication records.
function _M.restore(name, stored, opts)
  local d = _M.new(name, opts)
  local text = stored.snapshot
  local len, err = ot.utf16_length(text)
  if not len then return nil, "snapshot: " .. err end
  local ops = stored.ops
  local first = ops[1] and ops[1][1] or stored.snapshot_rev + 1
  if first > stored.snapshot_rev + 1 then
    return nil, fmt("the log starts at revision %d, after the snapshot (%d)", first, stored.snapshot_rev)
  end
  local expect = first
  for i = 1, #ops do
    local o = ops[i]
    local rev, seq, key, json = o[1], o[2], o[3], o[4]
    if rev ~= expect then return nil, fmt("revision %d missing from the log", expect) end
    expect = rev + 1
    local op = cjson.decode(json)
    local parsed, blen, tlen = ot.parse(op)
    if not parsed then return nil, fmt("revision %d: %s", rev, tostring(blen)) end
    if rev > stored.snapshot_rev then
      if blen ~= len then return nil, fmt("revision %d: base length %d, document %d", rev, blen, len) end
      text, err = ot.apply(text, parsed, len)
      if not text then return nil, fmt("revision %d: %s", rev, err) end
      len = tlen
    end
    if key == "" then key = nil end
    d.hist[rev] = { rev = rev, op = parsed, json = json, key = key, seq = seq ~= 0 and seq or nil,
                    base_len = blen, len = tlen }
    if key then d:_remember(key, seq, rev) end
  end
  if expect - 1 ~= stored.rev then
    return nil, fmt("the log ends at revision %d, the document is at %d", expect - 1, stored.rev)
  end
  d.text, d.len, d.rev = text, len, stored.rev
  d.hist_from = first - 1
  d:_trim()
  return d
end

return _M
