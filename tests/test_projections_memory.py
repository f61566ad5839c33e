"""A rebuild's memory follows the open orders, not all orders: records of settled
orders (shipped or canceled) are written, then forgotten, and loaded back from
the table if a later event needs them."""

from __future__ import annotations

from datetime import timedelta

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
