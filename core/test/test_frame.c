/* test_frame.c — RFC 6455 framing: header encoding, masking, the receiver (vectors
 * from RFC 6455 section 5.7 fed whole, byte by byte and in every 2-way split; every
 * protocol error with its exact code; limits; fail-fast UTF-8; zero-copy delivery)
 * and close payload parse/build. Parser inputs sit right before a PROT_NONE page
 * (guard_copy) so that any over-read crashes. */
#include "err.h"
#include "proto/frame.h"

#include "test.h"

/* ---- recording handler ----
 * The log is a normalised, chunking-independent record of what was received:
 * complete messages and control frames in order. Chunk-level rules (first/last
 * flags, opcode, control size) are checked as they happen and counted in `bad`. */

typedef struct {
  test_bytes_t log, cur;
  int in_msg, cur_op, cur_comp;
  int bad;
  int data_calls, ctl_calls;
  const uint8_t *last_p; /* last on_data call */
  const uint8_t *ctl_p;  /* last on_control call */
  size_t last_n;
  int last_first, last_last;
  int stop_at_call; /* return 42 from this callback number (1-based), 0 = never */
} rec_t;

static void log_entry(test_bytes_t *log, char kind, int op, int comp, const uint8_t *p, size_t n) {
  uint8_t h[3 + 8];
  h[0] = (uint8_t)kind;
  h[1] = (uint8_t)op;
  h[2] = (uint8_t)comp;
  for (int i = 0; i < 8; i++) h[3 + i] = (uint8_t)((uint64_t)n >> (8 * i));
  test_bytes_put(log, h, sizeof h);
  test_bytes_put(log, p, n);
}

static int rec_data(void *ud, int op, uint8_t *p, size_t n, int first, int last,
                    int comp) {
  rec_t *r = ud;
  r->data_calls++;
  r->last_p = p;
  r->last_n = n;
  r->last_first = first;
  r->last_last = last;
  if (op != EWS_OP_TEXT && op != EWS_OP_BINARY) r->bad++;
  if (first) {
    if (r->in_msg) r->bad++;
    r->in_msg = 1;
    r->cur.n = 0;
    r->cur_op = op;
    r->cur_comp = comp;
  } else if (!r->in_msg || op != r->cur_op || comp != r->cur_comp) {
    r->bad++;
  }
  test_bytes_put(&r->cur, p, n);
  if (last) {
    log_entry(&r->log, 'M', op, comp, r->cur.p, r->cur.n);
    r->in_msg = 0;
  }
  return r->stop_at_call && r->data_calls + r->ctl_calls == r->stop_at_call ? 42 : 0;
}

static int rec_ctl(void *ud, int op, uint8_t *p, size_t n) {
  rec_t *r = ud;
  r->ctl_calls++;
  r->ctl_p = p;
  if (n > EWS_CONTROL_MAX || !(op == EWS_OP_CLOSE || op == EWS_OP_PING || op == EWS_OP_PONG))
    r->bad++;
  log_entry(&r->log, 'C', op, 0, p, n);
  return r->stop_at_call && r->data_calls + r->ctl_calls == r->stop_at_call ? 42 : 0;
}

static const ews_rx_handler_t handler = {rec_data, rec_ctl};

static void rec_free(rec_t *r) {
  test_bytes_free(&r->log);
  test_bytes_free(&r->cur);
}

/* Feeds d[0..n) cut at cuts[0..ncuts) (ascending), each piece in its own guarded
 * buffer. Returns 0 when everything was consumed, else the first non-length result. */
static int feed_cuts(const uint8_t *d, size_t n, const ews_rx_config_t *cfg,
                     const size_t *cuts, size_t ncuts, rec_t *r) {
  ews_rx_t rx;
  ews_rx_init(&rx, cfg);
  int rc = 0;
  size_t at = 0;
  for (size_t k = 0; k <= ncuts && rc == 0; k++) {
    size_t end = k < ncuts ? cuts[k] : n;
    size_t len = end - at;
    uint8_t *piece = guard_copy(d + at, len);
    int got = ews_rx_feed(&rx, piece, len, &handler, r);
    if (got != (int)len) rc = got;
    guard_free(piece, len);
    at = end;
  }
  ews_rx_free(&rx);
  return rc;
}

static int feed_whole(const uint8_t *d, size_t n, const ews_rx_config_t *cfg, rec_t *r) {
  return feed_cuts(d, n, cfg, NULL, 0, r);
}

/* Runs d whole, byte by byte, and in every 2-way split (every `stride`-th split for
 * big inputs, plus all splits near both ends). All must agree with each other and,
 * when `want_log` is given, with the expected result. */
static void check_splits(const uint8_t *d, size_t n, const ews_rx_config_t *cfg,
                         int want_rc, const test_bytes_t *want_log, size_t stride) {
  rec_t ref = {0};
  int rc = feed_whole(d, n, cfg, &ref);
  CHECK_EQ(rc, want_rc);
  CHECK_EQ(ref.bad, 0);
  if (want_log) {
    CHECK_EQ(ref.log.n, want_log->n);
    if (ref.log.n && ref.log.n == want_log->n) CHECK_MEM(ref.log.p, want_log->p, ref.log.n);
  }

  /* byte by byte */
  size_t *cuts = malloc((n ? n : 1) * sizeof *cuts);
  for (size_t i = 0; i < n; i++) cuts[i] = i + 1;
  rec_t r = {0};
  CHECK_EQ(feed_cuts(d, n, cfg, cuts, n ? n - 1 : 0, &r), want_rc);
  CHECK_EQ(r.bad, 0);
  CHECK_EQ(r.log.n, ref.log.n);
  if (r.log.n && r.log.n == ref.log.n) CHECK_MEM(r.log.p, ref.log.p, r.log.n);
  rec_free(&r);
  free(cuts);

  /* every 2-way split (counting mismatches keeps the check count meaningful) */
  int wrong = 0;
  for (size_t c = 0; c <= n; c++) {
    if (stride > 1 && c > 64 && c + 64 < n && c % stride) continue;
    rec_t s = {0};
    int got = feed_cuts(d, n, cfg, &c, 1, &s);
    if (got != want_rc || s.bad || s.log.n != ref.log.n ||
        (s.log.n && memcmp(s.log.p, ref.log.p, s.log.n))) {
      if (!wrong) fprintf(stderr, "  split at %zu: rc %d (want %d)\n", c, got, want_rc);
      wrong++;
    }
    rec_free(&s);
  }
  CHECK_EQ(wrong, 0);
  rec_free(&ref);
}

