"""Zero-loss SIGHUP reload: under a bounded keep-alive load, 20 reloads (half
of them with a rebuilt hello plugin copied over the running one) lose no
request; a bad config or a plugin that fails or crashes at init is rolled
back while the old generation keeps serving."""

import os
import signal
import socket
import subprocess
import threading
import time
import unittest

from harness import Client, Server, request, wait_for, SOURCE_DIR

HELLO_SRC = os.path.join(SOURCE_DIR, "modules", "hello", "hello.c")
INCLUDE = os.path.join(SOURCE_DIR, "core", "include")


def build_hello(out, message):
    """Compiles modules/hello/hello.c with another default message, the way
    a plugin author rebuilds a plugin."""
    with open(HELLO_SRC) as f:
        src = f.read()
    assert "Hello, World!" in src
    tmp = out + ".c"
    with open(tmp, "w") as f:
        f.write(src.replace("Hello, World!", message))
    cc = os.environ.get("CC", "cc")
    subprocess.run([cc, "-shared", "-fPIC", "-O1", "-I", INCLUDE, "-o", out + ".new", tmp],
                   check=True)
    # Like `cp new.so plugins/hello.so`: overwrite the running file in place.
    with open(out + ".new", "rb") as src_f, open(out, "r+b" if os.path.exists(out) else "wb") as dst:
        data = src_f.read()
        dst.seek(0)
        dst.write(data)
        dst.truncate()


CONFIG = """
modules: [./plugins/hello.so, crash]
servers:
  - listen: ["127.0.0.1:{port}"]
    routes:
      - path: /hello
        handler: hello
"""


class Load:
    """N keep-alive connections sending GET /hello back to back, bounded in
    time by the test. A response with Connection: close makes the client
    reconnect (that is how a draining server says goodbye); anything else
    that goes wrong is an error."""

    def __init__(self, port, connections=8):
        self.port = port
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.ok = 0
        self.errors = []
        self.last_body = {}
        self.threads = [threading.Thread(target=self.run, args=(i,)) for i in range(connections)]

    def run(self, i):
        deadline = time.monotonic() + 300
        c = None
        while not self.stop.is_set() and time.monotonic() < deadline:
            try:
                if c is None:
                    c = Client(self.port, timeout=10)
                c.send(b"GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n")
                r = c.read_response()
                with self.lock:
                    if r.status != 200:
                        self.errors.append("status %d" % r.status)
                    else:
                        self.ok += 1
                        self.last_body[i] = r.body
                if (r.header("connection") or "").lower() == "close":
                    c.close()
                    c = None
            except Exception as e:  # noqa: BLE001 - every failure counts
                with self.lock:
                    self.errors.append(repr(e))
                if c:
                    c.close()
                c = None
        if c:
            c.close()

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(30)
        return False


