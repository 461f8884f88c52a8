/* jit_interrupt.h — making JIT-compiled Lua code interruptible, on a stock LuaJIT 2.1.
 *
 * LuaJIT calls hooks (lua_sethook) only from its interpreter: a loop compiled into a
 * trace (`while true do end`, `for i = 1, 1e12 do x = x + i end`) never sees one. The
 * only runtime switch that makes compiled code check a flag is the profiler's
 * line mode: a VM whose JIT state has profile mode 'l' compiles a guard into every
 * trace at each change of source line (so at least once per loop iteration), and the
 * guard leaves the trace for the interpreter when the HOOK_PROFILE bit (0x80) of the
 * VM's global hook mask is set. The rest of this file's trick is reaching those two
 * private things through public API:
 *
 *  - profile mode: luaJIT_profile_start(L, "l", ...) sets the VM's mode *before* it
 *    checks whether the (process-wide, single-VM) profiler is already taken. A never
 *    used "anchor" VM takes the profiler once, with an interval of 11 days, so every
 *    later start only sets the mode of its VM and returns.
 *  - the hook mask: found once per VM, by locating the global state (it starts with
 *    the allocator function and its data, which the caller has just set to values of
 *    its own) and diffing it while lua_sethook changes the event bits; exactly one
 *    byte must follow them, or the setup reports failure.
 *
 * The price of the guards is a `test byte [mem], 0x80; jnz` per source line in
 * compiled code (bench/RESULTS.md). Everything here is LuaJIT-version specific and
 * verified at VM creation; when verification fails, compiled loops simply cannot be
 * interrupted (hooks still stop interpreted code). */
#ifndef EWS_JIT_INTERRUPT_H
#define EWS_JIT_INTERRUPT_H

#include <lua.h>
#include <stdint.h>

#define EWS_JIT_INTERRUPT_BIT 0x80 /* LuaJIT's HOOK_PROFILE */

/* For a fresh VM whose allocator was just set with lua_setallocf(L, allocf, allocd)
 * (values that occur nowhere else in its state): returns the address of the byte to
 * set (with EWS_JIT_INTERRUPT_BIT) to make running compiled code leave for the
 * interpreter, or NULL when this LuaJIT's layout could not be verified. Changes
 * nothing in the VM; call before it runs any Lua code. */
uint8_t *ews_jit_interrupt_find(lua_State *L, lua_Alloc allocf, void *allocd);
/* Makes L's JIT compile the interrupt guards from now on (flushing what it compiled
 * so far). Call from C, outside compiled code: before any Lua code runs, or from a
 * C function Lua called (which LuaJIT never runs inside a trace). */
void ews_jit_interrupt_enable(lua_State *L);

/* Releases the anchor VM (at process exit, after every VM was closed). */
void ews_jit_interrupt_shutdown(void);

#endif