static const ews_rx_config_t client_cfg = {0, 0, 0, 0}; /* receives unmasked frames */
static const ews_rx_config_t server_cfg = {0, 0, 1, 0}; /* receives masked frames */
static const uint8_t rfc_key[4] = {0x37, 0xfa, 0x21, 0x3d};

#define B(...) ((const uint8_t[]){__VA_ARGS__})
#define BN(...) sizeof((const uint8_t[]){__VA_ARGS__})

static void expect_msg(test_bytes_t *log, int op, int comp, const void *p, size_t n) {
  log_entry(log, 'M', op, comp, p, n);
}
static void expect_ctl(test_bytes_t *log, int op, const void *p, size_t n) {
  log_entry(log, 'C', op, 0, p, n);
}

/* ---- RFC 6455 section 5.7 examples ---- */

static const uint8_t rfc_text[] = {0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f};
static const uint8_t rfc_text_masked[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d,
                                          0x7f, 0x9f, 0x4d, 0x51, 0x58};
static const uint8_t rfc_frag[] = {0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f};
static const uint8_t rfc_ping[] = {0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f};
static const uint8_t rfc_pong_masked[] = {0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d,
                                          0x7f, 0x9f, 0x4d, 0x51, 0x58};

TEST(rfc_encode) {
  uint8_t h[EWS_FRAME_MAX_HEADER];
  uint8_t p[5];

  CHECK_EQ(ews_frame_header(h, EWS_OP_TEXT, 1, 0, 5, NULL), 2);
  CHECK_MEM(h, rfc_text, 2);

  CHECK_EQ(ews_frame_header(h, EWS_OP_TEXT, 1, 0, 5, rfc_key), 6);
  CHECK_MEM(h, rfc_text_masked, 6);
  memcpy(p, "Hello", 5);
  ews_mask(p, 5, rfc_key, 0);
  CHECK_MEM(p, rfc_text_masked + 6, 5);

  CHECK_EQ(ews_frame_header(h, EWS_OP_TEXT, 0, 0, 3, NULL), 2);
  CHECK_MEM(h, rfc_frag, 2);
  CHECK_EQ(ews_frame_header(h, EWS_OP_CONT, 1, 0, 2, NULL), 2);
  CHECK_MEM(h, rfc_frag + 5, 2);

  CHECK_EQ(ews_frame_header(h, EWS_OP_PING, 1, 0, 5, NULL), 2);
  CHECK_MEM(h, rfc_ping, 2);
  CHECK_EQ(ews_frame_header(h, EWS_OP_PONG, 1, 0, 5, rfc_key), 6);
  CHECK_MEM(h, rfc_pong_masked, 6);

  CHECK_EQ(ews_frame_header(h, EWS_OP_BINARY, 1, 0, 256, NULL), 4);
  CHECK_MEM(h, B(0x82, 0x7E, 0x01, 0x00), 4);
  CHECK_EQ(ews_frame_header(h, EWS_OP_BINARY, 1, 0, 65536, NULL), 10);
  CHECK_MEM(h, B(0x82, 0x7F, 0, 0, 0, 0, 0, 0x01, 0, 0), 10);

  /* RSV1 and length-form boundaries */
  CHECK_EQ(ews_frame_header(h, EWS_OP_TEXT, 1, 1, 0, NULL), 2);
  CHECK_MEM(h, B(0xC1, 0x00), 2);
  CHECK_EQ(ews_frame_header(h, EWS_OP_BINARY, 0, 0, 125, NULL), 2);
  CHECK_MEM(h, B(0x02, 0x7D), 2);
  CHECK_EQ(ews_frame_header(h, EWS_OP_BINARY, 1, 0, 126, NULL), 4);
  CHECK_MEM(h, B(0x82, 0x7E, 0x00, 0x7E), 4);
  CHECK_EQ(ews_frame_header(h, EWS_OP_BINARY, 1, 0, 65535, NULL), 4);
  CHECK_MEM(h, B(0x82, 0x7E, 0xFF, 0xFF), 4);
  CHECK_EQ(ews_frame_header(h, EWS_OP_BINARY, 1, 0, 0x0123456789ABCDEFull, rfc_key), 14);
  CHECK_MEM(h, B(0x82, 0xFF, 0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF, 0x37, 0xfa,
                 0x21, 0x3d), 14);

  static const uint64_t lens[] = {0, 1, 125, 126, 127, 65535, 65536, 1ull << 40};
  for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
    CHECK_EQ(ews_frame_header(h, EWS_OP_BINARY, 1, 0, lens[i], NULL),
             ews_frame_header_len(lens[i]));
    CHECK_EQ(ews_frame_header(h, EWS_OP_BINARY, 1, 0, lens[i], rfc_key),
             ews_frame_header_len(lens[i]) + 4);
  }
}

