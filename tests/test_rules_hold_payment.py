"""docs/rules.md 3.2-3.5 (hold, hold expiry, payment verification, release) and
section 5 (who is told what: declined/fraud are recorded only)."""

from __future__ import annotations

import json

import msgspec
import pytest

from builders import oid
from test_rules_support import (
    T0, available, cmd, dt, item, last_event, names, ok, ok1, order_events, place, quantities,
    rejects, released, ship, t, two_items, view,
)

O = oid(1)


# --- 3.2 buyer hold -------------------------------------------------------------------------


@pytest.mark.parametrize("when", [t(), t(minutes=10), t(minutes=29, seconds=59, microseconds=999999)])
def test_buyer_cancel_inside_the_hold_cancels_the_whole_order(ledger, when):
    ok(ledger, cmd("set-inventory", t(), sku="MUG-1", quantity=5),
       place(O, t(), two_items(qa=2, qb=1)))
    out = ok1(ledger, cmd("cancel", when, order_id=O, by="buyer", reason="Changed my mind"))
    assert out.events == ["BuyerCanceled", "InventoryReturned"]
    v = view(ledger, O)
    assert v["status"] == "Canceled" and v["actionable"] is False  # greyed out
    assert v["canceled_by"] == "buyer"
    assert quantities(ledger, O) == [(0, 2, 0), (0, 1, 0)]
    assert v["next_deadline"] is None
    assert available(ledger, "MUG-1") == 5
    # the hold never expires for a canceled order
    ok1(ledger, cmd("tick", t(days=31)))
    assert "HoldExpired" not in names(order_events(ledger, O))


def test_buyer_cancel_inside_the_hold_after_a_recorded_outcome(ledger):
    ok(ledger, place(O, t()), cmd("verify-payment", t(minutes=5), order_id=O, outcome="verified"))
    ok1(ledger, cmd("cancel", t(minutes=20), order_id=O, by="buyer"))
    ok1(ledger, cmd("tick", t(minutes=30)))
    assert view(ledger, O)["status"] == "Canceled"
    assert names(order_events(ledger, O)) == ["OrderPlaced", "PaymentVerified", "BuyerCanceled"]


@pytest.mark.parametrize("when", [t(minutes=30), t(minutes=30, microseconds=1), t(days=1)])
def test_buyer_cancel_at_or_after_hold_end_is_rejected(ledger, when):
    ok1(ledger, place(O, t()))
    if when != t(minutes=30):
        ok1(ledger, cmd("tick", t(minutes=30)))  # the hold expiry is written first
    err = rejects(ledger, cmd("cancel", when, order_id=O, by="buyer"), "hold-over")
    assert "request-cancel" in err["hint"]
    assert dt(t(minutes=30)).isoformat() in err["message"]


def test_buyer_cancel_of_a_released_order_is_rejected(ledger):
    ok(ledger, *released(O))
    rejects(ledger, cmd("cancel", t(hours=1), order_id=O, by="buyer"), "hold-over")


# --- 3.3 hold expiry --------------------------------------------------------------------------


def test_hold_expiry_is_an_event_of_its_own_written_by_tick(ledger):
    ok1(ledger, place(O, t()))
    assert ok1(ledger, cmd("tick", t(minutes=29, seconds=59))).events == []
    out = ok1(ledger, cmd("tick", t(minutes=30), command_id="tick-1"))
    assert out.events == ["HoldExpired"]
    e = last_event(ledger, O, "HoldExpired")
    assert e.actor == "ledger" and e.at == dt(t(minutes=30)) and e.command_id == "tick-1"
    assert e.status == "Pending" and e.applied_outcome is None
    v = view(ledger, O)
    assert v["status"] == "Pending" and not v["actionable"]
    assert v["next_deadline"] == {"kind": "verification-limit", "at": t(days=21)}


def test_hold_expiry_is_written_before_any_later_command(ledger):
    ok1(ledger, place(O, t()))
    assert view(ledger, O)["next_deadline"] == {"kind": "hold-expiry", "at": t(minutes=30)}
    out = ok1(ledger, cmd("receive-message", t(hours=5), order_id=O, **{"from": "buyer"},
                          body="Hej!"))
    assert out.events == ["HoldExpired", "MessageReceived"]
    held, received = order_events(ledger, O)[1:]
    assert held.at == dt(t(minutes=30)) and received.at == dt(t(hours=5))
    assert held.command_id == received.command_id  # caused by that line's time


