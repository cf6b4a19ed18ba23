"""The proxy module against real backends started here on loopback: Tornado
apps (tests/integration/proxy_backend.py) and raw sockets that send
malformed responses."""

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import unittest

from harness import Client, Server, free_port, request, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))


# Under AddressSanitizer freed memory sits in a quarantine (256 MB by
# default), which would hide whether the proxy keeps its memory bounded.
SMALL_QUARANTINE = {"ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") +
                    ":quarantine_size_mb=1:thread_local_quarantine_size_kb=64"}


def backend_python():
    """An interpreter with Tornado: this one, or Debian's (python3-tornado)."""
    for exe in (sys.executable, "/usr/bin/python3"):
        if subprocess.run([exe, "-c", "import tornado"], stderr=subprocess.DEVNULL).returncode == 0:
            return exe
    raise unittest.SkipTest("no python with tornado (apt-get install python3-tornado)")


class Backend:
    """A Tornado backend process."""

    def __init__(self, name):
        self.name = name
        self.port = free_port()
        self.proc = subprocess.Popen([backend_python(), os.path.join(HERE, "proxy_backend.py"),
                                      str(self.port), name], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        line = self.proc.stdout.readline()
        if b"ready" not in line:
            raise AssertionError("backend did not start: %r" % line)

    def stats(self):
        r = request(self.port, path="/stats")
        return json.loads(r.body)["connections"]

    def stop(self):
        self.proc.kill()
        self.proc.wait()


class RawBackend(threading.Thread):
    """Answers every request with `reply` (bytes), then closes."""

    def __init__(self, reply, linger=False):
        super().__init__(daemon=True)
        self.reply = reply
        self.linger = linger  # read what the client still sends, so the close is no reset
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.start()

    def run(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                try:
                    conn.sendall(self.reply)
                    if self.linger:
                        conn.shutdown(socket.SHUT_WR)
                        conn.settimeout(5)
                        while conn.recv(65536):
                            pass
                except OSError:
                    pass

    def stop(self):
        self.sock.close()


def config(upstreams, routes):
    return ("modules: [proxy, hello]\nproxy:\n  upstreams:\n" + upstreams +
            "servers:\n  - listen: [\"127.0.0.1:{port}\"]\n    routes:\n" + routes +
            "      - path: /hello\n        handler: hello\n")


def get(port, path, headers=None):
    return request(port, path=path, headers=headers)


class ProxyBasics(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.a = Backend("a")
        cls.b = Backend("b")
        cls.server = Server(config(
            "    app:\n      servers: [\"127.0.0.1:%d\", \"127.0.0.1:%d\"]\n"
            "      keepalive: 8\n" % (cls.a.port, cls.b.port),
            "      - prefix: /\n        handler: proxy\n"
            "        proxy: { pass: app, read_timeout: 1s, via: on, set_headers: { X-Request-Id: abc } }\n"),
            workers=1, env=SMALL_QUARANTINE).start()
        cls.port = cls.server.port

    @classmethod
    def tearDownClass(cls):
        cls.server.__exit__(None, None, None)
        cls.a.stop()
        cls.b.stop()

    def test_get_headers_both_ways(self):
        r = request(self.port, path="/echo?q=1",
                    headers={"X-Forwarded-For": "10.0.0.1", "Connection": "close, X-Drop",
                             "X-Drop": "1", "Keep-Alive": "300", "TE": "trailers",
                             "X-Keep": "yes"})
        self.assertEqual(r.status, 200, r.body)
        got = json.loads(r.body)
        h = {k.lower(): v for k, v in got["headers"].items()}
        self.assertEqual(got["method"], "GET")
        self.assertEqual(got["uri"], "/echo?q=1")
        self.assertEqual(h["host"], "localhost")
        self.assertEqual(h["x-forwarded-for"], "10.0.0.1, 127.0.0.1")
        self.assertEqual(h["x-forwarded-proto"], "http")
        self.assertEqual(h["x-forwarded-host"], "localhost")
        self.assertEqual(h["x-request-id"], "abc")
        self.assertEqual(h["via"], "1.1 twister")
        self.assertEqual(r.header("Via"), "1.1 twister")
        self.assertEqual(h["x-keep"], "yes")
        for hop in ("x-drop", "keep-alive", "te"):
            self.assertNotIn(hop, h)
        # and on the way back: Connection-listed and hop-by-hop fields go
        self.assertIsNone(r.header("X-Secret"))
        self.assertIsNone(r.header("Keep-Alive"))
        self.assertIn(r.header("X-Backend"), ("a", "b"))

    def test_head_post_put(self):
        r = request(self.port, method="HEAD", path="/echo")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("Content-Length"), "123")
        self.assertEqual(r.body, b"")
        for method in ("POST", "PUT"):
            body = b"k=v" * 1000
            r = request(self.port, method=method, path="/echo", body=body)
            self.assertEqual(r.status, 200, r.body)
            got = json.loads(r.body)
            self.assertEqual(got["method"], method)
            self.assertEqual(got["body_len"], len(body))

    def test_chunked_upload(self):
        c = Client(self.port)
        try:
            pieces = [b"a" * 5000, b"b" * 70000, b"c"]
            body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
            c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                   b"Connection: close\r\n\r\n" + body)
            r = c.read_response()
            self.assertEqual(r.status, 200, r.body)
            self.assertEqual(json.loads(r.body)["body_len"], 75001)
        finally:
            c.close()

    def test_keepalive_reuse(self):
        before = self.a.stats() + self.b.stats()
        c = Client(self.port)
        try:
            for _ in range(40):
                c.send(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
                self.assertEqual(c.read_response().status, 200)
        finally:
            c.close()
        for _ in range(20):
            self.assertEqual(get(self.port, "/echo").status, 200)
        # the two /stats calls themselves are 2 connections of the 60 + 2
        used = self.a.stats() + self.b.stats() - before - 2
        self.assertLess(used, 10, "backends saw %d connections for 60 requests" % used)

    def test_client_leaves_while_upstream_works(self):
        # The request ends while its upstream connection is busy: the tie
        # must close it without any callback reaching the freed request.
        for path in ("/slow", "/big?n=20000000"):
            c = Client(self.port)
            c.send(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode())
            time.sleep(0.3)
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
            c.close()  # a reset, at once
        time.sleep(0.5)
        for _ in range(4):
            self.assertEqual(get(self.port, "/echo").status, 200)
        self.assertEqual(len(self.server.worker_pids()), 1)

    def test_round_robin_spread(self):
        seen = {"a": 0, "b": 0}
        for _ in range(20):
            seen[get(self.port, "/echo").header("X-Backend")] += 1
        self.assertEqual(seen, {"a": 10, "b": 10})

    def test_slow_backend_504(self):
        r = get(self.port, "/slow")
        self.assertEqual(r.status, 504)
        wait_for(lambda: "timed out waiting for the response" in self.server.log(),
                 what="the 504 in the log")
        self.assertIn("127.0.0.1:", self.server.log())

    def test_large_response_slow_client_bounded_memory(self):
        size = 50 * 1024 * 1024
        pid = self.server.worker_pids()[0]

        def rss():
            with open("/proc/%d/status" % pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        base = rss()
        s = socket.create_connection(("127.0.0.1", self.port))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        s.sendall(b"GET /big?n=%d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % size)
        got = 0
        peak = base
        deadline = time.time() + 120
        s.settimeout(10)
        while time.time() < deadline:
            data = s.recv(256 * 1024)
            if not data:
                break
            got += len(data)
            if got % (4 << 20) < len(data):
                peak = max(peak, rss())
                time.sleep(0.05)  # a slow reader
        s.close()
        self.assertGreater(got, size)
        self.assertLess(peak - base, 16 * 1024, "worker RSS grew by %d KiB" % (peak - base))


class ProxyFailures(unittest.TestCase):
    def test_one_down_no_client_error_then_all_down_502(self):
        a = Backend("a")
        dead = free_port()
        try:
            with Server(config(
                    "    app:\n      servers: [\"127.0.0.1:%d\", \"127.0.0.1:%d\"]\n"
                    "      max_fails: 1\n      fail_timeout: 30s\n" % (dead, a.port),
                    "      - prefix: /\n        handler: proxy\n"
                    "        proxy: { pass: app, connect_timeout: 1s }\n")) as s:
                for i in range(10):
                    # a refused connect sent nothing: a POST goes to the next server too
                    r = (get(s.port, "/echo") if i % 2 else
                         request(s.port, method="POST", path="/echo", body=b"p" * 100000))
                    self.assertEqual(r.status, 200)
                    self.assertEqual(r.header("X-Backend"), "a")
                    if i % 2 == 0:
                        self.assertEqual(json.loads(r.body)["body_len"], 100000)
                a.stop()
                r = get(s.port, "/echo")
                self.assertEqual(r.status, 502)
                wait_for(lambda: "Connection refused" in s.log(), what="the reason in the log")
        finally:
            a.stop()

    def test_least_conn_prefers_idle_server(self):
        a, b = Backend("a"), Backend("b")
        try:
            with Server(config(
                    "    app:\n      servers: [\"127.0.0.1:%d\", \"127.0.0.1:%d\"]\n"
                    "      balance: least_conn\n" % (a.port, b.port),
                    "      - prefix: /\n        handler: proxy\n        proxy: { pass: app }\n")) as s:
                slow = Client(s.port)
                slow.send(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
                time.sleep(0.5)  # let the slow request reach its backend
                seen = set()
                for _ in range(6):
                    seen.add(get(s.port, "/echo").header("X-Backend"))
                self.assertEqual(len(seen), 1, seen)
                r = slow.read_response()
                self.assertEqual(r.status, 200)
                self.assertNotIn(r.header("X-Backend"), seen)
                slow.close()
        finally:
            a.stop()
            b.stop()

    def test_malformed_responses_502_client_in_sync(self):
        bad = [
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\nContent-Length: 2\n\nhi",
            b"HTTP/1.1 200 OK\r\nX: a\r\n folded\r\nContent-Length: 2\r\n\r\nhi",
            b"HTTP/9.9 200 OK\r\n\r\n",
            b"garbage\r\n\r\n",
            b"HTTP/1.1 999 Odd\r\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
        ]
        for reply in bad:
            backend = RawBackend(reply)
            try:
                with Server(config(
                        "    app:\n      servers: [\"127.0.0.1:%d\"]\n" % backend.port,
                        "      - prefix: /up\n        handler: proxy\n"
                        "        proxy: { pass: app }\n")) as s:
                    c = Client(s.port)
                    c.send(b"GET /up HTTP/1.1\r\nHost: x\r\n\r\n")
                    if reply.endswith(b"short"):
                        # the head went out: the client sees a cut body and a close
                        r = c.read_response(head_only=True)
                        self.assertEqual(r.status, 200)
                        self.assertTrue(c.closed())
                    else:
                        r = c.read_response()
                        self.assertEqual(r.status, 502, reply)
                        self.assertNotIn(b"hello", r.body)
                        # same connection, next request: still in sync
                        c.send(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
                        self.assertEqual(c.read_response().status, 200)
                    c.close()
                    wait_for(lambda: "malformed response" in s.log() or
                             "in the middle of the body" in s.log(),
                             what="the reason logged for %r:\n%s" % (reply, s.log()))
            finally:
                backend.stop()

    def test_hash_sticks_and_names_resolve(self):
        a, b = Backend("a"), Backend("b")
        try:
            with Server(config(
                    "    app:\n      servers: [\"localhost:%d\", \"127.0.0.1:%d\"]\n"
                    "      balance: hash\n      hash_key: X-User\n      resolve: 1s\n"
                    % (a.port, b.port),
                    "      - prefix: /\n        handler: proxy\n        proxy: { pass: app }\n")) as s:
                seen = {}
                for user in ("ann", "bob", "cy", "dee", "eve", "fay"):
                    got = {get(s.port, "/echo", {"X-User": user}).header("X-Backend")
                           for _ in range(4)}
                    self.assertEqual(len(got), 1, (user, got))
                    seen[user] = got.pop()
                self.assertEqual(set(seen.values()), {"a", "b"}, seen)
                time.sleep(1.5)  # a background re-resolution ran meanwhile
                self.assertEqual(get(s.port, "/echo", {"X-User": "ann"}).header("X-Backend"),
                                 seen["ann"])
        finally:
            a.stop()
            b.stop()

    def test_nginx_as_backend(self):
        nginx = "/usr/sbin/nginx"
        if not os.path.exists(nginx):
            self.skipTest("nginx is not installed")
        import tempfile
        d = tempfile.mkdtemp(prefix="twister-nginx-")
        port = free_port()
        os.makedirs(d + "/www/files")
        body = os.urandom(300000)
        with open(d + "/www/files/blob.bin", "wb") as f:
            f.write(body)
        for path in (d, d + "/www", d + "/www/files"):  # nginx's workers may run as nobody
            os.chmod(path, 0o755)
        os.chmod(d + "/www/files/blob.bin", 0o644)
        with open(d + "/nginx.conf", "w") as f:
            f.write("""worker_processes 1; pid %(d)s/nginx.pid; error_log %(d)s/error.log;
events { worker_connections 64; }
http { access_log %(d)s/access.log; client_body_temp_path %(d)s/body;
  proxy_temp_path %(d)s/p; fastcgi_temp_path %(d)s/f; uwsgi_temp_path %(d)s/u;
  scgi_temp_path %(d)s/s; keepalive_requests 1000;
  server { listen 127.0.0.1:%(port)d; root %(d)s/www; } }
""" % {"d": d, "port": port})
        proc = subprocess.Popen([nginx, "-p", d + "/", "-c", d + "/nginx.conf", "-e",
                                 d + "/error.log", "-g", "daemon off;"])
        try:
            def up():
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    return True
                except OSError:
                    return False
            wait_for(up, what="nginx")
            with Server(config("    web:\n      servers: [\"127.0.0.1:%d\"]\n" % port,
                               "      - prefix: /files/\n        handler: proxy\n"
                               "        proxy: { pass: web }\n")) as s:
                for _ in range(5):
                    r = get(s.port, "/files/blob.bin")
                    self.assertEqual(r.status, 200)
                    self.assertEqual(r.body, body)
                r = request(s.port, method="HEAD", path="/files/blob.bin")
                self.assertEqual(r.header("Content-Length"), str(len(body)))
                self.assertEqual(get(s.port, "/files/missing").status, 404)
                r = request(s.port, method="POST", path="/files/blob.bin", body=b"x" * 10)
                self.assertEqual(r.status, 405)
        finally:
            proc.terminate()
            proc.wait()
            import shutil
            shutil.rmtree(d, ignore_errors=True)

    def test_early_upstream_answer_to_an_upload(self):
        backend = RawBackend(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 8\r\n"
                             b"Connection: close\r\n\r\ntoo big\n", linger=True)
        try:
            with Server(config("    app:\n      servers: [\"127.0.0.1:%d\"]\n" % backend.port,
                               "      - prefix: /\n        handler: proxy\n"
                               "        proxy: { pass: app }\n")) as s:
                c = Client(s.port)
                c.send(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 900000\r\n\r\n")
                try:
                    c.send(b"z" * 900000)
                except OSError:
                    pass  # the server may stop reading once it has answered
                r = c.read_response()
                self.assertEqual(r.status, 413, s.log()[-1500:])
                self.assertEqual(r.body, b"too big\n")
                c.close()
        finally:
            backend.stop()

    def test_unix_socket_upstream(self):
        path = "/tmp/twister-proxy-%d.sock" % os.getpid()
        reply = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nunix"
        srv = socket.socket(socket.AF_UNIX)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        srv.bind(path)
        srv.listen(4)

        def serve():
            conn, _ = srv.accept()
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(4096)
                conn.sendall(reply)
        t = threading.Thread(target=serve, daemon=True)
        t.start()
        try:
            with Server(config("    app:\n      servers: [\"unix:%s\"]\n" % path,
                               "      - prefix: /\n        handler: proxy\n"
                               "        proxy: { pass: app }\n")) as s:
                r = get(s.port, "/x")
                self.assertEqual(r.status, 200)
                self.assertEqual(r.body, b"unix")
        finally:
            srv.close()
            os.unlink(path)

    def test_bad_config_points_at_the_key(self):
        s = Server(config("    app:\n      servers: [\"127.0.0.1:1 weight=0\"]\n",
                          "      - prefix: /\n        handler: proxy\n        proxy: { pass: app }\n"))
        rc, out = s.run("-t")
        self.assertNotEqual(rc, 0)
        self.assertIn("weight", out)
        self.assertRegex(out, r"twister\.yaml:\d+:\d+")
        s2 = Server(config("    app:\n      servers: [\"127.0.0.1:1\"]\n",
                           "      - prefix: /\n        handler: proxy\n        proxy: { pass: nope }\n"))
        rc, out = s2.run("-t")
        self.assertNotEqual(rc, 0)
        self.assertIn("no upstream named 'nope'", out)


def interpreter_with(module):
    for exe in (sys.executable, "/usr/bin/python3"):
        if subprocess.run([exe, "-c", "import " + module], stderr=subprocess.DEVNULL).returncode == 0:
            return exe
    raise unittest.SkipTest("no python with %s" % module)


def ws_frame(payload, opcode=1):
    """A masked client frame."""
    import struct
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def ws_read(sock):
    """One unmasked server frame: (opcode, payload)."""
    import struct

    def exact(n):
        buf = b""
        while len(buf) < n:
            chunk = sock.recv(n - len(buf))
            if not chunk:
                raise EOFError("closed after %d of %d bytes" % (len(buf), n))
            buf += chunk
        return buf
    b0, b1 = exact(2)
    n = b1 & 0x7f
    if n == 126:
        n = struct.unpack("!H", exact(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", exact(8))[0]
    return b0 & 0x0f, exact(n)


class ProxyBehindTLS(unittest.TestCase):
    def test_forwarded_proto_is_https(self):
        import ssl
        if not shutil.which("openssl"):
            self.skipTest("no openssl")
        backend = Backend("a")
        s = Server("modules: [proxy]\nproxy:\n  upstreams:\n    app:\n"
                   "      servers: [\"127.0.0.1:%d\"]\n"
                   "servers:\n  - listen: [\"127.0.0.1:{port} tls\", \"127.0.0.1:{port2}\"]\n"
                   "    tls: { certificate: {dir}/cert.pem, key: {dir}/key.pem }\n"
                   "    routes:\n      - prefix: /\n        handler: proxy\n"
                   "        proxy: { pass: app, forwarded: on }\n" % backend.port)
        try:
            subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                            "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=localhost",
                            "-days", "2", "-keyout", os.path.join(s.dir, "key.pem"),
                            "-out", os.path.join(s.dir, "cert.pem")],
                           check=True, capture_output=True)
            s.start()
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            with socket.create_connection(("127.0.0.1", s.port), timeout=10) as raw_sock:
                with ctx.wrap_socket(raw_sock, server_hostname="localhost") as tls:
                    tls.sendall(b"GET /echo HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                    data = b""
                    while True:
                        chunk = tls.recv(65536)
                        if not chunk:
                            break
                        data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            self.assertTrue(head.startswith(b"HTTP/1.1 200"), head)
            h = {k.lower(): v for k, v in json.loads(body)["headers"].items()}
            self.assertEqual(h["x-forwarded-proto"], "https")
            self.assertIn("proto=https", h["forwarded"])
            # The plain listener of the same server still says http.
            h = {k.lower(): v for k, v in
                 json.loads(request(s.port2, path="/echo").body)["headers"].items()}
            self.assertEqual(h["x-forwarded-proto"], "http")
        finally:
            s.__exit__(None, None, None)
            backend.stop()


class ProxyWebSocket(unittest.TestCase):
    def test_echo_through_the_proxy(self):
        port = free_port()
        ws = subprocess.Popen([interpreter_with("websockets"), os.path.join(HERE, "ws_backend.py"),
                               str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            self.assertIn(b"ready", ws.stdout.readline())
            with Server(config("    ws:\n      servers: [\"127.0.0.1:%d\"]\n" % port,
                               "      - prefix: /ws\n        handler: proxy\n"
                               "        proxy: { pass: ws }\n")) as s:
                sock = socket.create_connection(("127.0.0.1", s.port), timeout=10)
                sock.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                             b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                             b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
                head = b""
                while b"\r\n\r\n" not in head:
                    head += sock.recv(1)
                self.assertTrue(head.startswith(b"HTTP/1.1 101 "), head)
                self.assertIn(b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", head)
                self.assertIn(b"upgrade: websocket", head.lower())
                for msg in (b"hello", b"x" * 300000, "\u00e9t\u00e9".encode()):
                    sock.sendall(ws_frame(msg))
                    opcode, payload = ws_read(sock)
                    self.assertEqual(opcode, 1)
                    self.assertEqual(payload, msg)
                sock.sendall(ws_frame(b"\x03\xe8", opcode=8))  # close
                opcode, _ = ws_read(sock)
                self.assertEqual(opcode, 8)
                sock.settimeout(10)
                self.assertEqual(sock.recv(100), b"")  # the tunnel ends with the backend
                sock.close()
                # the worker serves on
                self.assertEqual(get(s.port, "/hello").status, 200)
        finally:
            ws.kill()
            ws.wait()


    def test_tunnel_lives_through_a_reload_until_the_drain_timeout(self):
        port = free_port()
        ws = subprocess.Popen([interpreter_with("websockets"), os.path.join(HERE, "ws_backend.py"),
                               str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            self.assertIn(b"ready", ws.stdout.readline())
            cfg = ("timeouts: { shutdown: 2s }\n" +
                   config("    ws:\n      servers: [\"127.0.0.1:%d\"]\n" % port,
                          "      - prefix: /ws\n        handler: proxy\n"
                          "        proxy: { pass: ws }\n"))
            with Server(cfg) as s:
                sock = socket.create_connection(("127.0.0.1", s.port), timeout=10)
                sock.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                             b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                             b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
                head = b""
                while b"\r\n\r\n" not in head:
                    head += sock.recv(1)
                self.assertIn(b" 101 ", head)
                import signal
                s.send_signal(signal.SIGHUP)
                wait_for(lambda: "generation 2 is serving" in s.log(), what="the new generation")
                sock.sendall(ws_frame(b"still there"))
                self.assertEqual(ws_read(sock), (1, b"still there"))
                # the old worker ends it at its drain timeout, not before the reload
                sock.settimeout(15)
                with self.assertRaises((EOFError, ConnectionResetError)):
                    while True:
                        ws_read(sock)
                sock.close()
                self.assertEqual(get(s.port, "/hello").status, 200)
        finally:
            ws.kill()
            ws.wait()


class ProxyReload(unittest.TestCase):
    def test_reload_during_traffic(self):
        a = Backend("a")
        try:
            cfg = config("    app:\n      servers: [\"127.0.0.1:%d\"]\n" % a.port,
                         "      - prefix: /\n        handler: proxy\n        proxy: { pass: app }\n")
            with Server(cfg, workers=2) as s:
                failures = []
                stop = threading.Event()

                def load():
                    n = 0
                    while not stop.is_set() and n < 2000:
                        n += 1
                        try:
                            r = get(s.port, "/echo")
                            if r.status != 200:
                                failures.append(r.status)
                        except Exception as e:  # a failed request
                            failures.append(repr(e))
                threads = [threading.Thread(target=load) for _ in range(3)]
                for t in threads:
                    t.start()
                import signal
                for _ in range(3):
                    time.sleep(0.5)
                    s.send_signal(signal.SIGHUP)
                time.sleep(0.5)
                stop.set()
                for t in threads:
                    t.join(60)
                self.assertEqual(failures, [])
        finally:
            a.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
