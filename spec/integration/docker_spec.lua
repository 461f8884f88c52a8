-- The Dockerfile (issue 10, README "Deploying", Docker). Without a Docker daemon
-- (this machine has the client only) the image itself cannot be built here, so the
-- spec checks what the image depends on: both stages are Debian 12 slim; the build
-- stage installs a subset of scripts/deps's packages, each one a package of this
-- Debian 12 machine; the run-time stage installs the package of every shared library
-- the built edgews-lua links (and lua-cjson, which its modules require); the files
-- the build stage copies are enough to configure the build and build a target; the
-- install it copies is the `cmake --install` layout; the image runs as a non-root
-- user; and its ENTRYPOINT + CMD, run against an installation in a temporary prefix,
-- start a server whose admin port passes the HEALTHCHECK command. When `docker info`
-- answers, the image is also built and run.
local helper = require "spec.helper"
package.path = helper.ROOT .. "/lua/?.lua;" .. package.path
local testing = require "edgews.testing"
local cjson = require "cjson"

local function q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function sh(cmd)
  local ok = os.execute(cmd)
  return ok == 0 or ok == true
end

local function capture(cmd)
  local p = io.popen(cmd .. " 2>/dev/null")
  local out = p:read("*a")
  p:close()
  return out
end

-- { { from = "debian:12-slim AS build", { cmd = "RUN", args = "..." }, ... }, ... }
local function parse_dockerfile(text)
  text = text:gsub("\\\n", " ")
  local stages = {}
  for line in text:gmatch("[^\n]+") do
    if not line:find("^%s*#") and line:find("%S") then
      local cmd, args = line:match("^%s*(%u+)%s+(.*)$")
      assert(cmd, "not an instruction: " .. line)
      if cmd == "FROM" then
        stages[#stages + 1] = { from = args }
      else
        assert(#stages > 0, cmd .. " before FROM")
        table.insert(stages[#stages], { cmd = cmd, args = args })
      end
    end
  end
  return stages
end

local function instructions(stage, cmd)
  local out = {}
  for _, i in ipairs(stage) do if i.cmd == cmd then out[#out + 1] = i.args end end
  return out
end

-- the packages an `apt-get install` in the stage's RUN lines names
local function apt_packages(stage)
  local pkgs = {}
  for _, run in ipairs(instructions(stage, "RUN")) do
    local list = run:match("apt%-get install%s+(.-)%s*&&") or run:match("apt%-get install%s+(.*)$")
    if list then
      for w in list:gmatch("%S+") do
        if not w:find("^%-") then pkgs[#pkgs + 1] = w end
      end
    end
  end
  return pkgs
end

local function set(list)
  local s = {}
  for _, v in ipairs(list) do s[v] = true end
  return s
end

local DOCKERFILE = helper.read_file(helper.ROOT .. "/Dockerfile")

describe("the Dockerfile #integration", function()
  local stages = parse_dockerfile(assert(DOCKERFILE, "no Dockerfile"))
  local build, run = stages[1], stages[#stages]

  after_each(function()
    testing.cleanup()
    helper.cleanup()
  end)

  it("is two stages on Debian 12 slim; the image runs as a non-root user", function()
    assert.are.equal(2, #stages)
    assert.are.equal("debian:12-slim AS build", build.from)
    assert.are.equal("debian:12-slim", run.from)
    local user = instructions(run, "USER")
    assert.are.same({ "edgews" }, user)
    assert.truthy(table.concat(instructions(run, "RUN"), "\n"):find("useradd %-%-system [^\n]*edgews"))
    assert.are.same({ "--from=build /opt/edgews-lua/ /usr/local/" },
      { instructions(run, "COPY")[1] })
  end)

  it("installs packages of this Debian 12: for the build, scripts/deps's; at run time, every library's", function()
    assert.truthy(helper.read_file("/etc/debian_version"):find("^12%."), "not Debian 12")
    local deps = helper.read_file(helper.ROOT .. "/scripts/deps"):match("APT_PACKAGES=%((.-)%)")
    local in_deps = {}
    for w in deps:gmatch("%S+") do in_deps[w] = true end
    local build_pkgs = apt_packages(build)
    assert.is_true(#build_pkgs >= 5)
    for _, p in ipairs(build_pkgs) do
      assert.is_true(in_deps[p] ~= nil, p .. " is not in scripts/deps's APT_PACKAGES")
      assert.truthy(sh("dpkg-query -W " .. q(p) .. " >/dev/null 2>&1"), p .. " is not a package here")
    end
    local run_pkgs = set(apt_packages(run))
    for p in pairs(run_pkgs) do
      assert.truthy(sh("dpkg-query -W " .. q(p) .. " >/dev/null 2>&1"), p .. " is not a package here")
    end
    -- every shared library of the binary comes from a run-time package (or the base image)
    local base = { libc6 = true, ["libgcc-s1"] = true }
    local libs = 0
    for lib in capture("ldd " .. q(helper.BIN)):gmatch("\n?%s*([%w%._%-+]+%.so[%.%d]*) =>") do
      if not lib:find("^libasan") and not lib:find("^libubsan") and not lib:find("^libstdc") then
        local owner
        for line in capture("dpkg -S " .. q("*/" .. lib)):gmatch("[^\n]+") do
          local pkg, path = line:match("^([^:]+):[^:]*: (.+)$")
          if pkg and path:sub(-#lib - 1) == "/" .. lib then owner = pkg end
        end
        assert(owner, "no package owns " .. lib)
        assert.is_true(run_pkgs[owner] or base[owner] or false,
          lib .. " comes from " .. owner .. ", which the run-time stage does not install")
        libs = libs + 1
      end
    end
    assert.is_true(libs >= 7, "ldd found " .. libs .. " libraries")
    -- the Lua modules require cjson: its C module's package is there too
    local cj = capture("dpkg -S " .. q("*/lua/5.1/cjson.so")):match("^([^:]+):")
    assert.is_true(run_pkgs[cj] or false, "cjson.so comes from " .. tostring(cj))
  end)

  it("copies enough of the tree to configure the build and build with it", function()
    local dir = helper.tmpdir() .. "/src"
    assert(sh("mkdir -p " .. q(dir)))
    for _, c in ipairs(instructions(build, "COPY")) do
      local words = {}
      for w in c:gmatch("%S+") do words[#words + 1] = w end
      local dest = table.remove(words)
      for _, src in ipairs(words) do
        local target = dest == "./" and dir .. "/" or dir .. "/" .. dest
        assert(sh(("cp -r %s %s"):format(q(helper.ROOT .. "/" .. src), q(target))), "COPY " .. c)
      end
    end
    local runs = instructions(build, "RUN")
    local steps = runs[#runs]
    assert.truthy(steps:find("cmake --install build --prefix /opt/edgews-lua", 1, true), steps)
    -- configure exactly as the Dockerfile does, then build the small target
    local configure = steps:match("^(cmake %-S %. %-B build [^&]*)")
    assert(configure, steps)
    assert(sh(("cd %s && %s >/dev/null"):format(q(dir), configure)), "configure failed")
    assert(sh(("cd %s && cmake --build build --target edgews_ratelimit >/dev/null 2>&1"):format(q(dir))),
      "build failed")
  end)

  it("its ENTRYPOINT and CMD serve the app, and the HEALTHCHECK passes", function()
    local entry = cjson.decode(instructions(run, "ENTRYPOINT")[1])
    local cmd = cjson.decode(instructions(run, "CMD")[1])
    assert.are.equal("edgews-lua", entry[1])
    -- the installation the image copies, in a temporary prefix
    local prefix = helper.tmpdir() .. "/usr-local"
    local build_dir = helper.BIN:match("^(.*)/[^/]*$")
    assert(sh(("cmake --install %s --prefix %s >/dev/null"):format(q(build_dir), q(prefix))))
    -- the image's paths and ports, swapped for temporary ones
    local data, app = helper.tmpdir(), helper.tmpdir() .. "/app.lua"
    local copied = instructions(run, "COPY")[2]
    assert.are.equal("examples/echo/app.lua /app/app.lua", copied)
    assert(sh(("cp %s %s"):format(q(helper.ROOT .. "/examples/echo/app.lua"), q(app))))
    local args = {}
    for i = 2, #entry do
      local a = entry[i]
      if a == "0.0.0.0:8080" or a == "0.0.0.0:9090" then a = "127.0.0.1:0" end
      if a == "/data" then a = data end
      args[#args + 1] = a
    end
    assert.are.same({ "/app/app.lua" }, cmd)
    local srv = assert(testing.start { bin = prefix .. "/bin/edgews-lua", app = app, data = false,
                                       args = args, admin = true })
    local ws = assert(testing.connect(srv:url "/echo"))
    assert(ws:send("hi"))
    assert.are.equal("hi", (ws:receive()))
    -- the HEALTHCHECK's command, against the admin port
    local hc = cjson.decode(DOCKERFILE:gsub("\\\n", " "):match("HEALTHCHECK[^\n]-CMD (%b[])"))
    assert.are.equal("bash", hc[1])
    local script = hc[3]:gsub("127%.0%.0%.1/9090", "127.0.0.1/" .. srv.admin_port)
    assert.truthy(sh("bash -c " .. q(script)), "HEALTHCHECK failed")
    assert.is_true(srv:alive())
  end)

  it("builds and runs as an image when a Docker daemon answers", function()
    if not sh("timeout 10 docker info >/dev/null 2>&1") then
      pending("no Docker daemon on this machine: the image is not built here")
      return
    end
    local tag = "edgews-lua-spec:" .. tostring(require("posix.unistd").getpid())
    assert(sh(("cd %s && docker build -q -t %s . >/dev/null"):format(q(helper.ROOT), tag)), "docker build failed")
    finally(function() sh("docker rmi -f " .. tag .. " >/dev/null 2>&1") end)
    local out = capture("docker run --rm --entrypoint id " .. tag .. " -u")
    assert.are_not.equal("0", (out:gsub("%s", "")))
  end)
end)
