/* bump.c — bump allocation of outgoing runs in a worker's current pool block (see
 * bump.h). */
#include "net/bump.h"

ews_buf_t *ews_bump__start_slow(ews_bufpool_t *pool, size_t need) {
  if (!pool || need > EWS_BUMP_SMALL) return ews_buf_new(pool, need);
  /* The current block is missing or lacks room: a fresh one replaces it. The old
   * block lives on while queues still hold runs in it; it returns to the pool when
   * the last of them is written. */
  ews_buf_t *nb = ews_buf_new(pool, EWS_BUF_BLOCK);
  if (!nb) return NULL;
  if (pool->cur) ews_buf_unref(pool->cur); /* the pool's reference */
  pool->cur = nb;
  ews_buf_ref(nb); /* the caller's */
  return nb;
}
