"""docs/rules.md section 2 (statuses) and 3.6-3.8 (seller processes, seller
cancel and buyer requests, ship confirmation)."""

from __future__ import annotations

import pytest

from builders import oid
from ledger import rules
from test_rules_support import (
    A, B, adj, adjust, available, cmd, item, last_event, ok, ok1, place, quantities, rejects,
    released, ship, t, two_items, view,
)

O = oid(1)

# --- 2. statuses: who may act ---------------------------------------------------------------


def _in_status(ledger, status: str) -> None:
    """Bring order O (two items: 2 + 1) into ``status``."""
    if status == "Pending":
        ok(ledger, place(O, t(), two_items()), cmd("tick", t(minutes=30)))
        return
    ok(ledger, *released(O, items=two_items()))
    if status == "PartiallyShipped":
        ok1(ledger, ship(O, t(hours=1), [(A, 1)]))
    elif status == "Shipped":
        ok1(ledger, ship(O, t(hours=1)))
    elif status == "Canceled":
        ok1(ledger, cmd("cancel", t(hours=1), order_id=O, by="seller", reason="NoInventory"))


@pytest.mark.parametrize("status,actionable", [
    ("Pending", False), ("Unshipped", True), ("PartiallyShipped", True), ("Shipped", False),
    ("Canceled", False),
])
def test_status_and_actionable(ledger, status, actionable):
    _in_status(ledger, status)
    v = view(ledger, O)
    assert v["status"] == status and v["actionable"] is actionable


# --- 3.6/3.7 only Unshipped and PartiallyShipped may be shipped or canceled ---------------------


@pytest.mark.parametrize("status,code", [
    ("Pending", "order-pending"), ("Shipped", "order-shipped"), ("Canceled", "order-canceled"),
])
def test_ship_and_seller_cancel_need_an_open_order(ledger, status, code):
    _in_status(ledger, status)
    err = rejects(ledger, ship(O, t(hours=2)), code)
    assert err["hint"]
    rejects(ledger, ship(O, t(hours=2), [(B, 1)]), code)
    rejects(ledger, cmd("cancel", t(hours=2), order_id=O, by="seller", reason="NoInventory"), code)


def test_pending_is_greyed_out_with_a_hint(ledger):
    _in_status(ledger, "Pending")
    err = rejects(ledger, ship(O, t(hours=2)), "order-pending")
    assert "non-actionable" in err["message"] and "verified" in err["hint"]


def test_pending_inside_the_hold_is_not_actionable_either(ledger):
    ok(ledger, place(O, t()), cmd("verify-payment", t(minutes=1), order_id=O, outcome="verified"))
    rejects(ledger, ship(O, t(minutes=10)), "order-pending")
    rejects(ledger, cmd("cancel", t(minutes=10), order_id=O, by="seller", reason="NoInventory"),
            "order-pending")


@pytest.mark.parametrize("status", ["Unshipped", "PartiallyShipped"])
def test_open_orders_can_be_shipped_and_canceled(ledger, status):
    _in_status(ledger, status)
    ok1(ledger, ship(O, t(hours=2), [(B, 1)]))
    ok1(ledger, cmd("cancel", t(hours=3), order_id=O, by="seller", reason="NoInventory"))


# --- 3.7 seller cancel -------------------------------------------------------------------------


@pytest.mark.parametrize("reason", list(rules.SELLER_CANCEL_REASONS))
def test_seller_cancel_accepts_each_reason_code(ledger, reason):
    ok(ledger, cmd("set-inventory", t(), sku="MUG-1", quantity=9), *released(O, items=two_items()))
    out = ok1(ledger, cmd("cancel", t(hours=1), order_id=O, by="seller", reason=reason))
    assert out.events == ["SellerCanceled", "InventoryReturned"]
    e = last_event(ledger, O, "SellerCanceled")
    assert e.reason == reason and e.memo is None and e.status == "Canceled"
    assert e.actor == "seller" and e.buyer_requested is False
    assert {(q.order_item_id, q.quantity) for q in e.canceled} == {(A, 2), (B, 1)}
    v = view(ledger, O)
    assert v["status"] == "Canceled" and v["cancel_reason"] == reason
    assert v["canceled_by"] == "seller" and not v["actionable"]
    assert available(ledger, "MUG-1") == 9


