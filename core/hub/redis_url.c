/* redis_url.c — parses a Redis URL (see redis_url.h). */
#include "hub/redis_url.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Copies s[0..n) percent-decoded into out (cap bytes, NUL-terminated). 0 or -1. */
static int decode(const char *s, size_t n, char *out, size_t cap) {
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (c == '%') {
      int a, b;
      if (i + 2 >= n) return -1;
      a = hexval(s[i + 1]);
      b = hexval(s[i + 2]);
      if (a < 0 || b < 0) return -1;
      c = (char)(a * 16 + b);
      i += 2;
    }
    if (o + 1 >= cap) return -1;
    out[o++] = c;
  }
  out[o] = 0;
  return 0;
}

static int parse_int(const char *s, size_t n, long lo, long hi, long *out) {
  char buf[32];
  if (n == 0 || n >= sizeof buf) return -1;
  memcpy(buf, s, n);
  buf[n] = 0;
  char *end;
  errno = 0;
  long v = strtol(buf, &end, 10);
  if (errno || *end || v < lo || v > hi) return -1;
  *out = v;
  return 0;
}

static int parse_secs(const char *s, size_t n, uint32_t *ms) {
  char buf[32];
  if (n == 0 || n >= sizeof buf) return -1;
  memcpy(buf, s, n);
  buf[n] = 0;
  char *end;
  errno = 0;
  double v = strtod(buf, &end);
  if (errno || *end || !(v > 0) || v > 3600) return -1;
  *ms = (uint32_t)(v * 1000 + 0.5);
  if (*ms == 0) *ms = 1;
  return 0;
}

/* key=value&... */
static int parse_query(const char *q, ews_redis_url_t *u, const char **why) {
  while (*q) {
    const char *amp = strchr(q, '&');
    size_t n = amp ? (size_t)(amp - q) : strlen(q);
    const char *eq = memchr(q, '=', n);
    if (!eq) {
      *why = "query parameter without '='";
      return -1;
    }
    size_t kl = (size_t)(eq - q);
    const char *v = eq + 1;
    size_t vl = n - kl - 1;
    long l;
    if (kl == 15 && !memcmp(q, "connect_timeout", 15)) {
      if (parse_secs(v, vl, &u->connect_timeout_ms)) {
        *why = "bad connect_timeout (seconds)";
        return -1;
      }
    } else if (kl == 7 && !memcmp(q, "timeout", 7)) {
      if (parse_secs(v, vl, &u->timeout_ms)) {
        *why = "bad timeout (seconds)";
        return -1;
      }
    } else if (kl == 2 && !memcmp(q, "db", 2)) {
      if (parse_int(v, vl, 0, 1000000, &l)) {
        *why = "bad db";
        return -1;
      }
      u->db = (int)l;
    } else if (kl == 8 && !memcmp(q, "password", 8)) {
      if (decode(v, vl, u->password, sizeof u->password)) {
        *why = "bad password";
        return -1;
      }
    } else if (kl == 4 && !memcmp(q, "user", 4)) {
      if (decode(v, vl, u->user, sizeof u->user)) {
        *why = "bad user";
        return -1;
      }
    } else {
      *why = "unknown query parameter (connect_timeout, timeout, db, user, password)";
      return -1;
    }
    q += n;
    if (*q == '&') q++;
  }
  return 0;
}

int ews_redis_url_parse(const char *s, ews_redis_url_t *u, const char **why) {
  static const char *dummy;
  if (!why) why = &dummy;
  memset(u, 0, sizeof *u);
  u->port = 6379;
  u->connect_timeout_ms = 2000;
  u->timeout_ms = 3000;
  const char *q = strchr(s, '?');
  size_t main_len = q ? (size_t)(q - s) : strlen(s);
  char buf[1024];
  if (main_len >= sizeof buf) {
    *why = "too long";
    return EWS_EINVAL;
  }
  memcpy(buf, s, main_len);
  buf[main_len] = 0;
  if (!strncmp(buf, "unix:", 5)) {
    const char *p = buf + 5;
    if (!strncmp(p, "//", 2)) p += 2;
    if (*p != '/' || strlen(p) >= sizeof u->path) {
      *why = "unix: needs an absolute socket path";
      return EWS_EINVAL;
    }
    snprintf(u->path, sizeof u->path, "%s", p);
  } else if (!strncmp(buf, "redis://", 8)) {
    char *p = buf + 8;
    char *at = strrchr(p, '@');
    if (at) {
      char *colon = memchr(p, ':', (size_t)(at - p));
      if (!colon) {
        *why = "credentials must be [user]:password@";
        return EWS_EINVAL;
      }
      if (decode(p, (size_t)(colon - p), u->user, sizeof u->user) ||
          decode(colon + 1, (size_t)(at - colon - 1), u->password, sizeof u->password)) {
        *why = "bad user or password";
        return EWS_EINVAL;
      }
      p = at + 1;
    }
    char *slash = strchr(p, '/');
    if (slash) {
      long db;
      if (slash[1] && parse_int(slash + 1, strlen(slash + 1), 0, 1000000, &db)) {
        *why = "bad database number after '/'";
        return EWS_EINVAL;
      }
      if (slash[1]) u->db = (int)db;
      *slash = 0;
    }
    /* host, [v6], host:port, [v6]:port */
    char *hs = p, *port = NULL;
    if (*p == '[') {
      char *rb = strchr(p, ']');
      if (!rb) {
        *why = "unterminated [IPv6 address]";
        return EWS_EINVAL;
      }
      hs = p + 1;
      *rb = 0;
      if (rb[1] == ':') port = rb + 2;
      else if (rb[1]) {
        *why = "junk after ]";
        return EWS_EINVAL;
      }
    } else {
      char *colon = strchr(p, ':');
      if (colon) {
        *colon = 0;
        port = colon + 1;
      }
    }
    if (!*hs || strlen(hs) >= sizeof u->host) {
      *why = "no host";
      return EWS_EINVAL;
    }
    snprintf(u->host, sizeof u->host, "%s", hs);
    if (port) {
      long pv;
      if (parse_int(port, strlen(port), 1, 65535, &pv)) {
        *why = "bad port";
        return EWS_EINVAL;
      }
      u->port = (int)pv;
    }
  } else {
    *why = "want redis://host:port/db or unix:/path";
    return EWS_EINVAL;
  }
  if (q && parse_query(q + 1, u, why)) return EWS_EINVAL;
  if (u->path[0]) snprintf(u->name, sizeof u->name, "unix:%s/%d", u->path, u->db);
  else snprintf(u->name, sizeof u->name, "%s:%d/%d", u->host, u->port, u->db);
  return 0;
}
