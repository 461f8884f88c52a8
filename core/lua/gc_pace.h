/* gc_pace.h — the pace of a VM's garbage collector. LuaJIT starts a cycle once the heap
 * has grown past its live data by that live data again (pause 200): right for small
 * objects, whose memory is reused while still in cache. When the garbage is mostly
 * large blocks (the strings of 16 KiB messages), a cycle reclaims few objects for
 * its cost, which grows with the live data, not with the garbage: a small heap would
 * be marked and swept every few dozen messages. So when at least half of the bytes
 * allocated since the last cycle ended were in blocks of EWS_GC_BIG_BLOCK bytes or
 * more, the next cycle starts after the larger of the live data and
 * EWS_GC_MIN_GROWTH, never more than half of what is left below max_lua_memory;
 * otherwise LuaJIT's default pace.
 *
 * How: a finalizer that runs at the end of every cycle (a zero-size userdata that
 * re-creates itself) sets the pause for the next threshold from the heap and the
 * allocations counted by the runaway allocator. A script that sets its own pause
 * (collectgarbage("setpause")) keeps it: the pacer notices at the next cycle end and
 * stops for that VM. State lives in the VM's ews_runaway_t (gc_pause, gc_pace_off,
 * new_bytes, new_big). */
#ifndef EWS_GC_PACE_H
#define EWS_GC_PACE_H

#include <lua.h>
#include <stddef.h>

#define EWS_GC_MIN_GROWTH (4 * 1048576)
#define EWS_GC_BIG_BLOCK 1024

/* The pause (percent, LUA_GCSETPAUSE) after a period whose garbage was mostly large
 * blocks, for a heap of `live` bytes under a memory limit of `limit` bytes (0: none):
 * at least 200. */
int ews_gc_pace_pause(size_t live, size_t limit);

/* Starts pacing a VM that ews_runaway_attach wrapped (on its thread). Returns 0, or
 * EWS_ENOMEM (the VM then keeps LuaJIT's default pace). */
int ews_gc_pace_start(lua_State *L);

#endif
