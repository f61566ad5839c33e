"""Manage Orders, Manage Inventory and Notifications against docs/rules.md, and
the stored views' machinery (checkpoints, rebuild swap, location, guards)."""

from __future__ import annotations

import sqlite3
from datetime import timedelta

import pytest
from builders import oid, released
from test_projections_support import (
    T0,
    at,
    build,
    apply,
    cmd,
    item,
    place,
    seller_cancel,
    ship,
    timeline,
    everything,
    views_and_memory,
    when,
)

from ledger.application import Ledger
from projections import NAMES, Views, ViewsError, ViewsLocationError, project, views_path
from projections.model import PROJECTIONS, _Fused
from projections.rows import InventoryRow, OrderRow, OrderView, order_view, plain

A, B, C, D, E = (oid(n) for n in range(1, 6))
REPORT = T0 + timedelta(days=3)


def by_id(rows):
    """Rows (Structs, or their JSON form) by order id."""
    return {(r["order_id"] if isinstance(r, dict) else r.order_id): r for r in rows}


# --- Manage Orders ----------------------------------------------------------------------


async def test_manage_orders_statuses_actionable_and_dates(tmp_path):
    two = [item("I1", "SKU-1", 2), item("I2", "SKU-2", 1)]
    led = build(tmp_path, timeline(
        place(A, at(0)),                                          # stays Pending (in hold)
        released(B, when_minutes=1, items=two),                   # Unshipped -> partial ship
        ship(B, at(40), [("I1", 1)]),
        released(C, when_minutes=2),                              # Shipped
        ship(C, at(41)),
        released(D, when_minutes=3),                              # seller-canceled
        seller_cancel(D, at(42), "PricingError"),
        place(E, at(4)), cmd("cancel", at(10), order_id=E, by="buyer"),  # canceled in hold
    ))
    got = by_id((await views_and_memory(led, tmp_path, REPORT))["orders"])
    assert {k: (r["status"], r["actionable"], r["greyed_out"]) for k, r in got.items()} == {
        A: ("Pending", False, True),
        B: ("PartiallyShipped", True, False),
        C: ("Shipped", False, False),
        D: ("Canceled", False, True),
        E: ("Canceled", False, True),
    }
    b = got[B]
    assert b["purchase_date"] == at(1) and b["buyer_name"] == "Anna Andersson"
    assert when(b["payments_date"]) == when(at(31))             # the hold's end released it
    assert when(b["latest_ship_date"]) == when(at(1, days=2))
    assert when(b["latest_delivery_date"]) == when(at(1, days=7))
    assert [(i["order_item_id"], i["quantity"], i["quantity_shipped"], i["quantity_canceled"],
             i["quantity_to_ship"]) for i in b["items"]] == [("I1", 2, 1, 0, 1), ("I2", 1, 0, 0, 1)]
    assert got[A]["payments_date"] is None
    assert (got[D]["cancel_reason"], got[D]["canceled_by"]) == ("PricingError", "seller")
    assert got[E]["canceled_by"] == "buyer" and got[E]["payments_date"] is None
    led.close()


async def test_manage_orders_matches_the_aggregate_view(tmp_path):
    led = build(tmp_path, timeline(
        released(A, when_minutes=0, items=[item("I1", quantity=3), item("I2", "SKU-2")]),
        ship(A, at(40), [("I1", 1)]),
        cmd("adjust", at(50), order_id=A, items=[
            {"order_item_id": "I1", "reason": "NoInventory", "quantity_cancelled": 1}]),
        released(B, when_minutes=1), cmd("request-cancel", at(60), order_id=B),
        place(C, at(2)), cmd("verify-payment", at(3), order_id=C, outcome="fraud"),
        cmd("tick", at(31)),
    ))
    rows = (await views_and_memory(led, tmp_path, REPORT))["orders"]
    # every field a Manage Orders row shares with `show` (no list kept by hand)
    shared = set(OrderRow.__struct_fields__) & set(OrderView.__struct_fields__)
    assert {"status", "items", "market", "restricted", "warning"} <= shared
    for row in rows:
        view = plain(order_view(led.order(row["order_id"]).view()))
        for key in shared:
            if key.endswith("_date"):  # the same instant (a row writes UTC as Z)
                assert (row[key] and when(row[key])) == (view[key] and when(view[key])), key
            else:
                assert row[key] == view[key], (row["order_id"], key)
    led.close()


