"""What a plugin author meets: a module that crashes or hangs in configure
is named (module, hook, route) by -t, -T, -M and by a reload, and the
generation a failed reload abandons still runs its exit_worker hooks."""

import os
import time
import unittest

from harness import BUILD_DIR, Client, Server, request, wait_for

KIT_API = os.path.join(BUILD_DIR, "tests", "plugins", "kit_api.so")
GUARD = os.path.join(BUILD_DIR, "tests", "plugins", "guard.so")
SOURCE_DIR = os.environ.get("TW_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "../.."))

CRASHING_ROUTE = """
modules: [crash]
{timeouts}
servers:
  - listen: ["127.0.0.1:{port}"]
    routes:
      - path: /a
        handler: crash
      - path: /b
        handler: crash
      - path: /c
        handler: crash
        crash: {{ configure: {action} }}
"""

GOOD = """
modules: [crash]
crash: { marker_dir: "{dir}" }
servers:
  - listen: ["127.0.0.1:{port}"]
    routes:
      - path: /a
        handler: crash
"""


def config(action, timeouts=""):
    return CRASHING_ROUTE.format(action=action, timeouts=timeouts, port="{port}")


class CheckerTest(unittest.TestCase):
    def check(self, cfg, *args):
        s = Server(cfg, check_clean=False)
        try:
            return s.run(*args)
        finally:
            s.__exit__(None, None, None)

    def test_configure_crash_is_named_by_every_check_mode(self):
        for mode in ("-t", "-T", "-M"):
            rc, out = self.check(config("segv"), mode)
            self.assertEqual(rc, 1, (mode, out))
            self.assertIn("module crash: configure (route servers[0].routes[2]) crashed with "
                          "SIGSEGV", out, mode)
            self.assertIn("test failed", out)

    def test_global_configure_crash_names_the_global_section(self):
        cfg = GOOD.replace('marker_dir: "{dir}"', "configure: segv")
        rc, out = self.check(cfg, "-t")
        self.assertEqual(rc, 1, out)
        self.assertIn("module crash: configure (global section) crashed with SIGSEGV", out)

    def test_configure_hang_is_bounded(self):
        rc, out = self.check(config("hang", "timeouts: { configure: 1s }"), "-t")
        self.assertEqual(rc, 1, out)
        self.assertIn("module crash: configure (route servers[0].routes[2]) did not return "
                      "within 1 s", out)

    def test_configure_failure_and_success_are_unchanged(self):
        rc, out = self.check(config("fail"), "-t")
        self.assertEqual(rc, 1, out)
        self.assertIn("crash: route configure failed as configured", out)
        self.assertNotIn("crashed", out)
        rc, out = self.check(config("ok"), "-T")
        self.assertEqual(rc, 0, out)
        self.assertIn("# phase table", out)


class ReloadTest(unittest.TestCase):
    def test_reload_names_a_configure_crash(self):
        with Server(GOOD, check_clean=False) as s:
            s.write_config(config("segv"))
            rc, out = s.run("-s", "reload", timeout=60)
            self.assertNotEqual(rc, 0, out)
            want = "module crash: configure (route servers[0].routes[2]) crashed with SIGSEGV"
            self.assertIn(want, out)
            self.assertIn(want, s.log())
            self.assertEqual(request(s.port, path="/a").status, 200)

    def test_reload_names_a_configure_hang(self):
        with Server(GOOD, check_clean=False) as s:
            s.write_config(config("hang"))
            rc, out = s.run("-s", "reload", timeout=90)
            self.assertNotEqual(rc, 0, out)
            self.assertIn("module crash: configure (route servers[0].routes[2]) did not return "
                          "within 15 s", out)
            self.assertEqual(request(s.port, path="/a").status, 200)


class AbandonedGenerationTest(unittest.TestCase):
    def test_exit_worker_runs_when_a_reload_fails(self):
        with Server(GOOD, workers=2, check_clean=False) as s:
            wait_for(lambda: sorted(f for f in os.listdir(s.dir) if f.startswith("worker-"))
                     == ["worker-1-0", "worker-1-1"], what="generation 1's markers")
            # Generation 2: worker 0 starts (creates its marker), worker 1's
            # init_worker fails, so the generation is abandoned.
            s.write_config(GOOD.replace('marker_dir: "{dir}"',
                                        'marker_dir: "{dir}", init_fail_worker: 1'))
            rc, out = s.run("-s", "reload", timeout=60)
            self.assertNotEqual(rc, 0, out)
            self.assertIn("init_worker failed as configured (worker 1)", out)
            wait_for(lambda: not any(f.startswith("worker-2-") for f in os.listdir(s.dir)),
                     timeout=10, what="generation 2's exit_worker to remove its marker\n" + s.log())
            markers = sorted(f for f in os.listdir(s.dir) if f.startswith("worker-"))
            self.assertEqual(markers, ["worker-1-0", "worker-1-1"])
            self.assertEqual(request(s.port, path="/a").status, 200)


API = """
modules: [redirect, static, "%s"]
servers:
  - listen: ["127.0.0.1:{port}"]
    routes:
      - regex: "^/items/([a-z]+)/([0-9]+)$"
        handler: kit_api
      - path: /plain
        handler: kit_api
      - path: /listed
        handler: kit_api
        methods: [GET, DELETE]
      - regex: "^/old/([a-z]+)/(.*)$"
        handler: redirect
        redirect: { return: "301 /new/$2?from=$1" }
      - prefix: /files/
        handler: static
        static: { root: "{dir}" }
""" % KIT_API


class ApiTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server(API, workers=1)
        cls.server.start()

    @classmethod
    def tearDownClass(cls):
        cls.server.__exit__(None, None, None)

    def get(self, path, method="GET", headers=None):
        return request(self.server.port, method=method, path=path, headers=headers)

    def test_args_are_percent_decoded(self):
        r = self.get("/plain?x=1&q=a%20b+c%2F&a+b=%7e&q=second")
        self.assertEqual(r.status, 200, r.body)
        self.assertIn(b"arg q=[a b c/]\n", r.body)       # the first q, decoded, '+' a space
        self.assertIn(b"arg a b=[~]\n", r.body)          # names are decoded too
        r = self.get("/plain?q")
        self.assertIn(b"arg q=[]\n", r.body)
        r = self.get("/plain?qq=1")
        self.assertIn(b"arg q=none\n", r.body)
        r = self.get("/plain?q=%zz")
        self.assertIn(b"arg q=error Invalid argument\n", r.body)

    def test_cookies(self):
        r = self.get("/plain", headers={"Cookie": 'a=1; sid="x y"; b=2'})
        self.assertIn(b"cookie sid=[x y]\n", r.body)
        r = self.get("/plain", headers={"Cookie": "sidx=1;sid=42"})
        self.assertIn(b"cookie sid=[42]\n", r.body)
        r = self.get("/plain", headers={"Cookie": "other=1"})
        self.assertIn(b"cookie sid=none\n", r.body)

    def test_regex_captures(self):
        r = self.get("/items/books/42")
        self.assertIn(b"capture 0=[/items/books/42]\ncapture 1=[books]\ncapture 2=[42]\n", r.body)
        r = self.get("/plain")  # an exact route has none
        self.assertIn(b"capture 0=none\ncapture 1=none\n", r.body)

    def test_redirect_substitutes_groups(self):
        r = self.get("/old/news/a%20b/c")
        self.assertEqual(r.status, 301)
        self.assertEqual(r.header("location"), "/new/a%20b/c?from=news")

    def test_worker_identity_and_per_worker_state(self):
        first = self.get("/plain").body
        second = self.get("/plain").body
        self.assertRegex(first, rb"worker 0 generation 1 served (\d+)\n")
        n1 = int(first.rsplit(b"served ", 1)[1])
        n2 = int(second.rsplit(b"served ", 1)[1])
        self.assertEqual(n2, n1 + 1)

    def test_request_log_names_module_and_request(self):
        self.get("/plain?q=logme")
        wait_for(lambda: "kit_api says hello" in self.server.log(), what="the log line")
        self.assertRegex(self.server.log(), r"\[warn\] .*module kit_api: kit_api says hello "
                                            r"\(request 'GET /plain\?q=logme HTTP/1.1', "
                                            r"client 127.0.0.1\)")

    def test_declared_methods_make_options_and_405_exact(self):
        r = self.get("/plain", method="OPTIONS")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("allow"), "GET, HEAD, POST")
        r = self.get("/plain", method="DELETE")
        self.assertEqual(r.status, 405)
        self.assertEqual(r.header("allow"), "GET, HEAD, POST")
        self.assertEqual(self.get("/plain", method="POST").status, 200)
        # A route's own methods: list wins over the declaration.
        r = self.get("/listed", method="DELETE")
        self.assertEqual(r.status, 200)
        self.assertEqual(self.get("/listed", method="POST").status, 405)

    def test_static_declares_get_and_head(self):
        r = self.get("/files/x", method="OPTIONS")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("allow"), "GET, HEAD")
        r = self.get("/files/x", method="PUT")
        self.assertEqual(r.status, 405)
        self.assertEqual(r.header("allow"), "GET, HEAD")


