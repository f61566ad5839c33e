"""Storage: what the ledger's SQLite and PostgreSQL recorders share.

The recorders themselves, the library's extended, are per backend in
:mod:`ledger.sqlite` and :mod:`ledger.postgres`; here are the SQL both run
(:class:`LedgerRecorderMixin`), the batch they write, times as microseconds,
and choosing and opening a backend (:func:`env_for`).

Besides the events table, the ledger keeps three small tables that are
written in the *same transaction* as the events of each batch:

- ``ledger_commands``: accepted command ids (idempotency);
- ``ledger_deadlines``: each open order's next deadline, indexed by due time,
  so due deadlines are found without scanning orders;
- ``ledger_clock``: the latest business time the ledger has reached.

One setting chooses the backend: a file path (SQLite) or a
``postgresql://user@host:port/db?schema=name`` URL.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence
from urllib.parse import parse_qs, unquote, urlparse

from . import chain
from .errors import LedgerNotFound, LedgerReadOnly, StoreError

DEFAULT_DB = "order-ledger.db"
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


#: the epoch in each fixed UTC offset seen (msgspec decodes every time with one offset
#: to the same ``timezone`` object): subtracting a time with the very same tzinfo is
#: plain field arithmetic, without asking both times for their offsets
_EPOCHS: dict[Any, datetime] = {timezone.utc: EPOCH}


def to_us(t: datetime) -> int:
    """Microseconds since the epoch: sortable in any database."""
    tz = t.tzinfo
    epoch = _EPOCHS.get(tz)
    if epoch is None:
        epoch = EPOCH
        # only a fixed offset: a zone with daylight saving has no one epoch to subtract
        if type(tz) is timezone and len(_EPOCHS) < 1000:
            epoch = _EPOCHS[tz] = EPOCH.astimezone(tz)
    d = t - epoch
    return (d.days * 86_400 + d.seconds) * 1_000_000 + d.microseconds


def from_us(us: int) -> datetime:
    from datetime import timedelta

    return EPOCH + timedelta(microseconds=us)


@dataclass
class Batch:
    """What a batch writes besides its events."""

    commands: list[tuple[str, str, int]] = field(default_factory=list)  # id, type, at_us
    deadlines: list[tuple[str, int, str]] = field(default_factory=list)  # order, due_us, kind
    cleared: list[str] = field(default_factory=list)  # orders with no deadline any more
    clock: datetime | None = None  # the watermark: the world has reached this time
    #: recording times: (index of the last event of a run in this batch, recorded_us)
    recorded: list[tuple[int, int]] = field(default_factory=list)
    #: late facts that contradict a deadline already applied (kept although rejected)
    conflicts: list[tuple[Any, ...]] = field(default_factory=list)


#: bearer tokens of the HTTP service (``ledger.tokens``): only each token's SHA-256
TOKENS_SQLITE = (
    "CREATE TABLE IF NOT EXISTS ledger_tokens ("
    " token_id TEXT PRIMARY KEY, hash TEXT NOT NULL UNIQUE, role TEXT NOT NULL,"
    " name TEXT NOT NULL, created_us INTEGER NOT NULL, revoked_us INTEGER)")
TOKENS_PG = (
    "CREATE TABLE IF NOT EXISTS {schema}.ledger_tokens ("
    " token_id text PRIMARY KEY, hash text NOT NULL UNIQUE, role text NOT NULL,"
    " name text NOT NULL, created_us bigint NOT NULL, revoked_us bigint)")


class LedgerRecorderMixin:
    """SQL shared by both backends; ``P`` is the parameter placeholder."""

    P = "?"
    prefix = ""  # schema qualifier for the extra tables

    def _write_batch(self, cursor: Any, batch: Batch | None) -> None:
        if batch is None:
            return
        p = self.P
        if batch.commands:
            cursor.executemany(
                f"INSERT INTO {self.prefix}ledger_commands (command_id, type, at_us) VALUES ({p}, {p}, {p})",
                batch.commands,
            )
        if batch.deadlines:
            cursor.executemany(
                f"INSERT INTO {self.prefix}ledger_deadlines (order_id, due_us, kind) VALUES ({p}, {p}, {p}) "
                "ON CONFLICT (order_id) DO UPDATE SET due_us = excluded.due_us, "
                "kind = excluded.kind",
                batch.deadlines,
            )
        if batch.cleared:
            cursor.executemany(
                f"DELETE FROM {self.prefix}ledger_deadlines WHERE order_id = {p}",
                [(o,) for o in batch.cleared],
            )
        if batch.conflicts:
            cursor.executemany(
                f"INSERT INTO {self.prefix}ledger_conflicts (recorded_us, command_id, type, "
                f"order_id, at_us, deadline_us, deadline, command) "
                f"VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p}, {p})", batch.conflicts)
        if batch.clock is not None:
            us = to_us(batch.clock)
            cursor.execute(
                f"INSERT INTO {self.prefix}ledger_clock AS clock (id, at, at_us) "
                f"VALUES (1, {p}, {p}) "
                "ON CONFLICT (id) DO UPDATE SET at = excluded.at, at_us = excluded.at_us "
                "WHERE excluded.at_us > clock.at_us",
                (batch.clock.isoformat(), us),
            )

    def _chain_next(self, cursor: Any, last_position: int) -> bytes:
        """The hash to chain the next event to, inside the writing transaction.

        Refuses to write when events past the chain's head exist: a ledger that
        predates the chain (``order-ledger migrate``) or rows written around the
        ledger (``order-ledger check`` names them).
        """
        cursor.execute(f"SELECT position, hash FROM {self.prefix}ledger_chain "
                       "ORDER BY position DESC LIMIT 1")
        row = cursor.fetchone()
        if row is not None:
            row = tuple(row.values()) if isinstance(row, dict) else tuple(row)
        head, prev = (row[0], bytes(row[1])) if row else (0, chain.GENESIS)
        if head != last_position:
            if head == 0:
                raise StoreError(
                    f"this ledger's {last_position:,} events predate the hash chain: run "
                    "`order-ledger migrate` once, then write again")
            raise StoreError(
                f"the events after position {head:,} are not in the ledger's hash chain "
                "(written around the ledger?): run `order-ledger check` before writing")
        return prev

    def _write_chain(self, cursor: Any, prev: bytes,
                     rows: Sequence[tuple[int, str, int, str, bytes]]) -> None:
        self._write_chain_rows(cursor, chain.links(prev, rows))

    def _write_commits(self, cursor: Any, ids: Sequence[int], batch: Batch | None) -> None:
        """Which positions were recorded when: one row per run of equal recording times."""
        if batch is None or not batch.recorded or not ids:
            return
        p = self.P
        cursor.executemany(
            f"INSERT INTO {self.prefix}ledger_commits (position, recorded_us) VALUES ({p}, {p})",
            [(ids[i], us) for i, us in batch.recorded if 0 <= i < len(ids)])

    def last_recorded(self) -> datetime | None:
        """The latest recording time (None before the first commit that recorded one)."""
        rows = self._rows_if_table(f"SELECT MAX(recorded_us) FROM {self.prefix}ledger_commits")
        return from_us(rows[0][0]) if rows and rows[0][0] is not None else None

    def build_chain(self) -> int:
        """The one-off migration: chain every stored event; how many were hashed."""
        raise NotImplementedError  # pragma: no cover - each backend has its own

    def position_recorded_by(self, until: datetime) -> int | None:
        """The last position recorded at or before ``until``; None when the ledger holds
        no recording times (it was written before they existed)."""
        rows = self._rows_if_table(f"SELECT COUNT(*), MAX(CASE WHEN recorded_us <= {self.P} "
                          f"THEN position END) FROM {self.prefix}ledger_commits", (to_us(until),))
        if not rows or not rows[0][0]:
            return None
        return int(rows[0][1] or 0)

    def conflicts(self, order_id: str | None = None) -> list[tuple[Any, ...]]:
        """Late facts rejected because a deadline had already been applied, oldest first:
        (recorded_us, command_id, type, order_id, at_us, deadline_us, deadline, command)."""
        where = f" WHERE order_id = {self.P}" if order_id else ""
        return [tuple(r) for r in self._rows_if_table(
            f"SELECT recorded_us, command_id, type, order_id, at_us, deadline_us, deadline, "
            f"command FROM {self.prefix}ledger_conflicts{where} ORDER BY id",
            (order_id,) if order_id else ())]

    def _build_chain(self, cursor: Any) -> int:
        """Hash every stored event into an empty chain, in a write transaction."""
        def tup(row: Any) -> tuple[Any, ...]:
            return tuple(row.values()) if isinstance(row, dict) else tuple(row)

        cursor.execute(f"SELECT COUNT(*) FROM {self.prefix}ledger_chain")
        if tup(cursor.fetchone())[0]:
            return 0
        table = self.prefix + self.events_table_name  # type: ignore[attr-defined]
        pos_col = self.position_column
        prev, after, done = chain.GENESIS, 0, 0
        while True:
            cursor.execute(
                f"SELECT {pos_col}, originator_id, originator_version, topic, state FROM {table} "
                f"WHERE {pos_col} > {self.P} ORDER BY {pos_col} LIMIT 5000", (after,))
            rows = [tup(r) for r in cursor.fetchall()]
            if not rows:
                return done
            hashed = chain.links(prev, rows)
            self._write_chain_rows(cursor, hashed)
            prev, after, done = hashed[-1][1], rows[-1][0], done + len(rows)

    def _write_chain_rows(self, cursor: Any, hashed: list[tuple[int, bytes]]) -> None:
        p = self.P
        cursor.executemany(
            f"INSERT INTO {self.prefix}ledger_chain (position, hash) VALUES ({p}, {p})", hashed)

    def chain_rows(self, start: int, stop: int) -> list[tuple[int, bytes]]:
        """Chain rows with ``start <= position <= stop``, in order."""
        return [(r[0], bytes(r[1])) for r in self._rows_if_table(
            f"SELECT position, hash FROM {self.prefix}ledger_chain "
            f"WHERE position >= {self.P} AND position <= {self.P} ORDER BY position",
            (start, stop))]

    def chain_head(self) -> tuple[int, bytes] | None:
        rows = self._rows_if_table(f"SELECT position, hash FROM {self.prefix}ledger_chain "
                          "ORDER BY position DESC LIMIT 1")
        return (rows[0][0], bytes(rows[0][1])) if rows else None

    def chain_after(self, position: int, limit: int) -> list[tuple[int, bytes]]:
        return [(r[0], bytes(r[1])) for r in self._rows_if_table(
            f"SELECT position, hash FROM {self.prefix}ledger_chain WHERE position > {self.P} "
            f"ORDER BY position LIMIT {int(limit)}", (position,))]

    # --- reads ----------------------------------------------------------------

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def _rows_if_table(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """:meth:`_rows` over a table a newer version added: none when a ledger from an
        older version is opened for reading (readers create no tables)."""
        try:
            return self._rows(sql, params)
        except Exception as exc:  # noqa: BLE001 - sqlite3 / psycopg errors
            text = str(exc).lower()
            if "no such table" in text or "does not exist" in text:
                return []
            raise

    def _write(self, sql: str, params: Sequence[Any] = ()) -> int:
        """One statement in its own committed transaction (small tables beside the
        events, e.g. the service's tokens); the number of rows it changed."""
        with self.datastore.transaction(commit=True) as c:  # type: ignore[attr-defined]
            c.execute(sql, params)
            raw = getattr(c, "sqlite_cursor", c)
            return int(getattr(raw, "rowcount", 0) or 0)

    def ensure_tokens_table(self) -> None:
        """Create ``ledger_tokens`` if this ledger predates it (writers only)."""
        if self.P == "?":
            self._write(TOKENS_SQLITE)
        else:
            schema = self.prefix.rstrip(".")
            self._write(TOKENS_PG.format(schema=schema))

    def read_clock(self) -> datetime | None:
        rows = self._rows(f"SELECT at FROM {self.prefix}ledger_clock WHERE id = 1")
        return datetime.fromisoformat(rows[0][0]) if rows else None

    def known_commands(self, ids: Iterable[str]) -> set[str]:
        ids = list(ids)
        found: set[str] = set()
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            marks = ", ".join([self.P] * len(chunk))
            found.update(r[0] for r in self._rows(
                f"SELECT command_id FROM {self.prefix}ledger_commands WHERE command_id IN ({marks})", chunk))
        return found

    def command_rows(self, ids: Iterable[str]) -> dict[str, tuple[str, int]]:
        """Accepted commands by id: (type, business time in microseconds)."""
        ids = list(ids)
        found: dict[str, tuple[str, int]] = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            marks = ", ".join([self.P] * len(chunk))
            for cid, ctype, at_us in self._rows(
                    f"SELECT command_id, type, at_us FROM {self.prefix}ledger_commands "
                    f"WHERE command_id IN ({marks})", chunk):
                found[cid] = (ctype, at_us)
        return found

    def due_deadlines(self, until: datetime) -> list[tuple[str, int, str]]:
        return [tuple(r) for r in self._rows(
            f"SELECT order_id, due_us, kind FROM {self.prefix}ledger_deadlines WHERE due_us <= {self.P} "
            "ORDER BY due_us, order_id", (to_us(until),))]

    def next_deadline(self) -> tuple[str, int, str] | None:
        rows = self._rows(
            f"SELECT order_id, due_us, kind FROM {self.prefix}ledger_deadlines ORDER BY due_us, order_id LIMIT 1")
        return tuple(rows[0]) if rows else None

    def count_deadlines(self) -> int:
        return int(self._rows(f"SELECT COUNT(*) FROM {self.prefix}ledger_deadlines")[0][0])

    def head(self) -> int:
        return self.max_notification_id() or 0  # type: ignore[attr-defined]

    position_column = "rowid"

    def select_with_positions(self, agg_id: str) -> list[tuple[Any, ...]]:
        """One aggregate's events with their global positions: (position, version, topic, state)."""
        table = self.prefix + self.events_table_name  # type: ignore[attr-defined]
        return self._rows(
            f"SELECT {self.position_column}, originator_version, topic, state FROM {table} "
            f"WHERE originator_id = {self.P} ORDER BY originator_version", (agg_id,))

    def select_at_positions(self, positions: Iterable[int]) -> list[tuple[int, str, str, Any]]:
        """The stored events at the given global positions: (position, id, topic, state)."""
        table = self.prefix + self.events_table_name  # type: ignore[attr-defined]
        col = self.position_column
        wanted = sorted(set(positions))
        out: list[tuple[int, str, str, Any]] = []
        for i in range(0, len(wanted), 500):
            chunk = wanted[i:i + 500]
            marks = ", ".join([self.P] * len(chunk))
            out.extend((int(pos), agg, topic, state) for pos, agg, topic, state in self._rows(
                f"SELECT {col}, originator_id, topic, state FROM {table} "
                f"WHERE {col} IN ({marks})", chunk))
        return out

    def select_events_many(self, ids: Sequence[str]) -> list[tuple[Any, ...]]:
        """Stored events of many aggregates at once: (id, version, topic, state)."""
        table = self.prefix + self.events_table_name  # type: ignore[attr-defined]
        out: list[tuple[Any, ...]] = []
        for i in range(0, len(ids), 500):
            chunk = list(ids[i:i + 500])
            marks = ", ".join([self.P] * len(chunk))
            out.extend(self._rows(
                f"SELECT originator_id, originator_version, topic, state FROM {table} "
                f"WHERE originator_id IN ({marks}) ORDER BY originator_id, originator_version",
                chunk))
        return out

    def aggregate_ids(self, prefix: str) -> list[str]:
        table = self.prefix + self.events_table_name  # type: ignore[attr-defined]
        return [r[0] for r in self._rows(
            f"SELECT DISTINCT originator_id FROM {table} WHERE originator_id LIKE {self.P} "
            "ORDER BY originator_id", (prefix + "%",))]


# --- choosing a backend -------------------------------------------------------------


def connection_lost(exc: BaseException) -> bool:
    """True when ``exc`` (or what caused it) is a lost or refused connection to the
    PostgreSQL server, as opposed to an answer from it (a constraint, a lock
    timeout, a full disk): the one kind of failure worth waiting out."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, ConnectionError):
            return True
        module = type(e).__module__ or ""
        if module.startswith(("psycopg", "psycopg_pool")):
            import psycopg
            import psycopg.errors as pe

            if isinstance(e, (pe.LockNotAvailable, pe.QueryCanceled, pe.DiskFull,
                              pe.ReadOnlySqlTransaction, pe.InsufficientPrivilege)):
                return False
            if isinstance(e, (pe.AdminShutdown, pe.CrashShutdown, pe.CannotConnectNow,
                              pe.ConnectionException, psycopg.InterfaceError)):
                return True
            if isinstance(e, psycopg.OperationalError) and getattr(e, "sqlstate", None) is None:
                return True  # no SQLSTATE: the client lost or could not open the connection
        e = e.__cause__ or e.__context__
    return False


def is_postgres(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def resolve_db(db: str | None) -> str:
    return db or os.environ.get("ORDER_LEDGER_DB") or DEFAULT_DB


CIPHER_KEY_VAR = "ORDER_LEDGER_CIPHER_KEY"
LOCK_TIMEOUT_VAR = "ORDER_LEDGER_LOCK_TIMEOUT"
CIPHER_TOPIC = "eventsourcing.cryptography:AESCipher"


def cipher_env() -> dict[str, str]:
    """Encryption at rest: the library's AES-GCM cipher when ORDER_LEDGER_CIPHER_KEY is set.

    The key is base64 of 16, 24 or 32 random bytes (``order-ledger keygen``).
    Without the variable no cipher is configured, whatever else the
    environment holds, so that variable is the one switch.
    """
    key = os.environ.get(CIPHER_KEY_VAR, "").strip()
    if not key:
        return {"CIPHER_TOPIC": "", "CIPHER_KEY": ""}
    import base64
    import binascii

    try:
        raw = base64.b64decode(key.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise StoreError(f"{CIPHER_KEY_VAR} is not base64; make a key with "
                         "`order-ledger keygen`") from None
    if len(raw) not in (16, 24, 32):
        raise StoreError(f"{CIPHER_KEY_VAR} decodes to {len(raw)} bytes; an AES key has 16, 24 "
                         "or 32 (make one with `order-ledger keygen`)")
    return {"CIPHER_TOPIC": CIPHER_TOPIC, "CIPHER_KEY": key}


def lock_timeout() -> str:
    """Seconds a writer waits for the ledger's lock (ORDER_LEDGER_LOCK_TIMEOUT, default 10)."""
    text = os.environ.get(LOCK_TIMEOUT_VAR, "").strip() or "10"
    if not text.isdigit() or int(text) < 1:
        raise StoreError(f"{LOCK_TIMEOUT_VAR} must be a whole number of seconds >= 1, "
                         f"not {text!r}")
    return text


#: a table every ledger has (both backends): "does this ledger exist" looks for it
LEDGER_TABLE = "ledger_commands"
#: seconds to wait for a PostgreSQL server to answer before saying why not
PG_CONNECT_TIMEOUT = 5
MODES = ("write", "read")


def sqlite_file(db: str) -> str | None:
    """The file behind a SQLite ledger location, or None (PostgreSQL, in-memory, URIs)."""
    if is_postgres(db):
        return None
    if db.startswith("sqlite:///"):
        db = db[len("sqlite:///"):]
    if db == ":memory:" or db.startswith("file:"):
        return None
    return db


def _sqlite_tables(uri: str) -> set[str]:
    conn = sqlite3.connect(uri, uri=True)
    try:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        conn.close()


def sqlite_reader_uri(path: str) -> str:
    """How a reader opens the SQLite ledger file ``path``: a read-only URI.

    ``mode=ro`` when SQLite can use the ledger's WAL files (it may create the
    ``-shm``/``-wal`` files beside the ledger, as any reader does);
    ``immutable=1`` when it cannot (a read-only directory without them), which
    is exact as long as no write-ahead log holds changes the file does not.
    Raises :class:`LedgerNotFound` when there is no ledger at ``path`` and
    creates nothing.
    """
    if not os.path.isfile(path):
        raise LedgerNotFound(path, "it is a directory" if os.path.isdir(path) else "")
    base = Path(path).absolute().as_uri()
    try:
        uri = base + "?mode=ro"
        tables = _sqlite_tables(uri)
    except sqlite3.OperationalError as exc:
        # e.g. "unable to open database file" / "attempt to write a readonly database":
        # a WAL ledger whose directory we cannot write, so no -shm can be made
        wal = path + "-wal"
        if os.path.exists(wal) and os.path.getsize(wal) > 0:
            raise StoreError(
                f"cannot read the ledger at {path}: its write-ahead log {wal} holds changes "
                f"that are not in the file yet and SQLite cannot open it read-only here ({exc}); "
                "copy the ledger with its -wal file to a writable directory") from None
        uri = base + "?immutable=1"
        try:
            tables = _sqlite_tables(uri)
        except sqlite3.Error as exc2:
            raise StoreError(f"cannot read the ledger at {path}: {exc2}") from None
    except sqlite3.DatabaseError as exc:
        raise LedgerNotFound(path, f"the file is not a SQLite database ({exc})") from None
    if LEDGER_TABLE not in tables:
        raise LedgerNotFound(path, "the file holds no order ledger" if tables else "")
    return uri


def _writable(path: str) -> bool:
    return os.access(path, os.W_OK)


def check_sqlite_writable(path: str) -> None:
    """Refuse (:class:`LedgerReadOnly`) a SQLite ledger file a writer could not write.

    SQLite writes the file and creates its ``-wal``, ``-shm`` and the ledger's
    ``-writer.lock`` beside it, so both the file and its directory must be
    writable. Found before anything is written, so the message names the cause.
    """
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise StoreError(
            f"cannot create the ledger {path!r}: directory {parent!r} does not exist")
    if os.path.exists(path):
        if os.path.isdir(path):
            raise StoreError(f"cannot open the ledger {path!r}: it is a directory")
        if not _writable(path):
            raise LedgerReadOnly(path, "the file is not writable")
        if not _writable(parent):
            raise LedgerReadOnly(path, f"its directory {parent} is not writable (SQLite keeps "
                                       "its journal and lock files there)")
    elif not _writable(parent):
        raise LedgerReadOnly(path, f"cannot create it: directory {parent} is not writable")


def pg_settings(db: str) -> dict[str, str]:
    """Connection settings of a ``postgresql://`` ledger URL."""
    u = urlparse(db)
    q = parse_qs(u.query)
    return {
        "dbname": (u.path or "/").lstrip("/") or "postgres",
        "host": u.hostname or "localhost",
        "port": str(u.port or 5432),
        "user": unquote(u.username or os.environ.get("PGUSER", "postgres")),
        "password": unquote(u.password or os.environ.get("PGPASSWORD", "")),
        "schema": q.get("schema", ["public"])[0],
    }


def probe_postgres(db: str, *, must_exist: bool) -> None:
    """One direct connection to the server before the library builds its pool.

    A refused connection, an unknown database or role, a wrong password fail
    here within :data:`PG_CONNECT_TIMEOUT` seconds with the server's own reason
    (:class:`StoreError`); with ``must_exist`` a schema without the ledger's
    tables is :class:`LedgerNotFound`. Creates nothing.
    """
    import psycopg

    s = pg_settings(db)
    where = f"PostgreSQL at {s['host']}:{s['port']}, database {s['dbname']!r}, user {s['user']!r}"
    try:
        with psycopg.connect(host=s["host"], port=s["port"], dbname=s["dbname"], user=s["user"],
                             password=s["password"] or None, autocommit=True,
                             connect_timeout=PG_CONNECT_TIMEOUT) as conn:
            if must_exist:
                row = conn.execute("SELECT to_regclass(%s)",
                                   (f'"{s["schema"]}".{LEDGER_TABLE}',)).fetchone()
                if row is None or row[0] is None:
                    raise LedgerNotFound(_describe_pg(db), f"schema {s['schema']!r} holds no ledger")
    except psycopg.OperationalError as exc:
        reason = " ".join(str(exc).split())  # the server's reason, on one line
        raise StoreError(f"cannot connect to {where}: {reason}") from None
    except psycopg.Error as exc:
        raise StoreError(f"cannot read {where}: {' '.join(str(exc).split())}") from None


def _describe_pg(db: str) -> str:
    """The URL without its password."""
    u = urlparse(db)
    if u.password:
        netloc = f"{u.username}:***@{u.hostname}" + (f":{u.port}" if u.port else "")
        return u._replace(netloc=netloc).geturl()
    return db


def env_for(db: str, mode: str = "write") -> dict[str, str]:
    """The ``eventsourcing`` environment for a ledger location, opened to ``mode``.

    ``write``: the ledger is created if missing; a read-only SQLite file or
    directory is refused (:class:`LedgerReadOnly`). ``read``: the ledger must
    exist (:class:`LedgerNotFound`) and is opened read-only; nothing is created.
    On PostgreSQL the server is asked first (:func:`probe_postgres`).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    reading = mode == "read"
    env: dict[str, str] = {"ORIGINATOR_ID_TYPE": "text", "CREATE_TABLE": "n" if reading else "y"}
    env.update(cipher_env())
    if is_postgres(db):
        probe_postgres(db, must_exist=reading)
        s = pg_settings(db)
        env.update(
            PERSISTENCE_MODULE="eventsourcing.postgres",
            APPLICATION_RECORDER_TOPIC="ledger.postgres:" + (
                "LedgerPostgresReader" if reading else "LedgerPostgresRecorder"),
            POSTGRES_DBNAME=s["dbname"],
            POSTGRES_HOST=s["host"],
            POSTGRES_PORT=s["port"],
            POSTGRES_USER=s["user"],
            POSTGRES_PASSWORD=s["password"],
            POSTGRES_SCHEMA=s["schema"],
            POSTGRES_CONNECT_TIMEOUT=str(PG_CONNECT_TIMEOUT),
            POSTGRES_LOCK_TIMEOUT=lock_timeout(),
            POSTGRES_PRE_PING="y",  # a pooled connection ended by a restart is replaced, not used
            POSTGRES_POOL_SIZE="2",
            POSTGRES_MAX_OVERFLOW="4",
        )
    else:
        if db.startswith("sqlite:///"):
            db = db[len("sqlite:///"):]
        path = sqlite_file(db)
        name = db
        if path is not None:
            if reading:
                name = sqlite_reader_uri(path)
            else:
                check_sqlite_writable(path)
        elif reading and db == ":memory:":
            raise LedgerNotFound(db, "an in-memory ledger exists only in the process that made it")
        env.update(
            PERSISTENCE_MODULE="eventsourcing.sqlite",
            APPLICATION_RECORDER_TOPIC="ledger.sqlite:LedgerSQLiteRecorder",
            SQLITE_DBNAME=name,
            SQLITE_LOCK_TIMEOUT=lock_timeout(),
        )
    return env
