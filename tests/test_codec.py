"""Event encoding: msgspec JSON, typed decode, upcasting, the deadline index."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal

import msgspec
import pytest

from builders import at, cmd, item, lines, oid, place, released
from ledger import codec
from ledger import events as ev
from ledger.errors import StoreError


def test_payloads_round_trip_with_their_types(ledger):
    list(ledger.apply_lines(lines(place(oid(1), at(0), [item(price="199.90")]))))
    (_, agg_id, placed), = [e for e in ledger.iter_events() if isinstance(e[2], ev.OrderPlaced)]
    assert agg_id == f"order:{oid(1)}"
    assert isinstance(placed.items[0].item_price, Decimal)
    assert placed.items[0].item_price == Decimal("199.90")
    assert isinstance(placed.at, datetime) and placed.at.utcoffset() is not None
    assert isinstance(placed.buyer, ev.Buyer)


def test_stored_state_is_msgspec_json_under_a_versioned_topic(sqlite_url):
    import sqlite3

    from ledger.application import Ledger

    with Ledger(sqlite_url) as led:
        list(led.apply_lines(lines(place(oid(1), at(0)))))
    topic, state = sqlite3.connect(sqlite_url).execute(
        "SELECT topic, state FROM stored_events").fetchone()
    assert topic == "OrderPlaced:v1"
    doc = json.loads(state)
    assert doc["type"] == "OrderPlaced" and doc["items"][0]["item_price"] == "100.00"


def test_old_versions_are_upcast(monkeypatch):
    """A v1 payload read after the class moved to v2 goes through the upcaster."""
    old = msgspec.json.encode(ev.PaymentExtended(
        at=datetime.fromisoformat(at(0)), actor="payments", command_id="c", order_id=oid(1)))
    monkeypatch.setattr(ev.PaymentExtended, "VERSION", 2)
    seen = []

    def v1_to_v2(d: dict) -> dict:
        seen.append(d["order_id"])
        d["actor"] = "payments-v2"
        return d

    monkeypatch.setitem(codec.UPCASTERS, ("PaymentExtended", 1), v1_to_v2)
    monkeypatch.delitem(codec._decoders, "PaymentExtended:v1")
    payload = codec.decode_payload("PaymentExtended:v1", old)
    assert seen == [oid(1)] and payload.actor == "payments-v2"


def test_unknown_topic_and_missing_upcaster_are_clear_errors(monkeypatch):
    with pytest.raises(StoreError, match="unknown event topic"):
        codec.decode_payload("Nope:v1", b"{}")
    monkeypatch.setattr(ev.PaymentExtended, "VERSION", 3)
    monkeypatch.delitem(codec._decoders, "PaymentExtended:v1")
    with pytest.raises(StoreError, match="no upcaster"):
        codec.decode_payload("PaymentExtended:v1", b'{"type":"PaymentExtended"}')


def test_deadline_index_holds_each_open_orders_next_deadline(ledger):
    list(ledger.apply_lines(lines(*released(oid(1)), place(oid(2), at(40)))))
    rows = {r[0]: r[2] for r in ledger.recorder.due_deadlines(datetime.fromisoformat(at(days=60)))}
    assert rows == {oid(1): "ship-warning", oid(2): "hold-expiry"}
    list(ledger.apply_lines(lines(cmd("ship", at(50), order_id=oid(1), carrier_code="UPS",
                                      ship_date=at(50)[:10]))))
    rows = {r[0]: r[2] for r in ledger.recorder.due_deadlines(datetime.fromisoformat(at(days=60)))}
    assert rows == {oid(2): "hold-expiry"}  # shipped orders leave the index
