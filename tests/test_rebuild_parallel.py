"""The rebuild's apply path and its parallel, sharded fill, on both backends.

- the fused handlers (one per event type, every view at once) give exactly what
  each view's handlers alone give, on a generated marketplace workload;
- the event log of either backend reads disjoint partitions that cover it;
- a rebuild in 2 or 3 processes (each writing its partition's rows straight
  into the views file, taking turns) stores the same rows as one process, and
  a worker's failure keeps the old views;
- a worker that finds the views file's write lock taken keeps its rows, goes
  on, and writes them later: the views are the same.
"""

from __future__ import annotations

import sqlite3
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from conftest import PG_URL, _drop_schema, pg_available
from test_projections_support import everything

from bench.generate import iter_lines
from ledger.application import Ledger
from projections import Views, project
from projections import runner as runner_module
from projections.model import PROJECTIONS, KeyedProjection, handlers_for
from projections.model import to_us as fast_to_us
from projections.source import EventSource

REPORT_TIME = "2026-03-01T00:00:00+00:00"


@pytest.fixture(params=["sqlite", "postgres"])
def location(request, tmp_path):
    """A ledger with 300 generated orders (about 1,250 events) on each backend."""
    schema = None
    if request.param == "sqlite":
        loc = str(tmp_path / "l.db")
    else:
        if not pg_available():
            pytest.skip(f"PostgreSQL is not reachable at {PG_URL}")
        schema = "r_" + uuid.uuid4().hex[:12]
        loc = f"{PG_URL}{'&' if '?' in PG_URL else '?'}schema={schema}"
    with Ledger(loc) as led:
        for _ in led.apply_lines(iter_lines(300, 7)):
            pass
    yield loc
    if schema is not None:
        _drop_schema(schema)


def _rows(path: str) -> dict[str, list[tuple]]:
    con = sqlite3.connect(path)
    try:
        names = [r[0] for r in con.execute(
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'index') "
            "AND name NOT IN ('checkpoints') ORDER BY name")]
        out = {}
        for n in names:
            kind = con.execute("SELECT type, sql FROM sqlite_master WHERE name = ?",
                               (n,)).fetchone()
            out[n] = ([kind] if kind[0] == "index" else
                      sorted(con.execute(f"SELECT * FROM {n}").fetchall(), key=repr))
        return out
    finally:
        con.close()


def _flushed(projs: dict) -> dict[str, list]:
    tables = {n: {t.name: t.name for t in PROJECTIONS[n].tables} for n in projs}
    return {n: p.flush_ops(tables[n], 0) for n, p in projs.items()}


def test_fused_handlers_equal_each_view_alone(location):
    with Ledger(location) as led:
        events = [(item[0], item[-1]) for item in led.iter_events()]
    together = {n: PROJECTIONS[n](complete=True) for n in PROJECTIONS}
    table = handlers_for(together.values())
    alone = {n: PROJECTIONS[n](complete=True) for n in PROJECTIONS}
    single = {n: handlers_for([p]) for n, p in alone.items()}
    assert len(table) == len({t for h in single.values() for t in h})  # one per event type
    for pos, e in events:
        h = table.get(type(e))
        if h is not None:
            h(pos, e)
        for n in single:
            g = single[n].get(type(e))
            if g is not None:
                g(pos, e)
    assert _flushed(together) == _flushed(alone)


def test_partitions_are_disjoint_and_cover_the_log(location):
    with Ledger(location) as led:
        whole = EventSource(led)
        assert whole.direct  # both backends have a partitionable reader
        everything_ = whole.raw(0, 10**6)
        parts = []
        for k in range(3):
            src = EventSource(led, (k, 3))
            parts.append(src.raw(0, 10**6))
            src.close()
        whole.close()
    assert sorted(r for p in parts for r in p) == sorted(everything_)
    assert sum(len(p) for p in parts) == len(everything_)
    # every order's events are in one part; the non-order events all in part 0
    owner: dict[str, int] = {}
    for k, p in enumerate(parts):
        for _, agg, _, _ in p:
            assert owner.setdefault(agg, k) == k
            if not agg.startswith("order:"):
                assert k == 0


@pytest.mark.parametrize("jobs", [2, 3])
async def test_parallel_rebuild_stores_what_one_process_stores(location, tmp_path, jobs):
    report_time = datetime.fromisoformat(REPORT_TIME)
    with Ledger(location) as led:
        async with Views(led, str(tmp_path / "one.views.db"), jobs=1) as v:
            await v.rebuild()
            want = await everything(v, report_time)
        async with Views(led, str(tmp_path / "many.views.db"), jobs=jobs,
                         batch_size=97) as v:
            await v.rebuild()
            got = await everything(v, report_time)
        memory = await everything(project(led.iter_events()), report_time)
    assert _rows(str(tmp_path / "many.views.db")) == _rows(str(tmp_path / "one.views.db"))
    assert got == want == memory


