/* counters.h — process-wide named counters shared by all workers: connections per
 * app, per client IP and per user, for limits that must hold across workers.
 *
 * A counter is found by name once (a mutex protects the table) and then counted with
 * atomics, so the per-connection cost is one lookup at upgrade and two atomic
 * operations. An entry lives while someone holds it (ews_counter_get/put); the
 * count itself says how many connections are in it. */
#ifndef EWS_COUNTERS_H
#define EWS_COUNTERS_H

#include <stddef.h>
#include <stdint.h>

#include "hub/htable.h"
#include "net/limits.h"

/* The counter named key[0..len), created at 0 if missing, with one more holder.
 * NULL when out of memory. */
ews_counter_t *ews_counter_get(const char *key, size_t len);
/* Drops a holder; the entry is freed with its last holder. NULL is a no-op. */
void ews_counter_put(ews_counter_t *c);
/* Adds one unless that would exceed `limit` (0 = no limit). 1 when added, 0 not. */
int ews_counter_inc(ews_counter_t *c, uint32_t limit);
void ews_counter_dec(ews_counter_t *c);
uint32_t ews_counter_value(const ews_counter_t *c);
/* The value of a counter by name without holding it (0 when there is none). */
uint32_t ews_counter_peek(const char *key, size_t len);
/* Calls fn for every counter whose name starts with prefix[0..pl) (under the
 * table's lock: fn must not call back into this module). */
void ews_counters_each(const char *prefix, size_t pl,
                       void (*fn)(const char *key, size_t len, uint32_t value, void *ud),
                       void *ud);
/* These counters as net/limits.h wants them (main.c installs them). */
extern const ews_limit_ops_t ews_counter_limit_ops;

/* The shape of the counter table (hub/htable.h), for tests. */
void ews_counters_stats(ews_ht_stats_t *out);

#endif
