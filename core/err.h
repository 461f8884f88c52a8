/* err.h — the one error-code table of the C core.
 *
 * Every C function that can fail returns a negative EWS_E* code (libuv style) or
 * NULL with a reason. Errors from libuv, mbedTLS and zlib are mapped to these at the
 * edge. Protocol errors carry the WebSocket close code or HTTP status they imply, so
 * callers never keep their own mapping tables. */
#ifndef EWS_ERR_H
#define EWS_ERR_H

/* XX(name, value, close_code, http_status, message) */
#define EWS_ERRNO_MAP(XX)                                                              \
  XX(AGAIN,          -1,  0,    0,   "need more data")                                \
  XX(NOMEM,          -2,  1011, 503, "out of memory")                                 \
  XX(INVAL,          -3,  1011, 500, "invalid argument")                              \
  XX(CLOSED,         -4,  0,    0,   "connection is closed")                          \
  XX(BACKPRESSURE,   -5,  1008, 0,   "send buffer limit exceeded")                    \
  XX(TIMEDOUT,       -6,  1001, 408, "timed out")                                     \
  XX(STOPPED,        -7,  0,    0,   "processing stopped by handler")                 \
  XX(IO,             -8,  1006, 0,   "I/O error")                                     \
  XX(HANDLER,        -9,  1011, 500, "handler error")                                 \
  XX(SHUTDOWN,       -10, 1001, 503, "server shutting down")                          \
  XX(BUDGET,         -11, 1013, 503, "server message memory budget exhausted")        \
  XX(INBOX_FULL,     -12, 0,    0,   "worker inbox full")                             \
  XX(PROTO,          -20, 1002, 0,   "protocol error")                                \
  XX(UNMASKED,       -21, 1002, 0,   "client frame is not masked")                    \
  XX(MASKED,         -22, 1002, 0,   "server frame is masked")                        \
  XX(RSV,            -23, 1002, 0,   "reserved bit set")                              \
  XX(OPCODE,         -24, 1002, 0,   "reserved opcode")                               \
  XX(CTRL_TOO_BIG,   -25, 1002, 0,   "control frame payload over 125 bytes")          \
  XX(CTRL_FRAGMENT,  -26, 1002, 0,   "fragmented control frame")                      \
  XX(CONTINUATION,   -27, 1002, 0,   "continuation frame without a message to continue") \
  XX(NOT_CONTINUED,  -28, 1002, 0,   "new data frame inside a fragmented message")    \
  XX(CLOSE_PAYLOAD,  -29, 1002, 0,   "close frame payload of 1 byte")                 \
  XX(CLOSE_CODE,     -30, 1002, 0,   "invalid close code")                            \
  XX(LENGTH,         -31, 1002, 0,   "non-minimal or oversized 64-bit length")         \
  XX(UTF8,           -32, 1007, 0,   "invalid UTF-8 in text")                         \
  XX(FRAME_TOO_BIG,  -33, 1009, 0,   "frame exceeds the maximum frame size")          \
  XX(MSG_TOO_BIG,    -34, 1009, 0,   "message exceeds the maximum message size")      \
  XX(INFLATE,        -35, 1007, 0,   "compressed data is invalid")                    \
  XX(INFLATE_BLOCKS, -36, 1007, 0,   "too many final DEFLATE blocks in one message")   \
  XX(HTTP_BAD,       -50, 0,    400, "malformed HTTP request")                        \
  XX(HTTP_TOO_LARGE, -51, 0,    431, "request head too large")                        \
  XX(HTTP_HEADERS,   -52, 0,    431, "too many request headers")                      \
  XX(HTTP_VERSION,   -53, 0,    505, "HTTP version not supported")                    \
  XX(HTTP_METHOD,    -54, 0,    405, "method not allowed")                            \
  XX(HTTP_NOT_FOUND, -55, 0,    404, "not found")                                     \
  XX(HTTP_UPGRADE,   -56, 0,    426, "upgrade required")                              \
  XX(HTTP_WS_VERSION,-57, 0,    426, "unsupported Sec-WebSocket-Version")             \
  XX(HTTP_WS_KEY,    -58, 0,    400, "missing or malformed Sec-WebSocket-Key")        \
  XX(HTTP_HOST,      -59, 0,    400, "missing or duplicate Host header")              \
  XX(HTTP_TIMEOUT,   -60, 0,    408, "request head not complete in time")             \
  XX(ORIGIN,         -61, 0,    403, "origin not allowed")                            \
  XX(HTTP_PROTOCOL,  -69, 0,    400, "none of the offered subprotocols is supported")  \
  XX(HTTP_PATH,      -70, 0,    400, "request path not allowed")                      \
  XX(HTTP_URI_TOO_LONG, -71, 0, 414, "request path too long")                         \
  XX(FULL,           -62, 1013, 503, "too many connections")                          \
  XX(LIMIT_IP,       -63, 0,    429, "too many connections from this address")        \
  XX(LIMIT_USER,     -64, 4429, 429, "too many connections for this user")            \
  XX(AUTH,           -65, 4401, 401, "authentication failed")                         \
  XX(AUTH_TIMEOUT,   -66, 4408, 401, "authentication timed out")                      \
  XX(TOKEN_EXPIRED,  -67, 4403, 0,   "token expired")                                 \
  XX(RATE_LIMIT,     -68, 1008, 429, "rate limit exceeded")                           \
  XX(TLS,            -80, 0,    0,   "TLS error")                                     \
  XX(CERT,           -82, 0,    0,   "certificate verification failed")               \
  XX(HANDSHAKE,      -100, 0,   0,   "WebSocket handshake failed")                    \
  XX(RESOLVE,        -101, 0,   0,   "host name not resolved")                        \
  XX(CONNECT,        -102, 0,   0,   "connection failed")                             \
  XX(URL,            -103, 0,   0,   "bad WebSocket URL")                             \
  XX(ZLIB,           -81, 1011, 0,   "zlib error")                                    \
  XX(NOSTORE,        -90, 0,    0,   "no data directory (start with --data DIR)")    \
  XX(NOSPACE,        -91, 0,    0,   "storage full")                                \
  XX(CONFLICT,       -92, 0,    0,   "revision conflict")                          \
  XX(UNAVAILABLE,    -93, 0,    0,   "unavailable (the cluster's Redis shard is down)")

typedef enum {
#define EWS_ERR_ENUM(name, val, cc, hs, msg) EWS_E##name = (val),
  EWS_ERRNO_MAP(EWS_ERR_ENUM)
#undef EWS_ERR_ENUM
} ews_errno_t;

/* Human-readable message; never NULL (unknown codes give "unknown error"). */
const char *ews_strerror(int err);
/* "EWS_EPROTO" style name; never NULL. */
const char *ews_err_name(int err);
/* WebSocket close code implied by a protocol error, or 0 when it implies none. */
int ews_err_close_code(int err);
/* HTTP status implied by a handshake error, or 0 when it implies none. */
int ews_err_http_status(int err);

#endif
