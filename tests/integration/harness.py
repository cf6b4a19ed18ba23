"""Integration test harness: starts the real twister binary on an ephemeral
loopback port with a config written inline by each test, and talks raw HTTP
to it. Used by every tests/integration/test_*.py (stdlib only)."""

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import textwrap
import time
import unittest

BUILD_DIR = os.environ.get("TW_BUILD_DIR", os.path.join(os.path.dirname(__file__), "../../build/plain"))
SOURCE_DIR = os.environ.get("TW_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "../.."))
TWISTER = os.environ.get("TWISTER_BIN", os.path.join(BUILD_DIR, "core", "twister"))
MODULE_DIR = os.environ.get("TWISTER_MODULE_DIR", os.path.join(BUILD_DIR, "modules"))


def free_port():
    """A loopback port nobody listens on right now (bind to 0, close)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout=10.0, interval=0.02, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("timed out waiting for " + what)


class Server:
    """One twister master with its workers. `config` is YAML in which
    {port} (and {port2}) are replaced by free ports and {dir} by the temp
    directory holding the config."""

    def __init__(self, config, workers=1, extra_files=None, env=None, check_clean=True):
        self.dir = tempfile.mkdtemp(prefix="twister-test-")
        self.port = free_port()
        self.port2 = free_port()
        self.check_clean = check_clean
        for name, content in (extra_files or {}).items():
            path = os.path.join(self.dir, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            mode = "wb" if isinstance(content, bytes) else "w"
            with open(path, mode) as f:
                f.write(content)
        head = "workers: %d\npid_file: twister.pid\nerror_log: %s/error.log\nlog_level: info\n" % (
            workers, self.dir)
        self.config_path = os.path.join(self.dir, "twister.yaml")
        self.write_config(config, head)
        self.env = dict(os.environ, TWISTER_MODULE_DIR=MODULE_DIR)
        self.env.update(env or {})
        self.proc = None

    def write_config(self, config, head=None):
        if head is None:
            with open(self.config_path) as f:
                head = "".join(l for l in f.readlines()[:4])
        body = textwrap.dedent(config).replace("{port}", str(self.port)).replace(
            "{port2}", str(self.port2)).replace("{dir}", self.dir)
        with open(self.config_path, "w") as f:
            f.write(head + body)

    @property
    def log_path(self):
        return os.path.join(self.dir, "error.log")

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def run(self, *args, timeout=30):
        """Runs `twister <args> -c config` to completion; returns (rc, out+err)."""
        p = subprocess.run([TWISTER, "-c", self.config_path] + list(args), env=self.env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
        return p.returncode, p.stdout.decode(errors="replace")

    def start(self, wait=True):
        self.stdout = open(os.path.join(self.dir, "stdout.log"), "wb")
        self.proc = subprocess.Popen([TWISTER, "-c", self.config_path], env=self.env,
                                     stdout=self.stdout, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        if wait:
            wait_for(self._accepting, what="twister to listen on %d\n%s" % (self.port, self.log()))
        return self

    def _accepting(self):
        if self.proc.poll() is not None:
            raise AssertionError("twister exited with %s:\n%s\n%s" % (
                self.proc.returncode, self.log(), self.output()))
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def output(self):
        try:
            with open(os.path.join(self.dir, "stdout.log"), errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def pid(self):
        return self.proc.pid

    def send_signal(self, sig):
        os.kill(self.proc.pid, sig)

    def worker_pids(self):
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], stdout=subprocess.PIPE)
        return sorted(int(x) for x in out.stdout.split())

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.send_signal(sig)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            raise AssertionError("twister did not stop on %s\n%s" % (sig, self.log()))
        return rc

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        if self.proc is None:
            shutil.rmtree(self.dir, ignore_errors=True)
            return False
        self.stop()
        self.stdout.close()
        # Workers are in the master's session; make sure none outlives it.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        text = self.log() + self.output()
        if self.check_clean and exc[0] is None:
            for bad in ("AddressSanitizer", "LeakSanitizer", "runtime error:", "crashed"):
                if bad in text:
                    raise AssertionError("server log shows %r:\n%s" % (bad, text[-6000:]))
        shutil.rmtree(self.dir, ignore_errors=True)
        return False


class Response:
    def __init__(self, status, reason, headers, body, version):
        self.status, self.reason, self.headers, self.body, self.version = (
            status, reason, headers, body, version)

    def header(self, name):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None

    def header_all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def __repr__(self):
        return "<Response %d %r %r>" % (self.status, self.headers, self.body[:200])


class Client:
    """A raw HTTP/1.1 client on one connection: send bytes, read responses
    one at a time (so pipelining and keep-alive can be tested exactly)."""

    def __init__(self, port, timeout=10.0, host="127.0.0.1"):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("connection closed; buffered: %r" % self.buf[:200])
        self.buf += chunk

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_response(self, head_only=False):
        """Reads one response; interim 1xx responses are returned as such."""
        line = self._line()
        m = re.match(rb"^HTTP/(\d\.\d) (\d{3}) ?(.*)$", line)
        if not m:
            raise AssertionError("bad status line %r" % line)
        version, status, reason = m.group(1).decode(), int(m.group(2)), m.group(3).decode()
        headers = []
        while True:
            line = self._line()
            if not line:
                break
            k, _, v = line.partition(b":")
            headers.append((k.decode(), v.strip().decode(errors="replace")))
        resp = Response(status, reason, headers, b"", version)
        if head_only or status < 200 or status in (204, 304):
            return resp
        te = resp.header("transfer-encoding")
        cl = resp.header("content-length")
        if te and "chunked" in te.lower():
            body = b""
            while True:
                size = int(self._line().split(b";")[0], 16)
                if size == 0:
                    while self._line():
                        pass
                    break
                body += self._exact(size)
                assert self._exact(2) == b"\r\n"
            resp.body = body
        elif cl is not None:
            resp.body = self._exact(int(cl))
        else:
            resp.body = self.read_to_close()
        return resp

    def read_to_close(self):
        data = self.buf
        self.buf = b""
        while True:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
        return data

    def closed(self, timeout=5.0):
        """True if the server closes the connection (EOF) within timeout."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False

    def close(self):
        self.sock.close()


def request(port, method="GET", path="/", headers=None, body=b"", version="1.1", host="localhost"):
    """One request on a fresh connection with Connection: close."""
    c = Client(port)
    try:
        lines = ["%s %s HTTP/%s" % (method, path, version)]
        if host is not None:
            lines.append("Host: " + host)
        hdrs = dict(headers or {})
        if body and "Content-Length" not in hdrs and "Transfer-Encoding" not in hdrs:
            hdrs["Content-Length"] = str(len(body))
        hdrs.setdefault("Connection", "close")
        for k, v in hdrs.items():
            lines.append("%s: %s" % (k, v))
        c.send(("\r\n".join(lines) + "\r\n\r\n").encode() + (body if isinstance(body, bytes) else body.encode()))
        return c.read_response(head_only=(method == "HEAD"))
    finally:
        c.close()


def raw(port, data, timeout=5.0):
    """Sends raw bytes and returns everything until the server closes."""
    c = Client(port, timeout=timeout)
    try:
        c.send(data)
        return c.read_to_close()
    finally:
        c.close()


class ServerTestCase(unittest.TestCase):
    """One server for all the tests of a class, started from the class's
    CONFIG (and FILES, extra files for its directory)."""

    CONFIG = None
    FILES = None
    WORKERS = 1

    @classmethod
    def setUpClass(cls):
        cls.server = Server(cls.CONFIG, workers=cls.WORKERS, extra_files=cls.FILES).start()
        cls.port = cls.server.port

    @classmethod
    def tearDownClass(cls):
        cls.server.__exit__(None, None, None)


def status_of(data):
    """The status code of the first response in raw bytes, or None."""
    parts = data.split(b"\r\n", 1)[0].split(b" ")
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


def responses(data):
    """How many responses raw bytes hold (by their status lines)."""
    return data.count(b"HTTP/1.1 ")


def main():
    unittest.main(verbosity=2)
