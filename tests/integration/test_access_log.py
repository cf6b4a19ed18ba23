"""The access_log module: formats, per-route opt-out, escaping, rotation."""

import json
import os
import time
import unittest

from harness import Server, request, wait_for

CONFIG = """
modules: [access_log, hello]
access_log: { path: access.log, format: %s, flush_interval: 100ms }
servers:
  - listen: ["127.0.0.1:{port}"]
    routes:
      - path: /hello
        handler: hello
      - path: /quiet
        handler: hello
        access_log: { off: true }
"""


class AccessLogTest(unittest.TestCase):
    def lines(self, s):
        try:
            with open(os.path.join(s.dir, "access.log")) as f:
                return f.read().splitlines()
        except FileNotFoundError:
            return []

    def test_combined(self):
        with Server(CONFIG % "combined") as s:
            request(s.port, path="/hello?x=1", headers={"User-Agent": "tester/1.0",
                                                        "Referer": "http://ref/"})
            request(s.port, path="/quiet")
            request(s.port, path="/missing")
            wait_for(lambda: len(self.lines(s)) >= 2, what="two log lines")
            time.sleep(0.3)
            lines = self.lines(s)
            self.assertEqual(len(lines), 2, lines)
            self.assertRegex(lines[0], r'^127\.0\.0\.1 - - \[\d\d/\w\w\w/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] '
                                       r'"GET /hello\?x=1 HTTP/1\.1" 200 13 "http://ref/" "tester/1\.0"$')
            self.assertRegex(lines[1], r'"GET /missing HTTP/1\.1" 404 \d+ "-" "-"$')

    def test_json_and_escaping(self):
        with Server(CONFIG % "json") as s:
            request(s.port, path="/hello", headers={"User-Agent": 'evil" \\ agent'})
            wait_for(lambda: len(self.lines(s)) >= 1, what="a log line")
            entry = json.loads(self.lines(s)[0])
            self.assertEqual(entry["status"], 200)
            self.assertEqual(entry["body_bytes_sent"], 13)
            self.assertEqual(entry["request"], "GET /hello HTTP/1.1")
            self.assertEqual(entry["http_user_agent"], 'evil" \\ agent')
            self.assertGreaterEqual(entry["request_time"], 0)

    def test_rotation_by_rename(self):
        with Server(CONFIG % "common") as s:
            request(s.port, path="/hello")
            wait_for(lambda: len(self.lines(s)) >= 1, what="a log line")
            os.rename(os.path.join(s.dir, "access.log"), os.path.join(s.dir, "access.log.1"))
            wait_for(lambda: os.path.exists(os.path.join(s.dir, "access.log")), what="reopen")
            request(s.port, path="/hello")
            wait_for(lambda: len(self.lines(s)) >= 1, what="a line in the new file")
            with open(os.path.join(s.dir, "access.log.1")) as f:
                self.assertEqual(len(f.read().splitlines()), 1)

    def test_rotation_to_a_fifo_does_not_block(self):
        # A FIFO put where the log was: opening it for writing would block
        # until a reader comes, and every worker would freeze at its next
        # rotation check. Refused, with or without a reader; the workers
        # keep serving (and logging to the old file).
        with Server(CONFIG % "common", workers=2) as s:
            log = os.path.join(s.dir, "access.log")
            request(s.port, path="/hello")
            wait_for(lambda: len(self.lines(s)) >= 1, what="a log line")
            os.rename(log, log + ".1")
            os.mkfifo(log)
            refused = "cannot reopen %s: a FIFO; still writing to the old file" % log
            wait_for(lambda: s.log().count(refused) >= 2, what="both workers to refuse it")
            for _ in range(6):  # through both workers
                self.assertEqual(request(s.port, path="/hello").status, 200)
            time.sleep(0.3)  # three more rotation checks: the same FIFO is not retried
            self.assertEqual(s.log().count(refused), 2)
            # Another FIFO, with a reader: it opens, and fstat refuses it.
            os.unlink(log)
            os.mkfifo(log)
            reader = os.open(log, os.O_RDONLY | os.O_NONBLOCK)
            try:
                wait_for(lambda: s.log().count(refused) >= 4,
                         what="the FIFO refused while a reader has it open")
                self.assertEqual(request(s.port, path="/hello").status, 200)
            finally:
                os.close(reader)
            os.unlink(log)
            wait_for(lambda: os.path.exists(log), what="a regular file again")

            # One worker may have reopened before the other: keep asking
            # until a worker that has writes to the new file.
            def logged_in_new_file():
                request(s.port, path="/hello")
                return len(self.lines(s)) >= 1

            wait_for(logged_in_new_file, interval=0.2, what="a line in the new file")

    def test_reload_onto_a_path_that_is_no_file_names_the_module_and_the_file(self):
        # The new generation's workers cannot open the log: the reload
        # fails at once saying so, not "did not report ready", and the old
        # generation keeps serving and logging.
        with Server(CONFIG % "common", workers=2) as s:
            request(s.port, path="/hello")
            wait_for(lambda: len(self.lines(s)) >= 1, what="a log line")
            fifo, directory = os.path.join(s.dir, "fifo.log"), os.path.join(s.dir, "dir.log")
            os.mkfifo(fifo)
            os.mkdir(directory)
            cases = [(fifo, "a FIFO"), (directory, "Is a directory")]
            if os.geteuid() != 0:  # root writes anything
                locked = os.path.join(s.dir, "locked.log")
                open(locked, "w").close()
                os.chmod(locked, 0o400)
                cases.append((locked, "Permission denied"))
            for path, why in cases:
                s.write_config((CONFIG % "common").replace("path: access.log", "path: " + path))
                rc, out = s.run("-s", "reload", timeout=60)
                self.assertEqual(rc, 1, out)
                self.assertIn("access_log: cannot open %s: %s" % (path, why), out)
                self.assertNotIn("did not report ready", out)
                before = len(self.lines(s))
                self.assertEqual(request(s.port, path="/hello").status, 200)
                wait_for(lambda: len(self.lines(s)) > before, what="the old log to go on")

    def test_bad_settings(self):
        s = Server((CONFIG % "combined").replace("format: combined", "format: fancy"))
        try:
            rc, out = s.run("-t")
            self.assertEqual(rc, 1)
            self.assertRegex(out, r"twister\.yaml:\d+:\d+: access_log\.format: expected combined, common, json or a line with variables")
        finally:
            s.__exit__(None, None, None)


if __name__ == "__main__":
    unittest.main(verbosity=2)
