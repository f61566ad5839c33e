"""Item 7 of issue 12: a forgotten ``--now`` must not silently rewrite history.

A CLI write without ``--now`` acts at the wall clock. Only a ``tick`` moves every
order's clock; a command on one order fires that order's deadlines only; other
commands (set-inventory, place, feeds) fire none of an earlier order's. When a
tick, or a command on an order, is more than a day past the ledger's (or that
order's) latest time the CLI asks on a terminal (naming how many deadlines
would fire and orders be canceled, from ``Ledger.pending_deadlines``), refuses
with exit 2 without a terminal, and ``--yes`` goes on.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest
from click.testing import CliRunner

from builders import T0, at, cmd, lines, oid, place, released
from ledger.application import Ledger
from order_ledger import common
from order_ledger.cli import main

DEADLINE_EVENTS = {"HoldExpired", "LedgerCanceled", "ShipByWarningIssued"}


def _small_ledger(db: str) -> None:
    """Three orders at T0: one never verified, one released, one shipped."""
    with Ledger(db) as led:
        outs = list(led.apply_lines(lines(
            cmd("set-inventory", at(0), sku="SKU-1", quantity=10),
            place(oid(1), at(1)),
            *released(oid(2), when_minutes=2),  # its tick at 32 min ends order 1's hold too
            *released(oid(3), when_minutes=40),
            cmd("ship", at(80), order_id=oid(3), carrier_code="UPS", tracking_number="1Z1",
                ship_date="2026-03-02"),
        )))
        assert all(o.ok for o in outs), [o.error for o in outs if not o.ok]


def _state(db: str) -> tuple[int, datetime | None]:
    with Ledger(db) as led:
        return led.head(), led.now()


# --- the library query ------------------------------------------------------------------


def test_pending_deadlines_counts_what_a_tick_would_write_and_writes_nothing(db_url):
    _small_ledger(db_url)
    before = _state(db_url)
    until = T0 + timedelta(days=40)
    with Ledger(db_url) as led:
        preview = led.pending_deadlines(until)
    # order 1 (Pending): the 21-day cancel; order 2 (Unshipped): the day-23 warning,
    # then the day-30 cancel; order 3 shipped
    assert _state(db_url) == before, "a preview wrote to the ledger"
    assert preview.ledger_time == before[1]
    with Ledger(db_url) as led:
        out = led.tick(until)
    written = Counter(e for e in out.events if e in DEADLINE_EVENTS)
    assert preview.by_event == dict(written)
    assert preview.deadlines == sum(written.values()) == 3
    assert written["LedgerCanceled"] == 2
    assert preview.orders_canceled == 2


def test_pending_deadlines_is_zero_before_the_ledger_clock_and_when_nothing_is_due(db_url):
    _small_ledger(db_url)
    with Ledger(db_url) as led:
        assert led.pending_deadlines(T0).deadlines == 0  # behind the clock: rejected anyway
        soon = led.pending_deadlines(T0 + timedelta(days=1))  # the holds are past already
        assert (soon.deadlines, soon.orders_canceled, soon.by_event) == (0, 0, {})


def test_pending_deadlines_does_not_leave_changed_orders_in_the_cache(sqlite_url):
    _small_ledger(sqlite_url)
    with Ledger(sqlite_url) as led:
        assert led.order(oid(1)) is not None
        led.pending_deadlines(T0 + timedelta(days=40))
        # a later real command on the same Ledger sees the stored orders, not the preview's
        out = led.execute(cmd("cancel", at(days=1), order_id=oid(2), by="seller",
                              reason="NoInventory"))
        assert out.ok, out.error
        assert led.order(oid(1)).status == "Pending"


def test_pending_deadlines_counts_an_order_canceled_when_its_hold_ends(db_url):
    with Ledger(db_url) as led:
        outs = list(led.apply_lines(lines(
            place(oid(5), at(0)),
            cmd("verify-payment", at(5), order_id=oid(5), outcome="declined"),
            cmd("tick", at(5)))))
        assert all(o.ok for o in outs)
        p = led.pending_deadlines(T0 + timedelta(hours=1))
        assert (p.deadlines, p.orders_canceled, p.by_event) == (1, 1, {"HoldExpired": 1})
        assert p.jump == timedelta(hours=1) - timedelta(minutes=5)
        # the same for a command on that order alone
        mine = led.pending_deadlines(T0 + timedelta(hours=1), oid(5))
        assert (mine.deadlines, mine.orders_canceled) == (1, 1)
        assert led.pending_deadlines(T0 + timedelta(hours=1), oid(6)).deadlines == 0
        assert led.order(oid(5)).status == "Pending"  # nothing written


def test_clock_jump_is_only_a_jump_of_more_than_a_day(db_url):
    with Ledger(db_url) as led:
        assert led.clock_jump(T0 + timedelta(days=400)) is None  # empty ledger: nothing to fire
        _small_ledger(db_url)
        latest = led.now()
        assert led.clock_jump(latest + timedelta(days=1)) is None
        p = led.clock_jump(latest + timedelta(days=1, seconds=1))
        assert p is not None and p.jump == timedelta(days=1, seconds=1)


# --- the command line ---------------------------------------------------------------------


def _old_ledger(tmp_path) -> str:
    db = str(tmp_path / "old.db")
    _small_ledger(db)  # its latest time is 2026-03-02: far behind any wall clock here
    return db


def _cli(*args: str, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "order_ledger", *args], input=input,
                          capture_output=True, text=True, timeout=60, env=os.environ.copy())


@pytest.mark.parametrize("argv, fired", [
    (["tick"], "3 deadline(s) would fire first, canceling 2 order(s) "
               "(2 LedgerCanceled, 1 ShipByWarningIssued)"),
    (["cancel", oid(2), "--reason", "NoInventory"],
     "2 deadline(s) would fire first, canceling 1 order(s) "
     "(1 LedgerCanceled, 1 ShipByWarningIssued)"),
    (["verify-payment", oid(1), "verified"],
     "1 deadline(s) would fire first, canceling 1 order(s) (1 LedgerCanceled)"),
])
def test_without_a_terminal_a_wall_clock_jump_is_refused_and_writes_nothing(tmp_path, argv,
                                                                             fired):
    db = _old_ledger(tmp_path)
    before = _state(db)
    r = _cli(*argv, "--db", db, input="y\n")  # stdin is a pipe: no question is asked
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    text = " ".join(r.stderr.split())
    assert fired in text
    assert "--now TIME" in text and "--yes" in text and "nothing written" in text
    assert _state(db) == before


def test_a_command_that_fires_no_earlier_deadline_is_not_asked_about(tmp_path):
    db = _old_ledger(tmp_path)
    head, clock = _state(db)
    r = _cli("set-inventory", "SKU-1", "30", "--db", db)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "set-inventory: applied: InventorySet"
    assert _state(db) == (head + 1, clock)  # one event; the ledger's clock did not move


def test_yes_goes_on_at_the_wall_clock(tmp_path):
    db = _old_ledger(tmp_path)
    r = _cli("tick", "--db", db, "--yes")
    assert r.returncode == 0, r.stderr
    assert "LedgerCanceled" in r.stdout
    head, clock = _state(db)
    assert clock > datetime.now(timezone.utc) - timedelta(minutes=5)


def test_with_now_there_is_no_question(tmp_path):
    db = _old_ledger(tmp_path)
    r = _cli("tick", "--db", db, "--now", at(days=2))
    assert r.returncode == 0, r.stderr
    assert "LedgerCanceled" not in r.stdout


def test_within_a_day_of_the_ledger_or_on_an_empty_ledger_there_is_no_question(tmp_path):
    db = str(tmp_path / "recent.db")
    recent = (datetime.now(timezone.utc) - timedelta(hours=20)).isoformat()
    r = _cli("tick", "--db", db)  # empty ledger: nothing can fire
    assert r.returncode == 0, r.stderr
    db2 = str(tmp_path / "recent2.db")
    assert _cli("tick", "--db", db2, "--now", recent).returncode == 0
    r = _cli("tick", "--db", db2)
    assert r.returncode == 0, r.stderr


def test_a_feed_without_now_cannot_rewrite_another_orders_history(tmp_path):
    db = _old_ledger(tmp_path)
    feed = tmp_path / "ship.txt"
    feed.write_text("order-id\torder-item-id\tquantity\tship-date\tcarrier-code\t"
                    "tracking-number\n"
                    f"{oid(2)}\t10000000000001\t1\t2026-03-03\tUPS\t1Z2\n", encoding="utf-8")
    before = _state(db)
    r = _cli("feed", "shipping-confirmation", str(feed), "--db", db)
    # at the wall clock the day-30 rule has passed for this order: the line is rejected,
    # and a rejected line writes nothing (not even the deadline it would have fired)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "[order-canceled]" in r.stdout
    assert _state(db) == before
    with Ledger(db) as led:
        assert led.order(oid(1)).status == "Pending"  # other orders untouched


@pytest.mark.parametrize("answer, code", [("n\n", 2), ("\n", 2), ("", 2), ("y\n", 0)])
def test_on_a_terminal_the_user_is_asked(tmp_path, monkeypatch, answer, code):
    db = _old_ledger(tmp_path)
    before = _state(db)
    monkeypatch.setattr(common, "stdin_is_terminal", lambda: True)
    result = CliRunner().invoke(main, ["tick", "--db", db], input=answer)
    assert result.exit_code == code, result.output
    assert "deadline(s) would fire first, canceling 2 order(s)" in " ".join(result.output.split())
    assert "Go on at the wall clock?" in result.output
    if code:
        assert "pass --now TIME" in result.output
        assert _state(db) == before
    else:
        assert _state(db)[0] > before[0]

