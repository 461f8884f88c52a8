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

int ews_wq_append(ews_writeq_t *q, ews_bufpool_t *pool, const void *a, size_t alen,
                  const void *b, size_t blen) {
  size_t need = alen + blen;
  if (q->n) {
    /* Extend the tail run when we own the buffer and the run ends at its end. */
    ews_seg_t *t = &q->segs[(q->head + q->n - 1) % q->cap];
    ews_buf_t *tb = t->buf;
    if (t->end == tb->len && tb->cap - tb->len >= need && ews_buf_exclusive(tb)) {
      memcpy(tb->data + tb->len, a, alen);
      if (blen) memcpy(tb->data + tb->len + alen, b, blen);
      tb->len += (uint32_t)need;
      t->end += (uint32_t)need;
      q->bytes += need;
      return 0;
    }
  }
  ews_buf_t *nb = ews_buf_new(pool, need);
  if (!nb) return EWS_ENOMEM;
  memcpy(nb->data, a, alen);
  if (blen) memcpy(nb->data + alen, b, blen);
  nb->len = (uint32_t)need;
  if (push_seg(q, nb, 0, (uint32_t)need) != 0) {
    ews_buf_unref(nb);
    return EWS_ENOMEM;
  }
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
