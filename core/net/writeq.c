/* writeq.c — the outgoing byte queue (see writeq.h). */
#include "net/writeq.h"

#include <stdlib.h>
#include <string.h>

#include "err.h"

static int ring_grow(ews_writeq_t *q) {
  uint32_t ncap = q->cap ? q->cap * 2 : 4;
  ews_seg_t *s = malloc(ncap * sizeof *s);
  if (!s) return EWS_ENOMEM;
  for (uint32_t i = 0; i < q->n; i++) s[i] = q->segs[(q->head + i) % q->cap];
  free(q->segs);
  q->segs = s;
  q->cap = ncap;
  q->head = 0;
  return 0;
}

static int push_seg(ews_writeq_t *q, ews_buf_t *buf, uint32_t off, uint32_t end) {
  if (q->n == q->cap && ring_grow(q) != 0) return EWS_ENOMEM;
  ews_seg_t *s = &q->segs[(q->head + q->n) % q->cap];
  s->buf = buf;
  s->off = off;
  s->end = end;
  q->n++;
  q->bytes += end - off;
  return 0;
}

/* Frames up to this size are bump-allocated in the worker's current block. */
#define SMALL_FRAME (EWS_BUF_BLOCK / 4)

int ews_wq_append(ews_writeq_t *q, ews_bufpool_t *pool, const void *a, size_t alen,
                  const void *b, size_t blen) {
  size_t need = alen + blen;
  ews_buf_t *cur = pool ? pool->cur : NULL;
  if (q->n && cur) {
    /* Extend our tail run when it ends where the current block's free space
     * begins (nobody appended after us). Only the worker's current block is ever
     * appended to: shared frames of other workers are immutable. */
    ews_seg_t *t = &q->segs[(q->head + q->n - 1) % q->cap];
    if (t->buf == cur && t->end == cur->len && cur->cap - cur->len >= need) {
      memcpy(cur->data + cur->len, a, alen);
      if (blen) memcpy(cur->data + cur->len + alen, b, blen);
      cur->len += (uint32_t)need;
      t->end += (uint32_t)need;
      q->bytes += need;
      return 0;
    }
  }
  ews_buf_t *dst;
  if (pool && need <= SMALL_FRAME) {
    if (!cur || cur->cap - cur->len < need) {
      ews_buf_t *nb = ews_buf_new(pool, EWS_BUF_BLOCK);
      if (!nb) return EWS_ENOMEM;
      if (cur) ews_buf_unref(cur); /* the pool's reference */
      pool->cur = cur = nb;
    }
    dst = cur;
  } else {
    dst = ews_buf_new(pool, need);
    if (!dst) return EWS_ENOMEM;
  }
  uint32_t off = dst->len;
  if (push_seg(q, dst, off, off + (uint32_t)need) != 0) {
    if (dst != cur) ews_buf_unref(dst);
    return EWS_ENOMEM;
  }
  if (dst == cur) ews_buf_ref(cur); /* the segment's reference */
  memcpy(dst->data + off, a, alen);
  if (blen) memcpy(dst->data + off + alen, b, blen);
  dst->len += (uint32_t)need;
  return 0;
}

int ews_wq_append_shared(ews_writeq_t *q, ews_buf_t *buf, uint32_t off, uint32_t len) {
  if (push_seg(q, buf, off, off + len) != 0) return EWS_ENOMEM;
  ews_buf_ref(buf);
  return 0;
}

int ews_wq_iov(const ews_writeq_t *q, struct iovec *iov, int max, size_t *total) {
  int k = 0;
  size_t sum = 0;
  for (uint32_t i = 0; i < q->n && k < max; i++) {
    const ews_seg_t *s = &q->segs[(q->head + i) % q->cap];
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
    q->head = (q->head + 1) % q->cap;
    q->n--;
  }
}

void ews_wq_free(ews_writeq_t *q) {
  for (uint32_t i = 0; i < q->n; i++) ews_buf_unref(q->segs[(q->head + i) % q->cap].buf);
  free(q->segs);
  memset(q, 0, sizeof *q);
}
