"""Tamper evidence: the hash chain over stored events, digests, and the migration."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from builders import WALKTHROUGH, walkthrough_lines
from ledger.application import Ledger
from ledger.chain import GENESIS, ChainVerifier, Digest, link
from ledger.check import check_ledger
from ledger.clock import FixedClock
from ledger.errors import StoreError

N = 60  # walkthrough lines: enough events for edits in the middle


def _sql(db: str, statements: list[tuple[str, tuple]]) -> list:
    """Run SQL on the ledger's own tables, around the ledger (what a tamperer does)."""
    out: list = []
    if db.startswith("postgresql://"):
        import psycopg

        base, _, query = db.partition("?schema=")
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'SET search_path TO "{query}"')
            for sql, params in statements:
                sql = sql.replace("?", "%s").replace("rowid", "notification_id")
                cur = conn.execute(sql.replace("stored_events", "orderledger_events"), params)
                if cur.description:
                    out.extend(cur.fetchall())
    else:
        import sqlite3

        conn = sqlite3.connect(db)
        try:
            for sql, params in statements:
                out.extend(conn.execute(sql, params).fetchall())
            conn.commit()
        finally:
            conn.close()
    return out


#: one recording time for every ledger here, so equal commands give equal bytes
CLOCK = FixedClock(datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc))


def _ledger(db: str, n: int = N) -> str:
    with Ledger(db, clock=CLOCK) as led:
        list(led.apply_lines(walkthrough_lines(n)))
    return db


def _problems(db: str, digest: Digest | None = None) -> list:
    with Ledger(db) as led:
        report = check_ledger(led, digest=digest)
    return [p for p in report.problems if p.code.startswith(("chain", "digest"))]


def test_link_is_sha256_over_position_and_content():
    a = link(GENESIS, 1, "order:1", 1, "T:v1", b"{}")
    assert len(a) == 32 and a != GENESIS
    assert link(GENESIS, 2, "order:1", 1, "T:v1", b"{}") != a  # the position counts
    assert link(GENESIS, 1, "order:1", 2, "T:v1", b"{}") != a  # the version counts
    assert link(a, 1, "order:1", 1, "T:v1", b"{}") != a  # the previous hash counts
    # length prefixes: moving a byte from the id to the topic changes the hash
    assert link(GENESIS, 1, "order:1T", 1, ":v1", b"{}") != a


def test_digest_round_trips_and_rejects_garbage():
    d = Digest(247, bytes(range(32)))
    assert Digest.parse(str(d)) == d
    for bad in ("247", "x:" + "0" * 64, "1:" + "0" * 63, "1:" + "g" * 64):
        with pytest.raises(ValueError, match="POSITION:HEXHASH"):
            Digest.parse(bad)


def test_an_untouched_ledger_verifies_and_its_digest_is_reproducible(db_url, tmp_path):
    _ledger(db_url)
    with Ledger(db_url) as led:
        digest = led.digest()
        report = check_ledger(led, digest=digest)
        assert digest is not None and digest.position == led.head()
    assert report.ok, report.problems
    assert any("verified" in n for n in report.notes)
    other = _ledger(str(tmp_path / "again.db"))  # the same commands give the same chain
    with Ledger(other) as led:
        assert led.digest() == digest


def test_one_changed_byte_is_named(db_url):
    _ledger(db_url)
    pos = 20
    (state,) = _sql(db_url, [("SELECT state FROM stored_events WHERE rowid = ?", (pos,))])[0]
    state = bytes(state)
    changed = state.replace(b'"at":"2026', b'"at":"2025', 1)
    assert changed != state
    _sql(db_url, [("UPDATE stored_events SET state = ? WHERE rowid = ?", (changed, pos))])
    problems = _problems(db_url)
    assert [p.code for p in problems] == ["chain-mismatch"]
    assert problems[0].where == f"position {pos}" and "edited" in problems[0].message