class ReloadTest(unittest.TestCase):
    def setUp(self):
        self.server = Server(CONFIG, workers=2)
        self.plugin = os.path.join(self.server.dir, "plugins", "hello.so")
        os.makedirs(os.path.dirname(self.plugin))
        build_hello(self.plugin, "Hello from build 0")
        self.server.start()
        # The master listens before it forks: tests that look at the
        # workers' pids need both forked.
        wait_for(lambda: len(self.server.worker_pids()) == 2, what="both workers to be forked")

    def tearDown(self):
        self.server.__exit__(None, None, None)

    def reload(self):
        rc, out = self.server.run("-s", "reload", timeout=60)
        return rc, out

    def test_twenty_reloads_under_load_lose_nothing(self):
        s = self.server
        with Load(s.port) as load:
            wait_for(lambda: load.ok > 20, what="load to start")
            build = 0
            for i in range(20):
                if i % 2 == 0:
                    build += 1
                    build_hello(self.plugin, "Hello from build %d" % build)
                rc, out = self.reload()
                self.assertEqual(rc, 0, out)
                self.assertRegex(out, r"reload OK: generation \d+")
                expect = b"Hello from build %d" % build
                self.assertEqual(request(s.port, path="/hello").body, expect)
                time.sleep(0.2)
            # Every connection switches to the new code, without an error.
            wait_for(lambda: all(b == expect for b in load.last_body.values()),
                     timeout=20, what="all connections on the last build")
        self.assertEqual(load.errors, [], "failed requests during reloads")
        self.assertGreater(load.ok, 100)
        self.assertNotIn("crashed", s.log())

    def test_sighup_reload_works_too(self):
        s = self.server
        build_hello(self.plugin, "Hello via SIGHUP")
        s.send_signal(signal.SIGHUP)
        wait_for(lambda: request(s.port, path="/hello").body == b"Hello via SIGHUP",
                 what="SIGHUP reload")

    def test_bad_config_keeps_old_generation(self):
        s = self.server
        s.write_config(CONFIG + "      - path: /oops\n        handler: [not, a, string]\n")
        rc, out = self.reload()
        self.assertEqual(rc, 1, out)
        self.assertRegex(out, r"twister\.yaml:\d+:\d+:")
        self.assertEqual(request(s.port, path="/hello").body, b"Hello from build 0")
        self.assertRegex(s.log(), r"twister\.yaml:\d+:\d+:")

    def test_plugin_failing_or_crashing_at_init_is_rolled_back(self):
        s = self.server
        for mode in ("fail", "segv"):
            s.write_config(CONFIG + "crash: { init: %s }\n" % mode)
            rc, out = self.reload()
            self.assertEqual(rc, 1, out)
            self.assertIn("crash", out)
            self.assertEqual(request(s.port, path="/hello").status, 200)
        s.write_config(CONFIG)
        rc, out = self.reload()
        self.assertEqual(rc, 0, out)

    def test_overwritten_plugin_does_not_crash_running_workers(self):
        s = self.server
        pids = s.worker_pids()
        c = Client(s.port)
        build_hello(self.plugin, "Hello overwritten")
        for _ in range(50):
            c.send(b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n")
            r = c.read_response()
            self.assertEqual(r.body, b"Hello from build 0")
        self.assertEqual(pids, s.worker_pids())
        rc, out = self.reload()
        self.assertEqual(rc, 0, out)
        self.assertEqual(request(s.port, path="/hello").body, b"Hello overwritten")

    def workers_of(self, generation):
        found = []
        for pid in self.server.worker_pids():
            try:
                with open("/proc/%d/comm" % pid) as f:
                    if f.read().strip().endswith("/%d" % generation):
                        found.append(pid)
            except FileNotFoundError:
                pass
        return found

    def test_a_worker_holds_only_its_own_generation(self):
        # The master holds every live generation's module snapshots and
        # crash slots; a worker must keep its own and no other.
        for generation in (2, 3):
            rc, out = self.reload()
            self.assertEqual(rc, 0, out)
            pids = self.workers_of(generation)
            self.assertEqual(len(pids), 2, pids)
            for pid in pids:
                snapshot_fds = set()
                for fd in os.listdir("/proc/%d/fd" % pid):
                    path = "/proc/%d/fd/%s" % (pid, fd)
                    try:
                        if os.readlink(path).startswith("/memfd:twister:"):
                            snapshot_fds.add(os.stat(path).st_ino)
                    except FileNotFoundError:
                        pass
                loaded, crash_slots = set(), 0
                with open("/proc/%d/maps" % pid) as f:
                    for line in f:
                        fields = line.split(None, 5)
                        name = fields[5].strip() if len(fields) > 5 else ""
                        if name.startswith("/memfd:twister:"):
                            loaded.add(int(fields[4]))
                        elif name.startswith("/dev/zero") and fields[1][3] == "s":
                            crash_slots += 1
                # Each snapshot fd is one this worker loaded.
                self.assertTrue(loaded, "no snapshot mapped in worker %d" % pid)
                self.assertEqual(snapshot_fds, loaded, "worker %d of generation %d" % (pid, generation))
                self.assertEqual(crash_slots, 1, "worker %d of generation %d" % (pid, generation))

    def test_listener_added_and_removed_on_reload(self):
        s = self.server
        s.write_config(CONFIG.replace('["127.0.0.1:{port}"]', '["127.0.0.1:{port}", "127.0.0.1:{port2}"]'))
        rc, out = self.reload()
        self.assertEqual(rc, 0, out)
        self.assertEqual(request(s.port2, path="/hello").status, 200)
        s.write_config(CONFIG)
        rc, out = self.reload()
        self.assertEqual(rc, 0, out)
        self.assertEqual(request(s.port, path="/hello").status, 200)

        def gone():
            try:
                socket.create_connection(("127.0.0.1", s.port2), timeout=1).close()
                return False
            except OSError:
                return True
        wait_for(gone, timeout=40, what="the removed listener to close")


if __name__ == "__main__":
    unittest.main(verbosity=2)
