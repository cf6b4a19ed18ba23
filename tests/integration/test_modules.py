"""The first modules through the real server — hello, echo (streaming with
back-pressure, buffer: true, 100-continue), redirect (status, Location,
variables) — and virtual hosts and route precedence as README.md describes,
checked with raw HTTP and with curl."""

import os
import random
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import unittest

from harness import Client, Response, Server, ServerTestCase, raw, request

CONFIG = """
modules: [hello, echo, redirect]
servers:
  # a.test: the listener's first server, so also the default one.
  - listen: ["127.0.0.1:{port}"]
    server_names: [a.test]
    routes:
      - path: /hello
        handler: hello
      - path: /hello-get
        methods: [GET]
        handler: hello
      - path: /hi
        handler: hello
        hello: { message: "Hi!\\n" }
      - path: /bare
        handler: hello
        hello:
      - path: /echo
        handler: echo
        limits: { body: 64m }
      - path: /echo-small
        handler: echo
      - path: /echo-buffered
        handler: echo
        echo: { buffer: true }
        limits: { body: 8m }
      - prefix: /r301/
        handler: redirect
        redirect: { return: 301 https://example.com$uri }
      - path: /r302
        handler: redirect
        redirect: { return: 302 /find$is_args$args }
      - path: /r307
        handler: redirect
        redirect: { return: "307 http://$host:8080$request_uri" }
      - prefix: /r308/
        handler: redirect
        redirect: { return: "308 $scheme://$host/new?from=$uri&$args" }
      - prefix: /add-slash/
        handler: redirect
        redirect: { return: 301 $uri/ }
      - path: /ping
        handler: redirect
        redirect: { return: 200 "pong" }
      - path: /vars
        handler: redirect
        redirect: { return: '200 "uri=$uri args=$args is_args=$is_args ru=$request_uri host=$host scheme=$scheme cost=$0 $"' }
      - path: /robots.txt
        handler: redirect
        redirect: { return: "200 User-agent: *\\nDisallow: /\\n" }
      - path: /notfound
        handler: redirect
        redirect: { return: "404" }
      - path: /gone
        handler: redirect
        redirect: { return: 410 }
      - path: /teapot
        handler: redirect
        redirect: { return: 418 "short and stout" }
      - path: /empty
        handler: redirect
        redirect: { return: "204" }
      # Route precedence: exact, then regexes in order, then longest prefix.
      - path: /x/exact
        handler: hello
        hello: { message: "exact" }
      - regex: '^/x/'
        handler: hello
        hello: { message: "regex-first" }
      - regex: '^/x/e'
        handler: hello
        hello: { message: "regex-second" }
      - prefix: /x/long/
        handler: hello
        hello: { message: "prefix-x-long" }
      - prefix: /y/
        handler: hello
        hello: { message: "prefix-y" }
      - prefix: /y/long/
        handler: hello
        hello: { message: "prefix-y-long" }
      - regex: '^/u/([0-9]+)$'
        handler: hello
        hello: { message: "user" }
      - prefix: /
        handler: hello
        hello: { message: "server a" }
  - listen: ["127.0.0.1:{port}"]
    server_names: [b.test, "*.b.test"]
    routes:
      - prefix: /
        handler: hello
        hello: { message: "server b" }
  - listen: ["127.0.0.1:{port}"]
    server_names: ["*.c.test"]
    routes:
      - path: /only
        handler: hello
        hello: { message: "server c" }
  - listen: ["127.0.0.1:{port}"]
    server_names: ["*.deep.c.test", exact.c.test]
    routes:
      - prefix: /
        handler: hello
        hello: { message: "server d" }
  # A site that adds a trailing slash to everything; one that redirects
  # to the request's own target.
  - listen: ["127.0.0.1:{port2}"]
    routes:
      - prefix: /
        handler: redirect
        redirect: { return: 301 $uri/ }
  - listen: ["127.0.0.1:{port2}"]
    server_names: [self.test]
    routes:
      - prefix: /
        handler: redirect
        redirect: { return: 302 $request_uri }
      - path: /proto-relative
        handler: redirect
        redirect: { return: 302 //cdn.example$uri }
"""


def chunked(data, rng, max_chunk=100000):
    """data in chunked framing, with random chunk sizes (and a few extensions)."""
    out, i = [], 0
    while i < len(data):
        n = rng.randint(1, max_chunk)
        piece = data[i:i + n]
        ext = b";x=%d" % i if rng.random() < 0.05 else b""
        out.append(b"%x%s\r\n%s\r\n" % (len(piece), ext, piece))
        i += n
    out.append(b"0\r\n\r\n")
    return b"".join(out)


