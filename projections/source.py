"""Reading the ledger's events in global order, in batches, for the projections.

On PostgreSQL (and any recorder) batches come from
``ledger.recorder.select_notifications``. On a SQLite ledger file the same rows
are read through a read-only connection of our own with one plain query
(``rowid, originator_id, topic, state``): the library builds a
``Notification`` object per row, which costs about as much as decoding the
event, and rebuilding views is what users wait on. Both paths decode with
``ledger.mapper.decode_state`` (so cipher, compression and upcasters apply),
except that a batch of plain payloads of current versions is decoded with the
msgspec decoders directly (``plain_decoders``); any batch with another row
falls back to ``decode_state`` whole.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path
from typing import Any

from ledger import events as ev
from ledger.store import LedgerSQLiteRecorder, sqlite_file

__all__ = ["EventSource", "Row", "sqlite_file"]

Row = tuple[int, str, ev.Event]


class EventSource:
    """The ledger's events after a position, up to a position, in batches."""

    def __init__(self, ledger: Any, partition: tuple[int, int] | None = None) -> None:
        self.ledger = ledger
        self.decode = ledger.mapper.decode_state
        plain = getattr(ledger.mapper, "plain_decoders", None)
        self._plain = plain() if plain is not None else None
        self._conn: sqlite3.Connection | None = None
        self._table = ""
        #: (k, n): only events of aggregates in part k of n (see :meth:`raw`)
        self.partition = partition
        rec = ledger.recorder
        path = sqlite_file(ledger.db)
        if isinstance(rec, LedgerSQLiteRecorder) and path and os.path.exists(path):
            try:
                name = rec.datastore.pool.db_name  # a reader's read-only URI (mode=ro/immutable)
                uri = name if name.startswith("file:") else (
                    Path(path).absolute().as_uri() + "?mode=ro")
                conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
                conn.execute("PRAGMA busy_timeout = 10000")
                conn.execute(f"SELECT MAX(rowid) FROM {rec.events_table_name}").fetchone()
            except sqlite3.Error:
                pass  # e.g. a read-only directory: read through the recorder instead
            else:
                self._conn = conn
                self._table = rec.events_table_name

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def head(self) -> int:
        """The newest position (0 for an empty ledger)."""
        if self._conn is not None:
            return int(self._conn.execute(f"SELECT MAX(rowid) FROM {self._table}").fetchone()[0] or 0)
        return int(self.ledger.head())

    @property
    def direct(self) -> bool:
        """Whether events are read straight from a SQLite ledger file."""
        return self._conn is not None

    def raw(self, after: int, limit: int, upto: int | None = None) -> list[tuple[int, str, str, Any]]:
        """Undecoded ``(position, aggregate id, topic, state)`` rows after ``after``.

        With a partition (k, n) -- direct reading only -- just the events of orders
        whose id's last character code is k modulo n, and (in part 0) every
        non-order event: the partitions are disjoint and cover the stream.
        """
        if self._conn is not None:
            where, args = "rowid > ?", [after]
            if upto is not None:
                where += " AND rowid <= ?"
                args.append(upto)
            if self.partition is not None:
                k, n = self.partition
                where += (" AND (CASE WHEN substr(originator_id, 1, 6) = 'order:' "
                          "THEN unicode(substr(originator_id, -1)) % ? ELSE 0 END) = ?")
                args += [n, k]
            return self._conn.execute(
                f"SELECT rowid, originator_id, topic, state FROM {self._table} "
                f"WHERE {where} ORDER BY rowid LIMIT ?", (*args, limit)).fetchall()
        if self.partition is not None:
            raise ValueError("partitioned reading needs a SQLite ledger file")
        rows = self.ledger.recorder.select_notifications(start=after + 1, limit=limit, stop=upto)
        return [(n.id, str(n.originator_id), n.topic, n.state) for n in rows]

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
