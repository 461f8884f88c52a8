-- edgews.testing: test your app with busted. Starts the real edgews-lua on a free
-- port with your app, talks to it with a WebSocket client, signs test tokens, and
-- stops, kills and restarts the server. See the README's "Testing your app".
--
--   local testing = require "edgews.testing"
--   local srv = assert(testing.start { app = "app.lua", env = { JWT_SECRET = "s" } })
--   local ws = assert(testing.connect(srv:url "/chat", { query = { token = testing.jwt({ sub = "ada" }, "s") } }))
--   assert(ws:send_json { type = "say", text = "hi" })
--   local msg = assert(ws:receive_json())
--   testing.cleanup()   -- in after_each: clients closed, servers stopped, temp dirs removed
--
-- Design. The module runs in the test process (busted under LuaJIT), outside the
-- server: it loads no server module (edgews.core exists only inside edgews-lua), only
-- edgews.jwt and edgews.crypto (mbedTLS through the FFI) and luaposix. A server is a
-- child process in a process group of its own, with its stdout and stderr appended
-- to one log file in a temporary directory; it is asked for port 0 and its port read
-- from the "listening on" log line. The kernel ends a server whose test process died
-- (PR_SET_PDEATHSIG), and the servers still running when Lua closes are killed, so
-- an interrupted run leaves nothing behind.
--
-- Errors: I/O outcomes (a server that does not start, a connection refused, a
-- timeout) return nil, err; misuse (unknown options, wrong types) raises.
--
-- The server binary: EDGEWS_BIN, else `edgews-lua` on PATH, else beside this file:
-- build/edgews-lua of the source tree this file is in (lua/edgews/testing.lua), or
-- PREFIX/bin/edgews-lua of an installation (PREFIX/share/lua/5.1/edgews/testing.lua).

local unistd = require "posix.unistd"
local wait = require "posix.sys.wait"
local psignal = require "posix.signal"
local fcntl = require "posix.fcntl"
local pstdlib = require "posix.stdlib"
local sysstat = require "posix.sys.stat"
local dirent = require "posix.dirent"
local ptime = require "posix.time"
local ffi = require "ffi"
local client = require "edgews.testing.client"
local config = require "edgews.config"

local type, error, tostring, tonumber, pairs, ipairs, setmetatable, pcall, select =
  type, error, tostring, tonumber, pairs, ipairs, setmetatable, pcall, select
local string_format = string.format
local math_floor = math.floor
local unpack = unpack or table.unpack

local _M = { _VERSION = "0.1.0" }

_M.null = require("cjson").null
_M.START_TIMEOUT = tonumber(os.getenv("EDGEWS_START_TIMEOUT") or "") or 10

-- ------------------------------------------------------------------- small utils

_M.now = client.now

--- testing.sleep(seconds)
function _M.sleep(secs)
  if type(secs) ~= "number" or secs < 0 then error("sleep: seconds must be a non-negative number", 2) end
  local s = math_floor(secs)
  ptime.nanosleep { tv_sec = s, tv_nsec = math_floor((secs - s) * 1e9) }
end
local sleep = _M.sleep

--- testing.wait_until(fn [, timeout = 5 [, interval = 0.02]]) -> fn's value | nil, "timeout"
-- Calls fn until it returns a truthy value (returned), or the timeout passes.
function _M.wait_until(fn, timeout, interval)
  if type(fn) ~= "function" then error("wait_until: fn must be a function", 2) end
  if timeout ~= nil and (type(timeout) ~= "number" or timeout < 0) then
    error("wait_until: timeout must be a number of seconds", 2)
  end
  local deadline = _M.now() + (timeout or 5)
  while true do
    local v = fn()
    if v then return v end
    if _M.now() >= deadline then return nil, "timeout" end
    sleep(interval or 0.02)
  end
end

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

local function abspath(p)
  if p:sub(1, 1) ~= "/" then p = unistd.getcwd() .. "/" .. p end
  return pstdlib.realpath(p) or p
end

local function is_executable(p)
  if type(p) ~= "string" or unistd.access(p, "x") ~= 0 then return false end
  local st = sysstat.stat(p)
  return st ~= nil and sysstat.S_ISREG(st.st_mode) ~= 0
end

local tmp_root = (os.getenv("TMPDIR") or "/tmp"):gsub("/+$", "")
local tmpdirs = {}

