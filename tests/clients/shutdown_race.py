#!/usr/bin/env python3
"""shutdown_race.py - a second SIGTERM at random moments of a graceful drain.

Each round starts the server, opens connections and keeps them busy, sends SIGTERM,
waits a random time within the drain (0 .. --max-delay s), sends a second SIGTERM
and waits for the process to exit. Every round must exit with status 0 within
--exit-timeout seconds and leave no abort or sanitizer report in its log.

Scenarios (--scenario):
  echo  two connections that complete the handshake and never answer the close
        (raw sockets that stop reading), on an echo app
  chat  the chat example: clients join a room (pub/sub + presence) and publish
        continuously while the drain runs; one connection never answers the close

Rounds run --parallel at a time. Prints one JSON line: {"rounds", "ok", "seen",
"failures"} (seen: pub/sub and presence messages the chat talkers received).

usage: shutdown_race.py --bin BUILD/edgews-lua --app APP --scenario echo|chat
       [--rounds 50] [--parallel 4] [--workers 4] [--drain-timeout 3] [--max-delay 1.5]
       [--data-root DIR]
"""
import argparse
import asyncio
import base64
import json
import os
import random
import re
import signal
import socket
import sys
import tempfile
import time

REPORT = re.compile(r"ERROR: (AddressSanitizer|LeakSanitizer)|WARNING: ThreadSanitizer|runtime error:|"
                    r"Assertion .* failed|Aborted|SUMMARY: ")


def upgrade_request(port, path):
    key = base64.b64encode(os.urandom(16)).decode()
    return ("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
            % (path, port, key)).encode()


def masked_text(payload):
    data = payload.encode()
    mask = os.urandom(4)
    n = len(data)
    head = bytes([0x81, 0x80 | n]) if n < 126 else bytes([0x81, 0x80 | 126]) + n.to_bytes(2, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data))


async def open_raw(port, path):
    """A connection that completes the handshake; the caller decides what it sends."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(upgrade_request(port, path))
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    if b" 101 " not in head.split(b"\r\n")[0]:
        raise RuntimeError("no 101: %r" % head[:200])
    return reader, writer


async def start_server(a, data_dir):
    argv = [a.bin, "--listen", "127.0.0.1:0", "--workers", str(a.workers),
            "--drain-timeout", str(a.drain_timeout), "--no-watch"]
    if data_dir:
        argv += ["--data", data_dir]
    argv.append(a.app)
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.PIPE)
    log = bytearray()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = await asyncio.wait_for(proc.stderr.readline(), 30)
        if not line:
            break
        log += line
        m = re.search(rb"listening on [^ ]*:(\d+)", line)
        if m:
            return proc, int(m.group(1)), log
    raise RuntimeError("server did not start: %s" % log.decode(errors="replace")[-2000:])


async def keep_reading(proc, log):
    while True:
        chunk = await proc.stderr.read(65536)
        if not chunk:
            return
        log += chunk


async def chat_load(port, stop, seen):
    """Clients in one room: each joins (pub/sub + presence) then says something every
    few ms until stopped or closed; one never reads again after joining."""
    async def talker(i):
        try:
            reader, writer = await open_raw(port, "/chat?name=u%d" % i)
            writer.write(masked_text(json.dumps({"type": "join", "room": "r"})))
            n = 0
            while not stop.is_set():
                writer.write(masked_text(json.dumps({"type": "say", "room": "r", "text": "m%d" % n})))
                n += 1
                await writer.drain()
                try:  # read whatever came, so the server is not backpressured
                    got = await asyncio.wait_for(reader.read(65536), 0.02)
                    seen["pub"] += got.count(b'"type":"pub"')
                    seen["presence"] += got.count(b'"type":"presence"')
                except asyncio.TimeoutError:
                    pass
        except (ConnectionError, OSError, asyncio.IncompleteReadError, RuntimeError):
            pass

    deaf_reader, deaf = await open_raw(port, "/chat?name=deaf")
    deaf.write(masked_text(json.dumps({"type": "join", "room": "r"})))
    tasks = [asyncio.ensure_future(talker(i)) for i in range(6)]
    return tasks, [deaf]


async def one_round(a, k, sem, results, seen):
    async with sem:
        data_dir = tempfile.mkdtemp(prefix="race-", dir=a.data_root) if a.scenario == "chat" else None
        proc, port, log = await start_server(a, data_dir)
        reader_task = asyncio.ensure_future(keep_reading(proc, log))
        stop = asyncio.Event()
        tasks, keep = [], []
        try:
            if a.scenario == "echo":
                for _ in range(2):
                    _, w = await open_raw(port, a.path)
                    keep.append(w)  # never read again: the close is never answered
            else:
                tasks, keep = await chat_load(port, stop, seen)
                await asyncio.sleep(0.3)  # joined and publishing
            proc.send_signal(signal.SIGTERM)
            await asyncio.sleep(random.uniform(0, a.max_delay))
            if proc.returncode is None:
                try:
                    proc.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass
            try:
                rc = await asyncio.wait_for(proc.wait(), a.exit_timeout)
            except asyncio.TimeoutError:
                proc.kill()
                rc = "timeout"
        finally:
            stop.set()
            for w in keep:
                w.close()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.wait_for(reader_task, 10)
        text = log.decode(errors="replace")
        bad = REPORT.search(text)
        if rc != 0 or bad:
            results.append({"round": k, "rc": rc, "log": text[-3000:]})
        if data_dir:
            for f in os.listdir(data_dir):
                os.unlink(os.path.join(data_dir, f))
            os.rmdir(data_dir)


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin", required=True)
    p.add_argument("--app", required=True)
    p.add_argument("--scenario", choices=["echo", "chat"], required=True)
    p.add_argument("--path", default="/echo")
    p.add_argument("--rounds", type=int, default=50)
    p.add_argument("--parallel", type=int, default=4)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--drain-timeout", type=float, default=3)
    p.add_argument("--max-delay", type=float, default=1.5)
    p.add_argument("--exit-timeout", type=float, default=20)
    p.add_argument("--data-root", default=None)
    a = p.parse_args()
    sem = asyncio.Semaphore(a.parallel)
    failures = []
    seen = {"pub": 0, "presence": 0}  # chat: what the talkers received (proof of load)
    await asyncio.gather(*(one_round(a, k, sem, failures, seen) for k in range(a.rounds)))
    print(json.dumps({"rounds": a.rounds, "ok": a.rounds - len(failures), "seen": seen,
                      "failures": failures[:3]}))
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
