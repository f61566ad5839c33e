"""Bulk apply's fast path: the same events, chain and outcomes as before it, with
the garbage collector, the chain hashing and the amount checks made cheaper."""

from __future__ import annotations

import gc
import hashlib
import io
import json
import sqlite3
import weakref
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ledger.application as application
from bench.generate import generate, write
from ledger import chain
from ledger import commands as c
from ledger.application import Ledger
from ledger.clock import FixedClock
from ledger.errors import CommandRejected

RECORDED = datetime(2027, 1, 1, tzinfo=timezone.utc)
#: the head of the chain of ``_workload()`` applied with the recording clock at
#: RECORDED, as the code before the bulk-apply work wrote it (any batch size):
#: every stored byte of every event, in order, is in this hash
GOLDEN = "1525:58ac54f3917937e8045e7d8fb350731b473dbb6b41d8d9e7733e6e41f6914700"


def _workload(orders: int = 300) -> list[str]:
    buf = io.StringIO()
    write(generate(orders, 1), buf)
    return buf.getvalue().splitlines()


@pytest.mark.parametrize("batch_size", [1000, 7])
def test_same_events_and_chain_as_before(db_url, batch_size):
    lines = _workload()
    with Ledger(db_url, clock=FixedClock(RECORDED)) as led:
        outs = list(led.apply_lines(lines, batch_size=batch_size))
        assert [o.status for o in outs] == ["applied"] * len(lines)
        assert str(led.digest()) == GOLDEN


@pytest.mark.parametrize("advance, digest, outcomes", [
    (False, "785:65d5836f870eeae47400a4f032dd8c3b6fa1f68893c677a2b17c6a9409e36f5e",
     "fbc982a6da0a3629"),
    (True, "785:136bd37da2533dcb5ac94c1c467dac61fe7f8592f24184fed73a6a903d219424",
     "64f5951c6d45b72d"),
])
def test_small_batches_same_as_before_in_both_clock_modes(sqlite_url, advance, digest,
                                                          outcomes):
    """Ticks read the heap of deadlines, which is brought up to date only then;
    with batches of 50 lines (many batch ends, late orders' deadlines fired at
    each) the events and every line's outcome are still those the code before
    that change gave (the constants), in the default mode and with the clock
    advancing at every line."""
    lines = _workload(120)
    with Ledger(sqlite_url, clock=FixedClock(RECORDED), advance_clock=advance) as led:
        outs = [(o.status, o.type, o.order_id, o.events)
                for o in led.apply_lines(lines, batch_size=50)]
        assert str(led.digest()) == digest
    assert hashlib.sha256(json.dumps(outs).encode()).hexdigest()[:16] == outcomes


def test_a_run_leaves_the_collector_as_it_found_it(sqlite_url):
    assert gc.isenabled() and gc.get_freeze_count() == 0
    with Ledger(sqlite_url, clock=FixedClock(RECORDED)) as led:
        it = led.apply_lines(_workload(40), batch_size=25)
        next(it)
        # between batches the batch's objects are frozen out of the collector ...
        assert gc.get_freeze_count() > 0 and gc.isenabled()
        list(it)
    # ... and given back at the end of the run
    assert gc.get_freeze_count() == 0 and gc.isenabled()


def test_a_run_abandoned_midway_unfreezes(sqlite_url):
    with Ledger(sqlite_url, clock=FixedClock(RECORDED)) as led:
        it = led.apply_lines(_workload(40), batch_size=25)
        next(it)
        it.close()
    assert gc.get_freeze_count() == 0


def test_a_caller_frozen_heap_stays_frozen(sqlite_url):
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with Ledger(sqlite_url, clock=FixedClock(RECORDED)) as led:
            list(led.apply_lines(_workload(20), batch_size=10))
        assert gc.get_freeze_count() >= frozen  # not unfrozen by the run
    finally:
        gc.unfreeze()


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_cyclic_garbage_is_collected_during_a_long_run(sqlite_url, monkeypatch):
    monkeypatch.setattr(application, "GC_FULL_EVERY", 3)
    with Ledger(sqlite_url, clock=FixedClock(RECORDED)) as led:
        it = led.apply_lines(_workload(60), batch_size=10)
        next(it)
        cycle = _Cycle()
        ref = weakref.ref(cycle)
        del cycle
        for _ in range(50):  # a few batches: a full collection comes by
            next(it)
        assert ref() is None
        # the rest of the run, with no more full collections: each scans the whole
        # test process (a tenth of a second here, hundreds of times)
        monkeypatch.setattr(application, "GC_FULL_EVERY", 10**9)
        assert all(o.status == "applied" for o in it)


def test_many_rejected_lines_bring_a_full_collection_sooner(sqlite_url, monkeypatch):
    monkeypatch.setattr(application, "GC_FULL_EVERY", 10**9)
    monkeypatch.setattr(application, "GC_FULL_REJECTED", 30)
    bad = ['{"type": "ship"'] * 400
    with Ledger(sqlite_url, clock=FixedClock(RECORDED)) as led:
        it = led.apply_lines(bad, batch_size=10)
        next(it)
        cycle = _Cycle()
        ref = weakref.ref(cycle)
        del cycle
        for _ in range(100):
            next(it)
        assert ref() is None
        list(it)


