"""The stored views: projections kept in their own SQLite file via ``aiosqlite``.

:class:`Views` is the store (``projections.store``: file, lock, checkpoints,
swap), the runner (``projections.runner``: sync, rebuild) and the reads; reading
methods first catch the views up to the ledger's head. :class:`BlockingViews` is
the same without ``await``. See ``docs/projections.md``.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any, Awaitable, Callable, Iterable, TypeVar, cast

import aiosqlite

from . import read
from .model import (
    ORDER_COLUMNS,
    STATUSES,
    row_to_doc,
    row_to_metric,
    METRIC_COLUMNS,
)
from .runner import PARALLEL_MIN, RunResult, ViewRunner
from .store import (
    CACHE_LIMIT,
    DEFAULT_BATCH,
    DEFER_LIMIT,
    NEW,
    Progress,
    ViewsError,
    ViewsLocationError,
    unwritable_because,
    views_path,
)

__all__ = ["BlockingViews", "CACHE_LIMIT", "DEFAULT_BATCH", "DEFER_LIMIT", "NEW",
           "PARALLEL_MIN", "Progress", "RunResult", "Views", "ViewsError",
           "ViewsLocationError", "unwritable_because", "views_path"]

_T = TypeVar("_T")


class Views(ViewRunner):
    """The stored projections of one ledger.

    ``Views(ledger, path=None)``; async methods; use ``async with`` or ``close()``.
    Reading methods call :meth:`sync` first unless ``auto_sync=False``.
    """

    # --- reading ----------------------------------------------------------------------

    async def _ready(self) -> aiosqlite.Connection:
        if self.auto_sync:
            await self.sync()
        return await self.open()

    async def _require(self, name: str) -> None:
        if not await self._tables_exist(name):
            raise ViewsError(f"the {name} view is not built yet; run `order-ledger sync`")

    async def orders(self, status: str | None = None,
                     page: read.Page = read.DEFAULT_PAGE) -> list[dict[str, Any]]:
        """Manage Orders: every order (newest purchase first), optionally one status;
        ``page`` sorts and limits in the query (see :class:`projections.read.Page`)."""
        if status is not None and status not in STATUSES:
            raise ViewsError(f"unknown status {status!r}; known: {', '.join(STATUSES)}")
        order_by, args = _page_sql(page, "orders")
        db = await self._ready()
        if not await self._tables_exist("orders"):
            return []
        cols = ", ".join(ORDER_COLUMNS)
        if status is None:
            rows = await db.execute_fetchall(f"SELECT {cols} FROM orders{order_by}", args)
        else:
            rows = await db.execute_fetchall(
                f"SELECT {cols} FROM orders WHERE status = ?{order_by}", (status, *args))
        return [read.order_row(row_to_doc(r)) for r in rows]

    async def order(self, order_id: str) -> dict[str, Any] | None:
        db = await self._ready()
        if not await self._tables_exist("orders"):
            return None
        rows = list(await db.execute_fetchall(
            f"SELECT {', '.join(ORDER_COLUMNS)} FROM orders WHERE order_id = ?", (order_id,)))
        return read.order_row(row_to_doc(rows[0])) if rows else None

    async def _docs(self, where: str) -> list[Any]:
        db = await self._ready()
        if not await self._tables_exist("orders"):
            return []
        rows = await db.execute_fetchall(
            f"SELECT {', '.join(ORDER_COLUMNS)} FROM orders WHERE {where}")
        return [row_to_doc(r) for r in rows]

    async def report_orders(self, report_time: datetime | None = None) -> str:
        """The Orders report as TSV text (no column depends on ``report_time``)."""
        return read.render_orders_report(await self._docs("ever_released = 1"))

    async def report_unshipped(self, report_time: datetime, layout: str = "current") -> str:
        """The Unshipped Orders report at ``report_time`` as TSV text, in ``layout``."""
        if report_time.tzinfo is None:
            raise ValueError("a report time needs a UTC offset")
        return read.render_unshipped_report(
            await self._docs("status IN ('Unshipped', 'PartiallyShipped')"), report_time,
            layout)

    async def report_all_orders(self, report_time: datetime | None = None) -> str:
        """The All Orders report as TSV text (every order; no column uses ``report_time``)."""
        return read.render_all_orders_report(await self._docs("1 = 1"))

    async def inventory(self, page: read.Page = read.DEFAULT_PAGE) -> list[dict[str, Any]]:
        """Manage Inventory: tracked SKUs by SKU (or as ``page`` says)."""
        order_by, args = _page_sql(page, "inventory")
        db = await self._ready()
        if not await self._tables_exist("inventory"):
            return []
        rows = await db.execute_fetchall(
            "SELECT i.sku AS sku, i.available AS available, COALESCE(r.reserved, 0) AS reserved"
            " FROM inventory i "
            "LEFT JOIN (SELECT sku, SUM(quantity) AS reserved FROM inventory_pending "
            f"GROUP BY sku) r ON r.sku = i.sku{order_by}", args)
        return [read.inventory_row(*r) for r in rows]

    async def metrics(self, at: datetime) -> dict[str, Any]:
        """Seller metrics with windows ending at ``at`` (see docs/projections.md)."""
        if at.tzinfo is None:
            raise ValueError("a metrics time needs a UTC offset")
        db = await self._ready()
        if not await self._tables_exist("metrics"):
            return read.compute_metrics([], [], at)
        r = read.metric_ranges(at)
        rows = await db.execute_fetchall(
            f"SELECT {', '.join(METRIC_COLUMNS)} FROM metric_orders "
            "WHERE (purchase_us >= ? AND purchase_us < ?) "
            "OR (latest_ship_us >= ? AND latest_ship_us < ?)",
            (*r["purchase"], *r["ship"]))
        ships = await db.execute_fetchall(
            "SELECT at_us, tracked FROM metric_shipments WHERE at_us >= ? AND at_us < ?",
            r["confirmation"])
        return read.compute_metrics([row_to_metric(x) for x in rows],
                                    cast("list[tuple[int, Any]]", list(ships)), at)

    async def notifications(self, order_id: str | None = None,
                            page: read.Page = read.DEFAULT_PAGE) -> list[dict[str, Any]]:
        """The outbox in event order (or as ``page`` says), optionally of one order."""
        order_by, args = _page_sql(page, "notifications")
        db = await self._ready()
        if not await self._tables_exist("notifications"):
            return []
        cols = "position, seq, at, recipient, kind, order_id, content"
        if order_id is None:
            rows = await db.execute_fetchall(f"SELECT {cols} FROM notifications{order_by}", args)
        else:
            rows = await db.execute_fetchall(
                f"SELECT {cols} FROM notifications WHERE order_id = ?{order_by}",
                (order_id, *args))
        return [read.notification_row(tuple(r)) for r in rows]


def _page_sql(page: read.Page, listing: str) -> tuple[str, list[int]]:
    try:
        return page.sql(listing)
    except read.PageError as exc:
        raise ViewsError(str(exc)) from None



# --- blocking wrappers for the command line -------------------------------------------


class BlockingViews:
    """The same API without ``await``: each call opens the views, runs, closes.

    ``BlockingViews(ledger, path=None, **options)``; for the command line and
    scripts. Options are those of :class:`Views`.
    """

    def __init__(self, ledger: Any, path: str | None = None, **options: Any) -> None:
        self.ledger = ledger
        self.path = path
        self.options = options

    def _call(self, fn: Callable[[Views], Awaitable[_T]]) -> _T:
        async def run() -> _T:
            async with Views(self.ledger, self.path, **self.options) as v:
                return await fn(v)
        return asyncio.run(run())

    @property
    def views_path(self) -> str:
        return views_path(self.ledger.db, self.path)

    def sync(self, upto: int | None = None, progress: Progress | None = None) -> RunResult:
        return self._call(lambda v: v.sync(upto, progress))

    def rebuild(self, names: Iterable[str] | None = None,
                progress: Progress | None = None) -> RunResult:
        return self._call(lambda v: v.rebuild(list(names) if names else None, progress))

    def checkpoints(self) -> dict[str, int]:
        return self._call(lambda v: v.checkpoints())

    def orders(self, status: str | None = None,
               page: read.Page = read.DEFAULT_PAGE) -> list[dict[str, Any]]:
        return self._call(lambda v: v.orders(status, page))

    def order(self, order_id: str) -> dict[str, Any] | None:
        return self._call(lambda v: v.order(order_id))

    def inventory(self, page: read.Page = read.DEFAULT_PAGE) -> list[dict[str, Any]]:
        return self._call(lambda v: v.inventory(page))

    def metrics(self, at: datetime) -> dict[str, Any]:
        return self._call(lambda v: v.metrics(at))

    def notifications(self, order_id: str | None = None,
                      page: read.Page = read.DEFAULT_PAGE) -> list[dict[str, Any]]:
        return self._call(lambda v: v.notifications(order_id, page))

    def report_orders(self, report_time: datetime | None = None) -> str:
        return self._call(lambda v: v.report_orders(report_time))

    def report_unshipped(self, report_time: datetime, layout: str = "current") -> str:
        return self._call(lambda v: v.report_unshipped(report_time, layout))

    def report_all_orders(self, report_time: datetime | None = None) -> str:
        return self._call(lambda v: v.report_all_orders(report_time))

