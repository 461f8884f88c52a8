/* bus.c — worker inboxes (see bus.h). */
#include "hub/bus.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "hub/channels.h"
#include "hub/pubsub.h"
#include "log.h"
#include "lua/tasks.h"
#include "worker.h"

static ews_bus_msg_t *new_msg(const char *data, size_t len) {
  ews_bus_msg_t *m = calloc(1, sizeof *m + len);
  if (!m) return NULL;
  m->len = len;
  memcpy(m->data, data, len);
  return m;
}

static void free_msg(ews_bus_msg_t *m) {
  if (m->frame) ews_buf_unref(m->frame);
  if (m->raw) ews_buf_unref(m->raw);
  free(m);
}

static int enqueue(ews_worker_t *to, ews_bus_msg_t *m) {
  uv_mutex_lock(&to->post_lock);
  if (!to->alive) {
    uv_mutex_unlock(&to->post_lock);
    free_msg(m);
    return EWS_ECLOSED;
  }
  uint32_t limit = to->inbox_limit ? to->inbox_limit : EWS_INBOX_DEFAULT;
  if (to->inbox_n >= limit) {
    /* The worker has not drained for a long time (overloaded, or stuck): refuse
     * rather than grow without bound. Counted; logged at most once a second. */
    if (m->kind == EWS_BUS_PUBSUB) to->inbox_lost_pubsub = 1; /* the worker resyncs */
    uv_mutex_unlock(&to->post_lock);
    int kind = m->kind;
    free_msg(m);
    uint64_t n = __atomic_add_fetch(&to->stats.bus_dropped, 1, __ATOMIC_RELAXED);
    if (n == 1 || n % 100000 == 0)
      EWS_WARN("worker %d's inbox is full (%u messages): dropped %llu message(s) so far (last: %s)",
               to->id, (unsigned)limit, (unsigned long long)n,
               kind == EWS_BUS_PUBSUB ? "pub/sub" : kind == EWS_BUS_PUBLISH ? "channel" : "Lua");
    return EWS_EINBOX_FULL;
  }
  to->inbox_n++;
  if (to->inbox_tail) to->inbox_tail->next = m;
  else to->inbox_head = m;
  to->inbox_tail = m;
  uv_async_send(&to->wakeup);
  uv_mutex_unlock(&to->post_lock);
  return 0;
}

int ews_bus_post(ews_worker_t *to, const char *data, size_t len) {
  ews_bus_msg_t *m = new_msg(data, len);
  return m ? enqueue(to, m) : EWS_ENOMEM;
}

int ews_bus_post_publish(ews_worker_t *to, const char *name, size_t len, ews_buf_t *frame,
                         size_t header_len, int opcode, uint64_t exclude_id) {
  ews_bus_msg_t *m = new_msg(name, len);
  if (!m) return EWS_ENOMEM;
  m->kind = EWS_BUS_PUBLISH;
  m->frame = frame;
  m->header_len = header_len;
  m->opcode = opcode;
  m->exclude_id = exclude_id;
  ews_buf_ref(frame);
  int r = enqueue(to, m);
  return r;
}

int ews_bus_post_pubsub(ews_worker_t *to, const char *topic, size_t tl, ews_buf_t *env,
                        size_t env_hl, ews_buf_t *raw, size_t raw_hl, uint64_t epoch,
                        int64_t offset, int64_t time, int json) {
  ews_bus_msg_t *m = new_msg(topic, tl);
  if (!m) return EWS_ENOMEM;
  m->kind = EWS_BUS_PUBSUB;
  m->frame = env;
  m->header_len = env_hl;
  m->raw = raw;
  m->raw_hl = raw_hl;
  m->epoch = epoch;
  m->offset = offset;
  m->time = time;
  m->json = json;
  ews_buf_ref(env);
  ews_buf_ref(raw);
  return enqueue(to, m);
}

void ews_bus_drain(ews_worker_t *w) {
  uv_mutex_lock(&w->post_lock);
  ews_bus_msg_t *m = w->inbox_head;
  w->inbox_head = w->inbox_tail = NULL;
  w->inbox_n = 0;
  int lost_pubsub = w->inbox_lost_pubsub;
  w->inbox_lost_pubsub = 0;
  uv_mutex_unlock(&w->post_lock);
  while (m) {
    ews_bus_msg_t *next = m->next;
    if (m->kind == EWS_BUS_PUBLISH) {
      ews_chan_deliver(w, m->data, m->len, m->frame, m->header_len, m->opcode, m->exclude_id);
      free_msg(m);
      m = next;
      continue;
    }
    if (m->kind == EWS_BUS_PUBSUB) {
      ews_pubsub_deliver(w, m);
      free_msg(m);
      m = next;
      continue;
    }
    ews_task_t *t = w->L ? ews_task_get(w) : NULL;
    if (t) {
      lua_rawgeti(t->co, LUA_REGISTRYINDEX, w->refs.bus);
      lua_pushlstring(t->co, m->data, m->len);
      ews_task_start(w, t, 1, NULL);
    } else {
      EWS_ERROR("bus: dropped a message (no task)");
    }
    free(m);
    m = next;
  }
  /* Pub/sub messages refused while this batch was queued: subscribers that missed
   * them catch up from history. */
  if (lost_pubsub) ews_pubsub_resync(w);
}

void ews_bus_free(ews_worker_t *w) {
  ews_bus_msg_t *m = w->inbox_head;
  while (m) {
    ews_bus_msg_t *next = m->next;
    free_msg(m);
    m = next;
  }
  w->inbox_head = w->inbox_tail = NULL;
  w->inbox_n = 0;
}
