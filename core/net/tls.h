/* tls.h — server-side TLS 1.2 (wss://) between libuv and the HTTP/WebSocket layers.
 *
 * mbedTLS runs the handshake only. Once it is over, the connection switches to a
 * record layer of our own (TLS 1.2 AEAD records: AES-GCM and ChaCha20-Poly1305, keyed
 * from mbedTLS's key export) and the mbedtls_ssl_context is freed. That makes an idle
 * TLS connection cost 1568 bytes of heap with AES-GCM (992 with ChaCha20) instead of
 * the ~35 KB a plain mbedTLS server context keeps (two fixed 16.7 KB record buffers:
 * Debian's build has no MBEDTLS_SSL_VARIABLE_BUFFER_LENGTH, and nothing at run time
 * shrinks or drops them; MBEDTLS_SSL_MAX_FRAGMENT_LENGTH only limits record sizes), lets
 * records be decrypted in place in the caller's read buffer (no copy through mbedTLS's
 * input buffer), and lets a whole plaintext write queue be encrypted straight into the
 * ciphertext queue as few full-size records. A connection holds mbedTLS state (~39 KB)
 * only from a complete ClientHello to the end of its handshake. Nothing here does I/O
 * or needs uv.h.
 *
 * Protocol: TLS 1.2 only (mbedTLS 2.28 does not support TLS 1.3: its config.h calls
 * MBEDTLS_SSL_PROTO_TLS1_3_EXPERIMENTAL a partial prototype with no public API, and
 * Debian does not enable it). ECDHE key exchange with ECDSA or
 * RSA certificates; AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305; x25519 and secp256r1.
 * Session tickets (stateless resumption, keys in the ctx, rotated every 6 hours) make
 * a reconnect skip the ECDHE and signature. No renegotiation, no client certificates,
 * no ALPN (WebSocket clients assume http/1.1).
 *
 * Threads: an ews_tls_ctx_t may be shared by all workers when ews_tls_ctx_shareable()
 * says so (mbedTLS built with MBEDTLS_THREADING_C, as Debian's is): the mbedtls_ssl_config,
 * certificate chain and key are read-only after loading; the CTR_DRBG and the session
 * ticket keys are locked by mbedTLS's own mutexes, and they are used only during
 * handshakes (records use sequence-number nonces, never the RNG), so there is no lock
 * on the data path. Reference counts are atomic, so any thread may drop the last one.
 * An ews_tls_t belongs to one worker thread.
 *
 * Read path: every read lands in the caller's buffer after ews_tls_read_reserve() bytes
 * (room for the unfinished record carried over from the last read); ews_tls_read()
 * decrypts in place and leaves the plaintext contiguous at the start of that buffer
 * (ews_tls_read_at: where the first record was decrypted, without that copy).
 * Write path: plaintext is queued as today; at flush time ews_tls_write_wq() encrypts
 * it into the ciphertext queue given to ews_tls_new(), which is then written as usual. */
#ifndef EWS_TLS_H
#define EWS_TLS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "net/buf.h"
#include "net/writeq.h"

typedef struct ews_tls_ctx ews_tls_ctx_t;
typedef struct ews_tls ews_tls_t;

/* Largest plaintext per record we write: a full record (5-byte header, 8-byte explicit
 * nonce for GCM, 16-byte tag) fills one EWS_BUF_BLOCK pool block exactly. */
#define EWS_TLS_MAX_PLAIN (EWS_BUF_BLOCK - 29u)
/* Largest carry-over ews_tls_read_reserve() can ask for (one maximal record). */
#define EWS_TLS_MAX_RESERVE (5u + 16384u + 256u)

/* ---- server configuration -------------------------------------------------- */

/* Loads a PEM certificate chain (leaf first, then intermediates) and its private key
 * (unencrypted PEM or DER; EC or RSA) and builds the configuration. Returns a ctx with
 * one reference, or NULL and sets *err (if err is non-NULL) to a malloc'd reason naming
 * the file and mbedTLS's error text; the caller frees it. */
