"""The ticker: one per deployment, moving the ledger's clock as time passes.

Every ``tick_interval`` seconds the leader applies a ``tick`` at the system
clock minus ``allowed_lateness`` (facts may still arrive that late; see
docs/rules.md), so due deadlines fire without anyone sending a tick. The
leader is whoever holds the ticker lock: on SQLite an exclusive ``flock`` on
``<ledger>-ticker.lock`` beside the ledger file, on PostgreSQL a session
advisory lock (``pg_try_advisory_lock``) keyed by the schema. The operating
system or the server releases it when the leader dies, and another process
takes over at its next try. Ticks go through the process's writer, so they
are serialised with the commands as any other batch.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from datetime import datetime
from typing import Any

import anyio

from ledger.store import is_postgres, pg_settings, sqlite_file

log = logging.getLogger("order_ledger.service.ticker")


class LeaderLock:
    """Non-blocking leadership: :meth:`try_acquire` is True while we hold it."""

    def __init__(self, db: str) -> None:
        self.db = db
        self._fd: int | None = None
        self._conn: Any = None
        self.held = False

    def try_acquire(self) -> bool:
        if self.held:
            return self._still_held()
        if is_postgres(self.db):
            import psycopg

            s = pg_settings(self.db)
            key = int.from_bytes(hashlib.blake2b(
                f"order-ledger-ticker:{s['schema']}".encode(), digest_size=8).digest(),
                "big", signed=True)
            if self._conn is None:
                self._conn = psycopg.connect(
                    host=s["host"], port=s["port"], dbname=s["dbname"], user=s["user"],
                    password=s["password"] or None, autocommit=True, connect_timeout=5)
            row = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
            self.held = bool(row and row[0])
            return self.held
        path = sqlite_file(self.db)
        if path is None:
            self.held = True  # an in-memory ledger has one process
            return True
        import fcntl

        if self._fd is None:
            self._fd = os.open(os.path.abspath(path) + "-ticker.lock", os.O_RDWR | os.O_CREAT,
                               0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        self.held = True
        return True

    def _still_held(self) -> bool:
        if self._conn is not None:
            try:
                self._conn.execute("SELECT 1")
            except Exception:  # the session (and with it the lock) is gone
                self.held = False
                try:
                    self._conn.close()
                finally:
                    self._conn = None
        return self.held

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None
        if self._conn is not None:
            try:
                self._conn.close()  # ending the session drops the advisory lock
            except Exception:
                pass
            self._conn = None
        self.held = False


class Ticker:
    """Runs in the service's event loop; the tick itself runs on the writer thread."""

    def __init__(self, service: Any) -> None:
        self.service = service
        self.config = service.config
        self.lock = LeaderLock(self.config.db)
        self.task: asyncio.Task | None = None
        self.ticks = 0
        self.last: datetime | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except (asyncio.CancelledError, Exception):
                pass
        await anyio.to_thread.run_sync(self.lock.release)

    async def tick_once(self) -> Any:
        """One tick at the clock minus the allowed lateness, if we lead; the outcome."""
        if not await anyio.to_thread.run_sync(self.lock.try_acquire):
            return None
        at = self.config.clock() - self.config.allowed_lateness
        latest = await anyio.to_thread.run_sync(self._ledger_time)
        if latest is not None and at <= latest:
            return None  # the ledger is already there (e.g. ticks sent from outside)
        fut = self.service.writer.run_sync(lambda led: led.tick(at))
        out = await asyncio.wrap_future(fut)
        self.ticks += 1
        self.last = at
        if not out.ok:
            log.warning("tick at %s rejected: %s", at.isoformat(), out.error)
        return out

    def _ledger_time(self) -> datetime | None:
        with self.service.readers.ledger() as led:
            return led.now()

    async def _loop(self) -> None:
        while True:
            try:
                await self.tick_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep ticking; say why once per try
                log.warning("tick failed: %s: %s", type(exc).__name__, exc)
            await asyncio.sleep(self.config.tick_interval)
