"""What one service process holds: the group-commit writer, a pool of readers, the views.

:class:`GroupWriter` owns the process's one writing :class:`~ledger.application.Ledger`
in one thread. Requests put their command lines on its queue; the thread takes
every request waiting, applies all their lines with one
:meth:`~ledger.application.Ledger.apply_lines` call -- one batch under the
ledger's writer lock, one durable transaction -- and only then answers each
request with its own lines' outcomes. While a batch commits, the next requests
gather, so concurrent posts share commits as a database's group commit does.
Across processes the ledger's writer lock serialises the batches.

On a SQLite file the writer is a pipeline of two threads: while one batch's
commit syncs to disk in a committing thread (which releases the GIL), the writer
thread decides the requests that arrive meanwhile into the next batch, on the
state the committing batch leaves (:meth:`~ledger.application.Ledger.begin_batch`);
that batch is sealed and handed over the moment the commit before it returns. Each
request is still answered only after its own batch committed, and if a commit
fails, the batch decided on it is dropped and its lines decided again on what
the store holds.

The answers of one batch reach each event loop in one wake-up
(``call_soon_threadsafe`` once per loop, not once per request). In the host's
writer leader (:class:`WriteRouter`) the same thread also reads the other
workers' requests from their Unix sockets and writes their answers back, one
write per worker per batch (:class:`_Relay`): no event loop between a
follower and the writer.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import queue
import socket
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterator

from ledger.application import Ledger, Outcome, PendingBatch
from ledger.clock import SystemClock


@dataclass
class ServiceConfig:
    """Settings of one service process (``order-ledger serve`` fills them)."""

    db: str
    views: str | None = None
    #: the ticker ticks at the system clock minus this
    allowed_lateness: timedelta = timedelta(minutes=5)
    #: seconds between ticks; 0 turns the ticker off
    tick_interval: float = 60.0
    #: the wall clock (tests inject a fixed one); rules never read it, the ticker does
    clock: Callable[[], datetime] = field(default_factory=lambda: SystemClock().now)
    #: readers per process (history, show, as-of reads, token checks)
    readers: int = 4
    #: most command lines in one group commit
    max_batch_lines: int = 5000
    #: an SSE client more than this many events behind is ended with "overflow"
    sse_max_lag: int = 10_000
    #: seconds between polls of the ledger's head for the event stream
    sse_poll: float = 0.2
    #: longest body accepted, in bytes
    max_body: int = 32 * 1024 * 1024


class _Job:
    """One request's lines for the writer, and how to answer it: ``done(outcomes,
    error)`` called in ``loop`` once its batch committed (or failed); or, for a call
    on the writer thread (``run_sync``), ``future``."""

    __slots__ = ("lines", "future", "advance_clock", "loop", "done")

    def __init__(self, lines: Any, advance_clock: bool,
                 loop: asyncio.AbstractEventLoop | None = None,
                 done: Callable[[list[Outcome] | None, BaseException | None], None] | None
                 = None) -> None:
        self.lines = lines
        self.advance_clock = advance_clock
        self.loop = loop
        self.done = done
        self.future: concurrent.futures.Future | None = (
            concurrent.futures.Future() if done is None else None)


class _Landed:
    """Queued by the committing thread when a batch's commit returned (or failed)."""

    __slots__ = ("future",)

    def __init__(self, future: "concurrent.futures.Future[list[int]]") -> None:
        self.future = future


class _Abandoned(Exception):
    """The batch being decided rests on a commit that failed: decide its lines again."""


#: most batches committed back to back before the writer lets other writers of the
#: ledger (another process's feed or tick) take a turn
PIPELINE_RUN = 32


def _answer_all(answers: list[tuple[_Job, list[Outcome] | None, BaseException | None]]
                ) -> None:
    """In a request's event loop: the answers of one batch, all at once."""
    for job, outs, exc in answers:
        try:
            job.done(outs, exc)  # type: ignore[misc]
        except Exception:  # noqa: BLE001 - one answer's failure is not the others'
            import logging

            logging.getLogger("order_ledger.service").exception("answering a request failed")


def _settle(fut: "asyncio.Future[list[Outcome]]", outs: list[Outcome] | None,
            exc: BaseException | None) -> None:
    if fut.done():  # the request went away (cancelled): its lines were applied all the same
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(outs)  # type: ignore[arg-type]


