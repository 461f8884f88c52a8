-- edgews.workers: what crosses worker threads. Workers share no Lua state; a
-- cross-worker action is a message (values serialised with LuaJIT's string.buffer)
-- posted to the target worker's inbox and run there by `dispatch`.
--
--   users:      which authenticated sockets each user has, on every worker
--               (a process-wide registry in C, hub/users.c) -> edgews.user_sockets
--   broadcast:  app:broadcast reaches the app's sockets on every worker; a filter
--               function travels as bytecode plus copies of its upvalues, so it
--               may use plain values from its scope (strings, numbers, booleans,
--               tables of those) but not sockets or functions: compare ids
--               (`s.id ~= sender.id`) rather than socket tables.

local core = require "edgews.core"
local config = require "edgews.config"
local buffer = require "string.buffer"

local type, pairs, ipairs, next, tostring, error, setmetatable, load =
  type, pairs, ipairs, next, tostring, error, setmetatable, loadstring or load
local getupvalue, setupvalue = debug.getupvalue, debug.setupvalue
local string_dump = string.dump
local encode, decode = buffer.encode, buffer.decode

local _M = {}

-- ------------------------------------------------------------------- users

local local_users = {} -- uid -> { [socket] = true } on this worker

-- Other modules' cross-worker operations: op name -> fn(message) on the target
-- (register_op).
_M.ops = {}

local builtin_ops = { send = true, close = true, close_all = true, broadcast = true }

--- workers.register_op(name, fn): messages { op = name, ... } that another
-- worker posts (core.post(w, string.buffer.encode(msg))) run fn(msg) here. A
-- module registers its ops when it loads (again when it is reloaded: the newer
-- function replaces the older).
function _M.register_op(name, fn)
  if type(name) ~= "string" or type(fn) ~= "function" then
    error("workers.register_op(name, fn) expects a string and a function", 2)
  end
  if builtin_ops[name] then error("workers.register_op: '" .. name .. "' is a built-in op", 2) end
  _M.ops[name] = fn
end

--- This worker's sockets of a user (a list, possibly empty).
function _M.local_user_sockets(uid)
  local list = {}
  local set = local_users[uid]
  if set then for s in pairs(set) do list[#list + 1] = s end end
  return list
end

--- workers.add_user(sock, user) -> uid (a string) when the socket was registered
-- for the user now; nil when the user has no id or it was registered already.
function _M.add_user(sock, user)
  local uid = user and user.id
  if uid == nil then return nil end
  uid = tostring(uid)
  local a = sock.ctx._auth
  if not a then a = {}; sock.ctx._auth = a end
  if a.uid == uid then return nil end
  if a.uid then _M.remove_user(sock) end
  a.uid = uid
  local set = local_users[uid]
  if not set then set = {}; local_users[uid] = set end
  set[sock] = true
  core.user_add(uid, sock.id)
  return uid
end

function _M.remove_user(sock)
  local a = sock.ctx._auth
  local uid = a and a.uid
  if not uid then return end
  a.uid = nil
  local set = local_users[uid]
  if set then
    set[sock] = nil
    if next(set) == nil then local_users[uid] = nil end
  end
  core.user_remove(uid, sock.id)
end

local function local_socket(uid, id)
  local set = local_users[uid]
  if not set then return nil end
  for s in pairs(set) do
    if s.id == id then return s end
  end
end

-- A socket of another worker (a stand-in): send and close travel to its worker
-- as messages. What it promises:
--   is_open()  true while the socket is registered for its user in the
--              process-wide registry: from its authentication until its
--              connection ends (the owner unregisters it at that moment).
--   send/close nil, "closed" when is_open() is false; otherwise true once the
--              message is on the owner's inbox. Delivery is asynchronous: if
--              the socket ends before the owner runs the message, it is dropped
--              (as a local socket:send to a closing socket would be), and the
--              owner's slow-consumer policy applies there, not here.
local Remote = {}
Remote.__index = Remote
_M.Remote = Remote

local function registered(r)
  for _, e in ipairs(core.user_list(r.user)) do
    if e[1] == r.worker and e[2] == r.id and e[3] == r.instance then return true end
  end
  return false
end

function Remote:is_open()
  return registered(self)
end

local function post(r, msg)
  if not registered(r) then return nil, "closed" end
  local ok, err = core.post(r.worker, encode(msg), r.instance)
  if ok then return true end
  return nil, err == -4 and "closed" or "error " .. tostring(err)
end

function Remote:send(data, is_binary)
  if type(data) ~= "string" then error("socket:send expects a string, got " .. type(data), 2) end
  return post(self, { op = "send", uid = self.user, id = self.id, data = data,
                      bin = is_binary and true or false })
end

function Remote:close(code, reason)
  if code ~= nil and not config.valid_close_code(code) then
    error("socket:close: invalid close code " .. tostring(code), 2)
  end
  if reason ~= nil and type(reason) ~= "string" then error("socket:close: reason must be a string", 2) end
  return post(self, { op = "close", uid = self.user, id = self.id, code = code, reason = reason })
end

--- edgews.user_sockets(user_id) -> list of the user's sockets on every worker:
-- this worker's are the socket objects themselves, other workers' are stand-ins
-- with send, close, is_open and the fields id, worker (is_remote = true), and in
-- a cluster (--redis) also those of the other instances (with their `instance`).
function _M.user_sockets(uid)
  uid = tostring(uid)
  local me = core.worker_id()
  local list = {}
  for _, e in ipairs(core.user_list(uid)) do
    local w, id, inst = e[1], e[2], e[3]
    if w == me and not inst then
      local s = local_socket(uid, id)
      if s then list[#list + 1] = s end
    else
      list[#list + 1] = setmetatable({ id = id, worker = w, user = uid, is_remote = true,
                                       instance = inst }, Remote)
    end
  end
  return list
end

-- --------------------------------------------------------------- broadcast

local plain = { string = true, number = true, boolean = true, ["nil"] = true }

local function check_plain(v, depth)
  local t = type(v)
  if plain[t] then return true end
  if t ~= "table" or depth > 8 then return false end
  for k, x in pairs(v) do
    if not check_plain(k, depth + 1) or not check_plain(x, depth + 1) then return false end
  end
  return true
end

--- Turns a filter function into something another worker can rebuild.
function _M.export_function(fn, level)
  local ups, i = {}, 1
  while true do
    local name, v = getupvalue(fn, i)
    if not name then break end
    if not check_plain(v, 0) then
      error("broadcast filter: upvalue '" .. name .. "' (" .. type(v) .. ") cannot cross workers; "
        .. "use plain values (compare socket ids, not sockets)", (level or 1) + 1)
    end
    ups[i] = v
    i = i + 1
  end
  return { code = string_dump(fn), ups = ups, n = i - 1 }
end

local imported = setmetatable({}, { __mode = "v" })
function _M.import_function(p)
  local fn = imported[p.code]
  if not fn then
    fn = load(p.code)
    imported[p.code] = fn
  end
  for i = 1, p.n do setupvalue(fn, i, p.ups[i]) end
  return fn
end

--- Posts a broadcast of app `path` to every other worker (and, in a cluster, to
-- every worker of the other instances).
function _M.broadcast_others(path, data, is_binary, filter, level)
  local n = core.workers()
  local cluster = core.cluster and core.cluster()
  if n <= 1 and not cluster then return end
  local msg = encode({ op = "broadcast", path = path, data = data, bin = is_binary and true or false,
                       filter = filter and _M.export_function(filter, (level or 1) + 1) or nil })
  local me = core.worker_id()
  for w = 0, n - 1 do
    if w ~= me then core.post(w, msg) end
  end
  if cluster then core.post_instances(msg) end
end

--- Asks every other worker (and, in a cluster, every worker of the other
-- instances) to close the app's sockets.
function _M.close_all_others(path, code, reason)
  local n = core.workers()
  local cluster = core.cluster and core.cluster()
  if n <= 1 and not cluster then return end
  local msg = encode({ op = "close_all", path = path, code = code, reason = reason })
  local me = core.worker_id()
  for w = 0, n - 1 do
    if w ~= me then core.post(w, msg) end
  end
  if cluster then core.post_instances(msg) end
end

-- Runs a message from another worker (the core calls this through init.lua's
-- _bus, in a task). `apps` is the path -> app table of this worker.
function _M.dispatch(blob, apps)
  local m = decode(blob)
  if m.op == "send" then
    local s = local_socket(m.uid, m.id)
    if s then s:send(m.data, m.bin) end
  elseif m.op == "close" then
    local s = local_socket(m.uid, m.id)
    if s then s:close(m.code, m.reason) end
  elseif m.op == "close_all" then
    local app = apps[m.path]
    if app then app:_close_all_local(m.code, m.reason) end
  elseif _M.ops[m.op] then
    _M.ops[m.op](m)
  elseif m.op == "broadcast" then
    local app = apps[m.path]
    if app then
      local filter = m.filter and _M.import_function(m.filter)
      app:_broadcast_local(m.data, m.bin, filter)
    end
  end
end

return _M