def test_seller_cancel_memo_is_optional_and_kept(ledger):
    ok(ledger, *released(O))
    ok1(ledger, cmd("cancel", t(hours=1), order_id=O, by="seller",
                    reason="ShippingAddressUndeliverable", memo="Adressen finns inte"))
    assert last_event(ledger, O, "SellerCanceled").memo == "Adressen finns inte"


def test_seller_cancel_with_a_bad_reason_is_rejected(ledger):
    ok(ledger, *released(O))
    for reason in ["Nope", "noinventory", "CustomerReturn", "BuyerCancelled"]:
        err = rejects(ledger, cmd("cancel", t(hours=1), order_id=O, by="seller", reason=reason),
                      "bad-reason")
        assert err["field"] == "reason" and reason in err["message"]
        assert all(code in err["hint"] for code in rules.SELLER_CANCEL_REASONS)


@pytest.mark.parametrize("reason", [None, ""])
def test_seller_cancel_without_a_reason_is_rejected(ledger, reason):
    ok(ledger, *released(O))
    c = cmd("cancel", t(hours=1), order_id=O, by="seller")
    if reason is not None:
        c["reason"] = reason
    err = rejects(ledger, c, "missing-reason")
    assert "NoInventory" in err["hint"]


def test_seller_cancel_of_a_partially_shipped_order_cancels_the_rest(ledger):
    _in_status(ledger, "PartiallyShipped")
    ok1(ledger, cmd("cancel", t(hours=2), order_id=O, by="seller", reason="NoInventory"))
    assert view(ledger, O)["status"] == "Shipped"
    assert quantities(ledger, O) == [(1, 1, 0), (0, 1, 0)]


def test_cancel_by_someone_else_is_rejected(ledger):
    ok(ledger, *released(O))
    err = rejects(ledger, cmd("cancel", t(hours=1), order_id=O, by="amazon",
                              reason="NoInventory"), "invalid-field")
    assert err["field"] == "by"


# --- 3.7 buyer requests cancellation ---------------------------------------------------------


def test_request_cancel_inside_the_hold_is_rejected(ledger):
    ok1(ledger, place(O, t()))
    err = rejects(ledger, cmd("request-cancel", t(minutes=5), order_id=O), "in-hold")
    assert '"by": "buyer"' in err["hint"]


def test_request_cancel_of_a_pending_order_after_the_hold_is_rejected(ledger):
    _in_status(ledger, "Pending")
    rejects(ledger, cmd("request-cancel", t(hours=1), order_id=O), "order-pending")


@pytest.mark.parametrize("status,code", [("Shipped", "order-shipped"),
                                         ("Canceled", "order-canceled")])
def test_request_cancel_of_a_closed_order_is_rejected(ledger, status, code):
    _in_status(ledger, status)
    rejects(ledger, cmd("request-cancel", t(hours=2), order_id=O), code)


def test_request_cancel_then_seller_cancel_buyer_canceled(ledger):
    ok(ledger, *released(O))
    out = ok1(ledger, cmd("request-cancel", t(hours=1), order_id=O, reason="Fel storlek"))
    assert out.events == ["CancellationRequested"]
    e = last_event(ledger, O, "CancellationRequested")
    assert e.actor == "buyer" and e.reason == "Fel storlek"
    assert view(ledger, O)["buyer_requested_cancel"] is True
    assert view(ledger, O)["status"] == "Unshipped"  # a request changes no status
    err = rejects(ledger, cmd("request-cancel", t(hours=2), order_id=O), "already-requested")
    assert "BuyerCanceled" in err["hint"]
    ok1(ledger, cmd("cancel", t(hours=3), order_id=O, by="seller", reason="BuyerCanceled"))
    e = last_event(ledger, O, "SellerCanceled")
    assert e.buyer_requested is True and e.reason == "BuyerCanceled"
    v = view(ledger, O)
    assert v["status"] == "Canceled" and v["buyer_requested_cancel"] is False  # request closed


