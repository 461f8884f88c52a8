-- Unit specs for lua/edgews/paramuse.lua: whether a function can read a parameter,
-- from its bytecode. The router skips building a message's body only for handlers
-- this says false for, so every way of reading the parameter must say true.
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local paramuse = require "edgews.paramuse"

describe("edgews.paramuse", function()
  it("is false for handlers that never touch the parameter", function()
    local never = {
      function(socket, body, ctx) socket:send(ctx.raw) end,
      function(socket, body, ctx) local f = function() return ctx end; f() end,
      function(s, b) end,
      function(s) end,
      function() end,
      function(s, b, c) c.n = (c.n or 0) + 1; return s:send("x") end,
      function(s, b, c) for i = 1, 3 do c[i] = function() return i end end end,
    }
    for i, fn in ipairs(never) do
      assert.is_false(paramuse.reads(fn, 2), "case " .. i)
    end
  end)

  it("is true for every way of reading it", function()
    local reads = {
      function(socket, body, ctx) socket:send(body.x) end,
      function(socket, body, ctx) local x = function() return body end end,
      function(socket, body) return body end,
      function(s, b) return s, b end,
      function(s, ...) end,
      function(s, b, c) c(b) end,
      function(s, b, c) print(s, b) end,
      function(s, b, c) return print(s, b) end,
      function(s, b, c) if b then end end,
      function(s, b, c) local t = { b } end,
      function(s, b, c) local t = { x = b } end,
      function(s, b, c) c.x = b end,
      function(s, b, c) c[b] = 1 end,
      function(s, b, c) return s .. b end,
      function(s, b, c) return b .. s end,
      function(s, b, c) for k, v in pairs(b) do end end,
      function(s, b, c) b = b or {} end,
      function(s, b, c) return #b end,
      function(s, b, c) return -b end,
      function(s, b, c) return not b end,
      function(s, b, c) return b == 1 end,
      function(s, b, c) return 1 < b end,
      function(s, b, c) return b ~= nil end,
      function(s, b, c) local x = b.type end,
      function(s, b, c) s:send(b) end,
      function(s, b, c) return s(b) end,
      function(s, b, c) b() end,
      function(s, b, c) b:m() end,
      function(s, b, c) for i = b, 2 do end end,
      function(s, b, c) for i = 1, 2, b do end end,
      function(s, b, c) local x = s and b end,
      function(s, b, c) local a, bb = c, b end,
      function(s, b, c) while b do end end,
      function(s, b, c) c(function() b.x = 1 end) end,
      function(s, b, c) c(function() return function() return b end end) end,
      function(s, b, c) for i = 1, 2 do c(function() return b end) end end,
      function(s, b, c) b = 1; c(b) end, -- written first: still counted (errs one way)
      print, -- a C function
    }
    for i, fn in ipairs(reads) do
      assert.is_true(paramuse.reads(fn, 2), "case " .. i)
    end
  end)

  it("counts a closure as reading when the names are stripped", function()
    local fn = function(s, b, c) c(function() return c end) end
    assert.is_false(paramuse.reads(fn, 2))
    local stripped = loadstring(string.dump(fn, true))
    assert.is_true(paramuse.reads(stripped, 2))
    local plain = loadstring(string.dump(function(s, b, c) c.x = 1 end, true))
    assert.is_false(paramuse.reads(plain, 2))
  end)

  it("looks at the parameter asked for", function()
    local fn = function(socket, body, ctx) socket:send(ctx.raw) end
    assert.is_true(paramuse.reads(fn, 1))
    assert.is_false(paramuse.reads(fn, 2))
    assert.is_true(paramuse.reads(fn, 3))
    assert.is_false(paramuse.reads(fn, 4))
  end)
end)
