/* deflate.h — permessage-deflate (RFC 7692), I/O-free: negotiation of the
 * extension, a compressor for outgoing messages and a bounded decompressor for
 * incoming ones, on top of zlib (raw DEFLATE). zlib types stay inside deflate.c.
 *
 * Memory model (sizes as zlib 1.2.13 allocates them on x86-64; see the .c file):
 *  - ews_pmd_worker_t (one per worker thread, not thread-safe) owns the shared
 *    compressors (no context takeover, one per window size in use, created on first
 *    use) and a small cache of idle inflate streams.
 *  - A connection holds an ews_inflater_t (embedded, < 64 bytes) and, only in
 *    `dedicated` mode with context takeover, an ews_deflater_t pointer.
 *  - Compressor: (1 << (window_bits + 2)) + (1 << (mem_level + 9)) bytes plus a
 *    6 KB struct, measured: 268 KB at window 15 / mem_level 8, 203 KB at 15/7,
 *    137 KB at 14/7, 72 KB at 13/6, 39 KB at 12/5, 9 KB at 9/1. `shared`: per
 *    worker (one per window size in use), so 0 bytes per connection. `dedicated`:
 *    that much per connection, allocated at its first compressed send.
 *  - Decompressor: a 32 KiB window (whatever client_max_window_bits was agreed) + a
 *    7 KB struct, measured 40 KB. Taken at the first compressed message. When
 *    client_no_context_takeover was agreed it goes back to the worker's cache at the
 *    end of each message, so an idle connection holds none; with takeover the
 *    connection keeps it until freed.
 *
 * zlib and window bits 8: zlib (>= 1.2.9) rejects windowBits 8 for raw deflate. Our
 * compressor therefore runs zlib at 9 when 8 was agreed. That is still correct: zlib
 * never emits a match distance above (1 << windowBits) - 262, i.e. 250 at 9, which
 * fits a 256-byte window (the tests inflate such output with a 256-byte window). So
 * an offer of server_max_window_bits=8 is accepted and answered with 8, not
 * declined and not answered with 9 (which would break the client's limit). Our
 * inflater always runs with 32 KiB, so client_max_window_bits=8 needs nothing
 * special. */
#ifndef EWS_DEFLATE_H
#define EWS_DEFLATE_H

#include <stddef.h>
#include <stdint.h>

#include "utf8.h"

/* Longest response ews_pmd_negotiate writes (all four parameters). */
#define EWS_PMD_RESPONSE_MAX 128

/* ------------------------------------------------------------------------------
 * Configuration and negotiation (RFC 7692 sections 5 and 7.1) */

enum {
  EWS_PMD_SHARED = 0,   /* compress with no context takeover, one compressor per
                           worker: zero compressor memory per connection */
  EWS_PMD_DEDICATED = 1 /* one compressor per connection keeping its context
                           (unless the client asks for server_no_context_takeover) */
};

/* The shared compressor's engine (ews_pmd_config_t.engine). */
enum {
  EWS_PMD_ENGINE_ZLIB = 0,      /* zlib, ending each message with a sync flush */
  EWS_PMD_ENGINE_LIBDEFLATE = 1 /* libdeflate for the shared compressor with a 32 KiB
                                   window and level >= 1 (zlib for smaller windows
                                   and level 0): faster, a better ratio; each message
                                   holds a final DEFLATE block followed by an empty
                                   non-final stored block (see
                                   ews_deflater_new_libdeflate). Shared mode only. */
};

