"""Reload hand-off (issue 16): on a reload the old workers pass their idle
keep-alive connections to the new generation's workers over SCM_RIGHTS, so
the same TCP connections are served by the new config without a reconnect;
every failure falls back to the graceful close, and `reload: { handoff:
off }` restores the close."""

import os
import random
import re
import resource
import select
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import unittest

from harness import Client, Server, request, wait_for

CONFIG = """
{extra}
modules: [hello, crash]
servers:
  - listen: ["127.0.0.1:{port}"]
    routes:
      - path: /hello
        handler: hello
        hello: {{ message: "{message}" }}
      - path: /post
        handler: hello
        hello: {{ message: "posted {message}" }}
      - path: /slow
        handler: crash
        crash: {{ mode: ok, delay: 1s }}
"""


def config(message, extra=""):
    return CONFIG.format(message=message, extra=extra, port="{port}")


GET = b"GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n"


def post(body=b"x" * 32):
    return (b"POST /post HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n" % len(body)
            + body)


def counts(out):
    """The hand-off counts of a `-s reload` reply."""
    m = re.search(r"connections: (\d+) handed off, (\d+) kept to finish, (\d+) closed", out)
    return tuple(int(x) for x in m.groups()) if m else None


class HandoffTest(unittest.TestCase):
    workers = 2

    def start(self, message="gen one", extra="", workers=None):
        self.server = Server(config(message, extra), workers=workers or self.workers)
        self.server.start()
        wait_for(lambda: len(self.server.worker_pids()) == (workers or self.workers),
                 what="workers to be forked")
        return self.server

    def tearDown(self):
        if getattr(self, "server", None):
            self.server.__exit__(None, None, None)

    def reload(self, message, extra=""):
        self.server.write_config(config(message, extra))
        rc, out = self.server.run("-s", "reload", timeout=60)
        self.assertEqual(rc, 0, out)
        return out

    def open_idle(self, n):
        clients = []
        for _ in range(n):
            c = Client(self.server.port, timeout=10)
            c.send(GET)
            r = c.read_response()
            self.assertEqual(r.status, 200)
            self.addCleanup(c.close)
            clients.append(c)
        return clients

    def test_idle_connections_move_and_see_the_new_config(self):
        s = self.start("gen one")
        clients = self.open_idle(16)
        ports = [c.sock.getsockname()[1] for c in clients]
        out = self.reload("gen two")
        self.assertEqual(counts(out), (16, 0, 0), out)
        time.sleep(2)  # the old generation's grace (1 s) has passed: nothing was closed
        for c, port in zip(clients, ports):
            self.assertEqual(c.sock.getsockname()[1], port)  # the same connection
            c.send(GET)
            r = c.read_response()
            self.assertEqual(r.status, 200)
            self.assertEqual(r.body, b"gen two")
            self.assertNotEqual((r.header("connection") or "").lower(), "close")
        for c in clients:
            c.close()
        # The old workers exit at once: nothing is left for them to finish.
        wait_for(lambda: "generation 1 has drained" in s.log(), timeout=20,
                 what="generation 1 to drain")
        moved = [int(x) for x in re.findall(r"drained: (\d+) connections? handed off", s.log())]
        self.assertEqual(sum(moved), 16, s.log())

    def test_connections_follow_several_reloads(self):
        self.start("gen 0")
        clients = self.open_idle(6)
        ports = [c.sock.getsockname()[1] for c in clients]
        for i in range(1, 6):
            self.reload("gen %d" % i)
            for c, port in zip(clients, ports):
                self.assertEqual(c.sock.getsockname()[1], port)
                c.send(GET)
                self.assertEqual(c.read_response().body, b"gen %d" % i)

    def test_handoff_off_closes_idle_connections_as_before(self):
        s = self.start("gen one", extra="reload: { handoff: off }")
        clients = self.open_idle(4)
        out = self.reload("gen two", extra="reload: { handoff: off }")
        self.assertIsNone(counts(out), out)
        self.assertRegex(out, r"reload OK: generation 2\s*$")
        for c in clients:
            self.assertTrue(c.closed(timeout=10), "idle connection not closed by the old generation")
        self.assertEqual(request(s.port, path="/hello").body, b"gen two")

    def test_switch_is_the_new_configs(self):
        # Turned off by the new config: the old generation closes; turned
        # on again: the connections move.
        self.start("gen one")
        clients = self.open_idle(3)
        self.reload("gen two", extra="reload: { handoff: off }")
        for c in clients:
            self.assertTrue(c.closed(timeout=10))
        clients = self.open_idle(3)
        out = self.reload("gen three")
        self.assertEqual(counts(out), (3, 0, 0), out)
        for c in clients:
            c.send(GET)
            self.assertEqual(c.read_response().body, b"gen three")

    def test_busy_connection_moves_when_its_request_ends(self):
        # /slow answers after 1 s (crash module, mode ok): its request is in
        # flight across the reload; its response keeps the connection
        # alive, and once it rests it moves.
        s = self.start("gen one", workers=1)
        idle = self.open_idle(1)[0]
        busy = Client(s.port, timeout=10)
        self.addCleanup(busy.close)
        busy.send(b"GET /slow HTTP/1.1\r\nHost: localhost\r\n\r\n")
        # The worker answers a status query after its accept's first read.
        wait_for(lambda: "connections 2," in self.status(), timeout=10,
                 what="the slow request to arrive")
        out = self.reload("gen two")
        self.assertEqual(counts(out), (1, 1, 0), out)
        r = busy.read_response()
        self.assertEqual(r.status, 200)
        self.assertNotEqual((r.header("connection") or "").lower(), "close")
        wait_for(lambda: "generation 1 has drained" in s.log(), timeout=20,
                 what="generation 1 to drain")
        busy.send(GET)
        self.assertEqual(busy.read_response().body, b"gen two")  # moved, not closed
        idle.send(GET)
        self.assertEqual(idle.read_response().body, b"gen two")
        moved = [int(x) for x in re.findall(r"drained: (\d+) connections? handed off", s.log())]
        self.assertEqual(sum(moved), 2, s.log())

    def status(self):
        return self.server.run("-s", "status")[1]

    def test_client_writing_at_the_moment_of_handoff(self):
        # Requests written while the reload runs, on connections that are
        # idle when it starts: every byte is answered by one generation or
        # the other, none lost.
        s = self.start("gen one")
        clients = self.open_idle(64)
        stop = threading.Event()
        errors, answers = [], []

        def writer(cs):
            deadline = time.monotonic() + 60
            while not stop.is_set() and time.monotonic() < deadline:
                for c in cs:
                    try:
                        c.send(post())
                        r = c.read_response()
                        answers.append(r.body)
                        if r.status != 200:
                            errors.append(r.status)
                    except Exception as e:  # noqa: BLE001
                        errors.append(repr(e))
                        return

        threads = [threading.Thread(target=writer, args=(clients[i::4],)) for i in range(4)]
        for t in threads:
            t.start()
        try:
            for i in range(3):
                self.reload("gen %d" % (i + 2))
                time.sleep(0.2)
        finally:
            stop.set()
            for t in threads:
                t.join(60)
        self.assertEqual(errors, [])
        self.assertIn(b"posted gen 4", answers)
        for c in clients:
            c.send(GET)
            self.assertEqual(c.read_response().body, b"gen 4")


