/* api.h — registration of the C functions that make up the `edgews.core` module,
 * one concern per file (api_core.c: sockets, routes, logging, stats; api_timer.c:
 * timers). Each adds its functions to the table on top of the stack, with the
 * worker (or NULL on the main thread's configuration VM) as upvalue. */
#ifndef EWS_API_H
#define EWS_API_H

#include <lua.h>

struct ews_worker;

void ews_api_timer_register(lua_State *L, void *w);
/* Presence (api_presence.c): the presence_* functions and the worker's presence timer. */
void ews_api_presence_register(lua_State *L, void *w);
/* At worker shutdown: stops and frees every Lua timer (and the tasks sleeping). */
void ews_ltimers_close_all(struct ews_worker *w);

#endif
