/* log.c — formatting and writing log lines (see log.h). */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

int ews_log_level = EWS_LOG_INFO;
static _Thread_local char log_tag[16] = "main";

static const char *const level_names[] = {"debug", "info", "warn", "error", "off"};
static const char *const level_tags[] = {"DEBUG", "INFO", "WARN", "ERROR", "OFF"};

int ews_log_level_parse(const char *name) {
  for (int i = 0; i <= EWS_LOG_OFF; i++)
    if (strcmp(name, level_names[i]) == 0) return i;
  return -1;
}

const char *ews_log_level_name(int level) {
  return level >= 0 && level <= EWS_LOG_OFF ? level_names[level] : "?";
}

void ews_log_set_tag(const char *tag) {
  snprintf(log_tag, sizeof log_tag, "%s", tag);
}

static void vlog(int level, const char *fmt, va_list ap) {
  char line[4096];
  struct timeval tv;
  struct tm tm;
  gettimeofday(&tv, NULL);
  gmtime_r(&tv.tv_sec, &tm);
  int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %s [%s] ",
                   tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                   tm.tm_sec, (int)(tv.tv_usec / 1000), level_tags[level], log_tag);
  int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
  size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
  if (len > sizeof line - 2) len = sizeof line - 2;
  line[len++] = '\n';
  ssize_t w = write(STDERR_FILENO, line, len);
  (void)w;
}

void ews_log(int level, const char *fmt, ...) {
  if (level < ews_log_level || level >= EWS_LOG_OFF) return;
  va_list ap;
  va_start(ap, fmt);
  vlog(level, fmt, ap);
  va_end(ap);
}

void ews_log_always(int level, const char *fmt, ...) {
  if (ews_log_level >= EWS_LOG_OFF || level >= EWS_LOG_OFF) return;
  va_list ap;
  va_start(ap, fmt);
  vlog(level, fmt, ap);
  va_end(ap);
}
