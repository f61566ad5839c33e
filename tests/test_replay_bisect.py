"""Bisect: the first event after which a condition stops holding, checked against a
brute-force scan of every position on random histories."""

from __future__ import annotations

import json
import re
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import test_projections_property as tpp
from builders import T0, at, cmd, item, place
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.application import Ledger
from order_ledger.cli import main
from projections import project
from projections.rows import plain
from replay import asof
from replay.bisect import BisectError, bisect, compile_predicate, until_status

O22 = "203-0000022-0174218"
O1 = "203-0000001-0007919"


@pytest.fixture(scope="module")
def shop(walkthrough_db):
    return walkthrough_db


def _bisect(db: str, *args: str):
    return CliRunner().invoke(main, ["bisect", "--db", db, *args])


def test_until_status_finds_the_day_30_cancel(shop):
    r = _bisect(shop, "--order", O22, "--until-status", "Canceled", "--json")
    assert r.exit_code == 0, r.output
    f = json.loads(r.output)
    assert f["outcome"] == "found" and f["method"] == "order-events"
    e = f["event"]
    assert (e["type"], e["actor"], e["command_id"]) == ("LedgerCanceled", "ledger", "wt-0173")
    assert e["fields"]["reason"] == "ShipmentNotConfirmed"
    assert e["recorded_at"] and "recorded_at" not in e["fields"]  # envelope, not a field
    assert f["before"]["order"]["status"] == "Unshipped"
    assert f["after"]["order"]["status"] == "Canceled"
    text = _bisect(shop, "--order", O22, "--until-status", "Canceled").output
    assert f"#{e['position']}" in text and "LedgerCanceled by ledger" in text
    assert re.search(rf"\(command {e['command_id']}(, recorded [^)]+)?\) on {e['aggregate']}",
                     text)
    assert "\n    reason=ShipmentNotConfirmed" in text  # the event's fields, one line under it
    assert "before" in text and "after" in text
    # the same with a general condition; its first event when it fails at once
    same = json.loads(_bisect(shop, "--order", O22, "--expect",
                              "order.warning is None", "--json").output)
    assert same["event"]["type"] == "ShipByWarningIssued"
    first = json.loads(_bisect(shop, "--order", O22, "--until-status", "Pending",
                               "--json").output)
    assert first["event"]["type"] == "OrderPlaced" and first["before"]["order"] is None


def test_outcomes_and_exit_codes(shop):
    never = _bisect(shop, "--order", O1, "--until-status", "Canceled")
    assert never.exit_code == 1 and "never stops holding" in never.output
    start = _bisect(shop, "--expect", "metrics.valid_tracking_rate.denominator > 0")
    assert start.exit_code == 1 and "does not hold at the start" in start.output
    # None (nothing in the window) counts as holding
    found = _bisect(shop, "--expect", "metrics.valid_tracking_rate.rate > 0.5", "--json")
    assert found.exit_code == 1 and json.loads(found.output)["outcome"] == "never-fails"
    for bad in (["--expect", "order.__class__"], ["--expect", "order.status =="],
                ["--expect", "1 < 2"], ["--expect", "order.status != 'x'"],
                ["--until-status", "Canceled"], ["--order", O1, "--expect", "order.nope"],
                ["--order", "203-9999999-9999999", "--until-status", "Shipped"],
                ["--order", O1]):
        assert _bisect(shop, *bad).exit_code == 2, bad


def test_metrics_bisect_binary_and_linear(shop):
    cond = "metrics.cancellation_rate.numerator < 2"
    binary = json.loads(_bisect(shop, "--expect", cond, "--json").output)
    linear = json.loads(_bisect(shop, "--expect", cond, "--linear", "--json").output)
    assert binary["method"] == "binary" and linear["method"] == "linear"
    assert linear["outcome"] == "found"
    assert linear["event"]["type"] in ("SellerCanceled", "OrderAdjusted", "LedgerCanceled")
    assert linear["before"]["metrics"]["cancellation_rate"]["numerator"] == 1
    assert linear["after"]["metrics"]["cancellation_rate"]["numerator"] == 2
    # with one evaluation instant the numerator can only grow: both searches agree
    fixed = ["--at", "2026-03-12T00:00:00+01:00"]
    b = json.loads(_bisect(shop, "--expect", cond, *fixed, "--json").output)
    li = json.loads(_bisect(shop, "--expect", cond, *fixed, "--linear", "--json").output)
    assert b["outcome"] == li["outcome"] == "found" and b["position"] == li["position"]
    assert b["evaluations"] < 12  # O(log n) replays


