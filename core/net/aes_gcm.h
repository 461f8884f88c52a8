/* aes_gcm.h — AES-GCM (NIST SP 800-38D) with AES-NI and PCLMULQDQ, for TLS record
 * protection (aes_gcm.c), and the mbedTLS entry points that route to it
 * (gcm_mbedtls.c).
 *
 * aes_gcm.c owns the cipher: CTR with 8 blocks in flight and GHASH aggregated over 8
 * blocks (H..H^8, one reduction per 8 blocks), and with VAES/VPCLMULQDQ (chosen at run
 * time) 16 blocks per step in 256-bit registers or 32 in 512-bit ones. It keeps no
 * state between calls: the caller passes the AES encryption key schedule (FIPS-197
 * order, nr + 1 round keys of 16 bytes, as mbedtls_aes_context holds it), and H and its
 * powers are derived per call.
 *
 * gcm_mbedtls.c defines mbedtls_gcm_crypt_and_tag() and mbedtls_gcm_auth_decrypt():
 * the executable's definitions interpose the library's, for our record layer (tls.c)
 * and for mbedTLS's own (libmbedcrypto calls them through its PLT). AES contexts with
 * a 12-byte IV take this code when the CPU has AES-NI and PCLMULQDQ; everything else is
 * passed to libmbedcrypto's own functions (dlsym RTLD_NEXT), so errors, limits and
 * results are those of mbedTLS. */
#ifndef EWS_NET_AES_GCM_H
#define EWS_NET_AES_GCM_H

#include <stddef.h>
#include <stdint.h>

/* 1 when this CPU has AES-NI, PCLMULQDQ and SSE4.1 (checked once), else 0. */
int ews_aes_gcm_supported(void);

/* Which VAES/VPCLMULQDQ variant is in use: 2 = 32 blocks per step in zmm registers
 * (AVX-512F/BW too), 1 = 16 blocks in ymm registers (VAES, VPCLMULQDQ, AVX2,
 * AVX-512VL), 0 = none (8 blocks in xmm registers), limited by ews_aes_gcm_set_wide. */
int ews_aes_gcm_wide(void);

/* Caps the variant (0, 1 or 2; 2 is the default), for the tests and the speed tool;
 * not while other threads use this code. */
void ews_aes_gcm_set_wide(int max_level);

/* Encrypts (enc = 1) or decrypts (enc = 0) len bytes of in to out (in == out allowed,
 * otherwise no overlap) with the 12-byte iv, and writes the first tag_len (1..16) bytes
 * of the tag computed over aad and the ciphertext. rk: nr + 1 round keys (nr 10, 12 or
 * 14), 16-byte alignment not needed. Only when ews_aes_gcm_supported(). */
void ews_aes_gcm(int enc, const uint8_t *rk, int nr, const uint8_t iv[12], const uint8_t *aad,
                 size_t aad_len, const uint8_t *in, uint8_t *out, size_t len, uint8_t *tag,
                 size_t tag_len);

/* Encrypts a message given in two pieces: in[0 .. len) to out, then in2[0 .. len2) to
 * out2 (each piece in place or not overlapping anything), as ews_aes_gcm(1, ...) does
 * for the concatenation, and writes the tag over both. len must be a multiple of 16
 * (0 allowed). A TLS record's frame header and payload are sealed without first being
 * gathered into one buffer. */
void ews_aes_gcm_seal2(const uint8_t *rk, int nr, const uint8_t iv[12], const uint8_t *aad,
                       size_t aad_len, const uint8_t *in, uint8_t *out, size_t len,
                       const uint8_t *in2, uint8_t *out2, size_t len2, uint8_t *tag,
                       size_t tag_len);

/* Decrypts and checks tag[0 .. tag_len) in constant time: 0, or -1 with out zeroed. */
int ews_aes_gcm_open(const uint8_t *rk, int nr, const uint8_t iv[12], const uint8_t *aad,
                     size_t aad_len, const uint8_t *in, uint8_t *out, size_t len,
                     const uint8_t *tag, size_t tag_len);

/* Seals one record whose plaintext is out[0 .. len) (already in place) followed by
 * in2[0 .. len2) (anywhere that does not overlap out[0 .. len + len2)): the ciphertext
 * of both goes to out[0 .. len + len2), the tag_len-byte tag to tag. ctx is an
 * mbedtls_gcm_context with its key set; the IV is 12 bytes. Our code when it takes
 * the call (an AES key, len a multiple of 16, ...); otherwise in2 is copied after out
 * and mbedtls_gcm_crypt_and_tag() seals in place. 0 or an mbedTLS error. */
int ews_gcm_seal_split(void *ctx, const unsigned char iv[12], const unsigned char *add,
                       size_t add_len, unsigned char *out, size_t len,
                       const unsigned char *in2, size_t len2, unsigned char *tag,
                       size_t tag_len);

/* Records that took our code (both mbedTLS entry points), on the calling thread: the
 * test that the interposition is live reads it. */
uint64_t ews_aes_gcm_calls(void);

/* libmbedcrypto's own mbedtls_gcm_crypt_and_tag, and mbedtls_gcm_auth_decrypt done as
 * the library does it on top of that (the library's would call our crypt_and_tag
 * through its PLT), as references for tests and the speed tool; same arguments and
 * results. ctx is an mbedtls_gcm_context. */
int ews_gcm_lib_crypt_and_tag(void *ctx, int mode, size_t length, const unsigned char *iv,
                              size_t iv_len, const unsigned char *add, size_t add_len,
                              const unsigned char *input, unsigned char *output, size_t tag_len,
                              unsigned char *tag);
int ews_gcm_lib_auth_decrypt(void *ctx, size_t length, const unsigned char *iv, size_t iv_len,
                             const unsigned char *add, size_t add_len, const unsigned char *tag,
                             size_t tag_len, const unsigned char *input, unsigned char *output);

#endif
