/* limits.h — the named counters behind connection limits that hold across workers
 * (open connections of an app, per client IP, per user). The net layer counts in them
 * at the upgrade and gives the slots back when a session ends; it does not implement
 * them: the hub's process-wide counters (hub/counters.h) are installed once at start,
 * before any worker runs (ews_limits_install), the way a lower layer takes a hook
 * from a higher one instead of including it.
 *
 * Until counters are installed, ews_limit_get returns NULL (an app cannot be created:
 * EWS_ENOMEM) and the rest are no-ops. */
#ifndef EWS_LIMITS_H
#define EWS_LIMITS_H

#include <stddef.h>
#include <stdint.h>

typedef struct ews_counter ews_counter_t;

typedef struct {
  /* The counter named key[0..len) with one more holder (created at 0), or NULL. */
  ews_counter_t *(*get)(const char *key, size_t len);
  void (*put)(ews_counter_t *c); /* drops a holder (NULL: no-op) */
  /* Adds one unless that would pass limit (0: none): 1 added, 0 not. */
  int (*inc)(ews_counter_t *c, uint32_t limit);
  void (*dec)(ews_counter_t *c);
} ews_limit_ops_t;

/* Installs the counters (ops must outlive every worker). Main thread, before start. */
void ews_limits_install(const ews_limit_ops_t *ops);

ews_counter_t *ews_limit_get(const char *key, size_t len);
void ews_limit_put(ews_counter_t *c);
int ews_limit_inc(ews_counter_t *c, uint32_t limit);
void ews_limit_dec(ews_counter_t *c);

#endif
