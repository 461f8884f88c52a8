/* vm.c — creating, loading and closing a worker's LuaJIT VM (see vm.h). */
#include "lua/vm.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uv.h>

#include "log.h"
#include "lua/gc_pace.h"
#include "lua/runaway.h"

#ifndef EWS_LUA_DIR
#define EWS_LUA_DIR "lua"
#endif

static int traceback(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (!msg) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) return 1;
    msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

static char *dup_err(lua_State *L, int idx, const char *fallback) {
  const char *m = lua_tostring(L, idx);
  return strdup(m ? m : fallback);
}

static int ref_field(lua_State *L, int t, const char *name) {
  lua_getfield(L, t, name);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return LUA_NOREF;
  }
  return luaL_ref(L, LUA_REGISTRYINDEX);
}

/* package.preload["jit.profile"]: LuaJIT's profiler serves the runaway watchdog
 * (lua/jit_interrupt.h) and cannot be used by scripts too. */
static int no_profiler(lua_State *L) {
  return luaL_error(L, "jit.profile is not available in edgews-lua (LuaJIT's profiler "
                       "interrupts runaway handlers)");
}

static char lua_dir_buf[4096];
static uv_once_t lua_dir_once = UV_ONCE_INIT;

static int has_modules(const char *dir) {
  char p[4200];
  snprintf(p, sizeof p, "%s/edgews/init.lua", dir);
  return access(p, R_OK) == 0;
}

static void find_lua_dir(void) {
  const char *env = getenv("EDGEWS_LUA_PATH");
  if (env && *env) {
    snprintf(lua_dir_buf, sizeof lua_dir_buf, "%s", env);
    return;
  }
  /* An installed binary: PREFIX/bin/edgews-lua -> PREFIX/share/lua/5.1. */
  char exe[4096];
  size_t n = sizeof exe;
  if (uv_exepath(exe, &n) == 0) {
    char *slash = strrchr(exe, '/');
    if (slash) {
      *slash = 0;
      char cand[4200];
      snprintf(cand, sizeof cand, "%s/../share/lua/5.1", exe);
      char *real = realpath(cand, NULL);
      if (real && has_modules(real)) {
        snprintf(lua_dir_buf, sizeof lua_dir_buf, "%s", real);
        free(real);
        return;
      }
      free(real);
    }
  }
  snprintf(lua_dir_buf, sizeof lua_dir_buf, "%s", EWS_LUA_DIR);
}

const char *ews_vm_lua_dir(void) {
  uv_once(&lua_dir_once, find_lua_dir);
  return lua_dir_buf;
}

/* Is src (a chunk name or traceback location) one of the edgews modules? */
static int own_source(const char *src, const char *dir, size_t dl) {
  if (src[0] == '@') src++;
  if (strncmp(src, "...", 3) == 0) {
    /* Lua shortened a long chunk name to its tail: "...ix/share/lua/5.1/edgews/x.lua" */
    src += 3;
    const char *e = strstr(src, "/edgews/");
    size_t n = e ? (size_t)(e - src) : 0;
    return e && n <= dl && strncmp(dir + dl - n, src, n) == 0;
  }
  return strncmp(src, dir, dl) == 0 && strncmp(src + dl, "/edgews/", 8) == 0;
}

char *ews_vm_error_summary(const char *err) {
  if (!err) err = "unknown error";
  const char *nl = strchr(err, '\n');
  size_t head = nl ? (size_t)(nl - err) : strlen(err);
  const char *dir = ews_vm_lua_dir();
  size_t dl = strlen(dir);
  while (dl > 1 && dir[dl - 1] == '/') dl--;
  const char *from = NULL;
  size_t from_len = 0;
  const char *tb = strstr(err, "\nstack traceback:");
  if (own_source(err, dir, dl) && tb) {
    /* Frames look like "\t/path/app.lua:12: in function 'f'". */
    for (const char *p = strchr(tb + 1, '\n'); p; p = strchr(p + 1, '\n')) {
      const char *s = p + 1;
      while (*s == '\t' || *s == ' ') s++;
      const char *e = strstr(s, ": in ");
      const char *eol = strchr(s, '\n');
      if (!e || (eol && e > eol)) continue;
      if (*s == '[' || own_source(s, dir, dl)) continue;
      from = s;
      from_len = (size_t)(e - s);
      break;
    }
  }
  size_t cap = head + from_len + 32;
  char *out = malloc(cap);
  if (!out) return NULL;
  if (from) snprintf(out, cap, "%.*s (called from %.*s)", (int)head, err, (int)from_len, from);
  else snprintf(out, cap, "%.*s", (int)head, err);
  return out;
}

