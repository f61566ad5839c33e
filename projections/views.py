"""The stored views: projections kept in their own SQLite file via ``aiosqlite``.

Design (see ``docs/projections.md``):

- every projection has a checkpoint, the last global position it applied, in
  the ``checkpoints`` table; it is written in the *same transaction* as the
  projection's rows, so a crash never applies an event twice or skips one;
- catch-up reads events in batches, applies each batch in memory (records are
  loaded once per batch, in one query per projection) and writes everything the
  batch changed with ``executemany`` in ONE transaction with the checkpoints;
- a rebuild fills ``<table>__new`` tables from position 0 and swaps them in at
  the end (DROP + ALTER TABLE RENAME + CREATE INDEX + checkpoint, one
  transaction); readers keep the old tables until then; leftovers of an
  interrupted rebuild are dropped by the next one;
- one writer at a time per views file: ``flock`` on ``<views>.lock``, held for a
  whole sync or rebuild (released by the kernel if the process dies);
- reading methods first catch the views up to the ledger's head.
"""

from __future__ import annotations

import asyncio
import gc
import json
import mmap
import os
import signal
import sqlite3
import struct
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, AsyncIterator, Awaitable, Callable, Iterable, TypeVar, cast

import aiosqlite

from ledger.domain import ORDER_PREFIX
from ledger.events import OrderPlaced
from ledger.backend import Backend

from . import read, shards
from .model import (
    NAMES,
    ORDER_COLUMNS,
    PROJECTIONS,
    STATUSES,
    Projection,
    dispatch_table,
    row_to_doc,
    row_to_metric,
    METRIC_COLUMNS,
)
from .source import EventSource

try:  # pragma: no cover - fcntl exists on every POSIX system
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

_T = TypeVar("_T")

DEFAULT_BATCH = 10_000
CACHE_LIMIT = 250_000
#: a rebuild holds back per-order rows until this many changed (or the end)
DEFER_LIMIT = 25_000
#: a rebuild of at least this many events runs in 2 processes (automatic jobs)
PARALLEL_MIN = 20_000
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


@dataclass
class RunResult:
    """What a sync or rebuild did."""

    names: list[str] = field(default_factory=list)
    events: int = 0
    seconds: float = 0.0
    position: int = 0
    rebuilt: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


