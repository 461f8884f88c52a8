/* fuzz_router.c — libFuzzer target for the JSON message path of an app: the real
 * lua/edgews/ modules (pipeline.lua, router.lua, validate.lua, middleware.lua, the
 * edgews module and its edgews.core C bindings) in a VM made by the server's own
 * ews_vm_new, with the app core/fuzz/fuzz_router_app.lua loaded by ews_vm_load as the
 * server loads a script. Each input is one message handed to edgews._dispatch_message,
 * the entry point the core calls; the socket is a stand-in that records what is sent
 * (no connection, no event loop: the VM is the main thread's kind, without a worker).
 * The modes and oracles are in core/fuzz/fuzz_router.lua; fuzz_lua.h says how
 * libFuzzer gets coverage of the Lua lines. */
#include "fuzz_lua.h"
#include "log.h"
#include "lua/vm.h"
#include "proto/utf8.h"

#ifndef EWS_SOURCE_DIR
#define EWS_SOURCE_DIR "."
#endif

static lua_State *L;
static int driver;

/* fuzz.utf8_valid(s): what the core checks before a text message reaches Lua. */
static int l_utf8_valid(lua_State *L1) {
  size_t n;
  const char *s = luaL_checklstring(L1, 1, &n);
  lua_pushboolean(L1, ews_utf8_valid((const uint8_t *)s, n));
  return 1;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc, (void)argv;
  ews_log_level = EWS_LOG_OFF; /* handler errors are expected: the driver checks them */
  char *err = NULL;
  L = ews_vm_new(NULL, EWS_SOURCE_DIR "/core/fuzz", &err);
  if (!L || ews_vm_load(L, EWS_SOURCE_DIR "/core/fuzz/fuzz_router_app.lua", &err) != 0) {
    fprintf(stderr, "fuzz_router: %s\n", err ? err : "cannot create the VM");
    abort();
  }
  static const luaL_Reg fns[] = {{"utf8_valid", l_utf8_valid}, {NULL, NULL}};
  luaL_register(L, "fuzz", fns);
  lua_pop(L, 1);
  driver = fl_load_driver(L, EWS_SOURCE_DIR "/core/fuzz/fuzz_router.lua");
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fl_run(L, driver, data, size);
  return 0;
}
