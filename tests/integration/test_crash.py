"""Crash containment (issue: backtraces, per-module crash budgets and
quarantine): the backtrace a crashing worker leaves in the log, the crash
budget of a module and what each action does, the quarantine and how a
reload lifts it, and `twister -s status`."""

import os
import re
import shutil
import subprocess
import unittest

from harness import Client, Server, request, wait_for

ADDR2LINE = shutil.which("addr2line")

CRASHY = """
modules: [hello, crash]
servers:
  - listen: ["127.0.0.1:{port}"]
    routes:
      - path: /hello
        handler: hello
      - path: /crash
        handler: crash
        crash: { mode: segv }
"""

FRAME = re.compile(r"  #(\d+)\s+(\S+)\+(0x[0-9a-f]+)$", re.M)


def crash_once(port):
    """Sends GET /crash and waits for the connection to die with the worker."""
    c = Client(port)
    try:
        c.send(b"GET /crash HTTP/1.1\r\nHost: a\r\n\r\n")
        c.read_response()
    except (EOFError, ConnectionResetError):
        return
    finally:
        c.close()
    raise AssertionError("GET /crash answered instead of crashing")


def resolve(path, offset):
    """addr2line's "function\\nfile:line" for offset in path, as (function, file, line)."""
    out = subprocess.run([ADDR2LINE, "-f", "-e", path, offset], stdout=subprocess.PIPE,
                         check=True).stdout.decode().split("\n")
    file, _, line = out[1].rpartition(":")
    return out[0], file, int(line.split()[0]) if line[:1].isdigit() else 0


class BacktraceTest(unittest.TestCase):
    @unittest.skipUnless(ADDR2LINE, "addr2line (binutils) is not installed")
    def test_backtrace_names_crash_so_and_resolves_to_the_crashing_line(self):
        with Server(CRASHY, workers=1, check_clean=False) as s:
            crash_once(s.port)
            wait_for(lambda: "#3 " in s.log() or "#3  " in s.log(), what="backtrace in the log")
            log = s.log()
            # The attribution line comes first, then the frames.
            self.assertRegex(log, r"crashed with signal 11 .*in module crash, phase CONTENT, "
                                  r"request 'GET /crash HTTP/1.1'")
            self.assertIn("backtrace (SIGSEGV, fault address 0x0)", log)
            frames = FRAME.findall(log)
            self.assertGreater(len(frames), 3, log)
            index, path, offset = frames[0]
            self.assertEqual(index, "0")
            self.assertTrue(path.endswith("/crash.so"), path)
            self.assertTrue(os.path.isfile(path), "the frame names the module file: %s" % path)
            function, file, line = resolve(path, offset)
            self.assertEqual(function, "write_through_null")
            self.assertTrue(file.endswith("modules/crash/crash.c"), file)
            with open(file) as f:
                self.assertIn("crash: segv here", f.read().split("\n")[line - 1])
            # The call site above it is the module's too (crash_now, inlined
            # into crash_content), then the core's.
            function, file, _ = resolve(frames[1][1], frames[1][2])
            self.assertIn(function, ("crash_now", "crash_content"))
            self.assertTrue(file.endswith("modules/crash/crash.c"), file)
            self.assertTrue(any(p.endswith("/twister") for _, p, _ in frames), frames)
            # The worker was respawned and the server serves.
            wait_for(lambda: len(s.worker_pids()) == 1, what="respawn")
            self.assertEqual(request(s.port, path="/hello").status, 200)


if __name__ == "__main__":
    unittest.main()
