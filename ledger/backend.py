"""Where a ledger lives, and every question whose answer depends on it.

``--db`` names a SQLite file (or ``:memory:``) or a PostgreSQL schema
(``postgresql://user@host:port/db?schema=name``). :class:`Backend` is the one
place that tells them apart for the rest of the code: the file behind a SQLite
ledger, whether a ledger exists there, where its views live by default, whether
files can be copied for a backup, the writers' lock and the fast reader of its
events.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlparse

from .store import is_postgres, resolve_db, sqlite_file

if TYPE_CHECKING:
    from .eventlog import EventLog
    from .locks import WriterLock


@dataclass(frozen=True)
class Backend:
    """The backend of the ledger at ``location`` (a resolved ``--db``)."""

    location: str

    @classmethod
    def of(cls, db: str | None) -> Backend:
        """The backend of ``db``, else ``$ORDER_LEDGER_DB``, else the default file."""
        return cls(resolve_db(db))

    @property
    def name(self) -> str:
        """``postgresql``, ``sqlite`` (a file) or ``memory``."""
        if self.is_postgres:
            return "postgresql"
        return "sqlite" if self.sqlite_file else "memory"

    @property
    def is_postgres(self) -> bool:
        return is_postgres(self.location)

    @property
    def sqlite_file(self) -> str | None:
        """The file behind a SQLite ledger (None: PostgreSQL, in memory, a URI)."""
        return sqlite_file(self.location)

    @property
    def dense_positions(self) -> bool:
        """Whether global positions have no gaps: SQLite rowids do; a PostgreSQL
        sequence skips the numbers of rolled-back inserts."""
        return not self.is_postgres

    @property
    def copies_files(self) -> bool:
        """Whether ``backup`` and ``restore`` can copy the ledger (SQLite files only;
        PostgreSQL has pg_dump and pg_restore)."""
        return not self.is_postgres

    def exists(self) -> bool:
        """Whether a ledger is stored here. Asking creates nothing."""
        from .application import ledger_exists

        return ledger_exists(self.location)

    def default_views_path(self) -> str:
        """Where the views of this ledger live when ``--views`` and
        ``$ORDER_LEDGER_VIEWS`` say nothing: beside a ledger file (``X.db`` ->
        ``X.views.db``; other names get ``.views.db`` appended); for a PostgreSQL
        ledger ``order-ledger-<db>-<schema>.views.db`` in the current directory;
        ``:memory:`` for an in-memory ledger."""
        if self.is_postgres:
            u = urlparse(self.location)
            name = (u.path or "/").lstrip("/") or "postgres"
            schema = parse_qs(u.query).get("schema", ["public"])[0]
            safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in f"{name}-{schema}")
            return f"order-ledger-{safe}.views.db"
        path = self.sqlite_file
        if path is None:
            return ":memory:"
        root, ext = os.path.splitext(path)
        return root + ".views.db" if ext == ".db" else path + ".views.db"

    def fast_log(self, recorder: Any) -> EventLog | None:
        """The direct reader of a SQLite ledger file (:class:`ledger.sqlite.SQLiteFileLog`)
        or a PostgreSQL ledger (:class:`ledger.postgres.PostgresLog`) opened by
        ``recorder``; None when there is none (in memory, a file that cannot be
        opened so)."""
        from .sqlite import LedgerSQLiteRecorder, SQLiteFileLog

        if self.is_postgres:
            from .postgres import PostgresLog

            return PostgresLog.of(recorder)
        path = self.sqlite_file
        if not isinstance(recorder, LedgerSQLiteRecorder) or not path or not os.path.exists(path):
            return None
        uri = recorder.datastore.pool.db_name  # a reader's read-only URI (mode=ro/immutable)
        return SQLiteFileLog.open(path, recorder.events_table_name, uri)

    def writer_lock(self, recorder: Any, env: dict[str, str], reading: bool) -> WriterLock:
        """The lock a writer of the ledger opened by ``recorder`` holds for each batch
        (:mod:`ledger.locks`): an advisory lock on PostgreSQL (``POSTGRES_LOCK_TIMEOUT``
        seconds, default 10), ``flock`` on ``<ledger file>-writer.lock`` for a SQLite
        file (the store's lock timeout), none in memory or when only ``reading``."""
        from .locks import AdvisoryLock, FileLock, WriterLock, lock_file_of

        datastore = recorder.datastore
        if self.is_postgres:
            return WriterLock(AdvisoryLock(datastore,
                                           float(env.get("POSTGRES_LOCK_TIMEOUT") or 10)))
        pool = getattr(datastore, "pool", None)
        if reading or pool is None or getattr(pool, "is_sqlite_memory_mode", True):
            return WriterLock(None)
        return WriterLock(FileLock(lock_file_of(pool.db_name),
                                   float(getattr(pool, "lock_timeout", None) or 10)))
