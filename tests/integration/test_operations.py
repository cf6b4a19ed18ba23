"""What operators do: -s stop/quit/reopen, SIGUSR1 log reopening, bursts of
SIGHUP, systemd notification, dropping privileges, connection caps, and
the control socket that `-s reload` talks to."""

import ctypes
import os
import pwd
import re
import signal
import socket
import stat
import struct
import subprocess
import tempfile
import threading
import time
import unittest

from harness import TWISTER, Client, Server, request, wait_for

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

    def test_fifo_pid_files_block_neither_master_nor_cli(self):
        # open(2) of a FIFO blocks until the other side comes: a FIFO at the
        # pid file's temporary name hung the master before it served, and
        # one as the pid file hung `twister -s`.
        s = Server(CONFIG)
        try:
            os.mkfifo(os.path.join(s.dir, "twister.pid.tmp"))
            s.start()
            self.assertEqual(request(s.port, path="/hello").status, 200)
            wait_for(lambda: "cannot write pid file" in s.log(), what="the pid file warning")
            os.mkfifo(os.path.join(s.dir, "twister.pid"))
            rc, out = s.run("-s", "reload", timeout=20)
            self.assertEqual(rc, 1, out)
            self.assertIn("no running master", out)
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

    def test_signal_storm_during_reloads_kills_no_new_worker(self):
        # SIGUSR1 to the whole process group, as fast as it goes, while
        # generations start: a worker that gets it before its signalfd
        # exists must still handle it, not die of its default action.
        with Server(CONFIG, workers=2) as s:
            stop = threading.Event()

            def storm():
                deadline = time.monotonic() + 120
                while not stop.is_set() and time.monotonic() < deadline:
                    os.killpg(s.pid(), signal.SIGUSR1)

            sender = threading.Thread(target=storm)
            sender.start()
            try:
                results = [s.run("-s", "reload", timeout=60) for _ in range(10)]
            finally:
                stop.set()
                sender.join()
            for rc, out in results:
                self.assertEqual(rc, 0, out)
            self.assertNotIn("exited during start-up", s.log())
            self.assertEqual(request(s.port, path="/hello").status, 200)

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
            # "reload OK: generation N", then what the hand-off did.
            generation = int(re.search(r"reload OK: generation (\d+)", out).group(1))
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


class Inotify:
    """The events of one directory, through libc's inotify (the stdlib has
    no binding)."""

    IN_ATTRIB, IN_CREATE = 0x4, 0x100

    def __init__(self, path):
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self.libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        if self.libc.inotify_add_watch(self.fd, path.encode(), self.IN_ATTRIB | self.IN_CREATE) < 0:
            raise OSError(ctypes.get_errno(), "inotify_add_watch")

    def events(self, name):
        """The event masks so far for the entry called name."""
        masks, data = [], b""
        while True:
            try:
                data += os.read(self.fd, 65536)
            except BlockingIOError:
                break
        offset = 0
        while offset < len(data):
            _, mask, _, length = struct.unpack_from("iIII", data, offset)
            entry = data[offset + 16:offset + 16 + length].rstrip(b"\0").decode()
            if entry == name:
                masks.append(mask)
            offset += 16 + length
        return masks

    def close(self):
        os.close(self.fd)


class ControlSocketTest(unittest.TestCase):
    def control_path(self, s):
        return os.path.join(s.dir, "twister.pid.sock")

    def test_socket_is_private_from_the_moment_it_exists(self):
        s = Server(CONFIG)
        watch = Inotify(s.dir)
        try:
            with s:
                path = self.control_path(s)
                self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
                masks = watch.events("twister.pid.sock")
                self.assertTrue(any(m & Inotify.IN_CREATE for m in masks), masks)
                # Created with its final mode: never chmod'ed after bind,
                # when others could already have connected.
                self.assertFalse(any(m & Inotify.IN_ATTRIB for m in masks), masks)
        finally:
            watch.close()

    def connect(self, s):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(30)
        sock.connect(self.control_path(s))
        return sock

    def read_all(self, sock):
        data = b""
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                return data.decode()
            data += chunk

    def test_a_client_that_sends_nothing_is_timed_out(self):
        with Server(CONFIG) as s:
            idle = self.connect(s)
            try:
                # It holds nothing up meanwhile.
                rc, out = s.run("-s", "reload")
                self.assertEqual(rc, 0, out)
                # Then the master lets go of it (bounded by the socket timeout).
                self.assertIn("ERROR no command", self.read_all(idle))
            finally:
                idle.close()

    def command(self, s, text):
        sock = self.connect(s)
        try:
            sock.sendall(text)
            return self.read_all(sock)
        finally:
            sock.close()

    def test_only_exact_commands_are_accepted(self):
        with Server(CONFIG) as s:
            for text in (b"reloadx\n", b"reload now\n", b"RELOAD\n", b"\n", b"reload\0\n"):
                reply = self.command(s, text)
                self.assertTrue(reply.startswith("ERROR unknown command '"), (text, reply))
                self.assertIn("(the control socket takes: reload, status)", reply)
            self.assertNotIn("generation 2", s.log())
            self.assertIn("OK generation 2", self.command(s, b"reload\n"))
            self.assertIn("OK generation 3", self.command(s, b"reload\r\n"))

    def test_reload_says_which_config_the_master_reloaded(self):
        with Server(CONFIG) as s:
            # Another file that finds the same master through its pid_file.
            other = os.path.join(s.dir, "other.yaml")
            with open(other, "w") as f:
                f.write("pid_file: %s\n%s" % (os.path.join(s.dir, "twister.pid"), CONFIG))
            p = subprocess.run([TWISTER, "-s", "reload", "-c", other], env=s.env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
            out = p.stdout.decode()
            self.assertEqual(p.returncode, 0, out)
            self.assertIn("reload OK: generation 2", out)
            self.assertIn("note: the running master was started with %s and reloaded that "
                          "file, not %s" % (os.path.realpath(s.config_path), other), out)
            # The master's own file, under any name, gets no note.
            p = subprocess.run([TWISTER, "-s", "reload", "-c", "./twister.yaml"], env=s.env,
                               cwd=s.dir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               timeout=60)
            out = p.stdout.decode()
            self.assertEqual(p.returncode, 0, out)
            self.assertIn("reload OK: generation 3", out)
            self.assertNotIn("note:", out)

    def test_a_command_may_arrive_in_pieces(self):
        with Server(CONFIG) as s:
            sock = self.connect(s)
            try:
                sock.sendall(b"rel")
                time.sleep(0.2)
                sock.sendall(b"oad\n")
                self.assertIn("OK generation 2", self.read_all(sock))
            finally:
                sock.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
