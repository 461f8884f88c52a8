/* churn.c — churn mode of edgews-bench, the client of the soak test (scripts/soak).
 *
 * Keeps -n N connection slots busy against an app that speaks the protocol of
 * bench/apps/soak_app.lua. Each slot lives a random lifetime (--lifetime MIN:MAX
 * seconds), then starts over:
 *   connect with an HS256 JWT in ?token=: user "u<slot>", or with --fresh-users F
 *   that share of the lifecycles a user never seen before ("u<slot>.<n>"), so that
 *   per-user state that is never freed shows up as growth
 *   -> {"type":"join","room":"r<k>"}   answered {"type":"joined","offset":O,...}
 *      (subscribed to the room's pub/sub topic and presence channel, present in it)
 *   -> once, at a random moment: {"type":"say","room":..,"text":..}, answered
 *      {"type":"said","offset":..} after the store's commit
 *   <- every message of its room: {"type":"pub",...,"offset":..}, whose offsets must
 *      be exactly O+1, O+2, ... (no gap, no duplicate), and presence events
 *   -> close 1000 at the end of the lifetime, answered by the server's close.
 * Anything else is an error: a refused or failed handshake, a close or EOF from the
 * server, an {"type":"error"} reply, an unexpected message, a gap, a reply that
 * takes over 15 s.
 *
 * With --server-pid it samples the server's RSS and open file descriptors every
 * --sample seconds. Before the first slot connects it primes the server (64
 * connections join, publish and close, so that every worker has opened what it
 * keeps open, e.g. SQLite's WAL files) and takes the fd baseline. After --duration
 * it stops restarting slots, closes every connection, waits until the server's fd
 * count is back at the baseline (at most --fd-wait s) and judges the run: zero
 * errors, RSS after --warmup within --rss-tolerance percent (max / min - 1 over the
 * samples after the warm-up), fds back at the baseline. Exit status 0 when all hold.
 *
 * It owns its command line (main.c hands "churn" over): churn_main. */
#include <dirent.h>
#include <getopt.h>
#include <mbedtls/md.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "bench.h"

#define RX_MAX 1024        /* bytes of a message kept for parsing (the rest is skipped) */
#define REPLY_TIMEOUT 15.0 /* s for a handshake, a reply, a close */
#define TICK_MS 50
#define PRIME_CONNS 64
#define MAX_SAMPLES 100000

enum { SL_IDLE, SL_CONNECTING, SL_JOINING, SL_LIVE, SL_CLOSING };
enum { PH_PRIME, PH_BASELINE, PH_RUN, PH_DRAIN, PH_FDWAIT, PH_DONE };

typedef struct {
  uint8_t phase;
  uint8_t said;     /* 0 not yet, 1 sent, 2 acknowledged */
  uint8_t rx_trunc; /* the message being received is longer than RX_MAX */
  uint8_t fresh;    /* target is a fresh user's */
  uint16_t rxlen;
  uint32_t room;
  int64_t last_off; /* last offset seen in its room (the join's at first) */
  double t_wait;    /* when the current wait (handshake, reply, close) began */
  double say_at, end_at, start_at;
  char *rx;
  char *target;     /* request target: path?token=JWT */
} slot_t;

static struct {
  const char *url;
  int n;
  double duration, warmup, sample, fd_wait;
  double life_min, life_max;
  int rooms;
  const char *secret;
  double rss_tol; /* percent */
  int max_pending;
  long server_pid;
  double fresh; /* share of lifecycles that are a new user (u<slot>.<n>), not u<slot> */
  int json, verbose;
} o;
static uint64_t g_user_gen;
static long g_exp;

static conn_t *g_conns;
static slot_t *g_slots;
static int g_nslots; /* n + PRIME_CONNS */
static int g_phase;
static int g_pending; /* handshakes outstanding */
static int g_open;    /* slots joined */
static double g_t0;   /* run start (s, monotonic) */
static uv_timer_t g_tick;
static double g_next_sample, g_next_note, g_drain_until, g_fd_until;

/* counters */
static uint64_t g_lifecycles, g_connects, g_said, g_deliveries, g_presence, g_joined;

