/* api_docs.c — the document-log functions of `edgews.core` over the store
 * (hub/store.h): doc_append waits in the calling task until the writer has
 * committed (fsynced) the operation; doc_load reads the worker's snapshot of the
 * database. In a cluster, rdoc_commit / rdoc_read / rdoc_resync reach the engine's
 * document store instead (hub/engine.h: ews_docs_engine_t, Redis). The documents
 * themselves (revisions, OT, sessions) are lua/edgews/docs.lua; this file only
 * moves bytes to and from SQLite and Redis. */
#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>

#include "err.h"
#include "hub/engine.h"
#include "hub/store.h"
#include "lua/api.h"
#include "lua/tasks.h"

static ews_vm_t *worker_of(lua_State *L) {
  ews_vm_t *w = lua_touserdata(L, lua_upvalueindex(1));
  if (!w) luaL_error(L, "documents need a worker (not available while reading the configuration)");
  return w;
}

static void on_done(ews_store_req_t *req, void *ud) {
  ews_task_t *task = ud;
  lua_State *co = task->co;
  if (req->status < 0) {
    lua_pushnil(co);
    lua_pushinteger(co, req->status);
  } else {
    lua_pushboolean(co, 1);
    lua_pushnil(co);
  }
  ews_task_resume(task->w, task, 2);
}

/* core.doc_append(name, rev, client, seq, op, snapshot|nil, keep) -> true | nil, code.
 * Only inside a task: it waits for the commit. */
static int l_append(lua_State *L) {
  ews_vm_t *w = worker_of(L);
  size_t nl, cl, ol, sl = 0;
  const char *name = luaL_checklstring(L, 1, &nl);
  int64_t rev = (int64_t)luaL_checknumber(L, 2);
  const char *client = luaL_checklstring(L, 3, &cl);
  int64_t seq = (int64_t)luaL_checknumber(L, 4);
  const char *op = luaL_checklstring(L, 5, &ol);
  const char *snap = lua_isnoneornil(L, 6) ? NULL : luaL_checklstring(L, 6, &sl);
  int64_t keep = (int64_t)luaL_checknumber(L, 7);
  if (!w->hub->store) return ews_api_result(L, EWS_ENOSTORE);
  ews_task_t *task = ews_task_current(w, L);
  if (!task) return luaL_error(L, "a document commit can only wait inside a handler");
  ews_store_req_t *req;
  int r = ews_store_req_doc_append(&req, name, nl, rev, client, cl, seq, op, ol, snap, sl, keep);
  if (r < 0) return ews_api_result(L, r);
  r = ews_store_submit(w->hub->store, req, on_done, task);
  if (r < 0) return ews_api_result(L, r);
  task->waiting = 1;
  return lua_yield(L, 0);
}

/* core.doc_load(name, history) -> false (no such document)
 *   | { rev, snapshot_rev, snapshot, ops = { { rev, seq, client, op }, ... } }
 *   | nil, code */
static int l_load(lua_State *L) {
  ews_vm_t *w = worker_of(L);
  size_t nl;
  const char *name = luaL_checklstring(L, 1, &nl);
  int64_t history = (int64_t)luaL_checknumber(L, 2);
  if (!w->hub->store) return ews_api_result(L, EWS_ENOSTORE);
  ews_store_doc_t d;
  int r = ews_store_doc_load(w->hub->store, name, nl, history, &d);
  if (r < 0) return ews_api_result(L, r);
  if (!d.exists) {
    lua_pushboolean(L, 0);
    return 1;
  }
  lua_createtable(L, 0, 4);
  lua_pushnumber(L, (lua_Number)d.rev);
  lua_setfield(L, -2, "rev");
  lua_pushnumber(L, (lua_Number)d.snapshot_rev);
  lua_setfield(L, -2, "snapshot_rev");
  lua_pushlstring(L, d.snapshot, d.snapshot_len);
  lua_setfield(L, -2, "snapshot");
  lua_createtable(L, (int)d.n, 0);
  for (size_t i = 0; i < d.n; i++) {
    const ews_store_doc_op_t *o = &d.ops[i];
    lua_createtable(L, 4, 0);
    lua_pushnumber(L, (lua_Number)o->rev);
    lua_rawseti(L, -2, 1);
    lua_pushnumber(L, (lua_Number)o->seq);
    lua_rawseti(L, -2, 2);
    lua_pushlstring(L, o->client, o->client_len);
    lua_rawseti(L, -2, 3);
    lua_pushlstring(L, o->op, o->len);
    lua_rawseti(L, -2, 4);
    lua_rawseti(L, -2, (int)i + 1);
  }
  lua_setfield(L, -2, "ops");
  ews_store_doc_free(&d);
  return 1;
}

