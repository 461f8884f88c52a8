/* hub.c — a worker's hub context (see hub.h). */
#include "hub/hub.h"

#include <string.h>

#include "hub/channels.h"
#include "hub/pubsub.h"

int ews_hub_init(ews_hub_t *h, int id, int nworkers, ews_hub_t *const *peers, ews_net_t *net,
                 const struct ews_engine *engine, uint32_t inbox_limit) {
  memset(h, 0, sizeof *h);
  h->engine = engine;
  h->id = id;
  h->nworkers = nworkers;
  h->peers = peers;
  h->net = net;
  return ews_inbox_init(&h->inbox, id, inbox_limit, h);
}

void ews_hub_free(ews_hub_t *h) {
  ews_bus_free(&h->inbox);
  ews_chans_free(&h->chans);
  ews_pubsub_worker_free(h);
  ews_topics_free(&h->topics);
}

void ews_hub_destroy(ews_hub_t *h) { ews_inbox_destroy(&h->inbox); }
