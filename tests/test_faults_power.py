"""A power cut (issue 17, item 4): copies of the ledger file and its WAL taken at random
moments while a writer applies each open, pass ``check`` (hash chain included) and
hold every command the writer acknowledged before the copy was taken.

A power cut leaves the files as they are at one instant. The test takes that instant
by freezing the writer (SIGSTOP, a process this test started) while it copies
``ledger.db`` and ``ledger.db-wal`` (not ``-shm``: SQLite rebuilds the WAL index),
then lets it go on (SIGCONT). A frozen writer may be half-way through a transaction:
its frames are in the WAL without a commit frame, which SQLite ignores on opening --
as after a real cut. Acknowledged commits survive a real cut too because the ledger
runs SQLite with ``synchronous = FULL`` in WAL mode (the WAL is fsynced at every
commit, before ``apply`` prints the line), which the test asserts.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

from crash_harness import _write_workload
from ledger.application import Ledger

COPIES = int(os.environ.get("ORDER_LEDGER_POWER_COPIES", "6"))  # more by hand
ORDERS = int(os.environ.get("ORDER_LEDGER_POWER_ORDERS", "80"))  # with a longer workload


def _writer_is_durable(db: str) -> None:
    with Ledger(db) as led:
        with led.recorder.datastore.get_connection(commit=True) as conn:
            cur = conn.cursor()
            cur.execute("PRAGMA synchronous")
            assert tuple(cur.fetchone())[0] == 2  # FULL
            cur.execute("PRAGMA journal_mode")
            assert tuple(cur.fetchone())[0] == "wal"


def _round(tmp_path: Path, rng: random.Random, n: int, want: int, work: Path
           ) -> tuple[list[tuple[Path, set[str]]], int]:
    """One writer run on a fresh ledger, copied up to ``want`` times while it runs;
    returns the copies (with what was acknowledged before each) and the acks in all."""
    db = str(tmp_path / f"ledger{n}.db")
    _writer_is_durable(db)
    proc = subprocess.Popen(
        [sys.executable, "-m", "order_ledger", "apply", str(work), "--db", db, "--json",
         "--batch-size", "3"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    acked: list[str] = []
    lock = threading.Lock()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            out = json.loads(line)
            if out.get("status") == "applied" and out.get("command_id"):
                with lock:
                    acked.append(out["command_id"])

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    copies: list[tuple[Path, set[str]]] = []
    try:
        while len(copies) < want and proc.poll() is None:
            time.sleep(rng.uniform(0.05, 0.4))
            os.kill(proc.pid, signal.SIGSTOP)
            try:
                with lock:
                    seen = set(acked)  # acknowledged before the copy began
                dest = tmp_path / f"copy{n}-{len(copies)}"
                dest.mkdir()
                for suffix in ("", "-wal"):
                    if os.path.exists(db + suffix):
                        shutil.copyfile(db + suffix, dest / f"ledger.db{suffix}")
            finally:
                os.kill(proc.pid, signal.SIGCONT)
            copies.append((dest / "ledger.db", seen))
        assert proc.wait(timeout=120) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=10)
    return copies, len(acked)


def test_copies_taken_while_a_writer_applies_are_consistent(tmp_path):
    rng = random.Random(int(os.environ.get("ORDER_LEDGER_POWER_SEED", "17")))
    work = tmp_path / "cmds.jsonl"
    _write_workload(work, ORDERS, seed=3)
    copies: list[tuple[Path, set[str]]] = []
    mid_run = rounds = 0
    # writer runs (fresh ledgers) until enough copies, at least 3 of them taken mid-run
    # (a copy can land before the first or after the last acknowledgement)
    while (len(copies) < COPIES or mid_run < 3) and rounds < 10 + COPIES // 3:
        got, acked = _round(tmp_path, rng, rounds, max(COPIES - len(copies), 3), work)
        copies += got
        mid_run += sum(0 < len(seen) < acked for _, seen in got)
        rounds += 1
    assert mid_run >= 3, [len(s) for _, s in copies]
    checked: list[tuple[int, int]] = []
    for copy, seen in copies:
        r = subprocess.run([sys.executable, "-m", "order_ledger", "check", "--db", str(copy),
                            "--views", str(copy) + ".views.db"],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, (copy, r.stdout + r.stderr)
        if seen:
            assert "hash chain: " in r.stdout + r.stderr  # verified, event by event
        conn = sqlite3.connect(copy)
        try:
            stored = {row[0] for row in conn.execute("SELECT command_id FROM ledger_commands")}
        finally:
            conn.close()
        assert seen <= stored, f"{copy}: {len(seen - stored)} acknowledged command(s) missing"
        checked.append((len(seen), len(stored)))
    print(f"{len(copies)} copies in {rounds} writer run(s), {mid_run} mid-run; "
          "(acknowledged before the copy, stored in it):", checked)
