/* fuzz_jwt.c — libFuzzer target for the JWT verifier and what it stands on: the real
 * lua/edgews/jwt.lua, auth.lua (the strategy edgews.auth.jwt builds: credential lookup
 * in the Authorization header, the query string and the subprotocol list, then
 * verification) and crypto.lua (base64/base64url through the FFI into mbedTLS, HMAC,
 * constant-time compare), loaded by LuaJIT from lua/ exactly as the server loads them.
 *
 * The C side only embeds LuaJIT, gives the driver independent oracles (HMAC and
 * SHA-256 computed here with mbedTLS directly, not through crypto.lua) and runs
 * core/fuzz/fuzz_jwt.lua on every input; the modes and oracles are described there.
 * See fuzz_lua.h for how libFuzzer gets coverage of Lua lines. */
#include <mbedtls/md.h>

#include "fuzz_lua.h"

#ifndef EWS_SOURCE_DIR
#define EWS_SOURCE_DIR "."
#endif

static lua_State *L;
static int driver;

/* fuzz.hmac(md, key, data): md "sha256" | "sha384" | "sha512" -> raw MAC */
static int l_hmac(lua_State *L1) {
  const char *md = luaL_checkstring(L1, 1);
  size_t kn, dn;
  const char *k = luaL_checklstring(L1, 2, &kn), *d = luaL_checklstring(L1, 3, &dn);
  mbedtls_md_type_t t = !strcmp(md, "sha256")   ? MBEDTLS_MD_SHA256
                        : !strcmp(md, "sha384") ? MBEDTLS_MD_SHA384
                        : !strcmp(md, "sha512") ? MBEDTLS_MD_SHA512
                                                : MBEDTLS_MD_NONE;
  const mbedtls_md_info_t *info = mbedtls_md_info_from_type(t);
  if (!info) return luaL_error(L1, "fuzz.hmac: unknown digest %s", md);
  unsigned char out[64];
  REQUIRE(mbedtls_md_hmac(info, (const unsigned char *)k, kn, (const unsigned char *)d, dn, out) == 0);
  lua_pushlstring(L1, (const char *)out, mbedtls_md_get_size(info));
  return 1;
}

/* fuzz.sha256(data) -> raw digest */
static int l_sha256(lua_State *L1) {
  size_t n;
  const char *d = luaL_checklstring(L1, 1, &n);
  unsigned char out[32];
  REQUIRE(mbedtls_md(mbedtls_md_info_from_type(MBEDTLS_MD_SHA256), (const unsigned char *)d, n,
                     out) == 0);
  lua_pushlstring(L1, (const char *)out, 32);
  return 1;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc, (void)argv;
  L = luaL_newstate();
  REQUIRE(L);
  luaL_openlibs(L);
  lua_getglobal(L, "package");
  lua_pushstring(L, EWS_SOURCE_DIR "/lua/?.lua;" EWS_SOURCE_DIR "/core/fuzz/?.lua;" LUA_PATH_DEFAULT);
  lua_setfield(L, -2, "path");
  lua_pop(L, 1);
  static const luaL_Reg fns[] = {{"hmac", l_hmac}, {"sha256", l_sha256}, {NULL, NULL}};
  luaL_register(L, "fuzz", fns);
  lua_pop(L, 1);
  driver = fl_load_driver(L, EWS_SOURCE_DIR "/core/fuzz/fuzz_jwt.lua");
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fl_run(L, driver, data, size);
  return 0;
}
