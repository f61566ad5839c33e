"""Clock faults (issue 17, item 5): the recording clock steps backwards, forwards and
repeats between batches, across two Ledger objects and across processes on one ledger.

``recorded_at`` never goes backwards (the last recorded time is read from the store
under the writer lock), ``check`` stays clean, and deadlines -- which depend on business
time and ticks only -- fire exactly as with a well-behaved clock: never early, never
twice.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone

from builders import at, cmd, lines, oid, place
from ledger import events as ev
from ledger.application import Ledger
from ledger.check import check_ledger
from ledger.clock import FixedClock

R = datetime(2026, 3, 10, 12, 0, tzinfo=timezone.utc)  # recording times: after every `at`

#: (recording clock for the batch, the batch's commands); the clock jumps about
SCRIPT: list[tuple[datetime, list[dict]]] = [
    (R, [place(oid(1), at(0)), cmd("verify-payment", at(5), order_id=oid(1), outcome="verified")]),
    (R - timedelta(hours=1), [place(oid(2), at(10))]),                       # backwards
    (R - timedelta(hours=1), [cmd("tick", at(20))]),                         # repeated
    (R + timedelta(days=1), [cmd("tick", at(30))]),                          # forwards: o1's hold
    (R - timedelta(days=3), [cmd("tick", at(30))]),                          # far back, same tick
    (R - timedelta(days=3), [place(oid(3), at(45)), cmd("tick", at(41))]),   # repeated
    (R + timedelta(days=1, seconds=1), [cmd("tick", at(35))]),               # tick behind watermark
    (R - timedelta(minutes=1), [cmd("tick", at(80))]),                       # o2 and o3 holds
    (R, [cmd("tick", at(80))]),                                              # the same tick again
]

#: the deadline events the story must give, each once: (order, event type, due `at`)
EXPECTED_DEADLINES = [
    (oid(1), "HoldExpired", at(30)),
    (oid(2), "HoldExpired", at(40)),
    (oid(3), "HoldExpired", at(75)),
]
DEADLINE_TYPES = {"HoldExpired", "ShipByWarningIssued", "LedgerCanceled", "PaymentTimedOut",
                  "VerificationExpired"}


def _events(led: Ledger) -> list[tuple[int, str, ev.Event]]:
    return list(led.iter_events())


def _deadlines(events) -> list[tuple[str, str, str]]:
    out = []
    for _, _, p in events:
        if type(p).__name__ in DEADLINE_TYPES:
            out.append((p.order_id, type(p).__name__, p.at))
    return out


def _assert_sane(db: str, expected_events: list | None = None) -> list:
    with Ledger(db) as led:
        events = _events(led)
        report = check_ledger(led)
    assert report.ok, [p.as_dict() for p in report.problems]
    recorded = [ev.recorded_at(p) for _, _, p in events]
    assert all(p.recorded_at is not None for _, _, p in events)
    assert recorded == sorted(recorded), "recorded_at went backwards"
    got = _deadlines(events)
    want = [(o, t, datetime.fromisoformat(a)) for o, t, a in EXPECTED_DEADLINES]
    assert got == want  # exactly these, each once, stamped with its due time
    if expected_events is not None:  # the same facts as with a well-behaved clock
        strip = lambda es: [(a, type(p).__name__, p.at) for _, a, p in es]  # noqa: E731
        assert strip(events) == strip(expected_events)
    return events


def _reference(tmp_path) -> list:
    db = str(tmp_path / "reference.db")
    clock = FixedClock(R)
    with Ledger(db, clock=clock) as led:
        for n, (_, batch) in enumerate(SCRIPT):
            clock.set(R + timedelta(minutes=n))  # a clock that only moves forwards
            list(led.apply_lines(lines(*batch)))
        return _events(led)


def test_one_ledger_clock_steps_back_forth_and_repeats(db_url, tmp_path):
    reference = _reference(tmp_path)
    clock = FixedClock(R)
    with Ledger(db_url, clock=clock) as led:
        for when, batch in SCRIPT:
            clock.set(when)
            outs = list(led.apply_lines(lines(*batch)))
            assert all(o.status == "applied" for o in outs), [o.error for o in outs]
    events = _assert_sane(db_url, reference)
    # the recording times are the running maximum of the injected clock (the batch at
    # +1 day 1 s wrote no event: a tick behind the watermark changes nothing)
    high = R + timedelta(days=1)
    assert max(ev.recorded_at(p) for _, _, p in events) == high
    assert ev.recorded_at(events[-1][2]) == high


def test_two_ledgers_on_one_store_with_clocks_apart(db_url, tmp_path):
    reference = _reference(tmp_path)
    ahead, behind = FixedClock(R + timedelta(hours=2)), FixedClock(R - timedelta(hours=2))
    with Ledger(db_url, clock=ahead) as a, Ledger(db_url, clock=behind) as b:
        for n, (_, batch) in enumerate(SCRIPT):
            led = a if n % 2 == 0 else b  # every other batch by the writer whose clock lags
            ahead.set(ahead.now() + timedelta(seconds=1))
            behind.set(behind.now() - timedelta(seconds=1))  # and keeps going backwards
            outs = list(led.apply_lines(lines(*batch)))
            assert all(o.status == "applied" for o in outs), [o.error for o in outs]
    events = _assert_sane(db_url, reference)
    # b's batches were recorded at a's latest time, never at b's earlier clock
    assert min(ev.recorded_at(p) for _, _, p in events) == R + timedelta(hours=2, seconds=1)


_WRITER = """
import json, sys
from datetime import datetime
from ledger.application import Ledger
from ledger.clock import FixedClock
db, when = sys.argv[1], datetime.fromisoformat(sys.argv[2])
with Ledger(db, clock=FixedClock(when)) as led:
    outs = list(led.apply_lines(sys.stdin.read().splitlines()))
print(json.dumps([o.status for o in outs]))
"""


def test_processes_with_clocks_stepping_backwards(db_url, tmp_path):
    """Each batch in its own process, each process's clock earlier than the last."""
    reference = _reference(tmp_path)
    for n, (_, batch) in enumerate(SCRIPT):
        when = R - timedelta(hours=n) if n != 3 else R + timedelta(days=2)  # one jump forward
        r = subprocess.run([sys.executable, "-c", _WRITER, db_url, when.isoformat()],
                           input="\n".join(lines(*batch)), capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0, r.stderr
        assert set(json.loads(r.stdout)) == {"applied"}
    events = _assert_sane(db_url, reference)
    recorded = [ev.recorded_at(p) for _, _, p in events]
    assert recorded[-1] == R + timedelta(days=2)  # held after the forward jump
    # the CLI on the same ledger (system clock, far behind these recording times) agrees
    r = subprocess.run([sys.executable, "-m", "order_ledger", "check", "--db", db_url],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