def test_rejected_lines_leave_no_reference_cycles(sqlite_url):
    """A rejected line's exception is kept without its traceback: it would hold the
    batch's frame, a cycle that frozen batches would keep until the end of the run."""
    bad = ['{"type": "ship"', '{"type": "nope", "at": null}', "[1, 2]",
           '{"type": "tick", "at": "2026-01-01T00:00:00+00:00", "extra": 1}'] * 50
    with Ledger(sqlite_url, clock=FixedClock(RECORDED)) as led:
        list(led.apply_lines(bad[:8]))  # the ledger's own first-use objects
        gc.collect()
        gc.disable()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            outs = list(led.apply_lines(bad, batch_size=40))
            assert {o.status for o in outs} == {"rejected"}
            del outs
            gc.collect()
            # (msgspec's own type inspection leaves a few small function cycles)
            held = {type(o).__name__ for o in gc.garbage}
            assert not held & {"frame", "traceback", "CommandRejected", "list"}, held
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()


def test_new_sqlite_ledgers_keep_command_ids_and_deadlines_without_rowid(sqlite_url):
    with Ledger(sqlite_url, clock=FixedClock(RECORDED)) as led:
        list(led.apply_lines(_workload(10)))
    conn = sqlite3.connect(sqlite_url)
    sql = dict(conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'"))
    conn.close()
    assert "WITHOUT ROWID" in sql["ledger_commands"]
    assert "WITHOUT ROWID" in sql["ledger_deadlines"]


def test_a_ledger_with_the_older_tables_is_written_the_same(tmp_path):
    """A ledger made before those tables lost their rowid keeps its tables and gives
    the same events, chain and answers."""
    old = str(tmp_path / "old.db")
    conn = sqlite3.connect(old)
    conn.execute("CREATE TABLE ledger_commands ("
                 " command_id TEXT PRIMARY KEY, type TEXT NOT NULL, at_us INTEGER NOT NULL)")
    conn.execute("CREATE TABLE ledger_deadlines ("
                 " order_id TEXT PRIMARY KEY, due_us INTEGER NOT NULL, kind TEXT NOT NULL)")
    conn.commit()
    conn.close()
    lines = _workload()
    with Ledger(old, clock=FixedClock(RECORDED)) as led:
        list(led.apply_lines(lines[:2000]))
        # the second half sees the first half's command ids and deadlines
        outs = list(led.apply_lines(lines[1990:]))
        assert [o.status for o in outs[:10]] == ["duplicate"] * 10
        assert str(led.digest()) == GOLDEN
    conn = sqlite3.connect(old)
    sql = dict(conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'"))
    conn.close()
    assert "WITHOUT ROWID" not in sql["ledger_commands"]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.text(min_size=1, max_size=20), st.integers(1, 50),
                          st.sampled_from(["OrderPlaced:v1", "ShipmentConfirmed:v1", "T:v2"]),
                          st.binary(max_size=300)), max_size=30))
def test_links_hash_what_link_hashes(rows):
    positioned = [(i + 1, *row) for i, row in enumerate(rows)]
    prev, expected = chain.GENESIS, []
    for row in positioned:
        prev = chain.link(prev, *row)
        expected.append((row[0], prev))
    assert chain.links(chain.GENESIS, positioned) == expected


_amounts = st.one_of(
    st.decimals(allow_nan=False, allow_infinity=False),
    st.decimals(min_value=-10**13, max_value=10**13, places=6),
    st.decimals(min_value=-10**13, max_value=10**13, places=8),
    st.sampled_from([Decimal("1.5000000"), Decimal("1E+3"), Decimal("-0"), Decimal("NaN"),
                     Decimal("sNaN"), Decimal("Infinity"), Decimal("999999999999.999999"),
                     Decimal("1000000000000"), Decimal("0.0000001")]),
)


@settings(max_examples=300, deadline=None)
@given(_amounts)
def test_the_fast_amount_check_never_accepts_what_the_full_one_rejects(value):
    try:
        c._check_amount(value, "x")
        accepted = True
    except CommandRejected:
        accepted = False
    if c._amount_ok(value):
        assert accepted
    # and a place line decides exactly as the full check does
    line = ('{"type": "place", "at": "2026-03-02T10:00:00+01:00", "order_id": '
            '"203-1234567-7654321", "currency": "EUR", "ship_service_level": "Std", '
            '"buyer": {"name": "A", "language": "sv-SE"}, "ship_to": {"name": "A", '
            '"address_1": "G 1", "city": "S", "postal_code": "1", "country": "SE"}, '
            '"items": [{"order_item_id": "1", "sku": "S", "title": "T", "quantity": 1, '
            f'"item_price": "9.00", "item_tax": "{value}"}}]}}')
    try:
        c.parse_command(line)
        parsed = True
    except CommandRejected as exc:
        parsed = False
        assert exc.code in ("bad-amount", "invalid-field")
    assert parsed == accepted
