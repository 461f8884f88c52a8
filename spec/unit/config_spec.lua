-- Unit specs for lua/edgews/config.lua: validation and defaults of edgews.app{}
-- and edgews.configure{} tables (pure Lua, no server).
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local config = require "edgews.config"

describe("edgews.config.app", function()
  it("fills every default for a bare path", function()
    local c = config.app({ path = "/echo" })
    assert.are.same({
      path = "/echo", protocols = {}, max_message_size = 1024 * 1024,
      max_frame_size = 1024 * 1024, idle_timeout = 0, max_buffered = 4 * 1024 * 1024,
      heartbeat_interval = 30, heartbeat_timeout = 10, on_backpressure = "close",
      compression = { mode = "off" }, max_connections = 0, max_connections_per_ip = 0,
      max_connections_per_user = 0,
    }, c)
  end)

  it("keeps given values and defaults max_frame_size to max_message_size", function()
    local c = config.app({
      path = "/x", protocols = { "chat.v1", "chat.v2", "chat.v1" }, max_message_size = 1000,
      idle_timeout = 1.5, heartbeat = { interval = 2, timeout = 0.5 }, max_buffered = 10,
      on_backpressure = "drop",
    })
    assert.are.same({ "chat.v1", "chat.v2" }, c.protocols) -- duplicates dropped
    assert.are.equal(1000, c.max_frame_size)
    assert.are.equal(1.5, c.idle_timeout)
    assert.are.equal(2, c.heartbeat_interval)
    assert.are.equal(0.5, c.heartbeat_timeout)
    assert.are.equal("drop", c.on_backpressure)
  end)

  it("normalises compression settings", function()
    assert.are.same({ mode = "shared", level = 1, threshold = 64, window_kb = 32 },
      config.app({ path = "/x", compression = {} }).compression)
    assert.are.same({ mode = "dedicated", level = 6, threshold = 0, window_kb = 4,
      client_no_context_takeover = true }, config.app({ path = "/x", compression = {
        mode = "dedicated", level = 6, threshold = 0, window_kb = 4, client_no_context_takeover = true,
      } }).compression)
    assert.are.same({ mode = "off" }, config.app({ path = "/x", compression = false }).compression)
    assert.are.same({ mode = "shared", level = 1, threshold = 64, window_kb = 32, engine = "libdeflate" },
      config.app({ path = "/x", compression = { engine = "libdeflate" } }).compression)
    assert.are.same({ mode = "dedicated", level = 1, threshold = 64, window_kb = 32, engine = "zlib" },
      config.app({ path = "/x", compression = { mode = "dedicated", engine = "zlib" } }).compression)
  end)

  it("turns heartbeats off with heartbeat = false", function()
    local c = config.app({ path = "/x", heartbeat = false })
    assert.are.equal(0, c.heartbeat_interval)
  end)

  local bad = {
    { "a non-table", 42, "expects a table" },
    { "a missing path", {}, "path must be" },
    { "a relative path", { path = "echo" }, "path must be" },
    { "a path with a query", { path = "/a?b" }, "path must be" },
    { "the reserved /health", { path = "/health" }, "reserved" },
    { "an unknown field", { path = "/a", max_size = 1 }, "unknown field 'max_size'" },
    { "a protocol that is not a token", { path = "/a", protocols = { "a b" } }, "protocols%[1%]" },
    { "protocols that are not a list", { path = "/a", protocols = "chat" }, "protocols must be" },
    { "a negative size", { path = "/a", max_message_size = -1 }, "max_message_size must be" },
    { "a fractional size", { path = "/a", max_buffered = 1.5 }, "max_buffered must be" },
    { "a NaN timeout", { path = "/a", idle_timeout = 0 / 0 }, "idle_timeout must be" },
    { "a bad heartbeat", { path = "/a", heartbeat = 5 }, "heartbeat must be" },
    { "a zero heartbeat timeout", { path = "/a", heartbeat = { timeout = 0 } }, "timeout must be" },
    { "an unknown policy", { path = "/a", on_backpressure = "block" }, "on_backpressure" },
    { "an unknown compression mode", { path = "/a", compression = { mode = "fast" } }, "compression.mode" },
    { "a compression level over 9", { path = "/a", compression = { level = 10 } }, "level must be" },
    { "a window that is not a power of two", { path = "/a", compression = { window_kb = 3 } }, "window_kb" },
    { "an unknown compression field", { path = "/a", compression = { bits = 3 } }, "unknown field 'bits'" },
    { "compression = true", { path = "/a", compression = true }, "compression must be" },
    { "an unknown compression engine", { path = "/a", compression = { engine = "brotli" } },
      'compression.engine must be "zlib" or "libdeflate", got string "brotli"' },
    { "a compression engine that is not a string", { path = "/a", compression = { engine = true } },
      'compression.engine must be "zlib" or "libdeflate", got boolean true' },
    { "libdeflate in dedicated mode", { path = "/a", compression = { mode = "dedicated", engine = "libdeflate" } },
      'compression.engine = "libdeflate" needs mode = "shared", got mode = "dedicated"' },
    { "a negative handler_timeout", { path = "/a", handler_timeout = -1 }, "handler_timeout must be" },
    { "a handler_timeout under 10 ms", { path = "/a", handler_timeout = 0.005 }, "handler_timeout must be" },
    { "a handler_timeout over a day", { path = "/a", handler_timeout = 86401 }, "handler_timeout must be" },
    { "a NaN handler_timeout", { path = "/a", handler_timeout = 0 / 0 }, "handler_timeout must be" },
    { "a handler_timeout that is not a number", { path = "/a", handler_timeout = "2" }, "handler_timeout must be" },
  }
  for _, case in ipairs(bad) do
    it("rejects " .. case[1], function()
      local ok, err = pcall(config.app, case[2])
      assert.is_false(ok)
      assert.is_truthy(tostring(err):find(case[3]), tostring(err))
    end)
  end

  it("takes an app's handler_timeout (0 = no limit); none means the server's", function()
    assert.are.equal(0.5, config.app({ path = "/a", handler_timeout = 0.5 }).handler_timeout)
    assert.are.equal(0, config.app({ path = "/a", handler_timeout = 0 }).handler_timeout)
    assert.are.equal(0.01, config.app({ path = "/a", handler_timeout = 0.01 }).handler_timeout)
    assert.is_nil(config.app({ path = "/a" }).handler_timeout)
  end)

  it("reports the error at the caller's line", function()
    local function user_script() local c = config.app({ path = 1 }, 1); return c end
    local ok, err = pcall(user_script)
    assert.is_false(ok)
    assert.is_truthy(err:find("config_spec.lua:%d+:"), err)
  end)
end)

