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
from datetime import datetime, timedelta
from typing import Any, Callable, Iterable, Iterator, TypeVar

import msgspec
import msgspec.structs
from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import IntegrityError, InterfaceError, OperationalError

from . import commands as c
from . import events as ev
from .chain import Digest
from .clock import Clock, SystemClock
from .codec import PayloadMapper
from .domain import (
    Inventory,
    LedgerAggregate,
    Order,
    Recorded,
    order_key,
    sku_key,
    sku_quantities,
)
from .errors import (
    CommandRejected,
    ConcurrencyConflict,
    LedgerBusy,
    LedgerError,
    LedgerReadOnly,
    StoreError,
    StoreUnavailable,
    StoreWriteFailed,
)
from .backend import Backend
from .locks import ConnectionLost
from .eventlog import EventLog, RecorderLog
from .store import (
    Batch,
    LedgerRecorderMixin,
    connection_lost,
    env_for,
    from_us,
    resolve_db,
    to_us,
)

MAX_RETRIES = 5
#: seconds a writer waits for a PostgreSQL server that stopped answering (restart,
#: terminated connection) before giving up with StoreUnavailable;
#: ORDER_LEDGER_RECONNECT_TIMEOUT overrides it
RECONNECT_TIMEOUT = 60.0


def _reconnect_timeout_from_env() -> float:
    raw = os.environ.get("ORDER_LEDGER_RECONNECT_TIMEOUT", "").strip()
    if not raw:
        return RECONNECT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:  # also NaN
        raise StoreError(f"ORDER_LEDGER_RECONNECT_TIMEOUT={raw!r} is not a number of seconds: "
                         f"set it to e.g. 60 (the default), or unset it")
    return value


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__




DEFAULT_BATCH = 1000
#: a run of batches lets the collector scan everything once every this many batches,
#: or sooner after this many rejected lines (a line that fails to decode can leave a
#: small cycle behind; an accepted one leaves none). A full scan at 50k orders costs
#: a few per cent of the whole run, so it is rare.
GC_FULL_EVERY = 1000
GC_FULL_REJECTED = 10_000
CACHE_LIMIT = 50_000
#: How far past the ledger's latest business time a command taking its time from
#: the wall clock may go before the command line asks first (docs/decisions.md).
CLOCK_JUMP_LIMIT = timedelta(days=1)
#: how far past the recording clock a command's business time may be
FUTURE_LIMIT = timedelta(minutes=5)
_DEADLINE_EVENTS = (ev.HoldExpired, ev.LedgerCanceled, ev.ShipByWarningIssued)
_Agg = TypeVar("_Agg", bound=LedgerAggregate)


class LedgerApp(Application[str]):
    """The ``eventsourcing`` application: recorder, event store, repository."""

    name = "OrderLedger"

    def construct_mapper(self) -> PayloadMapper:
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


def disk_full_message(where: str | None) -> str:
    """What a writer says when SQLite reports "database or disk is full"."""
    return (f"the disk is full (or the database reached its size limit) while writing to "
            f"{where!r}: nothing of this batch was written; free some space and run the same "
            "command again (lines already accepted are reported duplicate)")


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
    error: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return self.status != "rejected"

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if v is not None}
        return out


