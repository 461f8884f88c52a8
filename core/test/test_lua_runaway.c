/* test_lua_runaway.c — time and memory budgets of Lua runs (lua/runaway.h) on a bare
 * LuaJIT VM: loops the interpreter runs and loops the JIT compiled are stopped with
 * file:line, a pcall in the looping code cannot swallow the stop, edgews' own code is
 * never interrupted, a caught stop leaves the rest of the run a fresh budget, a heap
 * that grows without bound is stopped and reclaimed while garbage churn is not, a
 * giant allocation fails at once, and the JIT keeps working afterwards. */
#include <lauxlib.h>
#include <lualib.h>
#include <uv.h>

#include "lua/runaway.h"
#include "test.h"

#define OWN_DIR "/edgews-test-lua"

static lua_State *L;
static ews_runaway_t *rw;

/* core.caught() as the dispatchers call it (through core.handler_error). */
static int l_caught(lua_State *Ls) {
  lua_pushinteger(Ls, ews_runaway_caught(ews_runaway_of(Ls)));
  return 1;
}

/* Runs `code` (chunk name "@app.lua", application code) as one run with the budget
 * given; returns the error message (static copy) or NULL when it succeeded. */
static const char *run_as(const char *code, const char *chunkname, double budget) {
  static char msg[512];
  lua_settop(L, 0);
  if (luaL_loadbuffer(L, code, strlen(code), chunkname) != 0) {
    snprintf(msg, sizeof msg, "load: %s", lua_tostring(L, -1));
    return msg;
  }
  ews_runaway_begin(rw, uv_hrtime(), budget > 0 ? (uint64_t)(budget * 1e9) : 0);
  int r = lua_pcall(L, 0, LUA_MULTRET, 0);
  ews_runaway_end(rw);
  if (r == 0) return NULL;
  snprintf(msg, sizeof msg, "%s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "?");
  return msg;
}

static const char *run(const char *code, double budget) { return run_as(code, "@app.lua", budget); }

static int starts_with(const char *s, const char *prefix) {
  return s && strncmp(s, prefix, strlen(prefix)) == 0;
}

TEST(jit_interrupt_available) {
  /* Debian's LuaJIT: the interrupt byte was found, so compiled loops can be stopped. */
  CHECK(rw->jit_flag != NULL);
}



/* Whether the JIT made a looping trace since the last jit.flush(): proof that the loop
 * that was stopped ran as machine code, where hooks never fire. */
static int compiled_a_loop(void) {
  const char *e = run("local ju = require 'jit.util'\n"
                      "for i = 1, 1000 do\n"
                      "  local ti = ju.traceinfo(i)\n"
                      "  if ti and ti.linktype == 'loop' then return end\n"
                      "end\n"
                      "error('no looping trace')\n",
                      0);
  return e == NULL;
}

TEST(interpreted_loop_stopped_with_file_line) {
  run("jit.flush()", 0);
  const char *e = run("jit.off()\nlocal n = 0\nwhile true do n = n + 1 end\n", 0.05);
  CHECK(starts_with(e, "app.lua:3: stopped: ran longer than handler_timeout"));
  run("jit.on()", 0);
  CHECK(!compiled_a_loop());
}

TEST(compiled_while_loop_stopped) {
  run("jit.flush()", 0);
  const char *e = run("local x = 0\nwhile true do end\n", 0.05);
  CHECK(starts_with(e, "app.lua:2: stopped:"));
  CHECK(compiled_a_loop());
}

TEST(compiled_for_loop_stopped) {
  run("jit.flush()", 0);
  const char *e = run("local x = 0\nfor i = 1, 1e12 do x = x + i end\nreturn x\n", 0.05);
  CHECK(starts_with(e, "app.lua:2: stopped:"));
  CHECK(compiled_a_loop());
}

TEST(pcall_cannot_swallow_the_stop) {
  const char *e = run("local n = 0\n"
                      "while true do\n"
                      "  pcall(function() while true do end end)\n"
                      "  n = n + 1\n"
                      "end\n",
                      0.05);
  CHECK(e && strstr(e, "stopped:") != NULL);
}

TEST(loop_in_a_coroutine_stopped) {
  const char *e =
      run("local co = coroutine.wrap(function()\n  while true do end\nend)\nco()\n", 0.05);
  CHECK(e && strstr(e, "app.lua:2: stopped:") != NULL);
}

/* How long the run in progress has taken so far (s), and the VM's hook mask. */
static int l_elapsed(lua_State *Ls) {
  uint64_t start = __atomic_load_n(&rw->start_ns, __ATOMIC_RELAXED);
  lua_pushnumber(Ls, (double)(uv_hrtime() - start) / 1e9);
  return 1;
}
static int l_hookmask(lua_State *Ls) {
  lua_pushinteger(Ls, lua_gethookmask(Ls));
  return 1;
}

TEST(own_code_runs_on_and_a_caught_stop_gets_a_fresh_budget) {
  /* The user's function loops; "edgews" code (the own prefix) catches the stop like a
   * dispatcher: it runs on although the run is stopping, reports the stop, and the
   * run's clock starts again (the app's error handler gets a budget of its own). */
  static const char user[] = "return function() while true do end end";
  CHECK(luaL_loadbuffer(L, user, sizeof user - 1, "@app.lua") == 0);
  lua_call(L, 0, 1);
  lua_setglobal(L, "user_loop");
  static const char after[] =
      "return function() local x = 0 for i = 1, 1e5 do x = x + i end return x end";
  CHECK(luaL_loadbuffer(L, after, sizeof after - 1, "@app.lua") == 0);
  lua_call(L, 0, 1);
  lua_setglobal(L, "user_after");
  lua_pushcfunction(L, l_caught);
  lua_setglobal(L, "caught");
  lua_pushcfunction(L, l_elapsed);
  lua_setglobal(L, "elapsed");
  lua_pushcfunction(L, l_hookmask);
  lua_setglobal(L, "hookmask");
  const char *e = run_as("local ok, err = xpcall(user_loop, debug.traceback)\n"
                         "local t = {}\n"
                         "for i = 1, 1000 do t[i] = i end -- never interrupted\n"
                         "local armed, before = hookmask(), elapsed()\n"
                         "local why = caught()\n"
                         "local after, disarmed = elapsed(), hookmask()\n"
                         "return ok, err, why, armed, before, after, disarmed, user_after()\n",
                         "@" OWN_DIR "/edgews/dispatch.lua", 0.05);
  CHECK(e == NULL);
  CHECK(lua_toboolean(L, 1) == 0);
  CHECK(starts_with(lua_tostring(L, 2), "app.lua:1: stopped:"));
  CHECK_EQ(lua_tointeger(L, 3), EWS_STOP_TIME);
  CHECK(lua_tointeger(L, 4) != 0);           /* still raising until caught */
  CHECK(lua_tonumber(L, 5) >= 0.05);         /* the run was over budget ... */
  CHECK(lua_tonumber(L, 6) < lua_tonumber(L, 5)); /* ... and starts afresh */
  CHECK_EQ(lua_tointeger(L, 7), 0);
  CHECK(lua_tonumber(L, 8) > 0);
}

TEST(no_budget_no_stop) {
  const char *e = run("local x = 0\nfor i = 1, 2e7 do x = x + i end\nreturn x\n", 0);
  CHECK(e == NULL);
}

TEST(growing_heap_stopped_and_reclaimed) {
  ews_runaway_set_limits(rw, 0, 32.0 * 1048576);
  size_t base = rw->mem;
  const char *e = run("local t = {}\nwhile true do t[#t + 1] = { 1, 2, 3 } end\n", 0);
  CHECK(starts_with(
      e, "app.lua:2: stopped: the Lua heap of this worker passed max_lua_memory (32 MiB)"));
  lua_settop(L, 0);
  lua_gc(L, LUA_GCCOLLECT, 0);
  CHECK(rw->mem < base + 4 * 1048576);
  /* Strings built up forever, in pieces: stopped the same way. */
  e = run("local t, i = {}, 0\nwhile true do i = i + 1; t[i] = ('y'):rep(1000) .. i end\n", 0);
  CHECK(starts_with(e, "app.lua:2: stopped: the Lua heap"));
  /* A string doubled forever: once a single concatenation is a quarter of the limit
   * and would take the heap past 1.25 x the limit, it fails at once. */
  e = run("local s = 'x'\nwhile true do s = s .. s end\n", 0);
  CHECK(e && strstr(e, "not enough memory") != NULL);
  /* LuaJIT's string buffer halves at each collection. */
  lua_settop(L, 0);
  for (int i = 0; i < 4; i++) lua_gc(L, LUA_GCCOLLECT, 0);
  CHECK(rw->mem < base + 4 * 1048576);
  ews_runaway_set_limits(rw, EWS_RUNAWAY_DEFAULT_TIMEOUT, 0);
}

TEST(garbage_churn_is_not_stopped) {
  ews_runaway_set_limits(rw, 0, 32.0 * 1048576);
  /* 8 x the limit allocated in total, little of it live at any time. */
  const char *e = run(
      "local keep\nfor i = 1, 2e6 do keep = { i, i + 1, tostring(i) } end\nreturn keep\n", 0);
  CHECK(e == NULL);
  ews_runaway_set_limits(rw, EWS_RUNAWAY_DEFAULT_TIMEOUT, 0);
}

/* Freed small blocks are kept for the next request of their exact size: objects made
 * from reused blocks hold their own contents (every table and string checked after
 * several collections of churn), the count of the heap stays LuaJIT's own, and no more
 * than EWS_RUNAWAY_KEEP_BYTES is kept. */
TEST(kept_blocks_reused_intact_and_counted) {
  const char *e = run(
      "local live = {}\n"
      "for round = 1, 6 do\n"
      "  for i = 1, 30000 do\n"
      "    local t = { a = i, b = round, s = 'v' .. i .. ':' .. round, [i % 7 + 1] = i }\n"
      "    if i % 10 == 0 then live[#live + 1] = t end\n"
      "  end\n"
      "  collectgarbage()\n"
      "end\n"
      "local n = 0\n"
      "for k, t in ipairs(live) do\n"
      "  local i, round = (k - 1) % 3000 * 10 + 10, math.floor((k - 1) / 3000) + 1\n"
      "  if t.a ~= i or t.b ~= round or t.s ~= 'v' .. i .. ':' .. round or t[i % 7 + 1] ~= i then\n"
      "    error('table ' .. k .. ' changed')\n"
      "  end\n"
      "  n = n + 1\n"
      "end\n"
      "assert(n == 18000, n)\n",
      0);
  if (e) fprintf(stderr, "%s\n", e);
  CHECK(e == NULL);
  CHECK(rw->kept_bytes > 0);
  CHECK(rw->kept_bytes <= EWS_RUNAWAY_KEEP_BYTES);
  lua_settop(L, 0);
  lua_gc(L, LUA_GCCOLLECT, 0);
  size_t counted = (size_t)lua_gc(L, LUA_GCCOUNT, 0) * 1024 + (size_t)lua_gc(L, LUA_GCCOUNTB, 0);
  CHECK_EQ(rw->mem, counted);
}

TEST(giant_allocation_fails_at_once) {
  ews_runaway_set_limits(rw, 0, 32.0 * 1048576);
  const char *e = run("local s = string.rep('x', 400 * 1048576)\nreturn #s\n", 0);
  CHECK(e && strstr(e, "not enough memory") != NULL);
  ews_runaway_set_limits(rw, EWS_RUNAWAY_DEFAULT_TIMEOUT, 0);
}

TEST(disarmed_after_each_run_and_jit_still_on) {
  CHECK(rw->jit_flag && (*rw->jit_flag & EWS_JIT_INTERRUPT_BIT) == 0);
  CHECK_EQ(lua_gethookmask(L), 0);
  const char *e = run("assert(jit.status())\n"
                      "local x = 0\nfor i = 1, 1e6 do x = x + i end\nreturn x\n", 0);
  CHECK(e == NULL);
}

#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif

/* Whether the JIT compiles the interrupt checks (IR "PROF") into a hot loop of Lx. */
static int loop_has_checks(lua_State *Lx) {
  static const char code[] =
      "jit.flush()\n"
      "local x = 0\n"
      "for i = 1, 1000 do x = x + i end\n"
      "local ju, vmdef, bit = require 'jit.util', require 'jit.vmdef', require 'bit'\n"
      "for tr = 1, 100 do\n"
      "  local ti = ju.traceinfo(tr)\n"
      "  for ref = 1, ti and ti.nins or 0 do\n"
      "    local m, ot = ju.traceir(tr, ref)\n"
      "    local op = m and bit.rshift(ot, 8)\n"
      "    if op and vmdef.irnames:sub(op * 6 + 1, op * 6 + 4) == 'PROF' then return true end\n"
      "  end\n"
      "end\n"
      "return false\n";
  if (luaL_loadbuffer(Lx, code, sizeof code - 1, "=checks") != 0 || lua_pcall(Lx, 0, 1, 0) != 0) {
    fprintf(stderr, "loop_has_checks: %s\n", lua_tostring(Lx, -1));
    lua_settop(Lx, 0);
    return -1;
  }
  int r = lua_toboolean(Lx, -1);
  lua_settop(Lx, 0);
  return r;
}

TEST(checks_compiled_only_when_a_limit_is_on) {
  CHECK_EQ(loop_has_checks(L), 1);
  /* A VM without any limit: no checks in its compiled code, until a limit comes on.
   * (Last test: the VM replaces this thread's VM for the watchdog.) */
  lua_State *L2 = luaL_newstate();
  ews_runaway_t *rw2 = ews_runaway_attach(L2, OWN_DIR, 0, 0);
  CHECK(rw2 != NULL);
  if (!rw2) return;
  luaL_openlibs(L2);
  CHECK_EQ(loop_has_checks(L2), 0);
  ews_runaway_set_limits(rw2, 0, 64.0 * 1048576);
  CHECK_EQ(loop_has_checks(L2), 1);
  ews_runaway_detach(rw2);
  lua_close(L2);
}

int main(void) {
#ifdef UNDER_TSAN
  /* ThreadSanitizer runs signal handlers at the thread's next intercepted call, which
   * a Lua loop never makes: the watchdog's signal would never arrive. */
  fprintf(stderr, "skipped under ThreadSanitizer\n");
  return 0;
#endif
  L = luaL_newstate();
  rw = ews_runaway_attach(L, OWN_DIR, EWS_RUNAWAY_DEFAULT_TIMEOUT, 0);
  CHECK(rw != NULL);
  if (!rw) return TEST_EXIT();
  CHECK(ews_runaway_of(L) == rw);
  luaL_openlibs(L);
  RUN(jit_interrupt_available);
  RUN(interpreted_loop_stopped_with_file_line);
  RUN(compiled_while_loop_stopped);
  RUN(compiled_for_loop_stopped);
  RUN(pcall_cannot_swallow_the_stop);
  RUN(loop_in_a_coroutine_stopped);
  RUN(own_code_runs_on_and_a_caught_stop_gets_a_fresh_budget);
  RUN(no_budget_no_stop);
  RUN(growing_heap_stopped_and_reclaimed);
  RUN(garbage_churn_is_not_stopped);
  RUN(kept_blocks_reused_intact_and_counted);
  RUN(giant_allocation_fails_at_once);
  RUN(disarmed_after_each_run_and_jit_still_on);
  RUN(checks_compiled_only_when_a_limit_is_on);
  ews_runaway_detach(rw);
  lua_close(L);
  ews_runaway_shutdown();
  return TEST_EXIT();
}
