"""Issue 7.6: hostile input ends in a clear rejection or a correct result.

Never a traceback, never a changed store for rejected input (head, events,
accepted command ids and clock compared before and after). Parsers fuzzed:
``ledger.commands.parse_command`` and ``Ledger.apply_lines`` (hypothesis and a
list of known-nasty lines), the messaging checker, the feed readers and the
Orders API import; and the command line with paths into missing directories.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import tempfile
import time
from datetime import datetime, timezone

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from builders import at, cmd, item, oid, place
from crash_harness import CLI, ROOT, slow_gate  # noqa: F401 - autouse fixture
from ledger.application import Ledger
from ledger.check import check_ledger, read_commands
from ledger.commands import MAX_LINE_BYTES, Command, parse_command
from ledger.errors import CommandRejected
from ledger.messaging import check_message
from order_ledger.cli import main

FUZZ = settings(max_examples=int(os.environ.get("ORDER_LEDGER_FUZZ_EXAMPLES", "150")),
                deadline=None, suppress_health_check=list(HealthCheck))


def store_state(led: Ledger) -> tuple:
    """What a rejected line must not change."""
    return (led.head(), [(p, a, type(e).__name__) for p, a, e in led.iter_events()],
            sorted(read_commands(led)), led.now())


def ledger_with_an_order(path: str) -> Ledger:
    led = Ledger(path)
    o = oid(1)
    lines = [cmd("set-inventory", at(0), sku="SKU-1", quantity=100, command_id="inv"),
             place(o, at(1), [item(sku="SKU-1", quantity=2)], command_id="p1"),
             cmd("verify-payment", at(2), order_id=o, outcome="verified", command_id="v1"),
             cmd("tick", at(40), command_id="t1")]
    assert {x.status for x in led.apply_lines([json.dumps(c) for c in lines])} == {"applied"}
    return led


# --- known-nasty lines ---------------------------------------------------------------------

BASE_PLACE = place(oid(7), at(60), [item(sku="SKU-1")])


def with_field(obj: dict, path: str, value) -> bytes:
    """``obj`` with ``path`` (dotted, [n] for list items) set to the raw JSON ``value``."""
    marker = "\u0000MARK\u0000"
    data = json.loads(json.dumps(obj))
    node = data
    parts = path.split(".")
    for part in parts[:-1]:
        node = node[int(part[1:-1])] if part.startswith("[") else node[part]
    last = parts[-1]
    if last.startswith("["):
        node[int(last[1:-1])] = marker
    else:
        node[last] = marker
    return json.dumps(data).replace(json.dumps(marker), value).encode("utf-8")


SQL = ["'; DROP TABLE stored_events; --", '" OR 1=1 --', "sku:%' --", "Robert'); DELETE "
       "FROM ledger_commands;--", "\\x00\\'\\\""]

NASTY: list[tuple[str, bytes, str | None]] = [
    # (name, line, expected rejection code or None for "applied correctly")
    ("invalid utf-8 in a string", b'{"type":"tick","at":"2026-03-02T10:00:00+01:00",'
                                   b'"actor":"\xff\xfe"}', "malformed-json"),
    ("invalid utf-8 alone", b"\xc3\x28\xa0\xa1", "malformed-json"),
    ("overlong utf-8", b'{"type":"tick","at":"2026-03-02T10:00:00+01:00","actor":"\xc0\xaf"}',
     "malformed-json"),
    ("deep arrays", b"[" * 10_000 + b"]" * 10_000, None),
    ("deep objects", b'{"a":' * 10_000 + b"1" + b"}" * 10_000, "malformed-json"),
    ("deep inside a field", b'{"type":"tick","at":"2026-03-02T10:00:00+01:00","actor":'
                            + b"[" * 10_000 + b"]" * 10_000 + b"}", "invalid-field"),
    ("bare NaN", with_field(BASE_PLACE, "items.[0].item_price", "NaN"), "malformed-json"),
    ("bare Infinity", with_field(BASE_PLACE, "items.[0].item_price", "Infinity"),
     "malformed-json"),
    ("NaN string", with_field(BASE_PLACE, "items.[0].item_price", '"NaN"'), "bad-amount"),
    ("sNaN string", with_field(BASE_PLACE, "items.[0].item_tax", '"sNaN"'), "bad-amount"),
    ("-Infinity string", with_field(BASE_PLACE, "items.[0].item_price", '"-Infinity"'),
     "bad-amount"),
    ("price 1e400", with_field(BASE_PLACE, "items.[0].item_price", "1e400"), "bad-amount"),
    ("price '1e400'", with_field(BASE_PLACE, "items.[0].item_price", '"1e400"'), "bad-amount"),
    ("price 1e-400", with_field(BASE_PLACE, "items.[0].item_price", '"1e-400"'), "bad-amount"),
    ("price 10**400", with_field(BASE_PLACE, "items.[0].item_price", "1" + "0" * 400),
     "bad-amount"),
    ("quantity 10**400", with_field(BASE_PLACE, "items.[0].quantity", "1" + "0" * 400),
     "invalid-field"),
    ("quantity 1e400", with_field(BASE_PLACE, "items.[0].quantity", "1e400"), "invalid-field"),
    ("quantity 1.5", with_field(BASE_PLACE, "items.[0].quantity", "1.5"), "invalid-field"),
    ("quantity -1", with_field(BASE_PLACE, "items.[0].quantity", "-1"), "invalid-field"),
    ("inventory 10**400", json.dumps(cmd("set-inventory", at(60), sku="X",
                                         quantity=10**400)).encode(), "invalid-field"),
    ("NUL in command id", json.dumps(cmd("tick", at(60), command_id="a\x00b")).encode(),
     "invalid-field"),
    ("NUL in sku", json.dumps(cmd("set-inventory", at(60), sku="A\x00B", quantity=1)).encode(),
     "invalid-field"),
    ("newline in sku", json.dumps(cmd("set-inventory", at(60), sku="A\nB", quantity=1)).encode(),
     "invalid-field"),
    ("escape in actor", json.dumps(cmd("tick", at(60), actor="\x1b[31mred")).encode(),
     "invalid-field"),
    ("empty command id", json.dumps(cmd("tick", at(60), command_id="")).encode(),
     "invalid-field"),
    ("10k command id", json.dumps(cmd("tick", at(60), command_id="x" * 10_000)).encode(),
     "invalid-field"),
    ("lone surrogate", b'{"type":"tick","at":"2026-03-02T10:00:00+01:00","actor":"\\ud800"}',
     "malformed-json"),
    ("year 9999", json.dumps(cmd("tick", "9999-12-31T23:59:59-23:59")).encode(), "bad-time"),
    ("year 1", json.dumps(cmd("tick", "0001-01-01T00:00:00+23:59")).encode(), "bad-time"),
    ("place at 9999-12-31", json.dumps(place(oid(8), "9999-12-31T23:00:00+00:00")).encode(),
     "bad-time"),
    ("place at 8999-12-31", json.dumps(place(oid(8), "8999-12-31T23:00:00+00:00")).encode(),
     None),  # the last accepted year: its deadlines (+30 days) still fit
    ("no offset", json.dumps(cmd("tick", "2026-03-02T10:00:00")).encode(), "bad-time"),
    ("duplicate keys", b'{"type":"tick","type":"place","at":"2026-03-02T10:00:00+01:00"}', None),
    ("top-level array", b"[1,2,3]", "bad-command"),
    ("null", b"null", "bad-command"),
    ("number", b"12", "bad-command"),
    ("empty object", b"{}", "missing-field"),
    ("unknown type", b'{"type":"DROP TABLE","at":"2026-03-02T10:00:00+01:00"}', "unknown-type"),
    ("truncated", b'{"type":"tick","at":"2026-03-02T', "malformed-json"),
    ("over the line limit", json.dumps(cmd("tick", at(60), actor="x" * MAX_LINE_BYTES)).encode(),
     "line-too-long"),
] + [
    (f"sql in an order id {n}", json.dumps(cmd("ship", at(60), order_id=s, carrier_code="DHL",
                                                ship_date="2026-03-02")).encode(),
     "bad-order-id") for n, s in enumerate(SQL)
]

ACCEPTED: list[tuple[str, dict]] = [
    (f"sql in a sku {n}", cmd("set-inventory", at(60), sku=s[:200], quantity=3))
    for n, s in enumerate(SQL) if "\x00" not in s
] + [
    (f"sql in a command id {n}", cmd("set-inventory", at(60), sku="Z", quantity=1,
                                     command_id=s))
    for n, s in enumerate(SQL)
] + [
    ("sql in a message body", cmd("receive-message", at(60), order_id=oid(1),
                                  body=" ".join(SQL), **{"from": "buyer"})),
    ("1 MB message body", cmd("receive-message", at(60), order_id=oid(1),
                              body="å" * 500_000, **{"from": "buyer"})),
    ("control characters in a body", cmd("receive-message", at(60), order_id=oid(1),
                                         body="a\x00b\x07c\x1b[0m\u202e\ufeff",
                                         **{"from": "buyer"})),
    ("emoji and rtl in a sku", cmd("set-inventory", at(60), sku="😀\u202eUKS", quantity=1)),
    ("price with 6 places", place(oid(9), at(60), [item(sku="SKU-1", price="12.345600")])),
]


@pytest.mark.parametrize("name,line,code", NASTY, ids=[n for n, _, _ in NASTY])
def test_nasty_line_is_rejected_and_changes_nothing(name, line, code, tmp_path):
    try:
        parsed = parse_command(line)
    except CommandRejected as exc:
        parsed = exc
    if code is None:  # decoded or rejected, never an exception
        assert isinstance(parsed, (Command, CommandRejected))
    else:
        assert isinstance(parsed, CommandRejected) and parsed.code == code, parsed
    with ledger_with_an_order(str(tmp_path / "l.db")) as led:
        before = store_state(led)
        outs = list(led.apply_lines([line]))
        assert len(outs) == 1
        if isinstance(parsed, CommandRejected):
            assert outs[0].status == "rejected" and outs[0].error["code"] == parsed.code
            assert store_state(led) == before
        assert check_ledger(led).ok


@pytest.mark.parametrize("name,command", ACCEPTED, ids=[n for n, _ in ACCEPTED])
def test_hostile_but_valid_values_are_stored_exactly(name, command, tmp_path, pg_url):
    for db in (str(tmp_path / "l.db"), pg_url):
        with ledger_with_an_order(db) as led:
            out = led.execute(command)
            assert out.status == "applied", out.error
            assert check_ledger(led).ok
            _, _, payload = led.read_events(led.head() - 1)[-1]
            for key in ("sku", "body"):
                if key in command:
                    assert getattr(payload, key) == command[key]
            if command.get("command_id"):
                assert led.execute(command).status == "duplicate"


# --- hypothesis ----------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-10**500, max_value=10**500)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20)
hostile_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60) | \
    st.sampled_from(SQL + ["", " ", "\x00", "\u202e", "9" * 400, "1e400", "NaN", "-0",
                           "2026-02-30T25:61:00+01:00", "203-0000001-7919"])
numbers = st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1e-400",
                           str(10**400), "-1", "0", "1.5", "1e2", "00012", "-0.0"]) | \
    st.integers(min_value=-10**30, max_value=10**30).map(str)

VALID = [
    cmd("set-inventory", at(60), sku="SKU-1", quantity=3),
    place(oid(5), at(60), [item(sku="SKU-1")]),
    cmd("ship", at(60), order_id=oid(1), carrier_code="DHL", ship_date="2026-03-02",
        items=[{"order_item_id": "10000000000001", "quantity": 1}]),
    cmd("adjust", at(60), order_id=oid(1), items=[{"order_item_id": "10000000000001",
                                                   "reason": "NoInventory",
                                                   "quantity_cancelled": 1,
                                                   "item_price_adj": "10.00"}]),
    cmd("send-message", at(60), order_id=oid(1), purpose="delivery-problem", language="sv-SE",
        body=f"Hej! Din order {oid(1)} är försenad."),
    cmd("receive-message", at(60), order_id=oid(1), body="hej", **{"from": "buyer"}),
    cmd("cancel", at(60), order_id=oid(1), by="seller", reason="NoInventory"),
    cmd("change-address", at(60), order_id=oid(1), ship_to={
        "name": "A", "address_1": "B", "city": "C", "postal_code": "1", "country": "SE"}),
]


def _paths(obj, prefix=""):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield f"{prefix}.{k}" if prefix else k
            yield from _paths(v, f"{prefix}.{k}" if prefix else k)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield f"{prefix}.[{i}]"
            yield from _paths(v, f"{prefix}.[{i}]")


MUTATIONS = [(i, p) for i, c in enumerate(VALID) for p in _paths(c)]


@FUZZ
@given(data=st.binary(max_size=300))
def test_parse_command_arbitrary_bytes(data):
    try:
        parse_command(data)
    except CommandRejected as exc:
        assert exc.code


@FUZZ
@given(value=json_values)
def test_parse_command_arbitrary_json(value):
    try:
        line = json.dumps(value)
    except (ValueError, OverflowError):
        return
    try:
        parse_command(line)
    except CommandRejected as exc:
        assert exc.code


_LEDGER_DIR = tempfile.mkdtemp(prefix="fuzz-ledger-")
atexit.register(shutil.rmtree, _LEDGER_DIR, True)


@FUZZ
@given(target=st.sampled_from(MUTATIONS),
       raw=json_values.map(json.dumps) | hostile_text.map(json.dumps) | numbers)
def test_mutated_commands_never_break_the_ledger(target, raw):
    """A valid command with one field replaced by anything: applied or rejected cleanly."""
    index, path = target
    line = with_field(VALID[index], path, raw)
    name = os.path.join(_LEDGER_DIR, f"l{os.getpid()}.db")
    if not os.path.exists(name):
        ledger_with_an_order(name).close()
    with Ledger(name) as led:
        before = store_state(led)
        outs = list(led.apply_lines([line]))
        assert len(outs) == 1
        if outs[0].status == "rejected":
            assert outs[0].error["code"]
            assert store_state(led) == before
    if outs[0].status == "applied":  # keep the order open for the next example
        os.remove(name)


@FUZZ
@given(body=st.text(max_size=400) | st.sampled_from(SQL), purpose=hostile_text,
       language=hostile_text, buyer_language=hostile_text,
       attachments=st.lists(st.tuples(hostile_text, hostile_text), max_size=3),
       phone=st.none() | hostile_text)
def test_check_message_never_raises(body, purpose, language, buyer_language, attachments, phone):
    out = check_message(order_id=oid(1), purpose=purpose, language=language, body=body,
                        attachments=[{"name": n, "kind": k} for n, k in attachments],
                        phone_reason=phone, buyer_language=buyer_language, completed_at=None,
                        now=datetime(2026, 3, 2, tzinfo=timezone.utc))
    assert isinstance(out, list)


def _check_seconds(body: str) -> float:
    started = time.monotonic()
    out = check_message(order_id=oid(1), purpose="delivery-problem", language="sv-SE",
                        body=body, buyer_language="sv-SE", completed_at=None,
                        now=datetime(2026, 3, 2, tzinfo=timezone.utc))
    assert isinstance(out, list)
    return time.monotonic() - started


@pytest.mark.parametrize("unit,n", [
    ("a", 20_000), ("![", 1_000), ("http://", 3_000),
    ("1", 300), ("@", 20_000), ("+46 70 ", 3_000),
    ("\x00", 20_000), (" ", 20_000), ("Hej ", 5_000),
], ids=["letters", "md-images", "urls", "digits", "at-signs", "phones", "nul", "spaces",
        "words"])
@pytest.mark.bench  # it measures time: opt-in with the benchmarks (pytest -m bench)
def test_check_message_time_grows_linearly(unit, n):
    """Four times the body, well under sixteen times the time: no regex rescans per position."""
    small = _check_seconds(unit * n)
    large = _check_seconds(unit * (4 * n))
    assert large < 0.1 or large < 8.0 * small, f"{small:.3f}s -> {large:.3f}s: quadratic"


@pytest.mark.slow
def test_check_message_on_a_1_mb_body():
    assert _check_seconds("Hej! Din order är försenad. " * 37_000) < 10


# --- feeds and the Orders API import ----------------------------------------------------------

feeds = pytest.importorskip("ledger.feeds")


@FUZZ
@given(data=st.binary(max_size=400), feed=st.sampled_from(sorted(feeds.FEEDS)))
def test_feed_reader_arbitrary_bytes(data, feed):
    try:
        lines = feeds.build_commands(feed, data, at=datetime(2026, 3, 2, tzinfo=timezone.utc),
                                     lookup=lambda order_id: None)
    except feeds.FeedError:
        return
    assert all(fl.command is not None or fl.status == "rejected" or fl.status == "duplicate"
               for fl in lines)


@FUZZ
@given(feed=st.sampled_from(sorted(feeds.FEEDS)),
       cells=st.lists(st.lists(hostile_text | numbers, min_size=1, max_size=9), max_size=4))
def test_feed_with_hostile_cells_changes_nothing_it_rejects(feed, cells):
    spec = feeds.FEEDS[feed]
    text = "\t".join(spec.columns) + "\n" + "\n".join(
        "\t".join(c.replace("\t", " ").replace("\n", " ").replace("\r", " ") for c in row)
        for row in cells) + "\n"
    name = os.path.join(_LEDGER_DIR, f"feed{os.getpid()}.db")
    if not os.path.exists(name):
        ledger_with_an_order(name).close()
    with Ledger(name) as led:
        before = store_state(led)
        report = feeds.process_feed(led, feed, text.encode("utf-8"),
                                    at=datetime(2026, 3, 3, tzinfo=timezone.utc))
        if not any(fl.status == "accepted" for fl in report.lines):
            assert store_state(led) == before
        else:
            os.remove(name)


spapi = pytest.importorskip("ledger.spapi")


@FUZZ
@given(data=st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()))
def test_orders_api_reader_arbitrary_input(data):
    for load in (spapi.load_orders, spapi.load_items):
        try:
            load(data)
        except (spapi.SpApiError, spapi.OrderProblem):
            pass


# --- the command line: files and directories that are not there ---------------------------


def test_paths_into_missing_directories(tmp_path):
    runner = CliRunner()
    db = str(tmp_path / "l.db")
    ledger_with_an_order(db).close()
    missing = str(tmp_path / "no" / "such" / "dir")
    cases = [
        ["apply", str(tmp_path / "nothing.jsonl"), "--db", db],
        ["apply", "-", "--db", os.path.join(missing, "l.db")],
        ["backup", os.path.join(missing, "b.db"), "--db", db],
        ["restore", db, "--db", os.path.join(missing, "l.db")],
        ["check", "--db", os.path.join(missing, "l.db")],
        ["show", oid(1), "--db", os.path.join(missing, "l.db")],
    ]
    names = {c.name for c in main.commands.values()}
    if "report" in names:
        cases.append(["report", "orders", "--out", os.path.join(missing, "r.tsv"), "--db", db])
        cases.append(["orders", "--db", db, "--views", os.path.join(missing, "v.db")])
    if "export" in names:
        cases.append(["export", "--out", os.path.join(missing, "b.jsonl"), "--db", db])
    for args in cases:
        r = runner.invoke(main, args, input="")
        assert r.exit_code == 2, (args, r.exit_code, r.output)
        assert r.exception is None or isinstance(r.exception, SystemExit), (args, r.exception)
        assert "Traceback" not in r.output
    assert not os.path.exists(os.path.join(tmp_path, "no"))


def test_hostile_command_file_through_the_cli(tmp_path):
    """The nasty lines in one file: exit 1, every line reported, no traceback, store intact."""
    db = str(tmp_path / "l.db")
    ledger_with_an_order(db).close()
    path = tmp_path / "nasty.jsonl"
    path.write_bytes(b"\n".join(line for _, line, code in NASTY if code) + b"\n")
    with Ledger(db) as led:
        before = store_state(led)
    r = subprocess.run(CLI + ["apply", "--json", str(path), "--db", db], cwd=str(ROOT),
                       capture_output=True, timeout=120)
    assert r.returncode == 1 and b"Traceback" not in r.stderr, r.stderr[-2000:]
    outs = [json.loads(x) for x in r.stdout.splitlines()]
    assert len(outs) == sum(1 for _, _, code in NASTY if code)
    assert all(o["status"] == "rejected" and o["error"]["code"] for o in outs)
    with Ledger(db) as led:
        assert store_state(led) == before


# --- coverage-guided fuzzing by hand: python tests/test_reliability_fuzz.py -runs=200000 ----


def _atheris_main(argv: list[str]) -> None:  # pragma: no cover - run by hand
    """libFuzzer via atheris over the command parser, the messaging checker and the feeds.

    ``python tests/test_reliability_fuzz.py -max_total_time=60`` (libFuzzer flags). Any
    exception other than the documented rejections is a crash and stops the run.
    """
    import atheris

    from ledger import commands as commands_module
    from ledger import feeds as feeds_module
    from ledger import messaging as messaging_module

    atheris.instrument_all()  # the modules are imported already: instrument them in place

    at_time = datetime(2026, 3, 2, tzinfo=timezone.utc)
    feed_names = sorted(feeds_module.FEEDS)

    def one(data: bytes) -> None:
        if not data:
            return
        kind, rest = data[0] % 3, data[1:]
        if kind == 0:
            try:
                commands_module.parse_command(rest)
            except CommandRejected:
                pass
        elif kind == 1:
            fdp = atheris.FuzzedDataProvider(rest)
            body = fdp.ConsumeUnicodeNoSurrogates(4096)
            messaging_module.check_message(
                order_id=oid(1), purpose=fdp.ConsumeUnicodeNoSurrogates(20),
                language=fdp.ConsumeUnicodeNoSurrogates(8), body=body,
                buyer_language="sv-SE", completed_at=None, now=at_time)
        else:
            try:
                feeds_module.build_commands(feed_names[len(rest) % len(feed_names)], rest,
                                            at=at_time, lookup=lambda order_id: None)
            except feeds_module.FeedError:
                pass

    atheris.Setup(argv, one)
    atheris.Fuzz()


if __name__ == "__main__":  # pragma: no cover
    import sys

    _atheris_main(sys.argv)
