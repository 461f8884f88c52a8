/* runaway.c — time and memory budgets for Lua runs: the counting allocator, the hook
 * that stops a run, the signal handler that arms it and the watchdog thread that
 * sends the signal (see runaway.h). */
#include "lua/runaway.h"

#include <errno.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "log.h"
#include "lua/gc_pace.h"
#include "lua/jit_interrupt.h"

/* The watchdog looks four times per budget (the smallest any VM uses), but not more
 * often than every 10 ms nor less often than every 250 ms: a run is stopped at most
 * one such tick after its budget ran out. */
#define TICK_MIN_NS 10000000ull
#define TICK_MAX_NS 250000000ull

static __thread ews_runaway_t *tls_rw; /* the VM of this thread (signal handler, hook) */

static struct {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  ews_runaway_t *list;
  pthread_t thread;
  int running, stop;
} wd = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, 0, 0, 0};

static pthread_once_t init_once = PTHREAD_ONCE_INIT;

#define FENCE() __atomic_signal_fence(__ATOMIC_SEQ_CST)

static void hook(lua_State *L, lua_Debug *ar);

/* ---- arming and disarming (the VM's thread; also from the signal handler) --------- */

static void arm(ews_runaway_t *rw, int why) {
  rw->armed |= why;
  lua_sethook(rw->L, hook, LUA_MASKCOUNT, 1);
  if (rw->jit_flag) *rw->jit_flag |= EWS_JIT_INTERRUPT_BIT;
}

/* With rw->busy set. */
static void disarm(ews_runaway_t *rw) {
  if (rw->jit_flag) *rw->jit_flag &= (uint8_t)~EWS_JIT_INTERRUPT_BIT;
  lua_sethook(rw->L, NULL, 0, 0);
  rw->armed = 0;
  rw->stopping = 0;
}

static int over_budget(ews_runaway_t *rw, uint64_t now) {
  uint64_t start = __atomic_load_n(&rw->start_ns, __ATOMIC_RELAXED);
  uint64_t budget = __atomic_load_n(&rw->budget_ns, __ATOMIC_RELAXED);
  return start && budget && now >= start && now - start >= budget;
}

/* SIGURG from the watchdog: arm the hook if this thread's run is (still) over budget.
 * lua_sethook is the one Lua API call LuaJIT allows here. The signal may interrupt
 * LuaJIT rewriting its dispatch table itself (starting or ending a trace recording),
 * which would then finish with its own, hook-less version over ours while keeping
 * our mode: so the table is rewritten whole (off, then on) at every signal, and the
 * watchdog signals again at every tick until the run stops. */
static void on_signal(int sig) {
  (void)sig;
  int saved = errno;
  ews_runaway_t *rw = tls_rw;
  if (rw && !rw->busy && !rw->stopping && over_budget(rw, uv_hrtime())) {
    lua_sethook(rw->L, NULL, 0, 0);
    arm(rw, EWS_STOP_TIME);
  }
  errno = saved;
}

/* ---- the hook ---------------------------------------------------------------------- */

static int own_code(const ews_runaway_t *rw, const char *source) {
  return source && rw->own_prefix && strncmp(source, rw->own_prefix, rw->own_prefix_len) == 0;
}

