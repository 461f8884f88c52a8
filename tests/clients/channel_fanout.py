#!/usr/bin/python3
"""Channel fan-out check against spec/apps/channels_app.lua.

usage: channel_fanout.py --url U --subscribers N --messages K [--channel C] [--slow S]

Opens N subscribers (each sends "sub:C" and waits for the ack), asks one of them
which worker it is on (to report the spread), then a separate publisher sends K
messages "pub:C:<i>". With --slow S, S more subscribers subscribe and then stop
reading (raw TCP sockets that never read), to check they do not hold the others
back. Prints one JSON line: per-subscriber counts, whether every subscriber got
1..K in order, the workers seen, and the time from the first publish to the last
delivery.
"""
import argparse
import asyncio
import json
import time

import websockets


async def subscribe(url, ch):
    ws = await websockets.connect(url, max_size=None, compression=None, ping_interval=None)
    await ws.send("sub:" + ch)
    ack = await ws.recv()
    assert ack == "subscribed:" + ch, ack
    return ws


async def worker_of(ws):
    await ws.send("worker")
    return await ws.recv()


async def collect(ws, k, timeout):
    got = []
    try:
        while len(got) < k:
            got.append(await asyncio.wait_for(ws.recv(), timeout))
    except (asyncio.TimeoutError, websockets.ConnectionClosed):
        pass
    return got, time.monotonic()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--subscribers", type=int, default=100)
    ap.add_argument("--messages", type=int, default=10)
    ap.add_argument("--channel", default="fan")
    ap.add_argument("--slow", type=int, default=0)
    ap.add_argument("--size", type=int, default=0, help="pad each message to this size")
    a = ap.parse_args()
    subs = []
    for i in range(0, a.subscribers, 100):
        subs += await asyncio.gather(*(subscribe(a.url, a.channel)
                                       for _ in range(min(100, a.subscribers - i))))
    workers = set()
    for ws in subs[:20]:
        workers.add(await worker_of(ws))
    await subs[0].send("count:" + a.channel)
    count = await subs[0].recv()
    slow = []
    for _ in range(a.slow):
        ws = await subscribe(a.url, a.channel)
        ws.transport.pause_reading()  # stop reading: the server's queue for it fills
        slow.append(ws)
    pub = await websockets.connect(a.url, max_size=None, compression=None)
    pad = "x" * max(0, a.size)
    t0 = time.monotonic()
    tasks = [asyncio.ensure_future(collect(ws, a.messages, 10)) for ws in subs]
    for i in range(1, a.messages + 1):
        await pub.send("pub:%s:%d %s" % (a.channel, i, pad))
    results = await asyncio.gather(*tasks)
    expect = ["%d %s" % (i, pad) for i in range(1, a.messages + 1)]
    in_order = all(got == expect for got, _ in results)
    last = max(t for _, t in results)
    out = {"subscribers": len(subs), "workers": sorted(workers), "count": count,
           "complete": sum(1 for got, _ in results if len(got) == a.messages),
           "in_order": in_order, "elapsed": round(last - t0, 3),
           "counts": sorted(set(len(got) for got, _ in results))}
    for ws in subs + slow + [pub]:
        ws.transport.close()
    print(json.dumps(out), flush=True)


asyncio.run(main())
