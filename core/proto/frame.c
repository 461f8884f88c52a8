/* frame.c — RFC 6455 section 5 framing without I/O: header encoding, the receive
 * state machine (ews_rx_t) and close payload parse/build (masking: mask.c).
 *
 * The receiver is the per-connection hot path, so it is built around the common
 * case: a whole frame sitting in the caller's read buffer. Its header is parsed in
 * place, the payload unmasked in place and handed to on_data/on_control straight
 * from the buffer. Only a header split across reads is gathered in rx->hdr, and only
 * a control frame split across reads is copied (into a 125-byte heap buffer that
 * exists just for that). Data payload is never copied: a split data frame is
 * delivered as several chunks.
 *
 * Every check that the RFC makes a protocol error is done as early as the bytes
 * allow: opcode, RSV, mask bit and control-frame rules on the first two header
 * bytes; length encoding and size limits once the length is complete (before any
 * payload); UTF-8 of text on each chunk as it arrives. */
#include "frame.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "close_codes.h"

size_t ews_frame_header(uint8_t *out, int opcode, int fin, int rsv1, uint64_t len,
                        const uint8_t *mask) {
  size_t n;
  out[0] = (uint8_t)((fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | (opcode & 0x0F));
  uint8_t mbit = mask ? 0x80 : 0;
  if (len < 126) {
    out[1] = (uint8_t)(mbit | len);
    n = 2;
  } else if (len <= 0xFFFF) {
    out[1] = mbit | 126;
    out[2] = (uint8_t)(len >> 8);
    out[3] = (uint8_t)len;
    n = 4;
  } else {
    out[1] = mbit | 127;
    for (int i = 0; i < 8; i++) out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
    n = 10;
  }
  if (mask) {
    memcpy(out + n, mask, 4);
    n += 4;
  }
  return n;
}

void ews_rx_init(ews_rx_t *rx, const ews_rx_config_t *cfg) {
  memset(rx, 0, sizeof *rx);
  rx->cfg = cfg;
}

void ews_rx_free(ews_rx_t *rx) {
  free(rx->ctl);
  rx->ctl = NULL;
  rx->ctl_len = 0;
}

static inline size_t header_size(uint8_t b1) {
  size_t l7 = b1 & 0x7F;
  return 2 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0) + ((b1 & 0x80) ? 4 : 0);
}

/* Checks everything the first two header bytes decide. Does not modify rx, so it
 * may run again on a header that is still being gathered. */
static int check_start(const ews_rx_t *rx, uint8_t b0, uint8_t b1) {
  unsigned op = b0 & 0x0F;
  if (b0 & 0x30) return EWS_ERSV; /* RSV2/RSV3: no extension we speak uses them */
  if ((op >= 3 && op <= 7) || op >= 0xB) return EWS_EOPCODE;
  int control = op & 0x08;
  /* RSV1 is permessage-deflate's "compressed" bit: only on the first frame of a
   * data message (RFC 7692 section 6), and only when negotiated. */
  if ((b0 & 0x40) && (!rx->cfg->allow_rsv1 || control || op == EWS_OP_CONT))
    return EWS_ERSV;
  if (rx->cfg->expect_masked) {
    if (!(b1 & 0x80)) return EWS_EUNMASKED;
  } else if (b1 & 0x80) {
    return EWS_EMASKED;
  }
  if (control) {
    if (!(b0 & 0x80)) return EWS_ECTRL_FRAGMENT;
    if ((b1 & 0x7F) > EWS_CONTROL_MAX) return EWS_ECTRL_TOO_BIG;
  } else if (op == EWS_OP_CONT) {
    if (!rx->msg_opcode) return EWS_ECONTINUATION;
  } else if (rx->msg_opcode) {
    return EWS_ENOT_CONTINUED;
  }
  return 0;
}

/* Takes a complete header h[0..header_size) that passed check_start: validates the
 * length and limits and enters the payload state. */
