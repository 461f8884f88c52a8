/* fuzz_tls_record.c — libFuzzer target for the TLS record layer that takes over once
 * the handshake is done (core/net/tls.c: ews_tls_read -> open_records, the alerts it
 * answers with, and the write side that shares the connection's state). These are the
 * bytes a client controls after the handshake and before any WebSocket authentication.
 *
 * The target compiles tls.c itself (#include below) so that it can put a connection
 * straight into the open state with known keys: a real handshake per input would cost
 * milliseconds and random keys (fuzz_tls_handshake drives that path). Everything after
 * the set-up goes through the public API: ews_tls_read, ews_tls_write,
 * ews_tls_close_notify, ews_tls_read_reserve, ews_tls_reason.
 *
 * Input (bytes past the end read as 0):
 *   byte 0  bits 0-1 suite (AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305 x2); bits 2-3
 *           and 4-5 the first read and write sequence numbers (1 as after a real
 *           handshake, 0, or a few below 2^64, where the counters run out)
 *   byte 1  bits 0-2 the write record limit (max_fragment_length or the default)
 *   byte 2  seed of the chunk sizes of the chunked run
 *   then ops, one byte each plus arguments: bits 0-2 kind: 0,1 application data,
 *   2 replay of the previous record, 3 alert, 4 handshake (renegotiation), 5 a record
 *   of any type, 6 raw bytes, 7 a server action (close_notify with bit 3, else a write
 *   through ews_tls_write or, with bit 4, through a plaintext queue of up to 97
 *   segments and ews_tls_write_wq, the flush path). Records are sealed as the client
 *   would (right key, next sequence number); bit 3 flips one byte of the protected
 *   part, bit 4 puts another version in the header, bit 5 makes the header lie about
 *   the length; bits 6-7 pick the size (a byte, around the 16384 plaintext limit,
 *   anything up to 17000, empty), also of a write.
 *
 * Oracles. The stream is fed twice: one read per segment (the bytes between two
 * server actions) and in chunks of pseudo-random sizes. Both runs must agree exactly
 * with a naive reference written here, which walks the whole stream record by record
 * and checks each one with its own AEAD call: the plaintext delivered, the return
 * code at the end of every segment, the failure reason, the bytes carried over to the
 * next read (never more than EWS_TLS_MAX_RESERVE), the return of every write and
 * close_notify and what a failed queued write leaves queued, and the records sent back, which the reference decrypts with the
 * server's key (alerts in order, written data in records within the limit, explicit
 * nonces equal to the sequence numbers). A read after the end repeats the terminal
 * return code with no plaintext. */
#include "../net/tls.c" /* the module under test, with its internals */

#include "fuzz.h"

#define STREAM_MAX (256u * 1024u)
#define ACTIONS_MAX 64

static const uint8_t ckey[32] = {0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb,
                                 0xcc, 0xdd, 0xee, 0xff, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07,
                                 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x12};
static const uint8_t skey[32] = {0xa1, 0xb2, 0xc3, 0xd4, 0xe5, 0xf6, 0x07, 0x18, 0x29, 0x3a, 0x4b,
                                 0x5c, 0x6d, 0x7e, 0x8f, 0x90, 0x01, 0x12, 0x23, 0x34, 0x45, 0x56,
                                 0x67, 0x78, 0x89, 0x9a, 0xab, 0xbc, 0xcd, 0xde, 0xef, 0xf0};
static const uint8_t civ[12] = {0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xcb};
static const uint8_t siv[12] = {0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x5b};

typedef struct {
  int aead;
  size_t keylen, ivlen, eiv;
} suite_t;

static const suite_t suites_fz[4] = {
    {AEAD_GCM, 16, 4, 8}, {AEAD_GCM, 32, 4, 8}, {AEAD_CHACHA, 32, 12, 0}, {AEAD_CHACHA, 32, 12, 0}};
