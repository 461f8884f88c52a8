-- compression.engine = "libdeflate" (shared mode): every message the server sends is
-- libdeflate's whole DEFLATE stream (its last block final) followed by an empty
-- non-final stored block with its 00 00 FF FF removed. The clients we are judged
-- with must read it byte-exact, many messages in a row on one connection: headless
-- Chromium (its own permessage-deflate, one inflate stream per connection), Node
-- `ws` and Python websockets; sizes 0, 1, 100, 5000, 65536, 70000, 200000, text with
-- multi-byte UTF-8 and incompressible binary, at levels 1 and 9. Python also looks
-- at the wire: the libdeflate apps' payloads hold a final block then the 00, the
-- zlib app's none. The option's load-time errors are in spec/unit/config_spec.lua;
-- here an app with a bad engine fails to load with its message.
-- Apps: spec/apps/deflate_engine_app.lua; clients: tests/clients/deflate_engine.{js,py}.
local helper = require "spec.helper"
local cjson = require "cjson"

local PMD_SHARED = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
local MESSAGES = 14 -- 7 sizes, text and binary

describe("compression engine libdeflate #integration", function()
  local srv, urls
  setup(function()
    srv = helper.start_server { app = helper.app "deflate_engine_app.lua", workers = 1 }
    urls = { srv:url "/ld", srv:url "/ld9", srv:url "/zlib" }
  end)
  teardown(function() helper.cleanup() end)

  local function run(argv)
    for _, u in ipairs(urls) do argv[#argv + 1] = u end
    local res, rc = helper.run(argv, 120)
    assert.are.equal(0, rc, cjson.encode(res))
    return res
  end

  it("headless Chromium reads every message byte-exact #browser", function()
    local res = run { helper.NODE, helper.CLIENTS .. "/deflate_engine.js", "--browser" }
    for _, u in ipairs(urls) do
      local r = res[u]
      assert.matches("HeadlessChrome", r.userAgent)
      assert.are.same({ extensions = PMD_SHARED, messages = MESSAGES, identical = true, code = cjson.null },
        { extensions = r.extensions, messages = r.messages, identical = r.identical, code = r.code }, u)
    end
  end)

  it("Node ws reads every message byte-exact", function()
    local res = run { helper.NODE, helper.CLIENTS .. "/deflate_engine.js", "--node" }
    for _, u in ipairs(urls) do
      assert.are.same({ extensions = "permessage-deflate", messages = MESSAGES, identical = true,
                        code = cjson.null }, res[u], u)
    end
  end)

  it("Python websockets reads every message byte-exact; the wire shows the engine", function()
    local res = run { helper.PYTHON, helper.CLIENTS .. "/deflate_engine.py" }
    -- every message is compressed (threshold 0); the two empty ones are the bare
    -- empty stored block in both engines, the 12 others libdeflate's shape
    for i, u in ipairs(urls) do
      assert.are.same({ extensions = PMD_SHARED, messages = MESSAGES, identical = true,
                        compressed = MESSAGES, final = i < 3 and MESSAGES - 2 or 0 }, res[u], u)
    end
  end)

  it("an app with an unknown engine or libdeflate in dedicated mode does not load", function()
    for _, case in ipairs {
      { '{ engine = "brotli" }', 'compression.engine must be "zlib" or "libdeflate", got string "brotli"' },
      { '{ mode = "dedicated", engine = "libdeflate" }',
        'compression.engine = "libdeflate" needs mode = "shared", got mode = "dedicated"' },
    } do
      local app = helper.tmpdir() .. "/bad_app.lua"
      helper.write_file(app, 'local edgews = require "edgews"\n'
        .. 'edgews.app { path = "/x", compression = ' .. case[1] .. ' }\n')
      local ok, err = pcall(helper.start_server, { app = app, timeout = 5 })
      assert.is_false(ok)
      assert.is_truthy(tostring(err):find("bad_app.lua:2: edgews.app: " .. case[2], 1, true), tostring(err))
    end
  end)
end)
