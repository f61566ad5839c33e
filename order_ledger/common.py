"""Shared pieces of the command line: options, opening the ledger, output."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from decimal import Decimal
from typing import Any, Callable

import click
from rich.console import Console
from rich.table import Table

from ledger.application import Ledger
from ledger.clock import FixedClock, SystemClock
from ledger.errors import LedgerError, StoreError

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


class When(click.ParamType):
    """An ISO-8601 time with a UTC offset."""

    name = "TIME"

    def convert(self, value: Any, param: Any, ctx: Any) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            t = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            self.fail(f"{value!r} is not an ISO-8601 time (e.g. 2026-03-01T10:00:00+01:00)",
                      param, ctx)
        if t.tzinfo is None:
            self.fail(f"{value!r} has no UTC offset; add one such as +01:00 or Z", param, ctx)
        return t


WHEN = When()

db_option = click.option(
    "--db", envvar="ORDER_LEDGER_DB", default=None, metavar="PATH|URL",
    help="Ledger location: a SQLite file (default ./order-ledger.db) or a postgresql:// URL. "
         "Also ORDER_LEDGER_DB.")
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for programs.")
now_option = click.option(
    "--now", type=WHEN, default=None,
    help="The business time to act at (ISO-8601 with offset); default: the wall clock.")


def open_ledger(db: str | None, now: datetime | None = None, *, mode: str = "write") -> Ledger:
    """Open the ledger for a command; the library's store errors (no ledger, read-only,
    unreachable server, bad URL) are usage errors: exit 2 with the reason."""
    try:
        ledger = Ledger(db, clock=FixedClock(now) if now else SystemClock(), mode=mode)
    except StoreError as exc:
        raise click.UsageError(str(exc)) from None
    except LedgerError as exc:
        raise click.ClickException(str(exc)) from None
    except Exception as exc:  # the library's connection errors, bad URLs
        raise click.UsageError(f"cannot open the ledger {db!r}: {exc}") from None
    if mode == "write":
        try:
            ledger.probe_store()  # e.g. a cipher key that does not fit: refused before any work
        except StoreError as exc:
            ledger.close()
            raise click.UsageError(str(exc)) from None
    return ledger


def open_reader(db: str | None, now: datetime | None = None) -> Ledger:
    """Open an existing ledger read-only for a read command: exit 2 "no ledger at …"
    when there is none (nothing is created); works on read-only storage."""
    return open_ledger(db, now, mode="read")


def to_jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, Decimal):
        return str(obj)
    return obj


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(to_jsonable(obj), ensure_ascii=False) + "\n")


def print_table(rows: list[dict], columns: list[str] | None = None, title: str | None = None,
                formats: dict[str, Callable[[Any], str]] | None = None) -> None:
    """Print rows as a table for people."""
    if not rows:
        console.print(f"{title + ': ' if title else ''}(no rows)")
        return
    columns = columns or list(rows[0])
    formats = formats or {}
    table = Table(title=title, show_lines=False)
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*[
            formats[col](row.get(col)) if col in formats else _cell(row.get(col))
            for col in columns])
    console.print(table)


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "yes" if v else "no"
    return str(v)


def describe_error(err: dict) -> str:
    text = f"[{err.get('code')}] {err.get('message')}"
    if err.get("field"):
        text += f" (field: {err['field']})"
    if err.get("hint"):
        text += f" — fix: {err['hint']}"
    return text
