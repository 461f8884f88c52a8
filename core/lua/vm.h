/* vm.h — one LuaJIT VM per worker: creation (standard libraries, module paths, the
 * edgews.core C module), loading and reloading the user's script through the
 * edgews module's loader, and the protected-call convention: the traceback message
 * handler sits at stack index 1 for the VM's whole life, so every call from C is
 * `push function, push args, lua_pcall(L, n, r, 1)`. */
#ifndef EWS_VM_H
#define EWS_VM_H

#include <lua.h>

#include "config.h"

struct ews_worker;

/* Refs (LUA_REGISTRYINDEX) of the functions and metatable C calls on hot paths. */
typedef struct {
  int dispatch_open, dispatch_message, dispatch_close;
  int enqueue_message, enqueue_close; /* events for a connection whose task waits */
  int run_timer;
  int authenticate;
  int bus;
  int pubsub; /* Lua subscribers of pub/sub topics */
  int socket_mt;
} ews_vm_refs_t;

/* Creates a VM for worker w (NULL for the main thread's configuration VM), with the
 * script's directory on package.path (so `require` finds the modules beside it).
 * Returns NULL and sets *err (malloc'd) on failure. */
lua_State *ews_vm_new(struct ews_worker *w, const char *script_dir, char **err);
/* Loads (or reloads) the script: on success the new apps replace the old for new
 * connections and for the next event on every existing one. On failure the old
 * version stays and *err (malloc'd) says why, with file:line. 0 or -1. */
int ews_vm_load(lua_State *L, const char *script, char **err);
void ews_vm_close(lua_State *L);

/* Reads edgews.configure{...} from a loaded VM into cfg (fields the command line set
 * are kept). 0, or -1 with *err (malloc'd). */
int ews_vm_read_config(lua_State *L, ews_config_t *cfg, char **err);

/* The luaopen function of the edgews.core C module (api_core.c). */
int ews_luaopen_core(lua_State *L);

#endif
