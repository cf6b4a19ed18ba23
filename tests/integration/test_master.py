"""Master and workers: start, serve, stop; crash respawn; -t while running;
failed start-up of a generation (issue: prefork master and reload)."""

import os
import signal
import subprocess
import time
import unittest

from harness import TWISTER, Client, Server, request, wait_for


def sanitizer_build():
    """Whether the server under test runs with AddressSanitizer (and so
    LeakSanitizer): the executable then imports or defines __asan_init."""
    out = subprocess.run(["nm", "-D", TWISTER], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL).stdout
    return b"__asan_init" in out

HELLO = """
modules: [hello, echo, crash]
servers:
  - listen: ["127.0.0.1:{port}"]
    routes:
      - path: /hello
        handler: hello
      - path: /echo
        handler: echo
        echo: { buffer: true }
      - path: /crash
        handler: crash
        crash: { mode: segv }
"""


class MasterTest(unittest.TestCase):
    def test_serves_and_stops_on_term(self):
        with Server(HELLO, workers=2) as s:
            r = request(s.port, path="/hello")
            self.assertEqual(r.status, 200)
            self.assertEqual(r.body, b"Hello, World!")
            # The master listens before it has forked every worker.
            wait_for(lambda: len(s.worker_pids()) == 2, what="two workers")
            self.assertTrue(os.path.exists(os.path.join(s.dir, "twister.pid")))
            with open(os.path.join(s.dir, "twister.pid")) as f:
                self.assertEqual(int(f.read()), s.pid())
            rc = s.stop(signal.SIGTERM)
            self.assertEqual(rc, 0)
            self.assertFalse(os.path.exists(os.path.join(s.dir, "twister.pid")))

    def test_quit_lets_in_flight_request_finish(self):
        with Server(HELLO, workers=1) as s:
            c = Client(s.port)
            body = b"x" * 100
            c.send(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n" + body[:50])
            time.sleep(0.3)
            s.send_signal(signal.SIGQUIT)
            time.sleep(0.3)
            c.send(body[50:])
            r = c.read_response()
            self.assertEqual(r.status, 200)
            self.assertEqual(r.body, body)
            self.assertEqual(r.header("connection"), "close")
            self.assertEqual(s.proc.wait(timeout=20), 0)

    def test_crashing_route_is_respawned_and_logged(self):
        with Server(HELLO, workers=2, check_clean=False) as s:
            before = s.worker_pids()
            keep = Client(s.port)
            keep.send(b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n")
            self.assertEqual(keep.read_response().status, 200)
            with self.assertRaises((EOFError, ConnectionResetError)):
                c = Client(s.port)
                c.send(b"GET /crash HTTP/1.1\r\nHost: a\r\n\r\n")
                c.read_response()
            wait_for(lambda: "crashed" in s.log(), what="crash log line")
            log = s.log()
            self.assertIn("module crash", log)
            self.assertIn("GET /crash HTTP/1.1", log)
            self.assertIn("SIGSEGV".lower()[3:], log.lower())
            wait_for(lambda: len(s.worker_pids()) == 2, what="respawn")
            self.assertNotEqual(before, s.worker_pids())
            # The server keeps serving.
            self.assertEqual(request(s.port, path="/hello").status, 200)

    def test_check_while_running_binds_nothing(self):
        with Server(HELLO, workers=1) as s:
            c = Client(s.port)
            c.send(b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n")
            self.assertEqual(c.read_response().status, 200)
            rc, out = s.run("-t")
            self.assertEqual(rc, 0, out)
            self.assertIn("configuration OK", out)
            c.send(b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n")
            self.assertEqual(c.read_response().status, 200)

    def test_first_generation_failure_exits_with_error(self):
        s = Server("""
modules: [hello, crash]
crash: { init: fail }
servers:
  - listen: ["127.0.0.1:{port}"]
    routes:
      - path: /hello
        handler: hello
""", workers=1, check_clean=False)
        s.start(wait=False)
        rc = s.proc.wait(timeout=30)
        self.assertEqual(rc, 1)
        self.assertIn("init", s.log() + s.output())
        s.__exit__(None, None, None)

    @unittest.skipUnless(sanitizer_build(), "LeakSanitizer runs in sanitizer builds only")
    def test_a_leak_in_a_worker_is_reported_and_fails_the_test(self):
        for stop in (signal.SIGTERM, signal.SIGQUIT):
            s = Server("""
modules: [hello, crash]
crash: { init: leak }
servers:
  - listen: ["127.0.0.1:{port}"]
    routes:
      - path: /hello
        handler: hello
""", workers=1).start()
            self.assertEqual(request(s.port, path="/hello").status, 200)
            s.stop(stop)
            text = s.output()
            self.assertIn("ERROR: LeakSanitizer: detected memory leaks", text)
            self.assertIn("Direct leak of 4242 byte(s)", text)
            # The harness fails a test whose server reported a leak.
            with self.assertRaisesRegex(AssertionError, "LeakSanitizer"):
                s.__exit__(None, None, None)

    def test_version_and_help(self):
        s = Server(HELLO)
        rc, out = s.run("-V")
        self.assertEqual(rc, 0)
        self.assertIn("twister", out)
        rc, out = s.run("-M")
        self.assertEqual(rc, 0, out)
        self.assertIn("hello", out)
        self.assertIn("echo", out)
        rc, out = s.run("-T")
        self.assertEqual(rc, 0, out)
        self.assertIn("servers", out)
        s.__exit__(None, None, None)


if __name__ == "__main__":
    unittest.main(verbosity=2)
