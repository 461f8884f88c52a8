/* vm.c — creating, loading and closing a worker's LuaJIT VM (see vm.h). */
#include "lua/vm.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "log.h"
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

lua_State *ews_vm_new(ews_vm_t *w, const char *script_dir, char **err) {
  lua_State *L = luaL_newstate();
  if (!L) {
    *err = strdup("luaL_newstate failed (out of memory)");
    return NULL;
  }
  const char *lua_dir = getenv("EDGEWS_LUA_PATH");
  if (!lua_dir || !*lua_dir) lua_dir = EWS_LUA_DIR;
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
  lua_settop(L, 1);
  if (refs->dispatch_open == LUA_NOREF || refs->dispatch_message == LUA_NOREF ||
      refs->dispatch_close == LUA_NOREF || refs->enqueue_message == LUA_NOREF ||
      refs->enqueue_close == LUA_NOREF || refs->run_timer == LUA_NOREF || refs->authenticate == LUA_NOREF || refs->bus == LUA_NOREF || refs->pubsub == LUA_NOREF ||
      refs->socket_mt == LUA_NOREF) {
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

static int get_number(lua_State *L, int t, const char *k, double *out) {
  lua_getfield(L, t, k);
  int present = lua_isnumber(L, -1);
  if (present) *out = lua_tonumber(L, -1);
  lua_pop(L, 1);
  return present;
}

int ews_vm_read_config(lua_State *L, ews_config_t *cfg, char **err) {
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "loaded");
  lua_getfield(L, -1, "edgews");
  lua_getfield(L, -1, "_server_config");
  int t = lua_gettop(L);
  int rc = 0;
  if (lua_istable(L, t)) {
    double v;
    lua_getfield(L, t, "listen");
    if (lua_isstring(L, -1) && !(cfg->cli_set & EWS_CLI_LISTEN) &&
        ews_config_parse_listen(cfg, lua_tostring(L, -1)) != 0) {
      *err = strdup("edgews.configure: bad listen (want \"HOST:PORT\")");
      rc = -1;
    }
    lua_pop(L, 1);
    if (!(cfg->cli_set & EWS_CLI_WORKERS) && get_number(L, t, "workers", &v)) cfg->workers = (int)v;
    if (!(cfg->cli_set & EWS_CLI_DRAIN)) get_number(L, t, "drain_timeout", &cfg->drain_timeout);
    if (get_number(L, t, "handshake_timeout", &v)) cfg->handshake_timeout_ms = (uint32_t)(v * 1000);
    if (get_number(L, t, "close_timeout", &v)) cfg->close_timeout_ms = (uint32_t)(v * 1000);
    if (get_number(L, t, "max_head_size", &v)) cfg->max_head = (uint32_t)v;
    if (get_number(L, t, "max_headers", &v)) cfg->max_headers = (uint32_t)v;
    if (get_number(L, t, "backlog", &v)) cfg->backlog = (int)v;
    get_number(L, t, "handler_timeout", &cfg->handler_timeout);
    get_number(L, t, "max_lua_memory", &cfg->max_lua_memory);
    lua_getfield(L, t, "log_level");
    if (lua_isstring(L, -1) && !(cfg->cli_set & EWS_CLI_LOG_LEVEL)) {
      int lv = ews_log_level_parse(lua_tostring(L, -1));
      if (lv >= 0) cfg->log_level = lv;
    }
    lua_pop(L, 1);
    lua_getfield(L, t, "plain_listen");
    if (lua_isstring(L, -1) && !(cfg->cli_set & EWS_CLI_PLAIN) &&
        ews_config_parse_addr(lua_tostring(L, -1), cfg->plain_host, &cfg->plain_port) != 0) {
      *err = strdup("edgews.configure: bad plain_listen (want \"HOST:PORT\")");
      rc = -1;
    }
    lua_pop(L, 1);
    lua_getfield(L, t, "admin_listen");
    if (lua_isstring(L, -1) && !(cfg->cli_set & EWS_CLI_ADMIN) &&
        ews_config_parse_addr(lua_tostring(L, -1), cfg->admin_host, &cfg->admin_port) != 0) {
      *err = strdup("edgews.configure: bad admin_listen (want \"HOST:PORT\")");
      rc = -1;
    }
    lua_pop(L, 1);
    lua_getfield(L, t, "metrics");
    if (lua_isboolean(L, -1)) cfg->metrics = lua_toboolean(L, -1);
    lua_pop(L, 1);
    lua_getfield(L, t, "health");
    if (lua_isboolean(L, -1)) cfg->health = lua_toboolean(L, -1);
    lua_pop(L, 1);
    lua_getfield(L, t, "tls");
    if (lua_istable(L, -1) && !(cfg->cli_set & EWS_CLI_TLS)) {
      /* Relative paths in the script are relative to the script's directory. */
      const char *names[2] = {"cert", "key"};
      char **slots[2] = {&cfg->tls_cert, &cfg->tls_key};
      for (int i = 0; i < 2; i++) {
        lua_getfield(L, -1, names[i]);
        const char *v = lua_tostring(L, -1);
        if (v) {
          free(*slots[i]);
          if (v[0] == '/') *slots[i] = strdup(v);
          else if ((*slots[i] = malloc(strlen(cfg->script_dir) + strlen(v) + 2)))
            sprintf(*slots[i], "%s/%s", cfg->script_dir, v);
        }
        lua_pop(L, 1);
      }
    }
    lua_pop(L, 1);
    lua_getfield(L, t, "watch");
    if (lua_isboolean(L, -1) && !(cfg->cli_set & EWS_CLI_WATCH)) cfg->watch = lua_toboolean(L, -1);
    lua_pop(L, 1);
    lua_getfield(L, t, "max_message_memory");
    if (lua_isnumber(L, -1) && !(cfg->cli_set & EWS_CLI_MSGMEM))
      cfg->max_message_memory = (uint64_t)lua_tonumber(L, -1);
    lua_pop(L, 1);
    lua_getfield(L, t, "worker_inbox_limit");
    if (lua_isnumber(L, -1)) cfg->inbox_limit = (uint32_t)lua_tonumber(L, -1);
    lua_pop(L, 1);
    lua_getfield(L, t, "reuse_port");
    if (lua_isboolean(L, -1) && !(cfg->cli_set & EWS_CLI_REUSE_PORT))
      cfg->reuse_port = lua_toboolean(L, -1);
    lua_pop(L, 1);
    lua_getfield(L, t, "data_dir");
    const char *dd = lua_tostring(L, -1);
    if (dd && !(cfg->cli_set & EWS_CLI_DATA)) {
      /* Relative to the script's directory, like the TLS files. */
      free(cfg->data_dir);
      if (dd[0] == '/') cfg->data_dir = strdup(dd);
      else if ((cfg->data_dir = malloc(strlen(cfg->script_dir) + strlen(dd) + 2)))
        sprintf(cfg->data_dir, "%s/%s", cfg->script_dir, dd);
    }
    lua_pop(L, 1);
    lua_getfield(L, t, "pubsub");
    if (lua_istable(L, -1)) {
      int ps = lua_gettop(L);
      lua_getfield(L, ps, "persistence");
      if (lua_isboolean(L, -1)) cfg->pubsub_persist = lua_toboolean(L, -1);
      lua_pop(L, 1);
      if (get_number(L, ps, "max_queue_size", &v)) cfg->pubsub_max_queue = (int32_t)v;
      if (get_number(L, ps, "message_ttl", &v)) cfg->pubsub_ttl = (int32_t)v;
      if (get_number(L, ps, "max_recover", &v)) cfg->pubsub_max_recover = (uint32_t)v;
    }
    lua_pop(L, 1);
    lua_getfield(L, t, "notifications");
    if (lua_istable(L, -1)) {
      int ns = lua_gettop(L);
      if (get_number(L, ns, "max_per_user", &v)) cfg->notif_max_per_user = (int32_t)v;
      if (get_number(L, ns, "ttl", &v)) cfg->notif_ttl = (int32_t)v;
    }
    lua_pop(L, 1);
  }
  lua_settop(L, 1);
  return rc;
}

void ews_vm_close(lua_State *L) {
  ews_runaway_detach(ews_runaway_of(L));
  lua_close(L);
}
