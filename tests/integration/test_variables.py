#!/usr/bin/env python3
"""The variables registry: one set of $names, the core's and the modules',
used by redirect, headers, access_log and proxy alike, resolved at
configure time (an unknown name is a config error with its position), and
looked up by name with tw_request_variable."""

import json
import os
import re
import unittest

from harness import BUILD_DIR, Server, request, wait_for
from test_proxy import Backend

KIT_VARS = os.path.join(BUILD_DIR, "tests", "plugins", "kit_vars.so")
VAR_DUP = os.path.join(BUILD_DIR, "tests", "plugins", "var_dup.so")

SITE = """
modules: [realip, headers, redirect, hello, access_log, "%s"]
realip: { from: [127.0.0.0/8], header: X-Real-IP }
access_log:
  path: access.log
  flush_interval: 0s
  format: '$remote_addr|$realip_remote_addr|$remote_user|"$request"|$status|$body_bytes_sent|$request_id|$http_user_agent|$kit_tier|$arg_q|$cookie_sid|$uri'
servers:
  - listen: ["127.0.0.1:{port}"]
    routes:
      - path: /hello
        handler: hello
        headers:
          request_id: true
          set:
            X-Host: "$host"
            X-Vars: "$scheme $request_method $server_protocol $is_args$args"
            X-Peer: "$remote_addr via $realip_remote_addr port=$remote_port"
            X-Agent: "ua=$http_user_agent"
            X-Arg: "q=$arg_q sid=$cookie_sid"
            X-Tier: "$kit_tier"
            X-Id: "$request_id"
            X-Sent: "$sent_http_content_type"
            X-Literal: "$ 5 and $"
      - regex: "^/re/([a-z]+)/([0-9]+)$"
        handler: hello
        headers: { set: { X-Groups: "$2-$1" } }
      - path: /go
        handler: redirect
        redirect: { return: "302 /to/$arg_next?tier=$kit_tier" }
      - prefix: /lookup
        handler: kit_vars
      - path: /crash
        handler: hello
        headers: { set: { X-Boom: "$kit_crash" } }
""" % KIT_VARS


class VariablesTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server(SITE, workers=1)
        cls.server.start()
        cls.port = cls.server.port

    @classmethod
    def tearDownClass(cls):
        cls.server.__exit__(None, None, None)

    def get(self, path, headers=None):
        return request(self.port, path=path, headers=headers)

    def log_lines(self, n):
        path = os.path.join(self.server.dir, "access.log")
        lines = []

        def enough():
            nonlocal lines
            try:
                with open(path, errors="replace") as f:
                    lines = f.read().splitlines()
            except FileNotFoundError:
                return False
            return len(lines) >= n
        wait_for(enough, what="%d access log lines" % n)
        return lines

    def test_core_variables_in_headers(self):
        r = self.get("/hello?q=a%20b&x=1", {"User-Agent": "tester/1", "Cookie": "a=1; sid=s42"})
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("X-Host"), "localhost")
        self.assertEqual(r.header("X-Vars"), "http GET HTTP/1.1 ?q=a%20b&x=1")
        self.assertEqual(r.header("X-Agent"), "ua=tester/1")
        self.assertEqual(r.header("X-Arg"), "q=a b sid=s42")  # $arg_ is decoded
        self.assertEqual(r.header("X-Literal"), "$ 5 and $")
        m = re.fullmatch(r"127\.0\.0\.1 via 127\.0\.0\.1 port=(\d+)", r.header("X-Peer"))
        self.assertTrue(m, r.header("X-Peer"))
        self.assertNotEqual(int(m.group(1)), self.port)
        # A missing value is empty; the header with an empty value is kept.
        self.assertEqual(r.header("X-Tier"), "")

    def test_request_id_is_one_per_request_and_adopted(self):
        a, b = self.get("/hello"), self.get("/hello")
        self.assertRegex(a.header("X-Id"), r"^[0-9a-f]{32}$")
        self.assertEqual(a.header("X-Id"), a.header("X-Request-Id"))
        self.assertNotEqual(a.header("X-Id"), b.header("X-Id"))
        c = self.get("/hello", {"X-Request-Id": "client-id.7"})
        self.assertEqual(c.header("X-Id"), "client-id.7")
        self.assertEqual(c.header("X-Request-Id"), "client-id.7")

    def test_regex_groups(self):
        r = self.get("/re/books/42")
        self.assertEqual(r.header("X-Groups"), "42-books")

    def test_module_variable_everywhere(self):
        r = self.get("/hello", {"X-Tier": "gold"})
        self.assertEqual(r.header("X-Tier"), "tier-gold")
        r = self.get("/go?next=a%2Fb%20c", {"X-Tier": "gold"})
        self.assertEqual(r.status, 302)
        # $arg_ is decoded, so a URL gets it percent-encoded again.
        self.assertEqual(r.header("Location"), "/to/a/b%20c?tier=tier-gold")

    def test_realip_variable_keeps_the_proxy_address(self):
        r = self.get("/hello", {"X-Real-IP": "203.0.113.9"})
        self.assertTrue(r.header("X-Peer").startswith("203.0.113.9 via 127.0.0.1 port="),
                        r.header("X-Peer"))

    def test_lookup_by_name(self):
        r = self.get("/lookup?host&kit_tier&http_x_tier&arg_zz&nosuch&1&remote_user",
                     {"X-Tier": "blue"})
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.body.decode(),
                         "host=[localhost]\nkit_tier=[tier-blue]\nhttp_x_tier=[blue]\n"
                         "arg_zz=none\nnosuch=unknown\n1=none\nremote_user=none\n")

    def test_access_log_format(self):
        before = len(self.log_lines(0))
        self.get('/hello?q=x%22y%01', {"User-Agent": 'evil"agent\xe9', "Cookie": "sid=c1",
                                  "X-Tier": "t", "X-Request-Id": "rid-1"})
        self.get("/nothing-here")
        lines = self.log_lines(before + 2)[before:]
        fields = lines[0].split("|")
        self.assertEqual(fields[:5], ["127.0.0.1", "127.0.0.1", "-",
                                      '"GET /hello?q=x%22y%01 HTTP/1.1"', "200"])
        self.assertRegex(fields[5], r"^[1-9][0-9]*$")
        # Values are escaped as nginx does: '"', controls and non-ASCII.
        self.assertEqual(fields[6:], ["rid-1", "evil\\x22agent\\xC3\\xA9", "tier-t", "x\\x22y\\x01",
                                      "c1",
                                      "/hello"])
        # Missing values are "-"; the core's 404 page is logged too.
        fields = lines[1].split("|")
        self.assertEqual(fields[3:5], ['"GET /nothing-here HTTP/1.1"', "404"])
        self.assertEqual(fields[7:11], ["-", "-", "-", "-"])
        self.assertRegex(fields[6], r"^[0-9a-f]{32}$")


class CrashingGetterTest(unittest.TestCase):
    def test_a_crashing_getter_is_charged_to_its_module(self):
        with Server(SITE, check_clean=False) as s:
            try:
                request(s.port, path="/crash")
            except (EOFError, OSError):
                pass
            wait_for(lambda: "crashed with signal 11 (SIGSEGV, Segmentation fault) in module "
                             "kit_vars, phase variable, request 'GET /crash HTTP/1.1'" in s.log(),
                     what="the crash report naming kit_vars:\n" + s.log())
            # The server answers again (a new worker).
            wait_for(lambda: request(s.port, path="/hello").status == 200, what="a fresh worker")