def test_request_on_a_partially_shipped_order_and_closed_by_shipping(ledger):
    _in_status(ledger, "PartiallyShipped")
    ok1(ledger, cmd("request-cancel", t(hours=2), order_id=O))
    assert view(ledger, O)["buyer_requested_cancel"] is True
    ok1(ledger, ship(O, t(hours=3)))
    assert view(ledger, O)["buyer_requested_cancel"] is False


def test_adjustment_carries_the_open_request(ledger):
    ok(ledger, *released(O, items=two_items()), cmd("request-cancel", t(hours=1), order_id=O))
    ok1(ledger, adjust(O, t(hours=2), adj(B, "CustomerCancel", quantity_cancelled=1)))
    assert last_event(ledger, O, "OrderAdjusted").buyer_requested is True


# --- 3.8 ship confirmation -------------------------------------------------------------------


def test_full_shipment_when_items_are_omitted(ledger):
    ok(ledger, *released(O, items=two_items()))
    out = ok1(ledger, ship(O, t(hours=1), ship_method="Varubrev"))
    assert out.events == ["ShipmentConfirmed"]
    e = last_event(ledger, O, "ShipmentConfirmed")
    assert {(q.order_item_id, q.quantity) for q in e.items} == {(A, 2), (B, 1)}
    assert e.status == "Shipped" and e.carrier_code == "PostNord"
    assert e.tracking_number == "SE123456789" and e.ship_method == "Varubrev"
    v = view(ledger, O)
    assert v["status"] == "Shipped" and not v["actionable"]
    assert quantities(ledger, O) == [(2, 0, 0), (1, 0, 0)]


def test_partial_then_rest(ledger):
    ok(ledger, *released(O, items=two_items()))
    ok1(ledger, ship(O, t(hours=1), [(A, 1)]))
    assert view(ledger, O)["status"] == "PartiallyShipped"
    assert quantities(ledger, O) == [(1, 0, 1), (0, 0, 1)]
    ok1(ledger, ship(O, t(hours=2), [(A, 1), (B, 1)]))
    assert view(ledger, O)["status"] == "Shipped"
    assert quantities(ledger, O) == [(2, 0, 0), (1, 0, 0)]


def test_rest_shipped_by_omitting_items(ledger):
    ok(ledger, *released(O, items=two_items()), ship(O, t(hours=1), [(B, 1)]))
    ok1(ledger, ship(O, t(hours=2)))
    e = last_event(ledger, O, "ShipmentConfirmed")
    assert [(q.order_item_id, q.quantity) for q in e.items] == [(A, 2)]
    assert view(ledger, O)["status"] == "Shipped"


@pytest.mark.parametrize("items,left", [([(A, 3)], 2), ([(B, 2)], 1)])
def test_quantity_beyond_what_is_left_is_rejected(ledger, items, left):
    ok(ledger, *released(O, items=two_items()))
    err = rejects(ledger, ship(O, t(hours=1), items), "quantity-too-large")
    assert err["field"] == "items[0].quantity"
    assert f"at most {left}" in err["hint"]


def test_quantity_beyond_what_is_left_after_a_partial_shipment(ledger):
    ok(ledger, *released(O, items=two_items()), ship(O, t(hours=1), [(A, 1)]))
    err = rejects(ledger, ship(O, t(hours=2), [(B, 1), (A, 2)]), "quantity-too-large")
    assert err["field"] == "items[1].quantity" and "only 1 left" in err["message"]


