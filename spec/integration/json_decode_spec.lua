-- The router's JSON decoding inside the server (edgews.json: the core's decoder, with
-- lua-cjson for everything it does not handle) against lua-cjson: the handler's body
-- is the table cjson builds (numbers, unicode, escapes, empty arrays and objects,
-- null, the order of the fields), and invalid JSON gets exactly the invalid_json
-- reply cjson's error message makes (spec/apps/json_decode_app.lua).
local helper = require "spec.helper"
local cjson = require "cjson"
local cjson_safe = require "cjson.safe"

describe("router JSON decoding #integration #lua", function()
  local srv, url, c, id
  setup(function()
    srv = helper.start_server { app = helper.app "json_decode_app.lua", workers = 1 }
    url = srv:url "/j"
    c = helper.app_client()
    id = "j1"
    local r = c:call { op = "open", id = id, url = url }
    assert.are.equal(101, r.status, cjson.encode(r))
  end)
  teardown(function() helper.cleanup() end)

  local function ask(text)
    c:call { op = "send", id = id, data = text }
    local r = c:call { op = "recv", id = id, n = 1, timeout = 5 }
    assert.are.equal(1, #r.messages, cjson.encode(r))
    return r.json[1], r.messages[1]
  end

  it("builds the tables lua-cjson builds", function()
    local bodies = {
      '{"type":"show"}',
      '{"type":"show","a":[],"b":{},"c":[[]],"d":[{}],"e":null,"f":[1,null,3]}',
      '{"type":"show","n":[0,-0,1,-1,123456789012345,1234567890123456,9007199254740993,'
        .. '1.5,-1.5e10,1E2,1e-7,0.1,1e400,-1e400,4.9e-324,1e-400,0e0,-0.0]}',
      '{"type":"show","s":"caf\\u00e9 \\u20AC \\ud83d\\ude00 \\"q\\" \\\\ \\/ \\b\\f\\n\\r\\t",'
        .. '"u":"café € 😀","k":"\\u0041\\u07ff\\u0800\\uffff"}',
      '{"type":"show","b":1,"a":2,"c":3,"e":4,"d":5,"f":6,"g":7,"h":8,"i":9,"a":10}',
      ' \n{ "type" : "show" , "t" : true , "f" : false , "" : 1 } \t',
      '{"type":"show","hex":0x10,"inf":inf,"nan":nan,"z":01,"p":1.}', -- cjson's leniencies: still cjson's
      '{"type":"show","deep":' .. string.rep("[", 80) .. string.rep("]", 80) .. '}',
    }
    for _, text in ipairs(bodies) do
      local reply, raw = ask(text)
      assert.are.equal("shown", reply.type, raw)
      assert.are.equal(reply.cjson, reply.router, text)
      assert.is_true(reply.fast, "the core's decoder is in use")
    end
  end)

  it("answers invalid JSON with cjson's own error message", function()
    local texts = { '{"type":"show",', "hello", "", "{'a':1}", '{"type":"show","a":1,}',
      '[1,]', '{"type":"show","s":"\\x"}', '{"type":"show","s":"\\ud83d"}', '1.5x',
      '{"a":1]', string.rep("[", 1001) .. string.rep("]", 1001) }
    for _, text in ipairs(texts) do
      local _, err = cjson_safe.decode(text)
      assert.is_string(err, text)
      local expected = "invalid JSON: " .. err
      if #expected > #"invalid JSON: " + 64 then
        expected = "invalid JSON: " .. err:sub(1, 64) .. "..."
      end
      local reply, raw = ask(text)
      assert.are.equal("error", reply.type, raw)
      assert.are.equal("invalid_json", reply.error, raw)
      assert.are.equal(expected, reply.message, text)
    end
  end)
end)
