/* msgmem.c — the process-wide incoming message memory budget (see msgmem.h). */
#include "net/msgmem.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "err.h"

static uint64_t limit = EWS_MSGMEM_DEFAULT;
static uint64_t used, refused;

void ews_msgmem_set_limit(uint64_t bytes) { __atomic_store_n(&limit, bytes, __ATOMIC_RELAXED); }
uint64_t ews_msgmem_limit(void) { return __atomic_load_n(&limit, __ATOMIC_RELAXED); }
uint64_t ews_msgmem_used(void) { return __atomic_load_n(&used, __ATOMIC_RELAXED); }
uint64_t ews_msgmem_refused(void) { return __atomic_load_n(&refused, __ATOMIC_RELAXED); }

/* Charges n bytes if the limit allows: 1, else 0. */
static int charge(uint64_t n) {
  uint64_t lim = ews_msgmem_limit();
  uint64_t cur = __atomic_load_n(&used, __ATOMIC_RELAXED);
  do {
    if (lim && (cur + n > lim || cur + n < cur)) return 0;
  } while (!__atomic_compare_exchange_n(&used, &cur, cur + n, 1, __ATOMIC_RELAXED,
                                        __ATOMIC_RELAXED));
  return 1;
}

static void credit(uint64_t n) { __atomic_sub_fetch(&used, n, __ATOMIC_RELAXED); }

/* Buffers of EWS_MSGMEM_MAP_MIN bytes and more are mappings of their own: growing
 * one is an mremap (no copy, no transient second buffer) and freeing it returns the
 * memory to the system at once. Smaller ones come from malloc. Otherwise a flood of
 * large messages would leave the freed chunks in the allocator's arenas (glibc does
 * not trim below 64 MiB here, main.c), and the process would hold about twice the
 * budget after the buffers themselves were freed. */
static size_t page_round(size_t n) {
  size_t pg = 4096;
  return n > SIZE_MAX - pg ? SIZE_MAX : (n + pg - 1) & ~(pg - 1);
}

static uint8_t *grow_buffer(uint8_t *p, size_t cap, size_t ncap) {
  if (ncap < EWS_MSGMEM_MAP_MIN) return realloc(p, ncap);
#if !defined(__SANITIZE_THREAD__)
  /* (ThreadSanitizer does not see mremap: there a new mapping and a copy.) */
  if (cap >= EWS_MSGMEM_MAP_MIN) {
    void *q = mremap(p, cap, ncap, MREMAP_MAYMOVE);
    return q == MAP_FAILED ? NULL : q;
  }
#endif
  void *q = mmap(NULL, ncap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (q == MAP_FAILED) return NULL;
  if (p) {
    memcpy(q, p, cap);
    if (cap >= EWS_MSGMEM_MAP_MIN) munmap(p, cap);
    else free(p);
  }
  return q;
}

int ews_msgmem_reserve(uint8_t **p, size_t *cap, size_t need, int exact) {
  if (need <= *cap) return 0;
  size_t ncap = exact ? need : *cap ? *cap : 1024;
  while (ncap < need) {
    if (ncap > SIZE_MAX / 2) {
      ncap = need;
      break;
    }
    ncap *= 2;
  }
  if (ncap >= EWS_MSGMEM_MAP_MIN) ncap = page_round(ncap);
  if (!charge(ncap - *cap)) {
    __atomic_add_fetch(&refused, 1, __ATOMIC_RELAXED);
    return EWS_EBUDGET;
  }
  uint8_t *b = grow_buffer(*p, *cap, ncap);
  if (!b) {
    credit(ncap - *cap);
    return EWS_ENOMEM;
  }
  *p = b;
  *cap = ncap;
  return 0;
}

void ews_msgmem_free(uint8_t *p, size_t cap) {
  if (!p) return;
  if (cap >= EWS_MSGMEM_MAP_MIN) munmap(p, cap);
  else free(p);
  credit(cap);
}
