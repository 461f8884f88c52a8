/* writeq.h — a connection's queue of outgoing bytes, as segments of shared buffers.
 *
 * Small frames are appended into the connection's own tail buffer (so a burst of
 * sends becomes one contiguous region and one iovec); a frame shared with other
 * connections is queued as a reference to its buffer, never copied. The queue hands
 * out iovecs for writev and releases buffers as bytes are reported written. It does
 * no I/O itself. An empty queue holds no buffer; the first segment lives inside the
 * queue, and a ring grown for more segments stays. */
#ifndef EWS_WRITEQ_H
#define EWS_WRITEQ_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "net/buf.h"

typedef struct {
  ews_buf_t *buf;
  uint32_t off; /* first unwritten byte */
  uint32_t end; /* one past the last queued byte */
} ews_seg_t;

/* Zero-initialise a queue before use. Once used, a queue must not be copied or moved
 * (segs may point at its own `one`). */
typedef struct {
  ews_seg_t *segs; /* ring of cap entries (a power of two): `one` while cap is 1 (no
                      allocation: an idle connection's queue holds one segment at
                      most), then 4, 8, ... on the heap once more are queued */
  uint32_t cap, head, n;
  size_t bytes; /* queued and not yet written */
  ews_seg_t one;
} ews_writeq_t;

/* Appends a (header) and b (payload) as one contiguous run, copying them into the
 * tail buffer (a new pool block or a right-sized buffer when needed: net/bump.h).
 * Returns 0 or EWS_ENOMEM (nothing queued then). */
int ews_wq_append(ews_writeq_t *q, ews_bufpool_t *pool, const void *a, size_t alen,
                  const void *b, size_t blen);
/* Room for `need` contiguous bytes at the end of q, placed as ews_wq_append places its
 * runs (net/bump.h): returns where to write them, or NULL when out of memory (nothing
 * queued). Write at most `need` bytes there, then queue them with ews_wq_commit()
 * before anything else appends to q or to the pool. A reservation that is never
 * committed queues no byte (at most an empty segment, which costs nothing). */
uint8_t *ews_wq_reserve(ews_writeq_t *q, ews_bufpool_t *pool, size_t need);
/* Queues the n bytes (n <= need) written at the place ews_wq_reserve() returned. */
void ews_wq_commit(ews_writeq_t *q, size_t n);
/* Queues bytes [off, off+len) of a shared buffer, taking a reference. 0 or EWS_ENOMEM. */
int ews_wq_append_shared(ews_writeq_t *q, ews_buf_t *buf, uint32_t off, uint32_t len);
/* Fills up to max iovecs from the head of the queue; returns how many and sets
 * *total to their byte count. */
int ews_wq_iov(const ews_writeq_t *q, struct iovec *iov, int max, size_t *total);
/* Marks n bytes from the head as written, releasing buffers that are done. */
void ews_wq_consume(ews_writeq_t *q, size_t n);
/* Releases everything; the queue is empty and reusable. */
void ews_wq_free(ews_writeq_t *q);

#endif
