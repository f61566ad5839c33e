"""Issue 7.1: several writer processes on one ledger lose, duplicate and break nothing.

Four ``order-ledger apply`` processes run at once on the same ledger (SQLite
file and PostgreSQL), 300 commands each, in small batches so their commits
interleave. Every writer places orders that allocate the same shared SKUs
(so nearly every batch touches an aggregate another writer touches), ships,
cancels (giving units back to the shared SKUs) and messages its own orders,
and they all:

- record the same 30 ``receive-message`` commands with the same command ids
  (idempotency under races: exactly one copy is accepted);
- ship the same 10 shared orders with their own command ids (exactly one
  shipment each; the others are rejected ``order-shipped``);
- place the same 20 new orders (exactly one placement each; ``order-exists``).

Afterwards: the outcome counts are exactly as predicted, positions are
``1..N`` (SQLite), every accepted command has its events, ``check`` is
clean, the shared SKUs hold exactly the predicted quantities, and applying
the accepted commands one after another in commit order to a fresh ledger
gives the very same events (the concurrent run was serializable).

In the marching variant the commands' times advance. Order in time is per
order (docs/decisions.md, "Time"): a writer that falls behind is rejected
``time-backwards`` only on a shared order another writer already moved past,
never on its own orders; such rejections are counted, never lost.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import time
import uuid
from collections import Counter, defaultdict
from datetime import timedelta
from pathlib import Path

import pytest

from builders import T0, cmd, item, oid, place
from conftest import PG_URL, _drop_schema
from crash_harness import CLI, ROOT, differences, snapshot, slow_gate  # noqa: F401 - autouse fixture
from ledger.application import Ledger
from ledger.check import check_ledger, read_commands

WRITERS = 4
PER_WRITER = 300
PRE_ORDERS = 100
SHARED_SKUS = [f"SH-{k}" for k in range(4)]
STOCK = 1_000_000
NEW_ADDRESS = {"name": "B Berg", "address_1": "Nygatan 2", "city": "Uppsala",
               "postal_code": "75310", "country": "SE"}


def t(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat()


def pre(w: int, i: int) -> str:
    return oid(1000 * (w + 1) + i)


def shared(k: int) -> str:
    return oid(900 + k)


def race(i: int) -> str:
    return oid(950 + i)


def setup_commands(writers: int) -> list[dict]:
    """Shared SKUs in stock; 100 released orders per writer and 10 shared ones."""
    cs = [cmd("set-inventory", t(0), sku=s, quantity=STOCK, command_id=f"inv-{s}")
          for s in SHARED_SKUS]
    orders = [(pre(w, i), [item("1", SHARED_SKUS[i % 4], 1 + i % 2), item("2", f"W{w}-X", 1)])
              for w in range(writers) for i in range(PRE_ORDERS)]
    orders += [(shared(k), [item("1", SHARED_SKUS[k % 4], 1)]) for k in range(10)]
    cs += [place(o, t(1), items, command_id=f"p-{o}") for o, items in orders]
    cs += [cmd("verify-payment", t(2), order_id=o, outcome="verified", command_id=f"v-{o}")
           for o, _ in orders]
    cs.append(cmd("tick", t(60), command_id="tick-setup"))
    return cs


def writer_commands(w: int, marching: bool) -> list[dict]:
    """300 commands for writer ``w`` (groups shuffled; pairs stay in order)."""
    rng = random.Random(w)
    groups: list[list[dict]] = []
    for i in range(100):
        groups.append([place(oid(10_000 * (w + 1) + i), "", [item("1", rng.choice(SHARED_SKUS),
                                                                   rng.randint(1, 3))],
                             command_id=f"w{w}-new-{i}")])
    for i in range(60):
        groups.append([cmd("ship", "", order_id=pre(w, i), carrier_code="PostNord",
                           ship_date="2026-03-02", command_id=f"w{w}-ship-{i}")])
    for i in range(60, 80):
        groups.append([cmd("cancel", "", order_id=pre(w, i), by="seller", reason="NoInventory",
                           command_id=f"w{w}-cancel-{i}")])
    for i in range(20):
        o = pre(w, i)
        groups.append([cmd("send-message", "", order_id=o, purpose="delivery-problem",
                           language="sv-SE", command_id=f"w{w}-msg-{i}",
                           body=f"Hej! Din beställning {o} blir en dag försenad på grund av "
                                "vädret.")])
    for i in range(30):  # the same command ids in every writer
        groups.append([cmd("receive-message", "", order_id=shared(i % 10), body=f"Fråga {i}",
                           command_id=f"shared-rm-{i}", **{"from": "buyer"})])
    for k in range(10):  # the same orders, different command ids
        groups.append([cmd("ship", "", order_id=shared(k), carrier_code="DHL",
                           ship_date="2026-03-02", command_id=f"w{w}-sship-{k}")])
    for i in range(20):
        groups.append([place(race(i), "", [item("1", SHARED_SKUS[i % 4], 1)],
                             command_id=f"w{w}-race-{i}")])
    for i in range(80, 100):
        o = pre(w, i)
        groups.append([
            cmd("receive-message", "", order_id=o, body="Ny adress, tack",
                requests_address_change=True, command_id=f"w{w}-ra-{i}", **{"from": "buyer"}),
            cmd("change-address", "", order_id=o, ship_to=NEW_ADDRESS, command_id=f"w{w}-ca-{i}"),
        ])
    rng.shuffle(groups)
    flat = [c for g in groups for c in g]
    assert len(flat) == PER_WRITER
    for n, c in enumerate(flat):
        c["at"] = t(120 + n * 0.1) if marching else t(120)
    return flat


def run_writers(db: str, tmp: Path, per_writer: list[list[dict]], batch_size: int
                ) -> list[list[dict]]:
    files = []
    for w, cs in enumerate(per_writer):
        path = tmp / f"writer{w}.jsonl"
        path.write_text("".join(json.dumps(c, ensure_ascii=False) + "\n" for c in cs), "utf-8")
        files.append(path)
    procs = [subprocess.Popen(CLI + ["apply", "--json", "--batch-size", str(batch_size),
                                     "--db", db, str(f)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=str(ROOT))
             for f in files]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert b"Traceback" not in err, err.decode()[-2000:]
        assert p.returncode in (0, 1), (p.returncode, err.decode()[-2000:])
        assert b"gave up" not in err, err.decode()
        results.append([json.loads(line) for line in out.splitlines() if line.strip()])
    for w, outs in enumerate(results):
        assert len(outs) == PER_WRITER, f"writer {w} stopped early: {len(outs)} outcomes"
    return results


def setup_ledger(db: str) -> list[dict]:
    cs = setup_commands(WRITERS)
    with Ledger(db) as led:
        outs = list(led.apply_lines([json.dumps(c) for c in cs]))
    assert [o.status for o in outs] == ["applied"] * len(cs)
    return cs


def verify_store(db: str, setup: list[dict], results: list[list[dict]]) -> list[str]:
    """Nothing lost or duplicated, positions contiguous, check clean; the commit order."""
    applied = [o for outs in results for o in outs if o["status"] == "applied"]
    applied_ids = [o["command_id"] for o in applied]
    writer_of = {o["command_id"]: w for w, outs in enumerate(results) for o in outs
                 if o["status"] == "applied"}
    assert len(applied_ids) == len(set(applied_ids)), "a command id was applied twice"
    events_expected = sum(len(o["events"]) for o in applied)
    with Ledger(db) as led:
        stored = {r[0] for r in read_commands(led)}
        assert stored == set(applied_ids) | {c["command_id"] for c in setup}
        events = list(led.iter_events())
        first_pos: dict[str, int] = {}
        count = Counter()
        for pos, _, p in events:
            first_pos.setdefault(p.command_id, pos)
            count[p.command_id] += 1
        assert sum(count[c] for c in applied_ids) == events_expected
        assert all(count[c] for c in applied_ids), "an accepted command has no events"
        if not db.startswith("postgresql"):
            path = db
            with sqlite3.connect(path) as conn:
                rowids = [r[0] for r in conn.execute(
                    "SELECT rowid FROM stored_events ORDER BY rowid")]
            assert rowids == list(range(1, len(rowids) + 1))
        report = check_ledger(led)
        assert report.ok, [str(p) for p in report.problems]
    return [(writer_of[cid], cid) for cid in sorted(applied_ids, key=lambda cid: first_pos[cid])]


def serial_replay_equal(db: str, fresh: str, setup: list[dict], per_writer: list[list[dict]],
                        order: list[tuple[int, str]]) -> None:
    """Serializable: the accepted commands, one by one in commit order, give the same events."""
    by_cid = {(w, c["command_id"]): c for w, cs in enumerate(per_writer) for c in cs}
    with Ledger(fresh) as led:
        outs = list(led.apply_lines([json.dumps(c) for c in setup]))
        outs += list(led.apply_lines([json.dumps(by_cid[key]) for key in order], batch_size=7))
    bad = [(o.command_id, o.status, o.error) for o in outs if o.status != "applied"]
    assert not bad, bad[:5]
    assert differences(snapshot(db), snapshot(fresh)) == []


@pytest.fixture
def second_location(db_url, tmp_path):
    """Another empty ledger on the same backend."""
    if not db_url.startswith("postgresql"):
        yield str(tmp_path / "serial.db")
        return
    schema = "t_" + uuid.uuid4().hex[:12]
    yield f"{PG_URL}{'&' if '?' in PG_URL else '?'}schema={schema}"
    _drop_schema(schema)


def test_writers_at_one_time_race_on_shared_orders_and_ids(db_url, second_location, tmp_path):
    setup = setup_ledger(db_url)
    per_writer = [writer_commands(w, marching=False) for w in range(WRITERS)]
    started = time.monotonic()
    results = run_writers(db_url, tmp_path, per_writer, batch_size=10)
    elapsed = time.monotonic() - started

    status: Counter = Counter()
    per_id: dict[str, Counter] = defaultdict(Counter)
    for outs in results:
        for o in outs:
            code = (o.get("error") or {}).get("code")
            status[(o["status"], code)] += 1
            per_id[o["command_id"]][o["status"]] += 1
    # every writer's own commands applied
    for w in range(WRITERS):
        for kind in ("new", "ship", "cancel", "msg", "ra", "ca"):
            ids = [c for c in per_id if c.startswith(f"w{w}-{kind}-")]
            assert ids and all(per_id[c] == Counter(applied=1) for c in ids), (w, kind)
    # the same command id from four writers: exactly one accepted copy
    for i in range(30):
        assert per_id[f"shared-rm-{i}"] == Counter(applied=1, duplicate=WRITERS - 1)
    # the same order shipped / placed by four writers: exactly once
    for k in range(10):
        assert sum(per_id[f"w{w}-sship-{k}"]["applied"] for w in range(WRITERS)) == 1
    for i in range(20):
        assert sum(per_id[f"w{w}-race-{i}"]["applied"] for w in range(WRITERS)) == 1
    assert status == Counter({
        ("applied", None): WRITERS * 240 + 30 + 10 + 20,
        ("duplicate", None): 30 * (WRITERS - 1),
        ("rejected", "order-shipped"): 10 * (WRITERS - 1),
        ("rejected", "order-exists"): 20 * (WRITERS - 1),
    }), status

    order = verify_store(db_url, setup, results)
    # shared SKUs: stock - every placement + what the canceled orders gave back
    expected = dict.fromkeys(SHARED_SKUS, STOCK)
    for c in setup:
        if c["type"] == "place":
            for it in c["items"]:
                if it["sku"] in expected:
                    expected[it["sku"]] -= it["quantity"]
    for cs in per_writer:
        for c in cs:
            if c["type"] == "place" and per_id[c["command_id"]]["applied"]:
                expected[c["items"][0]["sku"]] -= c["items"][0]["quantity"]
            if c["type"] == "cancel":
                o = int(c["command_id"].rsplit("-", 1)[1])
                expected[SHARED_SKUS[o % 4]] += 1 + o % 2
    with Ledger(db_url) as led:
        assert {s: led.inventory(s).available for s in SHARED_SKUS} == expected
    serial_replay_equal(db_url, second_location, setup, per_writer, order)
    print(f"{WRITERS} writers x {PER_WRITER} commands in {elapsed:.1f} s: {dict(status)}")


@pytest.mark.slow
def test_writers_with_advancing_times_count_time_backwards(db_url, second_location, tmp_path):
    setup = setup_ledger(db_url)
    per_writer = [writer_commands(w, marching=True) for w in range(WRITERS)]
    results = run_writers(db_url, tmp_path, per_writer, batch_size=5)
    status = Counter((o["status"], (o.get("error") or {}).get("code"))
                     for outs in results for o in outs)
    allowed = {("applied", None), ("duplicate", None), ("rejected", "time-backwards"),
               ("rejected", "order-shipped"), ("rejected", "order-exists"),
               ("rejected", "unknown-order"), ("rejected", "no-address-request")}
    assert set(status) <= allowed, status
    assert sum(status.values()) == WRITERS * PER_WRITER
    assert status[("applied", None)] >= PER_WRITER // 2  # someone made progress
    # a shared command id is accepted at most once, and if any copy was seen as a
    # duplicate, exactly one copy was accepted
    per_id: dict[str, Counter] = defaultdict(Counter)
    for outs in results:
        for o in outs:
            per_id[o["command_id"]][o["status"]] += 1
    for i in range(30):
        c = per_id[f"shared-rm-{i}"]
        assert c["applied"] <= 1 and (not c["duplicate"] or c["applied"] == 1), c
    order = verify_store(db_url, setup, results)
    serial_replay_equal(db_url, second_location, setup, per_writer, order)
    print(f"marching: {dict(status)}")


# --- conflicts, retries and a busy ledger (in one process, deterministic) ------------------


@pytest.fixture
def no_writer_lock(monkeypatch):
    """Writers that do not take the writer lock (foreign tools): only the retry protects."""
    from ledger import locks

    monkeypatch.setattr(locks.WriterLock, "__enter__", lambda self: self)
    monkeypatch.setattr(locks.WriterLock, "__exit__", lambda self, *exc: None)


def _released(led: Ledger, o: str, minutes: float = 0) -> None:
    lines = [place(o, t(minutes), [item("1", "SH-0", 1)], command_id=f"p-{o}"),
             cmd("verify-payment", t(minutes + 1), order_id=o, outcome="verified",
                 command_id=f"v-{o}"),
             cmd("tick", t(minutes + 31), command_id=f"tick-{o}")]
    assert {x.status for x in led.apply_lines([json.dumps(c) for c in lines])} == {"applied"}


def _interleave(monkeypatch, first: Ledger, other: Ledger, lines: list[dict]) -> None:
    """Make ``other`` commit ``lines`` just before ``first``'s next commit."""
    original = first.recorder.insert_events
    done = []

    def insert_events(*args, **kwargs):
        if not done:
            done.append(1)
            outs = list(other.apply_lines([json.dumps(c) for c in lines]))
            assert all(o.status == "applied" for o in outs), outs
        return original(*args, **kwargs)

    monkeypatch.setattr(first.recorder, "insert_events", insert_events)


