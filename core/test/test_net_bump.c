/* test_net_bump.c — where outgoing runs are written (net/bump.h): a run is extended
 * only when it ends where the current block's free space begins and the bytes fit;
 * small runs share the pool's current block, which is replaced when full and lives on
 * while runs in it are queued; large runs get a buffer of their own; the boundaries
 * (EWS_BUMP_SMALL, a block filled exactly) fall on the documented side; references
 * are exact. */
#include "net/bump.h"
#include "test.h"

TEST(small_runs_share_the_current_block) {
  ews_bufpool_t pool = {0};
  ews_buf_t *a = ews_bump_start(&pool, 40); /* no current block yet: one is made */
  CHECK(a != NULL && a == pool.cur);
  CHECK_EQ(a->refs, 2); /* the pool's and ours */
  CHECK_EQ(a->len, 0);
  memcpy(a->data + a->len, "first run", 9);
  ews_bump_commit(a, 9);
  CHECK_EQ(a->len, 9);
  ews_buf_t *b = ews_bump_start(&pool, 40); /* another queue's run: same block, after ours */
  CHECK(b == a);
  CHECK_EQ(b->refs, 3);
  ews_bump_commit(b, 40);
  CHECK_MEM(a->data, "first run", 9);
  ews_buf_unref(a);
  ews_buf_unref(b);
  CHECK_EQ(pool.cur->refs, 1);
  ews_bufpool_drain(&pool);
  CHECK(pool.cur == NULL && pool.nfree == 0);
}

TEST(a_run_extends_only_at_the_free_space) {
  ews_bufpool_t pool = {0};
  CHECK_EQ(ews_bump_fits(NULL, NULL, 0, 1), 0);
  CHECK_EQ(ews_bump_fits(&pool, NULL, 0, 1), 0); /* no current block */
  ews_buf_t *cur = ews_bump_start(&pool, 10);
  ews_bump_commit(cur, 10);
  CHECK_EQ(ews_bump_fits(&pool, cur, 10, 100), 1);          /* our run ends at len */
  CHECK_EQ(ews_bump_fits(&pool, cur, 4, 100), 0);           /* someone appended after */
  CHECK_EQ(ews_bump_fits(&pool, cur, 10, cur->cap - 10), 1); /* fills it exactly */
  CHECK_EQ(ews_bump_fits(&pool, cur, 10, cur->cap - 9), 0);  /* one byte too many */
  ews_buf_t *own = ews_buf_new(&pool, 10); /* a pool block, but not the current one */
  own->len = 10;
  CHECK_EQ(ews_bump_fits(&pool, own, 10, 1), 0);
  ews_buf_unref(own);
  ews_buf_unref(cur);
  ews_bufpool_drain(&pool);
}

TEST(a_full_block_is_replaced_and_lives_on) {
  ews_bufpool_t pool = {0};
  ews_buf_t *old = ews_bump_start(&pool, EWS_BUMP_SMALL);
  ews_bump_commit(old, EWS_BUF_BLOCK - 100); /* 100 bytes left */
  ews_buf_t *same = ews_bump_start(&pool, 100); /* fits exactly */
  CHECK(same == old);
  ews_buf_unref(same);
  ews_buf_t *fresh = ews_bump_start(&pool, 101);
  CHECK(fresh != old && fresh == pool.cur);
  CHECK_EQ(fresh->len, 0);
  CHECK_EQ(fresh->refs, 2); /* pool + ours */
  CHECK_EQ(old->refs, 1);   /* the pool let go; our run keeps it */
  CHECK_EQ(pool.nfree, 0);
  ews_buf_unref(old); /* the last run in it is written: back to the pool */
  CHECK_EQ(pool.nfree, 1);
  ews_buf_unref(fresh);
  ews_bufpool_drain(&pool);
}

TEST(large_runs_get_their_own_buffer) {
  ews_bufpool_t pool = {0};
  ews_buf_t *cur = ews_bump_start(&pool, EWS_BUMP_SMALL); /* the boundary: shared */
  CHECK(cur == pool.cur);
  ews_buf_t *mid = ews_bump_start(&pool, EWS_BUMP_SMALL + 1); /* a pool block of its own */
  CHECK(mid != pool.cur && mid->pool == &pool && mid->cap == EWS_BUF_BLOCK);
  CHECK_EQ(mid->refs, 1);
  CHECK(pool.cur == cur && cur->len == 0); /* the current block is untouched */
  ews_buf_t *big = ews_bump_start(&pool, EWS_BUF_BLOCK + 1); /* malloc'd to size */
  CHECK(big != NULL && big->pool == NULL && big->cap == EWS_BUF_BLOCK + 1);
  ews_buf_t *nopool = ews_bump_start(NULL, 8); /* no pool: always its own */
  CHECK(nopool != NULL && nopool->pool == NULL && nopool->cap == 8);
  ews_buf_unref(nopool);
  ews_buf_unref(big);
  ews_buf_unref(mid);
  ews_buf_unref(cur);
  CHECK_EQ(pool.nfree, 1); /* mid went back; cur is still the pool's */
  ews_bufpool_drain(&pool);
}

int main(void) {
  RUN(small_runs_share_the_current_block);
  RUN(a_run_extends_only_at_the_free_space);
  RUN(a_full_block_is_replaced_and_lives_on);
  RUN(large_runs_get_their_own_buffer);
  return TEST_EXIT();
}
