"""The PROXY protocol (v1 and v2) on listeners with the proxy_protocol flag:
the client it names is the one access rules, $remote_addr and the logs
see; malformed, truncated and oversized headers close the connection; a
listener without the flag treats such bytes as a bad request."""

import os
import shutil
import socket
import struct
import subprocess
import time
import unittest

from harness import Client, Server, ServerTestCase, main, status_of

CONFIG = """
modules: [access, headers, hello]
headers: { set: { X-Client: $remote_addr }, always: true }
timeouts: { header: 1s }
servers:
  - listen: ["127.0.0.1:{port} proxy_protocol", "127.0.0.1:{port2}"]
    routes:
      - path: /
        handler: hello
      - path: /guarded
        handler: hello
        access: [{deny: 203.0.113.66}, {allow: all}]
        headers: { set: { X-Client: $remote_addr }, always: true }
"""

SIG = b"\r\n\r\n\x00\r\nQUIT\n"
GET = b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def v2_inet(src, dst="10.0.0.1", sport=40000, dport=80, command=0x21, tlvs=b""):
    body = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport) + tlvs
    return SIG + bytes([command, 0x11]) + struct.pack("!H", len(body)) + body


def v2_inet6(src, dst="::1", sport=40000, dport=80):
    body = (socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst) +
            struct.pack("!HH", sport, dport))
    return SIG + bytes([0x21, 0x21]) + struct.pack("!H", len(body)) + body


class ProxyProtocolTest(ServerTestCase):
    CONFIG = CONFIG

    def exchange(self, data, path=b"/", port=None, pause=False):
        c = Client(port or self.port)
        try:
            if pause:  # the header and the request in separate writes
                c.send(data)
                time.sleep(0.05)
                c.send(GET % path)
            else:
                c.send(data + GET % path)
            return c.read_response()
        finally:
            c.close()

    def closed_without_answer(self, data, wait=5.0):
        c = Client(self.port, timeout=wait)
        try:
            c.send(data)
            return c.read_to_close()
        finally:
            c.close()

    def test_v1(self):
        r = self.exchange(b"PROXY TCP4 203.0.113.7 10.0.0.1 40000 80\r\n")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("X-Client"), "203.0.113.7")
        r = self.exchange(b"PROXY TCP6 2001:db8::9 ::1 40000 80\r\n", pause=True)
        self.assertEqual(r.header("X-Client"), "2001:db8::9")
        r = self.exchange(b"PROXY UNKNOWN\r\n")  # the balancer could not tell
        self.assertEqual(r.header("X-Client"), "127.0.0.1")

    def test_v2(self):
        r = self.exchange(v2_inet("198.51.100.4", tlvs=b"\x02\x00\x03a.b"))
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("X-Client"), "198.51.100.4")
        self.assertEqual(self.exchange(v2_inet6("2001:db8::44"), pause=True).header("X-Client"),
                         "2001:db8::44")
        # LOCAL: a health check of the balancer's own; the peer stays.
        self.assertEqual(self.exchange(v2_inet("198.51.100.4", command=0x20)).header("X-Client"),
                         "127.0.0.1")

    def test_header_split_byte_by_byte(self):
        c = Client(self.port)
        try:
            for b in v2_inet("192.0.2.200"):
                c.send(bytes([b]))
            c.send(GET % b"/")
            self.assertEqual(c.read_response().header("X-Client"), "192.0.2.200")
        finally:
            c.close()

    def test_access_sees_the_client(self):
        self.assertEqual(self.exchange(v2_inet("203.0.113.66"), b"/guarded").status, 403)
        self.assertEqual(
            self.exchange(b"PROXY TCP4 203.0.113.66 10.0.0.1 1 80\r\n", b"/guarded").status, 403)
        self.assertEqual(self.exchange(v2_inet("203.0.113.67"), b"/guarded").status, 200)

    def test_keep_alive_keeps_the_client(self):
        c = Client(self.port)
        try:
            c.send(v2_inet("192.0.2.55"))
            for _ in range(3):
                c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                self.assertEqual(c.read_response().header("X-Client"), "192.0.2.55")
            # A second PROXY header is no HTTP: 400.
            c.send(b"PROXY TCP4 1.2.3.4 10.0.0.1 1 80\r\n\r\n")
            self.assertEqual(c.read_response().status, 400)
        finally:
            c.close()

    def test_bad_headers_close_the_connection(self):
        cases = {
            "no header": GET % b"/",
            "malformed v1": b"PROXY TCP4 203.0.113.7 10.0.0.1 40000\r\n" + GET % b"/",
            "bad address": b"PROXY TCP4 300.0.113.7 10.0.0.1 1 80\r\n" + GET % b"/",
            "oversized v1": b"PROXY TCP4 " + b"1" * 120 + b"\r\n",
            "oversized v2": SIG + b"\x21\x11" + struct.pack("!H", 5000) + b"\0" * 5000,
            "bad v2 version": SIG + b"\x11\x11\x00\x0c" + b"\0" * 12 + GET % b"/",
            "short v2 address": SIG + b"\x21\x11\x00\x04" + b"\0" * 4 + GET % b"/",
        }
        for what, data in cases.items():
            with self.subTest(what=what):
                self.assertEqual(self.closed_without_answer(data), b"")

    def test_truncated_header_times_out(self):
        # The header timeout (1s here) bounds a header that never completes.
        for data in (b"PROXY TCP4 203.0.113.7 10.0", SIG + b"\x21\x11\x00\x0c\x01"):
            with self.subTest(data=data):
                # Without the timeout the read would fail on its own 10 s bound.
                self.assertEqual(self.closed_without_answer(data, wait=10.0), b"")

    def test_plain_listener_refuses_proxy_bytes(self):
        c = Client(self.server.port2)
        try:
            c.send(b"PROXY TCP4 203.0.113.7 10.0.0.1 40000 80\r\n" + GET % b"/")
            data = c.read_to_close()
        finally:
            c.close()
        self.assertEqual(status_of(data), 400)
        r = self.exchange(b"", port=self.server.port2)
        self.assertEqual(r.header("X-Client"), "127.0.0.1")


