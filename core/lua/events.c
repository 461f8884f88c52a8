/* events.c — delivering connection events to Lua (see events.h): the Lua layer's
 * ews_conn_ops_t. Each event runs
 * the matching dispatcher of lua/edgews/init.lua in a task (a pooled coroutine,
 * lua/tasks.h). While a task of the connection waits, later events go to the
 * dispatcher's queue instead and that task runs them in order when its handler is
 * done; past EWS_MAX_QUEUED queued events the connection stops reading (TCP
 * backpressure) until the queue is drained. Handler errors are caught in Lua and
 * reported through core.handler_error (api_core.c). */
#include "lua/events.h"

#include <lauxlib.h>
#include <ctype.h>
#include <string.h>

#include "err.h"
#include "log.h"
#include "lua/tasks.h"
#include "lua/vm.h"
#include "proto/http_head.h"

#define EWS_MAX_QUEUED 64

static ews_vm_t *worker_of(const ews_conn_t *c) { return ews_conn_owner(c); }

static ews_task_t *task_or_fail(ews_conn_t *c) {
  ews_task_t *t = ews_task_get(worker_of(c));
  if (!t) {
    EWS_ERROR("conn %llu: out of memory for a handler task", (unsigned long long)ews_conn_id(c));
    ews_conn_fail(c, EWS_ENOMEM, NULL);
  }
  return t;
}

/* The request as the authenticator sees it: method, path, query (raw), params (the
 * query parsed), headers (lower-case names; repeated headers joined with ", "),
 * remote_addr, remote_port, protocols (the offered subprotocols). */
static void on_authenticate(ews_conn_t *c, const ews_http_request_t *req, const char *ip,
                            int port) {
  ews_vm_t *w = worker_of(c);
  ews_task_t *t = task_or_fail(c);
  if (!t) return;
  lua_State *co = t->co;
  lua_rawgeti(co, LUA_REGISTRYINDEX, w->refs.authenticate);
  lua_pushstring(co, ews_conn_app(c)->path);
  lua_createtable(co, 0, 8);
  lua_pushlstring(co, req->method, req->method_len);
  lua_setfield(co, -2, "method");
  lua_pushlstring(co, req->path, req->path_len);
  lua_setfield(co, -2, "path");
  if (req->query) {
    lua_pushlstring(co, req->query, req->query_len);
    lua_setfield(co, -2, "query");
  }
  lua_pushstring(co, ip);
  lua_setfield(co, -2, "remote_addr");
  lua_pushinteger(co, port);
  lua_setfield(co, -2, "remote_port");
  lua_createtable(co, 0, (int)req->num_headers);
  char name[128];
  for (size_t i = 0; i < req->num_headers; i++) {
    const ews_http_header_t *h = &req->headers[i];
    size_t nl = h->name_len < sizeof name ? h->name_len : sizeof name - 1;
    for (size_t k = 0; k < nl; k++) name[k] = (char)tolower((unsigned char)h->name[k]);
    lua_pushlstring(co, name, nl);
    lua_pushvalue(co, -1);
    lua_rawget(co, -3);
    if (lua_isstring(co, -1)) {
      lua_pushliteral(co, ", ");
      lua_pushlstring(co, h->value, h->value_len);
      lua_concat(co, 3);
    } else {
      lua_pop(co, 1);
      lua_pushlstring(co, h->value, h->value_len);
    }
    lua_rawset(co, -3);
  }
  lua_setfield(co, -2, "headers");
  ews_task_start(w, t, 2, c);
}

/* Creates the socket object of c on L (any thread of the worker's VM) and keeps it
 * in the registry (c->uref): a plain table, so field reads (id, ctx) cost what any
 * table read costs; ctx.user from user_ref (a registry reference, given up here). */
static void new_socket(ews_vm_t *w, lua_State *L, ews_conn_t *c, const char *protocol,
                       int user_ref) {
  lua_createtable(L, 0, protocol ? 5 : 4); /* exact: the hash part is a power of two */
  /* The pointer as a number: the JIT compiles number -> uintptr_t FFI arguments,
   * but not light userdata (user-space pointers fit a double's 53 bits). */
  lua_pushnumber(L, (lua_Number)(uintptr_t)c);
  lua_setfield(L, -2, "_c");
  lua_pushnumber(L, (lua_Number)ews_conn_id(c));
  lua_setfield(L, -2, "id");
  lua_pushstring(L, ews_conn_app(c)->path);
  lua_setfield(L, -2, "path");
  if (protocol) {
    lua_pushstring(L, protocol);
    lua_setfield(L, -2, "protocol");
  }
  if (user_ref != LUA_NOREF) {
    lua_createtable(L, 0, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, user_ref);
    lua_setfield(L, -2, "user");
    luaL_unref(L, LUA_REGISTRYINDEX, user_ref);
  } else {
    lua_createtable(L, 0, 0);
  }
  lua_setfield(L, -2, "ctx");
  lua_rawgeti(L, LUA_REGISTRYINDEX, w->refs.socket_mt);
  lua_setmetatable(L, -2);
  c->uref = luaL_ref(L, LUA_REGISTRYINDEX);
}

int ews_lua_socket_push(lua_State *L, ews_conn_t *c) {
  if (ews_conn_is_client(c)) return 0; /* outbound: api_client.c's, never a socket */
  if (c->uref == LUA_NOREF) {
    if (!ews_conn_opened(c)) return 0;
    new_socket(worker_of(c), L, c, NULL, LUA_NOREF);
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->uref);
  return 1;
}

