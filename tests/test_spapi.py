"""Importing Orders API v0 responses (getOrders / getOrderItems) into the ledger."""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

from ledger.application import Ledger
from ledger.spapi import SpApiError, import_orders, load_items, load_orders, plan_order
from order_ledger.cli import main

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "sp-api"
SE = "A2NODRKZP88ZB9"
DE = "A1PA6795UKMFR9"


def money(amount: str, currency: str = "SEK") -> dict:
    return {"CurrencyCode": currency, "Amount": amount}


def api_item(item_id: str, sku: str, ordered: int, shipped: int, price: str, tax: str = "0.00",
             *, requested: bool = False, reason: str = "", currency: str = "SEK") -> dict:
    """One entry of getOrderItems' payload.OrderItems, as the API writes it."""
    return {
        "ASIN": "B0C" + sku.replace("-", "")[:7].ljust(7, "0"), "SellerSKU": sku,
        "OrderItemId": item_id, "Title": f"Product {sku}", "QuantityOrdered": ordered,
        "QuantityShipped": shipped, "ProductInfo": {"NumberOfItems": "1"},
        "ItemPrice": money(price, currency), "ItemTax": money(tax, currency),
        "ShippingPrice": money("29.00", currency), "ShippingTax": money("7.25", currency),
        "PromotionDiscount": money("0.00", currency), "IsGift": "false", "ConditionId": "New",
        "BuyerRequestedCancel": {"IsBuyerRequestedCancel": "true" if requested else "false",
                                 "BuyerCancelReason": reason},
    }


def api_order(n: int, status: str, purchase: str, updated: str, items: list[dict] | None = None,
              *, channel: str = "MFN", marketplace: str = SE, **extra) -> dict:
    """One entry of getOrders' payload.Orders, as the API writes it."""
    order = {
        "AmazonOrderId": f"203-{n:07d}-1234567", "PurchaseDate": purchase,
        "LastUpdateDate": updated, "OrderStatus": status, "FulfillmentChannel": channel,
        "SalesChannel": "Amazon.se", "ShipServiceLevel": "Std SE Dom_1",
        "OrderTotal": money("427.25"), "NumberOfItemsShipped": 0, "NumberOfItemsUnshipped": 1,
        "PaymentMethod": "Other", "PaymentMethodDetails": ["Standard"],
        "MarketplaceId": marketplace, "ShipmentServiceLevelCategory": "Standard",
        "OrderType": "StandardOrder", "EarliestShipDate": purchase[:10] + "T23:00:00Z",
        "LatestShipDate": _plus_days(purchase, 2), "LatestDeliveryDate": _plus_days(purchase, 7),
        "IsBusinessOrder": False, "IsPrime": False, "IsPremiumOrder": False,
        "IsReplacementOrder": "false", "IsISPU": False,
        "BuyerInfo": {"BuyerEmail": f"buyer{n}@marketplace.amazon.se", "BuyerName": "Anna Andersson"},
        "ShippingAddress": {"Name": "Anna Andersson", "AddressLine1": "Storgatan 1",
                            "City": "Stockholm", "StateOrRegion": "", "PostalCode": "111 22",
                            "CountryCode": "SE", "Phone": "+46701234567",
                            "AddressType": "Residential"},
    }
    if items is not None:
        order["OrderItems"] = items
    order.update(extra)
    return order


def _plus_days(t: str, days: int) -> str:
    from datetime import datetime, timedelta

    return (datetime.fromisoformat(t.replace("Z", "+00:00")) + timedelta(days=days)
            ).isoformat().replace("+00:00", "Z")


def oid(n: int) -> str:
    return f"203-{n:07d}-1234567"


def response(*orders: dict) -> dict:
    return {"payload": {"Orders": list(orders), "CreatedBefore": "2026-03-01T00:00:00Z"}}


