-- The shape of lua/edgews: modules depend on each other in one direction only.
--
-- Every module is loaded, one at a time in a fresh state and then all together,
-- under a require tracer that records who requires whom (at load time and later,
-- from the caller's source file) and fails on a module required while it is still
-- loading. A static scan of each file's require "..." calls adds the lazy requires
-- that no load runs. The union must have no cycle, and no module may gain fields
-- after it has loaded (hooks are registered through functions, or passed in, not
-- set on another module's table). The C core is replaced by a permissive double
-- of edgews.core, so this runs without a server.
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path

local real_require = require

local function core_double()
  local core = {
    error_names = { [-4] = "CLOSED" }, errors = {},
    DEBUG = 0, INFO = 1, WARN = 2, ERROR = 3,
  }
  return setmetatable(core, { __index = function() return function() end end })
end

-- Every module of lua/edgews: name -> file.
local function modules()
  local list = {}
  local p = assert(io.popen("ls lua/edgews/*.lua"))
  for file in p:lines() do
    local base = file:match("^lua/edgews/(.+)%.lua$")
    list[#list + 1] = base == "init" and "edgews" or "edgews." .. base
  end
  p:close()
  table.sort(list)
  local files = {}
  for _, name in ipairs(list) do files[name] = assert(package.searchpath(name, package.path)) end
  return list, files
end

local function fresh_state()
  for k in pairs(package.loaded) do
    if k == "edgews" or k:match("^edgews%.") then package.loaded[k] = nil end
  end
  package.preload["edgews.core"] = core_double
end

-- A tracer: edges[from][to] for every require it sees; cycles found while loading;
-- the keys of each module's table right after it loaded.
local function tracer(files)
  local by_source = {}
  for name, file in pairs(files) do by_source["@" .. file] = name end
  local t = { edges = {}, cycles = {}, fields = {} }
  local loading = {}
  function t.require(name)
    local info = debug.getinfo(2, "S")
    local from = (info and by_source[info.source]) or loading[#loading]
    if from then
      t.edges[from] = t.edges[from] or {}
      t.edges[from][name] = true
    end
    for i, m in ipairs(loading) do -- (package.loaded holds a sentinel meanwhile)
      if m == name then
        local path = {}
        for j = i, #loading do path[#path + 1] = loading[j] end
        path[#path + 1] = name
        t.cycles[#t.cycles + 1] = table.concat(path, " -> ")
        error("require cycle: " .. t.cycles[#t.cycles], 2)
      end
    end
    if package.loaded[name] ~= nil then return package.loaded[name] end
    loading[#loading + 1] = name
    local ok, res = pcall(real_require, name)
    loading[#loading] = nil
    if not ok then error(res, 0) end
    if type(res) == "table" and not t.fields[name] then
      local keys = {}
      for k in pairs(res) do keys[k] = true end
      t.fields[name] = keys
    end
    return res
  end
  return t
end

local function with_tracer(t, fn)
  _G.require = t.require
  local ok, err = pcall(fn)
  _G.require = real_require
  if not ok then error(err, 0) end
end

-- require "x" / require("x") calls in a file's code (comments left out).
local function static_requires(file)
  local out = {}
  for line in io.lines(file) do
    local code = line:gsub("%-%-.*$", "")
    for name in code:gmatch("require%s*%(?%s*[\"']([%w_%.]+)[\"']") do out[name] = true end
  end
  return out
end

-- The first cycle in graph (name -> { name = true }) among `nodes`, as "a -> b -> a".
local function find_cycle(graph, nodes)
  local state, stack = {}, {}
  local function visit(n)
    state[n] = "open"
    stack[#stack + 1] = n
    for m in pairs(graph[n] or {}) do
      if nodes[m] then
        if state[m] == "open" then
          local path, on = {}, false
          for _, s in ipairs(stack) do
            if s == m then on = true end
            if on then path[#path + 1] = s end
          end
          path[#path + 1] = m
          return table.concat(path, " -> ")
        elseif not state[m] then
          local c = visit(m)
          if c then return c end
        end
      end
    end
    stack[#stack] = nil
    state[n] = "done"
  end
  local sorted = {}
  for n in pairs(nodes) do sorted[#sorted + 1] = n end
  table.sort(sorted)
  for _, n in ipairs(sorted) do
    if not state[n] then
      local c = visit(n)
      if c then return c end
    end
  end
end

describe("lua/edgews module graph", function()
  local list, files = modules()
  local nodes = {}
  for _, name in ipairs(list) do nodes[name] = true end

  after_each(function()
    _G.require = real_require
    package.preload["edgews._cycle_a"], package.preload["edgews._cycle_b"] = nil, nil
    fresh_state()
  end)

  it("finds every module", function()
    assert.is_true(#list >= 20, "found " .. #list .. " modules")
    assert.is_truthy(files.edgews:match("lua/edgews/init%.lua$"))
  end)

  it("the checks see a cycle when there is one", function()
    -- the graph check
    assert.are.equal("a -> b -> c -> a",
      find_cycle({ a = { b = true }, b = { c = true }, c = { a = true } }, { a = true, b = true, c = true }))
    assert.is_nil(find_cycle({ a = { b = true }, b = { c = true } }, { a = true, b = true, c = true }))
    -- the tracer, on two modules that require each other while they load
    fresh_state()
    -- (modules run in _G; this spec file runs in busted's environment)
    package.preload["edgews._cycle_a"] = function() return { b = _G.require "edgews._cycle_b" } end
    package.preload["edgews._cycle_b"] = function() return { a = _G.require "edgews._cycle_a" } end
    local t = tracer(files)
    local ok, err = pcall(with_tracer, t, function() require "edgews._cycle_a" end)
    assert.is_false(ok)
    assert.matches("require cycle: edgews._cycle_a %-> edgews._cycle_b %-> edgews._cycle_a", err)
  end)

  it("loads every module on its own, with no require cycle", function()
    local graph = {}
    for _, name in ipairs(list) do
      fresh_state()
      local t = tracer(files)
      local ok, err = pcall(with_tracer, t, function() require(name) end)
      assert(ok, "loading " .. name .. ": " .. tostring(err))
      assert.are.same({}, t.cycles)
      for from, tos in pairs(t.edges) do
        graph[from] = graph[from] or {}
        for to in pairs(tos) do graph[from][to] = true end
      end
    end
    for name, file in pairs(files) do
      graph[name] = graph[name] or {}
      for to in pairs(static_requires(file)) do graph[name][to] = true end
    end
    -- what the specs below rely on: the tracer saw the real edges
    assert.is_true(graph.edgews["edgews.loader"])
    assert.is_true(graph["edgews.pipeline"]["edgews.ratelimit"])
    assert.is_nil(find_cycle(graph, nodes))
    -- and nothing below the facade requires it
    for name, tos in pairs(graph) do
      if name ~= "edgews" then assert.is_nil(tos.edgews, name .. " requires the facade") end
    end
  end)

  it("no module sets fields of another (hooks are registered or passed in)", function()
    fresh_state()
    local t = tracer(files)
    with_tracer(t, function()
      require "edgews"
      for _, name in ipairs(list) do require(name) end
    end)
    for _, name in ipairs(list) do
      local now = package.loaded[name]
      local before = t.fields[name]
      assert(before, name .. " was not seen loading")
      local added = {}
      for k in pairs(now) do
        if not before[k] then added[#added + 1] = tostring(k) end
      end
      table.sort(added)
      assert.are.same({}, added, name .. " gained fields after it loaded: " .. table.concat(added, ", "))
    end
  end)
end)