typedef struct {
  uint8_t enabled;                    /* 0: never negotiate */
  uint8_t mode;                       /* EWS_PMD_SHARED or EWS_PMD_DEDICATED */
  uint8_t level;                      /* zlib level 0..9 */
  uint8_t mem_level;                  /* zlib memLevel 1..9 (compressor hash and
                                         buffer size, see above) */
  uint8_t server_window_bits;         /* our compression window 8..15 (both modes);
                                         a client's server_max_window_bits lowers it */
  uint8_t client_window_bits;         /* 0: accept the client's window; 8..15: ask the
                                         client to use at most this (only possible
                                         when it offered client_max_window_bits);
                                         prefer >= 9: zlib-based clients cannot
                                         deflate raw with 8 */
  uint8_t client_no_context_takeover; /* ask the client to reset per message (then
                                         idle connections hold no inflate state) */
  size_t threshold;                   /* messages shorter than this are sent
                                         uncompressed: the caller's decision */
  uint8_t engine;                     /* EWS_PMD_ENGINE_ZLIB (default) or
                                         EWS_PMD_ENGINE_LIBDEFLATE (mode must be
                                         EWS_PMD_SHARED) */
} ews_pmd_config_t;

/* Defaults: disabled, shared, level 1, mem_level 8, window 15, client window not
 * limited, client_no_context_takeover requested, threshold 128, engine zlib. */
void ews_pmd_config_default(ews_pmd_config_t *cfg);

/* 0 when every field is in range, else EWS_EINVAL (NULL cfg too; engine
 * libdeflate with mode dedicated too). */
int ews_pmd_config_check(const ews_pmd_config_t *cfg);

/* The parameters in force on a connection after a successful negotiation. */
typedef struct {
  uint8_t server_no_context_takeover; /* 1: our compressor forgets everything after
                                         each message */
  uint8_t client_no_context_takeover; /* 1: the client does; our inflater may reset
                                         after each message */
  uint8_t server_window_bits;         /* 8..15: our compressed data may refer this
                                         far back (8 runs zlib at 9, see above) */
  uint8_t client_window_bits;         /* 8..15: the client's window (our inflater
                                         uses 32 KiB whatever it is) */
} ews_pmd_params_t;

/* Chooses the first acceptable permessage-deflate offer in the client's
 * Sec-WebSocket-Extensions value offers[0..len) (a comma-separated list; other
 * extensions are ignored). An offer is declined, and the next one considered, when
 * it is malformed (grammar of RFC 6455 section 9.1 with optional whitespace around
 * ';' and '='; a quoted value must unescape to a token), has an unknown or duplicate
 * parameter, a value on server_no_context_takeover / client_no_context_takeover, no
 * value on server_max_window_bits, or a window-bits value that is not 8..15 written
 * without leading zeros. Names compare case-insensitively.
 * The response never carries a parameter the client did not allow:
 * client_max_window_bits only when offered (value <= the offered one); in shared
 * mode server_no_context_takeover always (a server may always declare it); in
 * dedicated mode only when the client asked for it; server_max_window_bits when the
 * client limited it or our window is below 15; client_no_context_takeover when the
 * configuration asks for it or the client offered it.
 * Writes the response value ("permessage-deflate; ...", not NUL-terminated) into
 * resp[0..cap) and the agreed parameters into *params. Returns its length (> 0),
 * 0 when no offer is acceptable or cfg->enabled is 0 (send no extension header;
 * *params untouched), or EWS_EINVAL (NULL argument, invalid cfg, cap too small:
 * EWS_PMD_RESPONSE_MAX always suffices). offers may be NULL when len is 0. */
int ews_pmd_negotiate(const ews_pmd_config_t *cfg, const char *offers, size_t len,
                      ews_pmd_params_t *params, char *resp, size_t cap);

/* ------------------------------------------------------------------------------
 * Memory: allocation hooks and the growable output buffer */

/* Allocation hooks for zlib state and for this module's own structs (tests count
 * with them). A NULL pointer to this struct, or either function NULL, means
 * malloc/free for both. Copied where it is passed: it need not outlive the call.
 * Output buffers (ews_zbuf_t) do not use these hooks. */
typedef struct {
  void *(*alloc)(void *ud, size_t n);
  void (*free)(void *ud, void *p);
  void *ud;
} ews_zalloc_t;

