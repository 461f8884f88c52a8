/* test.h — a minimal assertion kit for the C unit tests (one test_<module>.c each).
 *
 * Each test file defines TEST(name) functions and a main() that calls RUN(name) for
 * each and returns TEST_EXIT(). Failures print file:line and the expression; the
 * process exit status is the number of failed checks (capped), so CTest sees it.
 * guard_copy() places input right before an inaccessible page so that any
 * over-read by a parser crashes the test instead of passing silently. */
#ifndef EWS_TEST_H
#define EWS_TEST_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static int test_failures_;
static int test_checks_;
/* Checks may run on several threads (tests of thread-safe code): count atomically. */
#define TEST_COUNT_(v) __atomic_add_fetch(&(v), 1, __ATOMIC_RELAXED)

#define CHECK(cond)                                                          \
  do {                                                                       \
    TEST_COUNT_(test_checks_);                                               \
    if (!(cond)) {                                                           \
      TEST_COUNT_(test_failures_);                                           \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
    }                                                                        \
  } while (0)

#define CHECK_EQ(a, b)                                                           \
  do {                                                                           \
    long long a_ = (long long)(a), b_ = (long long)(b);                          \
    TEST_COUNT_(test_checks_);                                                   \
    if (a_ != b_) {                                                              \
      TEST_COUNT_(test_failures_);                                               \
      fprintf(stderr, "%s:%d: CHECK_EQ failed: %s == %s (%lld != %lld)\n",       \
              __FILE__, __LINE__, #a, #b, a_, b_);                               \
    }                                                                            \
  } while (0)

#define CHECK_MEM(a, b, n)                                                       \
  do {                                                                           \
    TEST_COUNT_(test_checks_);                                                   \
    if (memcmp((a), (b), (n)) != 0) {                                            \
      TEST_COUNT_(test_failures_);                                               \
      fprintf(stderr, "%s:%d: CHECK_MEM failed: %s vs %s\n", __FILE__, __LINE__, \
              #a, #b);                                                           \
    }                                                                            \
  } while (0)

#define CHECK_STR(a, b) CHECK(strcmp((a), (b)) == 0)

#define TEST(name) static void test_##name(void)
#define RUN(name)                              \
  do {                                         \
    int before_ = test_failures_;              \
    test_##name();                             \
    fprintf(stderr, "%s %s\n",                 \
            test_failures_ == before_ ? "ok  " : "FAIL", #name); \
  } while (0)
#define TEST_EXIT()                                                            \
  (fprintf(stderr, "%d checks, %d failed\n", test_checks_, test_failures_), \
   test_failures_ > 100 ? 100 : test_failures_)

/* A growable byte buffer for tests (rd: a read position for tests that use it as a
 * pipe). Aborts when out of memory. */
typedef struct {
  uint8_t *p;
  size_t n, cap, rd;
} test_bytes_t;

static inline void test_bytes_put(test_bytes_t *b, const void *d, size_t n) {
  if (b->n + n > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + n) cap *= 2;
    b->p = realloc(b->p, cap);
    if (!b->p) abort();
    b->cap = cap;
  }
  if (n) memcpy(b->p + b->n, d, n);
  b->n += n;
}

static inline void test_bytes_free(test_bytes_t *b) {
  free(b->p);
  memset(b, 0, sizeof *b);
}

/* Copy n bytes so that they end exactly at a PROT_NONE page. Free with guard_free. */
static inline void *guard_copy(const void *src, size_t n) {
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  size_t data_pages = (n + page - 1) / page;
  if (data_pages == 0) data_pages = 1;
  uint8_t *base = mmap(NULL, (data_pages + 1) * page, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (base == MAP_FAILED) abort();
  mprotect(base + data_pages * page, page, PROT_NONE);
  uint8_t *dst = base + data_pages * page - n;
  if (n) memcpy(dst, src, n);
  return dst;
}

static inline void guard_free(void *p, size_t n) {
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  size_t data_pages = (n + page - 1) / page;
  if (data_pages == 0) data_pages = 1;
  uint8_t *end = (uint8_t *)p + n;
  munmap(end - data_pages * page, (data_pages + 1) * page);
}

#endif