static void hook(lua_State *L, lua_Debug *ar) {
  ews_runaway_t *rw = tls_rw;
  if (!rw) {
    lua_sethook(L, NULL, 0, 0);
    return;
  }
  rw->busy = 1;
  FENCE();
  if (!rw->depth) {
    disarm(rw); /* a stale arming outside any run */
    goto out;
  }
  if (!rw->stopping) {
    int why = rw->armed;
    rw->armed = 0;
    if ((why & EWS_STOP_MEMORY) && rw->mem_limit && rw->mem > rw->mem_limit) {
      /* Over the limit: garbage, or data the run holds? Collect and look again. */
      lua_gc(L, LUA_GCCOLLECT, 0);
      if (rw->mem > rw->mem_limit) {
        rw->stopping = EWS_STOP_MEMORY;
      } else {
        /* Mostly live data near the limit: look again after another eighth of it,
         * not at every allocation. */
        size_t next = rw->mem + rw->mem_limit / 8;
        rw->mem_check = next > rw->mem_limit ? next : rw->mem_limit;
      }
    }
    if (!rw->stopping && (why & EWS_STOP_TIME) && over_budget(rw, uv_hrtime()))
      rw->stopping = EWS_STOP_TIME;
    if (!rw->stopping) {
      disarm(rw);
      goto out;
    }
    rw->stopped = rw->stopping;
  }
  /* Stopping: raise in application code, at every instruction, until caught. A
   * failed lua_pcall may have put the hook mask back: keep compiled code leaving. */
  if (rw->jit_flag) *rw->jit_flag |= EWS_JIT_INTERRUPT_BIT;
  if (!lua_getinfo(L, "Sl", ar) || own_code(rw, ar->source)) goto out;
  char where[160], what[160];
  if (ar->currentline > 0) snprintf(where, sizeof where, "%s:%d", ar->short_src, ar->currentline);
  else snprintf(where, sizeof where, "%s", ar->short_src);
  if (rw->stopping == EWS_STOP_MEMORY)
    snprintf(what, sizeof what, "the Lua heap of this worker passed max_lua_memory (%.0f MiB)",
             (double)rw->mem_limit / 1048576.0);
  else
    snprintf(what, sizeof what, "ran longer than handler_timeout (%g s)",
             (double)__atomic_load_n(&rw->budget_ns, __ATOMIC_RELAXED) / 1e9);
  lua_pushfstring(L, "%s: stopped: %s", where, what);
  FENCE();
  rw->busy = 0;
  lua_error(L);
out:
  FENCE();
  rw->busy = 0;
}

/* ---- the allocator ----------------------------------------------------------------- */

static void *alloc(void *ud, void *p, size_t osize, size_t nsize) {
  ews_runaway_t *rw = ud;
  size_t old = p ? osize : 0;
  if (nsize > old && rw->depth) {
    size_t grow = nsize - old, after = rw->mem + grow;
    if (after > rw->mem_check && !rw->busy) {
      /* A giant single allocation (string.rep of gigabytes) fails here, before it is
       * made; everything else is stopped by the hook at the next instruction. */
      if (grow >= rw->mem_big && after > rw->mem_hard) return NULL;
      if (!(rw->armed & EWS_STOP_MEMORY) && !rw->stopping) {
        rw->busy = 1; /* no signal inside this lua_sethook */
        FENCE();
        arm(rw, EWS_STOP_MEMORY);
        FENCE();
        rw->busy = 0;
      }
    }
  }
  void *r;
  if (!p) {
    void *k;
    if (nsize <= EWS_RUNAWAY_KEEP_SIZE && !(nsize & 7) && (k = rw->kept[nsize >> 3])) {
      rw->kept[nsize >> 3] = *(void **)k; /* a kept block of exactly this size */
      rw->kept_bytes -= nsize;
      r = k;
    } else {
      r = rw->alloc_f(rw->alloc_ud, NULL, 0, nsize);
    }
    /* what the garbage is made of, for the collector's pace (gc_pace.h) */
    rw->new_bytes += nsize;
    if (nsize >= EWS_GC_BIG_BLOCK) rw->new_big += nsize;
  } else if (nsize == 0 && osize && osize <= EWS_RUNAWAY_KEEP_SIZE && !(osize & 7) &&
             rw->kept_bytes + osize <= EWS_RUNAWAY_KEEP_BYTES) {
    /* LuaJIT frees with the size it asked for: the block holds osize bytes */
    *(void **)p = rw->kept[osize >> 3];
    rw->kept[osize >> 3] = p;
    rw->kept_bytes += osize;
    r = NULL;
  } else {
    r = rw->alloc_f(rw->alloc_ud, p, osize, nsize);
  }
  if (r || nsize == 0) rw->mem += nsize - old; /* wraps around for shrinking and free */
  return r;
}