static const uint64_t seq_starts[4] = {1, 0, UINT64_MAX - 2, UINT64_MAX - 9};
static const uint16_t plain_limits[8] = {EWS_TLS_MAX_PLAIN, 512, 1024, 2048, 4096,
                                         EWS_TLS_MAX_PLAIN, 1, 100};

/* ---- the reference's own AEAD (mbedTLS called directly, not through tls.c) ---- */

typedef struct {
  mbedtls_gcm_context gcm;
  mbedtls_chachapoly_context cp;
} rcipher_t;

static rcipher_t rc_client[4], rc_server[4]; /* per suite index, keyed once */

static void ciphers_init(void) {
  static int done;
  if (done) return;
  done = 1;
  for (int i = 0; i < 4; i++) {
    const suite_t *s = &suites_fz[i];
    mbedtls_gcm_init(&rc_client[i].gcm);
    mbedtls_gcm_init(&rc_server[i].gcm);
    mbedtls_chachapoly_init(&rc_client[i].cp);
    mbedtls_chachapoly_init(&rc_server[i].cp);
    if (s->aead == AEAD_GCM) {
      REQUIRE(mbedtls_gcm_setkey(&rc_client[i].gcm, MBEDTLS_CIPHER_ID_AES, ckey,
                                 (unsigned)s->keylen * 8) == 0);
      REQUIRE(mbedtls_gcm_setkey(&rc_server[i].gcm, MBEDTLS_CIPHER_ID_AES, skey,
                                 (unsigned)s->keylen * 8) == 0);
    } else {
      REQUIRE(mbedtls_chachapoly_setkey(&rc_client[i].cp, ckey) == 0);
      REQUIRE(mbedtls_chachapoly_setkey(&rc_server[i].cp, skey) == 0);
    }
  }
}

static void be64(uint8_t *p, uint64_t v) {
  for (int i = 7; i >= 0; i--, v >>= 8) p[i] = (uint8_t)v;
}

/* RFC 5288 / RFC 7905 nonce and RFC 5246 additional data, written out again. */
static void r_nonce(uint8_t n[12], const suite_t *s, const uint8_t *iv, const uint8_t *explicit_,
                    uint64_t seq) {
  if (s->aead == AEAD_GCM) {
    memcpy(n, iv, 4);
    memcpy(n + 4, explicit_, 8);
  } else {
    uint8_t q[8];
    be64(q, seq);
    memcpy(n, iv, 12);
    for (int i = 0; i < 8; i++) n[4 + i] ^= q[i];
  }
}

static void r_aad(uint8_t a[13], uint64_t seq, uint8_t type, size_t len) {
  be64(a, seq);
  a[8] = type;
  a[9] = 3;
  a[10] = 3;
  a[11] = (uint8_t)(len >> 8);
  a[12] = (uint8_t)len;
}

/* Seals a client record (header + protected body) onto b; returns its offset. */
static size_t client_seal(fz_buf_t *b, int si, uint8_t type, const uint8_t *p, size_t len,
                          uint64_t seq) {
  const suite_t *s = &suites_fz[si];
  size_t clen = s->eiv + len + TAG, at = b->n;
  uint8_t h[HDR] = {type, 3, 3, (uint8_t)(clen >> 8), (uint8_t)clen};
  fz_put(b, h, HDR);
  uint8_t ex[8];
  be64(ex, seq);
  if (s->eiv) fz_put(b, ex, 8);
  size_t data = b->n;
  fz_put(b, p, len);
  uint8_t tag[TAG] = {0};
  fz_put(b, tag, TAG);
  uint8_t nonce[12], aad[13];
  r_nonce(nonce, s, civ, ex, seq);
  r_aad(aad, seq, type, len);
  uint8_t *d = b->p + data;
  if (s->aead == AEAD_GCM)
    REQUIRE(mbedtls_gcm_crypt_and_tag(&rc_client[si].gcm, MBEDTLS_GCM_ENCRYPT, len, nonce, 12, aad,
                                      13, d, d, TAG, d + len) == 0);
  else
    REQUIRE(mbedtls_chachapoly_encrypt_and_tag(&rc_client[si].cp, len, nonce, aad, 13, d, d,
                                               d + len) == 0);
  return at;
}

