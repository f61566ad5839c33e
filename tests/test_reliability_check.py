"""Issue 7.3: ``order-ledger check`` finds every kind of damage, and passes clean stores."""

from __future__ import annotations

import json
import shutil
import sqlite3
from datetime import datetime, timedelta, timezone

import msgspec
import pytest
from click.testing import CliRunner

from bench.generate import generate
from ledger import events as ev
from ledger.application import Ledger
from ledger.check import EXTRA_CHECKS, Problem, check_ledger
from ledger.codec import encode_payload, topic_for
from ledger.store import to_us
from order_ledger.cli import main

ORDERS = 40


@pytest.fixture(scope="module")
def base_db(tmp_path_factory):
    """A realistic ledger (bench workload) with open and closed orders."""
    path = str(tmp_path_factory.mktemp("check") / "base.db")
    cmds = generate(ORDERS, 5)
    # stop early so some orders are still open (deadlines in the index)
    cut = [c for c in cmds if c["at"] < "2026-03-20"]
    with Ledger(path) as led:
        outs = list(led.apply_lines([json.dumps(c) for c in cut]))
    assert {o.status for o in outs} == {"applied"}
    return path


def placed(cmds) -> int:
    return sum(1 for c in cmds if c["type"] == "place")


@pytest.fixture
def db(base_db, tmp_path):
    path = str(tmp_path / "ledger.db")
    shutil.copy(base_db, path)
    return path


def codes(path: str) -> set[str]:
    with Ledger(path) as led:
        return {p.code for p in check_ledger(led).problems}


def sql(path: str, statement: str, params: tuple = ()) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute(statement, params)


def events(path: str) -> list[tuple[int, str, int, ev.Event]]:
    with Ledger(path) as led:
        rows = led.recorder.select_notifications(start=1, limit=100_000)
        return [(n.id, n.originator_id, n.originator_version,
                 led.mapper.decode_state(n.topic, n.state)) for n in rows]


def append(path: str, agg: str, payload: ev.Event) -> None:
    """Append an event at the aggregate's next version, bypassing every rule."""
    with sqlite3.connect(path) as conn:
        version = conn.execute("SELECT MAX(originator_version) FROM stored_events "
                               "WHERE originator_id = ?", (agg,)).fetchone()[0] or 0
        conn.execute("INSERT INTO stored_events (originator_id, originator_version, topic, state)"
                     " VALUES (?, ?, ?, ?)", (agg, version + 1, topic_for(payload),
                                             encode_payload(payload)))
        conn.execute("INSERT OR IGNORE INTO ledger_commands VALUES (?, 'x', 0)",
                     (payload.command_id,))


def last_of(path: str, kind: type) -> tuple[int, str, int, ev.Event]:
    return [e for e in events(path) if isinstance(e[3], kind)][-1]


def open_order(path: str) -> tuple[str, ev.Event]:
    with Ledger(path) as led:
        for agg in led.recorder.aggregate_ids("order:"):
            o = led.load(agg)
            if o.status == "Unshipped":
                return agg, o
    raise AssertionError("no open order")


def test_clean_store_passes_with_counts(db):
    with Ledger(db) as led:
        report = check_ledger(led)
        assert report.ok, [str(p) for p in report.problems]
        c = report.counts
        assert c["events"] == c["head"] == led.head() > 0
        cut = [c for c in generate(ORDERS, 5) if c["at"] < "2026-03-20"]
        assert c["orders"] == placed(cut) > 0 and c["deadlines"] > 0
    result = CliRunner().invoke(main, ["check", "--db", db])
    assert result.exit_code == 0 and "ledger OK" in result.output, result.output
    result = CliRunner().invoke(main, ["check", "--db", db, "--json"])
    assert result.exit_code == 0 and json.loads(result.output)["ok"] is True


def test_clean_store_passes_on_both_backends(ledger):
    cmds = generate(10, 3)[:400]
    outs = list(ledger.apply_lines([json.dumps(c) for c in cmds], batch_size=50))
    assert {o.status for o in outs} == {"applied"}
    report = check_ledger(ledger)
    assert report.ok, [str(p) for p in report.problems]
    assert report.counts["orders"] == placed(cmds)


def test_missing_event_is_a_gap_and_breaks_replay(db):
    pos, agg, version, _ = last_of(db, ev.PaymentVerified)
    sql(db, "DELETE FROM stored_events WHERE rowid = ?", (pos,))
    found = codes(db)
    assert {"position-gap", "replay-failed"} <= found or {"position-gap"} <= found


def test_corrupt_state_is_undecodable(db):
    pos, *_ = last_of(db, ev.OrderPlaced)
    sql(db, "UPDATE stored_events SET state = ? WHERE rowid = ?", (b"\x00\xffgarbage", pos))
    assert "undecodable" in codes(db)
    result = CliRunner().invoke(main, ["check", "--db", db])
    assert result.exit_code == 1 and "undecodable" in result.output


def test_deadline_index_disagreements(db):
    with sqlite3.connect(db) as conn:
        oid, due, kind = conn.execute("SELECT order_id, due_us, kind FROM ledger_deadlines "
                                      "LIMIT 1").fetchone()
    sql(db, "UPDATE ledger_deadlines SET due_us = due_us + 1 WHERE order_id = ?", (oid,))
    assert "deadline-index" in codes(db)
    sql(db, "DELETE FROM ledger_deadlines WHERE order_id = ?", (oid,))
    assert "deadline-index" in codes(db)
    sql(db, "INSERT INTO ledger_deadlines VALUES (?, ?, ?)", (oid, due, kind))
    assert codes(db) == set()
    sql(db, "INSERT INTO ledger_deadlines VALUES ('999-9999999-9999999', 1, 'ship-limit')")
    assert "deadline-index" in codes(db)


