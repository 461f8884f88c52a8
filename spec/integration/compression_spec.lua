-- permessage-deflate: negotiation, compressed echo in shared and dedicated mode with
-- Python websockets, Node ws and the raw client (which inflates the server's frames
-- with exactly the agreed window and reads RSV1), the threshold, malformed compressed
-- frames, a decompression bomb, the --compression flag. Apps: spec/apps/deflate_app.lua.
-- RFC 7692 sections covered:
--   5, 5.1      negotiation: the first acceptable offer wins (several offers, several
--               header lines); offers with unknown, duplicate, malformed or out-of-
--               range parameters are declined; none acceptable -> no extension
--   6, 6.1      RSV1 marks a compressed message, on its first frame only; a compressed
--               message fragmented across frames; RSV1 on control frames is an error
--   6.2, 7.2.2  decompression (00 00 ff ff appended), with and without context takeover
--   7.1.1.1/2   server_no_context_takeover (shared mode, or asked by the client) and
--               client_no_context_takeover (asked by the app or by the client)
--   7.1.2.1/2   server_max_window_bits (configured window, capped by the client's
--               limit; the raw client inflates with exactly that window) and
--               client_max_window_bits (only in the response when offered)
--   7.2.1       compression; context takeover visible as a much shorter second reply
--   8           decompression bomb: limited to max_message_size (close 1009), memory
--               bounded
-- RFC 6455: 5.2 (RSV1 without an extension / on a control frame: 1002), 8.1 (UTF-8 is
-- checked on the inflated text: 1007; invalid DEFLATE data: 1007), 10.4 (1009).
local helper = require "spec.helper"
local cjson = require "cjson"

local SIZES = "0,125,126,65536,1048576"
local PMD = "permessage-deflate"

local function enc(v)
  local ok, s = pcall(cjson.encode, v)
  return ok and s or tostring(v)
end

local function last_json(out)
  local last
  for line in out:gmatch("[^\n]+") do
    if line:sub(1, 1) == "{" then last = line end
  end
  return last and cjson.decode(last) or { error = "no JSON line", stdout = out }
end

-- Runs client argvs concurrently (2 cores: keeps the spec short); returns results in
-- order, each with .rc.
local function run_all(argvs, timeout)
  local procs, results = {}, {}
  for i, argv in ipairs(argvs) do procs[i] = helper.spawn(argv) end
  for i, p in ipairs(procs) do
    local done, out = p:finish(timeout or 30)
    if not done then p:kill(0) end
    results[i] = last_json(out)
    results[i].rc = done and p.code or nil
    results[i].stderr = p:stderr():sub(1, 2000)
  end
  return results
end