TEST(rfc_decode) {
  test_bytes_t want = {0};

  expect_msg(&want, EWS_OP_TEXT, 0, "Hello", 5);
  check_splits(rfc_text, sizeof rfc_text, &client_cfg, 0, &want, 1);
  check_splits(rfc_text_masked, sizeof rfc_text_masked, &server_cfg, 0, &want, 1);
  check_splits(rfc_frag, sizeof rfc_frag, &client_cfg, 0, &want, 1);
  want.n = 0;

  expect_ctl(&want, EWS_OP_PING, "Hello", 5);
  check_splits(rfc_ping, sizeof rfc_ping, &client_cfg, 0, &want, 1);
  want.n = 0;
  expect_ctl(&want, EWS_OP_PONG, "Hello", 5);
  check_splits(rfc_pong_masked, sizeof rfc_pong_masked, &server_cfg, 0, &want, 1);
  want.n = 0;

  /* 256 bytes of binary (126 length form) */
  uint8_t *f = malloc(10 + 65536);
  for (size_t i = 0; i < 65536; i++) f[10 + i] = (uint8_t)(i * 7 + 3);
  memcpy(f + 6, B(0x82, 0x7E, 0x01, 0x00), 4);
  expect_msg(&want, EWS_OP_BINARY, 0, f + 10, 256);
  check_splits(f + 6, 4 + 256, &client_cfg, 0, &want, 1);
  want.n = 0;

  /* 64 KiB of binary (127 length form): all 65547 splits (a few seconds). */
  memcpy(f, B(0x82, 0x7F, 0, 0, 0, 0, 0, 0x01, 0, 0), 10);
  expect_msg(&want, EWS_OP_BINARY, 0, f + 10, 65536);
  check_splits(f, 10 + 65536, &client_cfg, 0, &want, 1);
  want.n = 0;

  /* the same, masked, for the server side; every split near the ends and a
   * stride elsewhere, to keep the run short under sanitizers */
  uint8_t *m = malloc(14 + 65536);
  size_t hl = ews_frame_header(m, EWS_OP_BINARY, 1, 0, 65536, rfc_key);
  CHECK_EQ(hl, 14);
  memcpy(m + 14, f + 10, 65536);
  ews_mask(m + 14, 65536, rfc_key, 0);
  expect_msg(&want, EWS_OP_BINARY, 0, f + 10, 65536);
  check_splits(m, 14 + 65536, &server_cfg, 0, &want, 509);

  free(m);
  free(f);
  test_bytes_free(&want);
}

/* Several frames back to back in one stream. */
TEST(stream_of_frames) {
  test_bytes_t in = {0}, want = {0};
  test_bytes_put(&in, rfc_text, sizeof rfc_text);
  test_bytes_put(&in, rfc_ping, sizeof rfc_ping);
  test_bytes_put(&in, rfc_frag, 5);     /* "Hel" */
  test_bytes_put(&in, rfc_ping, sizeof rfc_ping); /* control between fragments */
  test_bytes_put(&in, B(0x8A, 0x00), 2);          /* empty pong, too */
  test_bytes_put(&in, rfc_frag + 5, 4); /* "lo" */
  test_bytes_put(&in, B(0x82, 0x00), 2);          /* empty binary message */
  test_bytes_put(&in, B(0x88, 0x02, 0x03, 0xE8), 4);
  expect_msg(&want, EWS_OP_TEXT, 0, "Hello", 5);
  expect_ctl(&want, EWS_OP_PING, "Hello", 5);
  expect_ctl(&want, EWS_OP_PING, "Hello", 5);
  expect_ctl(&want, EWS_OP_PONG, "", 0);
  expect_msg(&want, EWS_OP_TEXT, 0, "Hello", 5);
  expect_msg(&want, EWS_OP_BINARY, 0, "", 0);
  expect_ctl(&want, EWS_OP_CLOSE, B(0x03, 0xE8), 2);
  check_splits(in.p, in.n, &client_cfg, 0, &want, 1);

  /* the same stream masked with a different key per frame, on the server side */
  test_bytes_t min = {0};
  size_t at = 0;
  uint8_t key[4] = {1, 2, 3, 4};
  while (at < in.n) {
    uint8_t b0 = in.p[at], l = in.p[at + 1];
    uint8_t h[EWS_FRAME_MAX_HEADER];
    size_t hl = ews_frame_header(h, b0 & 0x0F, b0 >> 7, 0, l, key);
    test_bytes_put(&min, h, hl);
    uint8_t pl[125];
    memcpy(pl, in.p + at + 2, l);
    ews_mask(pl, l, key, 0);
    test_bytes_put(&min, pl, l);
    at += 2 + (size_t)l;
    for (int k = 0; k < 4; k++) key[k] = (uint8_t)(key[k] * 5 + 17);
  }
  check_splits(min.p, min.n, &server_cfg, 0, &want, 1);
  test_bytes_free(&min);
  test_bytes_free(&in);
  test_bytes_free(&want);
}

/* ---- protocol errors: exact codes, whatever the split ---- */

typedef struct {
  const char *what;
  const uint8_t *d;
  size_t n;
  int masked_cfg;
  int allow_rsv1;
  int rc;
} err_vec_t;

#define E(what, cfgm, rsv1, rc, ...) {what, B(__VA_ARGS__), BN(__VA_ARGS__), cfgm, rsv1, rc}

