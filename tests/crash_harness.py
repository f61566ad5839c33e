"""Crash harness: SIGKILL ``order-ledger apply`` at random points, re-run, verify.

    python -m tests.crash_harness --kills 100                 # the long run, by hand
    python -m tests.crash_harness --kills 8 --orders 60       # about what CI runs
    python -m tests.crash_harness --kills 20 --db postgresql://postgres@127.0.0.1:5432/test
    python -m tests.crash_harness --kills 20 --encrypt        # with a fresh cipher key
    python -m tests.crash_harness --kills 20 --no-views       # the ledger only

A realistic command file (``bench.generate``: every line is meant to be
accepted, every line has a ``command_id``; one tick in eight kept) is applied
once, cleanly, to a reference ledger. Then, round after round on a fresh ledger, the harness
starts ``order-ledger apply --json FILE`` in a subprocess, reads its stdout
(each JSON line is an acknowledged line) and SIGKILLs it at a random point:
after a random delay, or right after the k-th acknowledgement. It re-runs the
same file on the same ledger until a run completes. After every kill it checks

- every line acknowledged as ``applied`` (in any run) is in ``ledger_commands``
  and has its events (**lost** otherwise);
- no command id was acknowledged as ``applied`` by two runs (**duplicated**);
- the SQLite positions are ``1..N`` without gaps.

The views are killed too (unless ``--no-views``): ``order-ledger follow``
runs beside half of the writers and is SIGKILLed at a random time, and after
a writer's kill a ``sync`` or ``rebuild`` is started and killed; after each,
no view's checkpoint may be ahead of the ledger's head.

At the end of each round ``order-ledger sync`` and then ``order-ledger
check`` (ledger and views: the views must equal a replay of the events) must
pass, and the final state must equal the clean run: the same events in the same order
(decoded payloads), the same command ids, every order's ``view()`` and every
SKU's available quantity.

Exit status 0 when nothing was lost, duplicated or different; 1 otherwise.
``--json`` prints the figures as one JSON object (docs/reliability.md quotes
them).
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
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import msgspec  # noqa: E402

from ledger.application import Ledger, ledger_exists  # noqa: E402
from ledger.check import check_ledger, read_commands  # noqa: E402
from ledger.domain import ORDER_PREFIX, SKU_PREFIX, Inventory, Order  # noqa: E402
from ledger.sqlite import LedgerSQLiteRecorder  # noqa: E402
from ledger.store import is_postgres  # noqa: E402

CLI = [sys.executable, "-c", "from order_ledger.cli import main; main()"]
PG_DEFAULT = os.environ.get("ORDER_LEDGER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


# --- long tests stay out of the default run ----------------------------------------------------

SLOW_ENV = "ORDER_LEDGER_SLOW_TESTS"


def _slow_gate_fixture():
    import pytest

    @pytest.fixture(autouse=True)
    def slow_gate(request: Any) -> None:
        """Skip ``@pytest.mark.slow`` tests unless ``-m slow`` or ORDER_LEDGER_SLOW_TESTS=1."""
        if request.node.get_closest_marker("slow") is None or os.environ.get(SLOW_ENV):
            return
        if "slow" in (request.config.getoption("markexpr") or "").replace("not slow", ""):
            return
        pytest.skip(f"long test: run with -m slow or {SLOW_ENV}=1")

    return slow_gate


try:
    slow_gate = _slow_gate_fixture()
except ImportError:  # pragma: no cover - pytest is not needed to run the harness
    slow_gate = None


# --- the state of a ledger, for comparing runs ---------------------------------------------


def _canonical(payload: Any) -> bytes:
    # without recorded_at: two runs of one file commit at different moments
    return msgspec.json.encode(msgspec.structs.replace(payload, recorded_at=None),
                               order="sorted")


def snapshot(db: str) -> dict[str, Any]:
    """Everything a clean run and a crashed-and-resumed run must agree on.

    ``recorded`` (each event's recording time) is kept apart: :func:`differences`
    ignores it, a byte copy (a backup) must agree on it too."""
    with Ledger(db) as led:
        rows = list(led.iter_events())
        events = [(agg, type(p).__name__, _canonical(p)) for _, agg, p in rows]
        recorded = [p.recorded_at for _, _, p in rows]
        order_ids = led.recorder.aggregate_ids(ORDER_PREFIX)
        sku_ids = led.recorder.aggregate_ids(SKU_PREFIX)
        aggs = led.load_many(order_ids + sku_ids)
        orders = {k: a.view() for k, a in aggs.items() if isinstance(a, Order)}
        inventory = {k: a.available for k, a in aggs.items() if isinstance(a, Inventory)}
        commands = {r[0] for r in read_commands(led)}
        return {"events": events, "recorded": recorded, "orders": orders, "inventory": inventory,
                "commands": commands, "head": led.head(),
                "clock": led.now().isoformat() if led.now() else None}


def differences(a: dict[str, Any], b: dict[str, Any], limit: int = 10) -> list[str]:
    """What differs between two snapshots (empty when equal)."""
    out: list[str] = []
    if len(a["events"]) != len(b["events"]):
        out.append(f"{len(a['events'])} events vs {len(b['events'])}")
    for i, (x, y) in enumerate(zip(a["events"], b["events"])):
        if x != y:
            out.append(f"event #{i + 1} differs: {x[:2]} vs {y[:2]}")
            break
    for key in ("orders", "inventory"):
        for k in sorted(set(a[key]) | set(b[key])):
            if a[key].get(k) != b[key].get(k):
                out.append(f"{key} {k}: {a[key].get(k)!r} vs {b[key].get(k)!r}"[:300])
                if len(out) >= limit:
                    return out
    if a["commands"] != b["commands"]:
        out.append(f"command ids differ: {len(a['commands'] - b['commands'])} only in the first, "
                   f"{len(b['commands'] - a['commands'])} only in the second")
    if a["clock"] != b["clock"]:
        out.append(f"clock {a['clock']} vs {b['clock']}")
    return out


# --- one run of the CLI, killed or not -------------------------------------------------------


@dataclass
class Run:
    acks: list[dict]
    killed: bool
    returncode: int | None
    stderr: str
    seconds: float
    kill_mode: str | None = None


def run_apply(db: str, path: str, batch_size: int, *, kill_after_acks: int | None = None,
              kill_after_seconds: float | None = None, env: dict[str, str] | None = None) -> Run:
    """Run ``order-ledger apply --json``; kill it after k acks or t seconds if asked."""
    cmd = CLI + ["apply", "--json", "--batch-size", str(batch_size), "--db", db, path]
    full_env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=str(ROOT), env=full_env)
    killed = threading.Event()

    def kill() -> None:
        if proc.poll() is None:
            killed.set()
            proc.send_signal(signal.SIGKILL)

    timer = None
    if kill_after_seconds is not None:
        timer = threading.Timer(kill_after_seconds, kill)
        timer.start()
    err_chunks: list[bytes] = []
    err_thread = threading.Thread(target=lambda: err_chunks.append(proc.stderr.read()))  # type: ignore[union-attr]
    err_thread.start()
    acks: list[dict] = []
    assert proc.stdout is not None
    for raw in proc.stdout:
        if not raw.endswith(b"\n"):
            break  # a line cut by the kill was never acknowledged
        try:
            acks.append(json.loads(raw))
        except ValueError:
            continue
        if kill_after_acks is not None and len(acks) >= kill_after_acks:
            kill()
    proc.wait()
    if timer is not None:
        timer.cancel()
    err_thread.join()
    return Run(acks, killed.is_set(), proc.returncode, b"".join(err_chunks).decode(errors="replace"),
               time.monotonic() - started)


# --- the views: sync, rebuild and follow killed too ----------------------------------------


def projections_available() -> bool:
    try:
        from projections import Views  # noqa: F401
    except ImportError:
        return False
    return True


def start_views(command: str, db: str, views: str, env: dict[str, str] | None = None
                ) -> subprocess.Popen:
    """Start ``order-ledger sync|rebuild|follow`` on the ledger's views."""
    small = ["--batch-size", "20"]  # many small transactions: many places to be killed
    args = {"sync": ["sync", "--quiet", *small],
            "rebuild": ["rebuild", "--quiet", "--jobs", "1", *small],
            "follow": ["follow", "--quiet", "--interval", "0.05", "--max-seconds", "120", *small]}
    return subprocess.Popen(CLI + args[command] + ["--db", db, "--views", views], cwd=str(ROOT),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=dict(os.environ, **(env or {})))


def kill_later(proc: subprocess.Popen, seconds: float) -> threading.Timer:
    timer = threading.Timer(seconds, lambda: proc.poll() is None and proc.send_signal(
        signal.SIGKILL))
    timer.start()
    return timer


def views_problems(db: str, views: str) -> list[str]:
    """After a kill: no view's checkpoint is ahead of the ledger's head."""
    import sqlite3

    if not os.path.exists(views):
        return []
    with Ledger(db) as led:
        head = led.head()
    with sqlite3.connect(f"file:{views}?mode=ro", uri=True, timeout=30) as conn:
        try:
            rows = conn.execute("SELECT name, position FROM checkpoints").fetchall()
        except sqlite3.OperationalError:
            return []  # killed before the tables existed
    return [f"view {name} checkpoint {pos} is ahead of the head {head}"
            for name, pos in rows if pos > head]


# --- checks after each kill ----------------------------------------------------------------


def quick_check(db: str, applied: dict[str, int]) -> tuple[list[str], int]:
    """Acknowledged-applied ids present with their events; SQLite positions contiguous."""
    problems: list[str] = []
    with Ledger(db) as led:
        known = {r[0] for r in read_commands(led)}
        lost = [cid for cid in applied if cid not in known]
        if lost:
            problems.append(f"{len(lost)} acknowledged command(s) not in the store, e.g. {lost[:3]}")
        if isinstance(led.recorder, LedgerSQLiteRecorder):
            rows = led.recorder._rows(
                f"SELECT COUNT(*), COALESCE(MAX(rowid), 0) FROM {led.recorder.events_table_name}")
            count, top = rows[0]
            if count != top:
                problems.append(f"positions have gaps: {count} events, highest position {top}")
        return problems, len(lost)


def _acked_applied_without_events(db: str, applied: dict[str, int], ticks: set[str]) -> list[str]:
    with Ledger(db) as led:
        event_ids = {p.command_id for _, _, p in led.iter_events()}
    return [cid for cid in applied if cid not in event_ids and cid not in ticks]


# --- the harness ---------------------------------------------------------------------------


@dataclass
class Report:
    kills: int = 0
    runs: int = 0
    rounds: int = 0
    lines: int = 0
    acknowledged: int = 0
    acknowledged_applied: int = 0
    lost: int = 0
    duplicated: int = 0
    mismatched_rounds: int = 0
    committed_unacknowledged: int = 0
    check_problems: int = 0
    tracebacks: int = 0
    kill_modes: Counter = field(default_factory=Counter)
    view_kills: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    backend: str = "sqlite"
    encrypted: bool = False

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.mismatched_rounds or self.check_problems
                    or self.tracebacks or self.problems)

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items()}
        out["kill_modes"] = dict(self.kill_modes)
        out["view_kills"] = dict(self.view_kills)
        out["ok"] = self.ok
        return out


