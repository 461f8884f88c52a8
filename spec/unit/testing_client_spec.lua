-- Unit specs for lua/edgews/testing/client.lua (the WebSocket client of
-- edgews.testing) against a scripted peer: a forked child that accepts one
-- connection, answers the handshake and then writes exactly the frames a case
-- needs (fragments, pings between fragments, frames split across writes, close
-- frames, protocol violations) and checks what the client sends (masking, lengths).
-- The real server is exercised by spec/integration/testing_spec.lua.
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local client = require "edgews.testing.client"
local crypto = require "edgews.crypto"
local socket = require "posix.sys.socket"
local unistd = require "posix.unistd"
local wait = require "posix.sys.wait"
local ptime = require "posix.time"
local bit = require "bit"

local GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

local function sleep(s)
  ptime.nanosleep { tv_sec = math.floor(s), tv_nsec = math.floor((s % 1) * 1e9) }
end

-- An unmasked server frame.
local function frame(opcode, payload, fin)
  local n = #payload
  local b1 = (fin == false and 0 or 0x80) + opcode
  if n < 126 then return string.char(b1, n) .. payload end
  if n < 65536 then return string.char(b1, 126, math.floor(n / 256), n % 256) .. payload end
  local t = {}
  for i = 8, 1, -1 do t[i] = n % 256; n = math.floor(n / 256) end
  return string.char(b1, 127, unpack(t)) .. payload
end