ews_tls_ctx_t *ews_tls_ctx_new(const char *cert_file, const char *key_file, char **err);
void ews_tls_ctx_ref(ews_tls_ctx_t *ctx);
void ews_tls_ctx_unref(ews_tls_ctx_t *ctx); /* NULL is a no-op */
/* 1 when one ctx may be shared by all worker threads (see above); 0 means each worker
 * must load its own. */
int ews_tls_ctx_shareable(void);
/* SIGHUP reload of a slot owned by one thread: loads the files into a new ctx and, on
 * success, stores it in *slot and drops the slot's reference to the old one
 * (connections still handshaking on the old ctx hold their own reference; established
 * connections hold none). On failure *slot is untouched (the old ctx stays in use),
 * *err is set as for ews_tls_ctx_new and EWS_ETLS or EWS_ENOMEM is returned.
 * With a ctx shared by workers, do not swap a pointer the workers read concurrently
 * (a worker could take a reference on a ctx being freed): build the new ctx with
 * ews_tls_ctx_new() on the main thread, give each worker its own reference through
 * its post queue, and let each worker swap its own slot and unref the old ctx. */
int ews_tls_ctx_reload(ews_tls_ctx_t **slot, const char *cert_file, const char *key_file,
                       char **err);

/* ---- client configuration (outbound wss://, net/client.h) ------------------ */

/* A client configuration: TLS 1.2 with the server's suites and groups; with verify,
 * the server's certificate must chain to a certificate of ca_file (PEM, e.g. the
 * system store /etc/ssl/certs/ca-certificates.crt) and carry the host name given to
 * ews_tls_client_start; without, any certificate is accepted (ca_file unused).
 * NULL and *err (malloc'd, names the file) when the CA file cannot be loaded. */
ews_tls_ctx_t *ews_tls_client_ctx_new(const char *ca_file, int verify, char **err);

/* ---- one connection -------------------------------------------------------- */

/* A connection's TLS state. Ciphertext for the peer (handshake messages, records,
 * alerts) is appended to `out` (pool blocks from `pool`); the caller owns `out` and
 * writes it to the socket. Holds no mbedTLS state until a whole ClientHello record has
 * arrived (120 bytes until then, plus the bytes of an unfinished first record). Takes
 * a reference on ctx until the handshake ends. NULL when out of memory. */
ews_tls_t *ews_tls_new(ews_tls_ctx_t *ctx, ews_writeq_t *out, ews_bufpool_t *pool);
/* The client side of a connection on a client ctx: as ews_tls_new. Then
 * ews_tls_client_start(t, host) queues the ClientHello on `out` (host: SNI and the
 * name to verify); 0, EWS_ETLS or EWS_ENOMEM. Afterwards ews_tls_read drives the
 * handshake as on the server; a refused server certificate fails it with EWS_ECERT
 * (ews_tls_reason: "certificate verification failed: ..."). */
ews_tls_t *ews_tls_client_new(ews_tls_ctx_t *ctx, ews_writeq_t *out, ews_bufpool_t *pool);
int ews_tls_client_start(ews_tls_t *t, const char *host);
/* Frees everything (not `out`, which the caller owns). NULL is a no-op. */
void ews_tls_free(ews_tls_t *t);

/* Bytes the caller must leave free at the start of its read buffer: the next read goes
 * to buf + ews_tls_read_reserve(t), at most cap - reserve bytes. At most
 * EWS_TLS_MAX_RESERVE; 0 during the handshake and between whole records. */
size_t ews_tls_read_reserve(const ews_tls_t *t);