describe("edgews.config.server", function()
  it("accepts every documented field", function()
    local c = config.server({
      listen = "127.0.0.1:9000", workers = 2, log_level = "debug", drain_timeout = 1,
      handshake_timeout = 2, close_timeout = 3, max_head_size = 4096, max_headers = 32,
      backlog = 128, watch = false, reuse_port = true, max_message_memory = 64 * 1024 * 1024,
    })
    assert.are.equal("127.0.0.1:9000", c.listen)
    assert.are.equal(2, c.workers)
    assert.are.equal(false, c.watch)
    assert.are.equal(true, c.reuse_port)
    assert.are.equal(64 * 1024 * 1024, c.max_message_memory)
  end)

  it("takes the runaway limits: handler_timeout (s) and max_lua_memory (bytes), 0 = none", function()
    local c = config.server({ handler_timeout = 0.25, max_lua_memory = 64 * 1048576 })
    assert.are.equal(0.25, c.handler_timeout)
    assert.are.equal(64 * 1048576, c.max_lua_memory)
    c = config.server({ handler_timeout = 0, max_lua_memory = 0 })
    assert.are.equal(0, c.handler_timeout)
    assert.are.equal(0, c.max_lua_memory)
    c = config.server({})
    assert.is_nil(c.handler_timeout) -- the defaults (2 s, 1 GiB) live in the core
    assert.is_nil(c.max_lua_memory)
  end)

  it("takes redis as one URL or a list of URLs (checked by the core)", function()
    assert.are.equal("redis://h:1/0", config.server({ redis = "redis://h:1/0" }).redis)
    assert.are.same({ "redis://a", "unix:/r.sock" }, config.server({ redis = { "redis://a", "unix:/r.sock" } }).redis)
    assert.is_nil(config.server({}).redis)
  end)

  it("accepts IPv6 and host-less listen addresses", function()
    assert.are.equal("[::1]:80", config.server({ listen = "[::1]:80" }).listen)
    assert.are.equal(":80", config.server({ listen = ":80" }).listen)
  end)

  local bad = {
    { "listen without a port", { listen = "localhost" }, "listen must be" },
    { "a port over 65535", { listen = "0.0.0.0:70000" }, "out of range" },
    { "zero workers", { workers = 0 }, "workers must be" },
    { "an unknown log level", { log_level = "loud" }, "log_level" },
    { "an unknown field", { port = 1 }, "unknown field 'port'" },
    { "a non-boolean watch", { watch = "yes" }, "watch must be" },
    { "a non-boolean reuse_port", { reuse_port = 1 }, "reuse_port must be" },
    { "a negative max_message_memory", { max_message_memory = -1 }, "max_message_memory must be" },
    { "a fractional max_message_memory", { max_message_memory = 1.5 }, "max_message_memory must be" },
    { "a negative handler_timeout", { handler_timeout = -0.5 }, "handler_timeout must be" },
    { "a handler_timeout under 10 ms", { handler_timeout = 0.001 }, "handler_timeout must be" },
    { "a handler_timeout given as a string", { handler_timeout = "2s" }, "handler_timeout must be" },
    { "a max_lua_memory under 8 MiB", { max_lua_memory = 1048576 }, "max_lua_memory must be" },
    { "a negative max_lua_memory", { max_lua_memory = -1 }, "max_lua_memory must be" },
    { "a fractional max_lua_memory", { max_lua_memory = 16 * 1048576 + 0.5 }, "max_lua_memory must be" },
    { "a max_lua_memory given as a string", { max_lua_memory = "1G" }, "max_lua_memory must be" },
    { "a redis that is a number", { redis = 6379 }, "redis must be a URL or a list of URLs" },
    { "an empty redis list", { redis = {} }, "redis must be a URL or a list of URLs" },
    { "a redis list with a non-string", { redis = { "redis://a", 1 } }, "redis must be a URL" },
  }
  for _, case in ipairs(bad) do
    it("rejects " .. case[1], function()
      local ok, err = pcall(config.server, case[2])
      assert.is_false(ok)
      assert.is_truthy(tostring(err):find(case[3]), tostring(err))
    end)
  end
end)

