/* runaway.h — budgets for Lua runs: a run (a handler, a timer, a bus task, a pub/sub
 * delivery, the script's body while it loads) that takes longer than its time budget,
 * or makes its VM's Lua heap pass the memory limit, is stopped with a Lua error raised
 * where it runs, JIT-compiled loops included; the worker goes on serving.
 *
 * How, without a per-instruction hook in normal operation:
 *  - Time: a run stores its start time and budget (two relaxed stores; the caller has
 *    the time already). One process-wide watchdog thread polls every registered VM a
 *    few times per budget and sends SIGURG to a thread whose run is over budget. The
 *    signal handler (on that thread) arms a count hook with lua_sethook (which LuaJIT
 *    allows from a signal handler) and sets the interrupt byte of jit_interrupt.h, so
 *    compiled code leaves for the interpreter, where the hook runs.
 *  - Memory: every VM allocates through a counting wrapper around LuaJIT's own
 *    allocator. Inside a run, passing the limit arms the same hook; the hook collects
 *    garbage first and stops the run only when the heap is still over the limit. A big
 *    allocation (a quarter of the limit or more) that would pass the hard cap (the
 *    limit plus a quarter) fails at once with Lua's "not enough memory".
 *  - Stopping: the hook raises "file:line: stopped: ..." in the code that runs (never
 *    in edgews' own modules, so the dispatchers can clean up) and keeps raising, at
 *    every instruction of application code, until an edgews dispatcher reports the
 *    error through core.handler_error (ews_runaway_caught), which disarms it and
 *    restarts the clock; so a pcall in the looping code cannot swallow the stop.
 *    At the end of the outermost run everything is disarmed (and after a memory stop
 *    the heap is collected).
 *
 * Ownership: ews_runaway_attach allocates the state and makes it the VM's allocator
 * data (ews_runaway_of finds it); ews_runaway_detach, called before lua_close on the
 * same thread, unregisters and frees it. A VM belongs to the thread that attached it,
 * and a thread has one such VM at a time (the signal handler finds it there). */
#ifndef EWS_RUNAWAY_H
#define EWS_RUNAWAY_H

#include <lua.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "lua/jit_interrupt.h"

#define EWS_RUNAWAY_DEFAULT_TIMEOUT 2.0                /* seconds, handler_timeout */
#define EWS_RUNAWAY_DEFAULT_MEMORY (1024.0 * 1048576)  /* bytes, max_lua_memory */
#define EWS_RUNAWAY_SIGNAL SIGURG                      /* ignored by default */

enum { EWS_STOP_NONE = 0, EWS_STOP_TIME = 1, EWS_STOP_MEMORY = 2 };

#define EWS_RUNAWAY_KEEP_SIZE 256
#define EWS_RUNAWAY_KEEP_BYTES (4 * 1048576)

typedef struct ews_runaway {
  /* Read by the watchdog thread (atomics). start_ns is 0 outside a run. */
  uint64_t start_ns, budget_ns;
  uint64_t min_budget_ns; /* the smallest budget this VM uses (watchdog tick) */
  pthread_t thread;
  struct ews_runaway *next; /* the watchdog's list, under its lock */
  /* The VM's thread only. */
  lua_State *L;
  uint8_t *jit_flag; /* jit_interrupt.h; NULL: compiled code is not interruptible */
  int guards;        /* the JIT compiles interrupt guards (once any limit is on) */
  lua_Alloc alloc_f; /* LuaJIT's allocator, which the wrapper calls */
  void *alloc_ud;
  size_t mem;        /* bytes the VM holds through its allocator */
  size_t mem_limit;  /* 0: none */
  size_t mem_check;  /* passing this inside a run arms the hook (the limit, or a bit
                        more after a collection found mostly live data) */
  size_t mem_hard;   /* a big allocation (mem_big or more) past this fails in a run */
  size_t mem_big;
  /* Freed blocks of 8..EWS_RUNAWAY_KEEP_SIZE bytes (multiples of 8) kept for the next
   * request of exactly that size, at most EWS_RUNAWAY_KEEP_BYTES in all: a message's
   * tables come and go at the rate of messages, and LuaJIT's allocator costs ~80
   * instructions a call. They stay in LuaJIT's arena (lua_close frees them with it)
   * and count as freed in mem. */
  void *kept[EWS_RUNAWAY_KEEP_SIZE / 8 + 1];
  size_t kept_bytes;
  int gc_pause;      /* gc_pace.c: the pause it set last */
  int gc_pace_off;   /* gc_pace.c: the script set its own pause */
  size_t new_bytes;  /* bytes of new blocks since the last cycle ended (gc_pace.c) */
  size_t new_big;    /* of them in blocks of EWS_GC_BIG_BLOCK bytes or more */
  uint64_t default_budget_ns; /* 0: none */
  int depth;         /* nested runs */
  int stopped;       /* the outermost run had a stop (EWS_STOP_*) */
  char *own_prefix;  /* "@<lua dir>/edgews/": code the hook never raises in */
  size_t own_prefix_len;
  volatile sig_atomic_t busy;     /* in the hook or disarming: the signal stays out */
  volatile sig_atomic_t armed;    /* EWS_STOP_* bits to check at the next hook */
  volatile sig_atomic_t stopping; /* EWS_STOP_*: raising until caught */
} ews_runaway_t;

