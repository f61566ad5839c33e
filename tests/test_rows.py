"""The output rows (``projections.rows``) are the one definition of what the read side
hands out: ``orders --json``, ``show --json`` and the service's OpenAPI document follow
their fields, and a Manage Orders row takes its fields by name from the stored order
record -- so adding a column is a field on ``OrderDoc`` and a field on ``OrderRow``
(docs/architecture.md). No key list here is kept by hand: every one comes from a Struct."""

from __future__ import annotations

import json

import msgspec
import pytest
from builders import at, cmd, item, lines, oid, place, released
from click.testing import CliRunner
from litestar.testing import TestClient
from test_projections_support import seller_cancel, ship, timeline

from ledger.application import Ledger
from order_ledger.cli import main
from order_ledger.service.app import create_app
from order_ledger.service.runtime import ServiceConfig
from projections import project, rows
from projections.model import ORDER_COLUMNS, OrderDoc, doc_to_row, row_to_doc

A, B, C = oid(1), oid(2), oid(3)
PREFIX = "#/components/schemas/"


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    db = str(tmp_path_factory.mktemp("rows") / "shop.db")
    with Ledger(db) as led:
        outs = list(led.apply_lines(lines(*timeline(
            cmd("set-inventory", at(0), sku="SKU-1", quantity=5),
            released(A, items=[item("I1", quantity=2)]),
            released(B, when_minutes=1),
            place(C, at(2)),
            ship(A, at(40), [("I1", 1)]),
            seller_cancel(B, at(41)),
            cmd("request-cancel", at(42), order_id=A),
        ))))
        assert all(o.ok for o in outs)
    return db


def names(cls: type) -> list[str]:
    return [f.encode_name for f in msgspec.structs.fields(cls)]


def cli_json(*args: str) -> object:
    result = CliRunner().invoke(main, [*args, "--json"])
    assert result.exit_code == 0, (result.output, result.exception)
    return json.loads(result.output)


# --- a Manage Orders row takes its fields from the stored record by name ---------------


def test_every_row_field_not_computed_is_a_field_of_the_stored_record():
    doc_fields = {f.name: f.type for f in msgspec.structs.fields(OrderDoc)}
    row_fields = {f.name: f.type for f in msgspec.structs.fields(rows.OrderRow)}
    assert rows.FROM_DOC and set(rows.FROM_DOC) <= set(doc_fields)
    for name in rows.FROM_DOC:
        assert row_fields[name] == doc_fields[name], name  # copied as they are
    # the stored columns are the record's fields, in order
    assert ORDER_COLUMNS == OrderDoc.__struct_fields__


def test_a_stored_record_round_trips_through_its_row(shop):
    with Ledger(shop) as led:
        docs = list(project(led.iter_events(), ["orders"]).projections["orders"].recs.values())
    assert docs
    for d in docs:
        back = row_to_doc(doc_to_row(d))
        assert back == d
        # bool fields come back as bool (SQLite stores 0 / 1), whichever they are
        for f in msgspec.structs.fields(OrderDoc):
            if f.type is bool:
                assert type(getattr(back, f.name)) is bool, f.name


def test_order_row_copies_every_shared_field_by_name(shop):
    with Ledger(shop) as led:
        snap = project(led.iter_events(), ["orders"])
    for d in snap.projections["orders"].recs.values():
        row = rows.order_row(d)
        for name in rows.FROM_DOC:
            assert getattr(row, name) == getattr(d, name), name


# --- the command line prints every field, in the Struct's order ---------------------------


def test_orders_json_has_every_field_of_the_row(shop):
    out = cli_json("orders", "--db", shop)
    assert isinstance(out, list) and len(out) == 3
    for row in out:
        assert list(row) == names(rows.OrderRow)
        assert [list(i) for i in row["items"]] == [names(rows.ItemRow)] * len(row["items"])
        msgspec.convert(row, rows.OrderRow)  # and the values have the fields' types


def test_show_json_has_every_field_of_the_order_view(shop):
    out = cli_json("show", A, "--db", shop)
    assert set(out) == set(names(rows.OrderView))
    view = msgspec.convert(out, rows.OrderView)
    assert view.updated_at is not None and view.recorded_at is not None


def test_inventory_notifications_and_metrics_json_follow_their_rows(shop):
    for row in cli_json("inventory", "--db", shop):
        assert list(row) == names(rows.InventoryRow)
    notes = cli_json("notifications", "--db", shop)
    assert notes
    for row in notes:
        assert list(row) == names(rows.Notification)
    m = cli_json("metrics", "--db", shop)
    assert list(m) == names(rows.Metrics)
    assert list(m["late_shipment_rate"]) == names(rows.LateShipment) == ["10d", "30d"]
    assert list(m["cancellation_rate"]) == names(rows.CancellationMetric)
    msgspec.convert(m, rows.Metrics)


# --- the service's OpenAPI document describes every field of the same Structs -------------


@pytest.fixture(scope="module")
def openapi(tmp_path_factory):
    db = str(tmp_path_factory.mktemp("rows-openapi") / "ledger.db")
    with TestClient(create_app(ServiceConfig(db=db, tick_interval=0))) as c:
        r = c.get("/schema/openapi.json")
        assert r.status_code == 200
        return r.json()


def _component(doc: dict, ref: str) -> dict:
    assert ref.startswith(PREFIX), ref
    return doc["components"]["schemas"][ref[len(PREFIX):]]


def _response(doc: dict, path: str) -> dict:
    schema = doc["paths"][path]["get"]["responses"]["200"]["content"]["application/json"][
        "schema"]
    return _component(doc, schema["$ref"])


def _items_of(doc: dict, page: dict) -> dict:
    return _component(doc, page["properties"]["items"]["items"]["$ref"])


@pytest.mark.parametrize("path, cls", [
    ("/api/orders", rows.OrderRow),
    ("/api/inventory", rows.InventoryRow),
    ("/api/notifications", rows.Notification),
    ("/api/orders/{order_id}/history", rows.HistoryStep),
])
def test_openapi_lists_every_field_of_the_listed_rows(openapi, path, cls):
    body = _items_of(openapi, _response(openapi, path))
    assert set(body["properties"]) == set(names(cls)), path


@pytest.mark.parametrize("path, cls", [
    ("/api/orders/{order_id}", rows.OrderView),
    ("/api/orders/{order_id}/explain", rows.Explanation),
    ("/api/metrics", rows.Metrics),
])
def test_openapi_lists_every_field_of_the_single_rows(openapi, path, cls):
    body = _response(openapi, path)
    assert set(body["properties"]) == set(names(cls)), path


def test_the_items_of_a_row_are_described_too(openapi):
    row = _items_of(openapi, _response(openapi, "/api/orders"))
    item_schema = _component(openapi, row["properties"]["items"]["items"]["$ref"])
    assert set(item_schema["properties"]) == set(names(rows.ItemRow))