def test_zero_ship_quantity_is_rejected(ledger):
    ok(ledger, *released(O))
    rejects(ledger, ship(O, t(hours=1), [(A, 0)]), "invalid-field")


def test_unknown_or_repeated_item_is_rejected(ledger):
    ok(ledger, *released(O, items=two_items()))
    err = rejects(ledger, ship(O, t(hours=1), [("99999999999999", 1)]), "unknown-item")
    assert A in err["hint"] and B in err["hint"]
    rejects(ledger, ship(O, t(hours=1), [(A, 1), (A, 1)]), "duplicate-item")


def test_carrier_name_required_for_carrier_code_other(ledger):
    ok(ledger, *released(O))
    err = rejects(ledger, ship(O, t(hours=1), carrier_code="Other"), "missing-carrier-name")
    assert err["field"] == "carrier_name"
    rejects(ledger, ship(O, t(hours=1), carrier_code="Other", carrier_name=""),
            "missing-carrier-name")
    ok1(ledger, ship(O, t(hours=1), carrier_code="Other", carrier_name="Bring"))
    assert last_event(ledger, O, "ShipmentConfirmed").carrier_name == "Bring"


def test_tracking_number_is_optional(ledger):
    ok(ledger, *released(O))
    c = ship(O, t(hours=1))
    del c["tracking_number"]
    ok1(ledger, c)
    assert last_event(ledger, O, "ShipmentConfirmed").tracking_number is None


@pytest.mark.parametrize("ship_date", [
    "2026-03-02",                       # the purchase day
    "2026-03-03",                       # the confirmation day
    "2026-03-02T09:00:00+01:00",        # exactly the purchase time
    "2026-03-03T08:00:00Z",             # a timestamp in UTC
    "2026-03-03T10:00:00+01:00",        # exactly the confirmation time
])
def test_ship_date_as_date_or_timestamp_accepted(ledger, ship_date):
    ok(ledger, *released(O))
    ok1(ledger, ship(O, t(days=1, hours=1), ship_date=ship_date))
    assert last_event(ledger, O, "ShipmentConfirmed").ship_date == ship_date


def test_ship_date_before_purchase_or_after_confirmation_is_rejected(ledger):
    ok(ledger, *released(O))
    for ship_date in ["2026-03-01", "2026-03-02T08:59:59+01:00"]:
        err = rejects(ledger, ship(O, t(days=1, hours=1), ship_date=ship_date),
                      "ship-date-before-purchase")
        assert err["field"] == "ship_date" and "before the purchase date" in err["message"]
    for ship_date in ["2026-03-04", "2026-03-03T10:00:01+01:00"]:
        err = rejects(ledger, ship(O, t(days=1, hours=1), ship_date=ship_date),
                      "ship-date-in-future")
        assert "after the confirmation time" in err["message"]


def test_ship_date_in_another_form_is_rejected(ledger):
    ok(ledger, *released(O))
    for ship_date in ["03/02/2026", "2026-3-2", "yesterday", "2026-03-02T10:00:00"]:
        err = rejects(ledger, ship(O, t(days=1), ship_date=ship_date), "bad-date")
        assert ship_date in err["message"]
        assert "2026-03-02" in err["hint"] or "offset" in err["hint"]


def test_ship_after_the_order_was_auto_canceled_is_rejected(ledger):
    ok(ledger, *released(O), cmd("tick", t(days=30)))
    rejects(ledger, ship(O, t(days=31), ship_date="2026-03-20"), "order-canceled")


def test_ship_of_an_unknown_order_is_rejected(ledger):
    err = rejects(ledger, ship(oid(99), t()), "unknown-order")
    assert oid(99) in err["message"]


def test_units_of_a_shipped_item_stay_allocated(ledger):
    ok(ledger, cmd("set-inventory", t(), sku="MUG-1", quantity=3),
       *released(O, items=[item(A, "MUG-1", 2)]), ship(O, t(hours=1)))
    assert available(ledger, "MUG-1") == 1
