/* http_head.c — owns the strict HTTP/1.1 request-head parser declared in
 * http_head.h, plus the small header/list helpers and the reason-phrase table.
 *
 * Design: no state between calls. Each call walks the request line and header lines
 * from the start of the buffer, inside a window of min(len, max_head) bytes, and
 * answers complete (head length), partial (0) or error (< 0). Re-parsing a few
 * hundred bytes per read is cheaper and far simpler than resumable state, and it
 * makes every answer a pure function of the bytes, which is what the fuzzer checks.
 * Every byte is classified as it is passed, so an error is reported as soon as the
 * prefix can no longer begin a valid head, not only once the blank line arrives.
 * Header lines are located with memchr (libc's vectorised scan) and then validated
 * with a table lookup per byte. */
#include "http_head.h"

#include <limits.h>
#include <stdint.h>
#include <string.h>

#include "err.h"

/* Byte classes (RFC 9110): C_TCHAR token characters (methods, header names),
 * C_VCHAR visible ASCII (allowed in the request-target), C_FIELD field-value bytes
 * (VCHAR, SP, HTAB and obs-text 0x80-0xFF). CTLs and DEL are in no class. */
enum { C_TCHAR = 1, C_VCHAR = 2, C_FIELD = 4 };

static const uint8_t cls[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, /* 00 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 10 */
    4, 7, 6, 7, 7, 7, 7, 7, 6, 6, 7, 7, 6, 7, 7, 6, /* 20 */
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 6, 6, 6, 6, 6, 6, /* 30 */
    6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, /* 40 */
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 6, 6, 6, 7, 7, /* 50 */
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, /* 60 */
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 6, 7, 6, 7, 0, /* 70 */
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, /* 80 */
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, /* 90 */
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, /* a0 */
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, /* b0 */
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, /* c0 */
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, /* d0 */
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, /* e0 */
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, /* f0 */
};

#define IS(c, k) (cls[(uint8_t)(c)] & (k))

/* Step results of the line parsers: a line was consumed, or more bytes are needed;
 * errors are the negative EWS_E* codes themselves. */
enum { NEED_MORE = 0, LINE_DONE = 1 };

/* Request line: METHOD SP origin-form SP HTTP/1.d CRLF. On LINE_DONE *pp is past the
 * CRLF. Checks happen byte by byte in order, so the verdict for a prefix depends only
 * on the bytes seen so far and never changes once given. */
static int parse_request_line(const char **pp, const char *end, ews_http_request_t *req) {
  const char *p = *pp, *s = p;

  while (p < end && IS(*p, C_TCHAR)) p++;
  if (p == end) return NEED_MORE;
  if (*p != ' ' || p == s) return EWS_EHTTP_BAD;
  req->method = s;
  req->method_len = (size_t)(p - s);
  p++;

  /* Only origin-form: a WebSocket request is always "GET /path". absolute-form is for
   * proxies, '*' for OPTIONS, authority-form for CONNECT — none of them ours. */
  if (p == end) return NEED_MORE;
  if (*p != '/') return EWS_EHTTP_BAD;
  s = p;
  const char *q = NULL;
  while (p < end && IS(*p, C_VCHAR)) {
    if (*p == '?' && q == NULL) q = p;
    p++;
  }
  if (p == end) return NEED_MORE;
  req->target = s;
  req->target_len = (size_t)(p - s);
  req->path = s;
  req->path_len = (size_t)((q ? q : p) - s);
  req->query = q ? q + 1 : NULL;
  req->query_len = q ? (size_t)(p - q - 1) : 0;
  /* "GET /x" CRLF is an HTTP/0.9 simple request: say 505 rather than 400, the line is
   * well-formed for a version we do not speak. */
  if (*p == '\r') return EWS_EHTTP_VERSION;
  if (*p != ' ') return EWS_EHTTP_BAD;
  p++;

  /* "HTTP/" is case-sensitive (RFC 9112 section 2.3). */
  static const char prefix[] = "HTTP/";
  for (size_t i = 0; i < sizeof prefix - 1; i++, p++) {
    if (p == end) return NEED_MORE;
    if (*p != prefix[i]) return EWS_EHTTP_BAD;
  }
  if (p == end) return NEED_MORE;
  if (*p < '0' || *p > '9') return EWS_EHTTP_BAD;
  if (*p != '1') return EWS_EHTTP_VERSION;
  p++;
  if (p == end) return NEED_MORE;
  if (*p != '.') return EWS_EHTTP_BAD;
  p++;
  if (p == end) return NEED_MORE;
  if (*p < '0' || *p > '9') return EWS_EHTTP_BAD;
  if (*p > '1') return EWS_EHTTP_VERSION; /* only 1.0 and 1.1 exist */
  req->version_minor = *p - '0';
  p++;
  if (p == end) return NEED_MORE;
  if (*p != '\r') return EWS_EHTTP_BAD;
  p++;
  if (p == end) return NEED_MORE;
  if (*p != '\n') return EWS_EHTTP_BAD;
  *pp = p + 1;
  return LINE_DONE;
}

/* One header line, `name ":" OWS value OWS CRLF`. The caller has checked that the
 * line does not start with CR, LF, SP or HTAB. */