def test_predicate_sandbox():
    p = compile_predicate("len(order.items) == 1 and metrics.late_shipment_rate['10d'].rate < 1")
    assert p.uses_order and p.uses_metrics
    m = {"late_shipment_rate": {"10d": {"rate": None}}}
    assert p.holds({"items": [{}]}, m)  # a None comparison is undefined: holds
    with pytest.raises(BisectError):
        compile_predicate("order.items.__len__() > 0")
    with pytest.raises(BisectError):
        compile_predicate("__import__('os')")
    with pytest.raises(BisectError, match="NameError"):  # no such builtin here
        compile_predicate("open('/etc/passwd') and order").holds({}, None)
    with pytest.raises(BisectError, match="AttributeError"):
        compile_predicate("order.status").holds({"items": []}, None)
    with pytest.raises(BisectError):
        until_status("Gone")


# --- property: bisect == a linear scan of every position ---------------------------------------

CONDITIONS = {
    # name: (condition text, the same as a function of the Manage Orders row)
    "status": lambda s: (f"order.status != {s!r}", lambda o: o["status"] != s),
    "shipped": lambda k: (f"order.items[0].quantity_shipped < {k}",
                          lambda o: o["items"][0]["quantity_shipped"] < k),
    "canceled": lambda k: (f"sum(i.quantity_canceled for i in order.items) < {k}",
                           lambda o: sum(i["quantity_canceled"] for i in o["items"]) < k),
    "warning": lambda _: ("order.warning is None", lambda o: o["warning"] is None),
    "request": lambda _: ("not order.buyer_requested_cancel",
                          lambda o: not o["buyer_requested_cancel"]),
}


STEP = st.sampled_from(["ship-one", "ship-one", "ship-rest", "ship-rest", "request",
                        "adjust", "refund", "cancel", "message"])


@st.composite
def order_life(draw, order_id: str) -> list[tuple[int, dict]]:
    """One order: placed, a payment outcome, then mostly shipments (with some requests,
    adjustments, refunds, cancels and messages); some steps may be rejected."""
    t = draw(st.integers(0, 2 * tpp.DAY))
    items = [item("I1", quantity=draw(st.integers(1, 3)))]
    if draw(st.booleans()):
        items.append(item("I2", "SKU-2", quantity=draw(st.integers(1, 2))))
    out = [(t, place(order_id, at(t), items))]
    first = draw(st.sampled_from(["verified"] * 5 + ["late", "extended", "declined",
                                                     "buyer-cancel"]))
    t += draw(st.integers(1, 29))
    if first == "buyer-cancel":
        out.append((t, cmd("cancel", at(t), order_id=order_id, by="buyer")))
    elif first == "late":
        t += draw(st.integers(30, tpp.DAY))
        out.append((t, cmd("verify-payment", at(t), order_id=order_id, outcome="verified")))
    else:
        out.append((t, cmd("verify-payment", at(t), order_id=order_id, outcome=first)))
    for step in draw(st.lists(STEP, min_size=1, max_size=5)):
        t += draw(st.integers(31, 4 * tpp.DAY))
        day = (T0 + timedelta(minutes=t)).date().isoformat()
        if step.startswith("ship"):
            c = cmd("ship", at(t), order_id=order_id, carrier_code="UPS", ship_date=day,
                    tracking_number="1Z" if draw(st.booleans()) else None)
            if step == "ship-one":
                c["items"] = [{"order_item_id": "I1", "quantity": 1}]
        elif step == "request":
            c = cmd("request-cancel", at(t), order_id=order_id)
        elif step in ("adjust", "refund"):
            c = cmd("adjust", at(t), order_id=order_id, items=[{
                "order_item_id": "I1", "reason": "NoInventory",
                "quantity_cancelled": 1 if step == "adjust" else 0, "item_price_adj": "1"}])
        elif step == "cancel":
            c = cmd("cancel", at(t), order_id=order_id, by="seller",
                    reason=draw(st.sampled_from(["NoInventory", "BuyerCanceled"])))
        else:
            c = cmd("receive-message", at(t), order_id=order_id, **{"from": "buyer"},
                    body="Hej!")
        out.append((t, c))
    return out


