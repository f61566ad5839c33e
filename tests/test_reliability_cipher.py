"""Issue 7.5: encryption at rest with ORDER_LEDGER_CIPHER_KEY."""

from __future__ import annotations

import json
import sqlite3

import pytest
from click.testing import CliRunner

from builders import at, cmd, item, oid, place
from ledger.application import Ledger
from ledger.check import check_ledger
from ledger.errors import StoreError
from order_ledger.cli import main

SECRET_NAME = "Ingrid Hemligsson"
SECRET_STREET = "Lönngatan 17"
SECRET_BODY = "Min portkod är 4711"


def new_key() -> str:
    return CliRunner().invoke(main, ["keygen"]).output.strip()


def fill(db: str) -> None:
    o = oid(1)
    order = place(o, at(0), [item(sku="MUG-1")], command_id="p1")
    order["buyer"]["name"] = order["ship_to"]["name"] = SECRET_NAME
    order["ship_to"]["address_1"] = SECRET_STREET
    cmds = [cmd("set-inventory", at(0), sku="MUG-1", quantity=5, command_id="inv"), order,
            cmd("verify-payment", at(5), order_id=o, outcome="verified", command_id="v1"),
            cmd("receive-message", at(40), order_id=o, body=SECRET_BODY, command_id="m1",
                **{"from": "buyer"})]
    with Ledger(db) as led:
        assert [x.status for x in led.apply_lines([json.dumps(c) for c in cmds])] == \
            ["applied"] * 4


def test_keygen_prints_a_valid_key():
    key = new_key()
    import base64

    assert len(base64.b64decode(key)) == 32
    r = CliRunner().invoke(main, ["keygen", "--bytes", "16"])
    assert len(base64.b64decode(r.output.strip())) == 16


def test_payloads_are_encrypted_and_readable_with_the_key(db_url, monkeypatch):
    monkeypatch.setenv("ORDER_LEDGER_CIPHER_KEY", new_key())
    fill(db_url)
    with Ledger(db_url) as led:
        assert led.order(oid(1)).view()["buyer_name"] == SECRET_NAME
        assert check_ledger(led).ok
        states = [bytes(n.state) for n in led.recorder.select_notifications(start=1, limit=100)]
    for secret in (SECRET_NAME, SECRET_STREET, SECRET_BODY, "MUG-1", "verified"):
        assert not any(secret.encode() in s for s in states), secret
    if not db_url.startswith("postgresql"):  # nothing in the file either (WAL included)
        raw = b"".join(open(p, "rb").read() for p in (db_url, db_url + "-wal")
                       if __import__("os").path.exists(p))
        for secret in (SECRET_NAME, SECRET_STREET, SECRET_BODY):
            assert secret.encode() not in raw


@pytest.mark.parametrize("key", ["none", "wrong"])
def test_no_key_or_wrong_key_cannot_read_nor_write(db_url, monkeypatch, key):
    monkeypatch.setenv("ORDER_LEDGER_CIPHER_KEY", new_key())
    fill(db_url)
    with Ledger(db_url) as led:
        head = led.head()
    if key == "none":
        monkeypatch.delenv("ORDER_LEDGER_CIPHER_KEY")
    else:
        monkeypatch.setenv("ORDER_LEDGER_CIPHER_KEY", new_key())
    with Ledger(db_url) as led:
        with pytest.raises(StoreError, match="ORDER_LEDGER_CIPHER_KEY"):
            led.order(oid(1))
        # even a command touching only new aggregates is refused: no mixed store
        with pytest.raises(StoreError, match="ORDER_LEDGER_CIPHER_KEY"):
            led.execute(cmd("set-inventory", at(50), sku="NEW", quantity=1))
        assert led.head() == head
        report = check_ledger(led)
        assert not report.ok and {p.code for p in report.problems} == {"cipher-key"}
    runner = CliRunner()
    r = runner.invoke(main, ["show", oid(1), "--db", db_url])
    assert r.exit_code == 2 and "ORDER_LEDGER_CIPHER_KEY" in r.output, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit)
    r = runner.invoke(main, ["check", "--db", db_url])
    assert r.exit_code == 1 and "ORDER_LEDGER_CIPHER_KEY" in r.output


def test_a_key_on_a_plain_store_is_refused_for_writing(sqlite_url, monkeypatch):
    monkeypatch.delenv("ORDER_LEDGER_CIPHER_KEY", raising=False)
    fill(sqlite_url)
    monkeypatch.setenv("ORDER_LEDGER_CIPHER_KEY", new_key())
    with Ledger(sqlite_url) as led:
        head = led.head()
        with pytest.raises(StoreError, match="ORDER_LEDGER_CIPHER_KEY"):
            led.execute(cmd("set-inventory", at(50), sku="NEW", quantity=1))
        assert led.head() == head


@pytest.mark.parametrize("bad", ["not base64!!", "c2hvcnQ="])
def test_malformed_key_is_a_usage_error(sqlite_url, monkeypatch, bad):
    monkeypatch.setenv("ORDER_LEDGER_CIPHER_KEY", bad)
    r = CliRunner().invoke(main, ["show", oid(1), "--db", sqlite_url])
    assert r.exit_code == 2 and "ORDER_LEDGER_CIPHER_KEY" in r.output, r.output


def test_encrypted_backup_needs_the_key(sqlite_url, tmp_path, monkeypatch):
    monkeypatch.setenv("ORDER_LEDGER_CIPHER_KEY", new_key())
    fill(sqlite_url)
    target = str(tmp_path / "copy.db")
    assert CliRunner().invoke(main, ["backup", target, "--db", sqlite_url]).exit_code == 0
    with sqlite3.connect(target) as conn:
        blob = b"".join(bytes(r[0]) for r in conn.execute("SELECT state FROM stored_events"))
    assert SECRET_NAME.encode() not in blob
    assert CliRunner().invoke(main, ["check", "--db", target]).exit_code == 0
    monkeypatch.delenv("ORDER_LEDGER_CIPHER_KEY")
    assert CliRunner().invoke(main, ["check", "--db", target]).exit_code == 1
