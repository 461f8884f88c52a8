/* users.c — the user -> sockets registry (see users.h). */
#include "hub/users.h"


#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "hub/hash.h"
#include "err.h"

#define BUCKETS 4096u

typedef struct user {
  struct user *next;
  ews_user_socket_t *socks;
  size_t n, cap;
  uint32_t hash;
  size_t len;
  char id[];
} user_t;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static user_t *table[BUCKETS];

static user_t **slot(const char *uid, size_t len, uint32_t h) {
  user_t **pp = &table[h % BUCKETS];
  while (*pp && !((*pp)->hash == h && (*pp)->len == len && !memcmp((*pp)->id, uid, len)))
    pp = &(*pp)->next;
  return pp;
}

int ews_users_add(const char *uid, size_t len, int worker, double socket_id) {
  uint32_t h = ews_hash(uid, len);
  int rc = 0;
  pthread_mutex_lock(&lock);
  user_t **pp = slot(uid, len, h);
  user_t *u = *pp;
  if (!u && (u = calloc(1, sizeof *u + len))) {
    u->hash = h;
    u->len = len;
    memcpy(u->id, uid, len);
    *pp = u;
  }
  if (!u) {
    rc = EWS_ENOMEM;
  } else {
    if (u->n == u->cap) {
      size_t cap = u->cap ? u->cap * 2 : 2;
      ews_user_socket_t *s = realloc(u->socks, cap * sizeof *s);
      if (!s) rc = EWS_ENOMEM;
      else {
        u->socks = s;
        u->cap = cap;
      }
    }
    if (rc == 0) u->socks[u->n++] = (ews_user_socket_t){worker, socket_id};
  }
  pthread_mutex_unlock(&lock);
  return rc;
}

void ews_users_remove(const char *uid, size_t len, int worker, double socket_id) {
  uint32_t h = ews_hash(uid, len);
  pthread_mutex_lock(&lock);
  user_t **pp = slot(uid, len, h);
  user_t *u = *pp;
  if (u) {
    for (size_t i = 0; i < u->n; i++) {
      if (u->socks[i].worker == worker && u->socks[i].socket_id == socket_id) {
        u->socks[i] = u->socks[--u->n];
        break;
      }
    }
    if (u->n == 0) {
      *pp = u->next;
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
  user_t *u = *slot(uid, len, h);
  if (u) {
    n = u->n;
    memcpy(out, u->socks, (n < cap ? n : cap) * sizeof *out);
  }
  pthread_mutex_unlock(&lock);
  return n;
}