def drained(server, number):
    return "generation %d has drained" % number in server.log()


def eof_soon(c, timeout=2.0):
    """True if the server closed c (EOF or reset) within timeout; for a
    connection whose old worker has exited, the FIN is already here."""
    r, _, _ = select.select([c.sock], [], [], timeout)
    return bool(r) and c.closed(timeout=1)


class FallbackTest(unittest.TestCase):
    """Whatever goes wrong, the old worker keeps the connection and closes
    it gracefully, as without the hand-off."""

    def tearDown(self):
        if getattr(self, "server", None):
            self.server.__exit__(None, None, None)

    def start(self, workers=1, check_clean=True):
        self.server = Server(config("gen one"), workers=workers, check_clean=check_clean)
        self.server.start()
        wait_for(lambda: len(self.server.worker_pids()) == workers, what="workers")
        return self.server

    def idle(self, n):
        clients = []
        for _ in range(n):
            c = Client(self.server.port, timeout=10)
            c.send(GET)
            self.assertEqual(c.read_response().status, 200)
            self.addCleanup(c.close)
            clients.append(c)
        return clients

    def test_new_worker_full(self):
        # The new generation takes 5 connections per worker: the other 7
        # stay with the old worker, which closes them after the grace.
        s = self.start()
        clients = self.idle(12)
        s.write_config(config("gen two", extra="worker_connections: 5"))
        rc, out = s.run("-s", "reload", timeout=60)
        self.assertEqual(rc, 0, out)
        self.assertEqual(counts(out), (5, 0, 7), out)
        wait_for(lambda: drained(s, 1), timeout=30, what="generation 1 to drain")
        closed = [c for c in clients if eof_soon(c)]
        moved = [c for c in clients if c not in closed]
        self.assertEqual((len(moved), len(closed)), (5, 7))
        for c in moved:
            c.send(GET)
            self.assertEqual(c.read_response().body, b"gen two")
        self.assertRegex(s.log(), r"drained: 5 connections handed off to the new generation, "
                                  r"7 closed here \(7 offered but not taken\)")

    def refused(self, listen):
        # The new config serves gen two but not on the listener these
        # connections came through as it was: the new worker refuses each
        # one, and the old worker closes them gracefully.
        s = self.start()
        clients = self.idle(4)
        s.write_config(config("gen two").replace('listen: ["127.0.0.1:{port}"]', listen))
        rc, out = s.run("-s", "reload", timeout=60)
        self.assertEqual(rc, 0, out)
        self.assertEqual(counts(out), (0, 0, 4), out)
        wait_for(lambda: drained(s, 1), timeout=30, what="generation 1 to drain")
        for c in clients:
            self.assertTrue(eof_soon(c), "a connection was neither moved nor closed")
        self.assertRegex(s.log(), r"drained: 0 connections handed off to the new generation, "
                                  r"4 closed here \(4 offered but not taken\)")
        return s

    def test_listener_gone(self):
        s = self.refused('listen: ["127.0.0.1:{port2}"]')
        self.assertEqual(request(s.port2, path="/hello").body, b"gen two")

    def test_proxy_protocol_changed(self):
        # A connection accepted without a PROXY header cannot become one
        # that owes one.
        s = self.refused('listen: ["127.0.0.1:{port} proxy_protocol"]')
        c = Client(s.port)
        self.addCleanup(c.close)
        c.send(b"PROXY TCP4 192.0.2.1 127.0.0.1 5000 80\r\n" + GET)
        self.assertEqual(c.read_response().body, b"gen two")

    def test_new_worker_gone(self):
        # The old worker is frozen (SIGSTOP) through the reload, so its
        # channels and DRAIN wait in its control socket; the new worker is
        # killed (the master respawns it, without a channel); thawed, the
        # old worker finds its channel dead and closes gracefully.
        s = self.start(check_clean=False)  # the log says the killed worker "crashed"
        clients = self.idle(4)
        old = s.worker_pids()
        os.kill(old[0], signal.SIGSTOP)
        try:
            s.write_config(config("gen two"))
            rc, out = s.run("-s", "reload", timeout=60)
            self.assertEqual(rc, 0, out)
            # The frozen worker cannot report: the reply went after its bound.
            self.assertEqual(counts(out), (0, 0, 0), out)
            self.assertIn("1 old worker did not answer", out)
            new = [p for p in s.worker_pids() if p not in old]
            self.assertEqual(len(new), 1)
            os.kill(new[0], signal.SIGKILL)
            wait_for(lambda: len([p for p in s.worker_pids() if p not in old + new]) == 1,
                     timeout=20, what="the new worker to be respawned")
        finally:
            os.kill(old[0], signal.SIGCONT)
        wait_for(lambda: drained(s, 1), timeout=30, what="generation 1 to drain")
        for c in clients:
            self.assertTrue(eof_soon(c), "a connection was neither moved nor closed")
        self.assertRegex(s.log(), r"drained: 0 connections handed off to the new generation, "
                                  r"4 closed here \(4 offered but not taken\)")
        self.assertNotIn("AddressSanitizer", s.log())
        self.assertEqual(request(s.port, path="/hello").body, b"gen two")

    def test_client_writes_while_the_old_worker_cannot_read(self):
        # The request is written while the old worker is frozen with the
        # hand-off queued: its bytes wait in the kernel; whichever side
        # reads them (the adopter, when the channel and DRAIN are taken
        # first, as epoll hands them out in order) answers; nothing is lost.
        s = self.start()
        clients = self.idle(8)
        old = s.worker_pids()
        os.kill(old[0], signal.SIGSTOP)
        try:
            s.write_config(config("gen two"))
            rc, out = s.run("-s", "reload", timeout=60)
            self.assertEqual(rc, 0, out)
            for c in clients:
                c.send(post())
        finally:
            os.kill(old[0], signal.SIGCONT)
        bodies = []
        for c in clients:
            r = c.read_response()
            self.assertEqual(r.status, 200)
            bodies.append(r.body)
        print("\nanswered while moving: %d by the new generation, %d by the old"
              % (bodies.count(b"posted gen two"), bodies.count(b"posted gen one")))
        self.assertEqual(set(bodies) - {b"posted gen one", b"posted gen two"}, set())
        wait_for(lambda: drained(s, 1), timeout=30, what="generation 1 to drain")
        for c in clients:
            c.send(GET)
            self.assertEqual(c.read_response().body, b"gen two")


