"""Feeds as real files are (issue 15, item 5): the TemplateType row, encodings,
carrier-name without carrier-code, NULL tracking, gift-wrap and promotion
adjustments -- column by column, through the CLI (docs/feeds.md)."""

from __future__ import annotations

import gzip
import json
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import msgspec.structs
import pytest
from click.testing import CliRunner

from builders import at, cmd, item, lines, oid, place
from ledger.application import Ledger
from ledger.feeds import FeedError, decode_feed, read_feed, read_feed_file
from order_ledger.cli import main

NOW = datetime.fromisoformat(at(days=1))
A, B = "10000000000001", "10000000000002"

SHIP_HEADER = ["order-id", "order-item-id", "quantity", "ship-date", "carrier-code",
               "carrier-name", "tracking-number", "ship-method"]
CANCEL_HEADER = ["order-id", "cancellation-reason-code", "amazon-order-item-code"]
ADJ_HEADER = ["order-id", "order-item-id", "adjustment-reason-code", "currency",
              "item-price-adj", "item-tax-adj", "shipping-price-adj", "shipping-tax-adj",
              "gift-wrap-price-adj", "gift-wrap-tax-adj", "item-promotion-adj",
              "ship-promotion-adj", "quantity-cancelled"]

TEMPLATES = {"shipping-confirmation": ["TemplateType=OrderFulfillment", "Version=2011.1102"],
             "cancellation": ["TemplateType=OrderCancellation", "Version=1.0"],
             "adjustment": ["TemplateType=OrderAdjustment", "Version=1.0"]}

#: encoding name for the test -> (python codec, BOM, what the report says)
ENCODINGS = {"utf-8": ("utf-8", b"", "utf-8"),
             "utf-8-bom": ("utf-8", b"\xef\xbb\xbf", "utf-8-sig"),
             "iso-8859-1": ("latin-1", b"", "cp1252"),
             "windows-1252": ("cp1252", b"", "cp1252")}


def tsv(*rows: list[str], encoding: str = "utf-8", bom: bytes = b"") -> bytes:
    return bom + "".join("\t".join(r) + "\r\n" for r in rows).encode(encoding)


def setup(led: Ledger, orders: dict[int, list[dict]]) -> None:
    cmds = []
    for k, (n, items) in enumerate(orders.items()):
        cmds.append(place(oid(n), at(k), items))
        cmds.append(cmd("verify-payment", at(k + 0.5), order_id=oid(n), outcome="verified"))
    cmds.append(cmd("tick", at(hours=1)))
    outs = list(led.apply_lines(lines(*cmds)))
    assert all(o.ok for o in outs), [o.error for o in outs if not o.ok]


def two_items(**extra) -> list[dict]:
    return [item(A, "MUG-1", 2, "398.00", item_tax="79.60", **extra),
            item(B, "CUP-1", 1, "99.00", shipping_price="29.00")]


def run(db: str, path: Path, feed: str, *more: str) -> tuple[int, dict | str]:
    result = CliRunner().invoke(main, ["feed", feed, str(path), "--db", db,
                                       "--now", NOW.isoformat(), *more])
    if "--json" in more:
        try:
            return result.exit_code, json.loads(result.stdout)
        except ValueError:
            pass
    return result.exit_code, result.output


def events(db: str, name: str) -> list:
    with Ledger(db) as led:
        return [e for _, _, e in led.read_events() if type(e).__name__ == name]


def by_line(report: dict) -> dict[int, tuple]:
    return {ln["line"]: (ln["status"], ln["column"], ln["code"]) for ln in report["lines"]}


# --- 1. the TemplateType row ---------------------------------------------------------------


def _feed_rows(feed: str) -> tuple[list[str], list[list[str]]]:
    if feed == "shipping-confirmation":
        return SHIP_HEADER, [[oid(1), A, "1", "2026-03-02", "PostNord", "", "SE1", ""],
                             ["bad", "", "", "2026-03-02", "PostNord", "", "", ""]]
    if feed == "cancellation":
        return CANCEL_HEADER, [[oid(1), "NoInventory", ""], ["bad", "NoInventory", ""]]
    return ADJ_HEADER, [[oid(1), A, "CustomerReturn", "SEK", "10.00", "", "", "", "", "", "",
                         "", ""],
                        ["bad", A, "CustomerReturn", "SEK", "1", "", "", "", "", "", "", "", ""]]


