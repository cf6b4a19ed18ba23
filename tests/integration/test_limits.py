"""limit_req and limit_conn across two workers: the leaky bucket lets
through 1 + burst + rate x time, answered 429 with Retry-After beyond it;
dry_run only logs and counts; limit_conn lets max requests run at once,
gives the count back when they end, and reclaims the counts of a worker
killed with SIGKILL."""

import os
import signal
import threading
import time
import unittest

from harness import Client, Server, request, wait_for

CONFIG = """
modules: [hello, crash, metrics, access, limit_req, limit_conn]
limit_req:
  zones:
    per_ip: { key: "$remote_addr", rate: 10r/s, burst: 5, nodelay: true, size: 1m }
    by_key: { key: "$http_x_api_key", rate: 1r/m, burst: 0, nodelay: true }
    slow: { key: "$route", rate: 5r/s, burst: 2 }
limit_conn:
  zones:
    per_ip: { key: "$remote_addr", size: 1m }
servers:
  - listen: ["127.0.0.1:{port}"]
    routes:
      - path: /limited
        handler: hello
        limit_req: { zone: per_ip }
      - path: /by-key
        handler: hello
        limit_req: { zone: by_key }
      - path: /dry
        handler: hello
        limit_req: { zone: by_key, dry_run: true }
      - path: /delayed
        handler: hello
        limit_req: { zone: slow }
      - path: /slow
        handler: crash
        crash: { delay: 1500ms }
        limit_conn: { zone: per_ip, max: 2 }
      - path: /slow-any
        handler: crash
        crash: { delay: 1500ms }
        satisfy: any
        access: [{allow: 127.0.0.1}]
        limit_conn: { zone: per_ip, max: 2 }
      - path: /metrics
        handler: metrics
"""


def keepalive_get(c, path, headers=""):
    c.send(("GET %s HTTP/1.1\r\nHost: localhost\r\n%s\r\n" % (path, headers)).encode())
    return c.read_response()


