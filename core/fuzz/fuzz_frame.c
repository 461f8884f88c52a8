/* fuzz_frame.c — libFuzzer target for the frame receiver (ews_rx_feed).
 *
 * Input: byte 0 picks the split point, byte 1 the configuration (masked or not,
 * RSV1 allowed, frame/message limits), the rest is the wire stream. The stream is
 * fed whole, in two pieces, and (when short) byte by byte. Oracles:
 *  - all three runs give the same result and the same complete messages and
 *    control frames (chunking must not change what is received);
 *  - a simple whole-buffer reference parser written here agrees with them, error
 *    code included;
 *  - chunk rules hold: first/last flags, opcodes, control size <= 125, data
 *    pointers inside the buffer being fed (zero copy). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "proto/close_codes.h"
#include "proto/frame.h"

/* ---- growable log of received messages/control frames ---- */

typedef struct {
  uint8_t *p;
  size_t n, cap;
} buf_t;

static void put(buf_t *b, const void *d, size_t n) {
  if (b->n + n > b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 256;
    while (cap < b->n + n) cap *= 2;
    b->p = realloc(b->p, cap);
    if (!b->p) abort();
    b->cap = cap;
  }
  if (n) memcpy(b->p + b->n, d, n);
  b->n += n;
}

static void entry(buf_t *log, char kind, int op, int comp, const uint8_t *p, size_t n) {
  uint8_t h[3 + sizeof n];
  h[0] = (uint8_t)kind;
  h[1] = (uint8_t)op;
  h[2] = (uint8_t)comp;
  memcpy(h + 3, &n, sizeof n);
  put(log, h, sizeof h);
  put(log, p, n);
}

typedef struct {
  buf_t log, cur;
  int in_msg, op, comp;
  const uint8_t *lo, *hi; /* the buffer being fed */
} rec_t;

static int on_data(void *ud, int op, uint8_t *p, size_t n, int first, int last, int comp) {
  rec_t *r = ud;
  if (op != EWS_OP_TEXT && op != EWS_OP_BINARY) abort();
  if (p < r->lo || p + n > r->hi) abort(); /* data is never copied */
  if (first) {
    if (r->in_msg) abort();
    r->in_msg = 1;
    r->op = op;
    r->comp = comp;
    r->cur.n = 0;
  } else if (!r->in_msg || op != r->op || comp != r->comp) {
    abort();
  }
  if (n == 0 && !last) abort(); /* empty chunks only end a message */
  put(&r->cur, p, n);
  if (last) {
    if (op == EWS_OP_TEXT && !comp && !ews_utf8_valid(r->cur.p, r->cur.n)) abort();
    entry(&r->log, 'M', op, comp, r->cur.p, r->cur.n);
    r->in_msg = 0;
  }
  return 0;
}

static int on_control(void *ud, int op, uint8_t *p, size_t n) {
  rec_t *r = ud;
  if (op != EWS_OP_CLOSE && op != EWS_OP_PING && op != EWS_OP_PONG) abort();
  if (n > EWS_CONTROL_MAX) abort();
  entry(&r->log, 'C', op, 0, p, n);
  return 0;
}

static const ews_rx_handler_t handler = {on_data, on_control};

/* Feeds a copy of d cut into pieces of `step` bytes (0: whole) after an initial
 * piece of `first` bytes. Returns 0 when all was consumed, else the error. */
static int run(const uint8_t *d, size_t n, const ews_rx_config_t *cfg, size_t first,
               size_t step, rec_t *r) {
  uint8_t *copy = malloc(n ? n : 1);
  if (!copy) abort();
  if (n) memcpy(copy, d, n);
  ews_rx_t rx;
  ews_rx_init(&rx, cfg);
  int rc = 0;
  size_t at = 0, k = 0;
  do {
    size_t len = k++ == 0 ? first : step ? step : n - at;
    if (len > n - at) len = n - at;
    /* each piece in its own exact-size allocation: ASan sees any over-read */
    uint8_t *piece = malloc(len ? len : 1);
    if (!piece) abort();
    if (len) memcpy(piece, copy + at, len);
    r->lo = piece;
    r->hi = piece + len;
    int got = ews_rx_feed(&rx, piece, len, &handler, r);
    free(piece);
    if (got != (int)len) {
      if (got >= 0) abort(); /* callbacks never stop here: only errors */
      rc = got;
      uint8_t z = 0; /* the error is sticky */
      if (ews_rx_feed(&rx, &z, 1, &handler, r) != got) abort();
      break;
    }
    at += len;
  } while (at < n);
  ews_rx_free(&rx);
  free(copy);
  return rc;
}

/* ---- the reference: one pass over the whole buffer, no incremental state ---- */

