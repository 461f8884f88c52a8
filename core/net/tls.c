/* tls.c — server-side TLS 1.2: mbedTLS for the handshake, our own AEAD record layer
 * afterwards (see tls.h for why and for the API contract).
 *
 * Handshake. The first record is checked byte by byte as it arrives and gathered
 * whole; only a complete ClientHello record gets an mbedtls_ssl_context (so a port
 * scan, plain HTTP or a stalled ClientHello costs no mbedTLS allocation). mbedTLS is
 * driven with memory callbacks: bio_recv hands it the bytes of the current
 * ews_tls_read() call, bio_send appends to the ciphertext queue.
 * In stream mode mbedTLS asks for exactly the bytes of the record it is reading, so
 * when the handshake completes every byte after the client's Finished is still ours.
 * The key block and the record sequence numbers mbedTLS reached come from
 * tls_mbedtls_keys.c, the only code that depends on the mbedTLS version (this file uses
 * public API that 2.28 and 3.x share). When the handshake is over we set up our own
 * cipher contexts from them and free the mbedtls_ssl_context with its two 16.7 KB
 * record buffers. A failed handshake frees it at once too. Session resumption is
 * noticed in the ticket-parse callback, which finds its connection through a
 * thread-local pointer set around each handshake step.
 *
 * Records (RFC 5246 6.2.3.3, RFC 5288, RFC 7905). GCM: nonce = 4-byte implicit salt ||
 * 8-byte explicit part carried in the record (we send the sequence number, as mbedTLS
 * does); ChaCha20-Poly1305: nonce = 12-byte IV xor the sequence number, nothing
 * explicit. AAD = seq(8) || type(1) || version(2) || plaintext length(2). Incoming
 * records are authenticated and decrypted in place in the caller's buffer; the first
 * one's plaintext stays there (ews_tls_read_at says where) and the next ones' is slid
 * down after it. Outgoing plaintext is encrypted into the ciphertext queue's pool
 * block: with GCM a large tail (a frame's payload) is read where it is and only the
 * bytes before it are gathered into the block (ews_gcm_seal_split); otherwise it is
 * copied there and encrypted in place. */
#include "net/tls.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/chachapoly.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/gcm.h>
#include <mbedtls/pk.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/ssl.h>
#include <mbedtls/ssl_ticket.h>
#include <mbedtls/x509_crt.h>

#include "err.h"
#include "net/aes_gcm.h"
#include "net/tls_mbedtls_keys.h"

/* Only public mbedTLS API that is the same in 2.28 and 3.x is used here; whatever
 * depends on the version (key export, sequence numbers, a few set-up calls) is in
 * tls_mbedtls_keys.c. */
#if !defined(MBEDTLS_GCM_C) || !defined(MBEDTLS_CHACHAPOLY_C) || !defined(MBEDTLS_SSL_PROTO_TLS1_2)
#error "mbedTLS needs GCM_C, CHACHAPOLY_C and SSL_PROTO_TLS1_2"
#endif

enum { REC_CCS = 20, REC_ALERT = 21, REC_HANDSHAKE = 22, REC_APP = 23 };
enum { T_NEW = 0, T_HANDSHAKE, T_OPEN, T_FAILED };
enum { AEAD_GCM = 1, AEAD_CHACHA };

#define HDR 5
#define TAG 16
#define MAX_PLAIN_IN 16384u          /* RFC 5246: plaintext limit */
#define MAX_CIPHER_IN (MAX_PLAIN_IN + 256u) /* AEAD expansion is 24 at most */
#define IDLE_RECORDS_MAX 8           /* consecutive records that carry no data */

/* ---- configuration --------------------------------------------------------- */

struct ews_tls_ctx {
  uint32_t refs; /* atomic */
  mbedtls_ssl_config conf;
  mbedtls_x509_crt chain;
  mbedtls_pk_context key;
  mbedtls_entropy_context entropy;
  mbedtls_ctr_drbg_context drbg;
  mbedtls_ssl_ticket_context ticket;
};

/* Server preference: AES-128-GCM (AES-NI) first, ChaCha20 for the rest. mbedTLS skips
 * the suites whose authentication does not match the certificate's key. */
static const int suites[] = {
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    MBEDTLS_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    0};

static const struct {
  int id;
  uint8_t aead, keylen;
  const char *name;
} suite_info[] = {
    {MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, AEAD_GCM, 16,
     "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"},
    {MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, AEAD_GCM, 16,
     "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"},
    {MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, AEAD_GCM, 32,
     "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"},
    {MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, AEAD_GCM, 32,
     "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"},
    {MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, AEAD_CHACHA, 32,
     "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"},
    {MBEDTLS_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256, AEAD_CHACHA, 32,
     "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"},
};

#define TICKET_LIFETIME_S (6u * 3600u)

/* ---- connection ------------------------------------------------------------ */

typedef struct {
  mbedtls_ssl_context ssl;
  ews_tlsk_t keys; /* the key block, captured during the handshake */
  const uint8_t *in; /* bytes offered to mbedTLS in this ews_tls_read() */
  size_t in_n;
} tls_hs_t;

/* Record protection of one direction: a cipher context built from the traffic key
 * when a record needs it (aead_ctx), and dropped again when the connection is quiet
 * (ews_tls_quiet): with AES-GCM it is 424 bytes plus the 288-byte AES key schedule
 * mbedTLS allocates, ~1.5 KB for both directions, which an idle connection does not
 * need. Rebuilding it costs a key expansion and GCM's table (microseconds). */
typedef union {
  mbedtls_gcm_context gcm;
  mbedtls_chachapoly_context cp;
} aead_ctx_t;

/* The traffic keys the handshake produced (zeroised when the connection ends). */
typedef struct {
  uint8_t ekey[32], dkey[32];
  uint8_t enc_iv[12], dec_iv[12]; /* GCM: 4-byte salt; ChaCha20: 12-byte IV */
} keymat_t;

