"""The SVG chart of scripts/bench's ratios to nginx (used by report.py).

One row per scenario, one bar per server (its colour in the legend), in two
panels side by side: throughput ÷ nginx's (req/s, MB/s or handshakes/s) and
CPU per request ÷ nginx's. A dashed line marks nginx = 1.0. Bars longer than
the axis are cut at its end and carry their value. The memory scenarios are
not drawn (their ratios are in the report's table). Standard library only.
"""
from xml.sax.saxutils import escape

COLOURS = {"twister": "#d1495b", "h2o": "#00798c", "lighttpd": "#edae49"}
SPARE = ("#66a182", "#8d96a3", "#2e4057")
AXES = (("throughput ÷ nginx (higher is faster)", 2.5), ("CPU per request ÷ nginx (lower is cheaper)", 2.0))

LABEL_W, PANEL_W, GAP, TOP, BAR, BAR_GAP, ROW_GAP = 380, 300, 50, 78, 10, 2, 12


def svg(peers, rows, title):
    """peers: servers other than nginx, in order; rows: (id, label, kind,
    {server: ratio or None}, {server: CPU ratio or None}) per scenario."""
    rows = [r for r in rows if r[2] != "mem"]
    colour = {}
    for i, s in enumerate(peers):
        colour[s] = COLOURS.get(s, SPARE[i % len(SPARE)])
    group = len(peers) * (BAR + BAR_GAP) - BAR_GAP + ROW_GAP
    height = TOP + max(1, len(rows)) * group + 40
    width = LABEL_W + 2 * PANEL_W + GAP + 30
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
           f'<rect width="{width}" height="{height}" fill="#fff"/>',
           f'<text x="10" y="20" font-size="14" font-weight="bold">{escape(title)}</text>']
    # legend
    x = 10
    for s in peers:
        out.append(f'<rect x="{x}" y="32" width="12" height="12" fill="{colour[s]}"/>')
        out.append(f'<text x="{x + 16}" y="42">{escape(s)}</text>')
        x += 24 + 7 * len(s)
    out.append(f'<line x1="{x}" y1="38" x2="{x + 20}" y2="38" stroke="#333" stroke-dasharray="4,3"/>')
    out.append(f'<text x="{x + 24}" y="42">nginx = 1.0</text>')
    if not rows:
        out.append(f'<text x="10" y="{TOP + 10}">no throughput scenario in this run</text>')
    for p, (caption, limit) in enumerate(AXES):
        x0 = LABEL_W + p * (PANEL_W + GAP)
        scale = PANEL_W / limit
        out.append(f'<text x="{x0}" y="{TOP - 18}" font-weight="bold">{escape(caption)}</text>')
        tick = 0.0
        while tick <= limit + 1e-9:
            tx = x0 + tick * scale
            out.append(f'<line x1="{tx:.1f}" y1="{TOP - 8}" x2="{tx:.1f}" y2="{height - 34}" '
                       f'stroke="#e4e4e4"/>')
            out.append(f'<text x="{tx:.1f}" y="{height - 22}" text-anchor="middle" fill="#555">'
                       f'{tick:.1f}</text>')
            tick += 0.5
        one = x0 + scale
        out.append(f'<line x1="{one:.1f}" y1="{TOP - 8}" x2="{one:.1f}" y2="{height - 34}" '
                   f'stroke="#333" stroke-dasharray="4,3"/>')
        for i, (sid, label, _kind, vr, cr) in enumerate(rows):
            ratios = vr if p == 0 else cr
            y = TOP + i * group
            for j, s in enumerate(peers):
                r = ratios.get(s)
                by = y + j * (BAR + BAR_GAP)
                if r is None:
                    out.append(f'<text x="{x0 + 2}" y="{by + BAR - 1}" fill="#999">n/a</text>')
                    continue
                w = min(r, limit) * scale
                out.append(f'<rect x="{x0}" y="{by}" width="{w:.1f}" height="{BAR}" fill="{colour[s]}">'
                           f'<title>{escape(s)}, scenario {sid}: {r:.2f}</title></rect>')
                cut = r > limit
                tx = x0 + w + 3 if not cut else x0 + w - 3
                anchor = "start" if not cut else "end"
                fill = "#222" if not cut else "#fff"
                out.append(f'<text x="{tx:.1f}" y="{by + BAR - 1}" text-anchor="{anchor}" fill="{fill}" '
                           f'font-size="9">{r:.2f}{" ▸" if cut else ""}</text>')
            if p == 0:
                text = f"{sid}. {label}"
                if len(text) > 62:
                    text = text[:61] + "…"
                out.append(f'<text x="{LABEL_W - 8}" y="{y + group / 2 - 2:.1f}" text-anchor="end">'
                           f'{escape(text)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
