"""The PostgreSQL backend: the ledger's recorders.

:class:`LedgerPostgresRecorder` is the library's PostgreSQL application recorder,
extended with the ledger's tables (written in the same transaction as the
events, under the library's table lock); :class:`LedgerPostgresReader` opens a
ledger for reading and creates nothing; :class:`PostgresLog` is its
:class:`~ledger.eventlog.EventLog` that can also read one partition of the
orders (for the parallel rebuild).
"""

from __future__ import annotations

from typing import Any, Sequence

from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from psycopg.sql import Identifier

from .domain import ORDER_PREFIX
from .eventlog import RawEvent
from .store import TOKENS_PG, LedgerRecorderMixin


EXTRA_TABLES_PG = [
    "CREATE TABLE IF NOT EXISTS {schema}.ledger_commands ("
    " command_id text PRIMARY KEY, type text NOT NULL, at_us bigint NOT NULL)",
    "CREATE TABLE IF NOT EXISTS {schema}.ledger_deadlines ("
    " order_id text PRIMARY KEY, due_us bigint NOT NULL, kind text NOT NULL)",
    "CREATE INDEX IF NOT EXISTS ledger_deadlines_due ON {schema}.ledger_deadlines (due_us)",
    "CREATE TABLE IF NOT EXISTS {schema}.ledger_clock ("
    " id integer PRIMARY KEY CHECK (id = 1), at text NOT NULL, at_us bigint NOT NULL)",
    "CREATE TABLE IF NOT EXISTS {schema}.ledger_chain ("
    " position bigint PRIMARY KEY, hash bytea NOT NULL)",
    "CREATE TABLE IF NOT EXISTS {schema}.ledger_commits ("
    " position bigint PRIMARY KEY, recorded_us bigint NOT NULL)",
    "CREATE TABLE IF NOT EXISTS {schema}.ledger_conflicts ("
    " id bigserial PRIMARY KEY, recorded_us bigint NOT NULL, command_id text NOT NULL,"
    " type text NOT NULL, order_id text NOT NULL, at_us bigint NOT NULL,"
    " deadline_us bigint NOT NULL, deadline text NOT NULL, command text NOT NULL)",
    TOKENS_PG,
]


