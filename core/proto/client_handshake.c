/* client_handshake.c — the client side of the opening handshake (see
 * client_handshake.h): URL, request, response head, checks. */
#include "proto/client_handshake.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <mbedtls/base64.h>

#include "err.h"
#include "proto/handshake.h"

/* ---- URL -------------------------------------------------------------------------- */

int ews_url_parse(const char *url, size_t len, ews_url_t *u) {
  memset(u, 0, sizeof *u);
  if (!url) return EWS_EURL;
  size_t i;
  if (len >= 5 && !strncasecmp(url, "ws://", 5)) {
    i = 5;
  } else if (len >= 6 && !strncasecmp(url, "wss://", 6)) {
    i = 6;
    u->tls = 1;
  } else {
    return EWS_EURL;
  }
  for (size_t k = 0; k < len; k++) {
    unsigned char ch = (unsigned char)url[k];
    if (ch <= 0x20 || ch >= 0x7f || ch == '#') return EWS_EURL;
  }
  size_t hs = i, he;
  if (i < len && url[i] == '[') {
    const char *rb = memchr(url + i, ']', len - i);
    if (!rb) return EWS_EURL;
    hs = i + 1;
    he = (size_t)(rb - url);
    i = he + 1;
  } else {
    while (i < len && url[i] != ':' && url[i] != '/' && url[i] != '?') {
      if (url[i] == '@') return EWS_EURL; /* no userinfo */
      i++;
    }
    he = i;
  }
  if (he == hs || he - hs > 253) return EWS_EURL;
  u->host = url + hs;
  u->host_len = he - hs;
  u->port = u->tls ? 443 : 80;
  u->default_port = 1;
  if (i < len && url[i] == ':') {
    i++;
    long port = 0;
    size_t digits = 0;
    while (i < len && url[i] >= '0' && url[i] <= '9' && digits < 6) {
      port = port * 10 + (url[i++] - '0');
      digits++;
    }
    if (!digits || port < 1 || port > 65535) return EWS_EURL;
    u->port = (int)port;
    u->default_port = 0;
  }
  if (i < len && url[i] != '/' && url[i] != '?') return EWS_EURL;
  if (i == len) {
    u->path = "/";
    u->path_len = 1;
  } else {
    u->path = url + i;
    u->path_len = len - i;
  }
  return 0;
}

/* ---- request ---------------------------------------------------------------------- */

int ews_client_key(const uint8_t rnd[16], char out[EWS_CLIENT_KEY_LEN + 1]) {
  size_t olen;
  if (mbedtls_base64_encode((unsigned char *)out, EWS_CLIENT_KEY_LEN + 1, &olen, rnd, 16) != 0 ||
      olen != EWS_CLIENT_KEY_LEN)
    return EWS_EINVAL;
  return 0;
}

int ews_client_request(char *out, size_t cap, const ews_client_req_t *r) {
  const ews_url_t *u = r->url;
  int v6 = memchr(u->host, ':', u->host_len) != NULL;
  char port[16] = "";
  if (!u->default_port) snprintf(port, sizeof port, ":%d", u->port);
  /* A path of "?q" alone becomes "/?q". */
  const char *slash = u->path[0] == '/' ? "" : "/";
  int n = snprintf(out, cap,
                   "GET %s%.*s HTTP/1.1\r\n"
                   "Host: %s%.*s%s%s\r\n"
                   "Upgrade: websocket\r\n"
                   "Connection: Upgrade\r\n"
                   "Sec-WebSocket-Key: %.*s\r\n"
                   "Sec-WebSocket-Version: 13\r\n"
                   "%s%.*s%s"
                   "%s"
                   "%.*s\r\n",
                   slash, (int)u->path_len, u->path, v6 ? "[" : "", (int)u->host_len, u->host,
                   v6 ? "]" : "", port, EWS_CLIENT_KEY_LEN, r->key,
                   r->protocols_len ? "Sec-WebSocket-Protocol: " : "", (int)r->protocols_len,
                   r->protocols_len ? r->protocols : "", r->protocols_len ? "\r\n" : "",
                   r->offer_pmd
                       ? "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
                       : "",
                   (int)r->headers_len, r->headers_len ? r->headers : "");
  if (n < 0 || (size_t)n >= cap) return EWS_EINVAL;
  return n;
}

int ews_client_probe_request(char *out, size_t cap, const ews_url_t *u, const char *path) {
  int v6 = memchr(u->host, ':', u->host_len) != NULL;
  char port[16] = "";
  if (!u->default_port) snprintf(port, sizeof port, ":%d", u->port);
  for (const char *q = path; *q; q++)
    if ((unsigned char)*q <= 0x20 || (unsigned char)*q >= 0x7f) return EWS_EINVAL;
  int n = snprintf(out, cap,
                   "GET %s%s HTTP/1.1\r\nHost: %s%.*s%s%s\r\nUser-Agent: edgews-lua\r\n"
                   "Connection: close\r\n\r\n",
                   path[0] == '/' ? "" : "/", path, v6 ? "[" : "", (int)u->host_len, u->host,
                   v6 ? "]" : "", port);
  if (n < 0 || (size_t)n >= cap) return EWS_EINVAL;
  return n;
}

