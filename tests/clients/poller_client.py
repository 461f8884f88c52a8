#!/usr/bin/python3
"""poller_client.py - drives spec/apps/poller_app.lua for spec/integration/poller_spec.lua
(the loop's inner epoll of connection sockets, core/net/poller.c). Standard library only.

  many  --url ws://.../poll --n N --size S
        Opens N connections; the first asks the server to keep its loop busy ("hold"),
        and while it is, every other one sends one S-byte message of its own: they all
        become readable together and the server takes them from its poller in batches.
        Each echo must come back byte for byte on its own connection. Then every
        connection is dropped at once (no close frames).
  slow  --url ws[s]://.../poll --clients K [--ca FILE] [--rcvbuf B]
        K connections with a small receive window each ask for a burst (6 MiB, then
        three 1 MiB messages) and read it slowly: the server's writes meet a full
        socket, wait for EPOLLOUT and resume. Every message must arrive exact.

Prints one JSON line: {"ok": true, ...} or {"ok": false, "error": "..."}; exit status 0
or 1.
"""
import argparse
import asyncio
import base64
import json
import os
import socket
import ssl
import struct
import sys
import urllib.parse

from rawws import client_frame, upgrade_request


def body(i, size):
    unit = ("#%d:%d:" % (i, size)) + chr(97 + i % 26) * 53 + "\n"
    return (unit * (size // len(unit) + 1))[:size].encode()


class Conn:
    def __init__(self, reader, writer):
        self.r = reader
        self.w = writer

    def send(self, data, opcode=2):
        self.w.write(client_frame(opcode, data))

    async def recv(self, slow=False):
        """The next data message (opcode, payload); control frames are skipped."""
        while True:
            b0, b1 = await self.r.readexactly(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", await self.r.readexactly(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", await self.r.readexactly(8))[0]
            if b1 & 0x80:
                raise RuntimeError("masked frame from the server")
            if not b0 & 0x80:
                raise RuntimeError("fragmented frame from the server")
            if slow:
                parts, left = [], n
                while left:
                    piece = await self.r.readexactly(min(left, 32768))
                    parts.append(piece)
                    left -= len(piece)
                    await asyncio.sleep(0.001)  # a slow reader: the window stays small
                data = b"".join(parts)
            else:
                data = await self.r.readexactly(n)
            op = b0 & 0x0F
            if op == 0x8:
                raise RuntimeError("server closed: %r" % data[:64])
            if op in (0x1, 0x2):
                return op, data


async def connect(url, ca=None, rcvbuf=None):
    u = urllib.parse.urlsplit(url)
    host, port = u.hostname, u.port or (443 if u.scheme == "wss" else 80)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, port))
    ctx = None
    if u.scheme == "wss":
        ctx = ssl.create_default_context(cafile=ca)
    reader, writer = await asyncio.open_connection(
        sock=sock, ssl=ctx, server_hostname=host if ctx else None, limit=1 << 24)
    key = base64.b64encode(os.urandom(16)).decode()
    path = (u.path or "/") + ("?" + u.query if u.query else "")
    writer.write(upgrade_request(path, host, port, key))
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError("upgrade refused: %r" % head[:80])
    return Conn(reader, writer)


async def many(a):
    conns = []
    for start in range(0, a.n, 200):
        conns += await asyncio.gather(*(connect(a.url) for _ in range(start, min(a.n, start + 200))))
    first, rest = conns[0], conns[1:]
    first.send(b"hold 0.5", 1)
    await first.w.drain()
    await asyncio.sleep(0.05)  # not a synchronisation: only makes the batch likelier
    payloads = []
    for i, c in enumerate(rest):
        p = (b"%08d:" % i) + bytes((i + k) % 251 for k in range(a.size - 9))
        payloads.append(p)
        c.send(p)
    for c in rest:
        await c.w.drain()

    async def check(i, c):
        op, data = await c.recv()
        if op != 2 or data != payloads[i]:
            raise RuntimeError("connection %d: echo differs (%d bytes, opcode %d)" % (i, len(data), op))

    await asyncio.wait_for(asyncio.gather(*(check(i, c) for i, c in enumerate(rest))), 60)
    op, data = await asyncio.wait_for(first.recv(), 30)
    if data != b"held":
        raise RuntimeError("hold answered %r" % data)
    for c in conns:
        c.w.transport.abort()
    return {"echoed": len(rest)}


async def slow(a):
    conns = await asyncio.gather(*(connect(a.url, a.ca, a.rcvbuf) for _ in range(a.clients)))
    for c in conns:
        c.send(b"burst 4", 1)
        await c.w.drain()
    sizes = [6 * 1048576, 1048576, 1048576, 1048576]

    async def check(k, c):
        for i, size in enumerate(sizes, 1):
            op, data = await c.recv(slow=True)
            if data != body(i, size):
                raise RuntimeError("client %d message %d: %d bytes, differs" % (k, i, len(data)))
        c.send(b"after", 1)  # the connection still works both ways
        op, data = await c.recv()
        if data != b"after":
            raise RuntimeError("client %d: echo after the burst differs" % k)
        c.w.close()

    await asyncio.wait_for(asyncio.gather(*(check(k, c) for k, c in enumerate(conns))), 120)
    return {"clients": len(conns), "bytes": len(conns) * sum(sizes)}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("cmd", choices=["many", "slow"])
    p.add_argument("--url", required=True)
    p.add_argument("--n", type=int, default=1100)
    p.add_argument("--size", type=int, default=300)
    p.add_argument("--clients", type=int, default=3)
    p.add_argument("--ca")
    p.add_argument("--rcvbuf", type=int, default=65536)
    a = p.parse_args()
    try:
        res = asyncio.run(many(a) if a.cmd == "many" else slow(a))
        res["ok"] = True
        print(json.dumps(res))
        return 0
    except Exception as e:  # noqa: BLE001 - reported to the spec
        print(json.dumps({"ok": False, "error": "%s: %s" % (type(e).__name__, e)}))
        return 1


if __name__ == "__main__":
    sys.exit(main())
