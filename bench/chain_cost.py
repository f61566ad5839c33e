"""What the tamper-evidence hash chain costs a bulk apply.

    python -m bench.chain_cost --orders 20000 --repeat 3 [--pg URL]

Applies the same generated command stream to fresh ledgers with the chain
written (as always) and with its two steps (read the head, insert the hashes)
switched off, alternating the order of the runs, and reports the median times
and the overhead as a share of the apply time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from bench.generate import iter_lines
from ledger import chain, store
from ledger.application import Ledger


@contextmanager
def _chain_off() -> Iterator[None]:
    mixin = store.LedgerRecorderMixin
    saved = mixin._chain_next, mixin._write_chain
    mixin._chain_next = lambda self, cursor, last: chain.GENESIS  # type: ignore[assignment]
    mixin._write_chain = lambda self, cursor, prev, rows: None  # type: ignore[assignment]
    try:
        yield
    finally:
        mixin._chain_next, mixin._write_chain = saved  # type: ignore[assignment]


def _apply(lines: list[bytes], db: str) -> tuple[float, int]:
    with Ledger(db) as led:
        t0 = time.perf_counter()
        outs = list(led.apply_lines(lines))
        seconds = time.perf_counter() - t0
        assert all(o.status == "applied" for o in outs)
        return seconds, led.head()


def _location(work: Path, pg: str | None, name: str) -> str:
    if pg:
        return f"{pg}{'&' if '?' in pg else '?'}schema=bench_chain_{uuid.uuid4().hex[:8]}"
    return str(work / f"{name}.db")


def _drop(db: str) -> None:
    if db.startswith("postgresql://"):
        import psycopg

        base, _, schema = db.partition("?schema=")
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def run(orders: int, repeat: int, pg: str | None = None, seed: int = 1) -> dict:
    lines = [line.encode() for line in iter_lines(orders, seed)]
    on: list[float] = []
    off: list[float] = []
    events = 0
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for k in range(repeat):
            order = ("on", "off") if k % 2 == 0 else ("off", "on")
            for mode in order:
                db = _location(work, pg, f"{mode}{k}")
                try:
                    if mode == "on":
                        seconds, events = _apply(lines, db)
                        on.append(seconds)
                    else:
                        with _chain_off():
                            seconds, events = _apply(lines, db)
                        off.append(seconds)
                finally:
                    _drop(db)
    with_chain, without = statistics.median(on), statistics.median(off)
    return {
        "backend": "postgresql" if pg else "sqlite", "orders": orders, "lines": len(lines),
        "events": events, "repeat": repeat,
        "apply_seconds_with_chain": round(with_chain, 3),
        "apply_seconds_without_chain": round(without, 3),
        "chain_share_of_apply": round((with_chain - without) / with_chain, 4),
        "runs": {"with": [round(x, 3) for x in on], "without": [round(x, 3) for x in off]},
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--orders", type=int, default=20_000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--pg", default=None, help="a postgresql:// URL to measure PostgreSQL")
    args = p.parse_args(argv)
    result = run(args.orders, args.repeat, args.pg, args.seed)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
