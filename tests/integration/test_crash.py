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
from test_reload import Load

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


def policy(text, mode="segv"):
    return "crash_policy: %s\n" % text + CRASHY.replace("mode: segv", "mode: " + mode)


def crash_lines(log):
    return re.findall(r"worker \d+ \(pid \d+\) of generation (\d+) crashed with signal 11", log)


class CrashPolicyTest(unittest.TestCase):
    def test_quarantine_after_the_budget_and_a_reload_lifts_it(self):
        with Server(policy("{ max: 3, within: 60s, action: quarantine }"), workers=2,
                    check_clean=False) as s:
            with Load(s.port, connections=4) as load:
                wait_for(lambda: load.ok > 20, what="load to start")
                answers = []
                for i in range(10):
                    if "QUARANTINED" not in s.log():
                        # Still the generation that runs the module: it crashes.
                        crash_once(s.port)
                        wait_for(lambda: len(crash_lines(s.log())) == i + 1,
                                 what="crash %d in the log" % (i + 1))
                        if i + 1 == 3:
                            wait_for(lambda: "QUARANTINED" in s.log(),
                                     what="the quarantine generation")
                            try:
                                wait_for(lambda: "generation 1 has drained" in s.log(),
                                         timeout=40, what="generation 1 to drain")
                            except AssertionError:
                                raise AssertionError("generation 1 did not drain:\n" + s.log())
                            errors_at_takeover = len(load.errors)
                            ok_at_takeover = load.ok
                        continue
                    r = request(s.port, path="/crash")
                    answers.append(r)
                # The crashes stopped at the budget: three, all in generation 1.
                self.assertEqual(crash_lines(s.log()), ["1", "1", "1"])
                self.assertEqual(len(answers), 7)
                for r in answers:
                    self.assertEqual(r.status, 503)
                    self.assertEqual(r.header("retry-after"), "60")
                # The other routes lose nothing once the quarantine generation serves.
                wait_for(lambda: load.ok > ok_at_takeover + 200, timeout=30,
                         what="load on the quarantine generation")
            self.assertEqual(load.errors[errors_at_takeover:], [],
                             "requests lost after the quarantine took over")
            log = s.log()
            self.assertIn("module crash crashed workers 3 times within 60 s "
                          "(crash_policy: max 3, within 60 s, action quarantine)", log)
            self.assertEqual(len(re.findall(r"crash \d of module crash: worker \d \(pid \d+\) of "
                                            r"generation 1, SIGSEGV, phase CONTENT, request "
                                            r"'GET /crash HTTP/1.1'", log)), 3)
            self.assertIn("starting generation 2 with 2 workers and module crash quarantined", log)
            self.assertIn("generation 2 is serving with module crash QUARANTINED", log)
            # Every crash left its backtrace, its first frame in crash.so.
            self.assertEqual(log.count("backtrace (SIGSEGV, fault address 0x0)"), 3)
            firsts = [p for i, p, _ in FRAME.findall(log) if i == "0"]
            self.assertEqual(len(firsts), 3)
            self.assertTrue(all(p.endswith("/crash.so") for p in firsts), firsts)

            # The module, fixed (here: its config), comes back with a reload.
            s.write_config(CRASHY.replace("mode: segv", "mode: ok"))
            rc, out = s.run("-s", "reload", timeout=60)
            self.assertEqual(rc, 0, out)
            self.assertIn("reload OK: generation 3 (lifted the quarantine of module crash)", out)
            r = request(s.port, path="/crash")
            self.assertEqual((r.status, r.body), (200, b"crash: still alive\n"))
            self.assertEqual(request(s.port, path="/hello").status, 200)
            self.assertIn("generation 3 lifts the quarantine of module crash", s.log())

    def test_restart_keeps_respawning(self):
        with Server(policy("{ max: 2, within: 60s, action: restart }"), workers=1,
                    check_clean=False) as s:
            for i in range(4):
                crash_once(s.port)
                wait_for(lambda: len(crash_lines(s.log())) == i + 1, what="crash %d" % (i + 1))
                wait_for(lambda: len(s.worker_pids()) == 1, what="respawn")
            log = s.log()
            self.assertEqual(log.count("within 60 s, action restart)"), 2, log)
            self.assertIn("module crash: respawning its workers as for any crash", log)
            self.assertNotIn("QUARANTINE", log)
            self.assertEqual(crash_lines(log), ["1"] * 4)
            self.assertEqual(request(s.port, path="/hello").status, 200)

    def test_stop_ends_the_server_with_status_1(self):
        s = Server(policy("{ max: 2, within: 60s, action: stop }"), workers=1, check_clean=False)
        with s:
            crash_once(s.port)
            wait_for(lambda: len(crash_lines(s.log())) == 1, what="first crash")
            wait_for(lambda: len(s.worker_pids()) == 1, what="respawn")
            crash_once(s.port)
            self.assertEqual(s.proc.wait(timeout=30), 1)
            log = s.log()
            self.assertIn("module crash: stopping the server (crash_policy action stop)", log)
            self.assertNotIn("QUARANTINE", log)


class StartupLoopTest(unittest.TestCase):
    def test_first_generation_crash_loop_at_start_up_ends_with_a_clear_exit(self):
        s = Server("""
modules: [hello, crash]
crash: { init_crash_file: "{dir}/poison" }
servers:
  - listen: ["127.0.0.1:{port}"]
    routes:
      - path: /hello
        handler: hello
""", workers=1, check_clean=False)
        with s:
            self.assertEqual(request(s.port, path="/hello").status, 200)
            # From now on a worker crashes in init_worker: kill the one that
            # runs, and every respawn fails to start.
            open(os.path.join(s.dir, "poison"), "w").close()
            os.kill(s.worker_pids()[0], 9)
            self.assertEqual(s.proc.wait(timeout=60), 1)
            log = s.log()
            self.assertIn("worker 0 of generation 1 failed to start 5 times in a row (last: "
                          "signal 11 (SIGSEGV, Segmentation fault) in module crash, phase "
                          "init_worker); giving up: stopping the server", log)
            self.assertEqual(log.count("phase init_worker; respawning"), 5, log)
            self.assertIn("master exiting", log)


