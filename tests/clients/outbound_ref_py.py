#!/usr/bin/env python3
"""Reference servers for the outbound client's conformance spec
(spec/integration/outbound_client_spec.lua): Python `websockets` (Debian's) and a raw
asyncio server for what websockets never does (show the masks, send bad handshakes).

  outbound_ref_py.py [--tls CERT KEY] [--ping-interval SECS]
prints "listening ws PORT" (websockets) and "listening raw PORT" (raw) on stdout.

websockets paths (subprotocols chat.v1, chat.v2; permessage-deflate when offered):
  /echo       echoes every message (text stays text); the text "__info__" is answered
              with JSON {subprotocol, extensions, headers}
  /fragments  sends one text message in 4 fragments, then echoes
  /close      closes with ?code=N&reason=R
  /big        sends ?size=N bytes of text, then echoes
raw paths:
  /mask       reads 20 frames, answers JSON {frames, masked, distinct, payload_ok}
  /badutf8    sends a text frame with invalid UTF-8, then waits for the close
  /badaccept  answers 101 with a wrong Sec-WebSocket-Accept
  /proto      answers 101 selecting a subprotocol that was not offered
  /silent     never answers
  /404        answers 404 Not Found
  /deaf       (like every raw path) never answers a ping
"""
import argparse
import asyncio
import base64
import hashlib
import json
import ssl
import struct
import sys
from urllib.parse import parse_qs, urlparse

import websockets

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


async def handler(ws, path):
    u = urlparse(path)
    q = parse_qs(u.query)
    if u.path == "/fragments":
        await ws.send(["frag-", "ment", "ed-", "message"])
    elif u.path == "/close":
        await ws.close(int(q.get("code", ["1000"])[0]), q.get("reason", [""])[0])
        return
    elif u.path == "/big":
        await ws.send("x" * int(q.get("size", ["1000"])[0]))
    try:
        async for m in ws:
            if m == "__info__":
                await ws.send(json.dumps({
                    "subprotocol": ws.subprotocol,
                    "extensions": [e.name for e in ws.extensions],
                    "headers": {k.lower(): v for k, v in ws.request_headers.raw_items()},
                }))
            else:
                await ws.send(m)
    except websockets.ConnectionClosed:
        pass
    print("closed %s %s %s" % (u.path, ws.close_code, ws.close_reason), flush=True)


async def read_frame(r):
    b0, b1 = await r.readexactly(2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", await r.readexactly(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", await r.readexactly(8))[0]
    key = await r.readexactly(4) if b1 & 0x80 else None
    data = bytearray(await r.readexactly(n))
    if key:
        for i in range(n):
            data[i] ^= key[i % 4]
    return b0 & 0x0F, key, bytes(data)


def frame(op, payload):
    n = len(payload)
    h = bytes([0x80 | op])
    if n < 126:
        h += bytes([n])
    elif n < 65536:
        h += bytes([126]) + struct.pack("!H", n)
    else:
        h += bytes([127]) + struct.pack("!Q", n)
    return h + payload


async def raw(r, w):
    try:
        head = await r.readuntil(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        path = lines[0].split(" ")[1]
        hdr = {}
        for ln in lines[1:]:
            if ":" in ln:
                k, v = ln.split(":", 1)
                hdr[k.strip().lower()] = v.strip()
        if path == "/404":
            w.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            await w.drain()
            return
        if path == "/silent":
            await asyncio.sleep(30)
            return
        acc = base64.b64encode(hashlib.sha1((hdr.get("sec-websocket-key", "") + GUID).encode()).digest()).decode()
        extra = ""
        if path == "/badaccept":
            acc = base64.b64encode(b"0" * 20).decode()
        if path == "/proto":
            extra = "Sec-WebSocket-Protocol: never.offered\r\n"
        w.write(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Accept: %s\r\n%s\r\n" % (acc, extra)).encode())
        await w.drain()
        if path == "/mask":
            keys, masked, ok = [], 0, True
            for _ in range(20):
                op, key, data = await read_frame(r)
                if key:
                    masked += 1
                    keys.append(key)
                ok = ok and data == b"same payload"
            w.write(frame(1, json.dumps({"frames": 20, "masked": masked,
                                         "distinct": len(set(keys)), "payload_ok": ok}).encode()))
            await w.drain()
        elif path == "/badutf8":
            w.write(frame(1, b"ok \xff\xfe bad"))
            await w.drain()
        while True:  # until the client's close (answered) or EOF; pings unanswered
            op, key, data = await read_frame(r)
            if op == 9:
                print("raw ping %s" % path, flush=True)
            if op == 8:
                code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else 1005
                print("raw closed %s %s masked=%s" % (path, code, key is not None), flush=True)
                w.write(frame(8, data[:2]))
                await w.drain()
                break
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        w.close()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tls", nargs=2)
    ap.add_argument("--ping-interval", type=float, default=None)
    a = ap.parse_args()
    ctx = None
    if a.tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(a.tls[0], a.tls[1])
    server = await websockets.serve(handler, "127.0.0.1", 0, subprotocols=["chat.v1", "chat.v2"],
                                    ssl=ctx, ping_interval=a.ping_interval, max_size=8 << 20)
    rs = await asyncio.start_server(raw, "127.0.0.1", 0)
    print("listening ws %d" % server.sockets[0].getsockname()[1], flush=True)
    print("listening raw %d" % rs.sockets[0].getsockname()[1], flush=True)
    await asyncio.Future()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
