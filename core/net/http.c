/* http.c — a connection's request head and its plain HTTP side (see conn.h): the head
 * is parsed in place when it arrives whole (the usual case) and copied only when it
 * is split across reads; GET /health and GET /metrics are answered with the bodies
 * the loop's owner writes (net->hooks), on the admin listener when there is one;
 * a request under a static-file mount that is not an upgrade is a file
 * (static_files.c); every other request is an upgrade (upgrade.c) or an HTTP error. Every answer ends
 * the exchange: the connection drains. */
#include "net/conn_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "log.h"
#include "net/connlog.h"
#include "net/msgmem.h"
#include "net/static_files.h"
#include "proto/handshake.h"
#include "proto/json.h"
#include "stat.h"

static void respond_http(ews_conn_t *c, const char *resp, int len) {
  if (len > 0) ews_conn_queue_raw(c, resp, (size_t)len, NULL, 0);
  ews_conn_enter_draining(c);
}

void ews_conn_count_rejection(ews_conn_t *c, int err) {
  int reason;
  switch (err) {
    case EWS_EORIGIN: reason = EWS_RJ_origin; break;
    case EWS_EFULL: reason = EWS_RJ_max_connections; break;
    case EWS_ELIMIT_IP: reason = EWS_RJ_per_ip; break;
    case EWS_ELIMIT_USER: reason = EWS_RJ_per_user; break;
    case EWS_EAUTH: reason = EWS_RJ_unauthorized; break;
    case EWS_EAUTH_TIMEOUT: reason = EWS_RJ_auth_timeout; break;
    case EWS_ESHUTDOWN: reason = EWS_RJ_shutting_down; break;
    default: reason = EWS_RJ_bad_request;
  }
  EWS_STAT_ADD(c->net->stats.rejected[reason], 1);
}

void ews_conn_respond_error(ews_conn_t *c, int err) {
  char buf[1024];
  if (err != EWS_EHTTP_NOT_FOUND) ews_conn_count_rejection(c, err);
  int n = ews_write_error(buf, sizeof buf, err);
  const char *why = ews_strerror(err);
  ews_connlog_refused(c, ews_err_http_status(err), why, strlen(why));
  respond_http(c, buf, n);
}

void ews_conn_respond_json(ews_conn_t *c, int status, const char *error, const char *msg) {
  /* msg comes from the app's authenticator: escaped (proto/json.h), at most 299
   * bytes of it (cut at a character boundary). */
  char body[2048], resp[2560];
  if (!msg) msg = "";
  size_t ml = strlen(msg);
  if (ml > 299) {
    ml = 299;
    while (ml && ((unsigned char)msg[ml] & 0xC0) == 0x80) ml--;
  }
  int bl = snprintf(body, sizeof body, "{\"error\":\"%s\",\"message\":", error);
  if (bl < 0 || (size_t)bl + ews_json_str(NULL, msg, ml, EWS_JSON_CHECK) + 2 > sizeof body) {
    ews_conn_respond_error(c, EWS_ENOMEM);
    return;
  }
  bl += (int)ews_json_str(body + bl, msg, ml, EWS_JSON_CHECK);
  body[bl++] = '}';
  int n = ews_write_response(resp, sizeof resp, status, NULL, "application/json", body,
                             (size_t)bl);
  ews_connlog_refused(c, status, msg, ml);
  respond_http(c, resp, n);
}

/* ---- GET /health, GET /metrics ---------------------------------------------------- */

static void respond_metrics(ews_conn_t *c) {
  const ews_net_t *net = c->net;
  char *body = NULL;
  size_t bl = 0;
  if (!net->hooks.metrics || net->hooks.metrics(net->hooks.ud, &body, &bl) != 0) {
    ews_conn_respond_error(c, EWS_ENOMEM);
    return;
  }
  size_t cap = bl + 512;
  char *resp = malloc(cap);
  int n = resp ? ews_write_response(resp, cap, 200, NULL, "text/plain; version=0.0.4", body, bl) : -1;
  respond_http(c, resp, n);
  free(resp);
  free(body);
}