describe("edgews.config messages", function()
  local function err_of(fn, t)
    local ok, err = pcall(fn, t)
    assert.is_false(ok)
    return tostring(err)
  end

  it("show the type of a value of the wrong type", function()
    assert.are.equal('edgews.app: idle_timeout must be a number in [0, 86400], got string "300"',
      err_of(config.app, { path = "/a", idle_timeout = "300" }))
    assert.are.equal("edgews.app: idle_timeout must be a number in [0, 86400], got -1",
      err_of(config.app, { path = "/a", idle_timeout = -1 }))
    assert.are.equal("edgews.configure: workers must be an integer number in [1, 256], got boolean true",
      err_of(config.server, { workers = true }))
    assert.are.equal("edgews.app: heartbeat.interval must be a number in [0, 86400], got table",
      err_of(config.app, { path = "/a", heartbeat = { interval = {} } }))
    assert.truthy(err_of(config.app, { path = 3 }):find("got number 3$"))
    assert.truthy(err_of(config.server, { watch = "yes" }):find('watch must be a boolean, got string "yes"', 1, true))
    assert.truthy(err_of(config.server, { listen = 8080 }):find('listen must be "HOST:PORT", got 8080', 1, true))
    local long = err_of(config.app, { path = "/a", max_buffered = ("9"):rep(100) })
    assert.truthy(long:find('got string "' .. ("9"):rep(40) .. '..."$'), long)
  end)

  it("suggest the closest field for a misspelled one", function()
    assert.are.equal("edgews.app: unknown field 'max_mesage_size' (did you mean 'max_message_size'?)",
      err_of(config.app, { path = "/a", max_mesage_size = 1 }))
    assert.are.equal("edgews.app: unknown field 'idel_timeout' (did you mean 'idle_timeout'?)",
      err_of(config.app, { path = "/a", idel_timeout = 1 }))
    assert.are.equal("edgews.app: unknown field 'protocol' (did you mean 'protocols'?)",
      err_of(config.app, { path = "/a", protocol = { "x" } }))
    assert.are.equal("edgews.app: compression: unknown field 'levle' (did you mean 'level'?)",
      err_of(config.app, { path = "/a", compression = { levle = 1 } }))
    assert.are.equal("edgews.app: heartbeat: unknown field 'intervall' (did you mean 'interval'?)",
      err_of(config.app, { path = "/a", heartbeat = { intervall = 1 } }))
    assert.are.equal("edgews.configure: unknown field 'log_levle' (did you mean 'log_level'?)",
      err_of(config.server, { log_levle = "info" }))
    assert.are.equal("edgews.configure: pubsub: unknown field 'max_queue' (did you mean 'max_queue_size'?)",
      err_of(config.server, { pubsub = { max_queue = 1 } }))
    assert.are.equal("edgews.configure: tls: unknown field 'certs' (did you mean 'cert'?)",
      err_of(config.server, { tls = { cert = "a", key = "b", certs = "c" } }))
  end)

  it("suggest nothing when no field is close, and name one bad field whatever the order", function()
    assert.are.equal("edgews.app: unknown field 'max_size'", err_of(config.app, { path = "/a", max_size = 1 }))
    assert.are.equal("edgews.app: unknown field 'handshake_timeout'",
      err_of(config.app, { path = "/a", handshake_timeout = 1 }))
    assert.are.equal("edgews.configure: unknown field 'port'", err_of(config.server, { port = 1 }))
    assert.are.equal("edgews.app: unknown field 'aaa'", err_of(config.app, { path = "/a", zzz = 1, aaa = 2 }))
  end)
end)

