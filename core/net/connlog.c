/* connlog.c — log lines about connections: opened, closed, refused (see connlog.h). */
#include "net/connlog.h"

#include <string.h>

#include "log.h"
#include "net/conn_int.h"

#define WINDOW_MS 1000u

/* Copies at most cap-1 bytes of s, control bytes as '?': a request's path or an
 * authenticator's message cannot start a log line of its own. */
static const char *clean(char *buf, size_t cap, const char *s, size_t len) {
  if (len > cap - 1) len = cap - 1;
  for (size_t i = 0; i < len; i++) {
    unsigned char ch = (unsigned char)s[i];
    buf[i] = ch < 0x20 || ch == 0x7f ? '?' : (char)ch;
  }
  buf[len] = 0;
  return buf;
}

static const char *path_of(const ews_conn_t *c, size_t *len) {
  if (c->net->req_path) {
    *len = c->net->req_path_len;
    return c->net->req_path;
  }
  if (c->app && c->app->path) {
    *len = strlen(c->app->path);
    return c->app->path;
  }
  *len = 0;
  return "";
}

void ews_connlog_opened(const ews_conn_t *c) {
  if (ews_log_level > EWS_LOG_DEBUG) return;
  char ip[64];
  int port;
  ews_conn_peer(c, ip, sizeof ip, &port);
  size_t pl;
  const char *path = path_of(c, &pl);
  char pbuf[128];
  EWS_DEBUG("conn %llu: opened %s from %s:%d", (unsigned long long)c->id,
            clean(pbuf, sizeof pbuf, path, pl), ip, port);
}

void ews_connlog_closed(const ews_conn_t *c) {
  if (ews_log_level > EWS_LOG_DEBUG) return;
  const ews_conn_cold_t *k = c->cold;
  uint32_t ms = ews_conn_now(c) - (k ? k->opened_ms : c->since_ms);
  size_t pl;
  const char *path = path_of(c, &pl);
  char pbuf[128], rbuf[128];
  EWS_DEBUG("conn %llu: closed %u \"%s\" after %.1f s (%s)", (unsigned long long)c->id,
            (unsigned)(k ? k->close_code : 0),
            clean(rbuf, sizeof rbuf, k && k->close_reason ? k->close_reason : "",
                  k ? k->close_reason_len : 0),
            ms / 1000.0, clean(pbuf, sizeof pbuf, path, pl));
}

static void flush(ews_net_t *net, uint64_t now) {
  if (net->refused_quiet)
    EWS_INFO("refused %u more connection%s in the last %.1f s (not logged one by one)",
             net->refused_quiet, net->refused_quiet == 1 ? "" : "s",
             (double)(now - net->refused_window_ms) / 1000.0);
  net->refused_quiet = 0;
  net->refused_logged = 0;
  net->refused_window_ms = now;
}

void ews_connlog_refused(ews_conn_t *c, int status, const char *why, size_t why_len) {
  ews_net_t *net = c->net;
  if (ews_log_level > EWS_LOG_INFO) return;
  uint64_t now = uv_now(net->loop);
  if (now - net->refused_window_ms >= WINDOW_MS) flush(net, now);
  if (net->refused_logged >= EWS_CONNLOG_REFUSED_PER_SEC) {
    net->refused_quiet++;
    return;
  }
  net->refused_logged++;
  char ip[64];
  int port;
  ews_conn_peer(c, ip, sizeof ip, &port);
  size_t pl;
  const char *path = path_of(c, &pl);
  char pbuf[128], wbuf[320];
  EWS_INFO("refused a connection from %s%s%s: %d %s", ip, pl ? " to " : "",
           clean(pbuf, sizeof pbuf, path, pl), status, clean(wbuf, sizeof wbuf, why, why_len));
}

void ews_connlog_tick(ews_net_t *net) {
  if (!net->refused_quiet) return;
  uint64_t now = uv_now(net->loop);
  if (now - net->refused_window_ms >= WINDOW_MS) flush(net, now);
}
