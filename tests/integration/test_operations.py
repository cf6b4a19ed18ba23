"""What operators do: -s stop/quit/reopen, SIGUSR1 log reopening, bursts of
SIGHUP, systemd notification, dropping privileges, connection caps."""

import os
import pwd
import re
import signal
import socket
import tempfile
import time
import unittest

from harness import Client, Server, request, wait_for

CONFIG = """
modules: [hello]
servers:
  - listen: ["127.0.0.1:{port}"]
    routes:
      - path: /hello
        handler: hello
"""


class OperationsTest(unittest.TestCase):
    def test_s_stop_and_quit(self):
        for command in ("stop", "quit"):
            s = Server(CONFIG).start()
            try:
                rc, out = s.run("-s", command)
                self.assertEqual(rc, 0, out)
                self.assertEqual(s.proc.wait(timeout=20), 0)
            finally:
                s.__exit__(None, None, None)

    def test_s_without_master(self):
        s = Server(CONFIG)
        try:
            rc, out = s.run("-s", "reload")
            self.assertEqual(rc, 1)
            self.assertIn("no running master", out)
            rc, out = s.run("-s", "bogus")
            self.assertEqual(rc, 2)
        finally:
            s.__exit__(None, None, None)

    def test_usr1_reopens_the_log(self):
        with Server(CONFIG) as s:
            # The master listens before its workers are ready: wait for the
            # line this test looks for in the rotated file.
            wait_for(lambda: "generation 1 is serving" in s.log(), what="the first generation")
            rotated = s.log_path + ".1"
            os.rename(s.log_path, rotated)
            rc, out = s.run("-s", "reopen")
            self.assertEqual(rc, 0, out)
            wait_for(lambda: os.path.exists(s.log_path), what="a new log file")
            wait_for(lambda: "log reopened" in s.log(), what="the master to log into the new file")
            with open(rotated) as f:
                self.assertIn("generation 1 is serving", f.read())

    def test_fifos_never_block_the_master_or_the_cli(self):
        # Opening a FIFO blocks until the other side comes: an !include of
        # one hung -t, -s reload and the master's reload; an error log
        # replaced by one hung the master (and the workers) at SIGUSR1.
        with Server(CONFIG, workers=2) as s:
            os.mkfifo(os.path.join(s.dir, "fifo.yaml"))
            s.write_config(CONFIG.replace("handler: hello",
                                          "handler: hello\n        hello: !include fifo.yaml"))
            error = (r"twister\.yaml:12:16: servers\[0\]\.routes\[0\]\.hello: cannot include "
                     r"\S*fifo\.yaml: a FIFO, not a regular file")
            for args in (["-t"], ["-s", "reload"]):
                rc, out = s.run(*args, timeout=20)
                self.assertEqual(rc, 1, out)
                self.assertRegex(out, error)
            s.send_signal(signal.SIGHUP)
            wait_for(lambda: re.search(error, s.log()), what="the reload to fail")
            self.assertEqual(request(s.port, path="/hello").status, 200)

            rotated = s.log_path + ".1"
            os.rename(s.log_path, rotated)
            os.mkfifo(s.log_path)
            try:
                s.send_signal(signal.SIGUSR1)

                def rotated_log():
                    with open(rotated) as f:
                        return f.read()
                wait_for(lambda: "cannot reopen the error log" in rotated_log(),
                         what="the reopen to fail")
                # The master still answers: a good reload goes through.
                s.write_config(CONFIG)
                rc, out = s.run("-s", "reload", timeout=20)
                self.assertEqual(rc, 0, out)
                for _ in range(4):
                    self.assertEqual(request(s.port, path="/hello").status, 200)
            finally:
                os.unlink(s.log_path)
                os.rename(rotated, s.log_path)

    def test_hup_burst_coalesces(self):
        with Server(CONFIG, workers=1) as s:
            for _ in range(10):
                s.send_signal(signal.SIGHUP)
            time.sleep(0.05)
            rc, out = s.run("-s", "reload")
            self.assertEqual(rc, 0, out)
            generation = int(out.strip().rsplit(" ", 1)[1])
            self.assertLess(generation, 12)
            # Every generation but the serving one drains away.
            wait_for(lambda: len(s.worker_pids()) == 1, timeout=30, what="old generations to exit")
            self.assertEqual(request(s.port, path="/hello").status, 200)
            self.assertNotIn("crashed", s.log())

    def test_systemd_notify(self):
        path = tempfile.mktemp(prefix="twister-notify-", dir="/tmp")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        sock.settimeout(20)
        try:
            s = Server(CONFIG, env={"NOTIFY_SOCKET": path})
            with s:
                self.assertIn(b"READY=1", sock.recv(256))
                rc, out = s.run("-s", "reload")
                self.assertEqual(rc, 0, out)
                seen = [sock.recv(256), sock.recv(256)]
                self.assertIn(b"RELOADING=1", seen[0])
                self.assertIn(b"READY=1", seen[1])
                s.stop(signal.SIGTERM)
                self.assertIn(b"STOPPING=1", sock.recv(256))
        finally:
            sock.close()
            os.unlink(path)

    @unittest.skipUnless(os.geteuid() == 0, "needs root to switch users")
    def test_workers_drop_privileges(self):
        nobody = pwd.getpwnam("nobody")
        s = Server(CONFIG + "user: nobody\n")
        os.chmod(s.dir, 0o755)
        with s:
            self.assertEqual(request(s.port, path="/hello").status, 200)
            for pid in s.worker_pids():
                with open("/proc/%d/status" % pid) as f:
                    uid_line = [l for l in f if l.startswith("Uid:")][0]
                self.assertEqual(int(uid_line.split()[1]), nobody.pw_uid)
            with open("/proc/%d/status" % s.pid()) as f:
                self.assertIn("Uid:\t0", f.read())

    def test_draining_generations_are_bounded(self):
        config = """
modules: [hello, echo]
max_draining_generations: 1
timeouts: { shutdown: 60s }
servers:
  - listen: ["127.0.0.1:{port}"]
    routes:
      - path: /hello
        handler: hello
      - path: /upload
        handler: echo
        echo: { buffer: true }
"""
        with Server(config, workers=1, check_clean=False) as s:
            # A request stuck in its body keeps generation 1 draining.
            c = Client(s.port)
            c.send(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
            time.sleep(0.2)
            self.assertEqual(s.run("-s", "reload")[0], 0)
            self.assertEqual(s.run("-s", "reload")[0], 0)
            wait_for(lambda: "stopping generation 1 now" in s.log(), what="generation 1 to be stopped")
            self.assertTrue(c.closed(timeout=10))
            c.close()
            self.assertEqual(request(s.port, path="/hello").status, 200)

    def test_ipv4_and_ipv6_listeners(self):
        try:
            probe = socket.socket(socket.AF_INET6)
            probe.bind(("::1", 0))
            probe.close()
        except OSError:
            self.skipTest("no IPv6 loopback here")
        config = CONFIG.replace('["127.0.0.1:{port}"]', '["127.0.0.1:{port}", "[::1]:{port}"]')
        with Server(config) as s:
            self.assertEqual(request(s.port, path="/hello").body, b"Hello, World!")
            c = socket.create_connection(("::1", s.port), timeout=10)
            c.sendall(b"GET /hello HTTP/1.1\r\nHost: [::1]\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                chunk = c.recv(4096)
                if not chunk:
                    break
                data += chunk
            c.close()
            self.assertTrue(data.startswith(b"HTTP/1.1 200 OK\r\n"), data)
            self.assertTrue(data.endswith(b"Hello, World!"), data)

    def test_connection_cap_leaves_the_rest_in_the_backlog(self):
        with Server(CONFIG + "worker_connections: 4\n", workers=1) as s:
            held = []
            for _ in range(4):
                c = Client(s.port)
                c.send(b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n")
                self.assertEqual(c.read_response().status, 200)
                held.append(c)
            extra = Client(s.port, timeout=0.5)
            extra.send(b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n")
            with self.assertRaises(socket.timeout):
                extra.read_response()
            held[0].close()
            extra.sock.settimeout(10)
            self.assertEqual(extra.read_response().status, 200)
            for c in held[1:] + [extra]:
                c.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
