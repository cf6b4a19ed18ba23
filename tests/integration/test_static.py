"""The static module through the real server, as a browser or curl uses it:
files and index files, MIME types, HEAD, validators and conditional
requests (304/412), byte ranges (206/416, If-Range), directory redirects,
403/404/405, path traversal and symlinks, special files, large files with
keep-alive, and the same things again with curl (modules/static/README.md)."""

import email.utils
import os
import random
import re
import shutil
import socket
import subprocess
import tempfile
import time
import unittest

from harness import Client, Server, raw, request

CONFIG = """
modules: [static]
servers:
  - listen: ["127.0.0.1:{port}"]
    routes:
      - prefix: /
        handler: static
        static: { root: ./www }
      - prefix: /cc/
        handler: static
        static:
          root: ./ccroot
          cache_control: "public, max-age=60"
          index: [home.htm, index.html]
          mime_types: { md: text/x-custom, .TXT: text/x-upper, webc: text/html }
      - prefix: /noidx/
        handler: static
        static: { root: ./ccroot, index: [] }
      - prefix: /open/
        handler: static
        static: { root: ./openroot, allow_symlinks_outside: true }
  # A whole site that may follow symlinks out of its root.
  - listen: ["127.0.0.1:{port2}"]
    routes:
      - prefix: /
        handler: static
        static: { root: ./openroot, allow_symlinks_outside: true }
"""

MTIME = 1600000000  # Sun, 13 Sep 2020 12:26:40 GMT
WEDNESDAY = 1600259200  # Wed, 16 Sep 2020 12:26:40 GMT
TEN = b"0123456789abcdefghij"  # 20 bytes
BIG = random.Random(42).randbytes(5 * 1024 * 1024 + 17)
SECRET = b"root:x:0:0:this is outside the root\n"

FILES = {
    "www/index.html": "<!doctype html><title>home</title>\n",
    "www/style.css": "body { color: red }\n",
    "www/app.js": "console.log(1);\n",
    "www/img.png": b"\x89PNG\r\n\x1a\n" + bytes(range(256)),
    "www/data.json": '{"a": 1}\n',
    "www/blob.qqq": b"\x00\x01unknown",
    "www/Makefile": "all:\n",
    "www/UPPER.PNG": b"\x89PNGupper",
    "www/ten.txt": TEN,
    "www/wed.txt": TEN,
    "www/empty.txt": b"",
    "www/big.bin": BIG,
    "www/.hidden": "dot\n",
    "www/sp ace/index.html": "<p>spaced dir</p>\n",
    "www/q?dir/index.html": "<p>question dir</p>\n",
    "www/with space.txt": "spaced\n",
    "www/sub/index.html": "<p>sub index</p>\n",
    "www/sub/deeper/leaf.txt": "leaf\n",
    "www/nodex/readme.txt": "no index here\n",
    "www/dirindex/index.html/inner.txt": "index.html is a directory here\n",
    "ccroot/cc/home.htm": "<p>home.htm first</p>\n",
    "ccroot/cc/index.html": "<p>never: home.htm comes first</p>\n",
    "ccroot/cc/notes.md": "# notes\n",
    "ccroot/cc/shout.TXT": "LOUD\n",
    "ccroot/cc/page.webc": "<p>custom html</p>\n",
    "ccroot/cc/plain.txt": "plain\n",
    "ccroot/noidx/index.html": "<p>index disabled</p>\n",
    "openroot/open/file.txt": "open file\n",
    "outside/secret.txt": SECRET,
}


def http_date(ts):
    return email.utils.formatdate(ts, usegmt=True)


class StaticTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server(CONFIG, workers=1, extra_files=FILES)
        d = cls.dir = cls.server.dir
        www = os.path.join(d, "www")
        os.makedirs(os.path.join(www, "emptydir"))
        # Symlinks: inside the root (relative and to a directory), out of it
        # (relative, absolute), a loop, and an absolute one to a file inside.
        os.symlink("ten.txt", os.path.join(www, "link-in.txt"))
        os.symlink("sub", os.path.join(www, "link-dir"))
        os.symlink("../outside/secret.txt", os.path.join(www, "link-out.txt"))
        os.symlink(os.path.join(d, "outside"), os.path.join(www, "link-outdir"))
        os.symlink(os.path.join(www, "ten.txt"), os.path.join(www, "link-abs-in.txt"))
        os.symlink("loop-b", os.path.join(www, "loop-a"))
        os.symlink("loop-a", os.path.join(www, "loop-b"))
        os.symlink("/etc/passwd", os.path.join(www, "passwd"))
        opendir = os.path.join(d, "openroot", "open")
        os.symlink("../../outside/secret.txt", os.path.join(opendir, "out.txt"))
        os.symlink(os.path.join(d, "outside"), os.path.join(opendir, "outdir"))
        # Special files.
        os.mkfifo(os.path.join(www, "fifo"))
        cls.unix = socket.socket(socket.AF_UNIX)
        cls.unix.bind(os.path.join(www, "sock"))
        os.chmod(os.path.join(www, "nodex", "readme.txt"), 0o000)
        os.utime(os.path.join(www, "ten.txt"), (MTIME, MTIME))
        os.utime(os.path.join(www, "wed.txt"), (WEDNESDAY, WEDNESDAY))
        cls.server.start()
        cls.port = cls.server.port
        cls.port2 = cls.server.port2

    @classmethod
    def tearDownClass(cls):
        cls.unix.close()
        cls.server.__exit__(None, None, None)

    def get(self, path, headers=None, method="GET"):
        return request(self.port, method, path, headers=headers)

    def etag_of(self, name):
        st = os.stat(os.path.join(self.dir, "www", name))
        return '"%x-%x"' % (st.st_mtime_ns, st.st_size)

    # ---- files and index files -------------------------------------------------
    def test_file_is_served_with_its_headers(self):
        r = self.get("/ten.txt")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, TEN)
        self.assertEqual(r.header("content-length"), "20")
        self.assertEqual(r.header("content-type"), "text/plain; charset=utf-8")
        self.assertEqual(r.header("accept-ranges"), "bytes")
        self.assertEqual(r.header("etag"), self.etag_of("ten.txt"))
        self.assertEqual(r.header("last-modified"), http_date(MTIME))
        self.assertIsNone(r.header("cache-control"))

    def test_index_html_for_root_and_subdirectory(self):
        r = self.get("/")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, FILES["www/index.html"].encode())
        self.assertEqual(r.header("content-type"), "text/html; charset=utf-8")
        r = self.get("/sub/")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, b"<p>sub index</p>\n")
        self.assertIsNotNone(r.header("etag"))

    def test_index_list_order_and_disabled_index(self):
        r = self.get("/cc/")
        self.assertEqual((r.status, r.body), (200, b"<p>home.htm first</p>\n"))
        r = self.get("/noidx/")
        self.assertEqual(r.status, 403)
        self.assertNotIn(b"index disabled", r.body)
        # A directory named like the index file is not an index file.
        self.assertEqual(self.get("/dirindex/").status, 403)

    def test_percent_encoded_names_dotfiles_and_nested_files(self):
        self.assertEqual(self.get("/with%20space.txt").body, b"spaced\n")
        self.assertEqual(self.get("/.hidden").body, b"dot\n")
        self.assertEqual(self.get("/sub/deeper/leaf.txt").body, b"leaf\n")
        self.assertEqual(self.get("/sub/./deeper/../deeper/leaf.txt").body, b"leaf\n")

    def test_empty_file(self):
        r = self.get("/empty.txt")
        self.assertEqual((r.status, r.body, r.header("content-length")), (200, b"", "0"))
        # Any range on an empty file gives the whole (empty) file.
        r = self.get("/empty.txt", {"Range": "bytes=0-"})
        self.assertEqual((r.status, r.body), (200, b""))

    # ---- MIME types ---------------------------------------------------------------
    def test_mime_types(self):
        cases = {
            "/index.html": "text/html; charset=utf-8",
            "/style.css": "text/css; charset=utf-8",
            "/app.js": "text/javascript; charset=utf-8",
            "/img.png": "image/png",
            "/UPPER.PNG": "image/png",
            "/data.json": "application/json",
            "/blob.qqq": "application/octet-stream",
            "/Makefile": "application/octet-stream",
            "/.hidden": "application/octet-stream",
            "/cc/notes.md": "text/x-custom",
            "/cc/shout.TXT": "text/x-upper",
            "/cc/plain.txt": "text/x-upper",
            "/cc/page.webc": "text/html",
        }
        for path, ctype in cases.items():
            r = self.get(path)
            self.assertEqual(r.status, 200, path)
            self.assertEqual(r.header("content-type"), ctype, path)
        self.assertEqual(self.get("/img.png").body, FILES["www/img.png"])

    def test_cache_control_on_200_206_304_416(self):
        want = "public, max-age=60"
        r = self.get("/cc/plain.txt")
        self.assertEqual(r.header("cache-control"), want)
        etag = r.header("etag")
        r = self.get("/cc/plain.txt", {"Range": "bytes=0-1"})
        self.assertEqual((r.status, r.header("cache-control")), (206, want))
        r = self.get("/cc/plain.txt", {"If-None-Match": etag})
        self.assertEqual((r.status, r.header("cache-control")), (304, want))
        r = self.get("/cc/plain.txt", {"Range": "bytes=100-"})
        self.assertEqual((r.status, r.header("cache-control")), (416, want))

    # ---- HEAD -------------------------------------------------------------------------
    def test_head_has_the_get_headers_and_no_body(self):
        get = self.get("/ten.txt")
        c = Client(self.port)
        c.send(b"HEAD /ten.txt HTTP/1.1\r\nHost: a\r\n\r\nGET /app.js HTTP/1.1\r\nHost: a\r\n\r\n")
        head = c.read_response(head_only=True)
        self.assertEqual(head.status, 200)
        for name in ("content-length", "content-type", "etag", "last-modified", "accept-ranges"):
            self.assertEqual(head.header(name), get.header(name), name)
        # No body bytes: the very next bytes are the next response.
        nxt = c.read_response()
        self.assertEqual(nxt.body, b"console.log(1);\n")
        c.close()

    def test_head_ignores_range(self):
        c = Client(self.port)
        c.send(b"HEAD /ten.txt HTTP/1.1\r\nHost: a\r\nRange: bytes=0-4\r\n\r\n"
               b"GET /ten.txt HTTP/1.1\r\nHost: a\r\nRange: bytes=0-4\r\n\r\n")
        head = c.read_response(head_only=True)
        self.assertEqual((head.status, head.header("content-length")), (200, "20"))
        self.assertIsNone(head.header("content-range"))
        self.assertEqual(c.read_response().body, b"01234")
        c.close()

    # ---- conditional requests --------------------------------------------------------
    def test_if_none_match(self):
        etag = self.etag_of("ten.txt")
        for value in (etag, '"nope", ' + etag + ', "other"', "*", "W/" + etag, ' W/"x" ,' + etag):
            r = self.get("/ten.txt", {"If-None-Match": value})
            self.assertEqual(r.status, 304, value)
            self.assertEqual(r.body, b"")
            self.assertEqual(r.header("etag"), etag, value)
            self.assertEqual(r.header("last-modified"), http_date(MTIME))
        for value in ('"nope"', 'W/"nope"', etag[:-2] + '"', "garbage"):
            r = self.get("/ten.txt", {"If-None-Match": value})
            self.assertEqual((r.status, r.body), (200, TEN), value)

    # RFC 9110 8.6: a 304 MUST NOT carry a Content-Length other than what the
    # 200 would have had (20 here); a cache that refreshes its stored headers
    # from the 304 (RFC 9111 4.3.4) would otherwise believe the file is empty.
    def test_304_has_no_wrong_content_length(self):
        for headers in ({"If-None-Match": self.etag_of("ten.txt")},
                        {"If-Modified-Since": http_date(MTIME)}):
            r = self.get("/ten.txt", headers)
            self.assertEqual(r.status, 304)
            self.assertIn(r.header("content-length"), (None, "20"), headers)

    def test_304_has_no_body_on_keep_alive(self):
        etag = self.etag_of("ten.txt")
        c = Client(self.port)
        c.send("GET /ten.txt HTTP/1.1\r\nHost: a\r\nIf-None-Match: %s\r\n\r\n"
               "GET /data.json HTTP/1.1\r\nHost: a\r\n\r\n" % etag)
        self.assertEqual(c.read_response().status, 304)
        nxt = c.read_response()
        self.assertEqual((nxt.status, nxt.body), (200, b'{"a": 1}\n'))
        c.close()

    def test_if_modified_since(self):
        self.assertEqual(self.get("/ten.txt", {"If-Modified-Since": http_date(MTIME)}).status, 304)
        self.assertEqual(self.get("/ten.txt", {"If-Modified-Since": http_date(MTIME + 3600)}).status,
                         304)
        r = self.get("/ten.txt", {"If-Modified-Since": http_date(MTIME - 1)})
        self.assertEqual((r.status, r.body), (200, TEN))
        # The two obsolete date formats are accepted too.
        self.assertEqual(self.get("/ten.txt", {"If-Modified-Since":
                                               "Sunday, 13-Sep-20 12:26:40 GMT"}).status, 304)
        self.assertEqual(self.get("/ten.txt", {"If-Modified-Since":
                                               "Sun Sep 13 12:26:40 2020"}).status, 304)
        # A malformed date is ignored.
        self.assertEqual(self.get("/ten.txt", {"If-Modified-Since": "yesterday"}).status, 200)

    def test_if_modified_since_ignored_when_if_none_match_present(self):
        r = self.get("/ten.txt", {"If-None-Match": '"other"',
                                  "If-Modified-Since": http_date(MTIME + 3600)})
        self.assertEqual((r.status, r.body), (200, TEN))
        r = self.get("/ten.txt", {"If-None-Match": self.etag_of("ten.txt"),
                                  "If-Modified-Since": http_date(MTIME - 3600)})
        self.assertEqual(r.status, 304)

    def test_if_match_and_if_unmodified_since_412(self):
        etag = self.etag_of("ten.txt")
        self.assertEqual(self.get("/ten.txt", {"If-Match": '"other"'}).status, 412)
        self.assertEqual(self.get("/ten.txt", {"If-Match": "W/" + etag}).status, 412)  # strong
        self.assertEqual(self.get("/ten.txt", {"If-Match": etag}).status, 200)
        self.assertEqual(self.get("/ten.txt", {"If-Match": "*"}).status, 200)
        self.assertEqual(self.get("/ten.txt", {"If-Unmodified-Since": http_date(MTIME - 1)}).status,
                         412)
        self.assertEqual(self.get("/ten.txt", {"If-Unmodified-Since": http_date(MTIME)}).status, 200)

    # ---- ranges ---------------------------------------------------------------------------
    def assertRange(self, value, first, last, path="/ten.txt", data=TEN):
        r = self.get(path, {"Range": value})
        self.assertEqual(r.status, 206, value)
        self.assertEqual(r.header("content-range"), "bytes %d-%d/%d" % (first, last, len(data)))
        self.assertEqual(r.header("content-length"), str(last - first + 1))
        self.assertEqual(r.body, data[first:last + 1], value)
        self.assertEqual(r.header("etag"), self.etag_of(path[1:]))

    def test_single_ranges(self):
        self.assertRange("bytes=0-9", 0, 9)
        self.assertRange("bytes=10-", 10, 19)
        self.assertRange("bytes=-5", 15, 19)
        self.assertRange("bytes=5-5", 5, 5)
        self.assertRange("bytes=15-1000", 15, 19)
        self.assertRange("bytes=-1000", 0, 19)
        self.assertRange("bytes=19-", 19, 19)
        self.assertRange("bytes=1000000-1048575", 1000000, 1048575, "/big.bin", BIG)

    def test_unsatisfiable_range_416(self):
        for value in ("bytes=999999-", "bytes=20-", "bytes=20-30"):
            r = self.get("/ten.txt", {"Range": value})
            self.assertEqual(r.status, 416, value)
            self.assertEqual(r.header("content-range"), "bytes */20")
            self.assertNotIn(TEN, r.body)

    def test_multiple_or_malformed_ranges_give_the_whole_file(self):
        for value in ("bytes=0-1,5-6", "bytes=0-1, 3-4", "bytes=5-2", "items=0-1", "bytes=x-y",
                      "bytes=--1"):
            r = self.get("/ten.txt", {"Range": value})
            self.assertEqual((r.status, r.body), (200, TEN), value)
            self.assertIsNone(r.header("content-range"), value)

    def test_if_range(self):
        etag = self.etag_of("ten.txt")
        r = self.get("/ten.txt", {"Range": "bytes=0-3", "If-Range": etag})
        self.assertEqual((r.status, r.body), (206, b"0123"))
        r = self.get("/ten.txt", {"Range": "bytes=0-3", "If-Range": http_date(MTIME)})
        self.assertEqual((r.status, r.body), (206, b"0123"))
        for value in ('"stale"', "W/" + etag, http_date(MTIME + 1), http_date(MTIME - 1)):
            r = self.get("/ten.txt", {"Range": "bytes=0-3", "If-Range": value})
            self.assertEqual((r.status, r.body), (200, TEN), value)
            self.assertIsNone(r.header("content-range"))

    def test_if_range_with_a_date_on_a_wednesday(self):
        # A date whose day name starts with W is no weak entity tag: a
        # resumed download of a file modified on a Wednesday gets its part.
        self.assertTrue(http_date(WEDNESDAY).startswith("Wed, "))
        for value in (http_date(WEDNESDAY), "Wednesday, 16-Sep-20 12:26:40 GMT",
                      "Wed Sep 16 12:26:40 2020"):
            r = self.get("/wed.txt", {"Range": "bytes=2-5", "If-Range": value})
            self.assertEqual((r.status, r.body), (206, b"2345"), value)
            self.assertEqual(r.header("content-range"), "bytes 2-5/20")
        r = self.get("/wed.txt", {"Range": "bytes=2-5", "If-Range": http_date(WEDNESDAY + 1)})
        self.assertEqual((r.status, r.body), (200, TEN))

    def test_range_and_etag_on_keep_alive_pipeline(self):
        c = Client(self.port)
        c.send(b"GET /ten.txt HTTP/1.1\r\nHost: a\r\nRange: bytes=-3\r\n\r\n"
               b"GET /ten.txt HTTP/1.1\r\nHost: a\r\nRange: bytes=999-\r\n\r\n"
               b"GET /ten.txt HTTP/1.1\r\nHost: a\r\n\r\n")
        self.assertEqual(c.read_response().body, b"hij")
        self.assertEqual(c.read_response().status, 416)
        self.assertEqual(c.read_response().body, TEN)
        c.close()

    # ---- directories, 403, 404, 405 ------------------------------------------------------
    def test_directory_without_slash_redirects_keeping_the_query(self):
        r = self.get("/sub")
        self.assertEqual(r.status, 301)
        self.assertEqual(r.header("location"), "/sub/")
        r = self.get("/sub/deeper?x=1&y=%20")
        self.assertEqual(r.status, 301)
        self.assertEqual(r.header("location"), "/sub/deeper/?x=1&y=%20")
        r = self.get("/cc/cc?a=b")  # the /cc/ route: root ccroot, so ccroot/cc/cc... is missing
        self.assertEqual(r.status, 404)
        r = self.get("/with%20space.txt/")
        self.assertEqual(r.status, 404)

    def test_directory_redirect_location_is_percent_encoded(self):
        r = self.get("/sp%20ace?k=v%20w")
        self.assertEqual((r.status, r.header("location")), (301, "/sp%20ace/?k=v%20w"))
        self.assertEqual(self.get("/sp%20ace/").body, b"<p>spaced dir</p>\n")
        r = self.get("/q%3Fdir")
        self.assertEqual((r.status, r.header("location")), (301, "/q%3Fdir/"))
        self.assertEqual(self.get(r.header("location")).body, b"<p>question dir</p>\n")
        c = Client(self.port)
        c.send(b"HEAD /sub HTTP/1.1\r\nHost: a\r\n\r\nGET /ten.txt HTTP/1.1\r\nHost: a\r\n\r\n")
        head = c.read_response(head_only=True)
        self.assertEqual((head.status, head.header("location")), (301, "/sub/"))
        self.assertEqual(c.read_response().body, TEN)
        c.close()

    def test_redirect_location_stays_on_this_site(self):
        # "//host/" in a Location is a protocol-relative URL to another site:
        # a doubled slash must never turn a directory redirect into one.
        for path in ("//sub", "//sub?x", "/%2fsub", "///sub", "//sub/deeper"):
            r = self.get(path)
            self.assertIn(r.status, (301, 404), path)
            if r.status == 301:
                loc = r.header("location")
                self.assertTrue(loc.startswith("/") and not loc.startswith("//"), (path, loc))
        r = self.get("//sub")
        self.assertEqual((r.status, r.header("location")), (301, "/sub/"))

    def test_directory_without_index_403(self):
        for path in ("/emptydir/", "/nodex/"):
            r = self.get(path)
            self.assertEqual(r.status, 403, path)
            self.assertNotIn(b"readme", r.body)

    def test_missing_files_404(self):
        for path in ("/nope.txt", "/sub/nope/", "/ten.txt/x", "/ten.txt/", "/nope/deeper/x",
                     "/link-in.txt/", "/" + "n" * 300, "/sub/" + "n" * 300 + "/x"):
            r = self.get(path)
            self.assertEqual(r.status, 404, path)

    def test_unreadable_file_403(self):
        if os.geteuid() == 0:
            self.skipTest("root reads any file; the FIFO and socket tests cover 403")
        self.assertEqual(self.get("/nodex/readme.txt").status, 403)

    def test_query_string_is_not_part_of_the_file_name(self):
        r = self.get("/ten.txt?v=123&x=../../etc/passwd")
        self.assertEqual((r.status, r.body), (200, TEN))

    def test_special_files_403(self):
        for path in ("/fifo", "/sock"):
            r = self.get(path)
            self.assertEqual(r.status, 403, path)
        # The worker did not hang on the FIFO: it still serves.
        self.assertEqual(self.get("/ten.txt").status, 200)

    def test_other_methods_405_with_allow(self):
        # (OPTIONS is the core's on a route without `methods:`.)
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            r = request(self.port, method, "/ten.txt", body=b"x=1")
            self.assertEqual(r.status, 405, method)
            self.assertEqual(r.header("allow"), "GET, HEAD", method)
            self.assertNotIn(TEN, r.body)

    def test_post_405_keeps_the_connection_usable(self):
        c = Client(self.port)
        c.send(b"POST /ten.txt HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
               b"GET /ten.txt HTTP/1.1\r\nHost: a\r\n\r\n")
        self.assertEqual(c.read_response().status, 405)
        self.assertEqual(c.read_response().body, TEN)
        c.close()

    # ---- traversal and symlinks ---------------------------------------------------------
    TRAVERSALS = [
        "/../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/..%2fetc/passwd", "/%2e%2e%2fetc%2fpasswd",
        "/a/../../etc/passwd", "/sub/../../outside/secret.txt", "/..%2f..%2f..%2fetc%2fpasswd",
        "/%2E%2E/outside/secret.txt", "/./../outside/secret.txt", "/sub/%2e%2e/%2e%2e/etc/passwd",
        "//etc/passwd", "/%2fetc/passwd", "/%2F%2Fetc%2Fpasswd", "///etc/passwd",
        "/..\\..\\etc\\passwd", "/%5c..%5c..%5cetc%5cpasswd", "/etc/passwd%00.txt",
        "/ten.txt/../../outside/secret.txt", "/.%2e/outside/secret.txt", "/%252e%252e/etc/passwd",
        "/%c0%ae%c0%ae/etc/passwd", "/....//etc/passwd",
    ]

    def assertNoLeak(self, status, body, what):
        self.assertIn(status, (400, 403, 404), what)
        self.assertNotIn(b"root:", body, what)
        self.assertNotIn(b"outside the root", body, what)

    def test_traversal_attempts(self):
        for port, prefix in ((self.port, ""), (self.port, "/open"), (self.port2, ""),
                             (self.port2, "/open")):
            for path in self.TRAVERSALS:
                target = prefix + path
                out = raw(port, ("GET %s HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
                                      % target).encode())
                status = int(out.split(b" ", 2)[1])
                self.assertNoLeak(status, out, target)

    def test_traversal_in_absolute_form_targets(self):
        for path in ("/../etc/passwd", "//etc/passwd", "/%2e%2e/outside/secret.txt",
                     "/open//etc/passwd", "/open/%2fetc/passwd"):
            for port in (self.port, self.port2):
                out = raw(port, ("GET http://localhost%s HTTP/1.1\r\nHost: a\r\n"
                                 "Connection: close\r\n\r\n" % path).encode())
                self.assertNoLeak(int(out.split(b" ", 2)[1]), out, path)

    def test_symlinks_inside_the_root_are_followed(self):
        r = self.get("/link-in.txt")
        self.assertEqual((r.status, r.body), (200, TEN))
        self.assertEqual(self.get("/link-dir/").body, b"<p>sub index</p>\n")
        self.assertEqual(self.get("/link-dir/deeper/leaf.txt").body, b"leaf\n")

    def test_symlinks_out_of_the_root_are_refused(self):
        for path in ("/link-out.txt", "/link-outdir/secret.txt", "/passwd", "/link-abs-in.txt",
                     "/loop-a"):
            r = self.get(path)
            self.assertIn(r.status, (403, 404), path)
            self.assertNoLeak(r.status, r.body, path)

    def test_symlinks_out_of_the_root_when_allowed(self):
        self.assertEqual(self.get("/open/file.txt").body, b"open file\n")
        r = self.get("/open/out.txt")
        self.assertEqual((r.status, r.body), (200, SECRET))
        self.assertEqual(self.get("/open/outdir/secret.txt").body, SECRET)
        r = request(self.port2, "GET", "/open/outdir/secret.txt")
        self.assertEqual((r.status, r.body), (200, SECRET))

    # ---- resources -----------------------------------------------------------------------------
    def test_no_file_descriptor_leak(self):
        """Every outcome closes the file it opened: 200, 206, 304, 412, 416,
        HEAD, index lookups, special files, errors, clients that leave."""
        (worker,) = self.server.worker_pids()
        fds = lambda: len(os.listdir("/proc/%d/fd" % worker))
        etag = self.etag_of("ten.txt")
        cases = [("GET", "/ten.txt", {}), ("HEAD", "/ten.txt", {}),
                 ("GET", "/ten.txt", {"Range": "bytes=1-2"}),
                 ("GET", "/ten.txt", {"Range": "bytes=99-"}),
                 ("GET", "/ten.txt", {"If-None-Match": etag}),
                 ("GET", "/ten.txt", {"If-Match": '"x"'}),
                 ("GET", "/", {}), ("GET", "/sub", {}), ("GET", "/emptydir/", {}),
                 ("GET", "/dirindex/", {}), ("GET", "/fifo", {}), ("GET", "/sock", {}),
                 ("GET", "/nope", {}), ("GET", "/link-out.txt", {}), ("GET", "/loop-a", {}),
                 ("POST", "/ten.txt", {}), ("GET", "/empty.txt", {})]
        def batch():
            for method, path, headers in cases:
                self.get(path, headers, method)
            for _ in range(3):  # a client that leaves in the middle of a big file
                c = Client(self.port)
                c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
                c.send(b"GET /big.bin HTTP/1.1\r\nHost: a\r\n\r\n")
                c.sock.recv(1000)
                c.close()
        batch()  # warm up whatever is allocated once
        time.sleep(0.2)
        before = fds()
        for _ in range(5):
            batch()
        self.assertEqual(self.get("/ten.txt").status, 200)
        deadline = time.monotonic() + 5
        while fds() > before and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertLessEqual(fds(), before)

    # ---- large files ------------------------------------------------------------------------
    def test_large_file_intact_with_keep_alive(self):
        c = Client(self.port, timeout=30)
        for _ in range(2):
            c.send(b"GET /big.bin HTTP/1.1\r\nHost: a\r\n\r\n")
            r = c.read_response()
            self.assertEqual(r.status, 200)
            self.assertEqual(r.header("content-length"), str(len(BIG)))
            self.assertTrue(r.body == BIG, "5 MB body differs")
        c.send(b"GET /ten.txt HTTP/1.1\r\nHost: a\r\n\r\n")
        self.assertEqual(c.read_response().body, TEN)
        c.close()

    def test_large_file_pipelined_with_a_slow_reader(self):
        c = Client(self.port, timeout=30)
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
        c.send(b"GET /big.bin HTTP/1.1\r\nHost: a\r\n\r\n"
               b"HEAD /big.bin HTTP/1.1\r\nHost: a\r\n\r\n"
               b"GET /big.bin HTTP/1.1\r\nHost: a\r\nRange: bytes=-100000\r\n\r\n"
               b"GET /ten.txt HTTP/1.1\r\nHost: a\r\n\r\n")
        time.sleep(0.5)  # let the server hit the socket's limit first
        r = c.read_response()
        self.assertTrue(r.body == BIG, "5 MB body differs")
        h = c.read_response(head_only=True)
        self.assertEqual((h.status, h.header("content-length")), (200, str(len(BIG))))
        r = c.read_response()
        self.assertEqual(r.status, 206)
        self.assertTrue(r.body == BIG[-100000:])
        self.assertEqual(c.read_response().body, TEN)
        c.close()