static const err_vec_t err_vecs[] = {
    E("RSV2", 0, 1, EWS_ERSV, 0xA1, 0x00),
    E("RSV3", 0, 1, EWS_ERSV, 0x91, 0x00),
    E("RSV1 not negotiated", 0, 0, EWS_ERSV, 0xC1, 0x00),
    E("RSV1 on control", 0, 1, EWS_ERSV, 0xC9, 0x00),
    E("RSV1 on continuation", 0, 1, EWS_ERSV, 0x41, 0x01, 0x00, 0xC0, 0x00),
    E("opcode 3", 0, 0, EWS_EOPCODE, 0x83, 0x00),
    E("opcode 4", 0, 0, EWS_EOPCODE, 0x84, 0x00),
    E("opcode 5", 0, 0, EWS_EOPCODE, 0x85, 0x00),
    E("opcode 6", 0, 0, EWS_EOPCODE, 0x86, 0x00),
    E("opcode 7", 0, 0, EWS_EOPCODE, 0x87, 0x00),
    E("opcode B", 0, 0, EWS_EOPCODE, 0x8B, 0x00),
    E("opcode C", 0, 0, EWS_EOPCODE, 0x8C, 0x00),
    E("opcode D", 0, 0, EWS_EOPCODE, 0x8D, 0x00),
    E("opcode E", 0, 0, EWS_EOPCODE, 0x8E, 0x00),
    E("opcode F", 0, 0, EWS_EOPCODE, 0x8F, 0x00),
    E("opcode 3 no FIN", 0, 0, EWS_EOPCODE, 0x03, 0x00),
    E("unmasked to server", 1, 0, EWS_EUNMASKED, 0x81, 0x00),
    E("masked to client", 0, 0, EWS_EMASKED, 0x81, 0x80, 1, 2, 3, 4),
    E("ping 126", 0, 0, EWS_ECTRL_TOO_BIG, 0x89, 0x7E, 0x00, 0x7E),
    E("close 127 form", 0, 0, EWS_ECTRL_TOO_BIG, 0x88, 0x7F, 0, 0, 0, 0, 0, 0, 0, 0x7E),
    E("fragmented ping", 0, 0, EWS_ECTRL_FRAGMENT, 0x09, 0x00),
    E("fragmented close", 0, 0, EWS_ECTRL_FRAGMENT, 0x08, 0x02, 0x03, 0xE8),
    E("lone continuation", 0, 0, EWS_ECONTINUATION, 0x80, 0x00),
    E("continuation after end", 0, 0, EWS_ECONTINUATION, 0x81, 0x01, 'a', 0x80, 0x00),
    E("text inside text", 0, 0, EWS_ENOT_CONTINUED, 0x01, 0x01, 'a', 0x81, 0x01, 'b'),
    E("binary inside text", 0, 0, EWS_ENOT_CONTINUED, 0x01, 0x00, 0x02, 0x00),
    E("64-bit top bit", 0, 0, EWS_ELENGTH, 0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0),
    E("126 form for 125", 0, 0, EWS_ELENGTH, 0x82, 0x7E, 0x00, 0x7D),
    E("126 form for 0", 0, 0, EWS_ELENGTH, 0x82, 0x7E, 0x00, 0x00),
    E("127 form for 65535", 0, 0, EWS_ELENGTH, 0x82, 0x7F, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF),
    E("127 form for 5", 0, 0, EWS_ELENGTH, 0x82, 0x7F, 0, 0, 0, 0, 0, 0, 0, 5),
    E("close of 1 byte", 0, 0, EWS_ECLOSE_PAYLOAD, 0x88, 0x01, 0x03),
    E("close code 999", 0, 0, EWS_ECLOSE_CODE, 0x88, 0x02, 0x03, 0xE7),
    E("close code 1005", 0, 0, EWS_ECLOSE_CODE, 0x88, 0x02, 0x03, 0xED),
    E("close code 1006", 0, 0, EWS_ECLOSE_CODE, 0x88, 0x02, 0x03, 0xEE),
    E("close code 5000", 0, 0, EWS_ECLOSE_CODE, 0x88, 0x02, 0x13, 0x88),
    E("close reason bad UTF-8", 0, 0, EWS_EUTF8, 0x88, 0x04, 0x03, 0xE8, 0xFF, 0xFE),
    E("close reason truncated", 0, 0, EWS_EUTF8, 0x88, 0x03, 0x03, 0xE8, 0xC3),
    E("text overlong", 0, 0, EWS_EUTF8, 0x81, 0x02, 0xC0, 0x80),
    E("text surrogate", 0, 0, EWS_EUTF8, 0x81, 0x03, 0xED, 0xA0, 0x80),
    E("text truncated at end", 0, 0, EWS_EUTF8, 0x81, 0x01, 0xE2),
    E("text truncated at final empty frame", 0, 0, EWS_EUTF8, 0x01, 0x01, 0xE2, 0x80,
      0x00),
    E("text bad across frames", 0, 0, EWS_EUTF8, 0x01, 0x01, 0xE2, 0x80, 0x02, 0x41,
      0x41),
};

TEST(errors) {
  for (size_t v = 0; v < sizeof err_vecs / sizeof err_vecs[0]; v++) {
    const err_vec_t *e = &err_vecs[v];
    ews_rx_config_t cfg = {0, 0, (uint8_t)e->masked_cfg, (uint8_t)e->allow_rsv1};
    int before = test_failures_;
    check_splits(e->d, e->n, &cfg, e->rc, NULL, 1);
    if (test_failures_ != before) fprintf(stderr, "  in error vector \"%s\"\n", e->what);
  }
}

/* After an error the receiver stays failed and returns the same error. */
TEST(error_is_sticky) {
  ews_rx_t rx;
  rec_t r = {0};
  ews_rx_init(&rx, &server_cfg);
  uint8_t *p = guard_copy(B(0x81, 0x00), 2);
  CHECK_EQ(ews_rx_feed(&rx, p, 2, &handler, &r), EWS_EUNMASKED);
  guard_free(p, 2);
  p = guard_copy(rfc_text_masked, sizeof rfc_text_masked);
  CHECK_EQ(ews_rx_feed(&rx, p, sizeof rfc_text_masked, &handler, &r), EWS_EUNMASKED);
  CHECK_EQ(r.data_calls, 0);
  guard_free(p, sizeof rfc_text_masked);
  ews_rx_free(&rx);
  CHECK_EQ(ews_err_close_code(EWS_EUTF8), 1007);
  CHECK_EQ(ews_err_close_code(EWS_EFRAME_TOO_BIG), 1009);
  rec_free(&r);
}

/* RSV1 (permessage-deflate) marks the message compressed; its text is not UTF-8
 * checked here, and a control frame between its fragments is fine. */
TEST(rsv1_compressed) {
  ews_rx_config_t cfg = {0, 0, 0, 1};
  test_bytes_t want = {0};
  expect_msg(&want, EWS_OP_TEXT, 1, "\xFF\xFE", 2);
  check_splits(B(0xC1, 0x02, 0xFF, 0xFE), 4, &cfg, 0, &want, 1);
  check_splits(B(0x41, 0x01, 0xFF, 0x89, 0x00, 0x80, 0x01, 0xFE), 8, &cfg, 0, NULL, 1);
  want.n = 0;
  expect_msg(&want, EWS_OP_BINARY, 1, "ab", 2);
  expect_msg(&want, EWS_OP_BINARY, 0, "c", 1);
  check_splits(B(0xC2, 0x02, 'a', 'b', 0x82, 0x01, 'c'), 7, &cfg, 0, &want, 1);
  test_bytes_free(&want);
}

