"""A rebuild's memory follows the open orders, not all orders: records of settled
orders (shipped or canceled) are written, then forgotten, and loaded back from
the table if a later event needs them."""

from __future__ import annotations

from datetime import timedelta

import pytest

from builders import oid, released
from test_projections_support import (
    T0,
    at,
    build,
    everything,
    seller_cancel,
    ship,
    timeline,
)

from projections import Views, project
from projections.model import (
    PROJECTIONS,
    MetricsProjection,
    NotificationsProjection,
    OrdersProjection,
    dispatch_table,
)

REPORT = T0 + timedelta(days=3)
TABLES = {n: {t.name: t.name for t in PROJECTIONS[n].tables} for n in PROJECTIONS}


def _apply(projs, events):
    table = dispatch_table(projs)
    for pos, _, e in events:
        for h in table.get(type(e), ()):
            h(pos, e)


def test_settled_records_are_evicted_after_they_are_written(tmp_path):
    """Shipped and canceled orders leave memory once flushed; open ones stay."""
    A, B, C = oid(1), oid(2), oid(3)
    led = build(tmp_path, timeline(
        released(A), released(B, when_minutes=1), released(C, when_minutes=2),
        [ship(A, at(0, days=1)), seller_cancel(B, at(0, days=1, hours=1))]))
    events = led.read_events(0, 1000)
    for cls in (OrdersProjection, MetricsProjection, NotificationsProjection):
        p = cls(complete=True)
        _apply([p], events)
        assert set(p.recs) == {A, B, C}
        assert p.evict_settled() == 0, "nothing is evicted before it is written"
        ops = p.flush_ops(TABLES[cls.name])
        assert ops and not p.dirty
        assert p.evict_settled() == 2
        assert set(p.recs) == {C}, cls.name
        # from now on a record not in memory may be stored: it is asked for
        assert not p.complete
        assert sorted(p.missing({A, B, C})) == [A, B]
    led.close()


def test_an_evicted_record_loads_back_equal(tmp_path):
    """The row written for a settled order, read back, is the record it was."""
    A = oid(1)
    led = build(tmp_path, timeline(released(A), [ship(A, at(0, days=1))]))
    events = led.read_events(0, 1000)
    for cls in (OrdersProjection, MetricsProjection, NotificationsProjection):
        p = cls(complete=True)
        _apply([p], events)
        before = p.recs[A]
        # the first statement writes the per-order records (notifications: the state JSON)
        (_, rows), *_ = p.flush_ops(TABLES[cls.name])
        p.evict_settled()
        assert A not in p.recs
        p.loaded([next(r for r in rows if r[0] == A)])
        assert p.recs[A] == before, cls.name
    led.close()


def test_open_orders_are_kept_while_dirty_records_wait(tmp_path):
    """A rebuild holds changed records back (writes them once); nothing it still
    has to write is evicted."""
    A = oid(1)
    led = build(tmp_path, timeline(released(A), [ship(A, at(0, days=1))]))
    p = OrdersProjection(complete=True)
    _apply([p], led.read_events(0, 1000))
    assert p.flush_ops(TABLES["orders"], defer=10) == []  # held back
    assert p.evict_settled() == 0 and A in p.recs
    led.close()


async def test_rebuild_with_a_small_memory_budget_equals_memory(tmp_path):
    """Records written after every batch and settled ones evicted: the same views."""
    orders = [oid(n) for n in range(1, 13)]
    groups = []
    for k, o in enumerate(orders):
        groups.append(released(o, when_minutes=k))
        if k % 3 == 0:
            groups.append([ship(o, at(0, days=1, hours=k))])
        elif k % 3 == 1:
            groups.append([seller_cancel(o, at(0, days=1, hours=k))])
    led = build(tmp_path, timeline(*groups))
    want = await everything(project(led.iter_events()), REPORT)
    for cache, defer in ((10_000, 1), (3, 100)):
        async with Views(led, str(tmp_path / f"v{cache}.db"), batch_size=2,
                         cache_limit=cache, defer_limit=defer) as v:
            await v.rebuild()
            got = await everything(v, REPORT)
        assert got == want, (cache, defer)
    led.close()


def test_a_batch_s_order_ids_are_grouped_by_event_type_once(tmp_path):
    """What a batch may need loaded: each event type's order ids after the
    checkpoint (events of SKUs and earlier ones left out), and the orders placed
    in the batch, which cannot be stored yet."""
    from ledger import events as ev
    from projections.runner import _order_ids_by_type

    A, B = oid(1), oid(2)
    led = build(tmp_path, timeline(
        {"type": "set-inventory", "at": at(0), "command_id": "inv-1", "sku": "MUG-1",
         "quantity": 5},
        released(A), released(B, when_minutes=1), [ship(A, at(0, days=1))]))
    batch = led.read_events(0, 1000)
    by_type, placed = _order_ids_by_type(batch, 0)
    assert placed == {A, B}
    assert by_type[ev.ShipmentConfirmed] == {A}
    assert by_type[ev.PaymentVerified] == {A, B}
    assert not any(t is ev.InventorySet for t in by_type)  # not an order's event
    a_placed = next(pos for pos, _, e in batch if type(e) is ev.OrderPlaced and e.order_id == A)
    by_type, placed = _order_ids_by_type(batch, a_placed)
    assert placed == {B}  # A was placed before the checkpoint: it may be stored
    led.close()


def test_reading_upcasts_an_event_stored_under_an_older_version(tmp_path, monkeypatch):
    """The bulk reader decodes current versions directly and hands any other row
    to the mapper, which upcasts it (or says why it cannot)."""
    import sqlite3

    from ledger import codec
    from ledger.errors import StoreError
    from projections.source import EventSource

    A = oid(1)
    led = build(tmp_path, timeline(released(A)))
    want = led.read_events(0, 1000)
    con = sqlite3.connect(tmp_path / "ledger.db")
    con.execute("UPDATE stored_events SET topic = 'OrderPlaced:v0' WHERE topic = 'OrderPlaced:v1'")
    con.commit()
    con.close()
    source = EventSource(led)
    with pytest.raises(StoreError, match="no upcaster for OrderPlaced v0"):
        source.read(0, 1000)
    seen = []
    monkeypatch.setitem(codec.UPCASTERS, ("OrderPlaced", 0), lambda d: seen.append(d) or d)
    assert source.read(0, 1000) == want
    assert [d["order_id"] for d in seen] == [A]
    source.close()
    led.close()
