/* json_decode.c — the message path's JSON decoder (see json_decode.h): a one-pass
 * recursive descent straight from the message text into Lua values, with no scratch
 * buffer for strings without escapes and no strtod for integers of up to 15 digits.
 * Whatever it does not handle goes to lua-cjson (the closure's upvalue). */
#include "lua/json_decode.h"

#include <lauxlib.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

typedef struct {
  lua_State *L;
  const unsigned char *p, *end;
  const unsigned char *begin; /* the text's first byte */
  int depth;
  int build; /* 0: only check the text (ews_json_scan_type): nothing is pushed */
} jd_t;

enum { JD_OK = 0, JD_OTHER = -1 }; /* JD_OTHER: hand the text to cjson */

/* 1 for the bytes that end the plain run of a string: '"', '\\' and controls. */
static const unsigned char stop[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
};

#ifdef __SSE2__
/* Bit i set when byte i of the 16 at p ends a plain run: '"', '\\' or <= 0x1f. */
static inline unsigned stops16(const unsigned char *p) {
  const __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
  const __m128i hit =
      _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')),
                                _mm_cmpeq_epi8(v, _mm_set1_epi8('\\'))),
                   _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1f)), v));
  return (unsigned)_mm_movemask_epi8(hit);
}
#endif

/* The first byte at or after p that ends a string's plain run (stop[]), or end: 16
 * bytes at a time with SSE2, the last few through the 16 bytes that end the text when
 * the text (from begin) is that long; never reading outside [begin, end). */
static inline const unsigned char *plain_run(const unsigned char *p, const unsigned char *end,
                                             const unsigned char *begin) {
#ifdef __SSE2__
  while (end - p >= 16) {
    unsigned m = stops16(p);
    if (m) return p + __builtin_ctz(m);
    p += 16;
  }
  if (p < end && end - begin >= 16) {
    unsigned m = stops16(end - 16) >> (16 - (end - p));
    return m ? p + __builtin_ctz(m) : end;
  }
#else
  (void)begin;
#endif
  while (p < end && !stop[*p]) p++;
  return p;
}

static inline void skip_ws(jd_t *d) {
  while (d->p < d->end && *d->p <= ' ' &&
         (*d->p == ' ' || *d->p == '\n' || *d->p == '\r' || *d->p == '\t'))
    d->p++;
}

static int hex4(const unsigned char *p, unsigned *out) {
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    unsigned c = p[i], x;
    if (c >= '0' && c <= '9') x = c - '0';
    else if (c >= 'a' && c <= 'f') x = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F') x = c - 'A' + 10;
    else return JD_OTHER;
    v = v << 4 | x;
  }
  *out = v;
  return JD_OK;
}

static int string_escaped(jd_t *d, const unsigned char *s, const unsigned char *p);

/* A string whose opening quote is behind d->p: pushes it. */
static inline int string(jd_t *d) {
  const unsigned char *s = d->p, *end = d->end, *p = plain_run(s, end, d->begin);
  if (p >= end) return JD_OTHER;
  if (*p == '"') {
    if (d->build) lua_pushlstring(d->L, (const char *)s, (size_t)(p - s));
    d->p = p + 1;
    return JD_OK;
  }
  if (*p != '\\') return JD_OTHER; /* a raw control character */
  return string_escaped(d, s, p);
}

/* The rest of a string from its first escape at p (s: its start): gathered in a Lua
 * buffer (a scan checks the escapes only). Out of line: the buffer is large. */
static __attribute__((noinline)) int string_escaped(jd_t *d, const unsigned char *s,
                                                    const unsigned char *p) {
  const unsigned char *end = d->end;
  luaL_Buffer b;
  if (d->build) luaL_buffinit(d->L, &b);
  for (;;) {
    if (d->build) luaL_addlstring(&b, (const char *)s, (size_t)(p - s));
    if (p >= end) return JD_OTHER;
    if (*p == '"') break;
    if (*p != '\\' || end - p < 2) return JD_OTHER;
    char c;
    switch (p[1]) {
      case '"': c = '"'; break;
      case '\\': c = '\\'; break;
      case '/': c = '/'; break;
      case 'b': c = '\b'; break;
      case 'f': c = '\f'; break;
      case 'n': c = '\n'; break;
      case 'r': c = '\r'; break;
      case 't': c = '\t'; break;
      case 'u': {
        unsigned cp;
        if (end - p < 6 || hex4(p + 2, &cp) != JD_OK) return JD_OTHER;
        if (cp == 0 || (cp >= 0xD800 && cp <= 0xDFFF)) return JD_OTHER;
        char u[3];
        size_t n;
        if (cp < 0x80) {
          u[0] = (char)cp;
          n = 1;
        } else if (cp < 0x800) {
          u[0] = (char)(0xC0 | cp >> 6);
          u[1] = (char)(0x80 | (cp & 0x3F));
          n = 2;
        } else {
          u[0] = (char)(0xE0 | cp >> 12);
          u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
          u[2] = (char)(0x80 | (cp & 0x3F));
          n = 3;
        }
        if (d->build) luaL_addlstring(&b, u, n);
        p += 6;
        goto next;
      }
      default: return JD_OTHER;
    }
    if (d->build) luaL_addchar(&b, c);
    p += 2;
  next:
    s = p;
    p = plain_run(p, end, d->begin);
    if (p < end && *p != '"' && *p != '\\') return JD_OTHER;
  }
  if (d->build) luaL_pushresult(&b);
  d->p = p + 1;
  return JD_OK;
}

