"""A full disk on SQLite (issue 17, item 3), simulated with ``PRAGMA max_page_count``
on the ledger's and the views' own connections: apply, sync and rebuild fail with a
message that says the disk is full (exit 1 from the command line, no traceback),
nothing is half-written, and after space is freed the same command completes."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys

import pytest

from builders import walkthrough_lines
from ledger.application import Ledger
from ledger.check import check_ledger
from ledger.errors import StoreError
from projections.views import Views, ViewsError

FIRST, ALL = 20, 200  # walkthrough lines before the disk fills, and in all


def _state(db: str) -> tuple:
    """What must not change when a write fails: events, command ids, chain, clock."""
    conn = sqlite3.connect(db)
    try:
        return tuple(conn.execute(sql).fetchall() for sql in (
            "SELECT COUNT(*), MAX(rowid) FROM stored_events",
            "SELECT command_id FROM ledger_commands ORDER BY command_id",
            "SELECT position, hash FROM ledger_chain ORDER BY position DESC LIMIT 1",
            "SELECT COUNT(*) FROM ledger_deadlines",
            "SELECT * FROM ledger_clock"))
    finally:
        conn.close()


def _pages(path: str) -> int:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("PRAGMA page_count").fetchone()[0]
    finally:
        conn.close()


def _cap_writer(led: Ledger, pages: int) -> None:
    """Cap the ledger's writer connection (the pool hands the same one back)."""
    with led.recorder.datastore.get_connection(commit=True) as conn:
        conn.cursor().execute(f"PRAGMA max_page_count = {pages}")


def test_apply_on_a_full_disk_writes_nothing_then_completes(tmp_path):
    db = str(tmp_path / "ledger.db")
    with Ledger(db) as led:
        list(led.apply_lines(walkthrough_lines(FIRST)))
    before = _state(db)
    rest = walkthrough_lines(ALL)[FIRST:]
    with Ledger(db) as led:
        _cap_writer(led, _pages(db) + 1)
        with pytest.raises(StoreError) as exc:
            list(led.apply_lines(rest, batch_size=len(rest)))  # one batch, one transaction
        assert "the disk is full" in str(exc.value) and "nothing of this batch" in str(exc.value)
        assert _state(db) == before  # no event, command id, chain row, deadline or clock
        assert check_ledger(led).ok
        _cap_writer(led, 1_000_000)  # space freed
        outs = list(led.apply_lines(rest, batch_size=len(rest)))
        assert {o.status for o in outs} <= {"applied", "rejected"}
        assert sum(o.status == "applied" for o in outs) > 100
        assert check_ledger(led).ok
    with Ledger(str(tmp_path / "clean.db")) as ref:  # the same as without the fault
        list(ref.apply_lines(walkthrough_lines(ALL)))
        assert [o.status for o in ref.apply_lines(walkthrough_lines(ALL))] == ["duplicate"] * ALL
        clean_head = ref.head()
    with Ledger(db) as led:
        assert led.head() == clean_head


def test_small_batches_on_a_full_disk_keep_whole_batches(tmp_path):
    """With the default batches the ones that fit are committed, the rest not at all."""
    db = str(tmp_path / "ledger.db")
    with Ledger(db) as led:
        list(led.apply_lines(walkthrough_lines(FIRST)))
        _cap_writer(led, _pages(db) + 2)
        done = []
        with pytest.raises(StoreError, match="the disk is full"):
            for o in led.apply_lines(walkthrough_lines(ALL)[FIRST:], batch_size=10):
                done.append(o)
        report = check_ledger(led)
        assert report.ok, [p.as_dict() for p in report.problems]
        # every reported line is stored; the failed batch's are not
        stored = led.recorder.known_commands([o.command_id for o in done if o.command_id])
        assert stored == {o.command_id for o in done if o.command_id and o.status == "applied"}


def _views_run(db: str, views: str, what: str, cap: int | None) -> tuple[dict, dict]:
    async def run() -> tuple[dict, dict]:
        with Ledger(db, mode="read") as led:
            v = Views(led, path=views, jobs=1)
            try:
                conn = await v.open()
                if cap is not None:
                    pages = (await (await conn.execute("PRAGMA page_count")).fetchone())[0]
                    await conn.execute(f"PRAGMA max_page_count = {pages + cap}")
                before = await v.checkpoints()
                await (v.sync() if what == "sync" else v.rebuild())
                return before, await v.checkpoints()
            finally:
                await v.close()
    return asyncio.run(run())