@dataclass
class DeadlinePreview:
    """What moving the ledger's clock to ``until`` would let fire (nothing written).

    ``deadlines`` counts every deadline event (hold expiry, 21-day verification
    cancel, day-23 warning, day-30 cancel), including deadlines that only fall
    due because an earlier one fired; ``orders_canceled`` counts the orders
    whose quantities those deadlines cancel (in whole or in part).
    """

    until: datetime
    ledger_time: datetime | None
    deadlines: int = 0
    orders_canceled: int = 0
    by_event: dict[str, int] = field(default_factory=dict)

    @property
    def jump(self) -> timedelta | None:
        """How far ``until`` is ahead of the ledger's latest business time."""
        return None if self.ledger_time is None else self.until - self.ledger_time

    def as_dict(self) -> dict[str, Any]:
        return {"until": self.until.isoformat(),
                "ledger_time": self.ledger_time.isoformat() if self.ledger_time else None,
                "deadlines": self.deadlines, "orders_canceled": self.orders_canceled,
                "by_event": dict(self.by_event)}


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
                 mode: str = "write", advance_clock: bool = False,
                 reconnect_timeout: float | None = None) -> None:
        if reconnect_timeout is None:  # checked first: a bad setting creates nothing
            reconnect_timeout = _reconnect_timeout_from_env()
        self.db = resolve_db(db)
        self.mode = mode
        #: the default for writes: True when the lines are one time-sorted stream
        #: whose every command also tells the ledger the world reached its time
        self.advance_clock = advance_clock
        full_env = env_for(self.db, mode)
        if env:
            full_env.update(env)
        self.app = _open_app(full_env)
        self.recorder: LedgerRecorderMixin = self.app.recorder  # type: ignore[assignment]
        self.mapper: PayloadMapper = self.app.mapper  # type: ignore[assignment]
        self.clock = clock or SystemClock()
        self.cache_limit = cache_limit
        #: aggregates as the last commit left them, by key; None: known not to exist
        #: (e.g. an untracked SKU), so it is not asked for again. Valid while the
        #: store's head is where our last commit left it (``_head``).
        self._cache: dict[str, LedgerAggregate | None] = {}
        self._head = -1
        self._writer_lock = self.backend.writer_lock(self.recorder, self.app.env,
                                                     reading=self.mode == "read")
        self._store_readable = False
        #: seconds a batch waits for a PostgreSQL server that stopped answering
        self.reconnect_timeout = reconnect_timeout
        #: called with a one-line message when a batch starts waiting for the server
        #: and when it goes on (the CLI prints these on stderr)
        self.notice: Any = None

    def close(self) -> None:
        """Release the writer lock and the store's connections; closing again does nothing."""
        if self.__dict__.get("_closed"):
            return
        self._closed = True
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
            return self.app.repository.get(key)
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

    def conflicts(self, order_id: str | None = None) -> list[dict[str, Any]]:
        """Late facts rejected ``deadline-passed``, oldest first: where the ledger and
        the marketplace (or another source) disagree."""
        out = []
        for rec_us, cid, ctype, oid, at_us, due_us, kind, command in \
                self.recorder.conflicts(order_id):
            try:  # both times in the command's own UTC offset, as it was written
                cmd_at = datetime.fromisoformat(msgspec.json.decode(command)["at"])
            except Exception:  # noqa: BLE001 - fall back to UTC
                cmd_at = from_us(at_us)
            tz = cmd_at.tzinfo
            out.append({"recorded_at": from_us(rec_us).isoformat(), "order_id": oid,
                        "command_id": cid, "type": ctype, "at": cmd_at.isoformat(),
                        "deadline": kind,
                        "deadline_at": from_us(due_us).astimezone(tz).isoformat(),
                        "command": command})
        return out

    def position_known_at(self, known_at: datetime) -> int:
        """The last position recorded at or before ``known_at``: the prefix of the log
        the ledger knew then. A ledger written before recording times existed reads
        its events as recorded at their business time."""
        pos = self.recorder.position_recorded_by(known_at)
        if pos is not None:
            return pos
        last = 0
        for position, _, payload in self.iter_events():
            if ev.recorded_at(payload) > known_at:
                break
            last = position
        return last

    def digest(self) -> Digest | None:
        """The head of the hash chain (``POSITION:HEXHASH``), or None for an empty chain."""
        head = self.recorder.chain_head()
        return Digest(*head) if head else None

    def migrate(self) -> int:
        """Bring an older store up to date: hash every event into the chain (once).

        Returns how many events were hashed (0 when the chain already exists)."""
        with self._writer_lock:
            done = self.recorder.build_chain()
        self._cache.clear()
        return int(done)

    def pending_deadlines(self, until: datetime, order_id: str | None = None) -> DeadlinePreview:
        """The deadlines a command at ``until`` would fire before it runs; writes nothing.

        Without ``order_id``: what a ``tick`` at ``until`` would fire (every order);
        with it: what a command on that order would fire (its own deadlines only).
        Decided exactly as the real command would (in memory, on freshly loaded
        orders), then thrown away.
        """
        latest = self.now()
        preview = DeadlinePreview(until=until, ledger_time=latest)
        if latest is not None and until < latest:
            return preview  # such a command is rejected (time-backwards): nothing fires
        self._cache.clear()  # the dry run changes the orders it loads: never share them
        self._head = -1
        try:
            if order_id is None:
                uow = UnitOfWork(self, [c.Tick(at=until)])
                uow._advance(until, "preview")
            else:
                uow = UnitOfWork(self, [])
                order = uow.get(order_key(order_id))
                if isinstance(order, Order):
                    uow._fire(order, to_us(until), "preview")
            payloads = [e.payload for e in uow.sink if isinstance(e.payload, _DEADLINE_EVENTS)]
        finally:
            self._cache.clear()
            self._head = -1
        canceled: set[str] = set()
        for p in payloads:
            name = type(p).__name__
            preview.by_event[name] = preview.by_event.get(name, 0) + 1
            if getattr(p, "canceled", None):
                canceled.add(p.order_id)
        preview.deadlines = len(payloads)
        preview.orders_canceled = len(canceled)
        return preview

    def clock_jump(self, at: datetime, order_id: str | None = None) -> DeadlinePreview | None:
        """The preview of a command at ``at`` if that is more than ``CLOCK_JUMP_LIMIT``
        past the ledger's latest business time, else None (an empty ledger: None).

        The command line asks before such a jump when the time is the wall clock.
        A ``tick`` is compared with the ledger's clock; a command on an order
        (``order_id``) with that order's latest event, as only its deadlines fire.
        """
        if order_id is None:
            latest = self.now()
        else:
            order = self.order(order_id)
            times = [t for t in (order.fact_at, order.deadline_at) if t is not None] \
                if order is not None else []
            latest = max(times) if times else None
        if latest is None or at - latest <= CLOCK_JUMP_LIMIT:
            return None
        preview = self.pending_deadlines(at, order_id)
        preview.ledger_time = latest
        return preview

    def head(self) -> int:
        """The global position of the newest event (0 when empty)."""
        return self.recorder.head()

    @property
    def backend(self) -> Backend:
        """Where this ledger lives and what follows from it (:class:`ledger.backend.Backend`)."""
        return Backend(self.db)

    def event_log(self, *, fast: bool = True) -> EventLog:
        """The log of events for a reader (:mod:`ledger.eventlog`); ``fast``: a SQLite
        ledger file is read directly when it can be. The caller closes it."""
        log = self.backend.fast_log(self.recorder) if fast else None
        return log if log is not None else RecorderLog(self.recorder)

    def decoder(self) -> Callable[[str, bytes], ev.Event]:
        """Decode a stored ``(topic, state)``: cipher, compression and upcasters apply."""
        return self.mapper.decode_state

    def plain_decoders(self) -> dict[str, msgspec.json.Decoder[ev.Event]] | None:
        """Topic -> decoder of current, plain payloads, for bulk readers (None when
        payloads are compressed or encrypted); see ``PayloadMapper.plain_decoders``."""
        return self.mapper.plain_decoders()

    def events_of(self, key: str, upto: int | None = None) -> list[tuple[int, int, ev.Event]]:
        """One aggregate's events in order: ``(position, version, payload)``, up to
        position ``upto``."""
        decode = self.mapper.decode_state
        out = []
        for position, version, topic, state in self.recorder.select_with_positions(key):
            if upto is not None and position > upto:
                break
            out.append((int(position), int(version), decode(topic, bytes(state))))
        return out

    def events_at(self, positions: Iterable[int]) -> dict[int, tuple[str, ev.Event]]:
        """The events at the given global positions: ``{position: (aggregate id, payload)}``."""
        decode = self.mapper.decode_state
        return {pos: (agg, decode(topic, bytes(state)))
                for pos, agg, topic, state in self.recorder.select_at_positions(positions)}

    def command_times(self, command_ids: Iterable[str]) -> dict[str, tuple[str, int]]:
        """Accepted commands by id: ``(type, business time in microseconds)``."""
        return self.recorder.command_rows(command_ids)

    @property
    def encrypted(self) -> bool:
        """Whether stored payloads are encrypted (``ORDER_LEDGER_CIPHER_KEY``)."""
        return self.mapper.cipher is not None

    def chain_rows(self, start: int, stop: int) -> list[tuple[int, bytes]]:
        """The hash chain's ``(position, hash)`` rows with ``start <= position <= stop``."""
        return self.recorder.chain_rows(start, stop)

    def import_events(self, events: Iterable[Recorded], batch: Batch) -> None:
        """Store events decided elsewhere (an imported bundle's) as they are, with their
        batch rows, in one transaction."""
        to_stored = self.mapper.to_stored_event
        self.recorder.insert_events(  # type: ignore[attr-defined]
            [to_stored(e) for e in events], batch=batch)

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

    def execute(self, command: c.Command | dict[str, Any] | str | bytes, *,
                advance_clock: bool | None = None) -> Outcome:
        """Apply one command in its own durable transaction."""
        if isinstance(command, dict):
            command = msgspec.json.encode(command)
        return self._run_batch([(None, command)], advance_clock=advance_clock)[0]

    def tick(self, at: datetime | None = None, command_id: str | None = None) -> Outcome:
        """Apply every deadline due at or before ``at`` (default: the clock's now)."""
        return self.execute(c.Tick(at=at or self.clock.now(), command_id=command_id))

    def apply_lines(self, lines: Iterable[str | bytes], *, batch_size: int = DEFAULT_BATCH,
                    start_line: int = 1, dry_run: "bool | DryRun" = False,
                    advance_clock: bool | None = None) -> Iterator[Outcome]:
        """Apply command-file lines; yields one outcome per non-blank line once committed.

        ``advance_clock`` (default: the ledger's): every line is also a tick at its
        time, as when the lines are one time-sorted stream (see docs/decisions.md).

        ``dry_run``: decide every line exactly as a real run would (duplicates,
        deadlines firing, lines depending on earlier ones) but write nothing:
        no events, command ids, clock or deadline rows. Pass a :class:`DryRun`
        to read the state the lines would leave (``DryRun.load_many``).
        """
        dry = None
        if dry_run:
            dry = dry_run if isinstance(dry_run, DryRun) else DryRun(self)
        # what the batches leave alive (the aggregate cache above all) is frozen out of
        # the collector's generations until the last batch: see _gc_paused
        freeze = gc.isenabled() and gc.get_freeze_count() == 0
        try:
            chunk: list[tuple[int | None, Any]] = []
            batches = rejected = 0
            for n, line in command_lines(lines, start_line):
                chunk.append((n, line))
                if len(chunk) >= batch_size:
                    outcomes = self._run_batch(chunk, dry, advance_clock, freeze)
                    chunk = []
                    if freeze:
                        batches += 1
                        rejected += sum(1 for o in outcomes if o.status == "rejected")
                        if batches >= GC_FULL_EVERY or rejected >= GC_FULL_REJECTED:
                            # now and then everything is scanned once: what cyclic
                            # garbage the frozen batches hold waits at most this long
                            batches = rejected = 0
                            gc.unfreeze()
                            gc.collect()
                    yield from outcomes
            if chunk:
                yield from self._run_batch(chunk, dry, advance_clock, freeze)
        finally:
            if freeze:
                gc.unfreeze()

    def _run_batch(self, chunk: list[tuple[int | None, Any]],
                   dry: "DryRun | None" = None,
                   advance_clock: bool | None = None,
                   freeze: bool = False) -> list[Outcome]:
        # the collector is paused from the parsing on: parsing allocates a batch's
        # commands, and a collection then would rescan the aggregate cache
        with _gc_paused(freeze):
            return self._decide_batch(chunk, dry, advance_clock)

    def _decide_batch(self, chunk: list[tuple[int | None, Any]],
                      dry: "DryRun | None", advance_clock: bool | None) -> list[Outcome]:
        parsed = self._parse(chunk)
        if dry is not None:
            return dry.decide(parsed, advance_clock)
        if self.mode == "read":
            raise LedgerReadOnly(self.db, "it was opened for reading (mode='read')")
        return self._commit_waiting(parsed, advance_clock)

    @staticmethod
    def _parse(chunk: list[tuple[int | None, Any]]
               ) -> list[tuple[int | None, c.Command | CommandRejected, bytes | None]]:
        parsed: list[tuple[int | None, c.Command | CommandRejected, bytes | None]] = []
        parse = c.parse_command
        Command = c.Command
        for n, item in chunk:
            if isinstance(item, Command):
                parsed.append((n, item, None))
                continue
            try:
                parsed.append((n, parse(item), None))
            except CommandRejected as exc:
                # kept without its traceback and the decoder's error it replaced: their
                # frames hold this one, and so the batch (a cycle that would wait for
                # the collector, which a run of batches lets scan it only now and then)
                exc.__context__ = None
                parsed.append((n, exc.with_traceback(None), None))
            except UnicodeDecodeError as exc:  # bytes inside a JSON string that are not UTF-8
                parsed.append((n, CommandRejected(
                    "malformed-json",
                    f"the line is not valid UTF-8 (byte {exc.start}: {exc.reason})",
                    hint="save the command file as UTF-8"), None))
        return parsed

    def _commit_waiting(self, parsed: list[Any], advance_clock: bool | None) -> list[Outcome]:
        """Decide and commit a batch; when the PostgreSQL server stops answering
        (restarted, our connection ended), roll back, wait for it with a growing
        pause and decide the batch again -- up to ``reconnect_timeout`` seconds,
        then :class:`StoreUnavailable`. Deciding again is what makes the retry
        safe: a batch whose commit reached the server before the connection
        dropped finds its command ids taken and reports those lines as
        duplicates, so nothing is written twice."""
        started: float | None = None
        pause = 0.05
        while True:
            try:
                outcomes = self._commit_batch(parsed, advance_clock)
            except Exception as exc:
                if not self.backend.is_postgres or not connection_lost(exc):
                    raise
                self._cache.clear()
                self._head = -1
                now = time.monotonic()
                reason = _first_line(exc)
                if started is None:
                    started = now
                    self._say(f"the PostgreSQL server is not answering ({reason}); "
                              f"retrying the batch for up to {self.reconnect_timeout:g} s")
                if now - started >= self.reconnect_timeout:
                    raise StoreUnavailable(
                        f"the PostgreSQL server did not answer for {self.reconnect_timeout:g} s "
                        f"({reason}); nothing of the batch in flight was acknowledged: run the "
                        "same lines again once the server is back (lines already applied come "
                        "back as duplicates); ORDER_LEDGER_RECONNECT_TIMEOUT sets the wait"
                    ) from None
                time.sleep(min(pause, max(0.0, started + self.reconnect_timeout - now)))
                pause = min(pause * 2, 2.0)
                continue
            if started is not None:
                self._say(f"the PostgreSQL server answers again after "
                          f"{time.monotonic() - started:.1f} s; the batch is committed")
            return outcomes

    def _write_failure(self, exc: Exception) -> LedgerError:
        """The error a failed write of a batch is reported as."""
        text = str(exc).lower()
        if "lock" in text or "busy" in text:
            return LedgerBusy(f"the ledger is busy ({exc}); try again")
        if "readonly" in text or "read-only" in text:
            return LedgerReadOnly(self.db, str(exc))
        if "database or disk is full" in text:
            return StoreWriteFailed(disk_full_message(self.db))
        return StoreWriteFailed(f"the store failed while writing a batch: {exc}")

    # --- a batch in two steps: decided, then committed (the service's pipeline) ---------

    def begin_batch(self, *, advance_clock: bool | None = None,
                    after: "PendingBatch | None" = None,
                    wait: Callable[[], None] | None = None) -> "PendingBatch":
        """Start a batch that is decided now and committed later: lines are added to it
        (:meth:`PendingBatch.add`: parsed, checked and decided, nothing written), then
        :meth:`PendingBatch.seal` encodes its writes, :meth:`PendingBatch.write` commits
        them (the store's transaction only: it may run in another thread) and
        :meth:`landed` ends it. The writer lock is taken here and released by
        :meth:`landed` (or :meth:`abandon`).

        ``after``: a batch sealed and still committing. The new batch is decided on
        the state that one leaves -- its aggregates, command ids, clock, recording
        time and deadlines -- so it can be decided while the other one's commit
        syncs. The caller commits the two in order, and if ``after`` fails it must
        :meth:`abandon` this one (it was decided on state that never committed) and
        decide its lines again. ``wait()`` waits for ``after``'s commit (raising if it
        failed): a rejected line whose aggregates must be reloaded calls it first.
        SQLite files only: ``after`` needs the writer lock held from one batch to the
        next, and the store read while the other commits (WAL readers)."""
        if self.mode == "read":
            raise LedgerReadOnly(self.db, "it was opened for reading (mode='read')")
        self._writer_lock.__enter__()
        try:
            if not self._store_readable:
                self._probe_store()
            head: int | None = None
            if after is None:
                head = self.recorder.head()
                if head != self._head:
                    self._cache.clear()
            return PendingBatch(self, advance_clock, after, wait, head)
        except BaseException as exc:
            self._writer_lock.__exit__(type(exc), exc, None)
            raise

    def landed(self, batch: "PendingBatch", ids: list[int] | None,
               exc: BaseException | None) -> BaseException | None:
        """End ``batch`` once :meth:`PendingBatch.write` returned ``ids`` or raised
        ``exc``; releases its hold on the writer lock. Returns None when it committed,
        else the error to report -- an :class:`IntegrityError` as it is (another
        writer appended to one of its aggregates: decide its lines again, as
        :meth:`apply_lines` does)."""
        try:
            if exc is not None:
                self._cache.clear()
                self._head = -1
                if isinstance(exc, (OperationalError, InterfaceError)):
                    return self._write_failure(exc)
                return exc
            head = batch.head
            self._head = (max(ids) if ids and head is not None and min(ids) == head + 1
                          else (head if not ids and head is not None else -1))
            return None
        finally:
            self._writer_lock.__exit__(None, None, None)

    def abandon(self, batch: "PendingBatch") -> None:
        """Drop a batch that will not be committed (the one it was decided upon
        failed): nothing it decided is kept; releases its hold on the writer lock."""
        self._cache.clear()
        self._head = -1
        self._writer_lock.__exit__(None, None, None)

    def _keep(self, aggs: dict[str, LedgerAggregate | None]) -> None:
        """Cache a batch's aggregates as it leaves them (None included: known absent)
        for the next batch; past ``cache_limit`` the cache starts again."""
        if len(self._cache) > self.cache_limit:
            self._cache.clear()
        self._cache.update(aggs)

    def _say(self, message: str) -> None:
        if self.notice is not None:
            self.notice(message)

    def _commit_batch(self, parsed: list[Any], advance_clock: bool | None) -> list[Outcome]:
        # The writer lock serialises whole batches (read, decide, commit) across
        # processes, so every batch decides on the latest committed state; the
        # retry below stays as the safety net for writers that do not take it.
        with self._writer_lock:
            if not self._store_readable:
                self._probe_store()
            for attempt in range(MAX_RETRIES):
                head = self.recorder.head()
                if head != self._head:
                    self._cache.clear()
                uow = UnitOfWork(self, [p[1] for p in parsed if isinstance(p[1], c.Command)],
                                 advance_clock=advance_clock)
                outcomes = [uow.handle(n, cmd) for n, cmd, _ in parsed]
                try:
                    ids = uow.commit()
                except IntegrityError:
                    self._cache.clear()
                    self._head = -1
                    time.sleep(random.uniform(0, 0.01 * 2 ** attempt))
                    continue
                except (OperationalError, InterfaceError) as exc:
                    self._cache.clear()
                    self._head = -1
                    if self.backend.is_postgres and connection_lost(exc):
                        raise ConnectionLost(str(exc)) from exc
                    raise self._write_failure(exc) from None
                self._keep(uow.aggs)
                # Trust the cache for the next batch only if no one else wrote in between.
                self._head = max(ids) if ids and min(ids) == head + 1 else (head if not ids else -1)
                return outcomes
        raise ConcurrencyConflict(
            f"gave up after {MAX_RETRIES} attempts: other writers kept changing the same orders")


