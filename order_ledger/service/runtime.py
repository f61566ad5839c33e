"""What one service process holds: the group-commit writer, a pool of readers, the views.

:class:`GroupWriter` owns the process's one writing :class:`~ledger.application.Ledger`
in one thread. Requests put their command lines on its queue; the thread takes
every request waiting, applies all their lines with one
:meth:`~ledger.application.Ledger.apply_lines` call -- one batch under the
ledger's writer lock, one durable transaction -- and only then answers each
request with its own lines' outcomes. While a batch commits, the next requests
gather, so concurrent posts share commits as a database's group commit does.
Across processes the ledger's writer lock serialises the batches.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import queue
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterator

from ledger.application import Ledger, Outcome
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
    __slots__ = ("lines", "future", "advance_clock")

    def __init__(self, lines: list[tuple[int, bytes]], advance_clock: bool) -> None:
        self.lines = lines
        self.advance_clock = advance_clock
        self.future: concurrent.futures.Future = concurrent.futures.Future()


class GroupWriter:
    """One writer thread per process; see the module's docstring."""

    def __init__(self, ledger: Ledger, max_lines: int = 5000) -> None:
        self.ledger = ledger
        self.max_lines = max_lines
        self._turns = _turns_file(ledger)
        self.queue: queue.Queue[_Job | None] = queue.Queue()
        self.thread = threading.Thread(target=self._run, name="ledger-writer", daemon=True)
        self.commits = 0
        self.requests = 0
        self.thread.start()

    async def submit(self, lines: list[tuple[int, bytes]], *,
                     advance_clock: bool = False) -> list[Outcome]:
        """Apply ``(line number, line)`` pairs; their outcomes once committed."""
        job = _Job(lines, advance_clock)
        self.queue.put(job)
        return await asyncio.wrap_future(job.future)

    def run_sync(self, fn: Callable[[Ledger], Any]) -> "concurrent.futures.Future[Any]":
        """Run ``fn(ledger)`` on the writer thread between batches (feeds, imports, ticks)."""
        job = _Job([], False)
        job.lines = fn  # type: ignore[assignment]
        self.queue.put(job)
        return job.future

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join(timeout=30)
        if self._turns is not None:
            os.close(self._turns)
            self._turns = None

    @contextmanager
    def _turn(self) -> Iterator[None]:
        """Service processes on one SQLite ledger take turns on a lock file with a
        blocking ``flock`` (the kernel wakes the next at once) before the ledger's own
        writer lock, which polls; so the ledger's lock is nearly always free for them."""
        if self._turns is None:
            yield
            return
        import fcntl

        fcntl.flock(self._turns, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._turns, fcntl.LOCK_UN)

    def _run(self) -> None:
        while True:
            job = self.queue.get()
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

    def _call(self, job: _Job) -> None:
        if not job.future.set_running_or_notify_cancel():
            return
        try:
            result = job.lines(self.ledger)  # type: ignore[operator]
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
            for job in group:
                if job.future.set_running_or_notify_cancel():
                    job.future.set_exception(exc)
            return
        for job in group:
            if job.future.set_running_or_notify_cancel():
                job.future.set_result(results[id(job)])


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


