/* presence.c — the process-wide presence tables (see presence.h): channels ->
 * members -> connections, users (global status, the channels they are in), member
 * connections by id, and the pending join/leave diffs.
 *
 * The tables are the hub's hash table (hub/htable.h, keyed hash, grows and
 * shrinks): channels by name, each channel's members and pending diff by user id,
 * users by id, and connections by id. A member holds its user (one user_t per id,
 * however many channels), its connections (a short list: the tabs of one user)
 * and its own status/meta; a connection record lists its memberships, so a close
 * ends them all without searching. Pagination sorts a channel's members on
 * demand: members change far more often than anyone pages through them. */
#include "hub/presence.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "hub/htable.h"
#include "hub/users.h"
#include "proto/json.h"
#include "proto/utf8.h"

/* ---- entries ------------------------------------------------------------------ */

typedef struct member member_t;
typedef struct mconn mconn_t;

typedef struct user {
  ews_hnode_t n;
  char *status, *meta; /* explicit global status (NULL: default) */
  uint32_t sl, ml;
  double expires;      /* 0: never */
  member_t *members;   /* its memberships (linked through u_next) */
  uint32_t nmembers;
  char id[];
} user_t;

typedef struct pend {
  ews_hnode_t n;
  struct pend *next; /* arrival order */
  int was_present;   /* at the last batch */
  int updated;       /* status or meta of a present member changed: UPD_* bits */
  char uid[];
} pend_t;

typedef struct chan {
  ews_hnode_t n;
  ews_htable_t members; /* by user id */
  ews_htable_t pending; /* by user id: users whose presence changed since the last batch */
  pend_t *pend_head, *pend_tail;
  struct chan *pend_next; /* in the list of channels with a pending diff */
  int queued;
  char name[];
} chan_t;

struct member {
  ews_hnode_t n; /* key: the user's id */
  chan_t *ch;
  user_t *u;
  member_t *u_next, *u_prev;
  mconn_t *conns;
  uint32_t nconns;
  char *status, *meta; /* NULL: the user's global status / "{}" */
  uint32_t sl, ml;
};

typedef struct rec {
  ews_hnode_t n; /* key: the 8 bytes of id */
  uint64_t id;
  int worker;
  void *conn;
  double last_ping;
  mconn_t *list;
} rec_t;

