"""The benchmark: each scenario against a baseline measured in the same run.

    python -m bench.run --orders N [--out bench/results/run.json] [--pg URL]

Each scenario runs in its own child process so its peak RSS is its own. The
table shows events, seconds, events/s, peak RSS and the ratio against the
scenario's baseline; the JSON has the same and the machine and date.
"""

from __future__ import annotations

import argparse
from collections import Counter
import json
import os
import platform
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

SCENARIOS: dict[str, Callable[[argparse.Namespace], dict]] = {}


def scenario(name: str) -> Callable:
    def deco(fn: Callable) -> Callable:
        SCENARIOS[name] = fn
        return fn
    return deco


def peak_rss_mb() -> float:
    """This process's own peak RSS (VmHWM: ru_maxrss would include the parent's
    memory from before exec on Linux)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- fixtures shared by scenarios (built once per run, in the work dir) ----------


def commands_file(a: argparse.Namespace) -> Path:
    path = Path(a.work) / f"commands-{a.orders}.jsonl"
    if not path.exists():
        from bench.generate import generate, write

        with open(path, "w") as f:
            write(generate(a.orders, a.seed), f)
    return path


def built_ledger(a: argparse.Namespace) -> Path:
    """A SQLite ledger with the whole workload applied (the bulk scenario's output)."""
    path = Path(a.work) / f"ledger-{a.orders}.db"
    if not path.exists():
        from ledger.application import Ledger

        with Ledger(str(path)) as led, open(commands_file(a), "rb") as f:
            for _ in led.apply_lines(f):
                pass
    return path


def stored_rows(path: Path) -> list[tuple]:
    con = sqlite3.connect(path)
    rows = con.execute(
        "SELECT originator_id, originator_version, topic, state FROM stored_events ORDER BY rowid"
    ).fetchall()
    con.close()
    return rows


def fresh_events_table(path: Path) -> sqlite3.Connection:
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=FULL")
    con.execute("CREATE TABLE stored_events (originator_id TEXT, originator_version INTEGER, "
                "topic TEXT, state BLOB, PRIMARY KEY (originator_id, originator_version))")
    return con


def _fresh(db: Path) -> Path:
    """``db`` with no ledger in it yet (a run may reuse its work directory)."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    return db


# --- write side ------------------------------------------------------------------


@scenario("apply_bulk")
def apply_bulk(a: argparse.Namespace) -> dict:
    from ledger.application import Ledger

    src = commands_file(a)
    db = _fresh(Path(a.work) / "apply-bulk.db")
    t = time.perf_counter()
    with Ledger(str(db)) as led, open(src, "rb") as f:
        store = _time_store_calls(led.recorder)
        statuses = Counter(o.status for o in led.apply_lines(f))
        events = led.head()
    secs = time.perf_counter() - t
    if not (Path(a.work) / f"ledger-{a.orders}.db").exists():
        shutil.copy(db, Path(a.work) / f"ledger-{a.orders}.db")
    return {"events": events, "seconds": secs, "lines_applied": statuses["applied"],
            "lines_duplicate": statuses["duplicate"], "store_seconds": round(store[0], 3)}


#: the recorder's calls during a bulk apply: every read and write of the store
STORE_CALLS = ("insert_events", "known_commands", "due_deadlines", "read_clock", "head",
               "select_events", "select_events_many", "select_notifications")


def _time_store_calls(recorder: Any) -> list[float]:
    """Wrap the recorder's store calls (on this instance) to add up their time.

    What is left of a bulk apply without it is the Python work per command
    (parsing, rules, encoding): the apply's rate with a store that cost
    nothing, which bounds its ratio to the raw insert from above.
    """
    total = [0.0]

    def timed(fn: Callable) -> Callable:
        def call(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                total[0] += time.perf_counter() - t
        return call

    for name in STORE_CALLS:
        if hasattr(recorder, name):
            setattr(recorder, name, timed(getattr(recorder, name)))
    return total


@scenario("raw_insert_bulk")
def raw_insert_bulk(a: argparse.Namespace) -> dict:
    """Baseline: executemany of the same rows, one transaction per 1000 commands' worth."""
    rows = stored_rows(built_ledger(a))
    lines = sum(1 for _ in open(commands_file(a), "rb"))
    per_txn = max(1, round(len(rows) * 1000 / max(lines, 1)))
    db = Path(a.work) / "raw-bulk.db"
    db.unlink(missing_ok=True)
    con = fresh_events_table(db)
    t = time.perf_counter()
    for i in range(0, len(rows), per_txn):
        con.execute("BEGIN")
        con.executemany("INSERT INTO stored_events VALUES (?, ?, ?, ?)", rows[i:i + per_txn])
        con.execute("COMMIT")
    secs = time.perf_counter() - t
    con.close()
    return {"events": len(rows), "seconds": secs}


@scenario("apply_single")
def apply_single(a: argparse.Namespace) -> dict:
    """One command per call, each durable before it returns."""
    from ledger.application import Ledger

    lines = open(commands_file(a), "rb").read().splitlines()[: a.single]
    db = _fresh(Path(a.work) / "apply-single.db")
    t = time.perf_counter()
    with Ledger(str(db)) as led:
        for line in lines:
            led.execute(line)
        events = led.head()
    return {"events": events, "seconds": time.perf_counter() - t, "commands": len(lines)}


@scenario("raw_insert_single")
def raw_insert_single(a: argparse.Namespace) -> dict:
    """Baseline: the same number of rows, one transaction per row."""
    rows = stored_rows(built_ledger(a))
    lines = sum(1 for _ in open(commands_file(a), "rb"))
    n = max(1, round(a.single * len(rows) / max(lines, 1)))
    rows = rows[:n]
    db = Path(a.work) / "raw-single.db"
    db.unlink(missing_ok=True)
    con = fresh_events_table(db)
    t = time.perf_counter()
    for row in rows:
        con.execute("BEGIN")
        con.execute("INSERT INTO stored_events VALUES (?, ?, ?, ?)", row)
        con.execute("COMMIT")
    secs = time.perf_counter() - t
    con.close()
    return {"events": len(rows), "seconds": secs}


def _latency(fn: Callable[[], Any], n: int) -> dict:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return {"median_ms": statistics.median(times),
            "p99_ms": times[min(len(times) - 1, int(len(times) * 0.99))], "calls": n}


@scenario("show_latency")
def show_latency(a: argparse.Namespace) -> dict:
    from bench.generate import order_id
    from ledger.application import Ledger

    db = built_ledger(a)
    with Ledger(str(db)) as led:
        k = [0]

        def one() -> None:
            k[0] = (k[0] + 7919) % a.orders
            led.order(order_id(k[0])).view()

        return _latency(one, 300)


@scenario("tick_nothing_due")
def tick_nothing_due(a: argparse.Namespace) -> dict:
    from ledger.application import Ledger

    db = Path(a.work) / "tick.db"
    shutil.copy(built_ledger(a), db)
    with Ledger(str(db)) as led:
        start = led.now() + timedelta(days=1)
        led.tick(start)
        k = [0]

        def one() -> None:
            k[0] += 1
            led.tick(start + timedelta(seconds=k[0]))

        return _latency(one, 200)


@scenario("tick_one_percent_due")
def tick_one_percent_due(a: argparse.Namespace) -> dict:
    """1 % of N orders placed, then one tick ends all their holds."""
    import msgspec

    from ledger.application import Ledger

    db = Path(a.work) / "tick1.db"
    shutil.copy(built_ledger(a), db)
    n = max(1, a.orders // 100)
    with Ledger(str(db)) as led:
        start = led.now() + timedelta(days=1)
        lines = []
        for i in range(n):
            lines.append(msgspec.json.encode({
                "type": "place", "at": (start + timedelta(seconds=i)).isoformat(),
                "order_id": f"999-{i:07d}-0000001", "currency": "SEK",
                "ship_service_level": "Standard",
                "items": [{"order_item_id": "1", "sku": "T-1", "title": "t", "quantity": 1,
                           "item_price": "1.00"}],
                "buyer": {"name": "B", "language": "sv-SE"},
                "ship_to": {"name": "B", "address_1": "a", "city": "c", "postal_code": "1",
                            "country": "SE"}}))
        for _ in led.apply_lines(lines):
            pass
        t = time.perf_counter()
        out = led.tick(start + timedelta(hours=1))
        ms = (time.perf_counter() - t) * 1000
    return {"events": len(out.events), "seconds": ms / 1000, "median_ms": ms, "p99_ms": ms,
            "calls": 1}


def _pg_url(a: argparse.Namespace) -> tuple[str, str]:
    """The run's PostgreSQL schema (shared by the pg_* scenarios) and its URL."""
    import hashlib

    schema = "bench_" + hashlib.sha1(a.work.encode()).hexdigest()[:10]
    return schema, f"{a.pg}{'&' if '?' in a.pg else '?'}schema={schema}"


def _pg_drop(a: argparse.Namespace) -> None:
    import psycopg

    schema, _ = _pg_url(a)
    with psycopg.connect(a.pg, autocommit=True) as con:
        con.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@scenario("pg_apply_bulk")
def pg_apply_bulk(a: argparse.Namespace) -> dict:
    """Bulk apply on PostgreSQL; the ledger is kept for pg_rebuild."""
    if not a.pg:
        return {"skipped": "no --pg URL"}
    from ledger.application import Ledger

    _pg_drop(a)
    t = time.perf_counter()
    with Ledger(_pg_url(a)[1]) as led, open(commands_file(a), "rb") as f:
        for _ in led.apply_lines(f):
            pass
        events = led.head()
    return {"events": events, "seconds": time.perf_counter() - t}


# --- read side ---------------------------------------------------------------------


def _views_copy(a: argparse.Namespace, name: str) -> tuple[Path, Path]:
    """A copy of the built ledger and a path for its views."""
    db = Path(a.work) / f"{name}.db"
    shutil.copy(built_ledger(a), db)
    views = Path(a.work) / f"{name}.views.db"
    for p in Path(a.work).glob(f"{name}.views.db*"):
        p.unlink()
    return db, views


def _rebuild(a: argparse.Namespace, name: str, jobs: int) -> dict:
    from ledger.application import Ledger
    from projections import BlockingViews

    db, views = _views_copy(a, name)
    with Ledger(str(db)) as led:
        t = time.perf_counter()
        r = BlockingViews(led, str(views), jobs=jobs).rebuild()
        return {"events": r.events, "seconds": time.perf_counter() - t}


@scenario("rebuild")
def rebuild(a: argparse.Namespace) -> dict:
    """Full rebuild of all projections, one process (the Python API's default)."""
    return _rebuild(a, "rebuild", jobs=1)


@scenario("rebuild_parallel")
def rebuild_parallel(a: argparse.Namespace) -> dict:
    """Full rebuild as the CLI runs it (two worker processes on a SQLite ledger)."""
    return _rebuild(a, "rebuildp", jobs=2)


@scenario("rebuild_again")
def rebuild_again(a: argparse.Namespace) -> dict:
    """``order-ledger rebuild`` of all views over built ones, as after a change of the
    views' code, in two processes (the CLI's default): the audit index, built and
    current, is kept and caught up rather than rebuilt (docs/projections.md)."""
    from ledger.application import Ledger
    from projections import BlockingViews

    db, views = _views_copy(a, "rebuilda")
    with Ledger(str(db)) as led:
        BlockingViews(led, str(views), jobs=2).rebuild()  # the views as they were
        t = time.perf_counter()
        r = BlockingViews(led, str(views), jobs=2).rebuild()
        return {"events": r.events, "seconds": time.perf_counter() - t,
                "rebuilt": r.rebuilt}


@scenario("rebuild_no_writes")
def rebuild_no_writes(a: argparse.Namespace) -> dict:
    """The one-process rebuild with every row discarded instead of written.

    Reading, decoding, the five views' handlers and building the rows, and
    nothing stored: the rate a rebuild would reach if SQLite cost nothing,
    which bounds its ratio to raw read+decode from above. (Records dropped
    from memory are then not found again: about 2 % of the events, which
    only makes this bound more generous.)
    """
    from projections import views

    async def discard(db: Any, ops: list) -> None:
        return None

    views.Views._write = staticmethod(discard)  # this child process only
    result = _rebuild(a, "rebuildnw", jobs=1)
    con = sqlite3.connect(Path(a.work) / "rebuildnw.views.db")
    result["rows_written"] = con.execute("SELECT (SELECT count(*) FROM orders)"
                                         " + (SELECT count(*) FROM audit)").fetchone()[0]
    con.close()
    return result


@scenario("raw_read_decode")
def raw_read_decode(a: argparse.Namespace) -> dict:
    """Baseline: read every stored event with sqlite3 and decode it with msgspec."""
    from ledger.codec import decode_payload

    db = built_ledger(a)
    t = time.perf_counter()
    con = sqlite3.connect(db)
    n = 0
    for topic, state in con.execute("SELECT topic, state FROM stored_events ORDER BY rowid"):
        decode_payload(topic, state)
        n += 1
    con.close()
    return {"events": n, "seconds": time.perf_counter() - t}


@scenario("naive_rebuild")
def naive_rebuild(a: argparse.Namespace) -> dict:
    """Baseline: a projection the way a library user would write it.

    The library's notification log read section by section (its default
    section size, 10), each event turned
    into a domain event by the application's mapper, and a Manage Orders row
    upserted with the position, committing once per event. Capped at
    ``--naive-events`` events to bound the run time.
    """
    from ledger.application import Ledger

    db = built_ledger(a)
    out = Path(a.work) / "naive.views.db"
    out.unlink(missing_ok=True)
    con = sqlite3.connect(out)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE orders (order_id TEXT PRIMARY KEY, status TEXT, doc TEXT)")
    con.execute("CREATE TABLE tracking (id INTEGER PRIMARY KEY CHECK (id = 1), position INTEGER)")
    n = 0
    with Ledger(str(db)) as led:
        log = led.app.notification_log
        t = time.perf_counter()
        start = 1
        while n < a.naive_events:
            section = log.select(start, log.section_size)
            if not section:
                break
            start = section[-1].id + 1
            for notification in section:
                n += 1
                _naive_apply(con, led.mapper.to_domain_event(notification), notification.id)
        secs = time.perf_counter() - t
    con.close()
    return {"events": n, "seconds": secs}


def _naive_apply(con: sqlite3.Connection, event: Any, position: int) -> None:
    """Upsert the order's row and the tracking position; commit per event."""
    p = event.payload
    if hasattr(p, "order_id") and hasattr(p, "status"):
        con.execute("INSERT INTO orders VALUES (?, ?, ?) ON CONFLICT (order_id) DO UPDATE "
                    "SET status = excluded.status, doc = excluded.doc",
                    (p.order_id, p.status, type(p).__name__))
    con.execute("INSERT OR REPLACE INTO tracking VALUES (1, ?)", (position,))
    con.commit()


@scenario("catch_up_one_percent")
def catch_up_one_percent(a: argparse.Namespace) -> dict:
    """Views built on 99 % of the commands; the last 1 % applied; then one catch-up.

    Also the latency of catching up one command's events with the views kept
    open, as ``follow`` or a server keeps them.
    """
    import asyncio

    from ledger.application import Ledger
    from projections import Views

    lines = open(commands_file(a), "rb").read().splitlines()
    cut = len(lines) - max(1, len(lines) // 100)
    db = Path(a.work) / "catchup.db"
    views = Path(a.work) / "catchup.views.db"
    for p in Path(a.work).glob("catchup.*"):
        p.unlink()

    async def run(led: Ledger) -> dict:
        async with Views(led, str(views), jobs=1) as v:
            await v.rebuild()
            before = led.head()
            for _ in led.apply_lines(lines[cut:]):
                pass
            t = time.perf_counter()
            r = await v.sync()
            secs = time.perf_counter() - t
            start = led.now() + timedelta(days=60)
            times = []
            for i in range(100):
                led.execute({"type": "set-inventory",
                             "at": (start + timedelta(seconds=i)).isoformat(),
                             "sku": "BENCH-1", "quantity": i})
                t1 = time.perf_counter()
                await v.sync()
                times.append((time.perf_counter() - t1) * 1000)
        times.sort()
        return {"events": r.events, "seconds": secs, "from_position": before,
                "median_ms": statistics.median(times), "p99_ms": times[98],
                "latency": "catch-up of one command's events, views kept open"}

    with Ledger(str(db)) as led:
        for _ in led.apply_lines(lines[:cut]):
            pass
        return asyncio.run(run(led))


@scenario("history_latency")
def history_latency(a: argparse.Namespace) -> dict:
    from bench.generate import order_id
    from ledger.application import Ledger
    from replay.history import order_history

    with Ledger(str(built_ledger(a))) as led:
        k = [0]

        def one() -> None:
            k[0] = (k[0] + 7919) % a.orders
            order_history(led, order_id(k[0]))

        return _latency(one, 300)


@scenario("reports")
def reports(a: argparse.Namespace) -> dict:
    """Both report files for N orders, from built views."""
    from ledger.application import Ledger
    from projections import BlockingViews

    db, views = _views_copy(a, "reports")
    with Ledger(str(db)) as led:
        v = BlockingViews(led, str(views), jobs=1)
        v.rebuild()
        at = led.now()
        t = time.perf_counter()
        orders = v.report_orders(at)
        unshipped = v.report_unshipped(at)
        secs = time.perf_counter() - t
    rows = orders.count("\n") + unshipped.count("\n") - 2
    return {"events": rows, "seconds": secs, "rows": rows, "bytes": len(orders) + len(unshipped),
            "median_ms": secs * 1000, "p99_ms": secs * 1000, "calls": 1}


@scenario("pg_rebuild")
def pg_rebuild(a: argparse.Namespace) -> dict:
    """Full rebuild of all projections reading a PostgreSQL ledger."""
    if not a.pg:
        return {"skipped": "no --pg URL"}
    from ledger.application import Ledger
    from projections import BlockingViews

    views = Path(a.work) / "pg.views.db"
    for p in Path(a.work).glob("pg.views.db*"):
        p.unlink()
    with Ledger(_pg_url(a)[1]) as led:
        empty = led.head() == 0
    if empty:
        # run alone (or before it, with --repeat): the bulk apply builds the ledger
        # in a process of its own, so this one's peak RSS is the rebuild's
        built = run_child("pg_apply_bulk", a)
        if "error" in built:
            raise RuntimeError(f"building the PostgreSQL ledger failed: {built['error']}")
    with Ledger(_pg_url(a)[1]) as led:
        t = time.perf_counter()
        r = BlockingViews(led, str(views), jobs=1).rebuild()
        secs = time.perf_counter() - t
    return {"events": r.events, "seconds": secs}


BASELINES = {
    "apply_bulk": "raw_insert_bulk",
    "apply_single": "raw_insert_single",
    "pg_apply_bulk": "raw_insert_bulk",
    "rebuild": "raw_read_decode",
    "rebuild_parallel": "raw_read_decode",
    "rebuild_no_writes": "raw_read_decode",
    "rebuild_again": "raw_read_decode",
    "pg_rebuild": "raw_read_decode",
}
#: scenarios whose rebuild forks worker processes (their peak RSS is reported too)
FORKS_WORKERS = {"rebuild_parallel", "rebuild_again"}
#: second comparisons: (scenario, other baseline)
VERSUS = [("rebuild", "naive_rebuild"), ("rebuild_parallel", "naive_rebuild")]


# --- driver -----------------------------------------------------------------------


def run_child(name: str, a: argparse.Namespace) -> dict:
    cmd = [sys.executable, "-m", "bench.run", "--child", name, "--orders", str(a.orders),
           "--seed", str(a.seed), "--work", a.work, "--single", str(a.single),
           "--naive-events", str(a.naive_events)]
    if a.pg:
        cmd += ["--pg", a.pg]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def median_run(runs: list[dict]) -> dict:
    """The run with the median time (seconds, or median latency) of one scenario's
    runs, with every run's figure under ``runs`` when there were several; a failed
    run makes the scenario failed."""
    failed = [r for r in runs if "error" in r or "skipped" in r]
    if failed or len(runs) == 1:
        return failed[0] if failed else runs[0]
    key = "seconds" if all(r.get("seconds") for r in runs) else "median_ms"
    ordered = sorted(runs, key=lambda r: r.get(key) or 0.0)
    chosen = dict(ordered[(len(ordered) - 1) // 2])
    chosen["runs"] = [r.get(key) for r in runs]
    return chosen


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description="Order Ledger benchmark")
    p.add_argument("--orders", type=int, default=2000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--single", type=int, default=1000, help="commands in the one-per-call scenario")
    p.add_argument("--naive-events", type=int, default=20_000,
                   help="events the naive baseline processes at most")
    p.add_argument("--work", default=None, help="work directory (default: a temporary one)")
    p.add_argument("--out", default=None, help="write the JSON results here")
    p.add_argument("--pg", default=os.environ.get("ORDER_LEDGER_BENCH_PG"),
                   help="PostgreSQL URL for the pg_* scenarios")
    p.add_argument("--only", nargs="*", default=None, help="run only these scenarios")
    p.add_argument("--repeat", type=int, default=1,
                   help="run every scenario this many times, in alternating order, and "
                        "report each one's median run (a noisy machine)")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        result = SCENARIOS[a.child](a)
        result["peak_rss_mb"] = round(peak_rss_mb(), 1)
        # the largest peak of the rebuild workers it forked (pg_rebuild's child that
        # builds its ledger is not one of them)
        workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        if workers and a.child in FORKS_WORKERS:
            result["workers_peak_rss_mb"] = round(workers, 1)
        print(json.dumps(result))
        return result
    tmp = None
    if a.work is None:
        tmp = tempfile.mkdtemp(prefix="order-ledger-bench-")
        a.work = tmp
    Path(a.work).mkdir(parents=True, exist_ok=True)
    commands_file(a)  # the ledger itself is built by apply_bulk (or the first scenario needing it)
    names = a.only or list(SCENARIOS)
    runs: dict[str, list[dict]] = {name: [] for name in names}
    for k in range(max(1, a.repeat)):
        # alternate the order so that no scenario always runs right after the same one
        for name in (names if k % 2 == 0 else names[::-1]):
            runs[name].append(run_child(name, a))
    results = {name: median_run(runs[name]) for name in names}
    if a.pg and any(name.startswith("pg_") for name in names):
        _pg_drop(a)  # the ledger pg_apply_bulk left for pg_rebuild
    for r in results.values():
        if r.get("events") and r.get("seconds"):
            r["events_per_s"] = round(r["events"] / r["seconds"], 1)
    for name, base in BASELINES.items():
        r, b = results.get(name), results.get(base)
        if r and b and r.get("events_per_s") and b.get("events_per_s"):
            r["baseline"] = base
            r["ratio"] = round(r["events_per_s"] / b["events_per_s"], 3)
            if r.get("store_seconds") is not None and r["seconds"] > r["store_seconds"]:
                # the same ratio with the store's time taken out (a ceiling)
                r["ratio_without_store"] = round(
                    r["events"] / (r["seconds"] - r["store_seconds"]) / b["events_per_s"], 3)
    for name, base in VERSUS:
        r, b = results.get(name), results.get(base)
        if r and b and r.get("events_per_s") and b.get("events_per_s"):
            r[f"vs_{base}"] = round(r["events_per_s"] / b["events_per_s"], 1)
    report = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cores, "
                   f"Python {platform.python_version()}",
        "orders": a.orders, "seed": a.seed, "repeat": max(1, a.repeat), "scenarios": results,
    }
    print_table(report)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(report, indent=2))
    if tmp:
        shutil.rmtree(tmp, ignore_errors=True)
    return report


def print_table(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    title = f"Order Ledger benchmark, N = {report['orders']} orders ({report['date']})"
    if report.get("repeat", 1) > 1:
        title += f", median of {report['repeat']} runs"
    table = Table(title=title)
    for col in ("scenario", "events", "seconds", "events/s", "median ms", "p99 ms",
                "peak RSS MB", "vs baseline"):
        table.add_column(col)

    def f(v: Any, spec: str = ".2f") -> str:
        return "" if v is None else format(v, spec) if isinstance(v, (int, float)) else str(v)

    def peak(r: dict) -> str:
        text = f(r.get("peak_rss_mb"), ".0f")
        if r.get("workers_peak_rss_mb"):
            text += f" (workers {r['workers_peak_rss_mb']:.0f})"
        return text

    for name, r in report["scenarios"].items():
        if "error" in r or "skipped" in r:
            table.add_row(name, r.get("error") or r.get("skipped"), "", "", "", "", "", "")
            continue
        ratio = f"{r['ratio']:.2f}× {r['baseline']}" if "ratio" in r else ""
        if "ratio_without_store" in r:
            ratio += f" ({r['ratio_without_store']:.2f}× without the store's time)"
        for key, v in r.items():
            if key.startswith("vs_"):
                ratio += f"; {v:.1f}× {key[3:]}"
        table.add_row(name, f(r.get("events"), "d"), f(r.get("seconds"), ".3f"),
                      f(r.get("events_per_s"), ",.0f"), f(r.get("median_ms"), ".2f"),
                      f(r.get("p99_ms"), ".2f"), peak(r), ratio)
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
