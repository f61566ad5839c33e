"""Audit queries from the audit index view: filters, edges, formats; the index itself
is the same after incremental catch-up, a rebuild (1 or 2 processes) and project()."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import test_projections_property as tpp
from builders import at, cmd, item, lines, oid, released, walkthrough_lines
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings

from ledger.application import Ledger
from ledger.store import to_us
from order_ledger.cli import main
from projections import AUDIT_COLUMNS, Views, project
from replay.audit import AuditError, AuditQuery, events_at, query, with_fields

O22 = "203-0000022-0174218"


@pytest.fixture(scope="module")
def shop(walkthrough_db):
    with Ledger(walkthrough_db) as led:
        return walkthrough_db, list(led.iter_events())


def _audit(db: str, *args: str, ok: bool = True):
    r = CliRunner().invoke(main, ["audit", "--db", db, *args])
    if ok:
        assert r.exit_code == 0, r.output
    return r


def _positions(db: str, *args: str) -> list[int]:
    return [row["position"] for row in json.loads(_audit(db, *args, "--json").output)]


def _expect(events, keep) -> list[int]:
    return [p for p, agg, e in events if keep(agg, e)]


def test_filters_match_a_scan_of_the_events(shop):
    db, events = shop
    name = lambda e: type(e).__name__  # noqa: E731
    assert _positions(db) == [p for p, _, _ in events]
    assert _positions(db, "--order", O22) == _expect(
        events, lambda a, e: getattr(e, "order_id", None) == O22)
    assert "InventoryReturned" in [r["type"] for r in json.loads(
        _audit(db, "--order", O22, "--json").output)]  # the order's stock movements too
    assert _positions(db, "--type", "LedgerCanceled", "--type", "SellerCanceled") == _expect(
        events, lambda a, e: name(e) in ("LedgerCanceled", "SellerCanceled"))
    assert _positions(db, "--actor", "payments") == _expect(
        events, lambda a, e: e.actor == "payments")
    assert _positions(db, "--reason", "ShipmentNotConfirmed") == _expect(
        events, lambda a, e: getattr(e, "reason", None) == "ShipmentNotConfirmed")
    # an adjustment's reasons, a payment outcome that canceled
    assert _positions(db, "--reason", "CustomerReturn") == _expect(
        events, lambda a, e: name(e) == "OrderAdjusted"
        and any(i.reason == "CustomerReturn" for i in e.items))
    assert _positions(db, "--reason", "declined") == _expect(
        events, lambda a, e: getattr(e, "outcome", None) == "declined"
        or getattr(e, "applied_outcome", None) == "declined" and e.status == "Canceled")
    assert _positions(db, "--reason", "declined")
    # combined: AND
    assert _positions(db, "--actor", "ledger", "--type", "InventoryReturned") == _expect(
        events, lambda a, e: e.actor == "ledger" and name(e) == "InventoryReturned")
    assert _positions(db, "--actor", "ledger", "--type", "InventoryReturned",
                      "--since", "2026-04-01T00:00:00+02:00") == _expect(
        events, lambda a, e: e.actor == "ledger" and name(e) == "InventoryReturned"
        and e.at >= datetime.fromisoformat("2026-04-01T00:00:00+02:00"))
    assert _positions(db, "--order", O22, "--type", "OrderPlaced", "--actor", "seller") == []


def test_time_window_edges_are_inclusive(shop):
    db, events = shop
    # order 22's day-30 cancel and its inventory return carry the due time 15:00+01:00
    due = datetime.fromisoformat("2026-04-11T15:00:00+01:00")
    at_due = _expect(events, lambda a, e: e.at == due)
    assert len(at_due) == 2
    us = timedelta(microseconds=1)
    iso = lambda t: t.isoformat()  # noqa: E731
    assert _positions(db, "--since", iso(due), "--until", iso(due)) == at_due
    assert _positions(db, "--since", iso(due + us), "--until", iso(due)) == []
    assert _positions(db, "--since", iso(due), "--until", iso(due - us)) == []
    # the same instant in another offset is the same edge
    assert _positions(db, "--since", "2026-04-11T16:00:00+02:00",
                      "--until", "2026-04-11T14:00:00Z") == at_due
    lo, hi = datetime.fromisoformat("2026-03-10T06:00:00+01:00"), due
    assert _positions(db, "--since", iso(lo), "--until", iso(hi)) == _expect(
        events, lambda a, e: lo <= e.at <= hi)
    assert _positions(db, "--until", iso(lo)) == _expect(events, lambda a, e: e.at <= lo)


def test_limit_keeps_the_newest_in_order_and_formats(shop):
    db, events = shop
    every = _expect(events, lambda a, e: e.actor == "seller")
    assert _positions(db, "--actor", "seller", "--limit", "3") == every[-3:]
    rows = json.loads(_audit(db, "--order", O22, "--json").output)
    assert set(rows[0]) == {"position", "at", "type", "actor", "command_id", "order_id", "sku",
                            "reason", "fields", "recorded_at"}
    placed = rows[0]
    assert placed["type"] == "OrderPlaced" and placed["fields"]["buyer"]["name"] == "Elin Sandberg"
    assert placed["fields"]["items"][0]["item_price"] == "449.00"
    text = _audit(db, "--order", O22, "--format", "csv").output
    table = list(csv.reader(io.StringIO(text)))
    assert table[0] == ["position", "at", "type", "actor", "command_id", "order_id", "sku",
                        "reason", "fields", "recorded_at"]
    assert table[1][9] == placed["recorded_at"]
    assert [int(r[0]) for r in table[1:]] == [r["position"] for r in rows]
    assert json.loads(table[1][8]) == placed["fields"]
    out = _audit(db, "--type", "LedgerCanceled")
    assert "ShipmentNotConfirmed" in out.stdout and O22 in out.stdout
    assert out.stderr.strip() == "3 events"


def test_an_adjustment_with_several_reasons_matches_each(tmp_path):
    order = oid(1)
    db = str(tmp_path / "l.db")
    with Ledger(db) as led:
        outs = list(led.apply_lines(lines(
            *released(order, items=[item("I1", quantity=2), item("I2", "SKU-2")]),
            cmd("adjust", at(60), order_id=order, items=[
                {"order_item_id": "I1", "reason": "NoInventory", "quantity_cancelled": 1},
                {"order_item_id": "I2", "reason": "CustomerReturn", "item_price_adj": "5"}]),
            cmd("adjust", at(61), order_id=order, items=[
                {"order_item_id": "I2", "reason": "NoInventory", "item_price_adj": "1"}]))))
    assert all(o.ok for o in outs)
    both = json.loads(_audit(db, "--reason", "NoInventory", "--json").output)
    assert [(r["type"], r["reason"]) for r in both] == [
        ("OrderAdjusted", "CustomerReturn,NoInventory"), ("OrderAdjusted", "NoInventory")]
    assert [r["reason"] for r in json.loads(
        _audit(db, "--reason", "CustomerReturn", "--json").output)] == [
        "CustomerReturn,NoInventory"]
    assert _positions(db, "--reason", "Customer") == []  # whole reasons only


def test_bad_queries_are_usage_errors(shop):
    db, _ = shop
    assert _audit(db, "--type", "Shipped", ok=False).exit_code == 2
    assert _audit(db, "--since", "2026-03-01T00:00:00", ok=False).exit_code == 2
    assert _audit(db, "--json", "--format", "csv", ok=False).exit_code == 2
    with pytest.raises(AuditError):
        AuditQuery(limit=0)


async def test_query_uses_the_index_and_decodes_fields_on_both_backends(db_url, tmp_path):
    with Ledger(db_url) as led:
        list(led.apply_lines(walkthrough_lines(60)))
        async with Views(led, str(tmp_path / "v.db")) as v:
            await v.sync()
            rows = with_fields(led, await query(v, AuditQuery(types=("OrderPlaced",), limit=2)))
            db = await v.open()
            for q in (AuditQuery(order_id="x"), AuditQuery(types=("HoldExpired",)),
                      AuditQuery(actor="seller"),
                      AuditQuery(since=datetime.fromisoformat("2026-03-03T00:00:00Z"),
                                 until=datetime.fromisoformat("2026-03-04T00:00:00Z"))):
                sql, args = q.sql()
                plan = " ".join(str(r[-1]) for r in await db.execute_fetchall(
                    "EXPLAIN QUERY PLAN " + sql, args))
                assert "USING INDEX" in plan or "USING COVERING INDEX" in plan, (sql, plan)
        assert len(rows) == 2 and rows[0]["position"] < rows[1]["position"]
        decoded = events_at(led, [rows[1]["position"]])
        assert rows[1]["fields"]["items"] and type(decoded[rows[1]["position"]][1]).__name__ \
            == "OrderPlaced"


# --- the index: catch-up in pieces == rebuild (1 or 2 processes) == project() -----------------


def _audit_rows(path: str) -> list[tuple]:
    con = sqlite3.connect(path)
    try:
        return con.execute(f"SELECT {', '.join(AUDIT_COLUMNS)} FROM audit "
                           "ORDER BY position").fetchall()
    finally:
        con.close()


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(tpp.scenarios())
async def test_incremental_audit_rows_equal_a_rebuild_and_project(scenario):
    commands, cuts, plan, _, jobs, _ = scenario
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        with Ledger(str(d / "l.db")) as led:
            inc = str(d / "inc.views.db")
            bounds = [0, *cuts, len(commands)]
            for lo, hi in zip(bounds, bounds[1:]):
                list(led.apply_lines([json.dumps(c) for c in commands[lo:hi]]))
                pos = 0
                for step, batch_size in plan:
                    pos = min(led.head(), pos + step)
                    async with Views(led, inc, batch_size=batch_size, auto_sync=False) as v:
                        await v.sync(upto=pos)
            async with Views(led, inc, batch_size=3) as v:
                await v.sync()
            full = str(d / "full.views.db")
            async with Views(led, full, jobs=jobs, batch_size=plan[0][1]) as v:
                await v.rebuild(["audit"])
            memory = project(led.iter_events(), ["audit"]).projections["audit"].rows
            head = led.head()
        got, want = _audit_rows(inc), _audit_rows(full)
    assert got == want == [tuple(r) for r in memory]
    assert [r[0] for r in got] == list(range(1, head + 1))
    assert all(r[1] == to_us(datetime.fromisoformat(r[2])) for r in got)
