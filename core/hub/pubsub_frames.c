/* pubsub_frames.c — the frames of pub/sub (see pubsub_int.h), built once per
 * message and shared by every subscriber on every worker: the JSON envelope
 *   {"type":"pub","topic":T,"epoch":"<16 hex>","offset":N,"time":MS,"data":D}
 * (D as is when the data is JSON, else a JSON string), the raw frame (the data
 * alone), the gap notice, and the epoch's hex form. */
#include "hub/pubsub_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "net/fanout.h"
#include "proto/frame.h"
#include "proto/json.h"

/* Topics and data are valid UTF-8 (checked at publish): their high bytes are copied. */
static size_t json_str_len(const char *s, size_t n) {
  return ews_json_str(NULL, s, n, EWS_JSON_UTF8);
}

static uint8_t *json_str_put(uint8_t *o, const char *s, size_t n) {
  return o + ews_json_str((char *)o, s, n, EWS_JSON_UTF8);
}

void ews_pubsub_epoch_hex(uint64_t epoch, char out[17]) {
  snprintf(out, 17, "%016llx", (unsigned long long)epoch);
}

int ews_pubsub_epoch_parse(const char *s, size_t n, uint64_t *out) {
  if (n == 0 || n > 16) return EWS_EINVAL;
  uint64_t v = 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
          : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    if (d < 0) return EWS_EINVAL;
    v = v << 4 | (uint64_t)d;
  }
  *out = v;
  return 0;
}

/* A text frame head + name (as a JSON string) + mid + data (as is when json,
 * else as a JSON string) + tail. The lengths of name and data as JSON strings
 * are given (nj, dj); the buffer is allocated by the caller with room for it. */
typedef struct {
  const char *head, *name, *mid, *data, *tail;
  size_t hl0, nl, nj, ml, dl, dj, tl;
  int json;
} text_t;

static size_t text_len(const text_t *x) {
  return x->hl0 + x->nj + x->ml + (x->json ? x->dl : x->dj) + x->tl;
}

/* Room for the frame of x, with its mid up to mid_max bytes. */
static ews_buf_t *text_alloc(const text_t *x, size_t mid_max) {
  size_t total = text_len(x) - x->ml + mid_max;
  uint8_t hdr[EWS_FRAME_MAX_HEADER];
  size_t hl = ews_frame_header(hdr, EWS_OP_TEXT, 1, 0, total, NULL);
  return ews_buf_new(NULL, hl + total);
}

/* Writes the frame of x into b (allocated by text_alloc). Cannot fail. */
static void text_fill(ews_buf_t *b, const text_t *x, size_t *hlp) {
  size_t total = text_len(x);
  uint8_t *o = b->data;
  size_t hl = ews_frame_header(o, EWS_OP_TEXT, 1, 0, total, NULL);
  o += hl;
  memcpy(o, x->head, x->hl0);
  o += x->hl0;
  o = json_str_put(o, x->name, x->nl);
  memcpy(o, x->mid, x->ml);
  o += x->ml;
  if (x->json) {
    memcpy(o, x->data, x->dl);
    o += x->dl;
  } else {
    o = json_str_put(o, x->data, x->dl);
  }
  memcpy(o, x->tail, x->tl);
  o += x->tl;
  b->len = (uint32_t)(o - b->data);
  *hlp = hl;
}

static ews_buf_t *text_build(text_t *x, size_t *hl) {
  ews_buf_t *b = text_alloc(x, x->ml);
  if (b) text_fill(b, x, hl);
  return b;
}

static const char PUB_HEAD[] = "{\"type\":\"pub\",\"topic\":";
/* ,"epoch":"<16>","offset":<20>,"time":<20>,"data": */
#define PUB_MID_MAX 96

static void envelope_text(text_t *x, const char *topic, size_t tl, int json, const char *data,
                          size_t n) {
  *x = (text_t){.head = PUB_HEAD, .hl0 = sizeof PUB_HEAD - 1, .name = topic, .nl = tl,
                .nj = json_str_len(topic, tl), .mid = "", .ml = 0, .json = json, .data = data,
                .dl = n, .dj = json ? 0 : json_str_len(data, n), .tail = "}", .tl = 1};
}

static size_t envelope_mid(char mid[128], uint64_t epoch, int64_t offset, int64_t time) {
  return (size_t)snprintf(mid, 128, ",\"epoch\":\"%016llx\",\"offset\":%lld,\"time\":%lld,\"data\":",
                          (unsigned long long)epoch, (long long)offset, (long long)time);
}

ews_buf_t *ews_ps_envelope(const char *topic, size_t tl, uint64_t epoch, int64_t offset,
                                 int64_t time, int json, const char *data, size_t n, size_t *hl) {
  text_t x;
  char mid[128];
  envelope_text(&x, topic, tl, json, data, n);
  x.mid = mid;
  x.ml = envelope_mid(mid, epoch, offset, time);
  return text_build(&x, hl);
}

ews_buf_t *ews_ps_gap_frame(const char *topic, size_t tl, uint64_t epoch, int64_t from,
                            int64_t to, const char *reason) {
  static const char head[] = "{\"type\":\"gap\",\"topic\":";
  char mid[160], e[24];
  if (epoch) snprintf(e, sizeof e, "\"%016llx\"", (unsigned long long)epoch);
  else memcpy(e, "null", 5);
  int ml = snprintf(mid, sizeof mid, ",\"epoch\":%s,\"from\":%lld,\"to\":%lld,\"reason\":\"%s\"}", e,
                    (long long)from, (long long)to, reason);
  text_t x = {.head = head, .hl0 = sizeof head - 1, .name = topic, .nl = tl,
              .nj = json_str_len(topic, tl), .mid = mid, .ml = (size_t)ml, .json = 1, .data = "",
              .tail = ""};
  size_t hl;
  return text_build(&x, &hl);
}

int ews_ps_frames(const char *topic, size_t tl, uint64_t epoch, int64_t offset,
                        int64_t time, int json, const char *data, size_t n, ews_buf_t **env,
                        size_t *env_hl, ews_buf_t **raw, size_t *raw_hl) {
  *env = ews_ps_envelope(topic, tl, epoch, offset, time, json, data, n, env_hl);
  *raw = *env ? ews_fanout_plain(EWS_OP_TEXT, data, n, raw_hl) : NULL;
  if (*raw) return 0;
  if (*env) ews_buf_unref(*env);
  *env = NULL;
  return EWS_ENOMEM;
}

ews_buf_t *ews_ps_envelope_alloc(const char *topic, size_t tl, int json, const char *data,
                                 size_t n) {
  text_t x;
  envelope_text(&x, topic, tl, json, data, n);
  return text_alloc(&x, PUB_MID_MAX);
}

void ews_ps_envelope_fill(ews_buf_t *b, const char *topic, size_t tl, uint64_t epoch,
                          int64_t offset, int64_t time, int json, const char *data, size_t n,
                          size_t *hl) {
  text_t x;
  char mid[128];
  envelope_text(&x, topic, tl, json, data, n);
  x.mid = mid;
  x.ml = envelope_mid(mid, epoch, offset, time);
  text_fill(b, &x, hl);
}

void ews_ps_release(ews_ps_entry_t *v, uint32_t n) {
  for (uint32_t i = 0; i < n; i++)
    if (v[i].frame) {
      ews_buf_unref(v[i].frame);
      v[i].frame = NULL;
    }
}
