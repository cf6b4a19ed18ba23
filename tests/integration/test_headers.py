"""The headers module: set/add/remove on responses (always: also on the
core's error pages), variables, request headers a later module sees, and
X-Request-Id."""

import re
import unittest

from harness import Server, ServerTestCase, main, request
from site_client import get_from

CONFIG = """
modules: [headers, static, echo, hello, access]
headers:                                     # routes without their own
  set: { X-Global: "yes" }
servers:
  - listen: ["127.0.0.1:{port}"]
    routes:
      - prefix: /files/
        handler: static
        static: { root: www }
        headers:
          set: { X-Frame-Options: DENY, X-Where: "$host $uri $remote_addr" }
          add: { Cache-Control: no-store, Link: "</a.css>; rel=preload" }
          remove: [Accept-Ranges]
      - prefix: /always/
        handler: static
        static: { root: www }
        access: [{deny: 127.0.0.2}]
        headers:
          set: { X-Content-Type-Options: nosniff }
          always: true
      - path: /echo
        handler: echo
        headers:
          request:
            set: { X-Real-IP: $remote_addr, X-Client-Said: replaced }
            add: { X-Added: "1" }
            remove: [Cookie]
          request_id: true
      - path: /hello
        handler: hello
      - prefix: /vars/
        handler: hello
        headers: { set: { X-Uri: $uri } }
"""


class HeadersTest(ServerTestCase):
    CONFIG = CONFIG
    FILES = {"www/files/a.txt": "hello\n", "www/always/a.txt": "hi\n"}

    def test_set_add_remove(self):
        r = request(self.port, path="/files/a.txt", host="example.com")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, b"hello\n")
        self.assertEqual(r.header("X-Frame-Options"), "DENY")
        self.assertEqual(r.header("X-Where"), "example.com /files/a.txt 127.0.0.1")
        self.assertEqual(r.header("Cache-Control"), "no-store")
        self.assertEqual(r.header("Link"), "</a.css>; rel=preload")
        self.assertIsNone(r.header("Accept-Ranges"))
        self.assertIsNone(r.header("X-Global"))  # the route's section replaces the top level's

    def test_global_section(self):
        self.assertEqual(request(self.port, path="/hello").header("X-Global"), "yes")

    def test_error_pages_only_with_always(self):
        r = request(self.port, path="/files/missing.txt")
        self.assertEqual(r.status, 404)
        self.assertIsNone(r.header("X-Frame-Options"))  # like nginx's add_header
        r = request(self.port, path="/always/missing.txt")
        self.assertEqual(r.status, 404)
        self.assertEqual(r.header("X-Content-Type-Options"), "nosniff")
        r = get_from(self.port, "127.0.0.2", "/always/a.txt")  # an ACCESS refusal's page
        self.assertEqual(r.status, 403)
        self.assertEqual(r.header("X-Content-Type-Options"), "nosniff")
        r = request(self.port, path="/always/a.txt")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("X-Content-Type-Options"), "nosniff")
        # No route at all: the top level's section, which is not always.
        self.assertIsNone(request(self.port, path="/nowhere").header("X-Global"))

    def test_request_headers_reach_the_handler(self):
        r = request(self.port, path="/echo",
                    headers={"X-Client-Said": "original", "Cookie": "secret=1"})
        self.assertEqual(r.status, 200)
        body = r.body.decode()
        self.assertIn("X-Real-IP: 127.0.0.1\n", body)
        self.assertIn("X-Client-Said: replaced\n", body)
        self.assertNotIn("original", body)
        self.assertIn("X-Added: 1\n", body)
        self.assertNotIn("Cookie", body)
        rid = r.header("X-Request-Id")
        self.assertRegex(rid, r"^[0-9a-f]{32}$")
        self.assertIn("X-Request-Id: %s\n" % rid, body)  # the handler saw the same id
        self.assertNotEqual(request(self.port, path="/echo").header("X-Request-Id"), rid)

    def test_client_request_id_is_kept_when_plain(self):
        r = request(self.port, path="/echo", headers={"X-Request-Id": "abc-123"})
        self.assertEqual(r.header("X-Request-Id"), "abc-123")
        r = request(self.port, path="/echo", headers={"X-Request-Id": "a b<script>"})
        self.assertRegex(r.header("X-Request-Id"), r"^[0-9a-f]{32}$")

    def test_no_injection_from_the_path(self):
        self.assertEqual(request(self.port, path="/vars/a%20b").header("X-Uri"), "/vars/a b")
        r = request(self.port, path="/vars/a%0d%0aX-Evil:%201")
        self.assertIsNone(r.header("X-Evil"))
        self.assertIsNone(r.header("X-Uri"))  # the unusable value is skipped, not sent
        self.assertIn(r.status, (200, 400))


class ConfigErrorsTest(unittest.TestCase):
    TEMPLATE = """
modules: [headers, hello]
servers:
  - listen: ["127.0.0.1:{port}"]
    routes:
      - path: /
        handler: hello
        headers: %s
"""

    def test_errors_name_their_position(self):
        cases = [
            ("{set: {X-A: $nope}}", "headers.set.X-A: unknown variable $nope"),
            ("{set: {'X A': v}}", "'X A' is not a header name"),
            ("{remove: [Server]}", "Server cannot be changed here"),
            ("{add: {Content-Length: '5'}}", "the core frames the body"),
            ("{request: {sett: {}}}", "did you mean 'set'"),
            ("{always: maybe}", "headers.always"),
            ("{set: [a]}", "expected a map of header: value"),
        ]
        for section, want in cases:
            with self.subTest(section=section):
                s = Server(self.TEMPLATE % section)
                try:
                    rc, out = s.run("-t")
                finally:
                    s.__exit__(None, None, None)
                self.assertNotEqual(rc, 0, out)
                self.assertIn(want, out)
                self.assertRegex(out, r"twister\.yaml:\d+:\d+: ")


if __name__ == "__main__":
    main()
