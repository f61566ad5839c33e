"""Soak harness: SIGKILL the writers and the views for minutes or N kills, then verify.

    python -m bench.soak --minutes 5                       # the long run, by hand (SQLite)
    python -m bench.soak --kills 300 --pg postgresql://postgres@127.0.0.1:5432/test
    python -m bench.soak --kills 6 --json                  # about what CI runs

It reuses ``tests/crash_harness.py`` (imported, not copied) and rotates rounds
through three writers, each killed at random moments and re-run (the client
retrying: the same file, so the same command ids) until a run completes:

- ``apply``: one ``crash_harness.harness`` call (kills ``apply``, and beside it
  ``follow``, ``sync`` and ``rebuild`` of the views; it checks every
  acknowledged command is present once, ``check`` is clean, views equal a
  replay, and the state equals a clean run);
- ``feed shipping-confirmation`` on a ledger holding the example orders;
- ``import sp-api`` of the example Orders API pages.

After every feed/import round: the state equals a clean run of the same
command (same events in the same order, same command ids: nothing lost,
nothing doubled), ``check`` is clean, and after ``sync`` the views equal a
replay (``check --views``). With ``--pg URL`` every other round runs on a
fresh PostgreSQL schema (dropped afterwards).

Prints the figures as JSON; exit status 0 when nothing was lost, doubled or
different, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "tests"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import crash_harness as ch  # noqa: E402 - tests/crash_harness.py, reused

from ledger.application import Ledger  # noqa: E402
from ledger.check import check_ledger, read_commands  # noqa: E402

EXAMPLES = ROOT / "examples"
FEED_SETUP = EXAMPLES / "feeds" / "orders.jsonl"
FEED_ARGS = ["feed", "shipping-confirmation", str(EXAMPLES / "feeds" / "shipping-confirmation.txt"),
             "--now", "2026-04-23T10:00:00+02:00", "--yes"]
SPAPI_ARGS = ["import", "sp-api", str(EXAMPLES / "sp-api" / "getOrders.json"),
              "--items", str(EXAMPLES / "sp-api" / "getOrderItems.json")]
KINDS = ("apply", "feed", "import-sp-api")


def _cli(args: list[str], db: str, kill_after: float | None = None) -> tuple[int | None, bool, str]:
    """Run ``order-ledger ARGS --db DB``; SIGKILL it after ``kill_after`` seconds if asked."""
    proc = subprocess.Popen(ch.CLI + args + ["--db", db], cwd=str(ROOT), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    killed = threading.Event()

    def kill() -> None:
        if proc.poll() is None:
            killed.set()
            proc.send_signal(signal.SIGKILL)

    timer = threading.Timer(kill_after, kill) if kill_after is not None else None
    if timer:
        timer.start()
    _, err = proc.communicate()
    if timer:
        timer.cancel()
    return proc.returncode, killed.is_set(), err.decode(errors="replace")


def _prepare(db: str, kind: str) -> None:
    if kind == "feed":
        rc, _, err = _cli(["apply", "--quiet", str(FEED_SETUP)], db)
        if rc != 0:
            raise RuntimeError(f"setting up the feed's orders failed: {err[-500:]}")


def _args(kind: str) -> list[str]:
    return FEED_ARGS if kind == "feed" else SPAPI_ARGS


class Soak:
    def __init__(self, *, pg: str | None, seed: int, workdir: Path, verbose: bool,
                 kinds: tuple[str, ...] = KINDS, orders: int = 20) -> None:
        self.pg = pg
        self.kinds = kinds
        self.orders = orders
        self.rng = random.Random(seed)
        self.seed = seed
        self.tmp = workdir
        self.verbose = verbose
        self.kills: Counter = Counter()
        self.kills_by_backend: Counter = Counter()
        self.rounds: Counter = Counter()
        self.rounds_checked = 0
        self.acknowledged = 0
        self.lost = 0
        self.duplicated = 0
        self.check_failures = 0
        self.views_mismatches = 0
        self.mismatched_rounds = 0
        self.tracebacks = 0
        self.problems: list[str] = []
        self.refs: dict[tuple[str, str], tuple[dict, int | None, float]] = {}
        self.n = 0

    # --- bookkeeping -----------------------------------------------------------------------

    def total_kills(self) -> int:
        return sum(self.kills.values())

    def figures(self, seconds: float) -> dict[str, Any]:
        return {"kills": self.total_kills(), "kills_per_command": dict(self.kills),
                "kills_per_backend": dict(self.kills_by_backend),
                "rounds": sum(self.rounds.values()), "rounds_per_kind": dict(self.rounds),
                "rounds_checked": self.rounds_checked,
                "acknowledged_commands": self.acknowledged, "lost": self.lost,
                "duplicated": self.duplicated, "check_failures": self.check_failures,
                "views_mismatches": self.views_mismatches,
                "rounds_differing_from_clean_run": self.mismatched_rounds,
                "tracebacks": self.tracebacks, "problems": self.problems[:20],
                "seconds": round(seconds, 1), "ok": self.ok}

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.check_failures or self.views_mismatches
                    or self.mismatched_rounds or self.tracebacks or self.problems)

    def _location(self, backend: str, name: str) -> str:
        self.n += 1
        base = self.pg if backend == "postgresql" else str(self.tmp / "x.db")
        return ch._fresh_location(base, self.tmp, f"soak{self.n}_{name}")

    # --- rounds ----------------------------------------------------------------------------

    def apply_round(self, backend: str, kills: int) -> None:
        """``apply`` with follow/sync/rebuild beside it: the crash harness, reused."""
        rep = ch.harness(kills, orders=self.orders, seed=self.rng.randint(1, 10**6), batch_size=10,
                         tick_every=24, db=self.pg if backend == "postgresql" else None,
                         workdir=str(self.tmp / f"apply{self.n}"),
                         rng_seed=self.rng.randint(1, 10**6))
        self.n += 1
        self.kills["apply"] += rep.kills
        for what, k in rep.view_kills.items():
            self.kills[what] += k
        self.kills_by_backend[backend] += rep.kills + sum(rep.view_kills.values())
        self.rounds["apply"] += rep.rounds
        self.rounds_checked += rep.rounds  # the harness checks every round it runs
        self.acknowledged += rep.acknowledged_applied
        self.lost += rep.lost
        self.duplicated += rep.duplicated
        self.mismatched_rounds += rep.mismatched_rounds
        self.tracebacks += rep.tracebacks
        views = [p for p in rep.problems if "views after sync" in p]
        self.views_mismatches += len(views)
        self.check_failures += rep.check_problems - len(views)
        self.problems.extend(f"apply/{backend}: {p}" for p in rep.problems)

    def reference(self, kind: str, backend: str) -> tuple[dict, int | None, float]:
        if (kind, backend) not in self.refs:
            db = self._location(backend, "ref")
            try:
                _prepare(db, kind)
                began = time.monotonic()
                rc, _, err = _cli(_args(kind), db)
                took = time.monotonic() - began
                if rc not in (0, 1) or "Traceback" in err:
                    raise RuntimeError(f"the clean {kind} run failed ({rc}): {err[-500:]}")
                self.refs[(kind, backend)] = (ch.snapshot(db), rc, took)
            finally:
                ch._drop(db)
        return self.refs[(kind, backend)]

    def writer_round(self, kind: str, backend: str, kills: int) -> None:
        """Kill ``feed``/``import sp-api`` ``kills`` times, retry until it completes, verify."""
        ref, ref_rc, took = self.reference(kind, backend)
        db = self._location(backend, kind.replace("-", "_"))
        views = str(self.tmp / f"soak{self.n}.views.db")
        try:
            _prepare(db, kind)
            done = 0
            while True:
                t = self.rng.uniform(0.05, took * 0.95) if done < kills else None
                rc, killed, err = _cli(_args(kind), db, t)
                if "Traceback" in err:
                    self.tracebacks += 1
                    self.problems.append(f"{kind}/{backend}: traceback: {err[-500:]}")
                if killed:
                    done += 1
                    self.kills[kind] += 1
                    self.kills_by_backend[backend] += 1
                    problems, _ = ch.quick_check(db, {})
                    self.problems.extend(f"{kind}/{backend}: {p}" for p in problems)
                    continue
                if rc != ref_rc:
                    self.problems.append(f"{kind}/{backend}: the completing run ended with {rc}, "
                                         f"the clean run with {ref_rc}: {err[-300:]}")
                break
            self.rounds[kind] += 1
            self.verify(kind, backend, db, views, ref)
        finally:
            ch._drop(db)

    def verify(self, kind: str, backend: str, db: str, views: str, ref: dict) -> None:
        snap = ch.snapshot(db)
        with Ledger(db) as led:
            ids = [r[0] for r in read_commands(led)]
            check = check_ledger(led)
        self.acknowledged += len(ref["commands"])
        self.lost += len(ref["commands"] - snap["commands"])
        self.duplicated += len(ids) - len(set(ids)) + max(0, len(snap["events"])
                                                          - len(ref["events"]))
        diff = ch.differences(snap, ref)
        if diff:
            self.mismatched_rounds += 1
            self.problems.extend(f"{kind}/{backend}: {d}" for d in diff)
        if not check.ok:
            self.check_failures += 1
            self.problems.extend(f"{kind}/{backend}: check: {p}" for p in check.problems[:5])
        if ch.projections_available():
            if self.rng.random() < 0.5:  # kill a catch-up or a rebuild of the views too
                what = self.rng.choice(["sync", "rebuild"])
                proc = ch.start_views(what, db, views)
                timer = ch.kill_later(proc, self.rng.uniform(0.3, 1.2))
                proc.wait()
                timer.cancel()
                if proc.returncode == -signal.SIGKILL:
                    self.kills[what] += 1
                    self.kills_by_backend[backend] += 1
                self.problems.extend(f"{kind}/{backend}: {p}" for p in ch.views_problems(db, views))
            rc_sync, _, err_sync = _cli(["sync", "--quiet", "--views", views], db)
            rc_check, _, err_check = _cli(["check", "--views", views], db)
            if rc_sync != 0 or rc_check != 0:
                self.views_mismatches += 1
                self.problems.append(f"{kind}/{backend}: views after sync: {err_sync[-200:]} "
                                     f"{err_check[-300:]}")
        self.rounds_checked += 1

    # --- the loop --------------------------------------------------------------------------

    def run(self, *, minutes: float | None, kills: int | None, pg_kills: int | None) -> float:
        started = time.monotonic()
        deadline = started + minutes * 60 if minutes else None
        i = 0
        while True:
            pg_done = self.kills_by_backend["postgresql"]
            sqlite_done = self.kills_by_backend["sqlite"]
            if deadline is not None and time.monotonic() >= deadline:
                break
            if deadline is None and sqlite_done >= (kills or 0) and \
                    (not self.pg or pg_done >= (pg_kills or 0)):
                break
            if self.pg and (deadline is not None or pg_done < (pg_kills or 0)) and \
                    (i % 2 == 1 or (deadline is None and sqlite_done >= (kills or 0))):
                backend, left = "postgresql", (pg_kills or 2) - pg_done if deadline is None else 3
            else:
                backend, left = "sqlite", (kills or 0) - sqlite_done if deadline is None else 3
            kinds = self.kinds
            kind = kinds[i % len(kinds)] if not self.pg else kinds[(i // 2) % len(kinds)]
            n = max(1, min(3, left // len(self.kinds)))  # spread the kills over the kinds
            if self.verbose:
                print(f"round {i + 1}: {kind} on {backend}, {n} kill(s)", file=sys.stderr)
            if kind == "apply":
                self.apply_round(backend, n)
            else:
                self.writer_round(kind, backend, n)
            i += 1
        return time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.soak",
                                description=__doc__.split("\n\n")[0])
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--minutes", type=float, help="run for this long")
    g.add_argument("--kills", type=int, help="stop after this many SIGKILLs on SQLite")
    p.add_argument("--pg", metavar="URL", default=None,
                   help="also run on PostgreSQL (fresh schemas, dropped after)")
    p.add_argument("--pg-kills", type=int, default=None,
                   help="with --kills: SIGKILLs on PostgreSQL (default: as many as --kills)")
    p.add_argument("--kinds", default=",".join(KINDS),
                   help=f"comma-separated writers to rotate through (default: {','.join(KINDS)})")
    p.add_argument("--orders", type=int, default=20, help="orders in each apply round's workload")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--workdir", default=None, help="keep files here instead of a temp dir")
    p.add_argument("-v", "--verbose", action="store_true")
    a = p.parse_args(argv)
    if (a.minutes is not None and a.minutes <= 0) or (a.kills is not None and a.kills < 0):
        p.error("--minutes and --kills must be positive")
    kinds = tuple(k.strip() for k in a.kinds.split(",") if k.strip())
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        p.error(f"--kinds: unknown {', '.join(unknown) or '(none given)'}; "
                f"choose from {', '.join(KINDS)}")
    tmp = Path(a.workdir or tempfile.mkdtemp(prefix="soak-"))
    tmp.mkdir(parents=True, exist_ok=True)
    soak = Soak(pg=a.pg, seed=a.seed, workdir=tmp, verbose=a.verbose, kinds=kinds,
                orders=a.orders)
    try:
        seconds = soak.run(minutes=a.minutes, kills=a.kills,
                           pg_kills=a.pg_kills if a.pg_kills is not None else a.kills)
    finally:
        if a.workdir is None:
            shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(soak.figures(seconds), indent=2))
    return 0 if soak.ok else 1


if __name__ == "__main__":
    sys.exit(main())