class GroupWriter:
    """One writer thread per process; see the module's docstring."""

    def __init__(self, ledger: Ledger, max_lines: int = 5000) -> None:
        self.ledger = ledger
        self.max_lines = max_lines
        self._turns = _turns_file(ledger)
        self.queue: queue.Queue[Any] = queue.Queue()
        #: decide the next batch while the last one commits (SQLite files: see the module)
        self.pipelined = self._turns is not None
        self._committer: concurrent.futures.ThreadPoolExecutor | None = None
        #: the batch committing: (batch, its requests and their outcomes, the commit)
        self._flight: tuple[PendingBatch, list[tuple[_Job, list[Outcome]]],
                            concurrent.futures.Future] | None = None
        #: the batch being decided while ``_flight`` commits, and its requests
        self._pending: tuple[PendingBatch, list[tuple[_Job, list[Outcome]]]] | None = None
        #: requests to decide once the batch committing has landed
        self._held: list[_Job] = []
        self._turn_held = False
        self._run_length = 0
        self.thread = threading.Thread(
            target=self._run_pipelined if self.pipelined else self._run,
            name="ledger-writer", daemon=True)
        self.commits = 0
        self.requests = 0
        #: the relay (see WriteRouter): followers' connections, read and answered by this
        #: thread itself; ``None`` until :meth:`serve_relay`
        self._relay: _Relay | None = None
        self.thread.start()

    async def submit(self, lines: list[tuple[int, bytes]], *,
                     advance_clock: bool = False) -> list[Outcome]:
        """Apply ``(line number, line)`` pairs; their outcomes once committed."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[list[Outcome]] = loop.create_future()
        self.enqueue(lines, loop, lambda outs, exc: _settle(fut, outs, exc),
                     advance_clock=advance_clock)
        return await fut

    def enqueue(self, lines: list[tuple[int, bytes]], loop: asyncio.AbstractEventLoop,
                done: Callable[[list[Outcome] | None, BaseException | None], None], *,
                advance_clock: bool = False) -> None:
        """Queue ``lines``; ``done(outcomes, None)`` or ``done(None, error)`` is called in
        ``loop`` once their batch committed or failed. The answers of one batch reach a
        loop together, in one wake-up."""
        self._put(_Job(lines, advance_clock, loop, done))

    def run_sync(self, fn: Callable[[Ledger], Any]) -> "concurrent.futures.Future[Any]":
        """Run ``fn(ledger)`` on the writer thread between batches (feeds, imports, ticks)."""
        job = _Job(fn, False)
        self._put(job)
        assert job.future is not None
        return job.future

    def _put(self, job: _Job | None) -> None:
        self.queue.put(job)
        relay = self._relay
        if relay is not None and relay.waiting:  # waiting on the followers' sockets
            relay.wake()

    def serve_relay(self, listening: "socket.socket") -> "concurrent.futures.Future[Any]":
        """Take followers' connections on ``listening`` (a bound, listening Unix socket):
        this thread reads their requests and answers them itself, with no event loop in
        between (one wake-up fewer each way)."""
        def start(_: Ledger) -> None:
            self._relay = _Relay(self, listening)
        return self.run_sync(start)

    def stop_relay(self) -> "concurrent.futures.Future[Any]":
        """Take no more followers' requests; those already here are still answered."""
        def stop(_: Ledger) -> None:
            if self._relay is not None:
                self._relay.stop_reading()
        return self.run_sync(stop)

    def close(self) -> None:
        self._put(None)
        self.thread.join(timeout=30)
        if self._committer is not None:
            self._committer.shutdown(wait=True)
        if self._relay is not None:
            self._relay.close()
        if self._turns is not None:
            os.close(self._turns)
            self._turns = None

    @contextmanager
    def _turn(self) -> Iterator[None]:
        """Service processes on one SQLite ledger take turns on a lock file with a
        blocking ``flock`` (the kernel wakes the next at once) before the ledger's own
        writer lock, which polls; so the ledger's lock is nearly always free for them.
        (The pipeline takes and ends its turns itself, across several batches.)"""
        self._take_turn()
        try:
            yield
        finally:
            self._end_turn()

    def _next(self) -> _Job | None:
        """The next job: from the queue, or, with the relay on, the first request a
        follower sends (waiting on the followers' sockets and the queue at once)."""
        relay = self._relay
        if relay is None:
            return self.queue.get()
        while True:
            relay.waiting = True  # from here on a request queued wakes us
            try:
                job = self.queue.get_nowait()
            except queue.Empty:
                relay.poll(None)
                continue
            finally:
                relay.waiting = False
            return job

    def _run(self) -> None:
        while True:
            job = self._next()
            if job is None:
                return
            # wait for our turn first: requests that arrive meanwhile join this batch
            with self._turn():
                if callable(job.lines):
                    self._call(job)
                    continue
                group = [job]
                size = len(job.lines)
                stop = False
                pending_call: _Job | None = None
                if self._relay is not None:  # what followers sent while we waited
                    self._relay.poll(0)
                while size < self.max_lines:
                    try:
                        nxt = self.queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        stop = True
                        break
                    if callable(nxt.lines):
                        pending_call = nxt
                        break
                    group.append(nxt)
                    size += len(nxt.lines)
                self._batch(group)
                if pending_call is not None:
                    self._call(pending_call)
            if stop:
                return

    # --- the pipeline (SQLite files) ---------------------------------------------------

    def _run_pipelined(self) -> None:
        while True:
            job = self._next()
            jobs: list[_Job] = []
            landed: list[_Landed] = []
            call: _Job | None = None
            stop = False
            if self._relay is not None:  # what followers sent meanwhile
                self._relay.poll(0)
            while True:
                if job is None:
                    stop = True
                    break
                if isinstance(job, _Landed):
                    landed.append(job)
                elif callable(job.lines):
                    call = job
                    break
                else:
                    jobs.append(job)
                try:
                    job = self.queue.get_nowait()
                except queue.Empty:
                    break
            # every request waiting goes into the batch being decided, then the commit
            # that returned (if one did) is answered and the next batch handed over
            if jobs:
                self._decide(jobs)
            for mark in landed:
                self._land(mark.future)
            if call is not None:
                self._drain()
                with self._turn():
                    self._call(call)
            if stop:
                self._drain()
                return

    def _decide(self, jobs: list[_Job]) -> None:
        """Decide ``jobs``: with no batch committing, into one of their own handed to the
        committer at once; else into the next batch, decided while that one commits."""
        fresh: list[_Job] = []
        later: list[_Job] = []
        size = 0
        for job in jobs:
            if job.advance_clock or len(job.lines) > self.max_lines:
                # not pipelined: a big body goes in the CLI's batches of 1,000 lines
                self._flush(fresh, later)
                fresh, later, size = [], [], 0
                self._drain()
                with self._turn():
                    self._batch([job])
            elif self._flight is None and not later and (
                    not fresh or size + len(job.lines) <= self.max_lines):
                fresh.append(job)
                size += len(job.lines)
            else:
                later.append(job)
        self._flush(fresh, later)

    def _flush(self, fresh: list[_Job], later: list[_Job]) -> None:
        if fresh:
            self._start(fresh)
        if later:
            if self._flight is None:  # the batch before failed to start
                self._start(later)
            else:
                self._add_pending(later)

    def _add_pending(self, jobs: list[_Job]) -> None:
        """Decide ``jobs`` into the batch after the one committing, all in one go."""
        if self._pending is None and self._run_length >= PIPELINE_RUN:
            self._held += jobs  # after the commit: let other writers take a turn first
            return
        size = sum(len(j.lines) for j, _ in self._pending[1]) if self._pending else 0
        take: list[_Job] = []
        for job in jobs:
            if size + len(job.lines) > self.max_lines:
                self._held.append(job)
            else:
                take.append(job)
                size += len(job.lines)
        if not take:
            return
        flight = self._flight
        assert flight is not None
        try:
            if self._pending is None:
                self._pending = (self.ledger.begin_batch(
                    after=flight[0], wait=lambda: self._settle(flight[2])), [])
            lines = [line for job in take for line in job.lines]
            outs = self._pending[0].add(lines)
        except _Abandoned:  # the commit it rested on failed: decided again after it landed
            self._held += take
            return
        except BaseException as exc:  # noqa: BLE001 - as a failed batch
            self._fail_pending(exc, take)
            return
        at = 0
        for job in take:
            self._pending[1].append((job, outs[at:at + len(job.lines)]))
            at += len(job.lines)

    def _start(self, jobs: list[_Job]) -> None:
        """A batch of ``jobs`` decided on the store's state, sealed and handed over."""
        if not self._turn_held:
            self._take_turn()
        try:
            batch = self.ledger.begin_batch()
        except BaseException as exc:  # noqa: BLE001 - every request of the batch gets it
            self._end_turn()
            self._answer([(job, None, exc) for job in jobs])
            return
        owners: list[tuple[_Job, list[Outcome]]] = []
        try:
            outs = batch.add([line for job in jobs for line in job.lines])
            at = 0
            for job in jobs:
                owners.append((job, outs[at:at + len(job.lines)]))
                at += len(job.lines)
            batch.seal()
        except BaseException as exc:  # noqa: BLE001
            self.ledger.abandon(batch)
            self._end_turn()
            self._answer([(job, None, exc) for job in jobs])
            return
        self._hand_over(batch, owners)

    def _hand_over(self, batch: PendingBatch,
                   owners: list[tuple[_Job, list[Outcome]]]) -> None:
        if self._committer is None:
            self._committer = concurrent.futures.ThreadPoolExecutor(
                1, thread_name_prefix="ledger-commit")
        future = self._committer.submit(batch.write)
        self._flight = (batch, owners, future)
        self._run_length += 1
        future.add_done_callback(lambda f: self._put(_Landed(f)))  # type: ignore[arg-type]

    def _settle(self, future: "concurrent.futures.Future[list[int]]") -> None:
        """Wait for the commit a batch is being decided upon; raise if it failed."""
        if future.exception() is not None:
            raise _Abandoned()

    def _fail_pending(self, exc: BaseException, more: list[_Job] | None = None) -> None:
        """Deciding into the pending batch failed (the store could not be read): its
        requests and ``more`` get the error, as a failed batch's do."""
        pending, self._pending = self._pending, None
        jobs = [j for j, _ in pending[1]] if pending is not None else []
        if pending is not None:
            self.ledger.abandon(pending[0])
        jobs += more or []
        self._answer([(j, None, exc) for j in jobs])

    def _land(self, future: "concurrent.futures.Future[list[int]]") -> None:
        """The commit in flight returned: answer its requests (or fail them), hand the
        batch decided meanwhile over, decide what was held back."""
        if self._flight is None or self._flight[2] is not future:
            return  # already landed (see _drain)
        batch, owners, _ = self._flight
        self._flight = None
        exc = future.exception()
        error = self.ledger.landed(batch, None if exc is not None else future.result(), exc)
        pending, self._pending = self._pending, None
        if error is not None:
            # the batch decided on this one rests on state that never committed
            if pending is not None:
                self.ledger.abandon(pending[0])
                self._held[:0] = [j for j, _ in pending[1]]
            from eventsourcing.persistence import IntegrityError

            if isinstance(error, IntegrityError):
                # another writer appended to one of its orders: decided again from
                # scratch, with apply_lines' retries
                self._batch([j for j, _ in owners])
            else:
                self._answer([(j, None, error) for j, _ in owners])
        else:
            self.commits += 1
            self.requests += len(owners)
            self._answer([(j, outs, None) for j, outs in owners])
            if pending is not None:
                try:
                    pending[0].seal()
                except BaseException as exc2:  # noqa: BLE001
                    self._pending = pending
                    self._fail_pending(exc2)
                else:
                    self._hand_over(*pending)
        if self._flight is None:
            self._run_length = 0
            self._end_turn()
        held, self._held = self._held, []
        if held:
            self._decide(held)

    def _drain(self) -> None:
        """Wait until nothing is committing or being decided (everything answered)."""
        while self._flight is not None:
            future = self._flight[2]
            concurrent.futures.wait([future])
            self._land(future)

    def _take_turn(self) -> None:
        if self._turns is not None:
            import fcntl

            fcntl.flock(self._turns, fcntl.LOCK_EX)
        self._turn_held = True

    def _end_turn(self) -> None:
        if self._turn_held and self._turns is not None:
            import fcntl

            fcntl.flock(self._turns, fcntl.LOCK_UN)
        self._turn_held = False

    def _call(self, job: _Job) -> None:
        assert job.future is not None
        if not job.future.set_running_or_notify_cancel():
            return
        try:
            result = job.lines(self.ledger)
            job.future.set_result(result)
        except BaseException as exc:  # noqa: BLE001 - handed to the request
            job.future.set_exception(exc)

    def _batch(self, group: list[_Job]) -> None:
        lines: list[bytes] = []
        owners: list[tuple[_Job, int]] = []
        for job in group:
            for n, line in job.lines:
                lines.append(line)
                owners.append((job, n))
        results: dict[int, list[Outcome]] = {id(j): [] for j in group}
        try:
            if lines:
                # one transaction for the group; a body bigger than that goes in the
                # CLI's batches of 1,000 lines
                size = len(lines) if len(lines) <= self.max_lines else 1000
                outs = list(self.ledger.apply_lines(lines, batch_size=size,
                                                    advance_clock=group[0].advance_clock))
                for out in outs:
                    job, n = owners[(out.line or 1) - 1]
                    out.line = n
                    results[id(job)].append(out)
                self.commits += 1
            self.requests += len(group)
        except BaseException as exc:  # noqa: BLE001 - every request of the batch gets it
            self._answer([(job, None, exc) for job in group])
            return
        self._answer([(job, results[id(job)], None) for job in group])

    def _answer(self, answers: list[tuple[_Job, list[Outcome] | None, BaseException | None]]
                ) -> None:
        """One ``call_soon_threadsafe`` per event loop for the whole batch, not one per
        request: the loop wakes once and answers them all. Followers' requests are
        answered from here, one write per follower."""
        by_loop: dict[int, tuple[asyncio.AbstractEventLoop, list]] = {}
        relayed = False
        for answer in answers:
            job = answer[0]
            if job.loop is None:  # a follower's: answered from this thread
                job.done(answer[1], answer[2])  # type: ignore[misc]
                relayed = True
                continue
            by_loop.setdefault(id(job.loop), (job.loop, []))[1].append(answer)
        if relayed and self._relay is not None:
            self._relay.flush()
        for loop, some in by_loop.values():
            try:
                loop.call_soon_threadsafe(_answer_all, some)
            except RuntimeError:  # that loop is closed: nobody is waiting any more
                pass