struct ews_tls {
  ews_writeq_t *out;
  ews_bufpool_t *pool;
  ews_tls_ctx_t *ctx;     /* until the handshake ends */
  tls_hs_t *hs;           /* during the handshake */
  uint8_t *pend;          /* unfinished record carried over to the next read */
  uint32_t pend_len;
  uint64_t rseq, wseq;
  int mbed_err;           /* mbedTLS error behind a failure, or 0 */
  const char *what;       /* what failed, or NULL */
  uint16_t suite;
  uint16_t max_plain;
  uint8_t state;
  uint8_t aead;
  uint8_t alert;          /* peer's fatal alert, for the reason */
  uint8_t sent_close, got_close, resumed;
  uint8_t idle;           /* consecutive records without data */
  uint8_t client;         /* we are the client (ews_tls_client_new) */
  uint8_t keylen;         /* bytes of ekey/dkey in km */
  uint8_t used;           /* a record was sealed or opened since the last ews_tls_quiet */
  uint8_t rebuilt;        /* a cipher context was built since ews_tls_take_rebuilt */
  uint32_t verify_flags;  /* client: why the server's certificate was refused */
  aead_ctx_t *enc, *dec;  /* once the handshake is over; NULL while quiet */
  keymat_t km;            /* once the handshake is over */
};

static _Thread_local ews_tls_t *tls_current; /* the connection inside its handshake step */

/* ---- helpers --------------------------------------------------------------- */

static char *errf(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0) return NULL;
  char *s = malloc((size_t)n + 1);
  if (!s) return NULL;
  va_start(ap, fmt);
  vsnprintf(s, (size_t)n + 1, fmt, ap);
  va_end(ap);
  return s;
}

static void put_be64(uint8_t *p, uint64_t v) {
  for (int i = 7; i >= 0; i--, v >>= 8) p[i] = (uint8_t)v;
}

static const char *alert_name(int a) {
  switch (a) {
    case 0: return "close_notify";
    case 10: return "unexpected_message";
    case 20: return "bad_record_mac";
    case 22: return "record_overflow";
    case 40: return "handshake_failure";
    case 42: return "bad_certificate";
    case 43: return "unsupported_certificate";
    case 44: return "certificate_revoked";
    case 45: return "certificate_expired";
    case 46: return "certificate_unknown";
    case 47: return "illegal_parameter";
    case 48: return "unknown_ca";
    case 49: return "access_denied";
    case 50: return "decode_error";
    case 51: return "decrypt_error";
    case 70: return "protocol_version";
    case 71: return "insufficient_security";
    case 80: return "internal_error";
    case 86: return "inappropriate_fallback";
    case 90: return "user_canceled";
    case 100: return "no_renegotiation";
    case 110: return "unsupported_extension";
    case 112: return "unrecognized_name";
    case 120: return "no_application_protocol";
    default: return "unknown alert";
  }
}

/* ---- ctx ------------------------------------------------------------------- */

static int ticket_parse(void *p, mbedtls_ssl_session *s, unsigned char *buf, size_t len) {
  int r = mbedtls_ssl_ticket_parse(p, s, buf, len);
  if (r == 0 && tls_current) tls_current->resumed = 1;
  return r;
}

static void ctx_free(ews_tls_ctx_t *c) {
  mbedtls_ssl_config_free(&c->conf);
  mbedtls_ssl_ticket_free(&c->ticket);
  mbedtls_ctr_drbg_free(&c->drbg);
  mbedtls_entropy_free(&c->entropy);
  mbedtls_pk_free(&c->key);
  mbedtls_x509_crt_free(&c->chain);
  free(c);
}

static void set_err(char **err, int *code, int c, char *msg) {
  *code = c;
  if (err) *err = msg;
  else free(msg);
}

static void load_error(char **err, int *code, const char *file, int r) {
  char m[128];
  if (r > 0) snprintf(m, sizeof m, "%d certificate(s) in the file could not be parsed", r);
  else mbedtls_strerror(r, m, sizeof m);
  int c = (r == MBEDTLS_ERR_X509_ALLOC_FAILED || r == MBEDTLS_ERR_PK_ALLOC_FAILED ||
           r == MBEDTLS_ERR_SSL_ALLOC_FAILED) ? EWS_ENOMEM : EWS_ETLS;
  set_err(err, code, c, file ? errf("%s: %s", file, m) : errf("TLS setup: %s", m));
}