def test_hold_expiry_before_a_command_on_another_order(ledger):
    ok1(ledger, place(O, t()))
    out = ok1(ledger, place(oid(2), t(hours=1)))
    assert out.events == ["HoldExpired", "OrderPlaced"]
    assert names(order_events(ledger, O)) == ["OrderPlaced", "HoldExpired"]


# --- 3.4 outcomes during the hold take effect at hold end ---------------------------------------


def test_verified_during_hold_releases_at_hold_end(ledger):
    ok1(ledger, place(O, t()))
    ok1(ledger, cmd("verify-payment", t(minutes=5), order_id=O, outcome="verified"))
    e = last_event(ledger, O, "PaymentVerified")
    assert e.effective is False and e.status == "Pending" and e.actor == "payments"
    v = view(ledger, O)
    assert v["status"] == "Pending" and v["payment"] == "verified" and v["payments_date"] is None
    out = ok1(ledger, cmd("tick", t(hours=3)))
    assert out.events == ["HoldExpired"]
    e = last_event(ledger, O, "HoldExpired")
    assert e.applied_outcome == "verified" and e.status == "Unshipped"
    v = view(ledger, O)
    assert v["status"] == "Unshipped" and v["actionable"]
    assert dt(v["payments_date"]) == dt(t(minutes=30))  # payments date = hold end
    # no shift: released on time
    assert dt(v["latest_ship_date"]) == dt(t(days=2))
    assert dt(v["latest_delivery_date"]) == dt(t(days=7))
    assert quantities(ledger, O) == [(0, 0, 1)]


@pytest.mark.parametrize("outcome", ["declined", "fraud"])
def test_declined_or_fraud_during_hold_cancels_at_hold_end_silently(ledger, outcome):
    ok(ledger, cmd("set-inventory", t(), sku="SKU-1", quantity=4), place(O, t(), [item(quantity=3)]))
    out = ok1(ledger, cmd("verify-payment", t(minutes=2), order_id=O, outcome=outcome))
    assert out.events == ["PaymentDeclined"]
    assert view(ledger, O)["status"] == "Pending"
    assert available(ledger, "SKU-1") == 1  # not returned yet
    out = ok1(ledger, cmd("tick", t(minutes=30)))
    # recorded only: the hold expiry and the returned units, no notification of any kind
    assert out.events == ["HoldExpired", "InventoryReturned"]
    e = last_event(ledger, O, "HoldExpired")
    assert e.applied_outcome == outcome and e.status == "Canceled"
    v = view(ledger, O)
    assert v["status"] == "Canceled" and v["cancel_reason"] == outcome
    assert v["canceled_by"] == "payments" and v["payments_date"] is None
    assert available(ledger, "SKU-1") == 4
    assert names(order_events(ledger, O)) == ["OrderPlaced", "PaymentDeclined", "HoldExpired"]


@pytest.mark.parametrize("first,second", [
    ("verified", "declined"), ("verified", "verified"), ("declined", "verified"),
    ("fraud", "declined"), ("verified", "extended"),
])
def test_second_outcome_during_hold_is_rejected(ledger, first, second):
    ok(ledger, place(O, t()), cmd("verify-payment", t(minutes=1), order_id=O, outcome=first))
    err = rejects(ledger, cmd("verify-payment", t(minutes=2), order_id=O, outcome=second),
                  "outcome-recorded")
    assert first in err["message"]


def test_extended_during_hold_may_be_followed_by_a_final_outcome(ledger):
    ok(ledger, place(O, t()), cmd("verify-payment", t(minutes=1), order_id=O, outcome="extended"),
       cmd("verify-payment", t(minutes=2), order_id=O, outcome="verified"),
       cmd("tick", t(minutes=30)))
    assert view(ledger, O)["status"] == "Unshipped"


# --- 3.4 outcomes after the hold -------------------------------------------------------------------


def _after_hold(ledger):
    ok(ledger, cmd("set-inventory", t(), sku="SKU-1", quantity=5),
       place(O, t(), [item(quantity=2)]), cmd("tick", t(minutes=30)))