static const ews_docs_engine_t *docs_engine(lua_State *L) {
  ews_vm_t *w = lua_touserdata(L, lua_upvalueindex(1));
  return w ? w->hub->engine->docs : NULL;
}

/* Argument i of an rdoc_* call, a number, written as an integer into buf (24 bytes):
 * its length. Raises when the argument is not a number. */
static size_t num_arg(lua_State *L, int i, char *buf) {
  return (size_t)snprintf(buf, 24, "%.0f", (double)luaL_checknumber(L, i));
}

/* The call every rdoc_* function ends with, once its arguments are checked: nil,
 * EWS_EINVAL without a docs engine; else op on the engine, its reply pushed as an
 * array of strings (or nil, code). */
static int rdoc_call(lua_State *L, const ews_docs_engine_t *e, const char *name, size_t nl, int op,
                     int argc, const char *const *argv, const size_t *lens) {
  if (!e) return ews_api_result(L, EWS_EINVAL);
  ews_docs_reply_t rep;
  int r = e->call(name, nl, op, argc, argv, lens, &rep);
  if (r < 0) return ews_api_result(L, r);
  lua_createtable(L, (int)rep.n, 0);
  for (size_t i = 0; i < rep.n; i++) {
    lua_pushlstring(L, rep.s[i], rep.len[i]);
    lua_rawseti(L, -2, (int)i + 1);
  }
  e->reply_free(&rep);
  return 1;
}

/* The (name, blob) arguments of rdoc_publish and rdoc_hold (raises when either is
 * not a string), and the docs engine (NULL outside a cluster). */
static const ews_docs_engine_t *name_blob(lua_State *L, const char **name, size_t *nl,
                                          const char **p, size_t *n) {
  *name = luaL_checklstring(L, 1, nl);
  *p = luaL_checklstring(L, 2, n);
  return docs_engine(L);
}

/* core.rdoc_commit(name, expected, entry, message, key, seq, snapshot|nil, history,
 * token, claim) -> { status, ... } | nil, code (hub/engine_redis_docs.c: the commit
 * script). */
static int l_rcommit(lua_State *L) {
  const ews_docs_engine_t *e = docs_engine(L);
  size_t nl;
  const char *name = luaL_checklstring(L, 1, &nl);
  const char *argv[11];
  size_t lens[11];
  char exp[24], seq[24], hist[24];
  lens[0] = num_arg(L, 2, exp);
  argv[0] = exp;
  argv[1] = luaL_checklstring(L, 3, &lens[1]);
  argv[2] = luaL_checklstring(L, 4, &lens[2]);
  argv[3] = luaL_checklstring(L, 5, &lens[3]);
  lens[4] = num_arg(L, 6, seq);
  argv[4] = seq;
  int snap = !lua_isnoneornil(L, 7);
  argv[5] = snap ? "1" : "0", lens[5] = 1;
  if (snap) argv[6] = luaL_checklstring(L, 7, &lens[6]);
  else argv[6] = "", lens[6] = 0;
  lens[7] = num_arg(L, 8, hist);
  argv[7] = hist;
  argv[9] = luaL_checklstring(L, 9, &lens[9]);
  argv[10] = lua_toboolean(L, 10) ? "1" : "0", lens[10] = 1;
  if (nl > 500) return ews_api_result(L, EWS_EINVAL);
  char ch[512];
  lens[8] = (size_t)snprintf(ch, sizeof ch, "ews:d:%.*s", (int)nl, name);
  argv[8] = ch;
  return rdoc_call(L, e, name, nl, EWS_DOCS_COMMIT, 11, argv, lens);
}

