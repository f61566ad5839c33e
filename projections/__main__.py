"""``python -m projections sync|rebuild``: the views without the full command line.

For scripts and tests (e.g. the crash tests start this and kill it). Options:
``--db``, ``--views``, ``--batch-size``, ``--jobs``, ``--batch-delay SECONDS`` (sleep after
each committed batch, to watch or interrupt a run), ``--names`` for rebuild.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from ledger.application import Ledger
from ledger.errors import StoreError

from .views import Views


async def _main(args: argparse.Namespace) -> int:
    try:
        ledger = Ledger(args.db, mode="read")  # the views are written, never the ledger
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with ledger:
        async with Views(ledger, args.views, batch_size=args.batch_size,
                         batch_delay=args.batch_delay, jobs=args.jobs) as v:
            if args.action == "rebuild":
                r = await v.rebuild(args.names or None)
            else:
                r = await v.sync()
    print(f"{args.action}: {r.events} events in {r.seconds:.3f} s "
          f"({r.rate:,.0f} events/s); position {r.position}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m projections", description=__doc__)
    p.add_argument("action", choices=["sync", "rebuild"])
    p.add_argument("--db", default=None)
    p.add_argument("--views", default=None)
    p.add_argument("--batch-size", type=int, default=10_000)
    p.add_argument("--batch-delay", type=float, default=0.0)
    p.add_argument("--jobs", type=int, default=None, help="rebuild processes (default: auto)")
    p.add_argument("--names", nargs="*", default=None)
    return asyncio.run(_main(p.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
