#!/usr/bin/python3
"""WebSocket test client built on Debian's python3-websockets (10.x asyncio API).

Run with /usr/bin/python3. Every subcommand prints one JSON result line on stdout
(the last line; `hold` and `sequence` print progress lines before it) and exits 0 on
success, 1 on failure.

  echo       --url U [--sizes 0,125,...] [--binary]   random payloads, byte-exact echo
  fragmented --url U [--binary] [--fragments N] [--size BYTES]
  ping       --url U [--payload TEXT]                 ping, await the matching pong
  close      --url U --code C [--reason R] [--expect C2]
                                                      the code/reason the server answered
  protocol   --url U --offer a,b [--expect NAME|none] the negotiated subprotocol
  send       --url U (--message M | --size N) [--binary] [--expect-close CODE]
                                                      one message: echo, or a close code
  hold       --url U [--seconds S] [--expect-code C]  connect, print {"event":"connected"},
                                                      wait for the server's close
  sequence   --url U --send m1,m2,... [--step] [--replies N] [--expect-close CODE]
             [--close-code C [--close-reason R]] [--offer a,b]
                                                      one reply line per message (after
                                                      reading N messages); with --step
                                                      waits for a stdin line before each
                                                      message after the first; closes
                                                      with C (1000) unless the server
                                                      closes (--expect-close)
  http-get   --url http(s)://H:P/path                 GET; status and body (JSON when it is)

Options of every subcommand (all optional; without them nothing changes):
  TLS (wss:// and https:// URLs):
    --ca FILE               trust only this CA (default: the system's CAs)
    --ciphers STRING        OpenSSL cipher string for TLS <= 1.2
    --tls-min V, --tls-max V   protocol range, V in 1.0, 1.1, 1.2, 1.3 (with a
                            range below 1.2 the security level is lowered to 0 so
                            that OpenSSL really offers the old protocol)
  permessage-deflate (RFC 7692; the default is no compression):
    --compression deflate   offer websockets' default (client_max_window_bits
                            without a value, memLevel 5)
    --pmd-server-no-context-takeover, --pmd-client-no-context-takeover,
    --pmd-server-max-window-bits N, --pmd-client-max-window-bits N|none|bare
                            offer exactly these parameters (client_max_window_bits:
                            bare = without a value, the default; none = not offered)
The result line then also holds "extensions" (the 101's Sec-WebSocket-Extensions,
null without one), "pmd" (the parameters websockets agreed) and "tls" ({version,
cipher}) of the first connection.
"""

import argparse
import asyncio
import json
import os
import random
import ssl
import sys
import time
import urllib.error
import urllib.request

import websockets
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

OPEN_TIMEOUT = 5.0


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def random_text(size):
    """A random str whose UTF-8 encoding is exactly size long, mixing ASCII runs
    with 2-, 3- and 4-byte code points."""
    parts = []
    left = size
    while left > 0:
        k = random.choice((2, 3, 4))
        if left >= k:
            if k == 2:
                cp = random.randint(0x80, 0x7FF)
            elif k == 3:
                cp = random.choice((random.randint(0x800, 0xD7FF), random.randint(0xE000, 0xFFFF)))
            else:
                cp = random.randint(0x10000, 0x10FFFF)
            parts.append(chr(cp))
            left -= k
        run = min(left, random.randint(0, 300))
        if run:
            raw = os.urandom(run)
            # map every byte into printable ASCII 0x20..0x7E
            parts.append(bytes(0x20 + (b % 95) for b in raw).decode("ascii"))
            left -= run
    s = "".join(parts)
    assert len(s.encode("utf-8")) == size
    return s


def payload(size, binary):
    return os.urandom(size) if binary else random_text(size)


# Set by main() from the TLS and permessage-deflate options (None: the defaults).
SSL_CONTEXT = None
PMD_FACTORY = None
COMPRESSION = None
CONNECTED = []  # every protocol instance that completed the opening handshake

