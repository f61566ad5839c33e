"""Diff: two ledgers, two points of one ledger, and the stored views against a rebuild."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from builders import walkthrough_lines
from click.testing import CliRunner

from ledger.application import Ledger
from order_ledger.cli import main

O7, O22, O41 = "203-0000007-0055433", "203-0000022-0174218", "203-0000041-0324679"


def _ledger(path: Path, lines: list[bytes]) -> str:
    with Ledger(str(path)) as led:
        outs = list(led.apply_lines(lines))
    assert all(o.ok for o in outs)
    return str(path)


def _diff(*args: str):
    return CliRunner().invoke(main, ["diff", *args])


@pytest.fixture(scope="module")
def ledgers(tmp_path_factory):
    d = tmp_path_factory.mktemp("diff")
    lines = walkthrough_lines()
    a = _ledger(d / "a.db", lines)
    b = _ledger(d / "b.db", lines)
    # c: order 7 (still Unshipped at the end) is canceled by the seller on the last evening
    cancel = json.dumps({"type": "cancel", "command_id": "extra-1",
                         "at": "2026-04-20T23:55:00+02:00", "order_id": O7, "by": "seller",
                         "reason": "NoInventory"}).encode()
    c = _ledger(d / "c.db", [*lines, cancel])
    return a, b, c


def test_identical_ledgers_exit_0(ledgers):
    a, b, _ = ledgers
    r = _diff("--db", a, "--other-db", b)
    assert r.exit_code == 0, r.output
    assert r.output.rstrip().endswith("identical")
    data = json.loads(_diff("--db", a, "--other-db", b, "--json").output)
    assert data["identical"] is True
    assert all(sum(s["counts"].values()) == 0 for s in data["sections"].values())


def test_a_changed_order_is_reported_row_by_row(ledgers):
    a, _, c = ledgers
    at = ["--at", "2026-04-21T00:00:00+02:00"]  # the same evaluation time on both sides
    r = _diff("--db", a, "--other-db", c, *at, "--json")
    assert r.exit_code == 1
    s = json.loads(r.output)["sections"]
    [changed] = s["orders"]["changed"]
    assert changed["key"] == O7
    assert changed["fields"]["status"] == ["Unshipped", "Canceled"]
    assert changed["fields"]["cancel_reason"] == [None, "NoInventory"]
    assert s["orders"]["counts"] == {"added": 0, "removed": 0, "changed": 1}
    assert [e["key"] for e in s["notifications"]["added"]] == [f"{O7}/buyer/cancellation#1"]
    assert {e["key"] for e in s["unshipped_report"]["removed"]} == {
        f"{O7}/40000000000701", f"{O7}/40000000000702"}
    # purchased 04-06, outside the 7-day cancellation window; a canceled order leaves
    # the late shipment rate's denominator
    [late] = s["metrics"]["changed"]
    assert late["key"] == "late_shipment_rate.30d"
    assert late["fields"]["denominator"] == [16, 15]
    assert sum(s["orders_report"]["counts"].values()) == 0  # order 7 stays in it, unchanged
    text = _diff("--db", a, "--other-db", c, *at).output
    assert f"~ {O7}: status Unshipped -> Canceled" in text and "different:" in text


def test_two_points_of_one_ledger(ledgers):
    a, _, _ = ledgers
    r = _diff("--db", a, "--as-of", "2026-04-11T16:00:00+02:00",
              "--other-as-of", "2026-04-12T06:00:00+02:00", "--json")
    assert r.exit_code == 1
    d = json.loads(r.output)
    assert d["a"]["position"] < d["b"]["position"]
    [changed] = d["sections"]["orders"]["changed"]
    assert changed["key"] == O22 and changed["fields"]["status"] == ["Unshipped", "Canceled"]
    same = _diff("--db", a, "--at-position", "100", "--other-at-position", "100")
    assert same.exit_code == 0
    assert _diff("--db", a, "--at-position", "100000").exit_code == 2


def test_views_against_a_rebuild_shows_a_tampered_row(tmp_path):
    db = _ledger(tmp_path / "shop.db", walkthrough_lines())
    runner = CliRunner()
    assert runner.invoke(main, ["sync", "--db", db, "--quiet"]).exit_code == 0
    views = str(tmp_path / "shop.views.db")
    r = _diff("--db", db, "--views")
    assert r.exit_code == 0, r.output
    assert r.output.rstrip().endswith("identical")
    con = sqlite3.connect(views)
    con.execute("UPDATE orders SET status = 'Shipped' WHERE order_id = ?", (O41,))
    con.execute("UPDATE audit SET actor = 'someone' WHERE position = 3")
    con.commit()
    con.close()
    r = _diff("--db", db, "--views", "--json")
    assert r.exit_code == 1
    d = json.loads(r.output)
    [changed] = d["sections"]["orders"]["changed"]
    assert changed["key"] == O41
    assert changed["fields"]["status"] == ["Shipped", "Unshipped"]  # stored -> rebuild
    assert d["tables"]["orders"]["changed"] == [
        {"key": O41, "fields": {"status": ["Shipped", "Unshipped"]}}]
    [audit] = d["tables"]["audit"]["changed"]
    assert audit["key"] == "3" and audit["fields"]["actor"][0] == "someone"
    assert {e["key"] for e in d["sections"]["unshipped_report"]["added"]} >= {
        f"{O41}/40000000004101"}
    text = _diff("--db", db, "--views", str(views)).output
    assert f"~ {O41}: status Shipped -> Unshipped" in text
    assert "table audit: 1 changed" in text
    # a missing views file is a usage error, not an empty one created on the way
    assert _diff("--db", db, "--views", str(tmp_path / "none.db")).exit_code == 2
    assert not (tmp_path / "none.db").exists()


def test_views_mode_notes_views_behind_or_not_built(tmp_path):
    lines = walkthrough_lines()
    db = _ledger(tmp_path / "shop.db", lines[:50])
    assert CliRunner().invoke(main, ["sync", "--db", db, "--quiet"]).exit_code == 0
    with Ledger(db) as led:
        list(led.apply_lines(lines[50:80]))
    r = _diff("--db", db, "--views", "--json")
    d = json.loads(r.output)
    assert r.exit_code == 0, d  # compared at their checkpoints: nothing a rebuild would change
    assert any("behind the head" in n for n in d["notes"])
    con = sqlite3.connect(str(tmp_path / "shop.views.db"))
    con.execute("DROP TABLE audit")
    con.commit()
    con.close()
    r = _diff("--db", db, "--views", "--json")
    d = json.loads(r.output)
    assert r.exit_code == 1
    assert any("audit view is not built" in n for n in d["notes"])
    assert d["tables"]["audit"]["counts"]["added"] > 0