/* Wraps the allocator of a fresh VM (before any Lua code ran; call on the VM's thread)
 * and registers the VM with the watchdog (started on first use). lua_dir: the
 * directory edgews' modules load from; timeout and memory: as ews_runaway_set_limits.
 * Compiled code gets its interrupt guards from the first limit that is not 0 on (with
 * no limit at all it runs without them). Returns NULL (VM unchanged) when out of
 * memory. */
ews_runaway_t *ews_runaway_attach(lua_State *L, const char *lua_dir, double timeout,
                                  double memory);
/* Before lua_close, on the VM's thread: unregisters, puts LuaJIT's allocator back and
 * frees rw. NULL is ignored. */
void ews_runaway_detach(ews_runaway_t *rw);
/* The state of a VM (from its allocator data), or NULL. */
ews_runaway_t *ews_runaway_of(lua_State *L);

/* Time budget of runs without one of their own, in seconds (0: none), and the memory
 * limit in bytes (0: none). Like ews_runaway_note_budget and _set_run_budget, call it
 * from C outside Lua or from a C function Lua called (turning guards on flushes the
 * compiled code). */
void ews_runaway_set_limits(ews_runaway_t *rw, double timeout, double memory);
/* Tells the watchdog a budget some runs use (it polls often enough for the smallest). */
void ews_runaway_note_budget(ews_runaway_t *rw, uint64_t budget_ns);
/* Changes the budget of the run in progress (edgews.configure while the script loads). */
void ews_runaway_set_run_budget(ews_runaway_t *rw, double timeout);

/* A run begins (now: uv_hrtime(); budget_ns: its own budget, or UINT64_MAX for the
 * default). Only the outermost of nested runs counts. */
static inline void ews_runaway_begin(ews_runaway_t *rw, uint64_t now, uint64_t budget_ns) {
  if (rw->depth++) return;
  __atomic_store_n(&rw->budget_ns, budget_ns == UINT64_MAX ? rw->default_budget_ns : budget_ns,
                   __ATOMIC_RELAXED);
  __atomic_store_n(&rw->start_ns, now ? now : 1, __ATOMIC_RELAXED);
}
void ews_runaway_settle(ews_runaway_t *rw);
/* A run ends. */
static inline void ews_runaway_end(ews_runaway_t *rw) {
  if (--rw->depth) return;
  __atomic_store_n(&rw->start_ns, 0, __ATOMIC_RELAXED);
  __atomic_signal_fence(__ATOMIC_SEQ_CST);
  if (rw->armed | rw->stopping | rw->stopped ||
      (rw->jit_flag && (*rw->jit_flag & EWS_JIT_INTERRUPT_BIT)))
    ews_runaway_settle(rw);
}
/* An error reached an edgews dispatcher (core.handler_error). When it is a stop,
 * disarms, restarts the run's clock (the app's error handler gets a budget of its own)
 * and returns EWS_STOP_TIME or EWS_STOP_MEMORY; otherwise 0. */
int ews_runaway_caught(ews_runaway_t *rw);

/* Stops the watchdog and frees what the process-wide machinery holds (at exit, after
 * every VM was detached). */
void ews_runaway_shutdown(void);

#endif
