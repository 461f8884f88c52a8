/* frame.h — RFC 6455 framing, I/O-free: the frame-header encoder, masking, and the
 * receive state machine (ews_rx_t) that turns bytes from the wire into validated
 * message data and control frames.
 *
 * The receiver owns no message buffer. It hands payload bytes to the caller as they
 * arrive, unmasked in place in the caller's buffer (the caller's read buffer must be
 * writable). A message that arrives as one complete frame within one ews_rx_feed()
 * call is delivered in a single on_data call with first && last set and a pointer
 * straight into the caller's buffer: no copy. Otherwise the caller accumulates the
 * chunks. Control frames split across reads are gathered in a small buffer that is
 * allocated only for that and freed right after, so an idle receiver holds no heap
 * memory. The per-connection state is a few dozen bytes. */
#ifndef EWS_FRAME_H
#define EWS_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "utf8.h"

enum {
  EWS_OP_CONT = 0x0,
  EWS_OP_TEXT = 0x1,
  EWS_OP_BINARY = 0x2,
  EWS_OP_CLOSE = 0x8,
  EWS_OP_PING = 0x9,
  EWS_OP_PONG = 0xA
};

#define EWS_FRAME_MAX_HEADER 14 /* 2 + 8 (length) + 4 (mask) */
#define EWS_CONTROL_MAX 125

/* Writes a frame header for a payload of `len` bytes into out (at least
 * EWS_FRAME_MAX_HEADER bytes). `mask` is NULL for server-to-client frames, else the
 * 4-byte masking key to put in the header (the payload must be masked separately
 * with ews_mask). Uses the minimal length encoding. Returns the header length. */
size_t ews_frame_header(uint8_t *out, int opcode, int fin, int rsv1, uint64_t len,
                        const uint8_t *mask);

/* Length of the header ews_frame_header would write (without a mask key). */
static inline size_t ews_frame_header_len(uint64_t len) {
  return len < 126 ? 2 : len <= 0xFFFF ? 4 : 10;
}

/* XORs p[0..n) with the 4-byte key, starting at key position `offset` (mod 4), in
 * place (mask.c: 64 bytes at a time with AVX-512 or AVX2 where the CPU has them, a
 * machine word at a time otherwise). Used both to unmask and to mask. */
void ews_mask(uint8_t *p, size_t n, const uint8_t key[4], size_t offset);

/* Which code ews_mask uses for long runs: 2 = AVX-512, 1 = AVX2, 0 = words (other
 * CPUs and architectures). ews_mask_set_variant caps it (2 is the default): for the
 * tests and speed comparisons; not meant to be called while other threads mask. */
int ews_mask_variant(void);
void ews_mask_set_variant(int max_variant);

/* Callbacks of the receiver. Each returns 0 to continue; any other value stops
 * ews_rx_feed, which then returns that value. */
typedef struct {
  /* Payload bytes of a text or binary message, unmasked. `opcode` is the message's
   * (TEXT or BINARY, never CONT). `first`: first chunk of the message; `last`: the
   * final chunk (FIN frame complete). `compressed`: RSV1 was set on the message's
   * first frame (permessage-deflate); such text is NOT UTF-8 checked here, the caller
   * checks the inflated bytes. An empty chunk (n == 0) comes only from an empty frame
   * that ends the message (an empty message, a final empty CONT); empty frames
   * inside a message are skipped. A text chunk is UTF-8 checked before delivery
   * (a code point may straddle two chunks). */
  int (*on_data)(void *ud, int opcode, uint8_t *p, size_t n, int first, int last,
                 int compressed);
  /* A complete control frame (CLOSE, PING or PONG), payload unmasked, at most 125
   * bytes. A CLOSE payload has already been validated (length != 1, a valid close
   * code, a UTF-8 reason). */
  int (*on_control)(void *ud, int opcode, uint8_t *p, size_t n);
} ews_rx_handler_t;

typedef struct {
  uint64_t max_frame;   /* 0 = unlimited; larger frames fail EWS_EFRAME_TOO_BIG */
  uint64_t max_message; /* 0 = unlimited; larger messages fail EWS_EMSG_TOO_BIG
                           (wire bytes; the inflater limits inflated size) */
  uint8_t expect_masked; /* 1 on a server (client frames must be masked: else
                            EWS_EUNMASKED); 0 on a client (frames must not be:
                            else EWS_EMASKED) */
  uint8_t allow_rsv1;    /* permessage-deflate negotiated */
} ews_rx_config_t;

typedef struct {
  const ews_rx_config_t *cfg; /* not owned; must outlive the receiver */
  uint64_t remaining;         /* payload bytes left in the current frame */
  uint64_t msg_len;           /* wire bytes of the current message so far */
  uint8_t *ctl;               /* partial control frame (heap, only while partial) */
  ews_utf8_state_t utf8;      /* across the current text message */
  uint8_t key[4];
  uint8_t key_off;            /* mask position of the next payload byte */
  uint8_t hdr[EWS_FRAME_MAX_HEADER];
  uint8_t hdr_len;            /* bytes of a partial header held in hdr */
  uint8_t ctl_len;
  uint8_t opcode;             /* opcode of the frame being received */
  uint8_t fin;
  uint8_t in_frame;           /* a header was parsed; payload in progress */
  uint8_t msg_opcode;         /* TEXT/BINARY of a message in progress, else 0 */
  uint8_t msg_compressed;
  uint8_t msg_started;        /* on_data(first=1) already delivered */
  uint8_t failed;             /* sticky: negated EWS_E* code that later feeds
                                 return (0 while healthy) */
} ews_rx_t;

void ews_rx_init(ews_rx_t *rx, const ews_rx_config_t *cfg);
/* Frees the partial control buffer, if any. The receiver can be re-initialised. */
void ews_rx_free(ews_rx_t *rx);

/* Consumes buf[0..len) (modifying it in place to unmask); len must be <= INT_MAX
 * (else EWS_EINVAL). Returns len when all was consumed (partial frames are
 * remembered), a callback's non-zero return value, or a negative EWS_E* protocol
 * error (ews_err_close_code gives the close code to send).
 * After an error the receiver is failed: further feeds return the same error.
 * A callback's non-zero return stops the receiver for good, too: how much of buf was
 * consumed is not reported, so resuming with "the rest" is NOT supported; further
 * feeds return EWS_ESTOPPED. Stop a callback only when the connection is going away.
 * Payload pointers given to callbacks are valid only during the call. */
int ews_rx_feed(ews_rx_t *rx, uint8_t *buf, size_t len, const ews_rx_handler_t *h,
                void *ud);

/* 1 when a fragmented message is in progress (for tests and diagnostics). */
static inline int ews_rx_in_message(const ews_rx_t *rx) { return rx->msg_opcode != 0; }

/* Parses a close payload: *code = 1005 for an empty payload, else the code; *reason
 * points into p. Returns 0, or EWS_ECLOSE_PAYLOAD / EWS_ECLOSE_CODE / EWS_EUTF8. */
int ews_close_parse(const uint8_t *p, size_t n, unsigned *code, const uint8_t **reason,
                    size_t *reason_len);

/* Builds a close payload (2-byte code + reason truncated to fit 125 bytes at a UTF-8
 * boundary) into out[125]. Returns its length. code 0 gives an empty payload. */
size_t ews_close_build(uint8_t *out, unsigned code, const char *reason, size_t reason_len);

#endif
