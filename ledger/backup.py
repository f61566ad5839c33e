"""Online backup and restore of a SQLite ledger.

:func:`backup` copies a live ledger with SQLite's backup API in a single step,
which reads one consistent snapshot (WAL mode: writers keep writing meanwhile
and are not blocked). The copy is written to a temporary file beside the
target, checked with ``PRAGMA integrity_check``, flushed to disk and only then
renamed into place, so an interrupted backup never leaves a half-written file
under the target name.

:func:`restore` copies a backup into a ledger location through the same API
(the target's own ``-wal``/``-shm`` files are handled by SQLite), holding the
ledger's writer lock so no ledger writer commits half-way through.

PostgreSQL ledgers are backed up with ``pg_dump`` (see :data:`PG_GUIDANCE`).
"""

from __future__ import annotations

import os
import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass
from typing import Any

from .errors import LedgerError, StoreError
from .backend import Backend
from .locks import lock_file_of, take_file_lock
from .store import lock_timeout, sqlite_reader_uri

EVENTS_TABLE = "stored_events"

PG_GUIDANCE = """\
PostgreSQL ledgers are backed up with PostgreSQL's own tools, which take a
consistent snapshot while writers keep writing:

    pg_dump --format=custom --schema=SCHEMA --file=ledger.dump DBNAME

Restore into an empty database (or after dropping the schema):

    pg_restore --dbname=DBNAME ledger.dump

then run `order-ledger check --db postgresql://...` on the restored ledger."""


class BackupUnsupported(LedgerError):
    """The backend has no online backup here (PostgreSQL: use pg_dump)."""


@dataclass
class CopyResult:
    path: str
    events: int
    head: int
    commands: int
    clock: str | None
    bytes: int
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def sqlite_path(db: str) -> str:
    """The file of a SQLite ledger location (``sqlite:///`` prefix allowed)."""
    if not Backend(db).copies_files:
        raise BackupUnsupported(
            "online backup here is for SQLite ledgers; back up PostgreSQL with pg_dump")
    return db[len("sqlite:///"):] if db.startswith("sqlite:///") else db


def _timeout() -> float:
    return float(lock_timeout())


def _check_target(dest: str, overwrite: bool) -> None:
    parent = os.path.dirname(os.path.abspath(dest))
    if not os.path.isdir(parent):
        raise StoreError(f"cannot write {dest!r}: directory {parent!r} does not exist")
    if os.path.isdir(dest):
        raise StoreError(f"{dest!r} is a directory; give a file name")
    if os.path.exists(dest) and not overwrite:
        raise StoreError(f"{dest!r} already exists; choose a new name or pass --force")


def _require_ledger(path: str) -> None:
    if not os.path.isfile(path):
        raise StoreError(f"no ledger file at {path!r}")
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            names = {r[0] for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path!r} is not a SQLite ledger ({exc})") from None
    if EVENTS_TABLE not in names or "ledger_commands" not in names:
        raise StoreError(f"{path!r} is not an order ledger (no {EVENTS_TABLE} table)")


def describe(path: str, seconds: float = 0.0) -> CopyResult:
    """Head, counts and clock of a SQLite ledger file (read-only)."""
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        events, head = conn.execute(
            f"SELECT COUNT(*), COALESCE(MAX(rowid), 0) FROM {EVENTS_TABLE}").fetchone()
        commands = conn.execute("SELECT COUNT(*) FROM ledger_commands").fetchone()[0]
        row = conn.execute("SELECT at FROM ledger_clock WHERE id = 1").fetchone()
    return CopyResult(path=path, events=events, head=head, commands=commands,
                      clock=row[0] if row else None,
                      bytes=os.path.getsize(path), seconds=round(seconds, 3))


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _copy(src: str, dest: str) -> None:
    """One-step SQLite backup from ``src`` (a file name or a ``file:`` URI) into a new
    file ``dest``, checked."""
    with closing(sqlite3.connect(src, timeout=_timeout(), uri=src.startswith("file:"))) as s, \
            closing(sqlite3.connect(dest)) as d:
        s.backup(d)  # pages=-1: the whole database in one step, one snapshot
        d.execute("PRAGMA journal_mode=DELETE")  # a self-contained single file
        ok = d.execute("PRAGMA integrity_check").fetchone()[0]
    if ok != "ok":
        raise StoreError(f"the copy failed SQLite's integrity check: {ok}")
    _fsync(dest)


def backup(db: str, dest: str, *, overwrite: bool = False) -> CopyResult:
    """Copy the live SQLite ledger ``db`` to ``dest``, consistently."""
    src = sqlite_path(db)
    uri = sqlite_reader_uri(src)  # LedgerNotFound; read-only (works on read-only storage)
    _check_target(dest, overwrite)
    started = time.monotonic()
    tmp = f"{dest}.partial-{os.getpid()}"
    try:
        _copy(uri, tmp)
        os.replace(tmp, dest)
    except sqlite3.Error as exc:
        raise StoreError(f"backup failed: {exc}") from None
    except OSError as exc:
        raise StoreError(f"backup failed: {exc}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    dir_fd = os.open(os.path.dirname(os.path.abspath(dest)), os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return describe(dest, time.monotonic() - started)


def restore(backup_file: str, db: str, *, overwrite: bool = False) -> CopyResult:
    """Copy ``backup_file`` into the ledger location ``db``.

    An existing non-empty ledger is replaced only with ``overwrite``. The
    ledger's writer lock is held meanwhile, so running ledger writers wait
    (and then see the restored head and drop their caches).
    """
    target = sqlite_path(db)
    _require_ledger(backup_file)
    if os.path.abspath(backup_file) == os.path.abspath(target):
        raise StoreError("the backup and the ledger are the same file")
    parent = os.path.dirname(os.path.abspath(target))
    if not os.path.isdir(parent):
        raise StoreError(f"cannot restore to {target!r}: directory {parent!r} does not exist")
    if os.path.exists(target) and os.path.getsize(target) > 0 and not overwrite:
        raise StoreError(f"{target!r} already holds a ledger; pass --force to replace it")
    started = time.monotonic()
    lock_fd = _writer_lock(target)
    try:
        with closing(sqlite3.connect(f"file:{backup_file}?mode=ro", uri=True)) as s, \
                closing(sqlite3.connect(target, timeout=_timeout())) as d:
            s.backup(d)
            ok = d.execute("PRAGMA integrity_check").fetchone()[0]
        if ok != "ok":
            raise StoreError(f"the restored ledger failed SQLite's integrity check: {ok}")
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            raise StoreError(f"the ledger is busy ({exc}); stop its writers and try again") from None
        raise StoreError(f"restore failed: {exc}") from None
    finally:
        if lock_fd is not None:
            os.close(lock_fd)  # closing the descriptor releases the flock
    return describe(target, time.monotonic() - started)


def _writer_lock(target: str) -> int | None:
    """Take the ledger writers' lock file (:mod:`ledger.locks`)."""
    try:
        import fcntl  # noqa: F401
    except ImportError:  # pragma: no cover - not POSIX
        return None
    fd = os.open(lock_file_of(target), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        take_file_lock(fd, _timeout(), lambda: StoreError(
            "the ledger is busy: a writer holds it; stop it and try again"))
    except BaseException:
        os.close(fd)
        raise
    return fd
