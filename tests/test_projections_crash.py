"""Crashes: a sync or a rebuild killed with SIGKILL in the middle.

A killed catch-up leaves every projection at a checkpoint whose rows match the
events up to it exactly (rows and checkpoint commit together), and the next
sync ends where a clean rebuild ends. A killed rebuild leaves the old views as
they were; its leftover tables are dropped by the next rebuild.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
from builders import at, cmd, item, oid, place
from test_projections_support import everything

from ledger.application import Ledger
from projections import NAMES, BlockingViews, Views, project

ROOT = Path(__file__).resolve().parents[1]
REPORT_TIME = datetime.fromisoformat(at(0, days=3))


def _commands(n_orders: int) -> list[str]:
    """A quick ~4.4 events/order stream: place, verify, hold expiry, ship or cancel."""
    out = [cmd("set-inventory", at(0), sku="SKU-1", quantity=10 ** 9)]
    t = 1.0
    for k in range(n_orders):
        o = oid(k + 1)
        items = [item("I1", f"SKU-{k % 3 + 1}", 1 + k % 2)] + (
            [item("I2", "SKU-2")] if k % 4 == 0 else [])
        out.append(place(o, at(t), items))
        out.append(cmd("verify-payment", at(t + 0.2), order_id=o,
                       outcome="declined" if k % 17 == 0 else "verified"))
        t += 0.5
    t += 40
    for k in range(n_orders):
        o = oid(k + 1)
        if k % 10 < 8:
            out.append(cmd("ship", at(t), order_id=o, carrier_code="UPS",
                           tracking_number=None if k % 9 == 0 else "1Z",
                           ship_date=at(t)[:10]))
        elif k % 10 == 8:
            out.append(cmd("cancel", at(t), order_id=o, by="seller", reason="NoInventory"))
        t += 0.01
    return [json.dumps(c) for c in out]


@pytest.fixture(scope="module")
def big_ledger(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("crash") / "big.db")
    with Ledger(path, advance_clock=True) as led:  # one time-sorted stream, no ticks
        list(led.apply_lines(_commands(4600), batch_size=5000))
        head = led.head()
    assert head > 19_000
    return path, head


def _views_at(db: str, views: str, report_time):
    async def read():
        with Ledger(db) as led:
            async with Views(led, views, auto_sync=False) as v:
                return await v.checkpoints(), await everything(v, report_time)
    return asyncio.run(read())


def _memory_at(db: str, position: int, report_time):
    with Ledger(db) as led:
        snap = project(led.iter_events(upto=position))
    return asyncio.run(everything(snap, report_time))


def _start(db: str, views: str, action: str, batch: int, delay: float,
           *more: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "projections", action, "--db", db, "--views", views,
         "--batch-size", str(batch), "--batch-delay", str(delay), *more],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for(query: str, views: str, ok, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            con = sqlite3.connect(f"file:{views}?mode=ro", uri=True, timeout=1)
            try:
                value = con.execute(query).fetchone()[0]
            finally:
                con.close()
            if value is not None and ok(value):
                return
        except sqlite3.DatabaseError:
            pass  # the table is not there yet (or a scratch file is mid-write)
        time.sleep(0.02)
    raise AssertionError(f"no progress seen: {query}")


def _kill(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL


def test_killed_catch_up_resumes_to_the_same_views(big_ledger, tmp_path):
    db, head = big_ledger
    views = str(tmp_path / "v.db")
    report_time = REPORT_TIME
    with Ledger(db) as led:
        BlockingViews(led, views).sync(upto=2_000)              # then catch up incrementally
    proc = _start(db, views, "sync", 300, 0.03)
    _wait_for("SELECT MIN(position) FROM checkpoints", views, lambda p: p >= 5_000, proc)
    _kill(proc)
    cps, stored = _views_at(db, views, report_time)
    assert len(set(cps.values())) == 1                           # all in the same transaction
    cp = cps[NAMES[0]]
    assert 5_000 <= cp < head
    assert stored == _memory_at(db, cp, report_time)             # nothing twice, nothing skipped
    with Ledger(db) as led:
        r = BlockingViews(led, views).sync()
        assert r.events == head - cp and not r.rebuilt
    _, resumed = _views_at(db, views, report_time)
    assert resumed == _memory_at(db, head, report_time)
    clean = str(tmp_path / "clean.db")
    with Ledger(db) as led:
        BlockingViews(led, clean).rebuild()
    assert _views_at(db, clean, report_time)[1] == resumed


@pytest.mark.parametrize("jobs", [1, 2])
def test_killed_rebuild_leaves_the_old_views_intact(big_ledger, tmp_path, jobs):
    """With 2 jobs the killed process is the parent: its workers notice and stop."""
    db, head = big_ledger
    views = str(tmp_path / "v.db")
    report_time = REPORT_TIME
    with Ledger(db) as led:
        BlockingViews(led, views).sync(upto=3_000)
    _, before = _views_at(db, views, report_time)
    proc = _start(db, views, "rebuild", 500, 0.03, "--jobs", str(jobs))
    # one process or several fill the new tables in the views file
    _wait_for("SELECT COUNT(*) FROM notifications__new", views, lambda n: n > 1_000, proc)
    _kill(proc)
    cps, after = _views_at(db, views, report_time)
    assert set(cps.values()) == {3_000}
    assert after == before == _memory_at(db, 3_000, report_time)
    con = sqlite3.connect(views)
    leftovers = [r[0] for r in con.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE '%__new'")]
    con.close()
    assert "notifications__new" in leftovers
    with Ledger(db) as led:
        BlockingViews(led, views).rebuild()
    con = sqlite3.connect(views)
    assert not con.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE '%__new'").fetchall()
    con.close()
    cps, rebuilt = _views_at(db, views, report_time)
    assert set(cps.values()) == {head}
    assert rebuilt == _memory_at(db, head, report_time)

