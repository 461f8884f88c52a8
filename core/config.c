/* config.c — defaults and the command line of edgews-lua (see config.h). */
#include "config.h"

#include <errno.h>
#include <arpa/inet.h>
#include <limits.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "err.h"
#include "log.h"
#include "hub/bus.h"
#include "hub/engine.h"
#include "hub/redis_url.h"
#include "net/msgmem.h"
#include "lua/runaway.h"

static const char usage[] =
    "usage: edgews-lua [options] app.lua\n"
    "\n"
    "Serves the WebSocket apps that app.lua defines (see README: Lua API).\n"
    "Options override what the script sets with edgews.configure{...}.\n"
    "\n"
    "  --listen HOST:PORT    address to listen on (default 0.0.0.0:8080; port 0 picks a\n"
    "                        free port, printed in the 'listening on' log line; HOST\n"
    "                        may be a name, resolved once at start, or [IPv6])\n"
    "  --workers N           worker threads, each with its own event loop, LuaJIT VM and\n"
    "                        SO_REUSEPORT listener (default: the number of CPUs)\n"
    "  --log-level LEVEL     debug, info, warn, error or off (default info)\n"
    "  --drain-timeout SECS  on SIGINT/SIGTERM, how long to wait for clients to finish\n"
    "                        the close handshake after close 1001 (default 5)\n"
    "  --tls-cert FILE       PEM certificate chain: the listener serves wss:// (TLS 1.2,\n"
    "                        ECDHE + AES-GCM/ChaCha20-Poly1305); needs --tls-key\n"
    "  --tls-key FILE        PEM private key of --tls-cert (SIGHUP reloads both)\n"
    "  --plain-listen H:P    with TLS on, also serve plain ws:// on this address\n"
    "  --admin-listen H:P    serve /health and /metrics on this address only\n"
    "  --compression MODE    permessage-deflate for every app: off, shared[:ENGINE] (no\n"
    "                        context takeover, one compressor per worker, no memory per\n"
    "                        connection; ENGINE zlib or libdeflate, default each app's)\n"
    "                        or dedicated[:KB] (context takeover, a KB KiB window per\n"
    "                        connection, KB in 1,2,4,8,16,32; default 32)\n"
    "  --data DIR            durable storage: pub/sub history and notifications in\n"
    "                        DIR/edgews.db (SQLite, WAL); without it pub/sub history\n"
    "                        is kept in memory and notifications are unavailable\n"
    "  --max-message-memory MIB  process-wide budget for incoming messages being\n"
    "                        reassembled or inflated (default 256; 0: none); a message\n"
    "                        that would pass it is closed with 1013\n"
    "  --reuse-port          share the listening port with other processes that ask for\n"
    "                        it too (SO_REUSEPORT across processes); by default a\n"
    "                        port another process listens on is refused\n"
    "  --redis URL           join a cluster over Redis: redis://[[user]:password@]host[:port][/db]\n"
    "                        or unix:/path (?connect_timeout=S&timeout=S); repeat it to\n"
    "                        shard over several Redis servers (README: Running a cluster)\n"
    "  --no-watch            do not reload when the script's directory changes\n"
    "                        (SIGHUP still reloads)\n"
    "  --version             print the version and exit\n"
    "  --help                print this help and exit\n"
    "\n"
    "Signals: SIGINT/SIGTERM drain and exit 0 (a second one exits at once);\n"
    "SIGHUP reloads the script in every worker.\n";

void ews_config_defaults(ews_config_t *cfg) {
  memset(cfg, 0, sizeof *cfg);
  snprintf(cfg->host, sizeof cfg->host, "0.0.0.0");
  cfg->port = 8080;
  cfg->plain_port = -1;
  cfg->admin_port = -1;
  cfg->metrics = cfg->health = 1;
  cfg->compression = -1;
  cfg->compression_window_kb = 32;
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  cfg->workers = n > 0 ? (int)n : 1;
  cfg->log_level = EWS_LOG_INFO;
  cfg->drain_timeout = 5.0;
  cfg->handshake_timeout_ms = 10000;
  cfg->close_timeout_ms = 5000;
  cfg->max_head = 8192;
  cfg->max_headers = 64;
  cfg->backlog = 1024;
  cfg->watch = 1;
  cfg->max_message_memory = EWS_MSGMEM_DEFAULT;
  cfg->inbox_limit = EWS_INBOX_DEFAULT;
  cfg->pubsub_persist = -1;
  cfg->pubsub_max_queue = 10000;
  cfg->pubsub_max_recover = 10000;
  cfg->notif_max_per_user = 1000;
  cfg->handler_timeout = EWS_RUNAWAY_DEFAULT_TIMEOUT;
  cfg->max_lua_memory = EWS_RUNAWAY_DEFAULT_MEMORY;
}