/* ---- runs --------------------------------------------------------------------------- */

void ews_runaway_settle(ews_runaway_t *rw) {
  rw->busy = 1;
  FENCE();
  int mem = rw->stopped == EWS_STOP_MEMORY || rw->stopping == EWS_STOP_MEMORY;
  disarm(rw);
  rw->stopped = 0;
  if (rw->mem_limit) rw->mem_check = rw->mem_limit;
  /* The stopped run's data is garbage now: give it back before the next run. */
  if (mem) lua_gc(rw->L, LUA_GCCOLLECT, 0);
  FENCE();
  rw->busy = 0;
}

int ews_runaway_caught(ews_runaway_t *rw) {
  if (!rw || !rw->stopping) return 0;
  int why = rw->stopping;
  rw->busy = 1;
  FENCE();
  disarm(rw);
  rw->stopped = why;
  if (rw->depth) __atomic_store_n(&rw->start_ns, uv_hrtime(), __ATOMIC_RELAXED);
  FENCE();
  rw->busy = 0;
  return why;
}

/* A limit is on: from now on compiled code must be interruptible. */
static void need_guards(ews_runaway_t *rw) {
  if (rw->guards || !rw->jit_flag) return;
  rw->guards = 1;
  ews_jit_interrupt_enable(rw->L);
}

void ews_runaway_note_budget(ews_runaway_t *rw, uint64_t budget_ns) {
  uint64_t cur = __atomic_load_n(&rw->min_budget_ns, __ATOMIC_RELAXED);
  if (budget_ns && (!cur || budget_ns < cur))
    __atomic_store_n(&rw->min_budget_ns, budget_ns, __ATOMIC_RELAXED);
  if (budget_ns) need_guards(rw);
}

static uint64_t secs_to_ns(double s) { return s > 0 ? (uint64_t)(s * 1e9) : 0; }

void ews_runaway_set_limits(ews_runaway_t *rw, double timeout, double memory) {
  rw->default_budget_ns = secs_to_ns(timeout);
  ews_runaway_note_budget(rw, rw->default_budget_ns);
  rw->mem_limit = memory >= 1 ? (size_t)memory : 0;
  rw->mem_check = rw->mem_limit ? rw->mem_limit : SIZE_MAX;
  rw->mem_hard = rw->mem_limit ? rw->mem_limit + rw->mem_limit / 4 : SIZE_MAX;
  rw->mem_big = rw->mem_limit ? rw->mem_limit / 4 : SIZE_MAX;
  if (rw->mem_limit) need_guards(rw);
}

void ews_runaway_set_run_budget(ews_runaway_t *rw, double timeout) {
  if (!rw->depth) return;
  uint64_t ns = secs_to_ns(timeout);
  ews_runaway_note_budget(rw, ns);
  __atomic_store_n(&rw->budget_ns, ns, __ATOMIC_RELAXED);
}

/* ---- the watchdog thread ------------------------------------------------------------- */

static void *watchdog_main(void *arg) {
  (void)arg;
  pthread_mutex_lock(&wd.lock);
  while (!wd.stop) {
    uint64_t now = uv_hrtime(), tick = TICK_MAX_NS;
    for (ews_runaway_t *rw = wd.list; rw; rw = rw->next) {
      /* Signalled again at every tick until the run ends or is caught: a signal that
       * lands while the VM updates its dispatch table itself is then retried. */
      if (over_budget(rw, now)) pthread_kill(rw->thread, EWS_RUNAWAY_SIGNAL);
      uint64_t mb = __atomic_load_n(&rw->min_budget_ns, __ATOMIC_RELAXED) / 4;
      if (mb && mb < tick) tick = mb;
    }
    if (tick < TICK_MIN_NS) tick = TICK_MIN_NS;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t ns = (uint64_t)ts.tv_nsec + tick;
    ts.tv_sec += (time_t)(ns / 1000000000u);
    ts.tv_nsec = (long)(ns % 1000000000u);
    pthread_cond_timedwait(&wd.cond, &wd.lock, &ts);
  }
  pthread_mutex_unlock(&wd.lock);
  return NULL;
}

