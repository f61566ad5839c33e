"""The ledger application: commands in, events out, in batched transactions.

``Ledger.apply_lines`` takes command-file lines and groups many of them into
one transaction, while each line is still accepted or rejected on its own:
every aggregate a line touches is checkpointed first, and a rejected line is
undone in memory before the next line runs. Nothing is acknowledged before
its batch commits. Deadlines (hold expiry, 21-day verification, day-23 warning,
day-30 cancel) due at or before a command's time are applied first, found
through the ``ledger_deadlines`` index.
"""

from __future__ import annotations

import gc
import heapq
import os
import random
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable, Iterator

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import IntegrityError, OperationalError

from . import commands as c
from . import events as ev
from .clock import Clock, SystemClock
from .codec import PayloadMapper
from .domain import Inventory, LedgerAggregate, Order, order_key, sku_key, sku_quantities
from .errors import CommandRejected, ConcurrencyConflict, LedgerBusy, LedgerReadOnly, StoreError
from .store import Batch, LedgerRecorderMixin, env_for, resolve_db, to_us

MAX_RETRIES = 5
DEFAULT_BATCH = 1000
CACHE_LIMIT = 50_000


class LedgerApp(Application[str]):
    """The ``eventsourcing`` application: recorder, event store, repository."""

    name = "OrderLedger"

    def construct_mapper(self) -> PayloadMapper:  # type: ignore[override]
        return PayloadMapper(compressor=self.factory.compressor(), cipher=self.factory.cipher())


def _open_app(env: dict[str, str]) -> LedgerApp:
    """Construct the application; on PostgreSQL, retry the races of concurrent openers.

    Every opener runs ``CREATE SCHEMA/TABLE IF NOT EXISTS`` and ``CREATE OR
    REPLACE FUNCTION``; PostgreSQL fails one of two processes doing that at the
    same moment ("tuple concurrently updated", "... already exists", or a
    "deadlock detected" between their DDL locks). The
    statements are idempotent, so trying again after a short pause succeeds.
    """
    from eventsourcing.persistence import PersistenceError

    for attempt in range(6):
        try:
            return LedgerApp(env=env)
        except PersistenceError as exc:
            text = str(exc)
            if attempt == 5 or not any(race in text for race in (
                    "concurrently updated", "already exists", "deadlock detected")):
                raise
            time.sleep(random.uniform(0.01, 0.05 * (attempt + 1)))
    raise AssertionError("unreachable")  # pragma: no cover


@dataclass
class Outcome:
    """What became of one command."""

    line: int | None
    status: str  # applied | duplicate | rejected
    type: str | None = None
    command_id: str | None = None
    order_id: str | None = None
    at: str | None = None
    events: list[str] = field(default_factory=list)
    error: dict | None = None

    @property
    def ok(self) -> bool:
        return self.status != "rejected"

    def as_dict(self) -> dict:
        out = {k: v for k, v in self.__dict__.items() if v is not None}
        return out


