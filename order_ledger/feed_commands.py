"""``order-ledger feed``, ``order-ledger import sp-api`` and ``order-ledger message check``.

Registered on the command group by :mod:`order_ledger.cli` through :func:`register`;
``import sp-api`` is a command of the one ``import`` group (:mod:`order_ledger.common`).
Exit status: 0 when every line / order / message passed, 1 when any was
rejected (or a message has violations), 2 for usage errors — a missing file,
an unknown feed type, a feed header lacking a required column, a JSON file that
is not a getOrders response. On a usage error nothing is applied.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from ledger import feeds, spapi
from ledger.clock import SystemClock

from .common import (
    console,
    db_option,
    err_console,
    import_group,
    json_option,
    now_option,
    open_ledger,
    open_ledger_for_check,
    open_reader,
    print_json,
    yes_option,
)

_FILE = click.Path(exists=True, dir_okay=False, readable=True, path_type=Path)


def register(main: click.Group) -> None:
    """Add ``feed`` and ``message check`` to the main group."""
    for group in (feed_group, message_group):
        main.add_command(group)


check_option = click.option(
    "--check", is_flag=True,
    help="Decide every line as a real run would, against the current ledger, and print the "
         "same report; write nothing.")


def _open(db: str | None, now: datetime | None, check: bool) -> Any:
    """The ledger to run against: for --check, one that is never written or created."""
    return open_ledger_for_check(db, now) if check else open_ledger(db, now)


def _usage_error(message: str, as_json: bool) -> None:
    """Reject the whole input: say why, exit 2."""
    if as_json:
        print_json({"error": {"code": "file-rejected", "message": message}})
    err_console.print(f"Error: {message}", markup=False)
    sys.exit(2)


# --- feeds -----------------------------------------------------------------------------


@click.group("feed")
def feed_group() -> None:
    """Process a marketplace flat-file feed (tab-separated, header row first).

    Every data line becomes one ledger command, accepted or rejected with its
    line number (the header is line 1), the column at fault and the reason.
    Sending the same file again changes nothing (its lines are reported as
    already processed). See docs/feeds.md.
    """


_FEED_HELP = {
    feeds.SHIPPING_CONFIRMATION:
        "Confirm shipments (POST_FLAT_FILE_FULFILLMENT_DATA): order-id, order-item-id, "
        "quantity, ship-date, carrier-code, carrier-name, tracking-number, ship-method. "
        "carrier-code may be empty when carrier-name is given; NULL as tracking-number "
        "means no tracking number. "
        "An empty order-item-id ships everything left of the order; each line is its own "
        "shipment, applied in file order.",
    feeds.CANCELLATION:
        "Cancel orders or items (POST_FLAT_FILE_ORDER_ACKNOWLEDGEMENT_DATA): order-id, "
        "cancellation-reason-code, amazon-order-item-code. An empty item code cancels the "
        "whole order; an item code cancels what is left of that item (recorded as an "
        "adjustment).",
    feeds.ADJUSTMENT:
        "Refund or cancel per item (POST_FLAT_FILE_PAYMENT_ADJUSTMENT_DATA): order-id, "
        "order-item-id, adjustment-reason-code, currency, item-price-adj, item-tax-adj, "
        "shipping-price-adj, shipping-tax-adj, gift-wrap-price-adj, gift-wrap-tax-adj, "
        "item-promotion-adj, ship-promotion-adj, quantity-cancelled. Positive amounts are "
        "refunded; promotion amounts (either sign) are taken back from the refund.",
}


def _make_feed_command(name: str) -> click.Command:
    @click.command(name, help=_FEED_HELP[name] + "\n\nExit 0 when every line was accepted, "
                   "1 when any was rejected, 2 when the file itself is unusable.")
    @click.argument("file", type=_FILE)
    @db_option
    @json_option
    @now_option
    @yes_option
    @check_option
    @click.option("--encoding", default=None, metavar="NAME",
                  help="Read the file in this encoding (e.g. utf-8, cp1252, latin-1) instead "
                       "of detecting it (UTF-8 with or without BOM, else Windows-1252).")
    def command(file: Path, db: str | None, as_json: bool, now: datetime | None,
                yes: bool = False, check: bool = False, encoding: str | None = None) -> None:
        if encoding is not None:
            try:
                feeds.check_encoding(encoding)
            except feeds.FeedError as exc:
                raise click.BadParameter(str(exc), param_hint="--encoding") from None
        run_feed(name, file, db=db, as_json=as_json, now=now, yes=yes, check=check,
                 encoding=encoding)

    return command


for _name in feeds.FEEDS:
    feed_group.add_command(_make_feed_command(_name))


def run_feed(name: str, file: Path, *, db: str | None, as_json: bool,
             now: datetime | None, yes: bool = False, check: bool = False,
             encoding: str | None = None) -> None:
    data = file.read_bytes()
    try:
        feeds.read_feed(name, data, encoding)  # whole-file checks before the ledger is touched
    except feeds.FeedError as exc:
        _usage_error(f"{file}: the feed was rejected, nothing applied: {exc}", as_json)
    # A feed's lines act on their own orders only: no other order's deadline can fire,
    # so a feed without --now needs no question (the clock moves only with ticks).
    ledger = _open(db, now, check)
    try:
        report = feeds.process_feed(ledger, name, data, at=now or ledger.clock.now(),
                                    dry_run=check, encoding=encoding)
    except feeds.FeedError as exc:  # pragma: no cover - checked above
        _usage_error(str(exc), as_json)
        return
    if as_json:
        print_json(report.as_dict())
    else:
        _print_feed_report(report, file, check)
    sys.exit(1 if report.rejected else 0)


_ENCODING_NAMES = {"utf-8": "UTF-8", "utf-8-sig": "UTF-8 with BOM",
                   "cp1252": "Windows-1252", "latin-1": "ISO-8859-1"}


def _print_feed_report(report: feeds.FeedReport, file: Path, check: bool = False) -> None:
    spec = feeds.FEEDS[report.feed]
    out = console.print
    out(f"Processing report: {report.feed} feed ({spec.feed_type}) {file}", markup=False)
    out(f"  encoding:          {_ENCODING_NAMES.get(report.encoding, report.encoding)}",
        markup=False)
    if report.template is not None:
        t = report.template
        out(f"  template row:      line {t['line']} skipped (TemplateType="
            f"{t.get('template_type', '')}"
            + (f", Version={t['version']}" if t.get("version") else "") + ")", markup=False)
    out(f"  lines processed:   {report.processed}", markup=False)
    out(f"  lines accepted:    {report.accepted}", markup=False)
    out(f"  already processed: {report.duplicate}", markup=False)
    out(f"  lines rejected:    {report.rejected}", markup=False)
    if check:
        out(f"  events (checked only, nothing written): {report.events}", markup=False)
    else:
        out(f"  events written:    {report.events}", markup=False)
    for ln in report.lines:
        if ln.status != "rejected":
            continue
        text = f"line {ln.line}: rejected, column {ln.column or '-'}: [{ln.code}] {ln.message}"
        if ln.hint:
            text += f" — fix: {ln.hint}"
        out(text, markup=False)


# --- import ----------------------------------------------------------------------------


@import_group.command("sp-api")
@click.argument("files", nargs=-1, required=True, type=_FILE)
@click.option("--items", "items_file", type=_FILE, default=None,
              help="getOrderItems responses: an object AmazonOrderId -> response, or a list of "
                   "responses with payload.AmazonOrderId (a getOrderItems response can also "
                   "be given as one more FILE).")
@click.option("--language", default=None,
              help="Buyer language (BCP-47) for orders that do not say; default: from the "
                   "order's marketplace (e.g. A2NODRKZP88ZB9 = SE -> sv-SE), else its "
                   "shipping country.")
@db_option
@json_option
@check_option
def import_sp_api(files: tuple[Path, ...], items_file: Path | None, language: str | None,
                  db: str | None, as_json: bool, check: bool = False) -> None:
    """Import Orders API responses (v0 and 2026-01-01) as ledger commands.

    FILE... is any mix of v0 getOrders pages, getOrder, getOrderItems,
    getOrderAddress, getOrderBuyerInfo and getOrderItemsBuyerInfo responses and
    2026-01-01 searchOrders pages and getOrder responses; each file's shape is
    told from its structure and everything is merged by order id. Each order
    becomes place / verify-payment / ship / request-cancel / cancel commands
    chosen by its status (docs/sp-api-import.md); all are applied in time order.
    Importing the same files again adds nothing; a later poll adds only what
    changed. An order whose items are missing is reported, the others import.

    Exit 0 when every order was imported, already imported, skipped or
    incomplete; 1 when any was rejected or had an unknown status; 2 for an
    unusable file.
    """
    from ledger.rules import LANGUAGE_RE

    if language is not None and not LANGUAGE_RE.match(language):
        raise click.BadParameter(f"{language!r} is not a BCP-47 tag (e.g. sv-SE)",
                                 param_hint="--language")
    docs = []
    for file in files:
        try:
            doc = json.loads(file.read_bytes())
            spapi.detect_shape(doc)
        except (ValueError, UnicodeDecodeError) as exc:
            _usage_error(f"{file}: not valid JSON: {exc}", as_json)
            return
        except spapi.SpApiError as exc:
            _usage_error(f"{file}: {exc}", as_json)
            return
        docs.append(doc)
    try:
        items_doc = json.loads(items_file.read_bytes()) if items_file else None
        if items_doc is not None:
            spapi.load_items(items_doc)
    except (ValueError, UnicodeDecodeError) as exc:
        _usage_error(f"{items_file}: not valid JSON: {exc}", as_json)
        return
    except spapi.SpApiError as exc:
        _usage_error(f"{items_file}: {exc}", as_json)
        return
    ledger = _open(db, None, check)
    try:
        report = spapi.import_documents(ledger, docs, items_doc, language=language,
                                        dry_run=check, sources=[str(f) for f in files])
    except spapi.SpApiError as exc:
        _usage_error(str(exc), as_json)
        return
    if as_json:
        print_json(report.as_dict())
    else:
        _print_import_report(report, check)
    sys.exit(0 if report.ok else 1)


_RESULT_TEXT = {"imported": "imported", "already-imported": "already imported",
                "incomplete": "incomplete",
                "skipped": "skipped", "unknown-status": "not imported (unknown status)",
                "rejected": "rejected"}


def _print_import_report(report: spapi.ImportReport, check: bool = False) -> None:
    out = console.print
    for o in report.orders:
        result = _RESULT_TEXT.get(o.result, o.result)
        text = f"{o.order_id or '(no id)'} {o.api_status or '-'}: {result}"
        if o.ledger_status and o.result in ("imported", "already-imported", "rejected"):
            text += f" (in the ledger: {o.ledger_status})"
        if o.reason:
            text += f": {o.reason}"
        out(text, markup=False)
        for note in o.notes:
            out(f"  note: {note}", markup=False)
    s = report.summary()
    out(f"{s['orders']} orders: {s['imported']} imported, {s['already_imported']} already "
        f"imported, {s['skipped']} skipped, {s['incomplete']} incomplete, "
        f"{s['unknown_status']} unknown status, "
        f"{s['rejected']} rejected; {s['events']} events "
        f"{'would be written (checked only, nothing written)' if check else 'written'}",
        markup=False)


# --- message check -----------------------------------------------------------------------


@click.group("message")
def message_group() -> None:
    """Buyer–seller messages."""


def _read_messages(data: bytes) -> list[tuple[int, Any]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise click.UsageError("the file is not UTF-8") from None
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
        out = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                out.append((n, json.loads(line)))
            except ValueError as exc:
                raise click.UsageError(f"line {n} is not JSON: {exc}") from None
        return out
    if isinstance(doc, list):
        return [(i, d) for i, d in enumerate(doc, 1)]
    return [(1, doc)]


def check_one(msg: Any, n: int, *, ledger: Any = None, now: datetime | None = None) -> dict:
    """:func:`ledger.messaging.check_draft` at ``now`` (default: the wall clock); a
    malformed message is a usage error."""
    from ledger.errors import MessageDraftError
    from ledger.messaging import check_draft

    try:
        return check_draft(msg, n, ledger=ledger, now=now or SystemClock().now())
    except MessageDraftError as exc:
        raise click.UsageError(str(exc)) from None


def print_check(result: dict) -> None:
    head = f"message {result['line']} (order {result['order_id']}): "
    if result["allowed"]:
        console.print(head + "allowed, no violations", markup=False)
    else:
        n = len(result["violations"])
        console.print(head + f"blocked, {n} violation{'s' if n != 1 else ''}", markup=False)
    for v in result["violations"]:
        text = f"  - {v['rule']}: {v['message']}"
        if v.get("found") is not None:
            where = f" at {v['start']}-{v['end']}" if v.get("start") is not None else ""
            text += f" (found {v['found']!r}{where})"
        console.print(text, markup=False)
    for note in result["notes"]:
        console.print(f"  note: {note}", markup=False)


@message_group.command("check")
@click.argument("file", type=click.File("rb"))
@db_option
@json_option
@now_option
def message_check(file: Any, db: str | None, as_json: bool, now: datetime | None) -> None:
    """Check messages against the messaging rules without sending them.

    FILE (- for stdin) is a JSON object, a JSON array or JSON Lines of objects
    shaped like a send-message command (order_id, purpose, language, body,
    attachments, phone_reason) plus optional buyer_language, completed_at, now
    and review_already_requested. With --db (or ORDER_LEDGER_DB), an order in
    the ledger supplies the buyer language, completion time and review state.
    The time checked against is the message's now (or at), else --now, else
    the wall clock.

    Every violation is printed with its rule, message, the text found and its
    position. Exit 0 when every message is allowed, 1 otherwise.
    """
    messages = _read_messages(file.read())
    if not messages:
        raise click.UsageError("the file holds no message")
    ledger = open_reader(db) if db else None
    results = [check_one(m, n, ledger=ledger, now=now) for n, m in messages]
    blocked = sum(1 for r in results if not r["allowed"])
    if as_json:
        print_json({"checked": len(results), "allowed": len(results) - blocked,
                    "blocked": blocked, "messages": results})
    else:
        for r in results:
            print_check(r)
        if len(results) > 1:
            console.print(f"{len(results)} messages: {len(results) - blocked} allowed, "
                          f"{blocked} blocked", markup=False)
    sys.exit(1 if blocked else 0)


def check_send_message(*, order_id: str, purpose: str, language: str, body: str,
                       attachments: list[dict] | None, phone_reason: str | None,
                       db: str | None, now: datetime | None, as_json: bool) -> None:
    """``send-message --check-only``: check against the ledger's order, send nothing, exit."""
    ledger = open_reader(db, now)
    msg = {"order_id": order_id, "purpose": purpose, "language": language, "body": body,
           "attachments": attachments or [], "phone_reason": phone_reason}
    result = check_one(msg, 1, ledger=ledger, now=now or ledger.clock.now())
    if as_json:
        print_json(result)
    else:
        print_check(result)
    sys.exit(0 if result["allowed"] else 1)