class LedgerPostgresRecorder(LedgerRecorderMixin, PostgresApplicationRecorder):
    P = "%s"
    position_column = "notification_id"
    #: writers create the schema if missing; readers (:class:`LedgerPostgresReader`) never do
    create_schema = True

    def __init__(self, datastore: Any, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        from psycopg.sql import SQL

        self.prefix = f'"{datastore.schema}".'
        if self.create_schema:
            with datastore.transaction(commit=True) as curs:
                curs.execute(SQL("CREATE SCHEMA IF NOT EXISTS {0}").format(
                    Identifier(datastore.schema)))

        for stmt in EXTRA_TABLES_PG:
            self.sql_create_statements.append(SQL(stmt.format(schema=f'"{datastore.schema}"')))  # type: ignore[arg-type]  # a plain SQL runs as well as a Composed

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        # One attempt, without the library's retry decorator: when the connection is
        # lost, the Ledger waits for the server, says so, and decides the batch again
        # (a batch decided before an outage may no longer be right after it, and a
        # silent retry would hide a long wait from the user).
        insert = PostgresApplicationRecorder.insert_events.__wrapped__
        return insert(self, stored_events, **kwargs)  # type: ignore[no-any-return]

    def _insert_events(self, curs: Any, stored_events: Sequence[StoredEvent], **kwargs: Any) -> None:
        # Runs inside the insert's transaction, before the events are inserted:
        # an exception here rolls everything back. Take the library's table
        # lock now (it takes it again, harmlessly), so the chain's head and the
        # positions about to be issued are ours until we commit.
        # The reads come first, on a cursor of their own: in the library's pipeline
        # mode a cursor that ran executemany() may still hold those results.
        if stored_events:
            conn = curs.connection
            with conn.cursor() as reader:
                self._lock_table(reader)
                table = self.prefix + self.events_table_name
                reader.execute(f"SELECT MAX(notification_id) AS m FROM {table}")
                last = reader.fetchone()["m"] or 0
                conn.ledger_chain_prev = self._chain_next(reader, last)
        self._write_batch(curs, kwargs.get("batch"))

    def build_chain(self) -> int:
        """The one-off migration: chain every stored event; how many were hashed."""
        with self.datastore.transaction(commit=True) as curs:
            self._lock_table(curs)
            return self._build_chain(curs)

    def _fetch_ids_after_insert_events(self, curs: Any, stored_events: Sequence[StoredEvent],
                                       **kwargs: Any) -> Sequence[int] | None:
        ids = list(super()._fetch_ids_after_insert_events(
            curs, stored_events, **kwargs) or [])
        # The library catches what is raised here and commits before re-raising
        # it, so a failure must abort the transaction in the server itself.
        try:
            prev = curs.connection.__dict__.pop("ledger_chain_prev")
            self._write_chain(curs, prev, [
                (pos, str(s.originator_id), s.originator_version, s.topic, s.state)
                for pos, s in zip(ids, stored_events)])
            self._write_commits(curs, ids, kwargs.get("batch"))
        except BaseException:
            curs.execute("DO $$ BEGIN RAISE EXCEPTION 'order-ledger: the hash chain was not "
                         "written; the events are rolled back'; END $$")
            raise
        return ids

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(sql, params)
            return [tuple(r.values()) for r in curs.fetchall()]


class LedgerPostgresReader(LedgerPostgresRecorder):
    """The recorder of a ledger opened for reading: no schema, table or function is created."""

    create_schema = False


class PostgresLog:
    """The events of a PostgreSQL ledger, which can read one partition of the orders
    (for a parallel rebuild).

    The head and whole ranges are read through the recorder (its pool rides out
    a lost connection or a server restart, as every reader of the ledger
    does); a partition is read with one plain query per batch on a connection
    of its own, opened on first use, so that each forked rebuild worker opens
    its own.
    """

    partitionable = True

    def __init__(self, params: dict[str, Any], table: str, recorder: Any = None) -> None:
        from .eventlog import RecorderLog

        self._params = params
        self._table = table
        self._plain = RecorderLog(recorder) if recorder is not None else None
        self._conn: Any = None
        self._closed = False

    @classmethod
    def of(cls, recorder: Any) -> PostgresLog | None:
        """The log of the ledger ``recorder`` opened (None when its connection
        settings cannot be reused)."""
        try:
            params = dict(recorder.datastore.pool.kwargs)
        except AttributeError:
            return None
        params.pop("row_factory", None)
        return cls(params, recorder.prefix + recorder.events_table_name, recorder)

    def _db(self) -> Any:
        if self._closed:
            raise ValueError("the event log is closed")
        if self._conn is None:
            import psycopg

            self._conn = psycopg.connect(**self._params, autocommit=True)
        return self._conn

    def _rows(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        """Run a query; a connection the server dropped (a restart, an idle timeout)
        is opened again once, as the recorder's pool would."""
        import psycopg

        try:
            return list(self._db().execute(sql, args).fetchall())
        except psycopg.OperationalError:
            if self._closed:
                raise
            conn, self._conn = self._conn, None
            try:
                conn.close()
            except Exception:  # pragma: no cover - already gone
                pass
            return list(self._db().execute(sql, args).fetchall())

    def head(self) -> int:
        if self._closed:
            raise ValueError("the event log is closed")
        if self._plain is not None:
            return self._plain.head()
        rows = self._rows(f"SELECT MAX(notification_id) FROM {self._table}")
        return int(rows[0][0] or 0)

    def read(self, after: int, limit: int, upto: int | None = None,
             partition: tuple[int, int] | None = None) -> list[RawEvent]:
        if self._closed:
            raise ValueError("the event log is closed")
        if partition is None and self._plain is not None:
            return [(p, o, t, bytes(s)) for p, o, t, s in self._plain.read(after, limit, upto)]
        where, args = "notification_id > %s", [after]
        if upto is not None:
            where += " AND notification_id <= %s"
            args.append(upto)
        if partition is not None:
            k, n = partition
            where += (f" AND (CASE WHEN left(originator_id::text, {len(ORDER_PREFIX)}) = "
                      f"'{ORDER_PREFIX}' THEN ascii(right(originator_id::text, 1)) %% %s "
                      "ELSE 0 END) = %s")
            args += [n, k]
        rows = self._rows(
            f"SELECT notification_id, originator_id::text, topic, state FROM {self._table} "
            f"WHERE {where} ORDER BY notification_id LIMIT %s", (*args, limit))
        return [(int(p), o, t, bytes(s)) for p, o, t, s in rows]

    def close(self) -> None:
        self._closed = True
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.close()