class PendingBatch:
    """A batch decided line by line and committed later (see :meth:`Ledger.begin_batch`)."""

    def __init__(self, ledger: Ledger, advance_clock: bool | None,
                 after: "PendingBatch | None", wait: Callable[[], None] | None,
                 head: int | None) -> None:
        self.ledger = ledger
        self.parsed: list[tuple[int | None, c.Command | CommandRejected, bytes | None]] = []
        #: the store's head this batch was decided on (None: the end of ``after``,
        #: known once that one committed)
        self.head = head
        self.uow: UnitOfWork = UnitOfWork(ledger, [], advance_clock=advance_clock,
                              after=after.uow if after is not None else None)
        self.uow.settle = wait if after is not None else None
        self.sealed: tuple[list[Any], Batch] | None = None

    def add(self, lines: list[tuple[int | None, Any]]) -> list[Outcome]:
        """Decide ``(line number, line)`` pairs in this batch; their outcomes (final once
        the batch committed: a late order's deadlines are added to its last line when
        sealed)."""
        parsed = self.ledger._parse(lines)
        self.uow.extend([p[1] for p in parsed if isinstance(p[1], c.Command)])
        self.parsed += parsed
        return [self.uow.handle(n, cmd) for n, cmd, _ in parsed]

    def seal(self) -> None:
        """Encode the batch's writes; its aggregates become the ledger's cached state
        (the next batch may be decided on them before this one committed)."""
        if self.head is None:
            self.head = self.ledger._head if self.ledger._head >= 0 else None
        self.sealed = self.uow.seal()
        self.ledger._keep(self.uow.aggs)

    def write(self) -> list[int]:
        """The store's transaction: the sealed writes, committed (durable on return).
        Touches no state of the ledger but the store: it may run in another thread while
        the next batch is decided."""
        if self.sealed is None:
            return []
        stored, batch = self.sealed
        ids = self.ledger.recorder.insert_events(stored, batch=batch)  # type: ignore[attr-defined]
        return list(ids or [])


