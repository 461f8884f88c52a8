#!/usr/bin/python3
"""app_client.py - a scripted WebSocket and HTTP client for the application-layer specs
(spec/integration/applayer_*_spec.lua). Standard library only; run with /usr/bin/python3.

One process holds any number of named connections. It reads one JSON command per line
on stdin and answers each with one JSON line on stdout ({"ok": true, ...} or
{"ok": false, "error": "..."}); EOF on stdin or {"op":"exit"} ends it.

Unlike the websockets library, it reports what a refused upgrade answered (status,
headers and body), can put anything in the request head (Authorization, Origin,
a token as a Sec-WebSocket-Protocol entry, query strings) and makes JWTs, including
malformed and forged ones.

Commands (fields in brackets are optional):
  open   id url [headers {name: value}] [protocols [..]] [timeout] [rcvbuf bytes]
         -> status, headers (lower-case names), body, json (the body decoded when it is
            JSON), protocol (the 101's Sec-WebSocket-Protocol or null), accept_ok.
            On a 101 the connection stays open under `id`; otherwise it is closed.
            rcvbuf: SO_RCVBUF set before connecting (a small TCP window).
  send   id (data "text" | datas ["..", ..]) [binary] -> sent (number of messages)
         binary data is given as text and sent as its UTF-8 bytes.
  send_header id length [opcode 1] -> sent: only the header of a (masked, final)
         frame announcing `length` payload bytes; none of the payload follows
  recv   id [n 1] [timeout 2] [omit [key..]] -> messages [..], binary [bool..],
         json [decoded|null..], closed, code, reason, elapsed: reads until n data
         messages arrived, the server closed, or the timeout passed (then timeout =
         true). With omit (for big messages) the texts are left out (null) and the
         decoded objects lose those keys.
  wait_close id [timeout 5] -> like recv, but reads until the server's close frame.
  close  id [code 1000] [reason ""] [timeout 5] -> code, reason of the server's
         answering close frame (the close handshake), then TCP is closed.
  drop   id -> TCP closed without a close frame.
  http   url [method GET] [headers] [timeout] -> status, headers, body, json
  jwt    claims secret [alg HS256] [header {..}: replaces the JOSE header]
         [sign_alg: HMAC used for the signature, default alg]
         [unsigned true: empty signature] [payload {..}: claims put in place of the
         signed ones after signing (a tampered token)] -> token
  now    -> time (seconds since the epoch, float)
  open_ids -> ids of the connections still open
"""

import base64
import hashlib
import hmac
import json
import os
import select
import socket
import sys
import time
import urllib.parse

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
HASHES = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}


class ClientError(Exception):
    pass


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode("ascii")


def compact(obj):
    return json.dumps(obj, separators=(",", ":")).encode("utf-8")


def make_jwt(c):
    alg = c.get("alg", "HS256")
    header = c.get("header") or {"alg": alg, "typ": "JWT"}
    h = b64url(compact(header))
    p = b64url(compact(c["claims"]))
    signing_input = (h + "." + p).encode("ascii")
    if c.get("unsigned"):
        sig = ""
    else:
        digest = HASHES[c.get("sign_alg", alg)]
        sig = b64url(hmac.new(c["secret"].encode("utf-8"), signing_input, digest).digest())
    if "payload" in c:
        p = b64url(compact(c["payload"]))
    return h + "." + p + "." + sig


def parse_head(raw):
    text = raw.decode("iso-8859-1")
    lines = text.split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        raise ClientError("bad status line: %r" % lines[0])
    status = int(parts[1])
    headers = {}
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(":")
        name = name.strip().lower()
        value = value.strip()
        headers[name] = headers[name] + ", " + value if name in headers else value
    return status, headers


def maybe_json(body):
    try:
        return json.loads(body)
    except ValueError:
        return None


def split_url(url):
    u = urllib.parse.urlsplit(url)
    if u.scheme not in ("ws", "http"):
        raise ClientError("only ws:// and http:// URLs: " + url)
    target = (u.path or "/") + ("?" + u.query if u.query else "")
    return u.hostname, u.port or 80, target


def read_http_response(sock, deadline, buf=b""):
    """-> status, headers, head bytes consumed, rest (bytes after the head)"""
    while b"\r\n\r\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            raise ClientError("timeout waiting for the response head")
        sock.settimeout(left)
        chunk = sock.recv(65536)
        if not chunk:
            raise ClientError("connection closed before the response head (got %r)" % buf[:200])
        buf += chunk
    i = buf.index(b"\r\n\r\n")
    status, headers = parse_head(buf[:i])
    return status, headers, buf[i + 4:]


def read_body(sock, headers, rest, deadline):
    body = rest
    want = int(headers["content-length"]) if "content-length" in headers else None
    while want is None or len(body) < want:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            break
        if not chunk:
            break
        body += chunk
    return body.decode("utf-8", "replace")


