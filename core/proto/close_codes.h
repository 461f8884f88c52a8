/* close_codes.h — WebSocket close status codes (RFC 6455 section 7.4) and which of
 * them may appear in a close frame on the wire. I/O-free. */
#ifndef EWS_CLOSE_CODES_H
#define EWS_CLOSE_CODES_H

enum {
  EWS_CLOSE_NORMAL = 1000,
  EWS_CLOSE_GOING_AWAY = 1001,
  EWS_CLOSE_PROTOCOL = 1002,
  EWS_CLOSE_UNSUPPORTED = 1003,
  EWS_CLOSE_NO_STATUS = 1005,   /* never on the wire */
  EWS_CLOSE_ABNORMAL = 1006,    /* never on the wire */
  EWS_CLOSE_INVALID_DATA = 1007,
  EWS_CLOSE_POLICY = 1008,
  EWS_CLOSE_TOO_BIG = 1009,
  EWS_CLOSE_EXTENSION = 1010,
  EWS_CLOSE_INTERNAL = 1011,
  EWS_CLOSE_RESTART = 1012,
  EWS_CLOSE_TRY_AGAIN = 1013,
  EWS_CLOSE_BAD_GATEWAY = 1014,
  EWS_CLOSE_TLS = 1015          /* never on the wire */
};

/* 1 when `code` may be sent in (or accepted from) a close frame: 1000-1003,
 * 1007-1014 and 3000-4999. 1004-1006, 1015, 0-999, 1016-2999 and >= 5000 are not. */
int ews_close_code_valid(unsigned code);

/* A short name ("normal", "going away", ...) or "application" / "private" for the
 * 3000-3999 and 4000-4999 ranges; "invalid" otherwise. Never NULL. */
const char *ews_close_code_name(unsigned code);

#endif
