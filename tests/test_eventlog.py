"""The ledger's narrow event-log interface and its Backend object, on both backends."""

from __future__ import annotations

import pytest

from builders import walkthrough_lines
from ledger.application import Ledger
from ledger.backend import Backend
from ledger.eventlog import RecorderLog
from ledger.postgres import PostgresLog
from ledger.sqlite import SQLiteFileLog


@pytest.fixture
def filled(ledger):
    list(ledger.apply_lines(walkthrough_lines()))
    return ledger


def test_a_range_in_order_and_the_head(filled):
    log = filled.event_log()
    try:
        head = log.head()
        assert head == filled.head() > 10
        rows = log.read(0, 10_000)
        assert [r[0] for r in rows] == sorted(r[0] for r in rows) and rows[-1][0] == head
        assert log.read(3, 4, upto=5) == [r for r in rows if 3 < r[0] <= 5]
        decode = filled.decoder()
        assert [(p, a, decode(t, s)) for p, a, t, s in rows] == filled.read_events(0, 10_000)
    finally:
        log.close()


def test_the_fast_log_reads_what_the_recorder_log_reads(filled):
    fast, plain = filled.event_log(), filled.event_log(fast=False)
    try:
        assert isinstance(plain, RecorderLog) and not plain.partitionable
        if filled.backend.is_postgres:
            assert isinstance(fast, PostgresLog) and fast.partitionable
        else:
            assert isinstance(fast, SQLiteFileLog) and fast.partitionable
        assert [tuple(r[:3]) + (bytes(r[3]),) for r in fast.read(0, 10_000)] == \
            [tuple(r[:3]) + (bytes(r[3]),) for r in plain.read(0, 10_000)]
        with pytest.raises(ValueError, match="SQLite ledger file"):
            plain.read(0, 10, partition=(0, 2))
    finally:
        fast.close()
        plain.close()


def test_partitions_are_disjoint_cover_the_log_and_keep_an_order_whole(db_url):
    with Ledger(db_url, advance_clock=True) as led:
        list(led.apply_lines(walkthrough_lines()))
        log = led.event_log()
        try:
            whole = log.read(0, 10_000)
            parts = [log.read(0, 10_000, partition=(k, 3)) for k in range(3)]
            # a range of one part: after, upto and limit as for the whole log
            mid = whole[len(whole) // 3][0]
            assert log.read(mid, 5, upto=whole[-5][0], partition=(1, 3)) == [
                r for r in parts[1] if mid < r[0] <= whole[-5][0]][:5]
        finally:
            log.close()
    assert sorted(r for p in parts for r in p) == sorted(whole)
    owners = {}
    for k, part in enumerate(parts):
        for _, agg, _, _ in part:
            assert owners.setdefault(agg, k) == k
            if not agg.startswith("order:"):
                assert k == 0


def test_one_orders_events_positions_and_commands(filled):
    rows = filled.event_log().read(0, 10_000)
    agg = next(a for _, a, _, _ in rows if a.startswith("order:"))
    mine = [(p, filled.decoder()(t, s)) for p, a, t, s in rows if a == agg]
    events = filled.events_of(agg)
    assert [(p, e) for p, _, e in events] == mine
    assert [v for _, v, _ in events] == list(range(1, len(mine) + 1))
    assert filled.events_of(agg, upto=mine[1][0]) == events[:2]
    at = filled.events_at([mine[0][0], mine[-1][0], 10**9])
    assert at == {mine[0][0]: (agg, mine[0][1]), mine[-1][0]: (agg, mine[-1][1])}
    cid = mine[0][1].command_id
    times = filled.command_times([cid, "no-such-command"])
    assert list(times) == [cid] and times[cid][0] == "place"


def test_backend_answers_the_backend_questions(tmp_path, monkeypatch):
    monkeypatch.delenv("ORDER_LEDGER_DB", raising=False)
    f = Backend.of(str(tmp_path / "x.db"))
    assert (f.name, f.sqlite_file, f.copies_files) == ("sqlite", str(tmp_path / "x.db"), True)
    assert f.default_views_path() == str(tmp_path / "x.views.db")
    assert Backend("ledger.sqlite").default_views_path() == "ledger.sqlite.views.db"
    assert not f.exists() and not (tmp_path / "x.db").exists()  # asking creates nothing
    Ledger(f.location).close()
    assert f.exists()
    pg = Backend("postgresql://u@h:5432/shop?schema=eu west")
    assert (pg.name, pg.is_postgres, pg.sqlite_file, pg.copies_files) == (
        "postgresql", True, None, False)
    assert pg.default_views_path() == "order-ledger-shop-eu_west.views.db"
    mem = Backend(":memory:")
    assert (mem.name, mem.default_views_path()) == ("memory", ":memory:")
    assert Backend.of(None).location == "order-ledger.db"


def test_the_postgres_log_reconnects_after_losing_its_connection(pg_url):
    import psycopg

    from conftest import PG_URL

    with Ledger(pg_url, advance_clock=True) as led:
        list(led.apply_lines(walkthrough_lines()))
        log = led.event_log()
        try:
            assert isinstance(log, PostgresLog)
            head = log.head()
            log.read(0, 1, partition=(0, 1))
            pid = log._db().info.backend_pid
            with psycopg.connect(PG_URL, autocommit=True) as admin:  # a server restart, say
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            assert log.head() == head
            other = led.event_log()
            # a partition is read on the log's own connection, opened again
            assert log.read(0, 3, partition=(0, 1)) == other.read(0, 3)
            other.close()
        finally:
            log.close()
        with pytest.raises(ValueError, match="closed"):
            log.head()
