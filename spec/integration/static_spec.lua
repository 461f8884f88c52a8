-- Static files (edgews.static, README "Static files"): a real server with mounts over
-- a directory built here (text and binary files, a 5 MB file, hidden files, symlinks
-- in and out of the root), driven by curl (a real HTTP client: plain and https) and by
-- a raw-socket client (posix sockets) for the requests curl will not send as written
-- (raw NUL, ".." segments, methods, exact bytes of HEAD answers).
-- RFC sections covered:
--   RFC 9110 9.3.1, 9.3.2  GET and HEAD (HEAD: the same header fields, no content)
--   RFC 9110 8.8.3, 13.1.2 ETag and If-None-Match (weak comparison, lists, "*") -> 304
--   RFC 9110 15.4.2        301 with Location for a directory without its '/'
--   RFC 9110 15.5.6        405 with Allow
--   RFC 9110 15.5.15       414 for a path over the limit
--   RFC 3986 2.1, 5.2.4    percent-encoding; dot segments are refused, not resolved
local helper = require "spec.helper"
local socket = require "posix.sys.socket"
local unistd = require "posix.unistd"
local ppoll = require "posix.poll"

-- ------------------------------------------------------------------ the clients

local function parse_response(raw)
  local head_end = raw:find("\r\n\r\n", 1, true)
  if not head_end then return { raw = raw } end
  local head = raw:sub(1, head_end - 1)
  local res = { raw = raw, body = raw:sub(head_end + 4), headers = {}, head = head }
  res.status = tonumber(head:match("^HTTP/1%.1 (%d%d%d)"))
  for name, value in head:gmatch("\r\n([^:\r\n]+): *([^\r\n]*)") do
    res.headers[name:lower()] = value
  end
  return res
end

