/* fuzz_http_head.c — libFuzzer target for the request-head parser and the upgrade
 * check (core/proto/http_head.c, core/proto/handshake.c).
 *
 * The first input byte picks the limits (low nibble max_head, high nibble
 * max_headers), the rest is the head. Besides memory safety it checks the contract:
 * a complete head ends in CRLFCRLF within max_head, parsed strings lie inside the
 * buffer and hold no CR/LF/NUL, the verdict for a prefix never contradicts the
 * verdict for the whole input (stateless re-parse must be monotonic), and a request
 * that passes the upgrade check yields a well-formed 101.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "proto/handshake.h"
#include "proto/http_head.h"

#define REQUIRE(c)                                                   \
  do {                                                               \
    if (!(c)) {                                                      \
      fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #c); \
      abort();                                                       \
    }                                                                \
  } while (0)

static const size_t head_limits[16] = {0,    1,    2,    16,   18,    19,    64,    128,
                                       256,  512,  1024, 4096, 8192, 16384, 65536, SIZE_MAX};
static const size_t header_limits[16] = {0, 1, 2, 3, 4, 5, 7, 8, 16, 32, 62, 63, 64, 65, 100,
                                         SIZE_MAX};

static int inside(const char *p, size_t n, const char *buf, size_t len) {
  return p >= buf && n <= len && p - buf <= (ptrdiff_t)(len - n);
}

static int no_crlf_nul(const char *p, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (p[i] == '\r' || p[i] == '\n' || p[i] == '\0') return 0;
  }
  return 1;
}

static int is_known(int r) {
  return r >= 0 || r == EWS_EHTTP_BAD || r == EWS_EHTTP_TOO_LARGE ||
         r == EWS_EHTTP_HEADERS || r == EWS_EHTTP_VERSION;
}

/* The verdict on a prefix must agree with the verdict on the whole: a complete head
 * stays complete at the same length, an error stays the same error. */
static void check_prefix(const char *buf, size_t k, const ews_http_limits_t *lim, int whole) {
  ews_http_request_t req;
  int r = ews_http_parse(buf, k, lim, &req);
  REQUIRE(is_known(r));
  if (r != 0) REQUIRE(r == whole);
}

static void check_list(const char *v, size_t n) {
  size_t pos = 0, len, prev = 0;
  const char *e;
  while (ews_http_list_next(v, n, &pos, &e, &len)) {
    REQUIRE(len > 0 && inside(e, len, v, n));
    REQUIRE(e[0] != ' ' && e[0] != '\t' && e[len - 1] != ' ' && e[len - 1] != '\t');
    REQUIRE(pos > prev && pos <= n);
    prev = pos;
  }
}