class Ledger:
    """The order ledger. ``db`` is a SQLite path or a ``postgresql://`` URL.

    ``mode="write"`` (the default) creates the ledger if it is missing and
    refuses a read-only one (:class:`~ledger.errors.LedgerReadOnly`);
    ``mode="read"`` opens an existing ledger read-only and creates nothing:
    no file, schema or table (:class:`~ledger.errors.LedgerNotFound` when
    there is none). Both are :class:`~ledger.errors.StoreError`.
    """

    def __init__(self, db: str | None = None, *, clock: Clock | None = None,
                 cache_limit: int = CACHE_LIMIT, env: dict[str, str] | None = None,
                 mode: str = "write") -> None:
        self.db = resolve_db(db)
        self.mode = mode
        full_env = env_for(self.db, mode)
        if env:
            full_env.update(env)
        self.app = _open_app(full_env)
        self.recorder: LedgerRecorderMixin = self.app.recorder  # type: ignore[assignment]
        self.mapper: PayloadMapper = self.app.mapper  # type: ignore[assignment]
        self.clock = clock or SystemClock()
        self.cache_limit = cache_limit
        self._cache: dict[str, LedgerAggregate] = {}
        self._head = -1
        self._writer_lock = WriterLock(self)
        self._store_readable = False

    def close(self) -> None:
        self._writer_lock.close()
        self.app.close()

    def __enter__(self) -> "Ledger":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def probe_store(self) -> None:
        """Raise :class:`~ledger.errors.StoreError` now if this process could not write the
        store (a cipher key that does not fit its events); writers do this before their
        first batch anyway, a command line does it on opening to fail before any work."""
        self._probe_store()

    def _probe_store(self) -> None:
        """Refuse to write unless the store's first event decodes with our key.

        Without this, a writer with a missing or wrong ORDER_LEDGER_CIPHER_KEY
        could append events that touch only new aggregates to an encrypted store
        (or encrypted ones to a plain store), leaving it unreadable with any key.
        """
        rows = self.recorder.select_notifications(start=1, limit=1)  # type: ignore[attr-defined]
        if rows:
            self.mapper.decode_state(rows[0].topic, rows[0].state)  # raises StoreError
        self._store_readable = True

    # --- reading ----------------------------------------------------------------

    def load(self, key: str) -> LedgerAggregate | None:
        try:
            return self.app.repository.get(key)  # type: ignore[return-value]
        except AggregateNotFoundError:
            return None

    def load_many(self, keys: Iterable[str]) -> dict[str, LedgerAggregate | None]:
        """Load many aggregates in one query; absent ones map to None."""
        from .domain import Recorded

        keys = list(keys)
        found: dict[str, LedgerAggregate | None] = dict.fromkeys(keys)
        decode = self.mapper.decode_state
        for agg_id, version, topic, state in self.recorder.select_events_many(keys):
            payload = decode(topic, bytes(state))
            found[agg_id] = Recorded(agg_id, version, payload.at, payload).mutate(found[agg_id])
        return found

    def order(self, order_id: str) -> Order | None:
        return self.load(order_key(order_id))  # type: ignore[return-value]

    def inventory(self, sku: str) -> Inventory | None:
        return self.load(sku_key(sku))  # type: ignore[return-value]

    def now(self) -> datetime | None:
        """The latest business time the ledger has reached."""
        return self.recorder.read_clock()

    def head(self) -> int:
        """The global position of the newest event (0 when empty)."""
        return self.recorder.head()

    def read_events(self, after: int = 0, limit: int = 10_000,
                    upto: int | None = None) -> list[tuple[int, str, ev.Event]]:
        """Events in global order: ``(position, aggregate id, payload)`` after ``after``."""
        rows = self.recorder.select_notifications(  # type: ignore[attr-defined]
            start=after + 1, limit=limit, stop=upto)
        decode = self.mapper.decode_state
        return [(n.id, n.originator_id, decode(n.topic, n.state)) for n in rows]

    def iter_events(self, after: int = 0, upto: int | None = None,
                    batch: int = 10_000) -> Iterator[tuple[int, str, ev.Event]]:
        """All events after ``after`` (up to ``upto``), read in batches."""
        while True:
            rows = self.read_events(after, batch, upto)
            yield from rows
            if len(rows) < batch:
                return
            after = rows[-1][0]

    # --- writing ----------------------------------------------------------------

    def execute(self, command: c.Command | dict | str | bytes) -> Outcome:
        """Apply one command in its own durable transaction."""
        if isinstance(command, dict):
            import msgspec

            command = msgspec.json.encode(command)
        if isinstance(command, (str, bytes)):
            return self._run_batch([(None, command)])[0]
        return self._run_batch([(None, command)])[0]

    def tick(self, at: datetime | None = None, command_id: str | None = None) -> Outcome:
        """Apply every deadline due at or before ``at`` (default: the clock's now)."""
        return self.execute(c.Tick(at=at or self.clock.now(), command_id=command_id))

    def apply_lines(self, lines: Iterable[str | bytes], *, batch_size: int = DEFAULT_BATCH,
                    start_line: int = 1) -> Iterator[Outcome]:
        """Apply command-file lines; yields one outcome per non-blank line once committed."""
        chunk: list[tuple[int | None, Any]] = []
        for n, line in enumerate(lines, start_line):
            if n == start_line:  # a byte-order mark is not part of the first command
                if isinstance(line, bytes) and line.startswith(b"\xef\xbb\xbf"):
                    line = line[3:]
                elif isinstance(line, str) and line.startswith("\ufeff"):
                    line = line[1:]
            if not line.strip():
                continue
            chunk.append((n, line))
            if len(chunk) >= batch_size:
                yield from self._run_batch(chunk)
                chunk = []
        if chunk:
            yield from self._run_batch(chunk)

    def _run_batch(self, chunk: list[tuple[int | None, Any]]) -> list[Outcome]:
        parsed: list[tuple[int | None, c.Command | CommandRejected, bytes | None]] = []
        for n, item in chunk:
            if isinstance(item, c.Command):
                parsed.append((n, item, None))
                continue
            try:
                parsed.append((n, c.parse_command(item), None))
            except CommandRejected as exc:
                parsed.append((n, exc, None))
            except UnicodeDecodeError as exc:  # bytes inside a JSON string that are not UTF-8
                parsed.append((n, CommandRejected(
                    "malformed-json",
                    f"the line is not valid UTF-8 (byte {exc.start}: {exc.reason})",
                    hint="save the command file as UTF-8"), None))
        if self.mode == "read":
            raise LedgerReadOnly(self.db, "it was opened for reading (mode='read')")
        # The writer lock serialises whole batches (read, decide, commit) across
        # processes, so every batch decides on the latest committed state; the
        # retry below stays as the safety net for writers that do not take it.
        with self._writer_lock, _gc_paused():
            if not self._store_readable:
                self._probe_store()
            for attempt in range(MAX_RETRIES):
                head = self.recorder.head()
                if head != self._head:
                    self._cache.clear()
                uow = UnitOfWork(self, [p[1] for p in parsed if isinstance(p[1], c.Command)])
                outcomes = [uow.handle(n, cmd) for n, cmd, _ in parsed]
                try:
                    ids = uow.commit()
                except IntegrityError:
                    self._cache.clear()
                    self._head = -1
                    time.sleep(random.uniform(0, 0.01 * 2 ** attempt))
                    continue
                except OperationalError as exc:
                    self._cache.clear()
                    self._head = -1
                    if "lock" in str(exc).lower() or "busy" in str(exc).lower():
                        raise LedgerBusy(f"the ledger is busy ({exc}); try again") from None
                    if "readonly" in str(exc).lower() or "read-only" in str(exc).lower():
                        raise LedgerReadOnly(self.db, str(exc)) from None
                    raise StoreError(f"the store failed while writing a batch: {exc}") from None
                if len(self._cache) > self.cache_limit:
                    self._cache.clear()
                self._cache.update({k: a for k, a in uow.aggs.items() if a is not None})
                # Trust the cache for the next batch only if no one else wrote in between.
                self._head = max(ids) if ids and min(ids) == head + 1 else (head if not ids else -1)
                return outcomes
        raise ConcurrencyConflict(
            f"gave up after {MAX_RETRIES} attempts: other writers kept changing the same orders")


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector for one batch.

    A batch allocates many small objects that form no cycles; collecting
    while they are alive rescans the aggregate cache again and again (a
    quarter of bulk-apply time). Anything cyclic is collected after the batch.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class UnitOfWork:
    """One batch: aggregates loaded once, lines checkpointed, one commit."""

    def __init__(self, ledger: Ledger, commands: list[c.Command]) -> None:
        self.ledger = ledger
        self.aggs: dict[str, LedgerAggregate | None] = {}
        self.sink: list[Any] = []
        self.clock = ledger.recorder.read_clock()
        self.start_clock = self.clock
        ids = [cmd.command_id for cmd in commands if cmd.command_id is not None]
        self.known = ledger.recorder.known_commands(ids) if ids else set()
        self.accepted: list[tuple[str, str, int]] = []
        self.heap: list[tuple[int, str, str]] = []
        if commands:
            latest = max(cmd.at for cmd in commands)
            self.heap = [(due, oid, kind) for oid, due, kind in
                         ledger.recorder.due_deadlines(latest)]
            heapq.heapify(self.heap)
        self._line: dict[str, tuple | None] = {}
        self._prefetch(commands)

    def _prefetch(self, commands: list[c.Command]) -> None:
        """Load every aggregate the batch will need in one query."""
        keys: set[str] = {order_key(oid) for _, oid, _ in self.heap}
        for cmd in commands:
            order_id = getattr(cmd, "order_id", None)
            if order_id:
                keys.add(order_key(order_id))
            if isinstance(cmd, c.Place):
                keys.update(sku_key(i.sku) for i in cmd.items)
            elif isinstance(cmd, c.SetInventory):
                keys.add(sku_key(cmd.sku))
        cache = self.ledger._cache
        for key in keys:
            if key in cache:
                self.aggs[key] = cache[key]
        missing = [k for k in keys if k not in self.aggs]
        if missing:
            self.aggs.update(self.ledger.load_many(missing))

    # aggregates --------------------------------------------------------------

    def get(self, key: str) -> Any:
        if key in self.aggs:
            return self.aggs[key]
        agg = self.ledger._cache.get(key)
        if agg is None:
            agg = self.ledger.load(key)
        self.aggs[key] = agg
        return agg

    def touch(self, agg: LedgerAggregate) -> LedgerAggregate:
        """Checkpoint an aggregate before this line changes it."""
        if agg.id not in self._line:
            self._line[agg.id] = agg.checkpoint()
            agg._sink = self.sink  # type: ignore[attr-defined]
        return agg

    def create(self, agg: LedgerAggregate) -> LedgerAggregate:
        self._line[agg.id] = None
        agg._sink = self.sink  # type: ignore[attr-defined]
        self.aggs[agg.id] = agg
        return agg

    def order(self, order_id: str) -> Order:
        order = self.get(order_key(order_id))
        if order is None:
            raise CommandRejected(
                "unknown-order", f"no order {order_id} in the ledger", field="order_id",
                hint="check the order id, or place the order first")
        return self.touch(order)  # type: ignore[return-value]

    # lines -------------------------------------------------------------------

    def handle(self, line: int | None, cmd: c.Command | CommandRejected) -> Outcome:
        if isinstance(cmd, CommandRejected):
            return Outcome(line, "rejected", error=cmd.as_dict())
        ctype = c.command_type(cmd)
        order_id = getattr(cmd, "order_id", None)
        out = Outcome(line, "applied", ctype, cmd.command_id, order_id, cmd.at.isoformat())
        cid = cmd.command_id
        if cid is not None and (cid in self.known):
            out.status = "duplicate"
            return out
        if cid is None:
            cid = out.command_id = str(uuid.uuid4())
        if self.clock is not None and cmd.at < self.clock:
            out.status = "rejected"
            out.error = CommandRejected(
                "time-backwards",
                f"command time {cmd.at.isoformat()} is before the ledger's clock "
                f"{self.clock.isoformat()}",
                field="at", hint="commands must come in time order").as_dict()
            return out
        self._line = {}
        mark = len(self.sink)
        try:
            self._advance(cmd.at, cid)
            self._dispatch(cmd, c.actor_of(cmd), cid)
        except CommandRejected as exc:
            self._rollback(mark)
            out.status = "rejected"
            out.error = exc.as_dict()
            return out
        except BaseException:
            self._rollback(mark)
            raise
        self._after_line()
        out.events = [type(e.payload).__name__ for e in self.sink[mark:]]
        self.clock = cmd.at if self.clock is None or cmd.at > self.clock else self.clock
        self.known.add(cid)
        self.accepted.append((cid, ctype, to_us(cmd.at)))
        return out

    def _rollback(self, mark: int) -> None:
        """Undo a rejected line: rebuild each aggregate it changed.

        The aggregate's state before the line is its stored state plus the
        batch's earlier pending events, so that is what is replayed.
        """
        for key, cp in self._line.items():
            agg = self.aggs.get(key)
            if cp is None or agg is None:
                self.aggs[key] = None
                continue
            version, n_pending = cp
            if agg.version == version:
                continue
            kept = agg.pending_events[:n_pending]
            base = self.ledger.load(key)
            for event in kept:
                base = event.mutate(base)
            if base is None:  # created by this line after all
                self.aggs[key] = None
                continue
            base._pending_events = kept
            base._sink = self.sink  # type: ignore[attr-defined]
            self.aggs[key] = base
            if isinstance(base, Order):
                self._push(base)
        del self.sink[mark:]
        self._line = {}

    def _after_line(self) -> None:
        for key in self._line:
            agg = self.aggs.get(key)
            if isinstance(agg, Order):
                self._push(agg)
        self._line = {}

    def _push(self, order: Order) -> None:
        nd = order.next_deadline_us()
        if nd is not None:
            heapq.heappush(self.heap, (nd[0], order.order_id, nd[1]))

    def _advance(self, at: datetime, cid: str) -> None:
        """Apply every deadline due at or before ``at``, in due order."""
        limit = to_us(at)
        heap = self.heap
        while heap and heap[0][0] <= limit:
            due_us, order_id, kind = heapq.heappop(heap)
            order = self.get(order_key(order_id))
            if order is None:
                continue
            nd_us = order.next_deadline_us()
            if nd_us is None or nd_us[1] != kind or nd_us[0] != due_us:
                continue  # a stale hint: the order moved on
            self.touch(order)
            due = order.next_deadline()[0]  # type: ignore[index]
            canceled = order.apply_deadline(kind, due, cid)
            self._give_back(order, canceled, due, "ledger", cid)
            self._push(order)

    def _give_back(self, order: Order, lines: list[ev.ItemQuantity], at: datetime,
                   actor: str, cid: str) -> None:
        if not lines:
            return
        for sku, qty in sku_quantities(lines, order).items():
            inv = self.get(sku_key(sku))
            if inv is not None and inv.allocated_to(order.order_id, order.purchased):
                self.touch(inv).give_back(order.order_id, qty, at, actor, cid)  # type: ignore[attr-defined]

    def _dispatch(self, cmd: c.Command, actor: str, cid: str) -> None:
        if isinstance(cmd, c.Tick):
            return
        if isinstance(cmd, c.SetInventory):
            key = sku_key(cmd.sku)
            inv = self.get(key)
            inv = self.touch(inv) if inv is not None else self.create(Inventory.blank(key, cmd.at))
            inv.record(ev.InventorySet(at=cmd.at, actor=actor, command_id=cid, sku=cmd.sku,
                                       quantity=cmd.quantity))
            return
        if isinstance(cmd, c.Place):
            self._place(cmd, actor, cid)
            return
        order = self.order(cmd.order_id)  # type: ignore[attr-defined]
        if isinstance(cmd, c.Cancel):
            self._give_back(order, order.cancel(cmd, actor, cid), cmd.at, actor, cid)
        elif isinstance(cmd, c.RequestCancel):
            order.request_cancel(cmd, actor, cid)
        elif isinstance(cmd, c.VerifyPayment):
            self._give_back(order, order.verify_payment(cmd, actor, cid), cmd.at, actor, cid)
        elif isinstance(cmd, c.Ship):
            order.ship(cmd, actor, cid)
        elif isinstance(cmd, c.Adjust):
            self._give_back(order, order.adjust(cmd, actor, cid), cmd.at, actor, cid)
        elif isinstance(cmd, c.SendMessage):
            order.send_message(cmd, actor, cid)
        elif isinstance(cmd, c.ReceiveMessage):
            order.receive_message(cmd, actor, cid)
        elif isinstance(cmd, c.ChangeAddress):
            order.change_address(cmd, actor, cid)
        else:  # pragma: no cover - the union is closed
            raise CommandRejected("unknown-type", f"cannot handle {type(cmd).__name__}")

    def _place(self, cmd: c.Place, actor: str, cid: str) -> None:
        key = order_key(cmd.order_id)
        if self.get(key) is not None:
            raise CommandRejected(
                "order-exists", f"order {cmd.order_id} was already placed", field="order_id",
                hint="order ids are unique; use a new one")
        wanted: dict[str, int] = {}
        for item in cmd.items:
            wanted[item.sku] = wanted.get(item.sku, 0) + item.quantity
        tracked: list[tuple[Inventory, int]] = []
        for sku, qty in wanted.items():
            inv = self.get(sku_key(sku))
            if inv is None:
                continue  # untracked SKU: not checked
            if inv.available < qty:
                raise CommandRejected(
                    "insufficient-inventory",
                    f"SKU {sku!r} has {inv.available} available, the order needs {qty}",
                    field="items", hint="set a higher quantity with set-inventory first")
            tracked.append((inv, qty))
        order = Order.blank(key, cmd.at)
        order.place(cmd, actor, cid)  # validates before recording
        self.create(order)
        self.sink.append(order.pending_events[-1])
        for inv, qty in tracked:
            self.touch(inv).allocate(cmd.order_id, qty, cmd.at, actor, cid)

    # commit ------------------------------------------------------------------

    def commit(self) -> list[int]:
        batch = Batch(commands=self.accepted)
        for agg in self.aggs.values():
            if agg is None or not agg.pending_events:
                continue
            agg.collect_events()
            if isinstance(agg, Order):
                nd = agg.next_deadline_us()
                if nd is None:
                    batch.cleared.append(agg.order_id)
                else:
                    batch.deadlines.append((agg.order_id, nd[0], nd[1]))
        if self.clock is not None and self.clock != self.start_clock:
            batch.clock = self.clock
        if not self.sink and not batch.commands and batch.clock is None:
            return []
        # The library's EventStore.put, minus building Recording objects we never use.
        to_stored = self.ledger.mapper.to_stored_event
        ids = self.ledger.recorder.insert_events(  # type: ignore[attr-defined]
            [to_stored(e) for e in self.sink], batch=batch)
        return list(ids or [])


