/* tls_mbedtls_keys.c — what the TLS module needs from mbedTLS beyond its stable public
 * API (see tls_mbedtls_keys.h), written for mbedTLS 2.28.
 *
 * What this file relies on, and what replaces each piece in mbedTLS 3.x:
 *
 * 1. The key block. 2.28 (MBEDTLS_SSL_EXPORT_KEYS) calls a configuration-wide
 *    callback, mbedtls_ssl_conf_export_keys_ext_cb(), with the expanded key block
 *    (keys and IVs, RFC 5246 6.3) and its lengths, from inside mbedtls_ssl_handshake().
 *    The callback has no connection argument, so the connection being handshaken is
 *    found through a thread-local pointer set around that call.
 *    3.x: the callback is removed. Register mbedtls_ssl_set_export_keys_cb(ssl, cb, k)
 *    per connection in ews_tlsk_handshake() (no thread-local needed); it receives only
 *    the master secret (type MBEDTLS_SSL_KEY_EXPORT_TLS12_MASTER_SECRET, 48 bytes), both
 *    randoms and the PRF type. Expand it there into the whole kb with
 *    mbedtls_ssl_tls_prf(prf, secret, 48, "key expansion",
 *    server_random || client_random, 64, k->kb, sizeof k->kb) (the PRF output is a
 *    stream, so the key block of every suite is a prefix of it) and set k->have; set
 *    keylen and ivlen in ews_tlsk_finish() from the negotiated suite
 *    (mbedtls_ssl_get_ciphersuite_id_from_ssl: 16 for AES-128-GCM, else 32; IV 4 for
 *    GCM, 12 for ChaCha20-Poly1305).
 *
 * 2. The record sequence numbers at the end of the handshake: read from the context
 *    fields in_ctr (8 bytes, big-endian) and cur_out_ctr[8], public in 2.28's struct.
 *    3.x: both are MBEDTLS_PRIVATE. With renegotiation disabled and TLS 1.2 only they
 *    are always 1 and 1 (each side's Finished is record 0 of the first protected epoch,
 *    nothing else is sent protected before the handshake ends), so a 3.x version can
 *    return 1 and 1; the tests (test_net_tls: data right after the Finished, ticket
 *    resumption; fuzz_tls_handshake) would catch a wrong value at once.
 *
 * 3. The peer's fatal alert on a failed handshake: in_msg[1] when in_msglen >= 2,
 *    fields of 2.28's context. 3.x: private; return -1 (the log line then names the
 *    mbedTLS error instead of the alert) or read them with MBEDTLS_ALLOW_PRIVATE_ACCESS.
 *
 * 4. Set-up calls that changed in 3.0: mbedtls_pk_parse_keyfile() and
 *    mbedtls_pk_check_pair() gained (f_rng, p_rng) arguments (pass
 *    mbedtls_ctr_drbg_random, drbg); mbedtls_ssl_conf_min_version/max_version and
 *    mbedtls_ssl_conf_curves are deprecated for mbedtls_ssl_conf_min_tls_version /
 *    max_tls_version (MBEDTLS_SSL_VERSION_TLS1_2) and mbedtls_ssl_conf_groups
 *    (MBEDTLS_SSL_IANA_TLS_GROUP_X25519, _SECP256R1, _NONE). With TLS 1.3 or
 *    MBEDTLS_USE_PSA_CRYPTO compiled in (Debian 13's 3.6 has both), psa_crypto_init()
 *    must have run before mbedtls_ssl_setup(): call it in ews_tlsk_conf().
 *
 * Nothing else in tls.c depends on the version: the GCM and ChaCha20-Poly1305 calls,
 * session tickets, the BIO callbacks, max_fragment_length and the ciphersuite queries
 * are the same public API in 2.28 and 3.x. */
#include "net/tls_mbedtls_keys.h"

#include <string.h>

#include <mbedtls/version.h>

#if MBEDTLS_VERSION_NUMBER < 0x021C0000 || MBEDTLS_VERSION_NUMBER >= 0x03000000
#error "tls_mbedtls_keys.c is written against mbedTLS 2.28: see its top comment for 3.x"
#endif
#if !defined(MBEDTLS_SSL_EXPORT_KEYS)
#error "mbedTLS needs MBEDTLS_SSL_EXPORT_KEYS (the key block export of piece 1)"
#endif

static _Thread_local ews_tlsk_t *tlsk_current; /* inside ews_tlsk_handshake() */

/* x25519 first: the client's key share is then 32 bytes and the ladder needs no
 * point validation; secp256r1 for clients without it. */
static const mbedtls_ecp_group_id groups[] = {MBEDTLS_ECP_DP_CURVE25519, MBEDTLS_ECP_DP_SECP256R1,
                                              MBEDTLS_ECP_DP_NONE};

static int export_keys(void *p, const unsigned char *ms, const unsigned char *kb, size_t maclen,
                       size_t keylen, size_t ivlen, const unsigned char cr[32],
                       const unsigned char sr[32], mbedtls_tls_prf_types prf) {
  (void)p, (void)ms, (void)cr, (void)sr, (void)prf;
  ews_tlsk_t *k = tlsk_current;
  if (!k) return 0;
  k->have = 0;
  /* AEAD suites only: no MAC keys; 16/32-byte keys; 4 (GCM salt) or 12 (ChaCha) IV. */
  if (maclen != 0 || (keylen != 16 && keylen != 32) || (ivlen != 4 && ivlen != 12)) return 0;
  memcpy(k->kb, kb, 2 * keylen + 2 * ivlen);
  k->keylen = (uint8_t)keylen;
  k->ivlen = (uint8_t)ivlen;
  k->have = 1;
  return 0;
}

int ews_tlsk_conf(mbedtls_ssl_config *conf) {
  mbedtls_ssl_conf_min_version(conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
  mbedtls_ssl_conf_max_version(conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
  mbedtls_ssl_conf_curves(conf, groups);
  mbedtls_ssl_conf_export_keys_ext_cb(conf, export_keys, NULL);
  return 0;
}

int ews_tlsk_load_key(mbedtls_pk_context *key, const char *file, mbedtls_ctr_drbg_context *drbg) {
  (void)drbg;
  return mbedtls_pk_parse_keyfile(key, file, NULL);
}

int ews_tlsk_check_pair(const mbedtls_x509_crt *crt, const mbedtls_pk_context *key,
                        mbedtls_ctr_drbg_context *drbg) {
  (void)drbg;
  return mbedtls_pk_check_pair(&crt->pk, key);
}

int ews_tlsk_handshake(ews_tlsk_t *k, mbedtls_ssl_context *ssl) {
  ews_tlsk_t *outer = tlsk_current; /* NULL: handshakes do not nest */
  tlsk_current = k;
  int r = mbedtls_ssl_handshake(ssl);
  tlsk_current = outer;
  return r;
}

static uint64_t get_be64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v = (v << 8) | p[i];
  return v;
}

int ews_tlsk_finish(ews_tlsk_t *k, const mbedtls_ssl_context *ssl, uint64_t *rseq,
                    uint64_t *wseq) {
  if (!k->have) return -1;
  *rseq = get_be64(ssl->in_ctr);
  *wseq = get_be64(ssl->cur_out_ctr);
  return 0;
}

int ews_tlsk_peer_alert(const mbedtls_ssl_context *ssl) {
  if (ssl->in_msg && ssl->in_msglen >= 2) return ssl->in_msg[1];
  return -1;
}
