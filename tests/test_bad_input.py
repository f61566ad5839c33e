"""Bad input: every malformed or wrong line gets a clear error (a stable code,
a message saying what is wrong, a hint or field saying what to fix) and
leaves the event store exactly as it was. Through the Python API on both
backends and through the ``order-ledger apply`` command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from builders import oid
from ledger.application import Ledger
from test_rules_support import cmd, item, lines, ok, place, released, ship, snapshot, t

O = oid(1)
OK_TICK = json.dumps(cmd("tick", t(hours=2)))


def _place(**changes) -> dict:
    c = place(oid(2), t(hours=2))
    c.update(changes)
    return c


def _line(c: dict) -> str:
    return json.dumps(c)


# (id, line, code, field or None, words that must appear in message + hint)
CASES = [
    ("truncated json", '{"type": "tick", "at": ', "malformed-json", None,
     ["not valid JSON", "one JSON object per line"]),
    ("not json at all", "tick at noon", "malformed-json", None, ["not valid JSON"]),
    ("trailing comma", '{"type": "tick", "at": "2026-03-02T11:00:00+01:00",}', "malformed-json",
     None, ["not valid JSON"]),
    ("single quotes", "{'type': 'tick'}", "malformed-json", None, ["not valid JSON"]),
    ("unknown type", _line(cmd("shipp", t(hours=2), order_id=O)), "unknown-type", "type",
     ["shipp", "ship", "place", "set-inventory"]),
    ("unknown field", _line(cmd("tick", t(hours=2), time="now")), "unknown-field", None,
     ["time", "spelling"]),
    ("unknown nested field", _line(_place(items=[item(colour="red")])), "unknown-field",
     "items[0].colour", ["colour", "remove the field"]),
    ("misspelled field", _line(cmd("cancel", t(hours=2), order_id=O, by="seller",
                                   reason="NoInventory", reson="x")), "unknown-field", None,
     ["reson"]),
    ("missing field", _line(cmd("ship", t(hours=2), order_id=O, ship_date="2026-03-02")),
     "missing-field", None, ["carrier_code", "add the field"]),
    ("missing at", json.dumps({"type": "tick"}), "missing-field", None, ["`at`"]),
    ("missing type", json.dumps({"at": t(hours=2)}), "missing-field", None, ["`type`"]),
    ("missing nested field", _line(_place(items=[{"order_item_id": "1", "sku": "S",
                                                 "title": "T", "quantity": 1}])),
     "missing-field", "items[0].item_price", ["item_price"]),
    ("order id format", _line(cmd("cancel", t(hours=2), order_id="203-12345-1", by="seller",
                                  reason="NoInventory")), "bad-order-id", "order_id",
     ["3-7-7", "203-1234567-7654321"]),
    ("order id without dashes", _line(_place(order_id="20312345671234567")), "bad-order-id",
     "order_id", ["203-1234567-7654321"]),
    ("zero quantity", _line(_place(items=[item(quantity=0)])), "invalid-field",
     "items[0].quantity", [">= 1"]),
    ("negative quantity", _line(_place(items=[item(quantity=-2)])), "invalid-field",
     "items[0].quantity", [">= 1"]),
    ("negative ship quantity", _line(ship(O, t(hours=2), [("10000000000001", -1)])),
     "invalid-field", "items[0].quantity", [">= 1"]),
    ("negative stock", _line(cmd("set-inventory", t(hours=2), sku="S", quantity=-1)),
     "invalid-field", "quantity", [">= 0"]),
    ("quantity as text", _line(_place(items=[item(quantity="2")])), "invalid-field",
     "items[0].quantity", ["an integer", '"2" (a string)']),
    ("fractional quantity", _line(_place(items=[item(quantity=1.5)])), "invalid-field",
     "items[0].quantity", ["int"]),
    ("negative price", _line(_place(items=[item(price="-10")])), "bad-amount",
     "items[0].item_price", ["-10", "negative"]),
    ("unknown order", _line(ship(oid(42), t(hours=2))), "unknown-order", "order_id",
     [oid(42), "place the order first"]),
    ("bad cancel reason", _line(cmd("cancel", t(hours=2), order_id=O, by="seller",
                                    reason="OutOfStock")), "bad-reason", "reason",
     ["OutOfStock", "NoInventory", "ShippingAddressUndeliverable"]),
    ("bad adjustment reason", _line(cmd("adjust", t(hours=2), order_id=O, items=[{
        "order_item_id": "10000000000001", "reason": "Oops", "item_price_adj": "1"}])),
     "bad-reason", "items[0].reason", ["Oops", "CustomerReturn"]),
    ("bad outcome", _line(cmd("verify-payment", t(hours=2), order_id=O, outcome="ok")),
     "invalid-field", "outcome", ["ok"]),
    ("time backwards", _line(cmd("tick", t(minutes=59))), "time-backwards", "at",
     [t(minutes=59), t(hours=1), "time order"]),
    ("naive timestamp", _line(cmd("tick", "2026-03-02T11:00:00")), "bad-time", "at",
     ["UTC offset", "+01:00"]),
    ("naive promise date", _line(_place(latest_ship_date="2026-03-05T12:00:00")), "bad-time",
     "latest_ship_date", ["offset"]),
    ("time that is not a time", _line(cmd("tick", "yesterday")), "invalid-field", "at",
     ["ISO-8601", "yesterday"]),
    ("json array", "[1, 2]", "bad-command", None, ["Expected `object`", '"type" field']),
    ("json number", "42", "bad-command", None, ["Expected `object`"]),
    ("json string", '"tick"', "bad-command", None, ["Expected `object`"]),
    ("json null", "null", "bad-command", None, ["Expected `object`"]),
    ("type not a string", json.dumps({"type": 7, "at": t(hours=2)}), "bad-command", "type",
     ['"type" field']),
    ("pending order shipped", _line(ship(oid(3), t(hours=2))), "order-pending", None,
     ["Pending", "non-actionable", "verified"]),
]


def _setup(ledger: Ledger) -> None:
    ok(ledger, *released(O), place(oid(3), t(minutes=40)), cmd("tick", t(hours=1)))


def test_each_bad_line_through_the_api(ledger):
    """One line at a time: the code, where, what and how to fix; nothing written."""
    _setup(ledger)
    before = snapshot(ledger)
    for name, line, code, field, words in CASES:
        outs = list(ledger.apply_lines([line]))
        assert len(outs) == 1, name
        out = outs[0]
        assert out.status == "rejected" and out.line == 1 and out.events == [], name
        err = out.error
        assert err["code"] == code, (name, err)
        if field is not None:
            assert err.get("field") == field, (name, err)
        text = err["message"] + " " + err.get("hint", "") + " " + err.get("field", "")
        for word in words:
            assert word in text, (name, word, err)
        assert snapshot(ledger) == before, name
    # the ledger goes on normally after the bad lines
    assert ledger.execute(OK_TICK).status == "applied"


def test_bad_lines_mixed_with_good_ones_in_one_batch(ledger):
    _setup(ledger)
    before = snapshot(ledger)
    bad = [c[1] for c in CASES]
    outs = list(ledger.apply_lines(bad))
    assert [o.status for o in outs] == ["rejected"] * len(bad)
    assert [o.error["code"] for o in outs] == [c[2] for c in CASES]
    assert [o.line for o in outs] == list(range(1, len(bad) + 1))
    assert snapshot(ledger) == before


def test_blank_lines_are_skipped_and_keep_line_numbers(ledger):
    outs = list(ledger.apply_lines(["", "   ", "\t", _line(place(O, t())), "", OK_TICK]))
    assert [(o.line, o.status) for o in outs] == [(4, "applied"), (6, "applied")]


def test_windows_line_endings_and_bytes_are_accepted(ledger):
    outs = list(ledger.apply_lines([(_line(place(O, t())) + "\r\n").encode()]))
    assert outs[0].status == "applied"


def test_bytes_that_are_not_utf8_are_a_clear_rejection(ledger):
    _setup(ledger)
    before = snapshot(ledger)
    line = b'{"type": "tick", "at": "2026-03-02T11:00:00+01:00", "command_id": "x\xe9"}'
    out = list(ledger.apply_lines([line]))[0]
    assert out.status == "rejected" and out.error["code"] == "malformed-json"
    assert "UTF-8" in out.error["message"] and "UTF-8" in out.error["hint"]
    assert snapshot(ledger) == before


def test_execute_accepts_the_same_bad_input(ledger):
    _setup(ledger)
    before = snapshot(ledger)
    assert ledger.execute("{oops").error["code"] == "malformed-json"
    assert ledger.execute({"type": "nope", "at": t(hours=2)}).error["code"] == "unknown-type"
    assert snapshot(ledger) == before


# --- the command line -----------------------------------------------------------------------


def cli(*args: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("order-ledger")
    prog = [str(exe)] if exe.exists() else ["order-ledger"]
    return subprocess.run([*prog, *args], capture_output=True, text=True, timeout=120)


def write(path: Path, rows: list[str]) -> str:
    path.write_text("".join(r + "\n" for r in rows), encoding="utf-8")
    return str(path)


GOOD = lines(*released(O), place(oid(3), t(minutes=40)), cmd("tick", t(hours=1)))


def test_cli_json_reports_each_line_and_writes_nothing_for_rejected_ones(db_url, tmp_path):
    assert cli("apply", write(tmp_path / "good.jsonl", GOOD), "--db", db_url).returncode == 0
    with Ledger(db_url) as led:
        before = snapshot(led)
    rows = [c[1] for c in CASES]
    rows.insert(3, "")                                  # a blank line: skipped, still counted
    # one time-sorted stream, as the API tests' ledger: the "time backwards" tick (before
    # the clock's 1h) is rejected only with --advance-clock; by default it changes nothing
    res = cli("apply", write(tmp_path / "bad.jsonl", rows), "--db", db_url, "--json",
              "--advance-clock")
    assert res.returncode == 1, res.stderr
    outs = [json.loads(x) for x in res.stdout.splitlines()]
    assert len(outs) == len(CASES)
    assert [o["line"] for o in outs] == [1, 2, 3] + list(range(5, len(CASES) + 2))
    assert all(o["status"] == "rejected" and o["events"] == [] for o in outs)
    assert [o["error"]["code"] for o in outs] == [c[2] for c in CASES]
    with Ledger(db_url) as led:
        assert snapshot(led) == before


def test_cli_human_output_names_line_code_and_fix(sqlite_url, tmp_path):
    rows = [*GOOD, CASES[0][1], _line(cmd("cancel", t(hours=2), order_id=O, by="seller",
                                          reason="OutOfStock")),
            _line(cmd("tick", t(minutes=1)))]
    # one time-sorted stream: the last tick (before the clock) is rejected time-backwards
    res = cli("apply", write(tmp_path / "f.jsonl", rows), "--db", sqlite_url, "--advance-clock")
    assert res.returncode == 1
    out = res.stdout.splitlines()
    n = len(GOOD)
    assert out[0].startswith(f"line {n + 1}: rejected [malformed-json] the line is not valid JSON")
    assert "fix: write one JSON object per line" in out[0]
    assert out[1].startswith(f"line {n + 2}: rejected [bad-reason] unknown cancel reason 'OutOfStock'")
    assert "(field: reason)" in out[1] and "fix: use one of: NoInventory" in out[1]
    assert out[2].startswith(f"line {n + 3}: rejected [time-backwards]")
    assert "--advance-clock" in out[2]  # the fix names the flag that makes it time-backwards
    assert out[3].startswith(f"{n + 3} lines: {n} applied, 0 already applied")
    assert out[3].endswith("3 rejected; 4 events written")


def test_cli_quiet_prints_only_the_summary(sqlite_url, tmp_path):
    res = cli("apply", write(tmp_path / "f.jsonl", ["{oops", *GOOD]), "--db", sqlite_url, "-q")
    assert res.returncode == 1
    assert res.stdout.splitlines() == [f"{len(GOOD) + 1} lines: {len(GOOD)} applied, "
                                       "0 already applied (duplicate command_id), 1 rejected; "
                                       "4 events written"]


def test_cli_exit_0_when_everything_applied_duplicates_included(sqlite_url, tmp_path):
    rows = [_line(dict(c, command_id=f"g-{n}")) for n, c in enumerate(map(json.loads, GOOD))]
    f = write(tmp_path / "f.jsonl", rows)
    assert cli("apply", f, "--db", sqlite_url).returncode == 0
    res = cli("apply", f, "--db", sqlite_url)
    assert res.returncode == 0
    assert f"{len(rows)} already applied" in res.stdout and "0 events written" in res.stdout


def test_cli_reads_standard_input(sqlite_url):
    exe = Path(sys.executable).with_name("order-ledger")
    prog = [str(exe)] if exe.exists() else ["order-ledger"]
    res = subprocess.run([*prog, "apply", "-", "--db", sqlite_url, "--json"],
                         input="\n".join(GOOD + ["[]"]) + "\n", capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 1
    last = json.loads(res.stdout.splitlines()[-1])
    assert last["error"]["code"] == "bad-command"


def test_cli_missing_file_is_a_usage_error(sqlite_url, tmp_path):
    res = cli("apply", str(tmp_path / "nope.jsonl"), "--db", sqlite_url)
    assert res.returncode == 2
    assert "No such file" in res.stderr and "nope.jsonl" in res.stderr


@pytest.mark.parametrize("args,words", [
    (["--batch-size", "0"], "--batch-size"),
    (["--no-such-option"], "No such option"),
])
def test_cli_bad_option_is_a_usage_error(sqlite_url, tmp_path, args, words):
    f = write(tmp_path / "f.jsonl", GOOD)
    res = cli("apply", f, "--db", sqlite_url, *args)
    assert res.returncode == 2 and words in res.stderr
    assert not Path(sqlite_url).exists() or Ledger(sqlite_url).head() == 0


def test_cli_unusable_db_is_a_usage_error(tmp_path):
    f = write(tmp_path / "f.jsonl", GOOD)
    res = cli("apply", f, "--db", str(tmp_path / "missing-dir" / "x.db"))
    assert res.returncode == 2 and "does not exist" in res.stderr


def test_a_byte_order_mark_before_the_first_command_is_ignored(tmp_path):
    import subprocess

    path = tmp_path / "bom.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"type":"tick","at":"2026-01-01T00:00:00Z"}\n')
    proc = subprocess.run(["order-ledger", "apply", str(path), "--db", str(tmp_path / "l.db")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 applied" in proc.stdout
