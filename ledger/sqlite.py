"""The SQLite backend: the ledger's recorder and the ledger file read directly.

:class:`LedgerSQLiteRecorder` is the library's SQLite application recorder,
extended with the ledger's tables (written in the same transaction as the
events). :class:`SQLiteFileLog` is the fast :class:`~ledger.eventlog.EventLog`
of a SQLite ledger file: a read-only connection of its own (the reader's URI:
``mode=ro``, or ``immutable=1`` on read-only storage) and one plain query per
batch over the events table, ``rowid, originator_id, topic, state``.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, Sequence, cast

from eventsourcing.persistence import IntegrityError, OperationalError, StoredEvent
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteCursor

from .codec import StoredRow
from .domain import ORDER_PREFIX
from .errors import LedgerBusy, LedgerReadOnly
from .eventlog import RawEvent
from .store import TOKENS_SQLITE, LedgerRecorderMixin


EXTRA_TABLES_SQLITE = [
    "CREATE TABLE IF NOT EXISTS ledger_commands ("
    " command_id TEXT PRIMARY KEY, type TEXT NOT NULL, at_us INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS ledger_deadlines ("
    " order_id TEXT PRIMARY KEY, due_us INTEGER NOT NULL, kind TEXT NOT NULL) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS ledger_deadlines_due ON ledger_deadlines (due_us)",
    "CREATE TABLE IF NOT EXISTS ledger_clock ("
    " id INTEGER PRIMARY KEY CHECK (id = 1), at TEXT NOT NULL, at_us INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS ledger_chain (position INTEGER PRIMARY KEY, hash BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS ledger_commits ("
    " position INTEGER PRIMARY KEY, recorded_us INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS ledger_conflicts ("
    " id INTEGER PRIMARY KEY, recorded_us INTEGER NOT NULL, command_id TEXT NOT NULL,"
    " type TEXT NOT NULL, order_id TEXT NOT NULL, at_us INTEGER NOT NULL,"
    " deadline_us INTEGER NOT NULL, deadline TEXT NOT NULL, command TEXT NOT NULL)",
    TOKENS_SQLITE,
]


class LedgerSQLiteRecorder(LedgerRecorderMixin, SQLiteApplicationRecorder):
    def __init__(self, datastore: Any, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        pool = datastore.pool
        if "mode=ro" in pool.db_name or "immutable=1" in pool.db_name:
            # a reader leaves the file's journal mode alone: the library would switch a
            # rollback-journal file (a backup copy) to WAL, a write a reader cannot make
            pool.is_journal_mode_wal = True

    def construct_create_table_statements(self) -> list[str]:
        return super().construct_create_table_statements() + EXTRA_TABLES_SQLITE

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        # BEGIN IMMEDIATE takes the write lock up front, so two writers never
        # deadlock upgrading a read lock, and rowids below are ours alone.
        pool = self.datastore.pool
        conn = pool.get_connection(is_writer=True)
        try:
            cursor = conn.cursor()
            try:
                cursor.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if "readonly" in str(exc).lower():
                    raise LedgerReadOnly(pool.db_name, str(exc)) from None
                raise LedgerBusy(
                    f"the ledger file is locked by another writer ({exc}); try again") from None
            try:
                ids = self._insert_events(cursor, stored_events, **kwargs)
                conn.commit()
            except sqlite3.IntegrityError as exc:
                conn.rollback()
                raise IntegrityError(exc) from exc
            except sqlite3.OperationalError as exc:
                conn.rollback()
                raise OperationalError(exc) from exc
            except BaseException:
                conn.rollback()
                raise
            return ids
        finally:
            pool.put_connection(conn)

    def build_chain(self) -> int:
        """The one-off migration: chain every stored event; how many were hashed."""
        pool = self.datastore.pool
        conn = pool.get_connection(is_writer=True)
        try:
            cursor = conn.cursor()
            cursor.execute("BEGIN IMMEDIATE")
            try:
                done = self._build_chain(cursor)
                conn.commit()
                return done
            except BaseException:
                conn.rollback()
                raise
        finally:
            pool.put_connection(conn)

    def _insert_events(self, c: SQLiteCursor, stored_events: Sequence[StoredEvent],
                       **kwargs: Any) -> Sequence[int] | None:
        ids: list[int] = []
        if stored_events:
            c.execute(f"SELECT MAX(rowid) FROM {self.events_table_name}")
            last = c.fetchone()[0] or 0
            prev = self._chain_next(c, last)
            rows: Sequence[tuple[str, int, str, bytes]]
            if isinstance(stored_events[0], tuple):
                rows = cast("Sequence[StoredRow]", stored_events)  # the mapper's rows as they are
            else:  # the library's StoredEvent (an imported bundle's events)
                rows = [(str(s.originator_id), s.originator_version, s.topic, s.state)
                        for s in stored_events]
            c.executemany(self.insert_events_statement, rows)
            ids = list(range(last + 1, last + 1 + len(stored_events)))
            self._write_chain(c, prev, [(pos, *row) for pos, row in zip(ids, rows)])
            self._write_commits(c, ids, kwargs.get("batch"))
        self._write_batch(c, kwargs.get("batch"))
        return ids

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(sql, params)
            return [tuple(r) for r in c.fetchall()]


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