async def test_delayed_verification_shifts_promise_dates(tmp_path):
    led = build(tmp_path, [
        place(A, at(0)),
        cmd("verify-payment", at(5), order_id=A, outcome="extended"),
        cmd("tick", at(30)),
        cmd("verify-payment", at(0, days=2), order_id=A, outcome="verified"),
    ])
    row = (await views_and_memory(led, tmp_path, REPORT))["orders"][0]
    shift = when(at(0, days=2)) - when(at(30))
    assert row["status"] == "Unshipped" and row["payment"] == "verified"
    assert when(row["payments_date"]) == when(at(0, days=2))
    assert when(row["latest_ship_date"]) == when(at(0, days=2)) + shift
    assert when(row["latest_delivery_date"]) == when(at(0, days=7)) + shift
    led.close()


async def test_day_23_warning_shows_until_shipped_or_canceled(tmp_path):
    led = build(tmp_path, timeline(
        released(A, when_minutes=0), released(B, when_minutes=1, items=[item("I1", quantity=2)]),
        released(C, when_minutes=2),
        cmd("tick", at(0, days=23, hours=1)),
    ))
    async with Views(led, str(tmp_path / "v.db")) as v:
        rows = by_id(await v.orders())
        text = "Confirm as shipped by 2026-04-01 to avoid cancellation"
        assert {k: r.warning for k, r in rows.items()} == {A: text, B: text, C: text}
        apply(led, [ship(A, at(0, days=24)), ship(B, at(0, days=24), [("I1", 1)])])
        rows = by_id(await v.orders())
        assert rows[A].warning is None                          # Shipped: cleared
        assert rows[B].warning == text                          # still partially open
        apply(led, [cmd("tick", at(0, days=31))])               # 30-day rule
        rows = by_id(await v.orders())
        assert (rows[B].status, rows[B].warning) == ("Shipped", None)
        assert (rows[C].status, rows[C].warning, rows[C].cancel_reason) == (
            "Canceled", None, "ShipmentNotConfirmed")
        assert [r.order_id for r in await v.orders("Canceled")] == [C]
        assert await v.orders("Pending") == []
        assert (await v.order(A)).status == "Shipped"
        assert await v.order("999-9999999-9999999") is None
    led.close()


async def test_orders_filter_and_order_of_listing(tmp_path):
    led = build(tmp_path, timeline(released(A, when_minutes=0), released(B, when_minutes=1),
                                   place(C, at(45))))
    async with Views(led, str(tmp_path / "v.db")) as v:
        assert [r.order_id for r in await v.orders()] == [C, B, A]   # newest first
        assert [r.order_id for r in await v.orders("Unshipped")] == [B, A]
        with pytest.raises(ViewsError):
            await v.orders("Lost")
    led.close()


# --- Manage Inventory -------------------------------------------------------------------------


async def test_inventory_available_active_reserved(tmp_path):
    led = build(tmp_path, [
        cmd("set-inventory", at(0), sku="MUG", quantity=10),
        cmd("set-inventory", at(0), sku="ZERO", quantity=0),
        place(A, at(1), [item("I1", "MUG", 3), item("I2", "FREE", 1)]),   # FREE is untracked
        place(B, at(2), [item("I1", "MUG", 2), item("I2", "MUG", 1)]),
    ])
    async with Views(led, str(tmp_path / "v.db")) as v:
        assert plain(await v.inventory()) == [
            {"sku": "MUG", "available": 4, "active": True, "reserved": 6},
            {"sku": "ZERO", "available": 0, "active": False, "reserved": 0},
        ]
        apply(led, [
            cmd("verify-payment", at(5), order_id=A, outcome="verified"),
            cmd("cancel", at(6), order_id=B, by="buyer"),          # units go back
            cmd("tick", at(40)),
        ])
        assert plain(await v.inventory()) == [
            {"sku": "MUG", "available": 7, "active": True, "reserved": 0},
            {"sku": "ZERO", "available": 0, "active": False, "reserved": 0},
        ]
        apply(led, [seller_cancel(A, at(50)), cmd("set-inventory", at(51), sku="MUG",
                                                    quantity=0)])
        assert (await v.inventory())[0] == InventoryRow(sku="MUG", available=0, active=False,
                                                        reserved=0)
    await views_and_memory(led, tmp_path, REPORT)
    led.close()


