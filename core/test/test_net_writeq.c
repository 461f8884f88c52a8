/* test_net_writeq.c — the outgoing byte queue and its buffers: small frames of
 * several connections share the worker's current block, tails are extended in
 * place, large frames get their own buffer, shared frames are referenced not
 * copied, every byte and buffer is accounted for after partial writes, and bytes
 * reserved in place are queued only when committed. */
#include "net/buf.h"
#include "net/writeq.h"
#include "test.h"

static size_t gather(const ews_writeq_t *q, char *out, size_t cap) {
  struct iovec iov[64];
  size_t total, off = 0;
  int n = ews_wq_iov(q, iov, 64, &total);
  for (int i = 0; i < n && off + iov[i].iov_len <= cap; i++) {
    memcpy(out + off, iov[i].iov_base, iov[i].iov_len);
    off += iov[i].iov_len;
  }
  CHECK_EQ(off, total);
  return off;
}

TEST(small_frames_share_the_current_block) {
  ews_bufpool_t pool = {0};
  ews_writeq_t a = {0}, b = {0};
  CHECK_EQ(ews_wq_append(&a, &pool, "h1", 2, "hello", 5), 0);
  CHECK_EQ(ews_wq_append(&b, &pool, "h2", 2, "world", 5), 0);
  CHECK_EQ(ews_wq_append(&a, &pool, "h3", 2, "again", 5), 0);
  CHECK(pool.cur != NULL);
  CHECK(a.segs[0].buf == pool.cur && b.segs[0].buf == pool.cur);
  CHECK_EQ(pool.cur->refs, 4); /* pool + a (2 segs) + b */
  CHECK_EQ(a.n, 2);            /* b appended in between: no extension */
  CHECK_EQ(a.bytes, 14);
  char out[64];
  size_t n = gather(&a, out, sizeof out);
  CHECK_EQ(n, 14);
  CHECK_MEM(out, "h1helloh3again", 14);
  n = gather(&b, out, sizeof out);
  CHECK_MEM(out, "h2world", 7);
  /* Consecutive appends by one queue extend its tail run. */
  CHECK_EQ(ews_wq_append(&a, &pool, "x", 1, "y", 1), 0);
  CHECK_EQ(a.n, 2);
  CHECK_EQ(a.bytes, 16);
  ews_wq_free(&a);
  ews_wq_free(&b);
  CHECK_EQ(pool.cur->refs, 1);
  ews_bufpool_drain(&pool);
  CHECK(pool.cur == NULL && pool.nfree == 0);
}

TEST(partial_writes_release_buffers_in_order) {
  ews_bufpool_t pool = {0};
  ews_writeq_t q = {0};
  static uint8_t big[40000];
  for (size_t i = 0; i < sizeof big; i++) big[i] = (uint8_t)i;
  CHECK_EQ(ews_wq_append(&q, &pool, "A", 1, "bc", 2), 0);
  CHECK_EQ(ews_wq_append(&q, &pool, "H", 1, big, sizeof big), 0); /* own buffer */
  CHECK_EQ(ews_wq_append(&q, &pool, "Z", 1, NULL, 0), 0);
  CHECK_EQ(q.n, 3);
  CHECK(q.segs[1].buf != pool.cur && q.segs[1].buf->pool == NULL);
  CHECK_EQ(q.bytes, 3 + 40001 + 1);
  ews_wq_consume(&q, 2);
  struct iovec iov[8];
  size_t total;
  int n = ews_wq_iov(&q, iov, 8, &total);
  CHECK_EQ(n, 3);
  CHECK_MEM(iov[0].iov_base, "c", 1);
  CHECK_EQ(total, q.bytes);
  ews_wq_consume(&q, 1 + 40001); /* finishes two segments */
  CHECK_EQ(q.n, 1);
  n = ews_wq_iov(&q, iov, 8, &total);
  CHECK_EQ(n, 1);
  CHECK_MEM(iov[0].iov_base, "Z", 1);
  ews_wq_consume(&q, 1);
  CHECK_EQ(q.n, 0);
  CHECK_EQ(q.bytes, 0);
  CHECK_EQ(pool.cur->refs, 1); /* only the pool's own reference is left */
  ews_wq_free(&q);
  ews_bufpool_drain(&pool);
}