def read_big_response(c):
    """Client.read_response for bodies of tens of MB: one growing bytearray
    and offsets instead of re-slicing the buffer (which is quadratic)."""
    buf, pos = bytearray(c.buf), 0

    def fill():
        chunk = c.sock.recv(1 << 20)
        if not chunk:
            raise EOFError("connection closed after %d bytes" % len(buf))
        buf.extend(chunk)

    def line():
        nonlocal pos
        while True:
            i = buf.find(b"\r\n", pos)
            if i >= 0:
                text, pos = bytes(buf[pos:i]), i + 2
                return text
            fill()

    def exact(n):
        nonlocal pos
        while len(buf) - pos < n:
            fill()
        data, pos = buf[pos:pos + n], pos + n
        return data

    version, status = line().split(b" ", 2)[:2]
    headers = []
    while True:
        h = line()
        if not h:
            break
        k, _, v = h.partition(b":")
        headers.append((k.decode(), v.strip().decode()))
    r = Response(int(status), "", headers, b"", version.decode()[5:])
    body = bytearray()
    if (r.header("transfer-encoding") or "").lower() == "chunked":
        while True:
            size = int(line().split(b";")[0], 16)
            if size == 0:
                while line():
                    pass
                break
            body += exact(size)
            if exact(2) != b"\r\n":
                raise AssertionError("bad chunk framing in the response")
    else:
        body = exact(int(r.header("content-length")))
    r.body = bytes(body)
    c.buf = bytes(buf[pos:])
    return r


class Sender(threading.Thread):
    """Sends bytes on a socket in pieces from a thread, counting progress,
    so that the main thread can read the response at the same time."""

    def __init__(self, sock, data, piece=65536):
        super().__init__(daemon=True)
        self.sock, self.data, self.piece = sock, data, piece
        self.sent = 0
        self.error = None

    def run(self):
        try:
            view = memoryview(self.data)
            while self.sent < len(self.data):
                self.sock.sendall(view[self.sent:self.sent + self.piece])
                self.sent += min(self.piece, len(self.data) - self.sent)
        except OSError as e:
            self.error = e


