#!/usr/bin/env python3
"""Idle keep-alive memory probe for scripts/bench (scenarios 7 and 12).

With --tls each connection first completes a TLS handshake (certificate
not verified: the bench's own self-signed one), so scenario 12 measures
what an idle TLS keep-alive connection costs.

Opens COUNT connections to HOST:PORT, sends one `GET PATH` on each and
reads the whole response (so every connection is a real keep-alive
connection that has served a request), then holds them all open and
reports how much the server's memory grew. Memory is summed over the
server's process tree (the master PID given and all its descendants):

  Pss  from /proc/<pid>/smaps_rollup — shared pages are divided among the
       processes sharing them, so forked workers are not double-counted;
  Rss  the same file's Rss, for reference (counts shared pages per process).

Bounded: at most WINDOW connections are in flight at once (so the server's
listen backlog never overflows), the whole run stops after --timeout
seconds, and it stops early when nothing completes for --stall seconds
(e.g. a server that stopped accepting at its connection cap). When done it
closes everything with RST (SO_LINGER 0) so no TIME_WAIT is left behind.

Prints one line:
  IDLE target=N held=N failed=N unanswered=N closed=N pss_before=KiB
       pss_after=KiB rss_before=KiB rss_after=KiB procs=N sockets=a/b/...
       open_s=SECONDS errors=reason:count,...
"""
import argparse
import os
import selectors
import socket
import ssl
import struct
import sys
import time


def tree(pid):
    """pid and all its descendants."""
    out = [pid]
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for t in tasks:
        try:
            with open(f"/proc/{pid}/task/{t}/children") as f:
                kids = f.read().split()
        except OSError:
            continue
        for k in kids:
            out += tree(int(k))
    return out


def memory(pid):
    pss = rss = 0
    procs = tree(pid)
    for p in procs:
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        pss += int(line.split()[1])
                    elif line.startswith("Rss:"):
                        rss += int(line.split()[1])
        except OSError:
            pass
    return pss, rss, procs


def sockets_per_process(procs):
    counts = []
    for p in procs:
        n = 0
        try:
            for fd in os.listdir(f"/proc/{p}/fd"):
                try:
                    if os.readlink(f"/proc/{p}/fd/{fd}").startswith("socket:"):
                        n += 1
                except OSError:
                    pass
        except OSError:
            pass
        counts.append(n)
    return counts


class Conn:
    __slots__ = ("sock", "buf", "state", "raw")

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.state = "connecting"
        self.raw = sock


