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

    points = []
    for path in a.results:
        r = json.loads(Path(path).read_text())
        s = r["scenarios"].get("rebuild", {})
        if s.get("events_per_s"):
            points.append((r["orders"], s["events"], s["events_per_s"], s["peak_rss_mb"],
                           r["scenarios"].get("raw_read_decode", {}).get("events_per_s")))
    points.sort()
    fig, ax1 = plt.subplots(figsize=(7, 4))
    xs = [p[1] for p in points]
    ax1.plot(xs, [p[2] for p in points], "o-", color="tab:blue", label="rebuild events/s")
    ax1.set_xscale("log")
    ax1.set_xlabel("events in the ledger (N orders: " + ", ".join(f"{p[0]:,}" for p in points) + ")")
    ax1.set_ylabel("rebuild events/s", color="tab:blue")
    ax1.set_ylim(bottom=0)
    ax2 = ax1.twinx()
    ax2.plot(xs, [p[3] for p in points], "s--", color="tab:red", label="peak RSS (MB)")
    ax2.set_ylabel("peak RSS of the rebuild (MB)", color="tab:red")
    ax2.set_ylim(bottom=0)
    ax1.set_title("Full rebuild of all projections")
    fig.tight_layout()
    fig.savefig(a.out, dpi=110)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
