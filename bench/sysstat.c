/* sysstat.c — process sampling for edgews-bench: CPU time and RSS of the server's
 * process tree from /proc (so a server that forks workers is measured whole), this
 * process's CPU time from getrusage, and the open-file limit. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <unistd.h>

#include "bench.h"

#define MAX_PROCS 4096

/* Reads /proc/PID/stat: ppid and utime+stime in ticks. Returns 0 or -1. */
static int read_stat(long pid, long *ppid, unsigned long long *ticks) {
  char path[64], buf[1024];
  snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[n] = 0;
  char *p = strrchr(buf, ')'); /* the command name may contain spaces and parens */
  if (!p) return -1;
  /* fields after ')': 3 state, 4 ppid, ... 14 utime, 15 stime */
  char state;
  long pp;
  unsigned long long ut, st;
  if (sscanf(p + 1,
             " %c %ld %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
             &state, &pp, &ut, &st) != 4)
    return -1;
  if (ppid) *ppid = pp;
  if (ticks) *ticks = ut + st;
  return 0;
}

/* pid and its descendants into out[]; returns the count (0 when pid is gone). */
static int proc_tree(long pid, long *out, int max) {
  if (read_stat(pid, NULL, NULL) != 0) return 0;
  static long pids[MAX_PROCS], ppids[MAX_PROCS];
  int n = 0;
  DIR *d = opendir("/proc");
  if (d) {
    struct dirent *e;
    while ((e = readdir(d)) && n < MAX_PROCS) {
      char *end;
      long p = strtol(e->d_name, &end, 10);
      if (*end || p <= 0) continue;
      long pp;
      if (read_stat(p, &pp, NULL) == 0) {
        pids[n] = p;
        ppids[n] = pp;
        n++;
      }
    }
    closedir(d);
  }
  int k = 0;
  out[k++] = pid;
  for (int i = 0; i < k; i++) /* breadth-first over the tree */
    for (int j = 0; j < n && k < max; j++)
      if (ppids[j] == out[i] && pids[j] != pid) out[k++] = pids[j];
  return k;
}

double proc_tree_cpu_s(long pid, int *nprocs) {
  static long tree[MAX_PROCS];
  int k = proc_tree(pid, tree, MAX_PROCS);
  if (nprocs) *nprocs = k;
  if (k == 0) return -1;
  unsigned long long total = 0;
  for (int i = 0; i < k; i++) {
    unsigned long long t;
    if (read_stat(tree[i], NULL, &t) == 0) total += t;
  }
  return (double)total / (double)sysconf(_SC_CLK_TCK);
}

static long read_rss(long pid) {
  char path[64], line[256];
  snprintf(path, sizeof(path), "/proc/%ld/status", pid);
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  long kb = -1;
  while (fgets(line, sizeof(line), f))
    if (strncmp(line, "VmRSS:", 6) == 0) {
      kb = strtol(line + 6, NULL, 10);
      break;
    }
  fclose(f);
  return kb < 0 ? -1 : kb * 1024;
}

long proc_tree_rss(long pid) {
  static long tree[MAX_PROCS];
  int k = proc_tree(pid, tree, MAX_PROCS);
  if (k == 0) return -1;
  long total = 0;
  for (int i = 0; i < k; i++) {
    long r = read_rss(tree[i]);
    if (r > 0) total += r;
  }
  return total;
}

double machine_cpu_s(void) {
  FILE *f = fopen("/proc/stat", "r");
  if (!f) return -1;
  unsigned long long user = 0, nice = 0, sys = 0;
  int n = fscanf(f, "cpu %llu %llu %llu", &user, &nice, &sys);
  fclose(f);
  if (n != 3) return -1;
  return (double)(user + nice + sys) / (double)sysconf(_SC_CLK_TCK);
}

double self_cpu_s(void) {
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
         (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

long raise_nofile_limit(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return -1;
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) getrlimit(RLIMIT_NOFILE, &rl);
  }
  return (long)rl.rlim_cur;
}

double servers_cpu_s(int *nprocs) {
  double total = 0;
  int procs = 0;
  for (int i = 0; i < g_opt.nserver_pids; i++) {
    int k = 0;
    double t = proc_tree_cpu_s(g_opt.server_pids[i], &k);
    if (t < 0) return -1;
    total += t;
    procs += k;
  }
  if (nprocs) *nprocs = procs;
  return total;
}

/* ---- the measured interval ------------------------------------------------------- */

static double g_srv0 = -1, g_gen0, g_mach0 = -1;

void sample_begin(void) {
  g_srv0 = g_opt.server_pid ? servers_cpu_s(NULL) : -1;
  g_mach0 = machine_cpu_s();
  g_gen0 = self_cpu_s();
}

void sample_end(void) {
  g_res.gen_cpu_s = self_cpu_s() - g_gen0;
  double m = machine_cpu_s();
  g_res.machine_cpu_s = m >= 0 && g_mach0 >= 0 ? m - g_mach0 : -1;
  g_res.server_cpu_s = -1;
  if (g_opt.server_pid) {
    double cpu = servers_cpu_s(&g_res.server_procs);
    if (cpu < 0)
      bench_error("a server process (%ld, ...) is gone", g_opt.server_pid);
    else if (g_srv0 >= 0)
      g_res.server_cpu_s = cpu - g_srv0;
  }
}