static ews_tls_ctx_t *ctx_load(const char *cert_file, const char *key_file, char **err,
                               int *code) {
  if (err) *err = NULL;
  ews_tls_ctx_t *c = calloc(1, sizeof *c);
  if (!c) {
    set_err(err, code, EWS_ENOMEM, errf("out of memory"));
    return NULL;
  }
  c->refs = 1;
  mbedtls_ssl_config_init(&c->conf);
  mbedtls_x509_crt_init(&c->chain);
  mbedtls_pk_init(&c->key);
  mbedtls_entropy_init(&c->entropy);
  mbedtls_ctr_drbg_init(&c->drbg);
  mbedtls_ssl_ticket_init(&c->ticket);

  int r = mbedtls_x509_crt_parse_file(&c->chain, cert_file);
  if (r != 0) {
    load_error(err, code, cert_file, r);
    goto fail;
  }
  /* The generator first: mbedTLS 3.x wants one for loading and checking the key. */
  static const char pers[] = "edgews tls";
  if ((r = mbedtls_ctr_drbg_seed(&c->drbg, mbedtls_entropy_func, &c->entropy,
                                 (const unsigned char *)pers, sizeof pers - 1)) != 0) {
    load_error(err, code, NULL, r);
    goto fail;
  }
  if ((r = ews_tlsk_load_key(&c->key, key_file, &c->drbg)) != 0) {
    load_error(err, code, key_file, r);
    goto fail;
  }
  if (ews_tlsk_check_pair(&c->chain, &c->key, &c->drbg) != 0) {
    set_err(err, code, EWS_ETLS,
            errf("%s: private key does not match the certificate in %s", key_file, cert_file));
    goto fail;
  }
  if ((r = mbedtls_ssl_config_defaults(&c->conf, MBEDTLS_SSL_IS_SERVER,
                                       MBEDTLS_SSL_TRANSPORT_STREAM,
                                       MBEDTLS_SSL_PRESET_DEFAULT)) != 0 ||
      (r = ews_tlsk_conf(&c->conf)) != 0) {
    load_error(err, code, NULL, r);
    goto fail;
  }
  mbedtls_ssl_conf_rng(&c->conf, mbedtls_ctr_drbg_random, &c->drbg);
  mbedtls_ssl_conf_ciphersuites(&c->conf, suites);
  mbedtls_ssl_conf_authmode(&c->conf, MBEDTLS_SSL_VERIFY_NONE);
  mbedtls_ssl_conf_renegotiation(&c->conf, MBEDTLS_SSL_RENEGOTIATION_DISABLED);
  if ((r = mbedtls_ssl_conf_own_cert(&c->conf, &c->chain, &c->key)) != 0 ||
      (r = mbedtls_ssl_ticket_setup(&c->ticket, mbedtls_ctr_drbg_random, &c->drbg,
                                    MBEDTLS_CIPHER_AES_256_GCM, TICKET_LIFETIME_S)) != 0) {
    load_error(err, code, NULL, r);
    goto fail;
  }
  mbedtls_ssl_conf_session_tickets_cb(&c->conf, mbedtls_ssl_ticket_write, ticket_parse,
                                      &c->ticket);
  *code = 0;
  return c;
fail:
  ctx_free(c);
  return NULL;
}

ews_tls_ctx_t *ews_tls_ctx_new(const char *cert_file, const char *key_file, char **err) {
  int code;
  return ctx_load(cert_file, key_file, err, &code);
}

void ews_tls_ctx_ref(ews_tls_ctx_t *ctx) { __atomic_add_fetch(&ctx->refs, 1, __ATOMIC_RELAXED); }

void ews_tls_ctx_unref(ews_tls_ctx_t *ctx) {
  if (ctx && __atomic_sub_fetch(&ctx->refs, 1, __ATOMIC_ACQ_REL) == 0) ctx_free(ctx);
}

int ews_tls_ctx_shareable(void) {
#if defined(MBEDTLS_THREADING_C)
  return 1;
#else
  return 0;
#endif
}

int ews_tls_ctx_reload(ews_tls_ctx_t **slot, const char *cert_file, const char *key_file,
                       char **err) {
  int code;
  ews_tls_ctx_t *n = ctx_load(cert_file, key_file, err, &code);
  if (!n) return code;
  ews_tls_ctx_t *old = *slot;
  *slot = n;
  ews_tls_ctx_unref(old);
  return 0;
}

/* ---- client configuration ---------------------------------------------------
 * The same suites, groups and TLS 1.2 as the server (so our record layer takes over
 * after the handshake); the peer's certificate is checked against the CA file's
 * certificates (authmode REQUIRED) unless verification is off. */

ews_tls_ctx_t *ews_tls_client_ctx_new(const char *ca_file, int verify, char **err) {
  int code;
  if (err) *err = NULL;
  ews_tls_ctx_t *c = calloc(1, sizeof *c);
  if (!c) {
    set_err(err, &code, EWS_ENOMEM, errf("out of memory"));
    return NULL;
  }
  c->refs = 1;
  mbedtls_ssl_config_init(&c->conf);
  mbedtls_x509_crt_init(&c->chain);
  mbedtls_pk_init(&c->key);
  mbedtls_entropy_init(&c->entropy);
  mbedtls_ctr_drbg_init(&c->drbg);
  mbedtls_ssl_ticket_init(&c->ticket);
  int r;
  if (verify && ca_file) {
    /* A system bundle may hold a few certificates mbedTLS cannot parse (r > 0):
     * fine as long as some were loaded. */
    r = mbedtls_x509_crt_parse_file(&c->chain, ca_file);
    if (r < 0 || (r > 0 && c->chain.version == 0)) {
      load_error(err, &code, ca_file, r < 0 ? r : MBEDTLS_ERR_X509_INVALID_FORMAT);
      goto fail;
    }
  }
  static const char pers[] = "edgews tls client";
  if ((r = mbedtls_ctr_drbg_seed(&c->drbg, mbedtls_entropy_func, &c->entropy,
                                 (const unsigned char *)pers, sizeof pers - 1)) != 0 ||
      (r = mbedtls_ssl_config_defaults(&c->conf, MBEDTLS_SSL_IS_CLIENT,
                                       MBEDTLS_SSL_TRANSPORT_STREAM,
                                       MBEDTLS_SSL_PRESET_DEFAULT)) != 0 ||
      (r = ews_tlsk_conf(&c->conf)) != 0) {
    load_error(err, &code, NULL, r);
    goto fail;
  }
  mbedtls_ssl_conf_rng(&c->conf, mbedtls_ctr_drbg_random, &c->drbg);
  mbedtls_ssl_conf_ciphersuites(&c->conf, suites);
  mbedtls_ssl_conf_renegotiation(&c->conf, MBEDTLS_SSL_RENEGOTIATION_DISABLED);
  if (verify) {
    mbedtls_ssl_conf_authmode(&c->conf, MBEDTLS_SSL_VERIFY_REQUIRED);
    mbedtls_ssl_conf_ca_chain(&c->conf, &c->chain, NULL);
  } else {
    mbedtls_ssl_conf_authmode(&c->conf, MBEDTLS_SSL_VERIFY_NONE);
  }
  return c;
fail:
  ctx_free(c);
  return NULL;
}

/* ---- connection lifecycle -------------------------------------------------- */

