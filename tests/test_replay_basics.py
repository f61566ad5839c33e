"""History, explain and event bundles."""

from __future__ import annotations

import io
import json
import re
from datetime import timedelta

import pytest
from click.testing import CliRunner

from builders import at, cmd, item, lines, oid, place, released
from ledger.application import Ledger
from order_ledger.cli import main
from replay.bundle import BundleError, export_bundle, import_bundle, read_bundle
from replay.history import explain, order_history


def _story(order: str) -> list[dict]:
    return [
        *released(order, items=[item("A1", quantity=2)]),
        cmd("ship", at(120), order_id=order, carrier_code="UPS", ship_date=at(120)[:10],
            tracking_number="1Z", items=[{"order_item_id": "A1", "quantity": 1}],
            command_id="ship-1"),
        cmd("tick", at(days=31)),
    ]


def test_history_steps_through_every_event_with_state_after(ledger):
    list(ledger.apply_lines(lines(*_story(oid(1)))))
    steps = order_history(ledger, oid(1))
    types = [type(s.payload).__name__ for s in steps]
    assert types == ["OrderPlaced", "PaymentVerified", "HoldExpired", "ShipmentConfirmed",
                     "ShipByWarningIssued", "LedgerCanceled"]
    assert [s.state["status"] for s in steps] == [
        "Pending", "Pending", "Unshipped", "PartiallyShipped", "PartiallyShipped", "Shipped"]
    positions = [s.position for s in steps]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    ship = steps[3].as_dict()
    assert ship["command_id"] == "ship-1" and ship["actor"] == "seller"
    assert ship["fields"]["items"] == [{"order_item_id": "A1", "quantity": 1}]
    assert ship["state"]["next_deadline"]["kind"] == "ship-warning"
    # stop at a position: the state as it was then
    upto = order_history(ledger, oid(1), upto=steps[2].position)
    assert len(upto) == 3 and upto[-1].state["status"] == "Unshipped"


def test_explain_names_the_rules_and_the_next_deadline(ledger):
    list(ledger.apply_lines(lines(*released(oid(1)))))
    result = explain(ledger, oid(1))
    assert result.status == "Unshipped"
    assert any("hold ended" in r.why and "verified" in r.why for r in result.because)
    assert result.next_deadline.kind == "ship-warning"
    assert "day 23" in result.next_deadline.what_happens
    assert explain(ledger, oid(99)) is None


def test_history_and_explain_cli(sqlite_url):
    with Ledger(sqlite_url) as led:
        list(led.apply_lines(lines(*_story(oid(1)))))
    runner = CliRunner()
    out = runner.invoke(main, ["history", oid(1), "--db", sqlite_url, "--json"])
    assert out.exit_code == 0
    data = json.loads(out.output)
    assert data[-1]["type"] == "LedgerCanceled" and data[-1]["state"]["status"] == "Shipped"
    text = runner.invoke(main, ["history", oid(1), "--db", sqlite_url]).output
    # the recording time may follow the command id: "(command ship-1, recorded ...)"
    assert re.search(r"ShipmentConfirmed by seller \(command ship-1(, recorded [^)]+)?\)", text)
    text = runner.invoke(main, ["explain", oid(1), "--db", sqlite_url]).output
    assert "ShipmentNotConfirmed" in text and "is Shipped" in text
    assert runner.invoke(main, ["history", oid(5), "--db", sqlite_url]).exit_code == 1


def _views(led: Ledger, orders: list[str]) -> list[dict]:
    return [led.order(o).view() for o in orders]


