"""The gzip module: what it compresses (types, length, Accept-Encoding with
q-values) and what it never does (HEAD, 206, 304, encoded, short), the
headers it rewrites, and that the decompressed body equals the original:
static files, echo bodies, chunked responses, through curl --compressed
and Python's zlib."""

import os
import random
import shutil
import subprocess
import unittest
import zlib

from harness import Client, ServerTestCase, main, request

TEXT = ("".join("line %d: the quick brown fox jumps over the lazy dog\n" % i
                for i in range(4000))).encode()
random.seed(7)
NOISE = bytes(random.getrandbits(8) for _ in range(70000))

CONFIG = """
modules: [gzip, static, echo, hello]
gzip: { types: [text/plain, text/html, application/octet-stream], min_length: 256, level: 5 }
hello: { message: "short" }
servers:
  - listen: ["127.0.0.1:{port}"]
    routes:
      - prefix: /files/
        handler: static
        static: { root: www }
      - path: /echo
        handler: echo
      - path: /hello
        handler: hello
      - prefix: /plain/
        handler: static
        static: { root: www }
        gzip: { off: true }
      - prefix: /pre/
        handler: static
        static: { root: www, gzip_static: true }
"""


def gunzip(data):
    return zlib.decompress(data, 16 + zlib.MAX_WBITS)


