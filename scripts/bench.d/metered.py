"""Prints what metrics + limit_req cost Twister in scripts/bench: the median
requests/s of scenario 13 (hello with both) over scenario 1's (plain hello),
both measured in the same run, interleaved. Usage: metered.py RESULTS_TSV"""

import statistics
import sys


def main():
    rps = {"1": [], "13": []}
    with open(sys.argv[1]) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if parts[0] != "RUN":
                continue
            r = dict(kv.split("=", 1) for kv in parts[1].split() if "=" in kv)
            if r.get("server") == "twister" and r.get("id") in rps:
                rps[r["id"]].append(int(r["requests"]) / (int(r["duration_us"]) / 1e6))
    if not rps["1"] or not rps["13"]:
        return
    plain, metered = statistics.median(rps["1"]), statistics.median(rps["13"])
    print(f"- metrics + limit_req cost: twister scenario 13 / scenario 1 = {metered / plain:.3f} "
          f"({metered:,.0f} vs {plain:,.0f} req/s, medians of the same run; the target is >= 0.95)")


if __name__ == "__main__":
    main()