/* A code point split across frames, with control frames in between. */
TEST(utf8_across_frames) {
  test_bytes_t want = {0};
  expect_ctl(&want, EWS_OP_PING, "", 0);
  expect_ctl(&want, EWS_OP_PONG, "x", 1);
  expect_msg(&want, EWS_OP_TEXT, 0, "\xE2\x82\xAC", 3);
  check_splits(B(0x01, 0x01, 0xE2, 0x89, 0x00, 0x00, 0x01, 0x82, 0x8A, 0x01, 'x', 0x80,
                 0x01, 0xAC),
               14, &client_cfg, 0, &want, 1);
  want.n = 0;
  /* 4-byte code point, one byte per frame */
  expect_msg(&want, EWS_OP_TEXT, 0, "\xF4\x8F\xBF\xBF", 4);
  check_splits(B(0x01, 0x01, 0xF4, 0x00, 0x01, 0x8F, 0x00, 0x01, 0xBF, 0x80, 0x01, 0xBF),
               12, &client_cfg, 0, &want, 1);
  /* binary is never UTF-8 checked */
  want.n = 0;
  expect_msg(&want, EWS_OP_BINARY, 0, "\xE2", 1);
  check_splits(B(0x82, 0x01, 0xE2), 3, &client_cfg, 0, &want, 1);
  test_bytes_free(&want);
}

/* The error comes with the bad byte, before the frame is complete. */
TEST(utf8_fail_fast) {
  ews_rx_t rx;
  rec_t r = {0};
  ews_rx_init(&rx, &client_cfg);
  uint8_t *p = guard_copy(B(0x81, 0x0A, 'a', 'b'), 4);
  CHECK_EQ(ews_rx_feed(&rx, p, 4, &handler, &r), 4);
  guard_free(p, 4);
  p = guard_copy(B('c', 0xC0), 2);
  CHECK_EQ(ews_rx_feed(&rx, p, 2, &handler, &r), EWS_EUTF8);
  guard_free(p, 2);
  ews_rx_free(&rx);

  /* masked, on the server: the bad byte is only visible once unmasked */
  uint8_t f[6 + 3];
  size_t hl = ews_frame_header(f, EWS_OP_TEXT, 1, 0, 100, rfc_key);
  memcpy(f + hl, "a\xED\xA0", 3);
  ews_mask(f + hl, 3, rfc_key, 0);
  ews_rx_init(&rx, &server_cfg);
  p = guard_copy(f, hl + 3);
  CHECK_EQ(ews_rx_feed(&rx, p, hl + 3, &handler, &r), EWS_EUTF8);
  guard_free(p, hl + 3);
  ews_rx_free(&rx);

  /* in a later fragment of the message */
  ews_rx_init(&rx, &client_cfg);
  p = guard_copy(B(0x01, 0x01, 'a', 0x80, 0x7E, 0x10, 0x00, 'b', 0xF5), 9);
  CHECK_EQ(ews_rx_feed(&rx, p, 9, &handler, &r), EWS_EUTF8);
  guard_free(p, 9);
  ews_rx_free(&rx);
  rec_free(&r);
}

static int feed1(ews_rx_t *rx, const uint8_t *d, size_t n, rec_t *r) {
  uint8_t *p = guard_copy(d, n);
  int rc = ews_rx_feed(rx, p, n, &handler, r);
  guard_free(p, n);
  return rc;
}

TEST(empty_messages) {
  ews_rx_t rx;
  rec_t r = {0};

  /* a single empty TEXT frame: one call, n=0, first, last */
  ews_rx_init(&rx, &client_cfg);
  CHECK_EQ(feed1(&rx, B(0x81, 0x00), 2, &r), 2);
  CHECK_EQ(r.data_calls, 1);
  CHECK_EQ(r.last_n, 0);
  CHECK(r.last_first && r.last_last);
  ews_rx_free(&rx);

  /* only empty fragments: still exactly one call */
  rec_free(&r);
  memset(&r, 0, sizeof r);
  ews_rx_init(&rx, &client_cfg);
  CHECK_EQ(feed1(&rx, B(0x01, 0x00, 0x00, 0x00, 0x80, 0x00), 6, &r), 6);
  CHECK_EQ(r.data_calls, 1);
  CHECK(r.last_first && r.last_last);
  CHECK_EQ(r.bad, 0);
  ews_rx_free(&rx);

  /* a final empty CONT frame still delivers last=1 */
  rec_free(&r);
  memset(&r, 0, sizeof r);
  ews_rx_init(&rx, &client_cfg);
  CHECK_EQ(feed1(&rx, B(0x01, 0x01, 'a', 0x00, 0x00), 5, &r), 5);
  CHECK(ews_rx_in_message(&rx));
  CHECK_EQ(r.data_calls, 1);
  CHECK(r.last_first && !r.last_last);
  CHECK_EQ(feed1(&rx, B(0x80, 0x00), 2, &r), 2);
  CHECK(!ews_rx_in_message(&rx));
  CHECK_EQ(r.data_calls, 2);
  CHECK_EQ(r.last_n, 0);
  CHECK(!r.last_first && r.last_last);
  CHECK_EQ(r.bad, 0);
  test_bytes_t want = {0};
  expect_msg(&want, EWS_OP_TEXT, 0, "a", 1);
  CHECK_EQ(r.log.n, want.n);
  if (r.log.n == want.n) CHECK_MEM(r.log.p, want.p, want.n);
  ews_rx_free(&rx);
  test_bytes_free(&want);

  /* empty control frames */
  rec_free(&r);
  memset(&r, 0, sizeof r);
  ews_rx_init(&rx, &server_cfg);
  CHECK_EQ(feed1(&rx, B(0x89, 0x80, 1, 2, 3, 4, 0x88, 0x80, 5, 6, 7, 8), 12, &r), 12);
  CHECK_EQ(r.ctl_calls, 2);
  ews_rx_free(&rx);
  rec_free(&r);
}

