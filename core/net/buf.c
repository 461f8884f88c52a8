/* buf.c — reference-counted buffers and their per-worker pool (see buf.h). */
#include "net/buf.h"

#include <stdlib.h>

ews_buf_t *ews_buf_new(ews_bufpool_t *pool, size_t cap) {
  ews_buf_t *b;
  if (cap <= EWS_BUF_BLOCK && pool) {
    if (pool->free) {
      b = pool->free;
      pool->free = b->next;
      pool->nfree--;
    } else {
      b = malloc(sizeof *b + EWS_BUF_BLOCK);
      if (!b) return NULL;
    }
    b->cap = EWS_BUF_BLOCK;
    b->pool = pool;
  } else {
    if (cap > UINT32_MAX - sizeof *b) return NULL;
    b = malloc(sizeof *b + cap);
    if (!b) return NULL;
    b->cap = (uint32_t)cap;
    b->pool = NULL;
  }
  b->refs = 1;
  b->len = 0;
  b->next = NULL;
  return b;
}

void ews_buf_unref(ews_buf_t *b) {
  if (__atomic_sub_fetch(&b->refs, 1, __ATOMIC_ACQ_REL) != 0) return;
  ews_bufpool_t *pool = b->pool;
  if (pool && pool->nfree < EWS_BUFPOOL_MAX) {
    b->next = pool->free;
    pool->free = b;
    pool->nfree++;
    return;
  }
  free(b);
}

void ews_bufpool_drain(ews_bufpool_t *pool) {
  if (pool->cur) {
    ews_buf_t *cur = pool->cur;
    pool->cur = NULL;
    ews_buf_unref(cur);
  }
  while (pool->free) {
    ews_buf_t *b = pool->free;
    pool->free = b->next;
    free(b);
  }
  pool->nfree = 0;
}