def _turns_file(ledger: Ledger) -> int | None:
    """The descriptor of ``<ledger>-service.lock`` (SQLite files only), else None."""
    from ledger.store import sqlite_file

    path = sqlite_file(ledger.db)
    if path is None:
        return None
    try:
        return os.open(os.path.abspath(path) + "-service.lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        return None


class ReaderPool:
    """Ledgers opened for reading, one per concurrent blocking read."""

    def __init__(self, db: str, size: int) -> None:
        self.db = db
        self.size = size
        self._free: queue.LifoQueue[Ledger] = queue.LifoQueue()
        self._made = 0
        self._lock = threading.Lock()
        self._sem = threading.BoundedSemaphore(size)

    @contextmanager
    def ledger(self) -> Iterator[Ledger]:
        self._sem.acquire()
        try:
            try:
                led = self._free.get_nowait()
            except queue.Empty:
                led = Ledger(self.db, clock=SystemClock(), mode="read")
            try:
                yield led
            finally:
                self._free.put(led)
        finally:
            self._sem.release()

    def close(self) -> None:
        while True:
            try:
                self._free.get_nowait().close()
            except queue.Empty:
                return


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class _Relay:
    """The leader's end of the followers' connections, run by the writer thread.

    Messages are a 4-byte big-endian length and msgpack: a request ``[key, [[line
    number, line], ...]]``, an answer ``[key, {"outcomes": [...]}]`` or ``[key,
    {"error": [kind, message]}]``. The writer thread waits on the listening socket,
    the followers' connections and a wake-up pipe (for its own process's requests)
    at once; a request read becomes a job of the next batch, and its answer is
    written back by the same thread once that batch committed."""

    def __init__(self, writer: GroupWriter, listening: "socket.socket") -> None:
        import selectors

        self.writer = writer
        self.listening: socket.socket | None = listening
        listening.setblocking(False)
        self.sel = selectors.DefaultSelector()
        self.sel.register(listening, selectors.EVENT_READ, None)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self.sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        self.conns: dict[int, _Follower] = {}
        self._dirty: set[_Follower] = set()
        #: the writer thread waits in :meth:`poll`: a request queued must wake it
        self.waiting = False

    def wake(self) -> None:
        try:
            os.write(self._wake_w, b"\0")
        except (BlockingIOError, OSError):  # full: the thread is woken already
            pass

    def poll(self, timeout: float | None) -> None:
        """Wait up to ``timeout`` (None: until something happens) and read what came:
        requests go on the writer's queue."""
        import selectors

        for key, _ in self.sel.select(timeout):
            if key.data == "wake":
                try:
                    while os.read(self._wake_r, 4096):
                        pass
                except BlockingIOError:
                    pass
            elif key.data is None:
                self._accept(selectors)
            else:
                key.data.read()

    def _accept(self, selectors: Any) -> None:
        while self.listening is not None:
            try:
                sock, _ = self.listening.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            sock.settimeout(5.0)  # an answer that cannot be written in 5 s ends it
            conn = _Follower(self, sock)
            self.conns[sock.fileno()] = conn
            self.sel.register(sock, selectors.EVENT_READ, conn)

    def flush(self) -> None:
        dirty, self._dirty = self._dirty, set()
        for conn in dirty:
            conn.flush()

    def drop(self, conn: "_Follower") -> None:
        if conn.closed:
            return
        conn.closed = True
        try:
            self.sel.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        self.conns.pop(conn.fd, None)
        conn.sock.close()

    def stop_reading(self) -> None:
        if self.listening is not None:
            self.sel.unregister(self.listening)
            self.listening.close()
            self.listening = None
        for conn in list(self.conns.values()):
            try:
                self.sel.unregister(conn.sock)
            except (KeyError, ValueError):
                pass
            conn.reading = False

    def close(self) -> None:
        self.stop_reading()
        for conn in list(self.conns.values()):
            conn.flush()
            self.drop(conn)
        self.sel.close()
        os.close(self._wake_r)
        os.close(self._wake_w)


class _Follower:
    """One follower's connection, as the writer thread sees it."""

    __slots__ = ("relay", "sock", "fd", "buf", "out", "closed", "reading")

    def __init__(self, relay: _Relay, sock: "socket.socket") -> None:
        self.relay = relay
        self.sock = sock
        self.fd = sock.fileno()
        self.buf = bytearray()
        self.out: list[bytes] = []
        self.closed = False
        self.reading = True

    def read(self) -> None:
        import msgspec

        try:
            data = self.sock.recv(1 << 16)
        except (BlockingIOError, InterruptedError, TimeoutError):
            return
        except OSError:
            data = b""
        if not data:  # the follower went away; what it sent is still applied
            self.relay.drop(self)
            return
        buf = self.buf
        buf += data
        start = 0
        writer = self.relay.writer
        try:
            while len(buf) - start >= 4:
                size = int.from_bytes(buf[start:start + 4], "big")
                if len(buf) - start - 4 < size:
                    break
                key, raw = msgspec.msgpack.decode(buf[start + 4:start + 4 + size])
                start += 4 + size
                lines = [(int(n), bytes(line)) for n, line in raw]
                writer.queue.put(_Job(lines, False, None, self._answerer(key)))
        except (ValueError, TypeError, msgspec.DecodeError):
            self.relay.drop(self)
            return
        del buf[:start]

    def _answerer(self, key: Any) -> Callable[[list[Outcome] | None, BaseException | None],
                                               None]:
        def done(outs: list[Outcome] | None, exc: BaseException | None) -> None:
            import msgspec

            if self.closed:
                return  # the follower went away; its lines were applied all the same
            if exc is None:
                # the batch's number: the follower counts the group commits its requests
                # shared (its /health)
                reply: dict = {"outcomes": [o.as_dict() for o in outs or []],
                               "commit": self.relay.writer.commits}
            else:
                reply = {"error": [type(exc).__name__, str(exc)]}
            message = msgspec.msgpack.encode([key, reply])
            self.out.append(len(message).to_bytes(4, "big") + message)
            self.relay._dirty.add(self)
        return done

    def flush(self) -> None:
        out, self.out = self.out, []
        if not out or self.closed:
            return
        try:
            self.sock.sendall(b"".join(out))
        except OSError:
            self.relay.drop(self)


class WriteRouter:
    """Sends command lines to one group commit per host: the leader's.

    On a SQLite ledger every service process on the machine shares one file, and a
    batch is one process's: with N workers each would gather only its own share of
    the concurrent requests. So the first process to take ``<ledger>-writer.lead``
    (an exclusive ``flock``) listens on ``<ledger>-writer.sock``; the others send
    their requests' lines there and get the outcomes back, so all of them share the
    leader's batches. A follower keeps one connection to the leader for all its
    requests (numbered, answered in any order, each once its batch committed), so a
    request costs no connect, accept or lock probe; on the leader's side the writer
    thread itself serves these connections (:class:`_Relay`). A follower counts its
    requests and the leader's commits they shared in its own writer's ``requests``
    and ``commits`` (its ``/health``). If the leader is gone, a
    follower's requests waiting on it fail with
    :class:`~ledger.errors.LedgerBusy` (503: try again; the command ids make the retry
    safe) and the next request takes the lead or writes itself. On PostgreSQL the
    same holds per machine (:func:`router_base`); the machines' leaders take turns
    on the ledger's writer lock.
    """

    def __init__(self, writer: GroupWriter, db: str) -> None:
        self.writer = writer
        self.base = router_base(db)
        if self.base and len(self.base + "-writer.sock") > 100:  # AF_UNIX path limit
            self.base = None
        self.lead_fd: int | None = None
        #: whether this process's writer serves the followers (see :class:`_Relay`)
        self.relaying = False
        self.forwarded = 0
        #: a follower's one connection to the leader
        self._conn: _Link | None = None
        self._next_id = 0
        self._last_commit: Any = None
        self._connecting = asyncio.Lock()

    @property
    def sock_path(self) -> str:
        return f"{self.base}-writer.sock"

    async def start(self) -> None:
        await self._try_lead()

    async def _try_lead(self) -> bool:
        if self.base is None or self.lead_fd is not None:
            return self.lead_fd is not None
        import fcntl

        try:
            fd = os.open(self.base + "-writer.lead", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:  # not ours to create (read-only directory, another user's file)
            self.base = None
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self.lead_fd = fd
        try:
            try:
                os.unlink(self.sock_path)  # a dead leader's
            except FileNotFoundError:
                pass
            listening = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                listening.bind(self.sock_path)
                # only this user (who can write the ledger anyway) may hand it commands:
                # the socket takes no token
                os.chmod(self.sock_path, 0o600)
                listening.listen(128)
            except OSError:
                listening.close()
                raise
            # the writer thread itself reads and answers the followers
            await asyncio.wrap_future(self.writer.serve_relay(listening))
            self.relaying = True
        except OSError:  # e.g. another user's file in the way: every process writes itself
            os.close(fd)
            self.lead_fd = None
            self.base = None
            return False
        return True

    async def stop(self) -> None:
        if self._conn is not None:
            self._drop(self._conn)
        if self.relaying:  # answer what followers sent, take no more
            self.writer.stop_relay()
            try:
                os.unlink(self.sock_path)
            except OSError:
                pass
            self.relaying = False
        if self.lead_fd is not None:
            os.close(self.lead_fd)
            self.lead_fd = None

    async def submit(self, lines: list[tuple[int, bytes]]) -> list[Outcome]:
        # while the connection to the leader is open the leader is alive: no lock probe
        if self._conn is None and (self.base is None or await self._try_lead()):
            return await self.writer.submit(lines)
        import msgspec

        try:
            conn = await self._connect()
        except OSError:
            return await self.writer.submit(lines)  # no leader listening: write ourselves
        self._next_id += 1
        key = self._next_id
        reply_future: asyncio.Future = asyncio.get_running_loop().create_future()
        conn.pending[key] = reply_future
        try:
            conn.send(msgspec.msgpack.encode([key, lines]))
            reply = await reply_future
        finally:
            conn.pending.pop(key, None)
        self.forwarded += 1
        if "commit" in reply:  # this process's requests and the group commits they shared
            self.writer.requests += 1
            if reply["commit"] != self._last_commit:
                self._last_commit = reply["commit"]
                self.writer.commits += 1
        if "error" in reply:
            from ledger.errors import LedgerBusy, StoreError

            kind, message = reply["error"]
            raise (LedgerBusy if kind == "LedgerBusy" else StoreError)(message)
        return [Outcome(**o) for o in reply["outcomes"]]

    async def _connect(self) -> "_Link":
        """The one connection this follower keeps to the leader: every request of the
        process goes over it, each with its number, answered in any order."""
        if self._conn is not None:
            return self._conn
        async with self._connecting:
            if self._conn is None:
                loop = asyncio.get_running_loop()
                _, conn = await loop.create_unix_connection(lambda: _Link(self),
                                                            self.sock_path)
                self._conn = conn
            return self._conn

    def _drop(self, conn: "_Link", why: str = "ConnectionError") -> None:
        """The leader went away: every request waiting on it is told so (503: send the
        same commands again); the next request takes the lead or connects anew."""
        if self._conn is conn:
            self._conn = None
        if conn.transport is not None:
            conn.transport.close()
        for waiting in list(conn.pending.values()):
            if not waiting.done():
                waiting.set_exception(_gone(why))
        conn.pending.clear()


class _Framed(asyncio.Protocol):
    """Length-prefixed msgpack messages over a Unix socket (see :class:`_Relay`), read
    in ``data_received`` (no task or await per message), written in one ``write`` per
    turn of the event loop however many messages it made."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._out: list[bytes] = []
        self._closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        import msgspec

        buf = self._buf
        buf += data
        start = 0
        try:
            while len(buf) - start >= 4:
                size = int.from_bytes(buf[start:start + 4], "big")
                if len(buf) - start - 4 < size:
                    break
                message = msgspec.msgpack.decode(buf[start + 4:start + 4 + size])
                start += 4 + size
                self.received(message)
        except (ValueError, TypeError, msgspec.DecodeError) as exc:
            del buf[:]
            self.broken(type(exc).__name__)
            return
        del buf[:start]

    def send(self, message: bytes) -> None:
        if self._closed:
            raise _gone("ConnectionError")
        if not self._out:
            asyncio.get_running_loop().call_soon(self._flush)
        self._out.append(len(message).to_bytes(4, "big"))
        self._out.append(message)

    def _flush(self) -> None:
        out, self._out = self._out, []
        if out and self.transport is not None and not self._closed:
            self.transport.write(b"".join(out))

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self.broken(type(exc).__name__ if exc is not None else "IncompleteReadError")

    def received(self, message: Any) -> None:
        raise NotImplementedError

    def broken(self, why: str) -> None:
        raise NotImplementedError


class _Link(_Framed):
    """A follower's connection to its leader and the requests waiting on it."""

    def __init__(self, router: WriteRouter) -> None:
        super().__init__()
        self.router = router
        self.pending: dict[int, asyncio.Future] = {}

    def received(self, message: Any) -> None:
        key, reply = message
        waiting = self.pending.get(key)
        if waiting is not None and not waiting.done():
            waiting.set_result(reply)

    def broken(self, why: str) -> None:
        self._closed = True
        self.router._drop(self, why)


def _gone(why: str) -> Exception:
    from ledger.errors import LedgerBusy

    return LedgerBusy(f"the writing process went away ({why}); send the same commands "
                      "again: lines already committed are reported duplicate")


def router_base(db: str) -> str | None:
    """Where a host's writer leader keeps its lock and socket: beside a SQLite ledger
    file; for a PostgreSQL ledger in the temporary directory, named by a hash of the
    server, database and schema (so each machine has its own leader). None for an
    in-memory ledger."""
    import hashlib
    import tempfile

    from ledger.store import is_postgres, pg_settings, sqlite_file

    if is_postgres(db):
        s = pg_settings(db)
        key = f"{s['host']}:{s['port']}/{s['dbname']}?schema={s['schema']}"
        digest = hashlib.blake2b(key.encode(), digest_size=8).hexdigest()
        return os.path.join(tempfile.gettempdir(), f"order-ledger-{digest}")
    path = sqlite_file(db)
    return os.path.abspath(path) if path else None