TEST(shared_frames_are_referenced_not_copied) {
  ews_bufpool_t pool = {0};
  ews_writeq_t q1 = {0}, q2 = {0};
  ews_buf_t *frame = ews_buf_new(NULL, 100);
  memcpy(frame->data, "broadcast", 9);
  frame->len = 9;
  CHECK_EQ(ews_wq_append_shared(&q1, frame, 0, 9), 0);
  CHECK_EQ(ews_wq_append_shared(&q2, frame, 0, 9), 0);
  CHECK_EQ(frame->refs, 3);
  /* A small frame after a shared one never writes into the shared buffer. */
  CHECK_EQ(ews_wq_append(&q1, &pool, "s", 1, NULL, 0), 0);
  CHECK(q1.segs[1].buf == pool.cur);
  CHECK_EQ(frame->len, 9);
  struct iovec iov[4];
  size_t total;
  CHECK_EQ(ews_wq_iov(&q2, iov, 4, &total), 1);
  CHECK(iov[0].iov_base == frame->data);
  ews_wq_consume(&q1, 10);
  ews_wq_free(&q2);
  CHECK_EQ(frame->refs, 1);
  ews_buf_unref(frame);
  ews_wq_free(&q1);
  ews_bufpool_drain(&pool);
}

TEST(the_ring_grows_and_keeps_order) {
  ews_bufpool_t pool = {0};
  ews_writeq_t q = {0}, other = {0};
  char expect[400], got[400];
  size_t len = 0;
  for (int i = 0; i < 100; i++) {
    char c = (char)('a' + i % 26);
    /* Interleave with another queue so every append is a new segment. */
    CHECK_EQ(ews_wq_append(&q, &pool, &c, 1, NULL, 0), 0);
    CHECK_EQ(ews_wq_append(&other, &pool, "-", 1, NULL, 0), 0);
    expect[len++] = c;
    if (i % 7 == 0) {
      ews_wq_consume(&q, 1);
      memmove(expect, expect + 1, --len);
    }
  }
  CHECK_EQ(q.bytes, len);
  struct iovec iov[128];
  size_t total;
  int n = ews_wq_iov(&q, iov, 128, &total);
  size_t off = 0;
  for (int i = 0; i < n; i++) {
    memcpy(got + off, iov[i].iov_base, iov[i].iov_len);
    off += iov[i].iov_len;
  }
  CHECK_EQ(off, len);
  CHECK_MEM(got, expect, len);
  ews_wq_free(&q);
  ews_wq_free(&other);
  ews_bufpool_drain(&pool);
}