TEST(limits) {
  ews_rx_config_t cfg = {10, 0, 0, 0};
  ews_rx_t rx;
  rec_t r = {0};
  uint8_t big[16 + 11];
  memset(big, 'x', sizeof big);

  /* max_frame: refused from the header alone, before any payload */
  ews_rx_init(&rx, &cfg);
  CHECK_EQ(feed1(&rx, B(0x82, 0x0B), 2, &r), EWS_EFRAME_TOO_BIG);
  ews_rx_free(&rx);
  ews_rx_init(&rx, &cfg);
  CHECK_EQ(feed1(&rx, B(0x82, 0x7F, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF), 10, &r),
           EWS_EFRAME_TOO_BIG);
  ews_rx_free(&rx);
  ews_rx_init(&rx, &cfg);
  big[0] = 0x82;
  big[1] = 0x0A;
  CHECK_EQ(feed1(&rx, big, 12, &r), 12); /* exactly max_frame */
  ews_rx_free(&rx);
  check_splits(B(0x02, 0x06, 1, 2, 3, 4, 5, 6, 0x80, 0x0B), 10, &cfg, EWS_EFRAME_TOO_BIG,
               NULL, 1);

  /* max_message: counted over fragments, refused at the header that exceeds it */
  cfg.max_frame = 0;
  cfg.max_message = 10;
  test_bytes_t want = {0};
  expect_ctl(&want, EWS_OP_PING, "Hello", 5);
  expect_msg(&want, EWS_OP_BINARY, 0, "abcdefghij", 10);
  expect_msg(&want, EWS_OP_BINARY, 0, "0123456789", 10);
  check_splits(B(0x02, 0x06, 'a', 'b', 'c', 'd', 'e', 'f', 0x89, 0x05, 'H', 'e', 'l', 'l',
                 'o', 0x80, 0x04, 'g', 'h', 'i', 'j', 0x82, 0x0A, '0', '1', '2', '3', '4',
                 '5', '6', '7', '8', '9'),
               33, &cfg, 0, &want, 1);
  check_splits(B(0x02, 0x06, 1, 2, 3, 4, 5, 6, 0x80, 0x05), 10, &cfg, EWS_EMSG_TOO_BIG,
               NULL, 1);
  check_splits(B(0x82, 0x0B), 2, &cfg, EWS_EMSG_TOO_BIG, NULL, 1);
  check_splits(B(0x01, 0x0A, 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 0x00, 0x00,
                 0x80, 0x01),
               16, &cfg, EWS_EMSG_TOO_BIG, NULL, 1);
  /* 2^63-1 in a continuation cannot overflow the count */
  check_splits(B(0x02, 0x01, 'a', 0x80, 0x7F, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
                 0xFF),
               13, &cfg, EWS_EMSG_TOO_BIG, NULL, 1);

  /* no limits: a huge header is accepted and waits for its payload */
  ews_rx_init(&rx, &client_cfg);
  CHECK_EQ(feed1(&rx, B(0x82, 0x7F, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 'a'),
                 11, &r),
           11);
  CHECK(ews_rx_in_message(&rx));
  ews_rx_free(&rx);
  test_bytes_free(&want);
  rec_free(&r);
}

/* A whole frame in one feed arrives in one call pointing into the input buffer. */
TEST(zero_copy) {
  ews_rx_t rx;
  rec_t r = {0};
  uint8_t in[sizeof rfc_text_masked * 2 + sizeof rfc_pong_masked];
  memcpy(in, rfc_text_masked, sizeof rfc_text_masked);
  memcpy(in + sizeof rfc_text_masked, rfc_pong_masked, sizeof rfc_pong_masked);
  memcpy(in + sizeof rfc_text_masked + sizeof rfc_pong_masked, rfc_text_masked,
         sizeof rfc_text_masked);
  uint8_t *p = guard_copy(in, sizeof in);

  ews_rx_init(&rx, &server_cfg);
  CHECK_EQ(ews_rx_feed(&rx, p, 11, &handler, &r), 11);
  CHECK_EQ(r.data_calls, 1);
  CHECK(r.last_p == p + 6);
  CHECK_EQ(r.last_n, 5);
  CHECK(r.last_first && r.last_last);
  CHECK_MEM(p + 6, "Hello", 5); /* unmasked in place */

  CHECK_EQ(ews_rx_feed(&rx, p + 11, sizeof in - 11, &handler, &r), (int)sizeof in - 11);
  CHECK_EQ(r.ctl_calls, 1);
  CHECK(r.ctl_p == p + 11 + 6);
  CHECK_EQ(r.data_calls, 2);
  CHECK(r.last_p == p + 22 + 6);
  CHECK(r.last_first && r.last_last);
  CHECK_EQ(r.bad, 0);
  ews_rx_free(&rx);
  guard_free(p, sizeof in);

  /* a split frame: chunks still point into the caller's buffers */
  ews_rx_init(&rx, &server_cfg);
  p = guard_copy(rfc_text_masked, 8);
  CHECK_EQ(ews_rx_feed(&rx, p, 8, &handler, &r), 8);
  CHECK(r.last_p == p + 6 && r.last_n == 2 && r.last_first && !r.last_last);
  guard_free(p, 8);
  p = guard_copy(rfc_text_masked + 8, 3);
  CHECK_EQ(ews_rx_feed(&rx, p, 3, &handler, &r), 3);
  CHECK(r.last_p == p && r.last_n == 3 && !r.last_first && r.last_last);
  CHECK_MEM(p, "llo", 3);
  guard_free(p, 3);
  ews_rx_free(&rx);
  rec_free(&r);
}

/* A callback's non-zero return stops the feed and the receiver for good. */
TEST(callback_stop) {
  ews_rx_t rx;
  rec_t r = {0};
  r.stop_at_call = 1;
  ews_rx_init(&rx, &client_cfg);
  uint8_t in[sizeof rfc_text + sizeof rfc_ping];
  memcpy(in, rfc_text, sizeof rfc_text);
  memcpy(in + sizeof rfc_text, rfc_ping, sizeof rfc_ping);
  CHECK_EQ(feed1(&rx, in, sizeof in, &r), 42);
  CHECK_EQ(r.ctl_calls, 0);
  CHECK_EQ(feed1(&rx, rfc_ping, sizeof rfc_ping, &r), EWS_ESTOPPED);
  CHECK_EQ(r.ctl_calls, 0);
  ews_rx_free(&rx);

  /* stopping in on_control of a control frame gathered across feeds */
  rec_free(&r);
  memset(&r, 0, sizeof r);
  r.stop_at_call = 1;
  ews_rx_init(&rx, &client_cfg);
  CHECK_EQ(feed1(&rx, rfc_ping, 4, &r), 4);
  CHECK_EQ(feed1(&rx, rfc_ping + 4, 3, &r), 42);
  CHECK_EQ(r.ctl_calls, 1);
  CHECK_EQ(feed1(&rx, rfc_text, sizeof rfc_text, &r), EWS_ESTOPPED);
  CHECK_EQ(r.data_calls, 0);
  ews_rx_free(&rx);
  rec_free(&r);
}

