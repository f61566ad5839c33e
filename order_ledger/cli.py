"""``order-ledger``: the command line over the ledger, its views and replay.

Every command has ``--help``; reads print tables for people and ``--json`` for
programs. Exit status: 0 when everything was applied, 1 when a command or
line was rejected, 2 for a usage error (no such file, bad option).
"""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Any

import click
import msgspec

from ledger.errors import LedgerError

from .common import (
    WHEN,
    console,
    db_option,
    describe_error,
    err_console,
    guard_wall_clock,
    json_option,
    known_at,
    known_at_option,
    now_option,
    open_ledger,
    open_reader,
    past,
    print_json,
    print_rows,
    resolve_point,
    yes_option,
)


class LedgerGroup(click.Group):
    """The command group: ledger and store errors that escape a command become
    clear messages: a write that failed while running (a full disk, the server gone:
    run the command again later) exits 1; other store errors are about where the
    ledger is and how it is opened, usage errors: exit 2; the rest exit 1."""

    def invoke(self, ctx: click.Context) -> Any:
        from eventsourcing.persistence import PersistenceError

        from ledger.errors import StoreError, StoreWriteFailed

        try:
            return super().invoke(ctx)
        except StoreWriteFailed as exc:
            err_console.print(f"Error: {exc}", markup=False)
            sys.exit(1)
        except StoreError as exc:
            err_console.print(f"Error: {exc}", markup=False)
            sys.exit(2)
        except LedgerError as exc:
            raise click.ClickException(str(exc)) from None
        except PersistenceError as exc:
            raise click.ClickException(
                f"the store failed: {type(exc).__name__}: {exc}") from None


@click.group(cls=LedgerGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="order-ledger")
def main() -> None:
    """An event-sourced ledger for seller-fulfilled marketplace orders.

    Every order action is an immutable event; every view is rebuilt from them.
    Start with `order-ledger apply examples/walkthrough.jsonl`, then
    `order-ledger show ORDER_ID`.
    """


# --- apply ---------------------------------------------------------------------------


@main.command()
@click.argument("file", type=click.File("rb"))
@db_option
@json_option
@click.option("--batch-size", default=1000, show_default=True, type=click.IntRange(1, 100_000),
              help="Commands per transaction.")
@click.option("--quiet", "-q", is_flag=True, help="Print only the summary, not each rejection.")
@click.option("--check", is_flag=True,
              help="Decide every line as apply would, against the current ledger, and print "
                   "the same; write nothing (no events, no command ids, no clock move).")
@click.option("--advance-clock", "advance_clock", is_flag=True,
              help="The file is one time-sorted stream: every line also tells the ledger the "
                   "world reached its time (deadlines of every order due by then fire, and an "
                   "earlier line is rejected). Default: only ticks move the ledger's clock.")
def apply(file: Any, db: str | None, as_json: bool, batch_size: int, quiet: bool,
          check: bool = False, advance_clock: bool = False) -> None:
    """Apply a command file (JSON Lines; - for stdin) line by line.

    Each line is applied or rejected with its line number and a reason; rejected
    lines change nothing. Exit 0 when every line was applied, 1 when any was rejected,
    2 when the file is not UTF-8 text (nothing applied). On a terminal a progress
    bar shows on stderr. --check writes nothing and exits as apply would.
    """
    from ledger.textfile import NotText, count_lines, text_lines

    from .common import Bar, open_ledger_for_check

    name = getattr(file, "name", "-")
    name = "standard input" if name in ("-", "<stdin>") or not isinstance(name, str) else name
    try:
        lines = text_lines(file)
    except NotText as exc:
        raise click.UsageError(f"{name}: {exc}; nothing applied") from None
    ledger = open_ledger_for_check(db) if check else open_ledger(db)
    counts = {"applied": 0, "duplicate": 0, "rejected": 0}
    events = 0
    label = "checking" if check else "applying"
    with Bar(label, not as_json, unit="lines", needs_stdout_tty=True) as bar:
        total = count_lines(file) if bar.enabled else None
        for out in ledger.apply_lines(lines, batch_size=batch_size, dry_run=check,
                                      advance_clock=advance_clock):
            counts[out.status] += 1
            events += len(out.events)
            if as_json:
                print_json(out.as_dict())
            elif out.status == "rejected" and not quiet:
                console.print(f"line {out.line}: rejected {describe_error(out.error or {})}",
                              markup=False)
            if out.line is not None:
                bar(out.line, total)
    total_lines = sum(counts.values())
    if not as_json:
        written = "would be written (checked only, nothing written)" if check else "written"
        console.print(
            f"{total_lines} lines: {counts['applied']} applied, {counts['duplicate']} already "
            f"applied (duplicate command_id), {counts['rejected']} rejected; {events} events "
            f"{written}", markup=False)
    sys.exit(1 if counts["rejected"] else 0)


