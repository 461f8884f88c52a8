/* api_static.c — static files for Lua (edgews.static, lua/edgews/loader.lua):
 * core.static_root(dir) resolves a mount's directory at load time, and
 * core.set_static(mounts) swaps the worker's mount table (net/static_files.h) after
 * a successful (re)load. */
#include <errno.h>
#include <lauxlib.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "err.h"
#include "lua/api.h"
#include "net/static_files.h"

static ews_vm_t *worker_of(lua_State *L) { return lua_touserdata(L, lua_upvalueindex(1)); }

/* core.static_root(dir) -> the resolved absolute directory | nil, reason. Works on
 * the main thread's configuration VM too (it runs the script first). */
static int l_static_root(lua_State *L) {
  const char *dir = luaL_checkstring(L, 1);
  char real[PATH_MAX];
  struct stat st;
  if (!realpath(dir, real)) {
    lua_pushnil(L);
    lua_pushstring(L, strerror(errno));
    return 2;
  }
  if (stat(real, &st) != 0 || !S_ISDIR(st.st_mode)) {
    lua_pushnil(L);
    lua_pushliteral(L, "not a directory");
    return 2;
  }
  lua_pushstring(L, real);
  return 1;
}

static const char *opt_string(lua_State *L, int t, const char *k) {
  lua_getfield(L, t, k);
  const char *s = lua_isstring(L, -1) ? lua_tostring(L, -1) : NULL;
  lua_pop(L, 1); /* s stays valid: the table still holds the string */
  return s;
}

/* core.set_static({ {prefix=, root=, cache_control=, index=}, ... }): replaces this
 * worker's mounts. The Lua side has validated every field (root is resolved). */
static int l_set_static(lua_State *L) {
  ews_vm_t *w = worker_of(L);
  luaL_checktype(L, 1, LUA_TTABLE);
  if (!w) return 0;
  ews_static_mounts_t nt = {0};
  size_t n = lua_objlen(L, 1);
  for (size_t i = 1; i <= n; i++) {
    lua_rawgeti(L, 1, (int)i);
    int t = lua_gettop(L);
    const char *prefix = opt_string(L, t, "prefix"), *root = opt_string(L, t, "root");
    int r = ews_static_mounts_add(&nt, prefix ? prefix : "", root ? root : "",
                                  opt_string(L, t, "cache_control"), opt_string(L, t, "index"));
    lua_settop(L, t - 1);
    if (r != 0) {
      ews_static_mounts_clear(&nt);
      return luaL_error(L, "set_static: %s", r == EWS_EINVAL ? "bad mount" : "out of memory");
    }
  }
  /* Requests are answered synchronously from the table, so the old one can go now. */
  ews_static_mounts_t old = w->net->statics;
  w->net->statics = nt;
  ews_static_mounts_clear(&old);
  return 0;
}

static const luaL_Reg fns[] = {
    {"static_root", l_static_root}, {"set_static", l_set_static}, {NULL, NULL}};

void ews_api_static_register(lua_State *L, void *w) { ews_api_add(L, w, fns); }
