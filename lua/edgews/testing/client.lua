-- edgews.testing.client: a small blocking WebSocket (RFC 6455) and HTTP/1.1 client
-- for specs, on luaposix sockets. Used through edgews.testing (connect, http); see
-- the README's "Testing your app".
--
-- Design. One TCP socket per client, in blocking mode: connect and send are bounded
-- by SO_SNDTIMEO (Linux applies it to connect too), reads wait in poll() with the
-- caller's timeout, so no call blocks longer than it was told. Received bytes are
-- kept as a list of chunks and joined once per frame, so a large message costs one
-- copy, not one per read. Frames are parsed whole: a timeout in the middle of a frame
-- or of a fragmented message loses nothing, the next receive goes on from there.
-- Pings are answered with pongs carrying the same payload while receiving; a close
-- frame from the server is answered (its code echoed) and ends the connection.
--
-- Errors. I/O outcomes (refused, timeout, closed, an HTTP answer instead of 101, a
-- frame the server should not send) return nil, err; misuse (a bad URL, wss://,
-- wrong argument types) raises. After an I/O error other than "timeout" the
-- connection is closed and every later call returns nil, "closed".
--
-- Not supported: TLS (wss:// and https://: no TLS library in the dependencies; the
-- server's TLS is its own concern, test the app over ws://), permessage-deflate (not
-- offered, so the server sends uncompressed frames).

local socket = require "posix.sys.socket"
local unistd = require "posix.unistd"
local poll = require "posix.poll"
local ptime = require "posix.time"
local psignal = require "posix.signal"
local errno = require "posix.errno"
local fcntl = require "posix.fcntl"
local bit = require "bit"
local ffi = require "ffi"
local cjson = require "cjson"
local crypto = require "edgews.crypto"

local type, error, tostring, tonumber, pairs, ipairs, setmetatable, pcall =
  type, error, tostring, tonumber, pairs, ipairs, setmetatable, pcall
local string_char, string_byte, string_format = string.char, string.byte, string.format
local table_concat, table_sort = table.concat, table.sort
local math_floor, math_max, math_min = math.floor, math.max, math.min
local band, bor, bxor, rshift = bit.band, bit.bor, bit.bxor, bit.rshift

local _M = {}

local GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
local READ_CHUNK = 65536
_M.MAX_MESSAGE_SIZE = 64 * 1024 * 1024 -- default limit of one received message

local OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10

local function now()
  local t = ptime.clock_gettime(ptime.CLOCK_MONOTONIC)
  return t.tv_sec + t.tv_nsec / 1e9
end
_M.now = now

-- A send on a connection the peer closed raises SIGPIPE, which would end the test
-- runner: ignore it (once, when the first connection is made) and get EPIPE instead.
local sigpipe_ignored = false
local function ignore_sigpipe()
  if not sigpipe_ignored then
    psignal.signal(psignal.SIGPIPE, psignal.SIG_IGN)
    sigpipe_ignored = true
  end
end

-- ------------------------------------------------------------------------- URLs

local function urlencode(s)
  return (tostring(s):gsub("[^%w%-%._~]", function(c) return string_format("%%%02X", string_byte(c)) end))
end
_M.urlencode = urlencode

-- url -> { scheme, host, port, target (path and query), host_header }. Raises on a
-- malformed URL (misuse).
local function parse_url(url, level)
  if type(url) ~= "string" then error("url must be a string, got " .. type(url), level + 1) end
  local scheme, rest = url:match("^(%a[%w+.-]*)://(.*)$")
  scheme = scheme and scheme:lower()
  local default_port = ({ ws = 80, http = 80, wss = 443, https = 443 })[scheme or ""]
  if not default_port then
    error("unsupported URL " .. string_format("%q", url) .. " (want ws://, or http:// for requests)", level + 1)
  end
  if scheme == "wss" or scheme == "https" then
    error(scheme .. ":// is not supported by edgews.testing (no TLS library): "
      .. "test the app over ws:// (TLS is the server's, not the app's)", level + 1)
  end
  local authority, target = rest:match("^([^/?#]*)([^#]*)")
  if target == "" then target = "/" elseif target:sub(1, 1) == "?" then target = "/" .. target end
  local host, port
  if authority:sub(1, 1) == "[" then
    host, port = authority:match("^%[([%x:.]+)%]:?(%d*)$")
  else
    host, port = authority:match("^([^:]+):?(%d*)$")
  end
  if not host or host == "" then error("malformed URL " .. string_format("%q", url), level + 1) end
  port = port ~= "" and tonumber(port) or default_port
  local host_header = authority
  return { scheme = scheme, host = host, port = port, target = target, host_header = host_header }
