-- A full disk under the server (--data DIR, --workers 2): a publish or a
-- notification that cannot be committed returns nil, err to the script, is never
-- delivered, nothing acknowledged is lost, and once the space is back publishing
-- works again with offsets that carry on where they stopped, also across a
-- restart. App: spec/apps/realtime_app.lua.
--
-- Two ways to take the space away; each runs where the machine allows it, and
-- "fsize" needs no privilege, so the spec never degrades to nothing:
--   tmpfs  the data directory is an 8 MiB tmpfs mounted in a private mount
--          namespace held by a sleeping process (root with CAP_SYS_ADMIN); the
--          server runs in it through nsenter; a filler file takes every free byte
--          (ENOSPC: "storage full") and is deleted to give the space back. The
--          mount vanishes with the processes, whatever happens to the spec.
--   fsize  prlimit lowers the running server's RLIMIT_FSIZE just above its files'
--          sizes (writes past it fail with EFBIG: "storage I/O error"; the server
--          ignores SIGXFSZ) and raises it again.
local helper = require "spec.helper"
local cjson = require "cjson"

local APP = helper.app "realtime_app.lua"

-- Runs argv to completion; true when it exited 0.
local function run(argv, timeout)
  local p = helper.spawn(argv)
  local done = p:finish(timeout or 10)
  if not done then p:kill(0) end
  return done and p.how == "exited" and p.code == 0, p:stderr()
end

local function file_size(path)
  local f = io.open(path, "rb")
  if not f then return 0 end
  local n = f:seek("end")
  f:close()
  return n
end

-- A scripted client bound to a server (tests/clients/app_client.py).
local function client(srv)
  local c = helper.app_client()
  local n = 0
  local api = {}
  function api.open(user)
    n = n + 1
    local id = "c" .. n
    local r = c:call { op = "open", id = id, url = srv:url("/rt?user=" .. (user or "anon")) }
    assert.are.equal(101, r.status, cjson.encode(r))
    return id
  end
  function api.recv(id, count, timeout)
    local r = c:call { op = "recv", id = id, n = count or 1, timeout = timeout or 5 }
    return r.json, r
  end
  function api.send(id, t) c:call { op = "send", id = id, data = cjson.encode(t) } end
  function api.call(id, t, timeout)
    api.send(id, t)
    return api.recv(id, 1, timeout)[1]
  end
  return api
end

-- Each method: setup() -> ctx or nil, why; start(ctx, args) -> server;
-- take(ctx, srv); give(ctx, srv).
local methods = {}

