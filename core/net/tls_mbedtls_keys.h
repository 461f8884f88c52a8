/* tls_mbedtls_keys.h — the one place where the TLS module depends on the mbedTLS version.
 *
 * tls.c lets mbedTLS run the handshake and then protects records itself, so when a
 * handshake ends it needs what mbedTLS keeps to itself: the traffic keys and IVs and
 * the record sequence numbers reached (and, when a handshake fails, the alert the peer
 * sent, for the log). How to get those differs between mbedTLS 2.28 (Debian 12: a key
 * export callback that hands out the key block, sequence numbers in context fields)
 * and 3.x (Debian 13: only the master secret is exported, the fields are private),
 * and so do a few set-up calls whose signatures or names changed in 3.0. All of that
 * is behind this interface; tls.c uses only mbedTLS API that is public and the same in
 * both. Moving to mbedTLS 3.x means rewriting tls_mbedtls_keys.c alone (this interface
 * and ews_tlsk_t fit both); its top comment says exactly what it relies on and what
 * the 3.x replacement of each piece is.
 *
 * Threads: ews_tlsk_conf() runs while a configuration is built; the rest runs on the
 * thread that owns the connection, with no shared state. */
#ifndef EWS_TLS_MBEDTLS_KEYS_H
#define EWS_TLS_MBEDTLS_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

/* Key material captured during one handshake; part of the per-handshake state (zero
 * it before the handshake starts, wipe it with mbedtls_platform_zeroize when done). */
typedef struct {
  /* RFC 5246 6.3 key block, AEAD suites only: client_write_key, server_write_key
   * (keylen bytes each), client_write_IV, server_write_IV (ivlen bytes each); room for
   * the longest (the PRF output is a stream: a shorter key block is its prefix). */
  uint8_t kb[2 * 32 + 2 * 12];
  uint8_t keylen; /* 16 or 32, once ews_tlsk_finish() succeeded */
  uint8_t ivlen;  /* 4 (GCM implicit salt) or 12 (ChaCha20-Poly1305), likewise */
  uint8_t have;   /* 1 once key material was captured */
} ews_tlsk_t;

/* Sets up a server configuration for what tls.c offers: TLS 1.2 only, ECDHE groups
 * x25519 then secp256r1, and the capture of key material by ews_tlsk_handshake().
 * Call after mbedtls_ssl_config_defaults(). 0 or an mbedTLS error. */
int ews_tlsk_conf(mbedtls_ssl_config *conf);

/* Loads a private key file (unencrypted PEM or DER) into an initialised key. 0 or an
 * mbedTLS error. drbg is the configuration's seeded generator (3.x needs one). */
int ews_tlsk_load_key(mbedtls_pk_context *key, const char *file, mbedtls_ctr_drbg_context *drbg);

/* 0 when the private key belongs to the certificate's public key, else an mbedTLS
 * error. */
int ews_tlsk_check_pair(const mbedtls_x509_crt *crt, const mbedtls_pk_context *key,
                        mbedtls_ctr_drbg_context *drbg);

/* One call of mbedtls_ssl_handshake(ssl) (same return) that captures the key material
 * into k when mbedTLS derives it. ssl must be set up from a configuration prepared by
 * ews_tlsk_conf(). */
int ews_tlsk_handshake(ews_tlsk_t *k, mbedtls_ssl_context *ssl);

/* After ews_tlsk_handshake() returned 0: completes k (kb, keylen, ivlen) and sets the
 * sequence numbers of the next record to read (*rseq) and to write (*wseq). Returns 0,
 * or -1 when no usable key material was captured (not an AEAD suite of ours, or no
 * export happened). */
int ews_tlsk_finish(ews_tlsk_t *k, const mbedtls_ssl_context *ssl, uint64_t *rseq,
                    uint64_t *wseq);

/* After ews_tlsk_handshake() returned MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE: the
 * description byte of the alert the peer sent, or -1 when it is not known. */
int ews_tlsk_peer_alert(const mbedtls_ssl_context *ssl);

#endif