@pytest.mark.parametrize("what", ["sync", "rebuild"])
def test_views_on_a_full_disk_keep_their_checkpoints_then_complete(tmp_path, what):
    db, views = str(tmp_path / "ledger.db"), str(tmp_path / "ledger.views.db")
    with Ledger(db) as led:
        list(led.apply_lines(walkthrough_lines(FIRST)))
    _views_run(db, views, "sync", None)
    with Ledger(db) as led:
        list(led.apply_lines(walkthrough_lines(ALL)[FIRST:]))
        head = led.head()
    conn = sqlite3.connect(views)
    rows_before = conn.execute("SELECT COUNT(*) FROM orders").fetchone()
    cps_before = conn.execute("SELECT name, position FROM checkpoints ORDER BY name").fetchall()
    conn.close()
    with pytest.raises(ViewsError) as exc:
        _views_run(db, views, what, 1)
    assert "the disk is full" in str(exc.value) and f"order-ledger {what}" in str(exc.value)
    conn = sqlite3.connect(views)
    assert conn.execute("SELECT name, position FROM checkpoints ORDER BY name").fetchall() \
        == cps_before
    assert conn.execute("SELECT COUNT(*) FROM orders").fetchone() == rows_before
    assert not [r for r in conn.execute("SELECT name FROM sqlite_master WHERE name LIKE '%__new'")]
    conn.close()
    # the views still check against the events up to their checkpoint
    r = subprocess.run([sys.executable, "-m", "order_ledger", "check", "--db", db,
                        "--views", views], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    _, after = _views_run(db, views, what, None)  # space freed: the same command completes
    assert set(after.values()) == {head}


#: runs the command line with every SQLite connection to FILE capped at PAGES pages
_CAPPED_CLI = """
import sqlite3, sys
target, pages = sys.argv[1], int(sys.argv[2])
_connect = sqlite3.connect
def connect(database, *a, **k):
    conn = _connect(database, *a, **k)
    if target in str(database):
        conn.execute(f"PRAGMA max_page_count = {pages}")
    return conn
sqlite3.connect = connect
from order_ledger.cli import main
sys.argv = ["order-ledger", *sys.argv[3:]]
main()
"""


def _cli(*args: str, cap: tuple[str, int] | None = None) -> subprocess.CompletedProcess:
    pre = ["-c", _CAPPED_CLI, cap[0], str(cap[1])] if cap else ["-m", "order_ledger"]
    return subprocess.run([sys.executable, *pre, *args], capture_output=True, text=True,
                          timeout=120)


def test_cli_apply_sync_rebuild_on_a_full_disk(tmp_path):
    db, views = str(tmp_path / "ledger.db"), str(tmp_path / "ledger.views.db")
    first, rest = tmp_path / "first.jsonl", tmp_path / "rest.jsonl"
    first.write_bytes(b"\n".join(walkthrough_lines(FIRST)) + b"\n")
    rest.write_bytes(b"\n".join(walkthrough_lines(ALL)[FIRST:]) + b"\n")
    assert _cli("apply", str(first), "--db", db, "--quiet").returncode == 0
    assert _cli("sync", "--db", db, "--views", views).returncode == 0
    before = _state(db)
    r = _cli("apply", str(rest), "--db", db, "--batch-size", "500", cap=(db, _pages(db) + 1))
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Error: the disk is full" in r.stderr and "Traceback" not in r.stderr
    assert _state(db) == before
    r = _cli("apply", str(rest), "--db", db, "--quiet")  # space freed
    assert r.returncode == 0, r.stderr
    for what in ("sync", "rebuild"):
        r = _cli(what, "--db", db, "--views", views, cap=(views, _pages(views) + 1))
        assert r.returncode == 1, r.stdout + r.stderr
        assert "the disk is full" in r.stderr and "Traceback" not in r.stderr
    assert _cli("rebuild", "--db", db, "--views", views).returncode == 0
    r = _cli("check", "--db", db, "--views", views)
    assert r.returncode == 0, r.stdout + r.stderr