-- raw_client.py argv for a case, with one --extensions per offer line.
local function raw_argv(url, case, offers, ...)
  local argv = helper.raw_argv("--url", url, "--case", case, ...)
  for _, o in ipairs(offers or {}) do
    argv[#argv + 1] = "--extensions"
    argv[#argv + 1] = o
  end
  return argv
end

-- The parameters of the permessage-deflate in a response header ({} for none of
-- them), or nil when the header does not agree permessage-deflate.
local function pmd_params(header)
  if header == nil or header == cjson.null then return nil end
  local exts = {}
  for ext in (header .. ","):gmatch("([^,]*),") do exts[#exts + 1] = ext end
  assert(#exts == 1, "more than one extension agreed: " .. header)
  local name = exts[1]:match("^%s*([^;%s]+)")
  assert(name == PMD, "unexpected extension in the 101: " .. header)
  local params = {}
  for prm in exts[1]:gmatch(";([^;]*)") do
    local k, v = prm:match("^%s*([^=%s]+)%s*=?%s*(.-)%s*$")
    assert(k, "malformed parameter in " .. header)
    assert(params[k] == nil, "duplicate parameter " .. k .. " in " .. header)
    params[k] = (v ~= "" and v:gsub('^"(.*)"$', "%1")) or true
  end
  return params
end

local function result_by_label(res, label)
  for _, r in ipairs(res.results or {}) do
    if r.label == label then return r end
  end
  error("no result " .. label .. " in " .. enc(res))
end

-- ---------------------------------------------------------------- negotiation table
-- path, offers (one header line each), then:
--   none = true           no extension in the 101 (and echo works uncompressed)
--   want = { p = v }      each parameter p must be in the response; v = true (no
--                         value), a string (exact value) or {max = n} (a value <= n)
--   allow = { p = v }     may be in the response (same value rules)
-- Any other parameter in the response fails the row.
local NEGOTIATION = {
  -- shared: the server always declares server_no_context_takeover
  { "/shared-no-cnct", { PMD }, want = { server_no_context_takeover = true } },
  { "/shared-no-cnct", { PMD .. "; client_max_window_bits" },
    want = { server_no_context_takeover = true }, allow = { client_max_window_bits = { max = 15 } } },
  { "/shared-no-cnct", { PMD .. "; client_max_window_bits=10" },
    want = { server_no_context_takeover = true }, allow = { client_max_window_bits = { max = 10 } } },
  { "/shared-no-cnct", { PMD .. "; server_no_context_takeover" },
    want = { server_no_context_takeover = true } },
  { "/shared-no-cnct", { PMD .. "; client_no_context_takeover" },
    want = { server_no_context_takeover = true }, allow = { client_no_context_takeover = true } },
  { "/shared-no-cnct", { PMD .. "; server_max_window_bits=10" },
    want = { server_no_context_takeover = true, server_max_window_bits = { max = 10 } } },
  { "/shared-no-cnct", { PMD .. "; server_max_window_bits=8; client_max_window_bits=9" },
    want = { server_no_context_takeover = true, server_max_window_bits = { max = 8 } },
    allow = { client_max_window_bits = { max = 9 } } },
  { "/shared-no-cnct", { PMD .. '; client_max_window_bits="10"' },
    want = { server_no_context_takeover = true }, allow = { client_max_window_bits = { max = 10 } } },
  { "/shared-cnct", { PMD },
    want = { server_no_context_takeover = true, client_no_context_takeover = true } },
  -- the first acceptable offer wins: in one header, and across header lines
  { "/shared-no-cnct", { PMD .. "; foo=1, " .. PMD .. "; server_max_window_bits=12" },
    want = { server_no_context_takeover = true, server_max_window_bits = { max = 12 } } },
  { "/shared-no-cnct", { PMD .. "; server_max_window_bits=7", PMD .. "; client_no_context_takeover" },
    want = { server_no_context_takeover = true }, allow = { client_no_context_takeover = true } },
  { "/shared-no-cnct", { "x-webkit-deflate-frame", PMD .. "; client_max_window_bits=11" },
    want = { server_no_context_takeover = true }, allow = { client_max_window_bits = { max = 11 } } },
  -- only unacceptable offers: an uncompressed connection
  { "/shared-no-cnct", { PMD .. "; server_max_window_bits=7" }, none = true },
  { "/shared-no-cnct", { PMD .. "; server_max_window_bits=16" }, none = true },
  { "/shared-no-cnct", { PMD .. "; server_max_window_bits" }, none = true },
  { "/shared-no-cnct", { PMD .. "; server_max_window_bits=010" }, none = true },
  { "/shared-no-cnct", { PMD .. "; client_max_window_bits=7" }, none = true },
  { "/shared-no-cnct", { PMD .. "; foo=1" }, none = true },
  { "/shared-no-cnct", { PMD .. "; foo" }, none = true },
  { "/shared-no-cnct", { PMD .. "; server_no_context_takeover; server_no_context_takeover" },
    none = true },
  { "/shared-no-cnct", { PMD .. "; client_no_context_takeover=1" }, none = true },
  { "/shared-no-cnct", { PMD .. "; server_max_window_bits=7", PMD .. "; foo=1" }, none = true },
  { "/shared-no-cnct", { "x-webkit-deflate-frame" }, none = true },
  -- dedicated: context takeover with the configured window
  { "/dedicated", { PMD }, want = {}, allow = { server_max_window_bits = "15" } },
  { "/dedicated", { PMD .. "; client_max_window_bits" }, want = {},
    allow = { server_max_window_bits = "15", client_max_window_bits = { max = 15 } } },
  { "/dedicated", { PMD .. "; server_no_context_takeover" },
    want = { server_no_context_takeover = true }, allow = { server_max_window_bits = "15" } },
  { "/dedicated", { PMD .. "; server_max_window_bits=11" },
    want = { server_max_window_bits = { max = 11 } } },
  { "/dedicated-1k", { PMD }, want = { server_max_window_bits = "10" } },
  { "/dedicated-1k", { PMD .. "; server_max_window_bits=9" }, want = { server_max_window_bits = "9" } },
  { "/dedicated-1k", { PMD .. "; server_max_window_bits=12" }, want = { server_max_window_bits = "10" } },
  { "/dedicated-8k-cnct", { PMD .. "; client_max_window_bits" },
    want = { client_no_context_takeover = true, server_max_window_bits = "13" },
    allow = { client_max_window_bits = { max = 15 } } },
  { "/dedicated", { PMD .. "; foo=1" }, none = true },
  -- compression off
  { "/off", { PMD }, none = true },
  { "/off-mode", { PMD .. "; client_max_window_bits" }, none = true },
}

local function value_ok(rule, got)
  if rule == true then return got == true end
  if type(rule) == "string" then return got == rule end
  local n = tonumber(got)
  return n ~= nil and tostring(got):match("^[1-9]%d*$") ~= nil and n >= 8 and n <= rule.max
end

local function check_row(row, res)
  local label = row[1] .. " offered " .. enc(row[2])
  helper.assert_ok(res, res.rc)
  local params = pmd_params(res.extensions)
  if row.none then
    assert(params == nil, label .. ": expected no extension, got " .. tostring(res.extensions))
    assert(res.reply_rsv1 == false, label .. ": RSV1 set without an extension")
    return
  end
  assert(params, label .. ": expected permessage-deflate, got no extension")
  for k, rule in pairs(row.want) do
    assert(params[k] ~= nil, label .. ": response lacks " .. k .. ": " .. res.extensions)
    assert(value_ok(rule, params[k]), label .. ": bad " .. k .. " in " .. res.extensions)
  end
  for k, v in pairs(params) do
    if row.want[k] == nil then
      local rule = row.allow and row.allow[k]
      assert(rule ~= nil, label .. ": response has a parameter it may not have (" .. k .. "): "
        .. res.extensions)
      assert(value_ok(rule, v), label .. ": bad " .. k .. " in " .. res.extensions)
    end
  end
end

describe("permessage-deflate #integration #lua", function()
  local srv

  setup(function()
    srv = helper.start_server { app = helper.app "deflate_app.lua" }
  end)
  teardown(function() helper.cleanup() end)
  after_each(function() helper.cleanup_clients() end)

  it("negotiates per RFC 7692 section 7 (" .. #NEGOTIATION .. " offers, shared/dedicated/off)",
    function()
      local argvs = {}
      for i, row in ipairs(NEGOTIATION) do
        argvs[i] = raw_argv(srv:url(row[1]), "pmd_negotiate", row[2])
      end
      local results = run_all(argvs)
      local failures = {}
      for i, row in ipairs(NEGOTIATION) do
        local ok, err = pcall(check_row, row, results[i])
        if not ok then failures[#failures + 1] = tostring(err) .. "\n  " .. enc(results[i]) end
      end
      assert(#failures == 0, #failures .. " of " .. #NEGOTIATION .. " rows failed:\n"
        .. table.concat(failures, "\n"))
    end)

  it("shared mode asks the client for client_no_context_takeover by default (README)", function()
    -- So that idle compressing connections hold no inflate state either (the
    -- README's memory table); dedicated mode keeps the client's context.
    local res = helper.assert_ok(helper.run(raw_argv(srv:url "/shared-default", "pmd_negotiate",
      { PMD })))
    local params = pmd_params(res.extensions)
    assert(params, "no extension agreed")
    assert.is_true(params.server_no_context_takeover)
    assert.is_true(params.client_no_context_takeover, res.extensions)
  end)

  describe("raw client (RSV1 and window sizes checked on every reply)", function()
    -- path, offers (nil: the raw client's default offer), checks on the pmd_echo
    -- result, extra raw client arguments
    local function echo_rows()
      return {
        { path = "/shared-no-cnct", check = function(res)
          -- threshold 64: shorter replies are uncompressed, longer ones compressed
          assert.is_false(result_by_label(res, "short_compressed").reply_rsv1)
          assert.is_false(result_by_label(res, "below_threshold").reply_rsv1)
          assert.is_false(result_by_label(res, "empty_compressed").reply_rsv1)
          assert.is_true(result_by_label(res, "at_threshold").reply_rsv1)
          local a = result_by_label(res, "text_4k_compressed")
          local b = result_by_label(res, "text_4k_again_plain")
          assert.is_true(a.reply_rsv1 and b.reply_rsv1)
          assert.is_true(a.reply_len < 4096 / 2, "4 KiB of text not compressed: " .. enc(a))
          -- no context takeover: the same message compresses to the same length
          assert.are.equal(a.reply_len, b.reply_len, "shared mode kept context: " .. enc(res.results))
          assert.is_true(result_by_label(res, "text_1m_compressed").reply_rsv1)
        end },
        { path = "/dedicated", check = function(res)
          assert.is_false(result_by_label(res, "below_threshold").reply_rsv1)
          assert.is_true(result_by_label(res, "at_threshold").reply_rsv1)
          local a = result_by_label(res, "text_4k_compressed")
          local b = result_by_label(res, "text_4k_again_plain")
          -- context takeover: the repeat refers back to the previous message
          assert.is_true(b.reply_len * 4 < a.reply_len,
            "no context takeover visible: " .. a.reply_len .. " then " .. b.reply_len)
        end },
        { path = "/dedicated", offers = { PMD .. "; server_no_context_takeover" },
          check = function(res)
            local a = result_by_label(res, "text_4k_compressed")
            local b = result_by_label(res, "text_4k_again_plain")
            assert.are.equal(a.reply_len, b.reply_len, "kept context although the client asked"
              .. " for server_no_context_takeover: " .. enc(res.results))
          end },
        { path = "/dedicated", offers = { PMD .. "; server_max_window_bits=9; client_max_window_bits=9" } },
        { path = "/dedicated-1k", check = function(res)
          local a = result_by_label(res, "text_4k_compressed")
          local b = result_by_label(res, "text_4k_again_plain")
          -- a 1 KiB window cannot reach back to the previous 4 KiB message
          assert.is_true(b.reply_len * 2 > a.reply_len, enc(res.results))
        end },
        { path = "/dedicated-8k-cnct", check = function(res)
          assert.is_true(pmd_params(res.extensions).client_no_context_takeover)
        end },
        { path = "/shared-no-cnct", offers = { PMD .. "; server_max_window_bits=8; client_max_window_bits=9" } },
        { path = "/shared-cnct", offers = { PMD } },
        { path = "/threshold-1000", args = { "--threshold", "1000" }, check = function(res)
          -- with --threshold 1000 the raw client's rows are 999 and 1000 bytes long
          assert.are.equal(999, result_by_label(res, "below_threshold").size)
          assert.is_false(result_by_label(res, "below_threshold").reply_rsv1)
          assert.is_true(result_by_label(res, "at_threshold").reply_rsv1)
          assert.is_true(result_by_label(res, "text_4k_compressed").reply_rsv1)
        end },
        { path = "/shared-default", check = function(res)
          -- default threshold 64
          assert.is_false(result_by_label(res, "below_threshold").reply_rsv1)
          assert.is_true(result_by_label(res, "at_threshold").reply_rsv1)
        end },
      }
    end

    it("echoes compressed and uncompressed messages: threshold, context takeover, windows",
      function()
        local rows = echo_rows()
        local argvs = {}
        for i, row in ipairs(rows) do
          argvs[i] = raw_argv(srv:url(row.path), "pmd_echo", row.offers, unpack(row.args or {}))
        end
        local results = run_all(argvs)
        local failures = {}
        for i, row in ipairs(rows) do
          local ok, err = pcall(function()
            helper.assert_ok(results[i], results[i].rc)
            if row.check then row.check(results[i]) end
          end)
          if not ok then
            failures[#failures + 1] = row.path .. " " .. enc(row.offers) .. ": " .. tostring(err)
              .. "\n  " .. enc(results[i])
          end
        end
        assert(#failures == 0, table.concat(failures, "\n"))
      end)

    it("reassembles a compressed message fragmented across frames (RSV1 on the first only)",
      function()
        local results = run_all {
          raw_argv(srv:url "/shared-no-cnct", "pmd_fragmented"),
          raw_argv(srv:url "/dedicated", "pmd_fragmented"),
          raw_argv(srv:url "/dedicated-8k-cnct", "pmd_fragmented"),
        }
        for _, res in ipairs(results) do
          helper.assert_ok(res, res.rc)
          assert.is_nil(res.continuation_with_rsv1, "server set RSV1 on a continuation frame")
        end
      end)

    it("a message that refers back beyond the agreed client_max_window_bits=8 is echoed"
      .. " whether it comes in one frame or in two (the verdict does not depend on the split)",
      function()
        local offers = { PMD .. "; client_max_window_bits=8" }
        local paths = { "/shared", "/shared-no-cnct", "/dedicated" }
        local argvs = {}
        for i, path in ipairs(paths) do
          argvs[i] = raw_argv(srv:url(path), "pmd_window_overreach", offers)
        end
        local results = run_all(argvs)
        local failures = {}
        for i, res in ipairs(results) do
          -- the offered client_max_window_bits=8 binds the client whatever the 101 says
          if not (res.ok == true and res.results and #res.results == 2) then
            failures[#failures + 1] = paths[i] .. ": " .. enc(res)
          end
        end
        assert(#failures == 0, table.concat(failures, "\n"))
      end)

    it("closes 1002 for RSV1 on ping, close and continuation frames; 1007 for bad DEFLATE"
      .. " and for invalid UTF-8 after inflating; 1002 for RSV1 without the extension",
      function()
        local cases = { pmd_rsv1_ping = 1002, pmd_rsv1_close = 1002, pmd_rsv1_continuation = 1002,
                        pmd_bad_deflate = 1007, pmd_bad_utf8 = 1007 }
        local argvs, expect = {}, {}
        for _, path in ipairs { "/shared-no-cnct", "/dedicated" } do
          for case, code in pairs(cases) do
            argvs[#argvs + 1] = raw_argv(srv:url(path), case)
            expect[#argvs] = { path, case, code }
          end
        end
        -- RSV1 on a connection that did not agree the extension (the app offers it)
        argvs[#argvs + 1] = raw_argv(srv:url "/shared", "rsv1")
        expect[#argvs] = { "/shared", "rsv1 (no offer)", 1002 }
        local results = run_all(argvs)
        local failures = {}
        for i, e in ipairs(expect) do
          local res = results[i]
          if not (res.ok == true and res.close_code == e[3]) then
            failures[#failures + 1] = ("%s %s: expected %d: %s"):format(e[1], e[2], e[3], enc(res))
          end
        end
        assert(#failures == 0, table.concat(failures, "\n"))
      end)
  end)

  describe("real clients", function()
    local PY_VARIANTS = {
      { "--compression", "deflate" },
      { "--pmd-server-no-context-takeover" },
      { "--pmd-client-no-context-takeover" },
      { "--pmd-server-max-window-bits", "10" },
      { "--pmd-client-max-window-bits", "10" },
      { "--pmd-client-max-window-bits", "none" },
    }
    local NODE_VARIANTS = {
      { "--deflate" },
      { "--pmd-server-no-context-takeover" },
      { "--pmd-client-no-context-takeover" },
      { "--pmd-server-max-window-bits", "10" },
      { "--pmd-client-max-window-bits", "10" },
      { "--pmd-client-max-window-bits", "none" },
    }

    -- What the client agreed must match the mode and what it asked for.
    local function check_agreed(path, variant, res, client)
      local label = client .. " " .. path .. " " .. table.concat(variant, " ")
      local params = pmd_params(res.extensions)
      assert(params, label .. ": no permessage-deflate agreed: " .. enc(res))
      local v = table.concat(variant, " ")
      if path:find("^/shared") or v:find("server%-no%-context") then
        assert(params.server_no_context_takeover == true, label .. ": " .. res.extensions)
      else
        assert(params.server_no_context_takeover == nil, label .. ": " .. res.extensions)
      end
      if v:find("server%-max%-window%-bits 10") then
        assert(tonumber(params.server_max_window_bits or 99) <= 10, label .. ": " .. res.extensions)
      end
      if v:find("client%-max%-window%-bits none") then
        assert(params.client_max_window_bits == nil, label .. ": " .. res.extensions)
      end
      if v:find("client%-max%-window%-bits 10") and params.client_max_window_bits then
        assert(tonumber(params.client_max_window_bits) <= 10, label .. ": " .. res.extensions)
      end
    end

    local function run_variants(client, variants, extra)
      local argvs, meta = {}, {}
      for _, path in ipairs { "/shared-no-cnct", "/dedicated" } do
        for _, variant in ipairs(variants) do
          local mk = client == "node" and helper.node_argv or helper.py_argv
          local argv = mk("echo", "--url", srv:url(path), "--sizes", SIZES, unpack(variant))
          for _, a in ipairs(extra or {}) do argv[#argv + 1] = a end
          argvs[#argvs + 1] = argv
          meta[#argvs] = { path, variant }
        end
      end
      local results = run_all(argvs, 60)
      local failures = {}
      for i, m in ipairs(meta) do
        local ok, err = pcall(function()
          helper.assert_ok(results[i], results[i].rc)
          check_agreed(m[1], m[2], results[i], client)
        end)
        if not ok then failures[#failures + 1] = tostring(err) .. "\n  " .. enc(results[i]) end
      end
      assert(#failures == 0, table.concat(failures, "\n"))
    end

    it("python websockets: echo of sizes " .. SIZES .. " for each offer, shared and dedicated",
      function()
        run_variants("py", PY_VARIANTS)
      end)

    it("node ws: echo of sizes " .. SIZES .. " for each offer, shared and dedicated", function()
      helper.require_node_ws()
      -- threshold 0: ws compresses every message it sends
      run_variants("node", NODE_VARIANTS, { "--pmd-threshold", "0" })
    end)

    it("accepts an incompressible message of max_message_size sent compressed"
      .. " (its compressed frame is slightly larger than the message)", function()
      helper.require_node_ws()
      -- 1 MiB of random bytes: exactly the limit (accepted uncompressed, see echo_spec),
      -- 1 MiB + ~85 bytes once deflated (stored blocks)
      local res, rc = helper.node("echo", "--url", srv:url "/dedicated", "--binary", "--sizes",
        "1048576")
      helper.assert_ok(res, rc)
      res, rc = helper.node("echo", "--url", srv:url "/dedicated", "--deflate",
        "--pmd-threshold", "0", "--binary", "--sizes", "1048576")
      helper.assert_ok(res, rc)
    end)

    it("python and node: fragmented compressed messages (text split inside code points)",
      function()
        helper.require_node_ws()
        local argvs = {}
        for _, path in ipairs { "/shared-no-cnct", "/dedicated" } do
          local url = srv:url(path)
          argvs[#argvs + 1] = helper.py_argv("fragmented", "--url", url, "--compression", "deflate",
            "--fragments", "7", "--size", "70001")
          argvs[#argvs + 1] = helper.node_argv("fragmented", "--url", url, "--deflate",
            "--pmd-threshold", "0", "--fragments", "7", "--size", "70001")
          argvs[#argvs + 1] = helper.node_argv("fragmented", "--url", url, "--deflate",
            "--pmd-threshold", "0", "--binary", "--fragments", "4", "--size", "300000")
        end
        for _, res in ipairs(run_all(argvs)) do
          helper.assert_ok(res, res.rc)
          assert(pmd_params(res.extensions), "no extension agreed: " .. enc(res))
        end
      end)
  end)
end)

describe("permessage-deflate over wss:// #integration #lua", function()
  after_each(function() helper.cleanup() end)

  it("compressed echo through TLS with python and node, shared and dedicated", function()
    local certs = helper.certs()
    local srv = helper.start_server { app = helper.app "deflate_app.lua", tls = certs }
    local argvs = {}
    for _, path in ipairs { "/shared-no-cnct", "/dedicated" } do
      argvs[#argvs + 1] = helper.py_argv("echo", "--url", srv:url(path), "--ca", certs.ca,
        "--compression", "deflate", "--sizes", "0,126,65536,1048576")
      if helper.node_ws_available() then
        argvs[#argvs + 1] = helper.node_argv("echo", "--url", srv:url(path), "--ca", certs.ca,
          "--deflate", "--pmd-threshold", "0", "--sizes", "0,126,65536,1048576")
      end
    end
    for _, res in ipairs(run_all(argvs)) do
      helper.assert_ok(res, res.rc)
      assert.are.equal("TLSv1.2", res.tls and res.tls.version, enc(res))
      assert(pmd_params(res.extensions), "no extension agreed: " .. enc(res))
    end
  end)
end)

-- VmRSS / VmHWM of a process, in KiB.
local function memory(pid)
  local s = helper.read_file("/proc/" .. pid .. "/status") or ""
  return tonumber(s:match("VmRSS:%s*(%d+)")), tonumber(s:match("VmHWM:%s*(%d+)"))
end

describe("permessage-deflate decompression bomb #integration #lua", function()
  after_each(function() helper.cleanup() end)

  it("64 MiB of zeros in one small frame or in fragments: 1009, memory stays bounded",
    function()
      local srv = helper.start_server { app = helper.app "deflate_app.lua", workers = 1 }
      -- warm up: one ordinary compressed echo, so that buffers and zlib exist
      helper.assert_ok(helper.run(raw_argv(srv:url "/dedicated", "pmd_fragmented")))
      local rss0, hwm0 = memory(srv.pid)
      assert(rss0 and hwm0, "cannot read /proc/" .. srv.pid .. "/status")
      local results = run_all {
        raw_argv(srv:url "/shared-no-cnct", "pmd_bomb", nil, "--bomb-mib", "64"),
        raw_argv(srv:url "/dedicated", "pmd_bomb", nil, "--bomb-mib", "64"),
        raw_argv(srv:url "/dedicated-8k-cnct", "pmd_bomb_fragmented", nil, "--bomb-mib", "64"),
      }
      for _, res in ipairs(results) do
        helper.assert_ok(res, res.rc)
        assert.are.equal(1009, res.close_code)
      end
      local rss1, hwm1 = memory(srv.pid)
      -- max_message_size is 1 MiB: the peak may grow by about that (three at once
      -- here), never by the 64 MiB the bombs inflate to
      local grew = (hwm1 - hwm0) / 1024
      assert.is_true(grew < 12, ("peak RSS grew by %.1f MiB (%d -> %d KiB; RSS now %d KiB)")
        :format(grew, hwm0, hwm1, rss1))
      assert.is_true(srv:alive())
      helper.assert_ok(helper.run(raw_argv(srv:url "/dedicated", "pmd_echo")))
    end)

  -- Each final block restarts the inflate stream (a window-sized copy): a message of
  -- 2-byte empty final blocks used to cost a window per 2 input bytes (4 MB of them
  -- stalled the worker for seconds, then echoed an empty message).
  it("a message of 2,000,000 empty final DEFLATE blocks: 1007 at once; a bystander keeps its pongs",
    function()
      local srv = helper.start_server { app = helper.app "deflate_app.lua", workers = 1 }
      local res, rc = helper.run(raw_argv(srv:url "/dedicated-16m", "pmd_final_blocks", nil,
        "--final-blocks", "2000000", "--slow-timeout", "20"), 60)
      helper.assert_ok(res, rc)
      assert.are.equal(1007, res.close_code)
      assert.are.equal("too many final DEFLATE blocks in one message", res.close_reason)
      -- generous bounds (a loaded machine), far below the seconds the old code took
      assert.is_true(res.close_after < 2, "the close came after " .. res.close_after .. " s")
      assert.is_true(res.bystander_pings > 0)
      assert.is_true(res.bystander_max_rtt < 1, "a bystander pong took " .. res.bystander_max_rtt .. " s")
      assert.is_true(srv:alive())
    end)
end)

describe("--compression flag #integration #lua", function()
  after_each(function() helper.cleanup() end)

  local ECHO = helper.ROOT .. "/examples/echo/app.lua"

  local function negotiate(srv, path, offer)
    local res = helper.assert_ok(helper.run(raw_argv(srv:url(path), "pmd_negotiate",
      { offer or (PMD .. "; client_max_window_bits") })))
    return pmd_params(res.extensions), res
  end

  it("examples/echo: off by default; --compression shared turns it on", function()
    local srv = helper.start_server { app = ECHO }
    assert.is_nil(negotiate(srv, "/echo"))
    srv:stop()
    srv = helper.start_server { app = ECHO, args = { "--compression", "shared" } }
    local params = negotiate(srv, "/echo")
    assert(params, "--compression shared: no extension agreed")
    assert.is_true(params.server_no_context_takeover)
    local res = helper.assert_ok(helper.py("echo", "--url", srv:url "/echo", "--compression",
      "deflate", "--sizes", SIZES))
    assert.is_true(res.pmd and res.pmd.server_no_context_takeover, enc(res))
    helper.assert_ok(helper.run(raw_argv(srv:url "/echo", "pmd_echo")))
  end)

  it("examples/echo: --compression dedicated and dedicated:4", function()
    local srv = helper.start_server { app = ECHO, args = { "--compression", "dedicated" } }
    local params = negotiate(srv, "/echo")
    assert(params, "--compression dedicated: no extension agreed")
    assert.is_nil(params.server_no_context_takeover)
    assert.is_true(params.server_max_window_bits == nil or params.server_max_window_bits == "15")
    srv:stop()
    srv = helper.start_server { app = ECHO, args = { "--compression", "dedicated:4" } }
    params = negotiate(srv, "/echo")
    assert(params, "--compression dedicated:4: no extension agreed")
    assert.is_nil(params.server_no_context_takeover)
    assert.are.equal("12", params.server_max_window_bits)
    local res = helper.assert_ok(helper.run(raw_argv(srv:url "/echo", "pmd_echo")))
    local a, b = result_by_label(res, "text_4k_compressed"), result_by_label(res, "text_4k_again_plain")
    assert.is_true(b.reply_rsv1 and a.reply_rsv1)
  end)

  -- deflate_engine.py counts the compressed payloads that hold a final DEFLATE block
  -- then 00: libdeflate's shape (zlib's sync-flushed payloads have none). Of its 14
  -- messages examples/echo compresses the 10 of 64 bytes or more; the engine app
  -- (threshold 0) all, the two empty ones as the bare empty stored block.
  local function engine_shape(url)
    local res, rc = helper.run({ helper.PYTHON, helper.CLIENTS .. "/deflate_engine.py", url }, 60)
    assert.are.equal(0, rc, enc(res))
    local r = res[url]
    assert.is_true(r.identical and r.compressed > 0, enc(r))
    return r
  end

  it("--compression shared:libdeflate and shared:zlib pick the engine; shared keeps the app's", function()
    local srv = helper.start_server { app = ECHO, args = { "--compression", "shared:libdeflate" } }
    local r = engine_shape(srv:url "/echo")
    assert.are.same({ 10, 10 }, { r.compressed, r.final }, enc(r))
    local params = negotiate(srv, "/echo")
    assert.is_true(params and params.server_no_context_takeover)
    srv:stop()
    local ENGINES = helper.app "deflate_engine_app.lua"
    srv = helper.start_server { app = ENGINES, args = { "--compression", "shared:zlib" } }
    assert.are.equal(0, engine_shape(srv:url "/ld").final)
    srv:stop()
    srv = helper.start_server { app = ENGINES, args = { "--compression", "shared" } }
    r = engine_shape(srv:url "/ld")
    assert.are.same({ 14, 12 }, { r.compressed, r.final }, enc(r))
    assert.are.equal(0, engine_shape(srv:url "/zlib").final)
  end)

  it("refuses a bad --compression value", function()
    for _, bad in ipairs { "shared:brotli", "shared:", "dedicated:libdeflate", "libdeflate" } do
      local p = helper.spawn({ helper.BIN, "--compression", bad, ECHO })
      assert.is_true(p:wait(10))
      assert.are.equal(2, p.code)
      assert.truthy(p:stderr():find("bad --compression '" .. bad .. "' (off|shared[:zlib|libdeflate]|", 1, true),
        p:stderr())
    end
  end)

  it("--compression off overrides the apps' settings", function()
    local srv = helper.start_server { app = helper.app "deflate_app.lua",
                                      args = { "--compression", "off" } }
    assert.is_nil(negotiate(srv, "/dedicated"))
    assert.is_nil(negotiate(srv, "/shared-no-cnct"))
  end)

  it("--compression shared overrides an app that has compression = false", function()
    local srv = helper.start_server { app = helper.app "deflate_app.lua",
                                      args = { "--compression", "shared" } }
    local params = negotiate(srv, "/off")
    assert(params, "--compression shared did not override compression = false")
    assert.is_true(params.server_no_context_takeover)
    params = negotiate(srv, "/dedicated")
    assert.is_true(params and params.server_no_context_takeover)
  end)
end)