class RaceTest(unittest.TestCase):
    """A client that reuses idle keep-alive connections for POSTs (which
    clients do not retry) around reloads. It behaves like urllib3: before
    reusing a connection it checks whether the server closed it (EOF
    already here), and then reconnects; a POST written on a connection
    that looked open and got no answer is a failure."""

    def tearDown(self):
        if getattr(self, "server", None):
            self.server.__exit__(None, None, None)

    def test_post_on_idle_connections_around_50_reloads(self):
        figures = post_race(self, handoff=True, reloads=50)
        print("\nPOST race, hand-off on: %(posts)d POSTs around %(reloads)d reloads, "
              "%(failures)d failed, %(reconnects)d reconnects" % figures)
        self.assertEqual(figures["failures"], 0, figures["errors"][:5])
        self.assertEqual(figures["posts"], 50 * RACE_CONNECTIONS)


RACE_CONNECTIONS = 16


def post_race(case, handoff, reloads):
    """Runs the race; returns the figures. Per reload, half the connections
    POST at a random moment in the first 150 ms (while the hand-off runs),
    the other half in the 100 ms around one second after it (when the old
    generation closes idle connections without a hand-off)."""
    extra = "" if handoff else "reload: { handoff: off }"
    case.server = s = Server(config("gen 0", extra), workers=2)
    s.start()
    lock = threading.Lock()
    figures = {"posts": 0, "failures": 0, "reconnects": 0, "reloads": reloads, "errors": []}
    conns = [None] * RACE_CONNECTIONS

    def connect(j):
        c = Client(s.port, timeout=10)
        c.send(GET)
        c.read_response()
        conns[j] = c

    for j in range(RACE_CONNECTIONS):
        connect(j)

    def post_at(j, when):
        delay = when - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        c = conns[j]
        readable, _, _ = select.select([c.sock], [], [], 0)
        if readable:  # closed by the server while idle: the client sees it
            c.close()
            with lock:
                figures["reconnects"] += 1
            connect(j)
            c = conns[j]
        try:
            c.send(post())
            r = c.read_response()
            ok = r.status == 200
            if (r.header("connection") or "").lower() == "close":
                c.close()
                with lock:
                    figures["reconnects"] += 1
                connect(j)
        except Exception as e:  # noqa: BLE001 - every failure counts
            ok = False
            with lock:
                figures["errors"].append(repr(e))
            c.close()
            connect(j)
        with lock:
            figures["posts"] += 1
            figures["failures"] += 0 if ok else 1

    rng = random.Random(16)
    deadline = time.monotonic() + 600
    for i in range(reloads):
        if time.monotonic() > deadline:
            break
        s.write_config(config("gen %d" % (i + 1), extra))
        t0 = time.monotonic()
        threads = []
        for j in range(RACE_CONNECTIONS):
            offset = rng.uniform(0, 0.15) if j % 2 == 0 else rng.uniform(0.95, 1.05)
            threads.append(threading.Thread(target=post_at, args=(j, t0 + offset)))
        for t in threads:
            t.start()
        rc, out = s.run("-s", "reload", timeout=60)
        for t in threads:
            t.join(60)
        case.assertEqual(rc, 0, out)
    for c in conns:
        c.close()
    return figures


