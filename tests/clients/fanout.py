#!/usr/bin/python3
"""Fan-out check: opens --count connections (permessage-deflate negotiated by
websockets' default client), lets connection 0 send --send, and reports what every
connection received within --listen seconds, plus the compression extension each
one negotiated. One JSON line.

usage: fanout.py --url U --count N --send MSG [--expect K] [--listen SECS]
"""
import argparse
import asyncio
import json

import websockets


async def collect(ws, expect, listen):
    got = []
    try:
        while len(got) < expect:
            got.append(await asyncio.wait_for(ws.recv(), listen))
    except (asyncio.TimeoutError, websockets.ConnectionClosed):
        pass
    return got


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--count", type=int, default=10)
    ap.add_argument("--send", required=True)
    ap.add_argument("--expect", type=int, default=1)
    ap.add_argument("--listen", type=float, default=2.0)
    a = ap.parse_args()
    conns = [await websockets.connect(a.url, max_size=None) for _ in range(a.count)]
    await conns[0].send(a.send)
    results = await asyncio.gather(*(collect(ws, a.expect, a.listen) for ws in conns))
    out = {"received": results,
           "extensions": [ws.response_headers.get("Sec-WebSocket-Extensions") for ws in conns]}
    for ws in conns:
        await ws.close()
    print(json.dumps(out), flush=True)


asyncio.run(main())