# --- show ----------------------------------------------------------------------------


@main.command()
@click.argument("order_id")
@db_option
@json_option
@click.option("--as-of", "as_of", type=WHEN, default=None, metavar="TIME",
              help="The order as it was at this business time (see docs/replay.md).")
@click.option("--at-position", "at_position", type=click.IntRange(min=0), default=None,
              metavar="N", help="The order as it was right after this global position.")
@known_at_option
def show(order_id: str, db: str | None, as_json: bool, as_of: datetime | None = None,
         at_position: int | None = None) -> None:
    """Print an order's current state (or, with --as-of / --at-position / --known-at,
    a past one)."""
    in_past = past(as_of, at_position)
    ledger = open_reader(db)
    from projections.rows import plain
    from replay.asof import show_order

    found = show_order(ledger, order_id,
                       resolve_point(ledger, as_of, at_position) if in_past else None)
    if found is None:
        k = known_at()
        when = "" if not in_past else (
            (f" as of {as_of.isoformat()}" if as_of else "")
            + (f" at position {at_position}" if at_position is not None else "")
            + (f" as known at {k.isoformat()}" if k is not None else ""))
        err_console.print(f"no order {order_id} in the ledger{when}", markup=False)
        sys.exit(1)
    view = plain(found)
    if as_json:
        print_json(view)
        return
    _print_order(view)


def _print_order(view: dict) -> None:
    grey = "" if view["actionable"] else " (greyed out)"
    console.print(f"Order {view['order_id']}: {view['status']}{grey}", markup=False)
    for key in ("purchase_date", "payments_date", "latest_ship_date", "latest_delivery_date",
                "buyer_name", "ship_service_level", "payment", "cancel_reason", "canceled_by",
                "updated_at", "recorded_at"):
        if view.get(key) is not None:
            console.print(f"  {key.replace('_', ' ')}: {view[key]}", markup=False)
    market = view.get("market") or {}
    for key, value in market.items():
        if key != "items":
            shown = ("yes" if value else "no") if isinstance(value, bool) else value
            console.print(f"  {key.replace('_', ' ')}: {shown}", markup=False)
    if view.get("tracking_number"):
        fixed = view.get("tracking_corrections") or 0
        console.print(f"  tracking number: {view['tracking_number']}"
                      + (f" (corrected {fixed}x)" if fixed else ""), markup=False)
    origin = view.get("ship_from")
    if origin:
        parts = [origin.get(k) for k in ("name", "address_1", "address_2", "address_3", "city",
                                         "county", "state", "postal_code", "country")]
        console.print("  shipped from: " + ", ".join(p for p in parts if p), markup=False)
    if view.get("transparency_codes"):
        console.print("  transparency codes: " + ", ".join(view["transparency_codes"]),
                      markup=False)
    if view.get("buyer_requested_cancel"):
        console.print("  the buyer asked to cancel", markup=False)
    withheld = {"ship_to": "the ship-to address", "buyer": "the buyer's name and e-mail"}
    for part in view.get("restricted") or ():
        console.print(f"  restricted: {withheld.get(part, part)} withheld by the marketplace "
                      "(placeholders in the ledger)", markup=False)
    if view.get("warning"):
        console.print(f"  WARNING: {view['warning']}", markup=False)
    nd = view.get("next_deadline")
    if nd:
        console.print(f"  next deadline: {nd['kind']} at {nd['at']}", markup=False)
    print_rows([[it["order_item_id"], it["sku"], it["title"], str(it["quantity"]),
                 str(it["quantity_shipped"]), str(it["quantity_canceled"]),
                 str(it["quantity_to_ship"])] for it in view["items"]],
               ["item", "sku", "title", "qty", "shipped", "canceled", "to ship"])


# --- one command by hand --------------------------------------------------------------


def _common(fn: Any) -> Any:
    fn = db_option(fn)
    fn = json_option(fn)
    fn = now_option(fn)
    fn = yes_option(fn)
    fn = click.option("--command-id", default=None, help="Idempotency key for this command.")(fn)
    fn = click.option("--actor", default=None, help="Who does it (default depends on the command).")(fn)
    return fn


