#!/usr/bin/env python3
"""memory_flood.py - many connections each start a large fragmented binary message
and never finish it, while a bystander connection keeps echoing small messages.

Each of --conns connections completes the handshake, then sends a binary frame with
FIN=0 and continuation frames of --chunk bytes until --size bytes are sent or the
server closes it; then it stops sending and holds the connection open (it never sends
the final frame). Frames are masked with the all-zero key (valid on the wire; the
payload then needs no XOR, so the client is cheap). A bystander sends a small text
message every 50 ms and waits for its echo until every flooding connection is done
(closed or finished sending), then a few more.

Prints one JSON line: {"conns", "closed": {code: count}, "completed" (connections that
sent all --size bytes), "bytes_sent", "bystander": {"sent", "echoed", "max_rtt"},
"elapsed"} and exits 0 unless the bystander lost an echo.

usage: memory_flood.py --url ws://HOST:PORT/PATH [--conns 1000] [--size 15000000]
       [--chunk 65536] [--parallel 200] [--timeout 120]
"""
import argparse
import asyncio
import base64
import json
import os
import resource
import struct
import sys
import time
from urllib.parse import urlparse


def frame(opcode, payload, fin):
    n = len(payload)
    b0 = (0x80 if fin else 0) | opcode
    if n < 126:
        head = struct.pack("!BB", b0, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", b0, 0x80 | 127, n)
    return head + b"\0\0\0\0" + payload  # zero mask: payload unchanged


async def handshake(host, port, path):
    reader, writer = await asyncio.open_connection(host, port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(("GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
                  % (path, host, port, key)).encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
    if b" 101 " not in head.split(b"\r\n")[0]:
        raise RuntimeError("no 101: %r" % head[:100])
    return reader, writer


async def read_frame(reader):
    b0, b1 = await reader.readexactly(2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", await reader.readexactly(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", await reader.readexactly(8))[0]
    return b0 & 0x0F, await reader.readexactly(n)


async def flooder(a, host, port, path, stats, sem):
    async with sem:
        reader, writer = await handshake(host, port, path)
    closed = asyncio.Event()
    code = [None]

    async def watch():
        try:
            while True:
                op, payload = await read_frame(reader)
                if op == 8:
                    code[0] = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                    break
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            code[0] = code[0] or "eof"
        closed.set()

    w = asyncio.ensure_future(watch())
    chunk = bytes(a.chunk)
    first = frame(0x2, chunk, False)
    cont = frame(0x0, chunk, False)
    sent = 0
    try:
        while sent < a.size and not closed.is_set():
            writer.write(first if sent == 0 else cont)
            sent += len(chunk)
            await writer.drain()
            await asyncio.sleep(0)  # let the watcher see a close before the next chunk
    except (ConnectionError, OSError):
        pass
    stats["bytes_sent"] += sent
    if sent >= a.size and not closed.is_set():
        stats["completed"] += 1
    stats["done"] += 1
    return closed, code, w, writer


async def bystander(host, port, path, stats, flood_done):
    reader, writer = await handshake(host, port, path)
    k, after = 0, 0
    while after < 10:
        msg = b"by%d" % k
        k += 1
        t = time.monotonic()
        writer.write(frame(0x1, msg, True))
        stats["sent"] += 1
        while True:
            op, payload = await asyncio.wait_for(read_frame(reader), 30)
            if op == 1 and payload == msg:
                break
        stats["echoed"] += 1
        stats["max_rtt"] = max(stats["max_rtt"], round(time.monotonic() - t, 3))
        if flood_done.is_set():
            after += 1
        await asyncio.sleep(0.05)
    writer.close()


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--conns", type=int, default=1000)
    p.add_argument("--size", type=int, default=15000000)
    p.add_argument("--chunk", type=int, default=65536)
    p.add_argument("--parallel", type=int, default=200, help="handshakes at once")
    p.add_argument("--timeout", type=float, default=120)
    a = p.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < a.conns + 64 and (hard == resource.RLIM_INFINITY or hard > soft):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY
                                                    else a.conns + 1024, hard))
    u = urlparse(a.url)
    host, port, path = u.hostname, u.port, u.path or "/"
    stats = {"bytes_sent": 0, "completed": 0, "done": 0}
    by = {"sent": 0, "echoed": 0, "max_rtt": 0.0}
    t0 = time.monotonic()
    flood_done = asyncio.Event()
    by_task = asyncio.ensure_future(bystander(host, port, path, by, flood_done))
    sem = asyncio.Semaphore(a.parallel)
    results = await asyncio.wait_for(
        asyncio.gather(*(flooder(a, host, port, path, stats, sem) for _ in range(a.conns))),
        a.timeout)
    # let the server answer what it received last (closes of connections that stalled)
    await asyncio.sleep(0.5)
    flood_done.set()
    err = None
    try:
        await asyncio.wait_for(by_task, 60)
    except Exception as e:  # noqa: BLE001 - reported, not raised
        err = "%s: %s" % (e.__class__.__name__, e)
    closed = {}
    for ev, code, w, writer in results:
        key = str(code[0]) if ev.is_set() else "open"
        closed[key] = closed.get(key, 0) + 1
        w.cancel()
        writer.close()
    out = {"conns": a.conns, "closed": closed, "completed": stats["completed"],
           "bytes_sent": stats["bytes_sent"], "bystander": by,
           "elapsed": round(time.monotonic() - t0, 3)}
    if err:
        out["bystander_error"] = err
    print(json.dumps(out))
    return 0 if not err and by["echoed"] == by["sent"] else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