/* Opens a copy of the body: 0 when authentic, plaintext in out[0 .. len). */
static int r_open(rcipher_t *rc, const suite_t *s, const uint8_t *iv, uint64_t seq, uint8_t type,
                  const uint8_t *body, size_t clen, uint8_t *out, size_t *len) {
  if (clen < s->eiv + TAG) return -1;
  size_t n = clen - s->eiv - TAG;
  uint8_t nonce[12], aad[13];
  r_nonce(nonce, s, iv, body, seq);
  r_aad(aad, seq, type, n);
  const uint8_t *ct = body + s->eiv;
  *len = n;
  if (s->aead == AEAD_GCM)
    return mbedtls_gcm_auth_decrypt(&rc->gcm, n, nonce, 12, aad, 13, ct + n, TAG, ct, out);
  return mbedtls_chachapoly_auth_decrypt(&rc->cp, n, nonce, aad, 13, ct + n, ct, out);
}

/* ---- the script: a stream of client bytes and server actions at offsets ---- */

typedef struct {
  size_t at;     /* stream offset: happens once every byte before it was fed */
  int close;     /* close_notify, else write */
  int queue;     /* write through a plaintext write queue (ews_tls_write_wq) */
  int pieces;    /* segments of that queue, each its own buffer */
  size_t len;    /* bytes to write */
} action_t;

typedef struct {
  int si;
  uint64_t rseq0, wseq0;
  uint16_t max_plain;
  uint32_t seed;
  fz_buf_t stream;
  action_t act[ACTIONS_MAX];
  int nact;
} script_t;

static uint8_t pattern(size_t i) { return (uint8_t)(i * 31u + 7u); }

static size_t size_class(fz_in_t *in, int cls) {
  switch (cls) {
    case 0: return fz_u8(in);
    case 1: return 16320u + fz_u8(in); /* around MAX_PLAIN_IN */
    case 2: return fz_u16(in) % 17000u; /* past MAX_CIPHER_IN too */
    default: return 0;
  }
}

static void parse(const uint8_t *data, size_t size, script_t *s) {
  fz_in_t in = {data, size};
  uint8_t b0 = fz_u8(&in), b1 = fz_u8(&in);
  s->si = b0 & 3;
  s->rseq0 = seq_starts[(b0 >> 2) & 3];
  s->wseq0 = seq_starts[(b0 >> 4) & 3];
  s->max_plain = plain_limits[b1 & 7];
  s->seed = 0x9E3779B9u ^ fz_u8(&in);
  uint64_t cseq = s->rseq0; /* the client's next sequence number */
  size_t last_at = 0, last_len = 0;
  int have_last = 0;
  uint8_t *payload = malloc(17000);
  REQUIRE(payload);
  while (in.n && s->stream.n < STREAM_MAX) {
    uint8_t op = fz_u8(&in);
    int kind = op & 7;
    if (kind == 7) {
      if (s->nact == ACTIONS_MAX) continue;
      action_t *a = &s->act[s->nact++];
      a->at = s->stream.n;
      a->close = (op >> 3) & 1;
      a->queue = !a->close && (op >> 4) & 1;
      a->len = a->close ? 0 : size_class(&in, op >> 6);
      a->pieces = a->queue ? 1 + fz_u8(&in) % 97 : 0; /* past 64: the iovec array is malloc'd */
      continue;
    }
    if (kind == 6) {
      const uint8_t *raw;
      size_t n = fz_take(&in, fz_u8(&in), &raw);
      fz_put(&s->stream, raw, n);
      continue;
    }
    if (kind == 2) {
      if (have_last) {
        size_t at = s->stream.n; /* copy out first: fz_put may move the buffer */
        uint8_t *copy = malloc(last_len);
        REQUIRE(copy);
        memcpy(copy, s->stream.p + last_at, last_len);
        fz_put(&s->stream, copy, last_len);
        free(copy);
        last_at = at;
      }
      continue;
    }
    uint8_t type = kind <= 1 ? REC_APP : kind == 3 ? REC_ALERT : kind == 4 ? REC_HANDSHAKE : fz_u8(&in);
    size_t len = (kind == 3 && (op >> 6) == 0) ? 2 : size_class(&in, op >> 6);
    const uint8_t *src;
    size_t got = fz_take(&in, len, &src);
    for (size_t i = 0; i < len; i++) payload[i] = i < got ? src[i] : pattern(i);
    size_t at = client_seal(&s->stream, s->si, type, payload, len, cseq++);
    size_t total = s->stream.n - at;
    uint8_t *h = s->stream.p + at;
    if (op & 0x08) { /* flip one byte of the protected part */
      size_t k = fz_u8(&in) % (total - HDR);
      h[HDR + k] ^= (uint8_t)(fz_u8(&in) | 1);
    }
    if (op & 0x10) { /* another version */
      h[1] = fz_u8(&in);
      h[2] = fz_u8(&in);
    }
    if (op & 0x20) { /* a length that lies */
      h[3] = fz_u8(&in);
      h[4] = fz_u8(&in);
    }
    last_at = at;
    last_len = total;
    have_last = 1;
  }
  free(payload);
}