def run_one(ctype: str, fields: dict, *, db: str | None, now: datetime | None,
            command_id: str | None, actor: str | None, as_json: bool, yes: bool = False) -> None:
    """Build one command, apply it, print the outcome, exit 0/1.

    Without ``--now`` the command acts at the wall clock; a jump of more than a
    day past the ledger's time is asked first (``guard_wall_clock``)."""
    ledger = open_ledger(db, now)
    # only a tick moves every order's clock; a command on an order fires its deadlines
    if ctype == "tick" or fields.get("order_id"):
        guard_wall_clock(ledger, now, yes, fields.get("order_id") if ctype != "tick" else None)
    # without --now the command happens when the ledger records it (under its lock)
    cmd: dict = {"type": ctype, "at": now.isoformat() if now else None}
    if command_id:
        cmd["command_id"] = command_id
    if actor:
        cmd["actor"] = actor
    cmd.update({k: v for k, v in fields.items() if v is not None})
    out = ledger.execute(msgspec.json.encode(cmd))
    if as_json:
        print_json(out.as_dict())
    elif out.ok:
        what = "already applied (same command id)" if out.status == "duplicate" else "applied"
        events = ", ".join(out.events) or "no events"
        console.print(f"{ctype}: {what}: {events}", markup=False)
    else:
        err_console.print(f"{ctype}: rejected {describe_error(out.error or {})}", markup=False)
        for v in (out.error or {}).get("violations", []):
            err_console.print(f"  - {v.get('rule')}: {v.get('message')}", markup=False)
    sys.exit(0 if out.ok else 1)


@main.command("tick")
@_common
def tick_cmd(db: str | None, as_json: bool, now: datetime | None, yes: bool,
             command_id: str | None, actor: str | None) -> None:
    """Apply every deadline due by now: hold expiry, 21-day verification, day-23 warning,
    day-30 cancel."""
    run_one("tick", {}, db=db, now=now, command_id=command_id, actor=actor, as_json=as_json,
            yes=yes)


@main.command("set-inventory")
@click.argument("sku")
@click.argument("quantity", type=click.IntRange(min=0))
@_common
def set_inventory(sku: str, quantity: int, **kw: Any) -> None:
    """Set the available quantity of a SKU."""
    run_one("set-inventory", {"sku": sku, "quantity": quantity}, **kw)


@main.command()
@click.argument("order_id")
@click.option("--item", "items", multiple=True, nargs=5, required=True,
              metavar="ITEM_ID SKU TITLE QTY PRICE",
              help="An item line (repeat for several): id, SKU, title, quantity, line price.")
@click.option("--currency", required=True, help="ISO 4217 code, e.g. SEK.")
@click.option("--ship-service-level", default="Standard", show_default=True)
@click.option("--buyer-name", required=True)
@click.option("--buyer-email", default=None)
@click.option("--buyer-phone", default=None)
@click.option("--language", required=True, help="Buyer's language, BCP-47 (e.g. sv-SE).")
@click.option("--ship-name", default=None, help="Recipient (default: the buyer's name).")
@click.option("--address-1", required=True)
@click.option("--address-2", default=None)
@click.option("--city", required=True)
@click.option("--state", default=None)
@click.option("--postal-code", required=True)
@click.option("--country", required=True, help="ISO 3166 alpha-2, e.g. SE.")
@click.option("--latest-ship-date", type=WHEN, default=None)
@click.option("--latest-delivery-date", type=WHEN, default=None)
@_common
def place(order_id: str, items: tuple, currency: str, ship_service_level: str, buyer_name: str,
          buyer_email: str | None, buyer_phone: str | None, language: str,
          ship_name: str | None, address_1: str, address_2: str | None, city: str,
          state: str | None, postal_code: str, country: str,
          latest_ship_date: datetime | None, latest_delivery_date: datetime | None,
          **kw: Any) -> None:
    """Place an order (it starts Pending, in its 30-minute hold)."""
    lines = []
    for item_id, sku, title, qty, price in items:
        try:
            quantity = int(qty)
        except ValueError:
            raise click.BadParameter(f"quantity {qty!r} is not a whole number",
                                     param_hint="--item") from None
        lines.append({"order_item_id": item_id, "sku": sku, "title": title,
                      "quantity": quantity, "item_price": price})
    fields = {
        "order_id": order_id, "items": lines, "currency": currency,
        "ship_service_level": ship_service_level,
        "buyer": {k: v for k, v in {"name": buyer_name, "email": buyer_email,
                                     "phone": buyer_phone, "language": language}.items()
                  if v is not None},
        "ship_to": {k: v for k, v in {
            "name": ship_name or buyer_name, "address_1": address_1, "address_2": address_2,
            "city": city, "state": state, "postal_code": postal_code,
            "country": country}.items() if v is not None},
        "latest_ship_date": latest_ship_date.isoformat() if latest_ship_date else None,
        "latest_delivery_date": latest_delivery_date.isoformat() if latest_delivery_date else None,
    }
    run_one("place", fields, **kw)