class DryRun:
    """Command-file lines decided exactly as a real run would, nothing written.

    One :class:`UnitOfWork` is kept in memory for the whole run and never
    committed: each chunk of lines extends it (their command ids, the stored
    deadlines due by then, their aggregates), so a line sees the lines before
    it -- in any chunk -- as if they had been committed. No writer lock is
    taken (the lock file is not even created); another writer committing
    during the run is not seen until a later chunk loads what it changed.
    """

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.uow: UnitOfWork | None = None
        # the run changes aggregates in place: never those the ledger caches
        ledger._cache.clear()
        ledger._head = -1

    def decide(self, parsed: list[tuple[int | None, Any, Any]],
               advance_clock: bool | None = None) -> list[Outcome]:
        if not self.ledger._store_readable:
            self.ledger._probe_store()
        commands = [p[1] for p in parsed if isinstance(p[1], c.Command)]
        with _gc_paused():
            if self.uow is None:
                self.uow = UnitOfWork(self.ledger, commands, advance_clock=advance_clock)
            else:
                self.uow.extend(commands)
            outcomes = [self.uow.handle(n, cmd) for n, cmd, _ in parsed]
            self.uow.finish()  # as a real batch does before its commit
            return outcomes

    def apply_lines(self, lines: Iterable[str | bytes], **options: Any) -> Iterator[Outcome]:
        return self.ledger.apply_lines(lines, dry_run=self, **options)

    def load_many(self, keys: Iterable[str]) -> dict[str, LedgerAggregate | None]:
        """Aggregates as the lines decided so far would leave them."""
        keys = list(keys)
        aggs = self.uow.aggs if self.uow is not None else {}
        found = {k: aggs[k] for k in keys if k in aggs}
        missing = [k for k in keys if k not in found]
        if missing:
            found.update(self.ledger.load_many(missing))
        return found


