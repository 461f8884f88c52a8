#!/usr/bin/env python3
"""Echo through an app whose shared compressor may run on libdeflate
(spec/apps/deflate_engine_app.lua) with Debian's python3-websockets (10.x), which
offers permessage-deflate by default. The same messages as deflate_engine.js (text
with multi-byte UTF-8, pseudo-random binary; 0 B to 200 KB), all sent first, then
each echo compared byte for byte on one connection. The extension's decode is
wrapped to look at each compressed payload as it came off the wire: "final" counts
the payloads that hold a whole DEFLATE stream (a final block) followed by exactly
the byte 00 (the empty non-final stored block whose 00 00 FF FF was removed), the
libdeflate engine's shape; zlib's sync-flushed payloads hold no final block.
Prints one JSON line: {url: {extensions, messages, identical, compressed, final}}.

usage: deflate_engine.py URL...
"""
import asyncio
import json
import sys
import zlib

import websockets

SIZES = [0, 1, 100, 5000, 65536, 70000, 200000]


def messages():
    out = []
    for n in SIZES:
        unit = "é€𝄞 compressible text "
        out.append((unit * (n // len(unit) + 2))[:n])
        x, b = 2463534242 + n, bytearray(n)
        for i in range(n):
            x ^= (x << 13) & 0xFFFFFFFF
            x ^= x >> 17
            x ^= (x << 5) & 0xFFFFFFFF
            b[i] = x & 255
        out.append(bytes(b))
    return out


def shape(data):
    """1 when data is one whole DEFLATE stream followed by exactly b'\\x00'."""
    d = zlib.decompressobj(-15)
    try:
        d.decompress(data)
    except zlib.error:
        return 0
    return 1 if d.eof and d.unused_data == b"\x00" else 0


async def echo(url):
    sent = messages()
    stats = {"compressed": 0, "final": 0}
    async with websockets.connect(url, max_size=None, compression="deflate") as ws:
        ext = ws.extensions[0] if ws.extensions else None
        if ext is not None:
            decode = ext.decode

            def watched(frame, *, max_size=None):
                if frame.rsv1:
                    stats["compressed"] += 1
                    stats["final"] += shape(frame.data)
                return decode(frame, max_size=max_size)

            ext.decode = watched
        for m in sent:
            await ws.send(m)
        got = []
        try:
            for _ in sent:
                got.append(await asyncio.wait_for(ws.recv(), 15))
        except (asyncio.TimeoutError, websockets.ConnectionClosed) as e:
            stats["error"] = repr(e)
        hdr = ws.response_headers.get("Sec-WebSocket-Extensions")
    return dict(stats, extensions=hdr, messages=len(got), identical=got == sent)


async def main():
    out = {}
    for url in sys.argv[1:]:
        out[url] = await echo(url)
    print(json.dumps(out), flush=True)


asyncio.run(main())
