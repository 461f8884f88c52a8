/* script_config.c — the server settings a script made with edgews.configure{...}:
 * read from the loaded configuration VM (lua/vm.h) into the server configuration,
 * keeping what the command line set (config.h). */
#include "script_config.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

static int get_number(lua_State *L, int t, const char *k, double *out) {
  lua_getfield(L, t, k);
  int present = lua_isnumber(L, -1);
  if (present) *out = lua_tonumber(L, -1);
  lua_pop(L, 1);
  return present;
}

int ews_script_read_config(lua_State *L, ews_config_t *cfg, char **err) {
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
    lua_getfield(L, t, "redis");
    if (!(cfg->cli_set & EWS_CLI_REDIS) && (lua_isstring(L, -1) || lua_istable(L, -1))) {
      /* redis = "URL" or redis = {"URL", ...} */
      int rt = lua_gettop(L);
      int n = lua_istable(L, rt) ? (int)lua_objlen(L, rt) : 1;
      cfg->nredis = 0;
      for (int i = 1; i <= n && rc == 0; i++) {
        if (lua_istable(L, rt)) lua_rawgeti(L, rt, i);
        else lua_pushvalue(L, rt);
        const char *url = lua_tostring(L, -1);
        const char *why = "want a URL string";
        if (!url || ews_config_add_redis(cfg, url, &why) != 0) {
          char msg[512];
          snprintf(msg, sizeof msg, "edgews.configure: bad redis[%d] '%s': %s", i,
                   url ? url : "?", why);
          *err = strdup(msg);
          rc = -1;
        }
        lua_pop(L, 1);
      }
    } else if (!lua_isnil(L, -1) && !(cfg->cli_set & EWS_CLI_REDIS)) {
      *err = strdup("edgews.configure: redis must be a URL or a list of URLs");
      rc = -1;
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