ews_tls_t *ews_tls_new(ews_tls_ctx_t *ctx, ews_writeq_t *out, ews_bufpool_t *pool) {
  ews_tls_t *t = calloc(1, sizeof *t);
  if (!t) return NULL;
  t->out = out;
  t->pool = pool;
  t->ctx = ctx;
  ews_tls_ctx_ref(ctx);
  return t;
}

static int hs_start(ews_tls_t *t);
static int fail_hs(ews_tls_t *t, int mbed_err, const char *what);

ews_tls_t *ews_tls_client_new(ews_tls_ctx_t *ctx, ews_writeq_t *out, ews_bufpool_t *pool) {
  ews_tls_t *t = ews_tls_new(ctx, out, pool);
  if (!t) return NULL;
  t->client = 1;
  return t;
}

int ews_tls_client_start(ews_tls_t *t, const char *host) {
  int r = hs_start(t);
  if (r != 0) return r;
  /* SNI and the name the certificate must carry. */
  if ((r = mbedtls_ssl_set_hostname(&t->hs->ssl, host)) != 0)
    return fail_hs(t, r, "handshake setup");
  r = ews_tlsk_handshake(&t->hs->keys, &t->hs->ssl); /* the ClientHello, to `out` */
  if (r == MBEDTLS_ERR_SSL_WANT_READ || r == MBEDTLS_ERR_SSL_WANT_WRITE) return 0;
  return fail_hs(t, r, "handshake");
}

static void hs_free(ews_tls_t *t) {
  if (t->hs) {
    mbedtls_ssl_free(&t->hs->ssl);
    mbedtls_platform_zeroize(&t->hs->keys, sizeof t->hs->keys);
    free(t->hs);
    t->hs = NULL;
  }
  ews_tls_ctx_unref(t->ctx);
  t->ctx = NULL;
}

/* ---- AEAD: the only code that touches the cipher implementation ------------
 * mbedTLS's GCM and ChaCha20-Poly1305 API. The GCM calls land in our AES-NI/PCLMULQDQ
 * code (net/aes_gcm.h: gcm_mbedtls.c defines mbedtls_gcm_crypt_and_tag and
 * mbedtls_gcm_auth_decrypt, falling back to the library's) at ~7 GB/s per core on the
 * dev box, where mbedTLS 2.28's own GCM does ~0.2 GB/s and its ChaCha20-Poly1305 ~0.4.
 * Tags are 16 bytes and follow the data. */

static void aead_ctx_free(ews_tls_t *t, aead_ctx_t **slot) {
  aead_ctx_t *a = *slot;
  if (!a) return;
  if (t->aead == AEAD_GCM) mbedtls_gcm_free(&a->gcm);
  else mbedtls_chachapoly_free(&a->cp);
  mbedtls_platform_zeroize(a, sizeof *a);
  free(a);
  *slot = NULL;
}

static void aead_free(ews_tls_t *t) {
  aead_ctx_free(t, &t->enc);
  aead_ctx_free(t, &t->dec);
  mbedtls_platform_zeroize(&t->km, sizeof t->km);
  t->keylen = 0; /* no record can be protected any more */
}

/* The cipher context of our direction (enc) or the peer's, built from the traffic key
 * when the connection was quiet. NULL when out of memory (or no keys: failed). */
static aead_ctx_t *aead_ctx(ews_tls_t *t, int enc) {
  aead_ctx_t **slot = enc ? &t->enc : &t->dec;
  t->used = 1;
  if (*slot) return *slot;
  if (!t->keylen) return NULL;
  aead_ctx_t *a = malloc(sizeof *a);
  if (!a) return NULL;
  const uint8_t *key = enc ? t->km.ekey : t->km.dkey;
  int r;
  if (t->aead == AEAD_GCM) {
    mbedtls_gcm_init(&a->gcm);
    r = mbedtls_gcm_setkey(&a->gcm, MBEDTLS_CIPHER_ID_AES, key, (unsigned)t->keylen * 8);
    if (r) mbedtls_gcm_free(&a->gcm);
  } else {
    mbedtls_chachapoly_init(&a->cp);
    r = mbedtls_chachapoly_setkey(&a->cp, key);
    if (r) mbedtls_chachapoly_free(&a->cp);
  }
  if (r) {
    free(a);
    return NULL;
  }
  t->rebuilt = 1;
  return *slot = a;
}

int ews_tls_take_rebuilt(ews_tls_t *t) {
  int r = t->rebuilt;
  t->rebuilt = 0;
  return r;
}

/* Keys and IVs for our direction (enc) and the peer's (dec); both contexts are built
 * now (the first records follow at once). 0 or an mbedTLS error. */
static int aead_setup(ews_tls_t *t, int aead, const uint8_t *ekey, const uint8_t *dkey,
                      size_t keylen, const uint8_t *eiv, const uint8_t *div, size_t ivlen) {
  t->aead = (uint8_t)aead;
  t->keylen = (uint8_t)keylen;
  memcpy(t->km.ekey, ekey, keylen);
  memcpy(t->km.dkey, dkey, keylen);
  memcpy(t->km.enc_iv, eiv, ivlen);
  memcpy(t->km.dec_iv, div, ivlen);
  if (!aead_ctx(t, 1) || !aead_ctx(t, 0)) return MBEDTLS_ERR_SSL_ALLOC_FAILED;
  return 0;
}

/* Encrypts data[0 .. len) in place and writes the tag at data + len (a: aead_ctx(t, 1)). */
static int aead_seal(ews_tls_t *t, aead_ctx_t *a, const uint8_t nonce[12], const uint8_t aad[13],
                     uint8_t *data, size_t len) {
  if (t->aead == AEAD_GCM)
    return mbedtls_gcm_crypt_and_tag(&a->gcm, MBEDTLS_GCM_ENCRYPT, len, nonce, 12, aad, 13,
                                     data, data, TAG, data + len);
  return mbedtls_chachapoly_encrypt_and_tag(&a->cp, len, nonce, aad, 13, data, data, data + len);
}

/* Checks the tag at data + len and decrypts data[0 .. len) in place (a: aead_ctx(t, 0)).
 * 0 if authentic. */
