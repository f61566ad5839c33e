"""What the page reads and writes, through the library calls the CLI uses.

One :class:`Backend` per worker process: a read-only :class:`ledger.application.Ledger`,
the stored :class:`projections.Views` (brought to the ledger's head before each
read, as the CLI's reads do), and, for a past view, the projections replayed in
memory by :mod:`replay.asof`. Writes go through ``submit`` (by default one
``Ledger.execute`` per command, as ``order-ledger ship`` / ``cancel`` do).
No rule lives here.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

import anyio.to_thread

from ledger.application import Ledger
from projections import Views
from projections import read as pread
from replay import asof
from replay.history import explain, order_history
from replay.trend import metrics_over_time

PAGE_SIZE = 25

#: Submit one command (a dict as in a command file) for a principal; returns the
#: outcome as ``apply --json`` prints it (``status``, ``error``, ``events``, ...).
Submit = Callable[[dict, Any], dict]


@dataclass(frozen=True)
class When:
    """The time a page shows: the present (both None), or a past view."""

    as_of: datetime | None = None
    known_at: datetime | None = None

    @property
    def past(self) -> bool:
        return self.as_of is not None or self.known_at is not None


class Backend:
    def __init__(self, db: str, views: str | None = None, submit: Submit | None = None) -> None:
        self.db = db
        self.views_path = views
        self._submit = submit
        self._ledger: Ledger | None = None
        self._writer: Ledger | None = None
        self._views: Views | None = None
        self._views_lock: asyncio.Lock | None = None
        self._write_lock = threading.Lock()
        self._open_lock = threading.Lock()
        self._snapshots: OrderedDict[tuple, Any] = OrderedDict()

    # --- opening ---------------------------------------------------------------

    @property
    def ledger(self) -> Ledger:
        with self._open_lock:
            if self._ledger is None:
                self._ledger = Ledger(self.db, mode="read")
            return self._ledger

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await anyio.to_thread.run_sync(fn, *args)

    async def views(self) -> Views:
        if self._views is None:
            ledger = await self._run(lambda: self.ledger)
            self._views = Views(ledger, self.views_path)
            self._views_lock = asyncio.Lock()
        return self._views

    async def close(self) -> None:
        if self._views is not None:
            await self._views.close()
            self._views = None
        for led in (self._ledger, self._writer):
            if led is not None:
                led.close()
        self._ledger = self._writer = None

    async def _read_views(self, fn: Callable[[Views], Any]) -> Any:
        v = await self.views()
        assert self._views_lock is not None
        async with self._views_lock:
            return await fn(v)

    # --- time --------------------------------------------------------------------

    async def head(self) -> int:
        return await self._run(lambda: self.ledger.head())

    async def clock(self) -> datetime | None:
        """The ledger's clock (its latest tick), None for a new ledger."""
        return await self._run(lambda: self.ledger.now())

    def _point(self, when: When) -> asof.Point:
        return asof.resolve(self.ledger, when.as_of, None, when.known_at)

    def _snapshot(self, when: When) -> tuple[Any, datetime]:
        """The projections as of ``when`` (replayed in memory; a few kept per head)."""
        point = self._point(when)
        key = (point.position, point.upto, point.as_of, point.at)
        hit = self._snapshots.get(key)
        if hit is None:
            hit = (asof.snapshot(self.ledger, point), asof.evaluation_time(point))
            self._snapshots[key] = hit
            while len(self._snapshots) > 4:
                self._snapshots.popitem(last=False)
        return hit

    async def now_or_clock(self) -> datetime:
        return (await self.clock()) or datetime.now(timezone.utc)

    # --- Manage Orders -----------------------------------------------------------

    async def orders(self, when: When, status: str | None, search: str | None,
                     page: int) -> tuple[list[dict], bool]:
        """One page of Manage Orders (newest purchase first) and whether more follow."""
        offset = (page - 1) * PAGE_SIZE
        if search:
            sel = pread.Page()
        else:
            sel = pread.Page(limit=PAGE_SIZE + 1, offset=offset)
        if when.past:
            rows = await self._run(lambda: self._snapshot(when)[0].orders(status, sel))
        else:
            rows = await self._read_views(lambda v: v.orders(status, sel))
        if search:
            needle = search.strip()
            rows = [r for r in rows if needle in r["order_id"]][offset:offset + PAGE_SIZE + 1]
        return rows[:PAGE_SIZE], len(rows) > PAGE_SIZE

    async def order_page(self, when: When, order_id: str) -> dict | None:
        """The order's state, its history (steps) and the explanation, at ``when``."""
        def work() -> dict | None:
            if when.past:
                steps = asof.steps_as_of(self.ledger, order_id, self._point(when))
            else:
                steps = order_history(self.ledger, order_id)
            if not steps:
                return None
            return {"state": steps[-1].state, "steps": [s.as_dict() for s in steps],
                    "explain": explain(self.ledger, order_id, steps)}
        return await self._run(work)

    # --- inventory, metrics, reports --------------------------------------------------

    async def inventory(self, when: When) -> list[dict]:
        if when.past:
            return await self._run(lambda: self._snapshot(when)[0].inventory())
        return await self._read_views(lambda v: v.inventory())

    async def metrics(self, when: When) -> tuple[dict, dict]:
        """The metrics now (or as of) and their daily points from the ledger's start."""
        if when.past:
            def past() -> dict:
                snap, at = self._snapshot(when)
                return snap.metrics(at)
            current = await self._run(past)
        else:
            at = await self.now_or_clock()
            current = await self._read_views(lambda v: v.metrics(at))
        trend = await self._run(lambda: metrics_over_time(
            self.ledger, self._point(when) if when.past else None))
        return current, trend

    async def report(self, when: When, kind: str) -> str:
        if when.past:
            def past() -> str:
                snap, at = self._snapshot(when)
                return snap.report_orders(at) if kind == "orders" else snap.report_unshipped(at)
            return await self._run(past)
        at = await self.now_or_clock()
        if kind == "orders":
            return await self._read_views(lambda v: v.report_orders(at))
        return await self._read_views(lambda v: v.report_unshipped(at))

    # --- writing -----------------------------------------------------------------------

    def _execute(self, command: dict, principal: Any) -> dict:
        if self._submit is not None:
            return self._submit(command, principal)
        with self._write_lock:
            if self._writer is None:
                self._writer = Ledger(self.db)
            return self._writer.execute(command).as_dict()

    async def submit(self, command: dict, principal: Any) -> dict:
        out = await self._run(self._execute, command, principal)
        self._snapshots.clear()
        return out
