/* app.c — app (route) configurations and their reference counts (see app.h). */
#include "net/app.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "net/limits.h"

ews_app_t *ews_app_new(const char *path) {
  ews_app_t *a = calloc(1, sizeof *a);
  if (!a) return NULL;
  a->path = strdup(path);
  /* Shared with every worker and every version of the script: "conns:" + path. */
  char key[512];
  int kl = snprintf(key, sizeof key, "conns:%s", path);
  if (a->path && kl > 0 && (size_t)kl < sizeof key) a->total = ews_limit_get(key, (size_t)kl);
  if (!a->path || !a->total) {
    free(a->path);
    free(a);
    return NULL;
  }
  a->refs = 1;
  a->rx.max_frame = 1u << 20;
  a->rx.max_message = 1u << 20;
  a->rx.expect_masked = 1;
  a->idle_timeout_ms = 0;
  a->heartbeat_interval_ms = 30000;
  a->heartbeat_timeout_ms = 10000;
  a->max_buffered = 4u << 20;
  a->handler_budget_ns = UINT64_MAX;
  ews_pmd_config_default(&a->pmd_cfg);
  a->pmd_cfg.threshold = 64; /* the same default as compression = {} in Lua */
  return a;
}

int ews_app_add_origin(ews_app_t *a, const char *origin) {
  char **p = realloc(a->origins, (a->n_origins + 1) * sizeof *p);
  if (!p) return EWS_ENOMEM;
  a->origins = p;
  if (!(p[a->n_origins] = strdup(origin))) return EWS_ENOMEM;
  a->n_origins++;
  return 0;
}

int ews_app_add_protocol(ews_app_t *a, const char *name) {
  char **p = realloc(a->protocols, (a->n_protocols + 1) * sizeof *p);
  if (!p) return EWS_ENOMEM;
  a->protocols = p;
  if (!(p[a->n_protocols] = strdup(name))) return EWS_ENOMEM;
  a->n_protocols++;
  return 0;
}

void ews_app_unref(ews_app_t *a) {
  if (--a->refs > 0) return;
  for (size_t i = 0; i < a->n_protocols; i++) free(a->protocols[i]);
  free(a->protocols);
  for (size_t i = 0; i < a->n_origins; i++) free(a->origins[i]);
  free(a->origins);
  free(a->token_prefix);
  free(a->path);
  ews_pmd_worker_free(a->pmd);
  ews_limit_put(a->total);
  free(a);
}

int ews_app_pmd(ews_app_t *a, ews_pmd_worker_t **out) {
  if (!a->pmd) {
    int r = ews_pmd_worker_new(&a->pmd, &a->pmd_cfg, NULL);
    if (r < 0) return r;
  }
  *out = a->pmd;
  return 0;
}

ews_app_t *ews_routes_find(const ews_routes_t *r, const char *path, size_t len) {
  for (size_t i = 0; i < r->n; i++) {
    const char *p = r->apps[i]->path;
    if (strlen(p) == len && memcmp(p, path, len) == 0) return r->apps[i];
  }
  return NULL;
}

void ews_routes_clear(ews_routes_t *r) {
  for (size_t i = 0; i < r->n; i++) ews_app_unref(r->apps[i]);
  free(r->apps);
  r->apps = NULL;
  r->n = 0;
}
