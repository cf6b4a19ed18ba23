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

    def test_bad_settings(self):
        s = Server((CONFIG % "combined").replace("format: combined", "format: fancy"))
        try:
            rc, out = s.run("-t")
            self.assertEqual(rc, 1)
            self.assertRegex(out, r"twister\.yaml:\d+:\d+: access_log\.format: expected combined, common or json")
        finally:
            s.__exit__(None, None, None)


if __name__ == "__main__":
    unittest.main(verbosity=2)