def test_a_deleted_event_is_named(db_url):
    _ledger(db_url)
    _sql(db_url, [("DELETE FROM stored_events WHERE rowid = ?", (30,))])
    problems = _problems(db_url)
    assert problems[0].code == "chain-event-deleted" and problems[0].where == "position 30"
    assert "deleted" in problems[0].message


def test_two_swapped_events_are_named(sqlite_url):
    db = _ledger(sqlite_url)
    a, b = _sql(db, [("SELECT rowid, originator_id, originator_version, topic, state FROM "
                      "stored_events WHERE rowid IN (10, 11) ORDER BY rowid", ())])
    _sql(db, [("DELETE FROM stored_events WHERE rowid IN (10, 11)", ()),
              ("INSERT INTO stored_events (rowid, originator_id, originator_version, topic, "
               "state) VALUES (?, ?, ?, ?, ?)", (10, *b[1:])),
              ("INSERT INTO stored_events (rowid, originator_id, originator_version, topic, "
               "state) VALUES (?, ?, ?, ?, ?)", (11, *a[1:]))])
    problems = _problems(db)
    assert problems[0].code == "chain-mismatch" and problems[0].where == "position 10"


def test_an_inserted_event_is_named_and_stops_writers(db_url):
    _ledger(db_url)
    row = _sql(db_url, [("SELECT originator_id, originator_version, topic, state FROM "
                         "stored_events WHERE rowid = ?", (5,))])[0]
    _sql(db_url, [("INSERT INTO stored_events (originator_id, originator_version, topic, "
                   "state) VALUES (?, ?, ?, ?)", ("order:999-9999999-9999999", 1, row[2],
                                                  bytes(row[3])))])
    problems = _problems(db_url)
    assert problems[0].code == "chain-unlinked" and "inserted" in problems[0].message
    with Ledger(db_url) as led:
        with pytest.raises(StoreError, match="not in the ledger's hash chain"):
            list(led.apply_lines(walkthrough_lines()[N:N + 5]))


def test_old_digest_holds_for_an_honestly_extended_ledger(db_url):
    _ledger(db_url)
    with Ledger(db_url) as led:
        old = led.digest()
        list(led.apply_lines(walkthrough_lines()[N:]))
        assert led.head() > old.position
        report = check_ledger(led, digest=old)
    assert report.ok, report.problems
    assert any("holds" in n for n in report.notes)


def test_a_rewritten_history_with_a_recomputed_chain_fails_the_old_digest(sqlite_url):
    db = _ledger(sqlite_url)
    with Ledger(db) as led:
        old = led.digest()
    (state,) = _sql(db, [("SELECT state FROM stored_events WHERE rowid = 7", ())])[0]
    edited = bytes(state).replace(b'"at":"2026', b'"at":"2025', 1)
    assert edited != bytes(state)
    _sql(db, [("UPDATE stored_events SET state = ? WHERE rowid = 7", (edited,)),
              ("DELETE FROM ledger_chain", ())])
    with Ledger(db) as led:
        led.migrate()  # the tamperer recomputes the whole chain: it verifies again...
    assert _problems(db) == []
    problems = _problems(db, digest=old)  # ...but not against the digest kept elsewhere
    assert [p.code for p in problems] == ["digest-mismatch"]


def test_a_cut_history_fails_the_digest(sqlite_url):
    db = _ledger(sqlite_url)
    with Ledger(db) as led:
        old = led.digest()
    _sql(db, [("DELETE FROM stored_events WHERE rowid >= ?", (old.position - 2,)),
              ("DELETE FROM ledger_chain WHERE position >= ?", (old.position - 2,))])
    assert [p.code for p in _problems(db, digest=old)] == ["digest-not-found"]


