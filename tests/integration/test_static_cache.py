"""static's open-file cache through the real server (modules/static/README.md,
"Open-file cache"): a file replaced, rewritten, truncated, deleted or
chmod'ed is noticed — at once with `valid: 0s`, within the interval with a
short one (polled, never timed) — for small files (kept in memory) and
large ones (kept open, sent with sendfile); the cache really serves from
what it holds while an entry is valid; a file cut short while it is being
sent ends the connection instead of passing a short body off as complete;
and entries are bounded in number and closed when inactive."""

import os
import random
import socket
import time
import unittest

from harness import Client, Server, request, wait_for

SMALL = b"small file, kept in memory\n"
BIG = random.Random(17).randbytes(3 * 1024 * 1024 + 5)  # sent with sendfile

CONFIG = """
modules: [static]
servers:
  - listen: ["127.0.0.1:{port}"]
    routes:
      # Revalidated on every use: each change shows on the next request.
      - prefix: /
        handler: static
        static: { root: ./www, open_file_cache: { valid: 0s } }
      # Revalidated every 200 ms: each change shows within it (polled).
      - prefix: /short/
        handler: static
        static: { root: ./www, open_file_cache: { valid: 200ms } }
      # Valid for an hour: what the cache holds is what is served.
      - prefix: /held/
        handler: static
        static: { root: ./www, open_file_cache: { valid: 1h } }
      # At most two entries.
      - prefix: /few/
        handler: static
        static: { root: ./www, open_file_cache: { max: 2, inactive: 1h, valid: 1h } }
      # Entries closed after 300 ms without use.
      - prefix: /brief/
        handler: static
        static: { root: ./www, open_file_cache: { inactive: 300ms, valid: 1h } }
      # No bytes kept: small files are held open like big ones.
      - prefix: /nomem/
        handler: static
        static: { root: ./www, open_file_cache: { memory: 0, valid: 1h } }
      - prefix: /off/
        handler: static
        static: { root: ./www, open_file_cache: off }
"""

NAMES = ["small.txt", "big.bin"]
FILES = {}
for prefix in ("", "short/", "held/", "few/", "off/"):
    for name in NAMES:
        FILES["www/%s%s" % (prefix, name)] = SMALL if name == "small.txt" else BIG
for i in range(4):
    FILES["www/few/f%d.bin" % i] = BIG[:100000 + i]
FILES["www/brief/brief.bin"] = BIG
FILES["www/nomem/nomem.txt"] = SMALL


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def replace(path, data):
    """Another file renamed over path: a new inode, as deploy tools do."""
    tmp = path + ".new"
    write(tmp, data)
    os.rename(tmp, path)


class StaticCacheTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server(CONFIG, workers=1, extra_files=FILES).start()
        cls.port = cls.server.port
        cls.www = os.path.join(cls.server.dir, "www")

    @classmethod
    def tearDownClass(cls):
        cls.server.__exit__(None, None, None)

    def setUp(self):
        for rel, data in FILES.items():  # every test starts from the same files
            path = os.path.join(self.server.dir, rel)
            os.chmod(path, 0o644) if os.path.exists(path) else None
            replace(path, data)

    def get(self, path, headers=None):
        return request(self.port, "GET", path, headers=headers)

    def worker_fds(self):
        (worker,) = self.server.worker_pids()
        fds = {}
        for fd in os.listdir("/proc/%d/fd" % worker):
            try:
                fds[fd] = os.readlink("/proc/%d/fd/%s" % (worker, fd))
            except FileNotFoundError:
                pass
        return fds

    def open_files(self, name):
        """How many descriptors the worker holds on files called name."""
        return sum(1 for target in self.worker_fds().values()
                   if os.path.basename(target.replace(" (deleted)", "")) == name)

    def expect(self, prefix, name, body, status=200):
        """Asserts the next request for prefix+name gives status and body,
        with the headers describing that body."""
        r = self.get("/" + prefix + name)
        self.assertEqual(r.status, status, prefix + name)
        if status == 200:
            self.assertTrue(r.body == body, "%s%s: %d bytes, wanted %d" % (
                prefix, name, len(r.body), len(body)))
            self.assertEqual(r.header("content-length"), str(len(body)))
            st = os.stat(os.path.join(self.www, prefix, name))
            self.assertEqual(r.header("etag"), '"%x-%x"' % (st.st_mtime_ns, st.st_size))
        return r

    def eventually(self, prefix, name, body, status=200):
        """Polls (bounded) until prefix+name gives status and body, then
        checks the headers as expect does."""
        def seen():
            try:
                r = self.get("/" + prefix + name)
            except EOFError:
                # Sent from the old stat and cut short when the file ran
                # out: the connection closed instead of faking the rest.
                return False
            if r.status != status:
                return False
            if status != 200:
                return True
            # The body, and headers that describe it: a file rewritten in
            # place may have been looked at half-written.
            st = os.stat(os.path.join(self.www, prefix, name))
            return r.body == body and r.header("etag") == '"%x-%x"' % (st.st_mtime_ns,
                                                                          st.st_size)
        wait_for(seen, timeout=15, interval=0.05, what="%s%s to change" % (prefix, name))
        self.expect(prefix, name, body, status)

    def change(self, prefix, how):
        """Applies how to both files under prefix and checks what each
        route then serves (`now`: on the next request; else polled)."""
        for name in NAMES:
            old = SMALL if name == "small.txt" else BIG
            path = os.path.join(self.www, prefix, name)
            self.expect(prefix, name, old)  # cached now
            status, new = how(path, old)
            if prefix == "":
                self.expect(prefix, name, new, status)
            else:
                self.eventually(prefix, name, new, status)

    # ---- what is noticed ---------------------------------------------------------------
    def replaced(self, path, old):
        new = b"replaced: " + old[::-1][:len(old) - 3]
        replace(path, new)
        return 200, new

    def rewritten_in_place(self, path, old):
        new = bytes(b ^ 0x5A for b in old)  # same size, same inode, new mtime
        with open(path, "r+b") as f:
            f.write(new)
        return 200, new

    def truncated(self, path, old):
        os.truncate(path, len(old) // 2)
        return 200, old[:len(old) // 2]

    def deleted(self, path, old):
        os.unlink(path)
        return 404, None

    def test_replaced_file_at_once(self):
        self.change("", self.replaced)

    def test_replaced_file_within_the_interval(self):
        self.change("short/", self.replaced)

    def test_file_rewritten_in_place(self):
        self.change("", self.rewritten_in_place)
        self.change("short/", self.rewritten_in_place)

    def test_truncated_file(self):
        self.change("", self.truncated)
        self.change("short/", self.truncated)

    def test_deleted_file(self):
        self.change("", self.deleted)
        self.change("short/", self.deleted)

    def test_deleted_then_created_again(self):
        for prefix in ("", "short/"):
            path = os.path.join(self.www, prefix, "small.txt")
            self.expect(prefix, "small.txt", SMALL)
            os.unlink(path)
            self.eventually(prefix, "small.txt", None, 404)
            write(path, b"back again\n")
            self.eventually(prefix, "small.txt", b"back again\n")

    def test_a_file_that_becomes_a_directory(self):
        path = os.path.join(self.www, "small.txt")
        self.expect("", "small.txt", SMALL)
        os.unlink(path)
        os.mkdir(path)
        try:
            write(os.path.join(path, "index.html"), b"<p>now a directory</p>\n")
            r = self.get("/small.txt")
            self.assertEqual(r.status, 301)
            r = self.get("/small.txt/")
            self.assertEqual((r.status, r.body), (200, b"<p>now a directory</p>\n"))
        finally:
            os.unlink(os.path.join(path, "index.html"))
            os.rmdir(path)

    # ---- what the cache holds while an entry is valid -----------------------------------
    serial = 0

    def held(self):
        """Fresh names under held/ (valid for an hour): (name, bytes) for a
        small file and a big one that no other test has asked for."""
        StaticCacheTest.serial += 1
        files = [("s%d.txt" % self.serial, SMALL), ("b%d.bin" % self.serial, BIG)]
        for name, body in files:
            write(os.path.join(self.www, "held", name), body)
        return files

    def test_a_valid_entry_is_served_from_the_cache(self):
        """With `valid: 1h` the change is not looked for: the small file's
        bytes come from memory, the big one from the descriptor kept open
        (its old inode, still whole after the name went to another file)."""
        files = self.held()
        for name, old in files:
            r = self.expect("held/", name, old)
            etag = r.header("etag")
            replace(os.path.join(self.www, "held", name), b"new content\n")
            r = self.get("/held/" + name)
            self.assertEqual((r.status, r.header("etag")), (200, etag), name)
            self.assertTrue(r.body == old, name)
        self.assertEqual(self.open_files(files[0][0]), 0)  # in memory, not open
        self.assertEqual(self.open_files(files[1][0]), 1)

    def test_off_opens_every_time_and_keeps_nothing(self):
        for name in NAMES:
            old = SMALL if name == "small.txt" else BIG
            self.expect("off/", name, old)
            replace(os.path.join(self.www, "off", name), b"off: new\n")
            self.expect("off/", name, b"off: new\n")
        held = [t for t in self.worker_fds().values() if "/www/off/" in t]
        self.assertEqual(held, [])

    def test_entries_are_bounded(self):
        for i in range(4):
            self.assertEqual(self.get("/few/f%d.bin" % i).body, BIG[:100000 + i])
        held = [i for i in range(4) if self.open_files("f%d.bin" % i)]
        self.assertEqual(held, [2, 3])  # the two most recently used
        self.assertEqual(self.get("/few/f0.bin").body, BIG[:100000])
        held = [i for i in range(4) if self.open_files("f%d.bin" % i)]
        self.assertEqual(held, [0, 3])

    def test_memory_bound(self):
        for _ in range(2):
            self.expect("nomem/", "nomem.txt", SMALL)
        self.assertEqual(self.open_files("nomem.txt"), 1)

    def test_inactive_entries_are_closed(self):
        self.expect("brief/", "brief.bin", BIG)
        wait_for(lambda: self.open_files("brief.bin") == 0, timeout=15,
                 what="the inactive entry to be closed")
        self.expect("brief/", "brief.bin", BIG)

    def test_conditional_and_range_requests_from_the_cache(self):
        for name, old in self.held():
            etag = self.expect("held/", name, old).header("etag")
            r = self.get("/held/" + name, {"If-None-Match": etag})
            self.assertEqual(r.status, 304)
            r = self.get("/held/" + name, {"Range": "bytes=3-9"})
            self.assertEqual((r.status, r.body), (206, old[3:10]))
            r = self.get("/held/" + name, {"Range": "bytes=-4"})
            self.assertEqual((r.status, r.body), (206, old[-4:]))

    def test_keep_alive_mix_of_cached_small_and_large(self):
        c = Client(self.port, timeout=30)
        try:
            files = self.held()
            for _ in range(3):
                for name, body in files:
                    c.send("GET /held/%s HTTP/1.1\r\nHost: a\r\n\r\n" % name)
                    r = c.read_response()
                    self.assertTrue((r.status, r.body) == (200, body), name)
        finally:
            c.close()

    # ---- a file that changes while it is being sent --------------------------------------
    def slow_reader(self, path):
        """Starts a GET of path that stops reading after the head and a
        little of the body; returns (client, declared length, body so far)."""
        c = Client(self.port, timeout=30)
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        c.send("GET %s HTTP/1.1\r\nHost: a\r\n\r\n" % path)
        r = c.read_response(head_only=True)
        self.assertEqual(r.status, 200)
        length = int(r.header("content-length"))
        got = c._exact(64 * 1024)
        return c, length, got

    def test_file_truncated_while_it_is_sent_closes_the_connection(self):
        """Content-Length is already out: a body that runs short cannot be
        finished honestly, so the connection closes without the missing
        bytes (as nginx does) and the client sees a truncated response,
        never a complete-looking mix. The next request gets the new file."""
        huge = random.Random(5).randbytes(48 * 1024 * 1024)
        path = os.path.join(self.www, "huge.bin")
        write(path, huge)
        try:
            c, length, got = self.slow_reader("/huge.bin")
            self.assertEqual(length, len(huge))
            with open(path, "r+b") as f:  # rewritten as `>` does: truncated, then written
                f.truncate(0)
                f.write(b"rewritten\n")
            rest = c.read_to_close()  # the server closes: bounded by the socket timeout
            c.close()
            body = got + rest
            self.assertLess(len(body), length)
            self.assertTrue(huge.startswith(body), "what arrived is a prefix of the old file")
            self.expect("", "huge.bin", b"rewritten\n")
        finally:
            os.unlink(path)

    def test_file_replaced_while_it_is_sent_arrives_whole(self):
        """A file renamed over the one being sent leaves the old inode
        alone: that response completes with the old bytes, and the
        connection stays usable; the next request gets the new file."""
        path = os.path.join(self.www, "short", "big.bin")
        c, length, got = self.slow_reader("/short/big.bin")
        replace(path, b"the new big.bin\n")
        rest = c._exact(length - len(got))
        self.assertTrue(got + rest == BIG, "the old file, whole")
        c.send("GET /ten HTTP/1.1\r\nHost: a\r\n\r\n")
        self.assertEqual(c.read_response().status, 404)  # still in step
        c.close()
        self.eventually("short/", "big.bin", b"the new big.bin\n")


@unittest.skipIf(os.geteuid() != 0, "needs root to start workers as another user")
class StaticCachePermissionTest(unittest.TestCase):
    """A chmod is noticed: a file the worker (user: nobody) may no longer
    read is 403 even though the cache held it, and 200 again once it may."""

    def test_permission_changes(self):
        s = Server("""
user: nobody
modules: [static]
servers:
  - listen: ["127.0.0.1:{port}"]
    routes:
      - prefix: /
        handler: static
        static: { root: ./www, open_file_cache: { valid: 0s } }
      - prefix: /short/
        handler: static
        static: { root: ./www, open_file_cache: { valid: 200ms } }
""", extra_files={"www/small.txt": SMALL, "www/big.bin": BIG,
                  "www/short/small.txt": SMALL, "www/short/big.bin": BIG})
        try:
            for d in (s.dir, os.path.join(s.dir, "www"), os.path.join(s.dir, "www", "short")):
                os.chmod(d, 0o755)
            s.start()
            for prefix in ("", "short/"):
                for name, body in (("small.txt", SMALL), ("big.bin", BIG)):
                    path = os.path.join(s.dir, "www", prefix, name)
                    url = "/" + prefix + name
                    os.chmod(path, 0o644)
                    self.assertTrue(request(s.port, path=url).body == body)
                    os.chmod(path, 0o600)  # root's only
                    wait_for(lambda: request(s.port, path=url).status == 403, timeout=15,
                             what=url + " to be refused")
                    self.assertNotIn(b"small file", request(s.port, path=url).body)
                    os.chmod(path, 0o644)
                    wait_for(lambda: request(s.port, path=url).status == 200, timeout=15,
                             what=url + " to be served again")
                    self.assertTrue(request(s.port, path=url).body == body)
        finally:
            s.__exit__(None, None, None)


class StaticCacheConfigTest(unittest.TestCase):
    """The settings are checked like any others: file:line:column and why."""

    def check(self, settings):
        s = Server("""
modules: [static]
servers:
  - listen: ["127.0.0.1:{port}"]
    routes:
      - prefix: /
        handler: static
        static: { root: ., %s }
""" % settings)
        try:
            return s.run("-t")
        finally:
            s.__exit__(None, None, None)

    def test_valid_settings(self):
        for settings in ("open_file_cache: off", "open_file_cache: {max: 0}",
                         "open_file_cache: {max: 10, valid: 0s, inactive: 5s, memory: 1m}",
                         "sendfile_min: 0", "sendfile_min: 1m"):
            rc, out = self.check(settings)
            self.assertEqual(rc, 0, settings + ": " + out)
            self.assertIn("configuration OK", out)

    def test_bad_settings(self):
        for settings, why in (("open_file_cache: {maximum: 3}", "unknown key 'maximum'"),
                              ("open_file_cache: {max: -1}", "max"),
                              ("open_file_cache: {valid: soon}", "valid"),
                              ("open_file_cache: [1]", "expected off, or a map"),
                              ("sendfile_min: 2m", "at most 1m")):
            rc, out = self.check(settings)
            self.assertEqual(rc, 1, settings)
            self.assertIn(why, out, settings)
            self.assertRegex(out, r"twister\.yaml:\d+:\d+:", settings)


if __name__ == "__main__":
    unittest.main()