async def test_a_failing_worker_keeps_the_old_views(tmp_path, monkeypatch):
    led = Ledger(str(tmp_path / "l.db"))
    for _ in led.apply_lines(iter_lines(60, 3)):
        pass
    path = str(tmp_path / "v.views.db")
    async with Views(led, path) as v:
        before = await v.orders()
    real_read = EventSource.read

    def broken(self, after, limit, upto=None):  # fails in worker 1 only
        if self.partition == (1, 2):
            raise RuntimeError("worker boom")
        return real_read(self, after, limit, upto)

    monkeypatch.setattr(EventSource, "read", broken)
    async with Views(led, path, jobs=2) as v:
        with pytest.raises(Exception, match="worker boom"):
            await v.rebuild()
    monkeypatch.undo()
    async with Views(led, path, auto_sync=False) as v:
        assert await v.orders() == before
        assert await v.checkpoints() == {n: led.head() for n in PROJECTIONS}
    led.close()


async def test_a_worker_that_finds_the_views_locked_writes_later(tmp_path, monkeypatch):
    """A parallel rebuild's worker does not wait for another's write: while another
    connection holds the views file's write lock its rows (and the records they
    come from, never evicted before they are written) stay pending; written later,
    they give the views a one-process rebuild gives, and the settled records they
    held are dropped from memory then, not at the next flush."""
    led = Ledger(str(tmp_path / "l.db"))
    for _ in led.apply_lines(iter_lines(150, 11)):
        pass
    one = str(tmp_path / "one.views.db")
    async with Views(led, one, jobs=1) as v:
        await v.rebuild()
    path = str(tmp_path / "turns.views.db")
    answers: list[bool] = []
    real_try = runner_module.ViewRunner._try_begin

    async def recording_try(db):
        answers.append(await real_try(db))
        return answers[-1]

    monkeypatch.setattr(runner_module.ViewRunner, "_try_begin", staticmethod(recording_try))
    evicted_late: list[int] = []
    real_evict = KeyedProjection.evict_settled

    def recording_evict(self, late=False):
        gone = real_evict(self, late)
        if late:
            evicted_late.append(gone)
        return gone

    monkeypatch.setattr(KeyedProjection, "evict_settled", recording_evict)
    blocker = sqlite3.connect(path, isolation_level=None)
    calls = []

    def progress(done: int, total: int) -> None:
        calls.append(done)
        if len(calls) == 1:  # the __new tables exist: another writer takes the lock
            blocker.execute("BEGIN IMMEDIATE")
        elif len(calls) == 4:  # and leaves it after three batches
            blocker.execute("COMMIT")

    # small batches, early flushes and a tiny cache: records are evicted and loaded
    # back, never while their rows are pending
    async with Views(led, path, jobs=1, batch_size=50, defer_limit=10,
                     cache_limit=30) as v:
        v.turns = True
        await v.rebuild(progress=progress)
    blocker.close()
    led.close()
    assert answers[:3] == [False, False, False] and answers[3] is True
    # the records of the flush written late went at once, though others changed since
    assert sum(evicted_late) > 0
    assert len(calls) > 6
    assert _rows(path) == _rows(one)


async def test_rebuilding_all_views_keeps_a_current_audit_index(tmp_path, monkeypatch):
    led = Ledger(str(tmp_path / "l.db"))
    lines = list(iter_lines(80, 5))
    half = len(lines) // 2
    list(led.apply_lines(lines[:half]))
    kept = str(tmp_path / "kept.views.db")
    async with Views(led, kept) as v:
        await v.rebuild()
    list(led.apply_lines(lines[half:]))  # more events: the kept index catches up
    async with Views(led, kept, jobs=2) as v:
        r = await v.rebuild()
        assert "audit" not in r.rebuilt and r.rebuilt
        assert set((await v.checkpoints()).values()) == {led.head()}
    async with Views(led, str(tmp_path / "fresh.views.db"), jobs=1) as v:
        r = await v.rebuild()
        assert "audit" in r.rebuilt  # never built: built
    assert _rows(kept) == _rows(str(tmp_path / "fresh.views.db"))
    # a new version of the audit's code rebuilds it
    monkeypatch.setattr(PROJECTIONS["audit"], "version", PROJECTIONS["audit"].version + 1)
    async with Views(led, kept) as v:
        assert "audit" in (await v.rebuild()).rebuilt
    led.close()


@given(st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2300, 1, 1),
                    timezones=st.one_of(
                        st.integers(-14 * 60, 14 * 60).map(
                            lambda m: timezone(timedelta(minutes=m))),
                        st.timezones())))
def test_the_fast_microseconds_equal_the_ledgers(t):
    from ledger.store import to_us as ledger_to_us

    assert fast_to_us(t) == ledger_to_us(t)


def test_none_and_booleans_are_stored_as_before(tmp_path):
    """Rows bind None through a registered adapter and booleans as integers: what
    SQLite stores is unchanged (NULL, 0 and 1)."""
    import projections.model  # noqa: F401  (registers the adapter)

    con = sqlite3.connect(tmp_path / "x.db")
    con.execute("CREATE TABLE t (a, b, c)")
    con.executemany("INSERT INTO t VALUES (?, ?, ?)", [(None, True, int(True)), (None, 0, False)])
    assert con.execute("SELECT typeof(a), typeof(b), b, typeof(c), c FROM t").fetchall() == [
        ("null", "integer", 1, "integer", 1), ("null", "integer", 0, "integer", 0)]
