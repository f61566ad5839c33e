"""Verifying stored views against a replay of the events: used by ``order-ledger
check`` (is every view equal to a replay?) and ``order-ledger diff --views``
(row by row, how do they differ?).

Each view is judged at its own checkpoint: a view behind the ledger's head is
compared with the events up to its checkpoint, a view never built (or whose
tables are missing) with the whole log (what a sync would build). Nothing is
synced or rebuilt.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable, Iterable

from .memory import Snapshot, project
from .model import PROJECTIONS

if TYPE_CHECKING:
    from ledger.application import Ledger

    from .views import Views


@dataclass(frozen=True)
class ViewPoint:
    """Where one stored view stands against the ledger's head."""

    name: str
    checkpoint: int
    head: int
    #: it has a checkpoint and every one of its tables
    built: bool

    @property
    def ahead(self) -> bool:
        """A checkpoint past the head: the view belongs to another ledger."""
        return self.checkpoint > self.head

    @property
    def behind(self) -> bool:
        return self.built and self.checkpoint < self.head

    @property
    def target(self) -> int:
        """The position to compare at: the checkpoint (at most the head) when built,
        else the head."""
        return min(self.checkpoint, self.head) if self.built else self.head


async def view_points(views: Views, head: int) -> dict[str, ViewPoint]:
    """Every projection's :class:`ViewPoint`, by name, in the projections' order."""
    cps = await views.checkpoints()
    out: dict[str, ViewPoint] = {}
    for name in PROJECTIONS:
        cp = cps.get(name, 0)
        built = cp > 0 and await views.is_built(name)
        out[name] = ViewPoint(name, cp, head, built)
    return out


def replays(ledger: Ledger, positions: dict[str, int]) -> dict[str, Snapshot]:
    """Each named projection replayed in memory up to its position; one replay per
    distinct position."""
    by_position: dict[int, list[str]] = {}
    for name, pos in positions.items():
        by_position.setdefault(pos, []).append(name)
    snaps: dict[str, Snapshot] = {}
    for pos, names in sorted(by_position.items()):
        events = ledger.iter_events(upto=pos) if pos > 0 else iter(())
        snap = project(events, names)
        for name in names:
            snaps[name] = snap
    return snaps


#: what each view answers, as (label, read(reader, evaluation time)); the reader is
#: the stored views (coroutines) or a :class:`Snapshot` (values)
Read = Callable[[Any, "datetime | None"], Any]
READS: dict[str, list[tuple[str, Read]]] = {
    "orders": [("orders", lambda r, at: r.orders()),
               ("the Orders report", lambda r, at: r.report_orders(at)),
               ("the Unshipped Orders report",
                lambda r, at: r.report_unshipped(at) if at else "")],
    "inventory": [("inventory", lambda r, at: r.inventory())],
    "metrics": [("metrics", lambda r, at: r.metrics(at) if at else {})],
    "notifications": [("notifications", lambda r, at: r.notifications())],
}


@dataclass(frozen=True)
class Mismatch:
    """A read of a stored view that differs from the same read of a replay."""

    view: str
    what: str
    checkpoint: int


async def mismatches(views: Views, ledger: Ledger, points: Iterable[ViewPoint],
                     at: datetime | None) -> list[Mismatch]:
    """The reads of each built view (not ahead of the head) that differ from a replay
    of the events up to its checkpoint."""
    import asyncio

    chosen = {p.name: p.checkpoint for p in points if p.built and not p.ahead}
    snaps = replays(ledger, chosen)
    out: list[Mismatch] = []
    for name, cp in sorted(chosen.items()):
        for what, read in READS.get(name, []):
            stored = read(views, at)
            if asyncio.iscoroutine(stored):
                stored = await stored
            if stored != read(snaps[name], at):
                out.append(Mismatch(name, what, cp))
    return out
