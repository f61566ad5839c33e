"""The Orders, Unshipped Orders (current and old layout) and All Orders reports: exact
columns, row rules, every column's value, sanitising, stable order and byte-identical
output (docs/rules.md §6, docs/projections.md)."""

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
    ALL_ORDERS_REPORT_COLUMNS,
    ORDERS_REPORT_COLUMNS,
    UNSHIPPED_REPORT_COLUMNS,
    UNSHIPPED_REPORT_COLUMNS_OLD,
    Views,
    days_past_promise,
    project,
)

A, B, C, D, E, F = (oid(n) for n in range(1, 7))

# docs/rules.md §6's column lists, copied by hand: consumers parse by these names (and
# some by position).
UNSHIPPED_HEADER = (
    "order-id, order-item-id, purchase-date, payments-date, reporting-date, promise-date, "
    "days-past-promise, buyer-email, buyer-name, cpf, buyer-phone-number, sku, "
    "number-of-items, product-name, quantity-purchased, quantity-shipped, quantity-to-ship, "
    "ship-service-level, ship-service-name, recipient-name, ship-address-1, ship-address-2, "
    "ship-address-3, ship-city, ship-state, ship-postal-code, ship-country, sales-channel, "
    "customized-url, customized-page, is-business-order, purchase-order-number, "
    "price-designation, is-prime, is-buyer-requested-cancellation, "
    "buyer-requested-cancel-reason, verge-of-cancellation, verge-of-lateShipment, "
    "signature-confirmation-recommended, buyer-identification-number, "
    "buyer-identification-type")
UNSHIPPED_HEADER_OLD = (
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
    "delivery-time-zone, delivery-Instructions, is-business-order, purchase-order-number, "
    "price-designation")
ALL_ORDERS_HEADER = (
    "amazon-order-id, merchant-order-id, purchase-date, last-updated-date, order-status, "
    "fulfillment-channel, sales-channel, order-channel, url, ship-service-level, "
    "product-name, sku, asin, item-status, quantity, currency, item-price, item-tax, "
    "shipping-price, shipping-tax, gift-wrap-price, gift-wrap-tax, item-promotion-discount, "
    "ship-promotion-discount, ship-city, ship-state, ship-postal-code, ship-country, "
    "promotion-ids, is-business-order, purchase-order-number, price-designation")


def test_headers_are_exactly_the_rule_books():
    assert ", ".join(UNSHIPPED_REPORT_COLUMNS) == UNSHIPPED_HEADER
    assert ", ".join(UNSHIPPED_REPORT_COLUMNS_OLD) == UNSHIPPED_HEADER_OLD
    assert ", ".join(ORDERS_REPORT_COLUMNS) == ORDERS_HEADER
    assert ", ".join(ALL_ORDERS_REPORT_COLUMNS) == ALL_ORDERS_HEADER
    # readers of the real files take these by position
    assert len(ORDERS_REPORT_COLUMNS) == 32 and ORDERS_REPORT_COLUMNS[29] == "is-business-order"
    assert len(UNSHIPPED_REPORT_COLUMNS) == 41 and len(UNSHIPPED_REPORT_COLUMNS_OLD) == 26
    assert len(ALL_ORDERS_REPORT_COLUMNS) == 32
    empty = project([])
    assert empty.report_orders(T0) == "\t".join(ORDERS_REPORT_COLUMNS) + "\n"
    assert empty.report_unshipped(T0) == "\t".join(UNSHIPPED_REPORT_COLUMNS) + "\n"
    assert empty.report_unshipped(T0, "old") == "\t".join(UNSHIPPED_REPORT_COLUMNS_OLD) + "\n"
    assert empty.report_all_orders(T0) == "\t".join(ALL_ORDERS_REPORT_COLUMNS) + "\n"
    with pytest.raises(ValueError, match="unknown layout"):
        empty.report_unshipped(T0, "2019")


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
        "delivery-time-zone": "", "delivery-Instructions": "", "is-business-order": "",
        "purchase-order-number": "", "price-designation": ""}
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


# --- the marketplace's fields in the current layouts; the All Orders report -------------