class LoadTest(unittest.TestCase):
    """The reload-under-load test of test_reload with hand-off, at 32 and
    256 keep-alive connections: no request lost, and the connections are
    moved rather than closed."""

    def tearDown(self):
        if getattr(self, "server", None):
            self.server.__exit__(None, None, None)

    def run_load(self, connections):
        from test_reload import Load
        self.server = s = Server(config("gen 0"), workers=2)
        s.start()
        with Load(s.port, connections=connections) as load:
            wait_for(lambda: load.ok > connections, timeout=60, what="load to start")
            for i in range(20):
                s.write_config(config("gen %d" % (i + 1)))
                rc, out = s.run("-s", "reload", timeout=60)
                self.assertEqual(rc, 0, out)
                time.sleep(0.2)
            wait_for(lambda: all(b == b"gen 20" for b in load.last_body.values()),
                     timeout=60, what="all connections on the last generation")
        self.assertEqual(load.errors, [], "failed requests during reloads")
        moved = sum(int(x) for x in re.findall(r"drained: (\d+) connections? handed off",
                                                s.log()))
        print("\n%d connections, 20 reloads: %d requests, 0 lost, %d hand-offs"
              % (connections, load.ok, moved))
        self.assertGreater(moved, 0)

    def test_twenty_reloads_under_load_32_connections(self):
        self.run_load(32)

    def test_twenty_reloads_under_load_256_connections(self):
        self.run_load(256)