async def test_sku_tracked_after_a_pending_order_counts_its_reservation(tmp_path):
    led = build(tmp_path, [
        place(A, at(0), [item("I1", "LATE", 2)]),
        cmd("set-inventory", at(1), sku="LATE", quantity=5),
    ])
    inv = (await views_and_memory(led, tmp_path, REPORT))["inventory"]
    assert inv == [{"sku": "LATE", "available": 5, "active": True, "reserved": 2}]
    led.close()


# --- Notifications -----------------------------------------------------------------------------


async def test_notifications_on_release_cancel_and_warning(tmp_path):
    led = build(tmp_path, timeline(
        released(A, when_minutes=0, items=[item("I1", "SKU-1", 2)]),
        released(B, when_minutes=1),
        seller_cancel(B, at(60), "NoInventory"),
        place(C, at(2)), cmd("verify-payment", at(3), order_id=C, outcome="declined"),
        place(D, at(4)), cmd("verify-payment", at(40), order_id=D, outcome="fraud"),
        place(E, at(5)), cmd("cancel", at(6), order_id=E, by="buyer"),
        cmd("tick", at(0, days=23, hours=1)),
    ))
    got = (await views_and_memory(led, tmp_path, REPORT))["notifications"]
    kinds = [(n["order_id"], n["to"], n["kind"]) for n in got]
    assert kinds == [
        (A, "buyer", "order-confirmation"), (A, "seller", "sold-ship-now"),
        (B, "buyer", "order-confirmation"), (B, "seller", "sold-ship-now"),
        (B, "buyer", "cancellation"),
        (A, "seller", "ship-by-warning"),
    ]
    assert [n["position"] for n in got] == sorted(n["position"] for n in got)
    conf, sold = got[0]["content"], got[1]["content"]
    assert when(got[0]["at"]) == when(at(30))                # when the hold released it
    assert when(conf["estimated_delivery_date"]) == when(at(0, days=7))
    assert conf["language"] == "sv-SE" and conf["buyer_email"] == "anna@example.se"
    assert when(sold["ship_by"]) == when(at(0, days=2))
    assert sold["items"] == [{"order_item_id": "I1", "sku": "SKU-1", "title": "Product SKU-1",
                              "quantity": 2}]
    seller_text = repr([n["content"] for n in got if n["to"] == "seller"])
    for private in ("Storgatan", "11122", "Stockholm", "Anna", "anna@", "+4670"):
        assert private not in seller_text
    cancel = got[4]["content"]
    assert (cancel["reason"], cancel["reason_text"], cancel["whole_order"]) == (
        "NoInventory", "No inventory", True)
    warn = got[5]["content"]
    assert warn["text"] == "Confirm as shipped by 2026-04-01 to avoid cancellation"
    assert when(warn["ship_by"]) == when(at(0, days=30))
    led.close()


async def test_notifications_delayed_release_and_adjustments(tmp_path):
    led = build(tmp_path, [
        place(A, at(0), [item("I1", quantity=2), item("I2", "SKU-2")]),
        cmd("tick", at(30)),
        cmd("verify-payment", at(0, days=1), order_id=A, outcome="verified"),
        cmd("adjust", at(0, days=1, hours=1), order_id=A, items=[
            {"order_item_id": "I2", "reason": "GeneralAdjustment", "item_price_adj": "10"}]),
        cmd("adjust", at(0, days=1, hours=2), order_id=A, items=[
            {"order_item_id": "I1", "reason": "NoInventory", "quantity_cancelled": 1}]),
    ])
    got = await views_and_memory(led, tmp_path, REPORT)
    notes = got["notifications"]
    assert [n["kind"] for n in notes] == ["order-confirmation", "sold-ship-now", "cancellation"]
    shift = when(at(0, days=1)) - when(at(30))
    assert when(notes[0]["content"]["estimated_delivery_date"]) == when(at(0, days=7)) + shift
    assert when(notes[1]["content"]["ship_by"]) == when(at(0, days=2)) + shift
    partial = notes[2]["content"]
    assert partial["whole_order"] is False and partial["reason"] == "NoInventory"
    assert partial["items"] == [{"order_item_id": "I1", "title": "Product SKU-1", "quantity": 1,
                                 "reason": "NoInventory"}]
    async with Views(led, str(tmp_path / "check.views.db")) as v:
        assert [n.kind for n in await v.notifications(A)] == [n["kind"] for n in notes]
        assert await v.notifications(B) == []
    led.close()


# --- the stored views: checkpoints, rebuild, location, guards ------------------------------------