static int number(jd_t *d) {
  const unsigned char *p = d->p, *start = p, *end = d->end;
  int neg = 0;
  if (*p == '-') {
    neg = 1;
    p++;
  }
  const unsigned char *digits = p;
  if (p >= end) return JD_OTHER;
  if (*p == '0') {
    p++;
    if (p < end && *p >= '0' && *p <= '9') return JD_OTHER;
  } else if (*p >= '1' && *p <= '9') {
    while (p < end && *p >= '0' && *p <= '9') p++;
  } else {
    return JD_OTHER;
  }
  int integer = 1;
  size_t ndig = (size_t)(p - digits);
  if (p < end && *p == '.') {
    integer = 0;
    p++;
    if (p >= end || *p < '0' || *p > '9') return JD_OTHER;
    while (p < end && *p >= '0' && *p <= '9') p++;
  }
  if (p < end && (*p == 'e' || *p == 'E')) {
    integer = 0;
    p++;
    if (p < end && (*p == '+' || *p == '-')) p++;
    if (p >= end || *p < '0' || *p > '9') return JD_OTHER;
    while (p < end && *p >= '0' && *p <= '9') p++;
  }
  /* What follows is checked by the caller (a separator, a closing bracket, or the
   * end): "1x" goes to cjson there. */
  if (!d->build) {
    if (!(integer && ndig <= 15) && (size_t)(p - start) >= 64) return JD_OTHER;
  } else if (integer && ndig <= 15) {
    int64_t v = 0;
    for (const unsigned char *q = digits; q < p; q++) v = v * 10 + (*q - '0');
    /* exact in a double, as strtod reads it; "-0" is -0.0 */
    lua_pushnumber(d->L, neg ? -(lua_Number)v : (lua_Number)v);
  } else {
    char buf[64];
    size_t n = (size_t)(p - start);
    if (n >= sizeof buf) return JD_OTHER;
    memcpy(buf, start, n);
    buf[n] = 0;
    lua_pushnumber(d->L, strtod(buf, NULL));
  }
  d->p = p;
  return JD_OK;
}

static int value(jd_t *d);

static int literal(jd_t *d, const char *word, size_t n) {
  if ((size_t)(d->end - d->p) < n || memcmp(d->p, word, n) != 0) return JD_OTHER;
  d->p += n;
  return JD_OK;
}

/* The table is lua-cjson's: an empty table (lua_newtable) that the fields go into one
 * by one, in the text's order, growing as LuaJIT grows it. pairs() order and the size
 * depend on that history, so it is kept, except for the first growth: LuaJIT grows an
 * empty table at its first field to a hash part of 2 nodes, the size
 * lua_createtable(L, 0, 1) makes, and that table holds nothing yet to re-insert; so an
 * object with a field starts there and skips one rehash (test_lua_json_decode compares
 * the order, also of fields added afterwards). */
static int object(jd_t *d) {
  lua_State *L = d->L;
  d->p++;
  skip_ws(d);
  if (d->p < d->end && *d->p == '}') {
    if (d->build) lua_newtable(L);
    d->p++;
    return JD_OK;
  }
  if (d->build) lua_createtable(L, 0, 1);
  for (;;) {
    if (d->p >= d->end || *d->p != '"') return JD_OTHER;
    d->p++;
    if (string(d) != JD_OK) return JD_OTHER;
    skip_ws(d);
    if (d->p >= d->end || *d->p != ':') return JD_OTHER;
    d->p++;
    skip_ws(d);
    if (value(d) != JD_OK) return JD_OTHER;
    if (d->build) lua_rawset(L, -3);
    skip_ws(d);
    if (d->p >= d->end) return JD_OTHER;
    if (*d->p == ',') {
      d->p++;
      skip_ws(d);
      continue;
    }
    if (*d->p != '}') return JD_OTHER;
    d->p++;
    return JD_OK;
  }
}

static int array(jd_t *d) {
  lua_State *L = d->L;
  if (d->build) lua_newtable(L);
  d->p++;
  skip_ws(d);
  if (d->p < d->end && *d->p == ']') {
    d->p++;
    return JD_OK;
  }
  for (int i = 1;; i++) {
    if (value(d) != JD_OK) return JD_OTHER;
    if (d->build) lua_rawseti(L, -2, i);
    skip_ws(d);
    if (d->p >= d->end) return JD_OTHER;
    if (*d->p == ',') {
      d->p++;
      skip_ws(d);
      continue;
    }
    if (*d->p != ']') return JD_OTHER;
    d->p++;
    return JD_OK;
  }
}