@st.composite
def histories(draw):
    n = draw(st.integers(1, 3))
    timed: list[tuple[int, dict]] = []
    for o in tpp.ORDERS[:n]:
        timed += draw(order_life(o))
    for t in draw(st.lists(st.sampled_from([40, tpp.DAY, 22 * tpp.DAY, 24 * tpp.DAY,
                                            31 * tpp.DAY]), min_size=1, max_size=3)):
        timed.append((t, cmd("tick", at(t))))
    return [c for _, c in sorted(timed, key=lambda x: x[0])]


def _build(d: Path, commands: list[dict]) -> tuple[Ledger, dict[int, datetime]]:
    """Apply one command at a time; the clock after each is the command's own time."""
    led = Ledger(str(d / "l.db"))
    clock: dict[int, datetime] = {}
    for c in commands:
        before = led.head()
        list(led.apply_lines([json.dumps(c)]))
        for p in range(before + 1, led.head() + 1):
            clock[p] = datetime.fromisoformat(c["at"])
    return led, clock


@pytest.mark.parametrize("kind", sorted(CONDITIONS))
@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(histories(), st.data())
def test_order_bisect_agrees_with_a_linear_scan(kind, commands, data):
    arg = data.draw(st.sampled_from(["Pending", "Unshipped", "PartiallyShipped", "Shipped",
                                     "Canceled"]) if kind == "status" else st.integers(1, 2))
    text, oracle = CONDITIONS[kind](arg)
    order = tpp.ORDERS[0]
    with tempfile.TemporaryDirectory() as tmp:
        led, clock = _build(Path(tmp), commands)
        with led:
            expected = None
            for p in range(1, led.head() + 1):
                row = plain(project(led.iter_events(upto=p), ["orders"]).order(order))
                if row is not None and not oracle(row):
                    expected = p
                    break
            found = bisect(led, compile_predicate(text), order)
            for p, t in clock.items():  # and the clock as-of and bisect use
                assert asof.clock_at(led, p) == t
    if expected is None:
        assert found.outcome == "never-fails"
    else:
        assert found.outcome == "found" and found.position == expected
        assert found.event["position"] == expected and found.after["order"] is not None


METRIC_CONDITIONS = [
    # with one evaluation instant these only go one way (binary search is exact)
    ("metrics.valid_tracking_rate.denominator < {k}", T0 + timedelta(days=29)),
    ("metrics.cancellation_rate.numerator < {k}", T0 + timedelta(days=3)),
    # evaluated at each position's own clock: may flip back (linear search only)
    ("metrics.late_shipment_rate['30d'].numerator < {k}", None),
    ("metrics.valid_tracking_rate.rate is None or metrics.valid_tracking_rate.rate > 0.{k}",
     None),
]


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(histories(), st.sampled_from(METRIC_CONDITIONS), st.integers(1, 2))
def test_metrics_bisect_agrees_with_a_linear_scan(commands, condition, k):
    template, when = condition
    text = template.format(k=k)
    pred = compile_predicate(text)
    with tempfile.TemporaryDirectory() as tmp:
        led, clock = _build(Path(tmp), commands)
        with led:
            expected, outcome = None, "never-fails"
            for p in range(0, led.head() + 1):
                t = when or clock.get(p) or clock.get(1) or T0
                m = project(led.iter_events(upto=p) if p else [], ["metrics"]).metrics(t)
                if not pred.holds(None, m):
                    expected, outcome = p, ("fails-at-start" if p == 0 else "found")
                    break
            linear = bisect(led, pred, at=when, linear=True)
            binary = bisect(led, pred, at=when) if when is not None else None
    assert linear.outcome == outcome
    if outcome == "found":
        assert linear.position == expected
    if binary is not None:
        assert binary.outcome == outcome and binary.position == linear.position