@pytest.mark.parametrize("template", [True, False], ids=["template-row", "no-template-row"])
@pytest.mark.parametrize("feed", list(TEMPLATES))
def test_template_row_is_skipped_on_every_feed(tmp_path, sqlite_url, feed, template):
    with Ledger(sqlite_url) as led:
        setup(led, {1: two_items()})
    header, rows = _feed_rows(feed)
    first = [TEMPLATES[feed]] if template else []
    path = tmp_path / "feed.txt"
    path.write_bytes(tsv(*first, header, *rows))
    code, report = run(sqlite_url, path, feed, "--json")
    assert code == 1  # the "bad" line
    shift = 1 if template else 0
    assert by_line(report) == {2 + shift: ("accepted", None, None),
                               3 + shift: ("rejected", "order-id", "bad-order-id")}
    if template:
        name, version = (c.split("=")[1] for c in TEMPLATES[feed])
        assert report["template"] == {"line": 1, "template_type": name, "version": version}
    else:
        assert report["template"] is None
    # the text report names the skipped row; line numbers stay those of the file
    path.write_bytes(tsv(*first, header, rows[1]))
    code, text = run(sqlite_url, path, feed)
    assert code == 1
    assert f"line {2 + shift}: rejected, column order-id" in text
    assert ("template row:      line 1 skipped (TemplateType=" in text) == template


def test_template_row_only_before_the_header(tmp_path, sqlite_url):
    """Blank lines before it are fine; after the header it is an ordinary (bad) line;
    a template row and no header is an empty file."""
    data = tsv([], ["TemplateType=OrderFulfillment", "Version=1.0", "", ""],
               SHIP_HEADER, [oid(1), A, "1", "2026-03-02", "PostNord", "", "", ""])
    got = read_feed_file("shipping-confirmation", data)
    assert got.template == {"line": 2, "template_type": "OrderFulfillment", "version": "1.0"}
    assert [r.line for r in got.rows] == [4]
    late = read_feed("shipping-confirmation",
                     tsv(SHIP_HEADER, ["TemplateType=OrderFulfillment", "Version=1.0"]))
    assert late[0].values["order-id"] == "TemplateType=OrderFulfillment"
    with pytest.raises(FeedError, match="empty"):
        read_feed("cancellation", tsv(TEMPLATES["cancellation"]))
    path = tmp_path / "f.txt"
    path.write_bytes(tsv(TEMPLATES["cancellation"]))
    code, text = run(sqlite_url, path, "cancellation")
    assert code == 2 and "empty" in text


# --- 2. encodings ------------------------------------------------------------------------


@pytest.mark.parametrize("template", [True, False], ids=["template-row", "no-template-row"])
@pytest.mark.parametrize("enc", list(ENCODINGS))
def test_each_encoding_is_read_correctly(tmp_path, sqlite_url, enc, template):
    codec, bom, reported = ENCODINGS[enc]
    carrier = "Åkerlund Frakt – €" if enc == "windows-1252" else "Åkerlund Frakt ÄÖü ß"
    method = "Först klass"
    with Ledger(sqlite_url) as led:
        setup(led, {1: two_items()})
    first = [TEMPLATES["shipping-confirmation"]] if template else []
    path = tmp_path / "feed.txt"
    path.write_bytes(tsv(*first, SHIP_HEADER,
                         [oid(1), "", "", "2026-03-02", "Other", carrier, "SE1", method],
                         encoding=codec, bom=bom))
    code, report = run(sqlite_url, path, "shipping-confirmation", "--json")
    assert code == 0, report
    assert report["encoding"] == reported
    assert by_line(report) == {3 if template else 2: ("accepted", None, None)}
    [shipped] = events(sqlite_url, "ShipmentConfirmed")
    assert (shipped.carrier_name, shipped.ship_method) == (carrier, method)
    names = {"utf-8": "UTF-8", "utf-8-sig": "UTF-8 with BOM", "cp1252": "Windows-1252"}
    code, text = run(sqlite_url, path, "shipping-confirmation")  # already processed
    assert code == 0 and f"encoding:          {names[reported]}" in text


def test_decode_feed_detects_and_forces():
    text = "order-id\tcarrier-name\nx\tGöteborg\n"
    assert decode_feed(text.encode("utf-8")) == (text, "utf-8")
    assert decode_feed(b"\xef\xbb\xbf" + text.encode("utf-8")) == (text, "utf-8-sig")
    assert decode_feed(text.encode("latin-1")) == (text, "cp1252")
    assert decode_feed(text.encode("latin-1"), "latin-1") == (text, "iso8859-1")
    assert decode_feed(b"\xef\xbb\xbf" + text.encode("utf-8"), "utf-8") == (text, "utf-8-sig")
    with pytest.raises(FeedError, match="not utf-8"):
        decode_feed(text.encode("latin-1"), "utf-8")
    # a UTF-8 line and a Latin-1 line: not guessed, the whole file is refused
    with pytest.raises(FeedError, match="mixes encodings: line 1 .* byte 9 \\(line 2\\)"):
        decode_feed("a\tGö\n".encode() + "b\tGö\n".encode("latin-1"))
    assert decode_feed("a\tGö\n".encode() + "b\tGö\n".encode("latin-1"), "cp1252")[1] == "cp1252"
    with pytest.raises(FeedError, match="byte-order mark but byte 5"):
        decode_feed(b"\xef\xbb\xbfa\t\xf6\n")
    with pytest.raises(FeedError, match="unknown encoding"):
        decode_feed(b"x", "klingon")
    with pytest.raises(FeedError, match="UTF-16"):
        decode_feed(text.encode("utf-16"))
    with pytest.raises(FeedError, match="UTF-16"):
        decode_feed(text.encode("utf-16-le"))
    with pytest.raises(FeedError, match="gzip"):
        decode_feed(gzip.compress(text.encode("latin-1") * 50))
    with pytest.raises(FeedError, match="not text|binary"):
        decode_feed(bytes(range(1, 9)) * 40 + b"\x81")


