"""docs/rules.md 3.10 (address change only on request) and 3.11 (partial
cancellation and refunds by adjustment)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from builders import oid
from ledger import rules
from test_rules_support import (
    A, B, adj, adjust, available, cmd, item, last_event, ok, ok1, place, quantities, rejects,
    released, ship, t, two_items, view,
)

O = oid(1)
NEW_ADDRESS = {"name": "Anna Andersson", "address_1": "Nygatan 2", "city": "Uppsala",
               "postal_code": "75310", "country": "SE"}


def received(when: str, *, asks: bool = True, sender: str = "buyer", order_id: str = O,
             command_id: str | None = None) -> dict:
    c = cmd("receive-message", when, order_id=order_id, body="Kan ni skicka till Nygatan 2 i Uppsala?",
            requests_address_change=asks, **{"from": sender})
    if command_id:
        c["command_id"] = command_id
    return c


def change(when: str, order_id: str = O, **address) -> dict:
    return cmd("change-address", when, order_id=order_id, ship_to={**NEW_ADDRESS, **address})


# --- 3.10 address change ------------------------------------------------------------------------


def test_address_change_without_a_request_is_rejected(ledger):
    ok(ledger, *released(O))
    err = rejects(ledger, change(t(hours=1)), "no-address-request")
    assert "receive-message" in err["hint"] and "requests_address_change" in err["hint"]
    assert ledger.order(O).ship_to.city == "Stockholm"


def test_a_message_that_does_not_ask_does_not_allow_it(ledger):
    ok(ledger, *released(O), received(t(hours=1), asks=False))
    rejects(ledger, change(t(hours=2)), "no-address-request")


def test_a_request_on_another_order_does_not_allow_it(ledger):
    ok(ledger, *released(O), *released(oid(2), 30), received(t(hours=1), order_id=oid(2)))
    rejects(ledger, change(t(hours=2)), "no-address-request")
    ok1(ledger, change(t(hours=2), order_id=oid(2)))


@pytest.mark.parametrize("sender", ["buyer", "customer-service"])
def test_address_change_after_a_requesting_message(ledger, sender):
    ok(ledger, *released(O))
    out = ok1(ledger, received(t(hours=1), sender=sender, command_id="msg-1"))
    assert out.events == ["MessageReceived"]
    e = last_event(ledger, O, "MessageReceived")
    assert e.sender == sender and e.requests_address_change and e.message_id == "msg-1"
    assert e.actor == sender
    out = ok1(ledger, change(t(hours=2)))
    assert out.events == ["ShippingAddressChanged"]
    e = last_event(ledger, O, "ShippingAddressChanged")
    assert e.message_id == "msg-1" and e.ship_to.city == "Uppsala"
    assert ledger.order(O).ship_to.address_1 == "Nygatan 2"


def test_one_change_per_requesting_message(ledger):
    ok(ledger, *released(O), received(t(hours=1), command_id="msg-1"), change(t(hours=2)))
    rejects(ledger, change(t(hours=3), city="Lund"), "no-address-request")
    # a new request allows one more change, consuming the new message
    ok(ledger, received(t(hours=4), command_id="msg-2"), change(t(hours=5), city="Lund"))
    assert last_event(ledger, O, "ShippingAddressChanged").message_id == "msg-2"
    assert ledger.order(O).ship_to.city == "Lund"
    rejects(ledger, change(t(hours=6), city="Malmö"), "no-address-request")


def test_two_requests_allow_two_changes_oldest_first(ledger):
    ok(ledger, *released(O), received(t(hours=1), command_id="msg-1"),
       received(t(hours=2), command_id="msg-2"))
    ok1(ledger, change(t(hours=3)))
    assert last_event(ledger, O, "ShippingAddressChanged").message_id == "msg-1"
    ok1(ledger, change(t(hours=4), city="Lund"))
    assert last_event(ledger, O, "ShippingAddressChanged").message_id == "msg-2"
    rejects(ledger, change(t(hours=5)), "no-address-request")


def test_address_change_of_a_partially_shipped_order(ledger):
    ok(ledger, *released(O, items=two_items()), ship(O, t(hours=1), [(A, 1)]),
       received(t(hours=2)))
    ok1(ledger, change(t(hours=3)))


@pytest.mark.parametrize("setup,code", [
    ([place(O, t()), cmd("tick", t(minutes=30))], "order-pending"),
    ([*released(O), ship(O, t(hours=1))], "order-shipped"),
    ([*released(O), cmd("cancel", t(hours=1), order_id=O, by="seller", reason="NoInventory")],
     "order-canceled"),
])
def test_address_change_of_a_closed_or_pending_order_is_rejected(ledger, setup, code):
    ok(ledger, *setup, received(t(hours=2)))  # received messages are recorded on any order
    rejects(ledger, change(t(hours=3)), code)


def test_new_address_is_validated(ledger):
    ok(ledger, *released(O), received(t(hours=1)))
    rejects(ledger, change(t(hours=2), country="Sverige"), "bad-country")
    rejects(ledger, change(t(hours=2), city=""), "missing-field")
    ok1(ledger, change(t(hours=2)))  # the request was not used up by the rejections


# --- 3.11 adjustments: partial cancellation ---------------------------------------------------


def test_partial_cancel_of_a_multi_item_order(ledger):
    ok(ledger, cmd("set-inventory", t(), sku="CUP-1", quantity=5),
       *released(O, items=two_items(qa=2, qb=1)))
    ok1(ledger, ship(O, t(hours=1), [(A, 2)]))
    out = ok1(ledger, adjust(O, t(hours=2), adj(B, "NoInventory", quantity_cancelled=1,
                                                item_price_adj="99.00", item_tax_adj="24.75")))
    assert out.events == ["OrderAdjusted", "InventoryReturned"]
    e = last_event(ledger, O, "OrderAdjusted")
    assert e.status == "Shipped" and e.items[0].item_price_adj == Decimal("99.00")
    v = view(ledger, O)
    assert v["status"] == "Shipped"  # the rest was shipped
    assert quantities(ledger, O) == [(2, 0, 0), (0, 1, 0)]
    assert available(ledger, "CUP-1") == 5


def test_partial_cancel_then_ship_the_rest(ledger):
    ok(ledger, *released(O, items=two_items(qa=3, qb=1)))
    ok1(ledger, adjust(O, t(hours=1), adj(A, "BuyerCanceled", quantity_cancelled=1)))
    v = view(ledger, O)
    assert v["status"] == "Unshipped" and v["actionable"]
    assert quantities(ledger, O) == [(0, 1, 2), (0, 0, 1)]
    ok1(ledger, ship(O, t(hours=2)))
    assert view(ledger, O)["status"] == "Shipped"
    assert quantities(ledger, O) == [(2, 1, 0), (1, 0, 0)]


def test_adjustment_canceling_everything_cancels_the_order(ledger):
    ok(ledger, *released(O, items=two_items()))
    ok1(ledger, adjust(O, t(hours=1), adj(A, "NoInventory", quantity_cancelled=2),
                       adj(B, "NoInventory", quantity_cancelled=1)))
    v = view(ledger, O)
    assert v["status"] == "Canceled" and v["cancel_reason"] == "NoInventory"
    assert v["canceled_by"] == "seller" and not v["actionable"]


def test_adjustment_canceling_the_unshipped_rest_ends_shipped(ledger):
    ok(ledger, *released(O, items=two_items()), ship(O, t(hours=1), [(A, 1)]))
    ok1(ledger, adjust(O, t(hours=2), adj(A, "NoInventory", quantity_cancelled=1),
                       adj(B, "CustomerCancel", quantity_cancelled=1)))
    assert view(ledger, O)["status"] == "Shipped"


@pytest.mark.parametrize("before,qty,left", [(None, 3, 2), ((A, 1), 2, 1)])
def test_quantity_cancelled_beyond_what_is_left_is_rejected(ledger, before, qty, left):
    ok(ledger, *released(O, items=two_items()))
    if before:
        ok1(ledger, ship(O, t(hours=1), [before]))
    err = rejects(ledger, adjust(O, t(hours=2), adj(A, quantity_cancelled=qty)), "quantity-too-large")
    assert err["field"] == "items[0].quantity_cancelled" and f"at most {left}" in err["hint"]


def test_quantity_cancelled_on_a_shipped_order_is_rejected(ledger):
    ok(ledger, *released(O), ship(O, t(hours=1)))
    rejects(ledger, adjust(O, t(hours=2), adj(A, "CustomerReturn", quantity_cancelled=1)),
            "quantity-too-large")


def test_unknown_or_repeated_item_in_an_adjustment_is_rejected(ledger):
    ok(ledger, *released(O, items=two_items()))
    rejects(ledger, adjust(O, t(hours=1), adj("nope", quantity_cancelled=1)), "unknown-item")
    rejects(ledger, adjust(O, t(hours=1), adj(A, quantity_cancelled=1),
                           adj(A, item_price_adj="1")), "duplicate-item")


# --- 3.11 refunds -----------------------------------------------------------------------------


@pytest.mark.parametrize("component,charged", [
    ("item_price", "398.00"), ("item_tax", "99.50"), ("shipping_price", "49.00"),
    ("shipping_tax", "12.25"),
])
def test_refund_per_component_up_to_what_was_charged(ledger, component, charged):
    ok(ledger, *released(O, items=two_items()))
    over = str(Decimal(charged) + Decimal("0.01"))
    err = rejects(ledger, adjust(O, t(hours=1), adj(A, "GeneralAdjustment",
                                                   **{component + "_adj": over})),
                  "refund-too-large")
    assert err["field"] == f"items[0].{component}_adj" and charged in err["hint"]
    ok1(ledger, adjust(O, t(hours=1), adj(A, "GeneralAdjustment", **{component + "_adj": charged})))
    rejects(ledger, adjust(O, t(hours=2), adj(A, "GeneralAdjustment",
                                             **{component + "_adj": "0.01"})), "refund-too-large")


def test_refund_exceeding_the_charge_cumulatively_is_rejected(ledger):
    ok(ledger, *released(O, items=two_items()), ship(O, t(hours=1)))
    ok1(ledger, adjust(O, t(days=1), adj(B, "CustomerReturn", item_price_adj="60.00")))
    err = rejects(ledger, adjust(O, t(days=2), adj(B, "CustomerReturn", item_price_adj="39.01")),
                  "refund-too-large")
    assert "60.00 already refunded" in err["message"] and "39.00" in err["hint"]
    ok1(ledger, adjust(O, t(days=2), adj(B, "CustomerReturn", item_price_adj="39.00")))
    rejects(ledger, adjust(O, t(days=3), adj(B, "CustomerReturn", item_price_adj="0.01")),
            "refund-too-large")
    # other items and components still have room
    ok1(ledger, adjust(O, t(days=3), adj(B, "CustomerReturn", item_tax_adj="24.75"),
                       adj(A, "CustomerReturn", item_price_adj="398.00")))


def test_an_untaxed_component_cannot_be_refunded(ledger):
    ok(ledger, *released(O, items=[item(price="100.00")]))
    rejects(ledger, adjust(O, t(hours=1), adj(item_tax_adj="0.01")), "refund-too-large")


def test_negative_or_non_finite_refund_is_rejected(ledger):
    ok(ledger, *released(O))
    for amount in ["-1.00", "NaN", "Infinity"]:
        err = rejects(ledger, adjust(O, t(hours=1), adj(item_price_adj=amount)), "bad-amount")
        assert err["field"] == "items[0].item_price_adj"


def test_customer_return_refund_on_a_shipped_order(ledger):
    ok(ledger, *released(O, items=[item(A, price="250.00", shipping_price="39.00")]),
       ship(O, t(hours=1)))
    out = ok1(ledger, adjust(O, t(days=10), adj(A, "CustomerReturn", item_price_adj="250.00",
                                               shipping_price_adj="39.00")))
    assert out.events == ["OrderAdjusted"]
    assert view(ledger, O)["status"] == "Shipped"
    assert ledger.order(O).items[A].refunded[:4] == [Decimal("250.00"), 0, Decimal("39.00"), 0]


# --- 3.11 reason, emptiness, state -------------------------------------------------------------


def test_every_marketplace_reason_is_accepted(ledger):
    reasons = sorted(rules.ADJUSTMENT_REASONS)
    ok(ledger, *released(O, items=[item(A, price="100.00")]))
    for n, reason in enumerate(reasons):
        ok1(ledger, adjust(O, t(hours=1, minutes=n), adj(A, reason, item_price_adj="0.01")))
    assert ledger.order(O).items[A].refunded[0] == Decimal("0.01") * len(reasons)
    assert {"CustomerReturn", "NoInventory", "RefusedDelivery", "BuyerCanceled"} <= set(reasons)
    assert len(reasons) == 19  # the marketplace's 18 + BuyerCanceled


def test_bad_adjustment_reason_is_rejected(ledger):
    ok(ledger, *released(O))
    for reason in ["Broken", "noinventory", "PricingError", "ShipmentNotConfirmed"]:
        err = rejects(ledger, adjust(O, t(hours=1), adj(A, reason, item_price_adj="1.00")),
                      "bad-reason")
        assert err["field"] == "items[0].reason" and "CustomerReturn" in err["hint"]


def test_missing_reason_is_rejected(ledger):
    ok(ledger, *released(O))
    rejects(ledger, adjust(O, t(hours=1), {"order_item_id": A, "item_price_adj": "1"}),
            "missing-field")


def test_empty_adjustment_is_rejected(ledger):
    ok(ledger, *released(O))
    err = rejects(ledger, adjust(O, t(hours=1), adj(A, item_price_adj="0.00")), "empty-adjustment")
    assert "quantity_cancelled" in err["hint"]
    rejects(ledger, adjust(O, t(hours=1), adj(A)), "empty-adjustment")
    rejects(ledger, adjust(O, t(hours=1)), "invalid-field")  # no item lines at all


@pytest.mark.parametrize("setup,code", [
    ([place(O, t()), cmd("tick", t(minutes=30))], "order-pending"),
    ([*released(O), cmd("cancel", t(hours=1), order_id=O, by="seller", reason="NoInventory")],
     "order-canceled"),
])
def test_adjustment_of_a_pending_or_canceled_order_is_rejected(ledger, setup, code):
    ok(ledger, *setup)
    rejects(ledger, adjust(O, t(hours=2), adj(A, "GeneralAdjustment", item_price_adj="1.00")), code)
