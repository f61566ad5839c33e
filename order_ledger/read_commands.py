"""Read commands over the views: orders, report, inventory, metrics, notifications,
and keeping the views current: sync, follow, rebuild.

Every read first brings the views up to the ledger's head, so what it prints
is never stale. The views live in their own file (``--views`` /
``ORDER_LEDGER_VIEWS``; default beside the ledger, see docs/projections.md).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from datetime import datetime, timezone
from typing import Any, Callable

import click

from ledger.store import connection_lost
from projections import NAMES, Views, read
from projections.model import STATUSES
from projections.rows import Metrics, plain

from .common import (
    WHEN,
    Bar,
    as_of_options,
    as_of_read,
    console,
    db_option,
    err_console,
    json_option,
    past,
    print_json,
    print_rows,
    run_views,
    views_option,
)

quiet_option = click.option("--quiet", "-q", is_flag=True,
                            help="No progress bar and no summary line.")
batch_option = click.option("--batch-size", default=10_000, show_default=True,
                            type=click.IntRange(1, 1_000_000),
                            help="Events read and applied per transaction.")
jobs_option = click.option(
    "--jobs", "-j", default=None, type=click.IntRange(1, 64),
    help="Processes for a rebuild from a SQLite ledger (default: 2 on a multi-core machine "
         "for 20,000+ events, else 1).")


def _views_common(fn: Any) -> Any:
    return db_option(views_option(fn))


def page_options(listing: str) -> Callable[[Any], Any]:
    """``--sort KEY``, ``--asc/--desc``, ``--limit N``, ``--offset N`` for a list
    command; the command gets one ``page`` (:class:`projections.read.Page`), which
    the views apply in their query."""
    keys = read.SORT_KEYS[listing]
    default = read.DEFAULT_SORT[listing]
    described = ", ".join(f"{k} ({'descending' if d else 'ascending'})"
                          for k, (_, d) in keys.items())

    def decorate(fn: Any) -> Any:
        import functools

        @click.option("--sort", "sort", type=click.Choice(list(keys)), default=None,
                      help=f"Sort by this key (default {default}); keys and their default "
                           f"direction: {described}. Ties: by {', '.join(read.TIEBREAK[listing])}.")
        @click.option("--desc/--asc", "desc", default=None,
                      help="Descending / ascending instead of the key's default direction.")
        @click.option("--limit", type=click.IntRange(min=0), default=None, metavar="N",
                      help="At most N rows (after --offset).")
        @click.option("--offset", type=click.IntRange(min=0), default=0, metavar="N",
                      help="Skip the first N rows of the sorted list.")
        @functools.wraps(fn)
        def wrapper(*args: Any, sort: str | None, desc: bool | None, limit: int | None,
                    offset: int, **kwargs: Any) -> Any:
            page = read.Page(sort=sort, desc=desc, limit=limit, offset=offset)
            return fn(*args, page=page, **kwargs)

        return wrapper

    return decorate


def default_time(ledger: Any) -> datetime:
    """The ledger's clock (the latest tick: its watermark), else the wall clock."""
    return ledger.now() or datetime.now(timezone.utc)


# --- orders --------------------------------------------------------------------------


def _table(rows: list[dict], title: str, keep: tuple[str, ...] = ()) -> None:
    """A table for people; ``keep`` columns are never wrapped or cut (ids, dates)."""
    if not rows:
        console.print(f"{title}: (no rows)", markup=False)
        return
    print_rows([["" if v is None else ("yes" if v is True else "no" if v is False else str(v))
                 for v in r.values()] for r in rows], list(rows[0]), title, keep)


def _short(t: str | None) -> str:
    """``2026-03-02T09:00:00+01:00`` -> ``2026-03-02 09:00`` (the recorded offset's clock)."""
    return "" if not t else t[:10] + " " + t[11:16]


def _actionable_text(row: dict) -> str:
    if row["actionable"]:
        return "yes"
    return "greyed out" if row["greyed_out"] else "no"


