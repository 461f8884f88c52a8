#!/usr/bin/python3
"""Opens many WebSocket connections at once and holds them: for overload tests.

usage: flood.py --url U --count N [--hold SECS] [--timeout SECS]

Prints one JSON line: {"opened": n, "failed": n, "errors": {...}} after holding the
open connections for --hold seconds (each open one must still echo a message at
the end), then closes them all. Exit 0 when the run completed (whatever the split
between opened and failed: the caller decides what it expects).
"""
import argparse
import asyncio
import collections
import json
import sys

import websockets


async def one(url, timeout, held, errors):
    try:
        ws = await asyncio.wait_for(
            websockets.connect(url, compression=None, open_timeout=timeout), timeout)
        held.append(ws)
    except Exception as e:  # refused, reset, timeout: all count as failed
        errors[type(e).__name__] += 1


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--hold", type=float, default=1.0)
    ap.add_argument("--timeout", type=float, default=5.0)
    a = ap.parse_args()
    held, errors = [], collections.Counter()
    await asyncio.gather(*(one(a.url, a.timeout, held, errors) for _ in range(a.count)))
    print(json.dumps({"event": "holding", "opened": len(held)}), flush=True)
    await asyncio.sleep(a.hold)
    echoed = 0
    for ws in held:
        try:
            await ws.send("still here")
            if await asyncio.wait_for(ws.recv(), a.timeout) == "still here":
                echoed += 1
        except Exception as e:
            errors["late_" + type(e).__name__] += 1
    for ws in held:
        try:
            await ws.close()
        except Exception:
            pass
    print(json.dumps({"opened": len(held), "failed": a.count - len(held),
                      "echoed": echoed, "errors": dict(errors)}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