static int ref(const uint8_t *d, size_t n, const ews_rx_config_t *cfg, buf_t *log) {
  size_t pos = 0;
  int msg_op = 0, msg_comp = 0;
  uint64_t msg_len = 0;
  buf_t msg = {0};
  int rc = 0;
  for (;;) {
    if (n - pos < 2) break;
    uint8_t b0 = d[pos], b1 = d[pos + 1];
    int op = b0 & 0x0F, fin = b0 >> 7, rsv1 = (b0 >> 6) & 1, masked = b1 >> 7;
    int control = op >= 8;
    if (b0 & 0x30) { rc = EWS_ERSV; break; }
    if (!(op <= 2 || (op >= 8 && op <= 10))) { rc = EWS_EOPCODE; break; }
    if (rsv1 && (!cfg->allow_rsv1 || control || op == 0)) { rc = EWS_ERSV; break; }
    if (masked != cfg->expect_masked) {
      rc = masked ? EWS_EMASKED : EWS_EUNMASKED;
      break;
    }
    if (control && !fin) { rc = EWS_ECTRL_FRAGMENT; break; }
    if (control && (b1 & 0x7F) > 125) { rc = EWS_ECTRL_TOO_BIG; break; }
    if (op == 0 && !msg_op) { rc = EWS_ECONTINUATION; break; }
    if ((op == 1 || op == 2) && msg_op) { rc = EWS_ENOT_CONTINUED; break; }
    size_t ext = (b1 & 0x7F) == 126 ? 2 : (b1 & 0x7F) == 127 ? 8 : 0;
    size_t hs = 2 + ext + (masked ? 4 : 0);
    if (n - pos < hs) break;
    uint64_t len = b1 & 0x7F;
    if (ext) {
      len = 0;
      for (size_t k = 0; k < ext; k++) len = len << 8 | d[pos + 2 + k];
      if ((ext == 2 && len < 126) || (ext == 8 && (len > INT64_MAX || len < 65536))) {
        rc = EWS_ELENGTH;
        break;
      }
    }
    if (cfg->max_frame && len > cfg->max_frame) { rc = EWS_EFRAME_TOO_BIG; break; }
    uint64_t before = op == 0 ? msg_len : 0;
    if (!control && cfg->max_message &&
        (len > cfg->max_message || before > cfg->max_message - len)) {
      rc = EWS_EMSG_TOO_BIG;
      break;
    }
    const uint8_t *key = d + pos + 2 + ext;
    pos += hs;
    size_t avail = n - pos < len ? n - pos : (size_t)len;
    uint8_t *pl = malloc(avail ? avail : 1);
    if (!pl) abort();
    for (size_t k = 0; k < avail; k++) pl[k] = d[pos + k] ^ (masked ? key[k % 4] : 0);
    pos += avail;
    if (control) {
      if (avail < len) { free(pl); break; }
      if (op == 8) {
        unsigned code;
        const uint8_t *reason;
        size_t rl;
        if (avail == 1) rc = EWS_ECLOSE_PAYLOAD;
        else if (avail >= 2 && !ews_close_code_valid((unsigned)pl[0] << 8 | pl[1]))
          rc = EWS_ECLOSE_CODE;
        else if (avail > 2 && !ews_utf8_valid(pl + 2, avail - 2)) rc = EWS_EUTF8;
        if (ews_close_parse(pl, avail, &code, &reason, &rl) != rc) abort();
        if (rc) { free(pl); break; }
      }
      entry(log, 'C', op, 0, pl, avail);
      free(pl);
      continue;
    }
    if (op != 0) {
      msg_op = op;
      msg_comp = rsv1;
      msg_len = 0;
      msg.n = 0;
    }
    msg_len += len;
    put(&msg, pl, avail);
    free(pl);
    if (msg_op == 1 && !msg_comp) {
      ews_utf8_state_t st = ews_utf8_feed(EWS_UTF8_ACCEPT, msg.p, msg.n);
      if (st == EWS_UTF8_REJECT || (avail == len && fin && st != EWS_UTF8_ACCEPT)) {
        rc = EWS_EUTF8;
        break;
      }
    }
    if (avail < len) break;
    if (fin) {
      entry(log, 'M', msg_op, msg_comp, msg.p, msg.n);
      msg_op = 0;
    }
  }
  free(msg.p);
  return rc;
}

static int same(const buf_t *a, const buf_t *b) {
  return a->n == b->n && (a->n == 0 || memcmp(a->p, b->p, a->n) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2) return 0;
  const uint8_t *d = data + 2;
  size_t n = size - 2;
  size_t split = n ? data[0] % (n + 1) : 0;
  uint8_t c = data[1];
  ews_rx_config_t cfg = {
      .max_frame = (c & 0x04) ? 1 + ((c >> 4) & 3) * 40 : 0,
      .max_message = (c & 0x08) ? 1 + ((c >> 6) & 3) * 60 : 0,
      .expect_masked = c & 1,
      .allow_rsv1 = (c >> 1) & 1,
  };

  rec_t whole = {0}, two = {0}, bytes = {0};
  buf_t want = {0};
  int rw = run(d, n, &cfg, n, 0, &whole);
  int r2 = run(d, n, &cfg, split, 0, &two);
  int rr = ref(d, n, &cfg, &want);
  if (rw != rr || !same(&whole.log, &want)) abort();
  if (r2 != rw || !same(&two.log, &whole.log)) abort();
  if (n <= 2048) {
    int r1 = run(d, n, &cfg, 1, 1, &bytes);
    if (r1 != rw || !same(&bytes.log, &whole.log)) abort();
  }
  free(whole.log.p);
  free(whole.cur.p);
  free(two.log.p);
  free(two.cur.p);
  free(bytes.log.p);
  free(bytes.cur.p);
  free(want.p);
  return 0;
}
