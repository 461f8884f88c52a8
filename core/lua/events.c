/* events.c — delivering connection events to Lua (see events.h). */
#include "lua/events.h"

#include <lauxlib.h>
#include <string.h>

#include "err.h"
#include "log.h"
#include "lua/vm.h"
#include "worker.h"

/* Logs a handler's error (message with file:line, then the traceback at debug
 * level), lets the app's error handler see it, and fails the connection with 1011.
 * The error message is at the top of the stack. */
static void handler_failed(ews_conn_t *c, lua_State *L, const char *event) {
  size_t len;
  const char *msg = lua_tolstring(L, -1, &len);
  if (!msg) msg = "(no message)";
  const char *tb = strstr(msg, "\nstack traceback:");
  int head = tb ? (int)(tb - msg) : (int)strlen(msg);
  EWS_ERROR("%s handler error (conn %llu): %.*s", event, (unsigned long long)c->id, head, msg);
  if (tb) EWS_DEBUG("%s", tb + 1);
  c->w->stats.handler_errors++;
  ews_vm_refs_t *refs = &c->w->refs;
  if (refs->dispatch_error != LUA_NOREF && c->sock_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, refs->dispatch_error);
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->sock_ref);
    lua_pushlstring(L, msg, (size_t)head);
    if (lua_pcall(L, 2, 0, 1) != 0)
      EWS_ERROR("error handler error (conn %llu): %s", (unsigned long long)c->id,
                lua_tostring(L, -1) ? lua_tostring(L, -1) : "?");
  }
  lua_settop(L, 1);
  ews_conn_fail(c, EWS_EHANDLER, NULL);
}

void ews_lua_on_open(ews_conn_t *c, const char *protocol) {
  lua_State *L = c->w->L;
  ews_vm_refs_t *refs = &c->w->refs;
  /* The socket object: a plain table, so field reads (id, ctx) cost what any table
   * read costs; _c is the connection, set to false when it ends. */
  lua_createtable(L, 0, protocol ? 5 : 4); /* exact: the hash part is a power of two */
  /* The pointer as a number: the JIT compiles number -> uintptr_t FFI arguments,
   * but not light userdata (user-space pointers fit a double's 53 bits). */
  lua_pushnumber(L, (lua_Number)(uintptr_t)c);
  lua_setfield(L, -2, "_c");
  lua_pushnumber(L, (lua_Number)c->id);
  lua_setfield(L, -2, "id");
  lua_pushstring(L, c->app->path);
  lua_setfield(L, -2, "path");
  if (protocol) {
    lua_pushstring(L, protocol);
    lua_setfield(L, -2, "protocol");
  }
  lua_createtable(L, 0, 0);
  lua_setfield(L, -2, "ctx");
  lua_rawgeti(L, LUA_REGISTRYINDEX, refs->socket_mt);
  lua_setmetatable(L, -2);
  c->sock_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  c->flags |= EWS_CF_OPENED;

  lua_rawgeti(L, LUA_REGISTRYINDEX, refs->dispatch_open);
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->sock_ref);
  if (lua_pcall(L, 1, 0, 1) != 0) handler_failed(c, L, "open");
  lua_settop(L, 1);
}

void ews_lua_on_message(ews_conn_t *c, const uint8_t *p, size_t n, int binary) {
  lua_State *L = c->w->L;
  ews_vm_refs_t *refs = &c->w->refs;
  lua_rawgeti(L, LUA_REGISTRYINDEX, refs->dispatch_message);
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->sock_ref);
  lua_pushlstring(L, (const char *)p, n);
  lua_pushboolean(L, binary);
  if (lua_pcall(L, 3, 0, 1) != 0) handler_failed(c, L, "message");
  lua_settop(L, 1);
}

void ews_lua_on_close(ews_conn_t *c) {
  lua_State *L = c->w->L;
  if (c->sock_ref == LUA_NOREF) return;
  ews_vm_refs_t *refs = &c->w->refs;
  /* Detach first, so the close handler (and anything holding the socket later)
   * sees a closed socket. */
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->sock_ref);
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "_c");
  lua_rawgeti(L, LUA_REGISTRYINDEX, refs->dispatch_close);
  lua_pushvalue(L, -2);
  lua_pushinteger(L, c->close_code ? c->close_code : 1005);
  lua_pushlstring(L, c->close_reason ? c->close_reason : "", c->close_reason_len);
  if (lua_pcall(L, 3, 0, 1) != 0) {
    const char *msg = lua_tostring(L, -1);
    c->w->stats.handler_errors++;
    EWS_ERROR("close handler error (conn %llu): %s", (unsigned long long)c->id, msg ? msg : "?");
  }
  lua_settop(L, 1);
  luaL_unref(L, LUA_REGISTRYINDEX, c->sock_ref);
  c->sock_ref = LUA_NOREF;
}
