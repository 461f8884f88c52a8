-- What the cluster specs share: a free port, a real redis-server started on it,
-- redis-cli calls, and an instance's /health and /metrics.
local helper = require "spec.helper"
local cjson = require "cjson"

local M = {}

-- A port nothing listens on right now (the kernel's choice, then released).
function M.free_port()
  local f = io.popen(helper.PYTHON .. [[ -c "import socket; s = socket.socket(); ]]
    .. [[s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"]])
  local port = tonumber(f:read("*a"))
  f:close()
  return assert(port, "no free port")
end

-- redis-cli -p port ARGS...: its output (errors swallowed: callers poll).
function M.redis_cli(port, ...)
  local argv = { "redis-cli", "-p", tostring(port), ... }
  local q = {}
  for i, a in ipairs(argv) do q[i] = "'" .. a:gsub("'", "'\\''") .. "'" end
  local f = io.popen(table.concat(q, " ") .. " 2>/dev/null")
  local out = f:read("*a")
  f:close()
  return out
end

-- A redis-server on `port` with its data in `dir` (kept across restarts), answering
-- PING when this returns. opts.durable = false: no append-only file (default: on,
-- with appendfsync always).
function M.start_redis(port, dir, opts)
  local durable = not (opts and opts.durable == false)
  local p = helper.spawn({ "redis-server", "--port", tostring(port), "--bind", "127.0.0.1",
    "--dir", dir, "--appendonly", durable and "yes" or "no", "--appendfsync", "always",
    "--save", "", "--daemonize", "no" }, { kind = "redis", stdout = dir .. "/redis.log" })
  assert(helper.wait_until(function() return M.redis_cli(port, "PING"):match("PONG") end, 10),
    "redis-server did not start on port " .. port)
  return p
end

-- GET path of one instance (its admin port when it has one): the body.
function M.http_get(srv, path)
  local f = io.popen(("curl -s -m 5 http://127.0.0.1:%d%s"):format(srv.admin_port or srv.port, path))
  local body = f:read("*a")
  f:close()
  return body
end

-- The instance's /health document ({} when it does not answer).
function M.health(srv)
  local ok, doc = pcall(cjson.decode, M.http_get(srv, "/health"))
  return ok and doc or {}
end

return M
