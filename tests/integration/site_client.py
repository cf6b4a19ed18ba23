"""Clients for the site modules' tests: requests from a chosen loopback
source address (127.0.0.2, ...), the way a client elsewhere would reach
the server."""

import socket

from harness import Client


class SourceClient(Client):
    """A Client whose connection comes from source (an address of lo)."""

    def __init__(self, port, source, timeout=10.0, host="127.0.0.1"):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.bind((source, 0))
        self.sock.connect((host, port))
        self.buf = b""


def get_from(port, source, path="/", headers=None, host="127.0.0.1", method="GET"):
    """One GET from source with Connection: close; returns the Response."""
    c = SourceClient(port, source, host=host)
    try:
        lines = ["%s %s HTTP/1.1" % (method, path), "Host: localhost", "Connection: close"]
        for k, v in (headers or {}).items():
            lines.append("%s: %s" % (k, v))
        c.send(("\r\n".join(lines) + "\r\n\r\n").encode())
        return c.read_response(head_only=(method == "HEAD"))
    finally:
        c.close()
