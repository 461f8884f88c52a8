/* floor_echo.c — the least a WebSocket echo server can do per message on this kernel,
 * to measure the kernel's share of a large-message echo (bench/PROFILE.md "Large
 * messages, 2026-12-04") and the least a Lua handler adds to it ("The 16 KiB echo
 * against its floors"). Not a server: one thread, epoll, a fixed 128 KiB buffer per
 * connection, the upgrade answered without checks; per message one read, the payload
 * unmasked in place (ews_mask, as edgews-lua does), one sendmsg of header + payload; no
 * allocation, no limits. With --lua each message is instead handed to a LuaJIT
 * function as a string, `function(c, msg) send(c, msg) end`, whose `send` (C) does
 * the sendmsg from the string: one bare VM (only the standard libraries), one
 * lua_pushlstring and one lua_pcall per message, LuaJIT's GC at its defaults: the
 * least any server that runs a Lua handler per message can do. --lua=KB first fills
 * the VM with about KB KiB of live data (small tables, strings, closures: what a
 * framework's modules hold) and paces the collector as edgews-lua does: what a Lua
 * heap of that size costs per message. Drive it with
 * edgews-bench like edgews-lua:
 *   taskset -c 0 build/edgews-floor-echo [--lua[=KB]] 9100 &
 *   taskset -c 1 build/edgews-bench echo -c 100 -d 1 -s 16384 --binary \
 *     --url ws://127.0.0.1:9100/echo --server-pid $!
 * Listens on 127.0.0.1:PORT; runs until killed. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* strcasestr, accept4 */
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <mbedtls/base64.h>
#include <mbedtls/sha1.h>

#include "proto/frame.h"

typedef struct {
  int fd, open;
  size_t len;
  uint8_t buf[1 << 17];
} conn_t;

static lua_State *g_L; /* --lua: the VM; the handler at stack index 1 */

/* One message back: header + payload in one sendmsg. -1 when it could not be
 * written whole (no queue: the generator keeps one message in flight). */
static int send_frame(conn_t *c, uint8_t op, const uint8_t *pay, size_t pl) {
  uint8_t h[10];
  size_t ohl;
  h[0] = op;
  if (pl < 126) {
    h[1] = (uint8_t)pl;
    ohl = 2;
  } else if (pl < 65536) {
    h[1] = 126;
    h[2] = (uint8_t)(pl >> 8);
    h[3] = (uint8_t)pl;
    ohl = 4;
  } else {
    h[1] = 127;
    for (int i = 0; i < 8; i++) h[2 + i] = (uint8_t)((uint64_t)pl >> (56 - 8 * i));
    ohl = 10;
  }
  struct iovec iov[2] = {{h, ohl}, {(void *)pay, pl}};
  struct msghdr m;
  memset(&m, 0, sizeof m);
  m.msg_iov = iov;
  m.msg_iovlen = 2;
  return sendmsg(c->fd, &m, MSG_NOSIGNAL) == (ssize_t)(ohl + pl) ? 0 : -1;
}

/* send(c, msg) from the Lua handler: a binary frame of the string's bytes. */
static int lua_send(lua_State *L) {
  conn_t *c = lua_touserdata(L, 1);
  size_t len;
  const char *s = luaL_checklstring(L, 2, &len);
  if (send_frame(c, 0x82, (const uint8_t *)s, len) < 0) c->open = -1;
  return 0;
}

/* heap_kb > 0: the VM first gets about that much live data in small tables, strings
 * and closures (as a framework's modules are), and collects once its heap has grown by
 * max(live data, 4 MiB), as edgews-lua's VMs do (core/lua/gc_pace.h). */
static void lua_setup(int heap_kb) {
  static const char handler[] = "local send = ...\n"
                                "return function(c, msg) send(c, msg) end\n";
  static const char heap[] =
      "local kb = ...\n"
      "live = {}\n"
      "local i = 0\n"
      "while collectgarbage('count') < kb do\n"
      "  i = i + 1\n"
      "  local name = 'field_' .. i\n"
      "  live[i] = { name = name, n = i, f = function() return name end, [name] = true }\n"
      "end\n"
      "collectgarbage()\n"
      "local k = collectgarbage('count')\n"
      "collectgarbage('setpause', math.max(200, math.floor(100 * (k + 4096) / k)))\n";
  g_L = luaL_newstate();
  if (!g_L) exit(1);
  luaL_openlibs(g_L);
  if (heap_kb > 0) {
    if (luaL_loadbuffer(g_L, heap, sizeof heap - 1, "=heap") != 0) exit(1);
    lua_pushinteger(g_L, heap_kb);
    if (lua_pcall(g_L, 1, 0, 0) != 0) exit(1);
  }
  if (luaL_loadbuffer(g_L, handler, sizeof handler - 1, "=handler") != 0) exit(1);
  lua_pushcfunction(g_L, lua_send);
  if (lua_pcall(g_L, 1, 1, 0) != 0) exit(1);
}