IMF_FIXDATE = re.compile(r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep"
                         r"|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d GMT$")


def tmpfs_dir():
    """A fresh directory on tmpfs, whose mtimes span the whole 64-bit range
    (ext4 clamps them to year 2446), or None if there is none."""
    if not os.path.isdir("/dev/shm"):
        return None
    d = tempfile.mkdtemp(prefix="twister-mtime-", dir="/dev/shm")
    probe = os.path.join(d, "probe")
    open(probe, "w").close()
    os.utime(probe, (1 << 62, 1 << 62))
    if os.stat(probe).st_mtime_ns != (1 << 62) * 10**9:
        shutil.rmtree(d)
        return None
    os.unlink(probe)
    return d


class StaticOutOfRangeMtimeTest(unittest.TestCase):
    """Files whose mtime has no IMF-fixdate (2^62 seconds, year 10001, and
    far before year 0) are served with a valid Last-Modified or none, and
    conditional requests treat them consistently (RFC 9110 §8.8.2)."""

    YEAR_10001 = 253433923200  # Mon, 01 Jan 10001 00:00:00 GMT

    @classmethod
    def setUpClass(cls):
        cls.root = tmpfs_dir()
        if cls.root is None:
            raise unittest.SkipTest("no tmpfs that keeps 64-bit mtimes")
        for name, seconds in (("future.txt", 1 << 62), ("year10001.txt", cls.YEAR_10001),
                              ("past.txt", -(1 << 62))):
            path = os.path.join(cls.root, name)
            with open(path, "wb") as f:
                f.write(TEN)
            os.utime(path, (seconds, seconds))
        cls.server = Server("""
modules: [static]
servers:
  - listen: ["127.0.0.1:{port}"]
    routes:
      - prefix: /
        handler: static
        static: { root: %s }
""" % cls.root).start()

    @classmethod
    def tearDownClass(cls):
        cls.server.__exit__(None, None, None)
        shutil.rmtree(cls.root, ignore_errors=True)

    def get(self, path, headers=None):
        return request(self.server.port, "GET", path, headers=headers)

    def test_a_future_mtime_is_sent_as_now(self):
        # §8.8.2.1: a modification time in the future is replaced by the
        # message's origination date.
        for path in ("/future.txt", "/year10001.txt"):
            r = self.get(path)
            self.assertEqual((r.status, r.body), (200, TEN), path)
            modified = r.header("last-modified")
            self.assertRegex(modified, IMF_FIXDATE, path)
            self.assertLessEqual(email.utils.parsedate_to_datetime(modified),
                                 email.utils.parsedate_to_datetime(r.header("date")), path)
            # Not a strong validator (not a second older than Date): If-Range
            # with that date must not give a part of a file that may change.
            r = self.get(path, {"Range": "bytes=0-3", "If-Range": modified})
            self.assertEqual((r.status, r.body), (200, TEN), path)

    def test_an_mtime_without_a_date_has_no_last_modified(self):
        r = self.get("/past.txt")
        self.assertEqual((r.status, r.body), (200, TEN))
        self.assertIsNone(r.header("last-modified"))
        etag = r.header("etag")
        self.assertTrue(etag and etag.startswith('"'), etag)
        # Date conditions do not apply without a modification date; the
        # ETag still validates.
        old, new = http_date(0), http_date(time.time() + 3600)
        self.assertEqual(self.get("/past.txt", {"If-Modified-Since": new}).status, 200)
        self.assertEqual(self.get("/past.txt", {"If-Unmodified-Since": old}).status, 200)
        self.assertEqual(self.get("/past.txt", {"If-None-Match": etag}).status, 304)
        r = self.get("/past.txt", {"Range": "bytes=0-3", "If-Range": old})
        self.assertEqual((r.status, r.body), (200, TEN))
        r = self.get("/past.txt", {"Range": "bytes=0-3", "If-Range": etag})
        self.assertEqual((r.status, r.body), (206, b"0123"))

    def test_the_worker_survives(self):
        for path in ("/future.txt", "/past.txt", "/year10001.txt"):
            self.assertEqual(self.get(path).status, 200)
        self.assertNotIn("crashed", self.server.log())