class Conn:
    def __init__(self, sock, rest):
        self.sock = sock
        self.buf = rest
        self.closed = False         # the close handshake is over (or TCP ended)
        self.close_sent = False
        self.code = None
        self.reason = None
        self.frag = None            # (opcode, [payloads]) of a fragmented message

    # -- output
    def send_frame(self, opcode, payload, fin=True):
        b0 = (0x80 if fin else 0) | opcode
        n = len(payload)
        if n < 126:
            head = bytes([b0, 0x80 | n])
        elif n < 65536:
            head = bytes([b0, 0x80 | 126]) + n.to_bytes(2, "big")
        else:
            head = bytes([b0, 0x80 | 127]) + n.to_bytes(8, "big")
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(head + mask + masked)

    def send_close(self, code, reason=b""):
        if self.close_sent:
            return
        self.close_sent = True
        payload = b"" if code is None else code.to_bytes(2, "big") + reason
        try:
            self.send_frame(0x8, payload)
        except OSError:
            pass

    # -- input
    def _fill(self, deadline):
        """Reads more bytes; False on timeout, raises EOFError at EOF."""
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        r, _, _ = select.select([self.sock], [], [], left)
        if not r:
            return False
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            raise EOFError()
        self.buf += chunk
        return True

    def _need(self, n, deadline):
        while len(self.buf) < n:
            if not self._fill(deadline):
                return False
        return True

    def read_frame(self, deadline):
        """-> (fin, opcode, payload) or None on timeout; EOFError at EOF."""
        if not self._need(2, deadline):
            return None
        b0, b1 = self.buf[0], self.buf[1]
        if b1 & 0x80:
            raise ClientError("the server sent a masked frame")
        n = b1 & 0x7F
        off = 2
        if n == 126:
            if not self._need(4, deadline):
                return None
            n = int.from_bytes(self.buf[2:4], "big")
            off = 4
        elif n == 127:
            if not self._need(10, deadline):
                return None
            n = int.from_bytes(self.buf[2:10], "big")
            off = 10
        if not self._need(off + n, deadline):
            return None
        payload = self.buf[off:off + n]
        self.buf = self.buf[off + n:]
        return bool(b0 & 0x80), b0 & 0x0F, payload

    def read(self, n, timeout, until_close=False):
        """Reads data messages (and answers control frames) until n arrived, the
        close handshake ended, or the timeout passed."""
        start = time.monotonic()
        deadline = start + timeout
        msgs, kinds = [], []
        timed_out = False
        while not self.closed and (until_close or len(msgs) < n):
            try:
                f = self.read_frame(deadline)
            except EOFError:
                self.closed = True
                if self.code is None:
                    self.code = 1006
                break
            if f is None:
                timed_out = True
                break
            fin, op, payload = f
            if op == 0x9:
                self.send_frame(0xA, payload)
            elif op == 0xA:
                pass
            elif op == 0x8:
                self.code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                self.reason = payload[2:].decode("utf-8", "replace")
                self.send_close(self.code if self.code != 1005 else None)
                self._finish_tcp(deadline)
                self.closed = True
            elif op in (0x1, 0x2) or op == 0x0:
                if op != 0x0:
                    self.frag = (op, [payload])
                elif self.frag:
                    self.frag[1].append(payload)
                else:
                    raise ClientError("continuation frame without a message")
                if fin:
                    mop, parts = self.frag
                    self.frag = None
                    data = b"".join(parts)
                    if mop == 0x1:
                        msgs.append(data.decode("utf-8"))
                        kinds.append(False)
                    else:
                        msgs.append(data.decode("utf-8", "replace"))
                        kinds.append(True)
            else:
                raise ClientError("unexpected opcode %d" % op)
        return {
            "messages": msgs, "binary": kinds,
            "json": [None if b else maybe_json(m) for m, b in zip(msgs, kinds)],
            "closed": self.closed, "code": self.code, "reason": self.reason,
            "timeout": timed_out, "elapsed": time.monotonic() - start,
        }

    def _finish_tcp(self, deadline):
        """After the close frames crossed: wait (briefly) for the server's FIN."""
        end = min(deadline, time.monotonic() + 2)
        try:
            while self._fill(end):
                self.buf = b""
        except EOFError:
            pass
        self.sock.close()


CONNS = {}


def conn_of(c):
    conn = CONNS.get(c["id"])
    if conn is None:
        raise ClientError("no open connection named %r" % c["id"])
    return conn


