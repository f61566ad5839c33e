"""Replay and audit commands: history, explain, export and import of bundles."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Any

import click

from replay.bundle import BundleError, export_bundle, import_bundle
from replay.history import explain, order_history

from .common import WHEN, console, db_option, err_console, json_option, open_ledger, print_json


@click.command()
@click.argument("order_id")
@db_option
@json_option
@click.option("--at-position", type=click.IntRange(min=0), default=None,
              help="Stop at this global position.")
def history(order_id: str, db: str | None, as_json: bool, at_position: int | None) -> None:
    """Step through an order's life: every event with the state after it."""
    ledger = open_ledger(db)
    try:
        steps = order_history(ledger, order_id, upto=at_position)
    finally:
        ledger.close()
    if not steps:
        err_console.print(f"no order {order_id} in the ledger", markup=False)
        sys.exit(1)
    if as_json:
        print_json([s.as_dict() for s in steps])
        return
    console.print(f"History of order {order_id}: {len(steps)} events", markup=False)
    for s in steps:
        d = s.as_dict()
        st = d["state"]
        console.print(f"#{d['position']} {d['at']} {d['type']} by {d['actor']} "
                      f"(command {d['command_id']})", markup=False)
        fields = ", ".join(f"{k}={_short(v)}" for k, v in d["fields"].items()
                           if v not in (None, [], "", {}))
        if fields:
            console.print(f"    {fields}", markup=False)
        qty = " ".join(f"{i['order_item_id']}:{i['quantity_shipped']}/{i['quantity_canceled']}"
                       f"/{i['quantity']}" for i in st["items"])
        nd = st["next_deadline"]
        console.print(f"    -> {st['status']}; shipped/canceled/ordered {qty}"
                      + (f"; next {nd['kind']} at {nd['at']}" if nd else ""), markup=False)


def _short(v: Any) -> str:
    text = v if isinstance(v, str) else __import__("json").dumps(v, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


@click.command("explain")
@click.argument("order_id")
@db_option
@json_option
def explain_cmd(order_id: str, db: str | None, as_json: bool) -> None:
    """Why an order is in its status, and what happens next."""
    ledger = open_ledger(db)
    try:
        result = explain(ledger, order_id)
    finally:
        ledger.close()
    if result is None:
        err_console.print(f"no order {order_id} in the ledger", markup=False)
        sys.exit(1)
    if as_json:
        print_json(result)
        return
    grey = "" if result["actionable"] else " (greyed out)"
    console.print(f"Order {order_id} is {result['status']}{grey} because:", markup=False)
    for r in result["because"]:
        console.print(f"  #{r['position']} {r['at']} {r['type']} by {r['actor']}: {r['why']} "
                      f"-> {r['status_after']}", markup=False)
    console.print(f"The seller can: {result['seller_can']}", markup=False)
    nd = result["next_deadline"]
    if nd:
        console.print(f"Next: at {nd['at']} ({nd['kind']}): {nd['what_happens']}", markup=False)
    else:
        console.print("Next: no deadline is pending; nothing happens by itself.", markup=False)


@click.command("export")
@db_option
@click.option("--order", "orders", multiple=True, help="Only this order (repeat for several).")
@click.option("--since", type=WHEN, default=None,
              help="Only aggregates with an event at or after this time (whole aggregates).")
@click.option("--until", type=WHEN, default=None, help="Only events up to this time.")
@click.option("--redact", is_flag=True,
              help="Replace buyer names, e-mails, phones and addresses with stable pseudonyms.")
@click.option("--salt", default=None,
              help="Pseudonym salt: the same salt gives the same pseudonyms (default: random).")
@click.option("--out", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write to this file instead of stdout.")
def export_cmd(db: str | None, orders: tuple, since: datetime | None, until: datetime | None,
               redact: bool, salt: str | None, out: str | None) -> None:
    """Write a checksummed event bundle (JSON Lines) to reproduce a problem elsewhere."""
    ledger = open_ledger(db)
    try:
        if out:
            import os

            parent = os.path.dirname(os.path.abspath(out))
            if not os.path.isdir(parent):
                raise click.UsageError(f"cannot write {out!r}: directory {parent!r} does not exist")
            with open(out, "wb") as f:
                n = export_bundle(ledger, f, orders=orders, since=since, until=until,
                                  redact=redact, salt=salt.encode() if salt else None)
        else:
            n = export_bundle(ledger, sys.stdout.buffer, orders=orders, since=since, until=until,
                              redact=redact, salt=salt.encode() if salt else None)
    finally:
        ledger.close()
    err_console.print(f"exported {n} events", markup=False)


def import_bundle_file(path: str, db: str | None, as_json: bool) -> None:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise click.UsageError(f"cannot read {path!r}: {exc.strerror}") from None
    ledger = open_ledger(db)
    try:
        n = import_bundle(ledger, data)
    except BundleError as exc:
        if as_json:
            print_json({"imported": 0, "error": str(exc)})
        else:
            err_console.print(f"bundle refused, nothing imported: {exc}", markup=False)
        sys.exit(1)
    finally:
        ledger.close()
    if as_json:
        print_json({"imported": n})
    else:
        console.print(f"imported {n} events; run `order-ledger rebuild` to build the views",
                      markup=False)


class ImportGroup(click.Group):
    """``import FILE`` imports a bundle; ``import sp-api FILE`` the marketplace's orders."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["bundle", *args]
        return super().parse_args(ctx, args)


@click.group("import", cls=ImportGroup,
             context_settings={"help_option_names": ["-h", "--help"]})
def import_group() -> None:
    """Import events: `import BUNDLE --db NEW` or `import sp-api FILE`."""


@import_group.command("bundle")
@click.argument("file", type=click.Path(dir_okay=False))
@db_option
@json_option
def import_bundle_cmd(file: str, db: str | None, as_json: bool) -> None:
    """Import an event bundle into a new, empty ledger (checksum verified first)."""
    import_bundle_file(file, db, as_json)


def register(main: click.Group) -> None:
    for cmd in (history, explain_cmd, export_cmd, import_group):
        main.add_command(cmd)