static int aead_open(ews_tls_t *t, aead_ctx_t *a, const uint8_t nonce[12], const uint8_t aad[13],
                     uint8_t *data, size_t len) {
  if (t->aead == AEAD_GCM)
    return mbedtls_gcm_auth_decrypt(&a->gcm, len, nonce, 12, aad, 13, data + len, TAG, data,
                                    data);
  return mbedtls_chachapoly_auth_decrypt(&a->cp, len, nonce, aad, 13, data + len, data, data);
}

int ews_tls_quiet(ews_tls_t *t) {
  if (!t->enc && !t->dec) return 0;
  if (t->used) {
    t->used = 0;
    return 1;
  }
  aead_ctx_free(t, &t->enc);
  aead_ctx_free(t, &t->dec);
  return 2;
}

void ews_tls_free(ews_tls_t *t) {
  if (!t) return;
  hs_free(t);
  aead_free(t);
  free(t->pend);
  free(t);
}

int ews_tls_handshake_done(const ews_tls_t *t) { return t->state == T_OPEN; }

const char *ews_tls_cipher(const ews_tls_t *t) {
  if (!t->suite) return NULL;
  for (size_t i = 0; i < sizeof suite_info / sizeof suite_info[0]; i++)
    if (suite_info[i].id == t->suite) return suite_info[i].name;
  return NULL;
}

int ews_tls_resumed(const ews_tls_t *t) { return t->resumed; }

size_t ews_tls_read_reserve(const ews_tls_t *t) { return t->pend_len; }

const char *ews_tls_reason(const ews_tls_t *t, char *buf, size_t len) {
  if (!len) return buf;
  buf[0] = 0;
  if (!t->what) return buf;
  if (t->alert) {
    snprintf(buf, len, "%s: peer sent fatal alert %d (%s)", t->what, t->alert,
             alert_name(t->alert));
  } else if (t->verify_flags) {
    char m[256];
    int n = mbedtls_x509_crt_verify_info(m, sizeof m, "", t->verify_flags);
    while (n > 0 && (m[n - 1] == '\n' || m[n - 1] == ' ')) m[--n] = 0;
    for (char *q = m; *q; q++)
      if (*q == '\n') *q = ';';
    snprintf(buf, len, "certificate verification failed: %s", m);
  } else if (t->mbed_err) {
    char m[128];
    mbedtls_strerror(t->mbed_err, m, sizeof m);
    snprintf(buf, len, "%s: %s", t->what, m);
  } else {
    snprintf(buf, len, "%s", t->what);
  }
  return buf;
}

/* ---- record protection ----------------------------------------------------- */

static void make_aad(uint8_t aad[13], uint64_t seq, uint8_t type, size_t len) {
  put_be64(aad, seq);
  aad[8] = type;
  aad[9] = 3;
  aad[10] = 3;
  aad[11] = (uint8_t)(len >> 8);
  aad[12] = (uint8_t)len;
}

static void make_nonce(uint8_t nonce[12], const uint8_t iv[12], int aead, const uint8_t *explicit_,
                       uint64_t seq) {
  if (aead == AEAD_GCM) {
    memcpy(nonce, iv, 4);
    memcpy(nonce + 4, explicit_, 8);
  } else {
    uint8_t s[8];
    put_be64(s, seq);
    memcpy(nonce, iv, 12);
    for (int i = 0; i < 8; i++) nonce[4 + i] ^= s[i];
  }
}

typedef struct {
  const struct iovec *iov;
  int n, i;
  size_t off;
} cursor_t;

static void cursor_copy(cursor_t *c, uint8_t *dst, size_t len) {
  while (len) {
    const struct iovec *v = &c->iov[c->i];
    size_t k = v->iov_len - c->off;
    if (k > len) k = len;
    memcpy(dst, (const uint8_t *)v->iov_base + c->off, k);
    dst += k;
    len -= k;
    c->off += k;
    if (c->off == v->iov_len) {
      c->i++;
      c->off = 0;
    }
  }
}

static void cursor_skip(cursor_t *c, size_t len) {
  while (len) {
    size_t k = c->iov[c->i].iov_len - c->off;
    if (k > len) k = len;
    len -= k;
    c->off += k;
    if (c->off == c->iov[c->i].iov_len) {
      c->i++;
      c->off = 0;
    }
  }
}

/* Tails shorter than this are gathered with the rest: not worth a second GCM piece. */
#define SPLIT_MIN 256

/* Where the next len bytes of the cursor are split for sealing: the returned head
 * (a multiple of 16) is gathered, and the rest, all inside one iovec, starts at *tail.
 * len when there is no such tail of SPLIT_MIN bytes or more. */
static size_t split_point(const cursor_t *c, size_t len, const uint8_t **tail) {
  size_t at = 0; /* record offset where iovec i starts (its unread part) */
  int i = c->i;
  size_t off = c->off;
  while (i < c->n) {
    size_t k = c->iov[i].iov_len - off;
    if (at + k >= len) break; /* this iovec reaches the end of the record */
    at += k;
    off = 0;
    i++;
  }
  if (i >= c->n) return len;
  size_t head = (at + 15) & ~(size_t)15;
  if (head >= len || len - head < SPLIT_MIN) return len;
  /* bytes [at, head) come from iovec i too: it runs to the end of the record */
  *tail = (const uint8_t *)c->iov[i].iov_base + off + (head - at);
  return head;
}

/* Appends one protected record of `len` plaintext bytes taken from the cursor (or from
 * `src` when cur is NULL) to the ciphertext queue. 0 or EWS_ENOMEM (nothing queued). */