TLS_VERSIONS = {"1.0": ssl.TLSVersion.TLSv1, "1.1": ssl.TLSVersion.TLSv1_1,
                "1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


class RecordingProtocol(websockets.WebSocketClientProtocol):
    tls_info = None

    def connection_open(self):
        super().connection_open()
        CONNECTED.append(self)
        so = self.transport.get_extra_info("ssl_object") if self.transport else None
        if so is not None:
            c = so.cipher()
            self.tls_info = {"version": so.version(), "cipher": c[0] if c else None}


def make_ssl_context(a):
    if not (a.ca or a.ciphers or a.tls_min or a.tls_max):
        return None
    ctx = ssl.create_default_context(cafile=a.ca)
    old = [v for v in (a.tls_min, a.tls_max) if v in ("1.0", "1.1")]
    if old:
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    if a.tls_min:
        ctx.minimum_version = TLS_VERSIONS[a.tls_min]
    if a.tls_max:
        ctx.maximum_version = TLS_VERSIONS[a.tls_max]
    if a.ciphers:
        ctx.set_ciphers(a.ciphers + (":@SECLEVEL=0" if old else ""))
    return ctx


def make_pmd_factory(a):
    explicit = (a.pmd_server_no_context_takeover or a.pmd_client_no_context_takeover
                or a.pmd_server_max_window_bits is not None
                or a.pmd_client_max_window_bits is not None)
    if not explicit:
        return None
    cmwb = a.pmd_client_max_window_bits or "bare"
    cmwb = True if cmwb == "bare" else None if cmwb == "none" else int(cmwb)
    return ClientPerMessageDeflateFactory(
        server_no_context_takeover=a.pmd_server_no_context_takeover,
        client_no_context_takeover=a.pmd_client_no_context_takeover,
        server_max_window_bits=a.pmd_server_max_window_bits,
        client_max_window_bits=cmwb)


def connect(url, **kw):
    opts = dict(max_size=None, compression=None, open_timeout=OPEN_TIMEOUT,
                close_timeout=5, ping_interval=None, create_protocol=RecordingProtocol)
    if SSL_CONTEXT is not None and url.startswith("wss:"):
        opts["ssl"] = SSL_CONTEXT
    if PMD_FACTORY is not None:
        opts["extensions"] = [PMD_FACTORY]
    elif COMPRESSION == "deflate":
        opts["compression"] = "deflate"
    opts.update(kw)
    return websockets.connect(url, **opts)


def connection_info():
    """TLS and extension details of the first connection (empty before one)."""
    if not CONNECTED:
        return {}
    ws = CONNECTED[0]
    info = {"extensions": ws.response_headers.get("Sec-WebSocket-Extensions")}
    if ws.tls_info:
        info["tls"] = ws.tls_info
    pmd = [e for e in ws.extensions if e.name == "permessage-deflate"]
    if pmd:
        e = pmd[0]
        info["pmd"] = {"server_no_context_takeover": e.remote_no_context_takeover,
                       "client_no_context_takeover": e.local_no_context_takeover,
                       "server_max_window_bits": e.remote_max_window_bits,
                       "client_max_window_bits": e.local_max_window_bits}
    return info


def close_info(ws):
    rcvd = getattr(ws, "close_rcvd", None)
    return {"close_code": rcvd.code if rcvd else ws.close_code,
            "close_reason": rcvd.reason if rcvd else ws.close_reason,
            "close_received": rcvd is not None}


def nbytes(data):
    return len(data.encode("utf-8")) if isinstance(data, str) else len(data)


def describe_mismatch(sent, got):
    if type(sent) is not type(got):
        return "type %s, expected %s" % (type(got).__name__, type(sent).__name__)
    if len(sent) != len(got):
        return "length %d, expected %d" % (len(got), len(sent))
    for i, (a, b) in enumerate(zip(sent, got)):
        if a != b:
            return "first difference at index %d" % i
    return "differs"


# ---------------------------------------------------------------------- commands

async def cmd_echo(a):
    sizes = [int(s) for s in a.sizes.split(",") if s != ""]
    results = []
    ok = True
    async with connect(a.url) as ws:
        for n in sizes:
            data = payload(n, a.binary)
            t = time.monotonic()
            await ws.send(data)
            got = await asyncio.wait_for(ws.recv(), a.timeout)
            good = got == data and type(got) is type(data)
            r = {"size": n, "ok": good, "ms": round((time.monotonic() - t) * 1000, 1)}
            if not good:
                r["error"] = describe_mismatch(data, got)
            results.append(r)
            ok = ok and good
        await ws.close(1000)
        info = close_info(ws)
    ok = ok and info["close_code"] == 1000
    return ok, {"binary": a.binary, "results": results, **info}


async def cmd_fragmented(a):
    data = payload(a.size, a.binary)
    n = max(1, a.fragments)
    step = max(1, -(-len(data) // n))  # str slicing never splits a code point
    frags = [data[i:i + step] for i in range(0, len(data), step)] or [data]
    async with connect(a.url) as ws:
        await ws.send(frags)  # an iterable is sent as one fragmented message
        got = await asyncio.wait_for(ws.recv(), a.timeout)
        good = got == data and type(got) is type(data)
        await ws.close(1000)
        info = close_info(ws)
    res = {"binary": a.binary, "fragments": len(frags), "size": nbytes(data), **info}
    if not good:
        res["error"] = describe_mismatch(data, got)
    return good and info["close_code"] == 1000, res


async def cmd_ping(a):
    async with connect(a.url) as ws:
        t = time.monotonic()
        waiter = await ws.ping(a.payload.encode())
        await asyncio.wait_for(waiter, a.timeout)  # resolved only by a matching pong
        rtt = round((time.monotonic() - t) * 1000, 2)
        # the connection still works after the ping
        await ws.send("after-ping")
        got = await asyncio.wait_for(ws.recv(), a.timeout)
        await ws.close(1000)
    return got == "after-ping", {"payload": a.payload, "pong": True, "rtt_ms": rtt}


async def cmd_close(a):
    async with connect(a.url) as ws:
        await ws.send("before-close")
        await asyncio.wait_for(ws.recv(), a.timeout)
        await ws.close(a.code, a.reason)
        info = close_info(ws)
    expect = a.code if a.expect is None else a.expect
    ok = info["close_received"] and info["close_code"] == expect
    if a.expect_reason is not None:
        ok = ok and info["close_reason"] == a.expect_reason
    return ok, {"sent_code": a.code, "sent_reason": a.reason, **info}


async def cmd_protocol(a):
    offer = [p for p in a.offer.split(",") if p]
    async with connect(a.url, subprotocols=offer or None) as ws:
        proto = ws.subprotocol
        await ws.send("proto-check")
        got = await asyncio.wait_for(ws.recv(), a.timeout)
        await ws.close(1000)
    ok = got == "proto-check"
    if a.expect is not None:
        ok = ok and (proto == (None if a.expect == "none" else a.expect))
    return ok, {"offer": offer, "protocol": proto}


async def cmd_send(a):
    data = a.message if a.message is not None else payload(a.size, a.binary)
    if a.binary and isinstance(data, str):
        data = data.encode()
    async with connect(a.url) as ws:
        try:
            await ws.send(data)
            got = await asyncio.wait_for(ws.recv(), a.timeout)
            echoed = got == data
        except websockets.ConnectionClosed:
            echoed = False
        if a.expect_close is not None:
            try:
                await asyncio.wait_for(ws.wait_closed(), a.timeout)
            except asyncio.TimeoutError:
                pass
        else:
            await ws.close(1000)
        info = close_info(ws)
    res = {"size": nbytes(data), "echoed": echoed, **info}
    if a.expect_close is not None:
        return info["close_received"] and info["close_code"] == a.expect_close, res
    return echoed, res


async def cmd_hold(a):
    async with connect(a.url) as ws:
        emit({"event": "connected"})
        t = time.monotonic()
        try:
            await asyncio.wait_for(ws.wait_closed(), a.seconds)
            closed = True
        except asyncio.TimeoutError:
            closed = False
        info = close_info(ws)
        res = {"closed_by_server": closed, "held": round(time.monotonic() - t, 3), **info}
    ok = closed and info["close_received"]
    if a.expect_code is not None:
        ok = ok and info["close_code"] == a.expect_code
    return ok, res


async def cmd_sequence(a):
    msgs = a.send.split(",") if a.send else []
    replies = []
    loop = asyncio.get_running_loop()
    offer = [x for x in a.offer.split(",") if x] if a.offer else None
    async with connect(a.url, subprotocols=offer) as ws:
        emit({"event": "connected", "protocol": ws.subprotocol})
        closed = False
        for i, m in enumerate(msgs):
            if a.step and i > 0:
                line = await loop.run_in_executor(None, sys.stdin.readline)
                if line == "":
                    break  # stdin closed: stop early
            try:
                await ws.send(m)
                got_all = []
                for _ in range(a.replies):
                    got_all.append(await asyncio.wait_for(ws.recv(), a.timeout))
            except websockets.ConnectionClosed:
                closed = True
                emit({"event": "closed", "sent": m, **close_info(ws)})
                break
            texts = [g if isinstance(g, str) else g.decode("utf-8", "replace") for g in got_all]
            replies.append(texts[-1])
            ev = {"event": "reply", "index": i, "sent": m, "reply": texts[-1],
                  "binary": isinstance(got_all[-1], bytes)}
            if a.replies > 1:
                ev["all"] = texts
            emit(ev)
        if a.expect_close is not None and not closed:
            try:
                await asyncio.wait_for(ws.wait_closed(), a.timeout)
            except asyncio.TimeoutError:
                pass
        if not closed and a.expect_close is None:
            await ws.close(a.close_code, a.close_reason)
        info = close_info(ws)
    res = {"replies": replies, **info}
    if a.expect_close is not None:
        return info["close_received"] and info["close_code"] == a.expect_close, res
    return len(replies) == len(msgs) and info["close_code"] == a.close_code, res


async def cmd_burst(a):
    """Sends every message at once, then reads --expect messages (or until the
    server closes, or --listen seconds pass); --close-after-send closes right after
    sending (without reading)."""
    msgs = a.send.split(",") if a.send else []
    got = []
    t0 = time.monotonic()
    async with connect(a.url) as ws:
        for m in msgs:
            await ws.send(m)
        if a.close_after_send:
            await ws.close(1000)
            return True, {"sent": len(msgs), **close_info(ws)}
        deadline = t0 + a.listen
        while len(got) < a.expect:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                g = await asyncio.wait_for(ws.recv(), left)
            except (asyncio.TimeoutError, websockets.ConnectionClosed):
                break
            got.append(g if isinstance(g, str) else g.decode("utf-8", "replace"))
        elapsed = round(time.monotonic() - t0, 3)
        if ws.open:
            await ws.close(1000)
        info = close_info(ws)
    return len(got) >= a.expect, {"received": got, "elapsed": elapsed, **info}


async def cmd_http_get(a):
    ctx = None
    if a.url.startswith("https:"):
        ctx = SSL_CONTEXT or ssl.create_default_context()

    def get():
        try:
            with urllib.request.urlopen(a.url, timeout=a.timeout, context=ctx) as r:
                return r.status, r.read(), r.headers.get("Content-Type")
        except urllib.error.HTTPError as e:
            return e.code, e.read(), e.headers.get("Content-Type")
    status, body, ctype = await asyncio.get_running_loop().run_in_executor(None, get)
    res = {"status": status, "content_type": ctype}
    try:
        res["json"] = json.loads(body.decode())
    except ValueError:
        res["body"] = body.decode("utf-8", "replace")[:2000]
    return status == 200, res


COMMANDS = {
    "http-get": cmd_http_get,
    "burst": cmd_burst,
    "echo": cmd_echo, "fragmented": cmd_fragmented, "ping": cmd_ping, "close": cmd_close,
    "protocol": cmd_protocol, "send": cmd_send, "hold": cmd_hold, "sequence": cmd_sequence,
}


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    def add(name):
        p = sub.add_parser(name)
        p.add_argument("--url", required=True)
        p.add_argument("--timeout", type=float, default=10.0)
        p.add_argument("--ca")
        p.add_argument("--ciphers")
        p.add_argument("--tls-min", choices=sorted(TLS_VERSIONS))
        p.add_argument("--tls-max", choices=sorted(TLS_VERSIONS))
        p.add_argument("--compression", choices=("deflate", "none"))
        p.add_argument("--pmd-server-no-context-takeover", action="store_true")
        p.add_argument("--pmd-client-no-context-takeover", action="store_true")
        p.add_argument("--pmd-server-max-window-bits", type=int)
        p.add_argument("--pmd-client-max-window-bits")
        return p

    p = add("echo")
    p.add_argument("--sizes", default="0,125,126,65535,65536,1048576")
    p.add_argument("--binary", action="store_true")
    p = add("fragmented")
    p.add_argument("--binary", action="store_true")
    p.add_argument("--fragments", type=int, default=5)
    p.add_argument("--size", type=int, default=70000)
    p = add("ping")
    p.add_argument("--payload", default="ping-payload")
    p = add("close")
    p.add_argument("--code", type=int, default=1000)
    p.add_argument("--reason", default="")
    p.add_argument("--expect", type=int)
    p.add_argument("--expect-reason")
    p = add("protocol")
    p.add_argument("--offer", required=True)
    p.add_argument("--expect")
    p = add("send")
    p.add_argument("--message")
    p.add_argument("--size", type=int, default=0)
    p.add_argument("--binary", action="store_true")
    p.add_argument("--expect-close", type=int)
    p = add("hold")
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--expect-code", type=int)
    p = add("burst")
    p.add_argument("--send", default="", help="comma-separated messages, sent at once")
    p.add_argument("--expect", type=int, default=0, help="messages to read")
    p.add_argument("--listen", type=float, default=10.0, help="seconds to read at most")
    p.add_argument("--close-after-send", action="store_true")
    p = add("sequence")
    p.add_argument("--send", required=True, help="comma-separated messages")
    p.add_argument("--step", action="store_true")
    p.add_argument("--replies", type=int, default=1, help="messages to read per message sent")
    p.add_argument("--expect-close", type=int)
    p.add_argument("--close-code", type=int, default=1000, help="code of the client's close")
    p.add_argument("--close-reason", default="")
    p.add_argument("--offer", help="comma-separated subprotocols to offer")
    add("http-get")
    a = ap.parse_args()

    global SSL_CONTEXT, PMD_FACTORY, COMPRESSION
    res = {"client": "python-websockets", "cmd": a.cmd, "url": a.url}
    try:
        SSL_CONTEXT = make_ssl_context(a)
        PMD_FACTORY = make_pmd_factory(a)
        COMPRESSION = a.compression
        ok, extra = asyncio.run(COMMANDS[a.cmd](a))
        res.update(extra)
    except Exception as e:  # one JSON line whatever happens
        ok = False
        res["error"] = "%s: %s" % (e.__class__.__name__, e)
    if CONNECTED:
        res.update(connection_info())
    res["ok"] = bool(ok)
    emit(res)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