def leaky_bucket(times, rate, burst):
    """How many of requests arriving at times (seconds) nginx's limit_req
    (rate r/s, burst, nodelay) lets through."""
    passed, excess, last = 0, None, None
    for t in times:
        if excess is None:
            excess, last, ok = 0, t, True
        else:
            ms = int((t - last) * 1000)
            e = max(excess - rate * 1000 * ms // 1000 + 1000, 0)
            ok = e <= burst * 1000
            if ok:
                excess, last = e, last + ms / 1000
        passed += ok
    return passed


def metric(port, series):
    body = request(port, path="/metrics").body.decode()
    for line in body.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


class LimitReqTest(unittest.TestCase):
    def test_rate_and_burst_across_two_workers(self):
        with Server(CONFIG, workers=2) as s:
            # 100 requests over 1 s, on 4 keep-alive connections that the
            # two workers share, one key (127.0.0.1).
            conns = [Client(s.port) for _ in range(4)]
            statuses, sent = [], []
            t0 = time.monotonic()
            for i in range(100):
                target = t0 + i * 0.01
                now = time.monotonic()
                if now < target:
                    time.sleep(target - now)
                sent.append(time.monotonic())
                r = keepalive_get(conns[i % 4], "/limited")
                statuses.append(r.status)
                if r.status == 429:
                    self.assertGreaterEqual(int(r.header("Retry-After")), 1)
            for c in conns:
                c.close()
            passed = statuses.count(200)
            self.assertEqual(passed + statuses.count(429), 100, statuses)
            # nginx's leaky bucket, replayed on the times the requests were
            # sent: on an idle machine that is 1 + burst + rate x 1 s = 15
            # or 16, and a machine that stalls the sender gets the number
            # its own timing deserves instead of a failure.
            self.assertLessEqual(abs(passed - leaky_bucket(sent, 10, 5)), 1, statuses)
            self.assertEqual(metric(s.port, 'twister_limit_req_refused_total{zone="per_ip",dry_run="false"}'),
                             statuses.count(429))
            self.assertIn("limit_req: refused request by zone per_ip", s.log())

    def test_header_key_dry_run_and_delay(self):
        with Server(CONFIG, workers=1) as s:
            c = Client(s.port)
            try:
                self.assertEqual(keepalive_get(c, "/by-key", "X-Api-Key: a\r\n").status, 200)
                r = keepalive_get(c, "/by-key", "X-Api-Key: a\r\n")
                self.assertEqual(r.status, 429)
                self.assertGreaterEqual(int(r.header("Retry-After")), 50)  # 1r/m
                # Another key has its own bucket; no key is not limited.
                self.assertEqual(keepalive_get(c, "/by-key", "X-Api-Key: b\r\n").status, 200)
                self.assertEqual(keepalive_get(c, "/by-key").status, 200)
                self.assertEqual(keepalive_get(c, "/by-key").status, 200)
                # dry_run on the same zone: would refuse, lets through.
                self.assertEqual(keepalive_get(c, "/dry", "X-Api-Key: a\r\n").status, 200)
                # Without nodelay, the burst is delayed, not refused: back
                # to back requests at 5r/s burst 2 all pass, spaced out.
                statuses = [keepalive_get(c, "/delayed").status for _ in range(3)]
                self.assertEqual(statuses, [200, 200, 200])
            finally:
                c.close()
            self.assertIn("would refuse (dry run)", s.log())
            self.assertEqual(metric(s.port, 'twister_limit_req_refused_total{zone="by_key",dry_run="true"}'), 1)
            self.assertGreaterEqual(metric(s.port, 'twister_limit_req_delayed_total{zone="slow"}'), 1)

    def test_reload_keeps_a_zone_and_a_resize_starts_afresh(self):
        with Server(CONFIG, workers=1) as s:
            c = Client(s.port)
            try:
                self.assertEqual(keepalive_get(c, "/by-key", "X-Api-Key: k\r\n").status, 200)
                self.assertEqual(keepalive_get(c, "/by-key", "X-Api-Key: k\r\n").status, 429)
            finally:
                c.close()
            # Same name and size: the bucket (1r/m) is still full.
            rc, out = s.run("-s", "reload")
            self.assertEqual(rc, 0, out)
            self.assertEqual(request(s.port, path="/by-key", headers={"X-Api-Key": "k"}).status, 429)
            # Another size: a new, empty zone, and the old one is freed
            # once its generation has drained.
            with open(s.config_path) as f:
                text = f.read()
            with open(s.config_path, "w") as f:
                f.write(text.replace("burst: 0, nodelay: true }", "burst: 0, nodelay: true, size: 2m }"))
            rc, out = s.run("-s", "reload")
            self.assertEqual(rc, 0, out)
            self.assertEqual(request(s.port, path="/by-key", headers={"X-Api-Key": "k"}).status, 200)
            self.assertIn("shared zone limit_req/by_key changed size from 1048576 to 2097152 bytes", s.log())
            wait_for(lambda: "shared zone limit_req/by_key (1048576 bytes) is no longer used: freed" in s.log(),
                     what="the old zone to be freed\n" + s.log())

    def test_a_zone_larger_than_the_region_is_a_config_error(self):
        s = Server(CONFIG.replace("size: 1m }", "size: 2g }", 1), workers=1)
        rc, out = s.run("-t")
        self.assertNotEqual(rc, 0, out)
        self.assertRegex(out, r"twister\.yaml:\d+:\d+: .*limit_req zone per_ip: larger than what shared_zones has left")
        s.__exit__(None, None, None)


def parallel(port, path, n):
    results = [None] * n

    def one(i):
        try:
            results[i] = request(port, path=path).status
        except OSError as e:
            results[i] = repr(e)

    ts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    return results


class LimitConnTest(unittest.TestCase):
    def test_two_run_at_once_across_workers(self):
        with Server(CONFIG, workers=2) as s:
            results = parallel(s.port, "/slow", 10)
            self.assertEqual(sorted(results), [200, 200] + [503] * 8, results)
            # The counts were given back: two more run.
            self.assertEqual(sorted(parallel(s.port, "/slow", 2)), [200, 200])
            self.assertEqual(metric(s.port, 'twister_limit_conn_refused_total{zone="per_ip",dry_run="false"}'), 8)

    def test_a_passing_access_check_does_not_lift_the_limit(self):
        # Under satisfy: any one pass is enough for the access checks, but
        # a limit is not a vote: the allow rule must not let a third
        # one through while two run.
        with Server(CONFIG, workers=2) as s:
            results = parallel(s.port, "/slow-any", 6)
            self.assertEqual(sorted(results), [200, 200] + [503] * 4, results)

    def test_counts_of_a_killed_worker_are_reclaimed(self):
        with Server(CONFIG, workers=2, check_clean=False) as s:
            # Two slow requests hold the two places; kill every worker while
            # they run (whichever took them), so the counts are orphaned.
            clients = []
            for _ in range(2):
                c = Client(s.port)
                c.send(b"GET /slow HTTP/1.1\r\nHost: localhost\r\n\r\n")
                clients.append(c)
            time.sleep(0.5)
            self.assertEqual(request(s.port, path="/slow").status, 503)
            old = s.worker_pids()
            for pid in old:
                os.kill(pid, signal.SIGKILL)
            for c in clients:
                c.close()
            wait_for(lambda: len(set(s.worker_pids()) - set(old)) == 2,
                     what="both workers to be replaced")
            wait_for(lambda: request(s.port, path="/metrics").status == 200, what="serving again")
            # Both places are free again.
            self.assertEqual(sorted(parallel(s.port, "/slow", 2)), [200, 200])
            self.assertIn("held by dead workers", s.log())


if __name__ == "__main__":
    unittest.main(verbosity=2)