static int parse_header_line(const char **pp, const char *end, ews_http_header_t *h) {
  const char *p = *pp, *name = p;

  while (p < end && IS(*p, C_TCHAR)) p++;
  if (p == end) return NEED_MORE;
  /* Whitespace before the colon is a smuggling vector (RFC 9112 section 5.1). */
  if (*p != ':' || p == name) return EWS_EHTTP_BAD;
  h->name = name;
  h->name_len = (size_t)(p - name);
  p++;

  while (p < end && (*p == ' ' || *p == '\t')) p++;
  /* Also lets gcc see that end - p > 0 below (else -Wstringop-overread at -O2). */
  if (p == end) return NEED_MORE;
  const char *val = p;
  const char *lf = memchr(p, '\n', (size_t)(end - p));
  const char *stop = lf ? lf : end;
  while (p < stop && IS(*p, C_FIELD)) p++;
  if (lf == NULL) {
    /* Incomplete line: fine while every byte is a value byte, allowing for a CR that
     * is the last byte so far (its LF may be in the next read). */
    if (p == end || (*p == '\r' && p + 1 == end)) return NEED_MORE;
    return EWS_EHTTP_BAD;
  }
  /* The first non-value byte must be the CR right before the LF: this rejects CTLs,
   * NUL, a bare CR inside the value and a bare LF in one test. */
  if (p + 1 != lf || *p != '\r') return EWS_EHTTP_BAD;
  while (p > val && (p[-1] == ' ' || p[-1] == '\t')) p--;
  h->value = val;
  h->value_len = (size_t)(p - val);
  *pp = lf + 1;
  return LINE_DONE;
}

int ews_http_parse(const char *buf, size_t len, const ews_http_limits_t *lim,
                   ews_http_request_t *req) {
  if (req == NULL || lim == NULL || (buf == NULL && len > 0)) return EWS_EINVAL;

  /* The return value is an int, so a head can never be longer than INT_MAX. */
  size_t max_head = lim->max_head < (size_t)INT_MAX ? lim->max_head : (size_t)INT_MAX;
  size_t max_headers =
      lim->max_headers < EWS_HTTP_MAX_HEADERS ? lim->max_headers : EWS_HTTP_MAX_HEADERS;
  /* What running out of window means: more data if the limit still allows it. */
  int more = len >= max_head ? EWS_EHTTP_TOO_LARGE : 0;

  req->num_headers = 0;
  req->query = NULL;
  req->query_len = 0;
  if (len == 0 || max_head == 0) return more;
  /* Bytes past max_head can never belong to an acceptable head: never look at them. */
  const char *p = buf, *end = buf + (len < max_head ? len : max_head);

  int r = parse_request_line(&p, end, req);
  if (r < 0) return r;
  if (r == NEED_MORE) return more;

  for (;;) {
    if (p == end) return more;
    if (*p == '\r') {
      if (p + 1 == end) return more;
      if (p[1] != '\n') return EWS_EHTTP_BAD;
      return (int)(p + 2 - buf);
    }
    /* A line starting with whitespace is obs-fold (or whitespace after the request
     * line); both are rejected outright (RFC 9112 sections 2.2 and 5.2). */
    if (*p == '\n' || *p == ' ' || *p == '\t') return EWS_EHTTP_BAD;
    if (req->num_headers == max_headers) return EWS_EHTTP_HEADERS;
    r = parse_header_line(&p, end, &req->headers[req->num_headers]);
    if (r < 0) return r;
    if (r == NEED_MORE) return more;
    req->num_headers++;
  }
}

static int lower(int c) { return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c; }

/* Case-insensitive comparison of s[0..n) with the NUL-terminated t. */
static int eq_nocase(const char *s, size_t n, const char *t) {
  for (size_t i = 0; i < n; i++) {
    if (t[i] == '\0' || lower((unsigned char)s[i]) != lower((unsigned char)t[i])) return 0;
  }
  return t[n] == '\0';
}

const ews_http_header_t *ews_http_header(const ews_http_request_t *req, const char *name) {
  for (size_t i = 0; i < req->num_headers; i++) {
    if (eq_nocase(req->headers[i].name, req->headers[i].name_len, name))
      return &req->headers[i];
  }
  return NULL;
}

size_t ews_http_header_count(const ews_http_request_t *req, const char *name) {
  size_t n = 0;
  for (size_t i = 0; i < req->num_headers; i++) {
    if (eq_nocase(req->headers[i].name, req->headers[i].name_len, name)) n++;
  }
  return n;
}

int ews_http_list_next(const char *v, size_t len, size_t *pos, const char **elem,
                       size_t *elem_len) {
  size_t i = *pos;
  while (i < len) {
    size_t start = i;
    int quoted = 0;
    for (; i < len; i++) {
      if (quoted) {
        /* quoted-pair: the escaped byte cannot close the string */
        if (v[i] == '\\' && i + 1 < len) i++;
        else if (v[i] == '"') quoted = 0;
      } else if (v[i] == '"') {
        quoted = 1;
      } else if (v[i] == ',') {
        break;
      }
    }
    size_t e = i;
    if (i < len) i++; /* past the comma */
    while (start < e && (v[start] == ' ' || v[start] == '\t')) start++;
    while (e > start && (v[e - 1] == ' ' || v[e - 1] == '\t')) e--;
    if (e > start) { /* RFC 9110 section 5.6.1: empty elements are ignored */
      *elem = v + start;
      *elem_len = e - start;
      *pos = i;
      return 1;
    }
  }
  *pos = i;
  return 0;
}

int ews_http_list_has(const char *v, size_t len, const char *token) {
  size_t pos = 0, n;
  const char *e;
  while (ews_http_list_next(v, len, &pos, &e, &n)) {
    if (eq_nocase(e, n, token)) return 1;
  }
  return 0;
}

const char *ews_http_reason(int status) {
  switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
  }
  /* Unknown codes still need some phrase; classes per RFC 9110 section 15. */
  if (status >= 100 && status < 200) return "Informational";
  if (status >= 200 && status < 300) return "Success";
  if (status >= 300 && status < 400) return "Redirection";
  if (status >= 400 && status < 500) return "Client Error";
  if (status >= 500 && status < 600) return "Server Error";
  return "Unknown";
}