int ews_config_parse_addr(const char *s, char *host, int *portp) {
  const char *colon = strrchr(s, ':');
  if (!colon) return EWS_EINVAL;
  const char *h = s;
  size_t hlen = (size_t)(colon - s);
  if (hlen >= 2 && h[0] == '[' && h[hlen - 1] == ']') {
    h++;
    hlen -= 2;
  }
  if (hlen >= 256) return EWS_EINVAL;
  char *end;
  errno = 0;
  long port = strtol(colon + 1, &end, 10);
  if (errno || *end || end == colon + 1 || port < 0 || port > 65535) return EWS_EINVAL;
  if (hlen == 0) {
    snprintf(host, 256, "0.0.0.0");
  } else {
    memcpy(host, h, hlen);
    host[hlen] = 0;
  }
  *portp = (int)port;
  return 0;
}

int ews_config_resolve_host(char *host, const char **why) {
  unsigned char probe[sizeof(struct in6_addr)];
  if (inet_pton(AF_INET, host, probe) == 1 || inet_pton(AF_INET6, host, probe) == 1) return 0;
  struct addrinfo hints, *res = NULL;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  int r = getaddrinfo(host, NULL, &hints, &res);
  if (r != 0) {
    *why = r == EAI_SYSTEM ? strerror(errno) : gai_strerror(r);
    return -1;
  }
  const struct addrinfo *pick = NULL;
  for (const struct addrinfo *a = res; a; a = a->ai_next)
    if (a->ai_family == AF_INET) { pick = a; break; }
  for (const struct addrinfo *a = res; a && !pick; a = a->ai_next)
    if (a->ai_family == AF_INET6) pick = a;
  char out[INET6_ADDRSTRLEN];
  const char *ok = NULL;
  if (pick && pick->ai_family == AF_INET)
    ok = inet_ntop(AF_INET, &((struct sockaddr_in *)pick->ai_addr)->sin_addr, out, sizeof out);
  else if (pick)
    ok = inet_ntop(AF_INET6, &((struct sockaddr_in6 *)pick->ai_addr)->sin6_addr, out, sizeof out);
  freeaddrinfo(res);
  if (!ok) {
    *why = "it has no IPv4 or IPv6 address";
    return -1;
  }
  snprintf(host, 256, "%s", out);
  return 0;
}

static int parse_num(const char *s, double lo, double hi, double *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || *end || end == s || v < lo || v > hi) return -1;
  *out = v;
  return 0;
}

static const char *const flags[] = {
    "--listen", "--workers", "--log-level", "--drain-timeout", "--tls-cert", "--tls-key",
    "--plain-listen", "--admin-listen", "--compression", "--data", "--max-message-memory",
    "--reuse-port", "--no-watch", "--version", "--help"};

/* Edit distance of a and b (both short), for "did you mean". */
static size_t distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  if (la > 40 || lb > 40) return 99;
  size_t row[41];
  for (size_t j = 0; j <= lb; j++) row[j] = j;
  for (size_t i = 1; i <= la; i++) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= lb; j++) {
      size_t up = row[j];
      size_t best = diag + (a[i - 1] != b[j - 1]);
      if (up + 1 < best) best = up + 1;
      if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
      row[j] = best;
      diag = up;
    }
  }
  return row[lb];
}

/* The flag an unknown one is most likely a typo of (at most 3 edits; "-listen"
 * and "listen" count as "--listen"), or NULL. */
static const char *closest_flag(const char *a) {
  char norm[64];
  const char *s = a;
  while (*s == '-') s++;
  snprintf(norm, sizeof norm, "--%.40s", s);
  const char *best = NULL;
  size_t bd = 4;
  for (size_t k = 0; k < sizeof flags / sizeof flags[0]; k++) {
    size_t d = distance(norm, flags[k]);
    if (d < bd) {
      bd = d;
      best = flags[k];
    }
  }
  return best;
}

