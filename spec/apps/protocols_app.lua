-- Subprotocol selection as browsers see it (browser_spec): every app answers the
-- open with {"protocol": <socket.protocol or "">, "user": <ctx.user.id or "">}.
--   /plain   lists no protocols: the first offered entry that is not a bearer. token
--   /listed  protocols = {"chat.v2", "chat.v1"}: the client's first listed one, or 400
--   /jwt     lists none, JWT before the upgrade (the token may come as bearer.<token>)
local edgews = require "edgews"
local cjson = require "cjson"

local function hello(socket)
  local user = socket.ctx.user
  socket:send(cjson.encode { protocol = socket.protocol or "", user = user and user.id or "" })
end

edgews.app({ path = "/plain" }):on("open", hello)
edgews.app({ path = "/listed", protocols = { "chat.v2", "chat.v1" } }):on("open", hello)
edgews.app({ path = "/jwt", auth = edgews.auth.jwt { secret = "browser-secret" } }):on("open", hello)