/* ---- the reference: the whole stream, record by record ---- */

typedef struct {
  const script_t *s;
  const suite_t *su;
  uint64_t rseq, wseq;
  int failed, got_close, sent_close;
  unsigned idle;
  const char *what;
  int peer_alert;
  size_t off; /* first byte not yet consumed */
  fz_buf_t plain, outlog;
} ref_t;

/* The log of records sent: type, 2-byte length, plaintext. */
static void log_rec(fz_buf_t *log, uint8_t type, const uint8_t *p, size_t n) {
  uint8_t h[3] = {type, (uint8_t)(n >> 8), (uint8_t)n};
  fz_put(log, h, 3);
  fz_put(log, p, n);
}

static int ref_seal(ref_t *r, uint8_t type, const uint8_t *p, size_t n) {
  if (r->wseq == UINT64_MAX) return EWS_ETLS;
  log_rec(&r->outlog, type, p, n);
  r->wseq++;
  return 0;
}

static int ref_fail(ref_t *r, int desc, const char *what) {
  if (desc >= 0 && !r->sent_close) ref_seal(r, REC_ALERT, (const uint8_t[]){2, (uint8_t)desc}, 2);
  r->failed = 1;
  r->what = what;
  return EWS_ETLS;
}

/* Consumes the complete records in stream[off .. upto). */
static int ref_read(ref_t *r, size_t upto) {
  if (r->failed) return EWS_ETLS;
  if (r->got_close) return EWS_ECLOSED;
  const uint8_t *st = r->s->stream.p;
  while (upto - r->off >= HDR) {
    const uint8_t *h = st + r->off;
    size_t clen = (size_t)h[3] << 8 | h[4];
    if (h[1] != 3 || h[2] != 3) return ref_fail(r, 70, "record with a wrong version");
    if (clen > 16384 + 256) return ref_fail(r, 22, "record too long");
    if (upto - r->off < HDR + clen) break;
    r->off += HDR + clen;
    if (clen < r->su->eiv + TAG) return ref_fail(r, 20, "record too short");
    if (clen - r->su->eiv - TAG > 16384) return ref_fail(r, 22, "record plaintext too long");
    uint8_t pt[16384 + 256];
    size_t n;
    if (r_open(&rc_client[r->s->si], r->su, civ, r->rseq, h[0], h + HDR, clen, pt, &n) != 0)
      return ref_fail(r, 20, "bad record MAC");
    if (++r->rseq == 0) return ref_fail(r, 80, "record counter wrapped");
    if (h[0] == REC_APP && n) {
      fz_put(&r->plain, pt, n);
      r->idle = 0;
      continue;
    }
    if (h[0] == REC_ALERT) {
      if (n != 2) return ref_fail(r, 50, "malformed alert");
      if (pt[1] == 0) { /* close_notify, whatever its level */
        r->got_close = 1;
        if (!r->sent_close) {
          ref_seal(r, REC_ALERT, (const uint8_t[]){1, 0}, 2);
          r->sent_close = 1;
        }
        r->off = upto;
        return EWS_ECLOSED;
      }
      if (pt[0] == 2) {
        r->peer_alert = pt[1];
        return ref_fail(r, -1, "connection");
      }
    } else if (h[0] == REC_HANDSHAKE) {
      /* no_renegotiation, unless our close_notify went out: after it we send nothing
       * (RFC 5246 7.2.1: "the sender will not send any more messages") */
      if (!r->sent_close) ref_seal(r, REC_ALERT, (const uint8_t[]){1, 100}, 2);
    } else if (h[0] != REC_APP) {
      return ref_fail(r, 10, "unexpected record type");
    }
    if (++r->idle > 8) return ref_fail(r, 10, "too many records without data");
  }
  return 0;
}

