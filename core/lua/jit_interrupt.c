/* jit_interrupt.c — interrupt guards in LuaJIT-compiled code (see jit_interrupt.h). */
#include "lua/jit_interrupt.h"

#include <lauxlib.h>
#include <luajit.h>
#include <pthread.h>
#include <stddef.h>
#include <string.h>

/* How far into the main lua_State to look for the global state's pointer, and how far
 * into the global state for the hook mask. The main lua_State sits at the start of
 * LuaJIT's GG_State block (global state, JIT state, dispatch table: many KB), so
 * both windows stay inside memory LuaJIT allocated. */
#define SCAN_L 512
#define SCAN_G 512

static pthread_once_t anchor_once = PTHREAD_ONCE_INIT;
static lua_State *anchor;

static void profile_cb(void *data, lua_State *L, int samples, int vmstate) {
  (void)data, (void)L, (void)samples, (void)vmstate;
}

/* Takes LuaJIT's single profiler slot with a VM that never runs, sampling every
 * 10^9 ms of process CPU time (its SIGPROF timer never fires in practice, and if it
 * did it would only flag this idle VM). */
static void make_anchor(void) {
  anchor = luaL_newstate();
  if (anchor) luaJIT_profile_start(anchor, "i1000000000", profile_cb, NULL);
}

static void probe_hook(lua_State *L, lua_Debug *ar) { (void)L, (void)ar; }

/* The global state: it follows the main lua_State in the same block and starts with
 * the allocator function and its data. */
static unsigned char *find_global(lua_State *L, lua_Alloc allocf, void *allocd) {
  unsigned char *base = (unsigned char *)L;
  unsigned char *found = NULL;
  for (size_t off = 0; off + 2 * sizeof(void *) <= SCAN_L; off += sizeof(void *)) {
    void *f, *d;
    memcpy(&f, base + off, sizeof f);
    memcpy(&d, base + off + sizeof(void *), sizeof d);
    if (f == (void *)allocf && d == allocd) {
      if (found) return NULL; /* ambiguous */
      found = base + off;
    }
  }
  return found;
}

uint8_t *ews_jit_interrupt_find(lua_State *L, lua_Alloc allocf, void *allocd) {
  pthread_once(&anchor_once, make_anchor);
  if (!anchor) return NULL;
  unsigned char *g = find_global(L, allocf, allocd);
  if (!g) return NULL;
  /* Find the one byte whose low four bits follow the hook events lua_sethook sets
   * (LUA_MASKCALL 1, LUA_MASKRET 2, LUA_MASKLINE 4, LUA_MASKCOUNT 8) while its high
   * bits stay as they are. */
  static const int masks[] = {0, LUA_MASKCOUNT, LUA_MASKLINE | LUA_MASKCALL, LUA_MASKRET, 0};
  enum { N = sizeof masks / sizeof masks[0] };
  unsigned char snap[N][SCAN_G];
  for (int i = 0; i < N; i++) {
    lua_sethook(L, masks[i] ? probe_hook : NULL, masks[i], masks[i] ? 1000 + i : 0);
    memcpy(snap[i], g, SCAN_G);
  }
  lua_sethook(L, NULL, 0, 0);
  int hit = -1;
  for (int off = 0; off < SCAN_G; off++) {
    int ok = 1;
    for (int i = 0; i < N && ok; i++)
      ok = (snap[i][off] & 0x0f) == masks[i] && (snap[i][off] & 0xf0) == (snap[0][off] & 0xf0);
    if (ok) {
      if (hit >= 0) return NULL; /* ambiguous */
      hit = off;
    }
  }
  if (hit < 0 || (g[hit] & EWS_JIT_INTERRUPT_BIT)) return NULL;
  return g + hit;
}

void ews_jit_interrupt_enable(lua_State *L) {
  pthread_once(&anchor_once, make_anchor);
  /* Profile mode 'l' for this VM; the anchor keeps the profiler, so this returns
   * without starting anything else. */
  if (anchor) luaJIT_profile_start(L, "l", profile_cb, NULL);
}

void ews_jit_interrupt_shutdown(void) {
  if (!anchor) return;
  luaJIT_profile_stop(anchor);
  lua_close(anchor);
  anchor = NULL;
}