/* samples: seconds since the run began, server RSS, server fds, slots joined */
static int g_ns;
static double g_st[MAX_SAMPLES];
static long g_srss[MAX_SAMPLES], g_sfds[MAX_SAMPLES];
static int g_sopen[MAX_SAMPLES];
static long g_fd_base = -1, g_fd_after = -1, g_fd_peak = -1;

static double now_s(void) { return (double)uv_hrtime() / 1e9; }

static double rnd01(void) { return (double)(rng64() >> 11) / 9007199254740992.0; }

static long count_fds(long pid) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%ld/fd", pid);
  DIR *d = opendir(path);
  if (!d) return -1;
  long n = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    if (e->d_name[0] != '.') n++;
  closedir(d);
  return n;
}

/* ---- JWT (HS256) ------------------------------------------------------------------ */

static size_t b64url(const uint8_t *in, size_t n, char *out) {
  static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  size_t j = 0, i = 0;
  for (; i + 2 < n; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
    out[j++] = tab[v >> 18];
    out[j++] = tab[(v >> 12) & 63];
    out[j++] = tab[(v >> 6) & 63];
    out[j++] = tab[v & 63];
  }
  if (n - i == 1) {
    uint32_t v = (uint32_t)in[i] << 16;
    out[j++] = tab[v >> 18];
    out[j++] = tab[(v >> 12) & 63];
  } else if (n - i == 2) {
    uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
    out[j++] = tab[v >> 18];
    out[j++] = tab[(v >> 12) & 63];
    out[j++] = tab[(v >> 6) & 63];
  }
  out[j] = 0;
  return j;
}

/* path?token=<JWT for user u<id> (u<id>.<gen> when gen > 0), valid for the run plus
 * an hour>; malloc'd. */
static char *make_target(const char *path, int id, uint64_t gen, long exp) {
  char claims[128], seg[256], tok[512], sub[48];
  if (gen) snprintf(sub, sizeof sub, "u%d.%llu", id, (unsigned long long)gen);
  else snprintf(sub, sizeof sub, "u%d", id);
  int cl = snprintf(claims, sizeof claims, "{\"sub\":\"%s\",\"exp\":%ld}", sub, exp);
  size_t k = b64url((const uint8_t *)"{\"alg\":\"HS256\",\"typ\":\"JWT\"}", 27, tok);
  tok[k++] = '.';
  k += b64url((const uint8_t *)claims, (size_t)cl, tok + k);
  uint8_t mac[32];
  if (mbedtls_md_hmac(mbedtls_md_info_from_type(MBEDTLS_MD_SHA256), (const uint8_t *)o.secret,
                      strlen(o.secret), (const uint8_t *)tok, k, mac) != 0)
    return NULL;
  b64url(mac, sizeof mac, seg);
  size_t need = strlen(path) + k + strlen(seg) + 16;
  char *t = malloc(need);
  if (t) snprintf(t, need, "%s%stoken=%.*s.%s", path, strchr(path, '?') ? "&" : "?", (int)k, tok, seg);
  return t;
}

/* ---- messages ----------------------------------------------------------------------- */

/* The string value of "key":"..." in msg (NUL-terminated), or NULL; *len its length. */
static const char *str_field(const char *msg, const char *key, size_t *len) {
  char pat[32];
  snprintf(pat, sizeof pat, "\"%s\":\"", key);
  const char *p = strstr(msg, pat);
  if (!p) return NULL;
  p += strlen(pat);
  const char *q = strchr(p, '"');
  if (!q) return NULL;
  *len = (size_t)(q - p);
  return p;
}

static int num_field(const char *msg, const char *key, int64_t *v) {
  char pat[32];
  snprintf(pat, sizeof pat, "\"%s\":", key);
  const char *p = strstr(msg, pat);
  if (!p) return -1;
  char *end;
  long long x = strtoll(p + strlen(pat), &end, 10);
  if (end == p + strlen(pat)) return -1;
  *v = x;
  return 0;
}

static int is(const char *v, size_t n, const char *s) { return v && strlen(s) == n && !memcmp(v, s, n); }