def _items_text(row: dict) -> str:
    parts = []
    for it in row["items"]:
        text = f"{it['sku']} x{it['quantity']}"
        extra = [f"{it['quantity_shipped']} shipped"] if it["quantity_shipped"] else []
        if it["quantity_canceled"]:
            extra.append(f"{it['quantity_canceled']} canceled")
        parts.append(text + (f" ({', '.join(extra)})" if extra else ""))
    return ", ".join(parts)


@click.command("orders")
@click.option("--status", type=click.Choice(STATUSES), default=None,
              help="Only orders with this status.")
@_views_common
@json_option
@as_of_options
@page_options("orders")
def orders_cmd(status: str | None, db: str | None, views: str | None, as_json: bool,
               as_of: datetime | None = None, at_position: int | None = None,
               page: read.Page = read.DEFAULT_PAGE) -> None:
    """Manage Orders: every order, newest purchase first.

    Unshipped and PartiallyShipped orders are actionable; Pending and Canceled
    ones are greyed out. The day-23 warning shows until the order is shipped or
    canceled. --json prints an array of rows (order_id, status, actionable,
    greyed_out, warning, items, dates, ...).
    """
    if past(as_of, at_position):
        rows = as_of_read(db, as_of, at_position, lambda s, _: s.orders(status, page),
                          ["orders"])
    else:
        rows = run_views(db, views, lambda v, _: v.orders(status, page))
    rows = plain(rows)
    if as_json:
        print_json(rows)
        return
    _table(
        [{"order": r["order_id"], "status": r["status"], "actionable": _actionable_text(r),
          "purchased": _short(r["purchase_date"]), "items": _items_text(r),
          "note": r["warning"] or (f"canceled: {r['cancel_reason']}" if r["cancel_reason"]
                                   else ("buyer asked to cancel"
                                         if r["buyer_requested_cancel"] else ""))}
         for r in rows],
        "Manage Orders" + (f" ({status})" if status else ""),
        keep=("order",))


# --- report ----------------------------------------------------------------------------