end
_M.parse_url = parse_url

-- Appends a query table ({ name = value }, values strings, numbers or booleans, or
-- lists of them for repeated names) to a target, names sorted.
local function add_query(target, query, level)
  if query == nil then return target end
  if type(query) ~= "table" then error("query must be a table", level + 1) end
  local names = {}
  for k in pairs(query) do names[#names + 1] = tostring(k) end
  table_sort(names)
  local parts = {}
  for _, k in ipairs(names) do
    local v = query[k]
    local list = type(v) == "table" and v or { v }
    for _, item in ipairs(list) do
      parts[#parts + 1] = urlencode(k) .. "=" .. urlencode(item)
    end
  end
  if #parts == 0 then return target end
  return target .. (target:find("?", 1, true) and "&" or "?") .. table_concat(parts, "&")
end

-- ---------------------------------------------------------------------- the socket

local Conn = {}
Conn.__index = Conn

local function errname(err, code)
  if code == errno.ECONNREFUSED then return "connection refused" end
  if code == errno.EAGAIN or code == errno.EINPROGRESS or code == errno.ETIMEDOUT then return "timeout" end
  if code == errno.EPIPE or code == errno.ECONNRESET then return "closed" end
  return tostring(err)
end

-- TCP connection to host:port within `timeout` seconds -> conn | nil, err
local function tcp_connect(host, port, timeout)
  ignore_sigpipe()
  local addrs, aerr = socket.getaddrinfo(host, tostring(port),
    { family = socket.AF_UNSPEC, socktype = socket.SOCK_STREAM })
  if not addrs then return nil, "cannot resolve " .. host .. ": " .. tostring(aerr) end
  local last = "no address"
  for _, a in ipairs(addrs) do
    local fd, serr = socket.socket(a.family, socket.SOCK_STREAM, 0)
    if not fd then return nil, "socket: " .. tostring(serr) end
    fcntl.fcntl(fd, fcntl.F_SETFD, fcntl.FD_CLOEXEC) -- not inherited by servers started later
    local secs = math_max(timeout, 0.001)
    local s = math_floor(secs)
    socket.setsockopt(fd, socket.SOL_SOCKET, socket.SO_SNDTIMEO, s, math_floor((secs - s) * 1e6))
    socket.setsockopt(fd, socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    local ok, cerr, code = socket.connect(fd, a)
    if ok then
      return setmetatable({ fd = fd, chunks = {}, avail = 0, eof = false }, Conn)
    end
    unistd.close(fd)
    last = errname(cerr, code)
  end
  return nil, last
end

-- Sends all of s (bounded by the send timeout) -> true | nil, err
function Conn:write(s)
  if not self.fd then return nil, "closed" end
  local sent = 0
  while sent < #s do
    local n, err, code = socket.send(self.fd, sent == 0 and s or s:sub(sent + 1))
    if not n then
      if code == errno.EINTR then n = 0 else return nil, errname(err, code) end
    end
    sent = sent + n
  end
  return true
end

-- Reads what arrives within `wait` seconds (at least once) -> true | nil, err
-- ("timeout", or "closed" at EOF).
function Conn:fill(wait, want)
  if not self.fd or self.eof then return nil, "closed" end
  local ready = poll.rpoll(self.fd, math_max(0, math_floor(wait * 1000 + 0.5)))
  if not ready or ready == 0 then return nil, "timeout" end
  local chunk, err, code = socket.recv(self.fd, math_max(READ_CHUNK, math_min(want or 0, 4 * 1048576)))
  if chunk == nil then
    if code == errno.EINTR or code == errno.EAGAIN then return true end
    self.eof = true
    return nil, errname(err, code)
  end
  if chunk == "" then
    self.eof = true
    return nil, "closed"
  end
  self.chunks[#self.chunks + 1] = chunk
  self.avail = self.avail + #chunk
  return true
end

-- Makes n bytes available by `deadline` -> the buffer (a string of >= n bytes) | nil, err
function Conn:need(n, deadline)
  while self.avail < n do
    local ok, err = self:fill(math_max(0, deadline - now()), n - self.avail)
    if not ok then return nil, err end
  end
  if #self.chunks > 1 then self.chunks = { table_concat(self.chunks) } end
  return self.chunks[1] or ""
end

-- Removes and returns the first n bytes (after need(n)).
function Conn:take(n)
  local buf = self.chunks[1] or ""
  local out = buf:sub(1, n)
  local rest = buf:sub(n + 1)
  self.chunks = rest ~= "" and { rest } or {}
  self.avail = #rest
  return out
end

function Conn:shut()
  if self.fd then
    unistd.close(self.fd)
    self.fd = nil
  end
end

-- Reads an HTTP response head by `deadline` -> { status, reason, headers (lower-case
-- names; repeated ones joined with ", ") } | nil, err
local function read_head(conn, deadline)
  local limit = 64 * 1024
  while true do
    local buf = conn.chunks[1] and table_concat(conn.chunks) or ""
    conn.chunks = buf ~= "" and { buf } or {}
    local e = buf:find("\r\n\r\n", 1, true)
    if e then
      local head = conn:take(e + 3)
      local status_line, rest = head:match("^([^\r\n]*)\r\n(.*)$")
      local status, reason = (status_line or ""):match("^HTTP/1%.%d (%d%d%d) ?(.*)$")
      if not status then return nil, "malformed response: " .. string_format("%q", status_line or head) end
      local headers = {}
      for name, value in rest:gmatch("([^:\r\n]+):[ \t]*([^\r\n]*)\r\n") do
        name = name:lower()
        headers[name] = headers[name] and (headers[name] .. ", " .. value) or value
      end
      return { status = tonumber(status), reason = reason, headers = headers }
    end
    if #buf > limit then return nil, "response head too large" end
    local ok, err = conn:fill(math_max(0, deadline - now()))
    if not ok then
      return nil, err == "closed" and "connection closed before a response" or err
    end
  end
end

-- Reads a response body (Content-Length, or up to EOF) -> body | nil, err
local function read_body(conn, res, deadline)
  local len = tonumber(res.headers["content-length"] or "")
  if len then
    local ok, err = conn:need(len, deadline)
    if not ok then return nil, err end
    return conn:take(len)
  end
  while true do
    local ok, err = conn:fill(math_max(0, deadline - now()))
    if not ok then
      if err == "closed" then break end
      return nil, err
    end
  end
  return conn:take(conn.avail)
end

local function header_lines(headers, level)
  local out = {}
  if headers == nil then return out end
  if type(headers) ~= "table" then error("headers must be a table { name = value }", level + 1) end
  local names = {}
  for k in pairs(headers) do names[#names + 1] = k end
  table_sort(names, function(a, b) return tostring(a) < tostring(b) end)
  for _, k in ipairs(names) do
    local v = headers[k]
    if type(k) ~= "string" or k:find("[%c: ]") then error("bad header name " .. tostring(k), level + 1) end
    local list = type(v) == "table" and v or { v }
    for _, item in ipairs(list) do
      item = tostring(item)
      if item:find("[\r\n]") then error("header " .. k .. " has a line break", level + 1) end
      out[#out + 1] = k .. ": " .. item
    end
  end
  return out
end

local function has_header(lines, name)
  name = name:lower()
  for _, l in ipairs(lines) do
    if l:sub(1, #name + 1):lower() == name .. ":" then return true end
  end
  return false
end

-- ------------------------------------------------------------------------ HTTP

--- http(url [, { method = "GET", headers = {}, body = nil, query = {}, timeout = 5 }])
--  -> status, body, headers | nil, err
function _M.http(url, opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("http: options must be a table", 2) end
  local u = parse_url(url, 2)
  if u.scheme ~= "http" then error("http: want an http:// URL, got " .. url, 2) end
  local timeout = opts.timeout or 5
  if type(timeout) ~= "number" or timeout < 0 then error("http: timeout must be a number of seconds", 2) end
  local method = opts.method or "GET"
  local body = opts.body
  if body ~= nil and type(body) ~= "string" then error("http: body must be a string", 2) end
  local lines = header_lines(opts.headers, 2)
  local req = { string_format("%s %s HTTP/1.1", method, add_query(u.target, opts.query, 2)) }
  if not has_header(lines, "host") then req[#req + 1] = "Host: " .. u.host_header end
  req[#req + 1] = "Connection: close"
  if body then req[#req + 1] = "Content-Length: " .. #body end
  for _, l in ipairs(lines) do req[#req + 1] = l end
  local deadline = now() + timeout
  local conn, err = tcp_connect(u.host, u.port, timeout)
  if not conn then return nil, err end
  local ok
  ok, err = conn:write(table_concat(req, "\r\n") .. "\r\n\r\n" .. (body or ""))
  local res
  if ok then res, err = read_head(conn, deadline) end
  local rbody
  if res then rbody, err = read_body(conn, res, deadline) end
  conn:shut()
  if not rbody then return nil, err end
  return res.status, rbody, res.headers
end

-- ------------------------------------------------------------------- WebSocket

local WS = {}
WS.__index = WS
_M.WebSocket = WS

-- A masked client frame.
local mask_buf, mask_size = nil, 0
local function frame(opcode, payload, fin)
  local n = #payload
  local b1 = bor(fin == false and 0 or 0x80, opcode)
  local head
  if n < 126 then
    head = string_char(b1, bor(0x80, n))
  elseif n < 65536 then
    head = string_char(b1, 0x80 + 126, rshift(n, 8), band(n, 255))
  else
    local hi = math_floor(n / 4294967296)
    local lo = n % 4294967296
    head = string_char(b1, 0x80 + 127,
      band(rshift(hi, 24), 255), band(rshift(hi, 16), 255), band(rshift(hi, 8), 255), band(hi, 255),
      band(rshift(lo, 24), 255), band(rshift(lo, 16), 255), band(rshift(lo, 8), 255), band(lo, 255))
  end
  local key = crypto.random_bytes(4)
  if n == 0 then return head .. key end
  if n > mask_size then
    mask_size = math_max(n, 4096)
    mask_buf = ffi.new("uint8_t[?]", mask_size)
  end
  ffi.copy(mask_buf, payload, n)
  local k0, k1, k2, k3 = string_byte(key, 1, 4)
  local k = { [0] = k0, k1, k2, k3 }
  for i = 0, n - 1 do
    mask_buf[i] = bxor(mask_buf[i], k[band(i, 3)])
  end
  return head .. key .. ffi.string(mask_buf, n)
end

--- connect(url, { headers = {}, query = {}, protocols = {}, origin = nil, timeout = 5,
---   max_message_size = 64 MiB }) -> ws | nil, err, response
-- err for an HTTP answer other than 101 is "HTTP <status> <body>", and response is
-- { status, headers, body }.
function _M.connect(url, opts, level)
  level = (level or 1) + 1
  opts = opts or {}
  if type(opts) ~= "table" then error("connect: options must be a table", level) end
  local u = parse_url(url, level)
  if u.scheme ~= "ws" then error("connect: want a ws:// URL, got " .. url, level) end
  local timeout = opts.timeout or 5
  if type(timeout) ~= "number" or timeout < 0 then error("connect: timeout must be a number of seconds", level) end
  local lines = header_lines(opts.headers, level)
  local protocols = opts.protocols
  if protocols ~= nil then
    if type(protocols) == "string" then protocols = { protocols } end
    if type(protocols) ~= "table" then error("connect: protocols must be a list of names", level) end
    for i, p in ipairs(protocols) do
      if type(p) ~= "string" or p == "" or p:find("[%s,]") then
        error("connect: protocols[" .. i .. "] is not a valid name", level)
      end
    end
  end
  local max_size = opts.max_message_size or _M.MAX_MESSAGE_SIZE
  if type(max_size) ~= "number" or max_size < 0 then error("connect: max_message_size must be a number", level) end

  local key = crypto.base64_encode(crypto.random_bytes(16))
  local req = { string_format("GET %s HTTP/1.1", add_query(u.target, opts.query, level)) }
  if not has_header(lines, "host") then req[#req + 1] = "Host: " .. u.host_header end
  req[#req + 1] = "Upgrade: websocket"
  req[#req + 1] = "Connection: Upgrade"
  req[#req + 1] = "Sec-WebSocket-Key: " .. key
  req[#req + 1] = "Sec-WebSocket-Version: 13"
  if protocols and #protocols > 0 then
    req[#req + 1] = "Sec-WebSocket-Protocol: " .. table_concat(protocols, ", ")
  end
  if opts.origin ~= nil then req[#req + 1] = "Origin: " .. tostring(opts.origin) end
  for _, l in ipairs(lines) do req[#req + 1] = l end

  local deadline = now() + timeout
  local conn, err = tcp_connect(u.host, u.port, timeout)
  if not conn then return nil, err end
  local ok
  ok, err = conn:write(table_concat(req, "\r\n") .. "\r\n\r\n")
  local res
  if ok then res, err = read_head(conn, deadline) end
  if not res then
    conn:shut()
    return nil, err
  end
  if res.status ~= 101 then
    local body = read_body(conn, res, deadline) or ""
    conn:shut()
    res.body = body
    return nil, string_format("HTTP %d %s", res.status, body), res
  end
  local h = res.headers
  local expect = crypto.base64_encode(crypto.sha1(key .. GUID))
  local bad
  if (h.upgrade or ""):lower() ~= "websocket" then
    bad = "no Upgrade: websocket"
  elseif not (h.connection or ""):lower():find("upgrade", 1, true) then
    bad = "no Connection: Upgrade"
  elseif h["sec-websocket-accept"] ~= expect then
    bad = "wrong Sec-WebSocket-Accept"
  elseif h["sec-websocket-protocol"] then
    local chosen, offered = h["sec-websocket-protocol"], false
    for _, p in ipairs(protocols or {}) do if p == chosen then offered = true end end
    if not offered then bad = "the server selected a subprotocol that was not offered: " .. chosen end
  elseif h["sec-websocket-extensions"] then
    bad = "the server selected an extension that was not offered"
  end
  if bad then
    conn:shut()
    return nil, "bad handshake: " .. bad, res
  end
  return setmetatable({
    conn = conn, url = url, status = 101, headers = h, protocol = h["sec-websocket-protocol"],
    max_message_size = max_size, fragments = nil, fragments_size = 0, fragments_opcode = nil,
    close_sent = false, close_code = nil, close_reason = nil, pings = 0, pongs = 0,
  }, WS)
end

-- Reads one frame by `deadline` -> fin, opcode, payload | nil, err
function WS:_frame(deadline)
  local conn = self.conn
  local buf, err = conn:need(2, deadline)
  if not buf then return nil, err end
  local b1, b2 = string_byte(buf, 1, 2)
  if band(b2, 0x80) ~= 0 then return nil, "protocol error: masked frame from the server" end
  if band(b1, 0x70) ~= 0 then return nil, "protocol error: reserved bits set (no extension was negotiated)" end
  local len, hlen = band(b2, 0x7f), 2
  if len == 126 then
    buf, err = conn:need(4, deadline)
    if not buf then return nil, err end
    local x, y = string_byte(buf, 3, 4)
    len, hlen = x * 256 + y, 4
  elseif len == 127 then
    buf, err = conn:need(10, deadline)
    if not buf then return nil, err end
    len = 0
    for i = 3, 10 do len = len * 256 + string_byte(buf, i) end
    hlen = 10
  end
  local opcode = band(b1, 0x0f)
  if opcode >= 8 and (len > 125 or band(b1, 0x80) == 0) then
    return nil, "protocol error: invalid control frame"
  end
  if len > self.max_message_size then
    return nil, string_format("message too large (%d bytes, max_message_size %d)", len, self.max_message_size)
  end
  buf, err = conn:need(hlen + len, deadline)
  if not buf then return nil, err end
  conn:take(hlen)
  return band(b1, 0x80) ~= 0, opcode, conn:take(len)
end

-- Ends the connection after an error other than a timeout.
function WS:_fail(err)
  self.conn:shut()
  self.error = self.error or err
  return nil, err
end

function WS:_send_frame(opcode, payload, fin)
  if not self.conn.fd then return nil, "closed" end
  if self.close_sent then return nil, "closed" end
  local ok, err = self.conn:write(frame(opcode, payload, fin))
  if not ok then
    if err == "timeout" then return nil, err end
    return self:_fail(err)
  end
  return true
end

local function close_payload(code, reason)
  if code == nil then return "" end
  return string_char(rshift(code, 8), band(code, 255)) .. (reason or "")
end

-- Handles a close frame from the server: records it, answers it, ends the TCP side.
function WS:_on_close(payload)
  local code, reason = 1005, ""
  if #payload >= 2 then
    local x, y = string_byte(payload, 1, 2)
    code, reason = x * 256 + y, payload:sub(3)
  end
  self.close_code, self.close_reason = code, reason
  if not self.close_sent and self.conn.fd then
    self.conn:write(frame(OP_CLOSE, code == 1005 and "" or close_payload(code)))
    self.close_sent = true
  end
  -- The server closes TCP first (RFC 6455 7.1.1); wait briefly for it, then close.
  local deadline = now() + 1
  while self.conn.fd and not self.conn.eof and now() < deadline do
    if not self.conn:fill(deadline - now()) then break end
  end
  self.conn:shut()
  return code, reason
end

--- ws:receive([timeout = 5]) -> data, "text"|"binary" | nil, err [, code, reason]
-- err: "timeout" (nothing lost, receive again), "closed" (with the close code and
-- reason when the server sent a close frame), or a protocol error.
function WS:receive(timeout)
  if timeout ~= nil and (type(timeout) ~= "number" or timeout < 0) then
    error("receive: timeout must be a number of seconds", 2)
  end
  if not self.conn.fd then
    return nil, "closed", self.close_code, self.close_reason
  end
  local deadline = now() + (timeout or 5)
  while true do
    local fin, opcode, payload = self:_frame(deadline)
    if fin == nil then
      if opcode == "timeout" then return nil, "timeout" end
      self:_fail(opcode)
      if opcode == "closed" then return nil, "closed", self.close_code, self.close_reason end
      return nil, opcode
    end
    if opcode == OP_PING then
      self.pings = self.pings + 1
      if not self.close_sent then self.conn:write(frame(OP_PONG, payload)) end
    elseif opcode == OP_PONG then
      self.pongs = self.pongs + 1
      self.last_pong = payload
    elseif opcode == OP_CLOSE then
      local code, reason = self:_on_close(payload)
      return nil, "closed", code, reason
    elseif opcode == OP_TEXT or opcode == OP_BINARY then
      if self.fragments then return self:_fail("protocol error: new message inside a fragmented one") end
      if fin then return payload, opcode == OP_TEXT and "text" or "binary" end
      self.fragments, self.fragments_size, self.fragments_opcode = { payload }, #payload, opcode
    elseif opcode == OP_CONT then
      if not self.fragments then return self:_fail("protocol error: continuation without a message") end
      self.fragments[#self.fragments + 1] = payload
      self.fragments_size = self.fragments_size + #payload
      if self.fragments_size > self.max_message_size then
        return self:_fail("message too large (max_message_size " .. self.max_message_size .. ")")
      end
      if fin then
        local data, kind = table_concat(self.fragments), self.fragments_opcode == OP_TEXT and "text" or "binary"
        self.fragments, self.fragments_size, self.fragments_opcode = nil, 0, nil
        return data, kind
      end
    else
      return self:_fail("protocol error: reserved opcode " .. opcode)
    end
  end
end

local json_decode = cjson.new().decode

--- ws:receive_json([timeout]) -> value | nil, err (a binary or non-JSON message is
-- an error naming what came)
function WS:receive_json(timeout)
  local data, kind, code, reason = self:receive(timeout)
  if not data then return nil, kind, code, reason end
  if kind ~= "text" then return nil, "expected JSON, got a binary message of " .. #data .. " bytes" end
  local ok, v = pcall(json_decode, data)
  if not ok then return nil, "expected JSON, got " .. string_format("%q", data:sub(1, 200)) end
  return v
end

--- ws:wait_json(match [, timeout]) -> value, skipped | nil, err, skipped
-- Receives JSON messages until one matches (match: a "type" string or a function
-- returning true), within one timeout in all; the others are returned in `skipped`.
function WS:wait_json(match, timeout)
  local pred = match
  if type(match) == "string" then
    pred = function(v) return type(v) == "table" and v.type == match end
  elseif type(match) ~= "function" then
    error("wait_json: match must be a type name or a function", 2)
  end
  if timeout ~= nil and (type(timeout) ~= "number" or timeout < 0) then
    error("wait_json: timeout must be a number of seconds", 2)
  end
  local deadline = now() + (timeout or 5)
  local skipped = {}
  while true do
    local v, err, code, reason = self:receive_json(math_max(0, deadline - now()))
    if v == nil then
      if err == "closed" then
        err = string_format("closed (%s %s)", tostring(code), tostring(reason))
      end
      return nil, err, skipped
    end
    if pred(v) then return v, skipped end
    skipped[#skipped + 1] = v
  end
end

--- ws:send(text) / ws:send_binary(data) / ws:send_json(value) -> true | nil, err
function WS:send(data)
  if type(data) ~= "string" then error("send: data must be a string, got " .. type(data), 2) end
  return self:_send_frame(OP_TEXT, data)
end

function WS:send_binary(data)
  if type(data) ~= "string" then error("send_binary: data must be a string, got " .. type(data), 2) end
  return self:_send_frame(OP_BINARY, data)
end

local json_encode = cjson.new().encode

function WS:send_json(value)
  local ok, text = pcall(json_encode, value)
  if not ok then error("send_json: " .. tostring(text), 2) end
  return self:_send_frame(OP_TEXT, text)
end

--- ws:ping([payload]) -> true | nil, err (the pong is counted in ws.pongs when a
-- later receive reads it)
function WS:ping(payload)
  payload = payload or ""
  if type(payload) ~= "string" or #payload > 125 then error("ping: payload must be a string of at most 125 bytes", 2) end
  return self:_send_frame(OP_PING, payload)
end

--- ws:expect_close([code [, timeout]]) -> code, reason | nil, err
-- Waits for the server to close; messages that come first are skipped (and named
-- in err when the close is not the expected one).
function WS:expect_close(code, timeout)
  if code ~= nil and type(code) ~= "number" then error("expect_close: code must be a number", 2) end
  local deadline = now() + (timeout or 5)
  local skipped = 0
  local last
  while true do
    local data, err, c, reason = self:receive(math_max(0, deadline - now()))
    if data then
      skipped = skipped + 1
      last = data
    elseif err == "closed" then
      if c == nil then return nil, "connection ended without a close frame (1006)" end
      if code ~= nil and c ~= code then
        return nil, string_format("expected close %d, got close %d %q", code, c, reason or "")
      end
      return c, reason
    else
      local what = string_format("expected close%s, got %s", code and (" " .. code) or "", err)
      if skipped > 0 then
        what = what .. string_format(" after %d message(s), the last: %q", skipped, last:sub(1, 200))
      end
      return nil, what
    end
  end
end

--- ws:close([code = 1000 [, reason [, timeout = 5]]]) -> code, reason | nil, err
-- The close handshake: sends a close frame, skips messages until the server's close
-- frame and returns its code and reason. A connection already closed by the server
-- returns the code it closed with.
function WS:close(code, reason, timeout)
  if code ~= nil and (type(code) ~= "number" or code < 1000 or code > 4999 or code % 1 ~= 0) then
    error("close: code must be an integer in [1000, 4999]", 2)
  end
  if reason ~= nil and (type(reason) ~= "string" or #reason > 123) then
    error("close: reason must be a string of at most 123 bytes", 2)
  end
  if not self.conn.fd then
    if self.close_code then return self.close_code, self.close_reason end
    return nil, "closed"
  end
  if not self.close_sent then
    local ok, err = self.conn:write(frame(OP_CLOSE, close_payload(code or 1000, reason)))
    self.close_sent = true
    if not ok then return self:_fail(err) end
  end
  local deadline = now() + (timeout or 5)
  while true do
    local fin, opcode, payload = self:_frame(deadline)
    if fin == nil then
      self.conn:shut()
      return nil, opcode == "closed" and "connection ended without a close frame (1006)" or opcode
    end
    if opcode == OP_CLOSE then return self:_on_close(payload) end
  end
end

--- ws:drop(): ends the TCP connection without a close handshake (the server sees
-- an abnormal closure, 1006).
function WS:drop()
  self.conn:shut()
end

--- ws:is_open() -> false once the connection has ended (or a close was sent)
function WS:is_open()
  return self.conn.fd ~= nil and not self.close_sent
end

return _M