/* 0 when the head is not complete yet, 1 when answered, -1 to close. */
static int upgrade(conn_t *c) {
  c->buf[c->len] = 0;
  char *end = strstr((char *)c->buf, "\r\n\r\n");
  if (!end) return c->len < sizeof c->buf - 1 ? 0 : -1;
  char *k = strcasestr((char *)c->buf, "Sec-WebSocket-Key:");
  if (!k) return -1;
  k += 18;
  while (*k == ' ') k++;
  char key[128];
  int klen = (int)(strcspn(k, "\r\n") % 64);
  snprintf(key, sizeof key, "%.*s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", klen, k);
  uint8_t digest[20], b64[40];
  size_t blen;
  if (mbedtls_sha1_ret((const uint8_t *)key, strlen(key), digest) != 0 ||
      mbedtls_base64_encode(b64, sizeof b64, &blen, digest, 20) != 0)
    return -1;
  char resp[200];
  int rl = snprintf(resp, sizeof resp,
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    "Connection: Upgrade\r\nSec-WebSocket-Accept: %.*s\r\n\r\n",
                    (int)blen, b64);
  if (write(c->fd, resp, (size_t)rl) != rl) return -1;
  size_t used = (size_t)(end + 4 - (char *)c->buf);
  memmove(c->buf, c->buf + used, c->len - used);
  c->len -= used;
  c->open = 1;
  return 1;
}

/* Echoes every complete frame in the buffer; keeps a partial one. -1 to close. */
static int frames(conn_t *c) {
  size_t off = 0;
  for (;;) {
    uint8_t *p = c->buf + off;
    size_t n = c->len - off, pl = p[1] & 127, hl = 2;
    if (n < 2) break;
    if (pl == 126) {
      if (n < 4) break;
      pl = (size_t)p[2] << 8 | p[3];
      hl = 4;
    } else if (pl == 127) {
      if (n < 10) break;
      pl = 0;
      for (int i = 0; i < 8; i++) pl = pl << 8 | p[2 + i];
      hl = 10;
    }
    if (hl + 4 + pl > sizeof c->buf - 1) return -1;
    if (n < hl + 4 + pl) break;
    if ((p[0] & 0x0F) == 8) return -1; /* close */
    uint8_t *pay = p + hl + 4;
    ews_mask(pay, pl, p + hl, 0);
    if (g_L) {
      lua_pushvalue(g_L, 1);
      lua_pushlightuserdata(g_L, c);
      lua_pushlstring(g_L, (const char *)pay, pl);
      if (lua_pcall(g_L, 2, 0, 0) != 0 || c->open < 0) return -1;
    } else if (send_frame(c, p[0], pay, pl) < 0) {
      return -1;
    }
    off += hl + 4 + pl;
  }
  memmove(c->buf, c->buf + off, c->len - off);
  c->len -= off;
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 3 && strncmp(argv[1], "--lua", 5) == 0) {
    lua_setup(argv[1][5] == '=' ? atoi(argv[1] + 6) : 0);
    argv++;
    argc--;
  }
  if (argc != 2) {
    fprintf(stderr, "usage: %s [--lua[=HEAP_KB]] PORT\n", argv[0]);
    return 2;
  }
  int one = 1, ls = socket(AF_INET, SOCK_STREAM, 0);
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)atoi(argv[1]));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof a) != 0 || listen(ls, 1024) != 0) {
    perror("listen");
    return 1;
  }
  int ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
  epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
  printf("listening on 127.0.0.1:%s\n", argv[1]);
  fflush(stdout);
  struct epoll_event evs[256];
  for (;;) {
    int n = epoll_wait(ep, evs, 256, -1);
    for (int i = 0; i < n; i++) {
      conn_t *c = evs[i].data.ptr;
      if (!c) {
        int fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK);
        if (fd < 0) continue;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (!(c = calloc(1, sizeof *c))) {
          close(fd);
          continue;
        }
        c->fd = fd;
        struct epoll_event e = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
        continue;
      }
      ssize_t r = read(c->fd, c->buf + c->len, sizeof c->buf - 1 - c->len);
      if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      int rc = r <= 0 ? -1 : 0;
      if (rc == 0) {
        c->len += (size_t)r;
        if (!c->open) rc = upgrade(c) < 0 ? -1 : 0;
        if (rc == 0 && c->open) rc = frames(c);
      }
      if (rc < 0) {
        close(c->fd); /* also leaves the epoll set */
        free(c);
      }
    }
  }
}