static int seal(ews_tls_t *t, uint8_t type, cursor_t *cur, const uint8_t *src, size_t len) {
  if (t->wseq == UINT64_MAX) return EWS_ETLS; /* never in practice: 2^64 records */
  aead_ctx_t *a = aead_ctx(t, 1);
  if (!a) return t->keylen ? EWS_ENOMEM : EWS_ETLS;
  size_t eiv = t->aead == AEAD_GCM ? 8 : 0;
  size_t total = HDR + eiv + len + TAG;
  /* Sealed in place where the record will be queued (net/bump.h: a small record
   * shares the worker's current block, a full-size one fills a block of its own). */
  uint8_t *p = ews_wq_reserve(t->out, t->pool, total);
  if (!p) return EWS_ENOMEM;
  uint8_t *data = p + HDR + eiv;
  /* GCM reads a large tail of the plaintext (a frame's payload) where it is: only the
   * bytes before it (the frame header, small frames), rounded up to a block, are
   * gathered into the record. */
  size_t head = len;
  const uint8_t *tail = NULL;
  if (cur && t->aead == AEAD_GCM) head = split_point(cur, len, &tail);
  if (cur) cursor_copy(cur, data, head);
  else memcpy(data, src, len);
  uint8_t aad[13], nonce[12];
  make_aad(aad, t->wseq, type, len);
  if (eiv) put_be64(p + HDR, t->wseq); /* GCM explicit nonce: the sequence number */
  make_nonce(nonce, t->km.enc_iv, t->aead, p + HDR, t->wseq);
  if (head < len) {
    if (ews_gcm_seal_split(&a->gcm, nonce, aad, 13, data, head, tail, len - head, data + len,
                           TAG) != 0)
      return EWS_ETLS;
    cursor_skip(cur, len - head);
  } else if (aead_seal(t, a, nonce, aad, data, len) != 0) {
    return EWS_ETLS; /* not with these lengths */
  }
  size_t clen = eiv + len + TAG;
  p[0] = type;
  p[1] = 3;
  p[2] = 3;
  p[3] = (uint8_t)(clen >> 8);
  p[4] = (uint8_t)clen;
  ews_wq_commit(t->out, total);
  t->wseq++;
  return 0;
}

static void send_alert(ews_tls_t *t, int level, int desc) {
  uint8_t a[2] = {(uint8_t)level, (uint8_t)desc};
  seal(t, REC_ALERT, NULL, a, 2);
}

/* Fails the connection after the handshake: queues a fatal alert (desc >= 0) and
 * drops the keys. */
static int fail_open(ews_tls_t *t, int desc, const char *what) {
  if (desc >= 0 && !t->sent_close) send_alert(t, 2, desc);
  t->what = what;
  t->state = T_FAILED;
  aead_free(t);
  free(t->pend);
  t->pend = NULL;
  t->pend_len = 0;
  return EWS_ETLS;
}

/* Fails during the handshake: frees the mbedTLS state at once. */
static int fail_hs(ews_tls_t *t, int mbed_err, const char *what) {
  if (mbed_err == MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE && t->hs) {
    int a = ews_tlsk_peer_alert(&t->hs->ssl);
    if (a > 0) t->alert = (uint8_t)a;
  }
  if (t->client && t->hs && mbed_err == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED) {
    t->verify_flags = mbedtls_ssl_get_verify_result(&t->hs->ssl);
    if (!t->verify_flags) t->verify_flags = MBEDTLS_X509_BADCERT_OTHER;
  }
  t->mbed_err = mbed_err;
  t->what = what;
  t->state = T_FAILED;
  hs_free(t);
  if (t->verify_flags) return EWS_ECERT;
  return mbed_err == MBEDTLS_ERR_SSL_ALLOC_FAILED ? EWS_ENOMEM : EWS_ETLS;
}

/* ---- handshake ------------------------------------------------------------- */

static int bio_send(void *p, const unsigned char *buf, size_t len) {
  ews_tls_t *t = p;
  if (ews_wq_append(t->out, t->pool, buf, len, NULL, 0) != 0) return MBEDTLS_ERR_SSL_ALLOC_FAILED;
  return (int)len;
}

static int bio_recv(void *p, unsigned char *buf, size_t len) {
  ews_tls_t *t = p;
  tls_hs_t *hs = t->hs;
  if (!hs->in_n) return MBEDTLS_ERR_SSL_WANT_READ;
  if (len > hs->in_n) len = hs->in_n;
  memcpy(buf, hs->in, len);
  hs->in += len;
  hs->in_n -= len;
  return (int)len;
}

/* Keeps the n bytes at p (an unfinished record) for the next read, which the caller
 * places after them (ews_tls_read_reserve). */
static int carry(ews_tls_t *t, const uint8_t *p, size_t n) {
  t->pend = malloc(n);
  if (!t->pend) return EWS_ENOMEM;
  memcpy(t->pend, p, n);
  t->pend_len = (uint32_t)n;
  return 0;
}

/* The first record must be a handshake record (22) of major version 3 that holds the
 * whole ClientHello (mbedTLS 2.28 does not accept a fragmented one anyway). It is
 * checked as it arrives and gathered whole before mbedTLS allocates its ~40 KB, so a
 * port scanner, a plain-HTTP client or a peer that stalls inside its ClientHello
 * costs only the bytes it sent. 0 when it is complete, else EWS_EAGAIN (carried
 * over), EWS_ETLS or EWS_ENOMEM. */
static int hs_gate(ews_tls_t *t, const uint8_t *p, size_t n) {
  const char *bad = NULL;
  size_t rl = n >= 5 ? ((size_t)p[3] << 8) | p[4] : 0;
  if (p[0] != REC_HANDSHAKE)
    bad = (p[0] >= 'A' && p[0] <= 'Z') ? "not TLS (plain HTTP on a TLS port?)"
                                       : "not TLS (no handshake record)";
  else if (n > 1 && p[1] != 3)
    bad = "not TLS (record version)";
  else if (n >= 5 && (rl < 4 || rl > MAX_PLAIN_IN))
    bad = "not a ClientHello (record length)";
  else if (n >= 6 && p[5] != 1)
    bad = "not a ClientHello";
  if (bad) {
    t->what = bad;
    t->state = T_FAILED;
    hs_free(t);
    return EWS_ETLS;
  }
  if (n >= 5 && n >= HDR + rl) return 0;
  return carry(t, p, n) ? EWS_ENOMEM : EWS_EAGAIN;
}

