#!/usr/bin/env python3
"""Turns scripts/bench's raw results into the markdown report (stdout) and,
with --svg FILE, the chart of the ratios to nginx (chart.py).

Input (argv[1]), tab-separated lines written by scripts/bench:
  SERVERS <name> <name> ...             the servers of the run, in order
  SCEN <id> <kind> <label>              kind: rps | mbps | mem | hs (handshakes/s)
  RUN  <k=v k=v ...>                    one run of one server in one round
  NOTE <server> <id> <text>             a note on one server's scenario
  SYSC <k=v ...>                        profile: system calls (strace -c)
  INSN <k=v ...>                        profile: user-space instructions (callgrind)
argv[2]: clock ticks per second (getconf CLK_TCK).
Python standard library only.
"""
import argparse
import statistics

import chart

UNITS = {"rps": "req/s", "mbps": "MB/s", "mem": "KiB/conn", "hs": "handshakes/s"}


def kv(text):
    return dict(item.split("=", 1) for item in text.split() if "=" in item)


def fmt(v, kind):
    if v is None:
        return "—"
    if kind in ("rps", "hs", "int"):
        return f"{v:,.0f}"
    if kind in ("mbps", "one"):
        return f"{v:,.1f}"
    return f"{v:,.2f}"


def spread(values, kind):
    if not values:
        return "—"
    med = statistics.median(values)
    if len(values) == 1:
        return fmt(med, kind)
    return f"{fmt(med, kind)} ({fmt(min(values), kind)}–{fmt(max(values), kind)})"


