/* redis_url.h — where one Redis server is and how to talk to it: the parsed form of
 * a --redis URL (README: Running a cluster). I/O-free; the caller owns the record.
 *
 *   redis://[[user]:password@]host[:port][/db][?connect_timeout=S&timeout=S]
 *   unix:PATH[?db=N&password=P&user=U&connect_timeout=S&timeout=S]  (also unix://PATH)
 *
 * user and password may be percent-encoded. Defaults: port 6379, db 0, connect
 * timeout 2 s, command timeout 3 s (a server that answers no PING for that long is
 * treated as down). */
#ifndef EWS_REDIS_URL_H
#define EWS_REDIS_URL_H

#include <stdint.h>

typedef struct {
  char host[256];   /* TCP host ("" for a unix socket) */
  int port;
  char path[256];   /* unix socket path, or "" */
  char user[128];   /* ACL user, or "" */
  char password[256];
  int db;
  uint32_t connect_timeout_ms;
  uint32_t timeout_ms;
  char name[300];   /* "host:port/db" or "unix:PATH/db": logs, metrics, the shard ring */
} ews_redis_url_t;

/* Parses s into *out. 0, or EWS_EINVAL with *why (static text) set. */
int ews_redis_url_parse(const char *s, ews_redis_url_t *out, const char **why);

#endif