@pytest.mark.parametrize("feed", list(TEMPLATES))
def test_encoding_option_on_every_feed(tmp_path, sqlite_url, feed):
    with Ledger(sqlite_url) as led:
        setup(led, {1: two_items()})
        head = led.head()
    header, rows = _feed_rows(feed)
    path = tmp_path / "feed.txt"
    # a Latin-1 "é" in an ignored extra column: the file is not UTF-8
    path.write_bytes(tsv(header + ["note"], rows[0] + ["café"], encoding="latin-1"))
    runner = CliRunner()
    for enc, expect in (("klingon", "unknown encoding"), ("utf-16", "not supported"),
                        ("rot13", "not supported")):
        result = runner.invoke(main, ["feed", feed, str(path), "--db", sqlite_url,
                                      "--encoding", enc])
        assert result.exit_code == 2 and expect in result.output, result.output
        assert "--encoding" in result.output
    code, text = run(sqlite_url, path, feed, "--encoding", "utf-8")
    assert code == 2 and "not utf-8" in text and "nothing applied" in text
    with Ledger(sqlite_url) as led:
        assert led.head() == head
    code, report = run(sqlite_url, path, feed, "--encoding", "latin-1", "--json")
    assert code == 0 and report["encoding"] == "iso8859-1" and report["accepted"] == 1


def test_wide_and_binary_files_stay_whole_file_errors(tmp_path, sqlite_url):
    text = "\t".join(SHIP_HEADER) + "\n" + "\t".join(
        [oid(1), "", "", "2026-03-02", "PostNord", "", "", ""]) + "\n"
    for name, data, expect in (("utf16", text.encode("utf-16"), "UTF-16"),
                               ("utf32", text.encode("utf-32-le"), "UTF-32"),
                               ("gz", gzip.compress(text.encode()), "gzip")):
        path = tmp_path / name
        path.write_bytes(data)
        code, out = run(sqlite_url, path, "shipping-confirmation")
        assert code == 2 and expect in out and "nothing applied" in out, out


# --- 3. carrier-code optional with carrier-name ---------------------------------------------


def test_carrier_name_without_carrier_code(tmp_path, sqlite_url):
    with Ledger(sqlite_url) as led:
        setup(led, {1: two_items(), 2: two_items(), 3: two_items()})
    path = tmp_path / "feed.txt"
    path.write_bytes(tsv(SHIP_HEADER,
                         [oid(1), "", "", "2026-03-02", "", "Bring", "370001", ""],
                         [oid(2), "", "", "2026-03-02", "", "", "370002", ""],
                         [oid(2), "", "", "2026-03-02", "DHL", "", "JV1", ""]))
    code, report = run(sqlite_url, path, "shipping-confirmation", "--json")
    assert code == 1
    assert by_line(report) == {2: ("accepted", None, None),
                               3: ("rejected", "carrier-code", "missing-value"),
                               4: ("accepted", None, None)}
    assert "carrier-name" in report["lines"][1]["hint"]
    # no carrier-code column at all: carrier-name alone is enough
    path.write_bytes(tsv(["order-id", "ship-date", "carrier-name", "tracking-number"],
                         [oid(3), "2026-03-02", "Schenker", "SCH1"]))
    code, report = run(sqlite_url, path, "shipping-confirmation", "--json")
    assert code == 0
    got = [(e.order_id, e.carrier_code, e.carrier_name) for e in
           events(sqlite_url, "ShipmentConfirmed")]
    assert got == [(oid(1), "Other", "Bring"), (oid(2), "DHL", None),
                   (oid(3), "Other", "Schenker")]
    # neither column: the whole file
    path.write_bytes(tsv(["order-id", "ship-date"], [oid(3), "2026-03-02"]))
    code, text = run(sqlite_url, path, "shipping-confirmation")
    assert code == 2 and "carrier-code (or carrier-name)" in text