@main.command()
@click.argument("order_id")
@click.option("--by", type=click.Choice(["seller", "buyer"]), default="seller", show_default=True)
@click.option("--reason", default=None,
              help="Reason code (required for the seller): NoInventory, BuyerCanceled, "
                   "GeneralAdjustment, PricingError, ShippingAddressUndeliverable, CustomerExchange.")
@click.option("--memo", default=None, help="Seller memo.")
@_common
def cancel(order_id: str, by: str, reason: str | None, memo: str | None, **kw: Any) -> None:
    """Cancel an order: the seller with a reason, or the buyer inside the hold."""
    run_one("cancel", {"order_id": order_id, "by": by, "reason": reason, "memo": memo}, **kw)


@main.command("request-cancel")
@click.argument("order_id")
@click.option("--reason", default=None)
@_common
def request_cancel(order_id: str, reason: str | None, **kw: Any) -> None:
    """Record the buyer's request to cancel (after the hold)."""
    run_one("request-cancel", {"order_id": order_id, "reason": reason}, **kw)


@main.command("verify-payment")
@click.argument("order_id")
@click.argument("outcome", type=click.Choice(["verified", "extended", "declined", "fraud"]))
@_common
def verify_payment(order_id: str, outcome: str, **kw: Any) -> None:
    """Record a payment verification outcome."""
    run_one("verify-payment", {"order_id": order_id, "outcome": outcome}, **kw)


@main.command()
@click.argument("order_id")
@click.option("--carrier-code", required=True)
@click.option("--carrier-name", default=None, help="Required when the carrier code is Other.")
@click.option("--tracking-number", default=None)
@click.option("--ship-date", required=True, help="yyyy-mm-dd or an ISO timestamp.")
@click.option("--ship-method", default=None)
@click.option("--item", "items", multiple=True, nargs=2, metavar="ITEM_ID QTY",
              help="Ship only this quantity of an item (repeat); omitted = everything left.")
@_common
def ship(order_id: str, carrier_code: str, carrier_name: str | None,
         tracking_number: str | None, ship_date: str, ship_method: str | None,
         items: tuple, **kw: Any) -> None:
    """Confirm a shipment, in full or in part."""
    lines = None
    if items:
        lines = []
        for item_id, qty in items:
            try:
                lines.append({"order_item_id": item_id, "quantity": int(qty)})
            except ValueError:
                raise click.BadParameter(f"quantity {qty!r} is not a whole number",
                                         param_hint="--item") from None
    run_one("ship", {"order_id": order_id, "carrier_code": carrier_code,
                     "carrier_name": carrier_name, "tracking_number": tracking_number,
                     "ship_date": ship_date, "ship_method": ship_method, "items": lines}, **kw)


@main.command()
@click.argument("order_id")
@click.option("--item", "item_id", required=True, help="The order item to adjust.")
@click.option("--reason", required=True, help="Adjustment reason code, e.g. NoInventory.")
@click.option("--quantity-cancelled", default=0, type=click.IntRange(min=0))
@click.option("--item-price-adj", default="0")
@click.option("--item-tax-adj", default="0")
@click.option("--shipping-price-adj", default="0")
@click.option("--shipping-tax-adj", default="0")
@click.option("--gift-wrap-price-adj", default="0")
@click.option("--gift-wrap-tax-adj", default="0")
@click.option("--item-promotion-adj", default="0",
              help="Promotion discount taken back from the item price refund.")
@click.option("--ship-promotion-adj", default="0",
              help="Promotion discount taken back from the shipping refund.")
