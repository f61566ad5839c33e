"""Time as facts really arrive: per-order time, deadlines on evidence or ticks,
late facts, recording times, nothing from the future (docs/decisions.md, "Time")."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path


from builders import at, cmd, item, oid, place, released
from ledger.application import Ledger
from ledger.check import check_ledger
from ledger.clock import FixedClock

#: the recording clock of these tests: well after every business time they use
REC = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)


def _ledger(db: str, clock: FixedClock | None = None) -> Ledger:
    return Ledger(db, clock=clock or FixedClock(REC))


def _apply(led: Ledger, *cmds: dict) -> list:
    return list(led.apply_lines([json.dumps(c) for c in cmds]))


def _events(led: Ledger, order_id: str) -> list[tuple[str, str]]:
    return [(type(e).__name__, e.at.isoformat()) for _, _, e in led.iter_events()
            if getattr(e, "order_id", None) == order_id]


def test_other_orders_commands_never_fire_an_orders_deadlines(db_url):
    a, b = oid(1), oid(2)
    with _ledger(db_url) as led:
        outs = _apply(led, place(a, at(0)), place(b, at(0)),
                      cmd("verify-payment", at(days=2), order_id=b, outcome="verified"))
        assert [o.status for o in outs] == ["applied"] * 3
        # b's own hold fired before its verification (stamped with its due time) ...
        assert _events(led, b)[1] == ("HoldExpired", at(30))
        # ... but nothing touched a: its hold is still pending, with no tick
        assert [n for n, _ in _events(led, a)] == ["OrderPlaced"]
        assert led.order(a).next_deadline()[1] == "hold-expiry"
        # a tick tells the ledger the world reached a time: every due deadline fires
        tick = led.execute(cmd("tick", at(days=2)))
        assert tick.events == ["HoldExpired"]
        assert _events(led, a)[1] == ("HoldExpired", at(30))
        assert check_ledger(led).ok


def test_a_late_place_is_accepted_and_gets_its_overdue_deadlines_at_once(db_url):
    late = oid(3)
    with _ledger(db_url) as led:
        _apply(led, *released(oid(1)), cmd("tick", at(100)))
        assert led.now().isoformat() == at(100)
        out = led.execute(place(late, at(1)))  # placed at 09:01, learned at 10:40
        assert out.status == "applied"
        assert out.events == ["OrderPlaced", "HoldExpired"]  # its hold ended at 09:31
        assert _events(led, late) == [("OrderPlaced", at(1)), ("HoldExpired", at(31))]
        assert check_ledger(led).ok


def test_order_in_time_is_per_order(db_url):
    a, b = oid(1), oid(2)
    with _ledger(db_url) as led:
        _apply(led, *released(a), *released(b, when_minutes=60))
        ship = cmd("ship", at(days=2), order_id=a, carrier_code="UPS", ship_date="2026-03-04",
                   tracking_number="1Z999")
        assert led.execute(ship).status == "applied"
        # b is untouched by a's later shipment: an earlier command on b is fine
        req = cmd("request-cancel", at(days=1), order_id=b, reason="changed my mind")
        assert led.execute(req).status == "applied"
        # a's own history is in time order
        late = led.execute(cmd("send-message", at(days=1), order_id=a, purpose="shipping",
                               language="sv-SE", body="Hej"))
        assert late.error["code"] == "time-backwards"
        assert a in late.error["message"] and at(days=2) in late.error["message"]


def test_a_fact_that_contradicts_an_applied_deadline_is_a_conflict(db_url, tmp_path):
    o = oid(4)
    with _ledger(db_url) as led:
        _apply(led, *released(o), cmd("tick", at(days=31)))
        assert led.order(o).status == "Canceled"  # the 30-day rule fired at the tick
        ship = cmd("ship", at(days=29), order_id=o, carrier_code="UPS",
                   ship_date="2026-03-31", tracking_number="1Z1", command_id="ship-day-29")
        out = led.execute(ship)
        assert out.error["code"] == "deadline-passed"
        assert at(days=29) in out.error["message"]
        assert "LedgerCanceled" in out.error["message"] and "2026-04-01" in out.error["message"]
        assert led.order(o).status == "Canceled"  # nothing written for the order
        [conflict] = led.conflicts()
        assert conflict["order_id"] == o and conflict["command_id"] == "ship-day-29"
        assert conflict["type"] == "ship" and conflict["at"] == at(days=29)
        assert conflict["deadline_at"] == "2026-04-01T09:00:00+01:00"
        assert conflict["deadline"] == "LedgerCanceled"
        assert json.loads(conflict["command"])["tracking_number"] == "1Z1"
        # the same line again is a second rejection, not a duplicate: it was never accepted
        assert led.execute(ship).error["code"] == "deadline-passed"
        assert len(led.conflicts(o)) == 2 and led.conflicts(oid(99)) == []


def test_no_facts_from_the_future(db_url):
    with _ledger(db_url) as led:
        soon = (REC + timedelta(minutes=4)).isoformat()
        later = (REC + timedelta(minutes=6)).isoformat()
        assert led.execute(place(oid(1), soon)).status == "applied"
        for line in (place(oid(2), later), cmd("tick", "2030-01-01T00:00:00+00:00")):
            out = led.execute(line)
            assert out.error["code"] == "time-future"
            assert "5 minutes" in out.error["message"]
        assert led.now() is None  # the future tick moved nothing


def test_recorded_at_is_the_commit_time_and_never_goes_backwards(db_url):
    clock = FixedClock(REC)
    with _ledger(db_url, clock) as led:
        _apply(led, place(oid(1), at(0)))
        clock.set(REC - timedelta(hours=3))  # the system clock steps back
        _apply(led, place(oid(2), at(1)))
        clock.set(REC + timedelta(hours=1))
        _apply(led, place(oid(3), at(2)))
        recorded = [e.recorded_at for _, _, e in led.iter_events()]
        assert recorded == [REC, REC, REC + timedelta(hours=1)]
        assert led.position_known_at(REC - timedelta(seconds=1)) == 0
        assert led.position_known_at(REC) == 2
        assert led.position_known_at(REC + timedelta(hours=2)) == 3
        assert check_ledger(led).ok


def test_a_command_without_a_time_happens_when_it_is_recorded(db_url):
    with _ledger(db_url) as led:
        line = place(oid(1), at(0))
        line["at"] = None
        out = led.execute(line)
        assert out.status == "applied" and out.at == REC.isoformat()
        [(name, when)] = _events(led, oid(1))
        assert when == REC.isoformat()


def test_a_single_time_sorted_stream_can_drive_the_clock(db_url):
    a, b = oid(1), oid(2)
    with _ledger(db_url) as led:
        outs = list(led.apply_lines([json.dumps(c) for c in (place(a, at(0)), place(b, at(60)))],
                                    advance_clock=True))
        assert outs[1].events == ["HoldExpired", "OrderPlaced"]  # a's hold fired first
        assert led.now().isoformat() == at(60)
        back = led.execute(place(oid(3), at(30)), advance_clock=True)
        assert back.error["code"] == "time-backwards"
        # without it, the same late order is welcome
        assert led.execute(place(oid(3), at(30))).status == "applied"


def test_inventory_keeps_recording_order_and_rejects_an_older_quantity(db_url):
    with _ledger(db_url) as led:
        assert _apply(led, cmd("set-inventory", at(60), sku="SKU-1", quantity=5))[0].ok
        # a late order takes stock now, stamped with its own time
        assert led.execute(place(oid(1), at(10), [item(quantity=2)])).status == "applied"
        assert led.inventory("SKU-1").available == 3
        older = led.execute(cmd("set-inventory", at(30), sku="SKU-1", quantity=9))
        assert older.error["code"] == "time-backwards" and "SKU-1" in older.error["message"]
        assert led.execute(cmd("set-inventory", at(61), sku="SKU-1", quantity=9)).ok
        assert check_ledger(led).ok


def test_a_rejected_line_can_be_applied_once_fixed_after_later_lines(db_url):
    with _ledger(db_url) as led:
        bad = place(oid(1), at(0))
        bad["currency"] = "kronor"
        outs = _apply(led, bad, *released(oid(2), when_minutes=60), cmd("tick", at(days=1)))
        assert outs[0].error["code"] == "invalid-field"
        fixed = led.execute(place(oid(1), at(0)))
        assert fixed.status == "applied"
        assert fixed.events[0] == "OrderPlaced"


# --- the command line ------------------------------------------------------------------------


def _cli(*args: str, **kw) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("order-ledger")
    prog = [str(exe)] if exe.exists() else ["order-ledger"]
    return subprocess.run([*prog, *args], capture_output=True, text=True, timeout=120, **kw)


def test_cli_late_orders_after_a_feed_and_the_conflicts_query(tmp_path, db_url):
    db = db_url
    first = tmp_path / "first.jsonl"
    first.write_text("\n".join(json.dumps(c) for c in (
        *released(oid(1)), cmd("tick", at(days=31)))) + "\n")
    assert _cli("apply", str(first), "--db", db, "-q").returncode == 0
    late = tmp_path / "late.jsonl"
    late.write_text("\n".join(json.dumps(c) for c in (
        place(oid(2), at(5)),  # an older order learned late: accepted
        cmd("ship", at(days=29), order_id=oid(1), carrier_code="UPS", ship_date="2026-03-31",
            command_id="late-ship"))) + "\n")
    res = _cli("apply", str(late), "--db", db)
    assert res.returncode == 1
    assert "line 2: rejected [deadline-passed]" in res.stdout
    assert "1 applied" in res.stdout and "1 rejected" in res.stdout
    listed = _cli("conflicts", "--db", db, "--json")
    assert listed.returncode == 0
    [row] = [json.loads(x) for x in listed.stdout.splitlines()]
    assert row["command_id"] == "late-ship" and row["deadline"] == "LedgerCanceled"
    table = _cli("conflicts", "--db", db)
    assert oid(1) in table.stdout and "LedgerCanceled" in table.stdout
    # the late order got its overdue deadlines: hold, then the day-21 cancel
    shown = json.loads(_cli("show", oid(2), "--db", db, "--json").stdout)
    assert shown["status"] == "Canceled"


def test_cli_advance_clock_is_the_single_stream_mode(tmp_path, db_url):
    db = db_url
    f = tmp_path / "s.jsonl"
    f.write_text("\n".join(json.dumps(c) for c in (place(oid(1), at(0)), place(oid(2), at(60)),
                                                   place(oid(3), at(30)))) + "\n")
    res = _cli("apply", str(f), "--db", db, "--advance-clock", "--json")
    outs = [json.loads(x) for x in res.stdout.splitlines()]
    assert [o["status"] for o in outs] == ["applied", "applied", "rejected"]
    assert outs[2]["error"]["code"] == "time-backwards"
    db2 = str(tmp_path / "l2.db")  # the same file, default mode, on a new ledger
    res = _cli("apply", str(f), "--db", db2, "--json")
    assert [json.loads(x)["status"] for x in res.stdout.splitlines()] == ["applied"] * 3


# --- what did we know then: --known-at with --as-of --------------------------------------------

REC1 = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)
REC2 = datetime(2026, 6, 2, 12, 0, tzinfo=timezone.utc)


def _late_cancel_ledger(db: str) -> None:
    """Order 1 placed and released on day 0; recorded on REC1. A seller cancel dated
    day 1 reaches the ledger only on REC2 (a late fact)."""
    clock = FixedClock(REC1)
    with Ledger(db, clock=clock) as led:
        outs = _apply(led, *released(oid(1)), *released(oid(2), when_minutes=60),
                      cmd("tick", at(days=1)))
        assert all(o.ok for o in outs)
        clock.set(REC2)
        late = led.execute(cmd("cancel", at(days=1, minutes=-60), order_id=oid(1), by="seller",
                               reason="NoInventory"))
        assert late.status == "applied", late.error


def test_known_at_and_as_of_combine_on_show_orders_metrics_and_reports(db_url, tmp_path):
    _late_cancel_ledger(db_url)
    t = at(days=2)  # as of day 2: the cancel (day 1) had happened...
    then = (REC1 + timedelta(hours=1)).isoformat()  # ...but on REC1 we did not know it yet

    def cli_json(*args):
        r = _cli(*args, "--db", db_url, "--json")
        assert r.returncode == 0, r.stderr
        return r.stdout

    now_view = json.loads(cli_json("show", oid(1), "--as-of", t))
    then_view = json.loads(cli_json("show", oid(1), "--as-of", t, "--known-at", then))
    assert (now_view["status"], then_view["status"]) == ("Canceled", "Unshipped")

    def statuses(*extra):
        return {r["order_id"]: r["status"] for r in
                json.loads(cli_json("orders", "--as-of", t, *extra))}
    assert statuses()[oid(1)] == "Canceled"
    assert statuses("--known-at", then)[oid(1)] == "Unshipped"

    def cancel_rate(*extra):
        m = json.loads(cli_json("metrics", "--as-of", t, *extra))
        return m["cancellation_rate"]["numerator"], m["cancellation_rate"]["denominator"]
    assert cancel_rate() == (1, 2)  # the late cancel counts as of day 2, known now
    assert cancel_rate("--known-at", then) == (0, 2)  # not as known then

    def unshipped(*extra):
        r = _cli("report", "unshipped", "--as-of", t, *extra, "--db", db_url)
        assert r.returncode == 0, r.stderr
        return r.stdout
    assert oid(1) not in unshipped() and oid(2) in unshipped()
    assert oid(1) in unshipped("--known-at", then)

    # known-at alone: the log as recorded by then
    before = json.loads(cli_json("show", oid(1), "--known-at", then))
    assert before["status"] == "Unshipped"
    assert _cli("show", oid(1), "--db", db_url, "--known-at",
                (REC1 - timedelta(days=1)).isoformat()).returncode == 1  # nothing known yet


# --- repeated Orders API polls ------------------------------------------------------------------


def test_repeated_polls_move_orders_forward_and_write_only_what_changed(db_url, tmp_path):
    """Poll 1: A Pending, B Unshipped. A tick. Poll 2: A (older) is now Unshipped, B
    Shipped, C new. Poll 2 again: nothing written. Through the CLI, on both backends."""
    import copy

    from test_spapi import api_item, api_order, response

    items = [api_item("40000000000011", "MUG-1", 1, 0, "10.00")]
    a1 = api_order(1, "Pending", "2026-02-10T08:00:00Z", "2026-02-10T08:00:00Z", items)
    b1 = api_order(2, "Unshipped", "2026-02-10T09:00:00Z", "2026-02-10T09:31:00Z",
                   copy.deepcopy(items))
    poll1 = tmp_path / "poll1.json"
    poll1.write_text(json.dumps(response(a1, b1)))
    a2 = copy.deepcopy(a1)
    a2.update(OrderStatus="Unshipped", LastUpdateDate="2026-02-10T08:40:00Z")
    b2 = copy.deepcopy(b1)
    b2.update(OrderStatus="Shipped", LastUpdateDate="2026-02-11T10:00:00Z")
    b2["OrderItems"][0]["QuantityShipped"] = 1
    c2 = api_order(3, "Unshipped", "2026-02-11T07:00:00Z", "2026-02-11T07:31:00Z",
                   copy.deepcopy(items))
    poll2 = tmp_path / "poll2.json"
    poll2.write_text(json.dumps(response(a2, b2, c2)))

    def status(n):
        r = _cli("show", f"203-{n:07d}-1234567", "--db", db_url, "--json")
        return json.loads(r.stdout)["status"]

    def head():
        with Ledger(db_url) as led:
            return led.head()

    first = _cli("import", "sp-api", str(poll1), "--db", db_url)
    assert first.returncode == 0, first.stdout + first.stderr
    assert (status(1), status(2)) == ("Pending", "Unshipped")
    assert _cli("tick", "--db", db_url, "--now", "2026-02-11T12:00:00+00:00").returncode == 0
    second = _cli("import", "sp-api", str(poll2), "--db", db_url)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "time-backwards" not in second.stdout
    assert (status(1), status(2), status(3)) == ("Unshipped", "Shipped", "Unshipped")
    written = head()
    again = _cli("import", "sp-api", str(poll2), "--db", db_url)
    assert again.returncode == 0 and head() == written  # idempotent
    with Ledger(db_url) as led:
        assert check_ledger(led).ok


def test_known_at_on_history_notifications_audit_and_diff(sqlite_url):
    _late_cancel_ledger(sqlite_url)
    then = (REC1 + timedelta(hours=1)).isoformat()

    def run(*args):
        r = _cli(*args, "--db", sqlite_url)
        assert r.returncode in (0, 1), r.stderr
        return r

    steps = json.loads(run("history", oid(1), "--json").stdout)
    assert [s["type"] for s in steps][-1] == "SellerCanceled"
    assert steps[-1]["recorded_at"] == REC2.isoformat()  # both times of every event
    assert steps[-1]["at"] == at(days=1, minutes=-60)
    assert f"recorded {REC2.isoformat()}" in run("history", oid(1)).stdout
    known = json.loads(run("history", oid(1), "--json", "--known-at", then).stdout)
    assert [s["type"] for s in known][-1] != "SellerCanceled"
    as_of = json.loads(run("history", oid(1), "--json", "--as-of", at(30)).stdout)
    assert [s["type"] for s in as_of] == ["OrderPlaced", "PaymentVerified", "HoldExpired"]

    def kinds(*extra):
        return [n["kind"] for n in json.loads(run("notifications", "--json", *extra).stdout)
                if n["order_id"] == oid(1)]
    assert "cancellation" in kinds() and "cancellation" not in kinds("--known-at", then)

    def audited(*extra):
        return [r["type"] for r in json.loads(run("audit", "--order", oid(1), "--json",
                                                  *extra).stdout)]
    assert audited()[-1] == "SellerCanceled"
    assert "SellerCanceled" not in audited("--known-at", then)
    rows = json.loads(run("audit", "--order", oid(1), "--json").stdout)
    assert rows[-1]["recorded_at"] == REC2.isoformat()

    same = run("diff", "--known-at", then, "--other-known-at", then)
    assert same.returncode == 0
    differ = run("diff", "--known-at", then)  # as known then against now
    assert differ.returncode == 1 and oid(1) in differ.stdout


def test_cli_a_feed_then_older_orders_and_facts_from_the_future(tmp_path, db_url):
    """A shipping-confirmation feed applied at 10:00, then orders placed at 09:59 (the
    first version rejected every one); a line dated 2030 and a tick in 2030 refused."""
    first = tmp_path / "first.jsonl"
    first.write_text("".join(json.dumps(c) + "\n" for c in released(oid(1))))
    assert _cli("apply", str(first), "--db", db_url, "-q").returncode == 0
    feed = tmp_path / "ship.txt"
    feed.write_text("order-id\torder-item-id\tquantity\tship-date\tcarrier-code\t"
                    "tracking-number\n"
                    f"{oid(1)}\t10000000000001\t1\t2026-03-02\tUPS\t1Z1\n", encoding="utf-8")
    shipped = _cli("feed", "shipping-confirmation", str(feed), "--db", db_url,
                   "--now", at(60))
    assert shipped.returncode == 0, shipped.stdout + shipped.stderr
    older = tmp_path / "older.jsonl"
    older.write_text("".join(json.dumps(c) + "\n" for c in (
        place(oid(2), at(59)), place(oid(3), at(59, days=0)),
        cmd("verify-payment", at(59.5), order_id=oid(2), outcome="verified"))))
    res = _cli("apply", str(older), "--db", db_url, "--json")
    assert [json.loads(x)["status"] for x in res.stdout.splitlines()] == ["applied"] * 3
    future = tmp_path / "future.jsonl"
    future.write_text(json.dumps(place(oid(4), "2030-01-01T00:00:00+00:00")) + "\n")
    res = _cli("apply", str(future), "--db", db_url, "--json")
    assert res.returncode == 1 and json.loads(res.stdout)["error"]["code"] == "time-future"
    tick = _cli("tick", "--db", db_url, "--now", "2030-01-01T00:00:00+00:00", "--yes")
    assert tick.returncode == 1 and "[time-future]" in tick.stderr
    with Ledger(db_url) as led:
        assert led.order(oid(4)) is None and led.now().isoformat() == at(30)
        assert check_ledger(led).ok


def test_bisect_searches_what_was_known_then(sqlite_url):
    _late_cancel_ledger(sqlite_url)
    then = (REC1 + timedelta(hours=1)).isoformat()
    found = _cli("bisect", "--order", oid(1), "--until-status", "Canceled", "--db", sqlite_url,
                 "--json")
    assert found.returncode == 0 and json.loads(found.stdout)["event"]["type"] == "SellerCanceled"
    known = _cli("bisect", "--order", oid(1), "--until-status", "Canceled", "--db", sqlite_url,
                 "--json", "--known-at", then)
    assert known.returncode == 1  # as known then, the order never became Canceled
    metrics = _cli("bisect", "--expect", "metrics.cancellation_rate.numerator == 0",
                   "--at", at(days=2), "--db", sqlite_url, "--json", "--known-at", then)
    assert metrics.returncode == 1, metrics.stdout + metrics.stderr  # held throughout, then
    later = _cli("bisect", "--expect", "metrics.cancellation_rate.numerator == 0",
                 "--at", at(days=2), "--db", sqlite_url, "--json")
    assert later.returncode == 0 and json.loads(later.stdout)["event"]["type"] == "SellerCanceled"