/* A growable output buffer that functions here append to. The caller owns it.
 * Invariant: len <= cap. Bytes before the starting len are left untouched, so the
 * caller can keep headroom for a frame header (or anything) in front.
 * grow, when set, must make p hold at least `need` bytes keeping p[0..len) (it may
 * move p) and update p and cap; it returns 0, or non-zero when it cannot (the
 * operation then fails with EWS_ENOMEM). It lets output go straight into the
 * caller's own buffer type (e.g. a reference-counted send buffer). When grow is
 * NULL, p is NULL or from malloc and realloc is used; free it with ews_zbuf_free. */
typedef struct ews_zbuf {
  uint8_t *p;
  size_t len;
  size_t cap;
  int (*grow)(struct ews_zbuf *b, size_t need);
  void *ud; /* for grow */
} ews_zbuf_t;

/* Makes cap >= need. 0 or EWS_ENOMEM (buffer unchanged). */
int ews_zbuf_reserve(ews_zbuf_t *b, size_t need);
/* free(p) for a realloc-managed buffer (grow == NULL); zeroes *b. */
void ews_zbuf_free(ews_zbuf_t *b);

/* ------------------------------------------------------------------------------
 * The per-worker context */

typedef struct ews_pmd_worker ews_pmd_worker_t;

/* Creates a worker context using a copy of *cfg (which must pass
 * ews_pmd_config_check, else EWS_EINVAL) and the hooks za (may be NULL). Allocates
 * only the small context itself; compressors and streams come on first use.
 * Returns 0 and sets *out, or EWS_EINVAL / EWS_ENOMEM. */
int ews_pmd_worker_new(ews_pmd_worker_t **out, const ews_pmd_config_t *cfg,
                       const ews_zalloc_t *za);
/* Frees the shared compressors and cached streams. Every ews_inflater_t that used
 * this worker must have been freed first; deflaters made by ews_pmd_deflater_for
 * for connections are the connections' to free. NULL is a no-op. */
void ews_pmd_worker_free(ews_pmd_worker_t *w);
/* The worker's configuration (its copy). */
const ews_pmd_config_t *ews_pmd_worker_config(const ews_pmd_worker_t *w);

/* ------------------------------------------------------------------------------
 * Compressor */

typedef struct ews_deflater ews_deflater_t;

/* A compressor: level 0..9, window_bits 8..15, mem_level 1..9; no_context_takeover
 * resets it after every message. Hooks as for the worker. Returns 0 and sets *out,
 * EWS_EINVAL for an out-of-range argument, EWS_ENOMEM. */
int ews_deflater_new(ews_deflater_t **out, int level, int window_bits, int mem_level,
                     int no_context_takeover, const ews_zalloc_t *za);
void ews_deflater_free(ews_deflater_t *d); /* NULL is a no-op */

/* A compressor without context takeover, with a 32 KiB window, on libdeflate
 * (level 1..9, libdeflate's levels of those numbers). libdeflate only writes whole
 * DEFLATE streams, whose last block is final (BFINAL = 1); each message is that
 * stream followed by the byte 00: an empty non-final stored block whose 00 00 FF FF
 * has been removed (RFC 7692 7.2.1), so the peer's inflater, after restarting at the
 * final block (7.2.3.4), ends the message on a block boundary exactly as after a
 * zlib sync flush. Peers that fail on a final block cannot read it. The
 * libdeflate state (measured with libdeflate 1.14: 200 KB at level 1, 652 KB at
 * levels 2-9) is libdeflate's own malloc; the hooks za cover the small struct. Returns 0, EWS_EINVAL (level),
 * EWS_ENOMEM. ews_pmd_deflater_for makes it for the worker's shared 15-bit slot
 * when the config's engine is EWS_PMD_ENGINE_LIBDEFLATE. */
int ews_deflater_new_libdeflate(ews_deflater_t **out, int level, const ews_zalloc_t *za);
/* 1 when d runs on libdeflate. */
int ews_deflater_is_libdeflate(const ews_deflater_t *d);