@unittest.skipIf(os.geteuid() != 0, "needs root to start workers as another user")
class StaticUnprivilegedTest(unittest.TestCase):
    """Workers running as `user: nobody` (the master started as root) get
    403, not 404 or 500, for what they may not read."""

    def test_permission_denied_is_403(self):
        s = Server("""
user: nobody
modules: [static]
servers:
  - listen: ["127.0.0.1:{port}"]
    routes:
      - prefix: /
        handler: static
        static: { root: ./www }
""", extra_files={"www/ok.txt": "ok\n", "www/private.txt": "private\n",
                  "www/locked/inside.txt": "inside\n", "www/noindex/index.html": "idx\n"})
        try:
            os.chmod(s.dir, 0o755)
            www = os.path.join(s.dir, "www")
            os.chmod(os.path.join(www, "private.txt"), 0o600)
            os.chmod(os.path.join(www, "locked"), 0o700)
            os.chmod(os.path.join(www, "noindex", "index.html"), 0o600)
            s.start()
            self.assertEqual(request(s.port, path="/ok.txt").body, b"ok\n")
            for path in ("/private.txt", "/locked/inside.txt", "/noindex/"):
                r = request(s.port, path=path)
                self.assertEqual(r.status, 403, path)
                self.assertNotIn(b"private", r.body)
        finally:
            s.__exit__(None, None, None)


