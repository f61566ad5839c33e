"""What the page reads and writes: the service's own paths to the library.

The page runs inside ``order-ledger serve`` and uses what the API uses
(``app.state.service``): reads through ``Service.read_views`` (the stored views,
caught up first, or for a past view the projections replayed in memory by
:mod:`replay.asof`), blocking reads on the service's reader pool, and writes
through its group-commit writer -- the path of ``POST /api/commands``. No rule
lives here.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

import anyio.to_thread

from projections import read as pread
from projections.rows import plain
from replay import asof
from replay.history import explain, order_history
from replay.trend import metrics_over_time

PAGE_SIZE = 25
#: the daily metrics last computed (see Backend.metrics), oldest first
_TRENDS: dict[tuple, dict] = {}
_TRENDS_LOCK = threading.Lock()


class PageError(Exception):
    """A read the page cannot do (a bad time, views not readable): the message says why."""


@dataclass(frozen=True)
class When:
    """The time a page shows: the present (both None), or a past view."""

    as_of: datetime | None = None
    known_at: datetime | None = None

    @property
    def past(self) -> bool:
        return self.as_of is not None or self.known_at is not None


def _message(exc: Exception) -> str:
    text = getattr(exc, "message", None) or str(exc)
    hint = getattr(exc, "hint", None)
    return f"{text} ({hint})" if hint else text


class Backend:
    def __init__(self, svc: Any) -> None:
        self.svc = svc

    # --- plumbing ---------------------------------------------------------------------

    async def _blocking(self, fn: Callable[[Any], Any]) -> Any:
        """``fn(ledger)`` on one of the service's reading ledgers, in a thread."""
        def run() -> Any:
            with self.svc.readers.ledger() as led:
                try:
                    return fn(led)
                except (OverflowError, ValueError) as exc:  # a time the library cannot use
                    raise PageError(f"cannot read the ledger at that time: {exc}") from None
        return await anyio.to_thread.run_sync(run)

    async def _read(self, when: When, from_views: Callable[[Any], Any],
                    from_snapshot: Callable[..., Any], names: list[str],
                    with_time: bool = False) -> Any:
        from order_ledger.service.errors import ServiceError

        try:
            return await self.svc.read_views(from_views, from_snapshot, when.as_of, None,
                                             when.known_at, names, with_time)
        except ServiceError as exc:
            raise PageError(_message(exc)) from None
        except (OverflowError, ValueError) as exc:  # a time the library cannot use
            raise PageError(f"cannot read the ledger at that time: {exc}") from None

    def _point(self, led: Any, when: When) -> asof.Point:
        try:
            return asof.resolve(led, when.as_of, None, when.known_at)
        except asof.AsOfError as exc:
            raise PageError(str(exc)) from None

    async def head(self) -> int:
        return await self._blocking(lambda led: led.head())

    async def clock(self) -> datetime | None:
        """The ledger's clock (its latest tick), None for a new ledger."""
        return await self._blocking(lambda led: led.now())

    async def evaluation_time(self) -> datetime:
        """The time reports and metrics are evaluated at now: the ledger's clock, else now."""
        return (await self.clock()) or datetime.now(timezone.utc)

    # --- Manage Orders -----------------------------------------------------------

    async def orders(self, when: When, status: str | None, search: str | None,
                     page: int) -> tuple[list[dict], bool]:
        """One page of Manage Orders (newest purchase first) and whether more follow."""
        offset = (page - 1) * PAGE_SIZE
        sel = pread.Page() if search else pread.Page(limit=PAGE_SIZE + 1, offset=offset)
        rows = plain(await self._read(when, lambda v: v.orders(status, sel),
                                      lambda snap: snap.orders(status, sel), ["orders"]))
        if search:
            needle = search.strip()
            rows = [r for r in rows if needle in r["order_id"]][offset:offset + PAGE_SIZE + 1]
        return rows[:PAGE_SIZE], len(rows) > PAGE_SIZE

    async def order_page(self, when: When, order_id: str) -> dict | None:
        """The order's state, its history (steps) and the explanation, at ``when``."""
        def work(led: Any) -> dict | None:
            if when.past:
                steps = asof.steps_as_of(led, order_id, self._point(led, when))
            else:
                steps = order_history(led, order_id)
            if not steps:
                return None
            return {"state": steps[-1].state, "steps": [s.as_dict() for s in steps],
                    "explain": plain(explain(led, order_id, steps))}
        return await self._blocking(work)

    # --- inventory, metrics, reports --------------------------------------------------

    async def inventory(self, when: When) -> list[dict]:
        return plain(await self._read(when, lambda v: v.inventory(),
                                      lambda snap: snap.inventory(), ["inventory"]))

    async def metrics(self, when: When) -> tuple[dict, dict]:
        """The metrics now (or as of) and their daily points from the ledger's start."""
        at = None if when.past else await self.evaluation_time()
        current = plain(await self._read(when, lambda v: v.metrics(at),
                                         lambda snap, t: snap.metrics(t), ["metrics"],
                                         with_time=True))
        def daily(led: Any) -> dict:
            # one pass over every event: kept per (ledger, head, time asked) in this process
            key = (self.svc.config.db, led.head(), led.now(), when.as_of, when.known_at)
            with _TRENDS_LOCK:
                hit = _TRENDS.get(key)
            if hit is None:
                hit = metrics_over_time(led, self._point(led, when) if when.past else None)
                with _TRENDS_LOCK:
                    _TRENDS[key] = hit
                    while len(_TRENDS) > 8:
                        _TRENDS.pop(next(iter(_TRENDS)))
            return hit
        trend = await self._blocking(daily)
        return current, trend

    async def report(self, when: When, kind: str) -> str:
        at = None if when.past else await self.evaluation_time()
        method = {"orders": "report_orders", "unshipped": "report_unshipped",
                  "all-orders": "report_all_orders"}[kind]
        return await self._read(when, lambda v: getattr(v, method)(at),
                                lambda snap, t: getattr(snap, method)(t), ["orders"],
                                with_time=True)

    # --- writing -----------------------------------------------------------------------

    async def submit(self, command: dict) -> dict:
        """One command through the service's group-commit writer (as POST /api/commands)."""
        import msgspec

        outcomes = await self.svc.writer.submit([(1, msgspec.json.encode(command))])
        return outcomes[0].as_dict()
