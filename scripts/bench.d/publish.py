#!/usr/bin/env python3
"""scripts/bench --publish: puts a run's report into README.md.

Usage: publish.py REPORT.md CHART.svg README.md DEST.svg

Copies the chart to DEST.svg (committed beside this script) and replaces
what README.md has between <!-- bench-table-start --> and
<!-- bench-table-end --> with the chart and the report's summary: its
header list (date, machine, versions), the ratio tables, the notes, the
profile tables; not the per-run details, which stay in build/bench/.
Standard library only.
"""
import os
import shutil
import sys

START, END = "<!-- bench-table-start -->", "<!-- bench-table-end -->"


def main():
    report, chart, readme, dest = sys.argv[1:5]
    with open(report) as f:
        lines = f.read().splitlines()
    body = []
    for line in lines[1:]:  # the report's "# Twister vs ..." title is left out
        if line.startswith("<details>"):
            break
        if line.startswith("![ratios to nginx]"):
            continue
        if not line.strip() and body and not body[-1].strip():
            continue  # one blank line between blocks
        body.append(line)
    while body and not body[0].strip():
        body.pop(0)
    while body and not body[-1].strip():
        body.pop()
    rel = os.path.relpath(os.path.abspath(dest), os.path.dirname(os.path.abspath(readme)))
    block = [START, f"![Ratios to nginx: throughput and CPU per request]({rel})", ""] + body + [END]
    with open(readme) as f:
        text = f.read()
    if START not in text or END not in text:
        sys.exit(f"publish: {readme} has no {START} … {END} block")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    shutil.copyfile(chart, dest)
    with open(readme, "w") as f:
        f.write(head + "\n".join(block) + tail)


if __name__ == "__main__":
    main()
