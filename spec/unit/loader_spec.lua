-- Unit specs for the script loader and dispatcher in lua/edgews/init.lua: loading
-- is transactional, reloads swap handlers for existing sockets, removed apps keep
-- serving their open sockets. The C core is replaced by a recording double of
-- edgews.core (only what init.lua calls), so these run without a server; the
-- integration specs cover the same paths through the real binary.
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path

local tmpdir = os.tmpname()
os.remove(tmpdir)
os.execute("mkdir -p " .. tmpdir)

local function write(name, text)
  local f = assert(io.open(tmpdir .. "/" .. name, "w"))
  f:write(text)
  f:close()
  return tmpdir .. "/" .. name
end

local edgews, routes, statics

local function fresh()
  for k in pairs(package.loaded) do
    if k:match("^edgews") or k:match("^user_mod") then package.loaded[k] = nil end
  end
  routes, statics = nil, nil
  package.preload["edgews.core"] = function()
    return {
      set_routes = function(r) routes = r end,
      set_static = function(m) statics = m end,
      static_root = function(d) return d end,
      log_level = function() return 0 end,
      log = function() end,
      error_names = { [-4] = "CLOSED" },
      DEBUG = 0, INFO = 1, WARN = 2, ERROR = 3,
      worker_id = function() return 0 end, workers = function() return 1 end,
      now = function() return 0 end, stats = function() return {} end,
    }
  end
  package.path = tmpdir .. "/?.lua;" .. package.path
  edgews = require "edgews"
end