class ScaleTest(unittest.TestCase):
    N = 10000

    def tearDown(self):
        if getattr(self, "server", None):
            self.server.__exit__(None, None, None)

    def test_ten_thousand_idle_connections(self):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        need = self.N + 1000  # this process holds every client socket
        if hard != resource.RLIM_INFINITY and hard < need:
            self.skipTest("the open-files hard limit is %d; %d idle connections need %d"
                          % (hard, self.N, need))
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        try:
            self.server = s = Server(config("gen one", extra="timeouts: { shutdown: 120s }"),
                                     workers=2)
            s.start()
            clients = []
            for _ in range(self.N):
                c = Client(s.port, timeout=30)
                c.send(GET)
                clients.append(c)
            for c in clients:
                self.assertEqual(c.read_response().status, 200)
            s.write_config(config("gen two", extra="timeouts: { shutdown: 120s }"))
            t0 = time.monotonic()
            rc, out = s.run("-s", "reload", timeout=120)
            reply = time.monotonic() - t0
            self.assertEqual(rc, 0, out)
            self.assertEqual(counts(out), (self.N, 0, 0), out)
            # The old workers exit once their connections have moved, long
            # before the 120 s shutdown bound that would end them otherwise.
            wait_for(lambda: drained(s, 1), timeout=110, what="generation 1 to drain")
            log = s.log()
            stamps = {}
            for key, pattern in (("draining", r"generation 1 is draining"),
                                 ("handed", r"reload to generation 2: \d+ idle"),
                                 ("drained", r"generation 1 has drained")):
                m = re.search(r"T(\d+):(\d+):([\d.]+)Z \[info\] \d+ master: " + pattern, log)
                stamps[key] = int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
            print("\n%d idle connections: hand-off took %.0f ms (drain start to the last "
                  "report), old workers gone after %.0f ms; -s reload returned in %.0f ms"
                  % (self.N, 1000 * (stamps["handed"] - stamps["draining"]),
                     1000 * (stamps["drained"] - stamps["draining"]), 1000 * reply))
            for c in clients:
                c.send(GET)
            for c in clients:
                self.assertEqual(c.read_response().body, b"gen two")
            for c in clients:
                c.close()
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


