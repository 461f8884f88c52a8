#!/usr/bin/python3
"""Channel fan-out across the instances of a cluster (spec/apps/channels_app.lua on
every instance; spec/integration/cluster_spec.lua).

usage: cluster_fanout.py --urls U1,U2,.. --subscribers N --publishers 0,2 --messages K
                         [--channel C] [--sync-timeout S]

Opens N subscribers on every URL (each sends "sub:C" and waits for the ack) and asks
each which worker it is on. A subscription reaches the other instances through Redis
one round trip later, so before counting, each publisher (one connection on each URL
index in --publishers) sends probes "pub:C:probe:<p>:<j>" until every subscriber has
seen a probe from every publisher. Then every publisher sends K messages
"pub:C:m:<p>:<i>" at once. Prints one JSON line: per URL the workers seen, how many
subscribers got every publisher's 1..K exactly once and in order, and the
duplicates and missing messages counted over all subscribers. Exit 0 when it could
run (the spec judges the numbers), 1 on a connection failure.
"""
import argparse
import asyncio
import json
import sys
import time

import websockets


async def connect(url):
    return await websockets.connect(url, max_size=None, compression=None, ping_interval=None)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--urls", required=True)
    ap.add_argument("--subscribers", type=int, default=10, help="per URL")
    ap.add_argument("--publishers", default="0")
    ap.add_argument("--messages", type=int, default=20)
    ap.add_argument("--channel", default="cluster")
    ap.add_argument("--sync-timeout", type=float, default=10)
    a = ap.parse_args()
    urls = a.urls.split(",")
    pubs_at = [int(x) for x in a.publishers.split(",")]
    ch = a.channel

    subs = []  # (url index, ws)
    for ui, url in enumerate(urls):
        for _ in range(a.subscribers):
            ws = await connect(url)
            await ws.send("sub:" + ch)
            ack = await ws.recv()
            assert ack == "subscribed:" + ch, ack
            subs.append((ui, ws))
    workers = [set() for _ in urls]
    for ui, ws in subs:
        await ws.send("worker")
        workers[ui].add(await ws.recv())

    got = [[] for _ in subs]
    probes = [set() for _ in subs]

    async def reader(k, ws):
        try:
            async for m in ws:
                if m.startswith("probe:"):
                    probes[k].add(int(m.split(":")[1]))
                else:
                    got[k].append(m)
        except websockets.ConnectionClosed:
            pass

    readers = [asyncio.ensure_future(reader(k, ws)) for k, (_, ws) in enumerate(subs)]
    pubs = [await connect(urls[i]) for i in pubs_at]
    npub = len(pubs)
    t0 = time.monotonic()
    j = 0
    synced = False
    while time.monotonic() - t0 < a.sync_timeout:
        if all(len(p) == npub for p in probes):
            synced = True
            break
        j += 1
        for p, ws in enumerate(pubs):
            await ws.send("pub:%s:probe:%d:%d" % (ch, p, j))
        await asyncio.sleep(0.05)
    sync_s = time.monotonic() - t0

    t1 = time.monotonic()
    await asyncio.gather(*(_send_all(ws, ch, p, a.messages) for p, ws in enumerate(pubs)))
    want = npub * a.messages
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(len(g) < want for g in got):
        await asyncio.sleep(0.02)
    elapsed = time.monotonic() - t1
    await asyncio.sleep(0.3)  # room for a duplicate to show up (not a synchronisation)

    complete = 0
    dups = missing = 0
    for g in got:
        per = [[] for _ in pubs]
        for m in g:
            _, p, i = m.split(":")
            per[int(p)].append(int(i))
        ok = True
        for seq in per:
            if seq != list(range(1, a.messages + 1)):
                ok = False
            dups += len(seq) - len(set(seq))
            missing += a.messages - len(set(seq))
        complete += ok
    out = {"subscribers": len(subs), "synced": synced, "sync_seconds": round(sync_s, 3),
           "workers": [sorted(w) for w in workers], "complete": complete,
           "duplicates": dups, "missing": missing, "elapsed": round(elapsed, 3)}
    for r in readers:
        r.cancel()
    for _, ws in subs:
        ws.transport.close()
    for ws in pubs:
        ws.transport.close()
    print(json.dumps(out), flush=True)


async def _send_all(ws, ch, p, k):
    for i in range(1, k + 1):
        await ws.send("pub:%s:m:%d:%d" % (ch, p, i))


try:
    asyncio.run(main())
except (OSError, websockets.WebSocketException) as e:
    print(json.dumps({"error": str(e)}), flush=True)
    sys.exit(1)
