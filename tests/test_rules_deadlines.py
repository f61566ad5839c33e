"""docs/rules.md 3.9 (day-23 warning, day-30 cancel) and how deadlines fire:
by tick or before any later command, in due order across orders."""

from __future__ import annotations

import pytest

from builders import oid
from test_rules_support import (
    A, B, available, cmd, dt, item, last_event, names, ok, ok1, order_events, place, quantities,
    rejects, released, ship, t, two_items, view,
)

O = oid(1)
WARNING = "Confirm as shipped by 2026-04-01 to avoid cancellation"  # T0 + 30 days


# --- day 23 -------------------------------------------------------------------------------------


def test_day_23_warning_exactly_at_purchase_plus_23_days(ledger):
    ok(ledger, *released(O))
    assert view(ledger, O)["next_deadline"] == {"kind": "ship-warning", "at": t(days=23)}
    assert ok1(ledger, cmd("tick", t(days=23, microseconds=-1))).events == []
    assert view(ledger, O)["warning"] is None
    out = ok1(ledger, cmd("tick", t(days=23)))
    assert out.events == ["ShipByWarningIssued"]
    e = last_event(ledger, O, "ShipByWarningIssued")
    assert e.at == dt(t(days=23)) and e.actor == "ledger"
    assert e.ship_by == dt(t(days=30)) and e.text == WARNING
    v = view(ledger, O)
    assert v["warning"] == WARNING and v["status"] == "Unshipped"
    assert v["next_deadline"] == {"kind": "ship-limit", "at": t(days=30)}


def test_warning_then_shipment_clears_it(ledger):
    ok(ledger, *released(O), cmd("tick", t(days=25)))
    assert view(ledger, O)["warning"] == WARNING
    ok1(ledger, ship(O, t(days=26)))
    v = view(ledger, O)
    assert v["status"] == "Shipped" and v["warning"] is None and v["next_deadline"] is None
    assert "LedgerCanceled" not in names(order_events(ledger, O))
    ok1(ledger, cmd("tick", t(days=60)))
    assert view(ledger, O)["status"] == "Shipped"


def test_warning_stays_on_a_partially_shipped_order(ledger):
    ok(ledger, *released(O, items=two_items()), ship(O, t(days=1), [(A, 2)]),
       cmd("tick", t(days=23)))
    v = view(ledger, O)
    assert v["status"] == "PartiallyShipped" and v["warning"] == WARNING


def test_warning_date_is_the_purchase_offset_calendar_date(ledger):
    # purchased 23:30 +01:00 on 2026-03-02 = 22:30 UTC: the date stays 2026-04-01
    late = dt("2026-03-02T23:30:00+01:00")
    ok(ledger, place(O, late.isoformat()),
       cmd("verify-payment", t(minutes=5, base=late), order_id=O, outcome="verified"),
       cmd("tick", t(days=23, base=late)))
    assert view(ledger, O)["warning"] == WARNING


def test_no_warning_for_pending_or_closed_orders(ledger):
    ok(ledger, place(O, t()), *released(oid(2), minutes=1),
       ship(oid(2), t(hours=1)), cmd("tick", t(days=20)))
    ok1(ledger, cmd("tick", t(days=24)))
    assert "ShipByWarningIssued" not in names(order_events(ledger, O))
    assert "ShipByWarningIssued" not in names(order_events(ledger, oid(2)))


# --- day 30 ----------------------------------------------------------------------------------


def test_day_30_cancels_an_unshipped_order(ledger):
    ok(ledger, cmd("set-inventory", t(), sku="MUG-1", quantity=5),
       *released(O, items=two_items()), cmd("tick", t(days=23)))
    assert ok1(ledger, cmd("tick", t(days=30, microseconds=-1))).events == []
    out = ok1(ledger, cmd("tick", t(days=30)))
    assert out.events == ["LedgerCanceled", "InventoryReturned"]
    e = last_event(ledger, O, "LedgerCanceled")
    assert e.reason == "ShipmentNotConfirmed" and e.at == dt(t(days=30)) and e.status == "Canceled"
    v = view(ledger, O)
    assert v["status"] == "Canceled" and v["cancel_reason"] == "ShipmentNotConfirmed"
    assert v["canceled_by"] == "ledger" and v["warning"] is None and v["next_deadline"] is None
    assert quantities(ledger, O) == [(0, 2, 0), (0, 1, 0)]
    assert available(ledger, "MUG-1") == 5


def test_day_30_cancels_the_rest_of_a_partially_shipped_order_which_ends_shipped(ledger):
    ok(ledger, *released(O, items=two_items()), ship(O, t(days=2), [(A, 1)]))
    out = ok1(ledger, cmd("tick", t(days=30)))
    assert out.events == ["ShipByWarningIssued", "LedgerCanceled"]
    e = last_event(ledger, O, "LedgerCanceled")
    assert {(q.order_item_id, q.quantity) for q in e.canceled} == {(A, 1), (B, 1)}
    assert e.status == "Shipped"
    v = view(ledger, O)
    assert v["status"] == "Shipped" and not v["actionable"]
    assert quantities(ledger, O) == [(1, 1, 0), (0, 1, 0)]