static int hs_start(ews_tls_t *t) {
  tls_hs_t *hs = calloc(1, sizeof *hs);
  if (!hs) return fail_hs(t, MBEDTLS_ERR_SSL_ALLOC_FAILED, "handshake");
  t->hs = hs;
  mbedtls_ssl_init(&hs->ssl);
  int r = mbedtls_ssl_setup(&hs->ssl, &t->ctx->conf);
  if (r != 0) return fail_hs(t, r, "handshake setup");
  mbedtls_ssl_set_bio(&hs->ssl, t, bio_send, bio_recv, NULL);
  t->state = T_HANDSHAKE;
  return 0;
}

/* The handshake is over: take the keys and sequence numbers and drop mbedTLS. */
static int hs_finish(ews_tls_t *t) {
  tls_hs_t *hs = t->hs;
  mbedtls_ssl_context *ssl = &hs->ssl;
  uint64_t rseq, wseq;
  if (ews_tlsk_finish(&hs->keys, ssl, &rseq, &wseq) != 0)
    return fail_hs(t, 0, "handshake: no key block exported");
  if (mbedtls_ssl_check_pending(ssl))
    return fail_hs(t, 0, "handshake: unexpected data inside the final handshake record");
  int id = mbedtls_ssl_get_ciphersuite_id(mbedtls_ssl_get_ciphersuite(ssl));
  int aead = 0;
  for (size_t i = 0; i < sizeof suite_info / sizeof suite_info[0]; i++)
    if (suite_info[i].id == id && suite_info[i].keylen == hs->keys.keylen)
      aead = suite_info[i].aead;
  if (!aead || hs->keys.ivlen != (aead == AEAD_GCM ? 4 : 12))
    return fail_hs(t, 0, "handshake: unexpected ciphersuite");
  t->suite = (uint16_t)id;
  t->rseq = rseq;
  t->wseq = wseq;
  size_t mfl = mbedtls_ssl_get_output_max_frag_len(ssl);
  t->max_plain = (uint16_t)(mfl < EWS_TLS_MAX_PLAIN ? mfl : EWS_TLS_MAX_PLAIN);

  /* RFC 5246 6.3 key block: client_write_key, server_write_key, client_write_IV,
   * server_write_IV. A server encrypts with server_* and decrypts client_*; a client
   * the other way round. */
  size_t kl = hs->keys.keylen, il = hs->keys.ivlen;
  const uint8_t *kb = hs->keys.kb;
  const uint8_t *ckey = kb, *skey = kb + kl, *civ = kb + 2 * kl, *siv = kb + 2 * kl + il;
  int r = t->client ? aead_setup(t, aead, ckey, skey, kl, civ, siv, il)
                    : aead_setup(t, aead, skey, ckey, kl, siv, civ, il);
  if (r != 0) {
    aead_free(t);
    t->suite = 0;
    return fail_hs(t, r, "handshake: cipher setup");
  }
  hs_free(t);
  t->state = T_OPEN;
  return 0;
}

/* ---- records in ------------------------------------------------------------ */

/* Processes the records in buf[off .. len): plaintext goes to buf[*at ..), where *at is
 * where the first record's plaintext was decrypted (it stays there; later records'
 * plaintext is slid down after it), an unfinished record is carried over. */
static int open_records(ews_tls_t *t, uint8_t *buf, size_t off, size_t len, size_t *at,
                        size_t *plain) {
  size_t w = 0, start = 0;
  int ret = 0;
  while (len - off >= HDR) {
    uint8_t *h = buf + off;
    size_t clen = ((size_t)h[3] << 8) | h[4];
    if (h[1] != 3 || h[2] != 3) {
      ret = fail_open(t, MBEDTLS_SSL_ALERT_MSG_PROTOCOL_VERSION, "record with a wrong version");
      goto out;
    }
    if (clen > MAX_CIPHER_IN) {
      ret = fail_open(t, MBEDTLS_SSL_ALERT_MSG_RECORD_OVERFLOW, "record too long");
      goto out;
    }
    if (len - off < HDR + clen) break;
    off += HDR + clen;

    size_t eiv = t->aead == AEAD_GCM ? 8 : 0;
    if (clen < eiv + TAG) {
      ret = fail_open(t, MBEDTLS_SSL_ALERT_MSG_BAD_RECORD_MAC, "record too short");
      goto out;
    }
    uint8_t type = h[0];
    uint8_t *data = h + HDR + eiv;
    size_t plen = clen - eiv - TAG;
    if (plen > MAX_PLAIN_IN) {
      ret = fail_open(t, MBEDTLS_SSL_ALERT_MSG_RECORD_OVERFLOW, "record plaintext too long");
      goto out;
    }
    uint8_t aad[13], nonce[12];
    make_aad(aad, t->rseq, type, plen);
    make_nonce(nonce, t->km.dec_iv, t->aead, h + HDR, t->rseq);
    aead_ctx_t *a = aead_ctx(t, 0);
    if (!a) {
      ret = fail_open(t, MBEDTLS_SSL_ALERT_MSG_INTERNAL_ERROR, "out of memory");
      goto out;
    }
    if (aead_open(t, a, nonce, aad, data, plen) != 0) {
      ret = fail_open(t, MBEDTLS_SSL_ALERT_MSG_BAD_RECORD_MAC, "bad record MAC");
      goto out;
    }
    if (++t->rseq == 0) {
      ret = fail_open(t, MBEDTLS_SSL_ALERT_MSG_INTERNAL_ERROR, "record counter wrapped");
      goto out;
    }

    switch (type) {
      case REC_APP:
        if (plen) {
          if (!w) start = (size_t)(data - buf); /* the first plaintext stays where it is */
          else memmove(buf + start + w, data, plen); /* before this record: never ahead */
          w += plen;
          t->idle = 0;
          continue;
        }
        break; /* empty record: counted below */
      case REC_ALERT:
        if (plen != 2) {
          ret = fail_open(t, MBEDTLS_SSL_ALERT_MSG_DECODE_ERROR, "malformed alert");
          goto out;
        }
        if (data[1] == MBEDTLS_SSL_ALERT_MSG_CLOSE_NOTIFY) {
          /* RFC 5246 7.2.1: answer with our own close_notify; the rest is ignored. */
          t->got_close = 1;
          if (!t->sent_close) {
            send_alert(t, 1, MBEDTLS_SSL_ALERT_MSG_CLOSE_NOTIFY);
            t->sent_close = 1;
          }
          off = len;
          ret = EWS_ECLOSED;
          goto out;
        }
        if (data[0] == MBEDTLS_SSL_ALERT_LEVEL_FATAL) {
          t->alert = data[1];
          ret = fail_open(t, -1, "connection");
          goto out;
        }
        break; /* a warning: ignored */
      case REC_HANDSHAKE:
        /* A renegotiation attempt (we never renegotiate): decline and carry on; not
         * after our close_notify, which promised that nothing more follows
         * (RFC 5246 7.2.1). */
        if (!t->sent_close) send_alert(t, 1, MBEDTLS_SSL_ALERT_MSG_NO_RENEGOTIATION);
        break;
      default:
        ret = fail_open(t, MBEDTLS_SSL_ALERT_MSG_UNEXPECTED_MESSAGE, "unexpected record type");
        goto out;
    }
    if (++t->idle > IDLE_RECORDS_MAX) {
      ret = fail_open(t, MBEDTLS_SSL_ALERT_MSG_UNEXPECTED_MESSAGE, "too many records without data");
      goto out;
    }
  }
  if (off < len && carry(t, buf + off, len - off) != 0) ret = EWS_ENOMEM;
out:
  *at = w ? start : 0;
  *plain = w;
  return ret;
}