def every_status() -> dict:
    """One order per case of the mapping table, items inline."""
    d = "2026-02-1{}T08:00:00Z".format
    return response(
        api_order(1, "Pending", d(0), d(0), [api_item("40000000000011", "MUG-1", 1, 0, "199.00")]),
        api_order(2, "Unshipped", d(0), "2026-02-10T09:00:00Z",
                  [api_item("40000000000021", "MUG-1", 2, 0, "398.00", "79.60")]),
        api_order(3, "Unshipped", d(1), "2026-02-11T12:00:00Z",
                  [api_item("40000000000031", "CUP-1", 1, 0, "99.00", requested=True,
                            reason="Ordered by mistake")]),
        api_order(4, "PartiallyShipped", d(1), "2026-02-12T10:00:00Z",
                  [api_item("40000000000041", "MUG-1", 2, 1, "398.00"),
                   api_item("40000000000042", "CUP-1", 1, 0, "99.00")]),
        api_order(5, "Shipped", d(2), "2026-02-13T07:00:00Z",
                  [api_item("40000000000051", "MUG-1", 1, 1, "199.00"),
                   api_item("40000000000052", "CUP-1", 3, 3, "297.00")]),
        api_order(6, "Canceled", d(2), "2026-02-12T08:10:00Z",
                  [api_item("40000000000061", "MUG-1", 1, 0, "199.00")]),
        api_order(7, "Canceled", d(3), "2026-02-14T08:00:00Z",
                  [api_item("40000000000071", "MUG-1", 1, 0, "199.00")]),
        api_order(8, "Canceled", d(3), "2026-02-13T20:00:00Z",
                  [api_item("40000000000081", "MUG-1", 1, 0, "199.00", requested=True,
                            reason="Found it cheaper")]),
        api_order(9, "Unfulfillable", d(4), d(4), [api_item("40000000000091", "MUG-1", 1, 0, "1")]),
        api_order(10, "InvoiceUnconfirmed", d(4), d(4),
                  [api_item("40000000000101", "MUG-1", 1, 0, "1")]),
        api_order(11, "PendingAvailability", d(4), d(4),
                  [api_item("40000000000111", "MUG-1", 1, 0, "1")]),
        api_order(12, "Delivered", d(4), d(4), [api_item("40000000000121", "MUG-1", 1, 0, "1")]),
        api_order(13, "Shipped", d(4), d(5), [api_item("40000000000131", "MUG-1", 1, 1, "199.00")],
                  channel="AFN"),
    )


EXPECTED = {
    1: ("imported", "Pending"),
    2: ("imported", "Unshipped"),
    3: ("imported", "Unshipped"),
    4: ("imported", "PartiallyShipped"),
    5: ("imported", "Shipped"),
    6: ("imported", "Canceled"),
    7: ("imported", "Canceled"),
    8: ("imported", "Canceled"),
    9: ("skipped", None),
    10: ("imported", "Shipped"),
    11: ("imported", "Pending"),
    12: ("unknown-status", None),
    13: ("skipped", None),
}


def results(report) -> dict[int, tuple[str, str | None]]:
    return {int(o.order_id[4:11]): (o.result, o.ledger_status) for o in report.orders}


def test_every_status_is_mapped_or_reported(ledger):
    report = import_orders(ledger, json.dumps(every_status()))
    assert results(report) == EXPECTED
    assert not report.ok
    s = report.summary()
    assert (s["imported"], s["unknown_status"], s["skipped"], s["rejected"]) == (10, 1, 2, 0)
    reasons = {int(o.order_id[4:11]): o.reason for o in report.orders}
    assert "Unfulfillable" in reasons[9] and "Multi-Channel" in reasons[9]
    assert "'Delivered' is not mapped" in reasons[12]
    assert "AFN" in reasons[13]
    for n in (9, 12, 13):
        assert ledger.order(oid(n)) is None

    v = {n: ledger.order(oid(n)).view() for n in range(1, 9)}
    assert v[1]["payments_date"] is None
    assert v[2]["payments_date"] == "2026-02-10T08:30:00+00:00"
    # the API's promise dates are kept as they are (no shift for the release)
    assert v[2]["latest_ship_date"] == "2026-02-12T08:00:00+00:00"
    assert v[3]["buyer_requested_cancel"] is True
    assert [(i["quantity_shipped"], i["quantity_to_ship"]) for i in v[4]["items"]] == [(1, 1), (0, 1)]
    assert [i["quantity_shipped"] for i in v[5]["items"]] == [1, 3]
    # canceled inside the hold: a buyer cancel; after it: a seller cancel
    assert (v[6]["canceled_by"], v[6]["payments_date"]) == ("buyer", None)
    assert (v[7]["canceled_by"], v[7]["cancel_reason"]) == ("seller", "GeneralAdjustment")
    assert (v[8]["canceled_by"], v[8]["cancel_reason"]) == ("seller", "BuyerCanceled")

    events = {}
    for _, agg, e in ledger.read_events():
        events.setdefault(agg, []).append(type(e).__name__)
    assert events["order:" + oid(8)] == ["OrderPlaced", "HoldExpired", "PaymentVerified",
                                         "CancellationRequested", "SellerCanceled"]
    assert events["order:" + oid(6)] == ["OrderPlaced", "BuyerCanceled"]
    ship = next(e for _, agg, e in ledger.read_events()
                if agg == "order:" + oid(5) and type(e).__name__ == "ShipmentConfirmed")
    assert (ship.carrier_code, ship.carrier_name, ship.ship_date) == ("Other", "Imported",
                                                                      "2026-02-13")
    placed = next(e for _, agg, e in ledger.read_events() if agg == "order:" + oid(2))
    it = placed.items[0]
    assert (it.item_price, it.item_tax, it.shipping_price, it.shipping_tax) == (
        Decimal("398.00"), Decimal("79.60"), Decimal("29.00"), Decimal("7.25"))
    assert isinstance(it.item_price, Decimal)
    assert placed.buyer.language == "sv-SE" and placed.ship_to.postal_code == "111 22"

    # the same file again: nothing new
    head = ledger.head()
    again = import_orders(ledger, json.dumps(every_status()))
    assert {n: r for n, (r, _) in results(again).items() if r != "unknown-status"} == {
        **{n: "already-imported" for n in (*range(1, 9), 10, 11)}, 9: "skipped", 13: "skipped"}
    assert again.events == 0 and ledger.head() == head
    assert all(s.status == "duplicate" for o in again.orders for s in o.steps)


