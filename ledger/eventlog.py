"""The ledger's event log as the read side sees it: a narrow interface.

Readers (the projections, replay, audit) ask for positions and events through
:class:`EventLog`; none of them touches a recorder, a table or SQL of the
ledger. Three implementations:

- :class:`RecorderLog` -- through the ledger's recorder, on every backend;
- :class:`ledger.sqlite.SQLiteFileLog` -- a SQLite ledger file read directly
  through a read-only connection of its own with one plain query per batch:
  the library builds a ``Notification`` object per row, which costs about as
  much as decoding the event, and rebuilding views is what users wait on;
- :class:`ledger.postgres.PostgresLog` -- a PostgreSQL ledger through its
  recorder, and one partition with a plain query on a connection of its own.

The last two can read one partition of the orders (for a parallel rebuild).
:meth:`ledger.application.Ledger.event_log` picks one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .store import LedgerRecorderMixin

#: an undecoded event: (global position, aggregate id, topic, stored state)
RawEvent = tuple[int, str, str, Any]


class EventLog(Protocol):
    """Positions, events in global order, and the indexes written with them."""

    #: whether :meth:`read` can take a ``partition``
    partitionable: bool

    def head(self) -> int:
        """The newest global position (0 for an empty log)."""
        ...

    def read(self, after: int, limit: int, upto: int | None = None,
             partition: tuple[int, int] | None = None) -> list[RawEvent]:
        """Up to ``limit`` events after position ``after`` (and at most ``upto``), in order.

        ``partition`` ``(k, n)``: only the events of orders whose id's last character
        code is k modulo n, and (in part 0) every event that is not an order's: the
        parts are disjoint and cover the log.
        """
        ...

    def close(self) -> None:
        ...


class RecorderLog:
    """The log through the ledger's recorder (SQLite or PostgreSQL)."""

    partitionable = False

    def __init__(self, recorder: LedgerRecorderMixin) -> None:
        self.recorder = recorder

    def head(self) -> int:
        return self.recorder.head()

    def read(self, after: int, limit: int, upto: int | None = None,
             partition: tuple[int, int] | None = None) -> list[RawEvent]:
        if partition is not None:
            raise ValueError("partitioned reading needs the direct reader of a SQLite "
                             "ledger file or a PostgreSQL ledger")
        rows = self.recorder.select_notifications(  # type: ignore[attr-defined]
            start=after + 1, limit=limit, stop=upto)
        return [(n.id, str(n.originator_id), n.topic, n.state) for n in rows]

    def close(self) -> None:
        pass
