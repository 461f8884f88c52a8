/* metrics.h — the Prometheus text exposition of GET /metrics: every worker's
 * counters (connections, messages, bytes, rejections by reason, handler errors,
 * application-layer counters such as auth failures and rate-limit hits) and the
 * handler run-time histogram, labelled by worker. Other workers' counters are read
 * without locks (aligned 64-bit loads): a scrape sees each counter at some recent
 * value, which is what Prometheus counters allow. */
#ifndef EWS_METRICS_H
#define EWS_METRICS_H

#include <stddef.h>

struct ews_server;

/* Writes the exposition of the server's workers into a malloc'd *out (length *len).
 * self: the worker serving the request, whose open connections are shown without
 * that request's own (-1: none). 0 or EWS_ENOMEM. */
int ews_metrics_text(const struct ews_server *server, int self, char **out, size_t *len);

#endif