def command_lines(lines: Iterable[str | bytes], start_line: int = 1
                  ) -> Iterator[tuple[int, str | bytes]]:
    """The non-blank lines of a command file with their line numbers, a byte-order
    mark before the first one dropped (it is not part of the first command)."""
    for n, line in enumerate(lines, start_line):
        if n == start_line:
            if isinstance(line, bytes) and line.startswith(b"\xef\xbb\xbf"):
                line = line[3:]
            elif isinstance(line, str) and line.startswith("\ufeff"):
                line = line[1:]
        if line and not line.isspace():  # not blank (without copying the line to strip it)
            yield n, line


def ledger_exists(db: str | None) -> bool:
    """Whether a ledger is stored at ``db``. Asking creates nothing."""
    from .errors import LedgerNotFound

    try:
        Ledger(db, mode="read").close()
    except LedgerNotFound:
        return False
    return True


def open_for_dry_run(db: str | None, *, clock: Clock | None = None) -> Ledger:
    """The ledger to decide lines against without writing: the one at ``db``, opened
    for reading, or, when none exists there, an empty one in memory -- a check never
    creates a ledger (and works on read-only storage)."""
    from .errors import LedgerNotFound

    try:
        return Ledger(db, clock=clock, mode="read")
    except LedgerNotFound:
        env_for(resolve_db(db))  # the same errors as a real open (a missing directory, ...)
        return Ledger(":memory:", clock=clock)