class WriteRouter:
    """Sends command lines to one group commit per host: the leader's.

    On a SQLite ledger every service process on the machine shares one file, and a
    batch is one process's: with N workers each would gather only its own share of
    the concurrent requests. So the first process to take ``<ledger>-writer.lead``
    (an exclusive ``flock``) listens on ``<ledger>-writer.sock``; the others send
    their requests' lines there and get the outcomes back, so all of them share the
    leader's batches. A follower keeps one connection to the leader for all its
    requests (numbered, answered in any order, each once its batch committed), so a
    request costs no connect, accept or lock probe. If the leader is gone, a
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
        self.server: asyncio.AbstractServer | None = None
        self.forwarded = 0
        #: a follower's one connection to the leader
        self._conn: _Link | None = None
        self._next_id = 0
        self._connecting = asyncio.Lock()
        #: a leader's connections from followers
        self._served: set[asyncio.Task] = set()

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
            self.server = await asyncio.start_unix_server(self._serve, path=self.sock_path)
            # only this user (who can write the ledger anyway) may hand it commands: the
            # socket takes no token
            os.chmod(self.sock_path, 0o600)
        except OSError:  # e.g. another user's file in the way: every process writes itself
            os.close(fd)
            self.lead_fd = None
            self.base = None
            return False
        return True

    async def stop(self) -> None:
        if self._conn is not None:
            self._drop(self._conn)
        for task in list(self._served):  # answer what followers sent, take no more
            task.cancel()
        if self.server is not None:
            self.server.close()
            try:
                os.unlink(self.sock_path)
            except OSError:
                pass
            self.server = None
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
            await _send(conn.writer,
                        msgspec.msgpack.encode([key, [[n, line] for n, line in lines]]))
            reply = await reply_future
        except (OSError, RuntimeError):
            self._drop(conn, "ConnectionError")
            raise _gone("ConnectionError") from None
        finally:
            conn.pending.pop(key, None)
        self.forwarded += 1
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
                reader, writer = await asyncio.open_unix_connection(self.sock_path)
                conn = _Link(reader, writer)
                conn.task = asyncio.create_task(self._read_replies(conn))
                self._conn = conn
            return self._conn

    async def _read_replies(self, conn: "_Link") -> None:
        import msgspec

        why = "IncompleteReadError"
        try:
            while True:
                key, reply = msgspec.msgpack.decode(await _recv(conn.reader))
                waiting = conn.pending.get(key)
                if waiting is not None and not waiting.done():
                    waiting.set_result(reply)
        except (OSError, asyncio.IncompleteReadError, ValueError, TypeError,
                msgspec.DecodeError) as exc:
            why = type(exc).__name__
        finally:
            self._drop(conn, why)

    def _drop(self, conn: "_Link", why: str = "ConnectionError") -> None:
        """The leader went away: every request waiting on it is told so (503: send the
        same commands again); the next request takes the lead or connects anew."""
        if self._conn is conn:
            self._conn = None
        conn.writer.close()
        for waiting in list(conn.pending.values()):
            if not waiting.done():
                waiting.set_exception(_gone(why))
        conn.pending.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """A follower's connection: requests in, each answered once committed."""
        import msgspec

        tasks: set[asyncio.Task] = set()
        me = asyncio.current_task()
        if me is not None:
            self._served.add(me)

        async def answer(key: Any, lines: list[tuple[int, bytes]]) -> None:
            try:
                outs = await self.writer.submit(lines)
                reply: dict = {"outcomes": [o.as_dict() for o in outs]}
            except Exception as exc:  # noqa: BLE001 - told to the follower
                reply = {"error": [type(exc).__name__, str(exc)]}
            try:
                await _send(writer, msgspec.msgpack.encode([key, reply]))
            except (OSError, RuntimeError):
                pass

        try:
            while True:
                key, raw = msgspec.msgpack.decode(await _recv(reader))
                lines = [(int(n), bytes(line)) for n, line in raw]
                task = asyncio.create_task(answer(key, lines))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        except (OSError, asyncio.IncompleteReadError, ValueError, TypeError,
                msgspec.DecodeError, asyncio.CancelledError):
            pass
        finally:
            if me is not None:
                self._served.discard(me)
            if tasks:  # answer what was sent before the follower went away or we stop
                await asyncio.gather(*tasks, return_exceptions=True)
            writer.close()


class _Link:
    """A follower's connection to its leader and the requests waiting on it."""

    __slots__ = ("reader", "writer", "pending", "task")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.pending: dict[int, asyncio.Future] = {}
        self.task: asyncio.Task | None = None


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


async def _send(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(len(data).to_bytes(4, "big") + data)
    if writer.transport.get_write_buffer_size() > 65536:
        await writer.drain()


async def _recv(reader: asyncio.StreamReader) -> bytes:
    size = int.from_bytes(await reader.readexactly(4), "big")
    return await reader.readexactly(size)