MARKET = {"ship_service_category": "Expedited", "sales_channel": "Amazon.se", "is_prime": True,
          "is_business_order": True, "purchase_order_number": "PO-77",
          "earliest_ship_date": "2026-03-02T10:00:00+01:00", "address_type": "Commercial"}


def _market_scenario():
    business = item("I1", "SKU-1", 2, "200.00", item_tax="50.00", shipping_price="20.00",
                    shipping_tax="5.00", gift_wrap_price="15.00", gift_wrap_tax="3.75",
                    promotion_discount="10.00", ship_promotion_discount="20.00",
                    price_designation="BusinessPrice")
    return timeline(
        place(A, at(0), [business, item("I2", "SKU-2", 1, "50.00")],
              ship_service_level="Exp SE Dom_2", market=MARKET),
        cmd("verify-payment", at(5), order_id=A, outcome="verified"),
        cmd("acknowledge", at(31), order_id=A, merchant_order_id="SELLER-1"),
        ship(A, at(40), [("I1", 2)]),
        cmd("request-cancel", at(50), order_id=A, reason="Changed my mind"),
        place(B, at(1)),                                                    # Pending
        place(C, at(2)), cmd("cancel", at(3), order_id=C, by="buyer"),      # Cancelled
    )


async def test_orders_report_keeps_the_marketplace_fields(tmp_path):
    led = build(tmp_path, _market_scenario())
    rows = tsv_rows((await views_and_memory(led, tmp_path, T0))["report_orders"])
    a1, a2 = rows
    assert (a1["order-id"], a2["order-id"]) == (A, A)
    # the category in ship-service-level (the name is in the Unshipped report's ship-service-name)
    assert a1["ship-service-level"] == "Expedited"
    assert (a1["is-business-order"], a1["purchase-order-number"], a1["price-designation"]) == (
        "true", "PO-77", "BusinessPrice")
    assert (a2["is-business-order"], a2["purchase-order-number"], a2["price-designation"]) == (
        "true", "PO-77", "")
    line = (await views_and_memory(led, tmp_path, T0))["report_orders"].split("\n")[1]
    assert line.split("\t")[29:] == ["true", "PO-77", "BusinessPrice"]   # by position
    manage = {r["order_id"]: r for r in (await views_and_memory(led, tmp_path, T0))["orders"]}
    assert manage[A]["market"] == {**MARKET, "earliest_ship_date": "2026-03-02T10:00:00+01:00"}
    assert manage[B]["market"] == {} and manage[B]["restricted"] == []
    led.close()


async def test_unshipped_report_current_layout_column_by_column(tmp_path):
    led = build(tmp_path, _market_scenario())
    report_time = when(at(0, days=1, hours=12))         # 12 h before the promise (2 days)
    got = await views_and_memory(led, tmp_path, report_time)
    [row] = tsv_rows(got["report_unshipped"])             # I1 shipped: only I2 to ship
    assert list(row) == list(UNSHIPPED_REPORT_COLUMNS)
    assert row == {
        "order-id": A, "order-item-id": "I2", "purchase-date": row["purchase-date"],
        "payments-date": row["payments-date"], "reporting-date": row["reporting-date"],
        "promise-date": row["promise-date"], "days-past-promise": "-1",
        "buyer-email": "anna@example.se", "buyer-name": "Anna Andersson", "cpf": "",
        "buyer-phone-number": "+46701234567", "sku": "SKU-2", "number-of-items": "",
        "product-name": "Product SKU-2", "quantity-purchased": "1", "quantity-shipped": "0",
        "quantity-to-ship": "1", "ship-service-level": "Expedited",
        "ship-service-name": "Exp SE Dom_2", "recipient-name": "Anna Andersson",
        "ship-address-1": "Storgatan 1", "ship-address-2": "", "ship-address-3": "",
        "ship-city": "Stockholm", "ship-state": "", "ship-postal-code": "11122",
        "ship-country": "SE", "sales-channel": "Amazon.se", "customized-url": "",
        "customized-page": "", "is-business-order": "true", "purchase-order-number": "PO-77",
        "price-designation": "", "is-prime": "true", "is-buyer-requested-cancellation": "true",
        "buyer-requested-cancel-reason": "Changed my mind", "verge-of-cancellation": "false",
        "verge-of-lateShipment": "true", "signature-confirmation-recommended": "",
        "buyer-identification-number": "", "buyer-identification-type": ""}
    assert when(row["reporting-date"]) == report_time
    assert when(row["promise-date"]) == when(at(0, days=2))
    # a day and a half before the promise: not yet on the verge of shipping late
    early = tsv_rows((await views_and_memory(led, tmp_path, when(at(1))))["report_unshipped"])
    assert early[0]["verge-of-lateShipment"] == "false"
    led.close()