def _sql(path, query, *args):
    con = sqlite3.connect(path)
    try:
        return con.execute(query, args).fetchall()
    finally:
        con.close()


async def test_checkpoints_follow_the_head_and_reads_are_never_stale(tmp_path):
    led = build(tmp_path, released(A))
    path = str(tmp_path / "v.db")
    async with Views(led, path) as v:
        assert (await v.checkpoints()) == {n: 0 for n in NAMES}
        assert len(await v.orders()) == 1                       # the read synced first
        assert (await v.checkpoints()) == {n: led.head() for n in NAMES}
        apply(led, released(B, when_minutes=60))
        assert len(await v.orders()) == 2
        assert (await v.checkpoints()) == {n: led.head() for n in NAMES}
        r = await v.sync()
        assert r.events == 0
    led.close()


async def test_sync_upto_and_auto_sync_off(tmp_path):
    led = build(tmp_path, timeline(released(A), released(B, when_minutes=60)))
    events = led.read_events(0, 1000)
    cut = next(p for p, _, e in events if getattr(e, "order_id", None) == B)
    async with Views(led, str(tmp_path / "v.db"), auto_sync=False) as v:
        await v.sync(upto=cut - 1)
        assert set((await v.checkpoints()).values()) == {cut - 1}
        assert [r.order_id for r in await v.orders()] == [A]
        assert await v.orders() == project(e for e in events if e[0] < cut).orders()
    led.close()


