#!/usr/bin/python3
"""Raw TCP WebSocket client (standard library only) for what real clients never send.

    raw_client.py --url ws://127.0.0.1:PORT/echo --case NAME [--timeout S]
                  [--max-size BYTES] [--slow-timeout S]
    raw_client.py --list                     # the case table as JSON lines
    raw_client.py --url U --case all         # every frames and http case
                                             # (or --case frames / http)

It performs the opening handshake itself (RFC 6455 section 4.1), then sends
hand-crafted frames or HTTP heads and checks the server's answer against the
EXPECTED table below. It prints one JSON line per case:
    {"case": ..., "ok": true|false, "expected": ..., "close_code": ..., ...}
and exits 0 iff every case it ran matched.

For a close-code case, "matched" means: the server sent a Close frame with exactly the
expected code, and then closed the TCP connection (after the client answered the Close
frame, as a well-behaved client does). For an HTTP case: the exact status (and header,
where one is required) and the server closing the connection after its answer.

The frame-size cases use --max-size, the server's configured max frame / message size
for the URL's app (spec/apps/echo_app.lua uses 2 MiB, the default here).

--extensions VALUE (repeatable: one Sec-WebSocket-Extensions header line each) is sent
in the opening handshake of every frame case; the 101's Sec-WebSocket-Extensions is
then reported as "extensions" (null when absent). The `deflate` group (permessage-
deflate, RFC 7692) offers "permessage-deflate; client_max_window_bits" unless
--extensions is given, and speaks the extension as the 101 agreed it (window sizes,
context takeover) with its own zlib streams; --threshold is the server's threshold.

The `tls` group talks raw TCP to a wss:// URL's port (no TLS): a silent client, half
a ClientHello, garbage, plain HTTP; it reports when (and whether) the server closed.
"""

import argparse
import base64
import hashlib
import json
import os
import random
import select
import socket
import ssl
import struct
import sys
import time
import urllib.parse
import zlib

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA

ANY_CLOSE_OR_EMPTY = "1000-or-empty"


class Timeout(Exception):
    pass


class Eof(Exception):
    pass


# --------------------------------------------------------------------------- framing

def build_frame(opcode, payload=b"", fin=True, rsv=0, mask=True, length=None):
    """One frame. `rsv` is a 3-bit value (4 = RSV1, 2 = RSV2, 1 = RSV3). `length`
    overrides the length field (payload is still sent as given)."""
    b0 = (0x80 if fin else 0) | ((rsv & 7) << 4) | (opcode & 0xF)
    n = len(payload) if length is None else length
    mbit = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", b0, mbit | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mbit | 127, n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + mask_bytes(payload, key)


def mask_bytes(data, key):
    if not data:
        return b""
    n = len(data)
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big")


def close_payload(code, reason=b""):
    return struct.pack("!H", code) + reason


class Conn:
    def __init__(self, host, port, timeout):
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.eof = False
        self.send_error = None

    # -- raw bytes
    def send(self, data):
        """Sends; a server that already closed is recorded, not raised."""
        try:
            self.sock.sendall(data)
            return True
        except OSError as e:  # EPIPE / ECONNRESET: the server closed first
            self.send_error = e.__class__.__name__
            return False

    def readable(self, wait=0.0):
        if self.buf or self.eof:
            return True
        r, _, _ = select.select([self.sock], [], [], wait)
        return bool(r)

    def _fill(self, deadline):
        if self.eof:
            raise Eof()
        left = deadline - time.monotonic()
        if left <= 0:
            raise Timeout()
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise Timeout()
        except ConnectionResetError:
            self.eof = True
            raise Eof()
        if not chunk:
            self.eof = True
            raise Eof()
        self.buf += chunk

    def read_exact(self, n, deadline):
        while len(self.buf) < n:
            self._fill(deadline)
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_until(self, marker, deadline, limit=1 << 20):
        while marker not in self.buf:
            if len(self.buf) > limit:
                raise ValueError("no %r within %d bytes" % (marker, limit))
            self._fill(deadline)
        i = self.buf.index(marker) + len(marker)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def read_to_eof(self, deadline):
        """All bytes until the server closes; raises Timeout if it does not."""
        while not self.eof:
            try:
                self._fill(deadline)
            except Eof:
                break
        out, self.buf = self.buf, b""
        return out

    # -- frames
    def read_frame(self, deadline):
        b0, b1 = self.read_exact(2, deadline)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self.read_exact(2, deadline))[0]
        elif n == 127:
            n = struct.unpack("!Q", self.read_exact(8, deadline))[0]
        masked = bool(b1 & 0x80)
        key = self.read_exact(4, deadline) if masked else None
        payload = self.read_exact(n, deadline)
        if masked:
            payload = mask_bytes(payload, key)
        return {"fin": bool(b0 & 0x80), "rsv": (b0 >> 4) & 7, "opcode": b0 & 0xF,
                "payload": payload, "masked": masked}

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def parse_url(url):
    u = urllib.parse.urlsplit(url)
    if u.scheme not in ("ws", "http", "wss", "https"):
        raise SystemExit("only ws:// URLs are supported (wss:// for the tls group): %s" % url)
    path = u.path or "/"
    if u.query:
        path += "?" + u.query
    return u.hostname, u.port or (443 if u.scheme in ("wss", "https") else 80), path


def upgrade_head(host, port, path, extra=None, version="13", key=None, method="GET"):
    if key is None:
        key = base64.b64encode(os.urandom(16)).decode()
    lines = ["%s %s HTTP/1.1" % (method, path), "Host: %s:%d" % (host, port),
             "Upgrade: websocket", "Connection: Upgrade"]
    if key is not False:
        lines.append("Sec-WebSocket-Key: %s" % key)
    if version is not None:
        lines.append("Sec-WebSocket-Version: %s" % version)
    lines += extra or []
    return ("\r\n".join(lines) + "\r\n\r\n").encode(), key


def parse_http_response(raw):
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    status = int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else None
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    return status, headers, body


def dechunk(body):
    out = b""
    while body:
        line, _, rest = body.partition(b"\r\n")
        n = int(line.split(b";")[0].strip() or b"0", 16)
        if n == 0:
            break
        out += rest[:n]
        body = rest[n + 2:]
    return out


def handshake(ctx):
    host, port, path = ctx.host, ctx.port, ctx.path
    conn = Conn(host, port, ctx.timeout)
    offers = getattr(ctx, "offers", None) or []
    req, key = upgrade_head(host, port, path,
                            extra=["Sec-WebSocket-Extensions: %s" % o for o in offers])
    conn.send(req)
    deadline = time.monotonic() + ctx.timeout
    head = conn.read_until(b"\r\n\r\n", deadline)
    status, headers, _ = parse_http_response(head)
    if status != 101:
        raise RuntimeError("handshake answered %s" % status)
    want = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
    if headers.get("sec-websocket-accept") != want:
        raise RuntimeError("bad Sec-WebSocket-Accept %r" % headers.get("sec-websocket-accept"))
    conn.ext_header = headers.get("sec-websocket-extensions")
    return conn