/* *sealed: the bytes that went into records (the rest stays queued on failure). */
static int ref_write(ref_t *r, const uint8_t *p, size_t n, int queue, size_t *sealed) {
  *sealed = 0;
  if (queue && n == 0) return r->failed ? EWS_ETLS : 0; /* an empty queue: nothing to do */
  if (r->failed) return EWS_ETLS;
  if (r->sent_close) return EWS_ECLOSED;
  size_t lim = r->s->max_plain;
  while (n) {
    size_t k = n < lim ? n : lim;
    if (ref_seal(r, REC_APP, p, k) != 0) return EWS_ETLS;
    p += k;
    n -= k;
    *sealed += k;
  }
  return 0;
}

static int ref_close(ref_t *r) {
  if (r->failed) return EWS_ETLS;
  if (r->sent_close) return 0;
  int rc = ref_seal(r, REC_ALERT, (const uint8_t[]){1, 0}, 2);
  if (rc == 0) r->sent_close = 1;
  return rc;
}

/* ---- one run of the real code ---- */

typedef struct {
  fz_buf_t plain, outlog, rcs; /* rcs: the return code after each segment and action */
  char reason[256];
} result_t;

static void put_rc(fz_buf_t *b, int rc) {
  int8_t v = (int8_t)rc;
  fz_put(b, &v, 1);
}

/* Decrypts everything queued on out with the server's key into a record log. */
static void decode_out(const script_t *s, ews_writeq_t *out, fz_buf_t *log) {
  fz_buf_t all = {0};
  for (uint32_t i = 0; i < out->n; i++) {
    const ews_seg_t *g = &out->segs[(out->head + i) % out->cap];
    fz_put(&all, g->buf->data + g->off, g->end - g->off);
  }
  REQUIRE(all.n == out->bytes);
  const suite_t *su = &suites_fz[s->si];
  uint64_t seq = s->wseq0;
  size_t off = 0;
  uint8_t pt[16384 + 256];
  while (off < all.n) {
    REQUIRE(all.n - off >= HDR);
    const uint8_t *h = all.p + off;
    size_t clen = (size_t)h[3] << 8 | h[4];
    REQUIRE(h[1] == 3 && h[2] == 3);
    REQUIRE(all.n - off >= HDR + clen);
    REQUIRE(clen <= su->eiv + TAG + EWS_TLS_MAX_PLAIN);
    if (su->eiv) { /* the explicit nonce is the sequence number: never repeats */
      uint8_t ex[8];
      be64(ex, seq);
      REQUIRE(memcmp(h + HDR, ex, 8) == 0);
    }
    size_t n;
    REQUIRE(r_open(&rc_server[s->si], su, siv, seq, h[0], h + HDR, clen, pt, &n) == 0);
    log_rec(log, h[0], pt, n);
    seq++;
    off += HDR + clen;
  }
  fz_free(&all);
}

