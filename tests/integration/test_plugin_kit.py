"""What a plugin author meets: a module that crashes or hangs in configure
is named (module, hook, route) by -t, -T, -M and by a reload, and the
generation a failed reload abandons still runs its exit_worker hooks."""

import os
import time
import unittest

from harness import Server, request, wait_for

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


if __name__ == "__main__":
    unittest.main()