def test_day_30_counts_from_purchase_even_after_a_late_release(ledger):
    ok(ledger, place(O, t()), cmd("verify-payment", t(days=10), order_id=O, outcome="verified"))
    ok1(ledger, cmd("tick", t(days=30)))
    assert view(ledger, O)["status"] == "Canceled"


def test_ship_confirmation_just_before_day_30_saves_the_order(ledger):
    ok(ledger, *released(O))
    ok1(ledger, ship(O, t(days=30, microseconds=-1), ship_date="2026-03-05"))
    ok1(ledger, cmd("tick", t(days=31)))
    assert view(ledger, O)["status"] == "Shipped"


def test_ship_confirmation_at_day_30_is_too_late(ledger):
    ok(ledger, *released(O))
    # the deadline is due at the command's time, so the order is Canceled when the line runs
    rejects(ledger, ship(O, t(days=30), ship_date="2026-03-05"), "order-canceled")
    # ... but the rejected line wrote nothing: the cancel is written by the next accepted line
    assert view(ledger, O)["status"] == "Unshipped"
    out = ok1(ledger, cmd("tick", t(days=30)))
    assert out.events == ["ShipByWarningIssued", "LedgerCanceled"]


# --- deadlines fire without tick, in due order across orders -------------------------------------


def test_deadlines_fire_before_a_later_command_without_tick(ledger):
    ok(ledger, *released(O))
    out = ok1(ledger, cmd("set-inventory", t(days=31), sku="OTHER", quantity=1))
    assert out.events == ["ShipByWarningIssued", "LedgerCanceled", "InventorySet"]
    warn, cancel = order_events(ledger, O)[-2:]
    assert warn.at == dt(t(days=23)) and cancel.at == dt(t(days=30))
    assert view(ledger, O)["status"] == "Canceled"


def test_deadlines_of_many_orders_fire_in_due_order(ledger):
    a, b, c, d = oid(1), oid(2), oid(3), oid(4)
    ok(ledger,
       cmd("set-inventory", t(), sku="MUG-1", quantity=10),
       *released(a, 0, [item(sku="MUG-1")]),          # released: warn +23 d, cancel +30 d
       *released(b, 60),                               # one hour later
       place(c, t(minutes=90), [item(sku="MUG-1")]),   # never verified: 21-day limit
       place(d, t(minutes=90)),                        # same time as c: ties by order id
       ship(b, t(days=1)))                             # b shipped: no deadlines
    ok1(ledger, cmd("tick", t(days=5)))
    start = ledger.head()
    out = ok1(ledger, cmd("tick", t(days=40), command_id="big-tick"))
    fired = [(agg, type(e).__name__, e.at) for pos, agg, e in ledger.iter_events(after=start)]
    assert fired == [
        ("order:" + c, "LedgerCanceled", dt(t(days=21, minutes=90))),
        ("sku:MUG-1", "InventoryReturned", dt(t(days=21, minutes=90))),
        ("order:" + d, "LedgerCanceled", dt(t(days=21, minutes=90))),
        ("order:" + a, "ShipByWarningIssued", dt(t(days=23))),
        ("order:" + a, "LedgerCanceled", dt(t(days=30))),
        ("sku:MUG-1", "InventoryReturned", dt(t(days=30))),
    ]
    assert out.events == [f[1] for f in fired]
    assert all(e.command_id == "big-tick" for _, _, e in ledger.iter_events(after=start))
    assert available(ledger, "MUG-1") == 10


def test_deadlines_fire_in_due_order_inside_one_batch(ledger):
    # the whole history in one apply run: deadlines due between lines fire between them
    outs = ok(ledger, *released(O), place(oid(2), t(days=22)),
              cmd("verify-payment", t(days=22, minutes=1), order_id=oid(2), outcome="verified"),
              cmd("tick", t(days=24)), ship(oid(2), t(days=25)))
    assert outs[-2].events == ["HoldExpired", "ShipByWarningIssued"]
    assert outs[-1].events == ["ShipmentConfirmed"]
    assert view(ledger, O)["warning"] == WARNING
    assert view(ledger, oid(2))["status"] == "Shipped"


def test_tick_with_nothing_due_writes_no_events(ledger):
    ok(ledger, *released(O))
    before = ledger.head()
    out = ok1(ledger, cmd("tick", t(days=1)))
    assert out.events == [] and ledger.head() == before
    assert ledger.now() == dt(t(days=1))  # but the clock moves


@pytest.mark.parametrize("days", [23, 30])
def test_deadline_events_name_the_command_that_made_them_due(ledger, days):
    ok(ledger, *released(O))
    ok1(ledger, cmd("receive-message", t(days=days), order_id=O, command_id="msg-1",
                    **{"from": "buyer"}, body="Var är mitt paket?"))
    fired = [e for e in order_events(ledger, O) if e.actor == "ledger" and e.at > dt(t(hours=1))]
    assert fired and all(e.command_id == "msg-1" for e in fired)