def _without_items(doc: dict) -> tuple[dict, dict[str, list]]:
    doc = copy.deepcopy(doc)
    items = {}
    for o in doc["payload"]["Orders"]:
        items[o["AmazonOrderId"]] = o.pop("OrderItems")
    return doc, items


@pytest.mark.parametrize("shape", ["mapping", "list"])
def test_items_from_a_separate_file(sqlite_url, tmp_path, shape):
    doc, items = _without_items(every_status())
    if shape == "mapping":
        items_doc = {k: {"payload": {"AmazonOrderId": k, "OrderItems": v}} for k, v in items.items()}
    else:
        items_doc = [{"payload": {"AmazonOrderId": k, "OrderItems": v}} for k, v in items.items()]
    orders_path, items_path = tmp_path / "getOrders.json", tmp_path / "items.json"
    orders_path.write_text(json.dumps(doc))
    items_path.write_text(json.dumps(items_doc))
    args = ["import", "sp-api", str(orders_path), "--items", str(items_path), "--db", sqlite_url]
    result = CliRunner().invoke(main, args + ["--json"])
    assert result.exit_code == 1, result.output  # the unknown statuses
    out = json.loads(result.stdout)
    assert {int(r["order_id"][4:11]): (r["result"], r["ledger_status"])
            for r in out["results"]} == EXPECTED
    # the second run, in words
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert f"{oid(5)} Shipped: already imported (in the ledger: Shipped)" in result.stdout
    assert f"{oid(12)} Delivered: not imported (unknown status)" in result.stdout
    assert f"{oid(9)} Unfulfillable: skipped: Unfulfillable" in result.stdout
    assert "0 imported, 10 already imported, 2 skipped, 0 incomplete, 1 unknown status, 0 rejected; " \
           "0 events written" in result.stdout