static int value(jd_t *d) {
  if (d->p >= d->end) return JD_OTHER;
  switch (*d->p) {
    case '{':
    case '[': {
      if (++d->depth > EWS_JSON_FAST_DEPTH) return JD_OTHER;
      int r = *d->p == '{' ? object(d) : array(d);
      d->depth--;
      return r;
    }
    case '"':
      d->p++;
      return string(d);
    case 't':
      if (literal(d, "true", 4) != JD_OK) return JD_OTHER;
      if (d->build) lua_pushboolean(d->L, 1);
      return JD_OK;
    case 'f':
      if (literal(d, "false", 5) != JD_OK) return JD_OTHER;
      if (d->build) lua_pushboolean(d->L, 0);
      return JD_OK;
    case 'n':
      if (literal(d, "null", 4) != JD_OK) return JD_OTHER;
      if (d->build) lua_pushlightuserdata(d->L, NULL); /* cjson.null */
      return JD_OK;
    default:
      return number(d);
  }
}

static int l_decode(lua_State *L) {
  int top = lua_gettop(L);
  if (top == 1 && lua_type(L, 1) == LUA_TSTRING) {
    size_t n;
    const char *s = lua_tolstring(L, 1, &n);
    /* each level holds a table and a key; strings with escapes a buffer */
    if (lua_checkstack(L, 2 * EWS_JSON_FAST_DEPTH + LUA_MINSTACK)) {
      jd_t d = {L, (const unsigned char *)s, (const unsigned char *)s + n,
                (const unsigned char *)s, 0, 1};
      skip_ws(&d);
      if (value(&d) == JD_OK) {
        skip_ws(&d);
        if (d.p == d.end) return 1;
      }
      lua_settop(L, top);
    }
  }
  /* Not ours to decide: cjson's answer, whatever it is. */
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, top, LUA_MULTRET);
  return lua_gettop(L);
}

static inline const unsigned char *ws(const unsigned char *p, const unsigned char *end) {
  while (p < end && *p <= ' ' && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++;
  return p;
}

/* The top-level object walked here with a local pointer, its keys and plain strings
 * scanned in place and every other value checked by value() with nothing built (the
 * same grammar and depth limit as the decoder); a key with an escape or a control
 * byte ends the scan (0: the decoder decides). The last "type" wins, as in the table. */
int ews_json_scan_type(const char *text, size_t n, const char **type, size_t *type_len) {
  const unsigned char *begin = (const unsigned char *)text, *p = begin, *end = p + n, *ts = NULL;
  size_t tn = 0;
  p = ws(p, end);
  if (p >= end || *p != '{') return 0;
  p = ws(p + 1, end);
  for (;;) {
    if (p >= end || *p != '"') return 0; /* also {}: no type */
    const unsigned char *k = p + 1, *q = plain_run(k, end, begin);
    if (q >= end || *q != '"') return 0;
    int is_type = q - k == 4 && k[0] == 't' && k[1] == 'y' && k[2] == 'p' && k[3] == 'e';
    p = ws(q + 1, end);
    if (p >= end || *p != ':') return 0;
    p = ws(p + 1, end);
    if (p >= end) return 0;
    q = NULL;
    if (*p == '"') {
      q = plain_run(p + 1, end, begin);
      if (q >= end || *q != '"') q = NULL;
    } else { /* an integer of up to 15 digits, as the decoder reads it itself */
      const unsigned char *r = p + (*p == '-'), *digits = r;
      if (r < end && *r >= '1' && *r <= '9') {
        do r++;
        while (r < end && *r >= '0' && *r <= '9');
        if (r - digits <= 15 && r < end && (*r == ',' || *r == '}' || *r <= ' ')) q = r - 1;
      }
    }
    if (q) { /* a string without escapes, or that integer: q is its last byte */
      if (is_type) {
        ts = *p == '"' ? p + 1 : NULL; /* not a string: unless a later "type" is */
        tn = (size_t)(q - p - 1);
      }
      p = q + 1;
    } else {
      if (is_type) ts = NULL;
      jd_t d = {NULL, p, end, begin, 1, 0};
      if (value(&d) != JD_OK) return 0;
      p = d.p;
    }
    p = ws(p, end);
    if (p < end && *p == ',') {
      p = ws(p + 1, end);
      continue;
    }
    if (p >= end || *p != '}') return 0;
    if (ws(p + 1, end) != end || !ts) return 0;
    *type = (const char *)ts;
    *type_len = tn;
    return 1;
  }
}

void ews_json_push_decoder(lua_State *L, int idx) {
  lua_pushvalue(L, idx);
  lua_pushcclosure(L, l_decode, 1);
}
