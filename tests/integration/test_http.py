"""HTTP/1.1 on the wire against the real server: framing, smuggling
defences, keep-alive, pipelining, HEAD, 100-continue, limits and error
responses (RFC 9110/9112)."""

import time
import unittest

from harness import Client, ServerTestCase, raw, request, responses, status_of

CONFIG = """
modules: [hello, echo]
limits: { request_line: 1k, header_size: 4k, headers: 20, body: 64k }
timeouts: { header: 2s, body: 2s, keepalive: 3s }
servers:
  - listen: ["127.0.0.1:{port}"]
    routes:
      - path: /hello
        methods: [GET]
        handler: hello
      - path: /echo
        handler: echo
      - path: /buffered
        handler: echo
        echo: { buffer: true }
      - prefix: /big/
        handler: echo
        limits: { body: 8m }
"""


class HttpTest(ServerTestCase):
    CONFIG = CONFIG

    def raw(self, data, timeout=5.0):
        return raw(self.port, data, timeout=timeout)

    def assertStatus(self, data, status, msg=None):
        out = self.raw(data)
        self.assertEqual(status_of(out), status, msg or (data, out[:300]))
        return out

    # ---- basics -------------------------------------------------------------
    def test_hello(self):
        r = request(self.port, path="/hello")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, b"Hello, World!")
        self.assertEqual(r.header("content-length"), "13")
        self.assertIsNotNone(r.header("date"))
        self.assertTrue(r.header("server").startswith("twister"))

    def test_head_has_headers_but_no_body(self):
        c = Client(self.port)
        c.send(b"HEAD /hello HTTP/1.1\r\nHost: a\r\n\r\nGET /hello HTTP/1.1\r\nHost: a\r\n\r\n")
        head = c.read_response(head_only=True)
        self.assertEqual(head.status, 200)
        self.assertEqual(head.header("content-length"), "13")
        get = c.read_response()
        self.assertEqual(get.body, b"Hello, World!")

    def test_keep_alive_and_pipelining_in_order(self):
        c = Client(self.port)
        reqs = b"".join(b"GET /echo?n=%d HTTP/1.1\r\nHost: a\r\n\r\n" % i for i in range(20))
        c.send(reqs)
        for i in range(20):
            r = c.read_response()
            self.assertEqual(r.status, 200)
            self.assertIn(b"/echo?n=%d " % i, r.body)

    def test_http10_closes_unless_keep_alive(self):
        out = self.raw(b"GET /hello HTTP/1.0\r\n\r\n")
        self.assertTrue(out.startswith(b"HTTP/1.1 200"), out)
        c = Client(self.port)
        c.send(b"GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        r = c.read_response()
        self.assertEqual(r.header("connection").lower(), "keep-alive")
        c.send(b"GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        self.assertEqual(c.read_response().status, 200)

    def test_connection_close_is_honoured(self):
        c = Client(self.port)
        c.send(b"GET /hello HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        r = c.read_response()
        self.assertEqual(r.header("connection"), "close")
        self.assertTrue(c.closed())

    def test_404_405_501_505(self):
        self.assertStatus(b"GET /nope HTTP/1.1\r\nHost: a\r\n\r\n", 404)
        out = self.assertStatus(b"POST /hello HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", 405)
        self.assertIn(b"Allow: GET, HEAD", out)
        self.assertStatus(b"BREW /hello HTTP/1.1\r\nHost: a\r\n\r\n", 501)
        self.assertStatus(b"GET /hello HTTP/2.0\r\nHost: a\r\n\r\n", 505)
        self.assertStatus(b"GET /hello HTTP/1.2\r\nHost: a\r\n\r\n", 200)

    def test_error_responses_are_complete(self):
        out = self.raw(b"GET /hello HTTP/1.1\r\n\r\n")  # no Host
        self.assertEqual(status_of(out), 400)
        head, _, body = out.partition(b"\r\n\r\n")
        self.assertIn(b"\r\nConnection: close", head)
        self.assertIn(b"\r\nDate: ", head)
        self.assertIn(b"\r\nServer: ", head)
        length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
        self.assertEqual(len(body), length)

    # ---- smuggling defences -----------------------------------------------------
    def test_cl_and_te_together_rejected(self):
        self.assertStatus(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n"
                          b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400)

    def test_conflicting_content_lengths_rejected(self):
        self.assertStatus(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n"
                          b"Content-Length: 5\r\n\r\nabcde", 400)
        self.assertStatus(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4, 5\r\n\r\nabcde", 400)

    def test_obfuscated_transfer_encodings(self):
        for te in (b"chunked, identity", b"xchunked", b"chunked\x0b", b"chunk", b"\"chunked\""):
            out = self.raw(b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: " + te +
                           b"\r\n\r\n0\r\n\r\n")
            self.assertIn(status_of(out), (400, 501), (te, out[:100]))
        self.assertStatus(b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked"
                          b"\r\n\r\n0\r\n\r\n", 501)

    def test_bad_content_lengths(self):
        for cl in (b"-1", b"+4", b"0x10", b"4 4", b"99999999999999999999999", b""):
            self.assertStatus(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: " + cl +
                              b"\r\n\r\nabcd", 400, cl)

    def test_bad_chunk_sizes(self):
        for body, status in ((b"-1\r\nx\r\n0\r\n\r\n", 400), (b"0x1\r\nx\r\n0\r\n\r\n", 400),
                             # beyond 63 bits: larger than any body limit
                             (b"fffffffffffffffffff\r\nx\r\n0\r\n\r\n", 413),
                             (b"1\nx\r\n0\r\n\r\n", 400), (b"1\r\nxy\r\n0\r\n\r\n", 400),
                             (b"g\r\nx\r\n0\r\n\r\n", 400)):
            out = self.raw(b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                           + body)
            self.assertEqual(status_of(out), status, (body, out[:200]))
            self.assertEqual(responses(out), 1, out)

    def test_no_smuggled_request_after_rejected_message(self):
        out = self.raw(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n"
                       b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /hello HTTP/1.1\r\nHost: a\r\n\r\n")
        self.assertEqual(responses(out), 1, out)

    def test_bare_lf_folding_and_space_before_colon(self):
        self.assertStatus(b"GET /hello HTTP/1.1\nHost: a\n\n", 400)
        self.assertStatus(b"GET /hello HTTP/1.1\r\nHost: a\r\nX: 1\r\n  folded\r\n\r\n", 400)
        self.assertStatus(b"GET /hello HTTP/1.1\r\nHost : a\r\n\r\n", 400)
        self.assertStatus(b"GET /hello HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", 400)
        self.assertStatus(b"GET /hello HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", 400)
        self.assertStatus(b"GET /hello HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400)
        self.assertStatus(b"G(T /hello HTTP/1.1\r\nHost: a\r\n\r\n", 400)
        self.assertStatus(b"GET  /hello HTTP/1.1\r\nHost: a\r\n\r\n", 400)

    def test_ows_around_values_is_fine(self):
        out = self.raw(b"GET /hello HTTP/1.1\r\nHost:\ta \t\r\nConnection:   close  \r\n\r\n")
        self.assertEqual(status_of(out), 200)

    # ---- targets and paths ---------------------------------------------------------
    def test_absolute_form_and_dot_segments(self):
        self.assertStatus(b"GET http://example.com/hello HTTP/1.1\r\nHost: a\r\n\r\n", 200)
        self.assertStatus(b"GET /x/../hello HTTP/1.1\r\nHost: a\r\n\r\n", 200)
        self.assertStatus(b"GET /%68ello HTTP/1.1\r\nHost: a\r\n\r\n", 200)
        self.assertStatus(b"GET /../hello HTTP/1.1\r\nHost: a\r\n\r\n", 400)
        self.assertStatus(b"GET /%2e%2e/hello HTTP/1.1\r\nHost: a\r\n\r\n", 400)
        self.assertStatus(b"GET /a%00b HTTP/1.1\r\nHost: a\r\n\r\n", 400)
        self.assertStatus(b"GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400)
        self.assertStatus(b"GET example.com:80 HTTP/1.1\r\nHost: a\r\n\r\n", 400)

    # ---- limits ------------------------------------------------------------------------
    def test_limits(self):
        self.assertStatus(b"GET /" + b"a" * 2000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414)
        self.assertStatus(b"GET /hello HTTP/1.1\r\nHost: a\r\nX: " + b"b" * 5000 + b"\r\n\r\n", 431)
        many = b"".join(b"X-%d: 1\r\n" % i for i in range(30))
        self.assertStatus(b"GET /hello HTTP/1.1\r\nHost: a\r\n" + many + b"\r\n", 431)
        self.assertStatus(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n", 413)

    def test_route_body_limit_override(self):
        body = b"z" * 200000
        r = request(self.port, "POST", "/big/x", body=body)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, body)

    def test_chunked_body_over_limit_is_413(self):
        chunk = b"%x\r\n%s\r\n" % (40000, b"q" * 40000)
        out = self.raw(b"POST /buffered HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" +
                       chunk * 3 + b"0\r\n\r\n")
        self.assertEqual(status_of(out), 413, out[:200])
        # A streaming handler has sent its head already: the connection is
        # cut instead, and never with a second response.
        out = self.raw(b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" +
                       chunk * 3 + b"0\r\n\r\n")
        self.assertLessEqual(responses(out), 1)
        self.assertFalse(out.endswith(b"0\r\n\r\n"), "a cut body must not look complete")

    def test_chunk_size_line_over_limit_is_413_at_once(self):
        # A 1 GiB chunk announced on a 64k route: refused from its size line,
        # without waiting for its data (it used to wait for the body timeout).
        for size_line in (b"40000000\r\n", b"ffffffffffffffffffff\r\n"):
            out = self.raw(b"POST /buffered HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" +
                           size_line)
            self.assertEqual(status_of(out), 413, out[:200])
            self.assertIn(b"Connection: close", out)

    # ---- bodies -----------------------------------------------------------------------------
    def test_chunked_request_echo(self):
        c = Client(self.port)
        c.send(b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\n")
        r = c.read_response()
        self.assertEqual(r.body, b"hello world")
        c.send(b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n")
        self.assertEqual(c.read_response().body, b"Hello, World!")

    def test_expect_100_continue(self):
        c = Client(self.port)
        c.send(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        interim = c.read_response()
        self.assertEqual(interim.status, 100)
        c.send(b"abcde")
        self.assertEqual(c.read_response().body, b"abcde")

    def test_expect_100_refused_when_too_large(self):
        c = Client(self.port)
        c.send(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 999999\r\n"
               b"Expect: 100-continue\r\n\r\n")
        r = c.read_response()
        self.assertEqual(r.status, 413)
        self.assertEqual(r.header("connection"), "close")

    def test_unknown_expectation_417(self):
        self.assertStatus(b"GET /hello HTTP/1.1\r\nHost: a\r\nExpect: tea\r\n\r\n", 417)

    # ---- timeouts ---------------------------------------------------------------------------
    def test_slow_loris_head_is_cut_off(self):
        c = Client(self.port, timeout=10)
        c.send(b"GET /hello HTTP/1.1\r\n")
        start = time.monotonic()
        closed = False
        for i in range(20):
            try:
                c.send(b"X-%d: y\r\n" % i)
            except OSError:
                closed = True
                break
            time.sleep(0.5)
            if c.closed(timeout=0.01):
                closed = True
                break
        self.assertTrue(closed, "server kept a dribbling client for %.1fs" % (time.monotonic() - start))

    def test_idle_keepalive_closes_silently(self):
        c = Client(self.port, timeout=10)
        c.send(b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n")
        c.read_response()
        self.assertTrue(c.closed(timeout=8))
        self.assertEqual(c.buf, b"")


if __name__ == "__main__":
    unittest.main(verbosity=2)