def test_missing_items_and_bad_data_reject_the_order_only(sqlite_url):
    orders = response(
        api_order(1, "Unshipped", "2026-02-10T08:00:00Z", "2026-02-10T09:00:00Z"),  # no items
        api_order(2, "Unshipped", "2026-02-10T08:00:00Z", "2026-02-10T09:00:00Z",
                  [api_item("40000000000021", "MUG-1", 1, 0, "12,50")]),
        api_order(3, "Unshipped", "2026-02-10T08:00:00Z", "2026-02-10T09:00:00Z",
                  [api_item("40000000000031", "MUG-1", 1, 0, "10.00"),
                   api_item("40000000000032", "CUP-1", 1, 0, "10.00", currency="EUR")]),
        api_order(4, "Unshipped", "2026-02-10T08:00:00Z", "2026-02-10T09:00:00Z",
                  [api_item("40000000000041", "MUG-1", 1, 0, "10.00")],
                  ShippingAddress={"City": "Lund", "PostalCode": "222 21", "CountryCode": "SE"}),
        api_order(5, "Pending", "2026-02-10T08:00:00Z", "2026-02-10T08:00:00Z",
                  [api_item("40000000000051", "MUG-1", 1, 0, "10.00")],
                  ShippingAddress={"City": "Lund", "PostalCode": "222 21", "CountryCode": "SE"}),
        api_order(6, "Unshipped", "2026-02-10T08:00:00Z", "2026-02-10T09:00:00Z",
                  [api_item("40000000000061", "MUG-1", 1, 0, "10.00")], PurchaseDate="yesterday"),
        api_order(7, "Canceled", "2026-02-10T08:00:00Z", "2026-02-10T09:00:00Z",
                  [api_item("40000000000071", "MUG-1", 0, 0, "0.00")]),
        api_order(8, "Unshipped", "2026-02-10T08:00:00Z", "2026-02-10T09:00:00Z",
                  [api_item("40000000000081", "MUG-1", 1, 0, "10.00")]),
        {**api_order(9, "Unshipped", "2026-02-10T08:00:00Z", "2026-02-10T09:00:00Z",
                     [api_item("40000000000091", "MUG-1", 1, 0, "10.00")]),
         "AmazonOrderId": "S01-1234567-1234567"},
        api_order(10, "Unshipped", "2026-02-10T08:00:00Z", "2026-02-10T09:00:00Z",
                  [api_item("40000000000101", "MUG-1", 1, 0, "10.00")],
                  ShippingAddress={"CountryCode": "SE"}),
    )
    with Ledger(sqlite_url) as led:
        report = import_orders(led, orders)
    got = {o.order_id: (o.result, o.reason) for o in report.orders}
    # items missing (they come from a second call): reported, not an error for the others
    assert got[oid(1)][0] == "incomplete" and "items missing" in got[oid(1)][1]
    assert got[oid(2)][0] == "rejected" and "'12,50' is not a decimal" in got[oid(2)][1]
    assert got[oid(3)][0] == "rejected" and "mixes currencies EUR, SEK" in got[oid(3)][1]
    # no AddressLine1 (no restricted data token): imported, the address marked restricted
    assert got[oid(4)] == ("imported", None)
    # no address to ship to at all: rejected
    assert got[oid(10)][0] == "rejected"
    assert "no AddressLine1 and no City, PostalCode" in got[oid(10)][1]
    assert got[oid(5)][0] == "skipped" and "import it again when it is Unshipped" in got[oid(5)][1]
    assert got[oid(6)][0] == "rejected" and "PurchaseDate 'yesterday'" in got[oid(6)][1]
    assert got[oid(7)][0] == "skipped" and "nothing ordered" in got[oid(7)][1]
    assert got[oid(8)] == ("imported", None)
    assert got["S01-1234567-1234567"][0] == "rejected"


def test_buyer_language():
    items = [api_item("40000000000011", "MUG-1", 1, 0, "10.00")]
    de = api_order(1, "Pending", "2026-02-10T08:00:00Z", "2026-02-10T08:00:00Z", items,
                   marketplace=DE)
    assert plan_order(de, None).steps[0].command["buyer"]["language"] == "de-DE"
    assert plan_order(de, None, language="en-GB").steps[0].command["buyer"]["language"] == "en-GB"
    own = copy.deepcopy(de)
    own["BuyerInfo"]["BuyerLanguage"] = "fr-FR"
    assert plan_order(own, None, language="en-GB").steps[0].command["buyer"]["language"] == "fr-FR"
    unknown = copy.deepcopy(de)
    unknown["MarketplaceId"] = "XXXXXXXX"
    assert plan_order(unknown, None).steps[0].command["buyer"]["language"] == "sv-SE"  # ship country
    unknown["ShippingAddress"]["CountryCode"] = "ZZ"
    plan = plan_order(unknown, None)
    assert plan.result == "rejected" and "--language" in plan.reason


