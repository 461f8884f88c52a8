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
#include <lua.h>

#include "net/conn.h"

/* The Lua layer as the owner of a loop's connections (net->ops; net->owner is the
 * worker): authenticate runs the app's authenticator on the request in a task (it
 * answers through core.auth_done: ews_conn_auth_done, leaving the user in c->uref);
 * open creates the Lua socket object (c->uref is then its registry reference, with
 * ctx.user from the authenticated user) and runs the open handler, when the app
 * has one (or authentication, or a subprotocol was selected; else the object is
 * created when a script first needs it); message runs the
 * message handler (or queues the message behind a waiting one); close runs the close
 * handler with the connection's close status, then detaches the socket object (its
 * methods answer nil, "closed" from then on); free lets go of a waiting task. */
extern const ews_conn_ops_t ews_lua_conn_ops;

/* Pushes c's socket object onto L (a thread of c's worker VM), creating it when no
 * script has seen it yet (open handlers are not the only way a script meets a
 * socket: see on_open in events.c). 1, or 0 with nothing pushed when c is not
 * between its open and close events. */
int ews_lua_socket_push(lua_State *L, ews_conn_t *c);

#endif
