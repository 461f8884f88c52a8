#!/usr/bin/python3
"""pubsub_recovery.py - pub/sub recovery under load, for realtime_spec.

Against spec/apps/realtime_app.lua (/rt): `--subscribers` clients subscribe to one
topic; `--publishers` clients publish `--messages` messages each (a window of 16
outstanding, `--interval` apart) while every subscriber disconnects `--reconnects` times at random
moments and resubscribes with {since_offset: last offset seen, epoch}. At the end
every subscriber must have seen each offset 1..N exactly once, in order (the
replayed history and the live messages together), where N is the number of
acknowledged publishes. `--url` may list several URLs (comma-separated: the instances of
a cluster): publisher i uses URL i, and each subscriber connects to the next URL at
every reconnect, so it recovers on another instance than the one it left. Prints one
JSON line:
  {"published": N, "offsets_unique": bool, "last_offset": L,
   "subscribers": [{"seen": n, "in_order": bool, "duplicates": d, "missing": m,
                    "reconnects": r, "replayed": k, "gaps": g, "workers": [..],
                    "instances": URLs used, "gap_reasons": [..], "missing_offsets": [..],
                    "subscribes": [[url tail, since_offset, offset, replayed, worker,
                                    last seen], ..]}]}
Publishing starts once every subscriber's first subscribe was answered.
Standard library + websockets; run with /usr/bin/python3.
"""

import argparse
import asyncio
import json
import random
import sys

import websockets


async def publisher(urls, topic, n, offsets, idx, interval, tolerate, errors):
    url = urls[idx % len(urls)]
    async with websockets.connect(url + "?user=pub%d" % idx, max_size=None, max_queue=None) as ws:
        window = asyncio.Semaphore(16)
        done = asyncio.Event()
        acked = 0

        async def reader():
            nonlocal acked
            async for raw in ws:
                m = json.loads(raw)
                if m.get("type") == "published":
                    offsets.append(m["offset"])
                    acked += 1
                    window.release()
                    if acked == n:
                        done.set()
                        window.release()  # the sender may wait for a slot
                        return
                elif m.get("type") == "error":
                    if not tolerate:
                        print(json.dumps({"error": m}), file=sys.stderr)
                    errors[0] += 1
                    window.release()

        task = asyncio.create_task(reader())
        i = 0
        # With tolerate (an outage on purpose), publish until n were acknowledged.
        while not done.is_set() and (tolerate or i < n):
            await window.acquire()
            if done.is_set():
                break
            if interval:
                await asyncio.sleep(interval)
            await ws.send(json.dumps({"type": "publish", "topic": topic,
                                      "data": {"p": idx, "i": i}}))
            i += 1
        await asyncio.wait_for(done.wait(), 60)
        await task


class Sub:
    def __init__(self):
        self.seen = []
        self.epoch = None
        self.reconnects = 0
        self.replayed = 0
        self.gaps = 0
        self.workers = set()
        self.urls = set()
        self.gap_reasons = []
        self.log = []
        self.sub_errors = 0
        self.ready = asyncio.Event()  # its first subscribe was answered


