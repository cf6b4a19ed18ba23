#!/usr/bin/env python3
"""Turns scripts/bench's raw results into the markdown report (stdout).

Input (argv[1]), tab-separated lines written by scripts/bench:
  SCEN <id> <kind> <label>              kind: rps | mbps | mem | hs (handshakes/s)
  RUN  <k=v k=v ...>                    one run of one server in one round
argv[2]: clock ticks per second (getconf CLK_TCK).
"""
import statistics
import sys

SERVERS = ("twister", "nginx")


def kv(text):
    return dict(item.split("=", 1) for item in text.split())


def num(x):
    return float(x)


def fmt(v, kind):
    if v is None:
        return "—"
    if kind in ("rps", "hs"):
        return f"{v:,.0f}"
    if kind == "mbps":
        return f"{v:,.1f}"
    return f"{v:,.2f}"


def spread(values, kind):
    if not values:
        return "—"
    med = statistics.median(values)
    if len(values) == 1:
        return fmt(med, kind)
    return f"{fmt(med, kind)} ({fmt(min(values), kind)}–{fmt(max(values), kind)})"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "—"
    return f"{a / b:.2f}"


def median(values):
    return statistics.median(values) if values else None


def main():
    path, clk = sys.argv[1], int(sys.argv[2])
    scenarios, runs = [], []
    with open(path) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if parts[0] == "SCEN":
                scenarios.append((parts[1], parts[2], parts[3]))
            elif parts[0] == "RUN":
                runs.append(kv(parts[1]))

    units = {"rps": "req/s", "mbps": "MB/s", "mem": "KiB/conn", "hs": "handshakes/s"}
    rows, notes, raw, mem_notes = [], [], [], []
    for sid, kind, label in scenarios:
        per = {s: [r for r in runs if r["id"] == sid and r["server"] == s] for s in SERVERS}
        if not any(per.values()):
            continue
        value, p99, cpu, errs = {}, {}, {}, {}
        for s in SERVERS:
            vals, p99s, cpus = [], [], []
            if kind == "mem":
                held = [int(r["held"]) for r in per[s]]
                for r in per[s]:
                    n = int(r["held"])
                    growth = int(r["pss_after"]) - int(r["pss_before"])
                    v = growth / n if n else None
                    if v is not None:
                        vals.append(v)
                    raw.append(f"| {sid} | {s} | {r['round']} | held {n}/{r['target']} | "
                               f"PSS {int(r['pss_before'])/1024:.1f} → {int(r['pss_after'])/1024:.1f} MiB, "
                               f"RSS {int(r['rss_before'])/1024:.1f} → {int(r['rss_after'])/1024:.1f} MiB, "
                               f"{(int(r['rss_after']) - int(r['rss_before'])) / n if n else 0:.2f} KiB/conn RSS; "
                               f"sockets per process {r['sockets']}; opened in {r['open_s']} s | "
                               f"failed {r['failed']}, unanswered {r['unanswered']}, closed by server {r['closed']}, "
                               f"{r['errors']} |")
                    if int(r["held"]) < int(r["target"]) or int(r["closed"]):
                        notes.append(f"scenario {sid} ({label}), {s} round {r['round']}: held only "
                                     f"{r['held']} of {r['target']} connections (failed {r['failed']}, "
                                     f"unanswered {r['unanswered']}, closed by the server while idle "
                                     f"{r['closed']}; {r['errors']})")
                errs[s] = (f"held {min(held)}/{per[s][0]['target']}" if held else "—")
                if per[s]:
                    mid = sorted(per[s], key=lambda r: int(r["pss_after"]) - int(r["pss_before"]))[len(per[s]) // 2]
                    mem_notes.append(f"{s}: PSS {int(mid['pss_before']) / 1024:.1f} MiB before → "
                                     f"{int(mid['pss_after']) / 1024:.1f} MiB with {mid['held']} idle "
                                     f"connections (RSS {int(mid['rss_before']) / 1024:.1f} → "
                                     f"{int(mid['rss_after']) / 1024:.1f} MiB); open sockets per process "
                                     f"(master first, listeners included) {mid['sockets'].replace('/', ' / ')}")
            else:
                e = {"non-2xx": 0, "connect": 0, "read": 0, "write": 0, "timeout": 0}
                for r in per[s]:
                    reqs = int(r["requests"])
                    secs = int(r["duration_us"]) / 1e6
                    v = int(r["bytes"]) / secs / 1e6 if kind == "mbps" else reqs / secs
                    vals.append(v)
                    if kind != "hs":  # s_time measures no latency
                        p99s.append(int(r["p99_us"]) / 1000)
                    c = int(r["cpu_ticks"]) / clk / reqs * 1e5 if reqs else None
                    if c is not None:
                        cpus.append(c)
                    e["non-2xx"] += int(r["status"])
                    for k in ("connect", "read", "write", "timeout"):
                        e[k] += int(r[k])
                    raw.append(f"| {sid} | {s} | {r['round']} | {fmt(v, kind)} {units[kind]} | "
                               f"{reqs:,} responses in {secs:.2f} s, {int(r['bytes']) / 1e6:,.1f} MB; "
                               f"p50 {int(r['p50_us']) / 1000:.2f} ms, p99 {int(r['p99_us']) / 1000:.2f} ms, "
                               f"max {int(r['max_us']) / 1000:.1f} ms; server CPU {int(r['cpu_ticks']) / clk:.2f} s | "
                               f"non-2xx {r['status']}, socket errors connect {r['connect']} read {r['read']} "
                               f"write {r['write']} timeout {r['timeout']}"
                               + (f"; WORKERS CHANGED: {r['procs_before']} → {r['procs_after']}"
                                  if r.get("procs_before") != r.get("procs_after") else "") + " |")
                    if r.get("procs_before") != r.get("procs_after"):
                        notes.append(f"scenario {sid} ({label}), {s} round {r['round']}: the server's "
                                     f"processes changed during the run ({r['procs_before']} → "
                                     f"{r['procs_after']}): a worker died and was respawned")
                bad = {k: n for k, n in e.items() if n}
                errs[s] = ", ".join(f"{k} {n:,}" for k, n in bad.items()) if bad else "0"
                if bad:
                    notes.append(f"scenario {sid} ({label}), {s}: wrk errors over all rounds: {errs[s]}")
            value[s] = (vals, median(vals))
            p99[s] = median(p99s)
            cpu[s] = median(cpus)
        t, n = value["twister"][1], value["nginx"][1]
        rows.append("| " + " | ".join([
            sid, label, units[kind],
            spread(value["twister"][0], kind), spread(value["nginx"][0], kind), ratio(t, n),
            fmt(p99["twister"], "ms"), fmt(p99["nginx"], "ms"),
            fmt(cpu["twister"], "cpu"), fmt(cpu["nginx"], "cpu"), ratio(cpu["twister"], cpu["nginx"]),
            errs["twister"], errs["nginx"],
        ]) + " |")

    print("| # | scenario | unit | twister median (min–max) | nginx median (min–max) | T/N | "
          "p99 ms twister | p99 ms nginx | CPU s/100k req twister | CPU s/100k req nginx | CPU T/N | "
          "errors twister | errors nginx |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
    for r in rows:
        print(r)
    print()
    if mem_notes:
        print("Memory scenario (median round): " + "; ".join(mem_notes) + ". nginx allocates its "
              "connection and event arrays for all `worker_connections` when a worker starts, so part "
              "of its per-connection cost is in the baseline, not in the growth.")
        print()
    if notes:
        print("**Look at these:**")
        print()
        for n in notes:
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


if __name__ == "__main__":
    main()
