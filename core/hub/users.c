/* users.c — the user -> sockets registry (see users.h), one hub hash table
 * (hub/htable.h) of users under one mutex. */
#include "hub/users.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"

typedef struct user {
  ews_hnode_t n; /* first; key: the user id */
  ews_user_socket_t *socks;
  size_t count, cap;
  char id[];
} user_t;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static ews_htable_t table;

int ews_users_add(const char *uid, size_t len, int worker, double socket_id) {
  uint32_t h = ews_hash(uid, len);
  int rc = 0;
  pthread_mutex_lock(&lock);
  user_t *u = (user_t *)ews_ht_find(&table, uid, len, h);
  if (!u && (u = calloc(1, sizeof *u + len))) {
    memcpy(u->id, uid, len);
    u->n = (ews_hnode_t){NULL, u->id, h, (uint32_t)len};
    if (ews_ht_insert(&table, &u->n) != 0) {
      free(u);
      u = NULL;
    }
  }
  if (!u) {
    rc = EWS_ENOMEM;
  } else {
    if (u->count == u->cap) {
      size_t cap = u->cap ? u->cap * 2 : 2;
      ews_user_socket_t *s = realloc(u->socks, cap * sizeof *s);
      if (!s) rc = EWS_ENOMEM;
      else {
        u->socks = s;
        u->cap = cap;
      }
    }
    if (rc == 0) u->socks[u->count++] = (ews_user_socket_t){worker, socket_id};
    else if (u->count == 0) { /* just created: leave nothing behind */
      ews_ht_remove(&table, &u->n);
      free(u->socks);
      free(u);
    }
  }
  pthread_mutex_unlock(&lock);
  return rc;
}

void ews_users_remove(const char *uid, size_t len, int worker, double socket_id) {
  uint32_t h = ews_hash(uid, len);
  pthread_mutex_lock(&lock);
  user_t *u = (user_t *)ews_ht_find(&table, uid, len, h);
  if (u) {
    for (size_t i = 0; i < u->count; i++) {
      if (u->socks[i].worker == worker && u->socks[i].socket_id == socket_id) {
        u->socks[i] = u->socks[--u->count];
        break;
      }
    }
    if (u->count == 0) {
      ews_ht_remove(&table, &u->n);
      free(u->socks);
      free(u);
    }
  }
  pthread_mutex_unlock(&lock);
}

size_t ews_users_list(const char *uid, size_t len, ews_user_socket_t *out, size_t cap) {
  uint32_t h = ews_hash(uid, len);
  size_t n = 0;
  pthread_mutex_lock(&lock);
  user_t *u = (user_t *)ews_ht_find(&table, uid, len, h);
  if (u) {
    n = u->count;
    memcpy(out, u->socks, (n < cap ? n : cap) * sizeof *out);
  }
  pthread_mutex_unlock(&lock);
  return n;
}

typedef struct {
  void (*fn)(const char *uid, size_t len, const ews_user_socket_t *s, void *ud);
  void *ud;
} each_t;

static void each_user(ews_hnode_t *n, void *ud) {
  each_t *e = ud;
  user_t *u = (user_t *)n;
  for (size_t i = 0; i < u->count; i++) e->fn(u->id, u->n.len, &u->socks[i], e->ud);
}

void ews_users_each(void (*fn)(const char *uid, size_t len, const ews_user_socket_t *s, void *ud),
                    void *ud) {
  each_t e = {fn, ud};
  pthread_mutex_lock(&lock);
  ews_ht_walk(&table, 0, SIZE_MAX, each_user, &e);
  pthread_mutex_unlock(&lock);
}

void ews_users_stats(ews_ht_stats_t *out) {
  pthread_mutex_lock(&lock);
  ews_ht_stats(&table, out);
  pthread_mutex_unlock(&lock);
}
