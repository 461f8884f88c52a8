/* api_pubsub.c — the pub/sub functions of `edgews.core` (hub/pubsub.h): publish
 * (which waits for the store's commit when topics are persistent), socket
 * subscriptions with recovery, Lua subscriber counts and history reads. The Lua
 * face is lua/edgews/pubsub.lua. Epochs cross into Lua as 16-digit hex strings
 * (64-bit values do not fit a double). */
#include <lauxlib.h>
#include <lua.h>
#include <string.h>

#include "err.h"
#include "hub/hash.h"
#include "hub/engine.h"
#include "hub/pubsub.h"
#include "lua/api.h"
#include "log.h"
#include "lua/tasks.h"

static ews_vm_t *worker_of(lua_State *L) {
  ews_vm_t *w = lua_touserdata(L, lua_upvalueindex(1));
  if (!w) luaL_error(L, "pub/sub needs a worker (not available while reading the configuration)");
  return w;
}

/* The engine's pub/sub (hub/engine.h): sequencing and history. */
static const ews_pubsub_engine_t *engine(const ews_vm_t *w) { return w->hub->engine->pubsub; }

static void push_pos(lua_State *L, const ews_pubsub_pos_t *pos) {
  char hex[17];
  ews_pubsub_epoch_hex(pos->epoch, hex);
  lua_pushstring(L, hex);
  lua_pushnumber(L, (lua_Number)pos->offset);
  lua_pushnumber(L, (lua_Number)pos->time);
}

/* A parked publish is resumed with (epoch, offset, time) or (nil, code). */
static void on_published(ews_hub_t *h, void *ud, int status, const ews_pubsub_pos_t *pos) {
  (void)h;
  ews_task_t *task = ud;
  ews_vm_t *w = task->w;
  if (!w->L) return;
  if (status < 0) {
    lua_pushnil(task->co);
    lua_pushinteger(task->co, status);
    ews_task_resume(w, task, 2);
    return;
  }
  push_pos(task->co, pos);
  ews_task_resume(w, task, 3);
}

static int finish(lua_State *L, int r, ews_task_t *task, const ews_pubsub_pos_t *pos);

/* core.pubsub_publish(topic, data, is_json, wait) -> epoch, offset, time | true
 * (persistent, not waited for) | nil, code */
static int l_publish(lua_State *L) {
  ews_vm_t *w = worker_of(L);
  size_t tl, n;
  const char *topic = luaL_checklstring(L, 1, &tl);
  const char *data = luaL_checklstring(L, 2, &n);
  int json = lua_toboolean(L, 3);
  int wait = lua_toboolean(L, 4);
  ews_task_t *task = wait && engine(w)->persistent() ? ews_task_current(w, L) : NULL;
  ews_pubsub_pos_t pos;
  int r = engine(w)->publish(w->hub, topic, tl, json, data, n, task ? on_published : NULL, task,
                             &pos);
  return finish(L, r, task, &pos);
}

/* Memory: the result now; stored: parks the handler until the commit (or, outside
 * a handler, returns true at once). r is what the pubsub call returned. */
static int finish(lua_State *L, int r, ews_task_t *task, const ews_pubsub_pos_t *pos) {
  if (r < 0) return ews_api_result(L, r);
  if (r == 0) {
    push_pos(L, pos);
    return 3;
  }
  if (!task) {
    lua_pushboolean(L, 1);
    return 1;
  }
  task->waiting = 1;
  return lua_yield(L, 0);
}

/* core.pubsub_reset(topic) -> epoch | true | nil, code */
static int l_reset(lua_State *L) {
  ews_vm_t *w = worker_of(L);
  size_t tl;
  const char *topic = luaL_checklstring(L, 1, &tl);
  ews_task_t *task = engine(w)->persistent() ? ews_task_current(w, L) : NULL;
  ews_pubsub_pos_t pos;
  int r = engine(w)->reset(w->hub, topic, tl, task ? on_published : NULL, task, &pos);
  return finish(L, r, task, &pos);
}

/* core.pubsub_retention(topic, max_queue_size, message_ttl) (-1: the default)
 *   -> epoch | true | nil, code */
static int l_retention(lua_State *L) {
  ews_vm_t *w = worker_of(L);
  size_t tl;
  const char *topic = luaL_checklstring(L, 1, &tl);
  int32_t maxq = (int32_t)luaL_checkinteger(L, 2), ttl = (int32_t)luaL_checkinteger(L, 3);
  ews_task_t *task = engine(w)->persistent() ? ews_task_current(w, L) : NULL;
  ews_pubsub_pos_t pos;
  int r = engine(w)->retention(w->hub, topic, tl, maxq, ttl, task ? on_published : NULL, task,
                               &pos);
  return finish(L, r, task, &pos);
}