describe("edgews.config.static", function()
  local function err_of(...)
    local ok, err = pcall(config.static, ...)
    assert.is_false(ok)
    return tostring(err)
  end

  it("fills the defaults and drops a trailing '/' from the prefix", function()
    assert.are.same({ prefix = "/", dir = "public", cache_control = "no-cache", index = "index.html" },
      config.static("/", "public"))
    assert.are.equal("/assets", config.static("/assets/", "a").prefix)
    assert.are.equal("/a/b", config.static("/a/b", "a").prefix)
    local c = config.static("/s", "/srv/www", { cache_control = "public, max-age=3600", index = "home.htm" })
    assert.are.same({ prefix = "/s", dir = "/srv/www", cache_control = "public, max-age=3600",
                      index = "home.htm" }, c)
    c = config.static("/s", "d", { cache_control = false, index = false })
    assert.is_nil(c.cache_control)
    assert.is_nil(c.index)
  end)

  it("refuses prefixes that are not plain paths", function()
    for _, p in ipairs { "", "x", "/a//b", "/a/../b", "/..", "/./x", "/a b", "/a?b", "/a#b",
                         "/a%2fb", "/a\\b", "/a\nb", "/" .. ("x"):rep(256), 3, false } do
      assert.truthy(err_of(p, "d"):find("^edgews.static: prefix must be a path starting with '/'"),
        tostring(p))
    end
    assert.truthy(err_of(3, "d"):find("got number 3$"))
  end)

  it("refuses a bad dir, opts and option values with the value shown", function()
    assert.are.equal("edgews.static: dir must be a directory path (relative to the script's "
      .. "directory), got nil", err_of("/", nil))
    assert.truthy(err_of("/", ""):find('got string ""', 1, true))
    assert.truthy(err_of("/", "a\0b"):find("dir must be", 1, true))
    assert.truthy(err_of("/", "d", "x"):find('opts must be a table { cache_control =, index = }, got string "x"', 1, true))
    assert.truthy(err_of("/", "d", { cache_control = 3 }):find("cache_control must be a header value", 1, true))
    assert.truthy(err_of("/", "d", { cache_control = "a\r\nX: y" }):find("cache_control must be", 1, true))
    assert.truthy(err_of("/", "d", { cache_control = "" }):find("cache_control must be", 1, true))
    for _, i in ipairs { "", "a/b", ".index.html", "a\\b", 1, true } do
      assert.truthy(err_of("/", "d", { index = i }):find("index must be a file name", 1, true), tostring(i))
    end
  end)

  it("suggests the closest option for a misspelled one", function()
    assert.are.equal("edgews.static: unknown field 'cache_contrl' (did you mean 'cache_control'?)",
      err_of("/", "d", { cache_contrl = "x" }))
    assert.are.equal("edgews.static: unknown field 'indx' (did you mean 'index'?)",
      err_of("/", "d", { indx = "x" }))
    assert.are.equal("edgews.static: unknown field 'max_path'", err_of("/", "d", { max_path = 9 }))
  end)
end)

describe("edgews.config.valid_close_code", function()
  it("accepts exactly the codes an application may send (RFC 6455 7.4)", function()
    for _, code in ipairs({ 1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4000, 4999 }) do
      assert.is_true(config.valid_close_code(code), tostring(code))
    end
    for _, code in ipairs({ 0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 1000.5, "1000" }) do
      assert.is_false(config.valid_close_code(code), tostring(code))
    end
  end)
end)
