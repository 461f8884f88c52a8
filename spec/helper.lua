-- spec/helper.lua — process control for the integration specs (needs lua-posix and
-- lua-cjson, both Debian packages).
--
--   local helper = require "spec.helper"      -- from the repository root
--   local srv = helper.start_server { app = helper.app "echo_app.lua", workers = 1,
--                                     args = { "--drain-timeout", "2" } }
--   srv.port, srv:url "/echo", srv:log(), srv:wait_log(pattern, secs),
--   srv:signal "TERM", srv:wait(secs) -> exited, how, code ; srv:stop()
--   helper.start_server { ..., port = N } listens on port N (a restart on the same port)
--   helper.start_server { ..., wrap = { "nsenter", "-t", pid, "-m", "--" } } runs the
--   server through a command that execs it (same pid)
--   local res, rc = helper.py("echo", "--url", srv:url "/echo")   -- parsed JSON line
--   local c = helper.app_client() ; c:call { op = "open", id = "a", url = ... }  -- scripted
--   local p = helper.spawn(argv, { stdin = "pipe" }) ; p:read_line(secs) ; p:write(s)
--   helper.cleanup()  -- kills every process this helper started (after_each/teardown)
--   local certs = helper.certs()   -- { ca, chain, cert, key }: one throwaway CA per run
--   helper.start_server { app = ..., tls = certs, plain = true } -- srv:url is wss://,
--                                   srv:plain_url(path) ws://, srv:http_url(path) https://
--
-- Every process is started in its own process group and recorded; cleanup() ends
-- them by pid (TERM, then KILL to the group it created) so nothing is left behind,
-- whether a spec passed or failed. The server binary is EDGEWS_BIN, or
-- build/edgews-lua under the repository root.

local unistd = require "posix.unistd"
local wait = require "posix.sys.wait"
local signal = require "posix.signal"
local fcntl = require "posix.fcntl"
local poll = require "posix.poll"
local ptime = require "posix.time"
local pstdlib = require "posix.stdlib"
local cjson = require "cjson"

local M = {}

local function script_dir()
  local src = debug.getinfo(1, "S").source
  local path = src:sub(1, 1) == "@" and src:sub(2) or "spec/helper.lua"
  return path:match("^(.*)/[^/]*$") or "."
end

local function abspath(p)
  if p:sub(1, 1) == "/" then return p end
  return (unistd.getcwd() .. "/" .. p):gsub("/%./", "/")
end

M.ROOT = (abspath(script_dir() .. "/.."):gsub("/spec/%.%.$", ""))
M.BIN = os.getenv("EDGEWS_BIN") or (M.ROOT .. "/build/edgews-lua")
M.PYTHON = os.getenv("EDGEWS_PYTHON") or "/usr/bin/python3"
M.NODE = os.getenv("EDGEWS_NODE") or "node"
M.CLIENTS = M.ROOT .. "/tests/clients"
M.null = cjson.null
M.START_TIMEOUT = tonumber(os.getenv("EDGEWS_START_TIMEOUT") or "") or 10

-- ------------------------------------------------------------------ small utils

function M.now()
  local t = ptime.clock_gettime(ptime.CLOCK_MONOTONIC)
  return t.tv_sec + t.tv_nsec / 1e9
end

function M.sleep(secs)
  local s = math.floor(secs)
  ptime.nanosleep { tv_sec = s, tv_nsec = math.floor((secs - s) * 1e9) }
end

-- Polls fn() until it returns a truthy value (returned) or the timeout passes (nil).
function M.wait_until(fn, timeout, interval)
  local deadline = M.now() + (timeout or 5)
  repeat
    local v = fn()
    if v then return v end
    M.sleep(interval or 0.05)
  until M.now() > deadline
  return fn()
end

function M.read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

function M.write_file(path, content)
  local f = assert(io.open(path, "wb"))
  assert(f:write(content))
  assert(f:close())
end

-- Atomic replace: write a temporary file beside it, then rename over it.
function M.replace_file(path, content)
  local tmp = path .. ".tmp" .. tostring(unistd.getpid())
  M.write_file(tmp, content)
  assert(os.rename(tmp, path))
end

function M.app(name)
  return M.ROOT .. "/spec/apps/" .. name
end

