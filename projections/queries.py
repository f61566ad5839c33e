"""One query layer for the stored views and the in-memory snapshots.

A read is written once here, as a :class:`Select` (which records: filters and a
page, see :class:`projections.read.Where` and :class:`projections.read.Page`) and
the functions that turn the records into output rows (``projections.rows``).
The stored views (:class:`projections.views.Views`) run a select as SQL
(:meth:`Select.sql`); the snapshots (:class:`projections.memory.Snapshot`,
replay's as-of reads) apply it to the records in memory (:meth:`Select.apply`).
Both hand the records to the same finishing functions, so a stored view and a
replay cannot answer differently.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable, Sequence

import msgspec

from . import read, rows
from .model import STATUSES, MetricOrder, OrderDoc
from .read import DEFAULT_PAGE, Page, PageError, Where


class QueryError(PageError):
    """A read asked with a value the list does not know (a status, a sort key ...)."""


class Select(msgspec.Struct, frozen=True):
    """The records of ``listing`` (``orders``, ``inventory``, ``notifications``) that
    pass every filter of ``where``, in the order and window of ``page`` (None: any
    order, every record)."""

    listing: str
    where: tuple[Where, ...] = ()
    page: Page | None = None

    def sql(self, columns: Sequence[str], table: str) -> tuple[str, list[Any]]:
        """``SELECT columns FROM table [WHERE ...] [ORDER BY ... LIMIT ...]`` and its
        parameters; raises :class:`QueryError` for a page the listing cannot give."""
        text = f"SELECT {', '.join(columns)} FROM {table}"
        args: list[Any] = []
        if self.where:
            parts = [w.sql() for w in self.where]
            text += " WHERE " + " AND ".join(p[0] for p in parts)
            for p in parts:
                args.extend(p[1])
        if self.page is not None:
            try:
                order_by, page_args = self.page.sql(self.listing)
            except PageError as exc:
                raise QueryError(str(exc)) from None
            text += order_by
            args.extend(page_args)
        return text, args

    def apply(self, records: Iterable[Any]) -> list[Any]:
        """The same in memory (records are objects with the fields)."""
        where = self.where
        chosen = [r for r in records if all(w.test(r) for w in where)] if where \
            else list(records)
        if self.page is None:
            return chosen
        try:
            return self.page.apply(self.listing, chosen)
        except PageError as exc:
            raise QueryError(str(exc)) from None


# --- Manage Orders --------------------------------------------------------------------


def orders(status: str | None = None, page: Page = DEFAULT_PAGE) -> Select:
    """Manage Orders: every order (newest purchase first), optionally one status."""
    if status is not None and status not in STATUSES:
        raise QueryError(f"unknown status {status!r}; known: {', '.join(STATUSES)}")
    return Select("orders", () if status is None else (Where("status", (status,)),), page)


def order(order_id: str) -> Select:
    """One order by its id."""
    return Select("orders", (Where("order_id", (order_id,)),))


def order_rows(docs: Iterable[OrderDoc]) -> list[rows.OrderRow]:
    return [rows.order_row(d) for d in docs]


# --- reports ---------------------------------------------------------------------------

#: report kind -> the method name of the views (``report_<kind>``)
REPORT_KINDS = ("orders", "unshipped", "all_orders")


def report(kind: str) -> Select:
    """The orders report ``kind`` reads (``read.REPORT_WHERE``), in any order."""
    where = read.REPORT_WHERE[kind]
    return Select("orders", () if where is None else (where,))


def render_report(kind: str, docs: Iterable[OrderDoc], report_time: datetime | None,
                  layout: str = "current") -> str:
    """Report ``kind``'s TSV text from its orders (in any order)."""
    if kind == "orders":
        return read.render_orders_report(docs)
    if kind == "unshipped":
        if report_time is None or report_time.tzinfo is None:
            raise ValueError("a report time needs a UTC offset")
        return read.render_unshipped_report(docs, report_time, layout)
    return read.render_all_orders_report(docs)


# --- Manage Inventory ------------------------------------------------------------------


def inventory(available: Iterable[tuple[str, int]], pending: Iterable[tuple[str, int]],
              page: Page = DEFAULT_PAGE) -> list[rows.InventoryRow]:
    """Manage Inventory from ``(sku, available)`` of every tracked SKU and ``(sku,
    quantity)`` of every item line of an order still Pending (reserved stock)."""
    reserved: dict[str, int] = {}
    for sku, q in pending:
        reserved[sku] = reserved.get(sku, 0) + q
    out = [rows.inventory_row(sku, a, reserved.get(sku, 0)) for sku, a in available]
    return Select("inventory", (), page).apply(out)


# --- notifications --------------------------------------------------------------------


def notifications(order_id: str | None = None, page: Page = DEFAULT_PAGE) -> Select:
    """The outbox in event order (or as ``page`` says), optionally of one order."""
    return Select("notifications",
                  () if order_id is None else (Where("order_id", (order_id,)),), page)


# --- seller metrics --------------------------------------------------------------------


def metrics(orders: Iterable[MetricOrder], shipments: Iterable[tuple[int, Any]],
            at: datetime) -> rows.Metrics:
    """Seller metrics at ``at`` (records may hold more than the windows)."""
    if at.tzinfo is None:
        raise ValueError("a metrics time needs a UTC offset")
    return read.compute_metrics(orders, shipments, at)
