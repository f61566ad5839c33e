"""The ledger writers' lock, one kind per backend.

Every writer holds the lock for one whole batch, so two writers never decide
on the same state. :meth:`ledger.backend.Backend.writer_lock` picks the kind:

- SQLite file: an exclusive ``flock`` on ``<ledger file>-writer.lock``
  (:class:`FileLock`; ``backup`` takes the same file with :func:`take_file_lock`);
- PostgreSQL: a transaction-scoped advisory lock keyed by the schema
  (:class:`AdvisoryLock`);
- in memory, or a ledger opened for reading: none.

Both locks are released by the operating system or the server when the process
dies, so a killed writer never leaves the ledger locked. Waiting longer than the
store's lock timeout raises :class:`ledger.errors.LedgerBusy`.
"""

from __future__ import annotations

import hashlib
import os
import random
import time
from typing import Any, Callable

from .errors import LedgerBusy, StoreError
from .store import connection_lost


class ConnectionLost(ConnectionError):
    """Raised inside a batch when the PostgreSQL connection failed (not a lock
    timeout, not a constraint): the batch is rolled back and retried once the
    server answers again."""


def _busy(timeout: float) -> LedgerBusy:
    return LedgerBusy(
        f"the ledger is busy: another writer held it for more than {timeout:g} s; try again")


def take_file_lock(fd: int, timeout: float, busy: Callable[[], Exception]) -> None:
    """Hold an exclusive ``flock`` on ``fd``, waiting up to ``timeout`` seconds
    (with growing, jittered pauses); raises ``busy()`` when it cannot."""
    import fcntl

    deadline = time.monotonic() + timeout
    pause = 0.0005
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise busy() from None
            time.sleep(random.uniform(pause / 2, pause))
            pause = min(pause * 2, 0.02)


def lock_file_of(ledger_file: str) -> str:
    """The writers' lock file of the SQLite ledger at ``ledger_file``."""
    return os.path.abspath(ledger_file) + "-writer.lock"


class FileLock:
    """The writers' lock of a SQLite ledger file: ``flock`` on its lock file.

    A lock file that cannot be created (a read-only directory) leaves the
    writers to SQLite's own locking and their optimistic retries."""

    def __init__(self, path: str, timeout: float) -> None:
        self.path: str | None = path
        self.timeout = timeout
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            import fcntl  # noqa: F401
        except ImportError:  # pragma: no cover - not POSIX: rely on optimistic retries
            return
        if self.path is None:
            return
        if self._fd is None:
            try:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError:
                self.path = None
                return
        take_file_lock(self._fd, self.timeout, lambda: _busy(self.timeout))

    def release(self, ok: bool) -> None:
        if self._fd is not None and self.path is not None:
            import fcntl

            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class AdvisoryLock:
    """The writers' lock of a PostgreSQL ledger: ``pg_advisory_xact_lock`` keyed
    by the schema, held in a transaction of a pooled connection of its own."""

    def __init__(self, datastore: Any, timeout: float) -> None:
        self.datastore = datastore
        self.timeout = timeout
        digest = hashlib.blake2b(f"order-ledger:{datastore.schema}".encode(), digest_size=8)
        self.key = int.from_bytes(digest.digest(), "big", signed=True)
        self._held: tuple[Any, Any] | None = None

    def acquire(self) -> None:
        cm = self.datastore.get_connection()
        conn = cm.__enter__()
        try:
            if conn.autocommit:
                conn.execute("BEGIN")
            conn.execute("SELECT set_config('lock_timeout', %s, true)",
                         (f"{int(self.timeout * 1000)}ms",))
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (self.key,))
        except BaseException as exc:
            try:
                self._end(conn)
            finally:
                try:
                    cm.__exit__(None, None, None)
                except Exception:
                    pass
            import psycopg

            if isinstance(exc, psycopg.errors.LockNotAvailable):
                raise _busy(self.timeout) from None
            if connection_lost(exc):
                raise ConnectionLost(f"cannot take the ledger's writer lock: {exc}") from exc
            if isinstance(exc, psycopg.OperationalError):
                raise StoreError(f"cannot take the ledger's writer lock: {exc}") from None
            raise
        self._held = (cm, conn)

    def release(self, ok: bool) -> None:
        if self._held is None:
            return
        cm, conn = self._held
        self._held = None
        try:
            self._end(conn)  # ends the transaction: releases the advisory lock
        except Exception:
            pass
        try:
            cm.__exit__(None, None, None)
        except Exception:
            pass

    @staticmethod
    def _end(conn: Any) -> None:
        if conn.autocommit:
            conn.execute("ROLLBACK")
        else:
            conn.rollback()

    def close(self) -> None:
        self.release(False)


class WriterLock:
    """The lock a ledger's writer holds for one whole batch; re-entrant within one
    ``Ledger``. ``kind`` is a :class:`FileLock`, an :class:`AdvisoryLock`, or None
    (nothing to lock: in memory, or opened for reading)."""

    def __init__(self, kind: FileLock | AdvisoryLock | None, timeout: float = 10.0) -> None:
        self.kind = kind
        self.timeout = kind.timeout if kind is not None else timeout
        self.depth = 0

    @property
    def path(self) -> str | None:
        """The lock file of a SQLite ledger (None for the others)."""
        return self.kind.path if isinstance(self.kind, FileLock) else None

    @property
    def pg_key(self) -> int | None:
        """The advisory lock's key of a PostgreSQL ledger (None for the others)."""
        return self.kind.key if isinstance(self.kind, AdvisoryLock) else None

    def __enter__(self) -> WriterLock:
        if self.depth == 0 and self.kind is not None:
            self.kind.acquire()
        self.depth += 1
        return self

    def __exit__(self, *exc: Any) -> None:
        self.depth -= 1
        if self.depth == 0 and self.kind is not None:
            self.kind.release(exc[0] is None)

    def close(self) -> None:
        if self.kind is not None:
            self.kind.close()