static int push_sub(lua_State *L, const ews_pubsub_sub_result_t *res, int pending) {
  char hex[17];
  ews_pubsub_epoch_hex(res->epoch, hex);
  lua_pushstring(L, hex);
  lua_pushnumber(L, (lua_Number)res->offset);
  lua_pushboolean(L, res->recovered);
  lua_pushnumber(L, (lua_Number)res->replayed);
  lua_pushboolean(L, res->gap);
  lua_pushboolean(L, res->already);
  lua_pushboolean(L, pending);
  return 7;
}

/* A replay that took more than the subscribing turn ended: the parked handler
 * gets the result, or (nil, code). */
static void on_subscribed(ews_hub_t *h, void *ud, int status, const ews_pubsub_sub_result_t *res) {
  (void)h;
  ews_task_t *task = ud;
  ews_vm_t *w = task->w;
  if (!w->L) return;
  if (status < 0) {
    lua_pushnil(task->co);
    lua_pushinteger(task->co, status);
    ews_task_resume(w, task, 2);
    return;
  }
  ews_task_resume(w, task, push_sub(task->co, res, 0));
}

/* core.pubsub_subscribe(c, topic, recover, since_offset, epoch_hex|nil, raw)
 *   -> epoch, offset, recovered, replayed, gap, already, pending | nil, code
 * A replay that goes on over later loop turns parks the calling handler until it
 * ends; outside a handler's task it goes on alone and pending is true. */
static int l_subscribe(lua_State *L) {
  ews_vm_t *w = worker_of(L);
  ews_conn_t *c = ews_api_conn(L, 1);
  size_t tl;
  const char *topic = luaL_checklstring(L, 2, &tl);
  ews_pubsub_sub_opts_t o = {0};
  o.recover = lua_toboolean(L, 3);
  o.since_offset = (int64_t)luaL_optnumber(L, 4, 0);
  if (o.since_offset < 0) o.since_offset = 0;
  size_t el;
  const char *e = lua_tolstring(L, 5, &el);
  if (e) {
    if (ews_pubsub_epoch_parse(e, el, &o.epoch) != 0) return ews_api_result(L, EWS_EINVAL);
    o.has_epoch = 1;
  }
  o.raw = lua_toboolean(L, 6);
  ews_pubsub_sub_result_t res;
  ews_task_t *task = ews_task_current(w, L);
  int r = ews_pubsub_subscribe(w->hub, c, topic, tl, &o, task ? on_subscribed : NULL, task, &res);
  if (r < 0) return ews_api_result(L, r);
  if (r == 1 && task) {
    task->waiting = 1;
    return lua_yield(L, 0);
  }
  return push_sub(L, &res, r == 1);
}

/* core.pubsub_unsubscribe(c, topic) -> true | nil, code */
static int l_unsubscribe(lua_State *L) {
  ews_vm_t *w = worker_of(L);
  ews_conn_t *c = ews_api_conn(L, 1);
  size_t tl;
  const char *topic = luaL_checklstring(L, 2, &tl);
  return ews_api_result(L, ews_pubsub_unsubscribe(w->hub, c, topic, tl));
}

/* core.pubsub_lua(topic, delta) -> true | nil, code */
static int l_lua_subs(lua_State *L) {
  ews_vm_t *w = worker_of(L);
  size_t tl;
  const char *topic = luaL_checklstring(L, 1, &tl);
  return ews_api_result(L, ews_pubsub_lua_subs(w->hub, topic, tl, (int)luaL_checkinteger(L, 2)));
}

/* core.pubsub_local_count(topic) -> sockets subscribed on this worker */
static int l_local_count(lua_State *L) {
  ews_vm_t *w = worker_of(L);
  size_t tl;
  const char *topic = luaL_checklstring(L, 1, &tl);
  lua_pushinteger(L, ews_pubsub_local_count(w->hub, topic, tl));
  return 1;
}

/* core.pubsub_history(topic, since, limit) -> { epoch, first_offset, last_offset,
 *   messages = { {offset, time, data, json}, ... } } | nil, code */
