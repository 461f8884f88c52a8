/* upgrade.c — from a valid WebSocket upgrade request to the 101 (see conn.h): the
 * app for the path, the request's checks, shutdown and Origin, the connection limits
 * that hold across workers (per app, per client IP, per user: net/limits.h), the
 * subprotocol, the accept key and permessage-deflate; then either the 101 at once or,
 * when the app has an authenticator, a pending upgrade (the answer ready, the bytes
 * after the head kept, reading paused) until the owner answers ews_conn_auth_done. */
#include "net/conn_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "err.h"
#include "net/connlog.h"
#include "net/limits.h"
#include "proto/handshake.h"

/* ---- limits ----------------------------------------------------------------------- */

/* Counts the connection in a per-IP or per-user counter of its app; 0 or err. */
static int count_in(ews_conn_t *c, ews_counter_t **slot, const char *kind, const char *id,
                    uint32_t limit, int err) {
  char key[512];
  int kl = snprintf(key, sizeof key, "%s:%s:%s", kind, c->app->path, id);
  if (kl < 0 || (size_t)kl >= sizeof key) kl = sizeof key - 1;
  ews_counter_t *ctr = ews_limit_get(key, (size_t)kl);
  if (!ctr) return EWS_ENOMEM;
  if (!ews_limit_inc(ctr, limit)) {
    ews_limit_put(ctr);
    return err;
  }
  *slot = ctr;
  return 0;
}

void ews_conn_uncount(ews_conn_t *c) {
  if (c->flags & EWS_CF_COUNTED) {
    c->flags &= (uint16_t)~EWS_CF_COUNTED;
    ews_limit_dec(c->app->total);
  }
  ews_acct_t *a = c->cold ? c->cold->acct : NULL;
  if (a) {
    ews_counter_t *ctr[2] = {a->ip, a->user};
    for (int i = 0; i < 2; i++) {
      if (!ctr[i]) continue;
      ews_limit_dec(ctr[i]);
      ews_limit_put(ctr[i]);
    }
    free(a);
    c->cold->acct = NULL;
  }
}

/* The connection's per-IP / per-user counters, allocated on first need; NULL when
 * out of memory. */
static ews_acct_t *acct_get(ews_conn_t *c) {
  ews_conn_cold_t *k = ews_conn_cold_get(c);
  if (!k) return NULL;
  if (!k->acct) k->acct = calloc(1, sizeof *k->acct);
  return k->acct;
}

int ews_conn_count_user(ews_conn_t *c, const char *user_id) {
  if (!c->app || !c->app->max_per_user) return 0;
  ews_acct_t *a = acct_get(c);
  if (!a) return EWS_ENOMEM;
  if (a->user) return 0; /* counted already (a refresh) */
  return count_in(c, &a->user, "user", user_id, c->app->max_per_user, EWS_ELIMIT_USER);
}

/* ---- the 101 ----------------------------------------------------------------------- */

void ews_conn_free_pending(ews_conn_t *c) {
  ews_pending_t *pd = c->cold ? c->cold->pend : NULL;
  if (!pd) return;
  free(pd->resp);
  free(pd->rest);
  free(pd->proto);
  free(pd);
  c->cold->pend = NULL;
}

/* The frame limits of an open connection: an app with first-message auth holds a
 * connection that has not authenticated yet to its small auth limit. */
const ews_rx_config_t *ews_conn_rx_config(const ews_conn_t *c, int authenticated) {
  const ews_app_t *a = c->app;
  int pmd = ews_conn_pmd(c) != NULL;
  if (a->auth_max_message && !authenticated) return pmd ? &a->rx_auth_pmd : &a->rx_auth;
  return pmd ? &a->rx_pmd : &a->rx;
}

void ews_conn_authenticated(ews_conn_t *c) {
  if (!c->app || !c->app->auth_max_message || c->state == EWS_CS_HEAD) return;
  /* Read at the next frame header; a message in progress is held to the new limit. */
  c->rx.cfg = ews_conn_rx_config(c, 1);
  ews_conn_pmd_t *pmd = ews_conn_pmd(c);
  if (pmd) ews_inflater_set_limit(&pmd->inf, c->app->rx.max_message);
}

