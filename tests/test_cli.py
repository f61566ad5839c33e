"""The hand-typed subcommands: one test walks an order through every one."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from builders import oid
from order_ledger.cli import main

T = "2026-03-02T09:00:00+01:00"


def run(*args: str, db: str, ok: bool = True) -> str:
    result = CliRunner().invoke(main, [*args, "--db", db], catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    else:
        assert result.exit_code == 1, result.output
    return result.output


def place_args(order_id: str, now: str) -> list[str]:
    return ["place", order_id, "--item", "10000000000001", "MUG-1", "Mug", "2", "398.00",
            "--item", "10000000000002", "CUP-1", "Cup", "1", "99.00",
            "--currency", "SEK", "--buyer-name", "Anna Andersson", "--language", "sv-SE",
            "--address-1", "Storgatan 1", "--city", "Stockholm", "--postal-code", "11122",
            "--country", "SE", "--now", now]


def test_every_subcommand_by_hand(db_url):
    db = db_url
    o = oid(1)
    run("set-inventory", "MUG-1", "5", "--now", T, db=db)
    out = run(*place_args(o, "2026-03-02T09:05:00+01:00"), db=db)
    assert "OrderPlaced" in out and "InventoryAllocated" in out
    run("verify-payment", o, "verified", "--now", "2026-03-02T09:10:00+01:00", db=db)
    out = run("tick", "--now", "2026-03-02T09:40:00+01:00", "--json", db=db)
    assert json.loads(out)["events"] == ["HoldExpired"]
    view = json.loads(run("show", o, "--json", db=db))
    assert view["status"] == "Unshipped" and view["actionable"] is True
    assert view["payments_date"] == "2026-03-02T09:35:00+01:00"

    run("receive-message", o, "--body", "Kan ni skicka till min nya adress?",
        "--requests-address-change", "--now", "2026-03-02T10:00:00+01:00", db=db)
    run("change-address", o, "--name", "Anna Andersson", "--address-1", "Nygatan 2",
        "--city", "Uppsala", "--postal-code", "75310", "--country", "SE",
        "--now", "2026-03-02T10:05:00+01:00", db=db)
    run("request-cancel", o, "--reason", "Ordered by mistake",
        "--now", "2026-03-02T10:10:00+01:00", db=db)
    run("ship", o, "--carrier-code", "PostNord", "--tracking-number", "SE123",
        "--ship-date", "2026-03-02", "--item", "10000000000001", "1",
        "--now", "2026-03-02T11:00:00+01:00", db=db)
    assert json.loads(run("show", o, "--json", db=db))["status"] == "PartiallyShipped"
    run("adjust", o, "--item", "10000000000002", "--reason", "NoInventory",
        "--quantity-cancelled", "1", "--item-price-adj", "99.00",
        "--now", "2026-03-02T11:05:00+01:00", db=db)
    run("cancel", o, "--reason", "BuyerCanceled", "--memo", "buyer asked",
        "--now", "2026-03-02T11:10:00+01:00", db=db)
    view = json.loads(run("show", o, "--json", db=db))
    assert view["status"] == "Shipped"
    assert [(i["quantity_shipped"], i["quantity_canceled"]) for i in view["items"]] == [(1, 1), (0, 1)]
    # human output of show names the status and items
    text = run("show", o, db=db)
    assert "Shipped" in text and "MUG-1" in text


def test_rejections_exit_1_and_say_how_to_fix(sqlite_url):
    db = sqlite_url
    o = oid(2)
    run(*place_args(o, T), db=db)
    # Pending orders are non-actionable
    result = CliRunner().invoke(main, ["cancel", o, "--reason", "NoInventory",
                                       "--now", "2026-03-02T09:10:00+01:00", "--db", db])
    assert result.exit_code == 1
    assert "order-pending" in result.output and "fix:" in result.output
    # a bad reason code lists the valid ones
    result = CliRunner().invoke(main, ["cancel", o, "--reason", "Nope",
                                       "--now", "2026-03-02T09:11:00+01:00", "--db", db])
    assert result.exit_code == 1 and "NoInventory" in result.output
    # --json gives the error object
    result = CliRunner().invoke(main, ["ship", "203-0000000-0000000", "--carrier-code", "UPS",
                                       "--ship-date", "2026-03-02", "--json",
                                       "--now", "2026-03-02T09:12:00+01:00", "--db", db])
    assert result.exit_code == 1
    assert json.loads(result.output)["error"]["code"] == "unknown-order"


def test_usage_errors_exit_2(sqlite_url, tmp_path):
    runner = CliRunner()
    assert runner.invoke(main, ["apply", str(tmp_path / "missing.jsonl")]).exit_code == 2
    assert runner.invoke(main, ["tick", "--now", "yesterday", "--db", sqlite_url]).exit_code == 2
    assert runner.invoke(main, ["tick", "--now", "2026-03-02T09:00:00", "--db", sqlite_url]).exit_code == 2
    result = runner.invoke(main, ["tick", "--now", T, "--db", str(tmp_path / "no" / "dir.db")])
    assert result.exit_code == 2 and "does not exist" in result.output


def test_same_command_id_twice_is_acknowledged_once(sqlite_url):
    run("set-inventory", "MUG-1", "5", "--now", T, "--command-id", "inv-1", db=sqlite_url)
    out = run("set-inventory", "MUG-1", "7", "--now", T, "--command-id", "inv-1", db=sqlite_url)
    assert "already applied" in out


@pytest.mark.parametrize("cmd", ["apply", "show", "tick", "place", "cancel", "request-cancel",
                                 "verify-payment", "ship", "adjust", "send-message",
                                 "receive-message", "change-address", "set-inventory"])
def test_every_command_has_help(cmd):
    result = CliRunner().invoke(main, [cmd, "--help"])
    assert result.exit_code == 0 and "Usage:" in result.output and "--db" in result.output


def test_send_message_check_only_records_nothing(sqlite_url):
    db = sqlite_url
    o = oid(3)
    run(*place_args(o, T), db=db)
    run("verify-payment", o, "verified", "--now", "2026-03-02T09:10:00+01:00", db=db)
    run("tick", "--now", "2026-03-02T09:40:00+01:00", db=db)
    from ledger.application import Ledger

    with Ledger(db) as led:
        head = led.head()
    good = f"Hej! Vi behöver din portkod för leveransen av order {o}."
    result = CliRunner().invoke(main, ["send-message", o, "--purpose", "order-information",
                                       "--language", "sv-SE", "--body", good, "--check-only",
                                       "--now", "2026-03-02T10:00:00+01:00", "--db", db])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(main, ["send-message", o, "--purpose", "marketing",
                                       "--language", "sv-SE", "--body", good + " 😀",
                                       "--check-only", "--now", "2026-03-02T10:00:00+01:00",
                                       "--db", db])
    assert result.exit_code == 1 and "emoji" in result.output
    with Ledger(db) as led:
        assert led.head() == head