int ews_tls_read(ews_tls_t *t, uint8_t *buf, size_t n, size_t *plain) {
  size_t at;
  int r = ews_tls_read_at(t, buf, n, &at, plain);
  if (*plain && at) memmove(buf, buf + at, *plain);
  return r;
}

int ews_tls_read_at(ews_tls_t *t, uint8_t *buf, size_t n, size_t *at, size_t *plain) {
  *plain = 0;
  *at = 0;
  size_t len = t->pend_len + n, off = 0;
  if (t->pend_len) {
    memcpy(buf, t->pend, t->pend_len);
    free(t->pend);
    t->pend = NULL;
    t->pend_len = 0;
  }
  switch (t->state) {
    case T_FAILED:
      return EWS_ETLS;
    case T_NEW: {
      if (!len) return EWS_EAGAIN;
      int r = hs_gate(t, buf, len);
      if (r == 0) r = hs_start(t);
      if (r) return r;
    } /* fall through */
    case T_HANDSHAKE: {
      if (!len) return EWS_EAGAIN;
      tls_hs_t *hs = t->hs;
      hs->in = buf;
      hs->in_n = len;
      tls_current = t;
      int r = ews_tlsk_handshake(&hs->keys, &hs->ssl);
      tls_current = NULL;
      off = len - hs->in_n;
      hs->in = NULL;
      hs->in_n = 0;
      if (r == MBEDTLS_ERR_SSL_WANT_READ) return EWS_EAGAIN;
      if (r != 0) return fail_hs(t, r, "handshake");
      if ((r = hs_finish(t)) != 0) return r;
      break;
    }
    default:
      break;
  }
  if (t->got_close) return EWS_ECLOSED;
  return open_records(t, buf, off, len, at, plain);
}

/* ---- records out ----------------------------------------------------------- */

static int write_iov(ews_tls_t *t, const struct iovec *iov, int iovcnt, size_t *done) {
  *done = 0;
  switch (t->state) {
    case T_OPEN: break;
    case T_FAILED: return EWS_ETLS;
    default: return EWS_EAGAIN;
  }
  if (t->sent_close) return EWS_ECLOSED;
  size_t total = 0;
  for (int i = 0; i < iovcnt; i++) total += iov[i].iov_len;
  cursor_t cur = {iov, iovcnt, 0, 0};
  while (cur.i < iovcnt && iov[cur.i].iov_len == 0) cur.i++;
  while (total) {
    size_t len = total < t->max_plain ? total : t->max_plain;
    int r = seal(t, REC_APP, &cur, NULL, len);
    if (r != 0) return r;
    total -= len;
    *done += len;
  }
  return 0;
}

int ews_tls_write(ews_tls_t *t, const struct iovec *iov, int iovcnt) {
  size_t done;
  return write_iov(t, iov, iovcnt, &done);
}

int ews_tls_write_wq(ews_tls_t *t, ews_writeq_t *plain) {
  if (!plain->bytes) return t->state == T_FAILED ? EWS_ETLS : 0;
  struct iovec stack[64], *iov = stack;
  if (plain->n > 64 && !(iov = malloc(plain->n * sizeof *iov))) return EWS_ENOMEM;
  size_t total, done;
  int cnt = ews_wq_iov(plain, iov, (int)(plain->n > 64 ? plain->n : 64), &total);
  int r = write_iov(t, iov, cnt, &done);
  if (done) ews_wq_consume(plain, done);
  if (iov != stack) free(iov);
  return r;
}

int ews_tls_close_notify(ews_tls_t *t) {
  switch (t->state) {
    case T_OPEN: break;
    case T_FAILED: return EWS_ETLS;
    default: return EWS_EAGAIN;
  }
  if (t->sent_close) return 0;
  int r = seal(t, REC_ALERT, NULL, (const uint8_t[]){1, MBEDTLS_SSL_ALERT_MSG_CLOSE_NOTIFY}, 2);
  if (r == 0) t->sent_close = 1;
  return r;
}