def test_conflict_is_retried_on_fresh_state_and_rules_rechecked(db_url, monkeypatch,
                                                                 no_writer_lock):
    with Ledger(db_url) as a, Ledger(db_url) as b:
        a.execute(cmd("set-inventory", t(0), sku="SH-0", quantity=5, command_id="inv"))
        _released(a, oid(1), 1)
        # b cancels the order between a's decision to ship it and a's commit
        _interleave(monkeypatch, a, b, [cmd("cancel", t(40), order_id=oid(1), by="seller",
                                            reason="NoInventory", command_id="b-cancel")])
        out = a.execute(cmd("ship", t(41), order_id=oid(1), carrier_code="DHL",
                            ship_date="2026-03-02", command_id="a-ship"))
        # the retry reloaded the order and re-checked the rules: it is canceled now
        assert out.status == "rejected" and out.error["code"] == "order-canceled", out
        assert a.order(oid(1)).status == "Canceled"
        assert a.inventory("SH-0").available == 5  # given back exactly once
        assert check_ledger(a).ok


def test_same_command_id_racing_is_accepted_once(db_url, monkeypatch, no_writer_lock):
    with Ledger(db_url) as a, Ledger(db_url) as b:
        a.execute(cmd("set-inventory", t(0), sku="SH-0", quantity=5, command_id="inv"))
        line = cmd("set-inventory", t(1), sku="OTHER", quantity=3, command_id="same-id")
        _interleave(monkeypatch, a, b, [line])
        out = a.execute(line)
        assert out.status == "duplicate", out
        report = check_ledger(a)
        assert report.ok and report.counts["commands"] == 2