# ------------------------------------------------------------------ result helpers

def await_close(conn, ctx, res, deadline=None, reply=True):
    """Reads frames until the server's Close frame; records it in res, answers it
    (unless reply is False) and waits for the server to close TCP."""
    if deadline is None:
        deadline = time.monotonic() + ctx.timeout
    others = []
    try:
        while True:
            f = conn.read_frame(deadline)
            if f["masked"]:
                res["server_frame_masked"] = True
            if f["opcode"] == OP_CLOSE:
                p = f["payload"]
                res["close_payload_len"] = len(p)
                if len(p) >= 2:
                    res["close_code"] = struct.unpack("!H", p[:2])[0]
                    res["close_reason"] = p[2:].decode("utf-8", "replace")
                else:
                    res["close_code"] = None
                res["close_elapsed"] = round(time.monotonic() - ctx.t0, 3)
                break
            others.append({"opcode": f["opcode"], "len": len(f["payload"])})
            if len(others) > 16:
                break
    except Timeout:
        res["error"] = "timeout waiting for a close frame"
    except Eof:
        res["error"] = "TCP closed without a close frame"
    if others:
        res["frames_before_close"] = others[:16]
    if "close_payload_len" not in res:
        res["tcp_closed"] = conn.eof
        return
    if reply:
        code = res.get("close_code")
        conn.send(build_frame(OP_CLOSE, close_payload(code) if code else b""))
    try:
        conn.read_to_eof(time.monotonic() + ctx.timeout)
        res["tcp_closed"] = True
    except Timeout:
        res["tcp_closed"] = False


def check_close(res, expected):
    if expected == ANY_CLOSE_OR_EMPTY:
        code_ok = "close_payload_len" in res and res.get("close_code") in (None, 1000)
    else:
        code_ok = res.get("close_code") == expected and "close_payload_len" in res
    return code_ok and res.get("tcp_closed") is True


def send_until_closed(conn, chunks):
    """Sends the chunks one by one, stopping as soon as the server has sent
    something (a close frame) or closed. Returns the number of bytes sent."""
    sent = 0
    for c in chunks:
        if conn.readable(0):
            break
        if not conn.send(c):
            break
        sent += len(c)
    return sent


# ------------------------------------------------------------------- frame cases

def simple_frames(*frames):
    """A case that sends the given (already built) frames and expects a close."""
    def run(conn, ctx, res):
        for f in frames:
            conn.send(f() if callable(f) else f)
    return run


def case_utf8_fail_fast(conn, ctx, res):
    # First fragment holds a sequence that can never become valid UTF-8 (a code
    # point above U+10FFFF): a fail-fast server closes before the final fragment.
    conn.send(build_frame(OP_TEXT, b"\xce\xba\xe1\xbd\xb9\xf4\x90\x80\x80", fin=False))
    if conn.readable(ctx.fail_fast_wait):
        res["closed_before_final_fragment"] = True
    else:
        res["closed_before_final_fragment"] = False
        conn.send(build_frame(OP_CONT, b"edited", fin=True))


def case_huge_length(length):
    def run(conn, ctx, res):
        # Header only: the claimed payload is never sent, so a server that waits
        # for the data instead of refusing the length times out here.
        conn.send(build_frame(OP_BINARY, b"", length=length))
    return run