/* The 101 goes out and the WebSocket session starts. */
static void finish_upgrade(ews_conn_t *c) {
  ews_pending_t *pd = c->cold->pend;
  c->flags &= (uint16_t)~EWS_CF_AUTHING;
  if (ews_conn_queue_raw(c, pd->resp, pd->resp_len, NULL, 0) != 0) {
    ews_conn_abort(c);
    return;
  }
  c->state = EWS_CS_OPEN;
  c->since_ms = c->last_rx_ms = ews_conn_now(c); /* since_ms: the open time, while OPEN */
  ews_conn_set_ping_ms(c, c->since_ms);
  ews_rx_init(&c->rx, ews_conn_rx_config(c, 0));
  ews_wheel_cancel(&c->net->wheel, &c->tnode);
  ews_conn_on_timer(&c->tnode, NULL); /* arms idle/heartbeat deadlines */
  uint8_t *rest = pd->rest;
  size_t rest_len = pd->rest_len;
  pd->rest = NULL;
  char *proto = pd->proto;
  pd->proto = NULL;
  ews_conn_free_pending(c);
  ews_conn_cold_trim(c); /* an open connection without compression or limits keeps none */
  ews_conn_unpause(c);
  c->flags |= EWS_CF_OPENED;
  ews_connlog_opened(c);
  ews_conn_ops(c)->open(c, proto);
  free(proto);
  if (rest_len && c->state == EWS_CS_OPEN) ews_conn_feed_frames(c, rest, rest_len);
  free(rest);
}

int ews_conn_awaiting_auth(const ews_conn_t *c) {
  return c->state == EWS_CS_HEAD && c->cold && c->cold->pend && (c->flags & EWS_CF_AUTHING);
}

void ews_conn_auth_done(ews_conn_t *c, int ok, const char *user_id, int status,
                        const char *msg) {
  if (!ews_conn_awaiting_auth(c)) return;
  if (!ok) {
    if (status != 403) status = 401;
    ews_conn_count_rejection(c, EWS_EAUTH);
    ews_conn_respond_json(c, status, status == 403 ? "forbidden" : "unauthorized",
                          msg ? msg : "authentication failed");
    return;
  }
  if (user_id && c->app->max_per_user) {
    ews_acct_t *a = acct_get(c);
    if (!a) {
      ews_conn_abort(c);
      return;
    }
    int r = count_in(c, &a->user, "user", user_id, c->app->max_per_user, EWS_ELIMIT_USER);
    if (r < 0) {
      ews_conn_respond_error(c, r);
      return;
    }
  }
  finish_upgrade(c);
}

/* ---- negotiation ------------------------------------------------------------------- */

/* Browsers always send Origin, so a cross-site page cannot hide it; a request
 * without one comes from a non-browser client, which the allow-list is not about. */
static int origin_allowed(const ews_app_t *app, const char *origin, size_t len) {
  if (!app->n_origins || !origin) return 1;
  for (size_t i = 0; i < app->n_origins; i++) {
    const char *o = app->origins[i];
    if (!strcmp(o, "*")) return 1;
    if (origin && strlen(o) == len && strncasecmp(o, origin, len) == 0) return 1;
  }
  return 0;
}

/* permessage-deflate: negotiates over every Sec-WebSocket-Extensions line (RFC 6455
 * allows the header on several). Returns the response header's length (0: none) and
 * fills *params. */
static int negotiate_pmd(const ews_app_t *app, const ews_http_request_t *req,
                         const ews_upgrade_t *up, ews_pmd_params_t *params, char *ext,
                         size_t cap) {
  if (!app->pmd_cfg.enabled || !up->extensions) return 0;
  char joined[2048];
  const char *offers = up->extensions;
  size_t offers_len = up->extensions_len;
  if (ews_http_header_count(req, "Sec-WebSocket-Extensions") > 1) {
    size_t jl = 0;
    for (size_t i = 0; i < req->num_headers; i++) {
      const ews_http_header_t *h = &req->headers[i];
      if (h->name_len != 24 || strncasecmp(h->name, "Sec-WebSocket-Extensions", 24)) continue;
      if (jl + h->value_len + 2 > sizeof joined) break;
      if (jl) joined[jl++] = ',';
      memcpy(joined + jl, h->value, h->value_len);
      jl += h->value_len;
    }
    offers = joined;
    offers_len = jl;
  }
  int ext_len = ews_pmd_negotiate(&app->pmd_cfg, offers, offers_len, params, ext, cap);
  return ext_len < 0 ? 0 : ext_len;
}

/* Builds the 101 into the pending upgrade and keeps the bytes after the head. 0, or
 * a negative error (then abort: out of memory). */