@click.command("report")
@click.argument("kind", type=click.Choice(["orders", "unshipped", "all-orders"]))
@click.option("--out", "out", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write the report to this file (default: standard output).")
@click.option("--at", "at", type=WHEN, default=None,
              help="The report time (reporting-date, days-past-promise); default: the "
                   "ledger's clock, else now.")
@click.option("--layout", type=click.Choice(["current", "old"]), default="current",
              show_default=True,
              help="unshipped only: the marketplace's current columns, or the first 26 "
                   "(old) this project wrote.")
@click.option("--encoding", "encoding", type=click.Choice(list(read.REPORT_ENCODINGS)),
              default="marketplace", show_default=True,
              help="The file's encoding. marketplace: the one the orders' marketplace writes "
                   "(cp932, i.e. Shift_JIS, for Amazon.co.jp; windows-1252 elsewhere). A "
                   "character the encoding lacks is written as '?' (said on stderr); utf-8 "
                   "keeps every character.")
@_views_common
@as_of_options
def report_cmd(kind: str, out: str | None, at: datetime | None, layout: str, encoding: str,
               db: str | None, views: str | None, as_of: datetime | None = None,
               at_position: int | None = None) -> None:
    """Write the Orders, Unshipped Orders or All Orders report (tab-separated, header
    first).

    orders: every order that left Pending, one row per item (32 columns).
    unshipped: Unshipped/PartiallyShipped orders, rows with quantity to ship > 0
    (--layout old: the first 26-column layout).
    all-orders: every order, Pending and Canceled too, one row per item.
    The file is in the encoding the orders' marketplace (sales channel) writes:
    cp932 for Amazon.co.jp, windows-1252 elsewhere; --encoding utf-8 keeps every
    character. The same events and --at give byte-identical files.
    """
    if layout != "current" and kind != "unshipped":
        raise click.UsageError("--layout is for the unshipped report only")
    if out is not None:
        parent = os.path.dirname(os.path.abspath(out))
        if not os.path.isdir(parent):
            raise click.UsageError(
                f"cannot write the report to {out!r}: directory {parent!r} does not exist")

    def pick(s: Any, when: datetime) -> Any:
        if kind == "orders":
            return s.report_orders(when)
        if kind == "all-orders":
            return s.report_all_orders(when)
        return s.report_unshipped(when, layout)

    async def work(v: Views, ledger: Any) -> str:
        return await pick(v, at or default_time(ledger))

    if past(as_of, at_position):
        text = as_of_read(db, as_of, at_position, lambda s, when: pick(s, at or when),
                          ["orders"])
    else:
        text = run_views(db, views, work)
    try:
        data, used, lost = read.encode_report(text, encoding)
    except read.ReportEncodingError as exc:
        raise click.UsageError(str(exc)) from None
    if lost:
        err_console.print(f"{lost} character{'s' if lost != 1 else ''} {used} lacks written "
                          f"as '?' (--encoding utf-8 keeps them)", markup=False)
    rows = text.count("\n") - 1
    if out is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    from replay.replay_dir import write_atomic

    try:
        write_atomic(out, data)
    except OSError as exc:
        raise click.UsageError(f"cannot write the report to {out!r}: {exc.strerror}") from None
    err_console.print(f"wrote {rows} rows to {out}", markup=False)


# --- inventory ---------------------------------------------------------------------------


@click.command("inventory")
@_views_common
@json_option
@as_of_options
@page_options("inventory")
def inventory_cmd(db: str | None, views: str | None, as_json: bool,
                  as_of: datetime | None = None, at_position: int | None = None,
                  page: read.Page = read.DEFAULT_PAGE) -> None:
    """Manage Inventory: tracked SKUs (those given a quantity with set-inventory).

    available: units left; active: available > 0 (a listing at 0 is inactive);
    reserved: units in orders still Pending. --json prints an array of rows
    (sku, available, active, reserved).
    """
    if past(as_of, at_position):
        rows = as_of_read(db, as_of, at_position, lambda s, _: s.inventory(page),
                          ["inventory"])
    else:
        rows = run_views(db, views, lambda v, _: v.inventory(page))
    rows = plain(rows)
    if as_json:
        print_json(rows)
        return
    _table([{"sku": r["sku"], "available": r["available"], "active": r["active"],
             "reserved (pending)": r["reserved"]} for r in rows], "Manage Inventory",
           keep=("sku",))


# --- metrics -----------------------------------------------------------------------------


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 100:.2f}%"


@click.command("metrics")
@click.option("--at", "at", type=WHEN, default=None,
              help="The instant the windows end at; default: the ledger's clock, else now.")
@_views_common
@json_option
@as_of_options
def metrics_cmd(at: datetime | None, db: str | None, views: str | None, as_json: bool,
                as_of: datetime | None = None, at_position: int | None = None) -> None:
    """Seller performance: cancellation rate (7 days), late shipment rate (10 and
    30 days) and valid tracking rate (30 days), windows [at - N days, at).

    --json keys: cancellation_rate, late_shipment_rate.10d / .30d,
    valid_tracking_rate; each with numerator, denominator, rate (null when
    nothing is in the window), target, breached (cancellation: and breakdown).
    """
    async def work(v: Views, ledger: Any) -> Metrics:
        return await v.metrics(at or default_time(ledger))

    if past(as_of, at_position):
        m = as_of_read(db, as_of, at_position, lambda s, when: s.metrics(at or when), ["metrics"])
    else:
        m = run_views(db, views, work)
    m = plain(m)
    if as_json:
        print_json(m)
        return
    rows = []
    for label, x in (("cancellation", m["cancellation_rate"]),
                     ("late shipment", m["late_shipment_rate"]["10d"]),
                     ("late shipment", m["late_shipment_rate"]["30d"]),
                     ("valid tracking", m["valid_tracking_rate"])):
        rows.append({"rate of": label, "days": x["window"]["days"], "by": x["window"]["by"],
                     "count": f"{x['numerator']}/{x['denominator']}", "rate": _pct(x["rate"]),
                     "target": x["target_text"], "status": "BREACHED" if x["breached"] else "ok"})
    _table(rows, f"Seller metrics, windows [at - days, at), at {m['at']}",
           keep=("count", "rate", "status"))
    breakdown = m["cancellation_rate"]["breakdown"]
    if breakdown:
        console.print("seller-caused cancellations by reason: " + ", ".join(
            f"{k} {n}" for k, n in breakdown.items()), markup=False)


