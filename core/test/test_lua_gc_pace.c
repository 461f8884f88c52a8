/* test_lua_gc_pace.c — the pace of a VM's garbage collector (lua/gc_pace.h) on a bare
 * LuaJIT VM wrapped by the runaway allocator: after a period whose garbage was mostly
 * large blocks the pause follows the live heap (a small heap grows by
 * EWS_GC_MIN_GROWTH before the next cycle, a large one by its own size), after small
 * objects it is LuaJIT's default, the memory limit bounds the growth, a heap that
 * churns 16 KiB strings runs a few cycles where LuaJIT's default pace would run
 * hundreds, and a script's own collectgarbage("setpause") is kept. */
#include <lauxlib.h>
#include <lualib.h>

#include "lua/gc_pace.h"
#include "lua/runaway.h"
#include "test.h"

static lua_State *L;
static ews_runaway_t *rw;

static int pause_now(void) {
  int p = lua_gc(L, LUA_GCSETPAUSE, 0);
  lua_gc(L, LUA_GCSETPAUSE, p);
  return p;
}

/* The pacer reads the heap at the end of the cycle, a few hundred bytes before the
 * collection's caller does: the pause it set is within 1% of the formula's now. */
static int near(int a, int b) { return abs(a - b) <= 2 + b / 100; }

static void lua_do(const char *code) {
  if (luaL_dostring(L, code) != 0) {
    fprintf(stderr, "lua: %s\n", lua_tostring(L, -1));
    CHECK(0);
    lua_pop(L, 1);
  }
}

static long long lua_int(const char *global) {
  lua_getglobal(L, global);
  long long v = (long long)lua_tonumber(L, -1);
  lua_pop(L, 1);
  return v;
}

TEST(pause_formula) {
  const size_t M = 1048576;
  CHECK_EQ(ews_gc_pace_pause(1 * M, 0), 500);      /* 1 MiB + 4 MiB */
  CHECK_EQ(ews_gc_pace_pause(4 * M, 0), 200);      /* its own size = the minimum */
  CHECK_EQ(ews_gc_pace_pause(64 * M, 0), 200);     /* LuaJIT's default for large heaps */
  CHECK_EQ(ews_gc_pace_pause(512 * 1024, 0), 900);
  CHECK_EQ(ews_gc_pace_pause(1 * M, 4 * M), 250);  /* half the 3 MiB left below the limit */
  CHECK_EQ(ews_gc_pace_pause(1 * M, 2 * M), 200);  /* never less than the default */
  CHECK_EQ(ews_gc_pace_pause(3 * M, 2 * M), 200);  /* over the limit: the default */
  CHECK_EQ(ews_gc_pace_pause(0, 0), 100000);       /* capped */
}

/* Counts the cycles that end while `code` runs, with a sentinel of the script's own. */
static long long cycles_during(const char *code) {
  lua_do("cycles = 0\n"
         "local function arm()\n"
         "  local p = newproxy(true)\n"
         "  getmetatable(p).__gc = function() cycles = cycles + 1; arm() end\n"
         "end\n"
         "arm()\n");
  lua_do(code);
  return lua_int("cycles");
}

/* ~256 KiB of garbage in 4 KiB strings, then a full cycle: the pace after large garbage */
static void collect_after_big_garbage(void) {
  lua_do("for i = 1, 64 do local s = string.rep('z', 4096) .. i end");
  lua_gc(L, LUA_GCCOLLECT, 0);
}

TEST(small_garbage_keeps_the_default_pace) {
  collect_after_big_garbage();
  CHECK(pause_now() > 300);
  lua_do("for i = 1, 20000 do local t = { i, tostring(i), x = i } end");
  lua_gc(L, LUA_GCCOLLECT, 0);
  CHECK_EQ(pause_now(), 200);
}

TEST(pause_follows_the_live_heap) {
  lua_do("big = nil");
  collect_after_big_garbage();
  size_t small = rw->mem;
  CHECK(small < 2 * 1048576);
  CHECK(near(pause_now(), ews_gc_pace_pause(small, 0)));
  CHECK(pause_now() > 300);
  /* ~12 MiB of live strings: the next cycle comes at twice that, as LuaJIT's default. */
  lua_do("big = {}\nfor i = 1, 12 * 64 do big[i] = string.rep(string.char(i % 256), 16384 - 24) .. i end");
  collect_after_big_garbage();
  CHECK(rw->mem > 8 * 1048576);
  CHECK_EQ(pause_now(), 200);
  lua_do("big = nil");
  collect_after_big_garbage();
  CHECK(near(pause_now(), ews_gc_pace_pause(rw->mem, 0)));
  CHECK(pause_now() > 300);
}

TEST(churn_of_large_strings_runs_few_cycles) {
  lua_gc(L, LUA_GCCOLLECT, 0);
  /* 2,000 distinct 16 KiB strings, ~32 MiB of garbage, on a heap of a few hundred KiB:
   * LuaJIT's default pace (a cycle per live heap's worth) would end hundreds of
   * cycles; with 4 MiB of growth between cycles about 8. */
  long long n = cycles_during("local s\n"
                              "local base = string.rep('x', 16380)\n"
                              "for i = 1, 2000 do s = base .. string.format('%04d', i) end\n");
  CHECK(n >= 4);
  CHECK(n <= 16);
}

TEST(memory_limit_bounds_the_growth) {
  lua_gc(L, LUA_GCCOLLECT, 0);
  size_t live = rw->mem;
  ews_runaway_set_limits(rw, EWS_RUNAWAY_DEFAULT_TIMEOUT, (double)(live + 2 * 1048576));
  collect_after_big_garbage();
  int p = pause_now();
  CHECK(near(p, ews_gc_pace_pause(rw->mem, rw->mem_limit)));
  /* the next cycle comes after half of the 2 MiB left below the limit */
  CHECK(near(p, (int)(100 * (rw->mem + 1048576) / rw->mem)));
  CHECK(p < ews_gc_pace_pause(rw->mem, 0));
  ews_runaway_set_limits(rw, EWS_RUNAWAY_DEFAULT_TIMEOUT, 0);
  collect_after_big_garbage();
  CHECK(near(pause_now(), ews_gc_pace_pause(rw->mem, 0)));
}

/* Last: it turns the pacer off for this VM. */
TEST(script_pause_is_kept) {
  lua_do("collectgarbage('setpause', 300)");
  lua_gc(L, LUA_GCCOLLECT, 0);
  CHECK_EQ(pause_now(), 300);
  CHECK(rw->gc_pace_off);
  long long n = cycles_during("local s\n"
                              "local base = string.rep('y', 16380)\n"
                              "for i = 1, 2000 do s = base .. string.format('%04d', i) end\n");
  CHECK_EQ(pause_now(), 300);
  CHECK(n > 16); /* the script's pace, not the pacer's */
}

int main(void) {
  L = luaL_newstate();
  rw = ews_runaway_attach(L, "/edgews-test-lua", 0, 0);
  CHECK(rw != NULL);
  if (!rw) return TEST_EXIT();
  CHECK_EQ(ews_gc_pace_start(L), 0);
  luaL_openlibs(L);
  RUN(pause_formula);
  RUN(small_garbage_keeps_the_default_pace);
  RUN(pause_follows_the_live_heap);
  RUN(churn_of_large_strings_runs_few_cycles);
  RUN(memory_limit_bounds_the_growth);
  RUN(script_pause_is_kept);
  ews_runaway_detach(rw);
  lua_close(L);
  ews_runaway_shutdown();
  return TEST_EXIT();
}
