/* config.h — the server-wide configuration (listen address, workers, limits) and its
 * command line. Filled from defaults, then the script's edgews.configure{...}, then
 * command-line flags, in that order; read-only once workers start. */
#ifndef EWS_CONFIG_H
#define EWS_CONFIG_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
  char *script;       /* absolute path of app.lua */
  char *script_dir;   /* its directory (watched for hot reload) */
  char host[256];
  int port;
  char plain_host[256]; /* a second, plain ws:// listener next to a wss:// one */
  int plain_port;       /* -1: none */
  char admin_host[256]; /* /health and /metrics only, when set */
  int admin_port;       /* -1: none (they are served on the main listener) */
  int metrics;          /* serve /metrics */
  int health;           /* serve /health */
  char *tls_cert;       /* PEM files; both set = the main listener is wss:// */
  char *tls_key;
  int workers;
  int log_level;
  double drain_timeout;         /* seconds to wait for close handshakes on shutdown */
  uint32_t handshake_timeout_ms; /* accept to complete request head */
  uint32_t close_timeout_ms;     /* close frame sent to TCP closed */
  uint32_t max_head;             /* request head bytes */
  uint32_t max_headers;
  int backlog;
  int watch;                     /* hot reload on file change */
  int reuse_port;                /* share the port with other processes (explicit) */
  uint64_t max_message_memory;   /* process-wide budget of incoming message buffers */
  uint32_t inbox_limit;          /* messages a worker's inbox holds (hub/bus.h) */
  int compression;               /* -1: each app decides; 0 off; 1 shared; 2 dedicated */
  int compression_window_kb;     /* dedicated: 1..32 */
  int compression_engine;        /* shared: 0 each app's engine; 1 zlib; 2 libdeflate */
  /* Durable storage (hub/store.h): opened when data_dir is set. */
  char *data_dir;                /* NULL: no store (pub/sub history in memory) */
  int pubsub_persist;            /* -1: on when data_dir is set; 0: memory; 1: store */
  int32_t pubsub_max_queue;      /* messages kept per topic (0 = unlimited on disk) */
  int32_t pubsub_ttl;            /* seconds a message is kept (0 = forever) */
  uint32_t pubsub_max_recover;   /* messages a recovering subscriber may replay */
  int32_t notif_max_per_user;    /* notifications kept per user (0 = unlimited) */
  int32_t notif_ttl;             /* default notification TTL, seconds (0 = forever) */
  /* Runaway scripts (lua/runaway.h). */
  double handler_timeout;        /* seconds a Lua run may take (0 = no limit) */
  double max_lua_memory;         /* bytes a worker's Lua heap may hold (0 = no limit) */
  /* The cluster (README: Running a cluster): Redis shards, none = one instance. */
  void *redis;                   /* ews_redis_url_t[nredis] (hub/redis_url.h) */
  int nredis;
  /* Which fields the command line set (they win over the script). */
  unsigned cli_set;
} ews_config_t;

enum {
  EWS_CLI_LISTEN = 1u << 0,
  EWS_CLI_WORKERS = 1u << 1,
  EWS_CLI_LOG_LEVEL = 1u << 2,
  EWS_CLI_DRAIN = 1u << 3,
  EWS_CLI_WATCH = 1u << 4,
  EWS_CLI_TLS = 1u << 5,
  EWS_CLI_PLAIN = 1u << 6,
  EWS_CLI_COMPRESSION = 1u << 7,
  EWS_CLI_ADMIN = 1u << 8,
  EWS_CLI_DATA = 1u << 9,
  EWS_CLI_REUSE_PORT = 1u << 10,
  EWS_CLI_MSGMEM = 1u << 11,
  EWS_CLI_REDIS = 1u << 12
};

void ews_config_defaults(ews_config_t *cfg);
/* Parses "HOST:PORT", "[v6]:PORT" or ":PORT" into host (256 bytes) and *port.
 * 0 or EWS_EINVAL. */
int ews_config_parse_addr(const char *s, char *host, int *port);
static inline int ews_config_parse_listen(ews_config_t *cfg, const char *s) {
  return ews_config_parse_addr(s, cfg->host, &cfg->port);
}
/* Turns a host name in host (256 bytes, from ews_config_parse_addr) into its numeric
 * address, resolved once (getaddrinfo): the first IPv4 address when it has one, else
 * the first IPv6 one. A numeric host is left as it is. 0, or -1 with a reason
 * (static text) in *why. */
int ews_config_resolve_host(char *host, const char **why);
/* Parses argv. Returns 0 to run, 1 when it printed help/version (exit 0), or -1 after
 * printing an error (exit 2). */
int ews_config_parse_args(ews_config_t *cfg, int argc, char **argv);
void ews_config_free(ews_config_t *cfg);
/* Adds a Redis shard from its URL (hub/redis_url.h). 0, EWS_EINVAL (*why set: a
 * bad URL, too many shards, or the same shard twice) or EWS_ENOMEM. */
int ews_config_add_redis(ews_config_t *cfg, const char *url, const char **why);

#endif
