"""auth_basic: htpasswd files made by Apache's htpasswd (bcrypt, SHA-crypt,
APR1), the 401 challenge, the remote user in the access log, reloads, and
how it votes beside access under satisfy: all and satisfy: any."""

import base64
import os
import signal
import subprocess
import time
import unittest

from harness import Server, ServerTestCase, main, request, wait_for
from site_client import get_from


def htpasswd_line(flag, user, password):
    out = subprocess.run(["htpasswd", "-n", "-b", flag, user, password], check=True,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    return out.stdout.decode().strip() + "\n"


def basic(user, password):
    token = base64.b64encode(("%s:%s" % (user, password)).encode()).decode()
    return {"Authorization": "Basic " + token}


USERS = None  # made once: htpasswd -B is slow on purpose


def users():
    global USERS
    if USERS is None:
        USERS = ("# staff\n" + htpasswd_line("-B", "alice", "wonder land") +
                 htpasswd_line("-m", "bob", "apr1 pass") +
                 htpasswd_line("-5", "carol", "sha512!") +
                 htpasswd_line("-2", "dave", "sha256?") + "\n")
    return USERS


CONFIG = """
modules: [access, auth_basic, hello, access_log]
access_log: { path: access.log, format: common, flush_interval: 100ms }
servers:
  - listen: ["127.0.0.1:{port}"]
    routes:
      - path: /open
        handler: hello
      - path: /staff
        handler: hello
        auth_basic: { realm: "Staff only", user_file: users.htpasswd }
      - path: /all
        handler: hello
        access: [{allow: 127.0.0.1}, {deny: all}]
        auth_basic: { realm: Both, user_file: users.htpasswd }
      - path: /any
        handler: hello
        satisfy: any
        access: [{allow: 127.0.0.1}, {deny: all}]
        auth_basic: { realm: Either, user_file: users.htpasswd }
"""


class AuthBasicTest(ServerTestCase):
    CONFIG = CONFIG

    @classmethod
    def setUpClass(cls):
        cls.FILES = {"users.htpasswd": users()}
        super().setUpClass()

    def get(self, path, headers=None, source="127.0.0.1"):
        return get_from(self.port, source, path, headers=headers)

    def test_challenge(self):
        r = self.get("/staff")
        self.assertEqual(r.status, 401)
        self.assertEqual(r.header("WWW-Authenticate"), 'Basic realm="Staff only", charset="UTF-8"')
        self.assertIn(b"401 Unauthorized", r.body)
        self.assertEqual(self.get("/open").status, 200)

    def test_every_scheme(self):
        for user, password in [("alice", "wonder land"), ("bob", "apr1 pass"),
                               ("carol", "sha512!"), ("dave", "sha256?")]:
            with self.subTest(user=user):
                r = self.get("/staff", basic(user, password))
                self.assertEqual(r.status, 200, r)
                self.assertIsNone(r.header("WWW-Authenticate"))
                self.assertEqual(self.get("/staff", basic(user, password + "x")).status, 401)

    def test_bad_credentials(self):
        for value in ["Basic", "Basic !!!!", "Bearer abc", "Basic " + "A" * 3000,
                      "Basic " + base64.b64encode(b"alice").decode(),
                      "Basic " + base64.b64encode(b"nobody:wonder land").decode(),
                      "Basic " + base64.b64encode(b"alice:wonder land\x00x").decode()]:
            with self.subTest(value=value[:40]):
                self.assertEqual(self.get("/staff", {"Authorization": value}).status, 401)

    def test_remote_user_is_logged(self):
        self.get("/staff", basic("bob", "apr1 pass"))
        path = os.path.join(self.server.dir, "access.log")

        def logged():
            try:
                with open(path) as f:
                    return any('- bob [' in l and '"GET /staff HTTP/1.1" 200' in l for l in f)
            except FileNotFoundError:
                return False
        wait_for(logged, what="bob in the access log")

    def test_satisfy_all_needs_both(self):
        ok = basic("carol", "sha512!")
        self.assertEqual(self.get("/all", ok).status, 200)
        self.assertEqual(self.get("/all").status, 401)  # the address passes, the password not
        # The password passes, the address list refuses: no bypass.
        self.assertEqual(self.get("/all", ok, source="127.0.0.2").status, 403)

    def test_satisfy_any_needs_one(self):
        r = self.get("/any")  # the address is enough
        self.assertEqual(r.status, 200)
        self.assertIsNone(r.header("WWW-Authenticate"))
        self.assertEqual(self.get("/any", basic("dave", "sha256?"), source="127.0.0.2").status, 200)
        r = self.get("/any", source="127.0.0.2")  # neither: the last refusal, with its challenge
        self.assertEqual(r.status, 401)
        self.assertEqual(r.header("WWW-Authenticate"), 'Basic realm="Either", charset="UTF-8"')


class ReloadTest(unittest.TestCase):
    def test_user_file_is_reread(self):
        cfg = """
modules: [auth_basic, hello]
auth_basic: { user_file: users }
servers:
  - listen: ["127.0.0.1:{port}"]
    routes:
      - path: /
        handler: hello
"""
        with Server(cfg, extra_files={"users": htpasswd_line("-5", "old", "pw")}) as s:
            self.assertEqual(request(s.port, headers=basic("old", "pw")).status, 200)
            with open(os.path.join(s.dir, "users"), "w") as f:
                f.write(htpasswd_line("-5", "new", "pw"))
            s.send_signal(signal.SIGHUP)
            wait_for(lambda: request(s.port, headers=basic("new", "pw")).status == 200,
                     what="the new user after the reload")
            self.assertEqual(request(s.port, headers=basic("old", "pw")).status, 401)


class ConfigErrorsTest(unittest.TestCase):
    TEMPLATE = """
modules: [auth_basic, hello]
servers:
  - listen: ["127.0.0.1:{port}"]
    routes:
      - path: /
        handler: hello
        auth_basic: %s
"""

    def check(self, section, files):
        s = Server(self.TEMPLATE % section, extra_files=files)
        try:
            return s.run("-t")
        finally:
            s.__exit__(None, None, None)

    def test_a_fifo_user_file_is_refused_not_waited_on(self):
        s = Server(self.TEMPLATE % "{realm: x, user_file: users}")
        try:
            os.mkfifo(os.path.join(s.dir, "users"))
            rc, out = s.run("-t", timeout=20)
            self.assertNotEqual(rc, 0, out)
            self.assertIn("users is not a regular file", out)
        finally:
            s.__exit__(None, None, None)

    def test_weak_and_broken_files_are_refused(self):
        files = {"plain": "# x\nalice:secret\n",
                 "sha": "alice:{SHA}EfatjsUqKYSrqv18O1FlA3hcIHI=\n",
                 "des": "alice:abJnggxhB/yWI\n",
                 "dup": htpasswd_line("-5", "a", "1") + htpasswd_line("-5", "a", "2"),
                 "empty": "# nobody\n",
                 "costly": "a:$2y$15$" + "a" * 53 + "\n",
                 "good": htpasswd_line("-5", "a", "1")}
        cases = [
            ("{user_file: plain}", "plain:2: not a supported hash"),
            ("{user_file: sha}", "sha:1: an unsalted {SHA} hash (htpasswd -s) is refused"),
            ("{user_file: des}", "des:1: a DES crypt hash"),
            ("{user_file: dup}", "dup:2: user 'a' is listed twice"),
            ("{user_file: empty}", "has no users"),
            ("{user_file: costly}", "costly:1: bcrypt cost must be 4..14"),
            ("{user_file: missing}", "auth_basic.user_file: cannot open"),
            ("{realm: 'a\"b', user_file: good}", "a realm cannot hold"),
            ("{realm: x}", "missing 'user_file'"),
            ("{user_fil: good}", "did you mean 'user_file'"),
            ("{off: true, user_file: good}", "off: true takes no other settings"),
        ]
        for section, want in cases:
            with self.subTest(section=section):
                rc, out = self.check(section, files)
                self.assertNotEqual(rc, 0, out)
                self.assertIn(want, out)
                self.assertRegex(out, r"twister\.yaml:\d+:\d+: ")


if __name__ == "__main__":
    main()
