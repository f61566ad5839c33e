"""All projections computed in memory from an iterable of events.

``project(events)`` runs the very apply code the stored views run, on fresh
objects, and returns a :class:`Snapshot` with the same read methods as
:class:`projections.views.Views` (synchronous here). Tests compare the two;
replay (as-of, replay to a point) uses it to build views of the past.
"""

from __future__ import annotations

import gc
from datetime import datetime
from typing import Any, Iterable

from ledger import events as ev

from . import queries, read, rows
from .model import (
    NAMES,
    PROJECTIONS,
    InventoryProjection,
    MetricsProjection,
    NotificationsProjection,
    OrdersProjection,
    Projection,
    dispatch_table,
)


class Snapshot:
    """The projections after applying a stream; read like the stored views."""

    def __init__(self, projs: dict[str, Projection], position: int) -> None:
        self.projections = projs
        #: the global position of the last event applied (0 when none)
        self.position = position

    def _p(self, name: str) -> Any:
        try:
            return self.projections[name]
        except KeyError:
            raise LookupError(f"projection {name!r} was not computed") from None

    # Manage Orders -------------------------------------------------------------
    def orders(self, status: str | None = None,
               page: read.Page = read.DEFAULT_PAGE) -> list[rows.OrderRow]:
        p: OrdersProjection = self._p("orders")
        return queries.order_rows(queries.orders(status, page).apply(p.recs.values()))

    def order(self, order_id: str) -> rows.OrderRow | None:
        d = self._p("orders").recs.get(order_id)
        return rows.order_row(d) if d is not None else None

    def _report(self, kind: str, report_time: datetime | None, layout: str = "current") -> str:
        docs = queries.report(kind).apply(self._p("orders").recs.values())
        return queries.render_report(kind, docs, report_time, layout)

    def report_orders(self, report_time: datetime | None = None) -> str:
        """The Orders report (``report_time`` is accepted for symmetry; no column uses it)."""
        return self._report("orders", report_time)

    def report_unshipped(self, report_time: datetime, layout: str = "current") -> str:
        return self._report("unshipped", report_time, layout)

    def report_all_orders(self, report_time: datetime | None = None) -> str:
        """The All Orders report (``report_time`` accepted for symmetry; no column uses it)."""
        return self._report("all_orders", report_time)

    # Manage Inventory -------------------------------------------------------------
    def inventory(self, page: read.Page = read.DEFAULT_PAGE) -> list[rows.InventoryRow]:
        p: InventoryProjection = self._p("inventory")
        return queries.inventory(p.available.items(),
                                 (item for skus in p.pending.values() for item in skus.items()),
                                 page)

    # metrics ------------------------------------------------------------------------
    def metrics(self, at: datetime) -> rows.Metrics:
        p: MetricsProjection = self._p("metrics")
        return queries.metrics(p.recs.values(), [(s[2], s[3]) for s in p.shipments], at)

    # notifications -------------------------------------------------------------------
    def notifications(self, order_id: str | None = None,
                      page: read.Page = read.DEFAULT_PAGE) -> list[rows.Notification]:
        p: NotificationsProjection = self._p("notifications")
        return queries.notifications(order_id, page).apply(
            rows.notification_row(r) for r in p.rows)


def _pairs(events: Iterable[Any]) -> Iterable[tuple[int, ev.Event]]:
    for item in events:
        if len(item) == 3:  # (position, originator id, payload) as Ledger.read_events gives
            yield item[0], item[2]
        else:
            yield item[0], item[1]


def project(events: Iterable[tuple[int, ev.Event]] | Iterable[tuple[int, str, ev.Event]],
            names: Iterable[str] | None = None) -> Snapshot:
    """Apply a stream of ``(position, payload)`` (or ``(position, aggregate id, payload)``)
    in order to fresh projections and return them."""
    chosen = list(names) if names is not None else list(NAMES)
    for n in chosen:
        if n not in PROJECTIONS:
            raise ValueError(f"unknown projection {n!r}; known: {', '.join(NAMES)}")
    projs = {n: PROJECTIONS[n](complete=True) for n in chosen}
    table = dispatch_table(projs.values())
    last = 0
    get = table.get
    gc_was_on = gc.isenabled()
    gc.disable()  # many small acyclic objects: the cyclic GC would only cost time
    try:
        for pos, e in _pairs(events):
            for h in get(type(e), ()):
                h(pos, e)
            last = pos
    finally:
        if gc_was_on:
            gc.enable()
    return Snapshot(projs, last)
