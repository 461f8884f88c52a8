-- Presence, app operations and pub/sub across a cluster, for cluster_presence_spec
-- (three instances with --workers 2 and --redis). The ops of presence_common.lua on
-- /cp (no heartbeat; get's channel lists sorted; list leaves out an empty members
-- list), and pub/sub messages arriving as they are ({"type":"pub",...}):
--   {"op":"conns"}                                       -> {count = app:connection_count()}
--   {"op":"close_all"}                                   -> {closed}: app:close_all(4001, "all")
--   {"op":"psub","topic":T}                              -> {sub = pubsub.subscribe(...)}
--   {"op":"pub","topic":T,"data":D}                      -> {offset}
--   {"op":"fill","topic":T,"n":N}                        -> {offset}: N publishes in one turn
-- The Lua subscriber of topic "lua" (one per instance, on one of its workers)
-- publishes {"name": CP_NAME (the environment's), "offset": n} on channel "lua.seen"
-- for every message it gets.
local edgews = require "edgews"
local cjson = require "cjson.safe"

local pubsub = edgews.pubsub
local app, handlers = require("presence_common") {
  path = "/cp", heartbeat_interval = 0, heartbeat_timeout = 0,
  sort_channels = true, omit_empty = true }

local NAME = os.getenv("CP_NAME") or "?"
pubsub.subscribe("lua", function(msg)
  edgews.channel("lua.seen"):publish(cjson.encode { name = NAME, offset = msg.offset })
end)

local null = cjson.null

function handlers.conns()
  return { count = app:connection_count() }
end

function handlers.close_all()
  return { closed = app:close_all(4001, "all") }
end

function handlers.psub(socket, m)
  local r, err = pubsub.subscribe(m.topic, socket)
  return { sub = r or null, err = err }
end

function handlers.pub(_, m)
  local r, err = pubsub.publish(m.topic, m.data, { wait = true })
  return { offset = r and r.offset or null, err = err }
end

function handlers.fill(_, m)
  local last
  for i = 1, m.n do
    last = pubsub.publish(m.topic, { i = i }, { wait = i == m.n })
    if not last then return { err = "publish failed" } end
  end
  return { offset = last.offset }
end
