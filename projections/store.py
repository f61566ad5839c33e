"""The views file: where it lives, its pragmas, tables, checkpoints and meta, the
table swap of a rebuild, the writer lock, transactions and disk-full handling.

- every projection has a checkpoint, the last global position it applied, in
  the ``checkpoints`` table; the runner writes it in the *same transaction* as
  the projection's rows, so a crash never applies an event twice or skips one;
- a rebuild fills ``<table>__new`` tables (:meth:`ViewStore._create_new_tables`)
  and swaps them in at the end (:meth:`ViewStore._swap`: DROP + ALTER TABLE
  RENAME + CREATE INDEX + checkpoint, one transaction); readers keep the old
  tables until then; leftovers of an interrupted rebuild are dropped by the next;
- one writer at a time per views file: ``flock`` on ``<views>.lock``, held for a
  whole sync or rebuild (released by the kernel if the process dies).

:class:`projections.runner.ViewRunner` applies events on top of this store;
:class:`projections.views.Views` adds the reads (``projections.queries``).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import Any, AsyncIterator, Callable, Self

import aiosqlite


from ledger.backend import Backend

from .model import NAMES, PROJECTIONS
from .source import EventSource

# The sqlite3 module binds a None only after failing to find an adapter for it (an
# AttributeError raised and cleared per value: ~5 % of a rebuild, whose rows have
# many NULL columns). An adapter that returns None (an empty dict's ``get``: a
# call into C, no Python frame) is found at once; the value bound is the same NULL.
_no_keys: dict[None, None] = {}
sqlite3.register_adapter(type(None), _no_keys.get)


try:  # pragma: no cover - fcntl exists on every POSIX system
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

DEFAULT_BATCH = 10_000
CACHE_LIMIT = 250_000
#: a rebuild holds back per-order rows until this many changed (or the end)
DEFER_LIMIT = 25_000
#: how long a views connection waits for another's write lock
BUSY_TIMEOUT_MS = 30_000
NEW = "__new"
Progress = Callable[[int, int], None]

class ViewsError(Exception):
    """The views cannot be used as asked (message says what to do)."""


class ViewsLocationError(ViewsError):
    """The views file cannot be created where asked."""


def views_path(db: str, views: str | None = None) -> str:
    """Where the views of ledger ``db`` live.

    ``views`` (``--views``), else ``$ORDER_LEDGER_VIEWS``, else beside the ledger:
    ``X.db`` -> ``X.views.db`` (other names get ``.views.db`` appended); for a
    PostgreSQL ledger ``order-ledger-<db>-<schema>.views.db`` in the current
    directory.
    """
    if views:
        return views
    env = os.environ.get("ORDER_LEDGER_VIEWS")
    if env:
        return env
    return Backend(db).default_views_path()


def unwritable_because(path: str) -> str | None:
    """Why a views file could not be written at ``path`` (None when it could, or when
    its directory is missing: that is reported when the file is opened)."""
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        return None
    if os.path.exists(path) and not os.access(path, os.W_OK):
        return f"the views file {path} is read-only"
    if not os.access(parent, os.W_OK):
        return f"directory {parent} is not writable"
    return None



class ViewStore:
    """The views file of one ledger: connection, lock, transactions, checkpoints.

    ``ViewStore(ledger, path=None, **options)``; the options are the runner's too
    (see :class:`projections.views.Views`).
    """

    def __init__(self, ledger: Any, path: str | None = None, *,
                 batch_size: int = DEFAULT_BATCH, auto_sync: bool = True,
                 cache_limit: int = CACHE_LIMIT, defer_limit: int = DEFER_LIMIT,
                 on_wait: Callable[[], None] | None = None,
                 batch_delay: float = 0.0, jobs: int | None = 1) -> None:
        self.ledger = ledger
        self.path = views_path(ledger.db, path)
        #: why the views are computed in memory for this run instead of in their default
        #: file (that place is not writable: read-only media); None when they are stored
        self.in_memory_because: str | None = None
        if path is None and not os.environ.get("ORDER_LEDGER_VIEWS") and self.path != ":memory:":
            self.in_memory_because = unwritable_because(self.path)
            if self.in_memory_because is not None:
                self.path = ":memory:"
        #: processes for a rebuild (forked); None = automatic (see :meth:`_jobs_for`).
        #: 1 by default: forking is for the command line, not for any host process.
        self.jobs = jobs
        self.batch_size = batch_size
        self.auto_sync = auto_sync
        self.cache_limit = cache_limit
        #: a rebuild writes per-order records once this many changed (memory vs writes)
        self.defer_limit = defer_limit
        self.on_wait = on_wait
        #: seconds to sleep after each committed batch (demos and crash tests)
        self.batch_delay = batch_delay
        self._db: aiosqlite.Connection | None = None
        self._source: EventSource | None = None
        #: a parallel rebuild's worker: writes when the write lock is free, else later
        self.turns = False

    # --- connection --------------------------------------------------------------

    @property
    def source(self) -> EventSource:
        if self._source is None:
            self._source = EventSource(self.ledger)
        return self._source

    async def open(self) -> aiosqlite.Connection:
        if self._db is not None:
            return self._db
        if self.path != ":memory:":
            parent = os.path.dirname(os.path.abspath(self.path))
            if not os.path.isdir(parent):
                raise ViewsLocationError(
                    f"cannot create the views file {self.path!r}: directory {parent!r} "
                    "does not exist (choose another place with --views)")
            why = unwritable_because(self.path)
            if why is not None:
                raise ViewsLocationError(f"cannot write the views file {self.path!r}: {why} "
                                         "(choose a writable place with --views PATH)")
        try:
            db = await aiosqlite.connect(self.path, isolation_level=None)
        except Exception as exc:
            raise ViewsLocationError(f"cannot open the views file {self.path!r}: {exc}") from None
        try:
            # temp_store stays FILE: a rebuild's CREATE INDEX sorts every row, and in
            # memory that sort would grow with the ledger
            for pragma in ("journal_mode = WAL", "synchronous = NORMAL",
                           f"busy_timeout = {BUSY_TIMEOUT_MS}", "cache_size = -65536"):
                await db.execute(f"PRAGMA {pragma}")
            await db.execute(
                "CREATE TABLE IF NOT EXISTS checkpoints (name TEXT PRIMARY KEY,"
                " position INTEGER NOT NULL, version INTEGER NOT NULL, updated_at TEXT NOT NULL)")
            await db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        except sqlite3.OperationalError as exc:
            await db.close()
            if "readonly" not in str(exc) and "unable to open" not in str(exc):
                raise
            raise ViewsLocationError(
                f"cannot write the views file {self.path!r}: {exc} (choose a writable place "
                "with --views PATH)") from None
        self._db = db
        return db

    async def close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            await db.close()
        if self._source is not None:
            self._source.close()
            self._source = None

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    @asynccontextmanager
    async def _lock(self) -> AsyncIterator[None]:
        """One writer per views file (sync or rebuild), across processes."""
        if self.path == ":memory:" or fcntl is None:
            yield
            return
        fd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if self.on_wait is not None:
                    self.on_wait()
                await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    @asynccontextmanager
    async def _disk_full(self, what: str) -> AsyncIterator[None]:
        """SQLite's "database or disk is full" (here or in a rebuild worker) becomes a
        :class:`ViewsError` that says so; every batch is one transaction with its
        checkpoints, so what was committed stays and nothing is half-written."""
        try:
            yield
        except Exception as exc:
            if "database or disk is full" not in str(exc).lower():
                raise
            await self._drop_new_tables()  # an interrupted rebuild's tables: give back pages
            raise ViewsError(
                f"the disk is full (or the views file reached its size limit) while running "
                f"{what} on {self.path!r}: each view keeps its last committed checkpoint, "
                f"nothing is half-written; free some space and run `order-ledger {what}` "
                "again") from None

    async def _drop_new_tables(self) -> None:
        db = self._db
        if db is None:
            return
        try:
            await _rollback(db)
            for proj in PROJECTIONS.values():
                for t in proj.tables:
                    await db.execute(f"DROP TABLE IF EXISTS {t.name}{NEW}")
        except Exception:  # best effort: the next rebuild drops them too
            pass

    @asynccontextmanager
    async def _transaction(self, db: aiosqlite.Connection) -> AsyncIterator[None]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (rolled back on any error)."""
        await db.execute("BEGIN IMMEDIATE")
        try:
            yield
            await db.execute("COMMIT")
        except BaseException:
            await _rollback(db)
            raise

    # --- state ---------------------------------------------------------------------

    async def checkpoints(self) -> dict[str, int]:
        """Each projection's last applied position (0 = never built)."""
        state = await self._state()
        return {n: state.get(n, (0, 0))[0] for n in NAMES}

    async def _state(self) -> dict[str, tuple[int, int]]:
        db = await self.open()
        rows = await db.execute_fetchall("SELECT name, position, version FROM checkpoints")
        return {r[0]: (r[1], r[2]) for r in rows}

    async def _meta(self, key: str) -> str | None:
        db = await self.open()
        rows = list(await db.execute_fetchall("SELECT value FROM meta WHERE key = ?", (key,)))
        value: str | None = rows[0][0] if rows else None
        return value

    async def _tables(self) -> set[str]:
        """The names of the tables in the views file."""
        db = await self.open()
        return {r[0] for r in await db.execute_fetchall(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}

    async def is_built(self, name: str) -> bool:
        """Whether every table of view ``name`` exists in the views file."""
        return await self._tables_exist(name)

    async def _tables_exist(self, name: str, tables: set[str] | None = None) -> bool:
        if tables is None:
            tables = await self._tables()
        return all(t.name in tables for t in PROJECTIONS[name].tables)

    async def _create_new_tables(self, names: list[str]) -> None:
        """Empty ``<table>__new`` tables for the views ``names`` (a rebuild fills them)."""
        db = await self.open()
        async with self._transaction(db):
            for n in names:
                for t in PROJECTIONS[n].tables:
                    await db.execute(f"DROP TABLE IF EXISTS {t.name}{NEW}")
                    await db.execute(t.ddl.format(t=t.name + NEW))

    async def _swap(self, names: list[str], head: int, fp: str | None) -> None:
        """Swap the filled ``__new`` tables of ``names`` in, with their indexes and their
        checkpoints at ``head``, in one transaction; record the ledger's fingerprint
        ``fp`` when no other view is built from an earlier one."""
        db = await self.open()
        now = datetime.now(timezone.utc).isoformat()
        async with self._transaction(db):
            for n in names:
                for t in PROJECTIONS[n].tables:
                    await db.execute(f"DROP TABLE IF EXISTS {t.name}")
                    await db.execute(f"ALTER TABLE {t.name}{NEW} RENAME TO {t.name}")
                    for iname, cols in t.indexes:
                        unique, _, iname = iname.rpartition(" ")
                        await db.execute(f"CREATE {unique} INDEX {iname} ON {t.name} ({cols})")
                await db.execute(
                    "INSERT OR REPLACE INTO checkpoints (name, position, version, updated_at) "
                    "VALUES (?, ?, ?, ?)", (n, head, PROJECTIONS[n].version, now))
            state = await db.execute_fetchall("SELECT name FROM checkpoints WHERE position > 0")
            others_built = {r[0] for r in state} - set(names)
            if fp is not None and not others_built:
                await db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES "
                                 "('ledger_fingerprint', ?)", (fp,))


async def _rollback(db: aiosqlite.Connection) -> None:
    try:
        if db.in_transaction:
            await db.execute("ROLLBACK")
    except Exception:  # pragma: no cover - connection already gone
        pass

