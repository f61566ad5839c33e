"""Every Orders API response shape (v0 and 2026-01-01), merged by order id; the real
example and sandbox responses of the published models (tests/fixtures/sp-api); repeated
polls; withheld data released by a later poll."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from ledger.application import Ledger
from ledger.spapi import (FULFILLMENT_STATUS, SpApiError, detect_shape, import_documents,
                          order_from_2026)
from order_ledger.cli import main
from tests.test_spapi import _restricted_order, api_item, api_order, oid, response

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "sp-api"


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


#: every fixture imported on its own: its shape, then (order id, result, ledger status)
ALONE: dict[str, tuple[str, list[tuple[str, str, str | None]]]] = {
    "v0-getOrders-example.json": ("v0 getOrders", [
        ("902-3159896-1390916", "incomplete", None)]),
    "v0-getOrders-sandbox-1.json": ("v0 getOrders", [
        ("902-1845936-5435065", "incomplete", None), ("902-8745147-1934268", "incomplete", None)]),
    "v0-getOrders-sandbox-2.json": ("v0 getOrders", [
        ("902-3159896-1390916", "incomplete", None)]),
    "v0-getOrders-sandbox-3.json": ("v0 getOrders", [
        ("902-3159896-1390916", "incomplete", None)]),
    "v0-getOrder-example.json": ("v0 getOrder", [("902-3159896-1390916", "incomplete", None)]),
    "v0-getOrder-sandbox-1.json": ("v0 getOrder", [("902-1845936-5435065", "incomplete", None)]),
    "v0-getOrder-sandbox-2.json": ("v0 getOrder", [("921-3175655-0452641", "skipped", None)]),
    "v0-getOrderItems-example.json": ("v0 getOrderItems", [
        ("903-1671087-0812628", "incomplete", None)]),
    "v0-getOrderItems-sandbox-1.json": ("v0 getOrderItems", [
        ("902-1845936-5435065", "incomplete", None)]),
    "v0-getOrderAddress-example.json": ("v0 getOrderAddress", [
        ("902-3159896-1390916", "incomplete", None)]),
    "v0-getOrderAddress-sandbox-1.json": ("v0 getOrderAddress", [
        ("902-1845936-5435065", "incomplete", None)]),
    "v0-getOrderBuyerInfo-example.json": ("v0 getOrderBuyerInfo", [
        ("902-3159896-1390916", "incomplete", None)]),
    "v0-getOrderBuyerInfo-sandbox-1.json": ("v0 getOrderBuyerInfo", [
        ("902-1845936-5435065", "incomplete", None)]),
    "v0-getOrderItemsBuyerInfo-sandbox-1.json": ("v0 getOrderItemsBuyerInfo", [
        ("902-1845936-5435065", "incomplete", None)]),
    "2026-01-01-searchOrders-example.json": ("2026-01-01 searchOrders", [
        ("123-4567890-1234567", "imported", "Shipped")]),
    "2026-01-01-searchOrders-sandbox-1.json": ("2026-01-01 searchOrders", [
        ("250-1234567-8901234", "skipped", None)]),
    "2026-01-01-searchOrders-sandbox-2.json": ("2026-01-01 searchOrders", [
        ("202-7654321-1098765", "imported", "Shipped")]),
    "2026-01-01-searchOrders-sandbox-3.json": ("2026-01-01 searchOrders", [
        ("171-2345678-9012345", "imported", "Unshipped")]),
    "2026-01-01-getOrder-example.json": ("2026-01-01 getOrder", [
        ("202-1234567-8901234", "imported", "Shipped")]),
    "2026-01-01-getOrder-sandbox-1.json": ("2026-01-01 getOrder", [
        ("171-9876543-2109876", "imported", "Unshipped")]),
    "2026-01-01-getOrder-sandbox-2.json": ("2026-01-01 getOrder", [
        ("028-1234567-8901234", "imported", "Shipped")]),
    "2026-01-01-getOrder-sandbox-3.json": ("2026-01-01 getOrder", [
        ("114-9876543-1234567", "imported", "Unshipped")]),
}

#: fixtures that are not imported, with the documented reason (tests/fixtures/sp-api/README.md)
NOT_IMPORTED = {
    "v0-getOrderItemsBuyerInfo-example.json":
        "the model's example is one item's fields (payload.OrderItemId holds an order id), "
        "not a getOrderItemsBuyerInfo response: no payload.AmazonOrderId or OrderItems",
}


def test_every_fixture_is_listed():
    names = {p.name for p in FIXTURES.glob("*.json")}
    assert names == set(ALONE) | set(NOT_IMPORTED)
    readme = (FIXTURES / "README.md").read_text(encoding="utf-8")
    for name in names:
        assert name in readme, name
    assert "Apache-2.0" in readme and "amzn/selling-partner-api-models" in readme


@pytest.mark.parametrize("name", sorted(ALONE))
def test_each_fixture_imports_on_its_own(name, sqlite_url):
    shape, expected = ALONE[name]
    doc = fixture(name)
    assert detect_shape(doc) == shape
    with Ledger(sqlite_url) as led:
        report = import_documents(led, [doc], sources=[name])
    assert [(o.order_id, o.result, o.ledger_status) for o in report.orders] == expected
    assert report.ok
    for o in report.orders:
        if o.result == "incomplete":
            assert o.reason.startswith(("items missing", "order missing"))


@pytest.mark.parametrize("name", sorted(NOT_IMPORTED))
def test_fixtures_not_imported_say_why(name, tmp_path, sqlite_url):
    with pytest.raises(SpApiError, match="not an Orders API response"):
        detect_shape(fixture(name))
    result = CliRunner().invoke(main, ["import", "sp-api", str(FIXTURES / name),
                                       "--db", sqlite_url])
    assert result.exit_code == 2 and "not an Orders API response" in result.output


def _cli_json(args: list[str]) -> tuple[int, dict]:
    result = CliRunner().invoke(main, args + ["--json"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, json.loads(result.stdout)


def test_v0_sandbox_shapes_merge_by_order_id(db_url):
    """getOrders + getOrderItems + getOrderAddress + getOrderBuyerInfo +
    getOrderItemsBuyerInfo of the v0 sandbox: one order, the other reported incomplete."""
    names = ["v0-getOrderItemsBuyerInfo-sandbox-1.json", "v0-getOrderBuyerInfo-sandbox-1.json",
             "v0-getOrders-sandbox-1.json", "v0-getOrderAddress-sandbox-1.json",
             "v0-getOrderItems-sandbox-1.json"]
    code, out = _cli_json(["import", "sp-api", *[str(FIXTURES / n) for n in names],
                           "--db", db_url])
    assert code == 0
    got = {r["order_id"]: (r["result"], r["ledger_status"]) for r in out["results"]}
    assert got == {"902-1845936-5435065": ("imported", "Unshipped"),
                   "902-8745147-1934268": ("incomplete", None)}
    assert (out["imported"], out["incomplete"]) == (1, 1)
    view = json.loads(CliRunner().invoke(
        main, ["show", "902-1845936-5435065", "--json", "--db", db_url]).stdout)
    assert view["buyer_name"] == "MFNIntegrationTestMerchant"
    assert view["restricted"] == []
    assert view["ship_service_level"] == "Std US D2D Dom"
    assert view["buyer_requested_cancel"] is True  # BuyerRequestedCancel on the item
    assert view["market"] == {
        "ship_service_category": "Standard", "sales_channel": "Amazon.com", "is_prime": False,
        "is_business_order": False, "earliest_ship_date": "1970-01-19T03:59:27+00:00",
        "earliest_delivery_date": "1970-01-19T04:06:39+00:00", "address_type": "Commercial"}
    # the same files again, in another order: nothing new
    code, out = _cli_json(["import", "sp-api", *[str(FIXTURES / n) for n in reversed(names)],
                           "--db", db_url])
    assert (code, out["events"], out["already_imported"]) == (0, 0, 1)


def test_v0_getorder_with_its_address_and_buyer_info(sqlite_url):
    """getOrder (Pending, no items) + getOrderAddress + getOrderBuyerInfo of the model's
    examples, with items: the address and buyer info are merged in."""
    items = {"payload": {"AmazonOrderId": "902-3159896-1390916", "OrderItems": [
        api_item("11111111111111", "CARD-1", 1, 0, "10.00", currency="USD")]}}
    docs = [fixture("v0-getOrder-example.json"), fixture("v0-getOrderAddress-example.json"),
            fixture("v0-getOrderBuyerInfo-example.json"), items]
    with Ledger(sqlite_url) as led:
        report = import_documents(led, docs)
        assert [(o.order_id, o.result, o.ledger_status) for o in report.orders] == [
            ("902-3159896-1390916", "imported", "Pending")]
        placed = next(e for _, agg, e in led.read_events() if agg == "order:902-3159896-1390916")
    assert placed.ship_to.address_1 == "1 cross st"  # getOrderAddress wins over getOrder
    assert placed.buyer.name == "John Smith" and placed.buyer.email == "user@example.com"
    assert placed.market.purchase_order_number == "1234567890123"
    assert placed.market.is_prime is False and placed.market.is_business_order is False


def test_2026_orders_are_read_as_the_v0_shape():
    order = order_from_2026(fixture("2026-01-01-getOrder-example.json")["order"])
    assert (order["AmazonOrderId"], order["OrderStatus"], order["FulfillmentChannel"]) == (
        "202-1234567-8901234", "Shipped", "MFN")
    assert order["ShipmentServiceLevelCategory"] == "Standard"
    assert (order["IsPrime"], order["IsBusinessOrder"]) == (True, False)
    assert order["ShippingAddress"]["AddressType"] == "COMMERCIAL"
    assert order["ShipmentTracking"] == {"CarrierCode": "Other", "CarrierName": "Royal Mail",
                                         "TrackingNumber": "RR123456789GB",
                                         "ShipMethod": "Royal Mail Tracked 48"}
    [item] = order["OrderItems"]
    assert (item["ItemPrice"]["Amount"], item["ShippingPrice"]["Amount"],
            item["ItemTax"]["Amount"], item["ShippingTax"]["Amount"]) == (
        "89.97", "10.00", "3.00", "1.00")
    assert (item["QuantityOrdered"], item["QuantityShipped"]) == (3, 3)
    assert item["PriceDesignation"] == "BUSINESS_PRICE"
    business = order_from_2026(fixture("2026-01-01-searchOrders-example.json")["orders"][0])
    assert business["IsBusinessOrder"] is True
    assert business["BuyerInfo"]["PurchaseOrderNumber"] == "PO-2024-12345"


def test_2026_shipment_keeps_the_package_tracking(sqlite_url):
    with Ledger(sqlite_url) as led:
        import_documents(led, [fixture("2026-01-01-getOrder-example.json")])
        ships = [e for _, _, e in led.read_events() if type(e).__name__ == "ShipmentConfirmed"]
    assert [(s.carrier_name, s.tracking_number, s.ship_method) for s in ships] == [
        ("Royal Mail", "RR123456789GB", "Royal Mail Tracked 48")]


#: every 2026-01-01 fulfillmentStatus -> (result, status in the ledger)
STATUSES_2026 = {
    "PENDING_AVAILABILITY": ("imported", "Pending"),
    "PENDING": ("imported", "Pending"),
    "UNSHIPPED": ("imported", "Unshipped"),
    "PARTIALLY_SHIPPED": ("imported", "PartiallyShipped"),
    "SHIPPED": ("imported", "Shipped"),
    "CANCELLED": ("imported", "Canceled"),
    "UNFULFILLABLE": ("skipped", None),
}


def _order_2026(n: int, status: str, qty: int = 2, fulfilled: int = 0) -> dict:
    o = copy.deepcopy(fixture("2026-01-01-getOrder-sandbox-1.json")["order"])
    o["orderId"] = f"171-{n:07d}-2109876"
    o["fulfillment"]["fulfillmentStatus"] = status
    item = o["orderItems"][0]
    item["orderItemId"] = f"1719876543{n:04d}"
    item["quantityOrdered"] = qty
    item["fulfillment"]["quantityFulfilled"] = fulfilled
    item["fulfillment"]["quantityUnfulfilled"] = qty - fulfilled
    return o


def test_every_2026_fulfillment_status_is_mapped(sqlite_url):
    assert set(STATUSES_2026) == set(FULFILLMENT_STATUS)
    fulfilled = {"PARTIALLY_SHIPPED": 1, "SHIPPED": 2}
    orders = [_order_2026(n, s, fulfilled=fulfilled.get(s, 0))
              for n, s in enumerate(STATUSES_2026, start=1)]
    unknown = _order_2026(99, "DELIVERED")
    amazon = _order_2026(98, "UNSHIPPED")
    amazon["fulfillment"]["fulfilledBy"] = "AMAZON"
    with Ledger(sqlite_url) as led:
        report = import_documents(led, [{"orders": orders + [unknown, amazon]}])
    got = {o.order_id: (o.result, o.ledger_status) for o in report.orders}
    for n, status in enumerate(STATUSES_2026, start=1):
        assert got[f"171-{n:07d}-2109876"] == STATUSES_2026[status], status
    assert got["171-0000099-2109876"] == ("unknown-status", None)
    assert got["171-0000098-2109876"] == ("skipped", None)
    by_id = {o.order_id: o for o in report.orders}
    assert "fulfillmentStatus 'DELIVERED' is not mapped" in by_id["171-0000099-2109876"].reason
    assert by_id["171-0000007-2109876"].reason.startswith("Unfulfillable")
    assert by_id["171-0000001-2109876"].api_status == "PENDING_AVAILABILITY (2026-01-01)"
    assert not report.ok  # the unknown status


def test_repeated_polls_move_an_order_forward_and_write_only_what_changed(db_url):
    """2026-01-01 polls: PENDING, UNSHIPPED, SHIPPED, then the same again."""
    polls = []
    for status, fulfilled, updated in (("PENDING", 0, "2024-12-24T20:35:00Z"),
                                       ("UNSHIPPED", 0, "2024-12-25T08:15:00Z"),
                                       ("SHIPPED", 2, "2024-12-26T10:00:00Z")):
        o = _order_2026(1, status, fulfilled=fulfilled)
        o["lastUpdatedTime"] = updated
        polls.append({"order": o})
    events, statuses = [], []
    with Ledger(db_url) as led:
        for poll in polls + polls[-1:]:
            report = import_documents(led, [poll])
            events.append(report.events)
            statuses.append((report.orders[0].result, report.orders[0].ledger_status))
            assert report.ok
    assert statuses == [("imported", "Pending"), ("imported", "Unshipped"),
                        ("imported", "Shipped"), ("already-imported", "Shipped")]
    assert events[-1] == 0 and all(n > 0 for n in events[:-1])
    # two polls in one import: the newest LastUpdateDate wins
    with Ledger(db_url) as led:
        report = import_documents(led, [polls[2], polls[0]])
        assert report.events == 0 and report.orders[0].result == "already-imported"


def test_a_later_poll_without_items_still_moves_the_order(sqlite_url):
    """getOrders pages carry no items: an order already in the ledger uses its own."""
    first = api_order(1, "Unshipped", "2026-02-10T08:00:00Z", "2026-02-10T09:00:00Z",
                      [api_item("70000000000011", "MUG-1", 2, 0, "10.00")])
    later = api_order(1, "Shipped", "2026-02-10T08:00:00Z", "2026-02-11T09:00:00Z")
    with Ledger(sqlite_url) as led:
        import_documents(led, [response(first)])
        report = import_documents(led, [response(later)])
        o = report.orders[0]
        assert (o.result, o.ledger_status) == ("imported", "Shipped")
        assert any("items already in the ledger" in n for n in o.notes)
        assert [s.name for s in o.steps if s.status == "applied"] == ["ship"]


def test_withheld_data_is_released_by_a_later_poll(db_url):
    """Imported without a restricted data token, then the full order: the placeholders are
    replaced once (release-restricted), and a third poll writes nothing."""
    restricted = _restricted_order(1)
    full = api_order(1, "Unshipped", "2026-02-10T08:00:00Z", "2026-02-10T10:00:00Z",
                     [api_item("60000000000011", "MUG-1", 1, 0, "199.00")])
    with Ledger(db_url) as led:
        import_documents(led, [response(restricted)])
        assert led.order(oid(1)).restricted == ["buyer", "ship_to"]
        report = import_documents(led, [response(full)])
        o = report.orders[0]
        assert o.result == "imported"
        assert [s.name for s in o.steps if s.status == "applied"] == ["release-ship_to-buyer"]
        assert any("withheld ship_to and buyer" in n for n in o.notes)
        again = import_documents(led, [response(full)])
        assert again.events == 0 and again.orders[0].result == "already-imported"
        released = [e for _, agg, e in led.read_events()
                    if type(e).__name__ == "RestrictedDataReleased"]
    assert len(released) == 1
    assert released[0].ship_to.address_1 == "Storgatan 1"
    assert released[0].buyer.name == "Anna Andersson" and released[0].restricted == []
    view = json.loads(CliRunner().invoke(main, ["show", oid(1), "--json", "--db", db_url]).stdout)
    assert view["restricted"] == [] and view["buyer_name"] == "Anna Andersson"
    text = CliRunner().invoke(main, ["show", oid(1), "--db", db_url]).stdout
    assert "restricted" not in text


def test_address_and_buyer_responses_alone_release_withheld_data(sqlite_url):
    with Ledger(sqlite_url) as led:
        import_documents(led, [response(_restricted_order(1))])
        address = {"payload": {"AmazonOrderId": oid(1), "ShippingAddress": {
            "Name": "Bo Berg", "AddressLine1": "Kungsgatan 2", "City": "Lund",
            "PostalCode": "222 21", "CountryCode": "SE"}}}
        report = import_documents(led, [address])
        assert [s.name for s in report.orders[0].steps] == ["release-ship_to"]
        assert report.orders[0].result == "imported"
        assert led.order(oid(1)).restricted == ["buyer"]
        assert led.order(oid(1)).ship_to.address_1 == "Kungsgatan 2"
        buyer = {"payload": {"AmazonOrderId": oid(1), "BuyerName": "Bo Berg",
                             "BuyerEmail": "bo@marketplace.amazon.se"}}
        report = import_documents(led, [buyer, address])
        assert [s.name for s in report.orders[0].steps] == ["release-buyer"]
        assert led.order(oid(1)).restricted == []
        assert led.order(oid(1)).buyer.name == "Bo Berg"
        # nothing withheld any more: the same responses write nothing
        report = import_documents(led, [buyer, address])
        assert report.events == 0 and report.orders[0].result == "already-imported"


def test_release_restricted_is_checked(sqlite_url):
    with Ledger(sqlite_url) as led:
        import_documents(led, [response(_restricted_order(1))])
        base = {"type": "release-restricted", "at": "2026-02-10T12:00:00Z", "order_id": oid(1)}
        lines = [json.dumps({**base, "command_id": "r1"}),
                 json.dumps({**base, "command_id": "r2",
                             "ship_to": {"name": "A", "address_1": "", "city": "Lund",
                                         "postal_code": "1", "country": "SE"}})]
        outs = led.apply_lines(lines)
        assert [(o.status, o.error["code"]) for o in outs] == [
            ("rejected", "nothing-given"), ("rejected", "missing-field")]


def test_usage_errors_name_the_file(tmp_path, sqlite_url):
    good = tmp_path / "good.json"
    good.write_text(json.dumps(response()))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"payload": {"Something": 1}}))
    result = CliRunner().invoke(main, ["import", "sp-api", str(good), str(bad),
                                       "--db", sqlite_url])
    assert result.exit_code == 2 and "bad.json" in result.output
    mixed = tmp_path / "mixed.json"
    mixed.write_text(json.dumps([response(), {"orders": []}]))
    result = CliRunner().invoke(main, ["import", "sp-api", str(mixed), "--db", sqlite_url])
    assert result.exit_code == 2 and "pages of one kind" in result.output


# --- the marketplace's fields on place / OrderPlaced ----------------------------------------


def test_marketplace_fields_are_kept_and_shown(db_url):
    order = api_order(1, "Unshipped", "2026-02-10T08:00:00Z", "2026-02-10T09:00:00Z",
                      [api_item("80000000000011", "MUG-1", 1, 0, "199.00")],
                      ShipmentServiceLevelCategory="Expedited", IsPrime="true",
                      IsBusinessOrder=True, EarliestDeliveryDate="2026-02-13T08:00:00Z")
    order["OrderItems"][0].update({"PriceDesignation": "BusinessPrice",
                                   "PromotionDiscount": {"CurrencyCode": "SEK",
                                                         "Amount": "20.00"}})
    order["BuyerInfo"]["PurchaseOrderNumber"] = "PO-1"
    with Ledger(db_url) as led:
        import_documents(led, [response(order)])
        placed = next(e for _, agg, e in led.read_events() if agg == "order:" + oid(1))
    m = placed.market
    assert (m.ship_service_category, m.sales_channel, m.is_prime, m.is_business_order,
            m.purchase_order_number, m.address_type) == (
        "Expedited", "Amazon.se", True, True, "PO-1", "Residential")
    assert m.earliest_ship_date.isoformat() == "2026-02-10T23:00:00+00:00"
    assert m.earliest_delivery_date.isoformat() == "2026-02-13T08:00:00+00:00"
    assert placed.ship_service_level == "Std SE Dom_1"
    [line] = placed.items
    assert (str(line.promotion_discount), line.price_designation) == ("20.00", "BusinessPrice")
    view = json.loads(CliRunner().invoke(main, ["show", oid(1), "--json", "--db", db_url]).stdout)
    assert view["market"]["ship_service_category"] == "Expedited"
    assert view["market"]["items"] == {"80000000000011": {
        "promotion_discount": "20.00", "price_designation": "BusinessPrice"}}
    text = CliRunner().invoke(main, ["show", oid(1), "--db", db_url]).stdout
    for shown in ("ship service category: Expedited", "sales channel: Amazon.se",
                  "is prime: yes", "is business order: yes", "purchase order number: PO-1",
                  "address type: Residential"):
        assert shown in text, shown


def test_place_market_times_need_an_offset(sqlite_url):
    base = {"type": "place", "at": "2026-02-10T08:00:00Z", "order_id": oid(1),
            "currency": "SEK", "ship_service_level": "Standard",
            "items": [{"order_item_id": "1", "sku": "S", "title": "T", "quantity": 1,
                       "item_price": "1.00"}],
            "buyer": {"name": "A", "language": "sv-SE"},
            "ship_to": {"name": "A", "address_1": "x", "city": "y", "postal_code": "1",
                        "country": "SE"}}
    with Ledger(sqlite_url) as led:
        outs = list(led.apply_lines([
            json.dumps({**base, "command_id": "p1",
                        "market": {"earliest_ship_date": "2026-02-11T08:00:00"}}),
            json.dumps({**base, "command_id": "p2", "market": {"is_prime": "maybe"}}),
            json.dumps({**base, "command_id": "p3", "market": {"unknown": 1}}),
            json.dumps({**base, "command_id": "p4", "market": {"is_prime": False}})]))
    assert [o.status for o in outs] == ["rejected", "rejected", "rejected", "applied"]
    assert outs[0].error["field"] == "market.earliest_ship_date"


def test_order_placed_without_market_fields_still_decodes():
    from datetime import datetime, timezone

    from ledger import events as ev
    from ledger.codec import decode_payload, encode_payload

    t = datetime(2026, 2, 10, 8, tzinfo=timezone.utc)
    placed = ev.OrderPlaced(
        at=t, actor="buyer", command_id="c1", order_id=oid(1), currency="SEK",
        items=[ev.OrderItem(order_item_id="1", sku="S", title="T", quantity=1,
                            item_price=1)],  # type: ignore[arg-type]
        ship_service_level="Standard", latest_ship_date=t, latest_delivery_date=t,
        buyer=ev.Buyer(name="A", language="sv-SE"),
        ship_to=ev.Address(name="A", address_1="x", city="y", postal_code="1", country="SE"),
        hold_until=t)
    old = json.loads(encode_payload(placed))
    del old["market"]  # as written before the fields existed
    for k in ("promotion_discount", "ship_promotion_discount", "price_designation"):
        old["items"][0].pop(k, None)
    back = decode_payload(ev.topic_of(ev.OrderPlaced), json.dumps(old).encode())
    assert back.market is None and back.items[0].price_designation is None
    assert back.items[0].promotion_discount == 0


def test_item_buyer_info_and_older_versions_are_merged(sqlite_url):
    """getOrderItemsBuyerInfo's gift wrap joins its item; an older version of the order
    keeps what the newer one lacks (the address lines of a poll with a token)."""
    with_token = api_order(1, "Unshipped", "2026-02-10T08:00:00Z", "2026-02-10T09:00:00Z")
    without = _restricted_order(1)
    without["LastUpdateDate"] = "2026-02-10T10:00:00Z"
    del without["OrderItems"]
    items = {"payload": {"AmazonOrderId": oid(1), "OrderItems": [
        api_item("90000000000011", "MUG-1", 1, 0, "199.00")]}}
    gift = {"payload": {"AmazonOrderId": oid(1), "OrderItems": [
        {"OrderItemId": "90000000000011", "GiftMessageText": "Grattis!",
         "GiftWrapPrice": {"CurrencyCode": "SEK", "Amount": "25.00"},
         "GiftWrapLevel": "Classic"}]}}
    with Ledger(sqlite_url) as led:
        report = import_documents(led, [response(without), gift, items, response(with_token)])
        assert [(o.order_id, o.result) for o in report.orders] == [(oid(1), "imported")]
        placed = next(e for _, agg, e in led.read_events() if agg == "order:" + oid(1))
    assert str(placed.items[0].gift_wrap_price) == "25.00"
    assert placed.restricted == [] and placed.ship_to.address_1 == "Storgatan 1"


def _tsv(data: bytes, encoding: str = "cp1252") -> list[dict[str, str]]:
    header, *rows = data.decode(encoding).rstrip("\n").split("\n")
    names = header.split("\t")
    return [dict(zip(names, r.split("\t"))) for r in rows]


def test_a_seller_polls_twice_and_sees_the_order_move_on_in_show_and_the_reports(
        db_url, tmp_path):
    """From the seller's side, through the CLI only: a first poll without a restricted
    data token (one order Unshipped with its address withheld, one Pending business
    order), show and the reports; a later poll with the token (the first shipped, the
    second released), show and the reports again; the later poll once more changes
    nothing."""
    from tests.test_spapi import _restricted_order

    runner = CliRunner()
    views = ["--views", str(tmp_path / "views.db")]

    def cli(*args: str) -> tuple[int, str, bytes]:
        r = runner.invoke(main, [*args, "--db", db_url])
        assert r.exception is None or isinstance(r.exception, SystemExit), r.output
        return r.exit_code, r.stdout, r.stdout_bytes

    def poll(name: str, *orders: dict) -> dict:
        path = tmp_path / name
        path.write_text(json.dumps(response(*orders)), encoding="utf-8")
        code, out, _ = cli("import", "sp-api", str(path), "--json")
        assert code == 0, out
        return json.loads(out)

    first = _restricted_order(1)
    first.update(ShipmentServiceLevelCategory="Expedited", IsPrime=True)
    business = api_order(2, "Pending", "2026-02-10T08:30:00Z", "2026-02-10T08:30:00Z",
                         [api_item("60000000000021", "CUP-1", 1, 0, "99.00")],
                         IsBusinessOrder=True)
    business["BuyerInfo"]["PurchaseOrderNumber"] = "PO-9"
    got = poll("poll-1.json", first, business)
    assert [(r["result"], r["ledger_status"]) for r in got["results"]] == [
        ("imported", "Unshipped"), ("imported", "Pending")]

    code, text, _ = cli("show", oid(1))
    assert code == 0
    for shown in ("Order 203-0000001-1234567: Unshipped", "ship service level: Std SE Dom_1",
                  "ship service category: Expedited", "sales channel: Amazon.se",
                  "is prime: yes", "restricted: the ship-to address withheld",
                  "restricted: the buyer's name and e-mail withheld",
                  "buyer name: (restricted)"):
        assert shown in text, shown
    code, text, _ = cli("show", oid(2))
    assert "is business order: yes" in text and "purchase order number: PO-9" in text

    _, _, data = cli("report", "unshipped", "--at", "2026-02-10T12:00:00Z", *views)
    [row] = _tsv(data)                                  # the Pending order is not in it
    assert (row["order-id"], row["buyer-name"], row["recipient-name"], row["ship-address-1"],
            row["ship-city"], row["ship-service-level"], row["ship-service-name"],
            row["sales-channel"], row["is-prime"]) == (
        oid(1), "(restricted)", "(restricted)", "(restricted)", "Lund", "Expedited",
        "Std SE Dom_1", "Amazon.se", "true")
    _, _, data = cli("report", "all-orders", *views)
    rows = {r["amazon-order-id"]: r for r in _tsv(data)}
    assert (rows[oid(1)]["order-status"], rows[oid(1)]["ship-city"]) == ("Unshipped", "Lund")
    assert (rows[oid(2)]["order-status"], rows[oid(2)]["is-business-order"],
            rows[oid(2)]["purchase-order-number"]) == ("Pending", "true", "PO-9")
    _, _, data = cli("report", "orders", *views)
    assert [r["order-id"] for r in _tsv(data)] == [oid(1)]

    # the later poll, with a restricted data token: order 1 shipped, order 2 released
    shipped = api_order(1, "Shipped", "2026-02-10T08:00:00Z", "2026-02-11T10:00:00Z",
                        [api_item("6000000000011", "MUG-1", 1, 1, "199.00")],
                        ShipmentServiceLevelCategory="Expedited", IsPrime=True)
    shipped["ShippingAddress"]["City"] = "Lund"
    released = copy.deepcopy(business)
    released.update(OrderStatus="Unshipped", LastUpdateDate="2026-02-10T12:00:00Z")
    got = poll("poll-2.json", shipped, released)
    r1, r2 = got["results"]
    assert (r1["result"], r1["ledger_status"], r2["result"], r2["ledger_status"]) == (
        "imported", "Shipped", "imported", "Unshipped")
    assert sorted(s["type"] for s in r1["steps"] if s["status"] == "applied") == [
        "release-restricted", "ship"]
    code, text, _ = cli("show", oid(1))
    assert "Order 203-0000001-1234567: Shipped" in text and "restricted" not in text
    assert "buyer name: Anna Andersson" in text and "is prime: yes" in text
    _, _, data = cli("report", "orders", *views)
    rows = {r["order-id"]: r for r in _tsv(data)}
    assert (rows[oid(1)]["buyer-name"], rows[oid(1)]["ship-address-1"],
            rows[oid(1)]["ship-service-level"]) == ("Anna Andersson", "Storgatan 1", "Expedited")
    assert (rows[oid(2)]["is-business-order"], rows[oid(2)]["purchase-order-number"]) == (
        "true", "PO-9")
    _, _, data = cli("report", "all-orders", *views)
    rows = {r["amazon-order-id"]: r for r in _tsv(data)}
    assert (rows[oid(1)]["order-status"], rows[oid(1)]["item-status"]) == ("Shipped", "Shipped")

    again = poll("poll-2-again.json", shipped, released)
    assert again["events"] == 0
    assert [r["result"] for r in again["results"]] == ["already-imported"] * 2
