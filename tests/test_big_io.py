"""Big inputs and outputs (issue 12, items 5, 6 and 8): whole-file errors, --check
before writing, sorted and paged lists, full-width piped tables, progress bars."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from builders import at, cmd, item, lines, oid, place, released
from click.testing import CliRunner

from ledger.application import Ledger, ledger_exists
from ledger.textfile import NotText, sniff, text_lines
from order_ledger.cli import main
from projections.read import Page, PageError

ROOT = Path(__file__).resolve().parents[1]
GOOD_LINE = '{"type":"tick","at":"2026-03-02T10:00:00+01:00","command_id":"t-1"}\n'


def cli(*args: str, input: bytes | None = None) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("order-ledger")
    prog = [str(exe)] if exe.exists() else ["order-ledger"]
    res = subprocess.run([*prog, *args], capture_output=True, input=input, timeout=120)
    res.stdout, res.stderr = res.stdout.decode(), res.stderr.decode()  # type: ignore[assignment]
    return res


def run(*args: str) -> object:
    return CliRunner().invoke(main, list(args))


def state(db: str) -> tuple:
    """What a write would change: head, clock, deadline rows, accepted command ids."""
    with Ledger(db) as led:
        rec = led.recorder
        commands = rec._rows(f"SELECT COUNT(*) FROM {rec.prefix}ledger_commands")[0][0]
        return led.head(), led.now(), rec.count_deadlines(), commands


# --- 5. whole-file errors ------------------------------------------------------------------


NOT_TEXT = [
    ("utf-16 with bom", (GOOD_LINE * 3).encode("utf-16"), "UTF-16"),
    ("utf-16-le no bom", (GOOD_LINE * 3).encode("utf-16-le"), "UTF-16"),
    ("utf-16-be no bom", (GOOD_LINE * 3).encode("utf-16-be"), "UTF-16"),
    ("utf-32 with bom", (GOOD_LINE * 3).encode("utf-32"), "UTF-32"),
    ("utf-32-be no bom", (GOOD_LINE * 3).encode("utf-32-be"), "UTF-32"),
    ("binary with nuls", bytes(range(256)) * 8, "binary"),
    ("binary without nuls", bytes(range(1, 256)) * 8, "binary"),
    ("gzip", b"\x1f\x8b\x08\x00" + b"\x00" * 20, "gzip"),
    ("latin-1", ('{"title":"caf\u00e9"}\n' * 5).encode("latin-1"), "Latin-1"),
]


@pytest.mark.parametrize("name,data,words", NOT_TEXT, ids=[n for n, _, _ in NOT_TEXT])
def test_sniff_names_what_a_non_text_file_looks_like(name, data, words):
    problem = sniff(data, complete=True)
    assert isinstance(problem, NotText), name
    assert words in str(problem) and "UTF-8" in str(problem)


@pytest.mark.parametrize("data", [
    GOOD_LINE.encode() * 3,
    b"\xef\xbb\xbf" + GOOD_LINE.encode(),                              # a UTF-8 BOM is fine
    b'{"type":"tick","at":"x\xe9"}\n' + GOOD_LINE.encode() * 3,       # one bad line
    b'{"type": "tick", "at": "2026-03-02T11:00:00+01:00", "command_id": "x\xe9"}',
    "{\"body\":\"\u00e5\u00e4\u00f6 \u2603\"}\n".encode() * 2,
    b"",
], ids=["utf-8", "utf-8 bom", "one bad line", "a single bad line", "non-ascii", "empty"])
def test_sniff_lets_utf8_text_through(data):
    assert sniff(data, complete=True) is None


def test_count_lines_of_a_file_only(tmp_path):
    from ledger.textfile import count_lines

    path = tmp_path / "f"
    path.write_bytes(b"a\nb\nc")
    with open(path, "rb") as f:
        f.read(1)
        assert count_lines(f) == 3 and f.read(1) == b"\n"      # position untouched
    assert count_lines(io.BytesIO(b"a\n")) is None


def test_text_lines_gives_back_every_byte_of_a_big_stream():
    data = "".join(f'{{"n":{i},"t":"\u00e5"}}\n' for i in range(20_000)).encode()
    assert b"".join(text_lines(io.BytesIO(data))) == data
    # a sample cut inside a multi-byte character is not an error
    with_cut = b"a" * (64 * 1024 - 1) + "\u00e5\n".encode()
    assert b"".join(text_lines(io.BytesIO(with_cut))) == with_cut


@pytest.mark.parametrize("name,data,words", NOT_TEXT[:7], ids=[n for n, _, _ in NOT_TEXT[:7]])
def test_apply_refuses_a_non_text_command_file_as_a_whole(name, data, words, tmp_path):
    path = tmp_path / "commands.jsonl"
    path.write_bytes(data)
    db = tmp_path / "l.db"
    res = cli("apply", str(path), "--db", str(db))
    assert res.returncode == 2, res.stdout + res.stderr
    assert str(path) in res.stderr and words in res.stderr and "nothing applied" in res.stderr
    assert "rejected" not in res.stdout and "Traceback" not in res.stderr
    assert not db.exists()                                   # the ledger was not even opened


def test_apply_from_stdin_refuses_utf16_too(tmp_path):
    res = cli("apply", "-", "--db", str(tmp_path / "l.db"),
              input=(GOOD_LINE * 4).encode("utf-16"))
    assert res.returncode == 2 and "standard input" in res.stderr and "UTF-16" in res.stderr


def test_a_bom_and_one_bad_line_stay_line_by_line(db_url, tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD_LINE.encode()
                     + b'{"type":"tick","at":"2026-03-02T10:01:00+01:00","actor":"\xff\xfe"}\n'
                     + GOOD_LINE.replace("t-1", "t-2").replace("10:00", "10:02").encode())
    res = cli("apply", str(path), "--db", db_url, "--json")
    assert res.returncode == 1, res.stderr
    outs = [json.loads(x) for x in res.stdout.splitlines()]
    assert [(o["line"], o["status"]) for o in outs] == [
        (1, "applied"), (2, "rejected"), (3, "applied")]


def _shop(db: str) -> None:
    with Ledger(db) as led:
        rows = sorted([*released(oid(1)), *released(oid(2), when_minutes=1)],
                      key=lambda r: r["at"])
        outs = list(led.apply_lines(lines(*rows)))
        assert all(o.ok for o in outs), [o.error for o in outs]


def test_a_feed_field_over_the_csv_limit_is_one_rejected_line(db_url, tmp_path):
    _shop(db_url)
    header = "order-id\torder-item-id\tquantity\tship-date\tcarrier-code\ttracking-number"
    rows = [header,
            f"{oid(1)}\t\t\t2026-03-02\tDHL\t123",
            f"{oid(2)}\t\t\t2026-03-02\tDHL\t" + "9" * 200_000,
            f"{oid(2)}\t\t\t2026-03-02\tDHL\t456"]
    path = tmp_path / "ship.txt"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    res = cli("feed", "shipping-confirmation", str(path), "--db", db_url,
              "--now", at(hours=3), "--json")
    assert "Traceback" not in res.stderr and res.returncode == 1, res.stderr
    report = json.loads(res.stdout)
    by_line = {ln["line"]: ln for ln in report["lines"]}
    assert by_line[2]["status"] == "accepted" and by_line[4]["status"] == "accepted"
    bad = by_line[3]
    assert bad["status"] == "rejected" and bad["code"] == "field-too-long"
    assert bad["column"] == "tracking-number" and "131,072" in bad["message"]
    text = cli("feed", "shipping-confirmation", str(path), "--db", db_url, "--now", at(hours=3))
    assert "line 3: rejected, column tracking-number: [field-too-long]" in text.stdout


def test_a_utf16_feed_says_so(tmp_path):
    path = tmp_path / "ship.txt"
    path.write_bytes("order-id\tship-date\tcarrier-code\n".encode("utf-16-le"))
    res = cli("feed", "shipping-confirmation", str(path), "--db", str(tmp_path / "l.db"))
    assert res.returncode == 2 and "UTF-16" in res.stderr and "nothing applied" in res.stderr


# --- 6. check before you write ------------------------------------------------------------


def _check_file(tmp_path: Path) -> Path:
    """Lines that depend on the ledger and on each other: a duplicate, deadlines that
    fire (hold expiry, day-30 cancel), a line needing an earlier one, rejections."""
    A, B, C, D = oid(1), oid(2), oid(3), oid(4)
    rows = [
        dict(place(A, at(1)), command_id="setup-1"),                  # duplicate
        dict(place(C, at(60), [item(sku="MUG", quantity=2)]), command_id="f-1"),
        dict(cmd("verify-payment", at(65), order_id=C, outcome="verified"), command_id="f-2"),
        dict(place(D, at(70), [item(sku="MUG", quantity=2)]), command_id="f-3"),  # 1 left
        dict(cmd("ship", at(120), order_id=C, carrier_code="DHL", ship_date="2026-03-02"),
             command_id="f-4"),                                          # needs f-2 + hold end
        dict(cmd("ship", at(121), order_id=oid(9), carrier_code="DHL",
                 ship_date="2026-03-02"), command_id="f-5"),              # unknown order
        dict(cmd("tick", at(days=31)), command_id="f-6"),                # day-30 cancel of B
        dict(cmd("tick", at(days=1)), command_id="f-7"),                 # before the clock
    ]
    path = tmp_path / "check.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def _setup_for_check(db: str) -> None:
    with Ledger(db) as led:
        setup = [dict(c, command_id=f"setup-{i}") for i, c in enumerate([
            cmd("set-inventory", at(0), sku="MUG", quantity=3),
            place(oid(1), at(1)),
            cmd("verify-payment", at(5), order_id=oid(1), outcome="verified"),
            place(oid(2), at(6)),
            cmd("verify-payment", at(8), order_id=oid(2), outcome="verified"),
            cmd("tick", at(40))])]
        outs = list(led.apply_lines(lines(*setup)))
        assert all(o.ok for o in outs), [o.error for o in outs]


@pytest.fixture
def twin(db_url):
    """A second ledger location on the same backend as ``db_url``."""
    if db_url.startswith("postgresql"):
        from conftest import _drop_schema

        yield db_url + "b"
        _drop_schema(db_url.rsplit("schema=", 1)[1] + "b")
    else:
        yield db_url[:-3] + "-twin.db"


def test_apply_check_prints_what_apply_does_and_writes_nothing(db_url, twin, tmp_path):
    for db in (db_url, twin):
        _setup_for_check(db)
    path = _check_file(tmp_path)
    before = state(db_url)
    # the file is one time-sorted stream: with --advance-clock its last tick (day 1, after
    # the day-31 one) is rejected time-backwards, by --check as by the real apply
    flow = "--advance-clock"
    checked = cli("apply", str(path), "--db", db_url, "--json", "--check", "--batch-size", "2",
                  flow)
    checked_text = cli("apply", str(path), "--db", db_url, "--check", flow)
    assert state(db_url) == before
    assert not list(tmp_path.glob("*views*"))                    # no views synced or created
    statuses = [json.loads(x)["status"] for x in checked.stdout.splitlines()]
    assert statuses == ["duplicate", "applied", "applied", "rejected", "applied", "rejected",
                        "applied", "rejected"], checked.stdout
    assert "HoldExpired" in checked.stdout and "LedgerCanceled" in checked.stdout
    real = cli("apply", str(path), "--db", db_url, "--json", flow)
    assert (checked.returncode, checked.stdout) == (real.returncode, real.stdout)
    assert real.returncode == 1 and state(db_url) != before
    # text: the same lines, the same counts; only the summary's last words differ
    real_text = cli("apply", str(path), "--db", twin, flow)
    assert checked_text.returncode == real_text.returncode == 1
    *rejected, summary = checked_text.stdout.strip().split("\n")
    *real_rejected, real_summary = real_text.stdout.strip().split("\n")
    assert rejected == real_rejected and len(rejected) == 3
    assert summary.replace("would be written (checked only, nothing written)", "written") == \
        real_summary
    assert state(twin) == state(db_url)


def test_check_on_a_missing_ledger_creates_nothing(tmp_path, pg_url):
    path = tmp_path / "c.jsonl"
    path.write_text(GOOD_LINE, encoding="utf-8")
    db = tmp_path / "new.db"
    res = cli("apply", str(path), "--db", str(db), "--check", "--json")
    assert res.returncode == 0 and json.loads(res.stdout)["status"] == "applied"
    assert not db.exists() and not Path(str(db) + "-writer.lock").exists()
    assert not ledger_exists(pg_url)
    res = cli("apply", str(path), "--db", pg_url, "--check")
    assert res.returncode == 0 and "1 applied" in res.stdout
    assert not ledger_exists(pg_url)
    import psycopg

    schema = pg_url.rsplit("schema=", 1)[1]
    with psycopg.connect(pg_url.split("?")[0]) as conn:
        assert conn.execute("SELECT count(*) FROM information_schema.schemata "
                            "WHERE schema_name = %s", (schema,)).fetchone()[0] == 0
    missing_dir = cli("apply", str(path), "--db", str(tmp_path / "no" / "x.db"), "--check")
    assert missing_dir.returncode == 2 and "does not exist" in missing_dir.stderr


def test_feed_check_is_the_feed_report_without_writing(db_url, tmp_path):
    _shop(db_url)
    path = tmp_path / "ship.txt"
    path.write_text("order-id\tship-date\tcarrier-code\n"
                    f"{oid(1)}\t2026-03-02\tDHL\n{oid(1)}\t2026-03-02\tDHL\n"
                    f"{oid(7)}\t2026-03-02\tDHL\n", encoding="utf-8")
    before = state(db_url)
    args = ("feed", "shipping-confirmation", str(path), "--db", db_url, "--now", at(hours=3))
    checked = cli(*args, "--check", "--json")
    assert state(db_url) == before
    real = cli(*args, "--json")
    assert (checked.returncode, checked.stdout) == (real.returncode, real.stdout)
    assert [ln["status"] for ln in json.loads(real.stdout)["lines"]] == [
        "accepted", "rejected", "rejected"]          # the second ship sees the first
    assert state(db_url) != before


def test_import_check_reports_the_import_without_writing(db_url):
    src = str(ROOT / "examples" / "sp-api" / "getOrders-with-items.json")
    checked = cli("import", "sp-api", src, "--db", db_url, "--check", "--json")
    assert checked.returncode == 0, checked.stderr
    assert not ledger_exists(db_url)
    real = cli("import", "sp-api", src, "--db", db_url, "--json")
    assert json.loads(checked.stdout) == json.loads(real.stdout)
    assert json.loads(real.stdout)["imported"] > 0
    before = state(db_url)
    again = cli("import", "sp-api", src, "--db", db_url, "--check")
    assert "0 imported" in again.stdout and state(db_url) == before


def test_dry_run_in_the_library_across_batches(db_url, tmp_path):
    _setup_for_check(db_url)
    data = _check_file(tmp_path).read_bytes().splitlines()
    with Ledger(db_url) as led:
        before = led.head(), led.now()
        dry = [o.as_dict() for o in led.apply_lines(data, batch_size=1, dry_run=True)]
        assert (led.head(), led.now()) == before
        real = [o.as_dict() for o in led.apply_lines(data, batch_size=3)]
    assert dry == real


# --- 8. big outputs --------------------------------------------------------------------------


@pytest.fixture
def many(tmp_path, monkeypatch):
    """A ledger with 12 orders, some with long item lists (a table wider than 80)."""
    monkeypatch.delenv("ORDER_LEDGER_VIEWS", raising=False)
    db = str(tmp_path / "many.db")
    rows = [cmd("set-inventory", at(0), sku="SKU-A", quantity=100)]
    for n in range(1, 13):
        items = [item(f"I{k}", sku=f"SKU-{'LONG-NAME-' * 3}{k}") for k in range(n % 4 + 1)]
        rows += released(oid(n), when_minutes=n * 3 + (n % 5) * 7, items=items)
    rows.sort(key=lambda r: r["at"])
    with Ledger(db) as led:
        assert all(o.ok for o in led.apply_lines(lines(*rows)))
    return db


def test_piped_orders_keep_whole_ids_and_dates(many):
    res = cli("orders", "--db", many)
    assert res.returncode == 0, res.stderr
    rows = json.loads(cli("orders", "--db", many, "--json").stdout)
    assert "\u2026" not in res.stdout                       # nothing cut with an ellipsis
    for r in rows:
        assert r["order_id"] in res.stdout
        assert r["purchase_date"][:10] + " " + r["purchase_date"][11:16] in res.stdout
    assert max(len(ln) for ln in res.stdout.splitlines()) > 80
    title, header, *body = res.stdout.splitlines()
    assert title == "Manage Orders" and header.split() == [
        "order", "status", "actionable", "purchased", "items", "note"]
    assert [ln.split()[0] for ln in body] == [r["order_id"] for r in rows]   # one line a row


def test_tables_on_a_terminal_are_drawn_and_cells_are_not_markup(monkeypatch):
    from rich.console import Console

    from order_ledger import common

    term = io.StringIO()
    monkeypatch.setattr(common, "console", Console(file=term, force_terminal=True, width=60))
    common.print_rows([["[bold]x[/bold]", "2026-04-01 10:00"]], ["name", "at"], "T")
    assert "[bold]x[/bold]" in term.getvalue() and "\u2503" in term.getvalue()  # box drawn


def _ids(*args: str) -> list[str]:
    res = run(*args, "--json")
    assert res.exit_code == 0, res.output
    return [r["order_id"] for r in json.loads(res.output)]


def test_orders_sort_limit_offset(many):
    everything = json.loads(run("orders", "--db", many, "--json").output)
    newest = [r["order_id"] for r in everything]
    by_id = sorted(newest)
    assert newest == sorted(by_id, key=lambda o: next(
        r["purchase_date"] for r in everything if r["order_id"] == o), reverse=True)
    assert _ids("orders", "--db", many, "--limit", "3") == newest[:3]
    assert _ids("orders", "--db", many, "--limit", "4", "--offset", "2") == newest[2:6]
    assert _ids("orders", "--db", many, "--offset", "10") == newest[10:]
    oldest = sorted(by_id, key=lambda o: next(
        r["purchase_date"] for r in everything if r["order_id"] == o))
    assert _ids("orders", "--db", many, "--asc") == oldest
    assert _ids("orders", "--db", many, "--sort", "order") == by_id
    assert _ids("orders", "--db", many, "--sort", "order", "--desc", "--limit", "2") == \
        by_id[::-1][:2]
    assert _ids("orders", "--db", many, "--limit", "0") == []
    # the same page from the in-memory views of the past (--as-of)
    with Ledger(many) as led:
        head = str(led.head())
    assert _ids("orders", "--db", many, "--at-position", head, "--sort", "order",
                "--limit", "3", "--offset", "1") == by_id[1:4]
    bad = run("orders", "--db", many, "--sort", "colour")
    assert bad.exit_code == 2 and "colour" in bad.output
    assert run("orders", "--db", many, "--limit", "-1").exit_code == 2


def test_inventory_and_notifications_pages(many):
    inv = json.loads(run("inventory", "--db", many, "--json").output)
    assert [r["sku"] for r in inv] == sorted(r["sku"] for r in inv)
    low = json.loads(run("inventory", "--db", many, "--sort", "available", "--limit", "2",
                         "--json").output)
    assert low == sorted(inv, key=lambda r: (r["available"], r["sku"]))[:2]
    notes = json.loads(run("notifications", "--db", many, "--json").output)
    page = json.loads(run("notifications", "--db", many, "--offset", "3", "--limit", "5",
                          "--json").output)
    assert page == notes[3:8]
    by_kind = json.loads(run("notifications", "--db", many, "--sort", "kind", "--desc",
                             "--json").output)
    assert by_kind == sorted(sorted(notes, key=lambda r: (r["position"], r["seq"])),
                             key=lambda r: r["kind"], reverse=True)


def test_the_page_is_in_the_query():
    assert Page(limit=5, offset=10).sql("orders") == (
        " ORDER BY purchase_us DESC, order_id LIMIT ? OFFSET ?", [5, 10])
    assert Page().sql("notifications") == (" ORDER BY position ASC, seq", [])
    assert Page(sort="available", desc=True).sql("inventory") == (
        " ORDER BY available DESC, sku", [])
    with pytest.raises(PageError):
        Page(sort="nope").sql("orders")


def test_audit_offset_pages_back_from_the_newest(many):
    def positions(*args: str) -> list[int]:
        res = run("audit", "--db", many, "--json", *args)
        assert res.exit_code == 0, res.output
        return [r["position"] for r in json.loads(res.output)]

    every = positions()
    assert positions("--limit", "5") == every[-5:]
    assert positions("--limit", "5", "--offset", "5") == every[-10:-5]
    assert positions("--offset", "3") == every[:-3]


def test_progress_bar_only_on_a_terminal():
    from rich.console import Console

    from order_ledger.common import Bar

    shown = io.StringIO()
    term = Console(file=shown, force_terminal=True, width=100)
    with Bar("applying", True, unit="lines", out=term) as bar:
        bar(5, 10)
    assert "applying" in shown.getvalue() and "5/10" in shown.getvalue()
    hidden = io.StringIO()
    with Bar("applying", True, unit="lines", out=Console(file=hidden)) as bar:
        bar(5, 10)
    assert hidden.getvalue() == ""
    with Bar("applying", False, unit="lines", out=term) as bar:  # --json, --quiet
        assert not bar.enabled


def test_apply_shows_progress_on_a_pty_and_never_in_pipes(tmp_path):
    import pty
    import select

    path = tmp_path / "c.jsonl"
    path.write_text("".join(
        json.dumps(cmd("set-inventory", at(i), sku=f"S{i % 50}", quantity=i)) + "\n"
        for i in range(3000)), encoding="utf-8")
    piped = cli("apply", str(path), "--db", str(tmp_path / "a.db"))
    assert piped.returncode == 0 and "applying" not in piped.stderr + piped.stdout
    assert "\x1b[" not in piped.stderr + piped.stdout
    exe = Path(sys.executable).with_name("order-ledger")
    prog = [str(exe)] if exe.exists() else ["order-ledger"]
    master, slave = pty.openpty()
    env = dict(os.environ, COLUMNS="120", TERM="xterm")
    proc = subprocess.Popen([*prog, "apply", str(path), "--db", str(tmp_path / "b.db")],
                            stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    out = b""
    while True:
        ready, _, _ = select.select([master], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    proc.wait(timeout=60)
    os.close(master)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text
    import re

    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    assert "applying" in plain and re.search(r"\d+/3000 lines", plain), plain[-2000:]
    assert "3000 lines: 3000 applied" in plain