static int prepare_101(ews_conn_t *c, const char *accept, size_t sel_len, const char *ext,
                       int ext_len, uint8_t *rest, size_t rest_len) {
  ews_pending_t *pd = c->cold->pend;
  size_t cap = 256 + sel_len + (size_t)ext_len;
  pd->resp = malloc(cap);
  int n = pd->resp ? ews_write_101(pd->resp, cap, accept, pd->proto, sel_len,
                                   ext_len > 0 ? ext : NULL, (size_t)ext_len)
                   : EWS_ENOMEM;
  pd->rest = rest_len ? malloc(rest_len) : NULL;
  if (n <= 0 || (rest_len && !pd->rest)) return EWS_ENOMEM;
  pd->resp_len = (size_t)n;
  if (rest_len) memcpy(pd->rest, rest, rest_len);
  pd->rest_len = rest_len;
  return 0;
}

void ews_conn_upgrade(ews_conn_t *c, const ews_http_request_t *req, uint8_t *rest,
                      size_t rest_len) {
  ews_app_t *app = ews_routes_find(&c->net->routes, req->path, req->path_len);
  if (!app) {
    ews_conn_respond_error(c, EWS_EHTTP_NOT_FOUND);
    return;
  }
  ews_upgrade_t up;
  int r = ews_upgrade_check(req, &up);
  if (r == 0 && c->net->stopping) r = EWS_ESHUTDOWN;
  /* Cross-site WebSocket hijacking: only listed origins (browsers always send one). */
  if (r == 0 && !origin_allowed(app, up.origin, up.origin_len)) r = EWS_EORIGIN;
  if (r != 0) {
    ews_conn_respond_error(c, r);
    return;
  }
  ews_app_ref(app);
  c->app = app;
  ews_conn_cold_t *k = ews_conn_cold_get(c);
  ews_pending_t *pd = k ? (k->pend = calloc(1, sizeof *k->pend)) : NULL;
  if (!pd) {
    ews_conn_abort(c);
    return;
  }
  ews_conn_peer(c, pd->ip, sizeof pd->ip, &pd->port);
  /* Limits across all workers, answered before the upgrade. */
  if (!ews_limit_inc(app->total, app->max_connections)) {
    ews_conn_respond_error(c, EWS_EFULL);
    return;
  }
  c->flags |= EWS_CF_COUNTED;
  if (app->max_per_ip) {
    ews_acct_t *a = acct_get(c);
    if (!a) {
      ews_conn_abort(c);
      return;
    }
    if ((r = count_in(c, &a->ip, "ip", pd->ip, app->max_per_ip, EWS_ELIMIT_IP)) < 0) {
      ews_conn_respond_error(c, r);
      return;
    }
  }
  const char *sel;
  size_t sel_len;
  r = ews_select_protocol(up.protocols, up.protocols_len, (const char *const *)app->protocols,
                          app->n_protocols, app->token_prefix, &sel, &sel_len);
  if (r != 0) {
    ews_conn_respond_error(c, r);
    return;
  }
  if (sel && !(pd->proto = strndup(sel, sel_len))) {
    ews_conn_abort(c);
    return;
  }
  char accept[EWS_ACCEPT_LEN + 1];
  if (ews_accept_key(up.key, up.key_len, accept) != 0) {
    ews_conn_respond_error(c, EWS_EHTTP_WS_KEY);
    return;
  }
  char ext[EWS_PMD_RESPONSE_MAX];
  ews_pmd_params_t params;
  int ext_len = negotiate_pmd(app, req, &up, &params, ext, sizeof ext);
  if (ext_len > 0) {
    ews_conn_pmd_t *pmd = k->pmd = calloc(1, sizeof *k->pmd);
    if (!pmd) {
      ews_conn_abort(c);
      return;
    }
    pmd->params = params;
    ews_inflater_init(&pmd->inf, &params,
                      app->auth_max_message ? app->rx_auth.max_message : app->rx.max_message);
  }
  if (prepare_101(c, accept, sel_len, ext, ext_len, rest, rest_len) != 0) {
    ews_conn_abort(c);
    return;
  }
  if (!app->has_auth) {
    finish_upgrade(c);
    return;
  }
  /* The owner's authenticator (possibly waiting) decides; no reading meanwhile. */
  c->flags |= EWS_CF_AUTHING;
  c->since_ms = ews_conn_now(c);
  ews_conn_set_timer(c, app->auth_timeout_ms);
  ews_conn_pause(c);
  c->net->ops->authenticate(c, req, pd->ip, pd->port);
}