int ews_config_parse_args(ews_config_t *cfg, int argc, char **argv) {
  const char *script = NULL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *val = NULL;
    /* Accept both "--flag value" and "--flag=value". */
    char flag[64];
    const char *eq = strchr(a, '=');
    if (a[0] == '-' && a[1] == '-' && eq && (size_t)(eq - a) < sizeof flag) {
      memcpy(flag, a, (size_t)(eq - a));
      flag[eq - a] = 0;
      val = eq + 1;
      a = flag;
    }
#define NEED_VALUE()                                                   \
  do {                                                                 \
    if (!val) {                                                        \
      if (i + 1 >= argc) {                                             \
        fprintf(stderr, "edgews-lua: %s needs a value (see edgews-lua --help)\n", a); \
        return -1;                                                     \
      }                                                                \
      val = argv[++i];                                                 \
    }                                                                  \
  } while (0)
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      fputs(usage, stdout);
      return 1;
    } else if (!strcmp(a, "--version")) {
      puts("edgews-lua 0.1.0");
      return 1;
    } else if (!strcmp(a, "--listen")) {
      NEED_VALUE();
      if (ews_config_parse_listen(cfg, val) != 0) {
        fprintf(stderr, "edgews-lua: bad --listen '%s' (want HOST:PORT)\n", val);
        return -1;
      }
      cfg->cli_set |= EWS_CLI_LISTEN;
    } else if (!strcmp(a, "--workers")) {
      NEED_VALUE();
      double v;
      if (parse_num(val, 1, 256, &v) != 0 || v != (int)v) {
        fprintf(stderr, "edgews-lua: bad --workers '%s' (want 1..256)\n", val);
        return -1;
      }
      cfg->workers = (int)v;
      cfg->cli_set |= EWS_CLI_WORKERS;
    } else if (!strcmp(a, "--log-level")) {
      NEED_VALUE();
      int lv = ews_log_level_parse(val);
      if (lv < 0) {
        fprintf(stderr, "edgews-lua: bad --log-level '%s' (debug|info|warn|error|off)\n", val);
        return -1;
      }
      cfg->log_level = lv;
      cfg->cli_set |= EWS_CLI_LOG_LEVEL;
    } else if (!strcmp(a, "--drain-timeout")) {
      NEED_VALUE();
      if (parse_num(val, 0, 3600, &cfg->drain_timeout) != 0) {
        fprintf(stderr, "edgews-lua: bad --drain-timeout '%s' (seconds)\n", val);
        return -1;
      }
      cfg->cli_set |= EWS_CLI_DRAIN;
    } else if (!strcmp(a, "--tls-cert") || !strcmp(a, "--tls-key")) {
      NEED_VALUE();
      char **slot = !strcmp(a, "--tls-cert") ? &cfg->tls_cert : &cfg->tls_key;
      free(*slot);
      *slot = strdup(val);
      cfg->cli_set |= EWS_CLI_TLS;
    } else if (!strcmp(a, "--plain-listen")) {
      NEED_VALUE();
      if (ews_config_parse_addr(val, cfg->plain_host, &cfg->plain_port) != 0) {
        fprintf(stderr, "edgews-lua: bad --plain-listen '%s' (want HOST:PORT)\n", val);
        return -1;
      }
      cfg->cli_set |= EWS_CLI_PLAIN;
    } else if (!strcmp(a, "--admin-listen")) {
      NEED_VALUE();
      if (ews_config_parse_addr(val, cfg->admin_host, &cfg->admin_port) != 0) {
        fprintf(stderr, "edgews-lua: bad --admin-listen '%s' (want HOST:PORT)\n", val);
        return -1;
      }
      cfg->cli_set |= EWS_CLI_ADMIN;
    } else if (!strcmp(a, "--compression")) {
      NEED_VALUE();
      int kb = 32;
      cfg->compression_engine = 0;
      if (!strcmp(val, "off")) cfg->compression = 0;
      else if (!strcmp(val, "shared")) cfg->compression = 1;
      else if (!strncmp(val, "shared:", 7)) {
        cfg->compression = !strcmp(val + 7, "zlib") || !strcmp(val + 7, "libdeflate") ? 1 : -2;
        cfg->compression_engine = !strcmp(val + 7, "libdeflate") ? 2 : 1;
      } else if (!strncmp(val, "dedicated", 9) && (val[9] == 0 || val[9] == ':')) {
        cfg->compression = 2;
        if (val[9] == ':') kb = atoi(val + 10);
      } else {
        cfg->compression = -2;
      }
      if (cfg->compression == -2 || (kb != 1 && kb != 2 && kb != 4 && kb != 8 && kb != 16 && kb != 32)) {
        fprintf(stderr, "edgews-lua: bad --compression '%s' "
                "(off|shared[:zlib|libdeflate]|dedicated[:1|2|4|8|16|32])\n", val);
        return -1;
      }
      cfg->compression_window_kb = kb;
      cfg->cli_set |= EWS_CLI_COMPRESSION;
    } else if (!strcmp(a, "--data")) {
      NEED_VALUE();
      if (!*val) {
        fprintf(stderr, "edgews-lua: --data needs a directory\n");
        return -1;
      }
      free(cfg->data_dir);
      cfg->data_dir = strdup(val);
      cfg->cli_set |= EWS_CLI_DATA;
    } else if (!strcmp(a, "--max-message-memory")) {
      NEED_VALUE();
      char *end;
      double mib = strtod(val, &end);
      if (end == val || *end || !(mib >= 0) || mib > 1e9) {
        fprintf(stderr, "edgews-lua: bad --max-message-memory '%s' (MiB, 0 = no limit)\n", val);
        return -1;
      }
      cfg->max_message_memory = (uint64_t)(mib * 1048576.0);
      cfg->cli_set |= EWS_CLI_MSGMEM;
    } else if (!strcmp(a, "--reuse-port")) {
      cfg->reuse_port = 1;
      cfg->cli_set |= EWS_CLI_REUSE_PORT;
    } else if (!strcmp(a, "--redis")) {
      NEED_VALUE();
      if (!(cfg->cli_set & EWS_CLI_REDIS)) cfg->nredis = 0; /* the command line wins */
      cfg->cli_set |= EWS_CLI_REDIS;
      const char *why = "";
      if (ews_config_add_redis(cfg, val, &why) != 0) {
        fprintf(stderr, "edgews-lua: bad --redis '%s': %s\n", val, why);
        return -1;
      }
    } else if (!strcmp(a, "--no-watch")) {
      cfg->watch = 0;
      cfg->cli_set |= EWS_CLI_WATCH;
    } else if (a[0] == '-' && a[1]) {
      const char *near = closest_flag(a);
      if (near)
        fprintf(stderr, "edgews-lua: unknown option '%s' (did you mean %s? see edgews-lua --help)\n",
                a, near);
      else
        fprintf(stderr, "edgews-lua: unknown option '%s' (see edgews-lua --help)\n", a);
      return -1;
    } else if (!script) {
      script = a;
    } else {
      fprintf(stderr, "edgews-lua: one script only ('%s' and '%s')\n", script, a);
      return -1;
    }