/* ---- response head ---------------------------------------------------------------- */

static int is_tchar(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c && strchr("!#$%&'*+-.^_`|~", c));
}

int ews_http_response_parse(const char *buf, size_t len, size_t max_head,
                            ews_http_response_t *resp) {
  size_t scan = len < max_head ? len : max_head;
  const char *end = NULL;
  for (size_t i = 3; i < scan; i++) {
    if (buf[i] == '\n' && buf[i - 1] == '\r' && buf[i - 2] == '\n' && buf[i - 3] == '\r') {
      end = buf + i + 1;
      break;
    }
  }
  if (!end) return len >= max_head ? EWS_EHANDSHAKE : 0;
  memset(resp, 0, sizeof *resp);
  const char *p = buf, *eol = memchr(p, '\r', (size_t)(end - p));
  /* Status line: HTTP/1.x SP 3DIGIT SP reason */
  if (!eol || eol - p < 12 || memcmp(p, "HTTP/1.", 7) || (p[7] != '0' && p[7] != '1') ||
      p[8] != ' ')
    return EWS_EHANDSHAKE;
  for (int k = 9; k < 12; k++)
    if (p[k] < '0' || p[k] > '9') return EWS_EHANDSHAKE;
  resp->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
  if (eol - p > 12) {
    if (p[12] != ' ') return EWS_EHANDSHAKE;
    resp->reason = p + 13;
    resp->reason_len = (size_t)(eol - p - 13);
  }
  p = eol + 2;
  while (p < end - 2) {
    eol = memchr(p, '\r', (size_t)(end - p));
    if (!eol || eol[1] != '\n') return EWS_EHANDSHAKE;
    const char *colon = memchr(p, ':', (size_t)(eol - p));
    if (!colon || colon == p) return EWS_EHANDSHAKE;
    for (const char *q = p; q < colon; q++)
      if (!is_tchar((unsigned char)*q)) return EWS_EHANDSHAKE;
    if (resp->num_headers == EWS_HTTP_MAX_HEADERS) return EWS_EHANDSHAKE;
    const char *v = colon + 1, *ve = eol;
    while (v < ve && (*v == ' ' || *v == '\t')) v++;
    while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
    ews_http_header_t *h = &resp->headers[resp->num_headers++];
    h->name = p;
    h->name_len = (size_t)(colon - p);
    h->value = v;
    h->value_len = (size_t)(ve - v);
    p = eol + 2;
  }
  return (int)(end - buf);
}

/* ---- checks ----------------------------------------------------------------------- */

static const ews_http_header_t *find(const ews_http_response_t *r, const char *name, size_t *count) {
  size_t n = strlen(name);
  const ews_http_header_t *first = NULL;
  *count = 0;
  for (size_t i = 0; i < r->num_headers; i++) {
    const ews_http_header_t *h = &r->headers[i];
    if (h->name_len == n && !strncasecmp(h->name, name, n)) {
      if (!first) first = h;
      (*count)++;
    }
  }
  return first;
}

static int fail(char *why, size_t cap, const char *fmt, const char *a, int alen) {
  if (cap) snprintf(why, cap, fmt, alen, a);
  return EWS_EHANDSHAKE;
}

/* "8".."15" without leading zeros; else -1. */
static int window_bits(const char *v, size_t n) {
  if (n == 1 && v[0] >= '8' && v[0] <= '9') return v[0] - '0';
  if (n == 2 && v[0] == '1' && v[1] >= '0' && v[1] <= '5') return 10 + v[1] - '0';
  return -1;
}