static void send_json(conn_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void send_json(conn_t *c, const char *fmt, ...) {
  char buf[256];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  conn_queue_frame(c, EWS_OP_TEXT, (const uint8_t *)buf, (size_t)n);
  conn_flush(c);
}

/* Fails the connection; on_fail reports it (once) and the slot starts over. */
static void slot_error(conn_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void slot_error(conn_t *c, const char *fmt, ...) {
  char msg[200];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  conn_fail(c, "%s", msg);
}

static void handle_message(conn_t *c, slot_t *s) {
  s->rx[s->rxlen] = 0;
  size_t tl = 0;
  const char *type = str_field(s->rx, "type", &tl);
  int64_t off = 0;
  if (is(type, tl, "pub")) {
    if (s->phase != SL_LIVE) {
      slot_error(c, "a pub before the join was answered");
      return;
    }
    size_t nl = 0;
    const char *topic = str_field(s->rx, "topic", &nl);
    char want[32];
    snprintf(want, sizeof want, "soak:r%u", s->room);
    if (!is(topic, nl, want) || num_field(s->rx, "offset", &off) != 0) {
      slot_error(c, "a pub of another room or without an offset: %.120s", s->rx);
      return;
    }
    if (off != s->last_off + 1) {
      slot_error(c, "room r%u: offset %lld after %lld (a gap or a duplicate)", s->room,
                 (long long)off, (long long)s->last_off);
      return;
    }
    s->last_off = off;
    g_deliveries++;
  } else if (is(type, tl, "presence")) {
    g_presence++;
  } else if (is(type, tl, "joined")) {
    if (s->phase != SL_JOINING || num_field(s->rx, "offset", &off) != 0) {
      slot_error(c, "unexpected joined: %.120s", s->rx);
      return;
    }
    double now = now_s();
    double life = o.life_min + (o.life_max - o.life_min) * rnd01();
    s->phase = SL_LIVE;
    s->last_off = off;
    s->end_at = now + life;
    s->say_at = now + life * 0.8 * rnd01();
    g_open++;
    g_joined++;
  } else if (is(type, tl, "said")) {
    if (s->said != 1 || num_field(s->rx, "offset", &off) != 0 || off < 1) {
      slot_error(c, "unexpected said: %.120s", s->rx);
      return;
    }
    s->said = 2;
    g_said++;
  } else if (is(type, tl, "error")) {
    slot_error(c, "the server answered an error: %.160s", s->rx);
  } else {
    slot_error(c, "unexpected message: %.120s", s->rx);
  }
}

/* ---- hooks ---------------------------------------------------------------------------- */

static void on_open(conn_t *c) {
  slot_t *s = &g_slots[c->id];
  g_pending--;
  g_connects++;
  s->phase = SL_JOINING;
  s->said = 0;
  s->rxlen = 0;
  s->t_wait = now_s();
  send_json(c, "{\"type\":\"join\",\"room\":\"r%u\"}", s->room);
}

static int on_data(conn_t *c, int opcode, uint8_t *p, size_t n, int first, int last) {
  slot_t *s = &g_slots[c->id];
  if (first) {
    s->rxlen = 0;
    s->rx_trunc = 0;
  }
  if (opcode != EWS_OP_TEXT) {
    slot_error(c, "a binary message");
    return 1;
  }
  size_t room = RX_MAX - s->rxlen;
  size_t take = n < room ? n : room;
  memcpy(s->rx + s->rxlen, p, take);
  s->rxlen = (uint16_t)(s->rxlen + take);
  if (take < n) s->rx_trunc = 1;
  if (last) handle_message(c, s);
  return c->closing ? 1 : 0;
}

static void on_fail(conn_t *c, const char *what) {
  slot_t *s = &g_slots[c->id];
  if (s->phase == SL_CONNECTING) g_pending--;
  if (s->phase == SL_LIVE) g_open--;
  if (s->phase == SL_CONNECTING && g_phase >= PH_DRAIN) {
    s->phase = SL_IDLE; /* aborted by us while connecting: not an error */
    return;
  }
  bench_error("u%u (room r%u): %s", c->id, s->room, what);
  s->phase = SL_IDLE;
  s->start_at = now_s() + 1.0;
}

static void on_closed(conn_t *c) {
  slot_t *s = &g_slots[c->id];
  if (s->phase == SL_CLOSING) {
    if (g_phase <= PH_RUN) g_lifecycles++; /* not the closes of the drain */
    /* straight back; a priming slot lives once */
    s->start_at = c->id >= (uint32_t)o.n ? 1e300 : now_s();
  } else if (s->phase == SL_LIVE) {
    g_open--;
  }
  if (s->phase == SL_CONNECTING) g_pending--;
  s->phase = SL_IDLE;
}

static const conn_hooks_t g_churn_hooks = {
    .on_open = on_open, .on_data = on_data, .on_fail = on_fail, .on_closed = on_closed};

/* ---- the loop ------------------------------------------------------------------------ */

static void start_slot(int i, double now) {
  conn_t *c = &g_conns[i];
  slot_t *s = &g_slots[i];
  if (g_phase == PH_RUN && (s->fresh || rnd01() < o.fresh)) {
    /* a user never seen before, or back to u<slot> after one */
    int fresh = rnd01() < o.fresh;
    char *t = make_target(g_opt.path, i, fresh ? ++g_user_gen : 0, g_exp);
    if (t) {
      free(s->target);
      s->target = t;
      s->fresh = (uint8_t)fresh;
    }
  }
  s->phase = SL_CONNECTING;
  s->t_wait = now;
  g_pending++;
  c->target = s->target;
  if (conn_start(c) != 0 && s->phase == SL_CONNECTING) { /* on_fail ran: counted */
    s->phase = SL_IDLE;
  }
}

static void close_slot(conn_t *c, slot_t *s, double now) {
  if (s->phase == SL_LIVE) g_open--;
  s->phase = SL_CLOSING;
  s->t_wait = now;
  conn_close_ws(c, 1000);
}

static int live_handles(void) { return g_live; }

static void sample(double now) {
  if (!o.server_pid || g_ns >= MAX_SAMPLES) return;
  long rss = proc_tree_rss(o.server_pid), fds = count_fds(o.server_pid);
  if (rss < 0 || fds < 0) {
    bench_error("the server process %ld is gone", o.server_pid);
    return;
  }
  g_st[g_ns] = now - g_t0;
  g_srss[g_ns] = rss;
  g_sfds[g_ns] = fds;
  g_sopen[g_ns] = g_open;
  g_ns++;
  if (fds > g_fd_peak) g_fd_peak = fds;
}

static void note(double now, int always) {
  char srv[64] = "";
  if (g_ns && o.server_pid)
    snprintf(srv, sizeof srv, "; server %.1f MiB, %ld fds", g_srss[g_ns - 1] / 1048576.0,
             g_sfds[g_ns - 1]);
  bench_note(always,
             "t=%.0fs joined %d, lifecycles %llu, publishes %llu, deliveries %llu, "
             "presence %llu, errors %llu%s",
             now - g_t0, g_open, (unsigned long long)g_lifecycles, (unsigned long long)g_said,
             (unsigned long long)g_deliveries, (unsigned long long)g_presence,
             (unsigned long long)g_res.errors, srv);
}

static void finish(void) {
  g_phase = PH_DONE;
  uv_timer_stop(&g_tick);
  uv_close((uv_handle_t *)&g_tick, NULL);
}

static void begin_run(double now);

static void tick(uv_timer_t *t) {
  (void)t;
  double now = now_s();
  int first = g_phase == PH_PRIME ? o.n : 0, end = g_phase == PH_PRIME ? g_nslots : o.n;

  if (g_phase == PH_PRIME || g_phase == PH_RUN) {
    for (int i = first; i < end; i++) {
      conn_t *c = &g_conns[i];
      slot_t *s = &g_slots[i];
      switch (s->phase) {
        case SL_IDLE:
          if (s->start_at <= now && g_pending < o.max_pending) start_slot(i, now);
          break;
        case SL_CONNECTING:
        case SL_JOINING:
          if (now - s->t_wait > REPLY_TIMEOUT)
            slot_error(c, "no %s within %.0f s", s->phase == SL_JOINING ? "join answer" : "101",
                       REPLY_TIMEOUT);
          break;
        case SL_LIVE:
          if (s->said == 0 && (now >= s->say_at || g_phase == PH_PRIME)) {
            s->said = 1;
            s->t_wait = now;
            send_json(c, "{\"type\":\"say\",\"room\":\"r%u\",\"text\":\"from u%u\"}", s->room,
                      c->id);
          } else if (s->said == 1 && now - s->t_wait > REPLY_TIMEOUT) {
            slot_error(c, "publish not acknowledged within %.0f s", REPLY_TIMEOUT);
          } else if (s->said == 2 && (now >= s->end_at || g_phase == PH_PRIME)) {
            close_slot(c, s, now);
          }
          break;
        case SL_CLOSING:
          if (now - s->t_wait > REPLY_TIMEOUT) slot_error(c, "close not answered");
          break;
      }
    }
  }

  if (g_phase == PH_PRIME) {
    /* every priming slot did its lifecycle */
    if (g_lifecycles >= PRIME_CONNS && live_handles() == 0) {
      g_phase = PH_BASELINE;
      g_fd_until = now + 2.0;
    }
    return;
  }
  if (g_phase == PH_BASELINE) { /* the fds of the priming connections are gone */
    long fds = o.server_pid ? count_fds(o.server_pid) : 0;
    if (now >= g_fd_until) {
      g_fd_base = o.server_pid ? fds : -1;
      bench_note(1, "primed with %d connections; the server has %ld fds", PRIME_CONNS, g_fd_base);
      begin_run(now);
    }
    return;
  }
  if (g_phase == PH_RUN) {
    if (now >= g_next_sample) {
      sample(now);
      g_next_sample += o.sample;
    }
    if (now >= g_next_note) {
      note(now, 1);
      g_next_note += o.verbose ? o.sample : 60;
    }
    if (now - g_t0 >= o.duration) {
      g_phase = PH_DRAIN;
      g_drain_until = now + REPLY_TIMEOUT + 5;
      bench_note(1, "duration reached: closing %d connections", g_live);
      for (int i = 0; i < o.n; i++) {
        conn_t *c = &g_conns[i];
        slot_t *s = &g_slots[i];
        if (s->phase == SL_LIVE || s->phase == SL_JOINING) close_slot(c, s, now);
        else if (s->phase == SL_CONNECTING) conn_abort(c);
      }
    }
    return;
  }
  if (g_phase == PH_DRAIN) {
    if (live_handles() == 0) {
      g_phase = PH_FDWAIT;
      g_fd_until = now + o.fd_wait;
    } else if (now > g_drain_until) {
      bench_error("%d connections did not close in time", live_handles());
      for (int i = 0; i < o.n; i++) conn_abort(&g_conns[i]);
    }
    return;
  }
  if (g_phase == PH_FDWAIT) {
    long fds = o.server_pid ? count_fds(o.server_pid) : -1;
    if (!o.server_pid || (fds >= 0 && fds <= g_fd_base) || now >= g_fd_until) {
      g_fd_after = fds;
      finish();
    }
  }
}

static void begin_run(double now) {
  g_phase = PH_RUN;
  g_t0 = now;
  g_next_sample = now;
  g_next_note = now + (o.verbose ? o.sample : 60);
  g_lifecycles = g_said = g_deliveries = g_presence = g_joined = g_connects = 0;
  for (int i = 0; i < o.n; i++) g_slots[i].start_at = 0;
}

/* ---- report ----------------------------------------------------------------------------- */

typedef struct {
  double rss_min, rss_max, spread, first_min, last_min;
  int n;
} rss_stat_t;

static rss_stat_t rss_stats(void) {
  rss_stat_t r = {0};
  double sum_first = 0, sum_last = 0;
  int nf = 0, nl = 0;
  double t_end = g_ns ? g_st[g_ns - 1] : 0;
  for (int i = 0; i < g_ns; i++) {
    if (g_st[i] < o.warmup) continue;
    double v = (double)g_srss[i];
    if (!r.n || v < r.rss_min) r.rss_min = v;
    if (!r.n || v > r.rss_max) r.rss_max = v;
    r.n++;
    if (g_st[i] < o.warmup + 60) sum_first += v, nf++;
    if (g_st[i] > t_end - 60) sum_last += v, nl++;
  }
  r.spread = r.n ? (r.rss_max / r.rss_min - 1) * 100 : 0;
  r.first_min = nf ? sum_first / nf : 0;
  r.last_min = nl ? sum_last / nl : 0;
  return r;
}

static int report(double secs, double srv_cpu) {
  rss_stat_t r = rss_stats();
  int have_srv = o.server_pid > 0;
  int rss_ok = !have_srv || (r.n >= 2 && r.spread <= o.rss_tol);
  int fds_ok = !have_srv || (g_fd_after >= 0 && g_fd_after <= g_fd_base);
  int ok = g_res.errors == 0 && rss_ok && fds_ok && g_lifecycles > 0 && g_deliveries > 0;
  FILE *h = o.json ? stderr : stdout;
  fprintf(h, "edgews-bench churn %s\n", o.url);
  fprintf(h, "  load         %d connections, lifetimes %.0f-%.0f s, %d rooms, %.0f s; %llu users "
             "(%.0f%% of the lifecycles new ones)\n",
          o.n, o.life_min, o.life_max, o.rooms, secs, (unsigned long long)(o.n + g_user_gen),
          o.fresh * 100);
  fprintf(h, "  lifecycles   %llu (connect, auth, join, publish, close) = %.0f/s; %llu handshakes\n",
          (unsigned long long)g_lifecycles, g_lifecycles / secs, (unsigned long long)g_connects);
  fprintf(h, "  publishes    %llu acknowledged, %llu deliveries checked in order, %llu presence "
             "events\n",
          (unsigned long long)g_said, (unsigned long long)g_deliveries,
          (unsigned long long)g_presence);
  if (have_srv) {
    fprintf(h, "  server CPU   %.1f%% of a core\n", srv_cpu / secs * 100);
    fprintf(h, "  server RSS   after %.0f s of warm-up: %.1f..%.1f MiB (spread %.2f%%, limit %.0f%%); "
               "first minute %.1f MiB, last minute %.1f MiB  %s\n",
            o.warmup, r.rss_min / 1048576, r.rss_max / 1048576, r.spread, o.rss_tol,
            r.first_min / 1048576, r.last_min / 1048576, rss_ok ? "ok" : "FAILED");
    fprintf(h, "  server fds   %ld before, peak %ld, %ld after the clients left  %s\n", g_fd_base,
            g_fd_peak, g_fd_after, fds_ok ? "ok" : "FAILED");
  }
  fprintf(h, "  errors       %llu%s%s\n", (unsigned long long)g_res.errors,
          g_res.errors ? " -- first: " : "", g_res.errors ? g_res.first_error : "");
  fprintf(h, "  verdict      %s\n", ok ? "ok" : "FAILED");
  if (o.json) {
    FILE *f = stdout;
    fprintf(f,
            "{\"mode\":\"churn\",\"conns\":%d,\"duration_s\":%.1f,\"life_min\":%.1f,\"life_max\":%.1f,"
            "\"rooms\":%d,\"fresh\":%.2f,\"users\":%llu,\"lifecycles\":%llu,\"lifecycles_per_s\":%.1f,\"handshakes\":%llu,"
            "\"publishes\":%llu,\"deliveries\":%llu,\"presence_events\":%llu,"
            "\"server_cpu_util\":%.3f,\"warmup_s\":%.0f,\"rss_min\":%.0f,\"rss_max\":%.0f,"
            "\"rss_spread_pct\":%.3f,\"rss_first_min\":%.0f,\"rss_last_min\":%.0f,"
            "\"rss_tolerance_pct\":%.1f,\"rss_ok\":%s,\"fds_before\":%ld,\"fds_peak\":%ld,"
            "\"fds_after\":%ld,\"fds_ok\":%s,\"errors\":%llu,\"first_error\":\"",
            o.n, secs, o.life_min, o.life_max, o.rooms, o.fresh,
            (unsigned long long)(o.n + g_user_gen), (unsigned long long)g_lifecycles,
            g_lifecycles / secs, (unsigned long long)g_connects, (unsigned long long)g_said,
            (unsigned long long)g_deliveries, (unsigned long long)g_presence,
            have_srv ? srv_cpu / secs : -1.0, o.warmup, r.rss_min, r.rss_max, r.spread,
            r.first_min, r.last_min, o.rss_tol, rss_ok ? "true" : "false", g_fd_base, g_fd_peak,
            g_fd_after, fds_ok ? "true" : "false", (unsigned long long)g_res.errors);
    for (const char *p = g_res.first_error; *p; p++)
      if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
      else if ((unsigned char)*p >= 0x20) fputc(*p, f);
    fprintf(f, "\",\"samples\":[");
    for (int i = 0; i < g_ns; i++)
      fprintf(f, "%s[%.1f,%ld,%ld,%d]", i ? "," : "", g_st[i], g_srss[i], g_sfds[i], g_sopen[i]);
    fprintf(f, "],\"ok\":%s}\n", ok ? "true" : "false");
    fflush(f);
  }
  return ok ? 0 : 1;
}

/* ---- command line ------------------------------------------------------------------------ */

static void usage(FILE *f) {
  fputs("usage: edgews-bench churn --url ws://HOST:PORT/PATH [-n CONNS] [--duration SECS]\n"
        "         [--lifetime MIN:MAX] [--rooms K] [--secret S] [--server-pid PID]\n"
        "         [--warmup SECS] [--sample SECS] [--rss-tolerance PCT] [--fd-wait SECS]\n"
        "         [--max-pending N] [--json] [-v]\n"
        "  -n N               connection slots kept busy (10000)\n"
        "  --duration SECS    length of the run (600)\n"
        "  --lifetime MIN:MAX each connection lives a uniform random time in seconds (10:30)\n"
        "  --rooms K          rooms (pub/sub topics + presence channels) slots spread over (1000)\n"
        "  --secret S         HS256 secret of the tokens (soak-secret)\n"
        "  --server-pid PID   sample the server's RSS and fds, and judge them\n"
        "  --warmup SECS      RSS samples before this are not judged (120)\n"
        "  --sample SECS      sampling interval (5)\n"
        "  --rss-tolerance P  max / min - 1 of the RSS after the warm-up, percent (5)\n"
        "  --fd-wait SECS     how long the server may take to close its fds after (30)\n"
        "  --max-pending N    handshakes outstanding at once (200)\n"
        "  --fresh-users F    share of lifecycles (0..1) that are a user never seen before\n"
        "                     (u<slot>.<n>); the others are u<slot> again (0)\n",
        f);
}

int churn_main(int argc, char **argv) {
  o.n = 10000;
  o.duration = 600;
  o.warmup = 120;
  o.sample = 5;
  o.fd_wait = 30;
  o.life_min = 10;
  o.life_max = 30;
  o.rooms = 1000;
  o.secret = "soak-secret";
  o.rss_tol = 5;
  o.max_pending = 200;
  enum { O_DUR = 256, O_LIFE, O_ROOMS, O_SECRET, O_PID, O_WARM, O_SAMPLE, O_TOL, O_FDW, O_PEND,
         O_JSON, O_FRESH };
  static const struct option longopts[] = {
      {"url", required_argument, NULL, 'u'},     {"duration", required_argument, NULL, O_DUR},
      {"lifetime", required_argument, NULL, O_LIFE}, {"rooms", required_argument, NULL, O_ROOMS},
      {"secret", required_argument, NULL, O_SECRET}, {"server-pid", required_argument, NULL, O_PID},
      {"warmup", required_argument, NULL, O_WARM}, {"sample", required_argument, NULL, O_SAMPLE},
      {"rss-tolerance", required_argument, NULL, O_TOL},
      {"fd-wait", required_argument, NULL, O_FDW}, {"max-pending", required_argument, NULL, O_PEND},
      {"json", no_argument, NULL, O_JSON},       {"fresh-users", required_argument, NULL, O_FRESH},       {"verbose", no_argument, NULL, 'v'},
      {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0}};
  optind = 2;
  int c;
  while ((c = getopt_long(argc, argv, "u:n:vh", longopts, NULL)) != -1) {
    char *end = NULL;
    int bad = 0;
    switch (c) {
      case 'u': o.url = optarg; break;
      case 'n': o.n = (int)strtol(optarg, &end, 10); bad = *end || o.n < 1 || o.n > 1000000; break;
      case O_DUR: o.duration = strtod(optarg, &end); bad = *end || o.duration <= 0; break;
      case O_LIFE:
        bad = sscanf(optarg, "%lf:%lf", &o.life_min, &o.life_max) != 2 || o.life_min < 0.1 ||
              o.life_max < o.life_min;
        break;
      case O_ROOMS: o.rooms = (int)strtol(optarg, &end, 10); bad = *end || o.rooms < 1; break;
      case O_SECRET: o.secret = optarg; break;
      case O_PID: o.server_pid = strtol(optarg, &end, 10); bad = *end || o.server_pid < 1; break;
      case O_WARM: o.warmup = strtod(optarg, &end); bad = *end || o.warmup < 0; break;
      case O_SAMPLE: o.sample = strtod(optarg, &end); bad = *end || o.sample < 0.1; break;
      case O_TOL: o.rss_tol = strtod(optarg, &end); bad = *end || o.rss_tol < 0; break;
      case O_FDW: o.fd_wait = strtod(optarg, &end); bad = *end || o.fd_wait < 0; break;
      case O_PEND: o.max_pending = (int)strtol(optarg, &end, 10); bad = *end || o.max_pending < 1; break;
      case O_JSON: o.json = 1; break;
      case O_FRESH: o.fresh = strtod(optarg, &end); bad = *end || o.fresh < 0 || o.fresh > 1; break;
      case 'v': o.verbose = g_opt.verbose = 1; break;
      case 'h': usage(stdout); return 0;
      default: usage(stderr); return 2;
    }
    if (bad) {
      fprintf(stderr, "edgews-bench churn: bad value '%s'\n", optarg);
      return 2;
    }
  }
  if (!o.url || optind < argc) {
    usage(stderr);
    return 2;
  }
  g_opt.url = o.url;
  if (bench_parse_url(o.url) != 0) return 2;
  if (g_opt.tls) {
    fprintf(stderr, "edgews-bench churn: ws:// only\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  long nofile = raise_nofile_limit();
  if (nofile > 0 && o.n + PRIME_CONNS + 64 > nofile) {
    fprintf(stderr, "edgews-bench churn: %d connections need more than the open-file limit %ld\n",
            o.n, nofile);
    return 2;
  }
  if (o.server_pid && count_fds(o.server_pid) < 0) {
    fprintf(stderr, "edgews-bench churn: cannot read /proc/%ld/fd\n", o.server_pid);
    return 2;
  }
  if (getrandom(&g_rng, sizeof g_rng, 0) != (ssize_t)sizeof g_rng || g_rng == 0)
    g_rng ^= uv_hrtime() | 1;

  g_nslots = o.n + PRIME_CONNS;
  g_conns = calloc((size_t)g_nslots, sizeof *g_conns);
  g_slots = calloc((size_t)g_nslots, sizeof *g_slots);
  if (!g_conns || !g_slots) return 3;
  long exp = g_exp = (long)time(NULL) + (long)o.duration + 3600;
  for (int i = 0; i < g_nslots; i++) {
    g_conns[i].id = (uint32_t)i;
    g_slots[i].room = (uint32_t)(i % o.rooms);
    g_slots[i].rx = malloc(RX_MAX + 1);
    g_slots[i].target = make_target(g_opt.path, i, 0, exp);
    if (!g_slots[i].rx || !g_slots[i].target) return 3;
  }
  g_hooks = &g_churn_hooks;
  g_loop = uv_default_loop();
  uv_timer_init(g_loop, &g_tick);
  uv_timer_start(&g_tick, tick, TICK_MS, TICK_MS);
  g_phase = PH_PRIME;
  double srv0 = o.server_pid ? proc_tree_cpu_s(o.server_pid, NULL) : 0;
  double t_begin = now_s();
  uv_run(g_loop, UV_RUN_DEFAULT);
  double secs = g_t0 ? now_s() - g_t0 : now_s() - t_begin;
  if (g_t0 && secs > o.duration) secs = o.duration; /* the drain is not load */
  double srv_cpu = o.server_pid ? proc_tree_cpu_s(o.server_pid, NULL) - srv0 : 0;
  int rc = report(secs, srv_cpu);
  for (int i = 0; i < g_nslots; i++) {
    conn_free(&g_conns[i]);
    free(g_slots[i].rx);
    free(g_slots[i].target);
  }
  free(g_conns);
  free(g_slots);
  uv_loop_close(g_loop);
  return rc;
}