# --- 4. NULL tracking ---------------------------------------------------------------------


def test_null_tracking_number_is_no_tracking(tmp_path, db_url):
    with Ledger(db_url) as led:
        setup(led, {1: two_items(), 2: two_items(), 3: two_items()})
    path = tmp_path / "feed.txt"
    path.write_bytes(tsv(SHIP_HEADER,
                         [oid(1), "", "", "2026-03-02", "PostNord", "", "NULL", ""],
                         [oid(2), "", "", "2026-03-02", "PostNord", "", "null", ""],
                         [oid(3), "", "", "2026-03-02", "PostNord", "", "SE3", ""]))
    code, report = run(db_url, path, "shipping-confirmation", "--json")
    assert code == 0 and report["accepted"] == 3
    assert [e.tracking_number for e in events(db_url, "ShipmentConfirmed")] == [None, None, "SE3"]
    result = CliRunner().invoke(main, ["metrics", "--db", db_url, "--views",
                                       str(tmp_path / "views.db"), "--json",
                                       "--at", at(days=2)])
    assert result.exit_code == 0, result.output
    rate = json.loads(result.stdout)["valid_tracking_rate"]
    assert (rate["numerator"], rate["denominator"]) == (1, 3)


# --- 5. gift wrap and promotion adjustments ---------------------------------------------------


def adj(n: int, item_id: str, **amounts: str) -> list[str]:
    row = {c: "" for c in ADJ_HEADER}
    row.update({"order-id": oid(n), "order-item-id": item_id,
                "adjustment-reason-code": "CustomerReturn", "currency": "SEK"})
    row.update({k.replace("_", "-"): v for k, v in amounts.items()})
    return [row[c] for c in ADJ_HEADER]


def test_adjustment_gift_wrap_and_promotion_columns(tmp_path, db_url):
    with Ledger(db_url) as led:
        setup(led, {1: two_items(gift_wrap_price="30.00", gift_wrap_tax="7.50"),
                    2: two_items()})
    path = tmp_path / "adj.txt"
    path.write_bytes(tsv(
        TEMPLATES["adjustment"], ADJ_HEADER,
        adj(1, A, gift_wrap_price_adj="20.00"),                        # 3 gift wrap only
        adj(1, A, gift_wrap_price_adj="10.01"),                        # 4 over the 30.00
        adj(1, A, gift_wrap_tax_adj="7.50"),                           # 5 the tax
        adj(1, A, item_price_adj="100.00", item_promotion_adj="-15.00"),  # 6 net 85
        adj(1, A, item_promotion_adj="90.00"),                         # 7 > 100 - 15
        adj(1, B, shipping_price_adj="29.00", ship_promotion_adj="5"),  # 8
        adj(1, B, ship_promotion_adj="24.01"),                         # 9 > 29 - 5
        adj(2, A, gift_wrap_price_adj="5.00"),                         # 10 none charged
        adj(1, A, gift_wrap_tax_adj="1,00"),                           # 11 bad amount
    ))
    code, report = run(db_url, path, "adjustment", "--json")
    assert code == 1
    assert by_line(report) == {
        3: ("accepted", None, None),
        4: ("rejected", "gift-wrap-price-adj", "refund-too-large"),
        5: ("accepted", None, None),
        6: ("accepted", None, None),
        7: ("rejected", "item-promotion-adj", "promotion-too-large"),
        8: ("accepted", None, None),
        9: ("rejected", "ship-promotion-adj", "promotion-too-large"),
        10: ("rejected", "gift-wrap-price-adj", "refund-too-large"),
        11: ("rejected", "gift-wrap-tax-adj", "bad-amount"),
    }
    hints = {ln["line"]: ln.get("hint", "") for ln in report["lines"]}
    assert "refund at most 10.00" in hints[4]
    assert "gift wrap charge is not in the ledger" in hints[10]
    got = [(a.order_item_id, a.gift_wrap_price_adj, a.gift_wrap_tax_adj, a.item_price_adj,
            a.item_promotion_adj, a.shipping_price_adj, a.ship_promotion_adj)
           for e in events(db_url, "OrderAdjusted") for a in e.items]
    D = Decimal
    assert got == [(A, D("20.00"), 0, 0, 0, 0, 0), (A, 0, D("7.50"), 0, 0, 0, 0),
                   (A, 0, 0, D("100.00"), D("15.00"), 0, 0),
                   (B, 0, 0, 0, 0, D("29.00"), D("5"))]
    with Ledger(db_url) as led:
        order = led.order(oid(1))
        assert order.items[A].refunded == [D("100.00"), 0, 0, 0, D("20.00"), D("7.50")]
        assert order.items[A].promotions == [D("15.00"), 0]
        assert order.items[B].promotions == [0, D("5")]


