/* buf.h — reference-counted byte buffers and the per-worker pool that recycles them.
 *
 * Outgoing frames are written into buffers that write queues point at. A buffer may
 * be referenced by many queues at once (a broadcast frame is built once for every
 * receiver), so it carries an atomic reference count; the last release returns it to
 * its pool (same worker) or to malloc. Pool buffers are EWS_BUF_BLOCK bytes; larger
 * buffers are allocated to size and freed on release.
 *
 * Small frames of all of a worker's connections are bump-allocated in one current
 * block (pool->cur): a thousand connections each sending 40 bytes in one loop
 * iteration share three blocks instead of taking one each, and the block is
 * recycled once every connection has written its part (net/bump.h decides where each
 * run of outgoing bytes goes). */
#ifndef EWS_BUF_H
#define EWS_BUF_H

#include <stddef.h>
#include <stdint.h>

#define EWS_BUF_BLOCK (16u * 1024u)
#define EWS_BUFPOOL_MAX 256u /* cached blocks per worker (4 MiB) */

typedef struct ews_bufpool ews_bufpool_t;

typedef struct ews_buf {
  uint32_t refs;        /* atomic */
  uint32_t cap;
  uint32_t len;         /* bytes written so far */
  ews_bufpool_t *pool;  /* owner pool for EWS_BUF_BLOCK buffers, else NULL */
  struct ews_buf *next; /* free-list link while pooled */
  uint8_t data[];
} ews_buf_t;

struct ews_bufpool {
  ews_buf_t *free;
  uint32_t nfree;
  ews_buf_t *cur; /* the block small frames are appended to, shared by every
                     connection of the worker (the pool holds one reference) */
};

/* A buffer of at least `cap` bytes with refs = 1 and len = 0, or NULL. Uses the pool
 * when cap <= EWS_BUF_BLOCK (pool may be NULL). */
ews_buf_t *ews_buf_new(ews_bufpool_t *pool, size_t cap);
static inline void ews_buf_ref(ews_buf_t *b) { __atomic_add_fetch(&b->refs, 1, __ATOMIC_RELAXED); }
/* Drops one reference; the last one recycles or frees the buffer. Must run on the
 * pool's thread when b->pool is set (pooled buffers never cross workers). */
void ews_buf_unref(ews_buf_t *b);

void ews_bufpool_drain(ews_bufpool_t *pool); /* frees all cached blocks and cur */

#endif
