#!/usr/bin/python3
"""Scripted client for spec/apps/presence_app.lua (edgews.presence).

One process, many named connections, one JSON command per stdin line, one JSON
answer line each (always with "ok"):

  {"op":"open","id":"a","url":U}                -> {"ok":true,"worker":W}
  {"op":"open_on","id":"a","url":U,"worker":W}  -> open until one lands on worker W
  {"op":"call","id":"a","msg":{...}}            -> {"ok":true,"reply":{...}} (the app's answer)
  {"op":"events","id":"a","min":N,"timeout":T,"settle":S}
        -> {"ok":true,"events":[...]}: the presence events received so far, after
           waiting up to T s for at least N of them, then S s more; clears them
  {"op":"mute","id":"a"}      stop reading (and so answering pings) and sending
  {"op":"close","id":"a"}     close handshake, then forget the connection
  {"op":"bulk","url":U,"prefix":P,"n":N,"ch":C}
        -> opens N connections P0..P(N-1), each joins C as user P<i>, all at once
           (100 at a time); {"ok":true,"joined":N,"workers":[...]}
  {"op":"bulk_close","prefix":P}   closes them (TCP close, no handshake)

Runs with /usr/bin/python3 (Debian's python3-websockets). The client never pings
the server; the library answers the server's pings while the connection reads.
"""
import asyncio
import json
import sys

import websockets


class Conn:
    def __init__(self, ws):
        self.ws = ws
        self.events = []
        self.replies = asyncio.Queue()
        self.reader = asyncio.ensure_future(self.read())

    async def read(self):
        try:
            async for msg in self.ws:
                doc = json.loads(msg)
                if doc.get("type") == "presence":
                    self.events.append(doc)
                else:
                    await self.replies.put(doc)
        except websockets.ConnectionClosed:
            pass

    async def call(self, msg, timeout=10):
        await self.ws.send(json.dumps(msg))
        return await asyncio.wait_for(self.replies.get(), timeout)


conns = {}


async def connect(url):
    ws = await websockets.connect(url, max_size=None, compression=None, ping_interval=None,
                                  close_timeout=1)
    return Conn(ws)


async def worker_of(c):
    return (await c.call({"op": "worker"}))["worker"]


async def handle(cmd):
    op = cmd["op"]
    if op == "open":
        c = await connect(cmd["url"])
        conns[cmd["id"]] = c
        return {"worker": await worker_of(c)}
    if op == "open_on":
        for _ in range(50):
            c = await connect(cmd["url"])
            w = await worker_of(c)
            if w == cmd["worker"]:
                conns[cmd["id"]] = c
                return {"worker": w}
            c.ws.transport.close()
        raise RuntimeError("no connection landed on worker %s" % cmd["worker"])
    if op == "call":
        return {"reply": await conns[cmd["id"]].call(cmd["msg"], cmd.get("timeout", 10))}
    if op == "events":
        c = conns[cmd["id"]]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + cmd.get("timeout", 5)
        while len(c.events) < cmd.get("min", 0) and loop.time() < deadline:
            await asyncio.sleep(0.02)
        await asyncio.sleep(cmd.get("settle", 0))
        ev, c.events = c.events, []
        return {"events": ev}
    if op == "mute":
        c = conns[cmd["id"]]
        c.ws.transport.pause_reading()
        return {}
    if op == "close":
        c = conns.pop(cmd["id"])
        await c.ws.close()
        return {}
    if op == "bulk":
        n, prefix = cmd["n"], cmd["prefix"]
        workers = set()

        async def one(i):
            c = await connect(cmd["url"])
            conns[prefix + str(i)] = c
            r = await c.call({"op": "join", "ch": cmd["ch"], "user": prefix + str(i)})
            if not r.get("ok") or not r.get("new"):
                raise RuntimeError("join %d: %r" % (i, r))
            if i < 20:
                workers.add(await worker_of(c))

        for s in range(0, n, 100):
            await asyncio.gather(*(one(i) for i in range(s, min(n, s + 100))))
        return {"joined": n, "workers": sorted(workers)}
    if op == "bulk_close":
        prefix = cmd["prefix"]
        for k in [k for k in conns if k.startswith(prefix)]:
            conns.pop(k).ws.transport.close()
        return {}
    raise RuntimeError("unknown op " + op)


async def main():
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        if not line:
            break
        try:
            cmd = json.loads(line)
            res = await handle(cmd)
            res["ok"] = True
        except Exception as e:  # noqa: BLE001 - every failure is an answer
            res = {"ok": False, "error": "%s: %s" % (type(e).__name__, e)}
        sys.stdout.write(json.dumps(res) + "\n")
        sys.stdout.flush()
    for c in conns.values():
        c.ws.transport.close()


asyncio.run(main())