class DrainPolicyTest(unittest.TestCase):
    """drain: { keep } lets a route's long requests finish on the old
    generation past timeouts.shutdown; others are cut at shutdown."""

    def tearDown(self):
        if getattr(self, "server", None):
            self.server.__exit__(None, None, None)

    def test_keep_outlasts_shutdown(self):
        cfg = """
timeouts: { shutdown: 1s }
modules: [hello, crash]
servers:
  - listen: ["127.0.0.1:{port}"]
    routes:
      - path: /hello
        handler: hello
        hello: { message: "%s" }
      - path: /kept
        handler: crash
        crash: { mode: ok, delay: 3s }
        drain: { keep: 20s }
      - path: /cut
        handler: crash
        crash: { mode: ok, delay: 3s }
"""
        self.server = s = Server(cfg % "one", workers=1)
        s.start()
        kept, cut = Client(s.port, timeout=20), Client(s.port, timeout=20)
        self.addCleanup(kept.close)
        self.addCleanup(cut.close)
        kept.send(b"GET /kept HTTP/1.1\r\nHost: localhost\r\n\r\n")
        cut.send(b"GET /cut HTTP/1.1\r\nHost: localhost\r\n\r\n")
        wait_for(lambda: "connections 2," in s.run("-s", "status")[1], timeout=10,
                 what="both requests to arrive")
        s.write_config(cfg % "two")
        rc, out = s.run("-s", "reload", timeout=60)
        self.assertEqual(rc, 0, out)
        self.assertEqual(counts(out), (0, 2, 0), out)
        # /cut is past timeouts.shutdown (1 s) before its handler answers.
        self.assertTrue(cut.closed(timeout=15))
        self.assertEqual(cut.buf, b"")
        r = kept.read_response()
        self.assertEqual(r.status, 200)
        wait_for(lambda: drained(s, 1), timeout=30, what="generation 1 to drain")
        self.assertEqual(request(s.port, path="/hello").body, b"two")


class ConfigTest(unittest.TestCase):
    def check(self, extra, route_extra=""):
        cfg = """
%s
modules: [hello]
servers:
  - listen: ["127.0.0.1:{port}"]
    routes:
      - path: /hello
        handler: hello
%s
""" % (extra, route_extra)
        s = Server(cfg)
        try:
            return s.run("-t")
        finally:
            s.__exit__(None, None, None)

    def test_settings_and_their_errors(self):
        self.assertEqual(self.check("reload: { handoff: off }")[0], 0)
        self.assertEqual(self.check("reload: { handoff: on }", "        drain: { keep: 10m }")[0],
                         0)
        rc, out = self.check("reload: { handoff: maybe }")
        self.assertEqual(rc, 1)
        self.assertRegex(out, r"twister\.yaml:\d+:\d+: reload\.handoff: expected true or false")
        rc, out = self.check("reload: { hand_off: on }")
        self.assertEqual(rc, 1)
        self.assertRegex(out, r"twister\.yaml:\d+:\d+: .*hand_off")
        rc, out = self.check("reload: off")
        self.assertEqual(rc, 1)
        self.assertRegex(out, r"twister\.yaml:\d+:\d+: reload: expected a map")
        rc, out = self.check("", "        drain: { keep: soon }")
        self.assertEqual(rc, 1)
        self.assertRegex(out, r"twister\.yaml:\d+:\d+: .*drain\.keep")
        rc, out = self.check("", "        drain: { keep: 0s }")
        self.assertEqual(rc, 1)
        self.assertRegex(out, r"twister\.yaml:\d+:\d+: .*greater than 0")
        rc, out = self.check("", "        drain: { linger: 1s }")
        self.assertEqual(rc, 1)
        self.assertRegex(out, r"twister\.yaml:\d+:\d+: .*linger")


METRICS_CONFIG = """
modules: [hello, crash, metrics]
servers:
  - listen: ["127.0.0.1:{port}"]
    routes:
      - path: /hello
        handler: hello
        hello: { message: "%s" }
      - path: /slow
        handler: crash
        crash: { mode: ok, delay: 1s }
      - path: /metrics
        handler: metrics
        metrics: { allow: [127.0.0.0/8] }
"""


