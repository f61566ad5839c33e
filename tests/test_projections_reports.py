"""The Orders and Unshipped Orders reports: exact columns, row rules, every column's
value, sanitising, stable order and byte-identical output (docs/rules.md §6)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from builders import oid, released
from test_projections_support import (
    T0,
    apply,
    at,
    build,
    cmd,
    item,
    place,
    seller_cancel,
    ship,
    timeline,
    tsv_rows,
    views_and_memory,
    when,
)

from projections import (
    ORDERS_REPORT_COLUMNS,
    UNSHIPPED_REPORT_COLUMNS,
    Views,
    days_past_promise,
    project,
)

A, B, C, D, E, F = (oid(n) for n in range(1, 7))

# docs/rules.md §6's column lists, copied by hand: consumers parse by these names.
UNSHIPPED_HEADER = (
    "order-id, order-item-id, purchase-date, payments-date, reporting-date, promise-date, "
    "days-past-promise, buyer-email, buyer-name, buyer-phone-number, sku, product-name, "
    "quantity-purchased, quantity-shipped, quantity-to-ship, ship-service-level, "
    "recipient-name, ship-address-1, ship-address-2, ship-address-3, ship-city, ship-state, "
    "ship-postal-code, ship-country, is-buyer-requested-cancellation, verge-of-cancellation")
ORDERS_HEADER = (
    "order-id, order-item-id, purchase-date, payments-date, buyer-email, buyer-name, "
    "buyer-phone-number, sku, product-name, quantity-purchased, currency, item-price, "
    "item-tax, shipping-price, shipping-tax, ship-service-level, recipient-name, "
    "ship-address-1, ship-address-2, ship-address-3, ship-city, ship-state, ship-postal-code, "
    "ship-country, ship-phone-number, delivery-start-date, delivery-end-date, "
    "delivery-time-zone, delivery-Instructions")


def test_headers_are_exactly_the_rule_books():
    assert ", ".join(UNSHIPPED_REPORT_COLUMNS) == UNSHIPPED_HEADER
    assert ", ".join(ORDERS_REPORT_COLUMNS) == ORDERS_HEADER
    empty = project([])
    assert empty.report_orders(T0) == "\t".join(ORDERS_REPORT_COLUMNS) + "\n"
    assert empty.report_unshipped(T0) == "\t".join(UNSHIPPED_REPORT_COLUMNS) + "\n"


def _scenario():
    full_address = {"name": "Bo Berg", "address_1": "Gatan 2", "address_2": "Lgh 1101",
                    "address_3": "c/o Ek", "city": "Malmö", "state": "Skåne",
                    "postal_code": "21111", "country": "SE", "phone": "+46 40 123"}
    priced = item("I1", "SKU-1", 3, "300.00", item_tax="75.00", shipping_price="49.00",
                  shipping_tax="12.25")
    return timeline(
        place(A, at(0)),                                                    # Pending: never
        released(B, when_minutes=1, items=[priced, item("I2", "SKU-2", 1, "10.50")]),
        ship(B, at(40), [("I1", 3)]),                                       # I1 fully shipped
        released(C, when_minutes=2),
        ship(C, at(41)),                                                    # Shipped
        released(D, when_minutes=3),
        seller_cancel(D, at(42)),                                           # Canceled after release
        place(E, at(4)), cmd("cancel", at(5), order_id=E, by="buyer"),      # Canceled, never released
        place(F, at(6), ship_to=full_address, buyer={
            "name": "Bo Berg", "language": "sv-SE"}),                       # no email/phone
        cmd("verify-payment", at(7), order_id=F, outcome="verified"),
        cmd("tick", at(40)),
    )


async def test_orders_report_rows_and_every_column(tmp_path):
    led = build(tmp_path, _scenario())
    text = (await views_and_memory(led, tmp_path, T0 + timedelta(days=1)))["report_orders"]
    rows = tsv_rows(text)
    assert [(r["order-id"], r["order-item-id"]) for r in rows] == [
        (B, "I1"), (B, "I2"), (C, "10000000000001"), (D, "10000000000001"),
        (F, "10000000000001")]
    b1 = rows[0]
    assert b1 == {
        "order-id": B, "order-item-id": "I1", "purchase-date": b1["purchase-date"],
        "payments-date": b1["payments-date"], "buyer-email": "anna@example.se",
        "buyer-name": "Anna Andersson", "buyer-phone-number": "+46701234567", "sku": "SKU-1",
        "product-name": "Product SKU-1", "quantity-purchased": "3", "currency": "SEK",
        "item-price": "300.00", "item-tax": "75.00", "shipping-price": "49.00",
        "shipping-tax": "12.25", "ship-service-level": "Standard",
        "recipient-name": "Anna Andersson", "ship-address-1": "Storgatan 1",
        "ship-address-2": "", "ship-address-3": "", "ship-city": "Stockholm",
        "ship-state": "", "ship-postal-code": "11122", "ship-country": "SE",
        "ship-phone-number": "", "delivery-start-date": "", "delivery-end-date": "",
        "delivery-time-zone": "", "delivery-Instructions": ""}
    assert when(b1["purchase-date"]) == when(at(1))
    assert when(b1["payments-date"]) == when(at(31))
    f = rows[4]
    assert (f["buyer-email"], f["buyer-phone-number"], f["recipient-name"]) == ("", "", "Bo Berg")
    assert (f["ship-address-2"], f["ship-address-3"], f["ship-city"], f["ship-state"],
            f["ship-postal-code"], f["ship-phone-number"]) == (
        "Lgh 1101", "c/o Ek", "Malmö", "Skåne", "21111", "+46 40 123")
    assert when(f["payments-date"]) == when(at(36))            # released at its hold's end
    led.close()


async def test_unshipped_report_rows_and_every_column(tmp_path):
    led = build(tmp_path, _scenario())
    report_time = datetime(2026, 3, 4, 10, 30, tzinfo=timezone.utc)
    text = (await views_and_memory(led, tmp_path, report_time))["report_unshipped"]
    rows = tsv_rows(text)
    # B: only I2 still to ship; C shipped, D/E canceled, A pending: absent
    assert [(r["order-id"], r["order-item-id"]) for r in rows] == [
        (B, "I2"), (F, "10000000000001")]
    b = rows[0]
    assert when(b["reporting-date"]) == report_time
    assert when(b["promise-date"]) == when(at(1, days=2))      # 2026-03-04T09:01+01:00
    # 10:30Z is 2h29m after 08:01Z: within the first day after the promise -> 0
    assert b["days-past-promise"] == "0"
    assert (b["quantity-purchased"], b["quantity-shipped"], b["quantity-to-ship"]) == ("1", "0", "1")
    assert (b["is-buyer-requested-cancellation"], b["verge-of-cancellation"]) == ("false", "false")
    assert (b["buyer-email"], b["buyer-name"], b["buyer-phone-number"], b["sku"],
            b["product-name"], b["ship-service-level"], b["recipient-name"],
            b["ship-address-1"], b["ship-city"], b["ship-postal-code"], b["ship-country"]) == (
        "anna@example.se", "Anna Andersson", "+46701234567", "SKU-2", "Product SKU-2",
        "Standard", "Anna Andersson", "Storgatan 1", "Stockholm", "11122", "SE")
    assert set(rows[1]) == set(UNSHIPPED_REPORT_COLUMNS)
    led.close()


async def test_partially_shipped_row_keeps_its_remaining_quantity(tmp_path):
    led = build(tmp_path, timeline(
        released(A, items=[item("I1", quantity=5)]), ship(A, at(40), [("I1", 2)]),
        cmd("adjust", at(41), order_id=A, items=[
            {"order_item_id": "I1", "reason": "NoInventory", "quantity_cancelled": 1}])))
    rows = tsv_rows((await views_and_memory(led, tmp_path, T0))["report_unshipped"])
    assert [(r["quantity-purchased"], r["quantity-shipped"], r["quantity-to-ship"])
            for r in rows] == [("5", "2", "2")]
    led.close()


async def test_buyer_request_and_verge_of_cancellation_flags(tmp_path):
    led = build(tmp_path, timeline(
        released(A), released(B, when_minutes=1),
        cmd("request-cancel", at(60), order_id=A),
        cmd("tick", at(0, days=23, hours=1)),
    ))
    report_time = when(at(0, days=23, hours=2))
    rows = {r["order-id"]: r for r in tsv_rows(
        (await views_and_memory(led, tmp_path, report_time))["report_unshipped"])}
    assert (rows[A]["is-buyer-requested-cancellation"], rows[A]["verge-of-cancellation"]) == (
        "true", "true")
    assert (rows[B]["is-buyer-requested-cancellation"], rows[B]["verge-of-cancellation"]) == (
        "false", "true")
    assert rows[A]["days-past-promise"] == "21"               # promise at day 2, report day 23
    led.close()


def test_days_past_promise_is_the_floor_of_the_difference_in_days():
    p = datetime(2026, 3, 4, 9, 0, tzinfo=timezone(timedelta(hours=1)))
    us = timedelta(microseconds=1)
    assert days_past_promise(p, p - timedelta(days=3)) == -3
    assert days_past_promise(p, p - timedelta(days=2, hours=1)) == -3
    assert days_past_promise(p, p - us) == -1                  # not yet due: negative
    assert days_past_promise(p, p) == 0
    assert days_past_promise(p, p + timedelta(hours=23, minutes=59)) == 0
    assert days_past_promise(p, p + timedelta(days=1) - us) == 0
    assert days_past_promise(p, p + timedelta(days=1)) == 1
    assert days_past_promise(p, p.astimezone(timezone.utc) + timedelta(days=2)) == 2


async def test_rows_are_ordered_by_purchase_then_order_id_then_item(tmp_path):
    # B and A are bought at the same instant: order id decides; items keep their order
    led = build(tmp_path, timeline(
        released(C, when_minutes=0),
        released(B, when_minutes=5, items=[item("Z9"), item("A1", "SKU-2")]),
        released(A, when_minutes=5),
    ))
    rows = tsv_rows((await views_and_memory(led, tmp_path, T0))["report_orders"])
    assert [(r["order-id"], r["order-item-id"]) for r in rows] == [
        (C, "10000000000001"), (A, "10000000000001"), (B, "Z9"), (B, "A1")]
    led.close()


async def test_tabs_and_line_breaks_are_replaced_by_spaces(tmp_path):
    nasty = "Mug\twith\nnew\r\nlines\u2028and\x0bmore"
    led = build(tmp_path, timeline(
        place(B, at(0), [item("I1", "SKU-1", title=nasty)],
              ship_to={"name": "A\nB", "address_1": "x\ty", "city": "C", "postal_code": "1",
                       "country": "SE"}),
        cmd("verify-payment", at(1), order_id=B, outcome="verified"), cmd("tick", at(30))))
    got = await views_and_memory(led, tmp_path, T0)
    for text, columns in ((got["report_orders"], ORDERS_REPORT_COLUMNS),
                          (got["report_unshipped"], UNSHIPPED_REPORT_COLUMNS)):
        lines = text.split("\n")
        assert len(lines) == 3 and lines[2] == ""
        assert all(len(line.split("\t")) == len(columns) for line in lines[:2])
        row = tsv_rows(text)[0]
        assert row["product-name"] == "Mug with new  lines and more"
        assert (row["recipient-name"], row["ship-address-1"]) == ("A B", "x y")
    led.close()


async def test_reports_are_byte_identical_for_the_same_events_and_time(tmp_path):
    led = build(tmp_path, _scenario())
    t = datetime(2026, 3, 5, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    async with Views(led, str(tmp_path / "a.db")) as a, Views(led, str(tmp_path / "b.db")) as b:
        await b.rebuild()
        one = (await a.report_orders(t), await a.report_unshipped(t))
        two = (await b.report_orders(t), await b.report_unshipped(t))
        three = (await a.report_orders(t), await a.report_unshipped(t))
    assert one == two == three
    assert one[1].encode() == project(led.iter_events()).report_unshipped(t).encode()
    with pytest.raises(ValueError):
        project([]).report_unshipped(datetime(2026, 3, 5))     # a time needs its offset
    apply(led, [seller_cancel(B, at(0, days=3))])
    async with Views(led, str(tmp_path / "a.db")) as a:
        assert await a.report_unshipped(t) != one[1]           # a read is never stale
    led.close()