/* Feeds n new bytes, found at buf + ews_tls_read_reserve(t) (the value before this
 * call), and drives the handshake or decrypts records in place. *plain is set to the
 * number of plaintext bytes now at buf[0 .. *plain) (contiguous; may be 0). Returns
 *   0            handshake done; *plain bytes of application data (maybe none).
 *   EWS_EAGAIN   handshake still in progress: needs more bytes (the caller's
 *                handshake timer bounds how long). *plain is 0.
 *   (A close_notify from the peer is answered with ours automatically.)
 *   EWS_ECLOSED  the peer sent close_notify. *plain still holds the data that came
 *                before it; treat as EOF afterwards.
 *   EWS_ECERT    (client) the server's certificate was refused; as EWS_ETLS.
 *   EWS_ETLS     fatal: bad handshake, bad record, fatal alert from the peer. An alert
 *                may have been queued on `out`: flush it, then close. The mbedTLS state
 *                is already freed; ews_tls_reason() says why.
 *   EWS_ENOMEM
 * In every case, bytes may have been appended to `out` (handshake flights, alerts):
 * the caller schedules a flush when out->bytes > 0. */
int ews_tls_read(ews_tls_t *t, uint8_t *buf, size_t n, size_t *plain);

/* As ews_tls_read, but the plaintext is left at buf[*at .. *at + *plain) (where the
 * first record was decrypted), saving the copy to the front. *at is 0 when *plain is. */
int ews_tls_read_at(ews_tls_t *t, uint8_t *buf, size_t n, size_t *at, size_t *plain);

/* 1 once the handshake is over and records can flow. */
int ews_tls_handshake_done(const ews_tls_t *t);

/* Encrypts plaintext into records appended to `out`: the data is coalesced across the
 * iovecs into records of up to EWS_TLS_MAX_PLAIN bytes (or the client's negotiated
 * max_fragment_length), and a small record goes into the tail block of `out` when it
 * fits there. Returns 0, EWS_EAGAIN (handshake not done: keep the plaintext queued),
 * EWS_ECLOSED (close_notify already sent), EWS_ETLS (connection failed) or EWS_ENOMEM
 * (nothing of the failing record was queued; earlier records were). */
int ews_tls_write(ews_tls_t *t, const struct iovec *iov, int iovcnt);
/* Encrypts everything in the plaintext queue `plain` and empties it (releasing its
 * buffers). Call at flush time, once per loop iteration, so that every frame queued in
 * the iteration shares records. Same returns as ews_tls_write; on error `plain` keeps
 * what was not encrypted. */
int ews_tls_write_wq(ews_tls_t *t, ews_writeq_t *plain);

/* Called on a quiet connection every EWS_TLS_QUIET_MS or so: when no record was
 * sealed or opened since the previous call, frees the record cipher contexts (with
 * AES-GCM ~1.5 KB); the next record builds them again from the traffic keys (a few
 * microseconds), so an idle connection keeps only its keys. Returns 1 while contexts
 * are held (call again later), 2 when this call freed them, 0 when none are held. */
#define EWS_TLS_QUIET_MS 500u
int ews_tls_quiet(ews_tls_t *t);
/* 1 (once) when a record rebuilt a cipher context since the last call: the caller
 * makes sure ews_tls_quiet runs again within EWS_TLS_QUIET_MS. */
int ews_tls_take_rebuilt(ews_tls_t *t);

/* Queues a close_notify alert (once). After it, writes return EWS_ECLOSED. Returns 0, or
 * EWS_EAGAIN when the handshake is not done (nothing to protect: just close). */
int ews_tls_close_notify(ews_tls_t *t);

/* Why the connection failed (or "" if it did not), formatted into buf, e.g.
 * "handshake: SSL - Processing of the ClientHello handshake message failed" or
 * "not TLS (plain HTTP on a TLS port?)". Returns buf. */
const char *ews_tls_reason(const ews_tls_t *t, char *buf, size_t len);
/* The negotiated ciphersuite's IANA name, or NULL before the handshake is done. */
const char *ews_tls_cipher(const ews_tls_t *t);
/* 1 if this connection resumed a session (ticket), else 0. */
int ews_tls_resumed(const ews_tls_t *t);

#endif
