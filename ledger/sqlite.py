"""SQLite specifics of the read side: the ledger file read directly.

:class:`SQLiteFileLog` is the fast :class:`~ledger.eventlog.EventLog` of a SQLite
ledger file: a read-only connection of its own (the reader's URI: ``mode=ro``,
or ``immutable=1`` on read-only storage) and one plain query per batch over the
events table, ``rowid, originator_id, topic, state``.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from .domain import ORDER_PREFIX
from .eventlog import RawEvent


class SQLiteFileLog:
    """The events of a SQLite ledger file through a read-only connection of its own."""

    partitionable = True

    def __init__(self, conn: sqlite3.Connection, table: str) -> None:
        self._conn: sqlite3.Connection | None = conn
        self._table = table

    @classmethod
    def open(cls, path: str, table: str, uri: str | None = None) -> SQLiteFileLog | None:
        """The log of the ledger file at ``path`` (``uri``: the reader's URI, when the
        ledger was opened with one); None when it cannot be opened this way (e.g. a
        read-only directory), so the caller reads through the recorder instead."""
        if uri is None or not uri.startswith("file:"):
            uri = Path(path).absolute().as_uri() + "?mode=ro"
        try:
            conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout = 10000")
            conn.execute(f"SELECT MAX(rowid) FROM {table}").fetchone()
        except sqlite3.Error:
            return None
        return cls(conn, table)

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise ValueError("the event log is closed")
        return self._conn

    def head(self) -> int:
        return int(self._db().execute(f"SELECT MAX(rowid) FROM {self._table}").fetchone()[0] or 0)

    def read(self, after: int, limit: int, upto: int | None = None,
             partition: tuple[int, int] | None = None) -> list[RawEvent]:
        where, args = "rowid > ?", [after]
        if upto is not None:
            where += " AND rowid <= ?"
            args.append(upto)
        if partition is not None:
            k, n = partition
            where += (f" AND (CASE WHEN substr(originator_id, 1, {len(ORDER_PREFIX)}) = "
                      f"'{ORDER_PREFIX}' THEN unicode(substr(originator_id, -1)) % ? "
                      "ELSE 0 END) = ?")
            args += [n, k]
        rows: list[RawEvent] = self._db().execute(
            f"SELECT rowid, originator_id, topic, state FROM {self._table} "
            f"WHERE {where} ORDER BY rowid LIMIT ?", (*args, limit)).fetchall()
        return rows

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
