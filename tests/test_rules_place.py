"""docs/rules.md sections 1 (order identity and shape) and 3.1 (placing, inventory).

Every test runs on SQLite and PostgreSQL (the ``ledger`` fixture); every
rejection also proves that nothing was written (``rejects``).
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from builders import oid
from test_rules_support import (
    A, B, T0, adj, adjust, available, cmd, dt, item, names, ok, ok1, order_events, place,
    quantities, rejects, released, ship, t, two_items, view,
)

# --- 1. order id ----------------------------------------------------------------------------


def test_order_id_in_3_7_7_form_is_accepted(ledger):
    out = ok1(ledger, place("203-1234567-7654321", t()))
    assert out.order_id == "203-1234567-7654321"
    assert out.events == ["OrderPlaced"]
    assert view(ledger, "203-1234567-7654321")["status"] == "Pending"


def test_order_id_in_other_forms_is_rejected(ledger):
    for bad in [
        "203-123456-7654321",      # 6 digits in the middle
        "2031234567654321",        # no dashes
        "203-1234567-765432a",     # a letter
        "203-1234567-76543210",    # 8 digits at the end
        " 203-1234567-7654321",    # leading space
        "",
    ]:
        err = rejects(ledger, place(bad, t()), "bad-order-id")
        assert err["field"] == "order_id"
        assert "203-1234567-7654321" in err["hint"]


def test_order_id_format_is_checked_on_every_command(ledger):
    ok(ledger, *released(oid(1)))
    err = rejects(ledger, cmd("cancel", t(hours=1), order_id="203-1-1", by="seller",
                              reason="NoInventory"), "bad-order-id")
    assert err["field"] == "order_id"


def test_duplicate_order_id_is_rejected(ledger):
    ok1(ledger, place(oid(1), t()))
    err = rejects(ledger, place(oid(1), t(minutes=1), [item(sku="OTHER")]), "order-exists")
    assert oid(1) in err["message"]
    err = rejects(ledger, place(oid(1), t(days=40)), "order-exists")
    assert len(order_events(ledger, oid(1))) == 1


# --- 1. items ---------------------------------------------------------------------------------


def test_multi_item_order_keeps_every_line_and_money_as_decimal(ledger):
    ok1(ledger, place(oid(1), t(), two_items()))
    placed = order_events(ledger, oid(1))[0]
    assert [i.order_item_id for i in placed.items] == [A, B]
    first = placed.items[0]
    assert (first.item_price, first.item_tax, first.shipping_price, first.shipping_tax) == (
        Decimal("398.00"), Decimal("99.50"), Decimal("49.00"), Decimal("12.25"))
    assert all(isinstance(getattr(i, f), Decimal) for i in placed.items
               for f in ("item_price", "item_tax", "shipping_price", "shipping_tax"))
    assert placed.items[1].shipping_price == Decimal("0")  # default "0"
    assert quantities(ledger, oid(1)) == [(0, 0, 0), (0, 0, 0)]  # Pending: nothing to ship yet
    assert [i["quantity"] for i in view(ledger, oid(1))["items"]] == [2, 1]


def test_json_number_price_is_read_exactly_and_zero_price_is_allowed(ledger):
    ok1(ledger, place(oid(1), t(), [item(A, price=19.9), item(B, "FREE-1", price="0")]))
    placed = order_events(ledger, oid(1))[0]
    assert placed.items[0].item_price == Decimal("19.9")
    assert placed.items[1].item_price == Decimal("0")


def test_order_item_id_up_to_32_chars(ledger):
    ok1(ledger, place(oid(1), t(), [item("X" * 32)]))
    err = rejects(ledger, place(oid(2), t(), [item("X" * 33)]), "invalid-field")
    assert err["field"] == "items[0].order_item_id"
    rejects(ledger, place(oid(3), t(), [item("")]), "invalid-field")


def test_item_quantity_must_be_at_least_one(ledger):
    for quantity in (0, -1):
        err = rejects(ledger, place(oid(1), t(), [item(quantity=quantity)]), "invalid-field")
        assert err["field"] == "items[0].quantity"
        assert ">= 1" in err["message"]


def test_order_needs_at_least_one_item(ledger):
    err = rejects(ledger, place(oid(1), t(), []) | {"items": []}, "invalid-field")
    assert err["field"] == "items"


def test_duplicate_order_item_id_is_rejected(ledger):
    err = rejects(ledger, place(oid(1), t(), [item(A, "S1"), item(A, "S2")]), "duplicate-item")
    assert err["field"] == "items[1].order_item_id"


def test_negative_or_non_finite_amounts_are_rejected(ledger):
    for field, value in [
        ("item_price", "-1.00"), ("item_price", "NaN"), ("item_price", "Infinity"),
        ("item_tax", "-0.01"), ("shipping_price", "-5"), ("shipping_tax", "sNaN"),
    ]:
        it = item()
        it[field] = value
        err = rejects(ledger, place(oid(1), t(), [it]), "bad-amount")
        assert err["field"] == f"items[0].{field}", (value, err)


def test_amount_that_is_not_a_number_is_rejected(ledger):
    err = rejects(ledger, place(oid(1), t(), [item(price="12,50")]), "invalid-field")
    assert err["field"] == "items[0].item_price"


def test_currency_must_be_three_capital_letters(ledger):
    for currency in ["sek", "SEKK", "SE", "", "S1K"]:
        err = rejects(ledger, place(oid(1), t(), currency=currency), "invalid-field")
        assert err["field"] == "currency"
    for n, currency in enumerate(["SEK", "EUR", "USD"], 1):
        ok1(ledger, place(oid(n), t(), currency=currency))
        assert view(ledger, oid(n))["currency"] == currency


def test_ship_to_country_must_be_iso_alpha_2(ledger):
    for country in ["se", "SWE", "S", "", "S1"]:
        cmd_ = place(oid(1), t())
        cmd_["ship_to"]["country"] = country
        err = rejects(ledger, cmd_, "bad-country")
        assert err["field"] == "ship_to.country"
        assert "ISO 3166" in err["message"] and "SE" in err["hint"]


def test_buyer_language_must_be_bcp47(ledger):
    for language in ["svenska", "sv_SE", "s", "", "sv-SE!", "12-SE"]:
        cmd_ = place(oid(1), t())
        cmd_["buyer"]["language"] = language
        err = rejects(ledger, cmd_, "bad-language")
        assert err["field"] == "buyer.language"
    for n, language in enumerate(["sv-SE", "en-GB", "zh-CN", "de", "zh-Hans-CN"], 1):
        cmd_ = place(oid(n), t())
        cmd_["buyer"]["language"] = language
        ok1(ledger, cmd_)


def test_optional_buyer_and_address_fields(ledger):
    cmd_ = place(oid(1), t())
    del cmd_["buyer"]["email"], cmd_["buyer"]["phone"]
    cmd_["ship_to"].update(address_2="Lgh 1102", address_3="c/o Berg", state="Stockholms län",
                           phone="+4681234567")
    ok1(ledger, cmd_)
    assert ledger.order(oid(1)).ship_to.address_3 == "c/o Berg"


def test_required_address_lines_must_not_be_blank(ledger):
    for field in ["name", "address_1", "city", "postal_code"]:
        cmd_ = place(oid(1), t())
        cmd_["ship_to"][field] = "  "
        err = rejects(ledger, cmd_, "missing-field")
        assert err["field"] == f"ship_to.{field}"


# --- 1. promise dates ---------------------------------------------------------------------------


def test_default_promise_is_purchase_plus_2_and_7_days(ledger):
    ok1(ledger, place(oid(1), t()))
    v = view(ledger, oid(1))
    assert dt(v["purchase_date"]) == T0
    assert dt(v["latest_ship_date"]) == dt(t(days=2))
    assert dt(v["latest_delivery_date"]) == dt(t(days=7))


def test_explicit_promise_dates_are_kept(ledger):
    ok1(ledger, place(oid(1), t(), latest_ship_date=t(days=1),
                      latest_delivery_date="2026-03-10T23:59:59+01:00"))
    v = view(ledger, oid(1))
    assert dt(v["latest_ship_date"]) == dt(t(days=1))
    assert dt(v["latest_delivery_date"]) == dt("2026-03-10T23:59:59+01:00")


def test_explicit_ship_date_equal_to_purchase_and_delivery_equal_to_ship_allowed(ledger):
    ok1(ledger, place(oid(1), t(), latest_ship_date=t(), latest_delivery_date=t()))


def test_latest_ship_date_before_purchase_rejected(ledger):
    err = rejects(ledger, place(oid(1), t(), latest_ship_date=t(seconds=-1)), "bad-promise")
    assert err["field"] == "latest_ship_date"


def test_latest_delivery_date_before_ship_date_rejected(ledger):
    err = rejects(ledger, place(oid(1), t(), latest_ship_date=t(days=3),
                                latest_delivery_date=t(days=2)), "bad-promise")
    assert err["field"] == "latest_delivery_date"
    # the default delivery date (+7 d) is checked too
    rejects(ledger, place(oid(2), t(), latest_ship_date=t(days=8)), "bad-promise")


def test_promise_dates_need_an_offset(ledger):
    err = rejects(ledger, place(oid(1), t(), latest_ship_date="2026-03-04T09:00:00"), "bad-time")
    assert err["field"] == "latest_ship_date"


# --- 3.1 inventory --------------------------------------------------------------------------------


def test_placing_reduces_a_tracked_sku(ledger):
    ok1(ledger, cmd("set-inventory", t(), sku="MUG-1", quantity=5))
    out = ok1(ledger, place(oid(1), t(minutes=1), [item(sku="MUG-1", quantity=2)]))
    assert out.events == ["OrderPlaced", "InventoryAllocated"]
    assert available(ledger, "MUG-1") == 3
    assert ledger.inventory("MUG-1").active


def test_two_lines_of_one_sku_are_checked_and_taken_together(ledger):
    ok1(ledger, cmd("set-inventory", t(), sku="MUG-1", quantity=3))
    rejects(ledger, place(oid(1), t(), [item(A, "MUG-1", 2), item(B, "MUG-1", 2)]),
            "insufficient-inventory")
    out = ok1(ledger, place(oid(2), t(), [item(A, "MUG-1", 2), item(B, "MUG-1", 1)]))
    assert out.events == ["OrderPlaced", "InventoryAllocated"]
    assert available(ledger, "MUG-1") == 0


def test_untracked_sku_is_not_checked(ledger):
    out = ok1(ledger, place(oid(1), t(), [item(sku="NEVER-SET", quantity=1000)]))
    assert out.events == ["OrderPlaced"]
    assert ledger.inventory("NEVER-SET") is None


def test_insufficient_inventory_rejects_the_order_and_writes_nothing(ledger):
    ok(ledger, cmd("set-inventory", t(), sku="MUG-1", quantity=2),
       cmd("set-inventory", t(), sku="CUP-1", quantity=10))
    err = rejects(ledger, place(oid(1), t(minutes=1), two_items(qa=3, qb=1)),
                  "insufficient-inventory")
    assert "MUG-1" in err["message"] and "2 available" in err["message"]
    assert "set-inventory" in err["hint"]
    assert available(ledger, "MUG-1") == 2 and available(ledger, "CUP-1") == 10  # no partial take
    assert ledger.order(oid(1)) is None


def test_available_reaching_zero_makes_the_listing_inactive(ledger):
    ok1(ledger, cmd("set-inventory", t(), sku="MUG-1", quantity=2))
    ok1(ledger, place(oid(1), t(minutes=1), [item(sku="MUG-1", quantity=2)]))
    inv = ledger.inventory("MUG-1")
    assert inv.available == 0 and not inv.active
    rejects(ledger, place(oid(2), t(minutes=2), [item(sku="MUG-1", quantity=1)]),
            "insufficient-inventory")


def test_set_inventory_sets_outright_and_zero_is_inactive(ledger):
    ok1(ledger, cmd("set-inventory", t(), sku="MUG-1", quantity=7))
    ok1(ledger, cmd("set-inventory", t(minutes=1), sku="MUG-1", quantity=0))
    assert available(ledger, "MUG-1") == 0 and not ledger.inventory("MUG-1").active
    ok1(ledger, cmd("set-inventory", t(minutes=2), sku="MUG-1", quantity=4))
    assert available(ledger, "MUG-1") == 4 and ledger.inventory("MUG-1").active
    rejects(ledger, cmd("set-inventory", t(minutes=3), sku="MUG-1", quantity=-1), "invalid-field")
    rejects(ledger, cmd("set-inventory", t(minutes=3), sku="", quantity=1), "invalid-field")


# --- 3.1/3.7 canceled unshipped quantity goes back ----------------------------------------------

O = oid(1)
SETUP = [cmd("set-inventory", t(minutes=-1), sku="MUG-1", quantity=10),
         cmd("set-inventory", t(minutes=-1), sku="CUP-1", quantity=10)]


def _placed_pending():
    return [*SETUP, place(O, t(), two_items(qa=2, qb=1))]


def _unshipped():
    return [*SETUP, *released(O, items=two_items(qa=2, qb=1))]


CANCEL_PATHS = {
    # name: (commands, MUG-1 after, CUP-1 after, status)
    "seller cancel": (
        [*_unshipped(), cmd("cancel", t(hours=1), order_id=O, by="seller", reason="NoInventory")],
        10, 10, "Canceled"),
    "buyer cancel in hold": (
        [*_placed_pending(), cmd("cancel", t(minutes=10), order_id=O, by="buyer")],
        10, 10, "Canceled"),
    "declined after hold": (
        [*_placed_pending(), cmd("tick", t(minutes=30)),
         cmd("verify-payment", t(hours=2), order_id=O, outcome="declined")],
        10, 10, "Canceled"),
    "fraud during hold, at hold end": (
        [*_placed_pending(), cmd("verify-payment", t(minutes=1), order_id=O, outcome="fraud"),
         cmd("tick", t(minutes=30))],
        10, 10, "Canceled"),
    "21-day verification limit": (
        [*_placed_pending(), cmd("verify-payment", t(minutes=1), order_id=O, outcome="extended"),
         cmd("tick", t(days=21))],
        10, 10, "Canceled"),
    "30-day rule, nothing shipped": (
        [*_unshipped(), cmd("tick", t(days=30))], 10, 10, "Canceled"),
    "30-day rule, partly shipped": (
        [*_unshipped(), ship(O, t(days=1), [(A, 1)]), cmd("tick", t(days=30))],
        9, 10, "Shipped"),
    "seller cancel of the rest": (
        [*_unshipped(), ship(O, t(days=1), [(B, 1)]),
         cmd("cancel", t(days=2), order_id=O, by="seller", reason="NoInventory")],
        10, 9, "Shipped"),
    "adjustment with quantity_cancelled": (
        [*_unshipped(), adjust(O, t(hours=1), adj(A, quantity_cancelled=1, item_price_adj="199.00"))],
        9, 9, "Unshipped"),
}


@pytest.mark.parametrize("path", list(CANCEL_PATHS))
def test_canceled_unshipped_quantity_returns_to_inventory(ledger, path):
    cmds, mug, cup, status = CANCEL_PATHS[path]
    ok(ledger, *cmds)
    assert view(ledger, O)["status"] == status
    assert (available(ledger, "MUG-1"), available(ledger, "CUP-1")) == (mug, cup)
    returned = [e for _, agg, e in ledger.iter_events() if type(e).__name__ == "InventoryReturned"]
    assert sum(e.quantity for e in returned) == mug + cup - 17  # 20 set, 3 allocated
    assert all(e.order_id == O for e in returned)


def test_cancel_of_an_untracked_sku_writes_no_inventory_event(ledger):
    ok(ledger, *released(O, items=[item(sku="NEVER-SET", quantity=2)]))
    out = ok1(ledger, cmd("cancel", t(hours=1), order_id=O, by="seller", reason="NoInventory"))
    assert out.events == ["SellerCanceled"]
    assert ledger.inventory("NEVER-SET") is None


def test_shipping_does_not_return_anything(ledger):
    ok(ledger, *_unshipped())
    out = ok1(ledger, ship(O, t(hours=2)))
    assert out.events == ["ShipmentConfirmed"]
    assert (available(ledger, "MUG-1"), available(ledger, "CUP-1")) == (8, 9)
    assert names(order_events(ledger, O))[-1] == "ShipmentConfirmed"


def test_units_never_taken_are_not_given_back(ledger):
    # placed while the SKU was untracked: nothing was allocated, so nothing returns
    ok(ledger, *released(O, items=[item(sku="LATE-1", quantity=2)]),
       cmd("set-inventory", t(hours=1), sku="LATE-1", quantity=5))
    out = ok1(ledger, cmd("cancel", t(hours=2), order_id=O, by="seller", reason="NoInventory"))
    assert out.events == ["SellerCanceled"]
    assert available(ledger, "LATE-1") == 5


def test_order_placed_at_the_instant_the_sku_became_tracked(ledger):
    # same business time: the line order decides whether units were taken
    before, after = oid(2), oid(3)
    ok(ledger, place(before, t(), [item(sku="NEW-1", quantity=1)]),
       cmd("set-inventory", t(), sku="NEW-1", quantity=5),
       place(after, t(), [item(sku="NEW-1", quantity=2)]),
       cmd("tick", t(minutes=30)))
    assert available(ledger, "NEW-1") == 3
    ok(ledger, cmd("tick", t(days=21)))  # both never verified: canceled at 21 days
    assert available(ledger, "NEW-1") == 5
    returned = [e for _, _, e in ledger.iter_events() if type(e).__name__ == "InventoryReturned"]
    assert [(e.order_id, e.quantity) for e in returned] == [(after, 2)]