static uint8_t *write_data(size_t n) {
  uint8_t *p = malloc(n ? n : 1);
  REQUIRE(p);
  for (size_t i = 0; i < n; i++) p[i] = pattern(i + 3);
  return p;
}

/* chunked = 0: one read per segment. Returns the terminal code (0 if none). */
static int run(const script_t *s, int chunked, result_t *res) {
  const suite_t *su = &suites_fz[s->si];
  ews_bufpool_t pool = {0};
  ews_writeq_t out = {0};
  ews_tls_t *t = calloc(1, sizeof *t);
  REQUIRE(t);
  t->out = &out;
  t->pool = &pool;
  REQUIRE(aead_setup(t, su->aead, skey, ckey, su->keylen, siv, civ, su->ivlen) == 0);
  t->state = T_OPEN;
  t->rseq = s->rseq0;
  t->wseq = s->wseq0;
  t->max_plain = s->max_plain;

  uint32_t rng = s->seed ? s->seed : 1;
  size_t pos = 0;
  int term = 0;
  for (int a = 0; a <= s->nact; a++) {
    size_t end = a < s->nact ? s->act[a].at : s->stream.n;
    int rc = 1, reads = 0;
    while (pos < end) {
      size_t n = end - pos;
      if (chunked) {
        uint32_t r = fz_rand(&rng), k;
        switch (r & 3) {
          case 0: k = 1 + (r >> 8) % 8; break;
          case 1: k = 1 + (r >> 8) % 64; break;
          case 2: k = 1 + (r >> 8) % 4096; break;
          default: k = (uint32_t)n; break;
        }
        if (k < n) n = k;
      }
      size_t reserve = ews_tls_read_reserve(t);
      REQUIRE(reserve <= EWS_TLS_MAX_RESERVE);
      uint8_t *buf = malloc(reserve + n); /* exactly: ASan sees any overrun */
      REQUIRE(buf);
      memcpy(buf + reserve, s->stream.p + pos, n);
      size_t plain = 12345;
      rc = ews_tls_read(t, buf, n, &plain);
      REQUIRE(rc == 0 || rc == EWS_ETLS || rc == EWS_ECLOSED);
      REQUIRE(plain <= reserve + n);
      if (term) REQUIRE(rc == term && plain == 0); /* terminal states stay */
      fz_put(&res->plain, buf, plain);
      free(buf);
      if (rc) term = rc;
      if (rc) REQUIRE(ews_tls_read_reserve(t) == 0);
      pos += n;
      reads++;
    }
    if (reads) {
      put_rc(&res->rcs, rc);
      uint32_t pend = (uint32_t)ews_tls_read_reserve(t);
      fz_put(&res->rcs, &pend, sizeof pend);
    }
    if (a == s->nact) break;
    const action_t *act = &s->act[a];
    int arc;
    if (act->close) {
      arc = ews_tls_close_notify(t);
    } else if (act->queue) { /* the flush path: a plaintext queue of shared buffers */
      uint8_t *d = write_data(act->len);
      ews_writeq_t pq = {0};
      size_t per = act->len / (size_t)act->pieces + 1;
      for (size_t off = 0; off < act->len; off += per) {
        size_t k = act->len - off < per ? act->len - off : per;
        ews_buf_t *b = ews_buf_new(NULL, k);
        REQUIRE(b);
        memcpy(b->data, d + off, k);
        b->len = (uint32_t)k;
        REQUIRE(ews_wq_append_shared(&pq, b, 0, (uint32_t)k) == 0);
        ews_buf_unref(b);
      }
      arc = ews_tls_write_wq(t, &pq);
      uint32_t left = (uint32_t)pq.bytes; /* what was not encrypted stays queued */
      fz_put(&res->rcs, &left, sizeof left);
      ews_wq_free(&pq);
      free(d);
    } else {
      uint8_t *d = write_data(act->len);
      struct iovec iov[2] = {{d, act->len / 3}, {d + act->len / 3, act->len - act->len / 3}};
      arc = ews_tls_write(t, iov, 2);
      free(d);
    }
    REQUIRE(arc == 0 || arc == EWS_ETLS || arc == EWS_ECLOSED);
    put_rc(&res->rcs, arc);
  }
  if (term) { /* a read after the end: same code, nothing delivered */
    uint8_t *buf = malloc(3);
    REQUIRE(buf);
    memcpy(buf, "\x17\x03\x03", 3);
    size_t plain = 7;
    REQUIRE(ews_tls_read(t, buf, 3, &plain) == term && plain == 0);
    free(buf);
  }
  ews_tls_reason(t, res->reason, sizeof res->reason);
  REQUIRE(ews_tls_handshake_done(t) == (term != EWS_ETLS));
  decode_out(s, &out, &res->outlog);
  ews_tls_free(t);
  ews_wq_free(&out);
  ews_bufpool_drain(&pool);
  return term;
}

