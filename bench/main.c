/* main.c — edgews-bench entry point: command line, URL resolution, setup of the
 * loop and the random generator, dispatch to the mode, and the report (human
 * summary, or one JSON object on stdout with --json). Exit status: 0 ok, 1 errors
 * (any verification or connection error), 2 usage. */
#include <getopt.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "bench.h"

bench_opts_t g_opt;
bench_result_t g_res;
uint64_t g_rng = 0x9E3779B97F4A7C15ULL;

#define MAX_PRINTED_ERRORS 10

void bench_error(const char *fmt, ...) {
  char msg[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  if (g_res.errors == 0) snprintf(g_res.first_error, sizeof(g_res.first_error), "%s", msg);
  if (g_res.errors < MAX_PRINTED_ERRORS)
    fprintf(stderr, "edgews-bench: error: %s\n", msg);
  else if (g_res.errors == MAX_PRINTED_ERRORS)
    fprintf(stderr, "edgews-bench: (further errors are counted, not printed)\n");
  g_res.errors++;
}

void bench_note(int always, const char *fmt, ...) {
  if (!always && !g_opt.verbose) return;
  va_list ap;
  va_start(ap, fmt);
  fputs("edgews-bench: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

static void usage(FILE *f) {
  fputs(
      "usage:\n"
      "  edgews-bench echo --url ws[s]://HOST:PORT/PATH [-c CONNS] [-d DEPTH] [-s SIZE]\n"
      "                    [--duration SECS] [--warmup SECS] [--binary] [--payload json]\n"
      "                    [--deflate [shared|takeover]] [--server-pid PID] [--json]\n"
      "  edgews-bench handshake --url URL [-c CONCURRENCY] [--duration SECS] [--warmup SECS]\n"
      "                    [--resume] [--server-pid PID] [--json]\n"
      "  edgews-bench idle --url URL -n N [--settle SECS] [--hold SECS] [--prime -s SIZE]\n"
      "                    [--deflate [MODE]] [--server-pid PID] [--json]\n"
      "  edgews-bench fanout --url URL [-c SUBSCRIBERS] [-s SIZE] [--rate MSGS_PER_SEC]\n"
      "                    [--window K] [--duration SECS] [--warmup SECS] [--server-pid PID]\n"
      "                    [--json]\n"
      "  edgews-bench recover --url URL [-c CONNS] [--messages M] [--rounds R] [--rate ECHOES]\n"
      "                    [--server-pid PID] [--json]   (bench/apps/recovery.lua)\n"
      "  edgews-bench collab --url ws://HOST:PORT/collab [-c EDITORS] [--docs D]\n"
      "                    [--duration SECS] [--warmup SECS] [--server-pid PID] [--json]\n"
      "                    (examples/collab/app.lua: editors typing, one edit in flight each)\n"
      "  edgews-bench scale --url ws://HOST:PORT/scale -c CONNS [--messages M] [--hold SECS]\n"
      "                    [--source ADDR,...] [--spread ADDR:PORT] [--samples FILE]\n"
      "                    (bench/apps/scale.lua: subscribed connections verifying M publishes)\n"
      "  edgews-bench scale --publish --url URL [--messages M] [--interval SECS] [-s SIZE]\n"
      "                    (the publisher of those M messages)\n"
      "  edgews-bench churn --url URL [-n CONNS] [--duration SECS] ... (the soak client:\n"
      "                    edgews-bench churn --help)\n"
      "  wss:// needs --ca FILE or --insecure\n"
      "options:\n"
      "  -u, --url URL          server URL, ws:// or wss://\n"
      "      --ca FILE          wss://: PEM CA certificate(s) to verify the server with\n"
      "      --insecure         wss://: do not verify the server certificate\n"
      "      --sni NAME         wss://: server name to send and verify (default: the URL's\n"
      "                         host; an IP literal is checked against iPAddress SANs)\n"
      "      --resume           wss://: resume the first session (ticket) on every later\n"
      "                         connection (default: every handshake is a full one)\n"
      "      --deflate [MODE]   negotiate permessage-deflate: shared (offer\n"
      "                         client_no_context_takeover; default) or takeover (keep our\n"
      "                         compression context when the server lets us)\n"
      "      --deflate-level N  zlib level of our compressor (1)\n"
      "      --client-context   takeover mode: compress with a context per connection\n"
      "                         (default: each message on its own, JSON ones only once)\n"
      "      --payload KIND     pattern (default: token + random bytes), json, or route\n"
      "                         ({\"type\":\"echo\",...} objects for the router benchmark)\n"
      "                         (JSON-like, compressible; text; -s >= 64)\n"
      "      --prime            idle: each connection sends one -s message and waits for\n"
      "                         its echo before the memory is measured\n"
      "  -c, --conns N          echo: connections (100); handshake: concurrent slots (32);\n"
      "                         fanout: subscribers (1000), plus one publisher\n"
      "  -n N                   idle: connections to open (1000)\n"
      "  -d, --depth N          echo: messages in flight per connection (1)\n"
      "  -s, --size BYTES       echo: payload size, suffix k for KiB (32)\n"
      "      --binary           echo: binary messages (default text)\n"
      "      --messages M       recover: messages in the topic's history (10000)\n"
      "      --rounds R         recover: recoveries of every connection (3)\n"
      "      --docs D           collab: documents the -c editors are spread over (1)\n"
      "      --rate N           fanout: messages published per second (1000; 0: as fast as\n"
      "                         the window allows)\n"
      "      --window K         fanout: at most K messages outstanding, i.e. not yet\n"
      "                         received by every connection (16)\n"
      "  -t, --duration SECS    measured interval (10)\n"
      "  -w, --warmup SECS      time before measuring (echo 2, handshake 1)\n"
      "  -p, --server-pid PID   sample the server process tree's CPU time (/proc/PID/stat)\n"
      "                         and RSS (/proc/PID/status); PID,PID,... sums several\n"
      "      --spread ADDR:PORT fanout, scale: connections go round-robin to the URL's\n"
      "                         address and these (repeatable; the publisher to the URL's)\n"
      "      --source ADDR,...  bind connections round-robin to these IPv4 source addresses\n"
      "                         (e.g. 127.0.0.2,127.0.0.3: one ephemeral port range each)\n"
      "      --messages M       scale: publishes to expect / to send (1)\n"
      "      --interval SECS    scale --publish: from one publish to the next (2; 0: the\n"
      "                         next when the previous one's ack arrives)\n"
      "      --hold SECS        scale: give up waiting for the messages this long after all\n"
      "                         connections are subscribed (600)\n"
      "      --samples FILE     scale: write one line 'MESSAGE LATENCY_NS' per delivery\n"
      "      --settle SECS      scale: after the last message, wait this long before closing\n"
      "      --settle SECS      idle: wait before reading RSS again (2)\n"
      "      --hold SECS        idle: keep the connections open this long after (0)\n"
      "      --max-pending N    handshakes outstanding at once while opening (200)\n"
      "      --json             print one JSON object on stdout (summary goes to stderr)\n"
      "  -v, --verbose          progress on stderr\n",
      f);
}

static int parse_double(const char *s, double *out) {
  char *end;
  double v = strtod(s, &end);
  if (end == s || *end || v < 0) return -1;
  *out = v;
  return 0;
}

static int parse_int(const char *s, long min, long max, long *out) {
  char *end;
  long v = strtol(s, &end, 10);
  if (end == s || *end || v < min || v > max) return -1;
  *out = v;
  return 0;
}

static int parse_size(const char *s, size_t *out) {
  char *end;
  unsigned long long v = strtoull(s, &end, 10);
  if (end == s) return -1;
  if (*end == 'k' || *end == 'K') {
    v *= 1024;
    end++;
  } else if (*end == 'm' || *end == 'M') {
    v *= 1024 * 1024;
    end++;
  }
  if (*end == 'i') end++;
  if (*end == 'B' || *end == 'b') end++;
  if (*end || v < 1 || v > 64ull * 1024 * 1024) return -1;
  *out = (size_t)v;
  return 0;
}

int bench_parse_url(const char *url) {
  const char *hp;
  if (strncmp(url, "ws://", 5) == 0) {
    hp = url + 5;
  } else if (strncmp(url, "wss://", 6) == 0) {
    hp = url + 6;
    g_opt.tls = 1;
  } else {
    fprintf(stderr, "edgews-bench: the URL must be ws:// or wss://: %s\n", url);
    return -1;
  }
  const char *slash = strchr(hp, '/');
  size_t hplen = slash ? (size_t)(slash - hp) : strlen(hp);
  if (hplen == 0 || hplen >= sizeof(g_opt.host_header)) return -1;
  memcpy(g_opt.host_header, hp, hplen);
  g_opt.host_header[hplen] = 0;
  snprintf(g_opt.path, sizeof(g_opt.path), "%s", slash ? slash : "/");

  char *host = g_opt.host, port[16];
  snprintf(port, sizeof port, "%s", g_opt.tls ? "443" : "80");
  const char *h = g_opt.host_header;
  if (h[0] == '[') {
    const char *rb = strchr(h, ']');
    if (!rb) return -1;
    snprintf(host, sizeof(g_opt.host), "%.*s", (int)(rb - h - 1), h + 1);
    if (rb[1] == ':') snprintf(port, sizeof(port), "%s", rb + 2);
  } else {
    const char *colon = strrchr(h, ':');
    if (colon) {
      snprintf(host, sizeof(g_opt.host), "%.*s", (int)(colon - h), h);
      snprintf(port, sizeof(port), "%s", colon + 1);
    } else {
      snprintf(host, sizeof(g_opt.host), "%s", h);
    }
  }
  struct addrinfo hints = {0}, *res = NULL;
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  int r = getaddrinfo(host, port, &hints, &res);
  if (r != 0 || !res) {
    fprintf(stderr, "edgews-bench: cannot resolve %s:%s: %s\n", host, port, gai_strerror(r));
    return -1;
  }
  memcpy(&g_opt.addr, res->ai_addr, res->ai_addrlen);
  freeaddrinfo(res);
  return 0;
}

/* "PID[,PID...]" -> g_opt.server_pids (the first also g_opt.server_pid). 0 or -1. */
static int parse_pids(const char *s) {
  g_opt.nserver_pids = 0;
  while (*s) {
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || v < 1 || v > (1L << 30) || g_opt.nserver_pids == BENCH_MAX_PIDS) return -1;
    g_opt.server_pids[g_opt.nserver_pids++] = v;
    if (*end == ',')
      end++;
    else if (*end)
      return -1;
    s = end;
  }
  if (g_opt.nserver_pids == 0) return -1;
  g_opt.server_pid = g_opt.server_pids[0];
  return 0;
}

/* "A.B.C.D:PORT" (IPv4 literal) -> *out. 0 or -1. */
static int parse_hostport(const char *s, struct sockaddr_storage *out) {
  const char *colon = strrchr(s, ':');
  char ip[64];
  if (!colon || colon == s || (size_t)(colon - s) >= sizeof ip) return -1;
  memcpy(ip, s, (size_t)(colon - s));
  ip[colon - s] = 0;
  char *end;
  long port = strtol(colon + 1, &end, 10);
  if (*end || port < 1 || port > 65535) return -1;
  return uv_ip4_addr(ip, (int)port, (struct sockaddr_in *)out) == 0 ? 0 : -1;
}

/* "A.B.C.D[,A.B.C.D...]" -> g_opt.src. 0 or -1. */
static int parse_sources(const char *s) {
  g_opt.nsrc = 0;
  while (*s) {
    const char *comma = strchr(s, ',');
    size_t n = comma ? (size_t)(comma - s) : strlen(s);
    char ip[64];
    if (n == 0 || n >= sizeof ip || g_opt.nsrc == BENCH_MAX_ADDRS) return -1;
    memcpy(ip, s, n);
    ip[n] = 0;
    if (uv_ip4_addr(ip, 0, &g_opt.src[g_opt.nsrc++]) != 0) return -1;
    s += n + (comma ? 1 : 0);
  }
  return g_opt.nsrc ? 0 : -1;
}

/* ---- report --------------------------------------------------------------------- */

static void json_num(FILE *f, const char *name, double v, int ok, const char *fmt) {
  fprintf(f, ",\"%s\":", name);
  if (ok)
    fprintf(f, fmt, v);
  else
    fputs("null", f);
}

static void json_str(FILE *f, const char *s) {
  fputc('"', f);
  for (; *s; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch == '"' || ch == '\\')
      fprintf(f, "\\%c", ch);
    else if (ch < 0x20)
      fprintf(f, "\\u%04x", ch);
    else
      fputc(ch, f);
  }
  fputc('"', f);
}

static const char *mode_name(void) {
  return g_opt.mode == MODE_ECHO        ? "echo"
         : g_opt.mode == MODE_HANDSHAKE ? "handshake"
         : g_opt.mode == MODE_FANOUT    ? "fanout"
                                        : "idle";
}

static void report(int rc) {
  const bench_result_t *r = &g_res;
  int timed = g_opt.mode != MODE_IDLE && r->seconds > 0;
  double rate = timed ? (double)r->done / r->seconds : 0;
  int have_srv = timed && r->server_cpu_s >= 0;
  double srv_us = have_srv && r->done ? r->server_cpu_s * 1e6 / (double)r->done : 0;
  double srv_util = have_srv ? r->server_cpu_s / r->seconds : 0;
  double gen_util = timed ? r->gen_cpu_s / r->seconds : 0;
  int gen_bottleneck = timed && gen_util >= 0.90;
  /* CPU used by everything else on the machine while measuring (needs the server's) */
  int have_other = have_srv && r->machine_cpu_s >= 0;
  double other_util = have_other ? (r->machine_cpu_s - r->server_cpu_s - r->gen_cpu_s) / r->seconds : 0;
  if (other_util < 0) other_util = 0;
  int have_rss = g_opt.mode == MODE_IDLE && r->rss_before >= 0 && r->rss_after >= 0 && r->opened > 0;
  double rss_per = have_rss ? (double)(r->rss_after - r->rss_before) / r->opened : 0;
  int fanout = g_opt.mode == MODE_FANOUT;
  const char *unit = g_opt.mode == MODE_ECHO ? "msg" : fanout ? "delivery" : "handshake";
  double gen_us = timed && r->done ? r->gen_cpu_s * 1e6 / (double)r->done : 0;
  static const char *deflate_names[] = {"off", "shared", "takeover"};
  const char *dname = deflate_names[g_opt.deflate];
  double tx_ratio = r->tx_wire ? (double)r->tx_raw / (double)r->tx_wire : 0;
  double rx_ratio = r->rx_wire ? (double)r->rx_raw / (double)r->rx_wire : 0;

  FILE *h = g_opt.json ? stderr : stdout;
  fprintf(h, "edgews-bench %s %s\n", mode_name(), g_opt.url);
  if (g_opt.mode == MODE_ECHO)
    fprintf(h, "  load         %d conns x %d in flight x %zu B %s %s\n", g_opt.conns, g_opt.depth,
            g_opt.size, g_opt.payload == PAYLOAD_JSON ? "JSON" : g_opt.payload == PAYLOAD_ROUTE ? "route JSON" : "pattern",
            g_opt.binary ? "binary" : "text");
  else if (g_opt.mode == MODE_HANDSHAKE)
    fprintf(h, "  load         %d concurrent connect/handshake/close loops\n", g_opt.conns);
  else if (fanout) {
    char rbuf[32];
    if (g_opt.rate > 0) snprintf(rbuf, sizeof rbuf, "%.0f msgs/s", g_opt.rate);
    else snprintf(rbuf, sizeof rbuf, "unlimited rate");
    fprintf(h, "  load         1 publisher -> %d subscribers + itself, %zu B text, %s, window %d\n",
            g_opt.conns, g_opt.size, rbuf, g_opt.window);
  }
  if (g_opt.tls)
    fprintf(h, "  tls          TLS 1.2 %s; handshakes %llu full, %llu resumed%s\n",
            r->tls_suite[0] ? r->tls_suite : "(none completed)",
            (unsigned long long)r->tls_full, (unsigned long long)r->tls_resumed,
            g_opt.mode == MODE_HANDSHAKE ? " (measured interval)" : "");
  if (g_opt.deflate) {
    fprintf(h, "  deflate      offered '%s'; server answered '%s'\n", pmd_offer(),
            r->pmd_response[0] ? r->pmd_response : "(nothing)");
    if (r->tx_wire || r->rx_wire)
      fprintf(h, "  compression  ours %.2fx (%llu -> %llu bytes), the server's %.2fx (%llu -> %llu)\n",
              tx_ratio, (unsigned long long)r->tx_raw, (unsigned long long)r->tx_wire, rx_ratio,
              (unsigned long long)r->rx_raw, (unsigned long long)r->rx_wire);
  }
  if (timed) {
    if (fanout)
      fprintf(h, "  published    %llu in %.2f s = %.0f msgs/s\n", (unsigned long long)r->published,
              r->seconds, (double)r->published / r->seconds);
    fprintf(h, "  %-12s %llu in %.2f s = %.0f/s\n",
            g_opt.mode == MODE_ECHO ? "messages" : fanout ? "deliveries" : "handshakes",
            (unsigned long long)r->done, r->seconds, rate);
    fprintf(h, "  latency      p50 %.1f us, p99 %.1f us, p99.9 %.1f us, max %.1f us, mean %.1f us\n",
            hist_quantile_us(&g_hist, 0.50), hist_quantile_us(&g_hist, 0.99),
            hist_quantile_us(&g_hist, 0.999), hist_max_us(&g_hist), hist_mean_us(&g_hist));
    if (have_srv)
      fprintf(h, "  server CPU   %.2f us/%s, %.1f%% of a core (%d process%s)\n", srv_us, unit,
              srv_util * 100, r->server_procs, r->server_procs == 1 ? "" : "es");
    fprintf(h, "  generator    %.1f%% of a core, %.2f us/%s%s\n", gen_util * 100, gen_us, unit,
            gen_bottleneck ? "  <-- the generator is (near) saturated: throughput and latency "
                             "are bounded by it; server CPU per message still holds"
                           : "");
    if (have_other && other_util >= 0.15)
      fprintf(h, "  other load   %.0f%% of a core used by other processes while measuring: "
                 "the numbers are disturbed\n", other_util * 100);
  }
  if (g_opt.mode == MODE_IDLE) {
    fprintf(h, "  connections  %d requested, %d open, %d answered a ping\n", g_opt.conns,
            r->opened, r->alive);
    if (have_rss)
      fprintf(h, "  server RSS   %.1f MiB -> %.1f MiB: %.0f bytes per connection\n",
              r->rss_before / 1048576.0, r->rss_after / 1048576.0, rss_per);
  }
  fprintf(h, "  errors       %llu%s%s\n", (unsigned long long)r->errors,
          r->errors ? " -- first: " : "", r->errors ? r->first_error : "");
  if (rc != 0 && r->errors == 0) fprintf(h, "  run failed\n");

  if (!g_opt.json) return;
  FILE *f = stdout;
  fprintf(f, "{\"mode\":\"%s\",\"url\":", mode_name());
  json_str(f, g_opt.url);
  fprintf(f, ",\"conns\":%d", g_opt.conns);
  if (fanout)
    fprintf(f, ",\"subscribers\":%d,\"size\":%zu,\"rate\":%.1f,\"window\":%d", g_opt.conns,
            g_opt.size, g_opt.rate, g_opt.window);
  if (g_opt.mode == MODE_ECHO || g_opt.prime)
    fprintf(f, ",\"depth\":%d,\"size\":%zu,\"binary\":%s,\"payload\":\"%s\"", g_opt.depth,
            g_opt.size, g_opt.binary ? "true" : "false",
            g_opt.payload == PAYLOAD_JSON ? "json" : g_opt.payload == PAYLOAD_ROUTE ? "route" : "pattern");
  fprintf(f, ",\"tls\":%s", g_opt.tls ? "true" : "false");
  if (g_opt.tls) {
    fputs(",\"tls_suite\":", f);
    json_str(f, r->tls_suite);
    fprintf(f, ",\"tls_full\":%llu,\"tls_resumed\":%llu", (unsigned long long)r->tls_full,
            (unsigned long long)r->tls_resumed);
  }
  fprintf(f, ",\"deflate\":\"%s\"", dname);
  if (g_opt.deflate) {
    fputs(",\"pmd_response\":", f);
    json_str(f, r->pmd_response);
    json_num(f, "client_ratio", tx_ratio, r->tx_wire > 0, "%.3f");
    json_num(f, "server_ratio", rx_ratio, r->rx_wire > 0, "%.3f");
  }
  if (g_opt.mode != MODE_IDLE) {
    fprintf(f, ",\"duration_s\":%.3f,\"warmup_s\":%.3f", r->seconds, g_opt.warmup);
    if (g_opt.mode == MODE_ECHO)
      fprintf(f, ",\"messages\":%llu,\"msgs_per_sec\":%.1f", (unsigned long long)r->done, rate);
    else if (fanout)
      fprintf(f, ",\"published\":%llu,\"published_per_sec\":%.1f,\"deliveries\":%llu,"
                 "\"deliveries_per_sec\":%.1f",
              (unsigned long long)r->published, (double)r->published / r->seconds,
              (unsigned long long)r->done, rate);
    else
      fprintf(f, ",\"handshakes\":%llu,\"handshakes_per_sec\":%.1f", (unsigned long long)r->done,
              rate);
    json_num(f, "p50_us", hist_quantile_us(&g_hist, 0.50), timed, "%.1f");
    json_num(f, "p90_us", hist_quantile_us(&g_hist, 0.90), timed, "%.1f");
    json_num(f, "p99_us", hist_quantile_us(&g_hist, 0.99), timed, "%.1f");
    json_num(f, "p999_us", hist_quantile_us(&g_hist, 0.999), timed, "%.1f");
    json_num(f, "max_us", hist_max_us(&g_hist), timed, "%.1f");
    json_num(f, "mean_us", hist_mean_us(&g_hist), timed, "%.1f");
    json_num(f, "server_cpu_s", r->server_cpu_s, have_srv, "%.3f");
    json_num(f, g_opt.mode == MODE_ECHO ? "server_cpu_us_per_msg"
                : fanout                ? "server_cpu_us_per_delivery"
                                        : "server_cpu_us_per_handshake",
             srv_us, have_srv && r->done, "%.3f");
    json_num(f, "server_cpu_util", srv_util, have_srv, "%.3f");
    fprintf(f, ",\"server_procs\":%d", r->server_procs);
    json_num(f, "gen_cpu_util", gen_util, timed, "%.3f");
    json_num(f, g_opt.mode == MODE_ECHO ? "gen_cpu_us_per_msg"
                : fanout                ? "gen_cpu_us_per_delivery"
                                        : "gen_cpu_us_per_handshake",
             gen_us, timed && r->done, "%.3f");
    fprintf(f, ",\"gen_bottleneck\":%s", gen_bottleneck ? "true" : "false");
    json_num(f, "other_cpu_util", other_util, have_other, "%.3f");
  } else {
    fprintf(f, ",\"n\":%d,\"opened\":%d,\"alive\":%d,\"prime\":%s", g_opt.conns, r->opened,
            r->alive, g_opt.prime ? "true" : "false");
    json_num(f, "rss_before_bytes", (double)r->rss_before, r->rss_before >= 0, "%.0f");
    json_num(f, "rss_after_bytes", (double)r->rss_after, r->rss_after >= 0, "%.0f");
    json_num(f, "rss_per_conn_bytes", rss_per, have_rss, "%.1f");
  }
  fprintf(f, ",\"errors\":%llu,\"first_error\":", (unsigned long long)r->errors);
  if (r->errors)
    json_str(f, r->first_error);
  else
    fputs("null", f);
  fprintf(f, ",\"ok\":%s}\n", rc == 0 && r->errors == 0 ? "true" : "false");
  fflush(f);
}

int main(int argc, char **argv) {
  if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const char *mode = argv[1];
  if (strcmp(mode, "churn") == 0) return churn_main(argc, argv);
  if (strcmp(mode, "zcmp") == 0) return zcmp_main(argc, argv);
  if (strcmp(mode, "echo") == 0)
    g_opt.mode = MODE_ECHO;
  else if (strcmp(mode, "handshake") == 0)
    g_opt.mode = MODE_HANDSHAKE;
  else if (strcmp(mode, "idle") == 0)
    g_opt.mode = MODE_IDLE;
  else if (strcmp(mode, "fanout") == 0)
    g_opt.mode = MODE_FANOUT;
  else if (strcmp(mode, "recover") == 0)
    g_opt.mode = MODE_RECOVER;
  else if (strcmp(mode, "collab") == 0)
    g_opt.mode = MODE_COLLAB;
  else if (strcmp(mode, "scale") == 0)
    g_opt.mode = MODE_SCALE;
  else {
    fprintf(stderr, "edgews-bench: unknown mode '%s'\n", mode);
    usage(stderr);
    return 2;
  }
  g_opt.conns = g_opt.mode == MODE_ECHO || g_opt.mode == MODE_RECOVER ? 100
                : g_opt.mode == MODE_HANDSHAKE                        ? 32
                : g_opt.mode == MODE_COLLAB                           ? 10
                                                                      : 1000;
  g_opt.docs = 1;
  g_opt.messages = g_opt.mode == MODE_SCALE ? 1 : 10000;
  g_opt.interval = 2;
  g_opt.rounds = 3;
  g_opt.rate = 1000;
  g_opt.window = 16;
  g_opt.depth = 1;
  g_opt.size = 32;
  g_opt.duration = 10;
  g_opt.warmup = g_opt.mode == MODE_ECHO || g_opt.mode == MODE_FANOUT || g_opt.mode == MODE_COLLAB ? 2 : 1;
  g_opt.settle = 2;
  g_opt.hold = 0;
  g_opt.max_pending = 200;
  g_opt.deflate_level = 1;

  enum { O_BINARY = 256, O_JSON, O_SETTLE, O_HOLD, O_MAXPEND, O_CA, O_INSECURE, O_SNI, O_RESUME,
         O_DEFLATE, O_DEFLATE_LEVEL, O_PAYLOAD, O_PRIME, O_CLIENT_CTX, O_RATE, O_WINDOW,
         O_MESSAGES, O_ROUNDS, O_DOCS, O_SPREAD, O_SOURCE, O_PUBLISH, O_INTERVAL, O_SAMPLES };
  static const struct option longopts[] = {
      {"url", required_argument, NULL, 'u'},
      {"conns", required_argument, NULL, 'c'},
      {"depth", required_argument, NULL, 'd'},
      {"size", required_argument, NULL, 's'},
      {"duration", required_argument, NULL, 't'},
      {"warmup", required_argument, NULL, 'w'},
      {"server-pid", required_argument, NULL, 'p'},
      {"binary", no_argument, NULL, O_BINARY},
      {"json", no_argument, NULL, O_JSON},
      {"settle", required_argument, NULL, O_SETTLE},
      {"hold", required_argument, NULL, O_HOLD},
      {"max-pending", required_argument, NULL, O_MAXPEND},
      {"ca", required_argument, NULL, O_CA},
      {"insecure", no_argument, NULL, O_INSECURE},
      {"sni", required_argument, NULL, O_SNI},
      {"resume", no_argument, NULL, O_RESUME},
      {"deflate", optional_argument, NULL, O_DEFLATE},
      {"deflate-level", required_argument, NULL, O_DEFLATE_LEVEL},
      {"payload", required_argument, NULL, O_PAYLOAD},
      {"prime", no_argument, NULL, O_PRIME},
      {"client-context", no_argument, NULL, O_CLIENT_CTX},
      {"rate", required_argument, NULL, O_RATE},
      {"messages", required_argument, NULL, O_MESSAGES},
      {"rounds", required_argument, NULL, O_ROUNDS},
      {"docs", required_argument, NULL, O_DOCS},
      {"window", required_argument, NULL, O_WINDOW},
      {"spread", required_argument, NULL, O_SPREAD},
      {"source", required_argument, NULL, O_SOURCE},
      {"publish", no_argument, NULL, O_PUBLISH},
      {"interval", required_argument, NULL, O_INTERVAL},
      {"samples", required_argument, NULL, O_SAMPLES},
      {"verbose", no_argument, NULL, 'v'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  optind = 2;
  int o;
  long v;
  while ((o = getopt_long(argc, argv, "u:c:n:d:s:t:w:p:vh", longopts, NULL)) != -1) {
    int bad = 0;
    switch (o) {
      case 'u': g_opt.url = optarg; break;
      case 'c':
      case 'n': bad = parse_int(optarg, 1, 1000000, &v); g_opt.conns = (int)v; break;
      case 'd': bad = parse_int(optarg, 1, 1000000, &v); g_opt.depth = (int)v; break;
      case 's': bad = parse_size(optarg, &g_opt.size); break;
      case 't': bad = parse_double(optarg, &g_opt.duration) || g_opt.duration <= 0; break;
      case 'w': bad = parse_double(optarg, &g_opt.warmup); break;
      case 'p': bad = parse_pids(optarg); break;
      case O_BINARY: g_opt.binary = 1; break;
      case O_JSON: g_opt.json = 1; break;
      case O_SETTLE: bad = parse_double(optarg, &g_opt.settle); break;
      case O_HOLD: bad = parse_double(optarg, &g_opt.hold); break;
      case O_MAXPEND: bad = parse_int(optarg, 1, 100000, &v); g_opt.max_pending = (int)v; break;
      case O_CA: g_opt.ca_file = optarg; break;
      case O_INSECURE: g_opt.insecure = 1; break;
      case O_SNI: g_opt.sni = optarg; break;
      case O_RESUME: g_opt.resume = 1; break;
      case O_DEFLATE: {
        /* --deflate, --deflate=MODE or --deflate MODE (MODE shared or takeover) */
        const char *m = optarg;
        if (!m && optind < argc &&
            (strcmp(argv[optind], "shared") == 0 || strcmp(argv[optind], "takeover") == 0))
          m = argv[optind++];
        g_opt.deflate = !m || strcmp(m, "shared") == 0 ? DEFLATE_SHARED
                        : strcmp(m, "takeover") == 0  ? DEFLATE_TAKEOVER
                                                      : DEFLATE_OFF;
        bad = g_opt.deflate == DEFLATE_OFF;
        break;
      }
      case O_DEFLATE_LEVEL:
        bad = parse_int(optarg, 0, 9, &v);
        g_opt.deflate_level = (int)v;
        break;
      case O_PAYLOAD:
        if (strcmp(optarg, "json") == 0) g_opt.payload = PAYLOAD_JSON;
        else if (strcmp(optarg, "route") == 0) g_opt.payload = PAYLOAD_ROUTE;
        else if (strcmp(optarg, "pattern") == 0) g_opt.payload = PAYLOAD_PATTERN;
        else bad = 1;
        break;
      case O_PRIME: g_opt.prime = 1; break;
      case O_CLIENT_CTX: g_opt.client_context = 1; break;
      case O_RATE: bad = parse_double(optarg, &g_opt.rate); break;
      case O_MESSAGES: bad = parse_int(optarg, 1, 100000000, &v); g_opt.messages = (int)v; break;
      case O_ROUNDS: bad = parse_int(optarg, 1, 64, &v); g_opt.rounds = (int)v; break;
      case O_DOCS: bad = parse_int(optarg, 1, 1000000, &v); g_opt.docs = (int)v; break;
      case O_WINDOW: bad = parse_int(optarg, 1, 65536, &v); g_opt.window = (int)v; break;
      case O_SPREAD:
        bad = g_opt.ndst + 1 >= BENCH_MAX_ADDRS ||
              parse_hostport(optarg, &g_opt.dst[1 + g_opt.ndst++]);
        break;
      case O_SOURCE: bad = parse_sources(optarg); break;
      case O_PUBLISH: g_opt.publish = 1; break;
      case O_INTERVAL: bad = parse_double(optarg, &g_opt.interval); break;
      case O_SAMPLES: g_opt.samples = optarg; break;
      case 'v': g_opt.verbose = 1; break;
      case 'h': usage(stdout); return 0;
      default: usage(stderr); return 2;
    }
    if (bad) {
      fprintf(stderr, "edgews-bench: bad value for -%c: '%s'\n", o < 256 ? o : '-', optarg);
      return 2;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "edgews-bench: unexpected argument '%s'\n", argv[optind]);
    return 2;
  }
  if (!g_opt.url) {
    fprintf(stderr, "edgews-bench: --url is required\n");
    return 2;
  }
  if (bench_parse_url(g_opt.url) != 0) return 2;
  /* dst[0] is the URL's address; --spread filled dst[1..] */
  memcpy(&g_opt.dst[0], &g_opt.addr, sizeof g_opt.addr);
  g_opt.ndst++;
  if (g_opt.ndst > 1 && g_opt.mode != MODE_FANOUT && g_opt.mode != MODE_SCALE) {
    fprintf(stderr, "edgews-bench: --spread is for fanout and scale modes\n");
    return 2;
  }
  if (g_opt.nsrc && ((struct sockaddr *)&g_opt.addr)->sa_family != AF_INET) {
    fprintf(stderr, "edgews-bench: --source needs an IPv4 server address\n");
    return 2;
  }
  if ((g_opt.publish || g_opt.samples) && g_opt.mode != MODE_SCALE) {
    fprintf(stderr, "edgews-bench: --publish and --samples are for scale mode\n");
    return 2;
  }
  if (g_opt.mode == MODE_SCALE && g_opt.publish && g_opt.size < 32) {
    fprintf(stderr, "edgews-bench: scale --publish sends messages of -s 32 or more\n");
    return 2;
  }
  if (g_opt.tls && !g_opt.ca_file && !g_opt.insecure) {
    fprintf(stderr, "edgews-bench: wss:// needs --ca FILE (or --insecure)\n");
    return 2;
  }
  if (!g_opt.tls && (g_opt.ca_file || g_opt.insecure || g_opt.sni || g_opt.resume)) {
    fprintf(stderr, "edgews-bench: --ca, --insecure, --sni and --resume need a wss:// URL\n");
    return 2;
  }
  if (g_opt.payload != PAYLOAD_PATTERN && g_opt.size < PAYLOAD_JSON_MIN) {
    fprintf(stderr, "edgews-bench: --payload json needs -s %d or more\n", PAYLOAD_JSON_MIN);
    return 2;
  }
  if (g_opt.mode == MODE_FANOUT &&
      (g_opt.deflate || g_opt.binary || g_opt.payload != PAYLOAD_PATTERN || g_opt.size < 32)) {
    fprintf(stderr, "edgews-bench: fanout sends text messages of -s 32 or more, without "
                    "--deflate, --binary or --payload\n");
    return 2;
  }
  if (g_opt.prime && g_opt.mode != MODE_IDLE) {
    fprintf(stderr, "edgews-bench: --prime is for idle mode\n");
    return 2;
  }
  if ((uint64_t)g_opt.depth * (EWS_FRAME_MAX_HEADER + g_opt.size) > 0xFFFFFFFFull / 2) {
    fprintf(stderr, "edgews-bench: depth x size too large\n");
    return 2;
  }

  signal(SIGPIPE, SIG_IGN);
  long nofile = raise_nofile_limit();
  if (nofile > 0 && g_opt.conns + (g_opt.mode == MODE_FANOUT) + 64 > nofile &&
      !(g_opt.mode == MODE_SCALE && g_opt.publish)) {
    fprintf(stderr, "edgews-bench: %d connections need more than the open-file limit %ld\n",
            g_opt.conns, nofile);
    return 2;
  }
  if (getrandom(&g_rng, sizeof(g_rng), 0) != (ssize_t)sizeof(g_rng) || g_rng == 0)
    g_rng ^= uv_hrtime() | 1;
  hist_reset(&g_hist);
  g_res.server_cpu_s = -1;
  g_res.machine_cpu_s = -1;
  g_res.rss_before = g_res.rss_after = -1;
  for (int i = 0; i < g_opt.nserver_pids; i++)
    if (proc_tree_cpu_s(g_opt.server_pids[i], NULL) < 0) {
      fprintf(stderr, "edgews-bench: server process %ld not found\n", g_opt.server_pids[i]);
      return 2;
    }

  if ((g_opt.tls && tls_global_init() != 0) || (g_opt.deflate && pmd_global_init() != 0)) {
    tls_global_free();
    return 2;
  }
  g_loop = uv_default_loop();
  int rc;
  switch (g_opt.mode) {
    case MODE_ECHO: rc = run_echo(); break;
    case MODE_HANDSHAKE: rc = run_handshake(); break;
    case MODE_FANOUT: rc = run_fanout(); break;
    case MODE_RECOVER: rc = run_recover(); break;
    case MODE_COLLAB: rc = run_collab(); break;
    case MODE_SCALE: rc = run_scale(); break;
    default: rc = run_idle(); break;
  }
  if (g_opt.mode != MODE_HANDSHAKE) { /* handshake mode counts the measured interval */
    g_res.tls_full = g_tls_full;
    g_res.tls_resumed = g_tls_resumed;
  }
  if (g_opt.mode == MODE_RECOVER) recover_report(rc);
  else if (g_opt.mode == MODE_COLLAB) collab_report(rc);
  else if (g_opt.mode == MODE_SCALE) scale_report(rc);
  else report(rc);
  uv_loop_close(g_loop);
  tls_global_free();
  pmd_global_free();
  return rc == 0 && g_res.errors == 0 ? 0 : 1;
}
