"""realip: the client address from X-Forwarded-For (or another header),
believed only from trusted peers, right-most untrusted with recursive;
access rules and $remote_addr then see the real client."""

import unittest

from harness import Server, ServerTestCase, main
from site_client import SourceClient, get_from

CONFIG = """
modules: [realip, access, headers, hello]
realip: { from: [127.0.0.1, 10.0.0.0/8, "fd00::/8"], recursive: true }
headers: { set: { X-Client: $remote_addr }, always: true }
servers:
  - listen: ["127.0.0.1:{port}"]
    routes:
      - path: /
        handler: hello
      - path: /guarded
        handler: hello
        access: [{deny: 203.0.113.66}, {allow: all}]
        headers: { set: { X-Client: $remote_addr }, always: true }
"""


class RealIpTest(ServerTestCase):
    CONFIG = CONFIG

    def client(self, xff, source="127.0.0.1", path="/"):
        """A GET from source with X-Forwarded-For: xff (a list: one field each)."""
        fields = xff if isinstance(xff, list) else ([] if xff is None else [xff])
        c = SourceClient(self.port, source)
        try:
            lines = ["GET %s HTTP/1.1" % path, "Host: x", "Connection: close"]
            lines += ["X-Forwarded-For: " + v for v in fields]
            c.send(("\r\n".join(lines) + "\r\n\r\n").encode())
            return c.read_response()
        finally:
            c.close()

    def addr(self, xff, source="127.0.0.1"):
        return self.client(xff, source).header("X-Client")

    def test_trusted_peer(self):
        self.assertEqual(self.addr("203.0.113.7"), "203.0.113.7")
        self.assertEqual(self.addr(None), "127.0.0.1")

    def test_untrusted_peer_is_not_believed(self):
        self.assertEqual(self.addr("203.0.113.7", source="127.0.0.2"), "127.0.0.2")

    def test_right_most_untrusted(self):
        self.assertEqual(self.addr("198.51.100.1, 203.0.113.7, 10.1.1.1"), "203.0.113.7")
        self.assertEqual(self.addr("10.0.0.1, 10.0.0.2"), "10.0.0.1")  # all ours: the oldest
        self.assertEqual(self.addr(["198.51.100.1", "203.0.113.8, 10.0.0.3"]), "203.0.113.8")
        # A garbled hop proves nothing: the peer stays.
        self.assertEqual(self.addr("nonsense, 10.0.0.1"), "127.0.0.1")

    def test_address_forms(self):
        self.assertEqual(self.addr("2001:db8::1"), "2001:db8::1")
        self.assertEqual(self.addr("[2001:db8::2]:443"), "2001:db8::2")
        self.assertEqual(self.addr("203.0.113.5:8080"), "203.0.113.5")
        self.assertEqual(self.addr("::ffff:203.0.113.9"), "::ffff:203.0.113.9")

    def test_access_sees_the_real_client(self):
        r = self.client("203.0.113.66", path="/guarded")
        self.assertEqual(r.status, 403)
        self.assertEqual(r.header("X-Client"), "203.0.113.66")
        # IPv4-mapped: the IPv4 rule still matches.
        self.assertEqual(self.client("::ffff:203.0.113.66", path="/guarded").status, 403)
        self.assertEqual(self.client("203.0.113.67", path="/guarded").status, 200)
        # From an untrusted peer the header cannot dodge or frame anyone.
        self.assertEqual(self.client("203.0.113.66", source="127.0.0.2", path="/guarded").status,
                         200)


class OtherHeaderTest(ServerTestCase):
    CONFIG = """
modules: [realip, headers, hello]
realip: { from: [127.0.0.0/8], header: X-Real-IP }
headers: { set: { X-Client: $remote_addr } }
servers:
  - listen: ["127.0.0.1:{port}"]
    routes:
      - path: /
        handler: hello
"""

    def test_single_address_header(self):
        r = get_from(self.port, "127.0.0.3", "/", headers={"X-Real-IP": "192.0.2.44"})
        self.assertEqual(r.header("X-Client"), "192.0.2.44")
        r = get_from(self.port, "127.0.0.3", "/", headers={"X-Real-IP": "192.0.2.44, 1.2.3.4"})
        self.assertEqual(r.header("X-Client"), "127.0.0.3")  # not an address: unchanged
        r = get_from(self.port, "127.0.0.3", "/", headers={"X-Forwarded-For": "192.0.2.45"})
        self.assertEqual(r.header("X-Client"), "127.0.0.3")


class NotRecursiveTest(ServerTestCase):
    CONFIG = """
modules: [realip, headers, hello]
realip: { from: [127.0.0.1, 10.0.0.0/8] }
headers: { set: { X-Client: $remote_addr } }
servers:
  - listen: ["127.0.0.1:{port}"]
    routes:
      - path: /
        handler: hello
"""

    def test_right_most_hop(self):
        r = get_from(self.port, "127.0.0.1", "/",
                     headers={"X-Forwarded-For": "203.0.113.7, 10.0.0.9"})
        self.assertEqual(r.header("X-Client"), "10.0.0.9")


class ConfigErrorsTest(unittest.TestCase):
    def test_errors(self):
        tpl = """
modules: [realip, hello]
%s
servers:
  - listen: ["127.0.0.1:{port}"]
    routes:
      - path: /
        handler: hello
        %s
"""
        cases = [("realip: {from: [10.0.0.1/8]}", "", "did you mean 10.0.0.0/8"),
                 ("realip: {header: X-Real-IP}", "", "missing 'from'"),
                 ("realip: {from: []}", "", "expected a list of addresses"),
                 ("realip: {from: [all], header: 'a b'}", "", "not a header name"),
                 ("", "realip: {from: [all]}", "realip goes at the top level")]
        for top, route, want in cases:
            with self.subTest(top=top, route=route):
                s = Server(tpl % (top, route))
                try:
                    rc, out = s.run("-t")
                finally:
                    s.__exit__(None, None, None)
                self.assertNotEqual(rc, 0, out)
                self.assertIn(want, out)
                self.assertRegex(out, r"twister\.yaml:\d+:\d+: ")


if __name__ == "__main__":
    main()