def test_cache_is_dropped_when_someone_wrote_in_between(db_url, monkeypatch, no_writer_lock):
    """A writer's cached aggregates must not outlive a commit it did not see."""
    with Ledger(db_url) as a, Ledger(db_url) as b:
        a.execute(cmd("set-inventory", t(0), sku="SH-0", quantity=5, command_id="inv"))
        a.execute(place(oid(1), t(1), [item("1", "SH-0", 1)], command_id="p1"))
        a.execute(cmd("verify-payment", t(2), order_id=oid(1), outcome="verified",
                      command_id="v1"))
        assert a.order(oid(1)).status == "Pending"  # cached by a, in its hold
        # b expires the hold while a commits an unrelated batch
        _interleave(monkeypatch, a, b, [cmd("tick", t(40), command_id="b-tick")])
        assert a.execute(cmd("set-inventory", t(40), sku="X", quantity=1,
                             command_id="a-x")).status == "applied"
        out = a.execute(cmd("ship", t(41), order_id=oid(1), carrier_code="DHL",
                            ship_date="2026-03-02", command_id="a-ship"))
        assert out.status == "applied", out.error


def test_busy_sqlite_file_is_a_clear_error(sqlite_url, tmp_path):
    """A foreign write transaction, then a held writer lock: exit 1 with a message."""
    import fcntl

    with Ledger(sqlite_url) as led:
        led.execute(cmd("set-inventory", t(0), sku="A", quantity=1, command_id="c0"))
        head = led.head()
    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps(cmd("set-inventory", t(1), sku="A", quantity=2)) + "\n")
    env = dict(os.environ, ORDER_LEDGER_LOCK_TIMEOUT="1")
    conn = sqlite3.connect(sqlite_url, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    try:
        r = subprocess.run(CLI + ["apply", str(path), "--db", sqlite_url], capture_output=True,
                           text=True, env=env, cwd=str(ROOT), timeout=60)
    finally:
        conn.execute("ROLLBACK")
        conn.close()
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert "locked" in r.stderr or "busy" in r.stderr, r.stderr
    fd = os.open(sqlite_url + "-writer.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        r = subprocess.run(CLI + ["apply", str(path), "--db", sqlite_url], capture_output=True,
                           text=True, env=env, cwd=str(ROOT), timeout=60)
    finally:
        os.close(fd)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert "the ledger is busy" in r.stderr, r.stderr
    with Ledger(sqlite_url) as led:
        assert led.head() == head  # nothing was written
        assert led.inventory("A").available == 1


def test_busy_postgres_ledger_is_a_clear_error(pg_url, tmp_path):
    """Another session holds the writers' lock: exit 1 with a clear message."""
    import psycopg

    with Ledger(pg_url) as led:
        led.execute(cmd("set-inventory", t(0), sku="A", quantity=1, command_id="c0"))
        key = led._writer_lock.pg_key
    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps(cmd("set-inventory", t(1), sku="A", quantity=2)) + "\n")
    env = dict(os.environ, ORDER_LEDGER_LOCK_TIMEOUT="1")
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (key,))
        r = subprocess.run(CLI + ["apply", str(path), "--db", pg_url], capture_output=True,
                           text=True, env=env, cwd=str(ROOT), timeout=60)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert "the ledger is busy" in r.stderr, r.stderr


@pytest.mark.slow
def test_postgres_events_table_locked_by_a_foreign_session(pg_url):
    """The library retries its insert 10 times (lock timeout each) before we say busy."""
    import psycopg

    from ledger.errors import LedgerBusy

    with Ledger(pg_url) as led:
        led.execute(cmd("set-inventory", t(0), sku="A", quantity=1, command_id="c0"))
    os.environ["ORDER_LEDGER_LOCK_TIMEOUT"] = "1"
    try:
        led = Ledger(pg_url)
    finally:
        del os.environ["ORDER_LEDGER_LOCK_TIMEOUT"]
    schema = pg_url.rsplit("schema=", 1)[1]
    try:
        with psycopg.connect(PG_URL) as conn:
            conn.execute(f'LOCK TABLE "{schema}"."{led.recorder.events_table_name}" '
                         "IN EXCLUSIVE MODE")
            with pytest.raises(LedgerBusy, match="busy"):
                led.execute(cmd("set-inventory", t(1), sku="A", quantity=2, command_id="c1"))
            conn.rollback()
        assert led.head() == 1
        assert led.execute(cmd("set-inventory", t(1), sku="A", quantity=2,
                               command_id="c1")).status == "applied"
    finally:
        led.close()