def case_frame_over_max(conn, ctx, res):
    n = ctx.max_size + 1
    key = os.urandom(4)
    head = struct.pack("!BBQ", 0x80 | OP_BINARY, 0x80 | 127, n) + key
    conn.send(head)
    chunk = mask_bytes(b"x" * 65536, key)  # key repeats every 4 bytes, 65536 % 4 == 0
    chunks = [chunk] * (n // 65536) + [mask_bytes(b"x" * (n % 65536), key)]
    res["payload_bytes_sent"] = send_until_closed(conn, chunks)


def case_message_over_max(conn, ctx, res):
    # Every frame is at most a quarter of the limit; only their sum is too big.
    part = max(1, ctx.max_size // 4)
    total = ctx.max_size + 1
    frames, left, first = [], total, True
    while left > 0:
        n = min(part, left)
        left -= n
        frames.append(build_frame(OP_BINARY if first else OP_CONT, b"y" * n, fin=(left == 0)))
        first = False
    res["frames"] = len(frames)
    res["payload_bytes_sent"] = send_until_closed(conn, frames)


def expect_replies(frames, *want):
    """Sends frames, expects exactly the frames `want` ((opcode, payload) pairs, in
    order, each with FIN set), then a clean 1000 close handshake."""
    def run(conn, ctx, res):
        for f in frames:
            conn.send(f)
        deadline = time.monotonic() + ctx.timeout
        good = True
        got = []
        for w_op, w_payload in want:
            try:
                f = conn.read_frame(deadline)
            except (Timeout, Eof) as e:
                res["error"] = "no reply: %s" % e.__class__.__name__
                res["replies"] = got
                return False
            got.append({"opcode": f["opcode"], "len": len(f["payload"])})
            if f["opcode"] == OP_CLOSE and len(f["payload"]) >= 2:
                res["close_code"] = struct.unpack("!H", f["payload"][:2])[0]
                res["replies"] = got
                return False
            good = good and f["opcode"] == w_op and f["payload"] == w_payload and f["fin"]
        res["replies"] = got
        # finish with a clean close handshake: 1000 must come back
        conn.send(build_frame(OP_CLOSE, close_payload(1000)))
        await_close(conn, ctx, res)
        return good and res.get("close_code") == 1000 and res.get("tcp_closed") is True
    return run


def case_hold_silent(conn, ctx, res):
    """For shutdown tests: announce the connection, then wait for the server's close
    frame without ever answering it (the server must give up by its drain timeout)."""
    print(json.dumps({"event": "connected"}), flush=True)
    await_close(conn, ctx, res, deadline=time.monotonic() + ctx.hold_seconds, reply=False)
    if "close_payload_len" in res and not res.get("tcp_closed"):
        try:
            conn.read_to_eof(time.monotonic() + ctx.hold_seconds)
            res["tcp_closed"] = True
        except Timeout:
            pass


def case_no_pong(conn, ctx, res):
    """Heartbeat: never answer the server's pings; the server must close the
    connection (any code) after its heartbeat timeout."""
    deadline = time.monotonic() + ctx.hold_seconds
    pings = 0
    try:
        while True:
            f = conn.read_frame(deadline)
            if f["opcode"] == OP_PING:
                pings += 1
                if pings == 1:
                    res["first_ping_after"] = round(time.monotonic() - ctx.t0, 3)
                continue
            if f["opcode"] == OP_CLOSE:
                p = f["payload"]
                res["close_payload_len"] = len(p)
                res["close_code"] = struct.unpack("!H", p[:2])[0] if len(p) >= 2 else None
                res["close_reason"] = p[2:].decode("utf-8", "replace")
                res["close_elapsed"] = round(time.monotonic() - ctx.t0, 3)
                break
    except Timeout:
        res["error"] = "still open after %ss" % ctx.hold_seconds
    except Eof:
        res["tcp_closed_without_close_frame"] = True
    res["pings_seen"] = pings
    if "close_payload_len" in res:
        conn.send(build_frame(OP_CLOSE, close_payload(res["close_code"] or 1000)))
        try:
            conn.read_to_eof(time.monotonic() + ctx.timeout)
            res["tcp_closed"] = True
        except Timeout:
            res["tcp_closed"] = False
    else:
        res["tcp_closed"] = conn.eof
    return pings >= 1 and res["tcp_closed"] is True


def read_until_text(conn, ctx, res, prefix):
    """Reads frames (counting binary ones) until a text frame starting with prefix,
    a close frame, or the timeout. Returns the text or None."""
    deadline = time.monotonic() + ctx.timeout
    res.setdefault("binary_frames", 0)
    while True:
        try:
            f = conn.read_frame(deadline)
        except (Timeout, Eof) as e:
            res["error"] = "%s while reading the flood" % e.__class__.__name__
            res["tcp_closed"] = conn.eof
            return None
        if f["opcode"] == OP_BINARY:
            res["binary_frames"] += 1
        elif f["opcode"] == OP_CLOSE:
            p = f["payload"]
            res["close_payload_len"] = len(p)
            res["close_code"] = struct.unpack("!H", p[:2])[0] if len(p) >= 2 else None
            res["close_reason"] = p[2:].decode("utf-8", "replace")
            return None
        elif f["opcode"] == OP_TEXT and f["payload"].decode("utf-8", "replace").startswith(prefix):
            return f["payload"].decode()


def case_backpressure_close(conn, ctx, res):
    """Ask for a flood and do not read: the server must close with 1008 once more
    than max_buffered bytes are queued. The frames queued before it are read first."""
    conn.send(build_frame(OP_TEXT, b"flood:%d" % ctx.flood))
    time.sleep(ctx.stall)
    read_until_text(conn, ctx, res, "\x00never")
    if "close_payload_len" in res:
        conn.send(build_frame(OP_CLOSE, close_payload(res["close_code"] or 1000)))
        try:
            conn.read_to_eof(time.monotonic() + ctx.timeout)
            res["tcp_closed"] = True
        except Timeout:
            res["tcp_closed"] = False
    return res.get("close_code") == 1008 and res.get("tcp_closed") is True


def case_backpressure_drop(conn, ctx, res):
    """Ask for a flood and do not read: with the "drop" policy some sends return
    nil, "backpressure", those messages never arrive, every other one does, and the
    connection stays open."""
    conn.send(build_frame(OP_TEXT, b"flood:%d" % ctx.flood))
    time.sleep(ctx.stall)
    conn.send(build_frame(OP_TEXT, b"report"))
    report = read_until_text(conn, ctx, res, "sent=")
    if report is None:
        return False
    res["report"] = report
    counts = dict(kv.split("=", 1) for kv in report.split(","))
    sent, dropped = int(counts["sent"]), int(counts["backpressure"])
    res["sent"], res["dropped"], res["other"] = sent, dropped, int(counts["other"])
    conn.send(build_frame(OP_CLOSE, close_payload(1000)))
    await_close(conn, ctx, res)
    return (dropped > 0 and sent + dropped == ctx.flood and res["binary_frames"] == sent
            and res["other"] == 0 and res.get("close_code") == 1000)


# -------------------------------------------------------------------- HTTP cases

def http_case(build, want_status, want_header=None, json_status=None):
    def run(ctx, res):
        conn = Conn(ctx.host, ctx.port, ctx.timeout)
        try:
            conn.send(build(ctx))
            deadline = time.monotonic() + ctx.timeout
            try:
                raw = conn.read_to_eof(deadline)
                res["tcp_closed"] = True
            except Timeout:
                raw = conn.buf
                res["tcp_closed"] = False
            if not raw:
                res["error"] = "no response"
                return False
            status, headers, body = parse_http_response(raw)
            if "chunked" in headers.get("transfer-encoding", "").lower():
                body = dechunk(body)
            res["http_status"] = status
            ok = status == want_status and res["tcp_closed"]
            if want_header:
                name, value = want_header
                res["header_" + name.lower()] = headers.get(name.lower())
                ok = ok and headers.get(name.lower()) == value
            if json_status is not None:
                try:
                    doc = json.loads(body.decode())
                    res["json"] = doc
                    ok = ok and doc.get("status") == json_status
                except ValueError:
                    res["error"] = "body is not JSON: %r" % body[:200]
                    ok = False
            return ok
        finally:
            conn.close()
    return run


def req_upgrade(**kw):
    def build(ctx):
        path = kw.get("path", ctx.path)
        args = {k: v for k, v in kw.items() if k != "path"}
        return upgrade_head(ctx.host, ctx.port, path, **args)[0]
    return build


def req_plain(path=None, method="GET"):
    def build(ctx):
        return ("%s %s HTTP/1.1\r\nHost: %s:%d\r\n\r\n"
                % (method, path or ctx.path, ctx.host, ctx.port)).encode()
    return build


def req_raw(fn):
    return fn


def http_slow_head(ctx, res):
    conn = Conn(ctx.host, ctx.port, ctx.timeout)
    try:
        conn.send(("GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                   % (ctx.path, ctx.host, ctx.port)).encode())
        try:
            raw = conn.read_to_eof(time.monotonic() + ctx.slow_timeout)
            res["tcp_closed"] = True
        except Timeout:
            raw = conn.buf
            res["tcp_closed"] = False
        res["closed_after"] = round(time.monotonic() - ctx.t0, 3)
        if raw:
            res["http_status"] = parse_http_response(raw)[0]
        # closed, with at most a 408 before
        return res["tcp_closed"] and res.get("http_status") in (None, 408)
    finally:
        conn.close()


# ------------------------------------------------------------- permessage-deflate

def parse_extensions(value):
    """A Sec-WebSocket-Extensions value -> [(name, {param: value-or-None})]."""
    out = []
    for ext in (value or "").split(","):
        parts = [x.strip() for x in ext.split(";")]
        if not parts[0]:
            continue
        params = {}
        for prm in parts[1:]:
            k, eq, v = prm.partition("=")
            params[k.strip().lower()] = v.strip().strip('"') if eq else None
        out.append((parts[0].lower(), params))
    return out


class Pmd:
    """The client side of permessage-deflate as the server's 101 agreed it."""

    def __init__(self, header, offers=()):
        agreed = [p for n, p in parse_extensions(header) if n == "permessage-deflate"]
        if not agreed:
            raise RuntimeError("permessage-deflate not agreed (101 extensions: %r)" % header)
        p = agreed[0]
        self.params = p
        self.server_nct = "server_no_context_takeover" in p
        self.client_nct = "client_no_context_takeover" in p
        self.server_bits = int(p.get("server_max_window_bits") or 15)
        self.client_bits = int(p.get("client_max_window_bits") or 15)
        # a window we offered is a promise too (whichever offer was accepted)
        for _, op in parse_extensions(", ".join(offers)):
            v = op.get("client_max_window_bits")
            if v and v.isdigit() and 8 <= int(v) <= 15:
                self.client_bits = min(self.client_bits, int(v))
        self._deflate = None
        self._inflate = None

    def compress(self, data):
        if self._deflate is None or self.client_nct:
            # zlib cannot deflate raw with 8; at 9 it never refers back more than 250
            self._deflate = zlib.compressobj(6, zlib.DEFLATED, -max(9, self.client_bits))
        out = self._deflate.compress(data) + self._deflate.flush(zlib.Z_SYNC_FLUSH)
        assert out.endswith(b"\x00\x00\xff\xff")
        return out[:-4]

    def decompress(self, data):
        """Inflates with exactly the agreed server window: a server that refers back
        further than it may makes this raise."""
        if self._inflate is None or self.server_nct:
            self._inflate = zlib.decompressobj(-self.server_bits)
        return self._inflate.decompress(data + b"\x00\x00\xff\xff")


def compressible_text(size, seed=0):
    words = ("edgews", "deflate", "window", "context", "takeover", "frame", "socket")
    out, i = [], seed
    n = 0
    while n < size:
        w = "%s-%d " % (words[i % len(words)], i % 97)
        out.append(w)
        n += len(w)
        i += 1
    return "".join(out).encode()[:size]


def read_message(conn, deadline, res):
    """The next data message: (opcode, wire payload, rsv1, frames, pongs seen).
    Returns None after a close frame (recorded in res)."""
    pongs = []
    parts, first = [], None
    while True:
        f = conn.read_frame(deadline)
        if f["opcode"] == OP_PONG:
            pongs.append(f["payload"])
            continue
        if f["opcode"] == OP_PING:
            continue
        if f["opcode"] == OP_CLOSE:
            p = f["payload"]
            res["close_payload_len"] = len(p)
            res["close_code"] = struct.unpack("!H", p[:2])[0] if len(p) >= 2 else None
            res["close_reason"] = p[2:].decode("utf-8", "replace")
            return None
        if first is None:
            first = f
        elif f["rsv"] & 4:
            res["continuation_with_rsv1"] = True
        parts.append(f["payload"])
        if f["fin"]:
            return (first["opcode"], b"".join(parts), bool(first["rsv"] & 4), len(parts), pongs)


def pmd_roundtrip(conn, ctx, res, pmd, label, data, opcode, compress, results):
    """Sends one message (compressed or not), reads the echo, checks it."""
    payload = pmd.compress(data) if compress else data
    conn.send(build_frame(opcode, payload, rsv=4 if compress else 0))
    m = read_message(conn, time.monotonic() + ctx.timeout, res)
    r = {"label": label, "size": len(data), "sent_rsv1": compress, "sent_len": len(payload)}
    results.append(r)
    if m is None:
        r["ok"] = False
        r["error"] = "closed instead of an echo"
        return False
    op, wire, rsv1, nframes, _ = m
    r["reply_rsv1"], r["reply_len"], r["reply_frames"] = rsv1, len(wire), nframes
    try:
        got = pmd.decompress(wire) if rsv1 else wire
    except zlib.error as e:
        r["ok"] = False
        r["error"] = "reply does not inflate with the agreed window: %s" % e
        return False
    r["ok"] = got == data and op == opcode
    if not r["ok"]:
        r["error"] = "echo differs (opcode %d, %d bytes)" % (op, len(got))
    return r["ok"]


def case_pmd_echo(conn, ctx, res):
    """Echo through the extension: short and long, compressed and not, text and
    binary; records each reply's RSV1 and wire length (the same 4 KiB text twice:
    with server context takeover the second reply is much shorter)."""
    pmd = Pmd(conn.ext_header, ctx.offers)
    t = ctx.threshold
    repeat = compressible_text(4096, 3)
    plan = [
        ("short_compressed", b"hello pmd!", OP_TEXT, True),
        ("below_threshold", compressible_text(max(0, t - 1), 1), OP_TEXT, False),
        ("at_threshold", compressible_text(t, 2), OP_TEXT, False),
        ("text_4k_compressed", repeat, OP_TEXT, True),
        ("text_4k_again_plain", repeat, OP_TEXT, False),
        ("binary_100k_compressed", compressible_text(100000, 5), OP_BINARY, True),
        ("binary_random_1k", os.urandom(1024), OP_BINARY, False),
        ("empty_compressed", b"", OP_TEXT, True),
        ("text_1m_compressed", compressible_text(1 << 20, 7), OP_TEXT, True),
    ]
    results = []
    ok = True
    for label, data, op, comp in plan:
        ok = pmd_roundtrip(conn, ctx, res, pmd, label, data, op, comp, results) and ok
        if "close_payload_len" in res:
            break
    res["results"] = results
    res["agreed"] = pmd.params
    if "close_payload_len" not in res:
        conn.send(build_frame(OP_CLOSE, close_payload(1000)))
        await_close(conn, ctx, res)
    return ok and res.get("close_code") == 1000 and res.get("tcp_closed") is True


def case_pmd_negotiate(conn, ctx, res):
    """Whatever the 101 agreed: an uncompressed 200-byte text message must be echoed
    (compressed or not, as agreed), then a clean close."""
    data = compressible_text(200, 11)
    conn.send(build_frame(OP_TEXT, data))
    m = read_message(conn, time.monotonic() + ctx.timeout, res)
    if m is None:
        res["error"] = "closed instead of an echo"
        return False
    op, wire, rsv1, _, _ = m
    res["reply_rsv1"] = rsv1
    if rsv1:
        if not conn.ext_header:
            res["error"] = "RSV1 set without an agreed extension"
            return False
        wire = Pmd(conn.ext_header, ctx.offers).decompress(wire)
    good = op == OP_TEXT and wire == data
    conn.send(build_frame(OP_CLOSE, close_payload(1000)))
    await_close(conn, ctx, res)
    return good and res.get("close_code") == 1000 and res.get("tcp_closed") is True


def case_pmd_fragmented(conn, ctx, res):
    """A compressed 100 KB text message in 4 frames: RSV1 on the first only, a ping
    between two of them; expects the pong and the echo."""
    pmd = Pmd(conn.ext_header, ctx.offers)
    data = compressible_text(100000, 13)
    comp = pmd.compress(data)
    q = max(1, len(comp) // 4)
    cuts = [comp[:q], comp[q:2 * q], comp[2 * q:3 * q], comp[3 * q:]]
    res["compressed_len"] = len(comp)
    for i, part in enumerate(cuts):
        conn.send(build_frame(OP_TEXT if i == 0 else OP_CONT, part, fin=(i == 3),
                              rsv=4 if i == 0 else 0))
        if i == 1:
            conn.send(build_frame(OP_PING, b"mid-pmd"))
    m = read_message(conn, time.monotonic() + ctx.timeout, res)
    if m is None:
        res["error"] = "closed instead of an echo"
        return False
    op, wire, rsv1, nframes, pongs = m
    if not pongs:  # the pong may come after the echo
        try:
            f = conn.read_frame(time.monotonic() + ctx.timeout)
            if f["opcode"] == OP_PONG:
                pongs.append(f["payload"])
        except (Timeout, Eof):
            pass
    got = pmd.decompress(wire) if rsv1 else wire
    res.update(reply_rsv1=rsv1, reply_frames=nframes, pong=[p.decode() for p in pongs])
    good = op == OP_TEXT and got == data and pongs == [b"mid-pmd"]
    conn.send(build_frame(OP_CLOSE, close_payload(1000)))
    await_close(conn, ctx, res)
    return good and res.get("close_code") == 1000 and res.get("tcp_closed") is True


def case_pmd_window_overreach(conn, ctx, res):
    """A client that agreed a small client_max_window_bits (offer it with
    --extensions) and breaks that promise: a 600-byte binary message whose second
    half is one back reference 300 bytes away, sent in one frame, then in two frames
    cut where the reference starts. The verdict must not depend on the split: both
    are echoed (the server inflates with a 32 KiB window). Records each variant."""
    pmd = Pmd(conn.ext_header, ctx.offers)
    rnd = random.Random(7)
    blk = bytes(rnd.getrandbits(8) for _ in range(300))
    data = blk + blk
    comp = zlib.compressobj(6, zlib.DEFLATED, -15)
    part1 = comp.compress(blk) + comp.flush(zlib.Z_SYNC_FLUSH)
    part2 = comp.compress(blk) + comp.flush(zlib.Z_SYNC_FLUSH)
    assert part2.endswith(b"\x00\x00\xff\xff") and len(part2) < 24
    part2 = part2[:-4]
    res["agreed"] = pmd.params
    # it does break a 256-byte window: zlib at 8 bits, one output byte per call (so
    # that it checks every distance against its window alone), refuses it
    strict = zlib.decompressobj(-8)
    try:
        buf = part1 + part2 + b"\x00\x00\xff\xff"
        while buf:
            strict.decompress(buf, 1)
            buf = strict.unconsumed_tail
        res["breaks_window"] = False
    except zlib.error:
        res["breaks_window"] = True
    variants = [
        ("one_frame", [build_frame(OP_BINARY, part1 + part2, rsv=4)]),
        ("two_frames", [build_frame(OP_BINARY, part1, fin=False, rsv=4),
                        build_frame(OP_CONT, part2)]),
    ]
    results = []
    for label, frames in variants:
        conn.send(b"".join(frames))
        m = read_message(conn, time.monotonic() + ctx.timeout, res)
        r = {"label": label}
        results.append(r)
        if m is None:
            r["ok"] = False
            r["error"] = "closed %s instead of an echo" % res.get("close_code")
            break
        op, wire, rsv1, _, _ = m
        got = pmd.decompress(wire) if rsv1 else wire
        r["ok"] = op == OP_BINARY and got == data
    res["results"] = results
    if "close_payload_len" not in res:
        conn.send(build_frame(OP_CLOSE, close_payload(1000)))
        await_close(conn, ctx, res)
    return (res["breaks_window"] and len(results) == 2 and all(r["ok"] for r in results)
            and res.get("close_code") == 1000 and res.get("tcp_closed") is True)


def deflate_bomb(mib):
    """mib MiB of zeros, raw DEFLATE, as one message payload (tail 00 00 ff ff
    removed)."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = bytes(1 << 20)
    out = [c.compress(zeros) for _ in range(mib)]
    out.append(c.flush(zlib.Z_SYNC_FLUSH))
    return b"".join(out)[:-4]


def case_pmd_bomb(conn, ctx, res):
    bomb = deflate_bomb(ctx.bomb_mib)
    res["bomb_inflated"] = ctx.bomb_mib << 20
    res["bomb_compressed"] = len(bomb)
    conn.send(build_frame(OP_BINARY, bomb, rsv=4))


def case_pmd_bomb_fragmented(conn, ctx, res):
    """The bomb as a fragmented message: 8 frames, each small (RSV1 on the first)."""
    bomb = deflate_bomb(ctx.bomb_mib)
    res["bomb_inflated"] = ctx.bomb_mib << 20
    res["bomb_compressed"] = len(bomb)
    step = -(-len(bomb) // 8)
    parts = [bomb[i:i + step] for i in range(0, len(bomb), step)]
    frames = [build_frame(OP_BINARY if i == 0 else OP_CONT, part, fin=(i == len(parts) - 1),
                          rsv=4 if i == 0 else 0) for i, part in enumerate(parts)]
    res["frames"] = len(frames)
    res["bytes_sent"] = send_until_closed(conn, frames)


def case_pmd_final_blocks(conn, ctx, res):
    """A compressed message made of --final-blocks empty DEFLATE blocks with BFINAL set
    ("03 00" each, in 64 KiB frames), while a bystander connection to the same server
    pings every 20 ms. Records how long until the server's close and the bystander's
    slowest pong (res["bystander_max_rtt"], seconds)."""
    import threading
    body = b"\x03\x00" * ctx.final_blocks
    step = 65536
    parts = [body[i:i + step] for i in range(0, len(body), step)]
    frames = [build_frame(OP_BINARY if i == 0 else OP_CONT, part, fin=(i == len(parts) - 1),
                          rsv=4 if i == 0 else 0) for i, part in enumerate(parts)]
    saved = ctx.offers
    ctx.offers = []
    by = handshake(ctx)  # no extension: a plain bystander
    ctx.offers = saved
    rtts, stop = [], threading.Event()

    def pinger():
        k = 0
        while not stop.is_set():
            payload = b"b%d" % k
            k += 1
            t = time.monotonic()
            by.send(build_frame(OP_PING, payload))
            deadline = t + 10
            while True:
                f = by.read_frame(deadline)
                if f["opcode"] == OP_PONG and f["payload"] == payload:
                    break
            rtts.append(time.monotonic() - t)
            stop.wait(0.02)

    th = threading.Thread(target=pinger, daemon=True)
    th.start()
    try:
        t0 = time.monotonic()
        res["bytes_sent"] = send_until_closed(conn, frames)
        await_close(conn, ctx, res, deadline=t0 + ctx.slow_timeout)
        res["close_after"] = round(time.monotonic() - t0, 3)
        time.sleep(0.1)  # a few pings after the close too
    finally:
        stop.set()
        th.join(12)
        by.close()
    res["bystander_pings"] = len(rtts)
    res["bystander_max_rtt"] = round(max(rtts), 3) if rtts else None


def pmd_frames(build):
    """Frames that need the agreed extension (build(pmd) -> list of frames)."""
    def run(conn, ctx, res):
        pmd = Pmd(conn.ext_header, ctx.offers)
        for f in build(pmd):
            conn.send(f)
    return run


# ----------------------------------------------------------- TLS port, raw TCP

def client_hello(host):
    """The bytes of a real TLS ClientHello (OpenSSL's, as Python's ssl sends it)."""
    c = ssl.create_default_context()
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = c.wrap_bio(inc, out, server_hostname=host)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def tls_raw_case(build, wait="slow"):
    """Connects to the TLS port with plain TCP, sends build(ctx) (nothing when None),
    then waits for the server to close (up to --slow-timeout for wait="slow", else
    --timeout). Records what the server sent (a TLS alert is fine) and when it
    closed."""
    def run(ctx, res):
        conn = Conn(ctx.host, ctx.port, ctx.timeout)
        try:
            data = build(ctx) if build else b""
            if data:
                res["sent_len"] = len(data)
                conn.send(data)
            limit = ctx.slow_timeout if wait == "slow" else ctx.timeout
            try:
                got = conn.read_to_eof(time.monotonic() + limit)
                res["tcp_closed"] = True
            except Timeout:
                got = conn.buf
                res["tcp_closed"] = False
            res["closed_after"] = round(time.monotonic() - ctx.t0, 3)
            res["received_len"] = len(got)
            if got:
                res["received_head"] = got[:16].hex()
                # content type 21 = alert (RFC 5246 section 6.2.1)
                res["tls_alert"] = got[0] == 21
                res["http_response"] = got.startswith(b"HTTP/")
            return res["tcp_closed"]
        finally:
            conn.close()
    return run


def tls_slow_then_head(ctx, res):
    """A real TLS handshake (certificate not checked) whose ClientHello arrives in two
    halves --tls-delay seconds apart; after the handshake, an HTTP head that never
    ends. Records when the TLS handshake completed and when the server closed: when
    the TLS handshake counts against the handshake timeout, the close comes at the
    timeout measured from connect, not from the end of TLS."""
    sock = socket.create_connection((ctx.host, ctx.port), timeout=ctx.timeout)
    try:
        c = ssl.create_default_context()
        c.check_hostname = False
        c.verify_mode = ssl.CERT_NONE
        inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = c.wrap_bio(inc, out, server_hostname=ctx.host)
        try:
            obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        hello = out.read()
        sock.sendall(hello[:len(hello) // 2])
        time.sleep(ctx.tls_delay)
        sock.sendall(hello[len(hello) // 2:])
        deadline = time.monotonic() + ctx.timeout
        while True:
            try:
                obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                pending = out.read()
                if pending:
                    sock.sendall(pending)
                sock.settimeout(max(0.01, deadline - time.monotonic()))
                chunk = sock.recv(65536)
                if not chunk:
                    res["error"] = "closed during the TLS handshake"
                    res["closed_after"] = round(time.monotonic() - ctx.t0, 3)
                    return False
                inc.write(chunk)
        pending = out.read()
        if pending:
            sock.sendall(pending)
        res["tls_done_after"] = round(time.monotonic() - ctx.t0, 3)
        res["tls_version"] = obj.version()
        obj.write(("GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                   % (ctx.path, ctx.host, ctx.port)).encode())
        sock.sendall(out.read())
        end = time.monotonic() + ctx.slow_timeout
        res["tcp_closed"] = False
        while time.monotonic() < end:
            sock.settimeout(max(0.01, end - time.monotonic()))
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                res["tcp_closed"] = True
                break
        res["closed_after"] = round(time.monotonic() - ctx.t0, 3)
        return res["tcp_closed"]
    finally:
        sock.close()


# ------------------------------------------------------------------- case table

def F(op, payload=b"", **kw):
    return lambda: build_frame(op, payload, **kw)


# name: (group, expected, description, runner)
#   frames cases: runner(conn, ctx, res) after a successful handshake; a runner that
#   returns a bool decides itself, otherwise the server's close code must equal
#   `expected` (then the TCP close is awaited).
#   http cases: runner(ctx, res) -> bool.
CASES = {}


def case(name, group, expected, desc, runner):
    CASES[name] = (group, expected, desc, runner)


case("unmasked", "frames", 1002, "text frame without mask (5.1)",
     simple_frames(F(OP_TEXT, b"hello", mask=False)))
case("rsv1", "frames", 1002, "RSV1 set, no extension negotiated (5.2)",
     simple_frames(F(OP_TEXT, b"hello", rsv=4)))
case("rsv2", "frames", 1002, "RSV2 set (5.2)", simple_frames(F(OP_TEXT, b"hello", rsv=2)))
case("rsv3", "frames", 1002, "RSV3 set (5.2)", simple_frames(F(OP_TEXT, b"hello", rsv=1)))
for _op in (0x3, 0x7, 0xB, 0xF):
    case("opcode_%x" % _op, "frames", 1002, "reserved opcode 0x%X (5.2)" % _op,
         simple_frames(F(_op, b"x")))
case("ping_126", "frames", 1002, "ping with a 126-byte payload (5.5)",
     simple_frames(F(OP_PING, b"p" * 126)))
case("close_126", "frames", 1002, "close with a 126-byte payload (5.5)",
     simple_frames(F(OP_CLOSE, close_payload(1000, b"r" * 124))))
case("ping_fragmented", "frames", 1002, "ping with FIN=0 (5.5)",
     simple_frames(F(OP_PING, b"a", fin=False), F(OP_CONT, b"b")))
case("continuation_without_start", "frames", 1002, "continuation with no message open (5.4)",
     simple_frames(F(OP_CONT, b"orphan")))
case("text_while_fragmented", "frames", 1002, "new text frame inside a fragmented message (5.4)",
     simple_frames(F(OP_TEXT, b"first", fin=False), F(OP_TEXT, b"second")))
case("binary_while_fragmented", "frames", 1002,
     "new binary frame inside a fragmented message (5.4)",
     simple_frames(F(OP_BINARY, b"first", fin=False), F(OP_BINARY, b"second")))
for _name, _bytes in (("overlong", b"ab\xc0\xaf"), ("surrogate", b"ab\xed\xa0\x80cd"),
                      ("above_max", b"\xf4\x90\x80\x80"), ("lone_continuation", b"a\x80b"),
                      ("truncated", b"ab\xe2\x82"), ("ff_byte", b"\xff")):
    case("utf8_" + _name, "frames", 1007, "invalid UTF-8 in a text message: %s (8.1)" % _name,
         simple_frames(F(OP_TEXT, _bytes)))
case("utf8_split_codepoint", "frames", 1007,
     "invalid UTF-8 only visible across a fragment boundary (8.1, 5.4)",
     simple_frames(F(OP_TEXT, b"ab\xc3", fin=False), F(OP_CONT, b"(", fin=True)))
case("utf8_fail_fast", "frames", 1007,
     "invalid UTF-8 in the first fragment: closed before the final fragment (8.1)",
     case_utf8_fail_fast)
case("utf8_valid_split", "frames", "echo",
     "valid code point split across fragments is echoed (5.4, 8.1)",
     expect_replies([build_frame(OP_TEXT, b"\xce", fin=False),
                     build_frame(OP_CONT, b"\xba", fin=True)], (OP_TEXT, b"\xce\xba")))
case("ping_pong", "frames", "pong", "ping is answered by a pong with the same payload (5.5.2)",
     expect_replies([build_frame(OP_PING, b"hello")], (OP_PONG, b"hello")))
case("ping_125", "frames", "pong", "ping with the maximal 125-byte payload (5.5)",
     expect_replies([build_frame(OP_PING, b"q" * 125)], (OP_PONG, b"q" * 125)))
case("ping_between_fragments", "frames", "pong+echo",
     "control frame between fragments is answered (5.4); the message then completes",
     expect_replies([build_frame(OP_TEXT, b"Hello, ", fin=False),
                     build_frame(OP_PING, b"mid"),
                     build_frame(OP_CONT, b"World", fin=True)],
                    (OP_PONG, b"mid"), (OP_TEXT, b"Hello, World")))
case("close_reason_invalid_utf8", "frames", 1007, "close reason is not UTF-8 (5.5.1, 8.1)",
     simple_frames(F(OP_CLOSE, close_payload(1000, b"\xff\xfe"))))
case("close_1byte", "frames", 1002, "close payload of one byte (5.5.1)",
     simple_frames(F(OP_CLOSE, b"\x03")))
for _code in (0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535):
    case("close_code_%d" % _code, "frames", 1002, "invalid close code %d (7.4)" % _code,
         simple_frames(F(OP_CLOSE, close_payload(_code))))
for _code in (1000, 1001, 1003, 1011, 3000, 4000, 4999):
    case("close_valid_%d" % _code, "frames", _code, "valid close code %d is echoed (5.5.1, 7.4)"
         % _code, simple_frames(F(OP_CLOSE, close_payload(_code, b"bye"))))
case("close_empty", "frames", ANY_CLOSE_OR_EMPTY,
     "close without a code: answered with an empty close or 1000 (5.5.1)",
     simple_frames(F(OP_CLOSE, b"")))
case("length_2_62", "frames", 1009,
     "64-bit length 2^62, no payload sent: 1009 without waiting for the data (5.2, 10.4)",
     case_huge_length(1 << 62))
case("length_top_bit", "frames", 1002, "64-bit length with the most significant bit set (5.2)",
     case_huge_length((1 << 63) + 5))
case("frame_over_max", "frames", 1009, "one frame of max-size + 1 bytes (10.4)",
     case_frame_over_max)
case("message_over_max", "frames", 1009,
     "fragmented message whose frames are small but total max-size + 1 (10.4)",
     case_message_over_max)
case("hold_silent", "manual", 1001,
     "connect, print a line, wait for the server's close without answering it (7.1.1)",
     case_hold_silent)
case("server_ping", "api", "ping+text",
     "socket:ping(payload) sends a ping with that payload (5.5.2); needs spec/apps/api_app.lua",
     expect_replies([build_frame(OP_TEXT, b"ping:hello")], (OP_PING, b"hello"),
                    (OP_TEXT, b"pinged")))
case("no_pong", "manual", "closed",
     "never answer the server's heartbeat pings: closed (5.5.2); spec/apps/heartbeat_app.lua",
     case_no_pong)
case("backpressure_close", "manual", 1008,
     "flood a client that does not read, policy close: 1008 (7.4.1); spec/apps/bp_close_app.lua",
     case_backpressure_close)
case("backpressure_drop", "manual", "dropped",
     "flood a client that does not read, policy drop: sends fail, connection stays;"
     " spec/apps/bp_drop_app.lua", case_backpressure_drop)

case("health", "http", 200, "GET /health answers JSON status ok",
     http_case(req_plain("/health"), 200, json_status="ok"))
case("http_unknown_path", "http", 404, "upgrade to a path no app serves",
     http_case(req_upgrade(path="/no-such-app"), 404))
case("http_plain_unknown_path", "http", 404, "plain GET of a path no app serves",
     http_case(req_plain("/no-such-page"), 404))
case("http_no_upgrade", "http", 426, "plain GET of an app path (4.2.1)",
     http_case(req_plain(), 426))
case("http_post", "http", 405, "upgrade request with method POST (4.2.1)",
     http_case(req_upgrade(method="POST"), 405))
case("http_bad_version", "http", 426, "Sec-WebSocket-Version: 8 (4.2.2, 4.4)",
     http_case(req_upgrade(version="8"), 426, want_header=("Sec-WebSocket-Version", "13")))
case("http_no_version", "http", 426, "no Sec-WebSocket-Version (4.2.1)",
     http_case(req_upgrade(version=None), 426, want_header=("Sec-WebSocket-Version", "13")))
case("http_no_key", "http", 400, "no Sec-WebSocket-Key (4.2.1)",
     http_case(req_upgrade(key=False), 400))
case("http_short_key", "http", 400, "Sec-WebSocket-Key decoding to 10 bytes (4.2.1)",
     http_case(req_upgrade(key="dGhlIHNhbXBsZQ=="), 400))
case("http_bad_key", "http", 400, "Sec-WebSocket-Key that is not base64 (4.2.1)",
     http_case(req_upgrade(key="!!!!not-base64-at-all!!!"), 400))
case("http_head_too_large", "http", 431, "request head over 8 KiB",
     http_case(req_upgrade(extra=["X-Pad: " + "a" * 9000]), 431))
case("http_garbage", "http", 400, "garbage request line",
     http_case(req_raw(lambda ctx: b"GARBAGE\r\n\r\n"), 400))
case("http_bare_lf", "http", 400, "request head with bare LF line endings",
     http_case(req_raw(lambda ctx: upgrade_head(ctx.host, ctx.port, ctx.path)[0]
                       .replace(b"\r\n", b"\n")), 400))
case("http_version_2", "http", 505, "request line with HTTP/2.0",
     http_case(req_raw(lambda ctx: upgrade_head(ctx.host, ctx.port, ctx.path)[0]
                       .replace(b"HTTP/1.1", b"HTTP/2.0", 1)), 505))
case("http_slow_head", "http", "closed",
     "head never completed: closed by the handshake timeout (408 allowed)", http_slow_head)

# permessage-deflate (RFC 7692); the app must offer the extension (see --extensions)
case("pmd_negotiate", "deflate", "echo",
     "offer --extensions, report the 101's extension, echo 200 bytes uncompressed",
     case_pmd_negotiate)
case("pmd_echo", "deflate", "echo",
     "compressed/uncompressed echo through the agreed extension (RFC 7692 6, 7.2)",
     case_pmd_echo)
case("pmd_fragmented", "deflate", "echo",
     "compressed message in 4 frames, RSV1 on the first only, ping between (6.1)",
     case_pmd_fragmented)
case("pmd_window_overreach", "deflate", "echo",
     "a message referring back beyond the agreed client window, in one frame and in"
     " two: echoed alike (the verdict does not depend on the split)",
     case_pmd_window_overreach)
case("pmd_bomb", "deflate", 1009,
     "--bomb-mib MiB of zeros deflated into one small frame: 1009 (RFC 6455 10.4)",
     case_pmd_bomb)
case("pmd_bomb_fragmented", "deflate", 1009,
     "the --bomb-mib bomb split into 8 small frames: 1009 (RFC 6455 10.4)",
     case_pmd_bomb_fragmented)
case("pmd_final_blocks", "deflate", 1007,
     "--final-blocks empty final DEFLATE blocks in one message: 1007, promptly, while a"
     " bystander's pings are answered", case_pmd_final_blocks)
case("pmd_rsv1_ping", "deflate", 1002, "RSV1 on a ping (RFC 7692 6)",
     simple_frames(F(OP_PING, b"x", rsv=4)))
case("pmd_rsv1_close", "deflate", 1002, "RSV1 on a close frame (RFC 7692 6)",
     simple_frames(F(OP_CLOSE, close_payload(1000), rsv=4)))
case("pmd_rsv1_continuation", "deflate", 1002,
     "RSV1 on a continuation frame of a compressed message (RFC 7692 6.1)",
     pmd_frames(lambda pmd: (lambda c: [build_frame(OP_TEXT, c[:4], fin=False, rsv=4),
                                        build_frame(OP_CONT, c[4:], rsv=4)])(
         pmd.compress(compressible_text(3000)))))
case("pmd_bad_deflate", "deflate", 1007,
     "RSV1 with data that is not DEFLATE (reserved block type) (RFC 7692 6.2, 8.1)",
     simple_frames(F(OP_BINARY, b"\xff\xfe\xfd\xfcnot deflate at all", rsv=4)))
case("pmd_bad_utf8", "deflate", 1007,
     "compressed text that inflates to invalid UTF-8 (RFC 6455 8.1)",
     pmd_frames(lambda pmd: [build_frame(OP_TEXT, pmd.compress(b"valid, then \xff\xfe"),
                                         rsv=4)]))

# raw TCP to the TLS port (a wss:// URL)
case("tls_silent", "tls", "closed",
     "connect and send nothing: closed by the handshake timeout", tls_raw_case(None))
case("tls_half_hello", "tls", "closed",
     "half a ClientHello, then silence: closed by the handshake timeout",
     tls_raw_case(lambda ctx: (lambda h: h[:len(h) // 2])(client_hello(ctx.host))))
case("tls_slow_then_head", "tls", "closed",
     "ClientHello in two halves --tls-delay s apart, TLS completes, the HTTP head never"
     " does: closed at the handshake timeout counted from connect", tls_slow_then_head)
case("tls_garbage", "tls", "closed", "garbage instead of a ClientHello: closed",
     tls_raw_case(lambda ctx: b"\x00\x01\x02garbage" + bytes(range(256)) * 4, wait="fast"))
case("tls_plain_http", "tls", "closed", "a plain HTTP upgrade request to the TLS port: closed",
     tls_raw_case(lambda ctx: upgrade_head(ctx.host, ctx.port, ctx.path)[0], wait="fast"))


# ------------------------------------------------------------------------ driver

class Ctx:
    pass


def run_case(name, ctx):
    group, expected, desc, runner = CASES[name]
    res = {"case": name, "expected": expected}
    ctx.t0 = time.monotonic()
    ok = False
    conn = None
    try:
        if group in ("http", "tls"):
            ok = bool(runner(ctx, res))
        else:
            if group == "deflate" and not ctx.offers:
                ctx.offers = ["permessage-deflate; client_max_window_bits"]
            conn = handshake(ctx)
            if ctx.offers or conn.ext_header is not None:
                res["extensions"] = conn.ext_header
            verdict = runner(conn, ctx, res)
            if isinstance(verdict, bool):
                ok = verdict
            else:
                if "close_payload_len" not in res:
                    await_close(conn, ctx, res)
                ok = check_close(res, expected)
                if name == "utf8_fail_fast":
                    ok = ok and res.get("closed_before_final_fragment") is True
    except Exception as e:  # report, never traceback: the caller parses JSON
        res["error"] = "%s: %s" % (e.__class__.__name__, e)
        ok = False
    finally:
        if conn is not None:
            if conn.send_error:
                res["send_error"] = conn.send_error
            conn.close()
    res["elapsed"] = round(time.monotonic() - ctx.t0, 3)
    res["ok"] = ok
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url")
    ap.add_argument("--case", help="case name, or all / frames / http")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--timeout", type=float, default=5.0)
    ap.add_argument("--slow-timeout", type=float, default=15.0,
                    help="how long http_slow_head waits for the server to close")
    ap.add_argument("--fail-fast-wait", type=float, default=2.0,
                    help="how long utf8_fail_fast waits before sending the final fragment")
    ap.add_argument("--hold-seconds", type=float, default=30.0)
    ap.add_argument("--max-size", type=int, default=2 * 1024 * 1024)
    ap.add_argument("--flood", type=int, default=256,
                    help="backpressure cases: how many 64 KiB messages to ask for")
    ap.add_argument("--stall", type=float, default=1.0,
                    help="backpressure cases: seconds without reading after the request")
    ap.add_argument("--extensions", action="append", default=[],
                    help="a Sec-WebSocket-Extensions header line to send (repeatable)")
    ap.add_argument("--threshold", type=int, default=64,
                    help="deflate cases: the server's compression threshold")
    ap.add_argument("--tls-delay", type=float, default=1.2,
                    help="tls_slow_then_head: seconds between the ClientHello halves")
    ap.add_argument("--final-blocks", type=int, default=2000000,
                    help="pmd_final_blocks: empty final blocks in the message")
    ap.add_argument("--bomb-mib", type=int, default=64,
                    help="pmd_bomb: MiB of zeros in the compressed message")
    a = ap.parse_args()

    if a.list:
        for name, (group, expected, desc, _) in CASES.items():
            print(json.dumps({"case": name, "group": group, "expected": expected,
                              "description": desc}))
        return 0
    if not a.url or not a.case:
        ap.error("--url and --case are required")
    ctx = Ctx()
    ctx.host, ctx.port, ctx.path = parse_url(a.url)
    ctx.timeout, ctx.slow_timeout = a.timeout, a.slow_timeout
    ctx.fail_fast_wait, ctx.max_size = a.fail_fast_wait, a.max_size
    ctx.hold_seconds = a.hold_seconds
    ctx.flood, ctx.stall = a.flood, a.stall
    ctx.offers, ctx.threshold, ctx.bomb_mib = list(a.extensions), a.threshold, a.bomb_mib
    ctx.final_blocks = a.final_blocks
    ctx.tls_delay = a.tls_delay
    if a.case in ("all", "frames", "http"):
        names = [n for n, c in CASES.items()
                 if (a.case == "all" and c[0] in ("frames", "http")) or c[0] == a.case]
    elif a.case in CASES:
        names = [a.case]
    else:
        print(json.dumps({"case": a.case, "ok": False, "error": "unknown case"}))
        return 1
    all_ok = True
    for n in names:
        res = run_case(n, ctx)
        all_ok = all_ok and res["ok"]
        print(json.dumps(res), flush=True)
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
