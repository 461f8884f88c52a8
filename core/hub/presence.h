/* presence.h — who is present where, for the whole process (every worker): the
 * channels and their members, each member a user id with a status, metadata (a JSON
 * text) and the connections that hold it there; per-user global status with expiry;
 * and the batched join/leave diff of each channel.
 *
 * A user is present in a channel while at least one of its connections is: a second
 * connection (another tab) is not a new join, closing one of two is not a leave.
 * Changes are not announced one by one: each appends to its channel's pending diff
 * (a join and a leave of the same user within one batch cancel out) and
 * ews_presence_take() hands over one event per changed channel, at most once per
 * batch interval for the whole process, for the caller to publish. A channel exists
 * only while it has members or a pending diff.
 *
 * One mutex guards everything; it is taken per join, leave, lookup and batch, never
 * per message. Times are seconds on a monotonic clock, passed in by the caller.
 * Connections are identified by their process-unique id; the `conn` pointer stored
 * with them is opaque here and handed back only to ews_presence_sweep() on the
 * connection's own worker. Functions that return data copy it out (the caller owns
 * the result), so nothing here calls back into Lua. */
#ifndef EWS_PRESENCE_H
#define EWS_PRESENCE_H

#include <stddef.h>
#include <stdint.h>

#include "hub/htable.h"

typedef struct {
  double batch_interval;     /* s between two batches (default 0.1) */
  double heartbeat_interval; /* s of silence before a member connection is pinged (25; 0: never) */
  double heartbeat_timeout;  /* s of silence before it is removed (60; 0: never) */
  double status_expiration;  /* default lifetime of a set status (300; 0: never) */
} ews_presence_config_t;

void ews_presence_configure(const ews_presence_config_t *cfg);
void ews_presence_get_config(ews_presence_config_t *out);

/* Adds connection conn_id (of `worker`, its connection pointer `conn`) to the user's
 * membership of the channel. status (NULL: the user's global status) and meta (a
 * JSON text, NULL: "{}", else replaces the member's) apply to the member. A
 * connection is in a channel at most once: joining again updates status and meta;
 * joining as another user first leaves as the previous one. Returns 1 when the user
 * is new in the channel, 0 when it was already present, EWS_EINVAL (meta is not
 * UTF-8) or EWS_ENOMEM (then nothing changed). */
int ews_presence_join(const char *ch, size_t chl, const char *uid, size_t ul, const char *status,
                      size_t sl, const char *meta, size_t ml, int worker, uint64_t conn_id,
                      void *conn, double now);
/* Takes the connection out of the channel. 1 when it was the user's last connection
 * there (a leave), 0 when the user is still present, EWS_EINVAL when the connection
 * was not in the channel. */
int ews_presence_leave(const char *ch, size_t chl, uint64_t conn_id);
/* The same, and the user's id (copied into uid when it fits cap; *ul 0 otherwise). */
int ews_presence_leave_user(const char *ch, size_t chl, uint64_t conn_id, char *uid, size_t cap,
                            size_t *ul);
/* Ends every membership of a connection (it closed or went silent). Returns the
 * number of channels its user left. Cheap when no connection is a member anywhere. */
int ews_presence_drop_conn(uint64_t conn_id);
/* The user's global status: status (NULL: clear, back to the default) and meta (a
 * JSON text or NULL) for expire_s seconds (<= 0: until changed). After that the
 * status is the default again: "online" while the user has a live connection (a
 * member connection here, or an authenticated one in hub/users.h), else "offline".
 * 0, EWS_EINVAL (meta is not UTF-8) or EWS_ENOMEM. */
int ews_presence_set_status(const char *uid, size_t ul, const char *status, size_t sl,
                            const char *meta, size_t ml, double expire_s, double now);

/* One user in a result. Strings are not NUL-terminated (except channels, a list of
 * nchannels names each followed by a NUL); meta is NULL when there is none. */
typedef struct {
  const char *user, *status, *meta, *channels;
  size_t user_len, status_len, meta_len, channels_len;
  uint32_t connections; /* list: the user's connections in the channel */
  uint32_t nchannels;   /* get: channels the user is present in */
  int online;           /* get: a live connection on any worker */
  int explicit_status;  /* get: status is one the user set, not the default */
  char *mem;            /* owns the strings */
} ews_presence_entry_t;

typedef struct {
  ews_presence_entry_t *v;
  size_t n;
  const char *next_cursor; /* list: pass back to continue, or NULL at the end */
  size_t next_cursor_len;
} ews_presence_result_t;

/* Global status, metadata, online flag and channels of each user. 0 or EWS_ENOMEM. */
int ews_presence_get(const char *const *uids, const size_t *lens, size_t n, double now,
                     ews_presence_result_t *out);