def test_verified_after_hold_releases_at_once(ledger):
    _after_hold(ledger)
    out = ok1(ledger, cmd("verify-payment", t(minutes=30), order_id=O, outcome="verified"))
    assert out.events == ["PaymentVerified"]
    e = last_event(ledger, O, "PaymentVerified")
    assert e.effective and e.status == "Unshipped"
    v = view(ledger, O)
    assert v["status"] == "Unshipped" and dt(v["payments_date"]) == dt(t(minutes=30))
    assert dt(v["latest_ship_date"]) == dt(t(days=2))  # released at hold end: no shift


def test_extended_stays_pending_and_non_actionable(ledger):
    _after_hold(ledger)
    out = ok1(ledger, cmd("verify-payment", t(hours=1), order_id=O, outcome="extended"))
    assert out.events == ["PaymentExtended"]
    v = view(ledger, O)
    assert v["status"] == "Pending" and not v["actionable"] and v["payment"] == "extended"
    # extended can be repeated while Pending
    ok1(ledger, cmd("verify-payment", t(days=2), order_id=O, outcome="extended"))
    assert view(ledger, O)["status"] == "Pending"


@pytest.mark.parametrize("outcome", ["declined", "fraud"])
def test_declined_or_fraud_after_hold_cancels_at_once(ledger, outcome):
    _after_hold(ledger)
    ok1(ledger, cmd("verify-payment", t(hours=1), order_id=O, outcome="extended"))
    out = ok1(ledger, cmd("verify-payment", t(days=3), order_id=O, outcome=outcome))
    assert out.events == ["PaymentDeclined", "InventoryReturned"]
    e = last_event(ledger, O, "PaymentDeclined")
    assert e.effective and e.status == "Canceled" and e.outcome == outcome
    v = view(ledger, O)
    assert v["status"] == "Canceled" and v["cancel_reason"] == outcome and not v["actionable"]
    assert quantities(ledger, O) == [(0, 2, 0)]
    assert available(ledger, "SKU-1") == 5


@pytest.mark.parametrize("outcome", ["verified", "extended", "declined", "fraud"])
def test_outcome_on_a_non_pending_order_is_rejected(ledger, outcome):
    ok(ledger, *released(O), place(oid(2), t(hours=1)),
       cmd("cancel", t(hours=1, minutes=1), order_id=oid(2), by="buyer"))
    err = rejects(ledger, cmd("verify-payment", t(hours=2), order_id=O, outcome=outcome),
                  "payment-settled")
    assert "Unshipped" in err["message"]
    err = rejects(ledger, cmd("verify-payment", t(hours=2), order_id=oid(2), outcome=outcome),
                  "payment-settled")
    assert "Canceled" in err["message"]


def test_unknown_outcome_is_rejected(ledger):
    ok1(ledger, place(O, t()))
    err = rejects(ledger, cmd("verify-payment", t(minutes=1), order_id=O, outcome="maybe"),
                  "invalid-field")
    assert err["field"] == "outcome"


# --- 3.5 delayed release shifts the promise ------------------------------------------------------


@pytest.mark.parametrize("release", [
    dict(minutes=40), dict(days=3), dict(days=20, hours=23, minutes=59, seconds=59),
])
def test_release_after_hold_shifts_both_promise_dates(ledger, release):
    ok(ledger, place(O, t(), latest_ship_date=t(days=1), latest_delivery_date=t(days=5)),
       cmd("verify-payment", t(minutes=10), order_id=O, outcome="extended"))
    out = ok1(ledger, cmd("verify-payment", t(**release), order_id=O, outcome="verified"))
    assert out.events == ["HoldExpired", "PaymentVerified"]
    shift = dt(t(**release)) - (T0 + (dt(t(minutes=30)) - T0))
    v = view(ledger, O)
    assert v["status"] == "Unshipped"
    assert dt(v["payments_date"]) == dt(t(**release))
    assert dt(v["latest_ship_date"]) == dt(t(days=1)) + shift
    assert dt(v["latest_delivery_date"]) == dt(t(days=5)) + shift
    e = last_event(ledger, O, "PaymentVerified")
    assert e.latest_ship_date == dt(t(days=1)) + shift


def test_release_at_exactly_hold_end_does_not_shift(ledger):
    ok1(ledger, place(O, t()))
    ok1(ledger, cmd("verify-payment", t(minutes=30), order_id=O, outcome="verified"))
    v = view(ledger, O)
    assert dt(v["latest_ship_date"]) == dt(t(days=2))
    assert dt(v["latest_delivery_date"]) == dt(t(days=7))


