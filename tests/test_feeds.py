"""Flat-file feeds: shipping confirmation, cancellation, adjustment (docs/rules.md §7)."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

from builders import at, cmd, item, lines, oid, place
from ledger.application import Ledger
from ledger.feeds import (
    CANCEL_TO_ADJUSTMENT_REASON,
    FeedError,
    OrderInfo,
    build_commands,
    process_feed,
    read_feed,
)
from order_ledger.cli import main

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "feeds"
NOW = datetime.fromisoformat(at(days=1))  # 2026-03-03 09:00 +01:00: after every setup below

SHIP_HEADER = ["order-id", "order-item-id", "quantity", "ship-date", "carrier-code",
               "carrier-name", "tracking-number", "ship-method"]
CANCEL_HEADER = ["order-id", "cancellation-reason-code", "amazon-order-item-code"]
ADJ_HEADER = ["order-id", "order-item-id", "adjustment-reason-code", "currency",
              "item-price-adj", "item-tax-adj", "shipping-price-adj", "shipping-tax-adj",
              "quantity-cancelled"]

A, B = "10000000000001", "10000000000002"


def tsv(*rows: list[str], crlf: bool = False, bom: bool = False) -> bytes:
    nl = "\r\n" if crlf else "\n"
    text = "".join("\t".join(r) + nl for r in rows)
    return (b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8")


def two_items() -> list[dict]:
    return [item(A, "MUG-1", 2, "398.00", item_tax="79.60"),
            item(B, "CUP-1", 1, "99.00", shipping_price="29.00")]


def setup(led: Ledger, *orders: tuple[int, list[dict] | None, bool]) -> None:
    """Place orders (n, items, verified) a minute apart, then let the holds end."""
    cmds = []
    for k, (n, items, verified) in enumerate(orders):
        cmds.append(place(oid(n), at(k), items or two_items()))
        if verified:
            cmds.append(cmd("verify-payment", at(k + 0.5), order_id=oid(n), outcome="verified"))
    cmds.sort(key=lambda c: datetime.fromisoformat(c["at"]))
    cmds.append(cmd("tick", at(hours=1)))
    outs = list(led.apply_lines(lines(*cmds)))
    assert all(o.ok for o in outs), [o.error for o in outs if not o.ok]


def view(led: Ledger, n: int) -> dict:
    order = led.order(oid(n))
    assert order is not None
    return order.view()


def qty(led: Ledger, n: int) -> list[tuple[int, int, int]]:
    return [(i["quantity"], i["quantity_shipped"], i["quantity_canceled"])
            for i in view(led, n)["items"]]


def by_line(report) -> dict[int, tuple]:
    return {ln.line: (ln.status, ln.column, ln.code) for ln in report.lines}


# --- shipping confirmation ------------------------------------------------------------------


def test_shipping_confirmation_split_shipments_and_whole_orders(ledger):
    setup(ledger, (1, None, True), (2, None, True), (3, [item(A, "MUG-1", 3)], True))
    data = tsv(SHIP_HEADER,
               [oid(1), A, "1", "2026-03-02", "PostNord", "", "SE001", "Standard"],
               [oid(1), A, "1", "2026-03-02T15:00:00+01:00", "PostNord", "", "SE002", ""],
               [oid(1), B, "1", "2026-03-03", "DHL", "", "JV003", ""],
               [oid(2), "", "", "2026-03-02", "Other", "Bring", "370001", "Paket"],
               [oid(3), A, "2", "2026-03-02", "UPS", "", "1Z004", ""])
    report = process_feed(ledger, "shipping-confirmation", data, at=NOW)
    assert (report.processed, report.accepted, report.duplicate, report.rejected) == (5, 5, 0, 0)
    assert [ln.line for ln in report.lines] == [2, 3, 4, 5, 6]
    assert all(ln.events == ["ShipmentConfirmed"] for ln in report.lines)
    assert view(ledger, 1)["status"] == "Shipped" and qty(ledger, 1) == [(2, 2, 0), (1, 1, 0)]
    assert view(ledger, 2)["status"] == "Shipped"
    assert view(ledger, 3)["status"] == "PartiallyShipped" and qty(ledger, 3) == [(3, 2, 0)]
    shipments = [e for _, _, e in ledger.read_events() if type(e).__name__ == "ShipmentConfirmed"]
    assert [s.tracking_number for s in shipments] == ["SE001", "SE002", "JV003", "370001", "1Z004"]
    assert shipments[3].carrier_name == "Bring" and shipments[3].ship_method == "Paket"
    assert shipments[0].command_id == f"feed:shipping-confirmation:{report.sha256[:12]}:2"
    assert shipments[0].at == NOW

    # the same file again: every line already processed, nothing written
    head = ledger.head()
    again = process_feed(ledger, "shipping-confirmation", data,
                         at=datetime.fromisoformat(at(days=2)))
    assert (again.accepted, again.duplicate, again.rejected) == (0, 5, 0)
    assert ledger.head() == head


def test_shipping_confirmation_every_kind_of_bad_line(sqlite_url):
    with Ledger(sqlite_url) as led:
        setup(led, (1, None, True), (2, None, False), (3, None, True))
        data = tsv(
            SHIP_HEADER,
            [oid(1), A, "1", "2026-03-02", "PostNord", "", "SE1", ""],        # 2 ok
            ["", A, "1", "2026-03-02", "PostNord", "", "", ""],                # 3 no order id
            ["203-123", A, "1", "2026-03-02", "PostNord", "", "", ""],        # 4 bad order id
            [oid(1), A, "", "2026-03-02", "PostNord", "", "", ""],            # 5 no quantity
            [oid(1), A, "1.5", "2026-03-02", "PostNord", "", "", ""],         # 6 not integer
            [oid(1), A, "0", "2026-03-02", "PostNord", "", "", ""],           # 7 zero
            [oid(1), A, "-1", "2026-03-02", "PostNord", "", "", ""],          # 8 negative
            [oid(1), "", "1", "2026-03-02", "PostNord", "", "", ""],          # 9 qty w/o item
            [oid(1), A, "1", "", "PostNord", "", "", ""],                     # 10 no ship date
            [oid(1), A, "1", "02/03/2026", "PostNord", "", "", ""],           # 11 bad date
            [oid(1), A, "1", "2026-03-02T10:00:00", "PostNord", "", "", ""],  # 12 no offset
            [oid(1), A, "1", "2026-03-02", "", "", "", ""],                   # 13 no carrier
            [oid(1), A, "1", "2026-03-02", "Other", "", "", ""],              # 14 Other w/o name
            [oid(9), "", "", "2026-03-02", "DHL", "", "", ""],                # 15 unknown order
            [oid(1), A, "5", "2026-03-02", "DHL", "", "", ""],                # 16 too many
            [oid(1), "99999999999999", "1", "2026-03-02", "DHL", "", "", ""],  # 17 unknown item
            [oid(2), "", "", "2026-03-02", "DHL", "", "", ""],                # 18 Pending order
            [oid(1), A, "1", "2026-03-01", "DHL", "", "", ""],                # 19 before purchase
            [oid(1), A, "1", "2026-03-09", "DHL", "", "", ""],                # 20 in the future
            [oid(3), "", "", "2026-03-02", "DHL", "", "", "", "surplus"],     # 21 extra field
            [oid(1), B, "1", "2026-03-02", "Other", "Schenker", "", ""],      # 22 ok
            [oid(1), "", "", "2026-03-02", "DHL", "", "", ""],                # 23 rest of order
            [oid(1), "", "", "2026-03-02", "DHL", "", "", ""],                # 24 now Shipped
        )
        report = process_feed(led, "shipping-confirmation", data, at=NOW)
        assert by_line(report) == {
            2: ("accepted", None, None),
            3: ("rejected", "order-id", "missing-value"),
            4: ("rejected", "order-id", "bad-order-id"),
            5: ("rejected", "quantity", "missing-value"),
            6: ("rejected", "quantity", "bad-quantity"),
            7: ("rejected", "quantity", "bad-quantity"),
            8: ("rejected", "quantity", "bad-quantity"),
            9: ("rejected", "quantity", "quantity-without-item"),
            10: ("rejected", "ship-date", "missing-value"),
            11: ("rejected", "ship-date", "bad-date"),
            12: ("rejected", "ship-date", "bad-date"),
            13: ("rejected", "carrier-code", "missing-value"),
            14: ("rejected", "carrier-name", "missing-carrier-name"),
            15: ("rejected", "order-id", "unknown-order"),
            16: ("rejected", "quantity", "quantity-too-large"),
            17: ("rejected", "order-item-id", "unknown-item"),
            18: ("rejected", "order-id", "order-pending"),
            19: ("rejected", "ship-date", "ship-date-before-purchase"),
            20: ("rejected", "ship-date", "ship-date-in-future"),
            21: ("rejected", None, "too-many-fields"),
            22: ("accepted", None, None),
            23: ("accepted", None, None),
            24: ("rejected", "order-id", "order-shipped"),
        }
        assert (report.processed, report.accepted, report.rejected) == (23, 3, 20)
        msgs = {ln.line: ln.message for ln in report.lines}
        assert "only 1 left" in msgs[16]  # line 2 shipped one of the two
        assert "'1.5' is not a whole number" in msgs[6]
        assert oid(9) in msgs[15]
        assert view(led, 1)["status"] == "Shipped" and qty(led, 1) == [(2, 2, 0), (1, 1, 0)]
        assert view(led, 3)["status"] == "Unshipped"  # the line with a surplus field did nothing


def test_bom_crlf_extra_columns_and_another_column_order(sqlite_url):
    with Ledger(sqlite_url) as led:
        setup(led, (1, None, True))
        data = tsv(["Tracking-Number", "ship-date", "carrier-code", "my-notes", "order-id",
                    "quantity", "order-item-id"],
                   [" SE9 ", "2026-03-02", "PostNord", "packed by Kim", oid(1), "2", A],
                   ["", "", "", "", "", "", ""],
                   [],
                   ["SE10", "2026-03-02", "PostNord", "", oid(1), "", ""],
                   crlf=True, bom=True)
        rows = read_feed("shipping-confirmation", data)
        assert [r.line for r in rows] == [2, 5]
        assert rows[0].values["tracking-number"] == "SE9"
        report = process_feed(led, "shipping-confirmation", data, at=NOW)
        assert by_line(report) == {2: ("accepted", None, None), 5: ("accepted", None, None)}
        assert view(led, 1)["status"] == "Shipped"
        shipped = [e for _, _, e in led.read_events() if type(e).__name__ == "ShipmentConfirmed"]
        assert [(s.tracking_number, s.ship_method) for s in shipped] == [("SE9", None),
                                                                         ("SE10", None)]


@pytest.mark.parametrize("header, missing", [
    (["order-id", "order-item-id", "quantity", "carrier-code"], "ship-date"),
    (["order_id", "ship-date", "carrier-code"], "order-id"),
])
def test_missing_header_column_rejects_the_whole_file(sqlite_url, tmp_path, header, missing):
    data = tsv(header, [oid(1)] * len(header))
    with pytest.raises(FeedError, match=f"lacks required column.*{missing}"):
        read_feed("shipping-confirmation", data)
    with Ledger(sqlite_url) as led:
        setup(led, (1, None, True))
        head = led.head()
    path = tmp_path / "feed.txt"
    path.write_bytes(data)
    result = CliRunner().invoke(main, ["feed", "shipping-confirmation", str(path), "--db",
                                       sqlite_url, "--now", NOW.isoformat()])
    assert result.exit_code == 2
    assert missing in result.output and "nothing applied" in result.output
    with Ledger(sqlite_url) as led:
        assert led.head() == head


def test_unusable_files_are_usage_errors(tmp_path, sqlite_url):
    runner = CliRunner()
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"\n\n")
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("order-id\tship-date\tcarrier-code\nG\xf6teborg\n".encode("latin-1"))
    dup = tmp_path / "dup.txt"
    dup.write_bytes(tsv(["order-id", "order-id", "ship-date", "carrier-code"]))
    # Latin-1 is read (tests/test_feeds_real.py); forced to UTF-8 it is unusable
    for path, text, more in ((empty, "empty", []), (latin1, "not utf-8", ["--encoding", "utf-8"]),
                             (dup, "twice", [])):
        result = runner.invoke(main, ["feed", "shipping-confirmation", str(path), "--db",
                                      sqlite_url, "--now", NOW.isoformat(), *more])
        assert result.exit_code == 2 and text in result.output, result.output
    assert runner.invoke(main, ["feed", "shipping-confirmation", str(tmp_path / "nope.txt"),
                                "--db", sqlite_url]).exit_code == 2
    assert runner.invoke(main, ["feed", "returns", str(empty), "--db", sqlite_url]).exit_code == 2
    result = runner.invoke(main, ["feed", "cancellation", str(dup), "--json", "--db", sqlite_url])
    assert result.exit_code == 2
    assert json.loads(result.stdout)["error"]["code"] == "file-rejected"


def test_feed_time_before_the_ledger_clock(sqlite_url, tmp_path):
    # The setup's tick moved the ledger's clock to 10:00; order 1's hold expired at 09:30.
    data = tsv(SHIP_HEADER, [oid(1), "", "", "2026-03-02", "DHL", "", "", ""])
    with Ledger(sqlite_url) as led:
        setup(led, (1, None, True))
        # by default only the order's own time counts: a shipment dated before the hold
        # expiry the ledger already applied is a late fact, kept as a conflict
        report = process_feed(led, "shipping-confirmation", data,
                              at=datetime.fromisoformat(at(10)))
        assert by_line(report) == {2: ("rejected", None, "deadline-passed")}
        assert [(c["order_id"], c["type"], c["deadline"]) for c in led.conflicts()] == [
            (oid(1), "ship", "HoldExpired")]
        # dated after the order's latest fact but before the clock: accepted
        report = process_feed(led, "shipping-confirmation", data,
                              at=datetime.fromisoformat(at(45)))
        assert by_line(report) == {2: ("accepted", None, None)}
        assert view(led, 1)["status"] == "Shipped"
    # advance_clock: the feed continues one time-sorted stream, so a time before the
    # ledger's clock is rejected
    with Ledger(str(tmp_path / "stream.db"), advance_clock=True) as led:
        setup(led, (1, None, True))
        head = led.head()
        report = process_feed(led, "shipping-confirmation", data,
                              at=datetime.fromisoformat(at(45)))
        assert by_line(report) == {2: ("rejected", None, "time-backwards")}
        assert led.head() == head


# --- cancellation -------------------------------------------------------------------------


def test_cancellation_whole_orders_and_items(ledger):
    setup(ledger, (1, None, True), (2, None, True), (3, [item(A, "MUG-1", 3), item(B, "CUP-1", 1)],
                                                     True), (4, None, False), (5, None, True))
    ledger.execute(cmd("ship", at(hours=2), order_id=oid(3), carrier_code="DHL",
                       ship_date="2026-03-02", items=[{"order_item_id": A, "quantity": 1}]))
    ledger.execute(cmd("cancel", at(hours=2), order_id=oid(5), by="seller", reason="NoInventory"))
    data = tsv(CANCEL_HEADER,
               [oid(1), "NoInventory", ""],                 # 2 whole order
               [oid(2), "CustomerExchange", B],             # 3 one item -> adjustment Exchange
               [oid(3), "BuyerCanceled", A],                # 4 what is left of A: 2 of 3
               [oid(3), "PricingError", A],                 # 5 A again in this feed
               [oid(2), "WrongReason", ""],                 # 6 whole order, bad reason (ledger)
               [oid(2), "WrongReason", A],                  # 7 item, bad reason (feed)
               [oid(9), "NoInventory", ""],                 # 8 unknown order
               [oid(9), "NoInventory", A],                  # 9 unknown order, item level
               [oid(2), "NoInventory", "99999999999999"],   # 10 unknown item
               [oid(4), "NoInventory", ""],                 # 11 Pending order
               [oid(4), "NoInventory", A],                  # 12 Pending order, item level
               [oid(5), "NoInventory", ""],                 # 13 already canceled
               [oid(5), "NoInventory", A],                  # 14 already canceled, item level
               [oid(2), "", ""],                            # 15 no reason: acknowledged
               [oid(2), "", A],                             # 16 no reason, an item
               )
    report = process_feed(ledger, "cancellation", data, at=NOW)
    assert by_line(report) == {
        2: ("accepted", None, None),
        3: ("accepted", None, None),
        4: ("accepted", None, None),
        5: ("rejected", "amazon-order-item-code", "nothing-to-cancel"),
        6: ("rejected", "cancellation-reason-code", "bad-reason"),
        7: ("rejected", "cancellation-reason-code", "bad-reason"),
        8: ("rejected", "order-id", "unknown-order"),
        9: ("rejected", "order-id", "unknown-order"),
        10: ("rejected", "amazon-order-item-code", "unknown-item"),
        11: ("rejected", "order-id", "order-pending"),
        12: ("rejected", "order-id", "order-pending"),
        13: ("rejected", "order-id", "order-canceled"),
        14: ("rejected", "order-id", "order-canceled"),
        15: ("accepted", None, None),
        16: ("rejected", "cancellation-reason-code", "missing-value"),
    }
    assert report.lines[13].command["type"] == "acknowledge"
    assert "line 4 of this feed" in report.lines[3].message
    assert report.lines[0].command["type"] == "cancel"
    assert report.lines[1].command["items"] == [
        {"order_item_id": B, "reason": "Exchange", "quantity_cancelled": 1}]
    assert view(ledger, 1)["status"] == "Canceled" and view(ledger, 1)["cancel_reason"] == "NoInventory"
    assert view(ledger, 2)["status"] == "Unshipped" and qty(ledger, 2) == [(2, 0, 0), (1, 0, 1)]
    assert view(ledger, 3)["status"] == "PartiallyShipped" and qty(ledger, 3) == [(3, 1, 2), (1, 0, 0)]
    adjusted = [e for _, _, e in ledger.read_events() if type(e).__name__ == "OrderAdjusted"]
    assert [(a.items[0].reason, a.items[0].quantity_cancelled) for a in adjusted] == [
        ("Exchange", 1), ("BuyerCanceled", 2)]

    # resubmitted: the item-level lines are duplicates, not "nothing left to cancel"
    head = ledger.head()
    again = process_feed(ledger, "cancellation", data, at=datetime.fromisoformat(at(days=2)))
    assert [ln.status for ln in again.lines[:3]] == ["duplicate"] * 3
    assert again.accepted == 0 and ledger.head() == head


@pytest.mark.parametrize("cancel_reason, adjustment_reason", sorted(CANCEL_TO_ADJUSTMENT_REASON.items()))
def test_item_cancel_reason_mapping(cancel_reason, adjustment_reason):
    from ledger.rules import ADJUSTMENT_REASONS, SELLER_CANCEL_REASONS

    assert cancel_reason in SELLER_CANCEL_REASONS and adjustment_reason in ADJUSTMENT_REASONS
    info = OrderInfo("Unshipped", "SEK", {A: 2, B: 0})
    out = build_commands("cancellation", tsv(CANCEL_HEADER, [oid(1), cancel_reason, A]),
                         at=NOW, lookup=lambda _: info)
    assert out[0].command == {
        "type": "adjust", "at": NOW.isoformat(), "command_id": out[0].command_id,
        "order_id": oid(1),
        "items": [{"order_item_id": A, "reason": adjustment_reason, "quantity_cancelled": 2}]}
    assert out[0].command_id.startswith("feed:cancellation:") and out[0].command_id.endswith(":2")


def test_item_cancel_of_a_fully_shipped_item_is_rejected_in_the_feed():
    info = OrderInfo("PartiallyShipped", "SEK", {A: 0, B: 1})
    out = build_commands("cancellation", tsv(CANCEL_HEADER, [oid(1), "NoInventory", A]),
                         at=NOW, lookup=lambda _: info)
    assert (out[0].status, out[0].column, out[0].code) == (
        "rejected", "amazon-order-item-code", "nothing-to-cancel")


# --- adjustment ---------------------------------------------------------------------------


def test_adjustment_feed(sqlite_url):
    with Ledger(sqlite_url) as led:
        setup(led, (1, None, True), (2, None, True))
        led.execute(cmd("ship", at(hours=2), order_id=oid(1), carrier_code="DHL",
                        ship_date="2026-03-02"))
        data = tsv(
            ADJ_HEADER,
            [oid(1), A, "CustomerReturn", "SEK", "398.00", "79.60", "", "", ""],      # 2 refund
            [oid(2), A, "NoInventory", "SEK", "199", "", "", "", "1"],                # 3 cancel 1
            [oid(2), B, "NoInventory", "EUR", "99.00", "", "", "", "1"],              # 4 currency
            [oid(2), B, "NoInventory", "SEK", "12,50", "", "", "", ""],               # 5 comma
            [oid(2), B, "NoInventory", "SEK", "abc", "", "", "", ""],                 # 6 not decimal
            [oid(2), B, "NoInventory", "SEK", "", "", "NaN", "", ""],                 # 7 NaN
            [oid(2), B, "NoInventory", "SEK", "-5.00", "", "", "", ""],               # 8 negative
            [oid(2), B, "NoInventory", "SEK", "100.00", "", "", "", ""],              # 9 > charged
            [oid(2), B, "NoInventory", "SEK", "", "", "", "", "2"],                   # 10 qty too big
            [oid(2), B, "NoInventory", "SEK", "", "", "", "", "x"],                   # 11 bad qty
            [oid(2), B, "Nope", "SEK", "1.00", "", "", "", ""],                       # 12 bad reason
            [oid(2), B, "NoInventory", "", "1.00", "", "", "", ""],                   # 13 no currency
            [oid(2), B, "NoInventory", "SEK", "", "", "", "", ""],                    # 14 nothing
            [oid(9), B, "NoInventory", "SEK", "1.00", "", "", "", ""],                # 15 unknown
            [oid(2), "", "NoInventory", "SEK", "1.00", "", "", "", ""],               # 16 no item
            [oid(2), B, "NoInventory", "SEK", "", "", "29.00", "", ""],               # 17 shipping
        )
        report = process_feed(led, "adjustment", data, at=NOW)
        assert by_line(report) == {
            2: ("accepted", None, None),
            3: ("accepted", None, None),
            4: ("rejected", "currency", "wrong-currency"),
            5: ("rejected", "item-price-adj", "bad-amount"),
            6: ("rejected", "item-price-adj", "bad-amount"),
            7: ("rejected", "shipping-price-adj", "bad-amount"),
            8: ("rejected", "item-price-adj", "bad-amount"),
            9: ("rejected", "item-price-adj", "refund-too-large"),
            10: ("rejected", "quantity-cancelled", "quantity-too-large"),
            11: ("rejected", "quantity-cancelled", "bad-quantity"),
            12: ("rejected", "adjustment-reason-code", "bad-reason"),
            13: ("rejected", "currency", "missing-value"),
            14: ("rejected", "order-item-id", "empty-adjustment"),
            15: ("rejected", "order-id", "unknown-order"),
            16: ("rejected", "order-item-id", "missing-value"),
            17: ("accepted", None, None),
        }
        assert "not the order's currency SEK" in report.lines[2].message
        assert view(led, 1)["status"] == "Shipped"
        assert qty(led, 2) == [(2, 0, 1), (1, 0, 0)]
        refunds = [e.items[0] for _, _, e in led.read_events() if type(e).__name__ == "OrderAdjusted"]
        assert [(r.item_price_adj, r.item_tax_adj, r.shipping_price_adj) for r in refunds] == [
            (Decimal("398.00"), Decimal("79.60"), 0), (199, 0, 0), (0, 0, 29)]


# --- the command line and the examples ------------------------------------------------------


def _run(args: list[str], code: int) -> str:
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result.stdout


def test_cli_report_text_and_json(db_url, tmp_path):
    with Ledger(db_url) as led:
        setup(led, (1, None, True))
    path = tmp_path / "ship.txt"
    path.write_bytes(tsv(SHIP_HEADER,
                         [oid(1), A, "2", "2026-03-02", "PostNord", "", "SE1", ""],
                         [oid(1), B, "3", "2026-03-02", "PostNord", "", "SE2", ""]))
    base = ["feed", "shipping-confirmation", str(path), "--db", db_url]
    out = _run(base + ["--now", NOW.isoformat()], 1)
    assert "lines processed:   2" in out and "lines accepted:    1" in out
    assert "lines rejected:    1" in out
    assert "line 3: rejected, column quantity: [quantity-too-large]" in out
    report = json.loads(_run(base + ["--json", "--now", at(days=2)], 1))
    assert (report["processed"], report["accepted"], report["duplicate"], report["rejected"]) == (
        2, 0, 1, 1)
    assert report["lines"][0]["status"] == "duplicate"
    assert {k: report["lines"][1][k] for k in ("line", "status", "column", "code")} == {
        "line": 3, "status": "rejected", "column": "quantity", "code": "quantity-too-large"}
    assert "only 1 left" in report["lines"][1]["message"]


@pytest.mark.parametrize("base", ["fresh", "walkthrough"])
def test_examples_apply_cleanly(tmp_path, base):
    db = str(tmp_path / "examples.db")
    if base == "walkthrough":
        walkthrough = EXAMPLES.parent / "walkthrough.jsonl"
        if not walkthrough.exists():
            pytest.skip("examples/walkthrough.jsonl is not there")
        _run(["apply", str(walkthrough), "--db", db, "-q"], 0)
    _run(["apply", str(EXAMPLES / "orders.jsonl"), "--db", db], 0)
    for feed, file, now in (
            ("shipping-confirmation", "shipping-confirmation.txt", "2026-04-23T10:00:00+02:00"),
            ("cancellation", "cancellation.txt", "2026-04-23T11:00:00+02:00"),
            ("adjustment", "adjustment.txt", "2026-04-24T09:00:00+02:00")):
        report = json.loads(_run(["feed", feed, str(EXAMPLES / file), "--db", db, "--now", now,
                                  "--json"], 0))
        assert report["rejected"] == 0 and report["accepted"] == report["processed"] > 0
    report = json.loads(_run(["feed", "shipping-confirmation",
                              str(EXAMPLES / "shipping-confirmation-with-errors.txt"), "--db", db,
                              "--now", "2026-04-24T10:00:00+02:00", "--json"], 1))
    assert [(ln["line"], ln["status"], ln["column"], ln["code"]) for ln in report["lines"]] == [
        (2, "accepted", None, None),
        (3, "rejected", "quantity", "quantity-too-large"),
        (4, "rejected", "carrier-name", "missing-carrier-name"),
        (5, "rejected", "order-id", "unknown-order"),
        (6, "rejected", "ship-date", "bad-date"),
        (7, "rejected", "quantity", "bad-quantity"),
        (8, "rejected", "order-id", "missing-value"),
    ]
    with Ledger(db) as led:
        statuses = {n: led.order(f"203-555000{n}-000000{n}").status for n in range(1, 7)}
    assert statuses == {1: "Shipped", 2: "Shipped", 3: "Canceled", 4: "Shipped", 5: "Shipped",
                        6: "PartiallyShipped"}


def test_feed_help():
    out = _run(["feed", "--help"], 0)
    for name in ("shipping-confirmation", "cancellation", "adjustment"):
        assert name in out
        assert "--now" in _run(["feed", name, "--help"], 0)
