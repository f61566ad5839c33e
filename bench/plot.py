"""Plot rebuild speed and peak memory against N from benchmark result files.

    python -m bench.plot RESULT.json [RESULT.json ...] --out docs/benchmarks-rebuild.png

Needs matplotlib (`pip install -e '.[bench]'`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("results", nargs="+")
    p.add_argument("--out", default="docs/benchmarks-rebuild.png")
    a = p.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = sorted((json.loads(Path(path).read_text()) for path in a.results),
                  key=lambda r: r["orders"])

    def series(name: str) -> list[tuple[int, float, float]]:
        """(events, events/s, peak RSS MB: the largest process of the scenario)."""
        out = []
        for r in runs:
            s = r["scenarios"].get(name, {})
            if s.get("events_per_s"):
                out.append((s["events"], s["events_per_s"],
                            max(s["peak_rss_mb"], s.get("workers_peak_rss_mb") or 0)))
        return out

    fig, ax1 = plt.subplots(figsize=(7.5, 4.2))
    ax2 = ax1.twinx()
    for name, label, color in (("rebuild", "1 process", "tab:blue"),
                               ("rebuild_parallel", "2 processes", "tab:green"),
                               ("rebuild_no_writes", "1 process, no rows written", "tab:gray")):
        pts = series(name)
        if not pts:
            continue
        xs = [p[0] for p in pts]
        if name == "rebuild_no_writes":  # the ceiling if SQLite cost nothing: speed only
            ax1.plot(xs, [p[1] for p in pts], "^:", color=color, label=f"events/s, {label}")
            continue
        ax1.plot(xs, [p[1] for p in pts], "o-", color=color, label=f"events/s, {label}")
        ax2.plot(xs, [p[2] for p in pts], "s--", color=color, alpha=0.6,
                 label=f"peak RSS MB, {label}")
    ax1.set_xscale("log")
    ticks = [p[0] for p in series("rebuild") or series("rebuild_parallel")]
    ax1.set_xticks(ticks, [f"{t / 1e6:.2f}M" if t >= 1e6 else f"{t / 1e3:.0f}k" for t in ticks])
    ax1.minorticks_off()
    ax1.set_xlabel("events in the ledger (N orders: " + ", ".join(
        f"{r['orders']:,}" for r in runs) + ")")
    ax1.set_ylabel("rebuild events/s (solid, dotted)")
    ax1.set_ylim(bottom=0)
    ax2.set_ylabel("peak RSS of the largest process, MB (dashed)")
    ax2.set_ylim(0, 1100)
    ax2.axhline(1024, color="tab:red", linewidth=0.8, linestyle=":")
    ax2.text(ax1.get_xlim()[1], 1000, "1 GB target ", color="tab:red", fontsize=8,
             ha="right", va="top")
    lines = ax1.get_legend_handles_labels()
    more = ax2.get_legend_handles_labels()
    ax1.legend(lines[0] + more[0], lines[1] + more[1], fontsize=8, loc="center left")
    ax1.set_title("Full rebuild of all projections")
    fig.tight_layout()
    fig.savefig(a.out, dpi=110)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