/* The compressor for a connection's next message. With server_no_context_takeover
 * agreed, the worker's shared compressor for params->server_window_bits (created on
 * first use; owned by the worker; on libdeflate for window 15 and level >= 1 when
 * the config's engine says so). Otherwise the connection's own *conn, created on
 * first use with the worker's level and mem_level (owned by the connection: free it
 * with ews_deflater_free when the connection goes). Returns 0 and sets *out, or
 * EWS_ENOMEM / EWS_EINVAL. */
int ews_pmd_deflater_for(ews_pmd_worker_t *w, const ews_pmd_params_t *params,
                         ews_deflater_t **conn, ews_deflater_t **out);

/* An upper bound of ews_deflate_message's output for n input bytes. Reserving
 * out->len + this (plus headroom) before compressing means one allocation and no
 * regrowth. */
size_t ews_deflate_bound(const ews_deflater_t *d, size_t n);

/* Compresses one whole message p[0..n) and appends the result to out: DEFLATE data
 * flushed with an empty stored block whose 00 00 FF FF tail is removed (RFC 7692
 * 7.2.1), ready to be the payload of a frame with RSV1 set. With context takeover
 * the message may refer to earlier messages of this compressor, so messages must be
 * sent in the order they were compressed, all to the same peer. Without it, the
 * output depends on nothing else and may be sent to many peers ("compress once,
 * send to many"): to every connection whose params.server_window_bits >= this
 * compressor's window. Output grows out as needed (see ews_deflate_bound).
 * Returns 0, or EWS_ENOMEM (out could not grow) / EWS_EZLIB; on error out->len is
 * back to its value at the call and the compressor has been reset, so it stays
 * usable (a fresh context is always valid for the peer). */
int ews_deflate_message(ews_deflater_t *d, const uint8_t *p, size_t n, ews_zbuf_t *out);

/* As ews_deflate_message, then turns the output into a complete unmasked frame (FIN
 * and RSV1 set, `opcode` TEXT or BINARY) without copying: it first appends
 * EWS_FRAME_MAX_HEADER bytes of headroom, compresses after them, then writes the
 * frame header right in front of the payload. The frame is
 * out->p[*frame_off .. out->len); the few headroom bytes before *frame_off are
 * unused. Same errors (plus EWS_EINVAL for another opcode); on error out->len is
 * restored. */
int ews_deflate_frame(ews_deflater_t *d, int opcode, const uint8_t *p, size_t n,
                      ews_zbuf_t *out, size_t *frame_off);

/* Forgets the compression context. Needed before the next message of a
 * context-keeping compressor whose connection was sent a compressed message this
 * compressor did not make (e.g. a broadcast from the shared compressor): the peer's
 * window then holds that message, not ours. When `sent` is given, it is the
 * uncompressed content of that message, and its last window's worth becomes the new
 * context (the peer's window ends with exactly those bytes), so compression stays
 * good; sent == NULL just empties the context. Returns 0 or EWS_EZLIB (the
 * compressor is then reset without a context, still usable). */
int ews_deflater_reset(ews_deflater_t *d, const uint8_t *sent, size_t n);

/* The window bits this compressor was created for (8..15). */
int ews_deflater_window_bits(const ews_deflater_t *d);

/* ------------------------------------------------------------------------------
 * Decompressor */

typedef struct ews_zstream ews_zstream_t; /* opaque inflate stream */

/* Per-connection decompression state; embed it. Fields are private. */
typedef struct {
  ews_zstream_t *zs;      /* inflate stream while held, else NULL */
  uint64_t limit;         /* max inflated bytes per message; UINT64_MAX: none */
  uint64_t total;         /* inflated bytes of the current message */
  ews_utf8_state_t utf8;  /* of the current text message */
  int err;                /* sticky error (negative), 0 while healthy */
  uint8_t window_bits;
  uint8_t no_context_takeover;
  uint8_t in_msg;
  uint8_t text;
  uint8_t fresh;          /* no input went into the stream since (re)start in this
                             message */
  uint32_t restarts;      /* final blocks (stream ends) in the current message */
  uint64_t consumed;      /* compressed bytes of the current message */
} ews_inflater_t;