HAPROXY_CFG = """
global
    maxconn 100
defaults
    mode tcp
    timeout connect 5s
    timeout client 10s
    timeout server 10s
frontend v2
    bind 127.0.0.1:%(v2)d
    default_backend v2
frontend v1
    bind 127.0.0.1:%(v1)d
    default_backend v1
backend v2
    server t 127.0.0.1:%(twister)d send-proxy-v2
backend v1
    server t 127.0.0.1:%(twister)d send-proxy
"""


TLS_CONFIG = """
modules: [headers, hello]
headers: { set: { X-Client: $remote_addr }, always: true }
servers:
  - listen: ["127.0.0.1:{port} tls proxy_protocol"]
    tls: { certificate: {dir}/cert.pem, key: {dir}/key.pem }
    routes:
      - path: /
        handler: hello
"""


@unittest.skipUnless(shutil.which("openssl"), "needs the openssl CLI")
class ProxyProtocolOverTLSTest(unittest.TestCase):
    """A balancer passing TLS through (an AWS NLB, HAProxy in TCP mode)
    sends its PROXY header in clear, then the client's TLS."""

    @classmethod
    def setUpClass(cls):
        cls.server = Server(TLS_CONFIG)
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=localhost", "-days", "2",
                        "-keyout", os.path.join(cls.server.dir, "key.pem"),
                        "-out", os.path.join(cls.server.dir, "cert.pem")],
                       check=True, capture_output=True)
        cls.server.start()

    @classmethod
    def tearDownClass(cls):
        cls.server.__exit__(None, None, None)

    def https_get(self, header):
        """header, then the ClientHello in the same write (as a balancer
        forwards them), then a request over the TLS session."""
        import ssl
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
        sock = socket.create_connection(("127.0.0.1", self.server.port), timeout=10)
        try:
            try:
                tls.do_handshake()
            except ssl.SSLWantReadError:
                pass
            sock.sendall(header + outgoing.read())
            while True:
                try:
                    tls.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    if outgoing.pending:
                        sock.sendall(outgoing.read())
                    data = sock.recv(65536)
                    if not data:
                        raise EOFError("closed during the handshake")
                    incoming.write(data)
            if outgoing.pending:
                sock.sendall(outgoing.read())
            tls.write(GET % b"/")
            sock.sendall(outgoing.read())
            reply = b""
            while True:
                try:
                    chunk = tls.read(65536)
                    if not chunk:
                        break
                    reply += chunk
                except ssl.SSLWantReadError:
                    data = sock.recv(65536)
                    if not data:
                        break
                    incoming.write(data)
                except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                    break
            return reply
        finally:
            sock.close()

    def test_v1_then_tls(self):
        reply = self.https_get(b"PROXY TCP4 203.0.113.7 10.0.0.1 40000 443\r\n")
        self.assertEqual(status_of(reply), 200, reply[:200])
        self.assertIn(b"\r\nX-Client: 203.0.113.7\r\n", reply)

    def test_v2_then_tls(self):
        reply = self.https_get(v2_inet("198.51.100.9"))
        self.assertEqual(status_of(reply), 200, reply[:200])
        self.assertIn(b"\r\nX-Client: 198.51.100.9\r\n", reply)

    def test_no_header_is_closed_before_tls(self):
        c = Client(self.server.port)
        try:
            c.send(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64)
            self.assertTrue(c.closed(), "a ClientHello without the PROXY header was not closed")
        finally:
            c.close()


