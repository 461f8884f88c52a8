/* fuzz_lua.h — what the fuzz targets of Lua modules share: loading a Lua driver
 * (core/fuzz/fuzz_<name>.lua, which returns function(input) and raises when an
 * invariant fails), calling it once per input through a protected call (an error
 * prints the driver's message and traceback and aborts, so libFuzzer keeps the
 * input), and coverage of the Lua code for libFuzzer.
 *
 * Coverage: LuaJIT's interpreter is not instrumented, so without help libFuzzer would
 * see the same C paths for every Lua branch. A line hook hashes (previous line,
 * current line) of every function (the chunk name's address identifies the file,
 * it is interned) into libFuzzer's extra counters, like AFL's edge coverage; the JIT
 * is off in fuzzing builds so every line runs in the interpreter and reaches the
 * hook. The gcc replay build has no hook and keeps the JIT on (the code runs as in
 * the server). Limits: the counters are hashed (collisions), and C code reached
 * from Lua (cjson, mbedTLS) contributes only what is instrumented (nothing). */
#ifndef EWS_FUZZ_LUA_H
#define EWS_FUZZ_LUA_H

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "fuzz.h"

#ifdef EWS_LIBFUZZER
#define FL_COUNTERS (1u << 16)
__attribute__((section("__libfuzzer_extra_counters"))) static uint8_t fl_counters[FL_COUNTERS];
static uintptr_t fl_prev;

static void fl_hook(lua_State *L, lua_Debug *ar) {
  if (!lua_getinfo(L, "S", ar)) return;
  uintptr_t loc = ((uintptr_t)ar->source >> 3) * 0x9E3779B1u + (uintptr_t)ar->currentline * 0x85EBCA6Bu;
  loc ^= loc >> 15;
  fl_counters[(loc ^ fl_prev) & (FL_COUNTERS - 1)]++;
  fl_prev = loc >> 1;
}
#endif

static int fl_traceback(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  luaL_traceback(L, L, msg ? msg : "(error object is not a string)", 1);
  return 1;
}

/* The state is closed at exit, so that LeakSanitizer's final check does not report
 * what the VM still holds (cjson's buffers, the modules). */
static lua_State *fl_state;
static void fl_close(void) {
  if (fl_state) lua_close(fl_state);
  fl_state = NULL;
}

/* Loads the driver file (which returns the per-input function) with the VM's
 * package.path; returns a registry reference to the function and closes the state
 * at exit. Aborts on error. */
static int fl_load_driver(lua_State *L, const char *path) {
  lua_pushcfunction(L, fl_traceback);
  if (luaL_loadfile(L, path) != 0 || lua_pcall(L, 0, 1, -2) != 0 ||
      lua_type(L, -1) != LUA_TFUNCTION) {
    fprintf(stderr, "fuzz: cannot load %s: %s\n", path,
            lua_isstring(L, -1) ? lua_tostring(L, -1) : "did not return a function");
    abort();
  }
  int ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pop(L, 1);
  fl_state = L;
  atexit(fl_close);
#ifdef EWS_LIBFUZZER
  luaL_dostring(L, "require('jit').off()");
  lua_sethook(L, fl_hook, LUA_MASKLINE, 0);
#endif
  return ref;
}

/* Runs the driver on one input; aborts when it raises. */
static void fl_run(lua_State *L, int ref, const uint8_t *data, size_t size) {
  int top = lua_gettop(L);
#ifdef EWS_LIBFUZZER
  fl_prev = 0;
#endif
  lua_pushcfunction(L, fl_traceback);
  lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
  lua_pushlstring(L, (const char *)data, size);
  if (lua_pcall(L, 1, 0, top + 1) != 0) {
    fprintf(stderr, "fuzz: invariant failed in the Lua driver: %s\n", lua_tostring(L, -1));
    abort();
  }
  lua_settop(L, top);
}

#endif