lua_State *ews_vm_new(ews_vm_t *w, const char *script_dir, char **err) {
  lua_State *L = luaL_newstate();
  if (!L) {
    *err = strdup("luaL_newstate failed (out of memory)");
    return NULL;
  }
  const char *lua_dir = ews_vm_lua_dir();
  /* Before any Lua code runs: the counting allocator and the interrupt guards. */
  /* The main thread's configuration VM runs the script before the configuration is
   * known: the defaults (edgews.configure's handler_timeout takes over as it runs). */
  ews_runaway_t *rw = ews_runaway_attach(
      L, lua_dir, w ? w->cfg->handler_timeout : EWS_RUNAWAY_DEFAULT_TIMEOUT,
      w ? w->cfg->max_lua_memory : EWS_RUNAWAY_DEFAULT_MEMORY);
  if (!rw) {
    lua_close(L);
    *err = strdup("out of memory");
    return NULL;
  }
  if (w) w->runaway = rw;
  /* Out of memory here leaves LuaJIT's default pace; the next allocation fails anyway. */
  (void)ews_gc_pace_start(L);
  lua_pushcfunction(L, traceback); /* stays at index 1 */
  luaL_openlibs(L);

  /* package.path: our modules first, then the script's directory, then defaults. */
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "path");
  lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;%s/?.lua;%s/?/init.lua;%s", lua_dir, lua_dir,
                  script_dir ? script_dir : ".", script_dir ? script_dir : ".",
                  lua_tostring(L, -1));
  lua_setfield(L, -3, "path");
  lua_pop(L, 1);
  /* package.preload["edgews.core"] = the C module, with the worker as upvalue. */
  lua_getfield(L, -1, "preload");
  lua_pushlightuserdata(L, w);
  lua_pushcclosure(L, ews_luaopen_core, 1);
  lua_setfield(L, -2, "edgews.core");
  lua_pushcfunction(L, no_profiler);
  lua_setfield(L, -2, "jit.profile");
  lua_pop(L, 2);

  ews_vm_refs_t local_refs, *refs = w ? &w->refs : &local_refs;

  lua_getglobal(L, "require");
  lua_pushliteral(L, "edgews");
  if (lua_pcall(L, 1, 1, 1) != 0) {
    if (!has_modules(lua_dir)) {
      size_t cap = strlen(lua_dir) + 200;
      if ((*err = malloc(cap)))
        snprintf(*err, cap, "cannot find the edgews Lua modules in %s (set EDGEWS_LUA_PATH to the "
                 "directory that holds edgews/init.lua)", lua_dir);
      ews_vm_close(L);
      return NULL;
    }
    *err = dup_err(L, -1, "cannot load the edgews module");
    ews_vm_close(L);
    return NULL;
  }
  int t = lua_gettop(L);
  refs->dispatch_open = ref_field(L, t, "_dispatch_open");
  refs->dispatch_message = ref_field(L, t, "_dispatch_message");
  refs->dispatch_close = ref_field(L, t, "_dispatch_close");
  refs->enqueue_message = ref_field(L, t, "_enqueue_message");
  refs->enqueue_close = ref_field(L, t, "_enqueue_close");
  refs->run_timer = ref_field(L, t, "_run_timer");
  refs->authenticate = ref_field(L, t, "_authenticate");
  refs->bus = ref_field(L, t, "_bus");
  refs->pubsub = ref_field(L, t, "_pubsub");
  refs->socket_mt = ref_field(L, t, "_Socket");
  refs->apps = ref_field(L, t, "_apps");
  lua_settop(L, 1);
  if (refs->dispatch_open == LUA_NOREF || refs->dispatch_message == LUA_NOREF ||
      refs->dispatch_close == LUA_NOREF || refs->enqueue_message == LUA_NOREF ||
      refs->enqueue_close == LUA_NOREF || refs->run_timer == LUA_NOREF || refs->authenticate == LUA_NOREF || refs->bus == LUA_NOREF || refs->pubsub == LUA_NOREF ||
      refs->socket_mt == LUA_NOREF || refs->apps == LUA_NOREF) {
    *err = strdup("the edgews module lacks its dispatch functions");
    ews_vm_close(L);
    return NULL;
  }
  return L;
}

int ews_vm_load(lua_State *L, const char *script, char **err) {
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "loaded");
  lua_getfield(L, -1, "edgews");
  lua_getfield(L, -1, "_load");
  lua_pushstring(L, script);
  /* The script's body is a run like any handler: a load that loops forever is
   * stopped and fails like any load error. */
  ews_runaway_t *rw = ews_runaway_of(L);
  if (rw) ews_runaway_begin(rw, uv_hrtime(), UINT64_MAX);
  int r = lua_pcall(L, 1, 2, 1);
  if (rw) ews_runaway_end(rw);
  int ok = r == 0 && lua_toboolean(L, -2);
  if (!ok) *err = dup_err(L, -1, "script failed to load");
  lua_settop(L, 1);
  return ok ? 0 : -1;
}

void ews_vm_close(lua_State *L) {
  ews_runaway_detach(ews_runaway_of(L));
  lua_close(L);
}