EXPLAIN = """
modules: [access_log, redirect, hello]
access_log: { path: "{dir}/access.log", format: json }
servers:
  - listen: ["127.0.0.1:{port}"]
    server_names: [example.com, "*.example.org"]
    routes:
      - path: /hello
        handler: hello
        hello: { message: Hi }
      - regex: "^/old/([a-z]+)$"
        handler: redirect
        redirect: { return: "301 /new/$1" }
      - prefix: /
        handler: hello
      - prefix: /o
        handler: hello
        methods: [GET]
"""


class ExplainTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server(EXPLAIN)

    @classmethod
    def tearDownClass(cls):
        cls.server.__exit__(None, None, None)

    def explain(self, method, url):
        return self.server.run("--explain", method, url)

    def test_regex_route_wins_over_prefix_and_says_why(self):
        rc, out = self.explain("GET", "http://www.example.org/old/abc?x=1")
        self.assertEqual(rc, 0, out)
        # The harness puts 4 lines and a blank one before the config.
        self.assertRegex(out, r"server   servers\[0\] \(example.com\) at .*twister.yaml:9:5\n"
                              r"\s+why: Host 'www.example.org' matches server_names entry "
                              r"'\*.example.org' \(wildcard")
        self.assertRegex(out, r"route    servers\[0\].routes\[1\] \(regex \^/old/\(\[a-z\]\+\)\$\) "
                              r"at .*twister.yaml:15:9\n\s+why: the first regex route")
        self.assertIn("$1 = 'abc'", out)
        self.assertRegex(out, r"routes\[2\] prefix /\s+matches, but loses to the chosen one")
        self.assertRegex(out, r"routes\[0\] path   /hello\s+does not match")
        self.assertRegex(out, r"CONTENT      redirect \(handler: at .*twister.yaml:16:18; loaded "
                              r"at .*twister.yaml:6:23; route section at .*twister.yaml:17:9\)")
        self.assertRegex(out, r"  LOG\n    1. access_log\s+order 500\s+loaded at .*twister.yaml:6:11; "
                              r"no section on this route")
        self.assertRegex(out, r"access_log \(global section, at .*twister.yaml:7:1\):\n"
                              r"    path: .*access.log\n    format: json")
        self.assertIn("redirect (this route, at", out)
        self.assertIn("return: 301 /new/$1", out)

    def test_default_server_longest_prefix_and_405(self):
        rc, out = self.explain("POST", "/o/x")
        self.assertEqual(rc, 0, out)
        self.assertIn("why: no Host: the listener's first server is the default", out)
        self.assertRegex(out, r"route    servers\[0\].routes\[3\] \(prefix /o\)")
        self.assertIn("why: the longest prefix", out)
        self.assertIn("method   POST: refused 405 with Allow: GET, HEAD", out)
        rc, out = self.explain("GET", "http://unknown.test/hello")
        self.assertIn("no server_names entry on 127.0.0.1:%d matches Host 'unknown.test'"
                      % self.server.port, out)
        self.assertIn("why: exact path match", out)

    def test_refused_urls_and_usage(self):
        rc, out = self.explain("GET", "/a/../../etc")
        self.assertEqual(rc, 1, out)
        self.assertIn("refused  400", out)
        rc, out = self.server.run("--explain", "GET")
        self.assertEqual(rc, 2, out)
        self.assertIn("--explain needs a method and a URL", out)