@unittest.skipUnless(shutil.which("haproxy"), "HAProxy is not installed (Debian: haproxy)")
class HAProxyTest(unittest.TestCase):
    """Through a real HAProxy with send-proxy-v2 and send-proxy."""

    def test_client_address_through_haproxy(self):
        from harness import free_port, wait_for
        from site_client import get_from
        with Server(CONFIG) as s:
            ports = {"v2": free_port(), "v1": free_port(), "twister": s.port}
            cfg = os.path.join(s.dir, "haproxy.cfg")
            with open(cfg, "w") as f:
                f.write(HAPROXY_CFG % ports)
            proc = subprocess.Popen(["haproxy", "-db", "-f", cfg], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, start_new_session=True)
            try:
                def up():
                    try:
                        socket.create_connection(("127.0.0.1", ports["v1"]), timeout=1).close()
                        return True
                    except OSError:
                        return False
                wait_for(up, what="haproxy to listen")
                for name in ("v2", "v1"):
                    with self.subTest(send_proxy=name):
                        r = get_from(ports[name], "127.0.0.9", "/")
                        self.assertEqual(r.status, 200)
                        self.assertEqual(r.header("X-Client"), "127.0.0.9")
                        r = get_from(ports[name], "127.0.0.1", "/guarded")
                        self.assertEqual(r.status, 200)
            finally:
                proc.terminate()
                proc.wait(timeout=10)


class ConfigErrorsTest(unittest.TestCase):
    def test_flags(self):
        for listen, want in [('["127.0.0.1:{port} proxy"]', "unknown listen flag 'proxy'"),
                             ('["127.0.0.1:{port} proxy_protocol", "127.0.0.1:{port}"]',
                              "is listed elsewhere with proxy_protocol")]:
            with self.subTest(listen=listen):
                s = Server("servers:\n  - listen: %s\n    routes: []\n" % listen)
                try:
                    rc, out = s.run("-t")
                finally:
                    s.__exit__(None, None, None)
                self.assertNotEqual(rc, 0, out)
                self.assertIn(want, out)
                self.assertRegex(out, r"twister\.yaml:\d+:\d+: ")


if __name__ == "__main__":
    main()
