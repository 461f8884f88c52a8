/* users.h — which sockets each authenticated user has, on every worker: the
 * process-wide registry behind edgews.user_sockets(user_id). An entry is
 * (worker id, socket id); a worker adds its socket when the user authenticates and
 * removes it when the socket closes. One mutex guards the table; it is touched on
 * authentication, close and lookups, never per message. */
#ifndef EWS_USERS_H
#define EWS_USERS_H

#include <stddef.h>
#include <stdint.h>

#include "hub/htable.h"

typedef struct {
  int worker;
  double socket_id;
} ews_user_socket_t;

/* 0 or EWS_ENOMEM. */
int ews_users_add(const char *uid, size_t len, int worker, double socket_id);
void ews_users_remove(const char *uid, size_t len, int worker, double socket_id);
/* Copies up to cap entries into out; returns how many the user has (may be > cap). */
size_t ews_users_list(const char *uid, size_t len, ews_user_socket_t *out, size_t cap);
/* Calls fn for every (user, socket) under the registry's lock (fn must not call
 * back into the registry). */
void ews_users_each(void (*fn)(const char *uid, size_t len, const ews_user_socket_t *s, void *ud),
                    void *ud);
/* The shape of the user table (hub/htable.h), for tests. */
void ews_users_stats(ews_ht_stats_t *out);

#endif
