/* tasks.h — Lua handlers run as coroutines ("tasks"), so a handler can wait (on a
 * timer, and later on the pool or storage) and read as sequential code.
 *
 * A task is a pooled Lua thread. Running an event = take a task, push the dispatch
 * function and its arguments, lua_resume. When the handler finishes without waiting
 * (the common case) the thread goes straight back to the pool: no allocation per
 * event. When it yields inside an edgews async primitive, the task is parked and
 * whoever registered the wake-up (a timer) resumes it later with ews_task_resume.
 * A parked task that serves a connection marks it busy (conn->udata): the events
 * that arrive meanwhile are queued in Lua and run by that task, in order, after the
 * handler it is waiting in; so one connection's handlers never interleave. Errors
 * inside a task are caught in Lua (xpcall, see lua/edgews/init.lua); an error that
 * escapes anyway is logged with a traceback and the task discarded. */
#ifndef EWS_TASKS_H
#define EWS_TASKS_H

#include <lua.h>

#include "lua/vm.h"
#include "net/conn.h"


typedef struct ews_task {
  lua_State *co;
  int ref;                 /* registry reference keeping the thread alive */
  ews_conn_t *conn;   /* the connection it serves, or NULL */
  ews_vm_t *w;    /* the worker whose VM it belongs to */
  struct ews_task *next;   /* free list */
  int waiting;             /* set by an async primitive just before it yields */
} ews_task_t;

/* A task with an empty stack, from the pool or new. NULL when out of memory. Push
 * the function and arguments on task->co, then call ews_task_start. */
ews_task_t *ews_task_get(ews_vm_t *w);
/* Runs the function with nargs arguments (already pushed) on behalf of conn (or
 * NULL). Returns when it finishes or parks. */
void ews_task_start(ews_vm_t *w, ews_task_t *t, int nargs, ews_conn_t *conn);
/* Resumes a parked task with nargs values pushed on t->co. */
void ews_task_resume(ews_vm_t *w, ews_task_t *t, int nargs);
/* The task running right now (inside a C function Lua called), or NULL when the
 * caller is not inside a task (e.g. the script's main chunk). */
ews_task_t *ews_task_current(ews_vm_t *w, lua_State *L);
/* The connection is going away: the task (parked) no longer serves it. */
void ews_task_detach(ews_task_t *t);
/* Frees the pool (at worker exit, before lua_close). */
void ews_task_pool_free(ews_vm_t *w);

#endif