def test_adjust_command_and_old_command_files(tmp_path, sqlite_url):
    """The adjust command carries the new components; lines without them stay valid."""
    with Ledger(sqlite_url) as led:
        setup(led, {1: two_items(gift_wrap_price="30.00")})
    runner = CliRunner()
    base = ["adjust", oid(1), "--item", A, "--reason", "CustomerReturn", "--db", sqlite_url,
            "--now", at(days=1)]
    ok = runner.invoke(main, base + ["--gift-wrap-price-adj", "30.00"])
    assert ok.exit_code == 0, ok.output
    again = runner.invoke(main, base + ["--gift-wrap-price-adj", "0.01", "--now", at(days=1.1)])
    assert again.exit_code == 1 and "refund-too-large" in again.output
    promo = runner.invoke(main, base + ["--item-promotion-adj", "1", "--now", at(days=1.2)])
    assert promo.exit_code == 1 and "promotion-too-large" in promo.output
    old = tmp_path / "old.jsonl"
    old.write_text(json.dumps(cmd("adjust", at(days=1.3), order_id=oid(1), items=[{
        "order_item_id": A, "reason": "CustomerReturn", "item_price_adj": "1.00"}])) + "\n")
    assert runner.invoke(main, ["apply", str(old), "--db", sqlite_url]).exit_code == 0
    [first, second] = events(sqlite_url, "OrderAdjusted")
    assert first.items[0].gift_wrap_price_adj == Decimal("30.00")
    assert second.items[0].gift_wrap_price_adj == 0


# --- acknowledgement rows ------------------------------------------------------------------


def test_acknowledgement_rows_cancel_nothing(tmp_path, db_url):
    with Ledger(db_url) as led:
        setup(led, {1: two_items(), 2: two_items(), 3: two_items()})
        led.execute(cmd("cancel", at(hours=2), order_id=oid(3), by="seller",
                        reason="NoInventory"))
    header = ["order-id", "merchant-order-id", "cancellation-reason-code",
              "amazon-order-item-code"]
    path = tmp_path / "ack.txt"
    path.write_bytes(tsv(["TemplateType=OrderAcknowledgement", "Version=1.0"], header,
                         [oid(1), "WEB-1001", "", ""],          # 3 acknowledged, seller's id
                         [oid(2), "", "", ""],                  # 4 acknowledged
                         [oid(2), "", "", A],                   # 5 an item without a reason
                         [oid(3), "WEB-1003", "", ""],          # 6 canceled order
                         [oid(9), "", "", ""],                  # 7 unknown order
                         [oid(2), "", "NoInventory", B],        # 8 a real item cancel
                         [oid(1), "W" * 201, "", ""]))          # 9 seller's id too long
    code, report = run(db_url, path, "cancellation", "--json")
    assert code == 1
    assert by_line(report) == {3: ("accepted", None, None), 4: ("accepted", None, None),
                               5: ("rejected", "cancellation-reason-code", "missing-value"),
                               6: ("rejected", "order-id", "order-canceled"),
                               7: ("rejected", "order-id", "unknown-order"),
                               8: ("accepted", None, None),
                               9: ("rejected", "merchant-order-id", "invalid-field")}
    assert [ln.get("command") for ln in report["lines"][:2]] == ["acknowledge"] * 2
    assert report["lines"][0]["events"] == ["OrderAcknowledged"]
    acks = events(db_url, "OrderAcknowledged")
    assert [(e.order_id, e.merchant_order_id, e.actor) for e in acks] == [
        (oid(1), "WEB-1001", "seller"), (oid(2), None, "seller")]
    with Ledger(db_url) as led:
        one, two = led.order(oid(1)), led.order(oid(2))
        assert (one.status, one.acknowledged, one.merchant_order_id) == (
            "Unshipped", True, "WEB-1001")
        assert two.status == "Unshipped"
        assert [(it.canceled, it.shipped) for it in two.items.values()] == [(0, 0), (1, 0)]
    # the same file again: duplicates; the ledger's own check is clean
    code, report = run(db_url, path, "cancellation", "--json")
    assert [ln["status"] for ln in report["lines"][:2]] == ["duplicate"] * 2
    result = CliRunner().invoke(main, ["check", "--db", db_url])
    assert result.exit_code == 0, result.output
    # the acknowledge command in a command file
    line = tmp_path / "ack.jsonl"
    line.write_text(json.dumps(cmd("acknowledge", at(days=1.5), order_id=oid(1),
                                   merchant_order_id="WEB-1001b")) + "\n")
    result = CliRunner().invoke(main, ["apply", str(line), "--db", db_url])
    assert result.exit_code == 0, result.output
    with Ledger(db_url) as led:
        assert led.order(oid(1)).merchant_order_id == "WEB-1001b"