def test_times_older_than_the_ledger_clock_are_rejected(sqlite_url, tmp_path):
    # default: a tick at 03-01 says nothing against orders placed earlier: a late
    # order is imported, and its deadlines already behind the clock fire at once
    with Ledger(sqlite_url) as led:
        led.execute({"type": "tick", "at": "2026-03-01T00:00:00+00:00"})
        report = import_orders(led, every_status())
        order = next(o for o in report.orders if o.order_id == oid(2))
        assert (order.result, order.ledger_status) == ("imported", "Unshipped")
        pending = led.order(oid(1))
        assert pending.status == "Pending" and pending.hold_expired
    # advance_clock (the import as one time-sorted stream after the tick): rejected
    with Ledger(str(tmp_path / "stream.db"), advance_clock=True) as led:
        led.execute({"type": "tick", "at": "2026-03-01T00:00:00+00:00"})
        report = import_orders(led, every_status())
    order = next(o for o in report.orders if o.order_id == oid(2))
    assert order.result == "rejected"
    assert order.reason.startswith("place: [time-backwards] command time 2026-02-10T08:00:00+00:00 "
                                   "is before the ledger's clock")


def test_a_later_export_adds_only_the_new_steps(sqlite_url):
    items = [api_item("40000000000011", "MUG-1", 1, 0, "10.00")]
    first = response(api_order(1, "Unshipped", "2026-02-10T08:00:00Z", "2026-02-10T08:31:00Z", items))
    shipped = copy.deepcopy(first)
    order = shipped["payload"]["Orders"][0]
    order.update(OrderStatus="Shipped", LastUpdateDate="2026-02-11T15:00:00Z")
    order["OrderItems"][0]["QuantityShipped"] = 1
    order["ShipmentTracking"] = {"CarrierCode": "PostNord", "TrackingNumber": "SE123"}
    with Ledger(sqlite_url) as led:
        assert import_orders(led, first).orders[0].ledger_status == "Unshipped"
        report = import_orders(led, shipped)
        o = report.orders[0]
        assert (o.result, o.ledger_status) == ("imported", "Shipped")
        assert [(s.name, s.status) for s in o.steps] == [
            ("place", "duplicate"), ("verify", "duplicate"), ("ship", "applied")]
        ship = [e for _, _, e in led.read_events() if type(e).__name__ == "ShipmentConfirmed"][0]
        assert (ship.carrier_code, ship.carrier_name, ship.tracking_number) == (
            "PostNord", None, "SE123")


def test_the_30_day_rule_fires_for_old_unshipped_imports(sqlite_url, tmp_path):
    doc = response(
        api_order(1, "Unshipped", "2026-01-01T08:00:00Z", "2026-01-01T09:00:00Z",
                  [api_item("40000000000011", "MUG-1", 1, 0, "10.00")]),
        api_order(2, "Pending", "2026-02-10T08:00:00Z", "2026-02-10T08:00:00Z",
                  [api_item("40000000000021", "MUG-1", 1, 0, "10.00")]))
    tick = {"type": "tick", "at": "2026-03-01T00:00:00+00:00"}
    # default: order 2's place (02-10) does not fire order 1's day-30 cancel (01-31);
    # the next tick does
    with Ledger(sqlite_url) as led:
        report = import_orders(led, doc)
        assert [o.result for o in report.orders] == ["imported", "imported"]
        assert led.order(oid(1)).status == "Unshipped"
        assert "LedgerCanceled" in led.execute(tick).events
        view = led.order(oid(1)).view()
    assert (view["status"], view["cancel_reason"]) == ("Canceled", "ShipmentNotConfirmed")
    # advance_clock: the import as one time-sorted stream; order 2's place moves the clock
    with Ledger(str(tmp_path / "stream.db"), advance_clock=True) as led:
        report = import_orders(led, doc)
        assert [o.result for o in report.orders] == ["imported", "imported"]
        view = led.order(oid(1)).view()
    assert (view["status"], view["cancel_reason"]) == ("Canceled", "ShipmentNotConfirmed")