static void global_init(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  if (sigaction(EWS_RUNAWAY_SIGNAL, &sa, NULL) != 0)
    EWS_WARN("runaway: cannot install the signal handler");
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_destroy(&wd.cond);
  pthread_cond_init(&wd.cond, &ca);
  pthread_condattr_destroy(&ca);
}

/* ---- attaching a VM ----------------------------------------------------------------- */

ews_runaway_t *ews_runaway_attach(lua_State *L, const char *lua_dir, double timeout,
                                  double memory) {
  pthread_once(&init_once, global_init);
  ews_runaway_t *rw = calloc(1, sizeof *rw);
  if (!rw) return NULL;
  if (lua_dir) {
    size_t n = strlen(lua_dir);
    while (n > 1 && lua_dir[n - 1] == '/') n--;
    rw->own_prefix = malloc(n + 10);
    if (!rw->own_prefix) {
      free(rw);
      return NULL;
    }
    snprintf(rw->own_prefix, n + 10, "@%.*s/edgews/", (int)n, lua_dir);
    rw->own_prefix_len = strlen(rw->own_prefix);
  }
  rw->L = L;
  rw->thread = pthread_self();
  rw->alloc_f = lua_getallocf(L, &rw->alloc_ud);
  rw->mem = (size_t)lua_gc(L, LUA_GCCOUNT, 0) * 1024 + (size_t)lua_gc(L, LUA_GCCOUNTB, 0);
  lua_setallocf(L, alloc, rw);
  rw->jit_flag = ews_jit_interrupt_find(L, alloc, rw);
  ews_runaway_set_limits(rw, timeout, memory);
  if (!rw->jit_flag) {
    static int warned;
    if (!__atomic_exchange_n(&warned, 1, __ATOMIC_RELAXED))
      EWS_WARN("runaway: this LuaJIT's layout is not the one expected: loops the JIT has "
               "compiled cannot be interrupted (interpreted code still is)");
  }
  tls_rw = rw;
  pthread_mutex_lock(&wd.lock);
  rw->next = wd.list;
  wd.list = rw;
  if (!wd.running) {
    /* The watchdog takes no signal: process signals go to the threads that handle them. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    if (pthread_create(&wd.thread, NULL, watchdog_main, NULL) == 0) wd.running = 1;
    else EWS_WARN("runaway: cannot start the watchdog thread: handlers have no time limit");
    pthread_sigmask(SIG_SETMASK, &old, NULL);
  }
  pthread_mutex_unlock(&wd.lock);
  return rw;
}

ews_runaway_t *ews_runaway_of(lua_State *L) {
  void *ud = NULL;
  return L && lua_getallocf(L, &ud) == alloc ? ud : NULL;
}

void ews_runaway_detach(ews_runaway_t *rw) {
  if (!rw) return;
  pthread_mutex_lock(&wd.lock);
  for (ews_runaway_t **p = &wd.list; *p; p = &(*p)->next) {
    if (*p == rw) {
      *p = rw->next;
      break;
    }
  }
  pthread_mutex_unlock(&wd.lock);
  rw->busy = 1;
  FENCE();
  if (tls_rw == rw) tls_rw = NULL;
  disarm(rw);
  /* lua_close then frees with LuaJIT's own allocator and destroys its arena. */
  lua_setallocf(rw->L, rw->alloc_f, rw->alloc_ud);
  free(rw->own_prefix);
  free(rw);
}

void ews_runaway_shutdown(void) {
  pthread_mutex_lock(&wd.lock);
  int running = wd.running;
  wd.stop = 1;
  pthread_cond_broadcast(&wd.cond);
  pthread_mutex_unlock(&wd.lock);
  if (running) pthread_join(wd.thread, NULL);
  pthread_mutex_lock(&wd.lock);
  wd.running = 0;
  wd.stop = 0;
  pthread_mutex_unlock(&wd.lock);
  ews_jit_interrupt_shutdown();
}