local tmpdirs = {}

function M.tmpdir()
  local d = assert(pstdlib.mkdtemp("/tmp/edgews-spec-XXXXXX"))
  tmpdirs[#tmpdirs + 1] = d
  return d
end

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function set_cloexec(fd)
  fcntl.fcntl(fd, fcntl.F_SETFD, fcntl.FD_CLOEXEC)
end

-- --------------------------------------------------------------------- processes

local procs = {} -- every live process started here

local Proc = {}
Proc.__index = Proc

-- spawn(argv, opts): opts.stdin = "pipe" | nil (/dev/null); opts.stdout = "pipe"
-- (default) | path; opts.stderr = path (default: a file in a fresh tmpdir);
-- opts.env = { NAME = value } added to the environment; opts.kind = "server"|"client".
function M.spawn(argv, opts)
  opts = opts or {}
  local dir = opts.dir or M.tmpdir()
  local stderr_path = opts.stderr or (dir .. "/stderr.log")
  local stdout_path = opts.stdout ~= "pipe" and opts.stdout or nil
  local in_r, in_w, out_r, out_w
  if opts.stdin == "pipe" then
    in_r, in_w = assert(unistd.pipe())
    set_cloexec(in_w)
  end
  if not stdout_path then
    out_r, out_w = assert(unistd.pipe())
    set_cloexec(out_r)
  end
  io.stdout:flush()
  io.stderr:flush()
  local pid = assert(unistd.fork())
  if pid == 0 then
    -- child: own process group, stdio, environment, exec
    unistd.setpid("p", 0, 0)
    local function redirect(fd, target)
      unistd.dup2(fd, target)
      if fd ~= target then unistd.close(fd) end
    end
    if in_r then
      unistd.close(in_w)
      redirect(in_r, 0)
    else
      redirect(fcntl.open("/dev/null", fcntl.O_RDONLY), 0)
    end
    if out_w then
      unistd.close(out_r)
      redirect(out_w, 1)
    else
      redirect(fcntl.open(stdout_path, fcntl.O_WRONLY + fcntl.O_CREAT + fcntl.O_TRUNC, 420), 1)
    end
    redirect(fcntl.open(stderr_path, fcntl.O_WRONLY + fcntl.O_CREAT + fcntl.O_APPEND, 420), 2)
    for k, v in pairs(opts.env or {}) do pstdlib.setenv(k, v) end
    local ok, err = unistd.execp(argv[1], { select(2, unpack(argv)) })
    io.stderr:write("exec ", tostring(argv[1]), " failed: ", tostring(err or ok), "\n")
    io.stderr:flush()
    unistd._exit(127)
  end
  if in_r then unistd.close(in_r) end
  if out_w then unistd.close(out_w) end
  local p = setmetatable({
    pid = pid, argv = argv, kind = opts.kind or "client", dir = dir,
    stdin_fd = in_w, stdout_fd = out_r, stdout_path = stdout_path,
    stderr_path = stderr_path, outbuf = "", out_all = "", started = M.now(),
  }, Proc)
  procs[#procs + 1] = p
  return p
end

-- Non-blocking reap. Returns true when the process has ended (status recorded).
function Proc:poll_exit()
  if self.how then return true end
  local pid, how, code = wait.wait(self.pid, wait.WNOHANG)
  if pid == self.pid then
    self.how, self.code = how, code
    self.ended = M.now()
    return true
  end
  if pid == nil then -- not our child any more (already reaped): treat as gone
    self.how, self.code = self.how or "unknown", self.code
    return true
  end
  return false
end

function Proc:alive()
  return not self:poll_exit()
end

-- wait(timeout) -> exited?, how ("exited"|"killed"), code (exit status or signal)
function Proc:wait(timeout)
  local deadline = M.now() + (timeout or 10)
  while not self:poll_exit() do
    if M.now() > deadline then return false end
    M.sleep(0.02)
  end
  return true, self.how, self.code
end

local SIGNALS = {
  TERM = signal.SIGTERM, INT = signal.SIGINT, HUP = signal.SIGHUP,
  KILL = signal.SIGKILL, QUIT = signal.SIGQUIT, USR1 = signal.SIGUSR1,
  USR2 = signal.SIGUSR2,
}

function Proc:signal(name)
  if self:poll_exit() then return false end
  local sig = SIGNALS[name]
  if not sig then error("unknown signal " .. tostring(name), 2) end
  return signal.kill(self.pid, sig) == 0
end

-- Reads what the child wrote on its stdout pipe (up to `timeout` seconds for the
-- first bytes). Returns false at EOF.
function Proc:_fill(timeout)
  if not self.stdout_fd then return false end
  local ready = poll.rpoll(self.stdout_fd, math.max(0, math.floor(timeout * 1000)))
  if ready and ready > 0 then
    local chunk = unistd.read(self.stdout_fd, 65536)
    if chunk == nil or chunk == "" then
      unistd.close(self.stdout_fd)
      self.stdout_fd = nil
      return false
    end
    self.outbuf = self.outbuf .. chunk
    self.out_all = self.out_all .. chunk
  end
  return true
end

-- One line of the child's stdout (without "\n"), or nil, "timeout" | "eof".
function Proc:read_line(timeout)
  local deadline = M.now() + (timeout or 10)
  while true do
    local i = self.outbuf:find("\n", 1, true)
    if i then
      local line = self.outbuf:sub(1, i - 1)
      self.outbuf = self.outbuf:sub(i + 1)
      return line
    end
    local left = deadline - M.now()
    if left <= 0 then return nil, "timeout" end
    if not self:_fill(math.min(left, 0.2)) then
      if self.outbuf ~= "" then
        local line = self.outbuf
        self.outbuf = ""
        return line
      end
      return nil, "eof"
    end
  end
end

-- The next stdout line that is a JSON object, decoded (non-JSON lines are skipped).
function Proc:read_json(timeout)
  local deadline = M.now() + (timeout or 10)
  while true do
    local line, err = self:read_line(math.max(0, deadline - M.now()))
    if not line then return nil, err end
    if line:sub(1, 1) == "{" then
      local ok, doc = pcall(cjson.decode, line)
      if ok then return doc end
    end
  end
end

function Proc:write(s)
  assert(self.stdin_fd, "process was not started with stdin = 'pipe'")
  local n = 1
  while n <= #s do
    local written = assert(unistd.write(self.stdin_fd, s:sub(n)))
    n = n + written
  end
end

function Proc:close_stdin()
  if self.stdin_fd then
    unistd.close(self.stdin_fd)
    self.stdin_fd = nil
  end
end

function Proc:stderr()
  return M.read_file(self.stderr_path) or ""
end

function Proc:stdout()
  if self.stdout_path then return M.read_file(self.stdout_path) or "" end
  while self.stdout_fd do
    local ready = poll.rpoll(self.stdout_fd, 0)
    if not ready or ready == 0 then break end
    self:_fill(0)
  end
  return self.out_all
end

-- Reads stdout to EOF and waits for the exit (bounded by timeout). Returns
-- finished?, stdout text.
function Proc:finish(timeout)
  local deadline = M.now() + (timeout or 10)
  while self.stdout_fd and M.now() < deadline do
    self:_fill(math.min(0.2, math.max(0, deadline - M.now())))
  end
  local done = self:wait(math.max(0, deadline - M.now()))
  return done, self.out_all
end

-- Ends the process (and the process group it leads): TERM, then KILL after grace.
function Proc:kill(grace)
  if not self:poll_exit() then
    signal.kill(self.pid, signal.SIGTERM)
    if not self:wait(grace or 0) then
      -- Still unreaped, so the process group this helper created for it (its id is
      -- the pid) cannot have been reused: end the whole group, children included.
      signal.kill(-self.pid, signal.SIGKILL)
      signal.kill(self.pid, signal.SIGKILL)
      self:wait(5)
    end
  end
  self:close_stdin()
  if self.stdout_fd then
    unistd.close(self.stdout_fd)
    self.stdout_fd = nil
  end
end

-- Kills every process started through this helper (servers get a grace period) and
-- removes the temporary directories. Safe to call any number of times. Raises when
-- a server's log holds a sanitizer report (so teardown/after_each report it).
function M.cleanup()
  local findings = {}
  for i = #procs, 1, -1 do
    local p = procs[i]
    p:kill(p.kind == "server" and 3 or 0)
    if p.kind == "server" then
      local report = M.sanitizer_report(p:stderr())
      if report then findings[#findings + 1] = report end
    end
    procs[i] = nil
  end
  for i = #tmpdirs, 1, -1 do
    local d = tmpdirs[i]
    if d:match("^/tmp/edgews%-spec%-") then os.execute("rm -rf " .. shell_quote(d)) end
    tmpdirs[i] = nil
  end
  if #findings > 0 then
    error("sanitizer report in the server's log:\n" .. table.concat(findings, "\n----\n"), 2)
  end
end

-- The first AddressSanitizer / UndefinedBehaviorSanitizer / ThreadSanitizer report in
-- a log (a server built with EDGEWS_SANITIZE), or nil.
function M.sanitizer_report(log)
  local s = log:find("==%d+==ERROR: %a*Sanitizer") or log:find("[^\n]*: runtime error: ")
    or log:find("WARNING: ThreadSanitizer:", 1, true)
  if s then return log:sub(s, s + 4000) end
end

-- Kills only the clients (keeps servers started in setup()).
function M.cleanup_clients()
  for i = #procs, 1, -1 do
    local p = procs[i]
    if p.kind ~= "server" then
      p:kill(0)
      table.remove(procs, i)
    end
  end
end

-- ------------------------------------------------------------------------ server

local Server = setmetatable({}, { __index = Proc })
Server.__index = Server

-- ---------------------------------------------------------------------- TLS certs

-- A throwaway CA and a localhost / 127.0.0.1 certificate made by scripts/gen-test-cert:
-- { dir, ca, chain, cert, key } (absolute paths). M.certs() makes one set per run
-- (shared by every spec, not removed by cleanup(); deleted when Lua exits);
-- M.new_certs() makes a fresh set (a new CA) in a tmpdir that cleanup() removes.
local function gen_certs(dir)
  local ok = os.execute(("%s/scripts/gen-test-cert %s >/dev/null 2>&1"):format(
    shell_quote(M.ROOT), shell_quote(dir)))
  assert(ok == 0 or ok == true, "scripts/gen-test-cert " .. dir .. " failed")
  return { dir = dir, ca = dir .. "/ca.crt", chain = dir .. "/chain.crt",
           cert = dir .. "/server.crt", key = dir .. "/server.key" }
end

function M.new_certs()
  return gen_certs(M.tmpdir())
end

local run_certs
function M.certs()
  if run_certs and unistd.access(run_certs.chain, "r") == 0 then return run_certs end
  local dir = assert(pstdlib.mkdtemp("/tmp/edgews-certs-XXXXXX"))
  run_certs = gen_certs(dir)
  -- removed at lua_close (busted exits with os.exit(code, true))
  local sentinel = newproxy and newproxy(true)
  if sentinel then
    getmetatable(sentinel).__gc = function() os.execute("rm -rf " .. shell_quote(dir)) end
    run_certs._sentinel = sentinel
  end
  return run_certs
end

-- start_server{ app = path, workers = n, log_level = "info", args = {...},
--               timeout = secs, bin = path, host = "127.0.0.1",
--               tls = certs ({ chain|cert, key }: --tls-cert/--tls-key, srv:url is wss://),
--               plain = true (--plain-listen HOST:0; srv.plain_port, srv:plain_url),
--               expect_tls = true (TLS set by the script: wait for the "(TLS)" line) }
function M.start_server(o)
  o = o or {}
  local bin = o.bin or M.BIN
  assert(unistd.access(bin, "x") == 0,
    "edgews-lua binary not found or not executable at " .. bin
      .. " (build it, or set EDGEWS_BIN)")
  local argv = {}
  for _, a in ipairs(o.wrap or {}) do argv[#argv + 1] = a end -- e.g. nsenter ... --
  for _, a in ipairs { bin, "--listen", (o.host or "127.0.0.1") .. ":" .. (o.port or 0) } do argv[#argv + 1] = a end
  if o.workers then
    argv[#argv + 1] = "--workers"
    argv[#argv + 1] = tostring(o.workers)
  end
  argv[#argv + 1] = "--log-level"
  argv[#argv + 1] = o.log_level or "info"
  if o.tls then
    argv[#argv + 1] = "--tls-cert"
    argv[#argv + 1] = o.tls.chain or o.tls.cert
    argv[#argv + 1] = "--tls-key"
    argv[#argv + 1] = o.tls.key
  end
  if o.plain then
    argv[#argv + 1] = "--plain-listen"
    argv[#argv + 1] = (o.host or "127.0.0.1") .. ":0"
  end
  for _, a in ipairs(o.args or {}) do argv[#argv + 1] = a end
  argv[#argv + 1] = assert(o.app, "start_server: app is required")
  local dir = M.tmpdir()
  local p = M.spawn(argv, { kind = "server", dir = dir, stdout = dir .. "/stdout.log",
                            stderr = dir .. "/stderr.log", env = o.env })
  setmetatable(p, Server)
  local timeout = o.timeout or M.START_TIMEOUT
  local deadline = M.now() + timeout
  while true do
    local log = p:log()
    local port, rest = log:match("listening on [%w%.%-%[%]:]-:(%d+)([^\n]*)")
    local plain_port = log:match("plain listener on [%w%.%-%[%]:]-:(%d+)")
    local want_plain = o.plain or o.expect_plain
    if port and (plain_port or not want_plain) then
      p.port = tonumber(port)
      p.host = o.host or "127.0.0.1"
      p.tls = rest:find("(TLS)", 1, true) ~= nil
      p.plain_port = tonumber(plain_port)
      if (o.tls or o.expect_tls) and not p.tls then
        p:kill(1)
        error("server is not listening with TLS:\n" .. log, 2)
      end
      return p
    end
    if not p:alive() then
      p:kill(0)
      error(("server exited (%s %s) before listening:\n%s"):format(
        tostring(p.how), tostring(p.code), log), 2)
    end
    if M.now() > deadline then
      p:kill(1)
      error(("server did not print 'listening on' within %ss:\n%s"):format(timeout, log), 2)
    end
    M.sleep(0.02)
  end
end

function Server:log()
  return M.read_file(self.stderr_path) or ""
end

-- Waits until the log matches the Lua pattern; returns the first capture (or the
-- whole match) or nil after the timeout.
function Server:wait_log(pattern, timeout, init)
  return M.wait_until(function()
    local log = self:log()
    local s, e, cap = log:find(pattern, init or 1)
    if s then return cap or log:sub(s, e) end
  end, timeout or 5)
end

function Server:url(path)
  return ("%s://%s:%d%s"):format(self.tls and "wss" or "ws", self.host, self.port, path or "/")
end

-- The plain ws:// listener of a TLS server (started with plain = true).
function Server:plain_url(path)
  assert(self.plain_port, "server has no plain listener")
  return ("ws://%s:%d%s"):format(self.host, self.plain_port, path or "/")
end

-- http(s)://host:port/path of the main listener.
function Server:http_url(path)
  return ("%s://%s:%d%s"):format(self.tls and "https" or "http", self.host, self.port,
    path or "/")
end

function Server:stop(timeout)
  self:signal("TERM")
  if not self:wait(timeout or 5) then self:kill(0) end
  return self.how, self.code
end

-- ------------------------------------------------------------------------ clients

M.CLIENT_TIMEOUT = 30

-- Runs a client to completion. Returns res (decoded last JSON line, or {} with
-- .error), rc (exit code, or nil when it timed out), stdout, stderr.
function M.run(argv, timeout)
  local p = M.spawn(argv)
  local done, out = p:finish(timeout or M.CLIENT_TIMEOUT)
  local err = p:stderr()
  if not done then
    p:kill(0)
    return { error = "client timed out", stdout = out, stderr = err }, nil, out, err
  end
  local res
  for line in out:gmatch("[^\n]+") do
    if line:sub(1, 1) == "{" then
      local ok, doc = pcall(cjson.decode, line)
      if ok then res = doc end
    end
  end
  res = res or { error = "no JSON line", stdout = out, stderr = err }
  local rc = p.how == "exited" and p.code or nil
  return res, rc, out, err
end

function M.py_argv(cmd, ...)
  return { M.PYTHON, M.CLIENTS .. "/py_client.py", cmd, ... }
end

function M.node_argv(cmd, ...)
  return { M.NODE, M.CLIENTS .. "/node_client.js", cmd, ... }
end

function M.raw_argv(...)
  return { M.PYTHON, M.CLIENTS .. "/raw_client.py", ... }
end

function M.py(cmd, ...) return M.run(M.py_argv(cmd, ...)) end
function M.node(cmd, ...) return M.run(M.node_argv(cmd, ...)) end

-- raw(url, case, extra args...) -> res, rc
function M.raw(url, case, ...)
  return M.run(M.raw_argv("--url", url, "--case", case, ...))
end

-- The raw client's case table ({case, group, expected, description} each), one
-- group: "frames", "http" or "manual".
function M.raw_cases(group)
  local f = assert(io.popen(("%s %s/raw_client.py --list"):format(
    shell_quote(M.PYTHON), shell_quote(M.CLIENTS))))
  local cases = {}
  for line in f:lines() do
    local c = cjson.decode(line)
    if group == nil or c.group == group then cases[#cases + 1] = c end
  end
  f:close()
  assert(#cases > 0, "no cases listed by raw_client.py --list")
  return cases
end

-- Whether Node can load `ws` (repository node_modules or NODE_PATH).
function M.node_ws_available()
  if M._node_ws == nil then
    local cmd = ("cd %s && %s -e \"require('ws')\" >/dev/null 2>&1"):format(
      shell_quote(M.CLIENTS), shell_quote(M.NODE))
    local ok = os.execute(cmd)
    M._node_ws = (ok == 0 or ok == true)
  end
  return M._node_ws
end

-- A scripted client (tests/clients/app_client.py): one process, many named
-- connections, one JSON command per call (see the client's docstring).
--   local c = helper.app_client()
--   local r = c:call { op = "open", id = "a", url = srv:url "/x", headers = {...} }
--   c:call { op = "send", id = "a", data = "{}" } ; c:call { op = "recv", id = "a" }
-- call() raises when the client answers ok = false or does not answer in time.
local AppClient = setmetatable({}, { __index = Proc })
AppClient.__index = AppClient

function M.app_client()
  local p = M.spawn({ M.PYTHON, M.CLIENTS .. "/app_client.py" }, { stdin = "pipe" })
  return setmetatable(p, AppClient)
end

function AppClient:call(t, level)
  self:write(cjson.encode(t) .. "\n")
  local res, err = self:read_json((tonumber(t.timeout) or 5) + 10)
  if not res then
    error(("app_client %s: no answer (%s); stderr: %s"):format(tostring(t.op), tostring(err),
      self:stderr():sub(1, 2000)), (level or 1) + 1)
  end
  if res.ok ~= true then
    error(("app_client %s failed: %s"):format(tostring(t.op), tostring(res.error)), (level or 1) + 1)
  end
  return res
end

-- Opens a fresh connection named prefix .. n (n counting this client's opens through
-- it) to url, fails the test unless the upgrade answered 101, and returns the name.
function AppClient:open_next(url, prefix)
  self.opened = (self.opened or 0) + 1
  local id = (prefix or "c") .. self.opened
  local r = self:call({ op = "open", id = id, url = url }, 2)
  if r.status ~= 101 then M.fail("open " .. id .. ": " .. cjson.encode(r)) end
  return id
end

-- Fails the running test (a busted "failure", not an "error") with msg.
local function fail(msg)
  local ok, luassert = pcall(require, "luassert")
  if ok then luassert(false, msg, 2) end
  error(msg, 3)
end
M.fail = fail

-- Asserts a client run succeeded (exit 0 and "ok": true), with the whole result in
-- the failure message.
function M.assert_ok(res, rc, out, err)
  if not (rc == 0 and type(res) == "table" and res.ok == true) then
    fail("client failed: " .. M.describe(res, rc, out, err))
  end
  return res
end

-- Asserts Node can load `ws`, with the fix in the message.
function M.require_node_ws()
  if not M.node_ws_available() then
    fail("node cannot load 'ws': run `npm ci` in the repository root (or set NODE_PATH)")
  end
end

-- A compact description of a client result for assertion messages.
function M.describe(res, rc, out, err)
  local ok, js = pcall(cjson.encode, res)
  return ("rc=%s result=%s%s"):format(tostring(rc), ok and js or tostring(res),
    (err and err ~= "") and ("\nstderr: " .. err:sub(1, 2000)) or "")
end

return M
