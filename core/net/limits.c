/* limits.c — the installed counter implementation behind connection limits (see
 * limits.h). Read by every worker after the main thread installed it before they
 * started (thread creation orders the write before their reads). */
#include "net/limits.h"

#include <stddef.h>

static const ews_limit_ops_t *ops;

void ews_limits_install(const ews_limit_ops_t *o) { ops = o; }

ews_counter_t *ews_limit_get(const char *key, size_t len) {
  return ops ? ops->get(key, len) : NULL;
}

void ews_limit_put(ews_counter_t *c) {
  if (ops && c) ops->put(c);
}

int ews_limit_inc(ews_counter_t *c, uint32_t limit) { return ops && c ? ops->inc(c, limit) : 1; }

void ews_limit_dec(ews_counter_t *c) {
  if (ops && c) ops->dec(c);
}
