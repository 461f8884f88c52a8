/* api_ratelimit.c — rate limits for Lua: core.take, the buckets shared by every
 * worker (hub/buckets.h, per user and per IP), and the link to the per-worker
 * limiter and single buckets of hub/ratelimit.h, which lua/edgews/ratelimit.lua
 * calls through the LuaJIT FFI. */
#include <lauxlib.h>
#include <uv.h>

#include "hub/buckets.h"
#include "hub/ratelimit.h"
#include "lua/api.h"

/* The FFI entry points are looked up by name in the executable (ffi.C). Nothing in
 * C calls them, so this table references each one: that links hub/ratelimit.o into
 * the executable, which exports its symbols. */
__attribute__((visibility("default"), used)) const struct {
  double (*tb_refill)(double, double, double, double, double);
  int (*tb_consume)(double, double, double, double, double[2]);
  int (*tb_take)(ews_tb_t *, double, double, double, double, double *);
  ews_limiter_t *(*limiter_new)(double, double);
  void (*limiter_free)(ews_limiter_t *);
  int (*limiter_take)(ews_limiter_t *, int, const char *, size_t, double, double, double *);
  double (*limiter_tokens)(const ews_limiter_t *, int, const char *, size_t, double);
  void (*limiter_reset)(ews_limiter_t *, int, const char *, size_t);
  size_t (*limiter_size)(const ews_limiter_t *);
  size_t (*limiter_memory)(const ews_limiter_t *);
} ews_ratelimit_ffi = {ews_tb_refill,      ews_tb_consume,     ews_tb_take,
                       ews_limiter_new,    ews_limiter_free,   ews_limiter_take,
                       ews_limiter_tokens, ews_limiter_reset,  ews_limiter_size,
                       ews_limiter_memory};

/* core.take(key, rate, burst [, n]) -> true | false, retry_after: a token bucket
 * shared by all workers (hub/buckets.h); retry_after is math.huge when n > burst. */
static int l_take(lua_State *L) {
  size_t len;
  const char *key = luaL_checklstring(L, 1, &len);
  double rate = luaL_checknumber(L, 2), burst = luaL_checknumber(L, 3);
  double n = luaL_optnumber(L, 4, 1);
  double retry = 0;
  int ok = ews_bucket_take(key, len, rate, burst, n, (double)uv_hrtime() / 1e9, &retry);
  lua_pushboolean(L, ok);
  if (ok) return 1;
  lua_pushnumber(L, retry);
  return 2;
}

static const luaL_Reg fns[] = {{"take", l_take}, {NULL, NULL}};

void ews_api_ratelimit_register(lua_State *L, void *w) { ews_api_add(L, w, fns); }