static void check_upgrade(const ews_http_request_t *req) {
  ews_upgrade_t up;
  int r = ews_upgrade_check(req, &up);
  if (r != 0) {
    char err[1024];
    REQUIRE(ews_err_http_status(r) != 0);
    int n = ews_write_error(err, sizeof err, r);
    REQUIRE(n > 0 && (size_t)n <= sizeof err);
    return;
  }
  REQUIRE(ews_is_upgrade(req));
  REQUIRE(up.key_len == 24 && up.host_len > 0);
  char accept[EWS_ACCEPT_LEN + 1];
  REQUIRE(ews_accept_key(up.key, up.key_len, accept) == 0);
  REQUIRE(strlen(accept) == EWS_ACCEPT_LEN);
  static const char *const sup[] = {"chat", "superchat", "v1", ""};
  const char *proto = NULL;
  size_t proto_len = 0;
  if (up.protocols) {
    check_list(up.protocols, up.protocols_len);
    int i = ews_choose_protocol(up.protocols, up.protocols_len, sup, 4);
    REQUIRE(i >= -1 && i < 3); /* "" is never a list element */
    if (i >= 0) {
      proto = sup[i];
      proto_len = strlen(sup[i]);
    }
  }
  /* Room for the fixed lines plus the echoed values, which may be long. */
  size_t cap = 256 + proto_len + up.extensions_len;
  char *out = malloc(cap);
  REQUIRE(out != NULL);
  int n = ews_write_101(out, cap, accept, proto, proto_len, up.extensions,
                        up.extensions_len);
  /* Parsed values never hold CTLs other than HTAB, so echoing them must work. */
  REQUIRE(n > 0);
  REQUIRE(memcmp(out + n - 4, "\r\n\r\n", 4) == 0);
  /* Exactly as long as needed: one byte less must fail, without writing past cap. */
  REQUIRE(ews_write_101(out, (size_t)n - 1, accept, proto, proto_len, up.extensions,
                        up.extensions_len) == EWS_EINVAL);
  free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  ews_http_limits_t lim = {head_limits[data[0] & 15], header_limits[data[0] >> 4]};
  size_t len = size - 1;
  /* An exact-size heap copy, so ASan flags any read past the input. */
  char *buf = malloc(len ? len : 1);
  if (!buf) return 0;
  memcpy(buf, data + 1, len);

  ews_http_request_t req;
  int r = ews_http_parse(buf, len, &lim, &req);
  REQUIRE(is_known(r));
  size_t max_headers = lim.max_headers < EWS_HTTP_MAX_HEADERS ? lim.max_headers
                                                              : EWS_HTTP_MAX_HEADERS;
  if (r == 0) REQUIRE(len < lim.max_head);
  if (r == EWS_EHTTP_TOO_LARGE) REQUIRE(len >= lim.max_head);

  if (r > 0) {
    size_t n = (size_t)r;
    REQUIRE(n <= len && n <= lim.max_head && n >= 16); /* "X / HTTP/1.1" CRLF CRLF */
    REQUIRE(memcmp(buf + n - 4, "\r\n\r\n", 4) == 0);
    /* The head is the first blank line: no earlier CRLFCRLF. */
    REQUIRE(memmem(buf, n, "\r\n\r\n", 4) == buf + n - 4);
    REQUIRE(req.version_minor == 0 || req.version_minor == 1);
    REQUIRE(req.num_headers <= max_headers);
    REQUIRE(req.method == buf && req.method_len > 0);
    REQUIRE(inside(req.target, req.target_len, buf, n) && req.target[0] == '/');
    REQUIRE(req.path == req.target && req.path_len <= req.target_len);
    if (req.query) REQUIRE(req.query == req.path + req.path_len + 1 &&
                           req.path_len + 1 + req.query_len == req.target_len);
    else REQUIRE(req.path_len == req.target_len);
    for (size_t i = 0; i < req.num_headers; i++) {
      const ews_http_header_t *h = &req.headers[i];
      REQUIRE(h->name_len > 0 && inside(h->name, h->name_len, buf, n));
      REQUIRE(inside(h->value, h->value_len, buf, n) || h->value_len == 0);
      REQUIRE(no_crlf_nul(h->name, h->name_len) && no_crlf_nul(h->value, h->value_len));
      REQUIRE(memchr(h->name, ':', h->name_len) == NULL);
      if (h->value_len) {
        REQUIRE(h->value[0] != ' ' && h->value[0] != '\t');
        REQUIRE(h->value[h->value_len - 1] != ' ' && h->value[h->value_len - 1] != '\t');
      }
      check_list(h->value, h->value_len);
    }
    /* The head alone parses to the same length; extra bytes changed nothing. */
    ews_http_request_t again;
    REQUIRE(ews_http_parse(buf, n, &lim, &again) == r);
    REQUIRE(again.num_headers == req.num_headers);
    check_prefix(buf, n - 1, &lim, 0);
    check_upgrade(&req);
  }
  if (len > 0) {
    check_prefix(buf, len - 1, &lim, r);
    check_prefix(buf, len / 2, &lim, r);
  }
  free(buf);
  return 0;
}