/* Members of the channel in user-id order (bytewise), at most `limit`, starting after
 * `cursor` (NULL: from the first). Each has the member's status (its own, or the
 * user's global one), meta and number of connections. 0 or EWS_ENOMEM. */
int ews_presence_list(const char *ch, size_t chl, const char *cursor, size_t curl, size_t limit,
                      double now, ews_presence_result_t *out);
void ews_presence_result_free(ews_presence_result_t *r);
/* Users present in the channel. */
uint32_t ews_presence_count(const char *ch, size_t chl);

/* One batch event: a JSON text (NUL-terminated) for the channel's subscribers,
 * {"type":"presence","channel":C,"joins":[{"user":U,"status":S,"meta":M},...],"leaves":[U,...]}
 * plus "updates":[{"user":U,"status":S,"meta":M},...] when present members changed. */
typedef struct ews_presence_event {
  struct ews_presence_event *next;
  char *channel, *json;
  size_t channel_len, json_len;
} ews_presence_event_t;

/* Takes every pending diff when a batch interval has passed since the last take by
 * anyone (or always with force): one event per changed channel (several of about
 * 64 KB each when many users changed at once), or NULL. The caller publishes them and frees the list. */
ews_presence_event_t *ews_presence_take(double now, int force);
void ews_presence_events_free(ews_presence_event_t *e);

/* One user's change in a channel since the last batch, with the member as it is
 * now (present) or its absence: for the batch events, and for an engine that
 * mirrors these tables elsewhere (a cluster's Redis). Strings are copies (user,
 * status and meta in mem; status is the one the member shows; meta "{}" when it
 * has none); entry is the member's JSON entry of an event ({"user":U,"status":S,
 * "meta":M}), or the user as a JSON string when absent. */
typedef struct ews_presence_change {
  struct ews_presence_change *next;
  const char *user, *status, *meta;
  size_t user_len, status_len, meta_len;
  char *entry;
  size_t entry_len;
  int present, was_present, updated;
  int global_update; /* updated only because the user's global status changed */
  uint32_t connections;
  char mem[];
} ews_presence_change_t;

typedef struct ews_presence_diff {
  struct ews_presence_diff *next;
  ews_presence_change_t *changes; /* in the order they came */
  size_t channel_len;
  char channel[];
} ews_presence_diff_t;

/* As ews_presence_take, the diffs themselves (one per changed channel). */
ews_presence_diff_t *ews_presence_take_diffs(double now, int force);
void ews_presence_diffs_free(ews_presence_diff_t *d);
/* What a change is in this process's events: 'j' (join), 'l' (leave), 'u' (update)
 * or 0 (nothing to announce: its connection count changed). */
int ews_presence_kind(const ews_presence_change_t *x);
/* The events of a channel's changes, each announced as kinds[i] ('j', 'l', 'u', 0:
 * not; kinds NULL: ews_presence_kind), in events of about 64 KB at most. */
ews_presence_event_t *ews_presence_events_of(const char *ch, size_t chl,
                                             const ews_presence_change_t *changes,
                                             const char *kinds);
/* Every member of every channel for which want(ch) says 1 (want NULL: all), as
 * diffs of present changes. Copies; out of memory loses entries. */
ews_presence_diff_t *ews_presence_snapshot(int (*want)(const char *ch, size_t chl, void *ud),
                                           void *ud);

/* Heartbeat: calls probe(conn, &last_ping, ud) for each member connection of
 * `worker` (under the lock: the probe must not call back into this module); a probe
 * returning 1 ends that connection's memberships. last_ping is the probe's own
 * record (starts at 0). Returns the number of connections dropped. */
typedef int (*ews_presence_probe_fn)(void *conn, double *last_ping, void *ud);
size_t ews_presence_sweep(int worker, ews_presence_probe_fn probe, void *ud);

/* The users of the channel whose membership changed since the last batch, and
 * whether each is a member now: copies in one allocation (free(*out)). */
typedef struct {
  const char *user;
  size_t len;
  int present;
} ews_presence_pend_user_t;
size_t ews_presence_pending_users(const char *ch, size_t chl, ews_presence_pend_user_t **out);

/* Member connections, channels and users known (for cheap checks and tests). */
size_t ews_presence_conns(void);
size_t ews_presence_channels(void);
size_t ews_presence_users(void);
/* The shape of the channel table (ch NULL) or of the channel's member table
 * (hub/htable.h), for tests. 0, or EWS_EINVAL when there is no such channel. */
int ews_presence_stats(const char *ch, size_t chl, ews_ht_stats_t *out);

#endif
