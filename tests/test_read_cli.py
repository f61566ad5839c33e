"""The read commands: orders, report, inventory, metrics, notifications, sync,
follow, rebuild -- output for people, --json shapes, files and exit codes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from builders import at, cmd, item, lines, oid, place, released
from click.testing import CliRunner
from test_projections_support import seller_cancel, ship, timeline

from ledger.application import Ledger
from order_ledger.cli import main
from projections import ORDERS_REPORT_COLUMNS, UNSHIPPED_REPORT_COLUMNS

A, B, C = oid(1), oid(2), oid(3)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def shop(tmp_path, monkeypatch):
    """A small ledger; the views go beside it (shop.views.db)."""
    monkeypatch.delenv("ORDER_LEDGER_VIEWS", raising=False)
    monkeypatch.delenv("ORDER_LEDGER_DB", raising=False)
    db = str(tmp_path / "shop.db")
    with Ledger(db) as led:
        outs = list(led.apply_lines(lines(*timeline(
            cmd("set-inventory", at(0), sku="SKU-1", quantity=5),
            released(A, items=[item("I1", quantity=2)]),
            released(B, when_minutes=1),
            place(C, at(2)),
            ship(A, at(40), [("I1", 1)]),
            seller_cancel(B, at(41)),
        ))))
        assert all(o.ok for o in outs)
    return db


def run(*args, ok=True):
    result = CliRunner().invoke(main, list(args))
    if ok:
        assert result.exit_code == 0, (result.output, result.exception)
    return result


def test_every_read_command_has_help():
    for name in ("orders", "report", "inventory", "metrics", "notifications", "sync", "follow",
                 "rebuild"):
        out = run(name, "--help").output
        assert "--db" in out and "--views" in out, name


def test_orders_json_and_table(shop, tmp_path):
    rows = json.loads(run("orders", "--db", shop, "--json").output)
    assert [(r["order_id"], r["status"], r["actionable"], r["warning"]) for r in rows] == [
        (C, "Pending", False, None), (B, "Canceled", False, None),
        (A, "PartiallyShipped", True, None)]
    assert os.path.exists(tmp_path / "shop.views.db")          # beside the ledger
    only = json.loads(run("orders", "--db", shop, "--status", "Canceled", "--json").output)
    assert [r["order_id"] for r in only] == [B]
    table = run("orders", "--db", shop).output
    assert "Manage Orders" in table and "greyed" in table and A in table and C in table
    bad = run("orders", "--db", shop, "--status", "Lost", ok=False)
    assert bad.exit_code == 2


def test_report_to_stdout_and_file(shop, tmp_path):
    out = run("report", "unshipped", "--db", shop, "--at", "2026-03-03T12:00:00+01:00").output
    header, *rows = out.rstrip("\n").split("\n")
    assert header.split("\t") == list(UNSHIPPED_REPORT_COLUMNS)
    assert [r.split("\t")[0] for r in rows] == [A]
    target = tmp_path / "orders.tsv"
    result = run("report", "orders", "--db", shop, "--out", str(target))
    text = target.read_bytes().decode()
    assert text.split("\n")[0].split("\t") == list(ORDERS_REPORT_COLUMNS)
    assert [r.split("\t")[0] for r in text.rstrip("\n").split("\n")[1:]] == [A, B]
    assert "wrote 2 rows" in result.output or "wrote 2 rows" in (result.stderr or "")
    again = run("report", "orders", "--db", shop).output
    assert again.encode() == target.read_bytes()                  # byte-identical


def test_report_into_a_missing_directory_exits_2(shop, tmp_path):
    result = run("report", "orders", "--db", shop, "--out", str(tmp_path / "no" / "r.tsv"),
                 ok=False)
    assert result.exit_code == 2
    assert "does not exist" in result.output
    assert run("report", "weekly", "--db", shop, ok=False).exit_code == 2
    assert run("report", "orders", "--db", shop, "--at", "yesterday", ok=False).exit_code == 2


def test_inventory_json_and_table(shop):
    rows = json.loads(run("inventory", "--db", shop, "--json").output)
    # 5 - 2 (A) - 1 (B) + 1 (B canceled) - 1 (C, Pending and reserved)
    assert rows == [{"sku": "SKU-1", "available": 2, "active": True, "reserved": 1}]
    assert "Manage Inventory" in run("inventory", "--db", shop).output


def test_metrics_json_shape(shop):
    m = json.loads(run("metrics", "--db", shop, "--at", "2026-03-05T09:00:00+01:00",
                       "--json").output)
    parts = [m["cancellation_rate"], m["late_shipment_rate"]["10d"],
             m["late_shipment_rate"]["30d"], m["valid_tracking_rate"]]
    for part in parts:
        assert {"numerator", "denominator", "rate", "target", "breached"} <= set(part)
    c = m["cancellation_rate"]
    assert (c["numerator"], c["denominator"], c["rate"], c["breached"]) == (1, 2, 0.5, True)
    assert c["breakdown"] == {"NoInventory": 1}
    assert m["valid_tracking_rate"]["denominator"] == 1
    table = run("metrics", "--db", shop, "--at", "2026-03-05T09:00:00+01:00").output
    assert "cancellation" in table and "BREACHED" in table and "1/2" in table
    # default time: the ledger's clock, the watermark its ticks moved: 09:31 (B's hold
    # end), not the latest fact (09:41)
    m = json.loads(run("metrics", "--db", shop, "--json").output)
    assert m["at"].startswith("2026-03-02T09:31")
    run("tick", "--db", shop, "--now", at(41))
    m = json.loads(run("metrics", "--db", shop, "--json").output)
    assert m["at"].startswith("2026-03-02T09:41")


def test_notifications_json_and_filter(shop):
    rows = json.loads(run("notifications", "--db", shop, "--json").output)
    assert [(r["order_id"], r["to"], r["kind"]) for r in rows] == [
        (A, "buyer", "order-confirmation"), (A, "seller", "sold-ship-now"),
        (B, "buyer", "order-confirmation"), (B, "seller", "sold-ship-now"),
        (B, "buyer", "cancellation")]
    assert set(rows[0]) == {"position", "seq", "at", "to", "kind", "order_id", "content"}
    only = json.loads(run("notifications", "--db", shop, "--order", B, "--json").output)
    assert [r["kind"] for r in only] == ["order-confirmation", "sold-ship-now", "cancellation"]
    table = run("notifications", "--db", shop).output
    assert "Notifications" in table and B in table and "seller" in table


def test_sync_and_rebuild(shop, tmp_path):
    views = str(tmp_path / "elsewhere.views.db")
    first = json.loads(run("sync", "--db", shop, "--views", views, "--json").output)
    from projections import NAMES

    assert first["events"] > 0 and first["rebuilt"] == list(NAMES)
    out = run("sync", "--db", shop, "--views", views).output
    assert "views at position" in out and "applied 0 events" in out
    assert json.loads(run("sync", "--db", shop, "--views", views, "--json").output)["events"] == 0
    r = json.loads(run("rebuild", "--db", shop, "--views", views, "orders", "--json").output)
    assert r["rebuilt"] == ["orders"] and r["events"] > 0 and r["events_per_second"] > 0
    out = run("rebuild", "--db", shop, "--views", views, "--quiet").output
    assert out == ""
    out = run("rebuild", "--db", shop, "--views", views).output
    assert "rebuilt orders, inventory, metrics, notifications" in out and "events/s" in out
    assert run("rebuild", "--db", shop, "bogus", ok=False).exit_code == 2


def test_views_option_and_environment(shop, tmp_path, monkeypatch):
    views = tmp_path / "env.views.db"
    monkeypatch.setenv("ORDER_LEDGER_VIEWS", str(views))
    run("inventory", "--db", shop)
    assert views.exists()
    bad = run("inventory", "--db", shop, "--views", str(tmp_path / "no" / "v.db"), ok=False)
    assert bad.exit_code == 2 and "does not exist" in bad.output


def test_missing_ledger_is_a_usage_error(tmp_path):
    result = run("orders", "--db", str(tmp_path / "typo.db"), ok=False)
    assert result.exit_code == 2 and "no ledger" in result.output
    assert not (tmp_path / "typo.db").exists()


def test_follow_stops_after_max_seconds(shop):
    out = run("follow", "--db", shop, "--interval", "0.05", "--max-seconds", "0.3").output
    assert "following the ledger" in out and "stopped at position" in out


def test_follow_keeps_views_current_and_exits_0_on_ctrl_c(shop, tmp_path):
    views = str(tmp_path / "follow.views.db")
    proc = subprocess.Popen(
        [sys.executable, "-c", "from order_ledger.cli import main; main()", "follow", "--db", shop, "--views", views,
         "--interval", "0.05"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        with Ledger(shop) as led:
            _wait(lambda: _checkpoint(views) == led.head(), proc)
            list(led.apply_lines(lines(ship(A, at(60)))))
            head = led.head()
        _wait(lambda: _checkpoint(views) == head, proc)
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "stopped at position" in out


def _checkpoint(views: str) -> int | None:
    import sqlite3

    if not os.path.exists(views):
        return None
    try:
        con = sqlite3.connect(f"file:{views}?mode=ro", uri=True)
        try:
            return con.execute("SELECT MIN(position) FROM checkpoints").fetchone()[0]
        finally:
            con.close()
    except sqlite3.OperationalError:
        return None


def _wait(cond, proc, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(proc.communicate())
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")