def test_shifted_promise_does_not_move_the_30_day_rule(ledger):
    ok(ledger, place(O, t()), cmd("verify-payment", t(days=20), order_id=O, outcome="verified"))
    v = view(ledger, O)
    assert dt(v["latest_ship_date"]) == dt(t(days=22, minutes=-30))
    assert v["next_deadline"] == {"kind": "ship-warning", "at": t(days=23)}
    ok1(ledger, cmd("tick", t(days=30)))
    assert view(ledger, O)["status"] == "Canceled"


# --- 3.4 21-day verification limit ------------------------------------------------------------------


@pytest.mark.parametrize("before", [dict(microseconds=-1), dict(seconds=-1)])
def test_still_pending_just_before_21_days(ledger, before):
    ok(ledger, place(O, t()), cmd("verify-payment", t(minutes=3), order_id=O, outcome="extended"),
       cmd("tick", t(minutes=30)))
    assert ok1(ledger, cmd("tick", t(days=21, **before))).events == []
    assert view(ledger, O)["status"] == "Pending"
    # a verification just before the limit still releases the order
    out = ok1(ledger, cmd("verify-payment", t(days=21, **before), order_id=O, outcome="verified"))
    assert out.events == ["PaymentVerified"]
    assert view(ledger, O)["status"] == "Unshipped"


def test_pending_at_21_days_is_canceled_payment_not_verified(ledger):
    ok(ledger, cmd("set-inventory", t(), sku="SKU-1", quantity=1), place(O, t()),
       cmd("verify-payment", t(minutes=3), order_id=O, outcome="extended"),
       cmd("tick", t(minutes=30)))
    out = ok1(ledger, cmd("tick", t(days=21)))
    assert out.events == ["LedgerCanceled", "InventoryReturned"]
    e = last_event(ledger, O, "LedgerCanceled")
    assert e.reason == "PaymentNotVerified" and e.at == dt(t(days=21)) and e.actor == "ledger"
    v = view(ledger, O)
    assert v["status"] == "Canceled" and v["cancel_reason"] == "PaymentNotVerified"
    assert v["canceled_by"] == "ledger" and v["next_deadline"] is None
    assert available(ledger, "SKU-1") == 1


def test_never_verified_order_is_canceled_at_21_days_too(ledger):
    ok1(ledger, place(O, t()))
    out = ok1(ledger, cmd("tick", t(days=40)))
    assert out.events == ["HoldExpired", "LedgerCanceled"]
    assert view(ledger, O)["cancel_reason"] == "PaymentNotVerified"


def test_verification_at_exactly_21_days_is_too_late(ledger):
    ok1(ledger, place(O, t()))
    ok1(ledger, cmd("tick", t(minutes=30)))
    # the limit fires first, so the outcome meets a Canceled order: rejected, nothing written
    rejects(ledger, cmd("verify-payment", t(days=21), order_id=O, outcome="verified"),
            "payment-settled")
    assert view(ledger, O)["status"] == "Pending"
    assert ok1(ledger, cmd("tick", t(days=21))).events == ["LedgerCanceled"]


# --- section 5: what the events tell ------------------------------------------------------------------


def test_release_records_the_estimated_delivery_and_never_the_address(ledger):
    ok(ledger, place(O, t()), cmd("verify-payment", t(hours=2), order_id=O, outcome="verified"))
    e = last_event(ledger, O, "PaymentVerified")
    assert e.latest_delivery_date == dt(t(days=7, hours=2, minutes=-30))
    text = json.dumps(msgspec.to_builtins(e))
    assert "Storgatan" not in text and "11122" not in text


def test_seller_cancel_records_the_reason_for_the_buyer_email(ledger):
    ok(ledger, *released(O))
    ok1(ledger, cmd("cancel", t(hours=1), order_id=O, by="seller", reason="PricingError",
                    memo="Fel pris i annonsen"))
    e = last_event(ledger, O, "SellerCanceled")
    assert (e.reason, e.memo) == ("PricingError", "Fel pris i annonsen")


def test_unshipped_orders_have_everything_to_ship(ledger):
    ok(ledger, *released(O, items=two_items(qa=2, qb=1)))
    assert quantities(ledger, O) == [(0, 0, 2), (0, 0, 1)]
    ok1(ledger, ship(O, t(hours=1), [("10000000000001", 1)]))
    assert quantities(ledger, O) == [(1, 0, 1), (0, 0, 1)]