/* A control frame left partial is released by ews_rx_free (ASan checks leaks). */
TEST(partial_control_freed) {
  ews_rx_t rx;
  rec_t r = {0};
  ews_rx_init(&rx, &server_cfg);
  CHECK_EQ(feed1(&rx, rfc_pong_masked, 8, &r), 8);
  CHECK(rx.ctl != NULL);
  ews_rx_free(&rx);
  CHECK(rx.ctl == NULL);
  /* and once complete, the buffer is gone without ews_rx_free */
  ews_rx_init(&rx, &server_cfg);
  CHECK_EQ(feed1(&rx, rfc_pong_masked, 8, &r), 8);
  CHECK_EQ(feed1(&rx, rfc_pong_masked + 8, 3, &r), 3);
  CHECK(rx.ctl == NULL);
  CHECK_EQ(r.ctl_calls, 1);
  rec_free(&r);
}

/* ---- masking ---- */

static void mask_ref(uint8_t *p, size_t n, const uint8_t key[4], size_t off) {
  for (size_t i = 0; i < n; i++) p[i] ^= key[(off + i) & 3];
}

TEST(mask) {
  static const uint8_t key[4] = {0xA5, 0x3C, 0x0F, 0xF1};
  uint8_t src[128], a[128 + 16], b[128 + 16];
  for (size_t i = 0; i < sizeof src; i++) src[i] = (uint8_t)(i * 131 + 7);
  int wrong = 0;
  for (size_t align = 0; align < 8; align++) {
    for (size_t off = 0; off < 8; off++) { /* offsets >= 4 act mod 4 */
      for (size_t n = 0; n <= 100; n++) {
        memset(a, 0xEE, sizeof a);
        memcpy(a + align, src, n);
        memcpy(b, a, sizeof a);
        ews_mask(a + align, n, key, off);
        mask_ref(b + align, n, key, off & 3);
        if (memcmp(a, b, sizeof a)) wrong++; /* also catches writes outside */
      }
    }
  }
  CHECK_EQ(wrong, 0);

  /* at the end of a guarded page (any over-read or over-write would crash) */
  wrong = 0;
  for (size_t off = 0; off < 4; off++) {
    for (size_t n = 0; n <= 100; n++) {
      uint8_t *g = guard_copy(src, n);
      memcpy(b, src, n);
      ews_mask(g, n, key, off);
      mask_ref(b, n, key, off);
      if (n && memcmp(g, b, n)) wrong++;
      guard_free(g, n);
    }
  }
  CHECK_EQ(wrong, 0);

  /* masking twice restores; masking in pieces equals masking whole */
  uint8_t big[1000], whole[1000];
  for (size_t i = 0; i < sizeof big; i++) big[i] = (uint8_t)(i ^ (i >> 3));
  memcpy(whole, big, sizeof big);
  ews_mask(whole, sizeof whole, key, 0);
  uint8_t pieces[1000];
  memcpy(pieces, big, sizeof big);
  for (size_t i = 0, step = 1; i < sizeof pieces; i += step, step = step * 3 % 37 + 1) {
    size_t n = i + step <= sizeof pieces ? step : sizeof pieces - i;
    ews_mask(pieces + i, n, key, i);
  }
  CHECK_MEM(pieces, whole, sizeof whole);
  ews_mask(whole, sizeof whole, key, 0);
  CHECK_MEM(whole, big, sizeof big);
}

/* The wide (AVX-512 / AVX2) paths of ews_mask against the bytewise reference, each
 * variant the CPU has forced in turn: every start alignment within 64 bytes, every
 * key offset, lengths around the wide threshold and the aligned body's edges, a
 * 16 KiB message's payload (16,384 at odd offsets after its 4 or 8 header bytes)
 * and 64 KiB + odd; nothing written outside the run; at the end of a guarded page. */
TEST(mask_variants) {
  static const uint8_t key[4] = {0x5A, 0xC3, 0x81, 0x7E};
  enum { CAP = 65536 + 200 };
  uint8_t *src = malloc(CAP), *a = malloc(CAP + 128), *b = malloc(CAP + 128);
  CHECK(src && a && b);
  for (size_t i = 0; i < CAP; i++) src[i] = (uint8_t)(i * 2654435761u >> 13);
  static const size_t sizes[] = {200,  255,  256,  257,  300,  319,  320,  321,  383,
                                 384,  385,  511,  512,  513,  575,  576,  640,  1000,
                                 1100, 4096, 4097, 16384, 16387, 16388, 16389, 65536 + 77};
  int top = ews_mask_variant();
  fprintf(stderr, "  (ews_mask variant on this CPU: %d)\n", top);
  for (int v = top; v >= 0; v--) {
    ews_mask_set_variant(v);
    CHECK_EQ(ews_mask_variant(), v);
    int wrong = 0;
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
      size_t n = sizes[si];
      for (size_t align = 0; align < 64; align++) {
        for (size_t off = 0; off < 4; off++) {
          uint8_t *pa = a + ((64 - ((uintptr_t)a & 63)) & 63); /* 64-aligned base */
          uint8_t *pb = b + ((64 - ((uintptr_t)b & 63)) & 63);
          memset(pa, 0xEE, n + 64);
          memcpy(pa + align, src + si, n);
          memcpy(pb, pa, n + 64);
          ews_mask(pa + align, n, key, off);
          mask_ref(pb + align, n, key, off);
          if (memcmp(pa, pb, n + 64)) wrong++; /* also catches writes outside */
        }
      }
    }
    CHECK_EQ(wrong, 0);
    /* ends right before an inaccessible page, at every end alignment */
    wrong = 0;
    for (size_t n = 256; n < 256 + 64; n++) {
      uint8_t *g = guard_copy(src, n);
      memcpy(b, src, n);
      ews_mask(g, n, key, n & 3);
      mask_ref(b, n, key, n & 3);
      if (memcmp(g, b, n)) wrong++;
      guard_free(g, n);
    }
    CHECK_EQ(wrong, 0);
  }
  ews_mask_set_variant(2);
  free(src);
  free(a);
  free(b);
}

