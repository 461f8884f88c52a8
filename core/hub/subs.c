/* subs.c — subscriber arrays with back-indexes (see subs.h). */
#include "hub/subs.h"

#include <stdlib.h>

#include "err.h"

int ews_subs_reserve(ews_subs_t *s, uint32_t need) {
  if (need <= s->cap) return 0;
  uint32_t cap = s->cap ? s->cap * 2 : 4;
  while (cap < need) cap *= 2;
  ews_conn_t **v = realloc(s->v, cap * sizeof *v);
  if (!v) return EWS_ENOMEM;
  s->v = v;
  s->cap = cap;
  return 0;
}

int ews_subs_add(ews_subs_t *s, ews_conn_t *c) {
  if (ews_subs_reserve(s, s->n + 1) != 0) return EWS_ENOMEM;
  s->v[s->n++] = c;
  return 0;
}

ews_conn_t *ews_subs_remove(ews_subs_t *s, uint32_t i) {
  uint32_t last = --s->n;
  if (i == last) return NULL;
  s->v[i] = s->v[last];
  return s->v[i];
}

void ews_subs_free(ews_subs_t *s) {
  free(s->v);
  s->v = NULL;
  s->n = s->cap = 0;
}
