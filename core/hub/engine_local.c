/* engine_local.c — the in-process engine (see engine.h): what the services share
 * lives in this process. A channel publish and an app-layer message travel to the
 * other workers as messages on their inboxes (hub/bus.h); channel subscriber counts
 * are process-wide counters (hub/counters.h); pub/sub is the memory and SQLite
 * sequencer of hub/pubsub.c; presence and users are the process-wide tables of
 * hub/presence.c and hub/users.c. */
#include "hub/engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "hub/bus.h"
#include "hub/channels.h"
#include "hub/counters.h"
#include "log.h"

/* ---- channels --------------------------------------------------------------------- */

/* A publish on its way to another worker: the frame built once (referenced). */
typedef struct {
  ews_bus_msg_t base; /* first */
  ews_buf_t *frame;
  size_t header_len;
  int opcode;
  uint64_t exclude_id;
  size_t len;
  char name[];
} chan_msg_t;

static void chan_msg_run(void *ud, ews_bus_msg_t *m) {
  chan_msg_t *cm = (chan_msg_t *)m;
  ews_chan_deliver(ud, cm->name, cm->len, cm->frame, cm->header_len, cm->opcode, cm->exclude_id);
}

static void chan_msg_free(ews_bus_msg_t *m) {
  ews_buf_unref(((chan_msg_t *)m)->frame);
  free(m);
}

static const ews_bus_kind_t chan_kind = {"channel", chan_msg_run, chan_msg_free, NULL};

static int chan_post(ews_hub_t *to, const char *name, size_t len, ews_buf_t *frame, size_t hl,
                     int opcode, uint64_t exclude_id) {
  chan_msg_t *m = malloc(sizeof *m + len);
  if (!m) return EWS_ENOMEM;
  m->base.kind = &chan_kind;
  m->frame = frame;
  ews_buf_ref(frame);
  m->header_len = hl;
  m->opcode = opcode;
  m->exclude_id = exclude_id;
  m->len = len;
  memcpy(m->name, name, len);
  return ews_bus_post(&to->inbox, &m->base);
}

/* A worker that is gone (shutdown) has no subscribers left; one whose inbox is full
 * has the drop counted (bus.c); out of memory is logged here. */
static void chan_publish(ews_hub_t *h, const char *name, size_t len, ews_buf_t *frame, size_t hl,
                         int opcode, uint64_t exclude_id) {
  for (int i = 0; i < h->nworkers; i++) {
    if (i == h->id) continue;
    int r = chan_post(h->peers[i], name, len, frame, hl, opcode, exclude_id);
    if (r == EWS_ENOMEM)
      EWS_ERROR("channel %.*s: out of memory posting to worker %d", (int)(len > 200 ? 200 : len),
                name, i);
  }
}

/* The process-wide counter "chan:" + name. */
static int chan_key(char key[520], const char *name, size_t len) {
  return snprintf(key, 520, "chan:%.*s", (int)(len > 500 ? 500 : len), name);
}

static void *chan_hold(const char *name, size_t len) {
  char key[520];
  return ews_counter_get(key, (size_t)chan_key(key, name, len));
}

static void chan_add(void *handle, int delta) {
  if (delta > 0) ews_counter_inc(handle, 0);
  else ews_counter_dec(handle);
}

static void chan_release(void *handle) { ews_counter_put(handle); }

static uint32_t chan_count(const char *name, size_t len) {
  char key[520];
  return ews_counter_peek(key, (size_t)chan_key(key, name, len));
}

static const ews_chan_engine_t chan_engine = {chan_publish, chan_hold, chan_add, chan_release,
                                              chan_count};

/* ---- pub/sub ------------------------------------------------------------------------ */

const ews_pubsub_engine_t ews_engine_local_pubsub = {
    ews_pubsub_persistent, ews_ps_max_recover,      ews_pubsub_publish, ews_pubsub_reset,
    ews_pubsub_retention,  ews_pubsub_history,      ews_pubsub_history_free,
    ews_ps_view,           ews_ps_page,             NULL,               NULL};

/* ---- presence ----------------------------------------------------------------------- */

const ews_presence_engine_t ews_engine_local_presence = {
    ews_presence_configure, ews_presence_get_config,  ews_presence_join,
    ews_presence_leave,     ews_presence_drop_conn,   ews_presence_set_status,
    ews_presence_get,       ews_presence_list,        ews_presence_result_free,
    ews_presence_count,     ews_presence_take,        ews_presence_events_free,
    ews_presence_sweep,     ews_presence_conns};

/* ---- users -------------------------------------------------------------------------- */

/* An app-layer message on its way to a worker: a copy of its bytes. */
typedef struct {
  ews_bus_msg_t base; /* first */
  size_t len;
  char data[];
} app_msg_t;

static void app_msg_run(void *ud, ews_bus_msg_t *m) {
  ews_hub_t *h = ud;
  app_msg_t *am = (app_msg_t *)m;
  if (h->app_message) h->app_message(h, am->data, am->len);
}

static void app_msg_free(ews_bus_msg_t *m) { free(m); }

static const ews_bus_kind_t app_kind = {"Lua", app_msg_run, app_msg_free, NULL};

static int users_post(ews_hub_t *h, int to, const char *data, size_t len) {
  if (to < 0 || to >= h->nworkers) return EWS_EINVAL;
  app_msg_t *m = malloc(sizeof *m + len);
  if (!m) return EWS_ENOMEM;
  m->base.kind = &app_kind;
  m->len = len;
  memcpy(m->data, data, len);
  return ews_bus_post(&h->peers[to]->inbox, &m->base);
}

/* This process's entries (instance ""). */
static size_t users_list(const char *uid, size_t len, ews_user_entry_t *out, size_t cap) {
  ews_user_socket_t buf[64];
  ews_user_socket_t *v = cap <= 64 ? buf : malloc(cap * sizeof *v);
  if (!v) return 0;
  size_t n = ews_users_list(uid, len, v, cap);
  for (size_t i = 0; i < n && i < cap; i++)
    out[i] = (ews_user_entry_t){v[i].worker, v[i].socket_id, ""};
  if (v != buf) free(v);
  return n;
}

const ews_users_engine_t ews_engine_local_users = {ews_users_add, ews_users_remove, users_list,
                                                   users_post, NULL, NULL};

/* ---- the engine --------------------------------------------------------------------- */

static int start(const ews_engine_config_t *cfg) {
  ews_pubsub_init(&cfg->pubsub, cfg->store, cfg->persistent, cfg->hubs, cfg->nworkers);
  return 0;
}

/* Stops posting to the workers and frees the memory topics. */
static void stop(void) { ews_pubsub_shutdown(); }

const ews_engine_t ews_engine_local = {"local", start, stop, &chan_engine,
                                       &ews_engine_local_pubsub, &ews_engine_local_presence,
                                       &ews_engine_local_users, NULL, NULL, NULL, NULL};