/* ---- close payloads ---- */

TEST(close_parse) {
  unsigned code = 0;
  const uint8_t *reason;
  size_t rlen = 99;
  const uint8_t *e = B(0);
  CHECK_EQ(ews_close_parse(e, 0, &code, &reason, &rlen), 0);
  CHECK_EQ(code, 1005);
  CHECK_EQ(rlen, 0);

  CHECK_EQ(ews_close_parse(B(0x03, 0xE8), 2, &code, &reason, &rlen), 0);
  CHECK_EQ(code, 1000);
  CHECK_EQ(rlen, 0);

  const uint8_t *bye = B(0x03, 0xE9, 'b', 'y', 'e');
  CHECK_EQ(ews_close_parse(bye, 5, &code, &reason, &rlen), 0);
  CHECK_EQ(code, 1001);
  CHECK_EQ(rlen, 3);
  CHECK(reason == bye + 2);

  CHECK_EQ(ews_close_parse(B(0x0B, 0xB8, 0xCE, 0xBA), 4, &code, &reason, &rlen), 0);
  CHECK_EQ(code, 3000);
  CHECK_EQ(ews_close_parse(B(0x13, 0x87), 2, &code, &reason, &rlen), 0);
  CHECK_EQ(code, 4999);

  CHECK_EQ(ews_close_parse(B(0x03), 1, &code, &reason, &rlen), EWS_ECLOSE_PAYLOAD);
  CHECK_EQ(ews_close_parse(B(0x03, 0xEC), 2, &code, &reason, &rlen), EWS_ECLOSE_CODE);
  CHECK_EQ(ews_close_parse(B(0x03, 0xED), 2, &code, &reason, &rlen), EWS_ECLOSE_CODE);
  CHECK_EQ(ews_close_parse(B(0x03, 0xF7), 2, &code, &reason, &rlen), EWS_ECLOSE_CODE);
  CHECK_EQ(ews_close_parse(B(0x00, 0x00), 2, &code, &reason, &rlen), EWS_ECLOSE_CODE);
  CHECK_EQ(ews_close_parse(B(0x13, 0x88), 2, &code, &reason, &rlen), EWS_ECLOSE_CODE);
  CHECK_EQ(ews_close_parse(B(0x03, 0xE8, 0xC3), 3, &code, &reason, &rlen), EWS_EUTF8);
  CHECK_EQ(ews_close_parse(B(0x03, 0xE8, 'o', 'k', 0x80), 5, &code, &reason, &rlen),
           EWS_EUTF8);
}

TEST(close_build) {
  uint8_t out[EWS_CONTROL_MAX];
  CHECK_EQ(ews_close_build(out, 0, "ignored", 7), 0);
  CHECK_EQ(ews_close_build(out, 1000, NULL, 0), 2);
  CHECK_MEM(out, B(0x03, 0xE8), 2);
  CHECK_EQ(ews_close_build(out, 4000, "bye", 3), 5);
  CHECK_MEM(out, B(0x0F, 0xA0, 'b', 'y', 'e'), 5);

  char r[256];
  memset(r, 'a', sizeof r);
  CHECK_EQ(ews_close_build(out, 1000, r, 200), 125);
  CHECK_EQ(ews_close_build(out, 1000, r, 123), 125);
  /* a 3-byte character ending exactly at the limit is kept... */
  memcpy(r + 120, "\xE2\x82\xAC", 3);
  CHECK_EQ(ews_close_build(out, 1000, r, 124), 125);
  /* ...but one straddling it is dropped whole */
  memset(r, 'a', sizeof r);
  memcpy(r + 121, "\xE2\x82\xAC", 3);
  CHECK_EQ(ews_close_build(out, 1000, r, 124), 2 + 121);
  memset(r, 'a', sizeof r);
  memcpy(r + 122, "\xE2\x82\xAC", 3);
  CHECK_EQ(ews_close_build(out, 1000, r, 125), 2 + 122);
  memset(r, 'a', sizeof r);
  memcpy(r + 120, "\xF0\x9F\x98\x80", 4);
  CHECK_EQ(ews_close_build(out, 1000, r, 200), 2 + 120);
  memset(r, 'a', sizeof r);
  memcpy(r + 122, "\xC3\xA9", 2);
  CHECK_EQ(ews_close_build(out, 1000, r, 200), 2 + 122);

  /* any length of mixed text: fits, stays valid, is a prefix, loses < 4 bytes */
  static const char unit[] = "a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80";
  char m[300];
  for (size_t i = 0; i < sizeof m; i++) m[i] = unit[i % (sizeof unit - 1)];
  int wrong = 0;
  for (size_t len = 0; len <= 290; len++) {
    /* only lengths that end on a character boundary are valid input */
    if (!ews_utf8_valid((const uint8_t *)m, len)) continue;
    size_t n = ews_close_build(out, 1001, m, len);
    unsigned code;
    const uint8_t *reason;
    size_t rlen;
    size_t want_min = len < 123 ? len : 123 - 3;
    if (n > 125 || ews_close_parse(out, n, &code, &reason, &rlen) != 0 || code != 1001 ||
        memcmp(reason, m, rlen) != 0 || rlen < want_min || rlen > len)
      wrong++;
  }
  CHECK_EQ(wrong, 0);
}

int main(void) {
  RUN(rfc_encode);
  RUN(rfc_decode);
  RUN(stream_of_frames);
  RUN(errors);
  RUN(error_is_sticky);
  RUN(rsv1_compressed);
  RUN(utf8_across_frames);
  RUN(utf8_fail_fast);
  RUN(empty_messages);
  RUN(limits);
  RUN(zero_copy);
  RUN(callback_stop);
  RUN(partial_control_freed);
  RUN(mask);
  RUN(mask_variants);
  RUN(close_parse);
  RUN(close_build);
  return TEST_EXIT();
}
