-- Socket API probe for api_spec: each text message is a command, the reply tells
-- what the Lua API returned. Run with --workers 1 where one connection must see the
-- close event of another (close events are recorded in this VM).
--   info               -> JSON {id, id_type, protocol, ip, port, buffered, opened}
--   close:CODE:REASON  -> socket:close(CODE, REASON)
--   close              -> socket:close()
--   ping:PAYLOAD       -> socket:ping(PAYLOAD), then the text "pinged"
--   sendresult         -> the values socket:send returned, as "tostring(ok),tostring(err)"
--   binary:DATA        -> DATA sent back as a binary message
--   closed:ID          -> "CODE:REASON" of the close event seen for socket ID, or "none"
local edgews = require "edgews"

local closed = {}

local app = edgews.app {
  path = "/api",
  protocols = { "p1", "p2" },
}

local function json_string(s)
  if s == nil then return "null" end
  return '"' .. tostring(s):gsub('[%c"\\]', function(c)
    return ("\\u%04x"):format(c:byte())
  end) .. '"'
end

app:on("open", function(socket)
  socket.ctx.opened = true
end)

app:on("message", function(socket, data)
  local cmd, arg = data:match("^(%w+):?(.*)$")
  if cmd == "info" then
    local ip, port = socket:remote_addr()
    socket:send(('{"id":%s,"id_type":%s,"protocol":%s,"ip":%s,"port":%s,"buffered":%s,"opened":%s}')
      :format(tostring(socket.id), json_string(type(socket.id)), json_string(socket.protocol),
        json_string(ip), tostring(tonumber(port) or "null"),
        tostring(tonumber(socket:buffered_amount()) or "null"),
        tostring(socket.ctx.opened == true)))
  elseif cmd == "close" then
    local code, reason = arg:match("^(%d+):?(.*)$")
    if code then socket:close(tonumber(code), reason) else socket:close() end
  elseif cmd == "ping" then
    socket:ping(arg)
    socket:send("pinged")
  elseif cmd == "sendresult" then
    local ok, err = socket:send("x")
    socket:send(tostring(ok) .. "," .. tostring(err))
  elseif cmd == "binary" then
    socket:send(arg, true)
  elseif cmd == "closed" then
    local c = closed[tonumber(arg)]
    socket:send(c and (tostring(c.code) .. ":" .. tostring(c.reason)) or "none")
  else
    socket:send("unknown command: " .. data)
  end
end)

app:on("close", function(socket, code, reason)
  closed[socket.id] = { code = code, reason = reason }
end)