static int l_history(lua_State *L) {
  ews_vm_t *w = worker_of(L);
  size_t tl;
  const char *topic = luaL_checklstring(L, 1, &tl);
  int64_t since = (int64_t)luaL_optnumber(L, 2, 0);
  lua_Number lim = luaL_optnumber(L, 3, 100);
  uint32_t limit = lim < 0 ? 0 : lim > EWS_STORE_MAX_LIMIT ? EWS_STORE_MAX_LIMIT : (uint32_t)lim;
  ews_pubsub_history_t h;
  int r = engine(w)->history(w->hub, topic, tl, since < 0 ? 0 : since, limit, &h);
  if (r < 0) return ews_api_result(L, r);
  lua_createtable(L, 0, 4);
  char hex[17];
  ews_pubsub_epoch_hex(h.epoch, hex);
  lua_pushstring(L, hex);
  lua_setfield(L, -2, "epoch");
  lua_pushnumber(L, (lua_Number)h.first_offset);
  lua_setfield(L, -2, "first_offset");
  lua_pushnumber(L, (lua_Number)h.last_offset);
  lua_setfield(L, -2, "last_offset");
  lua_createtable(L, (int)h.n, 0);
  for (size_t i = 0; i < h.n; i++) {
    const ews_pubsub_item_t *it = &h.items[i];
    lua_createtable(L, 0, 4);
    lua_pushnumber(L, (lua_Number)it->offset);
    lua_setfield(L, -2, "offset");
    lua_pushnumber(L, (lua_Number)it->time);
    lua_setfield(L, -2, "time");
    lua_pushlstring(L, it->data, it->len);
    lua_setfield(L, -2, "data");
    lua_pushboolean(L, it->json);
    lua_setfield(L, -2, "json");
    lua_rawseti(L, -2, (int)i + 1);
  }
  lua_setfield(L, -2, "messages");
  engine(w)->history_free(&h);
  return 1;
}

/* core.pubsub_owner(topic) -> the worker that runs load-time Lua subscribers */
static int l_owner(lua_State *L) {
  ews_vm_t *w = lua_touserdata(L, lua_upvalueindex(1));
  size_t tl;
  const char *topic = luaL_checklstring(L, 1, &tl);
  int n = w ? w->hub->nworkers : 1;
  lua_pushinteger(L, (lua_Integer)(ews_hash(topic, tl) % (uint32_t)(n > 0 ? n : 1)));
  return 1;
}

/* The worker's Lua subscribers of a topic (hub->pubsub_local): the dispatcher
 * edgews._pubsub(topic, epoch_hex, offset, time, data, is_json) in a task. */
void ews_api_pubsub_local(ews_hub_t *h, const ews_pubsub_event_t *e) {
  ews_vm_t *w = h->up;
  ews_task_t *task = w->L ? ews_task_get(w) : NULL;
  if (!task) {
    EWS_ERROR("pubsub: dropped a Lua delivery of %.*s (no task)", (int)e->topic_len, e->topic);
    return;
  }
  char hex[17];
  ews_pubsub_epoch_hex(e->epoch, hex);
  lua_State *co = task->co;
  lua_rawgeti(co, LUA_REGISTRYINDEX, w->refs.pubsub);
  lua_pushlstring(co, e->topic, e->topic_len);
  lua_pushstring(co, hex);
  lua_pushnumber(co, (lua_Number)e->offset);
  lua_pushnumber(co, (lua_Number)e->time);
  lua_pushlstring(co, e->data, e->len);
  lua_pushboolean(co, e->json);
  ews_task_start(w, task, 6, NULL);
}

/* core.pubsub_persistent() -> true when topics are stored on disk */
static int l_persistent(lua_State *L) {
  ews_vm_t *w = lua_touserdata(L, lua_upvalueindex(1));
  lua_pushboolean(L, (w ? engine(w) : ews_engine_local.pubsub)->persistent());
  return 1;
}

void ews_api_pubsub_register(lua_State *L, void *w) {
  static const luaL_Reg fns[] = {{"pubsub_publish", l_publish},
                                 {"pubsub_subscribe", l_subscribe},
                                 {"pubsub_reset", l_reset},
                                 {"pubsub_retention", l_retention},
                                 {"pubsub_unsubscribe", l_unsubscribe},
                                 {"pubsub_lua", l_lua_subs},
                                 {"pubsub_local_count", l_local_count},
                                 {"pubsub_history", l_history},
                                 {"pubsub_owner", l_owner},
                                 {"pubsub_persistent", l_persistent},
                                 {NULL, NULL}};
  ews_api_add(L, w, fns);
}
