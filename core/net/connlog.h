/* connlog.h — the log lines about connections, one line per event:
 *   DEBUG conn 256: opened /chat from 10.0.0.7:51234
 *   DEBUG conn 256: closed 1000 "bye" after 12.3 s (/chat)
 *   INFO  refused a connection from 10.0.0.7 to /chat: 401 invalid token
 * Refusals are logged at most EWS_CONNLOG_REFUSED_PER_SEC a second per loop; the
 * others of that second are counted and summed up in one line when it ends
 *   INFO  refused 4980 more connections in the last 1.0 s (not logged one by one)
 * so a flood of bad clients costs a few lines, not one per client. All run on the
 * loop's thread; none fails. */
#ifndef EWS_NET_CONNLOG_H
#define EWS_NET_CONNLOG_H

#include <stddef.h>

#include "net/conn.h"

#define EWS_CONNLOG_REFUSED_PER_SEC 5

/* The 101 went out (debug). */
void ews_connlog_opened(const ews_conn_t *c);
/* The close event is about to run (debug). */
void ews_connlog_closed(const ews_conn_t *c);
/* An HTTP error answers a request instead of an upgrade (info, limited as above).
 * path: the request's, when known (else the app's, else none). */
void ews_connlog_refused(ews_conn_t *c, int status, const char *why, size_t why_len);
/* From the loop's ticker: writes the count of the second that ended. */
void ews_connlog_tick(ews_net_t *net);

#endif