-- Sends `request` as is on a new connection and reads until the server closes it.
local function raw_http(port, request, timeout)
  local fd = assert(socket.socket(socket.AF_INET, socket.SOCK_STREAM, 0))
  assert(socket.connect(fd, { family = socket.AF_INET, addr = "127.0.0.1", port = port }))
  local sent = 0
  while sent < #request do
    sent = sent + assert(socket.send(fd, request:sub(sent + 1)))
  end
  local chunks, deadline = {}, helper.now() + (timeout or 10)
  while true do
    if ppoll.rpoll(fd, 100) == 1 then
      local d = socket.recv(fd, 65536)
      if not d or d == "" then break end
      chunks[#chunks + 1] = d
    elseif helper.now() > deadline then
      unistd.close(fd)
      error("raw_http: no end of answer within the timeout")
    end
  end
  unistd.close(fd)
  return parse_response(table.concat(chunks))
end

-- GET with a small receive buffer, reading at about `rate` bytes a second: the
-- server's socket stays full, so the body leaves over many loop turns. Returns the
-- body (what came after the head) and how long it took.
local function slow_get(port, path, rate)
  local fd = assert(socket.socket(socket.AF_INET, socket.SOCK_STREAM, 0))
  assert(socket.setsockopt(fd, socket.SOL_SOCKET, socket.SO_RCVBUF, 32768))
  assert(socket.connect(fd, { family = socket.AF_INET, addr = "127.0.0.1", port = port }))
  assert(socket.send(fd, ("GET %s HTTP/1.1\r\nHost: x\r\n\r\n"):format(path)))
  local chunks, got, t0 = {}, 0, helper.now()
  while true do
    if ppoll.rpoll(fd, 5000) ~= 1 then break end
    local d = socket.recv(fd, 16384)
    if not d or d == "" then break end
    chunks[#chunks + 1] = d
    got = got + #d
    local ahead = got / rate - (helper.now() - t0)
    if ahead > 0 then helper.sleep(ahead) end
  end
  unistd.close(fd)
  local res = parse_response(table.concat(chunks))
  return res, helper.now() - t0
end

local function get(port, path, extra, method)
  return raw_http(port, ("%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n"):format(
    method or "GET", path, extra or ""))
end

-- curl: { status, headers, body } (the body read from a file: any size, any byte).
local function curl(url, ...)
  local dir = helper.tmpdir()
  local argv = { "curl", "-sS", "--path-as-is", "--max-time", "30", "-o", dir .. "/body",
                 "-D", dir .. "/head", "-w", "%{http_code}", ... }
  argv[#argv + 1] = url
  local p = helper.spawn(argv)
  local done, out = p:finish(40)
  assert(done, "curl did not finish: " .. url)
  assert(p.code == 0, ("curl %s failed (%s): %s"):format(url, tostring(p.code), p:stderr()))
  local res = parse_response((helper.read_file(dir .. "/head") or ""):gsub("\r\n\r\n.*", "") .. "\r\n\r\n")
  res.status = tonumber(out)
  res.body = helper.read_file(dir .. "/body") or ""
  return res
end

local function sha256(s)
  local dir = helper.tmpdir()
  helper.write_file(dir .. "/x", s)
  local f = assert(io.popen("sha256sum " .. dir .. "/x"))
  local sum = f:read("*l"):match("^(%x+)")
  f:close()
  return sum
end

local function metric(port, name, labels)
  local body = get(port, "/metrics").body or ""
  local sum = 0
  for line in body:gmatch("[^\n]+") do
    local l, v = line:match("^" .. name .. "{([^}]*)} (%d+)$")
    if l and l:find(labels, 1, true) then sum = sum + tonumber(v) end
  end
  return sum
end

-- ------------------------------------------------------------------ the site

local SECRET = "TOP-SECRET-OUTSIDE-THE-ROOT"
local BIG = 5 * 1000 * 1000

-- root/            the script's directory
--   app.lua        an echo app at "/" and "/chat", mounts "/" -> public, "/assets" -> assets
--   secret.txt     outside every mount
--   public/        index.html, files of each content type, sub/ (index), noindex/,
--                  .hidden, big.bin (5 MB), links in and out of the root
--   assets/        no index; cache_control set
local function build_site(app_src)
  local root = helper.tmpdir()
  local function w(rel, content) helper.write_file(root .. "/" .. rel, content) end
  assert(os.execute(("mkdir -p %s/public/sub %s/public/noindex %s/assets %s/outside"):format(
    root, root, root, root)) == 0)
  w("secret.txt", SECRET)
  w("outside/secret.txt", SECRET)
  w("public/index.html", "<!doctype html><title>home</title>")
  w("public/app.css", "body { color: red }")
  w("public/app.js", "export const x = 1;")
  w("public/mod.mjs", "export default 2;")
  w("public/data.json", '{"a":1}')
  w("public/app.js.map", '{"version":3}')
  w("public/logo.svg", "<svg xmlns='http://www.w3.org/2000/svg'/>")
  w("public/a.png", "\137PNG\r\n\26\n\0\0\0")
  w("public/a.jpg", "\255\216\255\224")
  w("public/favicon.ico", "\0\0\1\0")
  w("public/notes.txt", "plain text")
  w("public/m.wasm", "\0asm\1\0\0\0")
  w("public/blob.xyz", "\0\1\2")
  w("public/empty.txt", "")
  w("public/sub/index.html", "<p>sub</p>")
  w("public/sub/page.html", "<p>page</p>")
  w("public/noindex/file.txt", "in noindex")
  w("public/.hidden", SECRET)
  w("public/health", "not the health check")
  w("assets/style.css", "a{}")
  -- 5 MB of bytes that are not all text (every byte value)
  local piece = {}
  for i = 0, 255 do piece[#piece + 1] = string.char(i) end
  local block = table.concat(piece):rep(4000) -- 1,024,000 bytes
  local big = (block:rep(5)):sub(1, BIG - 7) .. "THE-END"
  w("public/big.bin", big)
  assert(unistd.link(root .. "/secret.txt", root .. "/public/escape.txt", true))
  assert(unistd.link("../secret.txt", root .. "/public/escape_rel.txt", true))
  assert(unistd.link(root .. "/outside", root .. "/public/escdir", true))
  assert(unistd.link("notes.txt", root .. "/public/inside.txt", true))
  assert(unistd.link("sub", root .. "/public/sublink", true))
  w("app.lua", app_src)
  return root, big
end

local APP = [[
local edgews = require "edgews"
edgews.configure { close_timeout = 1 }
for _, path in ipairs { "/", "/chat" } do
  local app = edgews.app { path = path }
  app:on("message", function(s, data, binary) s:send(data, binary) end)
end
edgews.static("/", "public")
edgews.static("/assets", "assets", { cache_control = "public, max-age=60", index = false })
]]

describe("static files #integration", function()
  local srv, root, big, port

  setup(function()
    root, big = build_site(APP)
    srv = helper.start_server { app = root .. "/app.lua", workers = 2 }
    port = srv.port
  end)
  teardown(function() helper.cleanup() end)
  after_each(function() helper.cleanup_clients() end)

  it("serves index.html for / with type, length, ETag, Cache-Control", function()
    local res = curl(srv:http_url "/")
    assert.are.equal(200, res.status)
    assert.are.equal("<!doctype html><title>home</title>", res.body)
    assert.are.equal("text/html; charset=utf-8", res.headers["content-type"])
    assert.are.equal(tostring(#res.body), res.headers["content-length"])
    assert.truthy(res.headers.etag:match('^"[%x%-]+"$'), res.headers.etag)
    assert.are.equal("no-cache", res.headers["cache-control"])
    assert.are.equal("nosniff", res.headers["x-content-type-options"])
    assert.are.equal("close", res.headers.connection)
  end)

  it("answers each extension with its content type", function()
    local types = {
      ["/index.html"] = "text/html; charset=utf-8",
      ["/app.css"] = "text/css; charset=utf-8",
      ["/app.js"] = "text/javascript; charset=utf-8",
      ["/mod.mjs"] = "text/javascript; charset=utf-8",
      ["/data.json"] = "application/json",
      ["/app.js.map"] = "application/json",
      ["/logo.svg"] = "image/svg+xml",
      ["/a.png"] = "image/png",
      ["/a.jpg"] = "image/jpeg",
      ["/favicon.ico"] = "image/x-icon",
      ["/notes.txt"] = "text/plain; charset=utf-8",
      ["/m.wasm"] = "application/wasm",
      ["/blob.xyz"] = "application/octet-stream",
      ["/assets/style.css"] = "text/css; charset=utf-8",
    }
    for path, ctype in pairs(types) do
      local res = curl(srv:http_url(path))
      assert.are.equal(200, res.status, path)
      assert.are.equal(ctype, res.headers["content-type"], path)
      local file = path:find("^/assets/") and root .. path or root .. "/public" .. path
      assert.are.equal(helper.read_file(file), res.body, path)
    end
  end)

  it("an empty file is 200 with Content-Length: 0", function()
    local res = get(port, "/empty.txt")
    assert.are.equal(200, res.status)
    assert.are.equal("0", res.headers["content-length"])
    assert.are.equal("", res.body)
  end)

  it("If-None-Match with the ETag answers 304 without a body; others get the file", function()
    local first = curl(srv:http_url "/app.css")
    local etag = first.headers.etag
    for _, inm in ipairs { etag, "W/" .. etag, '"nope", ' .. etag, "*" } do
      local res = get(port, "/app.css", "If-None-Match: " .. inm .. "\r\n")
      assert.are.equal(304, res.status, inm)
      assert.are.equal("", res.body, inm)
      assert.are.equal(etag, res.headers.etag)
      assert.are.equal("no-cache", res.headers["cache-control"])
      assert.is_nil(res.headers["content-length"])
    end
    local res = curl(srv:http_url "/app.css", "-H", "If-None-Match: " .. etag)
    assert.are.equal(304, res.status) -- curl as a browser would revalidate
    for _, inm in ipairs { '"nope"', etag:sub(2, -2), etag .. "x" } do
      res = get(port, "/app.css", "If-None-Match: " .. inm .. "\r\n")
      assert.are.equal(200, res.status, inm)
      assert.are.equal("body { color: red }", res.body)
    end
    -- a changed file has a new tag: the old one gets the new file
    helper.write_file(root .. "/public/app.css", "body { color: blue }")
    res = get(port, "/app.css", "If-None-Match: " .. etag .. "\r\n")
    assert.are.equal(200, res.status)
    assert.are.equal("body { color: blue }", res.body)
    assert.are_not.equal(etag, res.headers.etag)
  end)

  it("HEAD answers the same header fields as GET and no body", function()
    for _, path in ipairs { "/", "/app.css", "/big.bin", "/assets/style.css" } do
      local g = get(port, path)
      local h = get(port, path, nil, "HEAD")
      assert.are.equal(200, h.status, path)
      assert.are.equal("", h.body, path)
      assert.are.same(g.headers, h.headers, path)
      assert.are.equal(g.head, h.head, path)
    end
    local e = get(port, "/nope.txt", nil, "HEAD")
    assert.are.equal(404, e.status)
    assert.are.equal("", e.body)
  end)

  -- (/assetsx is under "/", not under "/assets")
  it("a missing file, a directory without index, a hidden file: 404, never a listing", function()
    for _, path in ipairs { "/nope.txt", "/noindex/", "/.hidden", "/%2ehidden", "/assets/",
                            "/sub/nope.html", "/app.css/x", "/assetsx", "/assetsx/style.css" } do
      local res = get(port, path)
      assert.are.equal(404, res.status, path)
      assert.are.equal("application/json", res.headers["content-type"], path)
      assert.truthy(res.body:find('"error":"http_not_found"', 1, true), path)
      assert.is_nil(res.body:find("file.txt", 1, true), path)
      assert.is_nil(res.body:find(SECRET, 1, true), path)
    end
  end)

  it("a directory without its '/' is redirected (301), with the query kept", function()
    local cases = {
      { "/sub", "/sub/" }, { "/sub?x=1", "/sub/?x=1" }, { "/assets", "/assets/" },
      { "/noindex", "/noindex/" }, { "/sublink", "/sublink/" },
    }
    for _, c in ipairs(cases) do
      local res = get(port, c[1])
      assert.are.equal(301, res.status, c[1])
      assert.are.equal(c[2], res.headers.location, c[1])
    end
    local res = curl(srv:http_url "/sub", "-L")
    assert.are.equal(200, res.status)
    assert.are.equal("<p>sub</p>", res.body)
    assert.are.equal("<p>page</p>", curl(srv:http_url "/sub/page.html").body)
  end)

  it("a query string does not change the file", function()
    local res = get(port, "/app.js?v=123")
    assert.are.equal(200, res.status)
    assert.are.equal("export const x = 1;", res.body)
  end)

  -- Every way out of the root: refused before the file system is asked (400), or
  -- found outside the root after resolving symlinks (404). Never the secret.
  local escapes = {
    { "/../secret.txt", 400 }, { "/sub/../../secret.txt", 400 }, { "/..", 400 },
    { "/%2e%2e/secret.txt", 400 }, { "/%2E%2E/secret.txt", 400 }, { "/.%2e/secret.txt", 400 },
    { "/%2e./secret.txt", 400 }, { "/..%2fsecret.txt", 400 }, { "/%2e%2e%2fsecret.txt", 400 },
    { "/sub%2f..%2f..%2fsecret.txt", 400 }, { "/..%5csecret.txt", 400 },
    { "/..\\secret.txt", 400 }, { "/./index.html", 400 }, { "//secret.txt", 400 },
    { "/sub//page.html", 400 }, { "/assets/../secret.txt", 400 },
    { "/assets/%2e%2e/secret.txt", 400 }, { "/%252e%252e/secret.txt", 404 },
    { "/escape.txt", 404 }, { "/escape_rel.txt", 404 }, { "/escdir/secret.txt", 404 },
    { "/escdir/", 404 }, { "/index.html%00.png", 400 }, { "/%00", 400 },
    { "/notes.txt%0d%0aX:%20y", 400 }, { "/bad%zz", 400 }, { "/bad%", 400 },
  }
  for _, e in ipairs(escapes) do
    it(("refuses %s with %d"):format(e[1], e[2]), function()
      local res = get(port, e[1])
      assert.are.equal(e[2], res.status, res.raw)
      assert.is_nil(res.raw:find(SECRET, 1, true))
      -- curl sends the same path as written (--path-as-is)
      if not e[1]:find("\\", 1, true) then
        res = curl(srv:http_url(e[1]))
        assert.are.equal(e[2], res.status, e[1])
        assert.is_nil(res.body:find(SECRET, 1, true))
      end
    end)
  end

  it("a symlink that stays inside the root is served", function()
    assert.are.equal("plain text", curl(srv:http_url "/inside.txt").body)
    assert.are.equal("<p>page</p>", curl(srv:http_url "/sublink/page.html").body)
  end)

  it("a raw NUL in the path is a 400", function()
    local res = raw_http(port, "GET /index.html\0.png HTTP/1.1\r\nHost: x\r\n\r\n")
    assert.are.equal(400, res.status)
    assert.is_nil(res.raw:find("<title>", 1, true))
  end)

  it("a path over 1024 bytes is a 414; 1024 bytes is looked up", function()
    local long = "/" .. ("a"):rep(1024)
    local res = get(port, long)
    assert.are.equal(414, res.status)
    assert.truthy(res.body:find('"error":"http_uri_too_long"', 1, true))
    res = get(port, long:sub(1, 1024))
    assert.are.equal(404, res.status)
    res = get(port, "/" .. ("%61"):rep(400)) -- 1201 bytes as sent, 400 decoded: the sent length counts
    assert.are.equal(414, res.status)
  end)

  it("Host: one in HTTP/1.1, at most one in HTTP/1.0 (RFC 9112 3.2)", function()
    assert.are.equal(400, raw_http(port, "GET /notes.txt HTTP/1.1\r\n\r\n").status)
    assert.are.equal(400, raw_http(port, "GET /notes.txt HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n").status)
    assert.are.equal(400, raw_http(port, "GET /notes.txt HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n").status)
    local res = raw_http(port, "GET /notes.txt HTTP/1.0\r\n\r\n")
    assert.are.equal("plain text", res.body)
    assert.are.equal("plain text", raw_http(port, "GET /notes.txt HTTP/1.0\r\nHost: a\r\n\r\n").body)
  end)

  it("other methods get 405 with Allow: GET, HEAD", function()
    for _, m in ipairs { "POST", "PUT", "DELETE", "OPTIONS", "PATCH" } do
      local res = get(port, "/index.html", "Content-Length: 0\r\n", m)
      assert.are.equal(405, res.status, m)
      assert.are.equal("GET, HEAD", res.headers.allow, m)
    end
    assert.are.equal(405, curl(srv:http_url "/index.html", "-X", "POST", "-d", "x").status)
  end)

  it("sends a 5 MB file byte-exact, with sendfile", function()
    local before = metric(port, "edgews_static_bytes_total", 'path="sendfile"')
    local res = curl(srv:http_url "/big.bin")
    assert.are.equal(200, res.status)
    assert.are.equal(tostring(BIG), res.headers["content-length"])
    assert.are.equal(BIG, #res.body)
    assert.are.equal(sha256(big), sha256(res.body))
    assert.are.equal("THE-END", res.body:sub(-7))
    -- most of it left through sendfile (no copy): at most a few 16 KiB pieces were read
    local sent = metric(port, "edgews_static_bytes_total", 'path="sendfile"') - before
    assert.is_true(sent >= BIG / 2, "sendfile moved " .. sent .. " bytes")
  end)

  it("a slow reader gets the whole file (the close timeout counts from the last progress)", function()
    -- close_timeout = 1 s; 16 MB read at 8 MB/s through a small receive buffer takes
    -- about 2 s, more than the kernel's socket buffers hold
    local huge = big:sub(1, 4000000):rep(4)
    helper.write_file(root .. "/public/huge.bin", huge)
    local res, secs = slow_get(port, "/huge.bin", 8e6)
    assert.are.equal(200, res.status)
    assert.is_true(secs > 1.2, "the download was not slow: " .. secs .. " s")
    assert.are.equal(#huge, #res.body)
    assert.are.equal(sha256(huge), sha256(res.body))
  end)

  it("concurrent downloads each get the whole file", function()
    local procs, dir = {}, helper.tmpdir()
    for i = 1, 6 do
      procs[i] = helper.spawn { "curl", "-sS", "--max-time", "30", "-o", dir .. "/b" .. i,
                                srv:http_url "/big.bin" }
    end
    for i = 1, 6 do
      assert.is_true(procs[i]:finish(40), "curl " .. i)
      assert.are.equal(0, procs[i].code, procs[i]:stderr())
      assert.are.equal(sha256(big), sha256(helper.read_file(dir .. "/b" .. i)), "download " .. i)
    end
  end)

  it("a WebSocket upgrade on a mounted path still reaches the app", function()
    helper.assert_ok(helper.py("echo", "--url", srv:url "/", "--sizes", "0,5,70000"))
    helper.assert_ok(helper.py("echo", "--url", srv:url "/chat", "--sizes", "3"))
    -- a plain GET of an app path under a mount is a static-file request: /chat is no file
    local res = get(port, "/chat")
    assert.are.equal(404, res.status)
  end)

  it("/health and /metrics keep priority over a file of that name", function()
    local res = get(port, "/health")
    assert.are.equal(200, res.status)
    assert.truthy(res.body:find('"status":"ok"', 1, true))
    res = get(port, "/metrics")
    assert.truthy(res.body:find("edgews_static_requests_total", 1, true))
  end)

  it("counts answers by status class in /metrics", function()
    local ok0 = metric(port, "edgews_static_requests_total", 'status="2xx"')
    local nf0 = metric(port, "edgews_static_requests_total", 'status="4xx"')
    for _ = 1, 3 do get(port, "/notes.txt") end
    for _ = 1, 2 do get(port, "/nope") end
    assert.are.equal(ok0 + 3, metric(port, "edgews_static_requests_total", 'status="2xx"'))
    assert.are.equal(nf0 + 2, metric(port, "edgews_static_requests_total", 'status="4xx"'))
  end)
end)

describe("static files over TLS #integration", function()
  teardown(function() helper.cleanup() end)

  it("serves files over https (read through the TLS writer), and wss upgrades reach the app", function()
    local certs = helper.certs()
    local root, big = build_site(APP)
    local srv = helper.start_server { app = root .. "/app.lua", workers = 1, tls = certs }
    local res = curl(srv:http_url "/big.bin", "--cacert", certs.ca)
    assert.are.equal(200, res.status)
    assert.are.equal(BIG, #res.body)
    assert.are.equal(sha256(big), sha256(res.body))
    res = curl(srv:http_url "/", "--cacert", certs.ca)
    assert.are.equal("<!doctype html><title>home</title>", res.body)
    assert.are.equal("text/html; charset=utf-8", res.headers["content-type"])
    local etag = res.headers.etag
    res = curl(srv:http_url "/", "--cacert", certs.ca, "-H", "If-None-Match: " .. etag)
    assert.are.equal(304, res.status)
    res = curl(srv:http_url "/", "--cacert", certs.ca, "-I") -- curl -I writes the head as the body
    assert.are.equal(200, res.status)
    assert.is_nil(res.body:find("<title>", 1, true))
    assert.are.equal(etag, res.headers.etag)
    res = curl(srv:http_url "/%2e%2e/secret.txt", "--cacert", certs.ca)
    assert.are.equal(400, res.status)
    assert.are.equal(404, curl(srv:http_url "/escape.txt", "--cacert", certs.ca).status)
    helper.assert_ok(helper.py("echo", "--url", srv:url "/", "--ca", certs.ca, "--sizes", "0,70000"))
    -- no sendfile through TLS: every byte was read and sealed
    local m = curl(srv:http_url "/metrics", "--cacert", certs.ca).body
    local copied = tonumber(m:match('edgews_static_bytes_total{worker="0",path="copied"} (%d+)'))
    local sf = tonumber(m:match('edgews_static_bytes_total{worker="0",path="sendfile"} (%d+)'))
    assert.are.equal(0, sf)
    assert.is_true(copied >= BIG, "copied " .. tostring(copied))
  end)
end)

describe("static files and the admin listener #integration", function()
  teardown(function() helper.cleanup() end)

  it("the admin port serves no file; the main port's /health is then a path like any other", function()
    local root = build_site(APP)
    local srv = helper.start_server { app = root .. "/app.lua", workers = 1,
                                      args = { "--admin-listen", "127.0.0.1:0" } }
    local admin = tonumber(srv:wait_log("admin listener %(/health, /metrics%) on 127%.0%.0%.1:(%d+)", 5))
    assert.truthy(admin, srv:log())
    assert.are.equal(404, get(admin, "/index.html").status)
    assert.are.equal(404, get(admin, "/").status)
    assert.are.equal(200, get(admin, "/health").status)
    assert.are.equal("not the health check", get(srv.port, "/health").body)
    assert.are.equal("<!doctype html><title>home</title>", get(srv.port, "/").body)
  end)
end)

describe("static mounts across reloads #integration #reload", function()
  teardown(function() helper.cleanup() end)

  -- Every one of n fresh requests (spread over both workers) answered as `want` says.
  local function all(port, path, want, n)
    for _ = 1, n or 8 do
      local res = get(port, path)
      if not want(res) then return false end
    end
    return true
  end

  it("the reloaded script's mounts replace the old ones; a failed reload keeps them", function()
    local root = build_site(APP)
    assert(os.execute(("mkdir -p %s/v2"):format(root)) == 0)
    helper.write_file(root .. "/v2/index.html", "<p>v2</p>")
    local srv = helper.start_server { app = root .. "/app.lua", workers = 2, args = { "--no-watch" } }
    local port = srv.port
    assert.are.equal("<!doctype html><title>home</title>", get(port, "/").body)
    -- v2: "/" now serves v2/, /assets is gone, /new serves public/
    helper.write_file(root .. "/app.lua", [[
local edgews = require "edgews"
local app = edgews.app { path = "/" }
app:on("message", function(s, data, binary) s:send(data, binary) end)
edgews.static("/", "v2", { cache_control = "max-age=5" })
edgews.static("/new", "public")
]])
    srv:signal("HUP")
    assert.truthy(helper.wait_until(function()
      return all(port, "/", function(r) return r.body == "<p>v2</p>" end)
    end, 10), "the new mount was not served\n" .. srv:log())
    assert.are.equal("max-age=5", get(port, "/").headers["cache-control"])
    assert.is_true(all(port, "/assets/style.css", function(r) return r.status == 404 end))
    assert.is_true(all(port, "/new/notes.txt", function(r) return r.body == "plain text" end))
    assert.is_true(all(port, "/app.css", function(r) return r.status == 404 end))
    helper.assert_ok(helper.py("echo", "--url", srv:url "/", "--sizes", "3"))
    -- a reload whose mount cannot be served fails whole: v2 stays
    helper.write_file(root .. "/app.lua", [[
local edgews = require "edgews"
edgews.app { path = "/" }
edgews.static("/", "no-such-dir")
]])
    srv:signal("HUP")
    assert.truthy(srv:wait_log("no%-such%-dir", 10), srv:log())
    assert.is_true(all(port, "/", function(r) return r.body == "<p>v2</p>" end))
    assert.is_true(all(port, "/new/notes.txt", function(r) return r.body == "plain text" end))
  end)
end)

describe("edgews.static errors #integration", function()
  teardown(function() helper.cleanup() end)

  local function start_fails(src)
    local dir = helper.tmpdir()
    assert(os.execute(("mkdir -p %s/public"):format(dir)) == 0)
    helper.write_file(dir .. "/bad.lua", 'local edgews = require "edgews"\nedgews.app { path = "/x" }\n' .. src)
    local ok, err = pcall(helper.start_server, { app = dir .. "/bad.lua", timeout = 5 })
    assert.is_false(ok)
    return tostring(err), dir
  end

  it("a directory that does not exist stops the start with file:line and the resolved path", function()
    local err, dir = start_fails('edgews.static("/", "nope")\n')
    assert.truthy(err:find("bad.lua:3: edgews.static: cannot serve " .. dir .. "/nope: No such file or directory", 1, true), err)
  end)

  it("a misspelled option names the closest one", function()
    local err = start_fails('edgews.static("/", "public", { cache_contrl = "x" })\n')
    assert.truthy(err:find("bad.lua:3: edgews.static: unknown field 'cache_contrl' (did you mean 'cache_control'?)", 1, true), err)
  end)

  it("a prefix with a '..' segment is refused", function()
    local err = start_fails('edgews.static("/a/../b", "public")\n')
    assert.truthy(err:find("bad.lua:3: edgews.static: prefix must be", 1, true), err)
  end)

  it("the same prefix twice is refused", function()
    local err = start_fails('edgews.static("/s/", "public")\nedgews.static("/s", "public")\n')
    assert.truthy(err:find("bad.lua:4: edgews.static: prefix /s is mounted twice", 1, true), err)
  end)
end)