def ratio_of(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def rfmt(r):
    return "—" if r is None else f"{r:.2f}"


def median(values):
    return statistics.median(values) if values else None


class Result:
    """One server in one scenario: medians and what the rounds showed."""

    def __init__(self):
        self.vals, self.value, self.p99, self.cpu, self.errs = [], None, None, None, "—"


def load(path):
    servers, scenarios, runs, notes, sysc, insn = [], [], [], [], [], []
    with open(path) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if parts[0] == "SERVERS":
                servers = parts[1].split()
            elif parts[0] == "SCEN":
                scenarios.append((parts[1], parts[2], parts[3]))
            elif parts[0] == "RUN":
                runs.append(kv(parts[1]))
            elif parts[0] == "NOTE":
                notes.append((parts[1], parts[2], parts[3]))
            elif parts[0] == "SYSC":
                sysc.append(kv(parts[1]))
            elif parts[0] == "INSN":
                insn.append(kv(parts[1]))
    return servers, scenarios, runs, notes, sysc, insn


def summarize(kind, label, sid, s, runs, clk, raw, look):
    """Medians of one server's runs of one scenario; fills raw and look."""
    res = Result()
    p99s, cpus = [], []
    if kind == "mem":
        held = [int(r["held"]) for r in runs]
        for r in runs:
            n = int(r["held"])
            growth = int(r["pss_after"]) - int(r["pss_before"])
            if n:
                res.vals.append(growth / n)
            raw.append(f"| {sid} | {s} | {r['round']} | held {n}/{r['target']} | "
                       f"PSS {int(r['pss_before'])/1024:.1f} → {int(r['pss_after'])/1024:.1f} MiB, "
                       f"RSS {int(r['rss_before'])/1024:.1f} → {int(r['rss_after'])/1024:.1f} MiB, "
                       f"{(int(r['rss_after']) - int(r['rss_before'])) / n if n else 0:.2f} KiB/conn RSS; "
                       f"sockets per process {r['sockets']}; opened in {r['open_s']} s | "
                       f"failed {r['failed']}, unanswered {r['unanswered']}, closed by server {r['closed']}, "
                       f"{r['errors']} |")
            if int(r["held"]) < int(r["target"]) or int(r["closed"]):
                look.append(f"scenario {sid} ({label}), {s} round {r['round']}: held only "
                            f"{r['held']} of {r['target']} connections (failed {r['failed']}, "
                            f"unanswered {r['unanswered']}, closed by the server while idle "
                            f"{r['closed']}; {r['errors']})")
        res.errs = f"held {min(held)}/{runs[0]['target']}" if held else "—"
    else:
        e = {"non-2xx": 0, "connect": 0, "read": 0, "write": 0, "timeout": 0}
        for r in runs:
            reqs = int(r["requests"])
            secs = int(r["duration_us"]) / 1e6
            v = int(r["bytes"]) / secs / 1e6 if kind == "mbps" else reqs / secs
            res.vals.append(v)
            if kind != "hs":  # s_time measures no latency
                p99s.append(int(r["p99_us"]) / 1000)
            if reqs:
                cpus.append(int(r["cpu_ticks"]) / clk / reqs * 1e5)
            e["non-2xx"] += int(r["status"])
            for k in ("connect", "read", "write", "timeout"):
                e[k] += int(r[k])
            changed = r.get("procs_before") != r.get("procs_after")
            raw.append(f"| {sid} | {s} | {r['round']} | {fmt(v, kind)} {UNITS[kind]} | "
                       f"{reqs:,} responses in {secs:.2f} s, {int(r['bytes']) / 1e6:,.1f} MB; "
                       f"p50 {int(r['p50_us']) / 1000:.2f} ms, p99 {int(r['p99_us']) / 1000:.2f} ms, "
                       f"max {int(r['max_us']) / 1000:.1f} ms; server CPU {int(r['cpu_ticks']) / clk:.2f} s | "
                       f"non-2xx {r['status']}, socket errors connect {r['connect']} read {r['read']} "
                       f"write {r['write']} timeout {r['timeout']}"
                       + (f"; WORKERS CHANGED: {r['procs_before']} → {r['procs_after']}" if changed else "")
                       + " |")
            if changed:
                look.append(f"scenario {sid} ({label}), {s} round {r['round']}: the server's "
                            f"processes changed during the run ({r['procs_before']} → "
                            f"{r['procs_after']}): a worker died and was respawned")
        bad = {k: n for k, n in e.items() if n}
        res.errs = ", ".join(f"{k} {n:,}" for k, n in bad.items()) if bad else "0"
        if bad:
            look.append(f"scenario {sid} ({label}), {s}: wrk errors over all rounds: {res.errs}")
    res.value = median(res.vals)
    res.p99 = median(p99s)
    res.cpu = median(cpus)
    return res


def profile_tables(servers, scenarios, sysc, insn):
    label = {sid: lab for sid, _, lab in scenarios}
    order = [sid for sid, _, _ in scenarios]
    out = []
    if sysc:
        per = {(r["id"], r["server"]): r for r in sysc}
        shown = [s for s in servers if any(k[1] == s for k in per)]
        out.append("System calls per request (strace -c -f on every worker while wrk -t1 sends a fixed "
                   "number of requests; handshakes: per handshake; the most frequent calls beside):")
        out.append("")
        out.append("| # | scenario | " + " | ".join(shown) + " | " +
                   " | ".join(f"{s} top calls per request" for s in shown) + " |")
        out.append("|---|---|" + "---:|" * len(shown) + "---|" * len(shown))
        for sid in order:
            if not any((sid, s) in per for s in shown):
                continue
            cells, tops = [], []
            for s in shown:
                r = per.get((sid, s))
                if r is None or not int(r["requests"]):
                    cells.append("—")
                    tops.append("—")
                    continue
                n = int(r["requests"])
                cells.append(f"{int(r['calls']) / n:.2f}")
                top = []
                for item in r.get("top", "").split(","):
                    if ":" in item:
                        name, calls = item.rsplit(":", 1)
                        top.append(f"{name} {int(calls) / n:.2f}")
                tops.append(", ".join(top[:6]) or "—")
            out.append(f"| {sid} | {label[sid]} | " + " | ".join(cells) + " | " + " | ".join(tops) + " |")
        out.append("")
    if insn:
        per = {(r["id"], r["server"]): r for r in insn}
        out.append("User-space instructions per request (valgrind --tool=callgrind: instructions of a "
                   "fresh server that answered N requests less those of one that answered none, ÷ N; "
                   "master and workers; opening the scenario's connections is in it, spread over the N "
                   "requests (N: a quarter of the strace counts)):")
        out.append("")
        out.append("| # | scenario | twister | nginx | T/N |")
        out.append("|---|---|---:|---:|---:|")
        for sid in order:
            t, n = per.get((sid, "twister")), per.get((sid, "nginx"))
            if t is None and n is None:
                continue
            tv = int(t["per_request"]) if t else None
            nv = int(n["per_request"]) if n else None
            out.append(f"| {sid} | {label[sid]} | {fmt(tv, 'int')} | {fmt(nv, 'int')} | "
                       f"{rfmt(ratio_of(tv, nv))} |")
        out.append("")
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("clk", type=int)
    ap.add_argument("--svg", help="write the chart of the ratios to nginx here")
    ap.add_argument("--title", default="scripts/bench")
    a = ap.parse_args()
    servers, scenarios, runs, notes, sysc, insn = load(a.results)
    if not servers:
        servers = ["twister", "nginx"]
    peers = [s for s in servers if s != "nginx"]

    ratio_rows, detail_rows, raw, look, mem_notes, chart_rows = [], [], [], [], [], []
    for sid, kind, label in scenarios:
        per = {s: [r for r in runs if r["id"] == sid and r["server"] == s] for s in servers}
        if not any(per.values()):
            continue
        res = {s: summarize(kind, label, sid, s, per[s], a.clk, raw, look) for s in servers}
        if kind == "mem":
            for s in servers:
                if per[s]:
                    mid = sorted(per[s], key=lambda r: int(r["pss_after"]) - int(r["pss_before"]))[len(per[s]) // 2]
                    mem_notes.append(f"{s}: PSS {int(mid['pss_before']) / 1024:.1f} MiB before → "
                                     f"{int(mid['pss_after']) / 1024:.1f} MiB with {mid['held']} idle "
                                     f"connections; open sockets per process (master first, listeners "
                                     f"included) {mid['sockets'].replace('/', ' / ')}")
        nv, ncpu = res["nginx"].value, res["nginx"].cpu
        vr = {s: ratio_of(res[s].value, nv) for s in peers}
        cr = {s: ratio_of(res[s].cpu, ncpu) for s in peers}
        cells = [sid, label, UNITS[kind], fmt(nv, kind)]
        cells += [rfmt(vr[s]) for s in peers]
        if kind != "mem":
            cells += [rfmt(cr[s]) for s in peers]
        else:
            cells += ["—"] * len(peers)
        ratio_rows.append("| " + " | ".join(cells) + " |")
        chart_rows.append((sid, label, kind, vr, cr if kind != "mem" else {}))
        for s in servers:
            detail_rows.append("| " + " | ".join([
                sid if s == servers[0] else "", label if s == servers[0] else "", s,
                spread(res[s].vals, kind), rfmt(ratio_of(res[s].value, nv)), fmt(res[s].p99, "ms"),
                fmt(res[s].cpu, "cpu"), rfmt(ratio_of(res[s].cpu, ncpu)), res[s].errs]) + " |")

    print("Ratios to nginx (medians over the rounds; throughput: > 1 is faster than nginx; memory and CPU "
          "per request: < 1 is less than nginx):")
    print()
    print("| # | scenario | unit | nginx | " + " | ".join(f"{s} ×nginx" for s in peers) + " | " +
          " | ".join(f"CPU/req {s} ×nginx" for s in peers) + " |")
    print("|---|---|---|---:|" + "---:|" * (2 * len(peers)))
    for r in ratio_rows:
        print(r)
    print()
    if notes:
        for s, sid, text in notes:
            print(f"- {s}, scenario {sid}: {text}")
        print()
    print("| # | scenario | server | median (min–max) | ×nginx | p99 ms | CPU s/100k req | CPU ×nginx | errors |")
    print("|---|---|---|---:|---:|---:|---:|---:|---|")
    for r in detail_rows:
        print(r)
    print()
    for line in profile_tables(servers, scenarios, sysc, insn):
        print(line)
    if mem_notes:
        print("Memory scenarios (median round): " + "; ".join(mem_notes) + ". nginx allocates its "
              "connection and event arrays for all `worker_connections` when a worker starts, so part "
              "of its per-connection cost is in the baseline, not in the growth.")
        print()
    if look:
        print("**Look at these:**")
        print()
        for n in look:
            print(f"- {n}")
        print()
    print("<details><summary>Every run</summary>")
    print()
    print("| # | server | round | result | detail | errors |")
    print("|---|---|---|---|---|---|")
    for r in raw:
        print(r)
    print()
    print("</details>")
    if a.svg:
        with open(a.svg, "w") as f:
            f.write(chart.svg(peers, chart_rows, a.title))


if __name__ == "__main__":
    main()