def test_the_examples_import_cleanly(tmp_path):
    db = str(tmp_path / "sp.db")
    runner = CliRunner()
    result = runner.invoke(main, ["import", "sp-api", str(EXAMPLES / "getOrders.json"), "--items",
                                  str(EXAMPLES / "getOrderItems.json"), "--db", db, "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert (out["imported"], out["skipped"], out["rejected"]) == (6, 2, 0)
    result = runner.invoke(main, ["import", "sp-api", str(EXAMPLES / "getOrders-with-items.json"),
                                  "--db", db, "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert (out["imported"], out["already_imported"], out["events"]) == (0, 6, 0)


def test_usage_errors(tmp_path, sqlite_url):
    runner = CliRunner()
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"payload": {"orders": []}}))
    good = tmp_path / "good.json"
    good.write_text(json.dumps(response()))
    for args in (["import", "sp-api", str(bad)], ["import", "sp-api", str(other)],
                 ["import", "sp-api", str(tmp_path / "missing.json")],
                 ["import", "sp-api", str(good), "--items", str(bad)],
                 ["import", "sp-api", str(good), "--language", "Swedish!"]):
        result = runner.invoke(main, args + ["--db", sqlite_url])
        assert result.exit_code == 2, (args, result.output)
    with pytest.raises(SpApiError, match="payload.Orders"):
        load_orders({"payload": {}})
    with pytest.raises(SpApiError, match="AmazonOrderId"):
        load_items([{"payload": {"OrderItems": []}}])
    result = runner.invoke(main, ["import", "sp-api", str(good), "--db", sqlite_url])
    assert result.exit_code == 0 and "0 orders" in result.stdout


# --- issue 15: every v0 OrderStatus, and orders without restricted data ---------------------

#: v0 OrderStatus -> (exit-0 result, the order's status in the ledger), through the CLI
V0_STATUSES = {
    "Pending": ("imported", "Pending"),
    "Unshipped": ("imported", "Unshipped"),
    "PartiallyShipped": ("imported", "PartiallyShipped"),
    "Shipped": ("imported", "Shipped"),
    "Canceled": ("imported", "Canceled"),
    "Unfulfillable": ("skipped", None),
    "InvoiceUnconfirmed": ("imported", "Shipped"),
    "PendingAvailability": ("imported", "Pending"),
}


def _cli_json(args: list[str]) -> tuple[int, dict]:
    result = CliRunner().invoke(main, args + ["--json"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, json.loads(result.stdout)


def test_every_v0_order_status_through_the_cli(db_url, tmp_path):
    orders = []
    for n, status in enumerate(V0_STATUSES, start=1):
        shipped = 1 if status in ("PartiallyShipped", "Shipped") else 0
        items = [api_item(f"5000000000{n:02d}1", "MUG-1", 1, shipped, "199.00"),
                 api_item(f"5000000000{n:02d}2", "CUP-1", 1, 1 if status == "Shipped" else 0,
                          "99.00")]
        # InvoiceUnconfirmed: every item shipped, whatever QuantityShipped says
        orders.append(api_order(n, status, "2026-02-10T08:00:00Z", "2026-02-11T09:00:00Z", items))
    orders.append(api_order(9, "Shipped", "2026-02-10T08:00:00Z", "2026-02-11T09:00:00Z",
                            [api_item("50000000000091", "MUG-1", 1, 1, "199.00")], channel="AFN"))
    path = tmp_path / "getOrders.json"
    path.write_text(json.dumps(response(*orders)))

    code, out = _cli_json(["import", "sp-api", str(path), "--db", db_url])
    assert code == 0  # nothing stops the import: every v0 status is mapped
    got = {r["order_status"] if r["order_id"] != oid(9) else "AFN": r for r in out["results"]}
    assert {k: (r["result"], r["ledger_status"]) for k, r in got.items()} == {
        **V0_STATUSES, "AFN": ("skipped", None)}
    assert (out["imported"], out["skipped"], out["unknown_status"], out["rejected"]) == (7, 2, 0, 0)
    assert "Multi-Channel Fulfillment" in got["Unfulfillable"]["reason"]
    assert "AFN" in got["AFN"]["reason"]
    assert any("imported as Shipped" in n for n in got["InvoiceUnconfirmed"]["notes"])
    assert any("pre-order" in n for n in got["PendingAvailability"]["notes"])

    for n, status in enumerate(V0_STATUSES, start=1):
        result = CliRunner().invoke(main, ["show", oid(n), "--json", "--db", db_url])
        want = V0_STATUSES[status][1]
        if want is None:  # skipped: nothing written
            assert result.exit_code == 1 and f"no order {oid(n)}" in result.stderr
            continue
        assert result.exit_code == 0, result.output
        view = json.loads(result.stdout)
        assert view["status"] == want, status
        if status == "InvoiceUnconfirmed":
            assert [(i["quantity_shipped"], i["quantity_to_ship"]) for i in view["items"]] == [
                (1, 0), (1, 0)]
        if status == "PendingAvailability":
            assert view["payments_date"] is None

    # a second run writes nothing and still exits 0
    code, again = _cli_json(["import", "sp-api", str(path), "--db", db_url])
    assert code == 0 and again["events"] == 0 and again["already_imported"] == 7


def _restricted_order(n: int, status: str = "Unshipped") -> dict:
    """An order as getOrders returns it without a restricted data token (RDT)."""
    order = api_order(n, status, "2026-02-10T08:00:00Z", "2026-02-10T09:00:00Z",
                      [api_item(f"6000000000{n:02d}1", "MUG-1", 1, 0, "199.00")])
    order["BuyerInfo"] = {}
    order["ShippingAddress"] = {"City": "Lund", "StateOrRegion": "Skåne", "PostalCode": "222 21",
                                "CountryCode": "SE"}
    return order


def test_orders_without_restricted_data_import_and_show_says_so(db_url, tmp_path):
    full = api_order(2, "Unshipped", "2026-02-10T08:00:00Z", "2026-02-10T09:00:00Z",
                     [api_item("60000000000021", "MUG-1", 1, 0, "199.00")])
    path = tmp_path / "getOrders.json"
    path.write_text(json.dumps(response(_restricted_order(1), full)))
    code, out = _cli_json(["import", "sp-api", str(path), "--db", db_url])
    assert code == 0
    r = {x["order_id"]: x for x in out["results"]}
    assert (r[oid(1)]["result"], r[oid(1)]["ledger_status"]) == ("imported", "Unshipped")
    assert any("no AddressLine1" in n and "restricted" in n for n in r[oid(1)]["notes"])
    assert any("no BuyerName or BuyerEmail" in n for n in r[oid(1)]["notes"])
    assert r[oid(2)]["notes"] == []

    view = json.loads(CliRunner().invoke(main, ["show", oid(1), "--json", "--db", db_url]).stdout)
    assert view["restricted"] == ["buyer", "ship_to"]
    assert view["buyer_name"] == "(restricted)"
    text = CliRunner().invoke(main, ["show", oid(1), "--db", db_url]).stdout
    assert "restricted: the ship-to address withheld by the marketplace" in text
    assert "restricted: the buyer's name and e-mail withheld" in text
    full_view = json.loads(
        CliRunner().invoke(main, ["show", oid(2), "--json", "--db", db_url]).stdout)
    assert full_view["restricted"] == []
    assert "restricted" not in CliRunner().invoke(main, ["show", oid(2), "--db", db_url]).stdout

    with Ledger(db_url) as led:
        placed = next(e for _, agg, e in led.read_events() if agg == "order:" + oid(1))
    assert placed.restricted == ["buyer", "ship_to"]
    assert (placed.ship_to.address_1, placed.ship_to.city, placed.ship_to.postal_code,
            placed.ship_to.state, placed.ship_to.country) == (
        "(restricted)", "Lund", "222 21", "Skåne", "SE")
    assert placed.buyer.email is None


def test_restricted_order_still_ships_and_pending_stays_skipped(sqlite_url):
    shipped = _restricted_order(1, "Shipped")
    shipped["OrderItems"][0]["QuantityShipped"] = 1
    with Ledger(sqlite_url) as led:
        report = import_orders(led, response(shipped, _restricted_order(2, "Pending")))
        got = {o.order_id: (o.result, o.ledger_status) for o in report.orders}
        assert got[oid(1)] == ("imported", "Shipped")
        # Pending: the API gives no address before the order leaves Pending (not a restriction)
        assert got[oid(2)] == ("skipped", None) and led.order(oid(2)) is None


def test_order_placed_without_restricted_field_still_decodes():
    from datetime import datetime, timezone

    from ledger import events as ev
    from ledger.codec import decode_payload, encode_payload

    t = datetime(2026, 2, 10, 8, tzinfo=timezone.utc)
    placed = ev.OrderPlaced(
        at=t, actor="buyer", command_id="c1", order_id=oid(1), items=[], currency="SEK",
        ship_service_level="Standard", latest_ship_date=t, latest_delivery_date=t,
        buyer=ev.Buyer(name="A", language="sv-SE"),
        ship_to=ev.Address(name="A", address_1="x", city="y", postal_code="1", country="SE"),
        hold_until=t)
    old = json.loads(encode_payload(placed))
    del old["restricted"]  # as written before the field existed
    assert decode_payload(ev.topic_of(ev.OrderPlaced), json.dumps(old).encode()).restricted == []
