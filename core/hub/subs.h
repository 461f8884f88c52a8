/* subs.h — the subscribers of one name (a channel, a pub/sub topic) on one worker: an
 * array of connections that the fan-out takes as is (net/fanout.h), where each
 * subscriber's own entry keeps its index (the back-index, held by the service in its
 * per-connection state). Leaving costs O(1) whatever the count: the last subscriber
 * moves into the freed slot and the service updates that one's back-index. A zeroed
 * ews_subs_t is empty; it owns only the array. */
#ifndef EWS_SUBS_H
#define EWS_SUBS_H

#include <stdint.h>

#include "net/conn.h"

typedef struct {
  ews_conn_t **v;
  uint32_t n, cap;
} ews_subs_t;

/* Room for `need` subscribers (doubling from 4). 0 or EWS_ENOMEM (nothing changed). */
int ews_subs_reserve(ews_subs_t *s, uint32_t need);
/* Appends c (its index is the old s->n). 0 or EWS_ENOMEM (nothing changed). */
int ews_subs_add(ews_subs_t *s, ews_conn_t *c);
/* Takes the subscriber at index i out. Returns the one that moved into slot i (its
 * back-index must become i), or NULL when i was the last. */
ews_conn_t *ews_subs_remove(ews_subs_t *s, uint32_t i);
void ews_subs_free(ews_subs_t *s);

#endif