static void reference(const script_t *s, ref_t *r, result_t *res) {
  memset(r, 0, sizeof *r);
  r->s = s;
  r->su = &suites_fz[s->si];
  r->rseq = s->rseq0;
  r->wseq = s->wseq0;
  for (int a = 0; a <= s->nact; a++) {
    size_t end = a < s->nact ? s->act[a].at : s->stream.n;
    /* only segments that received bytes have a return code to compare */
    size_t prev = a == 0 ? 0 : s->act[a - 1].at;
    if (end > prev) {
      int rc = ref_read(r, end);
      put_rc(&res->rcs, rc);
      uint32_t pend = rc == 0 ? (uint32_t)(end - r->off) : 0;
      fz_put(&res->rcs, &pend, sizeof pend);
    }
    if (a == s->nact) break;
    const action_t *act = &s->act[a];
    int arc;
    if (act->close) {
      arc = ref_close(r);
    } else {
      uint8_t *d = write_data(act->len);
      size_t sealed;
      arc = ref_write(r, d, act->len, act->queue, &sealed);
      if (act->queue) {
        uint32_t left = (uint32_t)(act->len - sealed);
        fz_put(&res->rcs, &left, sizeof left);
      }
      free(d);
    }
    put_rc(&res->rcs, arc);
  }
  if (r->failed && r->peer_alert)
    snprintf(res->reason, sizeof res->reason, "%s: peer sent fatal alert %d (%s)", r->what,
             r->peer_alert, alert_name(r->peer_alert));
  else
    snprintf(res->reason, sizeof res->reason, "%s", r->failed ? r->what : "");
  res->plain = r->plain;
  res->outlog = r->outlog;
  r->plain = (fz_buf_t){0};
  r->outlog = (fz_buf_t){0};
}

static void same(const result_t *a, const result_t *b) {
  REQUIRE(a->plain.n == b->plain.n);
  REQUIRE(a->plain.n == 0 || memcmp(a->plain.p, b->plain.p, a->plain.n) == 0);
  REQUIRE(a->rcs.n == b->rcs.n && (a->rcs.n == 0 || memcmp(a->rcs.p, b->rcs.p, a->rcs.n) == 0));
  REQUIRE(a->outlog.n == b->outlog.n);
  REQUIRE(a->outlog.n == 0 || memcmp(a->outlog.p, b->outlog.p, a->outlog.n) == 0);
  REQUIRE(strcmp(a->reason, b->reason) == 0);
}

static void result_free(result_t *r) {
  fz_free(&r->plain);
  fz_free(&r->outlog);
  fz_free(&r->rcs);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  ciphers_init();
  script_t s;
  memset(&s, 0, sizeof s);
  parse(data, size, &s);
  result_t want = {0}, whole = {0}, chunks = {0};
  ref_t r;
  reference(&s, &r, &want);
  run(&s, 0, &whole);
  run(&s, 1, &chunks);
  same(&want, &whole);
  same(&want, &chunks);
  result_free(&want);
  result_free(&whole);
  result_free(&chunks);
  fz_free(&s.stream);
  return 0;
}
