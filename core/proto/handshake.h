/* handshake.h — the WebSocket opening handshake (RFC 6455 section 4.2), I/O-free:
 * validating a parsed request as an upgrade, computing Sec-WebSocket-Accept (SHA-1
 * and base64 from mbedTLS), choosing a subprotocol, and writing the 101 response and
 * the plain HTTP error/JSON responses. */
#ifndef EWS_HANDSHAKE_H
#define EWS_HANDSHAKE_H

#include <stddef.h>

#include "http_head.h"

#define EWS_ACCEPT_LEN 28 /* base64 of a 20-byte SHA-1 */

typedef struct {
  const char *key; /* Sec-WebSocket-Key, trimmed, validated: base64 of 16 bytes */
  size_t key_len;
  const char *protocols; /* Sec-WebSocket-Protocol values (first header), or NULL */
  size_t protocols_len;
  const char *extensions; /* Sec-WebSocket-Extensions (first header), or NULL */
  size_t extensions_len;
  const char *origin; /* Origin, or NULL */
  size_t origin_len;
  const char *host;
  size_t host_len;
} ews_upgrade_t;

/* 1 when the request asks for a WebSocket upgrade at all (an Upgrade header whose
 * token list has "websocket"); used to tell upgrades from plain HTTP requests. */
int ews_is_upgrade(const ews_http_request_t *req);

/* Validates `req` as a WebSocket upgrade: method GET (else EWS_EHTTP_METHOD, 405),
 * HTTP/1.1 or later (else EWS_EHTTP_BAD), exactly one non-empty Host header
 * (EWS_EHTTP_HOST), Upgrade containing the token "websocket" and Connection
 * containing "upgrade" (EWS_EHTTP_UPGRADE, 426; repeated lines count as one list),
 * exactly one Sec-WebSocket-Version, exactly "13" (EWS_EHTTP_WS_VERSION, 426: respond
 * with "Sec-WebSocket-Version: 13"; also when missing), exactly one Sec-WebSocket-Key
 * that is base64 decoding to 16 bytes, i.e. 22 base64 symbols and "=="
 * (EWS_EHTTP_WS_KEY, 400). Checked in that order; the first failure is returned.
 * Fills *up (pointers into the request's buffer) and returns 0. */
int ews_upgrade_check(const ews_http_request_t *req, ews_upgrade_t *up);

/* Writes base64(SHA-1(key + GUID)) into out (EWS_ACCEPT_LEN bytes plus a NUL).
 * Returns 0, or EWS_EINVAL for a NULL key or key_len > 64 (a valid key is 24). */
int ews_accept_key(const char *key, size_t key_len, char out[EWS_ACCEPT_LEN + 1]);

/* Chooses a subprotocol: the first of the client's offered list (in the client's
 * order of preference) that is in `supported`. Returns its index in `supported`, or
 * -1 when none matches. Matching is case-sensitive (subprotocol names are tokens
 * compared exactly). */
int ews_choose_protocol(const char *offered, size_t offered_len,
                        const char *const *supported, size_t n_supported);

/* The subprotocol policy of the upgrade (browsers, unlike RFC 6455, fail a
 * connection whose 101 selects none of the protocols they offered):
 *  - nothing offered: 0, *sel = NULL (no Sec-WebSocket-Protocol in the 101);
 *  - the app lists protocols (n_supported > 0): the first offered that is listed,
 *    *sel = supported[i];
 *  - the app lists none: the first offered entry that is not a credential, i.e.
 *    does not start with "bearer." or with `token_prefix` (may be NULL); *sel then
 *    points into `offered` (*sel_len bytes, not NUL-terminated);
 *  - otherwise EWS_EHTTP_PROTOCOL (400): no acceptable protocol was offered. */
int ews_select_protocol(const char *offered, size_t offered_len,
                        const char *const *supported, size_t n_supported,
                        const char *token_prefix, const char **sel, size_t *sel_len);

/* Writes the 101 Switching Protocols response into out (cap bytes). `protocol` and
 * `extensions` may be NULL (or empty: the header is then left out). Returns the
 * length, or EWS_EINVAL when it does not fit or a value holds a CTL other than HTAB
 * (which could split the response). Like all writers here, out is not
 * NUL-terminated and nothing is written past cap. */
int ews_write_101(char *out, size_t cap, const char accept[EWS_ACCEPT_LEN],
                  const char *protocol, size_t protocol_len, const char *extensions,
                  size_t extensions_len);

/* Writes a complete HTTP/1.1 response with "Connection: close", the given status
 * (reason phrase from ews_http_reason), an optional extra header block (each line
 * ending in CRLF, may be NULL), a Content-Type (may be NULL) and body. Order: status
 * line, extra headers, Content-Type, Content-Length, Connection, blank line, body.
 * 1xx, 204 and 304 get neither Content-Type nor Content-Length and must have an
 * empty body. Returns the length, or EWS_EINVAL when it does not fit in cap, the
 * status is not 100..999, or the extra block is not whole non-empty CRLF lines. */
int ews_write_response(char *out, size_t cap, int status, const char *extra_headers,
                       const char *content_type, const char *body, size_t body_len);

/* Writes the standard JSON error response for a handshake error code (any EWS_E*
 * with an HTTP status): body {"error":"<name>","message":"<text>"}, plus
 * "Sec-WebSocket-Version: 13" for EWS_EHTTP_WS_VERSION, "Upgrade: websocket" for
 * EWS_EHTTP_UPGRADE and "Allow: GET" for EWS_EHTTP_METHOD. <name> is the err.h name
 * without "EWS_E", lowercased ("http_ws_version"); <text> is ews_strerror(err).
 * Content-Type is application/json. Returns the length, or EWS_EINVAL when it does
 * not fit or err has no HTTP status. */
int ews_write_error(char *out, size_t cap, int err);

#endif
