"""Audit queries: events across all orders, served from the ``audit`` index view.

The ``audit`` projection (``projections/model.py``) keeps one row per event in
the views file -- position, business time (µs and ISO text), type, actor,
command id, order id, SKU, reason -- with an index per filter, so a query
over millions of events reads only the rows it returns. The events' own
fields are decoded from the ledger by position, only for the rows returned.

Filters combine with AND. ``since`` and ``until`` are both **inclusive** and
compare the event's business time ``at`` (a deadline's event carries its due
time). ``reason`` matches the reason exactly, or one of the reasons of an
adjustment with several (shown comma-joined: ``CustomerReturn,NoInventory``).
``limit`` keeps the newest N matches, after skipping the newest ``offset``
(``limit=50, offset=50``: the 50 before the newest 50); rows always come
oldest first (newest last).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable

from ledger import events as ev
from ledger.application import Ledger
from ledger.store import to_us
from projections import AUDIT_COLUMNS

from .history import event_fields

#: the columns a reader gets (``at_us`` is for sorting and filtering only)
OUTPUT_COLUMNS: tuple[str, ...] = (
    "position", "at", "type", "actor", "command_id", "order_id", "sku", "reason")


class AuditError(ValueError):
    """The query cannot be run as given."""


@dataclass
class AuditQuery:
    order_id: str | None = None
    types: tuple[str, ...] = ()
    actor: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    reason: str | None = None
    limit: int | None = None
    offset: int = 0  # skip this many of the newest matches (page back with limit)
    #: only events at or before this position (what was recorded by ``--known-at``)
    upto: int | None = None
    #: only events after this position (paging forward: the last position of a page)
    after: int | None = None
    #: the oldest N matches (after ``after``), in position order; not with ``limit``
    first: int | None = None

    def __post_init__(self) -> None:
        unknown = [t for t in self.types if t not in ev.EVENT_TYPES]
        if unknown:
            raise AuditError(f"unknown event type {unknown[0]!r}; known: "
                             + ", ".join(sorted(ev.EVENT_TYPES)))
        for name, t in (("since", self.since), ("until", self.until)):
            if t is not None and t.tzinfo is None:
                raise AuditError(f"--{name} needs a UTC offset")
        if self.limit is not None and self.limit < 1:
            raise AuditError("--limit is 1 or more")
        if self.offset < 0:
            raise AuditError("--offset is 0 or more")
        if self.first is not None and (self.first < 1 or self.limit is not None
                                       or self.offset):
            raise AuditError("first is 1 or more, and not with limit or offset")

    def sql(self, table: str = "audit") -> tuple[str, list[Any]]:
        """The SELECT and its parameters."""
        where: list[str] = []
        args: list[Any] = []
        if self.order_id is not None:
            where.append("order_id = ?")
            args.append(self.order_id)
        if self.types:
            where.append(f"type IN ({', '.join('?' * len(self.types))})")
            args.extend(self.types)
        if self.actor is not None:
            where.append("actor = ?")
            args.append(self.actor)
        if self.since is not None:
            where.append("at_us >= ?")
            args.append(to_us(self.since))
        if self.until is not None:
            where.append("at_us <= ?")
            args.append(to_us(self.until))
        if self.upto is not None:
            where.append("position <= ?")
            args.append(self.upto)
        if self.after is not None:
            where.append("position > ?")
            args.append(self.after)
        if self.reason is not None:
            # exact, or one of an adjustment's several reasons (stored as ",A,B,": one
            # range of the reason index, see projections.model._audit_reason)
            where.append("(reason = ? OR (reason >= ',' AND reason < '-' AND "
                         "instr(reason, ',' || ? || ',') > 0))")
            args.extend([self.reason, self.reason])
        cols = ", ".join(AUDIT_COLUMNS)
        sql = f"SELECT {cols} FROM {table}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        if self.limit is not None or self.offset:
            # the newest N (after skipping the newest ``offset``), put back in
            # position order by the caller
            sql += " ORDER BY position DESC LIMIT ? OFFSET ?"
            args.extend([-1 if self.limit is None else self.limit, self.offset])
        elif self.first is not None:
            sql += " ORDER BY position LIMIT ?"
            args.append(self.first)
        else:
            sql += " ORDER BY position"
        return sql, args


def to_row(raw: Iterable[Any]) -> dict[str, Any]:
    r = dict(zip(AUDIT_COLUMNS, raw))
    reason = r["reason"]
    if reason is not None and reason.startswith(","):  # several: ",A,B," -> "A,B"
        r["reason"] = reason.strip(",")
    return {k: r[k] for k in OUTPUT_COLUMNS}


async def query(views: Any, q: AuditQuery) -> list[dict[str, Any]]:
    """Run ``q`` on a :class:`projections.Views` (already caught up by the caller)."""
    db = await views.open()
    rows = await db.execute_fetchall(*q.sql())
    out = [to_row(r) for r in rows]
    if q.limit is not None or q.offset:
        out.reverse()
    return out


def query_sqlite(conn: Any, q: AuditQuery) -> list[dict[str, Any]]:
    """The same on a plain ``sqlite3`` connection to a views file."""
    sql, args = q.sql()
    out = [to_row(r) for r in conn.execute(sql, args).fetchall()]
    if q.limit is not None or q.offset:
        out.reverse()
    return out


def events_at(ledger: Ledger, positions: Iterable[int]) -> dict[int, tuple[str, ev.Event]]:
    """Decode the events at the given global positions: {position: (aggregate id, payload)}."""
    return ledger.events_at(positions)


def with_fields(ledger: Ledger, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add each event's own fields (decoded from the ledger) as ``fields``, and when
    the ledger recorded it as ``recorded_at``."""
    events = events_at(ledger, (r["position"] for r in rows))
    for r in rows:
        hit = events.get(r["position"])
        r["fields"] = event_fields(hit[1]) if hit else None
        r["recorded_at"] = ev.recorded_at(hit[1]).isoformat() if hit else None
    return rows