def test_export_import_round_trip(db_url, tmp_path):
    orders = [oid(1), oid(2)]
    with Ledger(db_url) as src:
        list(src.apply_lines(lines(
            cmd("set-inventory", at(-10), sku="SKU-1", quantity=5), *_story(oid(1)),
            place(oid(2), at(days=31, minutes=1)))))
        buf = io.BytesIO()
        n = export_bundle(src, buf)
        assert n == src.head()
        expected = _views(src, orders)
        stock = src.inventory("SKU-1").available
        clock = src.now()
    target = str(tmp_path / "copy.db")
    with Ledger(target) as dst:
        assert import_bundle(dst, buf.getvalue()) == n
        assert _views(dst, orders) == expected
        assert dst.inventory("SKU-1").available == stock
        # the clock is the source's watermark (its last tick), not the latest event
        assert dst.now() == clock < dst.order(oid(2)).placed.at
        # the deadline index came along: the new order's hold still expires (a day
        # later, not a year: a tick from the future is rejected time-future)
        out = dst.tick(clock + timedelta(days=1))
        assert "HoldExpired" in out.events
        # and command ids: re-applying the story is all duplicates
        outs = list(dst.apply_lines(lines(*_story(oid(1))[3:4])))
        assert outs[0].status == "duplicate"


def test_redacted_bundle_hides_personal_data_with_stable_pseudonyms(sqlite_url):
    with Ledger(sqlite_url) as src:
        list(src.apply_lines(lines(*released(oid(1)), *released(oid(2), when_minutes=40))))
        a, b = io.BytesIO(), io.BytesIO()
        export_bundle(src, a, redact=True, salt=b"s1")
        export_bundle(src, b, redact=True, salt=b"s1")
    text = a.getvalue().decode()
    for secret in ("Anna Andersson", "anna@example.se", "+46701234567", "Storgatan 1", "11122"):
        assert secret not in text
    assert a.getvalue() == b.getvalue()  # same salt, same pseudonyms
    _, events = read_bundle(a.getvalue())
    names = {p.buyer.name for _, p in events if type(p).__name__ == "OrderPlaced"}
    assert len(names) == 1  # the same buyer gets the same pseudonym on both orders


@pytest.mark.parametrize("damage", ["edit", "cut", "drop-line", "garbage"])
def test_damaged_bundle_is_refused_and_nothing_imported(sqlite_url, tmp_path, damage):
    with Ledger(sqlite_url) as src:
        list(src.apply_lines(lines(*released(oid(1)))))
        buf = io.BytesIO()
        export_bundle(src, buf)
    data = buf.getvalue()
    rows = data.splitlines(keepends=True)
    if damage == "edit":
        data = data.replace(b"Anna Andersson", b"Anna Anderzon")
    elif damage == "cut":
        data = data[: len(data) // 2]
    elif damage == "drop-line":
        data = b"".join(rows[:2] + rows[3:])
    else:
        data = b"not a bundle\n" + data
    target = str(tmp_path / "t.db")
    with Ledger(target) as dst:
        with pytest.raises(BundleError):
            import_bundle(dst, data)
        assert dst.head() == 0
    path = tmp_path / "bad.jsonl"
    path.write_bytes(data)
    result = CliRunner().invoke(main, ["import", str(path), "--db", str(tmp_path / "t2.db")])
    assert result.exit_code == 1 and "nothing imported" in result.output


def test_import_refuses_a_non_empty_ledger_and_export_cli_filters(sqlite_url, tmp_path):
    with Ledger(sqlite_url) as src:
        list(src.apply_lines(lines(*released(oid(1)), *released(oid(2), when_minutes=40))))
    runner = CliRunner()
    out = tmp_path / "one.jsonl"
    result = runner.invoke(main, ["export", "--db", sqlite_url, "--order", oid(2), "--out", str(out)])
    assert result.exit_code == 0
    _, events = read_bundle(out.read_bytes())
    assert {p.order_id for _, p in events} == {oid(2)}
    result = runner.invoke(main, ["import", str(out), "--db", sqlite_url])
    assert result.exit_code == 1 and "not empty" in result.output
    result = runner.invoke(main, ["export", "--db", sqlite_url, "--out",
                                  str(tmp_path / "missing" / "b.jsonl")])
    assert result.exit_code == 2