static void respond_health(ews_conn_t *c) {
  const ews_net_t *net = c->net;
  char body[256], resp[512];
  int status = 200;
  int bl = net->hooks.health ? net->hooks.health(net->hooks.ud, body, sizeof body, &status) : -1;
  if (bl < 0) {
    ews_conn_respond_error(c, EWS_ENOMEM);
    return;
  }
  int n = ews_write_response(resp, sizeof resp, status, NULL, "application/json", body,
                             (size_t)bl);
  respond_http(c, resp, n);
}

static int path_is(const ews_http_request_t *req, const char *path) {
  size_t n = strlen(path);
  return req->path_len == n && memcmp(req->path, path, n) == 0;
}

/* Handles a complete request head; `rest` are the bytes that followed it. */
static void on_request(ews_conn_t *c, const ews_http_request_t *req, uint8_t *rest,
                       size_t rest_len) {
  const ews_net_t *net = c->net;
  const ews_net_config_t *cfg = &net->cfg;
  /* /health and /metrics: on the admin listener when there is one, else here. */
  int admin_here = (c->flags & EWS_CF_ADMIN) || !cfg->admin_only;
  int is_get = req->method_len == 3 && !memcmp(req->method, "GET", 3);
  if (admin_here && is_get && cfg->health && path_is(req, "/health")) {
    respond_health(c);
    return;
  }
  if (admin_here && is_get && cfg->metrics && path_is(req, "/metrics")) {
    respond_metrics(c);
    return;
  }
  if (c->flags & EWS_CF_ADMIN) {
    ews_conn_respond_error(c, EWS_EHTTP_NOT_FOUND);
    return;
  }
  if (!ews_is_upgrade(req)) {
    /* Static files: any request under a mount that is not an upgrade (an upgrade on
     * the same path goes to the app below), ahead of an app's 426. */
    const ews_static_mount_t *m = ews_static_find(&net->statics, req->path, req->path_len);
    if (m) ews_static_serve(c, m, req);
    else if (ews_routes_find(&net->routes, req->path, req->path_len))
      ews_conn_respond_error(c, EWS_EHTTP_UPGRADE);
    else
      ews_conn_respond_error(c, EWS_EHTTP_NOT_FOUND);
    return;
  }
  ews_conn_upgrade(c, req, rest, rest_len);
}

void ews_conn_on_head_bytes(ews_conn_t *c, uint8_t *p, size_t n) {
  const ews_net_config_t *cfg = &c->net->cfg;
  ews_http_limits_t lim = {cfg->max_head, cfg->max_headers};
  ews_http_request_t req;
  uint8_t *data = p, *owned = NULL;
  size_t len = n;
  size_t owned_cap = 0;
  if (c->in_len) {
    /* The head was split across reads: parse the accumulated copy. */
    if (ews_conn_in_append(c, p, n) != 0) {
      ews_conn_abort(c);
      return;
    }
    data = owned = c->in;
    len = c->in_len;
  }
  int r = ews_http_parse((const char *)data, len, &lim, &req);
  if (r == 0) {
    if (!owned && ews_conn_in_append(c, p, n) != 0) ews_conn_abort(c);
    return;
  }
  /* Detach the head buffer: the bytes after the head may be frames, and `in` is
   * about to be reused for message reassembly. */
  if (owned) {
    owned_cap = c->in_cap;
    c->in = NULL;
    c->in_len = c->in_cap = 0;
  }
  if (r < 0) ews_conn_respond_error(c, r);
  else {
    c->net->req_path = req.path;
    c->net->req_path_len = req.path_len;
    on_request(c, &req, data + r, len - (size_t)r);
    c->net->req_path = NULL;
  }
  ews_msgmem_free(owned, owned_cap);
}
