/* gc_pace.c — when a VM's garbage collector starts its next cycle (see gc_pace.h): the
 * end-of-cycle finalizer and the pause it sets. */
#include "lua/gc_pace.h"

#include <stdint.h>

#include "err.h"
#include "lua/runaway.h"

static const char sentinel_mt_key = 0; /* registry: the sentinel's metatable */

int ews_gc_pace_pause(size_t live, size_t limit) {
  if (live < 1024) live = 1024;
  uint64_t growth = EWS_GC_MIN_GROWTH;
  if (limit) {
    uint64_t room = limit > live ? (limit - live) / 2 : 0;
    if (growth > room) growth = room;
  }
  if (growth < live) growth = live;
  uint64_t pause = (uint64_t)100 * (live + growth) / live;
  return pause > 100000 ? 100000 : (int)pause;
}

/* A zero-size userdata with the finalizer below; nothing refers to it, so the cycle
 * that is running (or the next) collects it and runs the finalizer at its end. */
static int arm(lua_State *L) {
  if (!lua_checkstack(L, 2)) return EWS_ENOMEM;
  lua_newuserdata(L, 0);
  lua_pushlightuserdata(L, (void *)&sentinel_mt_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  lua_setmetatable(L, -2);
  lua_pop(L, 1);
  return 0;
}

/* __gc of the sentinel: the cycle is over (LuaJIT computes the next threshold from the
 * pause once the finalizers have run); the heap now is the live data plus what was
 * allocated during the cycle. The garbage of the period that ends decides the pace
 * of the next. */
static int on_cycle_end(lua_State *L) {
  ews_runaway_t *rw = ews_runaway_of(L);
  if (!rw || rw->gc_pace_off) return 0; /* closing, or the script paces itself */
  int big = rw->new_big >= rw->new_bytes / 2 && rw->new_big > 0;
  rw->new_bytes = rw->new_big = 0;
  int pause = big ? ews_gc_pace_pause(rw->mem, rw->mem_limit) : 200;
  int before = lua_gc(L, LUA_GCSETPAUSE, pause);
  if (before != rw->gc_pause) { /* collectgarbage("setpause") since our last one */
    lua_gc(L, LUA_GCSETPAUSE, before);
    rw->gc_pace_off = 1;
    return 0;
  }
  rw->gc_pause = pause;
  arm(L);
  return 0;
}

int ews_gc_pace_start(lua_State *L) {
  ews_runaway_t *rw = ews_runaway_of(L);
  if (!rw || !lua_checkstack(L, 3)) return EWS_ENOMEM;
  lua_pushlightuserdata(L, (void *)&sentinel_mt_key);
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, on_cycle_end);
  lua_setfield(L, -2, "__gc");
  lua_rawset(L, LUA_REGISTRYINDEX);
  rw->gc_pause = 200; /* LuaJIT's default until a cycle has seen the garbage */
  rw->new_bytes = rw->new_big = 0;
  lua_gc(L, LUA_GCSETPAUSE, rw->gc_pause);
  return arm(L);
}
