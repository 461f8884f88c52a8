"""rawws.py - the WebSocket client pieces the standard-library clients (mass_auth.py,
poller_client.py) share: the upgrade request and a masked client frame (RFC 6455 4.1,
5.2). Standard library only; a client imports it from its own directory (Python puts a
script's directory first on sys.path, whatever the working directory).
"""
import os
import struct


def upgrade_request(target, host, port, key):
    """The HTTP/1.1 upgrade request for target (path and query) with Sec-WebSocket-Key
    key (base64 text), as bytes."""
    return ("GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n" % (target, host, port, key)).encode()


def client_frame(opcode, payload):
    """One final, masked client frame (a fresh random mask) carrying payload."""
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    if n < 4096:
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    else:  # one big-integer XOR: the byte loop is slow for large payloads
        masked = (int.from_bytes(payload, "big") ^
                  int.from_bytes((mask * (n // 4 + 1))[:n], "big")).to_bytes(n, "big")
    return head + mask + masked