def test_command_ids_must_match_events(db):
    _, _, _, e = last_of(db, ev.ShipmentConfirmed)
    sql(db, "DELETE FROM ledger_commands WHERE command_id = ?", (e.command_id,))
    assert codes(db) == {"events-without-command"}
    sql(db, "INSERT INTO ledger_commands VALUES (?, 'ship', 0)", (e.command_id,))
    sql(db, "INSERT INTO ledger_commands VALUES ('ghost', 'ship', 0)")
    assert codes(db) == {"command-without-events"}
    sql(db, "DELETE FROM ledger_commands WHERE command_id = 'ghost'")
    sql(db, "INSERT INTO ledger_commands VALUES ('quiet-tick', 'tick', 0)")
    assert codes(db) == set()  # a tick with nothing due writes no event


def test_clock_behind_the_events(db):
    # The clock is the watermark moved by ticks: behind the latest events (late or
    # early facts) is fine; a clock past a deadline that never fired is damage.
    sql(db, "UPDATE ledger_clock SET at = '2026-03-01T00:00:00+01:00', at_us = 0")
    assert codes(db) == set()
    agg, order = open_order(db)
    due, kind = order.next_deadline()
    sql(db, "UPDATE ledger_clock SET at = ?, at_us = ?", (due.isoformat(), to_us(due)))
    assert "clock" in codes(db)
    with Ledger(db) as led:
        found = [p for p in check_ledger(led).problems if p.code == "clock"]
    assert agg in {p.where for p in found}
    assert any(kind in p.message and "has not fired" in p.message for p in found)


def test_a_command_applied_twice_is_found(db):
    _, agg, _, e = last_of(db, ev.MessageReceived)
    append(db, agg, e)
    found = codes(db)
    assert "command-split" in found


def test_rule_invariants_are_rechecked(db):
    agg, order = open_order(db)
    item_id, it = next(iter(order.items.items()))
    at = order.placed.at + timedelta(days=3)
    common = dict(at=at, actor="seller", order_id=order.order_id)
    # shipping more than was ordered
    append(db, agg, ev.ShipmentConfirmed(
        **common, command_id="bad-1", carrier_code="DHL", ship_date=at.date().isoformat(),
        items=[ev.ItemQuantity(order_item_id=item_id, quantity=it.line.quantity + 5)],
        status="Shipped"))
    assert "order-invariant" in codes(db)


def test_status_must_agree_with_quantities(db):
    agg, order = open_order(db)
    at = order.placed.at + timedelta(days=3)
    append(db, agg, ev.ShipmentConfirmed(
        at=at, actor="seller", order_id=order.order_id, command_id="bad-2", carrier_code="DHL",
        ship_date=at.date().isoformat(), items=[], status="Shipped"))
    assert "order-invariant" in codes(db)


def test_inventory_never_negative(db):
    _, agg, _, e = last_of(db, ev.InventoryAllocated)
    sku = agg.split(":", 1)[1]
    with Ledger(db) as led:
        available = led.inventory(sku).available
    later = events(db)[-1][3].at
    append(db, agg, ev.InventoryAllocated(
        at=later, actor="buyer", command_id="bad-3", sku=sku, order_id=e.order_id,
        quantity=available + 1, available=-1))
    assert "inventory-invariant" in codes(db)


def test_business_time_going_backwards(db):
    agg, order = open_order(db)
    early = order.placed.at - timedelta(days=1)
    # recorded now (after every other event): only the order's business time goes back
    append(db, agg, ev.MessageReceived(
        at=early, actor="buyer", order_id=order.order_id, command_id="bad-4", message_id="m",
        sender="buyer", body="hej", requests_address_change=False,
        recorded_at=datetime.now(timezone.utc)))
    found = codes(db)  # (and chain-unlinked: append() bypasses the hash chain)
    assert "aggregate-time-order" in found and "recorded-time-order" not in found
    # without recorded_at an event reads as recorded at its business time: before the
    # previous commit's, so the recording order is broken too
    append(db, agg, ev.MessageReceived(
        at=early, actor="buyer", order_id=order.order_id, command_id="bad-5", message_id="m2",
        sender="buyer", body="hej", requests_address_change=False))
    assert {"aggregate-time-order", "recorded-time-order"} <= codes(db)


def test_event_under_the_wrong_aggregate(db):
    agg, order = open_order(db)
    _, other_agg, _, e = [x for x in events(db) if isinstance(x[3], ev.OrderPlaced)
                          and x[1] != agg][0]
    msg = msgspec.structs.replace(e)  # an OrderPlaced of another order
    append(db, agg, msg)
    assert "wrong-aggregate" in codes(db)


def test_extra_checks_hook(db):
    def projection_check(ledger, state):
        yield Problem("projection-ahead", "checkpoint 99 > head", "views")

    EXTRA_CHECKS.append(projection_check)
    try:
        assert codes(db) == {"projection-ahead"}
    finally:
        EXTRA_CHECKS.remove(projection_check)


def test_check_refuses_a_missing_ledger(tmp_path):
    result = CliRunner().invoke(main, ["check", "--db", str(tmp_path / "nope.db")])
    assert result.exit_code == 2 and "no ledger at" in result.output
    assert not (tmp_path / "nope.db").exists()