/* The server's permessage-deflate response (one extension, RFC 7692 section 7.1). */
static int parse_pmd(const char *v, size_t n, ews_pmd_params_t *pp, char *why, size_t cap) {
  ews_pmd_params_t p = {0, 0, 15, 15};
  int seen[4] = {0, 0, 0, 0};
  size_t i = 0;
  /* extension name */
  while (i < n && v[i] != ';' && v[i] != ' ' && v[i] != '\t') i++;
  if (i != 18 || strncasecmp(v, "permessage-deflate", 18))
    return fail(why, cap, "server agreed to an extension we did not offer: %.*s", v, (int)n);
  while (i < n) {
    while (i < n && (v[i] == ' ' || v[i] == '\t')) i++;
    if (i == n) break;
    if (v[i] != ';') return fail(why, cap, "malformed Sec-WebSocket-Extensions: %.*s", v, (int)n);
    i++;
    while (i < n && (v[i] == ' ' || v[i] == '\t')) i++;
    size_t ns = i;
    while (i < n && v[i] != '=' && v[i] != ';' && v[i] != ' ' && v[i] != '\t') i++;
    size_t nl = i - ns;
    while (i < n && (v[i] == ' ' || v[i] == '\t')) i++;
    const char *val = NULL;
    size_t vl = 0;
    if (i < n && v[i] == '=') {
      i++;
      while (i < n && (v[i] == ' ' || v[i] == '\t')) i++;
      int q = i < n && v[i] == '"';
      if (q) i++;
      val = v + i;
      while (i < n && v[i] != ';' && v[i] != ' ' && v[i] != '\t' && v[i] != '"') i++;
      vl = (size_t)(v + i - val);
      if (q) {
        if (i >= n || v[i] != '"') return fail(why, cap, "malformed Sec-WebSocket-Extensions: %.*s", v, (int)n);
        i++;
      }
    }
    const char *name = v + ns;
    int k;
    if (nl == 26 && !strncasecmp(name, "server_no_context_takeover", nl)) k = 0;
    else if (nl == 26 && !strncasecmp(name, "client_no_context_takeover", nl)) k = 1;
    else if (nl == 22 && !strncasecmp(name, "server_max_window_bits", nl)) k = 2;
    else if (nl == 22 && !strncasecmp(name, "client_max_window_bits", nl)) k = 3;
    else return fail(why, cap, "unknown permessage-deflate parameter in: %.*s", v, (int)n);
    if (seen[k]++) return fail(why, cap, "duplicate permessage-deflate parameter in: %.*s", v, (int)n);
    if (k < 2) {
      if (val) return fail(why, cap, "permessage-deflate parameter with a value in: %.*s", v, (int)n);
      if (k == 0) p.client_no_context_takeover = 1; /* the peer resets: our inflater may */
      else p.server_no_context_takeover = 1;        /* we must reset our compressor */
    } else {
      int b = val ? window_bits(val, vl) : -1;
      if (b < 0) return fail(why, cap, "bad window bits in: %.*s", v, (int)n);
      if (k == 2) p.client_window_bits = (uint8_t)b; /* the peer's window */
      else p.server_window_bits = (uint8_t)b;        /* ours */
    }
  }
  *pp = p;
  return 0;
}

int ews_client_check(const ews_http_response_t *resp, const char *key, const char *protocols,
                     size_t protocols_len, int offered_pmd, ews_client_result_t *res,
                     char *why, size_t cap) {
  memset(res, 0, sizeof *res);
  if (resp->status != 101) {
    char st[64];
    snprintf(st, sizeof st, "%d %.*s", resp->status, (int)(resp->reason_len > 40 ? 40 : resp->reason_len),
             resp->reason ? resp->reason : "");
    return fail(why, cap, "server answered %.*s", st, (int)strlen(st));
  }
  size_t cnt;
  const ews_http_header_t *h = find(resp, "Upgrade", &cnt);
  if (!h || !ews_http_list_has(h->value, h->value_len, "websocket"))
    return fail(why, cap, "%.*sno Upgrade: websocket in the 101", "", 0);
  h = find(resp, "Connection", &cnt);
  if (!h || !ews_http_list_has(h->value, h->value_len, "upgrade"))
    return fail(why, cap, "%.*sno Connection: upgrade in the 101", "", 0);
  char accept[EWS_ACCEPT_LEN + 1];
  if (ews_accept_key(key, EWS_CLIENT_KEY_LEN, accept) != 0) return EWS_EINVAL;
  h = find(resp, "Sec-WebSocket-Accept", &cnt);
  if (!h || cnt != 1 || h->value_len != EWS_ACCEPT_LEN || memcmp(h->value, accept, EWS_ACCEPT_LEN))
    return fail(why, cap, "%.*sSec-WebSocket-Accept does not match the key", "", 0);
  h = find(resp, "Sec-WebSocket-Protocol", &cnt);
  if (h) {
    int offered = 0;
    if (cnt == 1 && protocols_len) {
      size_t pos = 0;
      const char *e;
      size_t el;
      while (ews_http_list_next(protocols, protocols_len, &pos, &e, &el))
        if (el == h->value_len && !memcmp(e, h->value, el)) offered = 1;
    }
    if (!offered)
      return fail(why, cap, "server selected a subprotocol we did not offer: %.*s", h->value,
                  (int)h->value_len);
    res->protocol = h->value;
    res->protocol_len = h->value_len;
  }
  h = find(resp, "Sec-WebSocket-Extensions", &cnt);
  if (h) {
    if (!offered_pmd || cnt != 1 || memchr(h->value, ',', h->value_len))
      return fail(why, cap, "server agreed to an extension we did not offer: %.*s", h->value,
                  (int)h->value_len);
    int r = parse_pmd(h->value, h->value_len, &res->params, why, cap);
    if (r != 0) return r;
    res->pmd = 1;
  }
  return 0;
}
