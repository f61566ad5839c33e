"""Reading the ledger's events in global order, in batches, for the projections.

The events come through the ledger's narrow event-log interface
(:meth:`ledger.application.Ledger.event_log`): on a SQLite ledger file or a
PostgreSQL ledger its direct reader (one plain query per batch; only these read
one partition of the orders, for the parallel rebuild), else the recorder. Payloads are decoded with
the ledger's decoder (so cipher, compression and upcasters apply), except that a
batch of plain payloads of current versions is decoded with the msgspec
decoders directly (``plain_decoders``); any batch with another row falls back to
the ledger's decoder whole.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from ledger import events as ev
from ledger.eventlog import EventLog, RawEvent

if TYPE_CHECKING:
    from ledger.application import Ledger

__all__ = ["EventSource", "Row"]

Row = tuple[int, str, ev.Event]


class EventSource:
    """The ledger's events after a position, up to a position, in batches."""

    def __init__(self, ledger: Ledger, partition: tuple[int, int] | None = None) -> None:
        self.ledger = ledger
        self.decode = ledger.decoder()
        self._plain = ledger.plain_decoders()
        self._log: EventLog = ledger.event_log()
        #: (k, n): only events of aggregates in part k of n (see :meth:`raw`)
        self.partition = partition

    def close(self) -> None:
        self._log.close()

    def head(self) -> int:
        """The newest position (0 for an empty ledger)."""
        return self._log.head()

    @property
    def direct(self) -> bool:
        """Whether events are read straight from the ledger's tables (a SQLite file or
        a PostgreSQL schema), which alone can read one partition."""
        return bool(self._log.partitionable)

    def raw(self, after: int, limit: int, upto: int | None = None) -> list[RawEvent]:
        """Undecoded ``(position, aggregate id, topic, state)`` rows after ``after``.

        With a partition (k, n) -- direct reading only -- just the events of orders
        whose id's last character code is k modulo n, and (in part 0) every
        non-order event: the partitions are disjoint and cover the stream.
        """
        return self._log.read(after, limit, upto, self.partition)

    def read(self, after: int, limit: int, upto: int | None = None) -> list[Row]:
        """Decoded ``(position, aggregate id, payload)`` rows after ``after``."""
        rows = self.raw(after, limit, upto)
        plain = self._plain
        if plain is not None:
            try:
                return [(p, o, plain[t].decode(s)) for p, o, t, s in rows]
            except Exception:
                pass  # an older version or a bad payload: decode_state upcasts or says which
        decode = self.decode
        return [(p, o, decode(t, s)) for p, o, t, s in rows]

    def fingerprint(self) -> str | None:
        """A digest of the first event: tells one ledger from another."""
        rows = self.raw(0, 1)
        if not rows:
            return None
        p, o, t, s = rows[0]
        h = hashlib.sha256(f"{p}|{o}|{t}|".encode())
        h.update(s if isinstance(s, bytes) else str(s).encode())
        return h.hexdigest()[:32]
