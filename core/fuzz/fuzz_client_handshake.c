/* fuzz_client_handshake.c — libFuzzer target for the client side of the opening
 * handshake (core/proto/client_handshake.c): the server's response head, the checks
 * of the 101 and the URL parser, on what a hostile server (or URL) may send.
 *
 * The first input byte picks the request side (bit 0: permessage-deflate offered,
 * bit 1: subprotocols "a, b" offered, bits 4-7: max_head), the rest is the response
 * (and, the whole input, a URL). Besides memory safety it checks: the verdict for a
 * prefix never contradicts the verdict for the whole (the parser is stateless and
 * re-run on a growing buffer), parsed strings lie inside the buffer, a 101 accepted by
 * the checks selects an offered subprotocol and agrees on window bits 8..15, and
 * `why` is a NUL-terminated sentence on refusal. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "proto/client_handshake.h"

#define REQUIRE(c)                                                                \
  do {                                                                            \
    if (!(c)) {                                                                   \
      fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #c);   \
      abort();                                                                    \
    }                                                                             \
  } while (0)

static const size_t head_limits[16] = {0,   1,    4,    16,   64,   128,  256,  512,
                                       1024, 2048, 4096, 8192, 16384, 32768, 65536, SIZE_MAX};

static int inside(const char *p, size_t n, const char *buf, size_t len) {
  return p >= buf && n <= len && p - buf <= (ptrdiff_t)(len - n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  int pmd = data[0] & 1;
  const char *protos = (data[0] & 2) ? "a, b" : NULL;
  size_t max_head = head_limits[data[0] >> 4];
  size_t len = size - 1;
  char *buf = malloc(len ? len : 1);
  if (!buf) return 0;
  memcpy(buf, data + 1, len);

  ews_http_response_t resp;
  int r = ews_http_response_parse(buf, len, max_head, &resp);
  REQUIRE(r >= 0 || r == EWS_EHANDSHAKE);
  if (r == 0) REQUIRE(len < max_head);
  if (r > 0) {
    size_t n = (size_t)r;
    REQUIRE(n <= len && n <= max_head && memcmp(buf + n - 4, "\r\n\r\n", 4) == 0);
    REQUIRE(resp.status >= 0 && resp.status <= 999);
    REQUIRE(resp.num_headers <= EWS_HTTP_MAX_HEADERS);
    for (size_t i = 0; i < resp.num_headers; i++) {
      REQUIRE(inside(resp.headers[i].name, resp.headers[i].name_len, buf, n));
      REQUIRE(inside(resp.headers[i].value, resp.headers[i].value_len, buf, n));
    }
    /* A prefix that ends before the head never answers otherwise. */
    ews_http_response_t r2;
    REQUIRE(ews_http_response_parse(buf, n - 1, max_head, &r2) == 0);
    ews_client_result_t res;
    char why[200];
    why[0] = 1;
    int c = ews_client_check(&resp, "dGhlIHNhbXBsZSBub25jZQ==", protos, protos ? 4 : 0, pmd, &res,
                             why, sizeof why);
    REQUIRE(c == 0 || c == EWS_EHANDSHAKE);
    if (c == 0) {
      REQUIRE(resp.status == 101);
      if (res.protocol) {
        REQUIRE(protos && res.protocol_len == 1 &&
                (res.protocol[0] == 'a' || res.protocol[0] == 'b'));
      }
      if (res.pmd) {
        REQUIRE(pmd);
        REQUIRE(res.params.server_window_bits >= 8 && res.params.server_window_bits <= 15);
        REQUIRE(res.params.client_window_bits >= 8 && res.params.client_window_bits <= 15);
      }
    } else {
      REQUIRE(memchr(why, 0, sizeof why) != NULL);
    }
  }
  ews_url_t u;
  if (ews_url_parse(buf, len, &u) == 0) {
    REQUIRE(inside(u.host, u.host_len, buf, len) && u.host_len > 0);
    REQUIRE(u.port >= 1 && u.port <= 65535);
    REQUIRE(u.path_len >= 1);
    char out[4096];
    ews_client_req_t rq = {&u, "dGhlIHNhbXBsZSBub25jZQ==", protos, protos ? 4 : 0, pmd, NULL, 0};
    int n = ews_client_request(out, sizeof out, &rq);
    REQUIRE(n == EWS_EINVAL || (n > 0 && (size_t)n < sizeof out &&
                                memcmp(out + n - 4, "\r\n\r\n", 4) == 0));
  }
  free(buf);
  return 0;
}