struct mconn {
  mconn_t *m_next; /* the member's connections */
  mconn_t *r_next; /* the connection's memberships */
  member_t *m;
  rec_t *rec;
  double joined;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static ews_htable_t chans, users, recs;
static chan_t *pend_head, *pend_tail;
static size_t nrecs; /* atomic copy of recs.n, read without the lock */
static double last_take = -1e300, last_gc;
static ews_presence_config_t config = {0.1, 25, 60, 300};

void ews_presence_configure(const ews_presence_config_t *cfg) {
  pthread_mutex_lock(&lock);
  config = *cfg;
  pthread_mutex_unlock(&lock);
}

void ews_presence_get_config(ews_presence_config_t *out) {
  pthread_mutex_lock(&lock);
  *out = config;
  pthread_mutex_unlock(&lock);
}

static int dup_into(char **dst, uint32_t *dl, const char *s, size_t n) {
  char *p = NULL;
  if (s) {
    if (!(p = malloc(n ? n : 1))) return EWS_ENOMEM;
    memcpy(p, s, n);
  }
  free(*dst);
  *dst = p;
  *dl = (uint32_t)n;
  return 0;
}

static int status_live(const user_t *u, double now) {
  return u->status && (u->expires == 0 || now < u->expires);
}

static user_t *user_get(const char *uid, size_t ul, int create) {
  uint32_t h = ews_hash(uid, ul);
  user_t *u = (user_t *)ews_ht_find(&users, uid, ul, h);
  if (u || !create) return u;
  if (!(u = calloc(1, sizeof *u + ul))) return NULL;
  memcpy(u->id, uid, ul);
  u->n = (ews_hnode_t){NULL, u->id, h, (uint32_t)ul};
  if (ews_ht_insert(&users, &u->n) != 0) {
    free(u);
    return NULL;
  }
  return u;
}

static void user_maybe_free(user_t *u, double now) {
  if (u->nmembers || status_live(u, now)) return;
  ews_ht_remove(&users, &u->n);
  free(u->status);
  free(u->meta);
  free(u);
}

static chan_t *chan_get(const char *name, size_t len, int create) {
  uint32_t h = ews_hash(name, len);
  chan_t *c = (chan_t *)ews_ht_find(&chans, name, len, h);
  if (c || !create) return c;
  if (!(c = calloc(1, sizeof *c + len))) return NULL;
  memcpy(c->name, name, len);
  c->n = (ews_hnode_t){NULL, c->name, h, (uint32_t)len};
  if (ews_ht_insert(&chans, &c->n) != 0) {
    free(c);
    return NULL;
  }
  return c;
}

static void chan_maybe_free(chan_t *c) {
  if (c->members.n || c->queued) return;
  ews_ht_remove(&chans, &c->n);
  ews_ht_free(&c->members);
  ews_ht_free(&c->pending);
  free(c);
}

static rec_t *rec_find(uint64_t id) {
  const char *k = (const char *)&id;
  return (rec_t *)ews_ht_find(&recs, k, sizeof id, ews_hash(k, sizeof id));
}

static void rec_free(rec_t *r) {
  ews_ht_remove(&recs, &r->n);
  __atomic_store_n(&nrecs, recs.n, __ATOMIC_RELEASE);
  free(r);
}

#define UPD_OWN 1    /* the member's own status or meta (its socket joined again) */
#define UPD_GLOBAL 2 /* the user's global status, which the member shows */

/* Notes that the user's presence in the channel changed (was_present: before this
 * change; updated: UPD_* bits). Only the first change in a batch records the earlier state. Failing
 * (out of memory) loses the event, not the membership. */
static void touch(chan_t *c, const user_t *u, int was_present, int updated) {
  pend_t *p = (pend_t *)ews_ht_find(&c->pending, u->id, u->n.len, u->n.hash);
  if (p) {
    p->updated |= updated;
    return;
  }
  p = calloc(1, sizeof *p + u->n.len);
  if (!p) return;
  p->updated = updated;
  memcpy(p->uid, u->id, u->n.len);
  p->n = (ews_hnode_t){NULL, p->uid, u->n.hash, u->n.len};
  p->was_present = was_present;
  if (ews_ht_insert(&c->pending, &p->n) != 0) {
    free(p);
    return;
  }
  if (c->pend_tail) c->pend_tail->next = p;
  else c->pend_head = p;
  c->pend_tail = p;
  if (!c->queued) {
    c->queued = 1;
    c->pend_next = NULL;
    if (pend_tail) pend_tail->pend_next = c;
    else pend_head = c;
    pend_tail = c;
  }
}

/* Unlinks one membership of a connection (not from its record's list: the caller
 * does that). Returns 1 when the user left the channel. */
static int mconn_remove(mconn_t *mc, double now) {
  member_t *m = mc->m;
  mconn_t **pp = &m->conns;
  while (*pp != mc) pp = &(*pp)->m_next;
  *pp = mc->m_next;
  m->nconns--;
  free(mc);
  if (m->nconns) {
    touch(m->ch, m->u, 1, 0); /* its connection count changed: a mirror hears of it */
    return 0;
  }
  chan_t *c = m->ch;
  user_t *u = m->u;
  touch(c, u, 1, 0);
  ews_ht_remove(&c->members, &m->n);
  if (m->u_prev) m->u_prev->u_next = m->u_next;
  else u->members = m->u_next;
  if (m->u_next) m->u_next->u_prev = m->u_prev;
  u->nmembers--;
  free(m->status);
  free(m->meta);
  free(m);
  user_maybe_free(u, now);
  chan_maybe_free(c);
  return 1;
}

/* Removes mc from its record's list; frees the record when it was the last. */
static int rec_remove(mconn_t *mc, double now) {
  rec_t *r = mc->rec;
  mconn_t **pp = &r->list;
  while (*pp != mc) pp = &(*pp)->r_next;
  *pp = mc->r_next;
  int left = mconn_remove(mc, now);
  if (!r->list) rec_free(r);
  return left;
}

/* The latest time a caller passed: removals (leave, close, sweep) have no clock of
 * their own, and an older time only keeps an expiring status a little longer. */
static double now_of_last_call;
static void seen(double now) {
  if (now > now_of_last_call) now_of_last_call = now;
}

int ews_presence_join(const char *ch, size_t chl, const char *uid, size_t ul, const char *status,
                      size_t sl, const char *meta, size_t ml, int worker, uint64_t conn_id,
                      void *conn, double now) {
  if (meta && !ews_utf8_valid((const uint8_t *)meta, ml)) return EWS_EINVAL;
  int rc = EWS_ENOMEM, is_new = 0;
  char *st = NULL, *mt = NULL; /* new strings first, so that a failure changes nothing */
  uint32_t stl = 0, mtl = 0;
  pthread_mutex_lock(&lock);
  seen(now);
  chan_t *c = chan_get(ch, chl, 1);
  user_t *u = c ? user_get(uid, ul, 1) : NULL;
  rec_t *r = u ? rec_find(conn_id) : NULL;
  mconn_t *mc = NULL;
  member_t *m = NULL;
  if (!u) goto out;
  if (r) {
    for (mc = r->list; mc && mc->m->ch != c; mc = mc->r_next) {}
    if (mc && mc->m->u != u) {
      rec_remove(mc, now); /* may free r, c and u: look them up again */
      mc = NULL;
      r = rec_find(conn_id);
      c = chan_get(ch, chl, 1);
      u = c ? user_get(uid, ul, 1) : NULL;
      if (!u) goto out;
    }
  }
  m = mc ? mc->m : (member_t *)ews_ht_find(&c->members, u->id, ul, u->n.hash);
  if ((status && dup_into(&st, &stl, status, sl) != 0) || (meta && dup_into(&mt, &mtl, meta, ml) != 0))
    goto fail;
  is_new = !m;
  if (!m) {
    if (!(m = calloc(1, sizeof *m))) goto fail;
    m->n = (ews_hnode_t){NULL, u->id, u->n.hash, u->n.len};
    m->ch = c;
    m->u = u;
    if (ews_ht_insert(&c->members, &m->n) != 0) {
      free(m);
      goto fail;
    }
  }
  if (!mc) {
    int new_rec = !r;
    if (!r && (r = calloc(1, sizeof *r))) {
      r->id = conn_id;
      r->worker = worker;
      r->conn = conn;
      ews_hnode_init(&r->n, (const char *)&r->id, sizeof r->id);
      if (ews_ht_insert(&recs, &r->n) != 0) {
        free(r);
        r = NULL;
      }
    }
    if (r) mc = calloc(1, sizeof *mc);
    if (!mc) {
      if (r && new_rec) rec_free(r);
      if (is_new) {
        ews_ht_remove(&c->members, &m->n);
        free(m);
      }
      goto fail;
    }
    __atomic_store_n(&nrecs, recs.n, __ATOMIC_RELEASE);
    mc->m = m;
    mc->rec = r;
    mc->joined = now;
    mc->m_next = m->conns;
    m->conns = mc;
    m->nconns++;
    mc->r_next = r->list;
    r->list = mc;
    if (!is_new) touch(c, u, 1, 0); /* another connection of a present member */
  }
  if (is_new) {
    m->u_next = u->members;
    if (u->members) u->members->u_prev = m;
    u->members = m;
    u->nmembers++;
    touch(c, u, 0, 0);
  }
  if (!is_new && (status || meta)) touch(c, u, 1, UPD_OWN); /* announced as an update */
  if (status) {
    free(m->status);
    m->status = st;
    m->sl = stl;
  }
  if (meta) {
    free(m->meta);
    m->meta = mt;
    m->ml = mtl;
  }
  rc = is_new;
  goto out;
fail:
  free(st);
  free(mt);
out:
  if (rc < 0) {
    if (u) user_maybe_free(u, now);
    if (c) chan_maybe_free(c);
  }
  pthread_mutex_unlock(&lock);
  return rc;
}

int ews_presence_leave_user(const char *ch, size_t chl, uint64_t conn_id, char *uid, size_t cap,
                            size_t *ul) {
  int rc = EWS_EINVAL;
  *ul = 0;
  pthread_mutex_lock(&lock);
  chan_t *c = chan_get(ch, chl, 0);
  rec_t *r = c ? rec_find(conn_id) : NULL;
  for (mconn_t *mc = r ? r->list : NULL; mc; mc = mc->r_next) {
    if (mc->m->ch == c) {
      const user_t *u = mc->m->u;
      if (uid && u->n.len <= cap) {
        memcpy(uid, u->id, u->n.len);
        *ul = u->n.len;
      }
      rc = rec_remove(mc, now_of_last_call);
      break;
    }
  }
  pthread_mutex_unlock(&lock);
  return rc;
}

int ews_presence_leave(const char *ch, size_t chl, uint64_t conn_id) {
  size_t ul;
  return ews_presence_leave_user(ch, chl, conn_id, NULL, 0, &ul);
}

int ews_presence_drop_conn(uint64_t conn_id) {
  if (!__atomic_load_n(&nrecs, __ATOMIC_ACQUIRE)) return 0;
  int left = 0;
  pthread_mutex_lock(&lock);
  rec_t *r = rec_find(conn_id);
  if (r) {
    for (mconn_t *mc = r->list, *next; mc; mc = next) {
      next = mc->r_next;
      left += mconn_remove(mc, now_of_last_call);
    }
    rec_free(r);
  }
  pthread_mutex_unlock(&lock);
  return left;
}

int ews_presence_set_status(const char *uid, size_t ul, const char *status, size_t sl,
                            const char *meta, size_t ml, double expire_s, double now) {
  if (meta && !ews_utf8_valid((const uint8_t *)meta, ml)) return EWS_EINVAL;
  int rc = 0;
  pthread_mutex_lock(&lock);
  seen(now);
  user_t *u = user_get(uid, ul, status != NULL);
  if (u) {
    char *st = NULL, *mt = NULL;
    uint32_t stl = 0, mtl = 0;
    if (dup_into(&st, &stl, status, sl) != 0 || dup_into(&mt, &mtl, meta, ml) != 0) {
      free(st);
      rc = EWS_ENOMEM;
    } else {
      free(u->status);
      free(u->meta);
      u->status = st;
      u->sl = stl;
      u->meta = mt;
      u->ml = mtl;
      u->expires = status && expire_s > 0 ? now + expire_s : 0;
      /* Members that show the global status: their channels hear of it. */
      for (member_t *m = u->members; m; m = m->u_next)
        if (!m->status) touch(m->ch, u, 1, UPD_GLOBAL);
    }
    user_maybe_free(u, now);
  } else if (status) {
    rc = EWS_ENOMEM;
  }
  pthread_mutex_unlock(&lock);
  return rc;
}

/* ---- reading ------------------------------------------------------------------- */

static int user_online(const user_t *u, const char *uid, size_t ul) {
  if (u && u->nmembers) return 1;
  ews_user_socket_t one[1];
  return ews_users_list(uid, ul, one, 1) > 0;
}

/* The global status of a user (u may be NULL): explicit, or the default. */
static int global_status(user_t *u, const char *uid, size_t ul, double now, const char **s,
                         size_t *sl, const char **meta, size_t *ml, int *online) {
  *online = user_online(u, uid, ul);
  if (u && status_live(u, now)) {
    *s = u->status, *sl = u->sl;
    *meta = u->meta, *ml = u->ml;
    return 1;
  }
  *s = *online ? "online" : "offline";
  *sl = strlen(*s);
  *meta = NULL, *ml = 0;
  return 0;
}

/* Fills e with copies of the strings (one allocation). */
static int entry_fill(ews_presence_entry_t *e, const char *user, size_t ul, const char *st,
                      size_t sl, const char *meta, size_t ml, const char *chs, size_t cl) {
  char *p = malloc(ul + sl + ml + cl + 1);
  if (!p) return EWS_ENOMEM;
  e->mem = p;
  e->user = memcpy(p, user, ul), e->user_len = ul, p += ul;
  e->status = memcpy(p, st, sl), e->status_len = sl, p += sl;
  e->meta = meta ? memcpy(p, meta, ml) : NULL, e->meta_len = ml, p += ml;
  e->channels = cl ? memcpy(p, chs, cl) : p, e->channels_len = cl;
  return 0;
}

void ews_presence_result_free(ews_presence_result_t *r) {
  for (size_t i = 0; i < r->n; i++) free(r->v[i].mem);
  free(r->v);
  memset(r, 0, sizeof *r);
}

int ews_presence_get(const char *const *uids, const size_t *lens, size_t n, double now,
                     ews_presence_result_t *out) {
  memset(out, 0, sizeof *out);
  if (!n) return 0;
  if (!(out->v = calloc(n, sizeof *out->v))) return EWS_ENOMEM;
  int rc = 0;
  pthread_mutex_lock(&lock);
  for (size_t i = 0; i < n && rc == 0; i++) {
    user_t *u = user_get(uids[i], lens[i], 0);
    ews_presence_entry_t *e = &out->v[i];
    const char *st, *meta;
    size_t sl, ml;
    e->explicit_status = global_status(u, uids[i], lens[i], now, &st, &sl, &meta, &ml, &e->online);
    size_t cl = 0;
    for (member_t *m = u ? u->members : NULL; m; m = m->u_next) cl += m->ch->n.len + 1;
    char *chs = cl ? malloc(cl) : NULL;
    if (cl && !chs) {
      rc = EWS_ENOMEM;
      break;
    }
    size_t off = 0;
    for (member_t *m = u ? u->members : NULL; m; m = m->u_next) {
      memcpy(chs + off, m->ch->name, m->ch->n.len);
      off += m->ch->n.len;
      chs[off++] = 0;
      e->nchannels++;
    }
    rc = entry_fill(e, uids[i], lens[i], st, sl, meta, ml, chs, cl);
    free(chs);
    if (rc == 0) out->n++;
  }
  pthread_mutex_unlock(&lock);
  if (rc != 0) ews_presence_result_free(out);
  return rc;
}

static int cmp_key(const char *a, size_t al, const char *b, size_t bl) {
  int c = memcmp(a, b, al < bl ? al : bl);
  return c ? c : (al > bl) - (al < bl);
}

static int cmp_members(const void *pa, const void *pb) {
  const member_t *a = *(member_t *const *)pa, *b = *(member_t *const *)pb;
  return cmp_key(a->n.key, a->n.len, b->n.key, b->n.len);
}

/* The status a member shows: its own, or its user's global one. */
static void member_status(member_t *m, double now, const char **s, size_t *sl) {
  if (m->status) {
    *s = m->status, *sl = m->sl;
    return;
  }
  const char *meta;
  size_t ml;
  int online;
  global_status(m->u, m->u->id, m->u->n.len, now, s, sl, &meta, &ml, &online);
}

static void collect(ews_hnode_t *x, void *ud) {
  member_t ***fill = ud;
  *(*fill)++ = (member_t *)x;
}

int ews_presence_list(const char *ch, size_t chl, const char *cursor, size_t curl, size_t limit,
                      double now, ews_presence_result_t *out) {
  memset(out, 0, sizeof *out);
  int rc = 0;
  pthread_mutex_lock(&lock);
  chan_t *c = chan_get(ch, chl, 0);
  size_t n = c ? c->members.n : 0;
  member_t **all = n ? malloc(n * sizeof *all) : NULL, **fill = all;
  if (n && !all) {
    rc = EWS_ENOMEM;
    goto done;
  }
  if (c) ews_ht_walk(&c->members, 0, SIZE_MAX, collect, &fill);
  if (n) qsort(all, n, sizeof *all, cmp_members);
  size_t lo = 0, hi = n; /* first member after the cursor */
  while (cursor && lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (cmp_key(all[mid]->n.key, all[mid]->n.len, cursor, curl) <= 0) lo = mid + 1;
    else hi = mid;
  }
  size_t take = n - lo < limit ? n - lo : limit;
  if (take && !(out->v = calloc(take, sizeof *out->v))) {
    rc = EWS_ENOMEM;
    goto done;
  }
  for (size_t i = 0; i < take && rc == 0; i++) {
    member_t *m = all[lo + i];
    const char *st;
    size_t sl;
    member_status(m, now, &st, &sl);
    ews_presence_entry_t *e = &out->v[i];
    rc = entry_fill(e, m->n.key, m->n.len, st, sl, m->meta ? m->meta : "{}", m->meta ? m->ml : 2,
                    NULL, 0);
    e->connections = m->nconns;
    e->online = 1;
    if (rc == 0) out->n++;
  }
  if (rc == 0 && take && lo + take < n) {
    out->next_cursor = out->v[take - 1].user;
    out->next_cursor_len = out->v[take - 1].user_len;
  }
done:
  pthread_mutex_unlock(&lock);
  free(all);
  if (rc != 0) ews_presence_result_free(out);
  return rc;
}

uint32_t ews_presence_count(const char *ch, size_t chl) {
  pthread_mutex_lock(&lock);
  chan_t *c = chan_get(ch, chl, 0);
  uint32_t n = c ? (uint32_t)c->members.n : 0;
  pthread_mutex_unlock(&lock);
  return n;
}

size_t ews_presence_pending_users(const char *ch, size_t chl, ews_presence_pend_user_t **out) {
  *out = NULL;
  size_t n = 0, bytes = 0;
  pthread_mutex_lock(&lock);
  chan_t *c = chan_get(ch, chl, 0);
  for (pend_t *p = c ? c->pend_head : NULL; p; p = p->next) {
    n++;
    bytes += p->n.len;
  }
  ews_presence_pend_user_t *v = n ? malloc(n * sizeof *v + bytes) : NULL;
  if (v) {
    char *q = (char *)(v + n);
    size_t i = 0;
    for (pend_t *p = c->pend_head; p; p = p->next, i++) {
      v[i].user = memcpy(q, p->uid, p->n.len);
      v[i].len = p->n.len;
      v[i].present = ews_ht_find(&c->members, p->uid, p->n.len, p->n.hash) != NULL;
      q += p->n.len;
    }
  } else {
    n = 0;
  }
  pthread_mutex_unlock(&lock);
  *out = v;
  return n;
}

size_t ews_presence_conns(void) { return __atomic_load_n(&nrecs, __ATOMIC_ACQUIRE); }

size_t ews_presence_channels(void) {
  pthread_mutex_lock(&lock);
  size_t n = chans.n;
  pthread_mutex_unlock(&lock);
  return n;
}

size_t ews_presence_users(void) {
  pthread_mutex_lock(&lock);
  size_t n = users.n;
  pthread_mutex_unlock(&lock);
  return n;
}

int ews_presence_stats(const char *ch, size_t chl, ews_ht_stats_t *out) {
  int rc = 0;
  pthread_mutex_lock(&lock);
  chan_t *c = ch ? chan_get(ch, chl, 0) : NULL;
  if (!ch) ews_ht_stats(&chans, out);
  else if (c) ews_ht_stats(&c->members, out);
  else rc = EWS_EINVAL;
  pthread_mutex_unlock(&lock);
  return rc;
}

/* ---- batches ------------------------------------------------------------------- */

typedef struct {
  char *p;
  size_t n, cap;
  int oom;
} sb_t;

/* Room for n more bytes and the NUL; 0, or -1 (out of memory, noted in b). */
static int sb_reserve(sb_t *b, size_t n) {
  if (b->n + n + 1 <= b->cap) return 0; /* + 1: always NUL-terminated */
  size_t cap = b->cap ? b->cap : 256;
  while (cap < b->n + n + 1) cap *= 2;
  char *p = realloc(b->p, cap);
  if (!p) {
    b->oom = 1;
    return -1;
  }
  b->p = p;
  b->cap = cap;
  return 0;
}

static void sb_put(sb_t *b, const void *s, size_t n) {
  if (b->oom || sb_reserve(b, n)) return;
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = 0;
}

#define SB_LIT(b, s) sb_put(b, s, sizeof s - 1)

/* A JSON string (proto/json.h): bytes of invalid UTF-8 are escaped one by one
 * (\u00XX), so the event is always valid UTF-8 (a text frame) and valid JSON. */
static void sb_json_str(sb_t *b, const char *s, size_t n) {
  size_t len = ews_json_str(NULL, s, n, EWS_JSON_CHECK);
  if (b->oom || sb_reserve(b, len)) return;
  ews_json_str(b->p + b->n, s, n, EWS_JSON_CHECK);
  b->n += len;
  b->p[b->n] = 0;
}

#define EVENT_CHUNK (64u * 1024u) /* bytes of entries per event before another starts */

/* One change of the channel's pending diff (the member as it is now, or its
 * absence). NULL when out of memory. */
static ews_presence_change_t *change_of(chan_t *c, const char *uid, size_t ul, uint32_t hash,
                                        int was_present, int updated, double now) {
  member_t *m = (member_t *)ews_ht_find(&c->members, uid, ul, hash);
  sb_t e = {0};
  const char *st = NULL;
  size_t sl = 0;
  if (m) {
    member_status(m, now, &st, &sl);
    SB_LIT(&e, "{\"user\":");
    sb_json_str(&e, uid, ul);
    SB_LIT(&e, ",\"status\":");
    sb_json_str(&e, st, sl);
    SB_LIT(&e, ",\"meta\":");
    if (m->meta) sb_put(&e, m->meta, m->ml);
    else SB_LIT(&e, "{}");
    SB_LIT(&e, "}");
  } else {
    sb_json_str(&e, uid, ul);
  }
  size_t ml = m ? (m->meta ? m->ml : 2) : 0;
  ews_presence_change_t *x = e.oom ? NULL : calloc(1, sizeof *x + ul + sl + ml + 3);
  if (!x) {
    free(e.p);
    return NULL;
  }
  char *q = x->mem;
  x->user = memcpy(q, uid, ul), x->user_len = ul, q += ul + 1;
  x->status = st ? memcpy(q, st, sl) : q, x->status_len = sl, q += sl + 1;
  x->meta = m ? memcpy(q, m->meta ? m->meta : "{}", ml) : q, x->meta_len = ml;
  x->entry = e.p;
  x->entry_len = e.n;
  x->present = m != NULL;
  x->was_present = was_present;
  x->updated = updated != 0;
  x->global_update = updated == UPD_GLOBAL;
  x->connections = m ? m->nconns : 0;
  return x;
}

/* Takes the channel's pending diff (emptied) as a list of changes, in the order
 * they came. */
static ews_presence_diff_t *take_diff(chan_t *c, double now) {
  ews_presence_diff_t *d = calloc(1, sizeof *d + c->n.len + 1);
  ews_presence_change_t **tail = d ? &d->changes : NULL;
  if (d) {
    memcpy(d->channel, c->name, c->n.len);
    d->channel_len = c->n.len;
  }
  for (pend_t *p = c->pend_head, *next; p; p = next) {
    next = p->next;
    if (d && (*tail = change_of(c, p->uid, p->n.len, p->n.hash, p->was_present, p->updated, now)))
      tail = &(*tail)->next;
    free(p);
  }
  ews_ht_free(&c->pending);
  c->pend_head = c->pend_tail = NULL;
  return d;
}

int ews_presence_kind(const ews_presence_change_t *x) {
  if (x->present && !x->was_present) return 'j';
  if (!x->present && x->was_present) return 'l';
  if (x->present && x->updated) return 'u';
  return 0;
}

/* One event of the entries gathered in j (joins), l (leaves) and up (updates), which
 * are emptied. NULL when there are none (or out of memory: that part is lost, never
 * half-sent). */
static ews_presence_event_t *make_event(const char *ch, size_t chl, sb_t *jp, sb_t *lp,
                                        sb_t *upp) {
  sb_t j = *jp, l = *lp, up = *upp;
  ews_presence_event_t *e = NULL;
  if (j.n || l.n || up.n) {
    sb_t out = {0};
    SB_LIT(&out, "{\"type\":\"presence\",\"channel\":");
    sb_json_str(&out, ch, chl);
    SB_LIT(&out, ",\"joins\":[");
    if (j.n) sb_put(&out, j.p, j.n);
    SB_LIT(&out, "],\"leaves\":[");
    if (l.n) sb_put(&out, l.p, l.n);
    SB_LIT(&out, "]");
    if (up.n) { /* only when there are some: the event stays as it was otherwise */
      SB_LIT(&out, ",\"updates\":[");
      sb_put(&out, up.p, up.n);
      SB_LIT(&out, "]");
    }
    SB_LIT(&out, "}");
    if (!out.oom && !j.oom && !l.oom && !up.oom && (e = calloc(1, sizeof *e)) &&
        (e->channel = malloc(chl ? chl : 1))) {
      memcpy(e->channel, ch, chl);
      e->channel_len = chl;
      e->json = out.p;
      e->json_len = out.n;
      out.p = NULL;
    } else if (e) {
      free(e);
      e = NULL;
    }
    free(out.p);
  }
  jp->n = lp->n = upp->n = 0;
  jp->oom = lp->oom = upp->oom = 0;
  return e;
}

ews_presence_event_t *ews_presence_events_of(const char *ch, size_t chl,
                                             const ews_presence_change_t *changes,
                                             const char *kinds) {
  sb_t j = {0}, l = {0}, up = {0};
  ews_presence_event_t *head = NULL, **tail = &head;
  size_t i = 0;
  for (const ews_presence_change_t *x = changes; x; x = x->next, i++) {
    int k = kinds ? kinds[i] : ews_presence_kind(x);
    sb_t *d = k == 'j' ? &j : k == 'l' ? &l : k == 'u' ? &up : NULL;
    if (!d) continue;
    if (d->n) SB_LIT(d, ",");
    sb_put(d, x->entry, x->entry_len);
    if (j.n + l.n + up.n >= EVENT_CHUNK && (*tail = make_event(ch, chl, &j, &l, &up)))
      tail = &(*tail)->next;
  }
  *tail = make_event(ch, chl, &j, &l, &up);
  free(j.p);
  free(l.p);
  free(up.p);
  return head;
}

void ews_presence_diffs_free(ews_presence_diff_t *d) {
  while (d) {
    ews_presence_diff_t *next = d->next;
    for (ews_presence_change_t *x = d->changes, *xn; x; x = xn) {
      xn = x->next;
      free(x->entry);
      free(x);
    }
    free(d);
    d = next;
  }
}

/* A user whose global status expired goes back to the default (the channels that
 * show it hear of it) and is freed when it is in no channel. */
static void expire_status(ews_hnode_t *x, void *ud) {
  user_t *u = (user_t *)x;
  double now = *(const double *)ud;
  if (!u->status || status_live(u, now)) return;
  for (member_t *m = u->members; m; m = m->u_next)
    if (!m->status) touch(m->ch, u, 1, UPD_GLOBAL);
  free(u->status);
  free(u->meta);
  u->status = u->meta = NULL;
  user_maybe_free(u, now);
}

/* Frees the users whose status expired and who are in no channel (once a second). */
static void gc_users(double now) {
  if (now - last_gc < 1) return;
  last_gc = now;
  ews_ht_walk(&users, 0, SIZE_MAX, expire_status, &now);
}

ews_presence_diff_t *ews_presence_take_diffs(double now, int force) {
  ews_presence_diff_t *head = NULL, **tail = &head;
  pthread_mutex_lock(&lock);
  seen(now);
  /* 0.9: the workers' timers tick at the same interval with different phases; one
   * of them takes each batch, without stretching the interval to the next tick. */
  if (force || now - last_take >= config.batch_interval * 0.9) {
    gc_users(now);
    if (pend_head) last_take = now;
    chan_t *c = pend_head;
    pend_head = pend_tail = NULL;
    while (c) {
      chan_t *next = c->pend_next;
      c->queued = 0;
      c->pend_next = NULL;
      if ((*tail = take_diff(c, now))) tail = &(*tail)->next;
      chan_maybe_free(c);
      c = next;
    }
  }
  pthread_mutex_unlock(&lock);
  return head;
}

ews_presence_event_t *ews_presence_take(double now, int force) {
  ews_presence_diff_t *d = ews_presence_take_diffs(now, force);
  ews_presence_event_t *head = NULL, **tail = &head;
  for (ews_presence_diff_t *x = d; x; x = x->next) {
    *tail = ews_presence_events_of(x->channel, x->channel_len, x->changes, NULL);
    while (*tail) tail = &(*tail)->next;
  }
  ews_presence_diffs_free(d);
  return head;
}

typedef struct {
  int (*want)(const char *ch, size_t chl, void *ud);
  void *ud;
  double now;
  ews_presence_diff_t *head;
} snap_t;

typedef struct {
  ews_presence_diff_t *d;
  double now;
} snapc_t;

static void snap_member(ews_hnode_t *x, void *ud) {
  snapc_t *sc = ud;
  member_t *m = (member_t *)x;
  ews_presence_change_t *c = change_of(m->ch, m->n.key, m->n.len, m->n.hash, 1, 0, sc->now);
  if (!c) return;
  c->next = sc->d->changes;
  sc->d->changes = c;
}

static void snap_chan(ews_hnode_t *x, void *ud) {
  snap_t *sn = ud;
  chan_t *c = (chan_t *)x;
  if (!c->members.n || (sn->want && !sn->want(c->name, c->n.len, sn->ud))) return;
  ews_presence_diff_t *d = calloc(1, sizeof *d + c->n.len + 1);
  if (!d) return;
  memcpy(d->channel, c->name, c->n.len);
  d->channel_len = c->n.len;
  snapc_t sc = {d, sn->now};
  ews_ht_walk(&c->members, 0, SIZE_MAX, snap_member, &sc);
  d->next = sn->head;
  sn->head = d;
}

ews_presence_diff_t *ews_presence_snapshot(int (*want)(const char *ch, size_t chl, void *ud),
                                           void *ud) {
  snap_t sn = {want, ud, 0, NULL};
  pthread_mutex_lock(&lock);
  sn.now = now_of_last_call;
  ews_ht_walk(&chans, 0, SIZE_MAX, snap_chan, &sn);
  pthread_mutex_unlock(&lock);
  return sn.head;
}

void ews_presence_events_free(ews_presence_event_t *e) {
  while (e) {
    ews_presence_event_t *next = e->next;
    free(e->channel);
    free(e->json);
    free(e);
    e = next;
  }
}

typedef struct {
  int worker;
  ews_presence_probe_fn probe;
  void *ud;
  size_t dropped;
} sweep_t;

/* Probes one connection of the sweeping worker; ends its memberships if asked. */
static void sweep_one(ews_hnode_t *x, void *ud) {
  sweep_t *sw = ud;
  rec_t *r = (rec_t *)x;
  if (r->worker != sw->worker || !sw->probe(r->conn, &r->last_ping, sw->ud)) return;
  for (mconn_t *mc = r->list, *next; mc; mc = next) {
    next = mc->r_next;
    mconn_remove(mc, now_of_last_call);
  }
  rec_free(r);
  sw->dropped++;
}

size_t ews_presence_sweep(int worker, ews_presence_probe_fn probe, void *ud) {
  if (!__atomic_load_n(&nrecs, __ATOMIC_ACQUIRE)) return 0;
  sweep_t sw = {worker, probe, ud, 0};
  pthread_mutex_lock(&lock);
  ews_ht_walk(&recs, 0, SIZE_MAX, sweep_one, &sw);
  pthread_mutex_unlock(&lock);
  return sw.dropped;
}