class Views:
    """The stored projections of one ledger.

    ``Views(ledger, path=None)``; async methods; use ``async with`` or ``close()``.
    Reading methods call :meth:`sync` first unless ``auto_sync=False``.
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
        #: a rebuild worker's file descriptor of ``<views>.fill.lock``: held around each of
        #: its write transactions, so workers take turns without SQLite's busy sleeps
        self._turns: int | None = None
        self._db: aiosqlite.Connection | None = None
        self._source: EventSource | None = None

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
            for pragma in ("journal_mode = WAL", "synchronous = NORMAL", "busy_timeout = 30000",
                           "cache_size = -65536"):
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

    async def __aenter__(self) -> "Views":
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
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (rolled back on any error); a rebuild
        worker first waits for its turn (``flock``: woken at once when it is free)."""
        turns = self._turns
        if turns is not None:
            fcntl.flock(turns, fcntl.LOCK_EX)
        try:
            await db.execute("BEGIN IMMEDIATE")
            try:
                yield
                await db.execute("COMMIT")
            except BaseException:
                await _rollback(db)
                raise
        finally:
            if turns is not None:
                fcntl.flock(turns, fcntl.LOCK_UN)

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

    async def _plan(self, head: int) -> tuple[list[str], list[str], dict[str, int]]:
        """(to rebuild, to catch up, checkpoints) for reaching ``head``."""
        state = await self._state()
        stored_fp = await self._meta("ledger_fingerprint")
        built = [n for n in NAMES if state.get(n, (0, 0))[0] > 0]
        if built:
            top = max(state[n][0] for n in built)
            ledger_head = self.source.head()
            if top > ledger_head:
                raise ViewsError(
                    f"the views in {self.path!r} are ahead of the ledger (position {top} > "
                    f"head {ledger_head}): they belong to another ledger; "
                    "run `order-ledger rebuild`")
            fp = self.source.fingerprint()
            if stored_fp is not None and fp is not None and fp != stored_fp:
                raise ViewsError(
                    f"the views in {self.path!r} were built from a different ledger; "
                    "run `order-ledger rebuild` (or point --views elsewhere)")
        rebuild, behind, cps = [], [], {}
        tables = await self._tables()  # one query for every projection
        for n in NAMES:
            pos, version = state.get(n, (0, 0))
            cls = PROJECTIONS[n]
            if pos == 0 or version != cls.version or not await self._tables_exist(n, tables):
                if head > 0:
                    rebuild.append(n)
                cps[n] = 0
            else:
                cps[n] = pos
                if pos < head:
                    behind.append(n)
        return rebuild, behind, cps

    # --- sync ----------------------------------------------------------------------

    async def sync(self, upto: int | None = None, progress: Progress | None = None) -> RunResult:
        """Bring every projection up to the ledger's head (or to ``upto``).

        Projections never built, or built by another version of their code, are
        rebuilt first. Returns what was applied.
        """
        head = self.source.head()
        if upto is not None:
            head = min(head, upto)
        rebuild, behind, _ = await self._plan(head)
        if not rebuild and not behind:
            state = await self._state()
            return RunResult(position=min((state.get(n, (0, 0))[0] for n in NAMES), default=0))
        async with self._lock(), self._disk_full("sync"):
            return await self._sync_locked(head, progress)

    async def _sync_locked(self, head: int, progress: Progress | None) -> RunResult:
        t0 = time.perf_counter()
        rebuild, behind, cps = await self._plan(head)  # again, under the lock
        result = RunResult(names=sorted(set(rebuild) | set(behind)))
        if rebuild:
            r = await self._rebuild_locked(rebuild, head, progress)
            result.events += r.events
            result.rebuilt = r.rebuilt
            _, behind, cps = await self._plan(head)
        if behind:
            result.events += await self._catch_up({n: cps[n] for n in behind}, head, progress)
        result.position = head
        result.seconds = time.perf_counter() - t0
        return result

    async def _catch_up(self, cps: dict[str, int], upto: int,
                        progress: Progress | None) -> int:
        projs = {n: PROJECTIONS[n](complete=False) for n in cps}
        tables = {n: {t.name: t.name for t in PROJECTIONS[n].tables} for n in cps}
        return await self._run(projs, tables, dict(cps), upto, progress, live=True)

    # --- rebuild ----------------------------------------------------------------------

    async def rebuild(self, names: Iterable[str] | None = None,
                      progress: Progress | None = None) -> RunResult:
        """Rebuild projections from position 0 into new tables, swap them in, catch up.

        ``names`` defaults to all of them, except a built audit index of the
        current version (its rows only copy fields of each event, which no
        version of the views' code reads differently: it is rebuilt when its own
        version changes, or when named). If the views file belongs to another
        ledger every projection is rebuilt.
        """
        chosen = list(dict.fromkeys(names)) if names else list(NAMES)
        for n in chosen:
            if n not in PROJECTIONS:
                raise ViewsError(f"unknown projection {n!r}; known: {', '.join(NAMES)}")
        await self.open()
        async with self._lock(), self._disk_full("rebuild"):
            t0 = time.perf_counter()
            fp = self.source.fingerprint()
            stored_fp = await self._meta("ledger_fingerprint")
            if stored_fp is not None and fp != stored_fp:
                chosen = list(NAMES)
            elif not names:
                chosen = await self._worth_rebuilding(chosen)
            head = self.source.head()
            result = await self._rebuild_locked(chosen, head, progress)
            # events appended while rebuilding, and any other projection behind
            _, behind, cps = await self._plan(self.source.head())
            if behind:
                result.events += await self._catch_up(
                    {n: cps[n] for n in behind}, self.source.head(), None)
            result.seconds = time.perf_counter() - t0
            result.position = self.source.head()
            return result

    async def _worth_rebuilding(self, names: list[str]) -> list[str]:
        """``names`` without the built, current views whose rows never change meaning
        (``rebuilt_by_default`` False: the audit index); they are caught up instead."""
        state, tables = await self._state(), await self._tables()
        return [n for n in names if PROJECTIONS[n].rebuilt_by_default
                or state.get(n, (0, 0))[0] == 0 or state[n][1] != PROJECTIONS[n].version
                or not await self._tables_exist(n, tables)]

    async def _rebuild_locked(self, names: list[str], head: int,
                              progress: Progress | None) -> RunResult:
        db = await self.open()
        t0 = time.perf_counter()
        async with self._transaction(db):
            for n in names:
                for t in PROJECTIONS[n].tables:
                    await db.execute(f"DROP TABLE IF EXISTS {t.name}{NEW}")
                    await db.execute(t.ddl.format(t=t.name + NEW))
        # fewer WAL checkpoints (each one syncs the disk) while bulk loading
        await db.execute("PRAGMA wal_autocheckpoint = 25000")
        try:
            jobs = self._jobs_for(head)
            if jobs > 1:
                events = await self._fill_parallel(names, head, progress, jobs)
            else:
                events = await self._fill(names, head, progress)
        finally:
            await db.execute("PRAGMA wal_autocheckpoint = 1000")
        fp = self.source.fingerprint()
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
        return RunResult(names=list(names), rebuilt=list(names), events=events,
                         seconds=time.perf_counter() - t0, position=head)

    async def _fill(self, names: list[str], head: int, progress: Progress | None) -> int:
        """Fill the ``__new`` tables of ``names`` from position 0 to ``head``."""
        projs = {n: PROJECTIONS[n](complete=True) for n in names}
        tables = {n: {t.name: t.name + NEW for t in PROJECTIONS[n].tables} for n in names}
        return await self._run(projs, tables, {n: 0 for n in names}, head, progress, live=False)

    def _jobs_for(self, head: int) -> int:
        """Processes for a rebuild: ``jobs``; ``None`` = automatic: 2 on a machine with
        2+ cores for a ledger of ``PARALLEL_MIN`` events or more, else 1.
        Only ledgers with a partitionable reader (SQLite files, PostgreSQL) on POSIX
        (``fork``) can be split."""
        if not hasattr(os, "fork") or not self.source.direct or self.path == ":memory:":
            return 1
        if self.jobs is not None:
            return max(1, self.jobs)
        if head < PARALLEL_MIN:
            return 1
        return max(1, min(2, os.cpu_count() or 1))

    async def _fill_parallel(self, names: list[str], head: int, progress: Progress | None,
                             jobs: int) -> int:
        """Fill the ``__new`` tables with ``jobs`` forked processes, one partition each.

        Every order's events go to one partition (by the order id), everything
        else to the first; each projection's rows depend on one partition only,
        so the partitions' rows are disjoint. Each child reads and applies only
        its partition; child 0 writes its rows into this file's ``__new`` tables,
        child k into a shard file of its own (:mod:`projections.shards`), so none
        waits for another; the shards are then copied in by SQLite, one
        ``INSERT ... SELECT`` per table. They inherit the lock on the views file
        (held until the last of them exits) and stop by themselves if this
        process dies.
        """
        shards.remove(self.path, jobs)  # an interrupted rebuild's
        counters = mmap.mmap(-1, 8 * jobs)
        pending: dict[int, int] = {}  # child pid -> read end of its result pipe
        parent = os.getpid()
        try:
            for k in range(jobs):
                r, w = os.pipe()
                pid = os.fork()
                if pid == 0:  # pragma: no cover - runs in the child (measured by the tests)
                    os.close(r)
                    _child_main(self, names, head, (k, jobs), counters, w, parent)
                os.close(w)
                pending[pid] = r
            results: dict[int, dict[str, Any]] = {}
            while pending:
                for pid in list(pending):
                    done, status = os.waitpid(pid, os.WNOHANG)
                    if done:
                        with os.fdopen(pending.pop(pid), "rb") as f:
                            raw = f.read()
                        try:
                            results[pid] = json.loads(raw or b"{}")
                        except ValueError:
                            results[pid] = {}
                        if os.waitstatus_to_exitcode(status) != 0 and "error" not in results[pid]:
                            results[pid]["error"] = (
                                f"exit status {os.waitstatus_to_exitcode(status)}")
                if progress is not None:
                    done_events = sum(struct.unpack_from("q", counters, 8 * i)[0]
                                      for i in range(jobs))
                    progress(min(done_events, head), head)
                if pending:
                    await asyncio.sleep(0.05)
            errors = [r["error"] for r in results.values() if "error" in r]
            if errors:
                raise ViewsError("rebuild worker failed: " + "; ".join(errors))
            total = sum(r.get("events", 0) for r in results.values())
            db = await self.open()
            for k in range(1, jobs):
                await shards.merge(db, shards.shard_path(self.path, k), names, self._transaction)
            if progress is not None:
                progress(total, max(head, total))
            return int(total)
        finally:
            for pid, fd in pending.items():  # only if interrupted: stop what still runs
                try:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                except (ProcessLookupError, ChildProcessError):
                    pass
                os.close(fd)
            counters.close()
            shards.remove(self.path, jobs)

    # --- the batch loop ----------------------------------------------------------------

    async def _run(self, projs: dict[str, Projection], tables: dict[str, dict[str, str]],
                   cps: dict[str, int], upto: int, progress: Progress | None,
                   live: bool) -> int:
        """Apply events after each projection's checkpoint up to ``upto``, batch by batch.

        ``live``: the projections' own tables, checkpoints written with every batch.
        Otherwise (a rebuild into ``__new`` tables) per-order rows may be held back
        and written once near the end; the caller writes the checkpoints at the swap.
        """
        gc_was_on = gc.isenabled()
        gc.disable()  # bulk work on many acyclic objects: the cyclic GC only costs time
        try:
            return await self._batches(_Run(projs, tables, cps, upto, live), progress)
        finally:
            if gc_was_on:
                gc.enable()

    async def _batches(self, run: "_Run", progress: Progress | None) -> int:
        db = await self.open()
        source = self.source
        defer = 0 if run.live else max(1, min(self.cache_limit // 2, self.defer_limit))
        after, upto = run.after, run.upto
        total = max(upto - after, 0)
        done = 0
        if progress is not None:
            progress(0, total)
        # Reading happens in this thread on purpose: reading in a second thread
        # while aiosqlite's thread writes makes both fight for the GIL (the
        # sqlite3 module releases and re-takes it for every row it writes).
        while after < upto:
            batch = source.read(after, self.batch_size, upto)
            if not batch:
                break
            last = batch[-1][0]
            await self._apply_batch(db, run, batch, last, defer)
            after = last
            done += len(batch)
            if progress is not None:
                progress(done, max(total, done))
            if self.batch_delay:
                await asyncio.sleep(self.batch_delay)
        if not run.live:
            ops = self._changes(run, 0)  # what a rebuild still held back
            if ops:
                async with self._transaction(db):
                    await self._write(db, ops)
        return done

    @staticmethod
    def _changes(run: "_Run", defer: int) -> list[tuple[str, list[tuple[Any, ...]]]]:
        """Every projection's statements and rows for what changed (see ``flush_ops``)."""
        return [(sql, rows) for n, p in run.projs.items()
                for sql, rows in p.flush_ops(run.tables[n], defer) if rows]

    @staticmethod
    async def _write(db: aiosqlite.Connection, ops: list[tuple[str, list[tuple[Any, ...]]]]) -> None:
        for sql, rows in ops:
            await db.executemany(sql, rows)

    async def _apply_batch(self, db: aiosqlite.Connection, run: "_Run", batch: list[Any],
                           last: int, defer: int) -> None:
        """One batch: load, apply, write (and checkpoint) -- one transaction.

        Catching up, the transaction covers it all. A rebuild's transaction covers
        only the writes: its rows go to ``__new`` tables nobody reads, and the
        parallel workers must hold the write lock as briefly as they can.
        """
        cps, names = run.cps, run.names
        if run.live:
            async with self._transaction(db):
                # under the lock nobody else writes; check all the same
                state = await self._state()
                for n in names:
                    if state.get(n, (0, 0))[0] != cps[n]:
                        raise ViewsError(f"projection {n!r} moved while being caught up by "
                                         "another writer; try again")
                await self._load(db, run, batch)
                self._apply(run, batch)
                await self._write(db, self._changes(run, defer))
                now = datetime.now(timezone.utc).isoformat()
                await db.executemany(
                    "UPDATE checkpoints SET position = ?, updated_at = ? WHERE name = ?",
                    [(last, now, n) for n in names])
        else:
            await self._load(db, run, batch)
            self._apply(run, batch)
            ops = self._changes(run, defer)  # built before taking the write lock
            if ops:
                async with self._transaction(db):
                    await self._write(db, ops)
        for n in names:
            cps[n] = last
            p = run.projs[n]
            p.evict_settled()  # only after the rows are committed: they may be loaded back
            p.trim(self.cache_limit)

    async def _load(self, db: aiosqlite.Connection, run: "_Run", batch: list[Any]) -> None:
        """Read the stored records the batch's events need (keyed projections that
        do not hold every record in memory)."""
        cps = run.cps
        grouped: dict[int, tuple[dict[type, set[str]], set[str]]] = {}
        for n, (p, types) in run.keyed.items():
            if p.complete:
                continue
            cp = cps[n]
            if cp not in grouped:  # one pass over the batch for all projections
                grouped[cp] = _order_ids_by_type(batch, cp)
            by_type, placed = grouped[cp]
            keys: set[str] = set()
            for t in types:
                ids = by_type.get(t)
                if ids:
                    keys |= ids
            # an order placed in this batch cannot be stored yet: nothing to load
            keys -= placed
            miss = p.missing(keys)
            sql = p.load_sql(run.tables[n]) if miss else None
            for i in range(0, len(miss), 900):
                chunk = miss[i:i + 900]
                rows = await db.execute_fetchall(
                    sql.format(marks=", ".join("?" * len(chunk))), chunk)  # type: ignore[union-attr]
                p.loaded(cast("list[tuple[Any, ...]]", list(rows)))

    @staticmethod
    def _apply(run: "_Run", batch: list[Any]) -> None:
        """Every projection's handlers, for the events after its checkpoint."""
        cps, names = run.cps, run.names
        first = min(cps[n] for n in names)
        if all(cps[n] == first for n in names):
            get = run.combined.get
            for pos, _, e in batch:
                for h in get(type(e), ()):
                    h(pos, e)
        else:
            for n in names:
                cp, get = cps[n], run.dispatch[n].get
                for pos, _, e in batch:
                    if pos > cp:
                        for h in get(type(e), ()):
                            h(pos, e)

    # --- reading ----------------------------------------------------------------------

    async def _ready(self) -> aiosqlite.Connection:
        if self.auto_sync:
            await self.sync()
        return await self.open()

    async def _require(self, name: str) -> None:
        if not await self._tables_exist(name):
            raise ViewsError(f"the {name} view is not built yet; run `order-ledger sync`")

    async def orders(self, status: str | None = None,
                     page: read.Page = read.DEFAULT_PAGE) -> list[dict[str, Any]]:
        """Manage Orders: every order (newest purchase first), optionally one status;
        ``page`` sorts and limits in the query (see :class:`projections.read.Page`)."""
        if status is not None and status not in STATUSES:
            raise ViewsError(f"unknown status {status!r}; known: {', '.join(STATUSES)}")
        order_by, args = _page_sql(page, "orders")
        db = await self._ready()
        if not await self._tables_exist("orders"):
            return []
        cols = ", ".join(ORDER_COLUMNS)
        if status is None:
            rows = await db.execute_fetchall(f"SELECT {cols} FROM orders{order_by}", args)
        else:
            rows = await db.execute_fetchall(
                f"SELECT {cols} FROM orders WHERE status = ?{order_by}", (status, *args))
        return [read.order_row(row_to_doc(r)) for r in rows]

    async def order(self, order_id: str) -> dict[str, Any] | None:
        db = await self._ready()
        if not await self._tables_exist("orders"):
            return None
        rows = list(await db.execute_fetchall(
            f"SELECT {', '.join(ORDER_COLUMNS)} FROM orders WHERE order_id = ?", (order_id,)))
        return read.order_row(row_to_doc(rows[0])) if rows else None

    async def _docs(self, where: str) -> list[Any]:
        db = await self._ready()
        if not await self._tables_exist("orders"):
            return []
        rows = await db.execute_fetchall(
            f"SELECT {', '.join(ORDER_COLUMNS)} FROM orders WHERE {where}")
        return [row_to_doc(r) for r in rows]

    async def report_orders(self, report_time: datetime | None = None) -> str:
        """The Orders report as TSV text (no column depends on ``report_time``)."""
        return read.render_orders_report(await self._docs("ever_released = 1"))

    async def report_unshipped(self, report_time: datetime, layout: str = "current") -> str:
        """The Unshipped Orders report at ``report_time`` as TSV text, in ``layout``."""
        if report_time.tzinfo is None:
            raise ValueError("a report time needs a UTC offset")
        return read.render_unshipped_report(
            await self._docs("status IN ('Unshipped', 'PartiallyShipped')"), report_time,
            layout)

    async def report_all_orders(self, report_time: datetime | None = None) -> str:
        """The All Orders report as TSV text (every order; no column uses ``report_time``)."""
        return read.render_all_orders_report(await self._docs("1 = 1"))

    async def inventory(self, page: read.Page = read.DEFAULT_PAGE) -> list[dict[str, Any]]:
        """Manage Inventory: tracked SKUs by SKU (or as ``page`` says)."""
        order_by, args = _page_sql(page, "inventory")
        db = await self._ready()
        if not await self._tables_exist("inventory"):
            return []
        rows = await db.execute_fetchall(
            "SELECT i.sku AS sku, i.available AS available, COALESCE(r.reserved, 0) AS reserved"
            " FROM inventory i "
            "LEFT JOIN (SELECT sku, SUM(quantity) AS reserved FROM inventory_pending "
            f"GROUP BY sku) r ON r.sku = i.sku{order_by}", args)
        return [read.inventory_row(*r) for r in rows]

    async def metrics(self, at: datetime) -> dict[str, Any]:
        """Seller metrics with windows ending at ``at`` (see docs/projections.md)."""
        if at.tzinfo is None:
            raise ValueError("a metrics time needs a UTC offset")
        db = await self._ready()
        if not await self._tables_exist("metrics"):
            return read.compute_metrics([], [], at)
        r = read.metric_ranges(at)
        rows = await db.execute_fetchall(
            f"SELECT {', '.join(METRIC_COLUMNS)} FROM metric_orders "
            "WHERE (purchase_us >= ? AND purchase_us < ?) "
            "OR (latest_ship_us >= ? AND latest_ship_us < ?)",
            (*r["purchase"], *r["ship"]))
        ships = await db.execute_fetchall(
            "SELECT at_us, tracked FROM metric_shipments WHERE at_us >= ? AND at_us < ?",
            r["confirmation"])
        return read.compute_metrics([row_to_metric(x) for x in rows],
                                    cast("list[tuple[int, Any]]", list(ships)), at)

    async def notifications(self, order_id: str | None = None,
                            page: read.Page = read.DEFAULT_PAGE) -> list[dict[str, Any]]:
        """The outbox in event order (or as ``page`` says), optionally of one order."""
        order_by, args = _page_sql(page, "notifications")
        db = await self._ready()
        if not await self._tables_exist("notifications"):
            return []
        cols = "position, seq, at, recipient, kind, order_id, content"
        if order_id is None:
            rows = await db.execute_fetchall(f"SELECT {cols} FROM notifications{order_by}", args)
        else:
            rows = await db.execute_fetchall(
                f"SELECT {cols} FROM notifications WHERE order_id = ?{order_by}",
                (order_id, *args))
        return [read.notification_row(tuple(r)) for r in rows]


def _page_sql(page: read.Page, listing: str) -> tuple[str, list[int]]:
    try:
        return page.sql(listing)
    except read.PageError as exc:
        raise ViewsError(str(exc)) from None


def _child_main(views: Views, names: list[str], head: int, partition: tuple[int, int],
                counters: mmap.mmap, out: int,
                parent: int) -> None:  # pragma: no cover - runs in a forked child
    """A forked rebuild worker: fill its partition's rows into the ``__new`` tables,
    report, exit.

    It uses nothing of the parent's connections or threads: a new event loop, a
    new aiosqlite connection and a new reading connection to the ledger file.
    """
    code = 1
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides
        asyncio.events._set_running_loop(None)  # the parent's loop is not ours
        k = partition[0]

        def progress(done: int, total: int) -> None:
            struct.pack_into("q", counters, 8 * k, done)
            if os.getppid() != parent:
                raise ViewsError("the rebuild was abandoned")

        async def work() -> int:
            # worker 0 fills the views file, the others a shard file each (merged by
            # the parent): no worker waits for another to write
            own = shards.shard_path(views.path, k) if k else views.path
            worker = Views(views.ledger, own, batch_size=views.batch_size,
                           auto_sync=False, cache_limit=views.cache_limit,
                           defer_limit=views.defer_limit,
                           batch_delay=views.batch_delay, jobs=1)
            worker._source = EventSource(views.ledger, partition)
            try:
                db = await worker.open()
                if k:
                    await shards.prepare(db, names)
                else:
                    await db.execute("PRAGMA wal_autocheckpoint = 25000")  # as the parent's
                return await worker._fill(names, head, progress)
            finally:
                await worker.close()

        events = asyncio.run(work())
        os.write(out, json.dumps({"events": events}).encode())
        code = 0
    except BaseException as exc:
        try:
            os.write(out, json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode())
        except Exception:
            pass
    finally:
        os._exit(code)


def _order_ids_by_type(batch: list[Any], after: int) -> tuple[dict[type, set[str]], set[str]]:
    """The order ids of a batch's events after position ``after``, by event type,
    and the ids of the orders placed in it."""
    by_type: dict[type, set[str]] = {}
    cut = len(ORDER_PREFIX)
    for pos, o, e in batch:
        if pos > after and o.startswith(ORDER_PREFIX):
            ids = by_type.get(type(e))
            if ids is None:
                ids = by_type[type(e)] = set()
            ids.add(o[cut:])
    return by_type, by_type.get(OrderPlaced, set())


class _Run:
    """The projections of one sync or rebuild and where each of them stands."""

    def __init__(self, projs: dict[str, Projection], tables: dict[str, dict[str, str]],
                 cps: dict[str, int], upto: int, live: bool) -> None:
        self.projs = projs
        self.tables = tables
        self.cps = cps
        self.upto = upto
        self.live = live
        self.names = list(projs)
        self.dispatch = {n: dispatch_table([projs[n]]) for n in self.names}
        self.combined = dispatch_table(projs.values())
        self.keyed = {n: (projs[n], frozenset(self.dispatch[n]) - projs[n].no_load)
                      for n in self.names if projs[n].keyed}
        self.after = min(cps.values())


async def _rollback(db: aiosqlite.Connection) -> None:
    try:
        if db.in_transaction:
            await db.execute("ROLLBACK")
    except Exception:  # pragma: no cover - connection already gone
        pass


# --- blocking wrappers for the command line -------------------------------------------


class BlockingViews:
    """The same API without ``await``: each call opens the views, runs, closes.

    ``BlockingViews(ledger, path=None, **options)``; for the command line and
    scripts. Options are those of :class:`Views`.
    """

    def __init__(self, ledger: Any, path: str | None = None, **options: Any) -> None:
        self.ledger = ledger
        self.path = path
        self.options = options

    def _call(self, fn: Callable[[Views], Awaitable[_T]]) -> _T:
        async def run() -> _T:
            async with Views(self.ledger, self.path, **self.options) as v:
                return await fn(v)
        return asyncio.run(run())

    @property
    def views_path(self) -> str:
        return views_path(self.ledger.db, self.path)

    def sync(self, upto: int | None = None, progress: Progress | None = None) -> RunResult:
        return self._call(lambda v: v.sync(upto, progress))

    def rebuild(self, names: Iterable[str] | None = None,
                progress: Progress | None = None) -> RunResult:
        return self._call(lambda v: v.rebuild(list(names) if names else None, progress))

    def checkpoints(self) -> dict[str, int]:
        return self._call(lambda v: v.checkpoints())

    def orders(self, status: str | None = None,
               page: read.Page = read.DEFAULT_PAGE) -> list[dict[str, Any]]:
        return self._call(lambda v: v.orders(status, page))

    def order(self, order_id: str) -> dict[str, Any] | None:
        return self._call(lambda v: v.order(order_id))

    def inventory(self, page: read.Page = read.DEFAULT_PAGE) -> list[dict[str, Any]]:
        return self._call(lambda v: v.inventory(page))

    def metrics(self, at: datetime) -> dict[str, Any]:
        return self._call(lambda v: v.metrics(at))

    def notifications(self, order_id: str | None = None,
                      page: read.Page = read.DEFAULT_PAGE) -> list[dict[str, Any]]:
        return self._call(lambda v: v.notifications(order_id, page))

    def report_orders(self, report_time: datetime | None = None) -> str:
        return self._call(lambda v: v.report_orders(report_time))

    def report_unshipped(self, report_time: datetime, layout: str = "current") -> str:
        return self._call(lambda v: v.report_unshipped(report_time, layout))

    def report_all_orders(self, report_time: datetime | None = None) -> str:
        return self._call(lambda v: v.report_all_orders(report_time))