methods.tmpfs = {
  error = "storage full",
  setup = function()
    local dir = helper.tmpdir()
    local holder = helper.spawn { "unshare", "--mount", "--propagation", "private", "--",
      "sh", "-c", 'mount -t tmpfs -o size=8m,mode=0700 ews-full "$1" && echo ready && exec sleep 100000',
      "sh", dir }
    local line = holder:read_line(10)
    if line ~= "ready" then
      local why = holder:stderr()
      holder:kill(0)
      return nil, "cannot mount a tmpfs in a private mount namespace (needs root with "
        .. "CAP_SYS_ADMIN): " .. why
    end
    return { dir = dir .. "/data", mnt = dir, ns = { "nsenter", "-t", tostring(holder.pid), "-m", "--" },
             holder = holder }
  end,
  start = function(ctx, args)
    return helper.start_server { app = APP, workers = 2, args = args, wrap = ctx.ns }
  end,
  take = function(ctx)
    -- cat stops at ENOSPC (exit status 1): the filesystem is full.
    local argv = { "sh", "-c", 'cat /dev/zero > "$1/filler"; test -s "$1/filler"', "sh", ctx.mnt }
    local full = { unpack(ctx.ns) }
    for _, a in ipairs(argv) do full[#full + 1] = a end
    assert(run(full), "could not fill the tmpfs")
  end,
  give = function(ctx)
    local full = { unpack(ctx.ns) }
    for _, a in ipairs { "rm", ctx.mnt .. "/filler" } do full[#full + 1] = a end
    assert(run(full), "could not remove the filler")
  end,
}

methods.fsize = {
  error = "storage I/O error",
  setup = function()
    if not run { "prlimit", "--version" } then return nil, "prlimit (util-linux) is missing" end
    return { dir = helper.tmpdir() .. "/data" }
  end,
  start = function(_, args)
    return helper.start_server { app = APP, workers = 2, args = args }
  end,
  take = function(ctx, srv)
    local max = 0
    for _, f in ipairs { ctx.dir .. "/edgews.db", ctx.dir .. "/edgews.db-wal", srv.stderr_path } do
      max = math.max(max, file_size(f))
    end
    local limit = max + 32 * 1024
    assert(run { "prlimit", "--pid", tostring(srv.pid), ("--fsize=%d:unlimited"):format(limit) })
  end,
  give = function(_, srv)
    assert(run { "prlimit", "--pid", tostring(srv.pid), "--fsize=unlimited:unlimited" })
  end,
}

local available = {}
local ran = 0

describe("a full disk under --data #integration #realtime #diskfull", function()
  after_each(function() helper.cleanup() end)

  for _, name in ipairs { "tmpfs", "fsize" } do
    local m = methods[name]
    it(("(%s) refuses what it cannot commit, loses nothing acknowledged, recovers"):format(name), function()
      local ctx, why = m.setup()
      if not ctx then
        -- Printed, not silent; fsize must always be available.
        assert.are_not.equal("fsize", name, why)
        print(("\n  disk_full_spec: %s not available here: %s"):format(name, why))
        return
      end
      available[#available + 1] = name
      local args = { "--drain-timeout", "0.5", "--data", ctx.dir }
      local srv = m.start(ctx, args)
      local c = client(srv)
      local sub, pub = c.open "sam", c.open "pat"
      local r = c.call(sub, { type = "subscribe", topic = "df" })
      assert.are.equal("subscribed", r.type, cjson.encode(r))

      local acked, nids = {}, {}   -- acked[i] = { offset, n }
      local big = ("x"):rep(3000)  -- every message needs fresh pages
      local n = 0
      local function publish()
        n = n + 1
        local res = c.call(pub, { type = "publish", topic = "df", data = { n = n, pad = big } })
        assert(res, "no answer to a publish; the server's log:\n" .. srv:log())
        if res.type == "published" then
          acked[#acked + 1] = { res.offset, n }
          return true
        end
        assert.are.equal("error", res.type, cjson.encode(res))
        return false, res.error
      end
      local function notify(tag)
        local res = c.call(pub, { type = "notify", user = "dora", data = { tag = tag, pad = big } })
        assert(res, "no answer to a notification; the server's log:\n" .. srv:log())
        if res.type == "stored" then
          nids[#nids + 1] = res.id
          return true
        end
        return false, res.error
      end
      for _ = 1, 10 do assert.is_true(publish()) end
      for i = 1, 2 do assert.is_true(notify("before " .. i)) end

      m.take(ctx, srv)
      -- Until 20 publishes and 3 notifications were refused (a checkpoint can free
      -- WAL space now and then, so some may still go through).
      local refused, nrefused, errors = 0, 0, {}
      for _ = 1, 400 do
        if refused >= 20 and nrefused >= 3 then break end
        local ok, err = publish()
        if not ok then
          refused = refused + 1
          errors[err] = true
        end
        if refused > 0 and nrefused < 3 then
          local nok, nerr = notify("while full")
          if not nok then
            nrefused = nrefused + 1
            errors[nerr] = true
          end
        end
      end
      assert.is_true(refused >= 20, "publishes refused: " .. refused)
      assert.is_true(nrefused >= 3, "notifications refused: " .. nrefused)
      assert.are.same({ [m.error] = true }, errors)
      -- The server keeps serving: reads work while writes fail.
      local h = c.call(pub, { type = "history", topic = "df", limit = 0 })
      assert.are.equal(#acked, h.last_offset)

      m.give(ctx, srv)
      local last = #acked
      for _ = 1, 3 do assert.is_true(publish()) end
      assert.are.equal(last + 3, acked[#acked][1]) -- the offsets carry on: no gap
      assert.is_true(notify "after")

      -- The subscriber got exactly the acknowledged messages, in order: the last one
      -- was published after every refused one, so nothing refused can come later.
      local msgs = c.recv(sub, #acked, 10)
      assert.are.equal(#acked, #msgs)
      assert.are.same({}, c.recv(sub, 1, 0.3))
      for i, a in ipairs(acked) do
        assert.are.same({ "pub", a[1], a[2] }, { msgs[i].type, msgs[i].offset, msgs[i].data.n })
        assert.are.equal(i, a[1])
      end

      -- One log line when writes started failing and one when they worked again,
      -- not one per refused request.
      local log = srv:log()
      assert.truthy(log:find("store: writes are failing", 1, true), log)
      assert.truthy(log:find("store: writes work again", 1, true), log)
      local lines = 0
      for _ in log:gmatch("ERROR %[store%]") do lines = lines + 1 end
      assert.is_true(lines <= 6, "store error lines: " .. lines .. "\n" .. log)
      assert.are.equal(nil, log:find("SIGXFSZ", 1, true))

      -- A restart keeps every acknowledged message and notification.
      srv:signal "TERM"
      local exited, how, code = srv:wait(10)
      assert.are.same({ true, "exited", 0 }, { exited, how, code })
      srv = m.start(ctx, args)
      c = client(srv)
      local again = c.open "sam"
      c.call(again, { type = "whoami" }) -- settled: nothing pending for sam
      c.send(again, { type = "subscribe", topic = "df", since_offset = 0 })
      -- The replay comes before the subscribe's answer.
      msgs = c.recv(again, #acked, 10)
      assert.are.equal(#acked, #msgs)
      for i, a in ipairs(acked) do
        assert.are.same({ "pub", a[1], a[2] }, { msgs[i].type, msgs[i].offset, msgs[i].data.n })
      end
      r = c.recv(again, 1)[1]
      assert.are.same({ "subscribed", true, #acked }, { r.type, r.recovered, r.replayed })
      local list = c.call(again, { type = "list", user = "dora", limit = 1000 })
      local ids = {}
      for _, item in ipairs(list.items) do ids[#ids + 1] = item.id end
      table.sort(ids)
      table.sort(nids)
      assert.are.same(nids, ids)
      ran = ran + 1
      print(("\n  disk_full_spec (%s): %d publishes and %d notifications acknowledged, "
        .. "%d and %d refused"):format(name, #acked, #nids, refused, nrefused))
    end)
  end

  it("ran at least the unprivileged method", function()
    assert.is_true(ran >= 1, "methods available: " .. table.concat(available, ", "))
  end)
end)