TEST(reserve_and_commit_write_in_place) {
  ews_bufpool_t pool = {0};
  ews_writeq_t a = {0}, b = {0};
  uint8_t *p = ews_wq_reserve(&a, &pool, 100);
  CHECK(p != NULL && p == pool.cur->data);
  CHECK_EQ(a.bytes, 0); /* reserved, not queued */
  memcpy(p, "abc", 3);
  ews_wq_commit(&a, 3); /* less than reserved */
  CHECK_EQ(a.bytes, 3);
  CHECK_EQ(pool.cur->len, 3);
  uint8_t *p2 = ews_wq_reserve(&a, &pool, 10); /* extends the run: no new segment */
  CHECK(p2 == p + 3);
  memcpy(p2, "de", 2);
  ews_wq_commit(&a, 2);
  CHECK_EQ(a.n, 1);
  /* A reservation that is never committed queues nothing, and the next append (of
   * any queue) takes the same place. */
  uint8_t *pb = ews_wq_reserve(&b, &pool, 8);
  CHECK(pb == p + 5);
  CHECK_EQ(b.bytes, 0);
  struct iovec iov[4];
  size_t total;
  CHECK_EQ(ews_wq_iov(&b, iov, 4, &total), 0);
  CHECK_EQ(ews_wq_append(&a, &pool, "f", 1, NULL, 0), 0);
  CHECK_EQ(a.n, 1);
  char out[16];
  CHECK_EQ(gather(&a, out, sizeof out), 6);
  CHECK_MEM(out, "abcdef", 6);
  /* b's next run cannot extend its empty segment (a appended after it). */
  CHECK_EQ(ews_wq_append(&b, &pool, "xy", 2, NULL, 0), 0);
  CHECK_EQ(b.n, 2);
  CHECK_EQ(gather(&b, out, sizeof out), 2);
  CHECK_MEM(out, "xy", 2);
  /* A large run extends a run that ends at the free space like a small one... */
  uint8_t *ext = ews_wq_reserve(&b, &pool, 5000);
  CHECK(ext == pool.cur->data + pool.cur->len && b.n == 2);
  /* ...but starts in a buffer of its own. */
  CHECK_EQ(ews_wq_append(&a, &pool, "g", 1, NULL, 0), 0);
  uint8_t *big = ews_wq_reserve(&b, &pool, 5000);
  CHECK(big != NULL && b.n == 3 && b.segs[2].buf != pool.cur);
  memset(big, 'z', 5000);
  ews_wq_commit(&b, 5000);
  CHECK_EQ(b.bytes, 5002);
  ews_wq_consume(&b, 5002);
  CHECK_EQ(b.n, 0);
  ews_wq_free(&a);
  ews_wq_free(&b);
  CHECK_EQ(pool.cur->refs, 1);
  ews_bufpool_drain(&pool);
}

/* An idle connection's queue allocates nothing: one segment at a time (the 101, an
 * echo, a shared frame) lives inside the queue; a second queued segment moves the
 * ring to the heap, in order. */
TEST(one_segment_at_a_time_needs_no_ring) {
  ews_bufpool_t pool = {0};
  ews_writeq_t q = {0};
  char out[64];
  for (int i = 0; i < 10; i++) {
    CHECK_EQ(ews_wq_append(&q, &pool, "h", 1, "abc", 3), 0);
    CHECK(q.segs == &q.one && q.cap == 1 && q.n == 1);
    CHECK_EQ(gather(&q, out, sizeof out), 4);
    CHECK_MEM(out, "habc", 4);
    ews_wq_consume(&q, 1);
    CHECK_EQ(gather(&q, out, sizeof out), 3);
    ews_wq_consume(&q, 3);
    CHECK(q.n == 0 && q.bytes == 0 && q.segs == &q.one);
  }
  ews_buf_t *shared = ews_buf_new(NULL, 8);
  CHECK(shared != NULL);
  memcpy(shared->data, "SHARED!!", 8);
  shared->len = 8;
  CHECK_EQ(ews_wq_append_shared(&q, shared, 0, 8), 0);
  CHECK(q.segs == &q.one && q.n == 1);
  CHECK_EQ(ews_wq_append(&q, &pool, "t", 1, "ail", 3), 0); /* a second segment */
  CHECK(q.segs != &q.one && q.cap == 4 && q.n == 2);
  CHECK_EQ(gather(&q, out, sizeof out), 12);
  CHECK_MEM(out, "SHARED!!tail", 12);
  ews_wq_consume(&q, 12);
  CHECK_EQ(q.n, 0);
  CHECK_EQ(shared->refs, 1); /* the queue's reference is gone */
  ews_buf_unref(shared);
  ews_wq_free(&q);
  CHECK(q.segs == NULL && q.cap == 0);
  ews_bufpool_drain(&pool);
}

int main(void) {
  RUN(small_frames_share_the_current_block);
  RUN(partial_writes_release_buffers_in_order);
  RUN(shared_frames_are_referenced_not_copied);
  RUN(the_ring_grows_and_keeps_order);
  RUN(reserve_and_commit_write_in_place);
  RUN(one_segment_at_a_time_needs_no_ring);
  return TEST_EXIT();
}