def test_a_ledger_from_before_the_chain_is_migrated_once(db_url):
    _ledger(db_url)
    with Ledger(db_url) as led:
        original = led.digest()
    _sql(db_url, [("DELETE FROM ledger_chain", ())])  # as an older version left it
    with Ledger(db_url) as led:
        report = check_ledger(led)
        assert report.ok and any("order-ledger migrate" in n for n in report.notes)
        with pytest.raises(StoreError, match="order-ledger migrate"):
            list(led.apply_lines(walkthrough_lines()[N:N + 5]))
        assert led.migrate() == original.position
        assert led.migrate() == 0  # safe to repeat
        assert led.digest() == original
        outs = list(led.apply_lines(walkthrough_lines()[N:]))
        assert all(o.status == "applied" for o in outs)
        assert check_ledger(led).ok


def test_verifier_reports_one_edit_once():
    rows = [(p, f"order:{p}", 1, "T:v1", b"x%d" % p) for p in range(1, 6)]
    v = ChainVerifier()
    good = []
    prev = GENESIS
    for r in rows:
        prev = link(prev, *r)
        good.append((r[0], prev))
    edited = rows[:2] + [(3, "order:3", 1, "T:v1", b"edited")] + rows[3:]
    findings = list(v.step(edited, good))
    assert [(f.code, f.position) for f in findings] == [("chain-mismatch", 3)]
    assert v.head == Digest(5, good[-1][1])


# --- the command line ------------------------------------------------------------------------


def _cli(*args: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("order-ledger")
    prog = [str(exe)] if exe.exists() else ["order-ledger"]
    return subprocess.run([*prog, *args], capture_output=True, text=True, timeout=120)


def test_cli_digest_check_and_migrate(tmp_path):
    db = str(tmp_path / "l.db")
    assert _cli("apply", str(WALKTHROUGH), "--db", db, "-q").returncode == 0
    res = _cli("digest", "--db", db)
    assert res.returncode == 0
    token = res.stdout.strip()
    assert Digest.parse(token).position == 247
    as_json = json.loads(_cli("digest", "--db", db, "--json").stdout)
    assert as_json["digest"] == token and as_json["algorithm"] == "sha256"

    ok = _cli("check", "--db", db, "--digest", token)
    assert ok.returncode == 0 and "holds" in ok.stdout

    bad = _cli("check", "--db", db, "--digest", "12:nothex")
    assert bad.returncode == 2 and "POSITION:HEXHASH" in bad.stderr

    (state,) = _sql(db, [("SELECT state FROM stored_events WHERE rowid = 100", ())])[0]
    _sql(db, [("UPDATE stored_events SET state = ? WHERE rowid = 100",
               (bytes(state) + b" ",))])
    broken = _cli("check", "--db", db, "--digest", token)
    assert broken.returncode == 1
    assert "[chain-mismatch] position 100" in broken.stdout

    _sql(db, [("UPDATE stored_events SET state = ? WHERE rowid = 100", (bytes(state),)),
              ("DELETE FROM ledger_chain", ())])
    assert "order-ledger migrate" in _cli("digest", "--db", db).stderr
    migrated = _cli("migrate", "--db", db)
    assert migrated.returncode == 0 and "247 event(s) hashed" in migrated.stdout
    assert token in migrated.stdout
    assert "nothing to do" in _cli("migrate", "--db", db).stdout
    assert _cli("check", "--db", db, "--digest", token).returncode == 0


def test_a_failed_chain_write_rolls_the_events_back(db_url, monkeypatch):
    """The events and their chain rows commit together or not at all (on PostgreSQL the
    library commits before re-raising what its insert raised, so this is not a given)."""
    from ledger import store

    _ledger(db_url, 10)
    with Ledger(db_url) as led:
        before = led.head()
        digest = led.digest()

        def broken(self, cursor, prev, rows):
            raise RuntimeError("disk on fire")

        monkeypatch.setattr(store.LedgerRecorderMixin, "_write_chain", broken)
        with pytest.raises(Exception):
            list(led.apply_lines(walkthrough_lines()[10:20]))
        monkeypatch.undo()
    with Ledger(db_url) as led:
        assert led.head() == before and led.digest() == digest
        assert check_ledger(led).ok
        outs = list(led.apply_lines(walkthrough_lines()[10:20]))
        assert all(o.status == "applied" for o in outs)