def _minutes(d: timedelta) -> str:
    n = int(d.total_seconds() // 60)
    return f"{n} minute{'s' if n != 1 else ''}"


@contextmanager
def _gc_paused(freeze: bool = False) -> Iterator[None]:
    """Pause the cyclic garbage collector for one batch.

    A batch allocates many small objects that form no cycles; collecting
    while they are alive rescans the aggregate cache again and again (a
    quarter of bulk-apply time). Anything cyclic is collected after the batch.

    ``freeze`` (a run of batches, :meth:`Ledger.apply_lines`): what the batch
    left alive is moved out of the collector's generations (``gc.freeze``)
    before it is enabled again, so the collection that follows each batch does
    not scan the batch's new objects and the aggregate cache once more; the run
    unfreezes them at its end. Freezing changes no object's lifetime: the
    frozen objects are freed by their reference counts as before, only a cycle
    among them waits for the end of the run.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        if freeze:
            gc.freeze()
        gc.enable()


_COMMAND_NAMES = c.COMMAND_NAMES
#: the Order method that decides each command on an order, and whether it returns
#: quantities whose units go back to the inventory
_ORDER_METHODS: dict[type, tuple[Callable[..., Any], bool]] = {
    c.Cancel: (Order.cancel, True),
    c.RequestCancel: (Order.request_cancel, False),
    c.VerifyPayment: (Order.verify_payment, True),
    c.Ship: (Order.ship, False),
    c.Adjust: (Order.adjust, True),
    c.SendMessage: (Order.send_message, False),
    c.ReceiveMessage: (Order.receive_message, False),
    c.ChangeAddress: (Order.change_address, False),
    c.Acknowledge: (Order.acknowledge, False),
    c.ReleaseRestricted: (Order.release_restricted, False),
    c.CorrectTracking: (Order.correct_tracking, False),
}


class UnitOfWork:
    """One batch: aggregates loaded once, lines checkpointed, one commit."""

    def __init__(self, ledger: Ledger, commands: list[c.Command], *,
                 advance_clock: bool | None = None, after: "UnitOfWork | None" = None) -> None:
        self.ledger = ledger
        self.aggs: dict[str, LedgerAggregate | None] = {}
        self.sink: list[Any] = []
        #: a batch sealed but perhaps not yet committed that this one follows (see
        #: Ledger.begin_batch): its clock, recording time, command ids and deadlines
        #: count, not the store's, which may not have them yet
        self.after = after
        #: waits for ``after``'s commit (raising if it failed): before a rollback reloads
        self.settle: Callable[[], None] | None = None
        #: each changed order's next deadline, as committed (set by :meth:`seal`)
        self.deadlines: list[tuple[str, int, str]] = []
        #: the watermark: every deadline due by then has fired (moved by ticks, or by
        #: every command when the clock advances with the lines)
        self.clock: datetime | None = (ledger.recorder.read_clock() if after is None
                                       else after.clock)
        self.start_clock = self.clock
        self.advance = ledger.advance_clock if advance_clock is None else advance_clock
        # the recording time of this batch, taken under the writer lock: the
        # injected clock's now, never before the previous commit's
        now = ledger.clock.now()
        last: datetime | None = (ledger.recorder.last_recorded() if after is None
                                 else after.recorded)
        self.recorded: datetime = now if last is None or now > last else last
        self.future_us = to_us(self.recorded + FUTURE_LIMIT)
        self.known: set[str] = set() if after is None else {a[0] for a in after.accepted}
        self.accepted: list[tuple[str, str, int]] = []
        self.conflicts: list[tuple[Any, ...]] = []
        #: orders changed by this batch in the default mode, with the last line's
        #: command id and outcome (see :meth:`finish`)
        self.late: dict[str, tuple[str, Outcome]] = {}
        self.heap: list[tuple[int, str, str]] = []
        #: order id -> the (due, kind) this batch last pushed for it and has not popped:
        #: an order whose next deadline did not move is not pushed again
        self.pushed: dict[str, tuple[int, str]] = {}
        #: aggregates changed since the heap was last brought up to date: their orders'
        #: next deadlines are pushed only when the heap is next read (:meth:`_advance`)
        self.dirty: dict[str, Any] = {}
        self.horizon: datetime | None = None  # deadlines due by then are in the heap
        self._line: dict[str, tuple[Any, ...] | None] = {}
        self.extend(commands)

    def stamp(self, cmd: c.Command) -> c.Command:
        """A command without a business time happens when it is recorded."""
        return cmd if cmd.at is not None else msgspec.structs.replace(cmd, at=self.recorded)

    def extend(self, commands: list[c.Command]) -> None:
        """Make ready for more commands: their command ids looked up, the stored
        deadlines they may fire put in the heap, their aggregates loaded.

        A batch calls it once; a dry run (:class:`DryRun`) calls it for every
        chunk of lines while the state stays in memory, uncommitted.
        """
        commands = [cmd if cmd.at is not None else self.stamp(cmd) for cmd in commands]
        ids = [cmd.command_id for cmd in commands
               if cmd.command_id is not None and cmd.command_id not in self.known]
        if ids:
            self.known |= self.ledger.recorder.known_commands(ids)
        # Stored deadlines of other orders fire only when the world's time moves:
        # at a tick, or at every line when the clock advances with the lines.
        movers = [cmd.at for cmd in commands if cmd.at is not None
                  and (self.advance or isinstance(cmd, c.Tick)) and to_us(cmd.at) <= self.future_us]
        if movers:
            latest = max(movers)
            if self.horizon is None or latest > self.horizon:
                # hints only: a stale or repeated entry is skipped in _advance
                due = [(d, oid, kind) for oid, d, kind in self.ledger.recorder.due_deadlines(latest)]
                if self.after is not None:  # set by the batch still committing, maybe
                    limit = to_us(latest)
                    due += [(d, oid, kind) for oid, d, kind in self.after.deadlines if d <= limit]
                if self.heap:
                    for entry in due:
                        heapq.heappush(self.heap, entry)
                else:
                    heapq.heapify(due)
                    self.heap = due
                self.horizon = latest
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
        aggs = self.aggs
        for key in keys:
            # what this batch holds already stays: a line undone may have replaced the
            # cached aggregate (changed by the line) with one rebuilt from the store
            if key in cache and key not in aggs:
                aggs[key] = cache[key]
        missing = [k for k in keys if k not in self.aggs]
        if missing:
            self.aggs.update(self.ledger.load_many(missing))

    # aggregates --------------------------------------------------------------

    def get(self, key: str) -> Any:
        if key in self.aggs:
            return self.aggs[key]
        cache = self.ledger._cache
        agg = cache[key] if key in cache else self.ledger.load(key)
        self.aggs[key] = agg
        return agg

    def touch(self, agg: _Agg) -> _Agg:
        """Checkpoint an aggregate before this line changes it."""
        if agg.id not in self._line:
            self._line[agg.id] = agg.checkpoint()
            agg._sink = self.sink  # type: ignore[attr-defined]
        return agg

    def create(self, agg: _Agg) -> _Agg:
        self._line[agg.id] = None
        agg._sink = self.sink  # type: ignore[attr-defined]
        self.aggs[agg.id] = agg
        return agg

    def order(self, order_id: str) -> Order:
        order: Order | None = self.get(order_key(order_id))
        if order is None:
            raise CommandRejected(
                "unknown-order", f"no order {order_id} in the ledger", field="order_id",
                hint="check the order id, or place the order first")
        return self.touch(order)

    # lines -------------------------------------------------------------------

    def handle(self, line: int | None, cmd: c.Command | CommandRejected) -> Outcome:
        if isinstance(cmd, CommandRejected):
            return Outcome(line, "rejected", error=cmd.as_dict())
        if cmd.at is None:
            cmd = self.stamp(cmd)
        at: datetime = cmd.at  # type: ignore[assignment]
        ctype = _COMMAND_NAMES[type(cmd)]
        order_id = getattr(cmd, "order_id", None)
        out = Outcome(line, "applied", ctype, cmd.command_id, order_id, at.isoformat())
        cid = cmd.command_id
        if cid is not None and (cid in self.known):
            out.status = "duplicate"
            return out
        if cid is None:
            cid = out.command_id = str(uuid.uuid4())
        at_us = to_us(at)
        if at_us > self.future_us:
            return self._reject(out, CommandRejected(
                "time-future",
                f"command time {at.isoformat()} is more than {_minutes(FUTURE_LIMIT)} after "
                f"the ledger's recording clock ({self.recorded.isoformat()})",
                field="at", hint="check the time and its UTC offset; facts from the future "
                                 "are not accepted (a tick too only moves the clock to now)"))
        if self.advance and self.clock is not None and at < self.clock:
            return self._reject(out, CommandRejected(
                "time-backwards",
                f"command time {at.isoformat()} is before the ledger's clock "
                f"{self.clock.isoformat()}",
                field="at", hint="with --advance-clock the lines must come in time order; "
                                 "without it only each order's own events must"))
        self._line = {}
        mark = len(self.sink)
        try:
            if self.advance:
                self._advance(at, cid, at_us)
            elif isinstance(cmd, c.Tick):
                if self.clock is None or at > self.clock:
                    self._advance(at, cid, at_us)
            else:
                self._before(cmd, at, at_us, cid)
            self._dispatch(cmd, at, c.actor_of(cmd), cid)
        except CommandRejected as exc:
            self._rollback(mark)
            return self._reject(out, exc)
        except BaseException:
            self._rollback(mark)
            raise
        self._after_line()
        out.events = [type(e.payload).__name__ for e in self.sink[mark:]]
        if not self.advance and order_id is not None:
            self.late[order_id] = (cid, out)
        if self.advance or isinstance(cmd, c.Tick):
            self.clock = at if self.clock is None or at > self.clock else self.clock
        self.known.add(cid)
        self.accepted.append((cid, ctype, at_us))
        return out

    def _reject(self, out: Outcome, exc: CommandRejected) -> Outcome:
        out.status = "rejected"
        out.error = exc.as_dict()
        return out

    def _before(self, cmd: c.Command, at: datetime, at_us: int, cid: str) -> None:
        """Evidence about one order: its own deadlines due by the command's time fire
        first; then the command must not be older than what the order already holds."""
        if isinstance(cmd, c.SetInventory):
            inv = self.get(sku_key(cmd.sku))
            if inv is not None and inv.set_at is not None and at < inv.set_at:
                raise CommandRejected(
                    "time-backwards",
                    f"SKU {cmd.sku!r} was already set at {inv.set_at.isoformat()}, after "
                    f"this command's time {at.isoformat()}", field="at",
                    hint="a quantity set earlier than the latest one would undo it; "
                         "send the current quantity with the current time")
            return
        order_id = getattr(cmd, "order_id", None)
        if order_id is None or isinstance(cmd, c.Place):
            return
        order = self.get(order_key(order_id))
        if order is None:
            return  # the command says it is unknown
        self._fire(order, at_us, cid)
        if order.fact_at is not None and at < order.fact_at:
            raise CommandRejected(
                "time-backwards",
                f"order {order_id} already has an event at {order.fact_at.isoformat()}, after "
                f"this command's time {at.isoformat()}", field="at",
                hint="an order's commands must come in time order; other orders' may not")
        if order.deadline_at is not None and at < order.deadline_at:
            due = order.deadline_at
            self.conflicts.append((
                to_us(self.recorded), cid, c.command_type(cmd), order_id, at_us, to_us(due),
                order.deadline_kind or "", c.encode_command(cmd).decode()))
            raise CommandRejected(
                "deadline-passed",
                f"order {order_id}: this {c.command_type(cmd)} at {at.isoformat()} came after "
                f"the ledger applied {order.deadline_kind} due at {due.isoformat()}", field="at",
                hint="the fact arrived too late for the deadline; it is kept in "
                     "`order-ledger conflicts` for the team to reconcile with the marketplace")

    def finish(self) -> None:
        """The end of a batch: an order it brought or changed whose deadlines are
        already behind the watermark gets them now, in due order (a late order).

        Not after each line: the lines of one source about one order (an Orders API
        poll's place, verify and ship) come together, and a deadline must not
        overtake facts that arrived with the order. They are reported on the
        order's last line of the batch.
        """
        late, self.late = self.late, {}
        if self.clock is None or not late:
            return
        limit = to_us(self.clock)
        for order_id, (cid, out) in late.items():
            order = self.aggs.get(order_key(order_id))
            if not isinstance(order, Order):
                continue
            nd = order.next_deadline_us()
            if nd is None or nd[0] > limit:
                continue
            mark = len(self.sink)
            self._line = {}
            self._fire(order, limit, cid)
            self._after_line()
            out.events.extend(type(e.payload).__name__ for e in self.sink[mark:])

    def _fire(self, order: Order, limit_us: int, cid: str) -> None:
        """Apply one order's deadlines due at or before ``limit_us``, in due order."""
        while True:
            nd = order.next_deadline_us()
            if nd is None or nd[0] > limit_us:
                return
            self.touch(order)
            due = order.next_deadline()[0]  # type: ignore[index]
            canceled = order.apply_deadline(nd[1], due, cid)
            self._give_back(order, canceled, due, "ledger", cid)

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
            if self.settle is not None:  # the store must hold the batch before this one
                self.settle()
                self.settle = None
            base = self.ledger.load(key)
            for event in kept:
                base = event.mutate(base)
            if base is None:  # created by this line after all
                self.aggs[key] = None
                continue
            base._pending_events = kept
            base._sink = self.sink  # type: ignore[attr-defined]
            self.aggs[key] = base
            self.dirty[key] = None
        del self.sink[mark:]
        self._line = {}

    def _after_line(self) -> None:
        self.dirty.update(self._line)
        self._line = {}

    def _flush_dirty(self) -> None:
        """Push the next deadline of every order changed since the heap was last read
        (stale entries are skipped when popped, so pushing late changes nothing)."""
        dirty, self.dirty = self.dirty, {}
        aggs = self.aggs
        for key in dirty:
            agg = aggs.get(key)
            if isinstance(agg, Order):
                self._push(agg)

    def _push(self, order: Order) -> None:
        nd = order.next_deadline_us()
        if nd is not None:
            order_id = order.order_id
            if self.pushed.get(order_id) == nd:
                return  # that very entry is in the heap already
            self.pushed[order_id] = nd
            heapq.heappush(self.heap, (nd[0], order_id, nd[1]))

    def _advance(self, at: datetime, cid: str, at_us: int | None = None) -> None:
        """Apply every deadline due at or before ``at`` (``at_us``: the same in
        microseconds, when the caller has it), in due order."""
        limit = to_us(at) if at_us is None else at_us
        if self.dirty:
            self._flush_dirty()
        heap = self.heap
        while heap and heap[0][0] <= limit:
            due_us, order_id, kind = heapq.heappop(heap)
            if self.pushed.get(order_id) == (due_us, kind):
                del self.pushed[order_id]
            order: Order | None = self.get(order_key(order_id))
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
                self.touch(inv).give_back(order.order_id, qty, at, actor, cid)

    def _dispatch(self, cmd: c.Command, at: datetime, actor: str, cid: str) -> None:
        if isinstance(cmd, c.Tick):
            return
        if isinstance(cmd, c.SetInventory):
            key = sku_key(cmd.sku)
            inv = self.get(key)
            inv = self.touch(inv) if inv is not None else self.create(Inventory.blank(key, at))
            inv.record(ev.InventorySet(at=at, actor=actor, command_id=cid, sku=cmd.sku,
                                       quantity=cmd.quantity))
            return
        if isinstance(cmd, c.Place):
            self._place(cmd, at, actor, cid)
            return
        entry = _ORDER_METHODS.get(type(cmd))
        if entry is None:  # pragma: no cover - the union is closed
            raise CommandRejected("unknown-type", f"cannot handle {type(cmd).__name__}")
        method, gives_back = entry
        order = self.order(cmd.order_id)  # type: ignore[attr-defined]
        if gives_back:
            self._give_back(order, method(order, cmd, actor, cid), at, actor, cid)
        else:
            method(order, cmd, actor, cid)

    def _place(self, cmd: c.Place, at: datetime, actor: str, cid: str) -> None:
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
        order = Order.blank(key, at)
        order.place(cmd, actor, cid)  # validates before recording
        self.create(order)
        self.sink.append(order.pending_events[-1])
        for inv, qty in tracked:
            self.touch(inv).allocate(cmd.order_id, qty, at, actor, cid)

    # commit ------------------------------------------------------------------

    def commit(self) -> list[int]:
        sealed = self.seal()
        if sealed is None:
            return []
        # The library's EventStore.put, minus building Recording objects we never use.
        ids = self.ledger.recorder.insert_events(  # type: ignore[attr-defined]
            sealed[0], batch=sealed[1])
        return list(ids or [])

    def seal(self) -> tuple[list[Any], Batch] | None:
        """The batch's writes, encoded and ready for the store (None: nothing to write):
        its events (each payload stamped with the batch's recording time as it is
        encoded), command ids, deadlines, clock and conflicts."""
        self.finish()
        batch = Batch(commands=self.accepted, conflicts=self.conflicts)
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
        self.deadlines = batch.deadlines
        if not self.sink and not batch.commands and batch.clock is None and not batch.conflicts:
            return None
        if self.sink:
            batch.recorded = [(len(self.sink) - 1, to_us(self.recorded))]
        return self.ledger.mapper.to_stored_events(self.sink, self.recorded), batch