/* A DEFLATE stream that ends (a block with BFINAL) inside a message is restarted with
 * its window, which costs a window-sized copy. A message may end this many streams,
 * plus one per EWS_INFLATE_BYTES_PER_RESTART compressed bytes; beyond that
 * ews_inflate fails with EWS_EINFLATE_BLOCKS (close 1007), so the work per input byte
 * stays bounded (a message of 2-byte empty final blocks cannot stall a worker).
 * Real encoders end a message's stream at most once. */
#define EWS_INFLATE_FREE_RESTARTS 8u
#define EWS_INFLATE_BYTES_PER_RESTART 4096u

/* Prepares an inflater for the agreed parameters (reset per message when
 * client_no_context_takeover). The window is always 32 KiB, whatever
 * client_window_bits says, so that whether a message is accepted never depends on
 * how it was split (see deflate.c). max_message is the hard limit
 * on one message's inflated size, 0 for none. Allocates nothing. */
void ews_inflater_init(ews_inflater_t *inf, const ews_pmd_params_t *params,
                       uint64_t max_message);

/* Changes the limit on one message's inflated size (0: none), from the next byte on:
 * a connection's limit is raised once it has authenticated. */
static inline void ews_inflater_set_limit(ews_inflater_t *inf, uint64_t max_message) {
  inf->limit = max_message ? max_message : UINT64_MAX;
}

/* Releases the stream (back to w's cache, or freed). Use the same w (or NULL) in
 * every call on one inflater. The inflater can be initialised again. */
void ews_inflater_free(ews_inflater_t *inf, ews_pmd_worker_t *w);

/* Feeds the compressed payload bytes p[0..n) of a message (RSV1 set), as the frame
 * receiver hands them out: first/last as in its on_data (a message may arrive in
 * any number of chunks; n may be 0). Inflated bytes are appended to out, which the
 * caller may also empty between calls (the limit counts the message's total, not
 * out->len). At `last` the 00 00 FF FF tail is appended internally and the data
 * must end on a DEFLATE block boundary. `text` (read at `first`): validate the
 * inflated bytes as UTF-8 while inflating, failing at the first bad byte.
 * Data after a block with BFINAL set starts a new DEFLATE stream (RFC 7692
 * 7.2.3.4); with context takeover the window carries over. A message without any
 * payload byte inflates to an empty message.
 * Allocation: the inflate stream is taken (from w's cache or allocated) at the first
 * call of a message when not already held; out grows (by doubling) only as output
 * appears and never beyond the limit: the output capacity added for one message is
 * at most the limit.
 * Returns 0, or: EWS_EMSG_TOO_BIG as soon as the inflated size would pass the limit;
 * EWS_EINFLATE for invalid data (including too-far distances and data that does not
 * end on a block boundary); EWS_EINFLATE_BLOCKS for more stream ends than the
 * message may have (see EWS_INFLATE_FREE_RESTARTS); EWS_EUTF8 for invalid or (at last) truncated UTF-8 in a
 * text message; EWS_ENOMEM when the stream or out cannot be allocated; EWS_EINVAL
 * for first=1 inside a message or a chunk without a message; EWS_EZLIB otherwise.
 * Every error is sticky (later calls return it): close the connection with
 * ews_err_close_code(err) and free the inflater. Bytes appended before an error stay
 * in out. */
int ews_inflate(ews_inflater_t *inf, ews_pmd_worker_t *w, const uint8_t *p, size_t n,
                int first, int last, int text, ews_zbuf_t *out);

/* 1 while the inflater holds a stream (for tests and memory accounting). */
static inline int ews_inflater_holds_state(const ews_inflater_t *inf) {
  return inf->zs != NULL;
}

#endif