GUARDED = """
modules: [static, "%s"]
servers:
  - listen: ["127.0.0.1:{port}"]
    routes:
      - prefix: /private/
        handler: static
        static: { root: "{dir}/site" }
        guard: { key: s3cret }
      - prefix: /
        handler: static
        static: { root: "{dir}/site" }
""" % GUARD


class GuideExampleTest(unittest.TestCase):
    """The guide's worked example (tests/plugins/guard.c is its code)."""

    @classmethod
    def setUpClass(cls):
        cls.server = Server(GUARDED, extra_files={"site/private/a.txt": "secret\n",
                                                   "site/open.txt": "open\n"})
        cls.server.start()

    @classmethod
    def tearDownClass(cls):
        cls.server.__exit__(None, None, None)

    def test_guide_shows_the_tested_code(self):
        with open(os.path.join(SOURCE_DIR, "modules", "README.md")) as f:
            guide = f.read()
        with open(os.path.join(SOURCE_DIR, "tests", "plugins", "guard.c")) as f:
            code = f.read()
        self.assertIn("```c\n" + code + "```\n", guide)

    def test_access_guard_refuses_without_the_key(self):
        r = request(self.server.port, path="/private/a.txt")
        self.assertEqual(r.status, 403)
        self.assertIsNone(r.header("x-guarded"))  # the core's error page skips the filters
        wait_for(lambda: "module guard: refused: no valid key (request 'GET /private/a.txt "
                         "HTTP/1.1', client 127.0.0.1)" in self.server.log(), what="the log line")
        self.assertEqual(request(self.server.port, path="/private/a.txt?key=nope").status, 403)
        self.assertEqual(request(self.server.port, path="/private/a.txt?key=%zz").status, 400)

    def test_key_by_argument_or_cookie_passes_and_is_marked(self):
        for r in (request(self.server.port, path="/private/a.txt?key=s3cret"),
                  request(self.server.port, path="/private/a.txt?key=s%33cret"),
                  request(self.server.port, path="/private/a.txt",
                          headers={"Cookie": "theme=dark; key=s3cret"})):
            self.assertEqual((r.status, r.body), (200, b"secret\n"))
            self.assertEqual(r.header("x-guarded"), "passed")
            self.assertEqual(r.header("cache-control"), "private")

    def test_unguarded_routes_are_untouched(self):
        r = request(self.server.port, path="/open.txt")
        self.assertEqual((r.status, r.body), (200, b"open\n"))
        self.assertIsNone(r.header("x-guarded"))

    def test_explain_lists_the_guard(self):
        rc, out = self.server.run("--explain", "GET", "/private/a.txt")
        self.assertEqual(rc, 0, out)
        self.assertRegex(out, r"  ACCESS\n    1. guard\s+order 500\s+loaded at .*; route section at")
        self.assertRegex(out, r"  header\n    1. guard\s+order 500")
        self.assertIn("guard (this route, at", out)
        self.assertIn("key: s3cret", out)


if __name__ == "__main__":
    unittest.main()
