/* tls.c — the wss:// client of edgews-bench: mbedTLS 2.28 (TLS 1.2) driven through
 * memory callbacks over the libuv TCP stream. The receive callback hands mbedTLS
 * the ciphertext of the current read (mbedTLS keeps a partial record itself, so
 * each read is consumed whole); the send callback appends records to the
 * connection's socket buffer, which conn.c writes like plain bytes. WebSocket bytes
 * are staged as plaintext and sealed once per flush (conn_flush -> tls_seal), so a
 * batch of frames costs one record, not one per frame.
 *
 * Offer: ECDHE-ECDSA / ECDHE-RSA with AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305
 * in that order, groups x25519 then secp256r1: the same suite and group whether the
 * server picks by its preference (mbedTLS) or the client's (OpenSSL in Node).
 * Verification: against --ca with the URL's host name (or --sni), or none with
 * --insecure. mbedTLS 2.28 matches only DNS names, so for an IP literal host (and no
 * --sni) no server name is sent and the iPAddress subjectAltName is checked here.
 * The chain is verified when the handshake is done (before the upgrade request),
 * with mbedtls_x509_crt_verify, and the result is cached: a later handshake that
 * presents the very same leaf certificate (byte for byte) is not verified again,
 * as browsers cache verification results. The ServerKeyExchange signature (the
 * proof that the server holds the certificate's key) is still checked by mbedTLS
 * in every full handshake. On this 2-core test machine an ECDSA P-256 verification
 * costs mbedTLS about 1 ms, as much as the two x25519 operations together: without
 * the cache the generator would spend a third more per handshake.
 * Session tickets are offered only with --resume: the first full handshake's session
 * is kept and offered on every later connection; a handshake is counted as resumed
 * when its master secret is the kept session's.
 *
 * A connection keeps its mbedtls_ssl_context (two 16.7 KB record buffers) for its
 * whole life and resets it for the next TCP connection (handshake mode). */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/oid.h>
#include <mbedtls/ssl.h>
#include <mbedtls/version.h>
#include <mbedtls/x509_crt.h>

#include "bench.h"

#if MBEDTLS_VERSION_NUMBER < 0x02100000 || MBEDTLS_VERSION_NUMBER >= 0x03000000
#error "bench/tls.c is written against mbedTLS 2.x (2.28)"
#endif

typedef struct tls_conn {
  mbedtls_ssl_context ssl;
  const uint8_t *in; /* ciphertext of the current read not yet taken */
  size_t in_len;
  uint8_t done; /* handshake complete */
} tls_conn_t;

uint64_t g_tls_full, g_tls_resumed;

static mbedtls_ssl_config g_conf;
static mbedtls_x509_crt g_ca;
static mbedtls_entropy_context g_entropy;
static mbedtls_ctr_drbg_context g_drbg;
static mbedtls_ssl_session g_saved;
static int g_have_saved, g_inited;
static const char *g_name; /* SNI and verified name; NULL for an IP literal */
static uint8_t g_ip[16];   /* the IP literal to find in the certificate */
static size_t g_ip_len;
static uint8_t g_plain[64 * 1024];
static uint8_t *g_verified; /* DER of the last leaf certificate that verified */
static size_t g_verified_len;

static const int g_suites[] = {
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    MBEDTLS_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    0};
static const mbedtls_ecp_group_id g_curves[] = {MBEDTLS_ECP_DP_CURVE25519,
                                                MBEDTLS_ECP_DP_SECP256R1,
                                                MBEDTLS_ECP_DP_SECP384R1, MBEDTLS_ECP_DP_NONE};

static void tls_strerror(int r, char *buf, size_t n) {
  char m[160];
  mbedtls_strerror(r, m, sizeof m);
  snprintf(buf, n, "%s (-0x%04x)", m, (unsigned)-r);
}

/* The server certificate (depth 0) must carry our IP literal as an iPAddress
 * subjectAltName ([7] IMPLICIT OCTET STRING). */
static int verify_cb(void *ud, mbedtls_x509_crt *crt, int depth, uint32_t *flags) {
  (void)ud;
  if (depth != 0 || !g_ip_len) return 0;
  for (const mbedtls_x509_sequence *s = &crt->subject_alt_names; s; s = s->next)
    if (s->buf.tag == (MBEDTLS_ASN1_CONTEXT_SPECIFIC | 7) && s->buf.len == g_ip_len &&
        memcmp(s->buf.p, g_ip, g_ip_len) == 0)
      return 0;
  *flags |= MBEDTLS_X509_BADCERT_CN_MISMATCH;
  return 0;
}