def _fresh_location(base: str, workdir: Path, name: str) -> str:
    if is_postgres(base):
        root = base.split("?schema=")[0].split("&schema=")[0]
        sep = "&" if "?" in root else "?"
        return f"{root}{sep}schema=crash_{uuid.uuid4().hex[:8]}_{name}"
    return str(workdir / f"{name}.db")


def _drop(location: str) -> None:
    if not is_postgres(location):
        return
    import psycopg

    schema = location.rsplit("schema=", 1)[1].split("&")[0]
    url = location.split("?")[0]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _write_workload(path: Path, orders: int, seed: int, tick_every: int = 8) -> list[dict]:
    """``bench.generate``'s stream, keeping one tick in ``tick_every`` (it ticks every 30
    minutes for nine weeks: most lines would be ticks; deadlines still fall due)."""
    from bench.generate import generate

    cmds = generate(orders, seed)
    ticks = 0
    kept = []
    for c in cmds:
        if c["type"] == "tick":
            ticks += 1
            if ticks % tick_every:
                continue
        kept.append(c)
    cmds = kept
    with open(path, "w", encoding="utf-8") as f:
        for c in cmds:
            f.write(json.dumps(c, ensure_ascii=False, separators=(",", ":")) + "\n")
    return cmds


def harness(kills: int, *, orders: int = 60, seed: int = 1, batch_size: int = 25,
            db: str | None = None, workdir: str | None = None, encrypt: bool = False,
            verbose: bool = False, rng_seed: int | None = None,
            views: bool | None = None, tick_every: int = 8) -> Report:
    """Kill and re-run ``apply`` ``kills`` times; see the module docstring."""
    started = time.monotonic()
    rng = random.Random(rng_seed if rng_seed is not None else seed)
    report = Report(backend="postgresql" if db and is_postgres(db) else "sqlite", encrypted=encrypt)
    tmp = Path(workdir or tempfile.mkdtemp(prefix="crash-harness-"))
    tmp.mkdir(parents=True, exist_ok=True)
    env: dict[str, str] = {}
    old_key = os.environ.get("ORDER_LEDGER_CIPHER_KEY")
    if encrypt:
        from eventsourcing.cryptography import AESCipher

        env["ORDER_LEDGER_CIPHER_KEY"] = os.environ["ORDER_LEDGER_CIPHER_KEY"] = \
            AESCipher.create_key(32)
    base = db or str(tmp / "ledger.db")
    created: list[str] = []
    if views is None:
        views = projections_available()
    try:
        path = tmp / "commands.jsonl"
        cmds = _write_workload(path, orders, seed, tick_every)
        report.lines = len(cmds)
        ticks = {c["command_id"] for c in cmds if c["type"] == "tick"}
        ref_db = _fresh_location(base, tmp, "reference")
        created.append(ref_db)
        ref_run = run_apply(ref_db, str(path), batch_size, env=env)
        if ref_run.returncode != 0 or any(a["status"] != "applied" for a in ref_run.acks):
            raise RuntimeError(f"the clean run did not apply every line: rc={ref_run.returncode} "
                               f"{ref_run.stderr[-500:]}")
        reference = snapshot(ref_db)
        full_time = ref_run.seconds
        views_time = 1.0
        if views:  # how long a full rebuild takes here: views are killed within that
            began = time.monotonic()
            start_views("rebuild", ref_db, str(tmp / "reference.views.db"), env).wait()
            views_time = time.monotonic() - began
        round_no = 0
        while report.kills < kills:
            round_no += 1
            report.rounds += 1
            led_db = _fresh_location(base, tmp, f"round{round_no}")
            created.append(led_db)
            views_file = str(tmp / f"round{round_no}.views.db")
            applied_by_run: dict[str, int] = {}
            run_no = 0
            while True:
                run_no += 1
                report.runs += 1
                mode = None
                k = t = None
                if report.kills < kills:
                    mode = rng.choice(["after-acks", "after-seconds"])
                    if mode == "after-acks":
                        k = rng.randint(1, len(cmds))
                    else:
                        t = rng.uniform(0.05, full_time * 1.1)
                follower = None
                # follow needs a ledger: on PostgreSQL a first run killed early may not
                # have created the schema yet
                exists = ledger_exists(led_db)
                if views and exists and rng.random() < 0.5:  # the views follow the writer
                    follower = start_views("follow", led_db, views_file, env)
                    follow_timer = kill_later(follower, rng.uniform(0.3, full_time))
                run = run_apply(led_db, str(path), batch_size, kill_after_acks=k,
                                kill_after_seconds=t, env=env)
                if follower is not None:
                    follow_timer.cancel()
                    if follower.poll() is None:
                        follower.send_signal(signal.SIGKILL)
                    follower.wait()
                    err = follower.stderr.read().decode(errors="replace")  # type: ignore[union-attr]
                    if follower.returncode == -signal.SIGKILL:
                        report.view_kills["follow"] += 1
                    elif "Traceback" in err or follower.returncode:
                        report.problems.append(f"follow ended with {follower.returncode}: "
                                               f"{err[-500:]}")
                    report.problems.extend(views_problems(led_db, views_file))
                report.acknowledged += len(run.acks)
                if "Traceback" in run.stderr:
                    report.tracebacks += 1
                    report.problems.append(f"traceback in run {report.runs}: {run.stderr[-800:]}")
                for a in run.acks:
                    if a.get("status") == "applied":
                        report.acknowledged_applied += 1
                        cid = a["command_id"]
                        if cid in applied_by_run:
                            report.duplicated += 1
                            report.problems.append(
                                f"{cid} acknowledged as applied by run {applied_by_run[cid]} and "
                                f"run {run_no}")
                        applied_by_run[cid] = run_no
                    elif a.get("status") == "rejected":
                        report.problems.append(f"line {a.get('line')} rejected: {a.get('error')}")
                if run.killed:
                    report.kills += 1
                    report.kill_modes[mode or "?"] += 1
                    problems, lost = quick_check(led_db, applied_by_run)
                    report.lost += lost
                    report.problems.extend(problems)
                    if verbose:
                        print(f"kill {report.kills}: {mode} k={k} t={t and round(t, 2)} "
                              f"acks={len(run.acks)} applied so far={len(applied_by_run)}",
                              file=sys.stderr)
                    if views and rng.random() < 0.6:  # kill a catch-up or a rebuild too
                        what = rng.choice(["sync", "rebuild"])
                        proc = start_views(what, led_db, views_file, env)
                        timer = kill_later(proc, rng.uniform(0.55, 1.0) * views_time)
                        proc.wait()
                        timer.cancel()
                        err = proc.stderr.read().decode(errors="replace")  # type: ignore[union-attr]
                        if proc.returncode == -signal.SIGKILL:
                            report.view_kills[what] += 1
                        elif proc.returncode != 0 or "Traceback" in err:
                            report.problems.append(f"{what} ended with {proc.returncode}: "
                                                   f"{err[-500:]}")
                        report.problems.extend(views_problems(led_db, views_file))
                    continue
                if run.returncode != 0:
                    report.problems.append(f"run {report.runs} ended with {run.returncode}: "
                                           f"{run.stderr[-500:]}")
                    break
                break
            if views:  # a clean catch-up, then the views must equal a replay of the events
                sync = subprocess.run(CLI + ["sync", "--quiet", "--db", led_db, "--views",
                                             views_file], cwd=str(ROOT), capture_output=True,
                                      text=True, env=dict(os.environ, **env))
                checked = subprocess.run(CLI + ["check", "--json", "--db", led_db, "--views",
                                                views_file], cwd=str(ROOT), capture_output=True,
                                         text=True, env=dict(os.environ, **env))
                if sync.returncode != 0 or checked.returncode != 0:
                    report.check_problems += 1
                    report.problems.append(f"round {round_no}: views after sync: "
                                           f"{sync.stderr[-300:]} {checked.stdout[-800:]}")
            missing = _acked_applied_without_events(led_db, applied_by_run, ticks)
            if missing:
                report.lost += len(missing)
                report.problems.append(f"{len(missing)} acknowledged command(s) without events")
            with Ledger(led_db) as led:
                check = check_ledger(led)
            if not check.ok:
                report.check_problems += len(check.problems) + check.omitted
                report.problems.extend(f"round {round_no}: {p}" for p in check.problems[:10])
            diff = differences(snapshot(led_db), reference)
            if diff:
                report.mismatched_rounds += 1
                report.problems.extend(f"round {round_no}: {d}" for d in diff)
            # Lines committed by a run killed before it could print them come back as
            # "duplicate" in the next run: committed, never acknowledged, never twice.
            report.committed_unacknowledged += len(reference["commands"]) - len(applied_by_run)
            final = Counter(a.get("status") for a in run.acks)
            if final["applied"] + final["duplicate"] != len(cmds):
                report.problems.append(
                    f"round {round_no}: the completing run acknowledged {dict(final)} of "
                    f"{len(cmds)} lines")
            if verbose:
                print(f"round {round_no}: {run_no} runs, state equal: {not diff}, "
                      f"check ok: {check.ok}", file=sys.stderr)
    finally:
        for location in created:
            try:
                _drop(location)
            except Exception:  # noqa: BLE001 - best effort cleanup
                pass
        if encrypt:
            if old_key is None:
                os.environ.pop("ORDER_LEDGER_CIPHER_KEY", None)
            else:
                os.environ["ORDER_LEDGER_CIPHER_KEY"] = old_key
        if workdir is None:
            shutil.rmtree(tmp, ignore_errors=True)
    report.seconds = round(time.monotonic() - started, 1)
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kills", type=int, default=8, help="how many SIGKILLs in all")
    p.add_argument("--orders", type=int, default=60, help="orders in the generated workload")
    p.add_argument("--seed", type=int, default=1, help="workload and kill-point seed")
    p.add_argument("--batch-size", type=int, default=25, help="apply --batch-size")
    p.add_argument("--tick-every", type=int, default=8,
                   help="keep one of this many of the workload's 30-minute ticks")
    p.add_argument("--db", default=None,
                   help="a postgresql:// URL to run on PostgreSQL (fresh schemas, dropped after); "
                        "default: SQLite files in a temporary directory")
    p.add_argument("--workdir", default=None, help="keep files here instead of a temp dir")
    p.add_argument("--encrypt", action="store_true", help="run with a fresh cipher key")
    p.add_argument("--no-views", action="store_true",
                   help="do not run (and kill) sync, rebuild and follow of the views")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("-v", "--verbose", action="store_true")
    a = p.parse_args(argv)
    report = harness(a.kills, orders=a.orders, seed=a.seed, batch_size=a.batch_size, db=a.db,
                     workdir=a.workdir, encrypt=a.encrypt, verbose=a.verbose,
                     views=False if a.no_views else None, tick_every=a.tick_every)
    if a.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(f"{report.backend}{' (encrypted)' if report.encrypted else ''}: {report.kills} kills "
              f"survived in {report.rounds} rounds / {report.runs} runs of a {report.lines}-line "
              f"file; {report.acknowledged_applied} lines acknowledged as applied "
              f"({report.committed_unacknowledged} committed but killed before the "
              f"acknowledgement, reported as duplicates on the re-run); lost "
              f"{report.lost}, duplicated {report.duplicated}, rounds differing from the clean "
              f"run {report.mismatched_rounds}, check problems {report.check_problems}; "
              f"views killed: {dict(report.view_kills) or 'none'}; {report.seconds} s")
        for problem in report.problems[:30]:
            print("  " + problem)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
