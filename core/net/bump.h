/* bump.h — the byte builder under every write queue: where a worker's outgoing bytes
 * are written.
 *
 * A run of bytes (a frame, a TLS record, a handshake flight) goes to one of three places:
 *   - right after the caller's previous run, when that run ends where the free space of
 *     the pool's current block (pool->cur) begins and the bytes fit: nobody appended
 *     after it, so the run is simply extended (ews_bump_fits);
 *   - otherwise, when it is at most EWS_BUMP_SMALL bytes, into the current block, which
 *     all of the worker's connections share: a thousand connections each sending a
 *     small message fill a few blocks instead of taking one each; a full current block
 *     is replaced by a fresh one (ews_bump_start);
 *   - otherwise into a buffer of its own, sized to fit (a full-size TLS record fills one
 *     pool block exactly).
 * The caller writes its bytes at buf->data + buf->len and then ews_bump_commit()s them,
 * with nothing else appending to the pool in between (a pool belongs to one thread).
 * Nothing is copied here and nothing is allocated while the current block has room.
 *
 * writeq.c builds ews_wq_reserve/ews_wq_commit on this (ews_wq_append for frames; tls.c
 * seals records in place through the same two calls). */
#ifndef EWS_BUMP_H
#define EWS_BUMP_H

#include <stddef.h>
#include <stdint.h>

#include "net/buf.h"

/* Runs up to this size share the pool's current block; larger ones get their own. */
#define EWS_BUMP_SMALL (EWS_BUF_BLOCK / 4)

/* 1 when `need` more bytes can be written right after a run that ends at `end` in
 * `tail`, i.e. at tail->data + end: the run is in the pool's current block, ends where
 * its free space begins, and they fit. pool may be NULL (then 0). */
static inline int ews_bump_fits(const ews_bufpool_t *pool, const ews_buf_t *tail, uint32_t end,
                                size_t need) {
  const ews_buf_t *cur = pool ? pool->cur : NULL;
  return cur && tail == cur && end == cur->len && cur->cap - cur->len >= need;
}

/* A buffer in which a new run of `need` bytes starts at buf->len: the pool's current
 * block for a small run (a fresh one when the current block lacks room, or there is
 * none), else a buffer of its own (a pool block up to EWS_BUF_BLOCK, else malloc'd to
 * size). The caller receives one reference to it (for its queue segment) and drops it
 * when done. pool may be NULL (then always a buffer of its own). NULL when out of
 * memory; the pool is unchanged then. */
static inline ews_buf_t *ews_bump_start(ews_bufpool_t *pool, size_t need);

/* The part of ews_bump_start() that is not inlined: a fresh current block or a buffer
 * of its own. */
ews_buf_t *ews_bump__start_slow(ews_bufpool_t *pool, size_t need);

static inline ews_buf_t *ews_bump_start(ews_bufpool_t *pool, size_t need) {
  ews_buf_t *cur = pool ? pool->cur : NULL;
  if (cur && need <= EWS_BUMP_SMALL && cur->cap - cur->len >= need) {
    ews_buf_ref(cur); /* the caller's */
    return cur;
  }
  return ews_bump__start_slow(pool, need);
}

/* Records that n bytes were written at b->data + b->len (after ews_bump_fits or
 * ews_bump_start said there is room for them). */
static inline void ews_bump_commit(ews_buf_t *b, size_t n) { b->len += (uint32_t)n; }

#endif
