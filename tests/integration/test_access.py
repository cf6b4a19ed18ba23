"""The access module (allow/deny by client address) and the ACCESS phase's
vote: every check runs unless one refuses; `satisfy: any` makes one pass
enough. Clients come from other loopback addresses (127.0.0.2, ...)."""

import os
import unittest

from harness import Server, ServerTestCase, main, request
from site_client import get_from

CONFIG = """
modules: [access, hello]
access: [{allow: 127.0.0.1}, {deny: all}]     # every route without its own
servers:
  - listen: ["127.0.0.1:{port}", "[::1]:{port2}"]
    routes:
      - path: /global
        handler: hello
      - path: /ordered
        handler: hello
        access:
          - deny: 127.0.0.3
          - allow: 127.0.0.0/24
          - allow: "::1"
          - deny: all
      - path: /file
        handler: hello
        access:
          - deny_file: blocked.txt
          - allow: all
      - path: /status
        handler: hello
        access: {rules: [{deny: 127.0.0.2}], status: 404}
      - path: /v6
        handler: hello
        access: [{deny: "::1/128"}, {allow: all}]
"""

BLOCKED = """# addresses we do not serve
127.0.0.4          # one address
127.0.1.0/24
"""


class AccessTest(ServerTestCase):
    CONFIG = CONFIG
    FILES = {"blocked.txt": BLOCKED}

    def status(self, source, path, host="127.0.0.1", port=None):
        return get_from(port or self.port, source, path, host=host).status

    def test_global_rules_apply_to_routes_without_their_own(self):
        self.assertEqual(self.status("127.0.0.1", "/global"), 200)
        r = get_from(self.port, "127.0.0.2", "/global")
        self.assertEqual(r.status, 403)
        self.assertIn(b"403 Forbidden", r.body)

    def test_first_match_wins(self):
        self.assertEqual(self.status("127.0.0.2", "/ordered"), 200)
        self.assertEqual(self.status("127.0.0.3", "/ordered"), 403)  # deny before allow /24
        self.assertEqual(self.status("127.0.1.1", "/ordered"), 403)  # past the /24: deny all

    def test_ipv6(self):
        self.assertEqual(self.status("::1", "/ordered", host="::1", port=self.server.port2), 200)
        self.assertEqual(self.status("::1", "/v6", host="::1", port=self.server.port2), 403)
        self.assertEqual(self.status("127.0.0.9", "/v6"), 200)

    def test_list_file(self):
        self.assertEqual(self.status("127.0.0.2", "/file"), 200)
        self.assertEqual(self.status("127.0.0.4", "/file"), 403)
        self.assertEqual(self.status("127.0.1.200", "/file"), 403)

    def test_configured_status(self):
        self.assertEqual(self.status("127.0.0.2", "/status"), 404)
        self.assertEqual(self.status("127.0.0.5", "/status"), 200)  # no match: no opinion


class ReloadTest(unittest.TestCase):
    def test_list_file_is_reread_on_reload(self):
        import signal
        from harness import wait_for
        cfg = """
modules: [access, hello]
servers:
  - listen: ["127.0.0.1:{port}"]
    routes:
      - path: /
        handler: hello
        access: [{deny_file: blocked.txt}]
"""
        with Server(cfg, extra_files={"blocked.txt": "127.0.0.2\n"}) as s:
            self.assertEqual(get_from(s.port, "127.0.0.2", "/").status, 403)
            self.assertEqual(get_from(s.port, "127.0.0.3", "/").status, 200)
            with open(os.path.join(s.dir, "blocked.txt"), "w") as f:
                f.write("127.0.0.3 # now this one\n")
            s.send_signal(signal.SIGHUP)
            wait_for(lambda: get_from(s.port, "127.0.0.3", "/").status == 403,
                     what="the new list after the reload")
            self.assertEqual(get_from(s.port, "127.0.0.2", "/").status, 200)


class ConfigErrorsTest(unittest.TestCase):
    TEMPLATE = """
modules: [access, hello]
servers:
  - listen: ["127.0.0.1:{port}"]
    routes:
      - path: /
        handler: hello
        access: %s
"""

    def check(self, section, files=None):
        s = Server(self.TEMPLATE % section, extra_files=files)
        try:
            return s.run("-t")
        finally:
            s.__exit__(None, None, None)

    def test_a_fifo_list_file_is_refused_not_waited_on(self):
        s = Server(self.TEMPLATE % "[{allow_file: list.txt}]")
        try:
            os.mkfifo(os.path.join(s.dir, "list.txt"))
            rc, out = s.run("-t", timeout=20)
            self.assertNotEqual(rc, 0, out)
            self.assertIn("list.txt is not a regular file", out)
        finally:
            s.__exit__(None, None, None)

    def test_errors_name_their_position(self):
        cases = [
            ("[{allow: 10.0.0.1/8}]", "twister.yaml:12:26: servers[0].routes[0].access[0].allow: "
             "'10.0.0.1/8' has bits set past its /8 prefix; did you mean 10.0.0.0/8?"),
            ("[{allow: 300.1.1.1}]", "'300.1.1.1' is not an IPv4 or IPv6 address"),
            ("[{allow: 10.0.0.0/33}]", "the prefix length is at most 32"),
            ("[{permit: all}]", "unknown key 'permit'"),
            ("[{allow: all, deny: all}]", "exactly one of allow, deny"),
            ("[]", "expected a list of rules"),
            ("{rules: [{deny: all}], status: 200}", "access.status"),
            ("[{deny_file: missing.txt}]", "cannot open"),
            ("[{deny_file: bad.txt}]", "bad.txt:2: 'nonsense' is not an IPv4 or IPv6"),
        ]
        for section, want in cases:
            with self.subTest(section=section):
                rc, out = self.check(section, {"bad.txt": "# ok\nnonsense\n"})
                self.assertNotEqual(rc, 0, out)
                self.assertIn(want, out)



if __name__ == "__main__":
    main()