# --- a re-upload with another tracking number: a correction, not a second shipment -----------


def test_reupload_with_another_tracking_number_corrects_it(tmp_path, db_url):
    with Ledger(db_url) as led:
        setup(led, {1: two_items(), 2: two_items(), 3: two_items()})
    first = tmp_path / "first.txt"
    first.write_bytes(tsv(SHIP_HEADER,
                          [oid(1), "", "", "2026-03-02", "PostNord", "", "SE1", ""],
                          [oid(2), A, "2", "2026-03-02", "PostNord", "", "SE2", ""],
                          [oid(3), "", "", "2026-03-02", "PostNord", "", "SE3", ""]))
    code, report = run(db_url, first, "shipping-confirmation", "--json")
    assert code == 0 and report["accepted"] == 3
    built = CliRunner().invoke(main, ["metrics", "--db", db_url, "--views",
                                      str(tmp_path / "views.db"), "--json", "--at", at(days=2)])
    assert json.loads(built.stdout)["valid_tracking_rate"]["numerator"] == 3
    second = tmp_path / "second.txt"
    second.write_bytes(tsv(["TemplateType=OrderFulfillment", "Version=2011.1102"], SHIP_HEADER,
                           [oid(1), "", "", "2026-03-02", "DHL", "", "JJD0001", "Paket"],
                           [oid(2), A, "2", "2026-03-02", "PostNord", "", "SE2-NEW", ""],
                           [oid(2), B, "1", "2026-03-02", "PostNord", "", "SE2-B", ""],
                           [oid(3), "", "", "2026-03-02", "PostNord", "", "SE3", ""],
                           [oid(3), "", "", "2026-03-02", "PostNord", "", "NULL", ""]))
    code, report = run(db_url, second, "shipping-confirmation", "--json")
    got = by_line(report)
    # line numbers: TemplateType 1, header 2, rows from 3
    assert got[3] == ("accepted", None, None) and report["lines"][0]["events"] == [
        "TrackingCorrected"]
    assert got[4][0] == "accepted"                                  # item A: corrected
    assert got[5][0] == "accepted" and report["lines"][2]["events"] == [
        "ShipmentConfirmed"]                                        # item B: shipped now
    assert got[6] == ("rejected", "tracking-number", "same-tracking")
    assert got[7][0] == "accepted"                                  # NULL clears it
    assert code == 1
    corrected = events(db_url, "TrackingCorrected")
    assert [(e.order_id, e.carrier_code, e.tracking_number, e.ship_method, e.replaces)
            for e in corrected] == [
        (oid(1), "DHL", "JJD0001", "Paket", "SE1"), (oid(2), "PostNord", "SE2-NEW", None, "SE2"),
        (oid(3), "PostNord", None, None, "SE3")]
    assert len(events(db_url, "ShipmentConfirmed")) == 4            # no second shipment
    view = json.loads(CliRunner().invoke(main, ["show", oid(1), "--json", "--db", db_url]).stdout)
    assert (view["status"], view["tracking_number"], view["tracking_corrections"]) == (
        "Shipped", "JJD0001", 1)
    text = CliRunner().invoke(main, ["show", oid(1), "--db", db_url]).stdout
    assert "tracking number: JJD0001 (corrected 1x)" in text
    # valid tracking follows the correction: SE1->JJD0001, SE2->SE2-NEW, SE2-B, SE3->NULL
    for views in ("views.db", "views2.db"):  # built before and after, and at once
        result = CliRunner().invoke(main, ["metrics", "--db", db_url, "--views",
                                           str(tmp_path / views), "--json", "--at", at(days=2)])
        assert result.exit_code == 0, result.output
        rate = json.loads(result.stdout)["valid_tracking_rate"]
        assert (rate["numerator"], rate["denominator"]) == (3, 4)


# --- 7. ship-from and Transparency columns of the current layout -----------------------------

#: the current shipping-confirmation template's header (18 columns), as seller tools
#: write it: the 8 first columns, transparency_code, then the ship-from address
CURRENT_SHIP_HEADER = SHIP_HEADER + [
    "transparency_code", "ship_from_address_name", "ship_from_address_line1",
    "ship_from_address_line2", "ship_from_address_line3", "ship_from_address_city",
    "ship_from_address_county", "ship_from_address_state_or_region",
    "ship_from_address_postalcode", "ship_from_address_countrycode"]