async def test_rebuild_swaps_in_new_tables_and_drops_leftovers(tmp_path):
    led = build(tmp_path, timeline(released(A), released(B, when_minutes=1)))
    path = str(tmp_path / "v.db")
    async with Views(led, path) as v:
        before = await v.orders()
        # leftovers of an interrupted rebuild are discarded by the next one
        await v._db.execute("CREATE TABLE orders__new (junk TEXT)")
        r = await v.rebuild(["orders"])
        assert r.rebuilt == ["orders"] and r.events == led.head()
        assert await v.orders() == before
        r = await v.rebuild()
        # the audit index, built and current, is kept (its rows never change meaning)
        assert r.rebuilt == [n for n in NAMES if n != "audit"]
        r = await v.rebuild(["audit"])
        assert r.rebuilt == ["audit"]
    tables = {t for (t,) in _sql(path, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert not {t for t in tables if t.endswith("__new")}
    assert {t.name for p in PROJECTIONS.values() for t in p.tables} <= tables
    with pytest.raises(ViewsError, match="unknown projection"):
        async with Views(led, path) as v:
            await v.rebuild(["nope"])
    led.close()


async def test_changed_projection_version_is_rebuilt_on_sync(tmp_path):
    led = build(tmp_path, released(A))
    path = str(tmp_path / "v.db")
    async with Views(led, path) as v:
        await v.sync()
    con = sqlite3.connect(path)
    con.execute("UPDATE checkpoints SET version = 0 WHERE name = 'metrics'")
    con.commit()
    con.close()
    async with Views(led, path) as v:
        r = await v.sync()
        assert r.rebuilt == ["metrics"]
        assert (await v.metrics(REPORT)).cancellation_rate.denominator == 1
    led.close()


async def test_views_of_another_ledger_are_refused(tmp_path):
    one = build(tmp_path, released(A), name="one.db")
    two = build(tmp_path, timeline(released(B), released(C, when_minutes=1)), name="two.db")
    path = str(tmp_path / "shared.views.db")
    async with Views(two, path) as v:
        await v.sync()
    async with Views(one, path) as v:
        with pytest.raises(ViewsError, match="another ledger"):
            await v.orders()
        await v.rebuild(["orders"])                             # fixes every projection
        assert [r.order_id for r in await v.orders()] == [A]
        assert (await v.metrics(REPORT)).cancellation_rate.denominator == 1
    one.close()
    two.close()


async def test_rebuild_in_several_processes_equals_one(tmp_path):
    cmds = [cmd("set-inventory", at(0), sku="SKU-1", quantity=100)]
    for n in range(1, 25):
        o = oid(n)
        cmds += released(o, when_minutes=n, items=[item("I1", quantity=1 + n % 3)])
        if n % 3 == 0:
            cmds.append(ship(o, at(n + 100)))
        elif n % 3 == 1:
            cmds.append(seller_cancel(o, at(n + 100)))
    led = build(tmp_path, timeline(cmds, cmd("tick", at(0, days=23, hours=1))))
    want = await views_and_memory(led, tmp_path, REPORT)
    for jobs in (2, 3):
        async with Views(led, str(tmp_path / f"p{jobs}.db"), jobs=jobs, batch_size=7) as v:
            r = await v.rebuild()
            assert r.events == led.head()
            got = await everything(v, REPORT)
        assert got == want
    led.close()


@pytest.mark.parametrize("jobs", [1, 2])
async def test_a_failing_rebuild_keeps_the_old_views(tmp_path, monkeypatch, jobs):
    led = build(tmp_path, timeline(released(A), released(B, when_minutes=1)))
    path = str(tmp_path / "v.db")
    async with Views(led, path) as v:
        before = await v.orders()

    def boom(pos, e):
        raise RuntimeError("boom")

    # the fused handler of OrderPlaced fails (in the workers too: they are forked)
    monkeypatch.setattr(_Fused, "_placed", lambda self, cls: boom)
    async with Views(led, path, jobs=jobs) as v:
        with pytest.raises((RuntimeError, ViewsError), match="boom"):
            await v.rebuild()
    monkeypatch.undo()
    async with Views(led, path, auto_sync=False) as v:
        assert await v.orders() == before
        assert set((await v.checkpoints()).values()) == {led.head()}
    led.close()


def test_views_location(tmp_path, monkeypatch):
    monkeypatch.delenv("ORDER_LEDGER_VIEWS", raising=False)
    assert views_path("data/shop.db") == "data/shop.views.db"
    assert views_path("sqlite:///data/shop.db") == "data/shop.views.db"
    assert views_path("shop.sqlite") == "shop.sqlite.views.db"
    assert views_path("postgresql://u@h:5432/ledger?schema=shop") == \
        "order-ledger-ledger-shop.views.db"
    assert views_path("postgresql://u@h/ledger") == "order-ledger-ledger-public.views.db"
    assert views_path("x.db", "elsewhere.db") == "elsewhere.db"
    monkeypatch.setenv("ORDER_LEDGER_VIEWS", "/tmp/env.views.db")
    assert views_path("x.db") == "/tmp/env.views.db"
    assert views_path("x.db", "given.db") == "given.db"


async def test_views_in_a_missing_directory_is_a_clear_error(tmp_path):
    led = build(tmp_path, released(A))
    with pytest.raises(ViewsLocationError, match="does not exist"):
        async with Views(led, str(tmp_path / "no" / "such" / "v.db")) as v:
            await v.orders()
    led.close()


async def test_empty_ledger_reads_empty(tmp_path):
    with Ledger(str(tmp_path / "empty.db")) as led:
        async with Views(led, str(tmp_path / "v.db")) as v:
            assert await v.orders() == [] and await v.inventory() == []
            assert await v.notifications() == []
            assert (await v.report_orders(REPORT)).count("\n") == 1
            m = await v.metrics(REPORT)
            assert m.cancellation_rate.rate is None


async def test_both_backends_agree_with_memory(ledger, tmp_path):
    """The views read the ledger through the recorder on PostgreSQL, directly on SQLite."""
    apply(ledger, timeline(
        cmd("set-inventory", at(0), sku="SKU-1", quantity=5),
        released(A, items=[item("I1", quantity=2)]), released(B, when_minutes=2),
        ship(A, at(40)), seller_cancel(B, at(41)),
        place(C, at(50)),
    ))
    got = await views_and_memory(ledger, tmp_path, REPORT)
    assert [r["status"] for r in got["orders"]] == ["Pending", "Canceled", "Shipped"]
    # 5 - 2 (A) - 1 (B) + 1 (B canceled) - 1 (C, Pending)
    assert got["inventory"] == [{"sku": "SKU-1", "available": 2, "active": True, "reserved": 1}]
    assert got["report_orders"].count("\n") == 3               # header + A + B (C is Pending)
    # incremental catch-up (per-order rows loaded back from the views) on both backends
    apply(ledger, [cmd("verify-payment", at(51), order_id=C, outcome="verified"),
                   cmd("tick", at(90)), ship(C, at(91), tracking=None)])
    again = await views_and_memory(ledger, tmp_path, REPORT)    # same views file as above
    assert [r["status"] for r in again["orders"]] == ["Shipped", "Canceled", "Shipped"]
    assert again["inventory"][0]["reserved"] == 0
    assert again["metrics"]["valid_tracking_rate"]["numerator"] == 1
