"""The examples: the walkthrough applies cleanly through the command line, the
typical mistakes are each rejected, and the files match their generator."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from datetime import datetime
import sys
from pathlib import Path

import msgspec
import pytest

from ledger.application import Ledger

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
WALKTHROUGH = EXAMPLES / "walkthrough.jsonl"
REJECTIONS = EXAMPLES / "rejections.jsonl"


def _generator():
    spec = importlib.util.spec_from_file_location("make_walkthrough",
                                                  EXAMPLES / "make_walkthrough.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GEN = _generator()
oid = GEN.oid


def cli(*args: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("order-ledger")
    prog = [str(exe)] if exe.exists() else ["order-ledger"]
    return subprocess.run([*prog, *args], capture_output=True, text=True, timeout=300)


def show(n: int, db: str) -> dict:
    res = cli("show", oid(n), "--db", db, "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_files_match_their_generator():
    lines = WALKTHROUGH.read_text(encoding="utf-8").splitlines()
    assert lines == [json.dumps(c, ensure_ascii=False) for c in GEN.build()]
    assert REJECTIONS.read_text(encoding="utf-8").splitlines() == [
        line for line, _ in GEN.rejections()]


def test_walkthrough_is_realistic_and_in_time_order():
    cmds = [json.loads(x) for x in WALKTHROUGH.read_text(encoding="utf-8").splitlines()]
    ids = [c["command_id"] for c in cmds]
    assert ids == [f"wt-{n:04d}" for n in range(1, len(cmds) + 1)]
    places = [c for c in cmds if c["type"] == "place"]
    assert 30 <= len(places) <= 50
    assert {c["currency"] for c in places} == {"SEK"}
    assert any(len(c["items"]) > 1 for c in places)
    assert cmds[0]["at"].startswith("2026-03-02") and cmds[-1]["at"].startswith("2026-04-20")
    from datetime import datetime
    times = [datetime.fromisoformat(c["at"]) for c in cmds]
    assert times == sorted(times)
    kinds = {c["type"] for c in cmds}
    assert kinds == {"set-inventory", "place", "cancel", "request-cancel", "verify-payment",
                     "ship", "adjust", "send-message", "receive-message", "change-address",
                     "tick"}


def test_walkthrough_then_rejections_through_the_cli(db_url):
    res = cli("apply", str(WALKTHROUGH), "--db", db_url, "--json")
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr
    outs = [json.loads(x) for x in res.stdout.splitlines()]
    assert len(outs) == 200
    assert [o["status"] for o in outs] == ["applied"] * 200
    with Ledger(db_url) as led:
        head = led.head()
        events = list(led.iter_events())
    assert head == sum(len(o["events"]) for o in outs) == 247

    expected = [code for _, code in GEN.rejections()]
    late_tick = expected.index("time-backwards")
    # Without --advance-clock a tick behind the ledger's clock (the watermark the
    # walkthrough's ticks moved to 2026-04-20) is accepted and changes nothing; every
    # other line is rejected as listed.
    res = cli("apply", str(REJECTIONS), "--db", db_url, "--json")
    assert res.returncode == 1
    outs = [json.loads(x) for x in res.stdout.splitlines()]
    assert [o["status"] for o in outs] == [
        "applied" if n == late_tick else "rejected" for n in range(len(expected))]
    assert outs[late_tick]["events"] == []
    assert [o["error"]["code"] for n, o in enumerate(outs) if n != late_tick] == [
        code for n, code in enumerate(expected) if n != late_tick]
    with Ledger(db_url) as led:
        assert led.head() == head and list(led.iter_events()) == events

    # --advance-clock: the file as one time-sorted stream after the walkthrough, so
    # the late tick is rejected time-backwards too (the rejected lines move no clock)
    res = cli("apply", str(REJECTIONS), "--db", db_url, "--json", "--advance-clock")
    assert res.returncode == 1
    outs = [json.loads(x) for x in res.stdout.splitlines()]
    assert [o["status"] for o in outs] == ["rejected"] * len(expected)
    assert [o["error"]["code"] for o in outs] == expected
    assert all(o["error"]["message"] for o in outs)
    assert all(o["error"].get("hint") or o["error"].get("field") for o in outs)
    message = outs[-1]["error"]
    assert {"language-mismatch", "insecure-link", "emoji", "marketing"} <= {
        v["rule"] for v in message["violations"]}
    with Ledger(db_url) as led:
        assert led.head() == head and list(led.iter_events()) == events

    # states an operator would check: a few through `show --json`, the rest read directly
    v = show(7, db_url)
    assert v["status"] == "Unshipped" and v["actionable"] is True
    v = show(5, db_url)  # released two days late: the promise moved with it
    assert v["status"] == "Shipped"
    assert v["payments_date"] == "2026-03-05T11:00:00+01:00"
    assert v["latest_ship_date"] == "2026-03-07T10:30:00+01:00"
    v = show(23, db_url)  # mugs shipped, the rest canceled by the day-30 rule
    assert (v["status"], v["cancel_reason"]) == ("Shipped", "ShipmentNotConfirmed")
    assert [(i["quantity_shipped"], i["quantity_canceled"]) for i in v["items"]] == [(2, 0), (0, 2)]
    with Ledger(db_url) as led:
        views = {n: led.order(oid(n)).view() for n in range(1, 45)}
        stock = {s: led.inventory(s).available for s in GEN.STOCK}
        assert led.order(oid(26)).ship_to.address_1 == "Sveavägen 44"
    # `show --json` prints the view, and both times of the order's latest event
    updated, recorded = v.pop("updated_at"), v.pop("recorded_at")
    assert json.loads(json.dumps(views[23])) == v
    assert updated == "2026-04-13T10:00:00+01:00"
    assert datetime.fromisoformat(recorded) > datetime.fromisoformat(updated)  # learned later
    assert views[3]["canceled_by"] == "buyer"
    assert views[6]["cancel_reason"] == "PaymentNotVerified"
    assert views[8]["cancel_reason"] == "declined"
    assert views[9]["cancel_reason"] == "fraud"
    assert [views[n]["cancel_reason"] for n in range(11, 17)] == [
        "NoInventory", "PricingError", "ShippingAddressUndeliverable", "BuyerCanceled",
        "GeneralAdjustment", "CustomerExchange"]
    assert (views[22]["status"], views[22]["cancel_reason"]) == ("Canceled", "ShipmentNotConfirmed")
    assert [(i["quantity_shipped"], i["quantity_canceled"]) for i in views[24]["items"]] == [
        (1, 0), (0, 1)]
    assert views[41]["buyer_requested_cancel"] is True
    assert views[42]["status"] == "PartiallyShipped"
    assert views[43]["payment"] == "extended"
    assert views[44]["next_deadline"]["kind"] == "hold-expiry"
    counts = {}
    for view in views.values():
        counts[view["status"]] = counts.get(view["status"], 0) + 1
    assert counts == {"Shipped": 27, "Canceled": 12, "Unshipped": 2, "PartiallyShipped": 1,
                      "Pending": 2}
    assert stock == {"MUGG-BLA": 5, "TEKANNA-GJ": 1, "FAT-EK": 3, "LJUS-3P": 27}


def test_human_output_and_reapplying(sqlite_url):
    res = cli("apply", str(WALKTHROUGH), "--db", sqlite_url)
    assert res.returncode == 0
    assert res.stdout.strip() == ("200 lines: 200 applied, 0 already applied (duplicate "
                                  "command_id), 0 rejected; 247 events written")
    res = cli("apply", str(WALKTHROUGH), "--db", sqlite_url)
    assert res.returncode == 0
    assert "200 already applied" in res.stdout and "0 events written" in res.stdout

    # as one time-sorted stream after the walkthrough, so that its late tick (line 8) is
    # rejected time-backwards (without the flag it is accepted and changes nothing)
    res = cli("apply", str(REJECTIONS), "--db", sqlite_url, "--advance-clock")
    assert res.returncode == 1
    out = res.stdout.splitlines()
    expected = [code for _, code in GEN.rejections()]
    for n, code in enumerate(expected, 1):
        assert out[n - 1].startswith(f"line {n}: rejected [{code}] "), out[n - 1]
    assert out[len(expected)] == (f"{len(expected)} lines: 0 applied, 0 already applied "
                                  f"(duplicate command_id), {len(expected)} rejected; "
                                  "0 events written")

    text = cli("show", oid(21), "--db", sqlite_url)
    assert text.returncode == 0 and "Shipped" in text.stdout
    res = cli("show", "203-9999999-9999999", "--db", sqlite_url)
    assert res.returncode == 1 and "no order" in res.stderr


def test_readme_tour_continues_with_order_7(sqlite_url):
    assert cli("apply", str(WALKTHROUGH), "--db", sqlite_url).returncode == 0
    res = cli("tick", "--now", "2026-05-01T00:00:00+02:00", "--db", sqlite_url, "--json")
    assert res.returncode == 0 and "ShipByWarningIssued" in json.loads(res.stdout)["events"]
    assert show(7, sqlite_url)["warning"] == ("Confirm as shipped by 2026-05-06 to avoid "
                                              "cancellation")
    res = cli("cancel", oid(7), "--reason", "NoInventory", "--now", "2026-05-01T00:00:00+02:00",
              "--db", sqlite_url)
    assert res.returncode == 0
    assert show(7, sqlite_url)["status"] == "Canceled"


@pytest.mark.parametrize("batch", ["1", "37"])
def test_batch_size_gives_the_same_ledger(tmp_path, batch):
    a, b = str(tmp_path / "a.db"), str(tmp_path / "b.db")
    assert cli("apply", str(WALKTHROUGH), "--db", a).returncode == 0
    assert cli("apply", str(WALKTHROUGH), "--db", b, "--batch-size", batch).returncode == 0
    # the CLI records on the wall clock: compare the events without their recorded_at
    def events(db: str) -> list:
        with Ledger(db) as led:
            return [(p, agg, msgspec.structs.replace(e, recorded_at=None))
                    for p, agg, e in led.iter_events()]

    assert events(a) == events(b)
