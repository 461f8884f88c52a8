/* bus.c — worker inboxes (see bus.h). */
#include "hub/bus.h"

#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "log.h"

int ews_inbox_init(ews_inbox_t *in, int id, uint32_t limit, void *ud) {
  memset(in, 0, sizeof *in);
  if (uv_mutex_init(&in->lock) != 0) return EWS_ENOMEM;
  in->id = id;
  in->limit = limit;
  in->ud = ud;
  return 0;
}

void ews_inbox_open(ews_inbox_t *in, uv_async_t *wake) {
  uv_mutex_lock(&in->lock);
  in->wake = wake;
  in->alive = 1;
  uv_mutex_unlock(&in->lock);
}

void ews_inbox_close(ews_inbox_t *in) {
  uv_mutex_lock(&in->lock);
  in->alive = 0;
  uv_mutex_unlock(&in->lock);
}

void ews_inbox_destroy(ews_inbox_t *in) { uv_mutex_destroy(&in->lock); }

/* Remembers (under the lock) that a message of this kind was refused. */
static void note_refused(ews_inbox_t *to, const ews_bus_kind_t *kind) {
  if (!kind->refused) return;
  for (uint32_t i = 0; i < to->nrefused; i++)
    if (to->refused[i] == kind) return;
  if (to->nrefused < EWS_INBOX_KINDS) to->refused[to->nrefused++] = kind;
}

int ews_bus_post(ews_inbox_t *to, ews_bus_msg_t *m) {
  const ews_bus_kind_t *kind = m->kind;
  m->next = NULL;
  uv_mutex_lock(&to->lock);
  if (!to->alive) {
    uv_mutex_unlock(&to->lock);
    kind->free(m);
    return EWS_ECLOSED;
  }
  uint32_t limit = to->limit ? to->limit : EWS_INBOX_DEFAULT;
  if (to->n >= limit) {
    /* The worker has not drained for a long time (overloaded, or stuck): refuse
     * rather than grow without bound. Counted; logged at most once a second. */
    note_refused(to, kind);
    uv_mutex_unlock(&to->lock);
    kind->free(m);
    uint64_t n = __atomic_add_fetch(&to->dropped, 1, __ATOMIC_RELAXED);
    if (n == 1 || n % 100000 == 0)
      EWS_WARN("worker %d's inbox is full (%u messages): dropped %llu message(s) so far (last: %s)",
               to->id, (unsigned)limit, (unsigned long long)n, kind->name);
    return EWS_EINBOX_FULL;
  }
  to->n++;
  if (to->tail) to->tail->next = m;
  else to->head = m;
  to->tail = m;
  uv_async_send(to->wake);
  uv_mutex_unlock(&to->lock);
  return 0;
}

void ews_bus_wake(ews_inbox_t *in) {
  uv_mutex_lock(&in->lock);
  if (in->alive) uv_async_send(in->wake);
  uv_mutex_unlock(&in->lock);
}

void ews_bus_drain(ews_inbox_t *in) {
  const ews_bus_kind_t *refused[EWS_INBOX_KINDS];
  uv_mutex_lock(&in->lock);
  ews_bus_msg_t *m = in->head;
  in->head = in->tail = NULL;
  in->n = 0;
  uint32_t nrefused = in->nrefused;
  memcpy(refused, in->refused, nrefused * sizeof *refused);
  in->nrefused = 0;
  uv_mutex_unlock(&in->lock);
  while (m) {
    ews_bus_msg_t *next = m->next;
    m->kind->run(in->ud, m);
    m->kind->free(m);
    m = next;
  }
  /* Messages refused while this batch was queued: their kinds catch up (pub/sub:
   * subscribers that missed them resync from history). */
  for (uint32_t i = 0; i < nrefused; i++) refused[i]->refused(in->ud);
}

void ews_bus_free(ews_inbox_t *in) {
  ews_bus_msg_t *m = in->head;
  while (m) {
    ews_bus_msg_t *next = m->next;
    m->kind->free(m);
    m = next;
  }
  in->head = in->tail = NULL;
  in->n = 0;
}