def test_ship_from_and_transparency_columns_are_kept(tmp_path, db_url):
    with Ledger(db_url) as led:
        setup(led, {1: two_items(), 2: two_items(), 3: two_items(), 4: two_items()})
    path = tmp_path / "confirm.txt"
    path.write_bytes(tsv(
        ["TemplateType=OrderFulfillment", "Version=2011.1102"], CURRENT_SHIP_HEADER,
        # item A (2 units) with two Transparency codes, shipped from a warehouse
        [oid(1), A, "2", "2026-03-02", "PostNord", "", "SE1", "", "AZ:TP1, AZ:TP2",
         "Lager Syd AB", "Industrigatan 4", "Port 2", "", "Malmö", "Skåne län", "",
         "21124", "se"],
        # no ship-from, no code: both stay empty
        [oid(2), "", "", "2026-03-02", "PostNord", "", "SE2", "", "", "", "", "", "", "",
         "", "", "", ""],
        [oid(3), "", "", "2026-03-02", "PostNord", "", "SE3", "", "", "Lager", "", "", "",
         "", "", "", "", "Sweden"],                                   # not a 2-letter code
        [oid(4), A, "2", "2026-03-02", "PostNord", "", "SE4", "", "AZ:X, AZ:X", "", "", "",
         "", "", "", "", "", ""],                                     # a code twice
        encoding="cp1252"))
    code, report = run(db_url, path, "shipping-confirmation", "--json")
    assert code == 1 and report["encoding"] == "cp1252"
    assert by_line(report) == {3: ("accepted", None, None), 4: ("accepted", None, None),
                               5: ("rejected", "ship_from_address_countrycode", "bad-country"),
                               6: ("rejected", "transparency_code",
                                   "duplicate-transparency-code")}
    shipped = {e.order_id: e for e in events(db_url, "ShipmentConfirmed")}
    assert set(shipped) == {oid(1), oid(2)}
    one = shipped[oid(1)]
    assert one.transparency_codes == ["AZ:TP1", "AZ:TP2"]
    assert msgspec.structs.asdict(one.ship_from) == {
        "name": "Lager Syd AB", "address_1": "Industrigatan 4", "address_2": "Port 2",
        "address_3": None, "city": "Malmö", "county": "Skåne län", "state": None,
        "postal_code": "21124", "country": "SE"}
    assert (shipped[oid(2)].ship_from, shipped[oid(2)].transparency_codes) == (None, [])
    view = json.loads(CliRunner().invoke(main, ["show", oid(1), "--json", "--db", db_url]).stdout)
    assert view["ship_from"]["city"] == "Malmö" and view["ship_from"]["country"] == "SE"
    assert view["transparency_codes"] == ["AZ:TP1", "AZ:TP2"]
    text = CliRunner().invoke(main, ["show", oid(1), "--db", db_url]).stdout
    assert ("shipped from: Lager Syd AB, Industrigatan 4, Port 2, Malmö, Skåne län, 21124, SE"
            in text)
    assert "transparency codes: AZ:TP1, AZ:TP2" in text
    plain = json.loads(CliRunner().invoke(main, ["show", oid(2), "--json", "--db",
                                                 db_url]).stdout)
    assert (plain["ship_from"], plain["transparency_codes"]) == (None, [])
    # a re-upload for what is shipped corrects the tracking only; the origin stays
    again = tmp_path / "again.txt"
    again.write_bytes(tsv(CURRENT_SHIP_HEADER,
                          [oid(1), A, "2", "2026-03-02", "PostNord", "", "SE1-NEW", "", "AZ:Z",
                           "Other place", "", "", "", "", "", "", "", "DE"]))
    code, report = run(db_url, again, "shipping-confirmation", "--json")
    assert code == 0 and report["lines"][0]["events"] == ["TrackingCorrected"]
    view = json.loads(CliRunner().invoke(main, ["show", oid(1), "--json", "--db", db_url]).stdout)
    assert (view["tracking_number"], view["ship_from"]["name"], view["transparency_codes"]) == (
        "SE1-NEW", "Lager Syd AB", ["AZ:TP1", "AZ:TP2"])


def test_fifteen_column_layout_without_transparency(tmp_path, sqlite_url):
    """The layout a WordPress plugin writes (no transparency_code, line3 or county)."""
    with Ledger(sqlite_url) as led:
        setup(led, {1: two_items()})
    header = SHIP_HEADER + ["ship_from_address_name", "ship_from_address_line1",
                            "ship_from_address_line2", "ship_from_address_city",
                            "ship_from_address_state_or_region", "ship_from_address_postalcode",
                            "ship_from_address_countrycode"]
    path = tmp_path / "confirm.txt"
    path.write_bytes(tsv(header, [oid(1), "", "", "2026-03-02", "Other", "Bring", "B1", "",
                                  "Shop", "Main St 1", "", "Oslo", "", "0150", "NO"]))
    code, report = run(sqlite_url, path, "shipping-confirmation", "--json")
    assert code == 0, report
    [shipped] = events(sqlite_url, "ShipmentConfirmed")
    assert (shipped.ship_from.name, shipped.ship_from.city, shipped.ship_from.country,
            shipped.transparency_codes) == ("Shop", "Oslo", "NO", [])


