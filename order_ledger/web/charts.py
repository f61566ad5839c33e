"""Hand-written SVG line charts of the daily metrics (no script, no library).

A chart has a title and a description for screen readers, a dashed target line
labelled with the target, a solid line of the rate (gaps where nothing was in
the window), a round marker on each point and a square one where the target
was breached (so a breach is not told by colour alone), and dates on the x axis.
"""

from __future__ import annotations

from datetime import datetime
from html import escape
from typing import Any

WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 52, 16, 16, 36


def _fmt_pct(v: float) -> str:
    return f"{v * 100:.1f}%".replace(".0%", "%")


def line_chart(key: str, label: str, target: float, target_text: str,
               points: list[dict[str, Any]]) -> str:
    """One metric's chart as an ``<svg>`` element (a string of markup)."""
    rates = [p[key]["rate"] for p in points]
    known = [r for r in rates if r is not None]
    top = max([target * 1.25, *known, 0.05])
    top = min(1.0, top) if max(known or [0]) <= 1.0 else top
    if target > 0.5:  # a rate that should stay high: show the whole 0..100%
        top = 1.0
    n = len(points)
    pw, ph = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(i: int) -> float:
        return LEFT + (pw * i / (n - 1) if n > 1 else pw / 2)

    def y(v: float) -> float:
        return TOP + ph - ph * (v / top if top else 0)

    title_id = f"chart-{key}-title"
    desc_id = f"chart-{key}-desc"
    last = next((p for p in reversed(points) if p[key]["rate"] is not None), None)
    breaches = sum(1 for p in points if p[key]["breached"])
    desc = (f"{n} daily points"
            + (f" from {points[0]['at'][:10]} to {points[-1]['at'][:10]}" if n else "")
            + f"; target {target_text}; "
            + (f"latest {_fmt_pct(last[key]['rate'])} on {last['at'][:10]}" if last
               else "no data in any window")
            + f"; target breached on {breaches} of them.")
    out = [f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" '
           f'width="{WIDTH}" height="{HEIGHT}" aria-labelledby="{title_id} {desc_id}" '
           f'data-metric="{escape(key)}" data-points="{n}" xmlns="http://www.w3.org/2000/svg">',
           f'<title id="{title_id}">{escape(label)}</title>',
           f'<desc id="{desc_id}">{escape(desc)}</desc>']
    # axes and grid: 0, the middle and the top, as percentages
    for v in (0.0, top / 2, top):
        yy = y(v)
        out.append(f'<line class="grid" x1="{LEFT}" y1="{yy:.1f}" x2="{WIDTH - RIGHT}" '
                   f'y2="{yy:.1f}"/>')
        out.append(f'<text class="tick" x="{LEFT - 6}" y="{yy + 4:.1f}" '
                   f'text-anchor="end">{_fmt_pct(v)}</text>')
    # the target
    ty = y(target)
    out.append(f'<line class="target" x1="{LEFT}" y1="{ty:.1f}" x2="{WIDTH - RIGHT}" '
               f'y2="{ty:.1f}" stroke-dasharray="6 4"/>')
    label_y = ty + 13 if target > 0.5 else ty - 4  # under a line near the top
    out.append(f'<text class="target-label" x="{WIDTH - RIGHT}" y="{label_y:.1f}" '
               f'text-anchor="end">target {escape(target_text)}</text>')
    # the rate: one path per run of points with data
    runs: list[list[tuple[float, float]]] = []
    current: list[tuple[float, float]] = []
    for i, r in enumerate(rates):
        if r is None:
            if current:
                runs.append(current)
            current = []
            continue
        current.append((x(i), y(r)))
    if current:
        runs.append(current)
    for run in runs:
        d = " ".join(f"{'M' if j == 0 else 'L'}{px:.1f},{py:.1f}" for j, (px, py) in enumerate(run))
        out.append(f'<path class="rate" d="{d}" fill="none"/>')
    for i, p in enumerate(points):
        r = p[key]["rate"]
        if r is None:
            continue
        px, py = x(i), y(r)
        tip = (f"{p['at'][:10]}: {_fmt_pct(r)} ({p[key]['numerator']}/{p[key]['denominator']})"
               + (" - target breached" if p[key]["breached"] else ""))
        if p[key]["breached"]:
            out.append(f'<rect class="point breached" x="{px - 3.5:.1f}" y="{py - 3.5:.1f}" '
                       f'width="7" height="7"><title>{escape(tip)}</title></rect>')
        else:
            out.append(f'<circle class="point" cx="{px:.1f}" cy="{py:.1f}" r="2.5">'
                       f'<title>{escape(tip)}</title></circle>')
    # dates: the first, the middle and the last point
    for i in sorted({0, n // 2, n - 1}) if n else ():
        anchor = "start" if i == 0 and n > 1 else "end" if i == n - 1 and n > 1 else "middle"
        out.append(f'<text class="tick" x="{x(i):.1f}" y="{HEIGHT - 12}" text-anchor="{anchor}">'
                   f'{escape(_day(points[i]["at"]))}</text>')
    out.append("</svg>")
    return "\n".join(out)


def _day(iso: str) -> str:
    try:
        return datetime.fromisoformat(iso).strftime("%Y-%m-%d")
    except ValueError:
        return iso[:10]