@unittest.skipIf(shutil.which("curl") is None, "curl is not installed")
class StaticCurlTest(unittest.TestCase):
    """The same server through curl, the way people actually try it."""

    @classmethod
    def setUpClass(cls):
        StaticTest.setUpClass.__func__(cls)
        cls.tmp = tempfile.mkdtemp(prefix="twister-curl-")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)
        StaticTest.tearDownClass.__func__(cls)

    def curl(self, *args):
        out = os.path.join(self.tmp, "out")
        if os.path.exists(out):
            os.unlink(out)
        p = subprocess.run(["curl", "-s", "-S", "--max-time", "30", "-o", out,
                            "-w", "%{http_code}"] + list(args),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        body = b""
        if os.path.exists(out):
            with open(out, "rb") as f:
                body = f.read()
        return int(p.stdout), body

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def test_curl_get_and_range(self):
        self.assertEqual(self.curl(self.url("/ten.txt")), (200, TEN))
        self.assertEqual(self.curl("--range", "0-9", self.url("/ten.txt")), (206, TEN[:10]))
        self.assertEqual(self.curl("--range", "-5", self.url("/ten.txt")), (206, TEN[-5:]))
        self.assertEqual(self.curl("--range", "10-", self.url("/ten.txt")), (206, TEN[10:]))
        self.assertEqual(self.curl(self.url("/big.bin")), (200, BIG))

    def test_curl_head(self):
        code, head = self.curl("-I", self.url("/big.bin"))
        self.assertEqual(code, 200)
        self.assertIn(b"Content-Length: %d\r\n" % len(BIG), head)
        self.assertIn(b"Accept-Ranges: bytes\r\n", head)
        self.assertTrue(head.endswith(b"\r\n\r\n"), "HEAD must have no body")

    def test_curl_time_conditions(self):
        self.assertEqual(self.curl("-z", http_date(MTIME + 60), self.url("/ten.txt")), (304, b""))
        self.assertEqual(self.curl("-z", http_date(MTIME - 60), self.url("/ten.txt")), (200, TEN))

    def test_curl_etag_round_trip(self):
        etags = os.path.join(self.tmp, "etags")
        self.assertEqual(self.curl("--etag-save", etags, self.url("/ten.txt")), (200, TEN))
        self.assertEqual(self.curl("--etag-compare", etags, self.url("/ten.txt")), (304, b""))

    def test_curl_resumes_a_partial_download(self):
        part = os.path.join(self.tmp, "part.bin")
        with open(part, "wb") as f:
            f.write(BIG[:1234567])
        p = subprocess.run(["curl", "-s", "-S", "--max-time", "30", "-C", "-", "-o", part,
                            "-w", "%{http_code}", self.url("/big.bin")],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        self.assertEqual((p.returncode, p.stdout), (0, b"206"), p.stderr)
        with open(part, "rb") as f:
            self.assertTrue(f.read() == BIG, "resumed file differs")

    def test_curl_follows_the_directory_redirect(self):
        self.assertEqual(self.curl("-L", self.url("/sub?q=1")), (200, b"<p>sub index</p>\n"))

    def test_curl_path_as_is_traversal(self):
        for path in ("/../outside/secret.txt", "/%2e%2e/outside/secret.txt", "//etc/passwd",
                     "/open//etc/passwd", "/open/%2f%2fetc/passwd"):
            for url in (self.url(path), "http://127.0.0.1:%d%s" % (self.port2, path)):
                code, body = self.curl("--path-as-is", url)
                self.assertIn(code, (400, 403, 404), url)
                self.assertNotIn(b"root:", body, url)


if __name__ == "__main__":
    unittest.main(verbosity=2)
