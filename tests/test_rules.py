"""Rules that hold for every command: idempotency, time order, "a rejected
command writes nothing" (also when deadlines were due), and batching.

The rules of each section of docs/rules.md are in the other ``test_rules_*.py`` files:
``place`` (1, 3.1), ``hold_payment`` (3.2-3.5, 5), ``seller`` (2, 3.6-3.8),
``deadlines`` (3.9), ``adjust_address`` (3.10, 3.11), ``messages`` (4) and
``property`` (rules combined, hypothesis).
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone

import msgspec
import pytest

from builders import oid
from conftest import _drop_schema
from ledger.application import Ledger
from ledger.clock import FixedClock
from test_rules_support import (
    A, B, adj, adjust, cmd, dt, item, lines, names, ok, ok1, order_events, place, rejects,
    released, run, ship, snapshot, t, two_items, view,
)

O = oid(1)


@pytest.fixture
def other_db(db_url, tmp_path):
    """A second, empty ledger location on the same backend as ``db_url``."""
    if db_url.startswith("postgresql"):
        schema = re.search(r"schema=(\w+)", db_url).group(1) + "_b"
        yield re.sub(r"schema=\w+", f"schema={schema}", db_url)
        _drop_schema(schema)
    else:
        yield str(tmp_path / "other.db")


# --- idempotency ------------------------------------------------------------------------------


def test_same_command_id_twice_in_one_run(ledger):
    c = place(O, t(), command_id="p-1")
    outs = run(ledger, c, c)
    assert [o.status for o in outs] == ["applied", "duplicate"]
    assert outs[1].events == [] and outs[1].ok
    assert len(order_events(ledger, O)) == 1


def test_same_command_id_across_runs_and_ledger_objects(ledger, db_url):
    stream = [cmd("set-inventory", t(), sku="MUG-1", quantity=5, command_id="c-0"),
              *[dict(c, command_id=f"c-{n}") for n, c in
                enumerate(released(O, items=[item(sku="MUG-1", quantity=2)]), 1)],
              dict(ship(O, t(hours=1)), command_id="c-9")]
    assert all(o.status == "applied" for o in run(ledger, *stream))
    before = snapshot(ledger)
    outs = run(ledger, *stream)
    assert [o.status for o in outs] == ["duplicate"] * len(stream)
    assert all(o.events == [] for o in outs)
    assert snapshot(ledger) == before
    with Ledger(db_url) as fresh:
        outs = list(fresh.apply_lines(lines(*stream), batch_size=2))
        assert [o.status for o in outs] == ["duplicate"] * len(stream)
        assert fresh.execute(stream[-1]).status == "duplicate"
        assert snapshot(fresh) == before
        assert fresh.inventory("MUG-1").available == 3


def test_duplicate_is_acknowledged_before_the_time_check(ledger):
    first = place(O, t(), command_id="p-1")
    ok(ledger, first, cmd("tick", t(days=3)))
    out = ledger.execute(first)  # earlier than the clock, but already applied
    assert out.status == "duplicate"


def test_rejected_command_id_can_be_used_again(ledger):
    bad = place(O, t(), [item(quantity=1)], command_id="p-1")
    bad["buyer"]["language"] = "svenska"
    rejects(ledger, bad, "bad-language")
    good = place(O, t(), command_id="p-1")
    assert ledger.execute(good).status == "applied"
    assert ledger.execute(good).status == "duplicate"


def test_command_id_is_recorded_on_the_events(ledger):
    ok1(ledger, place(O, t(), command_id="p-1"))
    assert order_events(ledger, O)[0].command_id == "p-1"
    out = ok1(ledger, cmd("tick", t(hours=1)))  # no id given: a random one is assigned
    assert order_events(ledger, O)[1].command_id == out.command_id
    assert out.command_id and out.command_id != "p-1"


def test_duplicate_id_with_different_content_is_still_a_duplicate(ledger):
    ok(ledger, *released(O), ship(O, t(hours=1), [(A, 1)], command_id="s-1"))
    out = ledger.execute(ship(O, t(hours=2), command_id="s-1"))
    assert out.status == "duplicate"


# --- time order --------------------------------------------------------------------------------


def test_command_earlier_than_the_clock_is_rejected(ledger):
    ok(ledger, place(O, t()), cmd("tick", t(hours=1)))
    assert ledger.now() == dt(t(hours=1))
    err = rejects(ledger, place(oid(2), t(minutes=59)), "time-backwards")
    assert t(minutes=59) in err["message"] and t(hours=1) in err["message"]
    assert err["field"] == "at" and "time order" in err["hint"]
    assert ledger.order(oid(2)) is None and ledger.now() == dt(t(hours=1))


def test_equal_time_is_allowed(ledger):
    ok(ledger, place(O, t()), place(oid(2), t()), cmd("tick", t()))
    ok1(ledger, cmd("cancel", t(), order_id=O, by="buyer"))
    assert ledger.now() == dt(t())


def test_time_order_across_offsets_compares_instants(ledger):
    ok1(ledger, place(O, "2026-03-02T09:00:00+01:00"))
    ok1(ledger, cmd("tick", "2026-03-02T08:00:00Z"))  # 09:00 +01:00: equal, allowed
    rejects(ledger, cmd("tick", "2026-03-02T07:59:59Z"), "time-backwards")
    ok1(ledger, cmd("tick", "2026-03-02T10:00:00+02:00"))  # also 08:00 Z
    assert ledger.now() == dt("2026-03-02T08:00:00+00:00")


def test_rejected_lines_do_not_move_the_clock(ledger):
    ok1(ledger, place(O, t()))
    rejects(ledger, ship(O, t(days=5)), "order-pending")
    assert ledger.now() == dt(t())
    ok1(ledger, cmd("tick", t(days=1)))  # earlier than the rejected line: fine


# --- a rejected command writes nothing, not even due deadlines ---------------------------------


def test_rejected_line_does_not_write_the_deadlines_its_time_made_due(ledger):
    ok1(ledger, place(O, t()))
    rejects(ledger, cmd("cancel", t(hours=1), order_id=oid(99), by="buyer"), "unknown-order")
    assert names(order_events(ledger, O)) == ["OrderPlaced"]
    assert view(ledger, O)["next_deadline"]["kind"] == "hold-expiry"
    out = ok1(ledger, cmd("receive-message", t(hours=1), order_id=O, body="Hej",
                          **{"from": "buyer"}))
    assert out.events == ["HoldExpired", "MessageReceived"]
    assert order_events(ledger, O)[1].at == dt(t(minutes=30))


def test_rejected_line_inside_a_batch_writes_nothing(ledger):
    outs = run(ledger,
               cmd("set-inventory", t(), sku="MUG-1", quantity=3),
               *released(O, items=[item(sku="MUG-1", quantity=2)]),
               cmd("tick", t(days=24)),                                   # warning
               ship(oid(99), t(days=31)),                                  # unknown order
               cmd("cancel", t(days=31), order_id=O, by="seller", reason="Nope"),  # bad reason
               cmd("tick", t(days=25)))                                   # before the rejected lines
    assert [o.status for o in outs] == ["applied"] * 5 + ["rejected"] * 2 + ["applied"]
    assert outs[-1].events == []  # the 30-day cancel was not written by the rejected lines
    assert view(ledger, O)["status"] == "Unshipped"
    assert ledger.inventory("MUG-1").available == 1
    assert ok1(ledger, cmd("tick", t(days=30))).events == ["LedgerCanceled", "InventoryReturned"]


def test_rejected_line_after_its_own_deadline_restores_everything(ledger):
    # the line's own order is changed by a deadline, then the line fails: both are undone
    ok(ledger, cmd("set-inventory", t(), sku="MUG-1", quantity=2),
       *released(O, items=[item(sku="MUG-1", quantity=2)]))
    before = snapshot(ledger)
    outs = run(ledger, ship(O, t(days=31)), ship(O, t(days=29)))
    assert [o.status for o in outs] == ["rejected", "applied"]
    assert outs[0].error["code"] == "order-canceled"
    assert outs[1].events == ["ShipByWarningIssued", "ShipmentConfirmed"]
    assert ledger.inventory("MUG-1").available == 0
    assert view(ledger, O)["status"] == "Shipped"
    assert ledger.head() == before[0] + 2


def test_malformed_line_between_good_lines(ledger):
    outs = list(ledger.apply_lines([json.dumps(place(O, t())), "{oops", "",
                                    json.dumps(cmd("tick", t(hours=1)))]))
    assert [(o.line, o.status) for o in outs] == [(1, "applied"), (2, "rejected"), (4, "applied")]
    assert outs[1].error["code"] == "malformed-json"
    assert names(order_events(ledger, O)) == ["OrderPlaced", "HoldExpired"]


# --- batching ----------------------------------------------------------------------------------


def _stream() -> list[dict]:
    """A history touching every rule, with some rejected lines in it."""
    o1, o2, o3, o4, o5 = (oid(n) for n in range(1, 6))
    return [
        cmd("set-inventory", t(), sku="MUG-1", quantity=6),
        cmd("set-inventory", t(), sku="CUP-1", quantity=1),
        place(o1, t(minutes=1), two_items(qa=2, qb=1)),
        place(o2, t(minutes=2), [item(A, "MUG-1", 5)]),                    # rejected: 4 left
        place(o2, t(minutes=2), [item(A, "MUG-1", 1), item(B, "TEE-1", 2)]),
        cmd("verify-payment", t(minutes=3), order_id=o1, outcome="verified"),
        cmd("verify-payment", t(minutes=4), order_id=o2, outcome="extended"),
        place(o3, t(minutes=5), [item(sku="MUG-1")]),
        cmd("cancel", t(minutes=6), order_id=o3, by="buyer"),
        place(o4, t(minutes=7)),
        cmd("verify-payment", t(minutes=8), order_id=o4, outcome="fraud"),
        cmd("request-cancel", t(hours=1), order_id=o1),
        adjust(o1, t(hours=2), adj(B, "CustomerCancel", quantity_cancelled=1)),
        ship(o1, t(hours=3), [(A, 1)]),
        ship(o1, t(hours=3), [(A, 5)]),                                     # rejected: too many
        cmd("verify-payment", t(days=2), order_id=o2, outcome="verified"),
        cmd("receive-message", t(days=2), order_id=o2, body="Ny adress: Nygatan 2",
            requests_address_change=True, **{"from": "buyer"}),
        cmd("change-address", t(days=2, hours=1), order_id=o2,
            ship_to={"name": "B", "address_1": "Nygatan 2", "city": "Uppsala",
                     "postal_code": "75310", "country": "SE"}),
        place(o5, t(days=3), [item(sku="MUG-1", quantity=2)]),
        cmd("tick", t(days=3, hours=1)),
        cmd("tick", t(days=2)),                                             # rejected: backwards
        ship(o2, t(days=4), [(B, 1)], carrier_code="Other", carrier_name="Bring"),
        adjust(o1, t(days=10), adj(A, "CustomerReturn", item_price_adj="100.00")),
        cmd("tick", t(days=26)),
        cmd("verify-payment", t(days=27), order_id=o5, outcome="verified"),  # rejected: 21 days
        cmd("tick", t(days=40)),
    ]


def _run_all(ledger: Ledger, stream: list[dict], batch_size: int) -> list:
    outs = list(ledger.apply_lines(lines(*stream), batch_size=batch_size))
    return [(o.line, o.status, o.events, (o.error or {}).get("code")) for o in outs]


def _payloads(ledger: Ledger, strip_ids: bool) -> list:
    out = []
    for _, agg, e in ledger.iter_events():
        d = msgspec.to_builtins(e)
        d.pop("recorded_at")  # when each ledger committed it: differs between the two runs
        if strip_ids:
            d.pop("command_id")
            d.pop("message_id", None)
        out.append((agg, d))
    return out


@pytest.mark.parametrize("explicit_ids", [True, False])
def test_batch_size_does_not_change_the_outcome(ledger, other_db, explicit_ids):
    stream = _stream()
    if explicit_ids:
        stream = [dict(c, command_id=f"s-{n:03d}") for n, c in enumerate(stream)]
    big = _run_all(ledger, stream, 1000)
    # the fixture ledger treats the stream as one time-sorted stream: so must the other one
    with Ledger(other_db, advance_clock=True) as small_ledger:
        small = _run_all(small_ledger, stream, 1)
        assert small == big
        assert [s for _, s, _, _ in big].count("rejected") == 4
        assert _payloads(small_ledger, not explicit_ids) == _payloads(ledger, not explicit_ids)
        for n in range(1, 6):
            assert small_ledger.order(oid(n)).view() == view(ledger, oid(n))
        assert small_ledger.now() == ledger.now()
        for sku in ("MUG-1", "CUP-1"):
            assert small_ledger.inventory(sku).available == ledger.inventory(sku).available


def test_batch_of_seven_matches_too(sqlite_url, tmp_path):
    stream = [dict(c, command_id=f"s-{n:03d}") for n, c in enumerate(_stream())]
    # one recording clock for both, so that their events (recorded_at included) compare equal
    clock = FixedClock(datetime(2026, 6, 1, tzinfo=timezone.utc))
    with Ledger(sqlite_url, clock=clock) as a, Ledger(str(tmp_path / "b.db"), clock=clock) as b:
        assert _run_all(a, stream, 7) == _run_all(b, stream, 1000)
        assert list(a.iter_events()) == list(b.iter_events())


def test_stream_replays_into_the_same_views(ledger, db_url):
    run(ledger, *_stream())
    views = {n: view(ledger, oid(n)) for n in range(1, 6)}
    with Ledger(db_url) as fresh:
        assert {n: fresh.order(oid(n)).view() for n in range(1, 6)} == views
    assert views[1]["status"] == "Shipped" and views[2]["status"] == "Shipped"
    assert views[3]["status"] == "Canceled" and views[4]["cancel_reason"] == "fraud"
    assert views[5]["cancel_reason"] == "PaymentNotVerified"
