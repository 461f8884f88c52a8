/* buckets.h — process-wide token buckets for rate limits that must hold across
 * workers (per user, per client IP). Each is the token bucket of hub/ratelimit.h
 * (refills lazily at `rate` tokens per second up to `burst`; a cost above burst
 * never fits); a full bucket is indistinguishable from a missing one, so full
 * buckets are dropped and memory stays proportional to the keys that are actively
 * limited. One mutex guards the table: a take is a hash lookup and a few
 * arithmetic operations. */
#ifndef EWS_BUCKETS_H
#define EWS_BUCKETS_H

#include <stddef.h>

#include "hub/htable.h"

/* Takes n tokens from the bucket `key` at time `now` (seconds). Returns 1 when
 * allowed, else 0 and *retry_after = seconds until n tokens are there (INFINITY
 * when n > burst). Out of memory: the answer stands, the key is not recorded. */
int ews_bucket_take(const char *key, size_t len, double rate, double burst, double n, double now,
                    double *retry_after);
/* Buckets held (keys not yet full or not yet swept), and the table's shape
 * (hub/htable.h): for tests. */
size_t ews_buckets_count(void);
void ews_buckets_stats(ews_ht_stats_t *out);

#endif
