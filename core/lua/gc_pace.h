/* gc_pace.h — the pace of a VM's garbage collector: a collection cycle starts once the
 * heap has grown past its live data by the larger of that live data (LuaJIT's default,
 * pause 200) and EWS_GC_MIN_GROWTH, never by more than half of what is left below
 * max_lua_memory. A small heap that churns large strings (16 KiB messages) is otherwise
 * marked and swept every few dozen messages: the cost of a cycle grows with the live
 * data, not with the garbage.
 *
 * How: a finalizer that runs at the end of every cycle (a zero-size userdata that
 * re-creates itself) sets the pause for the next threshold from the heap counted by
 * the runaway allocator. A script that sets its own pause (collectgarbage("setpause"))
 * keeps it: the pacer notices at the next cycle end and stops for that VM.
 * State lives in the VM's ews_runaway_t (gc_pause, gc_pace_off). */
#ifndef EWS_GC_PACE_H
#define EWS_GC_PACE_H

#include <lua.h>
#include <stddef.h>

#define EWS_GC_MIN_GROWTH (4 * 1048576)

/* The pause (percent, LUA_GCSETPAUSE) for a heap of `live` bytes under a memory limit
 * of `limit` bytes (0: none): at least 200. */
int ews_gc_pace_pause(size_t live, size_t limit);

/* Starts pacing a VM that ews_runaway_attach wrapped (on its thread). Returns 0, or
 * EWS_ENOMEM (the VM then keeps LuaJIT's default pace). */
int ews_gc_pace_start(lua_State *L);

#endif