@_common
def adjust(order_id: str, item_id: str, reason: str, quantity_cancelled: int,
           item_price_adj: str, item_tax_adj: str, shipping_price_adj: str,
           shipping_tax_adj: str, gift_wrap_price_adj: str = "0", gift_wrap_tax_adj: str = "0",
           item_promotion_adj: str = "0", ship_promotion_adj: str = "0", **kw: Any) -> None:
    """Cancel part of an item and/or refund amounts (positive = refunded)."""
    body = {"order_item_id": item_id, "reason": reason, "quantity_cancelled": quantity_cancelled,
            "item_price_adj": item_price_adj, "item_tax_adj": item_tax_adj,
            "shipping_price_adj": shipping_price_adj, "shipping_tax_adj": shipping_tax_adj}
    for name, value in (("gift_wrap_price_adj", gift_wrap_price_adj),
                        ("gift_wrap_tax_adj", gift_wrap_tax_adj),
                        ("item_promotion_adj", item_promotion_adj),
                        ("ship_promotion_adj", ship_promotion_adj)):
        if value not in ("0", ""):
            body[name] = value
    run_one("adjust", {"order_id": order_id, "items": [body]}, **kw)


@main.command("send-message")
@click.argument("order_id")
@click.option("--purpose", required=True, help="e.g. delivery-problem, order-information.")
@click.option("--language", required=True, help="Must be the buyer's language.")
@click.option("--body", default=None, help="The text (or --body-file).")
@click.option("--body-file", type=click.File("r", encoding="utf-8"), default=None)
@click.option("--attachment", "attachments", multiple=True, nargs=2, metavar="NAME KIND",
              help="An attachment and its kind (label, invoice, custom-design).")
@click.option("--phone-reason", type=click.Choice(["warranty", "carrier", "manufacturer"]),
              default=None)
@click.option("--check-only", is_flag=True,
              help="Check against the messaging rules and the order; send nothing.")
@_common
def send_message(order_id: str, purpose: str, language: str, body: str | None,
                 body_file: Any, attachments: tuple, phone_reason: str | None,
                 check_only: bool, **kw: Any) -> None:
    """Send a message to the buyer; it is checked against the messaging rules first."""
    if body_file is not None:
        body = body_file.read()
    if body is None:
        raise click.UsageError("give the message with --body or --body-file")
    if check_only:
        from .feed_commands import check_send_message

        check_send_message(order_id=order_id, purpose=purpose, language=language, body=body,
                           attachments=[{"name": n, "kind": k} for n, k in attachments],
                           phone_reason=phone_reason, db=kw["db"], now=kw["now"],
                           as_json=kw["as_json"])
    run_one("send-message", {
        "order_id": order_id, "purpose": purpose, "language": language, "body": body,
        "attachments": [{"name": n, "kind": k} for n, k in attachments] or None,
        "phone_reason": phone_reason}, **kw)


@main.command("receive-message")
@click.argument("order_id")
@click.option("--from", "sender", type=click.Choice(["buyer", "customer-service"]),
              default="buyer", show_default=True)
@click.option("--body", required=True)
@click.option("--requests-address-change", is_flag=True)
@_common
def receive_message(order_id: str, sender: str, body: str, requests_address_change: bool,
                    **kw: Any) -> None:
    """Record a message from the buyer or customer service."""
    run_one("receive-message", {"order_id": order_id, "from": sender, "body": body,
                                "requests_address_change": requests_address_change}, **kw)


@main.command("change-address")
@click.argument("order_id")
@click.option("--name", required=True)
@click.option("--address-1", required=True)
@click.option("--address-2", default=None)
@click.option("--city", required=True)
@click.option("--state", default=None)
@click.option("--postal-code", required=True)
@click.option("--country", required=True)
@click.option("--phone", default=None)
@_common
def change_address(order_id: str, name: str, address_1: str, address_2: str | None, city: str,
                   state: str | None, postal_code: str, country: str, phone: str | None,
                   **kw: Any) -> None:
    """Redirect an order, after a received message asked for it."""
    ship_to = {k: v for k, v in {"name": name, "address_1": address_1, "address_2": address_2,
                                 "city": city, "state": state, "postal_code": postal_code,
                                 "country": country, "phone": phone}.items() if v is not None}
    run_one("change-address", {"order_id": order_id, "ship_to": ship_to}, **kw)


# --- the other commands ---------------------------------------------------------------

from . import feed_commands, ops_commands, read_commands, replay_commands  # noqa: E402
from . import service_commands  # noqa: E402
from .common import import_group  # noqa: E402

for _module in (read_commands, replay_commands, feed_commands, ops_commands, service_commands):
    _module.register(main)
main.add_command(import_group)