async def test_unshipped_report_old_layout_is_kept(tmp_path):
    led = build(tmp_path, _market_scenario())
    report_time = when(at(0, days=1, hours=12))
    got = await views_and_memory(led, tmp_path, report_time)
    old, new = tsv_rows(got["report_unshipped_old"]), tsv_rows(got["report_unshipped"])
    assert list(old[0]) == list(UNSHIPPED_REPORT_COLUMNS_OLD)
    # the old layout put the service name in ship-service-level
    assert old[0]["ship-service-level"] == "Exp SE Dom_2"
    for col in UNSHIPPED_REPORT_COLUMNS_OLD:
        if col != "ship-service-level":
            assert old[0][col] == new[0][col], col
    led.close()


async def test_all_orders_report_column_by_column(tmp_path):
    led = build(tmp_path, _market_scenario())
    got = await views_and_memory(led, tmp_path, T0)
    rows = tsv_rows(got["report_all_orders"])
    assert [(r["amazon-order-id"], r["item-status"]) for r in rows] == [
        (A, "Shipped"), (A, "Unshipped"), (B, "Pending"), (C, "Cancelled")]
    a1 = rows[0]
    assert list(a1) == list(ALL_ORDERS_REPORT_COLUMNS)
    assert a1 == {
        "amazon-order-id": A, "merchant-order-id": "SELLER-1",
        "purchase-date": a1["purchase-date"], "last-updated-date": a1["last-updated-date"],
        "order-status": "Shipping", "fulfillment-channel": "Merchant",
        "sales-channel": "Amazon.se", "order-channel": "", "url": "",
        "ship-service-level": "Expedited", "product-name": "Product SKU-1", "sku": "SKU-1",
        "asin": "", "item-status": "Shipped", "quantity": "2", "currency": "SEK",
        "item-price": "200.00", "item-tax": "50.00", "shipping-price": "20.00",
        "shipping-tax": "5.00", "gift-wrap-price": "15.00", "gift-wrap-tax": "3.75",
        "item-promotion-discount": "-10.00", "ship-promotion-discount": "-20.00",
        "ship-city": "Stockholm", "ship-state": "", "ship-postal-code": "11122",
        "ship-country": "SE", "promotion-ids": "", "is-business-order": "true",
        "purchase-order-number": "PO-77", "price-designation": "BusinessPrice"}
    assert when(a1["purchase-date"]) == when(at(0))
    assert when(a1["last-updated-date"]) == when(at(50))      # the request-cancel
    b, c = rows[2], rows[3]
    assert (b["order-status"], b["merchant-order-id"], b["sales-channel"],
            b["is-business-order"], b["item-promotion-discount"]) == ("Pending", "", "", "", "")
    assert (c["order-status"], when(c["last-updated-date"])) == ("Cancelled", when(at(3)))
    led.close()