async def subscriber(urls, topic, idx, sub, reconnects, stop, target):
    left = reconnects
    while True:
        url = urls[(idx + sub.reconnects) % len(urls)]
        sub.urls.add(url)
        async with websockets.connect(url + "?user=sub%d" % idx, max_size=None, max_queue=None, close_timeout=2) as ws:
            req = {"type": "subscribe", "topic": topic}
            if sub.seen or sub.epoch:
                req["since_offset"] = sub.seen[-1] if sub.seen else 0
                if sub.epoch:
                    req["epoch"] = sub.epoch
            await ws.send(json.dumps(req))
            # Drop this connection after a random number of messages.
            budget = random.randint(5, 60) if left > 0 else None
            got = 0
            while True:
                if stop.is_set() and target[0] and sub.seen and sub.seen[-1] >= target[0]:
                    return
                try:
                    raw = await asyncio.wait_for(ws.recv(), 0.2)
                except asyncio.TimeoutError:
                    continue
                m = json.loads(raw)
                t = m.get("type")
                if t == "subscribed":
                    sub.log.append([url[-9:], req.get("since_offset"), m.get("offset"),
                                    m.get("replayed"), m["worker"], sub.seen[-1] if sub.seen else 0])
                    sub.workers.add(m["worker"])
                    sub.ready.set()
                    sub.replayed += m.get("replayed", 0)
                    if m.get("gap"):
                        sub.gaps += 1
                elif t == "error":  # a refused subscribe (the cluster is unavailable)
                    sub.sub_errors += 1
                    await asyncio.sleep(0.1)
                    break
                elif t == "gap":
                    sub.gaps += 1
                    sub.gap_reasons.append(m.get("reason"))
                elif t == "pub":
                    sub.epoch = m["epoch"]
                    sub.seen.append(m["offset"])
                    got += 1
                    if budget is not None and got >= budget:
                        break
        left -= 1
        sub.reconnects += 1
        await asyncio.sleep(random.random() * 0.05)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--topic", default="load")
    ap.add_argument("--publishers", type=int, default=3)
    ap.add_argument("--messages", type=int, default=200)
    ap.add_argument("--subscribers", type=int, default=4)
    ap.add_argument("--reconnects", type=int, default=5)
    ap.add_argument("--interval", type=float, default=0.002,
                    help="seconds between a publisher's messages")
    ap.add_argument("--tolerate-errors", action="store_true",
                    help="an outage is expected: publishers go on until --messages were "
                    "acknowledged; subscribers retry refused subscribes; offsets that were "
                    "stored but not acknowledged may be seen too")
    a = ap.parse_args()
    offsets = []
    stop = asyncio.Event()
    target = [None]
    subs = [Sub() for _ in range(a.subscribers)]
    urls = a.url.split(",")
    sub_tasks = [asyncio.create_task(subscriber(urls, a.topic, i, s, a.reconnects, stop, target))
                 for i, s in enumerate(subs)]
    # Publishing starts once every subscriber is subscribed (the first subscription
    # is live from the topic's last offset: what came before is not its to see).
    await asyncio.wait_for(asyncio.gather(*(s.ready.wait() for s in subs)), 20)
    errors = [0]
    if a.tolerate_errors:
        print(json.dumps({"event": "publishing"}), flush=True)
    await asyncio.gather(*[publisher(urls, a.topic, a.messages, offsets, i, a.interval,
                                     a.tolerate_errors, errors)
                           for i in range(a.publishers)])
    target[0] = max(offsets) if offsets else 0
    stop.set()
    try:
        await asyncio.wait_for(asyncio.gather(*sub_tasks), 30)
    except asyncio.TimeoutError:
        pass
    n = len(offsets)
    expected = list(range(1, n + 1))
    if a.tolerate_errors:
        expected = sorted(offsets)
    out = {"published": n, "offsets_unique": sorted(offsets) == list(range(1, n + 1)),
           "last_offset": target[0], "publish_errors": errors[0], "subscribers": []}
    if a.tolerate_errors:
        out["offsets_unique"] = len(set(offsets)) == n
    for s in subs:
        dup = len(s.seen) - len(set(s.seen))
        in_order = s.seen == expected
        if a.tolerate_errors:  # increasing, with every acknowledged offset
            in_order = all(x < y for x, y in zip(s.seen, s.seen[1:])) and \
                set(expected) <= set(s.seen)
        out["subscribers"].append({
            "seen": len(s.seen), "in_order": in_order, "duplicates": dup,
            "subscribe_errors": s.sub_errors,
            "missing": len(set(expected) - set(s.seen)), "reconnects": s.reconnects,
            "replayed": s.replayed, "gaps": s.gaps, "workers": sorted(s.workers),
            "instances": len(s.urls), "gap_reasons": s.gap_reasons,
            "missing_offsets": sorted(set(expected) - set(s.seen))[:20], "subscribes": s.log[-12:]})
    print(json.dumps(out))


asyncio.run(main())
