/* close_codes.c — which close status codes may appear on the wire (RFC 6455
 * section 7.4 and the IANA registry) and their short names for logs.
 *
 * 1004 is reserved, 1005/1006/1015 are local-only pseudo-codes that an endpoint
 * must never send, 1016-2999 are unassigned/reserved for the protocol and
 * extensions, 3000-3999 are registered for libraries and frameworks, 4000-4999 are
 * private. A peer sending an invalid code is a protocol error (close 1002). */
#include "close_codes.h"

int ews_close_code_valid(unsigned code) {
  if (code >= 1000 && code <= 1003) return 1;
  if (code >= 1007 && code <= 1014) return 1;
  return code >= 3000 && code <= 4999;
}

const char *ews_close_code_name(unsigned code) {
  switch (code) {
  case EWS_CLOSE_NORMAL: return "normal";
  case EWS_CLOSE_GOING_AWAY: return "going away";
  case EWS_CLOSE_PROTOCOL: return "protocol error";
  case EWS_CLOSE_UNSUPPORTED: return "unsupported data";
  case EWS_CLOSE_NO_STATUS: return "no status";
  case EWS_CLOSE_ABNORMAL: return "abnormal closure";
  case EWS_CLOSE_INVALID_DATA: return "invalid payload data";
  case EWS_CLOSE_POLICY: return "policy violation";
  case EWS_CLOSE_TOO_BIG: return "message too big";
  case EWS_CLOSE_EXTENSION: return "mandatory extension";
  case EWS_CLOSE_INTERNAL: return "internal error";
  case EWS_CLOSE_RESTART: return "service restart";
  case EWS_CLOSE_TRY_AGAIN: return "try again later";
  case EWS_CLOSE_BAD_GATEWAY: return "bad gateway";
  case EWS_CLOSE_TLS: return "TLS handshake failure";
  }
  if (code >= 3000 && code <= 3999) return "application";
  if (code >= 4000 && code <= 4999) return "private";
  return "invalid";
}
