/* fanout.c — one message, encoded once, to many connections (see fanout.h). */
#include "net/fanout.h"

#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "log.h"
#include "stat.h"

#define MAX_VARIANTS 8 /* distinct (app, window) compressed frames per fan-out */

typedef struct {
  ews_pmd_worker_t *pmd;
  int bits;
  ews_buf_t *frame; /* complete compressed frame */
} variant_t;

ews_buf_t *ews_fanout_plain(int opcode, const void *p, size_t n, size_t *hlp) {
  uint8_t hdr[EWS_FRAME_MAX_HEADER];
  size_t hl = ews_frame_header(hdr, opcode, 1, 0, n, NULL);
  if (hlp) *hlp = hl;
  /* Not from the worker pool: a fan-out frame may be large and long-lived. */
  ews_buf_t *b = ews_buf_new(NULL, hl + n);
  if (!b) return NULL;
  memcpy(b->data, hdr, hl);
  if (n) memcpy(b->data + hl, p, n);
  b->len = (uint32_t)(hl + n);
  return b;
}

static ews_buf_t *build_compressed(ews_net_t *net, ews_conn_t *c, int opcode, const void *p,
                                   size_t n, variant_t *vars, int *nvars) {
  ews_pmd_worker_t *pw;
  if (ews_app_pmd(c->app, &pw) < 0) return NULL;
  int bits = ews_conn_pmd(c)->params.server_window_bits;
  for (int i = 0; i < *nvars; i++)
    if (vars[i].pmd == pw && vars[i].bits == bits) return vars[i].frame;
  if (*nvars == MAX_VARIANTS) return NULL;
  /* The shared compressor for this window: its output depends on nothing else. */
  ews_pmd_params_t shared = ews_conn_pmd(c)->params;
  shared.server_no_context_takeover = 1;
  ews_deflater_t *d, *unused = NULL;
  if (ews_pmd_deflater_for(pw, &shared, &unused, &d) < 0) return NULL;
  ews_zbuf_t *z = &net->zscratch;
  z->len = 0;
  size_t off;
  if (ews_deflate_frame(d, opcode, p, n, z, &off) < 0) return NULL;
  EWS_STAT_ADD(net->stats.compressed, 1);
  ews_buf_t *b = ews_buf_new(NULL, z->len - off);
  if (!b) return NULL;
  memcpy(b->data, z->p + off, z->len - off);
  b->len = (uint32_t)(z->len - off);
  vars[*nvars].pmd = pw;
  vars[*nvars].bits = bits;
  vars[*nvars].frame = b;
  (*nvars)++;
  return b;
}

int ews_fanout(ews_net_t *net, ews_conn_t *const *conns, size_t count, int opcode,
               const void *p, size_t n) {
  return ews_fanout_frame(net, conns, count, opcode, p, n, NULL, 0);
}

int ews_fanout_frame(ews_net_t *net, ews_conn_t *const *conns, size_t count, int opcode,
                     const void *p, size_t n, ews_buf_t *given, uint64_t exclude_id) {
  ews_buf_t *plain = given;
  if (plain) ews_buf_ref(plain);
  variant_t vars[MAX_VARIANTS];
  int nvars = 0, sent = 0, err = 0;
  for (size_t i = 0; i < count; i++) {
    ews_conn_t *c = conns[i];
    if (!c || c->state != EWS_CS_OPEN || (exclude_id && c->id == exclude_id)) continue;
    ews_buf_t *frame;
    int compressed = ews_conn_pmd(c) && n >= c->app->pmd_cfg.threshold;
    if (compressed) {
      frame = build_compressed(net, c, opcode, p, n, vars, &nvars);
    } else {
      if (!plain) plain = ews_fanout_plain(opcode, p, n, NULL);
      frame = plain;
    }
    if (!frame) {
      err = EWS_ENOMEM;
      continue;
    }
    int r = ews_conn_send_frame(c, frame);
    if (r == 0) {
      sent++;
      /* A context-keeping compressor must now assume the client's window holds
       * this message, not what the compressor last produced. */
      if (compressed && ews_conn_pmd(c)->own) ews_deflater_reset(ews_conn_pmd(c)->own, p, n);
    }
  }
  if (plain) ews_buf_unref(plain);
  for (int i = 0; i < nvars; i++) ews_buf_unref(vars[i].frame);
  return sent || !err ? sent : err;
}
