/* http_head.h — a strict, bounded, I/O-free HTTP/1.1 request-head parser.
 *
 * The parser keeps no state between calls: the caller accumulates bytes and calls
 * ews_http_parse again with the whole prefix until it answers complete or error
 * (a head is small and bounded, so re-parsing is cheap). Parsed strings point into
 * the caller's buffer. Strict: CRLF line endings only (a bare LF is an error), no
 * obsolete line folding, tokens as in RFC 9110 (method, header names), no control
 * characters in the target or values, no whitespace before a header's colon. */
#ifndef EWS_HTTP_HEAD_H
#define EWS_HTTP_HEAD_H

#include <stddef.h>

#define EWS_HTTP_MAX_HEADERS 64 /* hard cap; the configured limit may be lower */

typedef struct {
  const char *name;
  size_t name_len;
  const char *value; /* leading and trailing spaces/tabs trimmed */
  size_t value_len;
} ews_http_header_t;

typedef struct {
  const char *method;
  size_t method_len;
  const char *target; /* request-target as sent: origin-form "/path?query" */
  size_t target_len;
  const char *path; /* target up to '?' */
  size_t path_len;
  const char *query; /* after '?', without it; NULL when there is no '?' */
  size_t query_len;
  int version_minor; /* HTTP/1.x; only major version 1 is accepted */
  size_t num_headers;
  ews_http_header_t headers[EWS_HTTP_MAX_HEADERS];
} ews_http_request_t;

typedef struct {
  size_t max_head;    /* bytes, including the final CRLFCRLF */
  size_t max_headers; /* at most EWS_HTTP_MAX_HEADERS */
} ews_http_limits_t;

/* Parses buf[0..len). Returns the length of the complete head (> 0, the request
 * line through the blank line), 0 when more bytes are needed (and len is still under
 * max_head), or a negative error: EWS_EHTTP_BAD (400) for malformed syntax,
 * EWS_EHTTP_TOO_LARGE (431) when no complete head fits in max_head bytes,
 * EWS_EHTTP_HEADERS (431) for more than max_headers, EWS_EHTTP_VERSION (505) for
 * anything but HTTP/1.0 or HTTP/1.1 (including an HTTP/0.9-style line without a
 * version). An error is reported as soon as the bytes seen so far can no longer
 * start a valid head, and the answer for a prefix never contradicts the answer for
 * more bytes. Bytes past max_head are never read. *req is only meaningful when the
 * head is complete. EWS_EINVAL for NULL req/lim (or NULL buf with len > 0).
 * Also strict: the request-target is visible ASCII only (no bytes >= 0x80), and an
 * empty line before the request line is an error (no RFC 9112 2.2 leniency). */
int ews_http_parse(const char *buf, size_t len, const ews_http_limits_t *lim,
                   ews_http_request_t *req);

/* The first header with this name (case-insensitive), or NULL. */
const ews_http_header_t *ews_http_header(const ews_http_request_t *req, const char *name);
/* How many headers have this name (case-insensitive). */
size_t ews_http_header_count(const ews_http_request_t *req, const char *name);

/* 1 when the comma-separated token list v[0..len) contains `token`
 * (case-insensitive, optional whitespace around elements, empty elements ignored). */
int ews_http_list_has(const char *v, size_t len, const char *token);

/* Iterates a comma-separated list: on each call sets *elem and *elem_len to the next
 * non-empty element with surrounding whitespace trimmed and returns 1; returns 0 at
 * the end. *pos starts at 0. Commas inside double quotes do not split. */
int ews_http_list_next(const char *v, size_t len, size_t *pos, const char **elem,
                       size_t *elem_len);

/* The reason phrase for a status code ("Bad Request", ...), never NULL. */
const char *ews_http_reason(int status);

#endif