static int start_frame(ews_rx_t *rx, const uint8_t *h) {
  const ews_rx_config_t *cfg = rx->cfg;
  unsigned op = h[0] & 0x0F;
  uint64_t len = h[1] & 0x7F;
  size_t at = 2;
  if (len == 126) {
    len = (uint64_t)h[2] << 8 | h[3];
    if (len < 126) return EWS_ELENGTH; /* RFC 6455 5.2: minimal encoding */
    at = 4;
  } else if (len == 127) {
    len = 0;
    for (int i = 0; i < 8; i++) len = len << 8 | h[2 + i];
    if (len >> 63 || len <= 0xFFFF) return EWS_ELENGTH;
    at = 10;
  }
  if (cfg->max_frame && len > cfg->max_frame) return EWS_EFRAME_TOO_BIG;
  if (!(op & 0x08)) {
    uint64_t before = op == EWS_OP_CONT ? rx->msg_len : 0;
    if (cfg->max_message && (len > cfg->max_message || before > cfg->max_message - len))
      return EWS_EMSG_TOO_BIG;
    if (op != EWS_OP_CONT) {
      rx->msg_opcode = (uint8_t)op;
      rx->msg_compressed = (h[0] & 0x40) != 0;
      rx->msg_started = 0;
      rx->utf8 = EWS_UTF8_ACCEPT;
    }
    /* Saturating: without max_message the sum only serves diagnostics. */
    rx->msg_len = len > UINT64_MAX - before ? UINT64_MAX : before + len;
  }
  if (h[1] & 0x80) memcpy(rx->key, h + at, 4);
  rx->key_off = 0;
  rx->opcode = (uint8_t)op;
  rx->fin = (h[0] & 0x80) != 0;
  rx->remaining = len;
  rx->in_frame = 1;
  return 0;
}

int ews_close_parse(const uint8_t *p, size_t n, unsigned *code, const uint8_t **reason,
                    size_t *reason_len) {
  *reason = p;
  *reason_len = 0;
  if (n == 0) {
    *code = EWS_CLOSE_NO_STATUS;
    return 0;
  }
  if (n == 1) return EWS_ECLOSE_PAYLOAD;
  *code = (unsigned)p[0] << 8 | p[1];
  if (!ews_close_code_valid(*code)) return EWS_ECLOSE_CODE;
  if (!ews_utf8_valid(p + 2, n - 2)) return EWS_EUTF8;
  *reason = p + 2;
  *reason_len = n - 2;
  return 0;
}

size_t ews_close_build(uint8_t *out, unsigned code, const char *reason, size_t reason_len) {
  if (code == 0) return 0;
  out[0] = (uint8_t)(code >> 8);
  out[1] = (uint8_t)code;
  if (!reason) reason_len = 0;
  if (reason_len > EWS_CONTROL_MAX - 2) {
    /* Cut before the sequence that would straddle the limit: if the first dropped
     * byte is a continuation byte, back up to its lead (at most 3 bytes for valid
     * UTF-8; garbage input is cut at the limit rather than eaten further). */
    size_t cut = EWS_CONTROL_MAX - 2;
    const uint8_t *r = (const uint8_t *)reason;
    for (int k = 0; k < 3 && cut > 0 && (r[cut] & 0xC0) == 0x80; k++) cut--;
    if ((r[cut] & 0xC0) == 0x80) cut = EWS_CONTROL_MAX - 2;
    reason_len = cut;
  }
  if (reason_len) memcpy(out + 2, reason, reason_len);
  return 2 + reason_len;
}

/* Marks the receiver failed; later feeds return the same code. */
static int fail(ews_rx_t *rx, int rc) {
  rx->failed = (uint8_t)-rc;
  return rc;
}

/* A callback stopped the feed: later feeds return EWS_ESTOPPED. */
static int stop(ews_rx_t *rx, int rc) {
  rx->failed = (uint8_t)-EWS_ESTOPPED;
  return rc;
}

/* Delivers a complete control frame payload p[0..n) (already unmasked). */
static int deliver_control(ews_rx_t *rx, uint8_t *p, size_t n, const ews_rx_handler_t *h,
                           void *ud) {
  int rc;
  if (rx->opcode == EWS_OP_CLOSE) {
    unsigned code;
    const uint8_t *reason;
    size_t rlen;
    if ((rc = ews_close_parse(p, n, &code, &reason, &rlen))) return fail(rx, rc);
  }
  if (h->on_control && (rc = h->on_control(ud, rx->opcode, p, n))) return stop(rx, rc);
  return 0;
}