/* core.rdoc_release(name, token) -> { "ok" } | nil, code: gives the document's turn
 * back (a commit that holds it and ends without committing). */
static int l_rrelease(lua_State *L) {
  size_t nl, lens[1];
  const char *name = luaL_checklstring(L, 1, &nl);
  const char *argv[1] = {luaL_checklstring(L, 2, &lens[0])};
  return rdoc_call(L, docs_engine(L), name, nl, EWS_DOCS_RELEASE, 1, argv, lens);
}

/* core.rdoc_read(name, since) -> { rev, first, srev, snap, entries... } | nil, code
 * (since -1: the whole document, with its snapshot). */
static int l_rread(lua_State *L) {
  size_t nl;
  const char *name = luaL_checklstring(L, 1, &nl);
  char since[24];
  const char *argv[1] = {since};
  size_t lens[1] = {num_arg(L, 2, since)};
  return rdoc_call(L, docs_engine(L), name, nl, EWS_DOCS_READ, 1, argv, lens);
}

/* core.rdoc_resync(blob): the bus message every worker gets when a shard's
 * subscription is made again. core.rdoc() -> true when documents are the engine's
 * (nothing while there is no worker: the configuration is being read). */
static int l_rresync(lua_State *L) {
  const ews_docs_engine_t *e = docs_engine(L);
  size_t n;
  const char *p = luaL_checklstring(L, 1, &n);
  if (e) e->set_resync(p, n);
  return 0;
}

/* core.rdoc_publish(name, blob) -> true | nil, code: a bus message for the
 * document's owner on every instance. */
static int l_rpublish(lua_State *L) {
  size_t nl, n;
  const char *name, *p;
  const ews_docs_engine_t *e = name_blob(L, &name, &nl, &p, &n);
  if (!e) return ews_api_result(L, EWS_EINVAL);
  return ews_api_result(L, e->publish(name, nl, p, n));
}

/* core.rdoc_hold(name, blob) -> handle | nil, code: this instance receives the
 * document's revisions and cursors (its Redis subscription) until rdoc_unhold(handle);
 * blob is posted to the document's owner once the subscription takes effect. */
static int l_rhold(lua_State *L) {
  size_t nl, n;
  const char *name, *p;
  const ews_docs_engine_t *e = name_blob(L, &name, &nl, &p, &n);
  if (!e) return ews_api_result(L, EWS_EINVAL);
  void *h = e->hold(name, nl, p, n);
  if (!h) return ews_api_result(L, nl > 500 ? EWS_EINVAL : EWS_ENOMEM);
  lua_pushlightuserdata(L, h);
  return 1;
}

/* core.rdoc_unhold(handle): once per handle. */
static int l_runhold(lua_State *L) {
  const ews_docs_engine_t *e = docs_engine(L);
  luaL_checktype(L, 1, LUA_TLIGHTUSERDATA);
  if (e) e->release(lua_touserdata(L, 1));
  return 0;
}

static int l_rdoc(lua_State *L) {
  if (!lua_touserdata(L, lua_upvalueindex(1))) return 0; /* no worker: not known yet */
  lua_pushboolean(L, docs_engine(L) != NULL);
  return 1;
}

void ews_api_docs_register(lua_State *L, void *w) {
  static const luaL_Reg fns[] = {{"doc_append", l_append},  {"doc_load", l_load},
                                 {"rdoc_commit", l_rcommit}, {"rdoc_read", l_rread},
                                 {"rdoc_resync", l_rresync}, {"rdoc_publish", l_rpublish},
                                 {"rdoc_release", l_rrelease},
                                 {"rdoc_hold", l_rhold},     {"rdoc_unhold", l_runhold},
                                 {"rdoc", l_rdoc},
                                 {NULL, NULL}};
  ews_api_add(L, w, fns);
}