--- testing.tmpdir() -> a new temporary directory, removed by cleanup()
function _M.tmpdir()
  local d, err = pstdlib.mkdtemp(tmp_root .. "/edgews-test-XXXXXX")
  if not d then error("tmpdir: cannot create a directory in " .. tmp_root .. ": " .. tostring(err), 2) end
  tmpdirs[#tmpdirs + 1] = d
  return d
end

-- ---------------------------------------------------------------- the server binary

-- lua/edgews (source tree) or share/lua/5.1/edgews (installed): this file's directory
local function own_dir()
  local src = debug.getinfo(1, "S").source
  if src:sub(1, 1) ~= "@" then return nil end
  return abspath(src:sub(2)):match("^(.*)/[^/]*$")
end

--- testing.server_binary() -> path | raises with what was looked at
function _M.server_binary()
  local env = os.getenv("EDGEWS_BIN")
  if env and env ~= "" then
    if not is_executable(env) then error("EDGEWS_BIN=" .. env .. " is not an executable file", 2) end
    return env
  end
  local tried = {}
  for dir in (os.getenv("PATH") or ""):gmatch("[^:]+") do
    local p = dir .. "/edgews-lua"
    if is_executable(p) then return p end
  end
  tried[#tried + 1] = "edgews-lua on PATH"
  local dir = own_dir()
  if dir then
    for _, rel in ipairs { "/../../build/edgews-lua", "/../../../../bin/edgews-lua" } do
      local p = dir .. rel
      if is_executable(p) then return pstdlib.realpath(p) or p end
      tried[#tried + 1] = p
    end
  end
  error("edgews.testing: cannot find the edgews-lua binary (set EDGEWS_BIN to it); tried "
    .. table.concat(tried, ", "), 2)
end

-- ------------------------------------------------------------------- processes

local servers = {} -- every server started (running or not), for cleanup
local clients = {} -- every WebSocket opened through testing.connect

-- The kernel sends the child SIGKILL when the test process ends (Linux).
local prctl_ok = pcall(ffi.cdef, "int prctl(int option, unsigned long a2, unsigned long a3, unsigned long a4, unsigned long a5);")
local PR_SET_PDEATHSIG = 1

local function spawn(argv, env, log_path)
  io.stdout:flush()
  io.stderr:flush()
  local parent = unistd.getpid()
  local pid, err = unistd.fork()
  if not pid then return nil, "fork: " .. tostring(err) end
  if pid == 0 then
    unistd.setpid("p", 0, 0) -- own process group: a terminal's ^C goes to the tests only
    if prctl_ok then pcall(function() ffi.C.prctl(PR_SET_PDEATHSIG, 9, 0, 0, 0) end) end
    if unistd.getppid() ~= parent then unistd._exit(1) end
    local null = fcntl.open("/dev/null", fcntl.O_RDONLY)
    unistd.dup2(null, 0)
    local log = fcntl.open(log_path, fcntl.O_WRONLY + fcntl.O_CREAT + fcntl.O_APPEND, 420)
    unistd.dup2(log, 1)
    unistd.dup2(log, 2)
    -- Nothing else of the test process goes to the server: a client's socket kept
    -- open by a server would keep that connection alive after the client drops it.
    local fds = dirent.dir("/proc/self/fd") or {}
    for _, name in ipairs(fds) do
      local fd = tonumber(name)
      if fd and fd > 2 then unistd.close(fd) end
    end
    for k, v in pairs(env) do
      if v == false then pstdlib.setenv(k, nil) else pstdlib.setenv(k, tostring(v)) end
    end
    local _, eerr = unistd.exec(argv[1], { select(2, unpack(argv)) })
    io.stderr:write("edgews.testing: exec ", tostring(argv[1]), " failed: ", tostring(eerr), "\n")
    io.stderr:flush()
    unistd._exit(127)
  end
  return pid
end

local Server = {}
Server.__index = Server
_M.Server = Server

local start_fields = {
  app = true, env = true, workers = true, data = true, log_level = true, args = true,
  timeout = true, bin = true, admin = true, watch = true, drain_timeout = true,
}

--- testing.start{ app = "app.lua", env = {}, workers = 2, data = true, admin = false,
---   log_level = "info", drain_timeout = 1, watch = true, args = {}, timeout = 10,
---   bin = nil } -> server | nil, err
-- data: true (a fresh temporary directory, the default), false (no --data) or a path.
-- err (a server that exits or does not listen within `timeout`) includes its log.
function _M.start(opts)
  if type(opts) ~= "table" then error("start: expects a table { app = \"app.lua\", ... }", 2) end
  for k in pairs(opts) do
    if not start_fields[k] then
      local hint = config.closest(k, start_fields)
      error(string_format("start: unknown option '%s'%s", tostring(k),
        hint and string_format(" (did you mean '%s'?)", hint) or ""), 2)
    end
  end
  if type(opts.app) ~= "string" then error("start: app must be the path of the app's script", 2) end
  local app = abspath(opts.app)
  if unistd.access(app, "r") ~= 0 then error("start: cannot read the app " .. opts.app, 2) end
  if opts.env ~= nil and type(opts.env) ~= "table" then error("start: env must be a table { NAME = value }", 2) end
  for k, v in pairs(opts.env or {}) do
    if type(k) ~= "string" or (v ~= false and type(v) ~= "string" and type(v) ~= "number") then
      error("start: env." .. tostring(k) .. " must be a string, a number or false (unset)", 2)
    end
  end
  local workers = opts.workers or 2
  if type(workers) ~= "number" or workers < 1 or workers % 1 ~= 0 then
    error("start: workers must be a positive integer", 2)
  end
  if opts.args ~= nil and type(opts.args) ~= "table" then error("start: args must be a list of strings", 2) end
  for _, k in ipairs { "timeout", "drain_timeout" } do
    if opts[k] ~= nil and (type(opts[k]) ~= "number" or opts[k] < 0) then
      error("start: " .. k .. " must be a number of seconds", 2)
    end
  end
  local data = opts.data
  if data == nil then data = true end
  if data ~= true and data ~= false and type(data) ~= "string" then
    error("start: data must be true (a temporary directory), false or a directory path", 2)
  end
  local bin = opts.bin
  if bin == nil then
    local ok, found = pcall(_M.server_binary)
    if not ok then error(found:gsub("^[^:]*:%d+: ", ""), 2) end
    bin = found
  elseif not is_executable(bin) then
    error("start: bin " .. tostring(bin) .. " is not an executable file", 2)
  end

  local dir = _M.tmpdir()
  local data_dir
  if data == true then
    data_dir = dir .. "/data"
    assert(sysstat.mkdir(data_dir, 448))
  elseif type(data) == "string" then
    data_dir = abspath(data)
  end
  local s = setmetatable({
    app = app, bin = bin, dir = dir, data_dir = data_dir, log_path = dir .. "/server.log",
    env = opts.env or {}, workers = workers, host = "127.0.0.1", opts = opts,
    log_offset = 0, starts = 0,
  }, Server)
  servers[#servers + 1] = s
  local ok, err = s:_launch(0)
  if not ok then return nil, err end
  return s
end

function Server:_argv(port)
  local o = self.opts
  local argv = { self.bin, "--listen", self.host .. ":" .. port, "--workers", tostring(self.workers),
                 "--log-level", o.log_level or "info",
                 "--drain-timeout", tostring(o.drain_timeout or 1) }
  if self.data_dir then
    argv[#argv + 1] = "--data"
    argv[#argv + 1] = self.data_dir
  end
  if o.admin then
    argv[#argv + 1] = "--admin-listen"
    argv[#argv + 1] = self.host .. ":" .. (self.admin_port or 0)
  end
  if o.watch == false then argv[#argv + 1] = "--no-watch" end
  for _, a in ipairs(o.args or {}) do argv[#argv + 1] = tostring(a) end
  argv[#argv + 1] = self.app
  return argv
end

-- The tail of this run's log, for error messages.
function Server:_tail()
  local log = self:log()
  if #log > 4000 then log = "..." .. log:sub(-4000) end
  return log
end

-- Starts the process and waits for its listening lines -> true | nil, err
function Server:_launch(port)
  local f = io.open(self.log_path, "ab")
  self.log_offset = f and f:seek("end") or 0
  if f then f:close() end
  self.how, self.code, self.port = nil, nil, nil
  local pid, err = spawn(self:_argv(port), self.env, self.log_path)
  if not pid then return nil, err end
  self.pid = pid
  self.starts = self.starts + 1
  local timeout = self.opts.timeout or _M.START_TIMEOUT
  local deadline = _M.now() + timeout
  local want_plain = false
  for _, a in ipairs(self.opts.args or {}) do if a == "--plain-listen" then want_plain = true end end
  while true do
    local log = self:log()
    local main, rest = log:match("listening on %S+:(%d+)([^\n]*)")
    local admin = log:match("admin listener [^\n]- on %S+:(%d+)")
    local plain = log:match("plain listener on %S+:(%d+)")
    if main and (admin or not self.opts.admin) and (plain or not want_plain) then
      self.port = tonumber(main)
      self.admin_port = tonumber(admin)
      self.plain_port = tonumber(plain)
      self.tls = rest:find("(TLS)", 1, true) ~= nil
      return true
    end
    if not self:alive() then
      return nil, string_format("edgews-lua exited (%s %s) before listening; its log:\n%s",
        tostring(self.how), tostring(self.code), self:_tail())
    end
    if _M.now() > deadline then
      self:_kill_now()
      return nil, string_format("edgews-lua did not print 'listening on' within %g s; its log:\n%s",
        timeout, self:_tail())
    end
    sleep(0.01)
  end
end

--- server:alive() -> true while the process runs
function Server:alive()
  if self.how or not self.pid then return false end
  local pid, how, code = wait.wait(self.pid, wait.WNOHANG)
  if pid == self.pid then
    self.how, self.code = how, code
    return false
  end
  if pid == nil then -- not our child any more
    self.how = "unknown"
    return false
  end
  return true
end

--- server:wait_exit([timeout = 10]) -> how ("exited"|"killed"), code | nil, "timeout"
function Server:wait_exit(timeout)
  local ok = _M.wait_until(function() return not self:alive() end, timeout or 10, 0.01)
  if not ok then return nil, "timeout" end
  return self.how, self.code
end

local SIGNALS = {
  TERM = psignal.SIGTERM, INT = psignal.SIGINT, HUP = psignal.SIGHUP, KILL = psignal.SIGKILL,
  QUIT = psignal.SIGQUIT, USR1 = psignal.SIGUSR1, USR2 = psignal.SIGUSR2,
  STOP = psignal.SIGSTOP, CONT = psignal.SIGCONT,
}

--- server:signal(name) -> true | nil, "not running"   name: "HUP", "TERM", "KILL", ...
function Server:signal(name)
  local sig = SIGNALS[name]
  if not sig then error("signal: unknown signal " .. tostring(name), 2) end
  if not self:alive() then return nil, "not running" end
  psignal.kill(self.pid, sig)
  return true
end

function Server:_kill_now()
  if self:alive() then
    psignal.kill(self.pid, psignal.SIGKILL)
    self:wait_exit(5)
  end
end

--- server:stop([timeout = 10]) -> how, code | nil, err
-- SIGTERM (the server closes its connections with 1001 and exits 0), then waits for
-- the exit. A server that does not exit in time is killed: nil, err.
function Server:stop(timeout)
  if not self:alive() then return self.how, self.code end
  psignal.kill(self.pid, psignal.SIGTERM)
  local how, code = self:wait_exit(timeout or 10)
  if how then return how, code end
  self:_kill_now()
  return nil, string_format("edgews-lua did not exit within %g s of SIGTERM (killed)", timeout or 10)
end

--- server:kill() -> how, code   SIGKILL, then waits for the exit
function Server:kill()
  if self:alive() then psignal.kill(self.pid, psignal.SIGKILL) end
  return self:wait_exit(10)
end

--- server:restart([{ new_port = false, timeout }]) -> server | nil, err
-- Stops the server if it runs (SIGTERM, waiting for the exit: the process owns its
-- port and data directory until then) and starts it again with the same app,
-- environment, options and data directory, on the same port unless new_port.
function Server:restart(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("restart: options must be a table", 2) end
  for k in pairs(opts) do
    if k ~= "new_port" and k ~= "timeout" then error("restart: unknown option '" .. tostring(k) .. "'", 2) end
  end
  if self:alive() then
    local ok, err = self:stop(opts.timeout)
    if not ok then return nil, err end
  end
  if opts.new_port then self.admin_port = nil end
  local ok, err = self:_launch(opts.new_port and 0 or (self.port or 0))
  if not ok then return nil, err end
  return self
end

--- server:url([path = "/"]) -> "ws://127.0.0.1:PORT/path"
function Server:url(path)
  return string_format("ws://%s:%d%s", self.host, self.port or 0, path or "/")
end

--- server:http_url([path]) / server:admin_url([path]) -> http:// URLs of the main
-- listener and of the admin listener (start{admin = true})
function Server:http_url(path)
  return string_format("http://%s:%d%s", self.host, self.port or 0, path or "/")
end

function Server:admin_url(path)
  if not self.admin_port then error("admin_url: the server was started without admin = true", 2) end
  return string_format("http://%s:%d%s", self.host, self.admin_port, path or "/")
end

--- server:log() -> what the running (or last) process wrote (stdout and stderr)
function Server:log()
  return (read_file(self.log_path) or ""):sub(self.log_offset + 1)
end

--- server:full_log() -> the log of every process of this server (restarts included)
function Server:full_log()
  return read_file(self.log_path) or ""
end

--- server:log_mark() -> a position in the full log, for wait_log's `since`
function Server:log_mark()
  return #self:full_log()
end

--- server:wait_log(pattern [, timeout = 5 [, { plain = false, since = mark }]])
---   -> the first capture (or the matched text) | nil, err
-- Looks in this process's log (or after `since`, a log_mark()) until the Lua pattern
-- (plain text with plain = true) shows up. err: "timeout: ..." or, when the process
-- ended without it, "edgews-lua exited ...".
function Server:wait_log(pattern, timeout, opts)
  if type(pattern) ~= "string" then error("wait_log: pattern must be a string", 2) end
  opts = opts or {}
  local since = opts.since or self.log_offset
  local deadline = _M.now() + (timeout or 5)
  while true do
    local log = self:full_log():sub(since + 1)
    local s, e, cap = log:find(pattern, 1, opts.plain)
    if s then return cap or log:sub(s, e) end
    if not self:alive() then
      -- it may have written the line just before exiting
      log = self:full_log():sub(since + 1)
      s, e, cap = log:find(pattern, 1, opts.plain)
      if s then return cap or log:sub(s, e) end
      return nil, string_format("edgews-lua exited (%s %s) without logging %q", tostring(self.how),
        tostring(self.code), pattern)
    end
    if _M.now() >= deadline then
      return nil, string_format("timeout: %q not in the log after %g s", pattern, timeout or 5)
    end
    sleep(0.02)
  end
end

-- ------------------------------------------------------------------- clients

--- testing.connect(url [, { headers, query, protocols, origin, timeout = 5,
---   max_message_size }]) -> ws | nil, err, response
function _M.connect(url, opts)
  local ws, err, res = client.connect(url, opts, 2)
  if ws then clients[#clients + 1] = ws end
  return ws, err, res
end

--- testing.http(url [, { method, headers, body, query, timeout }]) -> status, body, headers | nil, err
function _M.http(url, opts)
  local ok, a, b, c = pcall(client.http, url, opts)
  if not ok then error(tostring(a):gsub("^[^:]*:%d+: ", ""), 2) end
  return a, b, c
end

-- ------------------------------------------------------------------------ JWT

--- testing.jwt(claims, secret [, { alg = "HS256", expires_in = 3600 }]) -> token
-- Signs claims (a copy) with an HMAC secret. Adds iat = now and exp = now +
-- expires_in unless the claims have them (expires_in = false: no exp).
function _M.jwt(claims, secret, opts)
  if type(claims) ~= "table" then error("jwt: claims must be a table", 2) end
  if type(secret) ~= "string" or secret == "" then error("jwt: secret must be a non-empty string", 2) end
  opts = opts or {}
  if type(opts) ~= "table" then error("jwt: options must be a table", 2) end
  local c = {}
  for k, v in pairs(claims) do c[k] = v end
  local now = os.time()
  if c.iat == nil then c.iat = now end
  if c.exp == nil and opts.expires_in ~= false then
    local ttl = opts.expires_in or 3600
    if type(ttl) ~= "number" then error("jwt: expires_in must be a number of seconds or false", 2) end
    c.exp = now + ttl
  end
  local ok, token = pcall(require("edgews.jwt").sign, c, secret, opts.alg or "HS256")
  if not ok then error("jwt: " .. tostring(token):gsub("^[^:]*:%d+: ", ""), 2) end
  return token
end

-- ------------------------------------------------------------------------ cleanup

--- testing.cleanup(): drops every client, stops every server (SIGTERM, SIGKILL
-- after 5 s) and removes the temporary directories. Call it in after_each (or
-- teardown); any number of times.
function _M.cleanup()
  for i = #clients, 1, -1 do
    clients[i]:drop()
    clients[i] = nil
  end
  for i = #servers, 1, -1 do
    local s = servers[i]
    if s:alive() then s:stop(5) end
    servers[i] = nil
  end
  for i = #tmpdirs, 1, -1 do
    local d = tmpdirs[i]
    if d:sub(1, #tmp_root + 13) == tmp_root .. "/edgews-test-" then
      os.execute("rm -rf " .. shell_quote(d))
    end
    tmpdirs[i] = nil
  end
end

-- When Lua closes (busted exits), servers still running are killed at once.
do
  local sentinel = newproxy and newproxy(true)
  if sentinel then
    getmetatable(sentinel).__gc = function()
      for _, s in ipairs(servers) do pcall(s._kill_now, s) end
      for _, d in ipairs(tmpdirs) do os.execute("rm -rf " .. shell_quote(d)) end
    end
    _M._sentinel = sentinel
  end
end

return _M