class GzipTest(ServerTestCase):
    CONFIG = CONFIG
    FILES = {"www/files/big.txt": TEXT, "www/files/noise.bin": NOISE,
             "www/files/tiny.txt": "tiny\n", "www/files/page.css": TEXT.decode(),
             "www/plain/big.txt": TEXT,
             "www/pre/app.js": TEXT, "www/pre/stale.js": TEXT}

    @classmethod
    def setUpClass(cls):
        gz = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        cls.PRE = gz.compress(TEXT) + gz.flush()
        cls.FILES = dict(cls.FILES, **{"www/pre/app.js.gz": cls.PRE,
                                       "www/pre/stale.js.gz": cls.PRE})
        super().setUpClass()
        d = os.path.join(cls.server.dir, "www", "pre")
        st = os.stat(os.path.join(d, "stale.js"))
        os.utime(os.path.join(d, "stale.js.gz"), (st.st_atime - 100, st.st_mtime - 100))

    def test_gzip_static(self):
        r = self.get("/pre/app.js")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("Content-Encoding"), "gzip")
        self.assertEqual(r.header("Vary"), "Accept-Encoding")
        self.assertEqual(r.header("Content-Length"), str(len(self.PRE)))  # the file, as is
        self.assertIn("javascript", r.header("Content-Type"))
        self.assertEqual(r.body, self.PRE)
        self.assertEqual(gunzip(r.body), TEXT)
        plain = self.get("/pre/app.js", accept=None)
        self.assertIsNone(plain.header("Content-Encoding"))
        self.assertEqual(plain.header("Vary"), "Accept-Encoding")
        self.assertEqual(plain.body, TEXT)
        self.assertNotEqual(plain.header("ETag"), r.header("ETag"))
        # A .gz older than its file is stale: the file is served.
        stale = self.get("/pre/stale.js")
        self.assertIsNone(stale.header("Content-Encoding"))
        self.assertEqual(stale.body, TEXT)

    def get(self, path, accept="gzip", **kw):
        headers = dict(kw.pop("headers", {}))
        if accept is not None:
            headers["Accept-Encoding"] = accept
        return request(self.port, path=path, headers=headers, **kw)

    def test_static_file_round_trip(self):
        r = self.get("/files/big.txt")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("Content-Encoding"), "gzip")
        self.assertEqual(r.header("Vary"), "Accept-Encoding")
        self.assertIsNone(r.header("Content-Length"))
        self.assertEqual(r.header("Transfer-Encoding"), "chunked")
        self.assertTrue(r.header("ETag").startswith('W/"'), r.header("ETag"))
        self.assertLess(len(r.body), len(TEXT) // 4)
        self.assertEqual(gunzip(r.body), TEXT)
        noise = self.get("/files/noise.bin")
        self.assertEqual(gunzip(noise.body), NOISE)  # incompressible, still exact

    @unittest.skipUnless(shutil.which("curl"), "curl is not installed")
    def test_curl_compressed(self):
        out = subprocess.run(["curl", "-sS", "--compressed", "-D", "-", "-o", "-",
                              "http://127.0.0.1:%d/files/big.txt" % self.port],
                             stdout=subprocess.PIPE, check=True, timeout=20).stdout
        head, body = out.split(b"\r\n\r\n", 1)
        self.assertIn(b"content-encoding: gzip", head.lower())
        self.assertEqual(body, TEXT)

    def test_echo_bodies_streamed(self):
        body = TEXT[:100000]
        r = self.get("/echo", method="POST", body=body,
                     headers={"Content-Type": "text/plain"})
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("Content-Encoding"), "gzip")
        self.assertEqual(gunzip(r.body), body)
        # A chunked request body: the echo is chunked too, and compressed.
        c = Client(self.port)
        try:
            parts = [TEXT[i:i + 7000] for i in range(0, 70000, 7000)]
            wire = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"
            c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
                   b"Accept-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n"
                   b"Connection: close\r\n\r\n" + wire)
            r = c.read_response()
        finally:
            c.close()
        self.assertEqual(r.header("Content-Encoding"), "gzip")
        self.assertEqual(gunzip(r.body), b"".join(parts))

    def test_accept_encoding_q_values(self):
        for accept, want in [("gzip;q=0", None), ("identity;q=0, gzip;q=0.5", "gzip"),
                             ("deflate, br", None), ("*", "gzip"), ("*;q=0", None),
                             ("GZIP; Q=1.0", "gzip"), ("x-gzip", "gzip"),
                             ("gzip;q=0.000", None), ("gzip;q=0.001", "gzip")]:
            with self.subTest(accept=accept):
                r = self.get("/files/big.txt", accept=accept)
                self.assertEqual(r.header("Content-Encoding"), want)
                self.assertEqual(r.header("Vary"), "Accept-Encoding")
                self.assertEqual(gunzip(r.body) if want else r.body, TEXT)
        r = self.get("/files/big.txt", accept=None)
        self.assertIsNone(r.header("Content-Encoding"))
        self.assertEqual(r.body, TEXT)

    def test_never_compressed(self):
        cases = {
            "short": self.get("/files/tiny.txt"),
            "not a listed type": self.get("/files/page.css"),
            "short unknown length": self.get("/hello"),
            "switched off": self.get("/plain/big.txt"),
            "range": self.get("/files/big.txt", headers={"Range": "bytes=0-99"}),
        }
        for what, r in cases.items():
            with self.subTest(what=what):
                self.assertIsNone(r.header("Content-Encoding"), r)
        self.assertEqual(cases["range"].status, 206)
        self.assertEqual(cases["range"].body, TEXT[:100])
        etag = self.get("/files/big.txt").header("ETag")
        r = self.get("/files/big.txt", headers={"If-None-Match": etag})
        self.assertEqual(r.status, 304)
        self.assertIsNone(r.header("Content-Encoding"))
        # HEAD: the head a GET would get, and no body.
        r = self.get("/files/big.txt", method="HEAD")
        self.assertEqual(r.header("Content-Encoding"), "gzip")
        self.assertEqual(r.header("Vary"), "Accept-Encoding")
        self.assertIsNone(r.header("Content-Length"))
        self.assertEqual(r.body, b"")
        r = self.get("/files/big.txt", method="HEAD", accept=None)
        self.assertIsNone(r.header("Content-Encoding"))
        self.assertEqual(r.header("Content-Length"), str(len(TEXT)))

    def test_keep_alive_after_compressed_responses(self):
        c = Client(self.port)
        try:
            for _ in range(3):
                c.send(b"GET /files/big.txt HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n")
                r = c.read_response()
                self.assertEqual(gunzip(r.body), TEXT)
        finally:
            c.close()


class ConfigErrorsTest(unittest.TestCase):
    def test_errors(self):
        from harness import Server
        tpl = """
modules: [gzip, hello]
servers:
  - listen: ["127.0.0.1:{port}"]
    routes:
      - path: /
        handler: hello
        gzip: %s
"""
        for section, want in [("{level: 10}", "gzip.level"), ("{types: [html]}", "media type"),
                              ("{types: ['text/html; charset=utf-8']}", "no parameters"),
                              ("{min_length: lots}", "gzip.min_length"),
                              ("{levle: 1}", "did you mean 'level'")]:
            with self.subTest(section=section):
                s = Server(tpl % section)
                try:
                    rc, out = s.run("-t")
                finally:
                    s.__exit__(None, None, None)
                self.assertNotEqual(rc, 0, out)
                self.assertIn(want, out)
                self.assertRegex(out, r"twister\.yaml:\d+:\d+: ")


if __name__ == "__main__":
    main()