# --- notifications ---------------------------------------------------------------------------


def _summary(row: dict) -> str:
    c = row["content"]
    kind = row["kind"]
    if kind == "order-confirmation":
        return f"estimated delivery {_short(c.get('estimated_delivery_date'))}"
    if kind == "sold-ship-now":
        items = ", ".join(f"{i['sku']} x{i['quantity']}" for i in c.get("items", []))
        return f"ship by {_short(c.get('ship_by'))}: {items}"
    if kind == "cancellation":
        return f"canceled ({c.get('reason')}): " + ", ".join(
            f"{i['title']} x{i['quantity']}" for i in c.get("items", []))
    if kind == "ship-by-warning":
        return str(c.get("text"))
    return str(c)


@click.command("notifications")
@click.option("--order", "order_id", default=None, help="Only this order's notifications.")
@_views_common
@json_option
@page_options("notifications")
@as_of_options
def notifications_cmd(order_id: str | None, db: str | None, views: str | None,
                      as_json: bool, page: read.Page = read.DEFAULT_PAGE,
                      as_of: datetime | None = None, at_position: int | None = None) -> None:
    """The notifications the ledger sends (docs/rules.md §5), in event order.

    Buyer: order-confirmation (estimated delivery date), cancellation (with the
    reason). Seller: sold-ship-now (never the buyer's address), ship-by-warning.
    Nothing for a declined or fraudulent payment. --json prints an array of rows
    (position, seq, at, to, kind, order_id, content).
    """
    if past(as_of, at_position):
        rows = as_of_read(db, as_of, at_position,
                          lambda s, _: s.notifications(order_id, page), ["notifications"])
    else:
        rows = run_views(db, views, lambda v, _: v.notifications(order_id, page))
    rows = plain(rows)
    if as_json:
        print_json(rows)
        return
    _table([{"#": r["position"], "at": _short(r["at"]), "to": r["to"], "kind": r["kind"],
             "order": r["order_id"], "content": _summary(r)} for r in rows],
           "Notifications", keep=("order",))


# --- sync, follow, rebuild ------------------------------------------------------------------


#: the progress bar (events done, events/s, time left), shared with ``apply``
_Bar = Bar


def _rate_text(events: int, seconds: float) -> str:
    rate = events / seconds if seconds > 0 else 0.0
    return f"{events} events in {seconds:.2f} s ({rate:,.0f} events/s)"


@click.command("sync")
@_views_common
@batch_option
@jobs_option
@quiet_option
@json_option
def sync_cmd(db: str | None, views: str | None, batch_size: int, jobs: int | None, quiet: bool,
             as_json: bool) -> None:
    """Bring every view up to the ledger's head (reads do this by themselves).

    A view never built, or built by an older version of its code, is rebuilt.
    """
    with _Bar("syncing", not quiet and not as_json) as bar:
        r = run_views(db, views, lambda v, _: v.sync(progress=bar), catch_up=False,
                      batch_size=batch_size, jobs=jobs)
    if as_json:
        print_json({"position": r.position, "events": r.events, "seconds": r.seconds,
                    "rebuilt": r.rebuilt})
    elif not quiet:
        rebuilt = f"; rebuilt {', '.join(r.rebuilt)}" if r.rebuilt else ""
        console.print(f"views at position {r.position}: applied "
                      f"{_rate_text(r.events, r.seconds)}{rebuilt}", markup=False)


@click.command("follow")
@click.option("--interval", default=1.0, show_default=True, type=click.FloatRange(0.01),
              help="Seconds between polls of the ledger.")
