/* script_config.h — the server settings of a script's edgews.configure{...}. */
#ifndef EWS_SCRIPT_CONFIG_H
#define EWS_SCRIPT_CONFIG_H

#include <lua.h>

#include "config.h"

/* Reads edgews.configure{...} from a VM that loaded the script (ews_vm_load) into cfg
 * (fields the command line set are kept). 0, or -1 with *err (malloc'd). */
int ews_script_read_config(lua_State *L, ews_config_t *cfg, char **err);

#endif
