-- The collaboration example: plain-text documents that many people edit at once,
-- operational transformation in the ot.js wire format (edgews.docs, edgews.ot),
-- cursors and selections moved through concurrent edits, and who is there (name
-- and colour) through edgews.presence. Documents are kept in SQLite under data/
-- beside this file (or --data DIR): snapshot + operation log, every acknowledged
-- edit survives a crash. Started with --redis (a cluster), every instance serves
-- every document, committed in Redis instead (README: Collaborative editing, "In a
-- cluster"); give each instance its own COLLAB_DATA_DIR (or "") then.
--
--   scripts/run examples/collab/app.lua
--   then open http://127.0.0.1:8080/ (the editor page, public/, with client/edgews.js
--   at /client/; #name-of-document picks the document), or connect to ws://127.0.0.1:8080/collab?name=ada (optionally &color=%23e6194b)
--   and send (see README "Collaborative editing" for the whole protocol):
--     {"type":"join","doc":"notes","client":"c-8f3a"}
--        -> {"type":"joined","doc":"notes","client":"c-8f3a","revision":0,"seq":null,"text":"","cursors":[]}
--        -> {"type":"members","doc":"notes","members":[{"user":"ada","name":"ada","color":"#..."}]}
--           (members may come before joined: joined comes from the document's worker)
--     {"type":"edit","doc":"notes","revision":0,"operation":["hello"],"seq":1}
--        -> {"type":"ack","doc":"notes","revision":1,"seq":1}
--     {"type":"cursor","doc":"notes","revision":1,"selection":{"ranges":[{"anchor":5,"head":5}]}}
--     {"type":"leave","doc":"notes"}
--   The others receive {"type":"op",...}, {"type":"cursor",...} and presence events
--   {"type":"presence","channel":"doc:notes","joins":[{"user":"ada","meta":{...}}],"leaves":[...]}.
--
-- Authentication: with COLLAB_JWT_SECRET set, an HS256 JWT (Authorization: Bearer,
-- ?token= or a bearer.<token> subprotocol) whose `sub` is the user and optional
-- `name` / `color` claims; otherwise ?name= (letters, digits, _ or -), as the chat
-- example does. Limits come from the environment (defaults in parentheses):
-- COLLAB_MAX_SIZE (1048576 bytes per document), COLLAB_MAX_OP_SIZE (65536 bytes of
-- operation JSON), COLLAB_MAX_LAG (1000 revisions), COLLAB_OPS_RATE /
-- COLLAB_OPS_BURST (edits per second per connection: 50 / 100), COLLAB_HISTORY
-- (1000), COLLAB_SNAPSHOT_EVERY (100), COLLAB_MAX_DOCS (8 documents per
-- connection), COLLAB_UNLOAD_AFTER (30 seconds without editors before a document
-- leaves memory); COLLAB_PERSISTENCE=off keeps documents in memory even with --data.
local edgews = require "edgews"
local cjson = require "cjson"

local docs, presence = edgews.docs, edgews.presence

local function env_int(name, default)
  local v = tonumber(os.getenv(name) or "")
  return v and math.floor(v) or default
end

-- Documents live in data/ beside this file unless --data says otherwise;
-- COLLAB_DATA_DIR="" runs without a data directory (documents in memory).
local data_dir = os.getenv("COLLAB_DATA_DIR") or "data"
edgews.configure { data_dir = data_dir ~= "" and data_dir or nil }

docs.configure {
  max_size = env_int("COLLAB_MAX_SIZE", 1024 * 1024),
  max_op_size = env_int("COLLAB_MAX_OP_SIZE", 64 * 1024),
  max_lag = env_int("COLLAB_MAX_LAG", 1000),
  history = env_int("COLLAB_HISTORY", 1000),
  snapshot_every = env_int("COLLAB_SNAPSHOT_EVERY", 100),
  persistence = os.getenv("COLLAB_PERSISTENCE") ~= "off",
  unload_after = env_int("COLLAB_UNLOAD_AFTER", 30),
}
-- The editor page: public/ at /, and the browser client it imports at /client/.
edgews.static("/", "public")
edgews.static("/client/", "../../client")

local MAX_DOCS = env_int("COLLAB_MAX_DOCS", 8)
local OPS_RATE, OPS_BURST = env_int("COLLAB_OPS_RATE", 50), env_int("COLLAB_OPS_BURST", 100)

local PALETTE = { "#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6",
                  "#bcf60c", "#008080", "#9a6324", "#800000", "#000075" }

local function color_for(name)
  local h = 0
  for i = 1, #name do h = (h * 31 + name:byte(i)) % 65536 end
  return PALETTE[h % #PALETTE + 1]
end

local function profile(id, name, color)
  name = type(name) == "string" and #name > 0 and #name <= 64 and name or tostring(id)
  if type(color) ~= "string" or not color:match("^#%x%x%x%x%x%x$") then color = color_for(name) end
  return { id = tostring(id), name = name, color = color }
end

local auth
local secret = os.getenv("COLLAB_JWT_SECRET")
if secret and secret ~= "" then
  auth = edgews.auth.jwt { secret = secret,
    user = function(claims) return profile(claims.sub, claims.name, claims.color) end }
else
  auth = edgews.auth.custom(function(req)
    local name = req.params.name
    if not name or not name:match("^[%w_%-]+$") or #name > 32 then
      return nil, "give a name: /collab?name=ada (letters, digits, _ or -)", 401
    end
    return profile(name, name, req.params.color)
  end)
end

local collab = edgews.app {
  path = "/collab",
  auth = auth,
  max_connections_per_user = 20,
  max_message_size = 2 * 1024 * 1024,
  max_json_size = math.max(64 * 1024, env_int("COLLAB_MAX_OP_SIZE", 64 * 1024) * 2),
  max_buffered = 16 * 1024 * 1024,
}

local function send(socket, t) socket:send(cjson.encode(t)) end

local function fail(socket, doc, code, message, body)
  local id = body and body.id
  if type(id) ~= "string" and not (type(id) == "number" and id == id and id ~= math.huge and id ~= -math.huge) then
    id = nil
  end
  send(socket, { type = "error", doc = doc, error = code, message = message,
                 seq = body and type(body.seq) == "number" and body.seq or nil, id = id })
end

local function channel(doc) return "doc:" .. doc end
local null = cjson.null
local function opt(v) if v ~= null then return v end end

local doc_rule = { type = "string", required = true, min_length = 1, max_length = 128,
                   pattern = "^[%w_%-%.:/]+$" }
local rev_rule = { type = "integer", min = 0 }

collab:route("join", function(socket, body, ctx)
  local doc = body.doc
  if #docs.joined(socket) >= MAX_DOCS then
    return fail(socket, doc, "too_many_documents", "at most " .. MAX_DOCS .. " documents per connection", body)
  end
  local ok, code, message = docs.join(socket, doc, { client = opt(body.client), revision = opt(body.revision),
                                                      user = ctx.user.id, id = body.id })
  if not ok then return fail(socket, doc, code, message, body) end
  edgews.channel(channel(doc)):subscribe(socket)
  presence.join(channel(doc), socket, { meta = { name = ctx.user.name, color = ctx.user.color } })
  local list = presence.list(channel(doc), { limit = 200 })
  local members = {}
  for i, m in ipairs(list.members) do
    local meta = type(m.meta) == "table" and m.meta or {}
    members[i] = { user = m.user, name = meta.name, color = meta.color }
  end
  socket:send(cjson.encode { type = "members", doc = doc }:sub(1, -2) .. ',"members":'
    .. (#members > 0 and cjson.encode(members) or "[]") .. "}")
end, { validate = { doc = doc_rule, revision = rev_rule,
                    client = { type = "string", min_length = 1, max_length = 64, pattern = "^[%w_%-]+$" } } })

collab:route("edit", function(socket, body)
  body.selection = opt(body.selection)
  body.seq = opt(body.seq)
  local ok, code, message = docs.edit(socket, body.doc, body)
  if not ok then return fail(socket, body.doc, code, message, body) end
end, { validate = { doc = doc_rule, revision = { type = "integer", min = 0, required = true },
                    operation = { type = "array", required = true },
                    seq = { type = "integer", min = 1 }, selection = { type = "table" } },
       rate_limit = { messages = { rate = OPS_RATE, burst = OPS_BURST } } })

collab:route("cursor", function(socket, body)
  local ok, code, message = docs.cursor(socket, body.doc, body)
  if not ok then return fail(socket, body.doc, code, message, body) end
end, { validate = { doc = doc_rule, revision = { type = "integer", min = 0, required = true },
                    selection = { type = "table", required = true } },
       rate_limit = { messages = { rate = OPS_RATE, burst = OPS_BURST } } })

collab:route("leave", function(socket, body)
  local ok, code, message = docs.leave(socket, body.doc)
  if not ok then return fail(socket, body.doc, code, message, body) end
  edgews.channel(channel(body.doc)):unsubscribe(socket)
  presence.leave(channel(body.doc), socket)
  send(socket, { type = "left", doc = body.doc })
end, { validate = { doc = doc_rule } })

collab:on("open", function(socket)
  local u = socket.ctx.user
  send(socket, { type = "welcome", user = u.id, name = u.name, color = u.color, worker = edgews.worker_id() })
end)
