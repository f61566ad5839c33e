"""The runner: one batch loop that applies events to the stored views, for
catching up and for rebuilding alike.

- :meth:`ViewRunner.sync` plans (which views to rebuild, which to catch up),
  takes the store's writer lock and runs both;
- catch-up reads events in batches, applies each batch in memory (records are
  loaded once per batch, in one query per projection) and writes everything the
  batch changed with ``executemany`` in ONE transaction with the checkpoints;
- a rebuild runs the same loop into the store's ``__new`` tables from position 0,
  in this process or -- a strategy of the same loop -- in forked workers that
  each apply one partition of the orders and write its rows straight into the
  views file, taking turns without waiting (:meth:`ViewRunner._fill_parallel`),
  then swaps the tables in (:meth:`projections.store.ViewStore._swap`).
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
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, cast

import aiosqlite

from ledger.domain import ORDER_PREFIX
from ledger.events import OrderPlaced

from .model import NAMES, PROJECTIONS, Projection, dispatch_table
from .source import EventSource
from .store import BUSY_TIMEOUT_MS, NEW, Progress, ViewsError, ViewStore

#: a rebuild of at least this many events runs in 2 processes (automatic jobs)
PARALLEL_MIN = 20_000
#: a parallel rebuild's worker that found the views file's write lock taken this many
#: times in a row waits for it (its rows, and the records they come from, stay in
#: memory until written)
TURNS_SKIPPED_MAX = 4


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


class ViewRunner(ViewStore):
    """Sync (catch up, rebuilding what must be rebuilt) and rebuild the stored views."""

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
        rebuild, behind, cps = await self._plan(head)  # again, under the lock
        return await self._rebuild_then_catch_up(
            rebuild, head, lambda: head, progress, progress,
            names=sorted(set(rebuild) | set(behind)), plan=(behind, cps))

    async def _rebuild_then_catch_up(self, rebuild: list[str], head: int,
                                     upto: Callable[[], int], progress: Progress | None,
                                     catch_up_progress: Progress | None,
                                     names: list[str],
                                     plan: tuple[list[str], dict[str, int]] | None = None
                                     ) -> RunResult:
        """The one path of ``sync`` and ``rebuild``, under the views' lock: rebuild
        ``rebuild`` (if any) from position 0 to ``head``, then catch every projection
        still behind up to ``upto()`` (asked after the rebuild: a rebuild also takes
        what was appended while it ran). ``plan``: what is behind and the checkpoints,
        when the caller just read them and nothing is to be rebuilt."""
        t0 = time.perf_counter()
        result = RunResult(names=names)
        if rebuild:
            r = await self._rebuild_locked(rebuild, head, progress)
            result.events += r.events
            result.rebuilt = r.rebuilt
        end = upto()
        if rebuild or plan is None:
            _, behind, cps = await self._plan(end)
        else:
            behind, cps = plan
        if behind:
            result.events += await self._catch_up({n: cps[n] for n in behind}, end,
                                                  catch_up_progress)
        result.position = end
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
            fp = self.source.fingerprint()
            stored_fp = await self._meta("ledger_fingerprint")
            if stored_fp is not None and fp != stored_fp:
                chosen = list(NAMES)
            elif not names:
                chosen = await self._worth_rebuilding(chosen)
            # then the events appended while rebuilding, and any other projection behind
            return await self._rebuild_then_catch_up(
                chosen, self.source.head(), self.source.head, progress, None,
                names=list(chosen))

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
        await self._create_new_tables(names)
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
        await self._swap(names, head, self.source.fingerprint())
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
        its partition and writes its rows straight into this file's ``__new``
        tables: when SQLite's write lock is free it writes what it has, else it
        keeps its rows and applies its next batch (see :meth:`_write_turn`), so
        no worker waits for another and no rows are copied afterwards. They
        inherit the lock on the views file (held until the last of them exits)
        and stop by themselves if this process dies.
        """
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
            run.pending += self._changes(run, 0)  # what a rebuild still held back
            if run.pending:
                async with self._transaction(db):
                    await self._write(db, run.pending)
                run.pending = []
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
            run.pending += self._changes(run, defer)  # built before taking the write lock
            if run.pending:
                await self._write_turn(db, run)
        for n in names:
            cps[n] = last
        if run.pending:
            return  # rows not yet written: their records must stay in memory
        late, run.late = run.late, False
        for n in names:
            p = run.projs[n]
            p.evict_settled(late)  # only after the rows are committed: they may be loaded back
            p.trim(self.cache_limit, late)

    async def _write_turn(self, db: aiosqlite.Connection, run: "_Run") -> None:
        """Write a rebuild's pending rows in one transaction.

        A parallel rebuild's worker (``turns``) shares the views file's write lock
        with the other workers: when another one holds it, the rows stay pending
        (in order) and this worker goes on with its next batch instead of waiting;
        after ``TURNS_SKIPPED_MAX`` skipped turns in a row it waits.
        """
        if self.turns and run.skipped < TURNS_SKIPPED_MAX:
            if not await self._try_begin(db):
                run.skipped += 1
                return
        else:
            await db.execute("BEGIN IMMEDIATE")
        try:
            await self._write(db, run.pending)
            await db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                await db.execute("ROLLBACK")
            raise
        run.pending = []
        # rows built in an earlier batch are committed only now: the records changed
        # since are dirty again, the others written (see Projection.evict_settled)
        run.late = run.skipped > 0
        run.skipped = 0

    @staticmethod
    async def _try_begin(db: aiosqlite.Connection) -> bool:
        """``BEGIN IMMEDIATE`` if no other connection holds the write lock, without
        waiting for it (False: another one does)."""
        await db.execute("PRAGMA busy_timeout = 0")
        try:
            await db.execute("BEGIN IMMEDIATE")
            return True
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            return False
        finally:
            await db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")

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


def _child_main(views: ViewRunner, names: list[str], head: int, partition: tuple[int, int],
                counters: mmap.mmap, out: int,
                parent: int) -> None:  # pragma: no cover - runs in a forked child
    """A forked rebuild worker: fill its partition's rows into the views file's
    ``__new`` tables (taking turns with the other workers), report, exit.

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
            worker = ViewRunner(views.ledger, views.path, batch_size=views.batch_size,
                                auto_sync=False, cache_limit=views.cache_limit,
                                defer_limit=views.defer_limit,
                                batch_delay=views.batch_delay, jobs=1)
            worker._source = EventSource(views.ledger, partition)
            worker.turns = True  # no worker waits for another to write
            try:
                db = await worker.open()
                await db.execute("PRAGMA wal_autocheckpoint = 25000")  # as the parent's
                events = await worker._fill(names, head, progress)
                # copy what the workers wrote from the write-ahead log into the file
                # here, while the other workers may still run, not in the parent's
                # serial part after them (PASSIVE: nobody waits for it)
                await db.execute("PRAGMA wal_checkpoint(PASSIVE)")
                return events
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
        #: a rebuild's statements and rows built but not written yet, in order
        self.pending: list[tuple[str, list[tuple[Any, ...]]]] = []
        #: turns skipped in a row (see :meth:`ViewRunner._write_turn`)
        self.skipped = 0
        #: the last write committed rows an earlier batch built
        self.late = False