async def test_released_data_reaches_the_reports(tmp_path):
    restricted = {"name": "(restricted)", "address_1": "(restricted)", "city": "Lund",
                  "postal_code": "22221", "country": "SE"}
    full = {"name": "Bo Berg", "address_1": "Kungsgatan 2", "city": "Lund",
            "postal_code": "22221", "country": "SE"}
    led = build(tmp_path, timeline(
        place(A, at(0), ship_to=restricted, buyer={"name": "(restricted)", "language": "sv-SE"},
              restricted=["buyer", "ship_to"]),
        cmd("verify-payment", at(5), order_id=A, outcome="verified"), cmd("tick", at(30))))
    got = await views_and_memory(led, tmp_path, T0)
    rows = tsv_rows(got["report_orders"])
    assert (rows[0]["buyer-name"], rows[0]["ship-address-1"]) == ("(restricted)", "(restricted)")
    assert got["orders"][0]["restricted"] == ["buyer", "ship_to"]          # Manage Orders
    apply(led, [cmd("release-restricted", at(60), order_id=A, ship_to=full,
                    buyer={"name": "Bo Berg", "language": "sv-SE", "email": "bo@example.se"})])
    got = await views_and_memory(led, tmp_path, T0)
    rows = tsv_rows(got["report_orders"])
    assert (rows[0]["buyer-name"], rows[0]["buyer-email"], rows[0]["recipient-name"],
            rows[0]["ship-address-1"]) == ("Bo Berg", "bo@example.se", "Bo Berg", "Kungsgatan 2")
    assert (got["orders"][0]["restricted"], got["orders"][0]["buyer_name"]) == ([], "Bo Berg")
    led.close()


def test_report_cli_layouts_and_encoding(tmp_path):
    import subprocess
    import sys

    led = build(tmp_path, _market_scenario() + timeline(
        place(D, at(5), ship_to={"name": "Zoë Ångström", "address_1": "Gränd 1",
                                 "city": "Malmö", "postal_code": "21111", "country": "SE"})))
    led.close()
    db = str(tmp_path / "ledger.db")

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "order_ledger", "report", *args,
                               "--db", db, "--at", at(0, days=1)], capture_output=True)

    current, old, all_orders = run("unshipped"), run("unshipped", "--layout", "old"), \
        run("all-orders")
    assert current.returncode == old.returncode == all_orders.returncode == 0
    assert current.stdout.split(b"\n")[0].decode().split("\t") == list(UNSHIPPED_REPORT_COLUMNS)
    assert old.stdout.split(b"\n")[0].decode().split("\t") == list(UNSHIPPED_REPORT_COLUMNS_OLD)
    assert all_orders.stdout.split(b"\n")[0].decode().split("\t") == list(
        ALL_ORDERS_REPORT_COLUMNS)
    # the marketplace's encoding by default (Amazon.se and orders without a channel:
    # windows-1252); --encoding utf-8 on request
    assert "Malmö".encode("cp1252") in all_orders.stdout
    assert "Malmö".encode() not in all_orders.stdout and all_orders.stderr == b""
    utf8 = run("all-orders", "--encoding", "utf-8")
    assert utf8.returncode == 0 and "Malmö".encode() in utf8.stdout
    assert utf8.stdout.decode("utf-8") == all_orders.stdout.decode("cp1252")
    bad = run("orders", "--layout", "old")
    assert bad.returncode == 2 and b"--layout is for the unshipped report only" in bad.stderr


def _cli_report(db: str, *args: str):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "order_ledger", "report", *args, "--db", db,
                           "--at", at(0, days=1)], capture_output=True)


def _ship_to(city: str, country: str = "SE") -> dict:
    """An address whose city (a column of every report) is ``city``."""
    return {"name": "Recipient", "address_1": "Street 1", "city": city, "postal_code": "21111",
            "country": country}


def test_report_default_encoding_writes_what_windows_1252_lacks_as_question_marks(tmp_path):
    led = build(tmp_path, timeline(
        place(A, at(0), ship_to=_ship_to("Łukasz Wąs"), market={"sales_channel": "Amazon.pl"}),
        place(B, at(1), ship_to=_ship_to("Zoë “Bo” Öberg"))))
    led.close()
    db = str(tmp_path / "ledger.db")
    got = _cli_report(db, "all-orders")
    assert got.returncode == 0
    text = got.stdout.decode("cp1252")
    assert "?ukasz W?s" in text                       # Ł and ą are not in windows-1252
    assert "Zoë “Bo” Öberg" in text                   # the curly quotes are (0x93, 0x94)
    assert "“".encode("cp1252") == b"\x93" and b"\x93" in got.stdout
    assert b"2 characters windows-1252 lacks written as '?'" in got.stderr
    assert b"--encoding utf-8 keeps them" in got.stderr
    kept = _cli_report(db, "all-orders", "--encoding", "utf-8")
    assert kept.returncode == 0 and "Łukasz Wąs" in kept.stdout.decode("utf-8")
    assert kept.stderr == b""
    out = tmp_path / "r.tsv"                          # the file has the same bytes as stdout
    assert _cli_report(db, "all-orders", "--out", str(out)).returncode == 0
    assert out.read_bytes() == got.stdout