class ModulesTest(ServerTestCase):
    CONFIG = CONFIG

    def get(self, path, host="a.test", method="GET", headers=None, body=b""):
        return request(self.port, method, path, headers=headers, body=body, host=host)

    def exchange(self, head, body, timeout=60):
        """Sends head + body from a thread while reading the response."""
        c = Client(self.port, timeout=timeout)
        c.send(head)
        s = Sender(c.sock, body)
        s.start()
        r = c.read_response()
        s.join(timeout)
        self.assertIsNone(s.error)
        self.assertEqual(s.sent, len(body))
        return c, r

    # ---- hello ----------------------------------------------------------------------
    def test_hello_default_message(self):
        r = self.get("/hello")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, b"Hello, World!")
        self.assertEqual(r.header("content-type"), "text/plain; charset=utf-8")
        self.assertEqual(r.header("content-length"), "13")

    def test_hello_configured_and_empty_section(self):
        self.assertEqual(self.get("/hi").body, b"Hi!\n")
        self.assertEqual(self.get("/bare").body, b"Hello, World!")

    def test_hello_head(self):
        c = Client(self.port)
        c.send(b"HEAD /hi HTTP/1.1\r\nHost: a.test\r\n\r\nGET /hi HTTP/1.1\r\nHost: a.test\r\n\r\n")
        head = c.read_response(head_only=True)
        self.assertEqual((head.status, head.header("content-length")), (200, "4"))
        self.assertEqual(head.header("content-type"), "text/plain; charset=utf-8")
        self.assertEqual(c.read_response().body, b"Hi!\n")  # no stray body bytes in between
        c.close()

    def test_hello_methods(self):
        r = self.get("/hello-get", method="POST", body=b"a=1")
        self.assertEqual(r.status, 405)
        self.assertEqual(r.header("allow"), "GET, HEAD")
        self.assertNotIn(b"Hello", r.body)
        self.assertEqual(self.get("/hello-get", method="HEAD").status, 200)
        self.assertEqual(self.get("/hello-get", method="DELETE").status, 405)
        # Without methods: every method gets the message, but OPTIONS is
        # answered by the core with the methods such a route accepts.
        for method in ("POST", "PUT", "DELETE"):
            r = self.get("/hello", method=method, body=b"ignored")
            self.assertEqual((r.status, r.body), (200, b"Hello, World!"), method)
        r = self.get("/hello", method="OPTIONS")
        self.assertEqual((r.status, r.body), (200, b""))
        self.assertEqual(r.header("allow"), "GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH")

    def test_hello_ignores_a_body_and_keeps_the_connection(self):
        c = Client(self.port)
        c.send(b"POST /hello HTTP/1.1\r\nHost: a.test\r\nContent-Length: 10\r\n\r\n0123456789"
               b"GET /hi HTTP/1.1\r\nHost: a.test\r\n\r\n")
        self.assertEqual(c.read_response().body, b"Hello, World!")
        self.assertEqual(c.read_response().body, b"Hi!\n")
        # An unread chunked body is not drained: the answer says close, and
        # nothing in that body is ever taken for a request.
        c.send(b"POST /hi HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"34\r\nGET /hello HTTP/1.1\r\nHost: a.test\r\nX-Smuggled: 1\r\n\r\n\r\n0\r\n\r\n")
        r = c.read_response()
        self.assertEqual((r.body, r.header("connection")), (b"Hi!\n", "close"))
        self.assertTrue(c.closed())
        self.assertEqual(c.buf, b"")
        c.close()

    # ---- echo: the head --------------------------------------------------------------------
    def test_echo_get_shows_request_line_and_headers(self):
        c = Client(self.port)
        c.send(b"GET /echo?x=1&y=%20 HTTP/1.1\r\nHost: a.test\r\nX-Custom:   spaced value \r\n"
               b"Accept: */*\r\nx-lower: v\r\nX-Custom: second\r\n\r\n")
        r = c.read_response()
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("content-type"), "text/plain")
        self.assertEqual(r.body, b"GET /echo?x=1&y=%20 HTTP/1.1\nHost: a.test\n"
                                 b"X-Custom: spaced value\nAccept: */*\nx-lower: v\n"
                                 b"X-Custom: second\n")
        c.send(b"HEAD /echo HTTP/1.1\r\nHost: a.test\r\n\r\nGET /echo HTTP/1.0\r\n\r\n")
        head = c.read_response(head_only=True)
        self.assertEqual(head.header("content-length"), str(len(b"HEAD /echo HTTP/1.1\nHost: a.test\n")))
        r = c.read_response()  # right after the HEAD: it had no body
        self.assertEqual(r.body, b"GET /echo HTTP/1.0\n")
        c.close()

    # ---- echo: bodies -------------------------------------------------------------------------
    def test_echo_small_post(self):
        r = self.get("/echo", method="POST", body=b"hello=world&x=1",
                     headers={"Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, b"hello=world&x=1")
        self.assertEqual(r.header("content-length"), "15")
        self.assertEqual(r.header("content-type"), "application/x-www-form-urlencoded")
        r = self.get("/echo", method="PUT", body=b"\x00\xff binary")
        self.assertEqual(r.body, b"\x00\xff binary")
        self.assertEqual(r.header("content-type"), "application/octet-stream")

    def test_echo_post_without_body(self):
        r = self.get("/echo", method="POST", headers={"Content-Length": "0"})
        self.assertEqual((r.status, r.body, r.header("content-length")), (200, b"", "0"))
        r = self.get("/echo", method="DELETE")
        self.assertEqual((r.status, r.body), (200, b""))
        for path in (b"/echo", b"/echo-buffered"):  # an empty chunked body
            c = Client(self.port)
            c.send(b"POST " + path + b" HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n"
                   b"\r\n0\r\n\r\nGET /hi HTTP/1.1\r\nHost: a.test\r\n\r\n")
            r = c.read_response()
            self.assertEqual((r.status, r.body), (200, b""), path)
            self.assertEqual(c.read_response().body, b"Hi!\n")
            c.close()

    def test_echo_http10_post(self):
        out = raw(self.port, b"POST /echo HTTP/1.0\r\nContent-Length: 4\r\n\r\nabcd")
        self.assertTrue(out.startswith(b"HTTP/1.1 200"), out)
        self.assertIn(b"\r\nContent-Length: 4\r\n", out)
        self.assertTrue(out.endswith(b"\r\n\r\nabcd"), out)

    def test_echo_5mb_content_length(self):
        body = random.Random(1).randbytes(5 * 1024 * 1024)
        c, r = self.exchange(b"POST /echo HTTP/1.1\r\nHost: a.test\r\nContent-Length: %d\r\n\r\n"
                             % len(body), body)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("content-length"), str(len(body)))
        self.assertTrue(r.body == body, "5 MB echo differs")
        c.send(b"GET /hi HTTP/1.1\r\nHost: a.test\r\n\r\n")
        self.assertEqual(c.read_response().body, b"Hi!\n")
        c.close()

    def test_echo_5mb_chunked_in_random_chunks(self):
        rng = random.Random(2)
        body = rng.randbytes(5 * 1024 * 1024 + 3)
        c, r = self.exchange(b"POST /echo HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n"
                             b"Content-Type: video/mp4\r\n\r\n", chunked(body, rng))
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("transfer-encoding"), "chunked")
        self.assertEqual(r.header("content-type"), "video/mp4")
        self.assertTrue(r.body == body, "5 MB chunked echo differs")
        c.send(b"GET /hi HTTP/1.1\r\nHost: a.test\r\n\r\n")
        self.assertEqual(c.read_response().body, b"Hi!\n")
        c.close()

    def test_echo_tiny_chunks_sent_one_byte_at_a_time(self):
        rng = random.Random(3)
        body = rng.randbytes(3000)
        framed = chunked(body, rng, max_chunk=7)
        c = Client(self.port)
        c.send(b"POST /echo HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n")
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(0, len(framed), 97):
            c.send(framed[i:i + 97])
        self.assertEqual(c.read_response().body, body)
        c.close()

    def slow_client(self):
        """A client with small socket buffers, so that the kernel holds
        little of what the server cannot send."""
        c = Client.__new__(Client)
        c.buf = b""
        c.sock = socket.socket()
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
        c.sock.settimeout(60)
        c.sock.connect(("127.0.0.1", self.port))
        return c

    def check_back_pressure(self, head, framed, body):
        c = self.slow_client()
        c.send(head)
        sender = Sender(c.sock, framed)
        sender.start()
        # Read nothing for a while: the server must stop reading the body
        # (not queue the whole upload), so the upload stalls.
        time.sleep(1.5)
        stalled_at = sender.sent
        time.sleep(0.5)
        self.assertLess(stalled_at, len(framed), "the whole upload was taken without anyone reading")
        self.assertEqual(sender.sent, stalled_at, "the upload kept moving while nobody read")
        # Now read slowly at first (the body resumes and pauses again), then
        # at full speed: every byte arrives, in order.
        for _ in range(30):
            c.buf += c.sock.recv(8192)
            time.sleep(0.01)
        r = read_big_response(c)
        sender.join(30)
        self.assertIsNone(sender.error)
        self.assertEqual(sender.sent, len(framed))
        self.assertEqual(r.status, 200)
        self.assertEqual(len(r.body), len(body))
        self.assertTrue(r.body == body, "echo under back-pressure differs")
        # The connection is still good for another request.
        c.send(b"GET /hi HTTP/1.1\r\nHost: a.test\r\n\r\n")
        self.assertEqual(c.read_response().body, b"Hi!\n")
        c.close()
        return r

    def test_echo_back_pressure_with_a_slow_reader(self):
        body = bytes(range(256)) * (24 * 1024 * 1024 // 256)
        r = self.check_back_pressure(b"POST /echo HTTP/1.1\r\nHost: a.test\r\n"
                                     b"Content-Length: %d\r\n\r\n" % len(body), body, body)
        self.assertEqual(r.header("content-length"), str(len(body)))

    def test_echo_back_pressure_with_a_chunked_body(self):
        rng = random.Random(7)
        body = rng.randbytes(20 * 1024 * 1024)
        r = self.check_back_pressure(b"POST /echo HTTP/1.1\r\nHost: a.test\r\n"
                                     b"Transfer-Encoding: chunked\r\n\r\n",
                                     chunked(body, rng, max_chunk=300000), body)
        self.assertEqual(r.header("transfer-encoding"), "chunked")

    def test_echo_client_leaving_mid_body_does_not_hurt_the_worker(self):
        for _ in range(3):
            c = Client(self.port)
            c.send(b"POST /echo HTTP/1.1\r\nHost: a.test\r\nContent-Length: 1000000\r\n\r\n" +
                   b"x" * 100000)
            c.close()
        for path in (b"/echo", b"/echo-buffered"):
            c = Client(self.port)
            c.send(b"POST " + path + b" HTTP/1.1\r\nHost: a.test\r\n"
                   b"Transfer-Encoding: chunked\r\n\r\n1000\r\n" + b"y" * 100)
            c.close()
        self.assertEqual(self.get("/hi").body, b"Hi!\n")

    def test_echo_client_leaving_while_paused(self):
        # The body is paused for back-pressure when the client goes away:
        # the request must still end (abort), and the worker go on serving.
        for _ in range(2):
            c = self.slow_client()
            total = 32 * 1024 * 1024
            c.send(b"POST /echo HTTP/1.1\r\nHost: a.test\r\nContent-Length: %d\r\n\r\n" % total)
            sender = Sender(c.sock, b"z" * total)
            sender.start()
            time.sleep(1.0)
            self.assertLess(sender.sent, total)
            c.sock.shutdown(socket.SHUT_RDWR)
            c.close()
            sender.join(10)
        self.assertEqual(self.get("/hi").body, b"Hi!\n")
        self.assertEqual(self.get("/echo", method="POST", body=b"still fine").body, b"still fine")

    def test_echo_body_limit(self):
        c = Client(self.port)
        c.send(b"POST /echo-small HTTP/1.1\r\nHost: a.test\r\nContent-Length: 2000000\r\n\r\n")
        self.assertEqual(c.read_response().status, 413)
        c.close()

    # ---- echo: buffer: true ---------------------------------------------------------------------
    def test_echo_buffered(self):
        body = random.Random(4).randbytes(3 * 1024 * 1024)
        c, r = self.exchange(b"POST /echo-buffered HTTP/1.1\r\nHost: a.test\r\n"
                             b"Content-Length: %d\r\nContent-Type: text/csv\r\n\r\n" % len(body),
                             body)
        self.assertEqual((r.status, r.header("content-type")), (200, "text/csv"))
        self.assertTrue(r.body == body)
        rng = random.Random(5)
        c2, r = self.exchange(b"POST /echo-buffered HTTP/1.1\r\nHost: a.test\r\n"
                              b"Transfer-Encoding: chunked\r\n\r\n", chunked(body, rng))
        # Buffered, so the answer knows its length even for a chunked request.
        self.assertEqual(r.header("content-length"), str(len(body)))
        self.assertIsNone(r.header("transfer-encoding"))
        self.assertTrue(r.body == body)
        c.close()
        c2.close()

    def test_echo_buffered_errors_get_their_status(self):
        big = b"%x\r\n%s\r\n" % (1 << 20, b"q" * (1 << 20))
        c = Client(self.port)
        c.send(b"POST /echo-buffered HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n")
        s = Sender(c.sock, big * 9 + b"0\r\n\r\n")
        s.start()
        self.assertEqual(c.read_response().status, 413)
        s.join(30)
        c.close()
        out = raw(self.port, b"POST /echo-buffered HTTP/1.1\r\nHost: a.test\r\n"
                             b"Transfer-Encoding: chunked\r\n\r\n5\r\nabc\r\n0\r\n\r\n")
        self.assertTrue(out.startswith(b"HTTP/1.1 400"), out)
        self.assertEqual(out.count(b"HTTP/1.1 "), 1)

    # ---- echo: 100-continue ------------------------------------------------------------------------
    def test_echo_100_continue(self):
        for path in (b"/echo", b"/echo-buffered"):
            c = Client(self.port)
            c.send(b"POST " + path + b" HTTP/1.1\r\nHost: a.test\r\nContent-Length: 11\r\n"
                   b"Expect: 100-continue\r\n\r\n")
            interim = c.read_response()
            self.assertEqual(interim.status, 100, path)
            c.send(b"hello world")
            r = c.read_response()
            self.assertEqual((r.status, r.body), (200, b"hello world"), path)
            # And chunked.
            c.send(b"POST " + path + b" HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n"
                   b"Expect: 100-continue\r\n\r\n")
            self.assertEqual(c.read_response().status, 100)
            c.send(b"4\r\nabcd\r\n0\r\n\r\n")
            self.assertEqual(c.read_response().body, b"abcd")
            c.close()

    def test_no_100_continue_for_get(self):
        c = Client(self.port)
        c.send(b"GET /echo HTTP/1.1\r\nHost: a.test\r\nExpect: 100-continue\r\n\r\n")
        r = c.read_response()
        self.assertEqual(r.status, 200)
        self.assertIn(b"Expect: 100-continue", r.body)
        c.close()

    # ---- redirect ------------------------------------------------------------------------------------
    def test_redirect_statuses_and_locations(self):
        r = self.get("/r301/a/b%20c?q=1")
        self.assertEqual(r.status, 301)
        self.assertEqual(r.header("location"), "https://example.com/r301/a/b%20c")
        self.assertEqual(r.body, b"301 Moved Permanently\n")
        r = self.get("/r302?a=1&b=2")
        self.assertEqual((r.status, r.header("location")), (302, "/find?a=1&b=2"))
        r = self.get("/r302")
        self.assertEqual((r.status, r.header("location")), (302, "/find"))
        r = self.get("/r307?x=%41", host="a.test:9999")
        self.assertEqual((r.status, r.header("location")), (307, "http://a.test:8080/r307?x=%41"))
        r = self.get("/r308/p%3Fq?k=v")
        self.assertEqual(r.status, 308)
        self.assertEqual(r.header("location"), "http://a.test/new?from=/r308/p%3Fq&k=v")

    def test_redirect_uri_is_encoded_and_request_uri_is_raw(self):
        r = self.get("/r301/%7Efoo/%22x%22/%C3%A9/%25")
        self.assertEqual(r.header("location"), "https://example.com/r301/~foo/%22x%22/%C3%A9/%25")
        r = self.get("/r301/a/./b/../c")
        self.assertEqual(r.header("location"), "https://example.com/r301/a/c")
        r = self.get("/r307/../r307?z")
        self.assertEqual(r.header("location"), "http://a.test:8080/r307/../r307?z")
        # An absolute-form target (as proxies send): $request_uri is from the
        # path on, and $host is the target's.
        out = raw(self.port, b"GET http://b.test/r307?q=1 HTTP/1.1\r\nHost: a.test\r\n"
                             b"Connection: close\r\n\r\n")
        self.assertIn(b"server b", out)  # b.test has no /r307: its catch-all answers
        out = raw(self.port, b"GET HTTP://A.TEST/r307?q=1 HTTP/1.1\r\nHost: x\r\n"
                             b"Connection: close\r\n\r\n")
        self.assertIn(b"\r\nLocation: http://A.TEST:8080/r307?q=1\r\n", out)

    def test_redirect_to_uri_never_leaves_the_site(self):
        # "Location: //evil.example/" would send the browser to another host.
        for path in ("/add-slash//evil.example", "/add-slash/%2fevil.example"):
            r = self.get(path)
            self.assertEqual(r.status, 301, path)
            self.assertEqual(r.header("location"), "/add-slash/evil.example/", path)
        r = self.get("/add-slash/x")
        self.assertEqual(r.header("location"), "/add-slash/x/")
        for path, want in (("//evil.example/x?y", "/evil.example/x?y"),
                           ("///evil.example", "/evil.example"),
                           ("/%2fevil.example", "/%2fevil.example"),
                           ("/ok?a=//b", "/ok?a=//b")):
            r = request(self.server.port2, "GET", path, host="self.test")
            self.assertEqual((r.status, r.header("location")), (302, want), path)
        # Only a template that starts with "//" itself says so.
        r = request(self.server.port2, "GET", "/proto-relative", host="self.test")
        self.assertEqual(r.header("location"), "//cdn.example/proto-relative")
        out = raw(self.server.port2, b"GET /\\evil.example HTTP/1.1\r\nHost: self.test\r\n"
                                     b"Connection: close\r\n\r\n")
        self.assertIn(b"\r\nLocation: /evil.example\r\n", out)  # browsers read "/\\" as "//"
        for path in ("//evil.example", "///evil.example", "/%2Fevil.example", "/%2f%2fevil.example"):
            r = request(self.server.port2, "GET", path)
            self.assertEqual(r.status, 301, path)
            self.assertEqual(r.header("location"), "/evil.example/", path)

    def test_redirect_head(self):
        c = Client(self.port)
        c.send(b"HEAD /r302?x HTTP/1.1\r\nHost: a.test\r\n\r\nGET /ping HTTP/1.1\r\nHost: a.test\r\n\r\n")
        head = c.read_response(head_only=True)
        self.assertEqual((head.status, head.header("location")), (302, "/find?x"))
        self.assertEqual(c.read_response().body, b"pong")
        c.close()

    def test_return_text(self):
        r = self.get("/ping")
        self.assertEqual((r.status, r.body), (200, b"pong"))
        self.assertEqual(r.header("content-type"), "text/plain; charset=utf-8")
        self.assertIsNone(r.header("location"))
        r = self.get("/robots.txt")
        self.assertEqual(r.body, b"User-agent: *\nDisallow: /\n")
        r = self.get("/teapot")
        self.assertEqual((r.status, r.body), (418, b"short and stout"))

    def test_return_variables_in_text(self):
        r = self.get("/vars?a=%20b")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, b"uri=/vars args=a=%20b is_args=? ru=/vars?a=%20b host=a.test "
                                 b"scheme=http cost=$0 $")
        r = self.get("/vars", host="A.Test:81")
        self.assertIn(b"args= is_args= ru=/vars host=", r.body)

    def test_return_status_only(self):
        r = self.get("/notfound")
        self.assertEqual((r.status, r.body), (404, b"404 Not Found\n"))
        r = self.get("/gone")
        self.assertEqual((r.status, r.body), (410, b"410 Gone\n"))
        c = Client(self.port)
        c.send(b"GET /empty HTTP/1.1\r\nHost: a.test\r\n\r\nGET /ping HTTP/1.1\r\nHost: a.test\r\n\r\n")
        r = c.read_response()
        self.assertEqual(r.status, 204)
        self.assertIsNone(r.header("content-length"))  # RFC 9110 8.6: never on a 204
        self.assertIsNone(r.header("content-type"))
        self.assertEqual(c.read_response().body, b"pong")  # nothing between the two
        c.close()

    # ---- virtual hosts --------------------------------------------------------------------------------
    def test_host_selects_the_server(self):
        cases = {
            "a.test": b"server a",
            "b.test": b"server b",
            "B.TeSt": b"server b",
            "b.test:1234": b"server b",
            "b.test.": b"server b",
            "www.b.test": b"server b",
            "x.y.b.test": b"server b",
            "unknown.example": b"server a",
            "127.0.0.1": b"server a",
            "[::1]:80": b"server a",
            "c.test": b"server a",  # "*.c.test" does not match c.test itself
            "exact.c.test": b"server d",  # an exact name beats a wildcard
            "x.deep.c.test": b"server d",  # the longest wildcard wins
        }
        for host, message in cases.items():
            r = self.get("/anything", host=host)
            self.assertEqual((r.status, r.body), (200, message), host)
        r = self.get("/only", host="www.c.test")
        self.assertEqual(r.body, b"server c")
        self.assertEqual(self.get("/elsewhere", host="www.c.test").status, 404)

    def test_default_server_without_host_and_absolute_form(self):
        out = raw(self.port, b"GET /z HTTP/1.0\r\n\r\n")
        self.assertTrue(out.endswith(b"\r\n\r\nserver a"), out)
        # The authority of an absolute-form target wins over Host (RFC 9112 3.2.2).
        out = raw(self.port, b"GET http://b.test/z HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
        self.assertTrue(out.endswith(b"\r\n\r\nserver b"), out)

    def test_keep_alive_connection_can_change_host(self):
        c = Client(self.port)
        for host, message in (("a.test", b"server a"), ("b.test", b"server b"), ("a.test", b"server a")):
            c.send(("GET / HTTP/1.1\r\nHost: %s\r\n\r\n" % host).encode())
            self.assertEqual(c.read_response().body, message)
        c.close()

    # ---- route precedence -----------------------------------------------------------------------------
    def test_route_precedence(self):
        cases = {
            "/x/exact": b"exact",  # exact beats the regexes that match it too
            "/x/exact/": b"regex-first",
            "/x/exactly": b"regex-first",  # regexes in config order: the first one wins
            "/x/long/file": b"regex-first",  # a regex beats even the longest prefix
            "/y/long/file": b"prefix-y-long",  # the longest prefix wins, whatever the order
            "/y/long": b"prefix-y",
            "/y/": b"prefix-y",
            "/y": b"server a",
            "/u/42": b"user",
            "/u/42/x": b"server a",
            "/u/abc": b"server a",
            "/": b"server a",
            "/%78/exact": b"exact",  # routing sees the decoded, normalised path
            "/x/../x/exact": b"exact",
        }
        for path, message in cases.items():
            r = self.get(path)
            self.assertEqual((r.status, r.body), (200, message), path)
        # The query string is not part of the routed path.
        self.assertEqual(self.get("/x/exact?y=1").body, b"exact")


class ModuleConfigErrorsTest(unittest.TestCase):
    """Each module validates its settings when the config is loaded (`-t`),
    with the position of the value to fix."""

    ROUTE = """
modules: [hello, echo, redirect, static]
%s
servers:
  - listen: ["127.0.0.1:{port}"]
    routes:
      - prefix: /
        handler: %s
        %s
"""

    def check(self, handler, section, top="", files=None):
        s = Server(self.ROUTE % (top, handler, section), extra_files=files)
        try:
            return s.run("-t")
        finally:
            s.__exit__(None, None, None)

    def test_bad_settings_are_reported_at_their_line(self):
        cases = [
            ("redirect", "redirect: { return: 301 }", "a 301 needs the URL"),
            ("redirect", "redirect: { return: 302 /x$url }", "unknown variable $url"),
            ("redirect", "redirect: { return: 304 }", "304 answers conditional requests"),
            ("redirect", "redirect: { return: '204 \"x\"' }", "204 response has no body"),
            ("redirect", "redirect: { return: '301 /a b' }", "space or control character"),
            ("redirect", "redirect: { return: '99 x' }", "expected a status"),
            ("redirect", "redirect: { retrun: 200 }", "return"),
            ("hello", "hello: { message: { a: 1 } }", "hello.message"),
            ("hello", "hello: { mesage: x }", "did you mean 'message'"),
            ("echo", "echo: { buffer: maybe }", "echo.buffer"),
            ("static", "static: { index: [a.html] }", "missing root"),
            ("static", "static: { root: ./nowhere }", "cannot use"),
            ("static", "static: { root: ./file.txt }", "is not a directory"),
            ("static", "static: { root: ./www, index: [a/b.html] }", "expected a file name"),
            ("static", "static: { root: ./www, mime_types: { md: markdown } }",
             "expected a media type"),
            ("static", "static: { root: ./www, mime_types: { a/b: text/plain } }",
             "is not a file extension"),
            ("static", "static: { root: ./www, cache_control: \"a\\nb\" }", "printable ASCII"),
        ]
        files = {"file.txt": "x", "www/index.html": "x"}
        for handler, section, want in cases:
            rc, out = self.check(handler, section, files=files)
            self.assertEqual(rc, 1, (section, out))
            self.assertIn(want, out, section)
            self.assertRegex(out, r"twister\.yaml:\d+:\d+: ", section)
        rc, out = self.check("static", "static: { root: ./www }", top="static: { root: ./www }",
                             files=files)
        self.assertEqual(rc, 1, out)
        self.assertIn("no global settings", out)

    def test_handler_route_without_its_section_is_refused(self):
        for handler, want in (("redirect", "needs `redirect: { return:"),
                              ("static", "needs a root")):
            rc, out = self.check(handler, "")
            self.assertEqual(rc, 1, out)
            self.assertIn(want, out)

    # A route whose handler module has no section of its own gets
    # configure(..., node = NULL, ...); the core adds the route's position to
    # the module's error, since the module has no node to point at.
    def test_handler_route_without_its_section_error_has_a_position(self):
        for handler in ("redirect", "static"):
            rc, out = self.check(handler, "")
            self.assertRegex(out, r"twister\.yaml:\d+:\d+: servers\[0\]\.routes\[0\]", handler)

    def test_good_settings_pass(self):
        for handler, section in (("redirect", "redirect: { return: '200 \"costs $5, $ or $$\"' }"),
                                 ("redirect", "redirect: { return: 302 https://$host$request_uri }"),
                                 ("static", "static: { root: ./www, index: home.html }"),
                                 ("echo", "echo: { buffer: yes }"),
                                 ("hello", "hello:")):
            rc, out = self.check(handler, section, files={"www/index.html": "x"})
            self.assertEqual(rc, 0, (section, out))
            self.assertIn("configuration OK", out)


class HelloGlobalTest(unittest.TestCase):
    def test_global_message_is_the_default_of_every_route(self):
        with Server("""
modules: [hello]
hello: { message: "from the top\\n" }
servers:
  - listen: ["127.0.0.1:{port}"]
    routes:
      - path: /a
        handler: hello
      - path: /b
        handler: hello
        hello: { message: "own" }
      - path: /c
        handler: hello
        hello:
""") as s:
            self.assertEqual(request(s.port, path="/a").body, b"from the top\n")
            self.assertEqual(request(s.port, path="/b").body, b"own")
            self.assertEqual(request(s.port, path="/c").body, b"from the top\n")


@unittest.skipIf(shutil.which("curl") is None, "curl is not installed")
class ModulesCurlTest(ServerTestCase):
    CONFIG = CONFIG

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.tmp = tempfile.mkdtemp(prefix="twister-curl-")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)
        super().tearDownClass()

    def curl(self, *args, write_out="%{http_code}"):
        out = os.path.join(self.tmp, "out")
        if os.path.exists(out):
            os.unlink(out)
        p = subprocess.run(["curl", "-s", "-S", "--max-time", "60", "-o", out, "-w", write_out]
                           + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=90)
        self.assertEqual(p.returncode, 0, p.stderr)
        with open(out, "rb") as f:
            return p.stdout.decode(), f.read()

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def test_curl_echo_data_binary_file(self):
        data = random.Random(6).randbytes(5 * 1024 * 1024)
        path = os.path.join(self.tmp, "upload.bin")
        with open(path, "wb") as f:
            f.write(data)
        code, body = self.curl("--data-binary", "@" + path, self.url("/echo"))
        self.assertEqual(code, "200")
        self.assertTrue(body == data, "curl --data-binary echo differs")
        code, body = self.curl("-H", "Transfer-Encoding: chunked", "--data-binary", "@" + path,
                               self.url("/echo"))
        self.assertEqual(code, "200")
        self.assertTrue(body == data, "curl chunked upload echo differs")
        code, body = self.curl("-H", "Expect: 100-continue", "--data-binary", "@" + path,
                               self.url("/echo-buffered"))
        self.assertEqual(code, "200")
        self.assertTrue(body == data, "curl 100-continue upload echo differs")

    def test_curl_echo_get(self):
        code, body = self.curl("-H", "X-Test: yes", "-A", "twister-test", self.url("/echo?q=1"))
        self.assertEqual(code, "200")
        self.assertTrue(body.startswith(b"GET /echo?q=1 HTTP/1.1\nHost: 127.0.0.1:%d\n" % self.port),
                        body)
        self.assertIn(b"\nUser-Agent: twister-test\n", body)
        self.assertIn(b"\nX-Test: yes\n", body)

    def test_curl_redirects(self):
        out, _ = self.curl(self.url("/r302?a=b"), write_out="%{http_code} %{redirect_url}")
        self.assertEqual(out, "302 http://127.0.0.1:%d/find?a=b" % self.port)
        code, body = self.curl("-L", self.url("/r302?a=b"))
        self.assertEqual((code, body), ("200", b"server a"))
        code, body = self.curl("-I", self.url("/r301/x"))
        self.assertEqual(code, "301")
        self.assertIn(b"Location: https://example.com/r301/x\r\n", body)

    def test_curl_virtual_hosts(self):
        self.assertEqual(self.curl("-H", "Host: www.b.test", self.url("/")), ("200", b"server b"))
        self.assertEqual(self.curl("--resolve", "exact.c.test:%d:127.0.0.1" % self.port,
                                   "http://exact.c.test:%d/" % self.port), ("200", b"server d"))
        self.assertEqual(self.curl("-I", "-H", "Host: b.test", self.url("/hello"))[0], "200")


if __name__ == "__main__":
    unittest.main(verbosity=2)
