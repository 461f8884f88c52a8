/* events.h — the C-to-Lua direction: delivering a connection's events to the app's
 * handlers. Each event is one protected call into the dispatcher of lua/edgews; a
 * handler that raises is logged with file:line and a traceback, the app's error
 * handler runs, and that connection alone is failed with close 1011. These are only
 * ever called from libuv callbacks or the worker's sweep (never from C code that Lua
 * called), so Lua is never re-entered. */
#ifndef EWS_EVENTS_H
#define EWS_EVENTS_H

#include <stddef.h>
#include <stdint.h>

#include "net/conn.h"

/* Creates the Lua socket object (with ctx.user from user_ref, a registry
 * reference the call takes over, or LUA_NOREF) and runs the open handler. */
void ews_lua_on_open(ews_conn_t *c, const char *protocol, int user_ref);
/* Runs the app's authenticator on the request in a task; it answers through
 * core.auth_done (ews_conn_auth_done). */
void ews_lua_authenticate(ews_conn_t *c, const void *req, const char *ip, int port);
/* Drops a registry reference. */
struct ews_worker;
void ews_lua_unref(struct ews_worker *w, int ref);
void ews_lua_on_message(ews_conn_t *c, const uint8_t *p, size_t n, int binary);
/* Runs the close handler with c->close_code/close_reason, then detaches the socket
 * object from the connection (its methods answer nil, "closed" from then on). */
void ews_lua_on_close(ews_conn_t *c);

#endif
