/* app.h — the C view of one app: the path it serves and the limits, timeouts and
 * subprotocols its connections use. Built by the connections' owner (the Lua layer,
 * from the app table) each time the script (re)loads, into the loop's routes; a
 * connection keeps a reference to the version it was accepted with, so a reload never
 * changes limits under an open connection (its handlers, which live in Lua, do
 * change). Reference counts are per loop (no atomics). */
#ifndef EWS_APP_H
#define EWS_APP_H

#include <stddef.h>
#include <stdint.h>

#include "proto/deflate.h"
#include "proto/frame.h"

struct ews_counter;

typedef struct ews_app {
  int refs;
  char *path;
  char **protocols;
  size_t n_protocols;
  char *token_prefix;             /* subprotocol entries that carry a credential
                                     besides "bearer." (never selected); or NULL */
  ews_rx_config_t rx;             /* max_frame, max_message, expect_masked = 1 */
  ews_rx_config_t rx_pmd;         /* the same with RSV1 allowed (compressed peers) */
  /* First-message auth: until the connection authenticates, messages (inflated size
   * too) are limited to auth_max_message (rx_auth*.max_message); 0 = no such phase. */
  uint64_t auth_max_message;
  ews_rx_config_t rx_auth, rx_auth_pmd;
  ews_pmd_config_t pmd_cfg;       /* permessage-deflate (enabled = 0: off) */
  ews_pmd_worker_t *pmd;          /* its compressors and inflate streams (lazy) */
  uint32_t idle_timeout_ms;       /* 0 = none */
  uint32_t heartbeat_interval_ms; /* 0 = no pings */
  uint32_t heartbeat_timeout_ms;
  size_t max_buffered;            /* queued outgoing bytes before the policy applies */
  uint8_t drop_on_backpressure;   /* 1: drop the message; 0: close 1008 */
  uint8_t has_auth;               /* a Lua authenticator runs before the 101 */
  uint32_t auth_timeout_ms;       /* how long it may take */
  char **origins;                 /* allowed Origin values ("*" = any); none = any */
  size_t n_origins;
  uint32_t max_connections;       /* limits across all workers; 0 = none */
  uint32_t max_per_ip;
  uint32_t max_per_user;
  uint64_t handler_budget_ns;     /* for the owner of the connections (Lua: the app's
                                     handler_timeout); UINT64_MAX: the server's */
  struct ews_counter *total;      /* open connections of this path, all workers (net/limits.h) */
} ews_app_t;

ews_app_t *ews_app_new(const char *path); /* refs = 1, defaults; NULL on ENOMEM */
int ews_app_add_protocol(ews_app_t *app, const char *name); /* 0 or EWS_ENOMEM */
int ews_app_add_origin(ews_app_t *app, const char *origin); /* 0 or EWS_ENOMEM */
static inline void ews_app_ref(ews_app_t *a) { a->refs++; }
/* The app's permessage-deflate context on this worker, created on first use.
 * 0 or EWS_ENOMEM / EWS_EINVAL. */
int ews_app_pmd(ews_app_t *a, ews_pmd_worker_t **out);
void ews_app_unref(ews_app_t *a);

/* The routes of one worker: an immutable array of apps, swapped whole on reload. */
typedef struct {
  ews_app_t **apps;
  size_t n;
} ews_routes_t;

ews_app_t *ews_routes_find(const ews_routes_t *r, const char *path, size_t len);
void ews_routes_clear(ews_routes_t *r); /* unrefs every app */

#endif
