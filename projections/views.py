"""The stored views: projections kept in their own SQLite file via ``aiosqlite``.

:class:`Views` is the store (``projections.store``: file, lock, checkpoints,
swap), the runner (``projections.runner``: sync, rebuild) and the reads; reading
methods first catch the views up to the ledger's head. :class:`BlockingViews` is
the same without ``await``. See ``docs/projections.md``.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any, Awaitable, Callable, Iterable, Sequence, TypeVar, cast

import aiosqlite

from . import queries, read, rows
from .model import METRIC_COLUMNS, ORDER_COLUMNS, OrderDoc, row_to_doc, row_to_metric
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

    # --- reading: the queries of ``projections.queries`` run as SQL ----------------------

    async def _ready(self) -> aiosqlite.Connection:
        if self.auto_sync:
            await self.sync()
        return await self.open()

    async def _require(self, name: str) -> None:
        if not await self._tables_exist(name):
            raise ViewsError(f"the {name} view is not built yet; run `order-ledger sync`")

    async def _select(self, view: str, sel: queries.Select, columns: Sequence[str],
                      table: str) -> list[Any] | None:
        """The stored records ``sel`` picks (None: view ``view`` is not built yet)."""
        try:
            sql, args = sel.sql(columns, table)
        except queries.QueryError as exc:
            raise ViewsError(str(exc)) from None
        db = await self._ready()
        if not await self._tables_exist(view):
            return None
        return list(await db.execute_fetchall(sql, args))

    async def _docs(self, sel: queries.Select) -> list[OrderDoc]:
        found = await self._select("orders", sel, ORDER_COLUMNS, "orders")
        return [row_to_doc(r) for r in found or ()]

    async def orders(self, status: str | None = None,
                     page: read.Page = read.DEFAULT_PAGE) -> list[rows.OrderRow]:
        """Manage Orders: every order (newest purchase first), optionally one status;
        ``page`` sorts and limits in the query (see :class:`projections.read.Page`)."""
        try:
            sel = queries.orders(status, page)
        except queries.QueryError as exc:
            raise ViewsError(str(exc)) from None
        return queries.order_rows(await self._docs(sel))

    async def order(self, order_id: str) -> rows.OrderRow | None:
        docs = await self._docs(queries.order(order_id))
        return rows.order_row(docs[0]) if docs else None

    async def report_orders(self, report_time: datetime | None = None) -> str:
        """The Orders report as TSV text (no column depends on ``report_time``)."""
        return queries.render_report("orders", await self._docs(queries.report("orders")),
                                     report_time)

    async def report_unshipped(self, report_time: datetime, layout: str = "current") -> str:
        """The Unshipped Orders report at ``report_time`` as TSV text, in ``layout``."""
        if report_time.tzinfo is None:
            raise ValueError("a report time needs a UTC offset")
        return queries.render_report(
            "unshipped", await self._docs(queries.report("unshipped")), report_time, layout)

    async def report_all_orders(self, report_time: datetime | None = None) -> str:
        """The All Orders report as TSV text (every order; no column uses ``report_time``)."""
        return queries.render_report(
            "all_orders", await self._docs(queries.report("all_orders")), report_time)

    async def inventory(self, page: read.Page = read.DEFAULT_PAGE) -> list[rows.InventoryRow]:
        """Manage Inventory: tracked SKUs by SKU (or as ``page`` says)."""
        try:
            page.spec("inventory")
        except read.PageError as exc:
            raise ViewsError(str(exc)) from None
        db = await self._ready()
        if not await self._tables_exist("inventory"):
            return []
        available = await db.execute_fetchall("SELECT sku, available FROM inventory")
        pending = await db.execute_fetchall("SELECT sku, quantity FROM inventory_pending")
        return queries.inventory(cast("list[tuple[str, int]]", list(available)),
                                 cast("list[tuple[str, int]]", list(pending)), page)

    async def metrics(self, at: datetime) -> rows.Metrics:
        """Seller metrics with windows ending at ``at`` (see docs/projections.md)."""
        if at.tzinfo is None:
            raise ValueError("a metrics time needs a UTC offset")
        db = await self._ready()
        if not await self._tables_exist("metrics"):
            return queries.metrics([], [], at)
        r = read.metric_ranges(at)
        found = await db.execute_fetchall(
            f"SELECT {', '.join(METRIC_COLUMNS)} FROM metric_orders "
            "WHERE (purchase_us >= ? AND purchase_us < ?) "
            "OR (latest_ship_us >= ? AND latest_ship_us < ?)",
            (*r["purchase"], *r["ship"]))
        ships = await db.execute_fetchall(
            "SELECT at_us, tracked FROM metric_shipments WHERE at_us >= ? AND at_us < ?",
            r["confirmation"])
        return queries.metrics([row_to_metric(x) for x in found],
                               cast("list[tuple[int, Any]]", list(ships)), at)

    async def notifications(self, order_id: str | None = None,
                            page: read.Page = read.DEFAULT_PAGE) -> list[rows.Notification]:
        """The outbox in event order (or as ``page`` says), optionally of one order."""
        found = await self._select(
            "notifications", queries.notifications(order_id, page),
            ("position", "seq", "at", "recipient", "kind", "order_id", "content"),
            "notifications")
        return [rows.notification_row(tuple(r)) for r in found or ()]


# --- blocking wrappers for the command line -------------------------------------------
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
               page: read.Page = read.DEFAULT_PAGE) -> list[rows.OrderRow]:
        return self._call(lambda v: v.orders(status, page))

    def order(self, order_id: str) -> rows.OrderRow | None:
        return self._call(lambda v: v.order(order_id))

    def inventory(self, page: read.Page = read.DEFAULT_PAGE) -> list[rows.InventoryRow]:
        return self._call(lambda v: v.inventory(page))

    def metrics(self, at: datetime) -> rows.Metrics:
        return self._call(lambda v: v.metrics(at))

    def notifications(self, order_id: str | None = None,
                      page: read.Page = read.DEFAULT_PAGE) -> list[rows.Notification]:
        return self._call(lambda v: v.notifications(order_id, page))

    def report_orders(self, report_time: datetime | None = None) -> str:
        return self._call(lambda v: v.report_orders(report_time))

    def report_unshipped(self, report_time: datetime, layout: str = "current") -> str:
        return self._call(lambda v: v.report_unshipped(report_time, layout))

    def report_all_orders(self, report_time: datetime | None = None) -> str:
        return self._call(lambda v: v.report_all_orders(report_time))