int tls_global_init(void) {
  mbedtls_ssl_config_init(&g_conf);
  mbedtls_x509_crt_init(&g_ca);
  mbedtls_entropy_init(&g_entropy);
  mbedtls_ctr_drbg_init(&g_drbg);
  mbedtls_ssl_session_init(&g_saved);
  g_inited = 1;
  char err[200];
  int r;
  static const char pers[] = "edgews-bench";
  if ((r = mbedtls_ctr_drbg_seed(&g_drbg, mbedtls_entropy_func, &g_entropy,
                                 (const unsigned char *)pers, sizeof pers - 1)) != 0 ||
      (r = mbedtls_ssl_config_defaults(&g_conf, MBEDTLS_SSL_IS_CLIENT,
                                        MBEDTLS_SSL_TRANSPORT_STREAM,
                                        MBEDTLS_SSL_PRESET_DEFAULT)) != 0) {
    tls_strerror(r, err, sizeof err);
    fprintf(stderr, "edgews-bench: TLS setup: %s\n", err);
    return -1;
  }
  mbedtls_ssl_conf_rng(&g_conf, mbedtls_ctr_drbg_random, &g_drbg);
  mbedtls_ssl_conf_min_version(&g_conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
  mbedtls_ssl_conf_max_version(&g_conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
  mbedtls_ssl_conf_ciphersuites(&g_conf, g_suites);
  mbedtls_ssl_conf_curves(&g_conf, g_curves);
  mbedtls_ssl_conf_renegotiation(&g_conf, MBEDTLS_SSL_RENEGOTIATION_DISABLED);
  mbedtls_ssl_conf_session_tickets(&g_conf, g_opt.resume ? MBEDTLS_SSL_SESSION_TICKETS_ENABLED
                                                         : MBEDTLS_SSL_SESSION_TICKETS_DISABLED);
  if (g_opt.insecure) {
    mbedtls_ssl_conf_authmode(&g_conf, MBEDTLS_SSL_VERIFY_NONE);
  } else {
    if ((r = mbedtls_x509_crt_parse_file(&g_ca, g_opt.ca_file)) != 0) {
      if (r > 0)
        snprintf(err, sizeof err, "%d certificate(s) could not be parsed", r);
      else
        tls_strerror(r, err, sizeof err);
      fprintf(stderr, "edgews-bench: --ca %s: %s\n", g_opt.ca_file, err);
      return -1;
    }
    /* verified by us when the handshake is done (see the top comment) */
    mbedtls_ssl_conf_authmode(&g_conf, MBEDTLS_SSL_VERIFY_NONE);
  }
  /* the name to send and verify */
  g_name = g_opt.sni;
  if (!g_name) {
    if (inet_pton(AF_INET, g_opt.host, g_ip) == 1)
      g_ip_len = 4;
    else if (inet_pton(AF_INET6, g_opt.host, g_ip) == 1)
      g_ip_len = 16;
    else
      g_name = g_opt.host;
  }
  return 0;
}

void tls_global_free(void) {
  if (!g_inited) return;
  mbedtls_ssl_session_free(&g_saved);
  free(g_verified);
  g_verified = NULL;
  mbedtls_ssl_config_free(&g_conf);
  mbedtls_x509_crt_free(&g_ca);
  mbedtls_ctr_drbg_free(&g_drbg);
  mbedtls_entropy_free(&g_entropy);
  g_inited = 0;
}

static int bio_send(void *ud, const unsigned char *buf, size_t len) {
  conn_wire_append(ud, buf, len);
  return (int)len;
}

static int bio_recv(void *ud, unsigned char *buf, size_t len) {
  tls_conn_t *t = ((conn_t *)ud)->tls;
  if (t->in_len == 0) return MBEDTLS_ERR_SSL_WANT_READ;
  size_t n = len < t->in_len ? len : t->in_len;
  memcpy(buf, t->in, n);
  t->in += n;
  t->in_len -= n;
  return (int)n;
}

static void fail_tls(conn_t *c, const char *what, int r) {
  char err[200];
  tls_strerror(r, err, sizeof err);
  conn_fail(c, "TLS %s: %s", what, err);
}

/* Verifies the server's chain (--ca, name) unless its leaf is the one verified
 * last. Returns 0, or fails the connection and returns -1. */
static int verify_peer(conn_t *c) {
  if (g_opt.insecure) return 0;
  const mbedtls_x509_crt *crt = mbedtls_ssl_get_peer_cert(&c->tls->ssl);
  if (!crt) {
    conn_fail(c, "TLS: the server sent no certificate");
    return -1;
  }
  if (g_verified && crt->raw.len == g_verified_len &&
      memcmp(crt->raw.p, g_verified, g_verified_len) == 0)
    return 0;
  uint32_t flags = 0;
  int r = mbedtls_x509_crt_verify((mbedtls_x509_crt *)crt, &g_ca, NULL, g_name, &flags,
                                  verify_cb, NULL);
  if (r == 0 && mbedtls_x509_crt_check_extended_key_usage(
                    crt, MBEDTLS_OID_SERVER_AUTH, MBEDTLS_OID_SIZE(MBEDTLS_OID_SERVER_AUTH)) != 0) {
    flags |= MBEDTLS_X509_BADCERT_EXT_KEY_USAGE;
    r = MBEDTLS_ERR_X509_CERT_VERIFY_FAILED;
  }
  if (r != 0) {
    char info[200] = "";
    int n = flags ? mbedtls_x509_crt_verify_info(info, sizeof info, "", flags) : 0;
    while (n > 0 && (info[n - 1] == '\n' || info[n - 1] == ' ')) info[--n] = 0;
    for (char *p = info; *p; p++)
      if (*p == '\n') *p = ';';
    if (!info[0]) tls_strerror(r, info, sizeof info);
    conn_fail(c, "TLS: certificate verification failed: %s", info);
    return -1;
  }
  uint8_t *copy = malloc(crt->raw.len);
  if (copy) {
    memcpy(copy, crt->raw.p, crt->raw.len);
    free(g_verified);
    g_verified = copy;
    g_verified_len = crt->raw.len;
  }
  return 0;
}

void tls_begin(conn_t *c) {
  tls_conn_t *t = c->tls;
  int r;
  if (!t) {
    t = calloc(1, sizeof *t);
    if (!t) {
      conn_fail(c, "TLS: out of memory");
      return;
    }
    mbedtls_ssl_init(&t->ssl);
    c->tls = t;
    if ((r = mbedtls_ssl_setup(&t->ssl, &g_conf)) != 0 ||
        (g_name && (r = mbedtls_ssl_set_hostname(&t->ssl, g_name)) != 0)) {
      fail_tls(c, "setup", r);
      mbedtls_ssl_free(&t->ssl);
      free(t);
      c->tls = NULL;
      return;
    }
    mbedtls_ssl_set_bio(&t->ssl, c, bio_send, bio_recv, NULL);
  } else if ((r = mbedtls_ssl_session_reset(&t->ssl)) != 0 ||
             (g_name && (r = mbedtls_ssl_set_hostname(&t->ssl, g_name)) != 0)) {
    fail_tls(c, "reset", r);
    return;
  }
  t->done = 0;
  t->in_len = 0;
  if (g_opt.resume && g_have_saved && (r = mbedtls_ssl_set_session(&t->ssl, &g_saved)) != 0) {
    fail_tls(c, "set session", r);
    return;
  }
  c->state = CS_TLS;
  r = mbedtls_ssl_handshake(&t->ssl); /* writes the ClientHello */
  if (r != MBEDTLS_ERR_SSL_WANT_READ && r != MBEDTLS_ERR_SSL_WANT_WRITE) {
    fail_tls(c, "handshake", r);
    return;
  }
  conn_flush(c);
}

static void handshake_done(conn_t *c) {
  tls_conn_t *t = c->tls;
  t->done = 1;
  if (verify_peer(c) != 0) return;
  if (!g_res.tls_suite[0])
    snprintf(g_res.tls_suite, sizeof g_res.tls_suite, "%s", mbedtls_ssl_get_ciphersuite(&t->ssl));
  const mbedtls_ssl_session *s = t->ssl.session;
  if (g_opt.resume && g_have_saved && s && memcmp(s->master, g_saved.master, sizeof s->master) == 0) {
    g_tls_resumed++;
  } else {
    g_tls_full++;
    if (g_opt.resume) { /* keep the newest full session (and its ticket) */
      mbedtls_ssl_session_free(&g_saved);
      mbedtls_ssl_session_init(&g_saved);
      g_have_saved = mbedtls_ssl_get_session(&t->ssl, &g_saved) == 0;
    }
  }
  conn_tls_ready(c);
}

void tls_read(conn_t *c, const uint8_t *p, size_t n) {
  tls_conn_t *t = c->tls;
  if (!t) return;
  t->in = p;
  t->in_len = n;
  if (!t->done) {
    int r = mbedtls_ssl_handshake(&t->ssl);
    if (r == MBEDTLS_ERR_SSL_WANT_READ || r == MBEDTLS_ERR_SSL_WANT_WRITE) return;
    if (r != 0) {
      fail_tls(c, "handshake", r);
      return;
    }
    handshake_done(c);
  }
  while (!c->closing) {
    int r = mbedtls_ssl_read(&t->ssl, g_plain, sizeof g_plain);
    if (r > 0) {
      conn_plain_in(c, g_plain, (size_t)r);
      continue;
    }
    if (r == MBEDTLS_ERR_SSL_WANT_READ || r == MBEDTLS_ERR_SSL_WANT_WRITE) break;
    if (r == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY || r == 0) {
      if (c->state == CS_CLOSING)
        conn_abort(c);
      else
        conn_fail(c, "the server ended TLS (close_notify) %s",
                  c->state == CS_HANDSHAKE ? "during the handshake" : "while open");
      break;
    }
    fail_tls(c, "read", r);
    break;
  }
  t->in_len = 0;
}

void tls_seal(conn_t *c, const uint8_t *p, size_t n) {
  tls_conn_t *t = c->tls;
  while (n > 0) {
    int r = mbedtls_ssl_write(&t->ssl, p, n);
    if (r < 0) {
      fail_tls(c, "write", r);
      return;
    }
    p += r;
    n -= (size_t)r;
  }
}

void tls_conn_free(conn_t *c) {
  if (!c->tls) return;
  mbedtls_ssl_free(&c->tls->ssl);
  free(c->tls);
  c->tls = NULL;
}