@click.option("--max-seconds", default=None, type=click.FloatRange(0),
              help="Stop after this many seconds (default: until interrupted).")
@_views_common
@batch_option
@quiet_option
def follow_cmd(interval: float, max_seconds: float | None, db: str | None, views: str | None,
               batch_size: int, quiet: bool) -> None:
    """Keep the views current: poll the ledger and apply new events as they come.

    Runs until Ctrl-C (or SIGTERM, or --max-seconds), then exits 0.
    """
    async def work(v: Views, ledger: Any) -> int:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):  # pragma: no cover - not POSIX
                pass
        deadline = None if max_seconds is None else time.monotonic() + max_seconds
        position = 0
        waiting = False
        if not quiet:
            console.print(f"following the ledger into {v.path} (Ctrl-C to stop)", markup=False)
        stopping = asyncio.ensure_future(stop.wait())
        while not stop.is_set():
            syncing = asyncio.ensure_future(v.sync())
            await asyncio.wait({syncing, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not syncing.done():
                # stop at once: the batch in flight is rolled back, nothing half-applied
                syncing.cancel()
                await asyncio.gather(syncing, return_exceptions=True)
                break
            try:
                r = syncing.result()
            except Exception as exc:
                if not connection_lost(exc):
                    raise
                # the server restarted or ended our connection: keep following
                if not waiting:
                    err_console.print(f"the ledger's server is not answering ({exc}); "
                                      "retrying", markup=False)
                waiting = True
                await asyncio.wait({stopping}, timeout=min(max(interval, 0.2), 2.0))
                if deadline is not None and time.monotonic() >= deadline:
                    break
                continue
            if waiting:
                err_console.print("the ledger's server answers again", markup=False)
                waiting = False
            position = max(position, r.position)
            if r.events and not quiet:
                console.print(f"position {r.position}: applied "
                              f"{_rate_text(r.events, r.seconds)}", markup=False)
            wait = interval
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
                if wait <= 0:
                    break
            await asyncio.wait({stopping}, timeout=wait)
        stopping.cancel()
        return position

    try:
        position = run_views(db, views, work, catch_up=False, batch_size=batch_size)
    except KeyboardInterrupt:  # pragma: no cover - signal handler normally catches it
        position = None
    if not quiet:
        where = f" at position {position}" if position is not None else ""
        console.print(f"stopped{where}", markup=False)


@click.command("rebuild")
@click.argument("names", nargs=-1, type=click.Choice(NAMES))
@_views_common
@batch_option
@jobs_option
@quiet_option
@json_option
def rebuild_cmd(names: tuple[str, ...], db: str | None, views: str | None, batch_size: int,
                jobs: int | None, quiet: bool, as_json: bool) -> None:
    """Rebuild views from the first event (all of them, or the NAMEs given).

    Without NAMEs a built audit index of the current version is kept and caught
    up (its rows never change meaning); name it to rebuild it.

    The new tables are filled beside the old ones and swapped in at the end in
    one transaction: readers see the old view until then, and an interrupted
    rebuild leaves it intact. Views: orders, inventory, metrics, notifications.
    """
    with _Bar("rebuilding", not quiet and not as_json) as bar:
        r = run_views(db, views, lambda v, _: v.rebuild(list(names) or None, progress=bar),
                      catch_up=False, batch_size=batch_size, jobs=jobs)
    if as_json:
        print_json({"rebuilt": r.rebuilt, "events": r.events, "seconds": r.seconds,
                    "events_per_second": r.rate, "position": r.position})
    elif not quiet:
        console.print(f"rebuilt {', '.join(r.rebuilt)} from {_rate_text(r.events, r.seconds)}; "
                      f"views at position {r.position}", markup=False)


COMMANDS = (orders_cmd, report_cmd, inventory_cmd, metrics_cmd, notifications_cmd, sync_cmd,
            follow_cmd, rebuild_cmd)


def register(main: click.Group) -> None:
    """Add the read commands to the ``order-ledger`` group."""
    for cmd in COMMANDS:
        main.add_command(cmd)
