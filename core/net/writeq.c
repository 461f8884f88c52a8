/* writeq.c — the outgoing byte queue (see writeq.h). Where appended bytes are written
 * (the worker's shared current block or a buffer of their own) is net/bump.c's choice;
 * this file keeps the ring of segments and their references. */
#include "net/writeq.h"

#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "net/bump.h"

/* The ring's capacity is a power of two (1: the inline `one`; then 4, doubled), so an
 * index is masked. */
#define SEG(q, i) (&(q)->segs[((q)->head + (i)) & ((q)->cap - 1)])

static int ring_grow(ews_writeq_t *q) {
  if (q->cap == 0) {
    q->segs = &q->one;
    q->cap = 1;
    q->head = 0;
    return 0;
  }
  uint32_t ncap = q->cap == 1 ? 4 : q->cap * 2;
  ews_seg_t *s = malloc(ncap * sizeof *s);
  if (!s) return EWS_ENOMEM;
  for (uint32_t i = 0; i < q->n; i++) s[i] = *SEG(q, i);
  if (q->segs != &q->one) free(q->segs);
  q->segs = s;
  q->cap = ncap;
  q->head = 0;
  return 0;
}

/* The new tail segment, or NULL when out of memory. */
static ews_seg_t *push_seg(ews_writeq_t *q, ews_buf_t *buf, uint32_t off, uint32_t end) {
  if (q->n == q->cap && ring_grow(q) != 0) return NULL;
  ews_seg_t *s = SEG(q, q->n);
  s->buf = buf;
  s->off = off;
  s->end = end;
  q->n++;
  q->bytes += end - off;
  return s;
}

/* A new segment for a run of `need` bytes, in the place net/bump.c picks. */
static uint8_t *reserve_new(ews_writeq_t *q, ews_bufpool_t *pool, size_t need,
                           ews_seg_t **seg) {
  ews_buf_t *b = ews_bump_start(pool, need);
  if (!b) return NULL;
  if (!(*seg = push_seg(q, b, b->len, b->len))) {
    ews_buf_unref(b); /* the reference meant for the segment */
    return NULL;
  }
  return b->data + b->len;
}

/* The fast path, inlined into ews_wq_append: extend our tail run when nobody appended
 * after it. Only the worker's current block is ever appended to: shared frames of
 * other workers are immutable. *seg is the segment the bytes will belong to. */
static inline uint8_t *reserve(ews_writeq_t *q, ews_bufpool_t *pool, size_t need,
                               ews_seg_t **seg) {
  if (q->n) {
    ews_seg_t *t = SEG(q, q->n - 1);
    if (ews_bump_fits(pool, t->buf, t->end, need)) {
      *seg = t;
      return t->buf->data + t->end;
    }
  }
  return reserve_new(q, pool, need, seg);
}

static inline void commit(ews_writeq_t *q, ews_seg_t *t, size_t n) {
  ews_bump_commit(t->buf, n);
  t->end += (uint32_t)n;
  q->bytes += n;
}

uint8_t *ews_wq_reserve(ews_writeq_t *q, ews_bufpool_t *pool, size_t need) {
  ews_seg_t *t;
  return reserve(q, pool, need, &t);
}

void ews_wq_commit(ews_writeq_t *q, size_t n) { commit(q, SEG(q, q->n - 1), n); }

int ews_wq_append(ews_writeq_t *q, ews_bufpool_t *pool, const void *a, size_t alen,
                  const void *b, size_t blen) {
  size_t need = alen + blen;
  ews_seg_t *t;
  uint8_t *p = reserve(q, pool, need, &t);
  if (!p) return EWS_ENOMEM;
  memcpy(p, a, alen);
  if (blen) memcpy(p + alen, b, blen);
  commit(q, t, need);
  return 0;
}

int ews_wq_append_shared(ews_writeq_t *q, ews_buf_t *buf, uint32_t off, uint32_t len) {
  if (!push_seg(q, buf, off, off + len)) return EWS_ENOMEM;
  ews_buf_ref(buf);
  return 0;
}

int ews_wq_iov(const ews_writeq_t *q, struct iovec *iov, int max, size_t *total) {
  int k = 0;
  size_t sum = 0;
  for (uint32_t i = 0; i < q->n && k < max; i++) {
    const ews_seg_t *s = SEG(q, i);
    if (s->end == s->off) continue;
    iov[k].iov_base = s->buf->data + s->off;
    iov[k].iov_len = s->end - s->off;
    sum += iov[k].iov_len;
    k++;
  }
  *total = sum;
  return k;
}

void ews_wq_consume(ews_writeq_t *q, size_t n) {
  q->bytes -= n;
  while (q->n) {
    ews_seg_t *s = &q->segs[q->head];
    size_t avail = s->end - s->off;
    if (n < avail) {
      s->off += (uint32_t)n;
      return;
    }
    n -= avail;
    /* A written block goes straight back to the pool: an idle connection holds no
     * buffer, and the pool makes the next append as cheap as reusing it. */
    ews_buf_unref(s->buf);
    q->head = (q->head + 1) & (q->cap - 1);
    q->n--;
  }
}

void ews_wq_free(ews_writeq_t *q) {
  for (uint32_t i = 0; i < q->n; i++) ews_buf_unref(SEG(q, i)->buf);
  if (q->segs != &q->one) free(q->segs);
  memset(q, 0, sizeof *q);
}
