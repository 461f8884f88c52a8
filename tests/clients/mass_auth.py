#!/usr/bin/python3
"""mass_auth.py - many JWT-authenticated connections whose tokens expire at the same
second (spec/integration/applayer_auth_mass_spec.lua). Standard library only; run with
/usr/bin/python3.

  mass_auth.py --url ws://H:P/path --secret S --count N [--expire-in 2] [--timeout 60]

1. opens N connections, each with its own user (sub "mass-<i>") and a token valid for
   an hour in ?token= (at most 200 handshakes in flight, so the listen backlog never
   overflows);
2. prints {"event": "open", "n": N} and waits for one line on stdin;
3. sends each an auth:refresh with a token that expires at exp = now + expire-in
   (rounded up to a whole second), reads every auth:refreshed, prints
   {"event": "refreshed", "exp": exp};
4. reads until the server has closed every connection, answering each close frame
   (the close handshake), then prints the result and exits:
   {"opened", "refreshed", "codes": {code: count}, "reasons": {reason: count},
    "first_close", "last_close" (seconds since the epoch), "exp", "timed_out"}.
Exit status 0 when every connection was opened, refreshed and closed, else 1.
"""

import argparse
import base64
import hashlib
import hmac
import json
import math
import os
import selectors
import socket
import struct
import sys
import time
import urllib.parse

from rawws import client_frame, upgrade_request

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode("ascii")


def jwt(secret, claims):
    h = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    p = b64url(json.dumps(claims, separators=(",", ":")).encode())
    sig = hmac.new(secret.encode(), (h + "." + p).encode(), hashlib.sha256).digest()
    return h + "." + p + "." + b64url(sig)


class Conn:
    def __init__(self, i):
        self.i = i
        self.sock = None
        self.buf = b""
        self.state = "connecting"  # -> handshake -> open -> closed
        self.refreshed = False
        self.code = None
        self.reason = None
        self.out = b""

    def frames(self):
        """Complete server frames in buf -> [(opcode, payload)] (servers do not mask)."""
        res = []
        while len(self.buf) >= 2:
            b0, b1 = self.buf[0], self.buf[1]
            n, at = b1 & 0x7F, 2
            if n == 126:
                if len(self.buf) < 4:
                    break
                n, at = struct.unpack("!H", self.buf[2:4])[0], 4
            elif n == 127:
                if len(self.buf) < 10:
                    break
                n, at = struct.unpack("!Q", self.buf[2:10])[0], 10
            if len(self.buf) < at + n:
                break
            res.append((b0 & 0x0F, self.buf[at:at + n]))
            self.buf = self.buf[at + n:]
        return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--secret", required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--expire-in", type=float, default=2)
    ap.add_argument("--timeout", type=float, default=60)
    a = ap.parse_args()
    u = urllib.parse.urlsplit(a.url)
    host, port, path = u.hostname, u.port, u.path or "/"
    sel = selectors.DefaultSelector()
    conns = [Conn(i) for i in range(a.count)]
    deadline = time.monotonic() + a.timeout
    n = {"handshake": 0, "open": 0, "closed": 0, "refreshed": 0}
    long_exp = int(time.time()) + 3600

    def send(c, data):
        c.out += data
        flush(c)

    def flush(c):
        while c.out:
            try:
                n = c.sock.send(c.out)
            except BlockingIOError:
                break
            except OSError:
                c.out = b""
                break
            c.out = c.out[n:]
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if c.out else 0)
        sel.modify(c.sock, events, c)

    def start(c):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c.sock = s
        s.connect_ex((host, port))
        tok = jwt(a.secret, {"sub": "mass-%d" % c.i, "exp": long_exp})
        key = base64.b64encode(os.urandom(16))
        c.key = key
        c.out = upgrade_request("%s?token=%s" % (path, tok), host, port, key.decode())
        c.state = "handshake"
        n["handshake"] += 1
        sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE, c)

    def close(c, code, reason):
        n[c.state] -= 1
        n["closed"] += 1
        c.code, c.reason, c.state = code, reason, "closed"
        c.closed_at = time.time()
        try:
            sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        c.sock.close()

    def on_readable(c):
        try:
            data = c.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            if c.state != "closed":
                close(c, 1006, "")
            return
        c.buf += data
        if c.state == "handshake":
            end = c.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head, c.buf = c.buf[:end], c.buf[end + 4:]
            want = base64.b64encode(hashlib.sha1(c.key + GUID).digest())
            if not head.startswith(b"HTTP/1.1 101") or want not in head:
                close(c, -1, head.split(b"\r\n")[0].decode("latin-1"))
                return
            c.state = "open"
            n["handshake"] -= 1
            n["open"] += 1
        for op, payload in c.frames():
            if op == 0x8:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                send(c, client_frame(0x8, payload[:2]))
                close(c, code, payload[2:].decode("utf-8", "replace"))
                return
            if op == 0x9:
                send(c, client_frame(0xA, payload))
            elif op == 0x1:
                m = json.loads(payload)
                if m.get("type") == "auth:refreshed" and not c.refreshed:
                    c.refreshed = True
                    n["refreshed"] += 1

    def pump(cond, extra=None):
        while not cond():
            if time.monotonic() > deadline:
                return False
            if extra:
                extra()
            for key, ev in sel.select(0.2):
                c = key.data
                if ev & selectors.EVENT_WRITE:
                    flush(c)
                if ev & selectors.EVENT_READ and c.state != "closed":
                    on_readable(c)
        return True

    # 1. open, at most 200 handshakes in flight
    nxt = [0]

    def feed():
        while nxt[0] < len(conns) and n["handshake"] < 200:
            start(conns[nxt[0]])
            nxt[0] += 1

    ok = pump(lambda: nxt[0] == len(conns) and n["handshake"] == 0, feed)
    opened = sum(1 for c in conns if c.state == "open")
    print(json.dumps({"event": "open", "n": opened}), flush=True)
    sys.stdin.readline()

    # 2. every token expires at the same second
    exp = math.ceil(time.time() + a.expire_in)
    for c in conns:
        if c.state == "open":
            tok = jwt(a.secret, {"sub": "mass-%d" % c.i, "exp": exp})
            send(c, client_frame(0x1, json.dumps({"type": "auth:refresh", "token": tok}).encode()))
    want = n["open"]
    ok = pump(lambda: n["refreshed"] >= want or n["closed"] > a.count - want) and ok
    refreshed = sum(1 for c in conns if c.refreshed)
    print(json.dumps({"event": "refreshed", "exp": exp, "n": refreshed}), flush=True)

    # 3. the server closes them all
    done = pump(lambda: n["closed"] == a.count)
    codes, reasons = {}, {}
    for c in conns:
        codes[str(c.code)] = codes.get(str(c.code), 0) + 1
        reasons[str(c.reason)] = reasons.get(str(c.reason), 0) + 1
    closed = [c.closed_at for c in conns if c.state == "closed"]
    res = {"opened": opened, "refreshed": refreshed, "codes": codes, "reasons": reasons,
           "exp": exp, "first_close": min(closed) if closed else None,
           "last_close": max(closed) if closed else None, "timed_out": not done}
    print(json.dumps(res), flush=True)
    return 0 if ok and done and opened == a.count and refreshed == a.count else 1


if __name__ == "__main__":
    sys.exit(main())