def op_open(c):
    host, port, target = split_url(c["url"])
    timeout = float(c.get("timeout", 5))
    deadline = time.monotonic() + timeout
    if c.get("rcvbuf"):
        # a small receive buffer, set before connecting (it bounds the window): the
        # server's writes stop being taken whole once that much is unread
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, int(c["rcvbuf"]))
        sock.settimeout(timeout)
        sock.connect((host, port))
    else:
        sock = socket.create_connection((host, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    key = base64.b64encode(os.urandom(16)).decode("ascii")
    lines = ["GET %s HTTP/1.1" % target, "Host: %s:%d" % (host, port), "Upgrade: websocket",
             "Connection: Upgrade", "Sec-WebSocket-Key: " + key, "Sec-WebSocket-Version: 13"]
    protocols = c.get("protocols") or []
    if protocols:
        lines.append("Sec-WebSocket-Protocol: " + ", ".join(protocols))
    headers = c.get("headers") or {}
    for name, value in headers.items():
        lines.append("%s: %s" % (name, value))
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("utf-8"))
    status, rh, rest = read_http_response(sock, deadline)
    res = {"status": status, "headers": rh, "protocol": rh.get("sec-websocket-protocol")}
    if status == 101:
        want = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
        res["accept_ok"] = rh.get("sec-websocket-accept") == want
        res["body"] = ""
        res["json"] = None
        old = CONNS.pop(c["id"], None)
        if old:
            old.sock.close()
        CONNS[c["id"]] = Conn(sock, rest)
    else:
        res["body"] = read_body(sock, rh, rest, deadline)
        res["json"] = maybe_json(res["body"])
        sock.close()
    return res


def op_send(c):
    conn = conn_of(c)
    datas = c["datas"] if "datas" in c else [c["data"]]
    op = 0x2 if c.get("binary") else 0x1
    for d in datas:
        conn.send_frame(op, d.encode("utf-8"))
    return {"sent": len(datas)}


def op_send_header(c):
    conn = conn_of(c)
    n = int(c["length"])
    b0 = 0x80 | int(c.get("opcode", 1))
    if n < 126:
        head = bytes([b0, 0x80 | n])
    elif n < 65536:
        head = bytes([b0, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([b0, 0x80 | 127]) + n.to_bytes(8, "big")
    conn.sock.sendall(head + os.urandom(4))
    return {"sent": 1}


def op_recv(c):
    conn = conn_of(c)
    res = conn.read(int(c.get("n", 1)), float(c.get("timeout", 2)))
    omit = c.get("omit")
    if omit:  # big messages: keep the answer small
        res["messages"] = [None] * len(res["messages"])
        for m in res["json"]:
            if isinstance(m, dict):
                for k in omit:
                    m.pop(k, None)
    return res


def op_wait_close(c):
    conn = conn_of(c)
    res = conn.read(0, float(c.get("timeout", 5)), until_close=True)
    if conn.closed:
        CONNS.pop(c["id"], None)
    return res


def op_close(c):
    conn = conn_of(c)
    code = int(c.get("code", 1000))
    conn.send_close(code, c.get("reason", "").encode("utf-8"))
    res = conn.read(0, float(c.get("timeout", 5)), until_close=True)
    if not conn.closed:
        conn.sock.close()
    CONNS.pop(c["id"], None)
    return res


def op_drop(c):
    conn = CONNS.pop(c["id"], None)
    if conn:
        conn.sock.close()
    return {}


def op_http(c):
    host, port, target = split_url(c["url"].replace("ws://", "http://", 1))
    timeout = float(c.get("timeout", 5))
    deadline = time.monotonic() + timeout
    sock = socket.create_connection((host, port), timeout=timeout)
    lines = ["%s %s HTTP/1.1" % (c.get("method", "GET"), target), "Host: %s:%d" % (host, port)]
    for name, value in (c.get("headers") or {}).items():
        lines.append("%s: %s" % (name, value))
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("utf-8"))
    status, rh, rest = read_http_response(sock, deadline)
    body = read_body(sock, rh, rest, deadline)
    sock.close()
    return {"status": status, "headers": rh, "body": body, "json": maybe_json(body)}


def op_jwt(c):
    return {"token": make_jwt(c)}


def op_now(c):
    return {"time": time.time()}


def op_open_ids(c):
    return {"ids": sorted(k for k, v in CONNS.items() if not v.closed)}


OPS = {"open": op_open, "send": op_send, "send_header": op_send_header, "recv": op_recv, "wait_close": op_wait_close,
       "close": op_close, "drop": op_drop, "http": op_http, "jwt": op_jwt, "now": op_now,
       "open_ids": op_open_ids}


def main():
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            c = json.loads(line)
            if c.get("op") == "exit":
                break
            fn = OPS.get(c.get("op"))
            if not fn:
                raise ClientError("unknown op %r" % c.get("op"))
            res = fn(c)
            res["ok"] = True
        except (ClientError, OSError, ValueError, KeyError) as e:
            res = {"ok": False, "error": "%s: %s" % (type(e).__name__, e)}
        sys.stdout.write(json.dumps(res) + "\n")
        sys.stdout.flush()
    for conn in CONNS.values():
        conn.sock.close()


if __name__ == "__main__":
    main()