def test_shipment_event_written_before_ship_from_decodes():
    from ledger.codec import decode_payload, encode_payload
    from ledger.events import ShipmentConfirmed, topic_of

    old = (b'{"type":"ShipmentConfirmed","at":"2026-03-02T10:00:00+00:00","actor":"seller",'
           b'"command_id":"c1","recorded_at":null,"order_id":"1","carrier_code":"PostNord",'
           b'"carrier_name":null,"tracking_number":"SE1","ship_date":"2026-03-02",'
           b'"ship_method":null,"items":[{"order_item_id":"A","quantity":1}],'
           b'"status":"Shipped"}')
    e = decode_payload(topic_of(ShipmentConfirmed), old)
    assert (e.ship_from, e.transparency_codes, e.tracking_number) == (None, [], "SE1")
    assert decode_payload(topic_of(ShipmentConfirmed), encode_payload(e)) == e


# --- 8. every feed in every encoding, with and without the TemplateType row ------------------


@pytest.mark.parametrize("template", [True, False], ids=["template-row", "no-template-row"])
@pytest.mark.parametrize("enc", list(ENCODINGS))
def test_cancellation_and_adjustment_feeds_in_each_encoding(tmp_path, sqlite_url, enc,
                                                            template):
    codec, bom, reported = ENCODINGS[enc]
    merchant = "Beställning Å-1 €" if enc == "windows-1252" else "Beställning Å-1 ß"
    with Ledger(sqlite_url) as led:
        setup(led, {1: two_items(), 2: two_items(), 3: two_items()})
    shift = 1 if template else 0
    cancel = tmp_path / "cancel.txt"
    cancel.write_bytes(tsv(
        *([TEMPLATES["cancellation"]] if template else []),
        CANCEL_HEADER + ["merchant-order-id"],
        [oid(1), "", "", merchant],                       # an acknowledgement
        [oid(2), "NoInventory", "", ""],                  # the whole order canceled
        encoding=codec, bom=bom))
    code, report = run(sqlite_url, cancel, "cancellation", "--json")
    assert code == 0, report
    assert report["encoding"] == reported
    assert by_line(report) == {2 + shift: ("accepted", None, None),
                               3 + shift: ("accepted", None, None)}
    [ack] = events(sqlite_url, "OrderAcknowledged")
    assert (ack.order_id, ack.merchant_order_id) == (oid(1), merchant)
    assert [e.order_id for e in events(sqlite_url, "SellerCanceled")] == [oid(2)]
    adjust = tmp_path / "adjust.txt"
    adjust.write_bytes(tsv(
        *([TEMPLATES["adjustment"]] if template else []), ADJ_HEADER + ["note"],
        [oid(3), B, "CustomerReturn", "SEK", "99.00", "", "", "", "", "", "", "", "1",
         "Återbetalning, kund nöjd"],
        encoding=codec, bom=bom))
    code, report = run(sqlite_url, adjust, "adjustment", "--json")
    assert code == 0, report
    assert report["encoding"] == reported and report["template"] == (
        {"line": 1, "template_type": "OrderAdjustment", "version": "1.0"} if template else None)
    [adjusted] = events(sqlite_url, "OrderAdjusted")
    assert (adjusted.order_id, adjusted.items[0].order_item_id,
            str(adjusted.items[0].item_price_adj)) == (oid(3), B, "99.00")


@pytest.mark.parametrize("enc", list(ENCODINGS))
def test_current_shipping_layout_in_each_encoding(tmp_path, sqlite_url, enc):
    codec, bom, reported = ENCODINGS[enc]
    with Ledger(sqlite_url) as led:
        setup(led, {1: two_items()})
    path = tmp_path / "confirm.txt"
    path.write_bytes(tsv(TEMPLATES["shipping-confirmation"], CURRENT_SHIP_HEADER,
                         [oid(1), "", "", "2026-03-02", "PostNord", "", "SE1", "", "",
                          "Lager Öst", "Gärdesvägen 3", "", "", "Växjö", "", "", "35246", "SE"],
                         encoding=codec, bom=bom))
    code, report = run(sqlite_url, path, "shipping-confirmation", "--json")
    assert code == 0 and report["encoding"] == reported, report
    [shipped] = events(sqlite_url, "ShipmentConfirmed")
    assert (shipped.ship_from.name, shipped.ship_from.address_1, shipped.ship_from.city) == (
        "Lager Öst", "Gärdesvägen 3", "Växjö")