/* 1 when the current version of c's app has handler `field` (rawget of the app in
 * the dispatcher's path -> app table). */
static int app_has(ews_vm_t *w, lua_State *L, ews_conn_t *c, const char *field) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, w->refs.apps);
  lua_getfield(L, -1, ews_conn_app(c)->path);
  int has = 0;
  if (lua_istable(L, -1)) {
    lua_pushstring(L, field);
    lua_rawget(L, -2);
    has = !lua_isnil(L, -1);
    lua_pop(L, 1);
  }
  lua_pop(L, 2);
  return has;
}

/* The open event. The socket object is created now only when something will see
 * it now: an open handler, the app's authentication (ctx.user, the user registry),
 * or a subprotocol (socket.protocol, known only here). Otherwise the connection
 * stays without one until a script first needs it (its first message, a close
 * handler, app:sockets()): ews_lua_socket_push. An idle connection of an app
 * without an open handler then costs no Lua memory. */
static void on_open(ews_conn_t *c, const char *protocol) {
  ews_vm_t *w = worker_of(c);
  lua_State *L = w->L;
  int user_ref = c->uref;
  c->uref = LUA_NOREF;
  if (!protocol && user_ref == LUA_NOREF && !app_has(w, L, c, "_on_open") &&
      !app_has(w, L, c, "_auth"))
    return;
  new_socket(w, L, c, protocol, user_ref);

  ews_task_t *t = task_or_fail(c);
  if (!t) return;
  lua_rawgeti(t->co, LUA_REGISTRYINDEX, w->refs.dispatch_open);
  lua_rawgeti(t->co, LUA_REGISTRYINDEX, c->uref);
  ews_task_start(w, t, 1, c);
}

static void on_message(ews_conn_t *c, const uint8_t *p, size_t n, int binary) {
  ews_vm_t *w = worker_of(c);
  if (c->udata) {
    /* A handler of this connection is waiting: queue behind it. */
    lua_State *L = w->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, w->refs.enqueue_message);
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->uref); /* a waiting task has the socket */
    lua_pushlstring(L, (const char *)p, n);
    lua_pushboolean(L, binary);
    if (lua_pcall(L, 3, 1, 1) != 0) {
      EWS_ERROR("queueing a message: %s", lua_tostring(L, -1));
    } else if (lua_tonumber(L, -1) >= EWS_MAX_QUEUED) {
      ews_conn_pause(c);
    }
    lua_settop(L, 1);
    return;
  }
  ews_task_t *t = task_or_fail(c);
  if (!t) return;
  lua_rawgeti(t->co, LUA_REGISTRYINDEX, w->refs.dispatch_message);
  ews_lua_socket_push(t->co, c);
  lua_pushlstring(t->co, (const char *)p, n);
  lua_pushboolean(t->co, binary);
  ews_task_start(w, t, 3, c);
}

static void on_close(ews_conn_t *c) {
  ews_vm_t *w = worker_of(c);
  lua_State *L = w->L;
  if (c->uref == LUA_NOREF) {
    /* No script has seen the socket: only a close handler needs it now. */
    if (!app_has(w, L, c, "_on_close")) return;
    new_socket(w, L, c, NULL, LUA_NOREF);
  }
  /* Detach first: from now on the socket's methods answer nil, "closed". */
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->uref);
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "_c");
  lua_pop(L, 1);
  lua_State *target;
  ews_task_t *t = NULL;
  if (c->udata) {
    /* The close event goes last, after the events queued behind the waiting task;
     * that task no longer serves a connection. */
    ews_task_detach(c->udata);
    target = L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, w->refs.enqueue_close);
  } else {
    t = ews_task_get(w);
    if (!t) {
      EWS_ERROR("conn %llu: out of memory for the close handler", (unsigned long long)ews_conn_id(c));
      goto done;
    }
    target = t->co;
    lua_rawgeti(target, LUA_REGISTRYINDEX, w->refs.dispatch_close);
  }
  lua_rawgeti(target, LUA_REGISTRYINDEX, c->uref);
  const char *reason;
  size_t rlen;
  lua_pushinteger(target, ews_conn_close_status(c, &reason, &rlen));
  lua_pushlstring(target, reason, rlen);
  if (t) {
    ews_task_start(w, t, 3, NULL);
  } else if (lua_pcall(L, 3, 0, 1) != 0) {
    EWS_ERROR("queueing a close event: %s", lua_tostring(L, -1));
  }
  lua_settop(L, 1);
done:
  luaL_unref(L, LUA_REGISTRYINDEX, c->uref);
  c->uref = LUA_NOREF;
}

/* The connection is being freed: its waiting task no longer serves it, and a user
 * the authenticator left (the upgrade never completed) is let go. */
static void on_free(ews_conn_t *c) {
  ews_vm_t *w = worker_of(c);
  if (c->udata) ews_task_detach(c->udata);
  if (c->uref != LUA_NOREF && w->L) luaL_unref(w->L, LUA_REGISTRYINDEX, c->uref);
  c->uref = LUA_NOREF;
}

const ews_conn_ops_t ews_lua_conn_ops = {on_authenticate, on_open, on_message, on_close, on_free,
                                        NULL, NULL, NULL};