class WriterLock:
    """A cross-process lock held by a ledger writer for one whole batch.

    SQLite: an exclusive ``flock`` on ``<ledger file>-writer.lock``; PostgreSQL:
    a transaction-scoped advisory lock keyed by the schema. Both are released
    by the operating system or the server when the process dies, so a killed
    writer never leaves the ledger locked. Waiting longer than the store's lock
    timeout raises :class:`LedgerBusy`. Re-entrant within one ``Ledger``.
    """

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.depth = 0
        self._fd: int | None = None
        self._pg: Any = None
        datastore = ledger.recorder.datastore  # type: ignore[attr-defined]
        pool = getattr(datastore, "pool", None)
        self.path: str | None = None
        self.pg_key: int | None = None
        if hasattr(datastore, "schema"):
            import hashlib

            digest = hashlib.blake2b(f"order-ledger:{datastore.schema}".encode(), digest_size=8)
            self.pg_key = int.from_bytes(digest.digest(), "big", signed=True)
            self.timeout = float(ledger.app.env.get("POSTGRES_LOCK_TIMEOUT") or 10)
        elif ledger.mode == "read":
            self.timeout = 10.0  # a reader never writes, so never locks
        elif pool is not None and not getattr(pool, "is_sqlite_memory_mode", True):
            self.path = os.path.abspath(pool.db_name) + "-writer.lock"
            self.timeout = float(getattr(pool, "lock_timeout", None) or 10)
        else:
            self.timeout = 10.0

    def __enter__(self) -> "WriterLock":
        if self.depth == 0:
            if self.path is not None:
                self._lock_file()
            elif self.pg_key is not None:
                self._lock_pg()
        self.depth += 1
        return self

    def __exit__(self, *exc: Any) -> None:
        self.depth -= 1
        if self.depth == 0:
            self._release(exc[0] is None)

    def _busy(self) -> LedgerBusy:
        return LedgerBusy(
            f"the ledger is busy: another writer held it for more than {self.timeout:g} s; "
            "try again")

    def _lock_file(self) -> None:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: rely on optimistic retries
            return
        if self._fd is None:
            try:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)  # type: ignore[arg-type]
            except OSError:
                self.path = None  # e.g. a read-only directory: optimistic retries only
                return
        deadline = time.monotonic() + self.timeout
        pause = 0.0005
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise self._busy() from None
                time.sleep(random.uniform(pause / 2, pause))
                pause = min(pause * 2, 0.02)

    def _lock_pg(self) -> None:
        datastore = self.ledger.recorder.datastore  # type: ignore[attr-defined]
        cm = datastore.get_connection()
        conn = cm.__enter__()
        try:
            if conn.autocommit:
                conn.execute("BEGIN")
            conn.execute("SELECT set_config('lock_timeout', %s, true)",
                         (f"{int(self.timeout * 1000)}ms",))
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (self.pg_key,))
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
                raise self._busy() from None
            if isinstance(exc, psycopg.OperationalError):
                raise StoreError(f"cannot take the ledger's writer lock: {exc}") from None
            raise
        self._pg = (cm, conn)

    def _release(self, ok: bool) -> None:
        if self._fd is not None and self.path is not None:
            import fcntl

            fcntl.flock(self._fd, fcntl.LOCK_UN)
        if self._pg is not None:
            cm, conn = self._pg
            self._pg = None
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
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