class StatusTest(unittest.TestCase):
    def status(self, s):
        rc, out = s.run("-s", "status")
        self.assertEqual(rc, 0, out)
        return out.splitlines()

    def test_status_field_by_field(self):
        config = "crash_policy: { max: 2, within: 60s, action: quarantine }\n" + CRASHY
        with Server(config, workers=2, check_clean=False) as s:
            wait_for(lambda: len(s.worker_pids()) == 2, what="two workers")
            keep = Client(s.port)
            for _ in range(3):
                keep.send(b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n")
                self.assertEqual(keep.read_response().status, 200)
            lines = self.status(s)
            self.assertRegex(lines[0], r"^master: pid %d, up \d+s, config %s$" % (
                s.pid(), re.escape(os.path.realpath(s.config_path))))
            self.assertRegex(lines[1], r"^generation 1: serving, 2 workers, up \d+s$")
            workers = [re.match(r"^  worker (\d): pid (\d+), up \d+s, connections (\d+), "
                                r"requests (\d+)$", l) for l in lines[2:4]]
            self.assertTrue(all(workers), lines)
            self.assertEqual([w.group(1) for w in workers], ["0", "1"])
            self.assertEqual(sorted(int(w.group(2)) for w in workers), s.worker_pids())
            # The one connection held open, and the three requests it carried.
            self.assertEqual(sum(int(w.group(3)) for w in workers), 1, lines)
            self.assertEqual(sum(int(w.group(4)) for w in workers), 3, lines)
            self.assertEqual(lines[4:], ["quarantined: none", "last reload: none"])
            keep.close()

            # Two crashes spend the budget: generation 2 quarantines the module.
            for i in range(2):
                crash_once(s.port)
                wait_for(lambda: len(crash_lines(s.log())) == i + 1, what="crash %d" % (i + 1))
            wait_for(lambda: "generation 1 has drained" in s.log(), timeout=40,
                     what="the quarantine generation to take over")
            lines = self.status(s)
            self.assertRegex(lines[1], r"^generation 2: serving, 2 workers, up \d+s, "
                                       r"quarantined: crash$")
            self.assertRegex(lines[2], r"^  worker 0: pid \d+, up \d+s, connections 0, "
                                       r"requests 0$")
            self.assertRegex(lines[3], r"^  worker 1: pid \d+, up \d+s, connections 0, "
                                       r"requests 0$")
            self.assertRegex(lines[4], r"^quarantined module crash: since generation 2 at "
                                       r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ, 2 crashes$")
            pids = re.findall(r"worker \d \(pid (\d+)\) of generation 1 crashed", s.log())
            for k in (1, 2):
                self.assertRegex(lines[4 + k], r"^  crash %d: worker \d \(pid %s\) of generation 1, "
                                               r"SIGSEGV, phase CONTENT, request "
                                               r"'GET /crash HTTP/1\.1', at \d{4}-.*Z$"
                                               % (k, pids[k - 1]))
            self.assertEqual(lines[7], "last reload: none")
            self.assertEqual(len(lines), 8, lines)

            # -T says so too, after the phase table of the config it checks.
            rc, out = s.run("-T")
            self.assertEqual(rc, 0, out)
            self.assertRegex(out, r"\n# the running master \(pid %d\) has module crash "
                                  r"QUARANTINED \(since generation 2 at \S+Z, 2 crashes\): its "
                                  r"routes answer 503 and its phase handlers and filters are "
                                  r"skipped until the next successful reload\n"
                                  r"#  crash 1: worker \d \(pid %s\) of generation 1, SIGSEGV, "
                                  % (s.pid(), pids[0]))
            self.assertIn("#  crash 2: worker ", out)

            # A reload whose generation fails to start: the quarantine stays.
            s.write_config(config + "crash: { init: fail }\n")
            rc, out = s.run("-s", "reload", timeout=60)
            self.assertEqual(rc, 1, out)
            lines = self.status(s)
            self.assertRegex(lines[1], r"^generation 2: serving, .*quarantined: crash$")
            failed = [l for l in lines if l.startswith("generation 3: ")]
            self.assertEqual(len(failed), 1, lines)
            self.assertRegex(failed[0], r"^generation 3: failed at \S+Z: "
                                        r"crash: init_worker failed as configured")
            self.assertIn("quarantined module crash: since generation 2", "\n".join(lines))
            self.assertRegex(lines[-1], r"^last reload: ERROR .*crash: init_worker failed as "
                                        r"configured.* at \S+Z$")

            # A good reload lifts the quarantine.
            s.write_config(CRASHY.replace("mode: segv", "mode: ok"))
            rc, out = s.run("-s", "reload", timeout=60)
            self.assertEqual(rc, 0, out)
            wait_for(lambda: "generation 2 has drained" in s.log(), timeout=40,
                     what="generation 2 to drain")
            lines = self.status(s)
            self.assertRegex(lines[1], r"^generation 4: serving, 2 workers, up \d+s$")
            self.assertEqual(lines[4], "quarantined: none")
            self.assertRegex(lines[5], r"^last reload: OK generation 4 \(lifted the quarantine "
                                       r"of module crash\) at \S+Z$")
            self.assertEqual(len(lines), 6, lines)
            self.assertNotIn("QUARANTINED", s.run("-T")[1])


if __name__ == "__main__":
    unittest.main()