def test_report_of_a_japanese_marketplace_is_shift_jis(tmp_path):
    jp = {"sales_channel": "Amazon.co.jp"}
    led = build(tmp_path, timeline(
        place(A, at(0), ship_to=_ship_to("山田 太郎 ①", "JP"), market=jp),
        cmd("verify-payment", at(5), order_id=A, outcome="verified"),
        place(B, at(1), ship_to=_ship_to("佐藤 花子", "JP")),        # no channel: no say
        cmd("verify-payment", at(6), order_id=B, outcome="verified"), cmd("tick", at(40))))
    led.close()
    db = str(tmp_path / "ledger.db")
    for kind in ("orders", "unshipped", "all-orders"):
        got = _cli_report(db, kind)
        assert got.returncode == 0 and got.stderr == b"", (kind, got.stderr)
        assert "山田 太郎 ①".encode("cp932") in got.stdout     # ① is cp932's, not JIS X 0208's
        assert "佐藤 花子".encode("shift_jis") in got.stdout
        assert got.stdout.decode("cp932") == _cli_report(
            db, kind, "--encoding", "utf-8").stdout.decode("utf-8")
    # a past point is read from events in memory: the same choice
    past = _cli_report(db, "all-orders", "--as-of", at(2))
    assert past.returncode == 0, past.stderr
    assert "山田 太郎 ①".encode("cp932") in past.stdout
    strict = _cli_report(db, "orders", "--encoding", "shift_jis")
    assert strict.returncode == 0 and b"1 character shift_jis lacks" in strict.stderr


def test_report_of_marketplaces_with_different_encodings_needs_encoding(tmp_path):
    led = build(tmp_path, timeline(
        place(A, at(0), ship_to=_ship_to("山田 太郎", "JP"),
              market={"sales_channel": "Amazon.co.jp"}),
        place(B, at(1), ship_to=_ship_to("Bo Berg"), market={"sales_channel": "Amazon.se"})))
    led.close()
    db = str(tmp_path / "ledger.db")
    out = tmp_path / "r.tsv"
    got = _cli_report(db, "all-orders", "--out", str(out))
    assert got.returncode == 2 and not out.exists()
    assert b"Amazon.co.jp (cp932), Amazon.se (windows-1252)" in got.stderr
    assert b"pass --encoding" in got.stderr and b"Traceback" not in got.stderr
    ok = _cli_report(db, "all-orders", "--encoding", "utf-8", "--out", str(out))
    assert ok.returncode == 0 and "山田 太郎" in out.read_text(encoding="utf-8")
    # the Orders report holds neither (both Pending): nothing disagrees
    assert _cli_report(db, "orders").returncode == 0


def test_encode_report_library():
    from projections import read

    assert read.encode_report("a\tÅ\n") == ("a\tÅ\n".encode("cp1252"), "windows-1252", 0)
    assert read.encode_report("ł€ł\n", "iso-8859-1") == (b"???\n", "iso-8859-1", 3)
    assert read.encode_report("ł\n", "utf-8") == ("ł\n".encode(), "utf-8", 0)
    with pytest.raises(ValueError, match="unknown encoding"):
        read.encode_report("x", "latin-9")
    assert read.marketplace_encoding("Amazon.co.jp") == "cp932"
    assert read.marketplace_encoding(" AMAZON.CO.JP ") == "cp932"
    assert read.marketplace_encoding("Amazon.de") == read.marketplace_encoding(None) == \
        "windows-1252"