#undef NEED_VALUE
  }
  if (!script) {
    fprintf(stderr, "edgews-lua: no script given\n%s", usage);
    return -1;
  }
  if (!cfg->tls_cert != !cfg->tls_key) {
    fprintf(stderr, "edgews-lua: --tls-cert and --tls-key go together\n");
    return -1;
  }
  char *abs = realpath(script, NULL);
  if (!abs) {
    fprintf(stderr, "edgews-lua: cannot open '%s': %s\n", script, strerror(errno));
    return -1;
  }
  cfg->script = abs;
  cfg->script_dir = strdup(abs);
  char *slash = strrchr(cfg->script_dir, '/');
  if (slash == cfg->script_dir) slash[1] = 0;
  else *slash = 0;
  return 0;
}

int ews_config_add_redis(ews_config_t *cfg, const char *url, const char **why) {
  ews_redis_url_t u;
  if (ews_redis_url_parse(url, &u, why) != 0) return EWS_EINVAL;
  if (cfg->nredis >= EWS_ENGINE_MAX_SHARDS) {
    *why = "too many Redis shards (at most 16)";
    return EWS_EINVAL;
  }
  ews_redis_url_t *all = cfg->redis;
  for (int i = 0; i < cfg->nredis; i++)
    if (!strcmp(all[i].name, u.name)) {
      *why = "the same Redis server twice";
      return EWS_EINVAL;
    }
  all = realloc(cfg->redis, (size_t)(cfg->nredis + 1) * sizeof *all);
  if (!all) return EWS_ENOMEM;
  all[cfg->nredis++] = u;
  cfg->redis = all;
  return 0;
}

void ews_config_free(ews_config_t *cfg) {
  free(cfg->redis);
  cfg->redis = NULL;
  cfg->nredis = 0;
  free(cfg->script);
  free(cfg->script_dir);
  free(cfg->tls_cert);
  free(cfg->tls_key);
  free(cfg->data_dir);
  cfg->script = cfg->script_dir = cfg->tls_cert = cfg->tls_key = NULL;
}