def parse(buf):
    """None while incomplete, else (status, body)."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = buf[:end].decode("latin-1").split("\r\n")
    try:
        status = int(head[0].split()[1])
    except (IndexError, ValueError):
        return (0, b"")
    length = 0
    for line in head[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    body = buf[end + 4:]
    if len(body) < length:
        return None
    return (status, body[:length])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", default="/hello")
    ap.add_argument("--expect", default="Hello, World!")
    ap.add_argument("--count", type=int, default=10000)
    ap.add_argument("--pid", type=int, required=True, help="the server's master pid")
    ap.add_argument("--window", type=int, default=128)
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--stall", type=float, default=5.0)
    ap.add_argument("--settle", type=float, default=1.0)
    ap.add_argument("--tls", action="store_true", help="speak TLS (no verification)")
    a = ap.parse_args()

    if a.host not in ("127.0.0.1", "localhost", "::1") and not a.host.startswith("127."):
        sys.exit("idle.py: loopback addresses only")
    request = (f"GET {a.path} HTTP/1.1\r\nHost: localhost\r\n\r\n").encode()
    expect = a.expect.encode()
    tls_ctx = None
    if a.tls:
        tls_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        tls_ctx.check_hostname = False
        tls_ctx.verify_mode = ssl.CERT_NONE

    pss0, rss0, _ = memory(a.pid)

    sel = selectors.DefaultSelector()
    held, errors = [], {}
    started = inflight = failed = 0
    t0 = time.monotonic()
    deadline = t0 + a.timeout
    last_progress = t0
    can_open = True

    def fail(c, why):
        nonlocal failed, inflight
        errors[why] = errors.get(why, 0) + 1
        failed += 1
        inflight -= 1
        try:
            sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        c.sock.close()
        c.raw.close()

    while True:
        now = time.monotonic()
        if len(held) + failed >= a.count or now > deadline or now - last_progress > a.stall:
            break
        while can_open and inflight < a.window and started < a.count:
            try:
                s = socket.socket(socket.AF_INET6 if ":" in a.host else socket.AF_INET,
                                  socket.SOCK_STREAM)
            except OSError as e:  # EMFILE: hold what we have
                errors[f"socket:{e.strerror}"] = errors.get(f"socket:{e.strerror}", 0) + 1
                can_open = False
                break
            s.setblocking(False)
            started += 1
            inflight += 1
            c = Conn(s)
            err = s.connect_ex((a.host, a.port))
            if err not in (0, 115):  # 115 = EINPROGRESS
                fail(c, f"connect:{os.strerror(err)}")
                continue
            sel.register(s, selectors.EVENT_WRITE, c)
        if inflight == 0:
            if not can_open or started >= a.count:
                break
            continue
        for key, _ in sel.select(timeout=0.2):
            c = key.data
            s = c.sock
            if c.state == "connecting":
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    fail(c, f"connect:{os.strerror(err)}")
                    continue
                if tls_ctx is not None:
                    sel.unregister(s)
                    c.sock = s = tls_ctx.wrap_socket(s, server_hostname="localhost",
                                                     do_handshake_on_connect=False)
                    sel.register(s, selectors.EVENT_WRITE, c)
                    c.state = "handshake"
            if c.state == "handshake":
                try:
                    s.do_handshake()
                except ssl.SSLWantReadError:
                    sel.modify(s, selectors.EVENT_READ, c)
                    continue
                except ssl.SSLWantWriteError:
                    sel.modify(s, selectors.EVENT_WRITE, c)
                    continue
                except (OSError, ssl.SSLError) as e:
                    fail(c, f"handshake:{type(e).__name__}")
                    continue
                c.state = "sending"
            if c.state in ("connecting", "sending"):
                try:
                    s.send(request)  # ~40 bytes into an empty socket buffer
                except OSError as e:
                    fail(c, f"send:{e.strerror}")
                    continue
                c.state = "reading"
                sel.modify(s, selectors.EVENT_READ, c)
            else:
                try:
                    data = s.recv(65536)
                except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    continue
                except OSError as e:
                    fail(c, f"recv:{e.strerror}")
                    continue
                if not data:
                    fail(c, "closed before the response")
                    continue
                c.buf += data
                r = parse(c.buf)
                if r is None:
                    continue
                if r[0] != 200 or r[1] != expect:
                    fail(c, f"bad response {r[0]}")
                    continue
                sel.unregister(s)
                c.buf = b""
                held.append(s)
                inflight -= 1
                last_progress = time.monotonic()
    open_s = time.monotonic() - t0
    unanswered = inflight

    time.sleep(a.settle)
    pss1, rss1, procs = memory(a.pid)
    socks = sockets_per_process(procs)

    # Which held connections did the server close meanwhile? (readable = EOF)
    closed = 0
    probe = selectors.DefaultSelector()
    for s in held:
        probe.register(s, selectors.EVENT_READ)
    # Under TLS a readable socket may only hold a session ticket: peek.
    closed = 0
    for key, _ in probe.select(timeout=0):
        try:
            closed += key.fileobj.recv(1) == b""
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            pass
        except OSError:
            closed += 1
    probe.close()

    err_text = ",".join(k.replace(" ", "_") + ":" + str(v) for k, v in errors.items()) or "-"
    print(f"IDLE target={a.count} held={len(held)} failed={failed} unanswered={unanswered} "
          f"closed={closed} pss_before={pss0} pss_after={pss1} rss_before={rss0} "
          f"rss_after={rss1} procs={len(procs)} sockets={'/'.join(map(str, socks))} "
          f"open_s={open_s:.1f} errors={err_text}",
          flush=True)

    linger = struct.pack("ii", 1, 0)
    for key in list(sel.get_map().values()):
        key.fileobj.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        key.fileobj.close()
    for s in held:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        s.close()


if __name__ == "__main__":
    main()