describe("edgews loader", function()
  before_each(fresh)

  it("loads a script and hands its routes to the core", function()
    local path = write("a.lua", [[
      local edgews = require "edgews"
      edgews.app { path = "/a", protocols = { "p1" } }
      edgews.app { path = "/b" }
    ]])
    assert.is_true(edgews._load(path))
    assert.are.equal(2, #routes)
    assert.are.equal("/a", routes[1].path)
    assert.are.same({ "p1" }, routes[1].protocols)
  end)

  it("dispatches events to the handlers of the socket's app", function()
    local path = write("b.lua", [[
      local edgews = require "edgews"
      local app = edgews.app { path = "/a" }
      app:on("message", function(s, data, bin) s.got = { data, bin } end)
      app:on("close", function(s, code, reason) s.closed = { code, reason } end)
    ]])
    assert.is_true(edgews._load(path))
    local sock = { path = "/a", ctx = {} }
    edgews._dispatch_message(sock, "hi", true)
    edgews._dispatch_close(sock, 1000, "bye")
    assert.are.same({ "hi", true }, sock.got)
    assert.are.same({ 1000, "bye" }, sock.closed)
  end)

  it("after a reload, the next event on an existing socket runs the new handler", function()
    local path = write("c.lua", [[
      local app = require("edgews").app { path = "/a" }
      app:on("message", function(s) s.ctx.v = "one" end)
    ]])
    assert.is_true(edgews._load(path))
    local sock = { path = "/a", ctx = {} }
    edgews._dispatch_message(sock, "x", false)
    assert.are.equal("one", sock.ctx.v)
    write("c.lua", [[
      local app = require("edgews").app { path = "/a" }
      app:on("message", function(s) s.ctx.v = s.ctx.v .. "+two" end)
    ]])
    assert.is_true(edgews._load(path))
    edgews._dispatch_message(sock, "x", false)
    assert.are.equal("one+two", sock.ctx.v)
  end)

  it("a failing version changes nothing and reports file:line", function()
    local path = write("d.lua", [[
      local app = require("edgews").app { path = "/a" }
      app:on("message", function(s) s.v = 1 end)
    ]])
    assert.is_true(edgews._load(path))
    write("d.lua", [[
      local app = require("edgews").app { path = "/a" }
      app:on("message", function(s) s.v = 2 end)
      error("boom")
    ]])
    local ok, err = edgews._load(path)
    assert.is_nil(ok)
    assert.is_truthy(err:find("d.lua:3: boom", 1, true), err)
    local sock = { path = "/a" }
    edgews._dispatch_message(sock, "x", false)
    assert.are.equal(1, sock.v)
    assert.are.equal(1, #routes)
  end)

  it("a syntax error is reported with file:line", function()
    local path = write("e.lua", "local x = = 1\n")
    local ok, err = edgews._load(path)
    assert.is_nil(ok)
    assert.is_truthy(err:find("e.lua:1:", 1, true), err)
  end)

  it("reloads the script's own modules and restores them when the new version fails", function()
    write("user_mod_v.lua", "return { v = 1 }")
    local path = write("f.lua", [[
      local m = require "user_mod_v"
      local app = require("edgews").app { path = "/a" }
      app:on("message", function(s) s.v = m.v end)
    ]])
    assert.is_true(edgews._load(path))
    write("user_mod_v.lua", "return { v = 2 }")
    assert.is_true(edgews._load(path))
    local sock = { path = "/a" }
    edgews._dispatch_message(sock, "x", false)
    assert.are.equal(2, sock.v)
    write("user_mod_v.lua", "error('broken module')")
    assert.is_nil(edgews._load(path))
    assert.are.equal(2, package.loaded.user_mod_v.v)
  end)

  it("rejects a script without apps and a path defined twice", function()
    local ok, err = edgews._load(write("g.lua", "local x = 1"))
    assert.is_nil(ok)
    assert.is_truthy(err:find("defines no app"), err)
    ok, err = edgews._load(write("h.lua", [[
      local edgews = require "edgews"
      edgews.app { path = "/a" }
      edgews.app { path = "/a" }
    ]]))
    assert.is_nil(ok)
    assert.is_truthy(err:find("h.lua:3: edgews.app: path /a is defined twice", 1, true), err)
  end)

  it("keeps serving sockets of an app that a reload removed, but stops routing to it", function()
    local path = write("i.lua", [[
      local edgews = require "edgews"
      edgews.app({ path = "/old" }):on("message", function(s) s.v = "old" end)
      edgews.app({ path = "/keep" })
    ]])
    assert.is_true(edgews._load(path))
    write("i.lua", [[ require("edgews").app { path = "/keep" } ]])
    assert.is_true(edgews._load(path))
    assert.are.equal(1, #routes)
    local sock = { path = "/old" }
    edgews._dispatch_message(sock, "x", false)
    assert.are.equal("old", sock.v)
  end)

  it("refuses edgews.app outside of a load, and bad handler registrations", function()
    assert.has_error(function() edgews.app { path = "/x" } end,
      "edgews.app must be called while the script loads")
    local path = write("j.lua", [[
      local app = require("edgews").app { path = "/a" }
      app:on("mesage", function() end)
    ]])
    local ok, err = edgews._load(path)
    assert.is_nil(ok)
    assert.is_truthy(err:find("j.lua:2: app:on: unknown event 'mesage'", 1, true), err)
  end)

  it("hands edgews.static mounts to the core, dirs relative to the script's directory", function()
    local path = write("st1.lua", [[
      local edgews = require "edgews"
      edgews.app { path = "/a" }
      edgews.static("/", "public")
      edgews.static("/abs/", "/srv/www", { cache_control = false, index = false })
    ]])
    assert.is_true(edgews._load(path))
    assert.are.equal(2, #statics)
    assert.are.same({ prefix = "/", dir = "public", root = tmpdir .. "/public",
                      cache_control = "no-cache", index = "index.html" }, statics[1])
    assert.are.same({ prefix = "/abs", dir = "/srv/www", root = "/srv/www" }, statics[2])
  end)

  it("a reload replaces the mounts; a failed one keeps them", function()
    local path = write("st2.lua", [[
      local edgews = require "edgews"
      edgews.static("/", "v1")
    ]])
    assert.is_true(edgews._load(path)) -- mounts alone are a script that serves something
    assert.are.equal(tmpdir .. "/v1", statics[1].root)
    write("st2.lua", [[
      local edgews = require "edgews"
      edgews.static("/", "v2")
      edgews.static("/x", "v2")
    ]])
    assert.is_true(edgews._load(path))
    assert.are.equal(2, #statics)
    assert.are.equal(tmpdir .. "/v2", statics[1].root)
    local before = statics
    write("st2.lua", [[
      local edgews = require "edgews"
      edgews.static("/", "v3")
      error("boom")
    ]])
    assert.is_nil(edgews._load(path))
    assert.are.equal(before, statics)
    write("st2.lua", [[
      local edgews = require "edgews"
      edgews.static("/s", "a")
      edgews.static("/s/", "b")
    ]])
    local ok, err = edgews._load(path)
    assert.is_nil(ok)
    assert.truthy(err:find("st2.lua:3: edgews.static: prefix /s is mounted twice", 1, true), err)
    assert.are.equal(before, statics)
  end)

  it("edgews.static outside the load is misuse", function()
    assert.has_error(function() edgews.static("/", "d") end,
      "edgews.static must be called while the script loads")
  end)

  it("keeps the configure{} table of the loaded version", function()
    local path = write("k.lua", [[
      local edgews = require "edgews"
      edgews.configure { listen = "127.0.0.1:9999", workers = 3 }
      edgews.app { path = "/a" }
    ]])
    assert.is_true(edgews._load(path))
    assert.are.equal("127.0.0.1:9999", edgews._server_config.listen)
    assert.are.equal(3, edgews._server_config.workers)
  end)
end)