int ews_rx_feed(ews_rx_t *rx, uint8_t *buf, size_t len, const ews_rx_handler_t *h,
                void *ud) {
  size_t i = 0;
  int rc;

  if (rx->failed) return -(int)rx->failed;
  if (len > (size_t)INT_MAX) return EWS_EINVAL; /* the count must fit the return */

  for (;;) {
    if (!rx->in_frame) {
      /* ---- header ---- */
      size_t avail = len - i;
      if (rx->hdr_len == 0 && avail >= 2) {
        /* Fast path: the header is (probably) whole in the buffer. */
        const uint8_t *hp = buf + i;
        if ((rc = check_start(rx, hp[0], hp[1]))) return fail(rx, rc);
        size_t hs = header_size(hp[1]);
        if (avail >= hs) {
          if ((rc = start_frame(rx, hp))) return fail(rx, rc);
          i += hs;
          goto payload;
        }
      }
      if (avail == 0) return (int)len;
      /* Slow path: gather the header across calls. */
      while (rx->hdr_len < 2 && i < len) rx->hdr[rx->hdr_len++] = buf[i++];
      if (rx->hdr_len < 2) return (int)len;
      if ((rc = check_start(rx, rx->hdr[0], rx->hdr[1]))) return fail(rx, rc);
      size_t hs = header_size(rx->hdr[1]);
      size_t take = hs - rx->hdr_len;
      if (take > len - i) take = len - i;
      memcpy(rx->hdr + rx->hdr_len, buf + i, take);
      rx->hdr_len = (uint8_t)(rx->hdr_len + take);
      i += take;
      if (rx->hdr_len < hs) return (int)len;
      rx->hdr_len = 0;
      if ((rc = start_frame(rx, rx->hdr))) return fail(rx, rc);
    }

  payload:;
    /* ---- payload ---- */
    size_t avail = len - i;
    size_t take = rx->remaining < avail ? (size_t)rx->remaining : avail;
    uint8_t *p = buf + i;
    int masked = rx->cfg->expect_masked;

    if (rx->opcode & 0x08) {
      /* Control frame (<= 125 bytes, FIN set). */
      if (rx->ctl_len == 0 && take == rx->remaining) {
        /* Whole in the buffer: unmask and deliver in place. */
        if (masked) ews_mask(p, take, rx->key, 0);
        i += take;
        rx->remaining = 0;
        rx->in_frame = 0;
        if ((rc = deliver_control(rx, p, take, h, ud))) return rc;
        continue;
      }
      if (take == 0) return (int)len;
      if (!rx->ctl && !(rx->ctl = malloc(EWS_CONTROL_MAX))) return fail(rx, EWS_ENOMEM);
      memcpy(rx->ctl + rx->ctl_len, p, take);
      rx->ctl_len = (uint8_t)(rx->ctl_len + take);
      rx->remaining -= take;
      i += take;
      if (rx->remaining) return (int)len;
      uint8_t *c = rx->ctl;
      size_t n = rx->ctl_len;
      rx->ctl = NULL;
      rx->ctl_len = 0;
      rx->in_frame = 0;
      if (masked) ews_mask(c, n, rx->key, 0);
      rc = deliver_control(rx, c, n, h, ud);
      free(c);
      if (rc) return rc;
      continue;
    }

    /* Data frame: deliver whatever part of the payload is here. */
    if (take == 0 && rx->remaining) return (int)len;
    if (masked) {
      ews_mask(p, take, rx->key, rx->key_off);
      rx->key_off = (uint8_t)((rx->key_off + take) & 3);
    }
    i += take;
    rx->remaining -= take;
    int done = rx->remaining == 0;
    int last = done && rx->fin;
    int op = rx->msg_opcode;
    int compressed = rx->msg_compressed;
    if (op == EWS_OP_TEXT && !compressed) {
      rx->utf8 = ews_utf8_feed(rx->utf8, p, take);
      if (rx->utf8 == EWS_UTF8_REJECT || (last && rx->utf8 != EWS_UTF8_ACCEPT))
        return fail(rx, EWS_EUTF8);
    }
    int first = !rx->msg_started;
    if (done) rx->in_frame = 0;
    /* Empty chunks are skipped unless they end the message, so an empty message
     * still produces exactly one call. */
    if (take == 0 && !last) continue;
    if (last) {
      rx->msg_opcode = 0;
      rx->msg_started = 0;
      rx->msg_len = 0;
    } else {
      rx->msg_started = 1;
    }
    if (h->on_data && (rc = h->on_data(ud, op, p, take, first, last, compressed)))
      return stop(rx, rc);
  }
}