class ConfigErrorsTest(unittest.TestCase):
    def check(self, cfg):
        s = Server(cfg, check_clean=False)
        try:
            return s.run("-t")
        finally:
            s.__exit__(None, None, None)

    def test_unknown_variable_names_position_and_known_names(self):
        for module, section in (
                ("headers", "headers: { set: { X-A: \"$hots\" } }"),
                ("redirect", "redirect: { return: \"301 /x$hots\" }"),
                ("access_log", None)):
            if section:
                cfg = ("modules: [hello, %s, \"%s\"]\nservers:\n  - listen: [\"127.0.0.1:{port}\"]\n"
                       "    routes:\n      - path: /\n        handler: %s\n        %s\n"
                       % (module, KIT_VARS, "redirect" if module == "redirect" else "hello",
                          section))
            else:
                cfg = ("modules: [hello, access_log, \"%s\"]\n"
                       "access_log: { path: a.log, format: '$remote_addr $hots' }\n"
                       "servers:\n  - listen: [\"127.0.0.1:{port}\"]\n"
                       "    routes:\n      - path: /\n        handler: hello\n" % KIT_VARS)
            rc, out = self.check(cfg)
            self.assertEqual(rc, 1, (module, out))
            self.assertRegex(out, r"twister\.yaml:\d+:\d+: .*unknown variable \$hots \(known: "
                                  r"\$host, ", module)
            self.assertIn("$kit_tier (kit_vars)", out, module)

    def test_proxy_hash_key_unknown_variable(self):
        cfg = ("modules: [proxy]\nproxy:\n  upstreams:\n    app:\n      servers: [\"127.0.0.1:1\"]\n"
               "      balance: hash\n      hash_key: \"$cookie_sid$nope\"\n"
               "servers:\n  - listen: [\"127.0.0.1:{port}\"]\n    routes:\n"
               "      - path: /\n        handler: proxy\n        proxy: { pass: app }\n")
        rc, out = self.check(cfg)
        self.assertEqual(rc, 1, out)
        self.assertRegex(out, r"twister\.yaml:\d+:\d+: proxy\.upstreams\.app\.hash_key: unknown variable \$nope")

    def test_limit_key_unknown_variable(self):
        cfg = ("modules: [limit_req, hello]\nlimit_req:\n  zones:\n"
               "    z: { key: \"$remote_addr:$nope\", rate: 1r/s }\n"
               "servers:\n  - listen: [\"127.0.0.1:{port}\"]\n    routes:\n"
               "      - path: /\n        handler: hello\n        limit_req: { zone: z }\n")
        rc, out = self.check(cfg)
        self.assertEqual(rc, 1, out)
        self.assertRegex(out, r"twister\.yaml:\d+:\d+: .*unknown variable \$nope")

    def test_a_module_may_not_take_a_core_name(self):
        cfg = ("modules: [hello, \"%s\"]\nservers:\n  - listen: [\"127.0.0.1:{port}\"]\n"
               "    routes:\n      - path: /\n        handler: hello\n" % VAR_DUP)
        rc, out = self.check(cfg)
        self.assertEqual(rc, 1, out)
        self.assertRegex(out, r"twister\.yaml:\d+:\d+: .*module var_dup: variable \$host is the "
                              r"core's")


class ProxyVariablesTest(unittest.TestCase):
    def test_hash_key_and_set_headers_use_variables(self):
        a, b = Backend("a"), Backend("b")
        try:
            cfg = ("modules: [proxy]\nproxy:\n  upstreams:\n    app:\n"
                   "      servers: [\"127.0.0.1:%d\", \"127.0.0.1:%d\"]\n"
                   "      balance: hash\n      hash_key: \"$cookie_sid\"\n"
                   "servers:\n  - listen: [\"127.0.0.1:{port}\"]\n    routes:\n"
                   "      - prefix: /\n        handler: proxy\n"
                   "        proxy:\n          pass: app\n          set_headers:\n"
                   "            X-Real-IP: $remote_addr\n"
                   "            X-Orig: \"$request_method $request_uri\"\n"
                   "            X-Path: \"$uri\"\n"
                   "            X-Empty: \"$http_x_absent\"\n" % (a.port, b.port))
            with Server(cfg) as s:
                seen = {}
                for sid in ("s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8"):
                    got = {request(s.port, path="/echo", headers={"Cookie": "sid=" + sid})
                           .header("X-Backend") for _ in range(3)}
                    self.assertEqual(len(got), 1, (sid, got))
                    seen[sid] = got.pop()
                self.assertEqual(set(seen.values()), {"a", "b"}, seen)
                r = request(s.port, path="/echo/x?y=1")
                sent = json.loads(r.body)["headers"]
                self.assertEqual(sent["X-Real-Ip"], "127.0.0.1")
                self.assertEqual(sent["X-Orig"], "GET /echo/x?y=1")
                self.assertNotIn("X-Empty", sent)  # an empty value sends no field
                # A decoded CR/LF in $uri can never inject a header upstream.
                r = request(s.port, path="/echo/a%0d%0aX-Injected:%201")
                sent = json.loads(r.body)["headers"]
                self.assertNotIn("X-Injected", sent)
                self.assertNotIn("X-Path", sent)
        finally:
            a.stop()
            b.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
