/* ratelimit.h — the token bucket: the one implementation of rate limits in edgews-lua.
 *
 * A bucket holds up to `burst` tokens and gains `rate` tokens per second, lazily
 * (from the time of its last take: no timers). A take of n tokens succeeds when the
 * bucket holds at least n, and removes them; a failed take removes nothing and
 * answers retry_after, the seconds until n tokens will be there: INFINITY when
 * n > burst (such a cost never fits). Tokens are fractional. A clock that goes back
 * (now < last) refills nothing, and `last` never moves back, so a clock jump cannot
 * mint tokens.
 *
 * Three users, one arithmetic:
 *  - ews_tb_*: one bucket (lua/edgews/ratelimit.lua's ratelimit.bucket, and the
 *    pure functions ratelimit.refill / ratelimit.consume);
 *  - ews_limiter_*: a keyed limiter owned by one thread (per-worker limits, e.g. per
 *    connection: no lock), whose memory is O(keys whose bucket is not full) — a
 *    missing key is a full bucket, so full buckets are dropped without changing any
 *    answer (the incremental sweep below);
 *  - hub/buckets.h: the process-wide table of buckets (per user, per IP) under a lock.
 *
 * The ews_tb_* and ews_limiter_* functions are called from Lua through the LuaJIT
 * FFI (lua/edgews/ratelimit.lua declares them; keep the two in step). They are
 * exported by the executable and built into build/libedgews_ratelimit.so so that
 * the Lua specs run them without a server. */
#ifndef EWS_RATELIMIT_H
#define EWS_RATELIMIT_H

#include <math.h>
#include <stddef.h>

/* ---- one bucket ---------------------------------------------------------------- */

typedef struct ews_tb {
  double tokens; /* at time `last` */
  double last;   /* seconds; -INFINITY for a bucket that was never taken from */
} ews_tb_t;

/* The tokens at `now` of a bucket that held `tokens` at `last`. */
static inline double ews_tb_refill_inline(double tokens, double last, double now, double rate,
                                          double burst) {
  if (now <= last) return tokens;
  tokens = tokens + (now - last) * rate;
  return tokens > burst ? burst : tokens;
}

/* Takes n from a bucket holding `tokens` (already refilled): 1 with *left = tokens -
 * n, *retry_after = 0; or 0 with *left = tokens and *retry_after = the seconds until
 * n will be there (INFINITY when n > burst). */
static inline int ews_tb_consume_inline(double tokens, double n, double rate, double burst,
                                        double *left, double *retry_after) {
  *left = tokens;
  if (n <= tokens) {
    *left = tokens - n;
    *retry_after = 0;
    return 1;
  }
  *retry_after = n > burst ? INFINITY : (n - tokens) / rate;
  return 0;
}

/* Takes n from b at `now`: 1, or 0 and *retry_after. */
static inline int ews_tb_take_inline(ews_tb_t *b, double n, double now, double rate, double burst,
                                     double *retry_after) {
  double left;
  int ok = ews_tb_consume_inline(ews_tb_refill_inline(b->tokens, b->last, now, rate, burst), n,
                                 rate, burst, &left, retry_after);
  b->tokens = left;
  if (now > b->last) b->last = now;
  return ok;
}

/* The same, out of line, for the FFI. ews_tb_consume stores tokens left and
 * retry_after in out[0] and out[1]. */
double ews_tb_refill(double tokens, double last, double now, double rate, double burst);
int ews_tb_consume(double tokens, double n, double rate, double burst, double out[2]);
int ews_tb_take(ews_tb_t *b, double n, double now, double rate, double burst, double *retry_after);

/* ---- a keyed limiter ------------------------------------------------------------- */

/* Keys are byte strings in one of EWS_LIMITER_KINDS namespaces (Lua passes strings
 * as kind 0, numbers as kind 1 with their 8 bytes, other values as kind 2 with an
 * id): equal bytes of different kinds are different keys. */
enum { EWS_LIMITER_STRING, EWS_LIMITER_NUMBER, EWS_LIMITER_OBJECT, EWS_LIMITER_KINDS };

typedef struct ews_limiter ews_limiter_t;

/* A limiter of `rate` tokens per second and `burst` tokens per key (both > 0 and
 * finite: the caller checks), or NULL when out of memory. */
ews_limiter_t *ews_limiter_new(double rate, double burst);
void ews_limiter_free(ews_limiter_t *l);

/* Takes n (>= 0) tokens from the bucket of key (kind, key[0..len)) at `now`: 1, or 0
 * and *retry_after. A key with no bucket is full. The take then examines the next
 * few buckets of the sweep and drops those full by now. Out of memory when a key
 * must be recorded: the answer is still right, and the key is left untracked
 * (treated as full later: the limiter errs on the side of letting through). */
int ews_limiter_take(ews_limiter_t *l, int kind, const char *key, size_t len, double n, double now,
                     double *retry_after);
/* The tokens the key's bucket holds at `now` (burst when it has none). */
double ews_limiter_tokens(const ews_limiter_t *l, int kind, const char *key, size_t len, double now);
/* Makes the key's bucket full again (forgets it). */
void ews_limiter_reset(ews_limiter_t *l, int kind, const char *key, size_t len);
/* Keys tracked: buckets not known to be full. */
size_t ews_limiter_size(const ews_limiter_t *l);
/* Bytes the limiter holds (its arrays, tables and records): for the specs. */
size_t ews_limiter_memory(const ews_limiter_t *l);

#endif