class MetricsTest(unittest.TestCase):
    def test_reload_connections_are_counted(self):
        s = Server(METRICS_CONFIG % "one", workers=1)
        try:
            s.start()
            idle = []
            for _ in range(3):
                c = Client(s.port, timeout=10)
                c.send(GET)
                c.read_response()
                idle.append(c)
            busy = Client(s.port, timeout=10)
            busy.send(b"GET /slow HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            wait_for(lambda: "connections 4," in s.run("-s", "status")[1], timeout=10,
                     what="the slow request to arrive")
            s.write_config(METRICS_CONFIG % "two")
            rc, out = s.run("-s", "reload", timeout=60)
            self.assertEqual(rc, 0, out)
            self.assertEqual(counts(out), (3, 1, 0), out)
            self.assertEqual(busy.read_response().status, 200)
            wait_for(lambda: drained(s, 1), timeout=30, what="generation 1 to drain")
            text = request(s.port, path="/metrics").body.decode()
            for outcome, n in (("handed_off", 3), ("kept", 1), ("closed", 1)):
                self.assertIn('twister_reload_connections_total{outcome="%s"} %d' % (outcome, n),
                              text)
            for c in idle + [busy]:
                c.close()
        finally:
            s.__exit__(None, None, None)


TLS_CONFIG = """
modules: [hello]
servers:
  - listen: ["127.0.0.1:{port}"]
    routes:
      - path: /hello
        handler: hello
        hello: { message: "%s" }
  - listen: ["127.0.0.1:{port2} tls"]
    server_names: [localhost]
    tls: { certificate: {dir}/cert.pem, key: {dir}/cert.key }
    routes:
      - path: /hello
        handler: hello
        hello: { message: "%s" }
"""


@unittest.skipUnless(shutil.which("openssl"), "needs the openssl command")
class TlsTest(unittest.TestCase):
    """Without kernel TLS a TLS connection's state (keys, sequence numbers)
    lives in OpenSSL inside the old worker and cannot move: it keeps the
    graceful close, while plain connections move."""

    def test_tls_connections_keep_the_graceful_close(self):
        s = Server(TLS_CONFIG % ("one", "one"), workers=1)
        try:
            subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                            "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=localhost",
                            "-days", "2", "-keyout", os.path.join(s.dir, "cert.key"),
                            "-out", os.path.join(s.dir, "cert.pem")],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            s.start()
            plain = Client(s.port, timeout=10)
            plain.send(GET)
            self.assertEqual(plain.read_response().body, b"one")
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            tls = ctx.wrap_socket(socket.create_connection(("127.0.0.1", s.port2), timeout=10),
                                  server_hostname="localhost")
            tls.sendall(GET)
            got = b""
            while not got.endswith(b"one"):
                got += tls.recv(4096)
            s.write_config(TLS_CONFIG % ("two", "two"))
            rc, out = s.run("-s", "reload", timeout=60)
            self.assertEqual(rc, 0, out)
            self.assertEqual(counts(out), (1, 0, 1), out)
            tls.settimeout(10)
            self.assertEqual(tls.recv(4096), b"")  # closed by the old worker after the grace
            plain.send(GET)
            self.assertEqual(plain.read_response().body, b"two")
            tls.close()
            plain.close()
        finally:
            s.__exit__(None, None, None)


def measure():
    """python3 test_handoff.py --measure: the POST race with the hand-off
    on and off, for the figures in the notes."""

    class Case(unittest.TestCase):
        def runTest(self):
            pass

    results = {}
    for handoff in (True, False):
        case = Case()
        try:
            results[handoff] = post_race(case, handoff=handoff, reloads=50)
        finally:
            case.server.__exit__(None, None, None)
    for handoff, f in results.items():
        print("hand-off %-3s: %d POSTs around %d reloads: %d failed, %d reconnects"
              % ("on" if handoff else "off", f["posts"], f["reloads"], f["failures"],
                 f["reconnects"]))


if __name__ == "__main__":
    import sys
    if "--measure" in sys.argv:
        measure()
    else:
        unittest.main()