-- The peer's side: read exactly n bytes.
local function read_n(fd, n)
  local buf = ""
  while #buf < n do
    local chunk = socket.recv(fd, n - #buf)
    if not chunk or chunk == "" then return nil end
    buf = buf .. chunk
  end
  return buf
end

-- The peer reads one client frame: fin, opcode, masked?, unmasked payload.
local function read_client_frame(fd)
  local h = read_n(fd, 2)
  if not h then return nil end
  local b1, b2 = h:byte(1, 2)
  local len = b2 % 128
  if len == 126 then
    local x = read_n(fd, 2); len = x:byte(1) * 256 + x:byte(2)
  elseif len == 127 then
    local x = read_n(fd, 8); len = 0
    for i = 1, 8 do len = len * 256 + x:byte(i) end
  end
  local masked = b2 >= 128
  local key = masked and read_n(fd, 4) or "\0\0\0\0"
  local data = read_n(fd, len) or ""
  local out = {}
  for i = 1, #data do
    out[i] = string.char(bit.bxor(data:byte(i), key:byte((i - 1) % 4 + 1)))
  end
  return b1 >= 128, b1 % 16, masked, table.concat(out)
end

-- The port of a bound socket. Debian 12's luaposix (33.4) getsockname sometimes
-- answers a zeroed address (family 0, no port; later luaposix initialises the
-- address length it passes): ask again.
local function bound_port(fd)
  for _ = 1, 100 do
    local sa = socket.getsockname(fd)
    if sa and sa.port then return sa.port end
  end
  error("getsockname gives no port")
end

-- Starts a peer running script(fd, send) after the handshake (accept = the value to
-- answer with, default the right one). Returns the ws:// URL and a function that
-- waits for the child and returns its exit status.
local function peer(script, opts)
  opts = opts or {}
  local lfd = assert(socket.socket(socket.AF_INET, socket.SOCK_STREAM, 0))
  assert(socket.setsockopt(lfd, socket.SOL_SOCKET, socket.SO_REUSEADDR, 1))
  assert(socket.bind(lfd, { family = socket.AF_INET, addr = "127.0.0.1", port = 0 }))
  assert(socket.listen(lfd, 4))
  local port = bound_port(lfd)
  io.stdout:flush()
  local pid = assert(unistd.fork())
  if pid == 0 then
    unistd.alarm(10) -- never outlive a spec that failed before connecting
    local ok = pcall(function()
      local fd = assert(socket.accept(lfd))
      local head = ""
      while not head:find("\r\n\r\n", 1, true) do head = head .. assert(socket.recv(fd, 4096)) end
      local key = head:match("[Ss]ec%-[Ww]eb[Ss]ocket%-[Kk]ey: ([^\r\n]+)")
      if opts.response then
        socket.send(fd, opts.response)
      else
        local accept = opts.accept or crypto.base64_encode(crypto.sha1(key .. GUID))
        socket.send(fd, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
          .. "Sec-WebSocket-Accept: " .. accept .. "\r\n\r\n")
      end
      script(fd, function(s) assert(socket.send(fd, s)) end, head)
      sleep(0.05)
      unistd.close(fd)
    end)
    unistd._exit(ok and 0 or 1)
  end
  unistd.close(lfd)
  return ("ws://127.0.0.1:%d/t"):format(port), function()
    local _, _, code = wait.wait(pid)
    return code
  end
end

describe("edgews.testing.client", function()
  it("reassembles fragments and answers a ping between them with its payload", function()
    local url, done = peer(function(fd, send)
      send(frame(1, "hel", false))
      send(frame(9, "are you there"))
      send(frame(0, "lo ", false))
      send(frame(0, "world", true))
      local fin, op, masked, payload = read_client_frame(fd)
      assert(fin and op == 10 and masked, "expected a masked pong")
      send(frame(1, "pong:" .. payload))
    end)
    local ws = assert(client.connect(url))
    assert.are.same({ "hello world", "text" }, { ws:receive() })
    assert.are.same({ "pong:are you there", "text" }, { ws:receive() })
    assert.are.equal(1, ws.pings)
    assert.are.equal(0, done())
  end)

  it("keeps a frame that arrives in pieces across a receive timeout", function()
    local url, done = peer(function(fd, send)
      local f = frame(2, ("\1\2\3"):rep(30000)) -- 90,000 bytes: a 64-bit length
      send(f:sub(1, 5))
      read_client_frame(fd) -- the client's "go on" after its timeout
      send(f:sub(6))
    end)
    local ws = assert(client.connect(url))
    assert.are.same({ nil, "timeout" }, { ws:receive(0.1) })
    assert(ws:send("go on"))
    local data, kind = ws:receive()
    assert.are.equal("binary", kind)
    assert.are.equal(("\1\2\3"):rep(30000), data)
    assert.are.equal(0, done())
  end)

  it("masks what it sends, with 7-, 16- and 64-bit lengths", function()
    local url, done = peer(function(fd, send)
      for _ = 1, 4 do
        local fin, op, masked, payload = read_client_frame(fd)
        assert(fin and masked, "unmasked or fragmented client frame")
        send(frame(1, op .. ":" .. #payload .. ":" .. (payload == ("x"):rep(#payload) and "x" or payload)))
      end
    end)
    local ws = assert(client.connect(url))
    assert(ws:send(""))
    assert(ws:send(("x"):rep(200)))
    assert(ws:send_binary(("x"):rep(70000)))
    assert(ws:send_json { a = 1 })
    assert.are.equal("1:0:x", (ws:receive()))
    assert.are.equal("1:200:x", (ws:receive()))
    assert.are.equal("2:70000:x", (ws:receive()))
    assert.are.equal('1:7:{"a":1}', (ws:receive()))
    assert.are.equal(0, done())
  end)

  it("echoes a close frame and reports its code (1005 without one)", function()
    local url, done = peer(function(fd, send)
      send(frame(8, ""))
      local _, op, _, payload = read_client_frame(fd)
      assert(op == 8 and payload == "", "expected an empty close frame back")
    end)
    local ws = assert(client.connect(url))
    assert.are.same({ nil, "closed", 1005, "" }, { ws:receive() })
    assert.are.same({ nil, "closed", 1005, "" }, { ws:receive() })
    assert.are.equal(0, done())
  end)

  it("refuses a masked frame from the server and ends the connection", function()
    local url, done = peer(function(_, send)
      send(string.char(0x81, 0x80 + 2, 1, 2, 3, 4, 5, 6))
    end)
    local ws = assert(client.connect(url))
    assert.are.same({ nil, "protocol error: masked frame from the server" }, { ws:receive() })
    assert.are.same({ nil, "closed" }, { ws:send("x") })
    done()
  end)

  it("refuses a wrong accept key and a subprotocol that was not offered", function()
    local url, done = peer(function() end, { accept = "wrong" })
    local ws, err = client.connect(url)
    assert.is_nil(ws)
    assert.are.equal("bad handshake: wrong Sec-WebSocket-Accept", err)
    done()
    url, done = peer(function() end, { response = "HTTP/1.1 101 OK\r\nUpgrade: websocket\r\n"
      .. "Connection: Upgrade\r\nSec-WebSocket-Accept: x\r\nSec-WebSocket-Protocol: evil\r\n\r\n" })
    ws, err = client.connect(url, { protocols = { "good" } })
    assert.is_nil(ws)
    assert.truthy(err:find("^bad handshake"), err)
    done()
  end)

  it("returns an HTTP answer other than 101 with its status and body", function()
    local url, done = peer(function() end, { response =
      "HTTP/1.1 429 Too Many Requests\r\nContent-Length: 17\r\nConnection: close\r\n\r\n{\"error\":\"busy\"}\n" })
    local ws, err, res = client.connect(url)
    assert.is_nil(ws)
    assert.are.equal('HTTP 429 {"error":"busy"}\n', err)
    assert.are.equal(429, res.status)
    assert.are.equal("17", res.headers["content-length"])
    done()
  end)

  it("sends headers, query, subprotocols and origin in the request", function()
    local url, done = peer(function(_, send, head)
      send(frame(1, head))
    end)
    local ws = assert(client.connect(url .. "?a=1", { headers = { ["X-Api-Key"] = "k 1" },
      query = { token = "t/+=", list = { "x", "y" } }, protocols = { "p1", "p2" }, origin = "https://o" }))
    local head = ws:receive()
    assert.truthy(head:find("^GET /t%?a=1&list=x&list=y&token=t%%2F%%2B%%3D HTTP/1.1\r\n"), head)
    assert.truthy(head:find("\r\nX-Api-Key: k 1\r\n", 1, true), head)
    assert.truthy(head:find("\r\nSec-WebSocket-Protocol: p1, p2\r\n", 1, true), head)
    assert.truthy(head:find("\r\nOrigin: https://o\r\n", 1, true), head)
    assert.truthy(head:find("\r\nSec-WebSocket-Version: 13\r\n", 1, true), head)
    done()
  end)

  it("returns nil, err for a refused connection and raises on misuse", function()
    local lfd = assert(socket.socket(socket.AF_INET, socket.SOCK_STREAM, 0))
    assert(socket.bind(lfd, { family = socket.AF_INET, addr = "127.0.0.1", port = 0 }))
    local port = bound_port(lfd)
    unistd.close(lfd) -- bound, never listened: nothing listens on port now
    assert.are.same({ nil, "connection refused" }, { client.connect(("ws://127.0.0.1:%d/"):format(port)) })
    assert.has_error(function() client.connect("wss://127.0.0.1/") end)
    assert.has_error(function() client.connect("http://127.0.0.1/") end)
    assert.has_error(function() client.connect("ws://127.0.0.1/", { protocols = { "a b" } }) end)
    assert.has_error(function() client.connect("ws://127.0.0.1/", { headers = { ["X"] = "a\r\nb" } }) end)
  end)
end)
