"""Replay and audit commands: history, explain, export and import of bundles; as-of
reads (``--as-of`` / ``--at-position`` on show, orders, report, metrics, inventory),
audit, replay to a directory, bisect and diff. See docs/replay.md."""

from __future__ import annotations

import os
import sys
from datetime import datetime
from typing import Any

import click

from projections.rows import plain
from replay.bundle import BundleError, export_bundle, import_bundle
from replay.history import explain, order_history

from .common import (
    WHEN,
    known_at,
    known_at_option,
    past,
    resolve_point,
    run_views,
    console,
    import_group,
    db_option,
    err_console,
    json_option,
    open_ledger,
    open_reader,
    print_json,
    to_jsonable,
)


@click.command()
@click.argument("order_id")
@db_option
@json_option
@click.option("--at-position", type=click.IntRange(min=0), default=None,
              help="Stop at this global position.")
@click.option("--as-of", "as_of", type=WHEN, default=None, metavar="TIME",
              help="Only the events that had happened by this business time.")
@known_at_option
def history(order_id: str, db: str | None, as_json: bool, at_position: int | None,
            as_of: datetime | None = None) -> None:
    """Step through an order's life: every event with the state after it.

    Each event shows its business time and, when it differs, when the ledger
    recorded it."""
    ledger = open_reader(db)
    if past(as_of, at_position):
        from replay.asof import steps_as_of

        steps = steps_as_of(ledger, order_id, resolve_point(ledger, as_of, at_position))
    else:
        steps = order_history(ledger, order_id)
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
        _event_lines(d)
        qty = " ".join(f"{i['order_item_id']}:{i['quantity_shipped']}/{i['quantity_canceled']}"
                       f"/{i['quantity']}" for i in st["items"])
        nd = st["next_deadline"]
        console.print(f"    -> {st['status']}; shipped/canceled/ordered {qty}"
                      + (f"; next {nd['kind']} at {nd['at']}" if nd else ""), markup=False)


def _event_lines(d: dict, indent: str = "", suffix: str = "") -> None:
    """One event (``as_dict`` of a step or a finding): who did what, then its set fields."""
    rec = d.get("recorded_at")
    recorded = f", recorded {rec}" if rec and rec != d["at"] else ""
    console.print(f"{indent}#{d['position']} {d['at']} {d['type']} by {d['actor']} "
                  f"(command {d['command_id']}{recorded}){suffix}", markup=False)
    fields = ", ".join(f"{k}={_short(v)}" for k, v in d["fields"].items()
                       if v not in (None, [], "", {}))
    if fields:
        console.print(f"    {fields}", markup=False)


def _short(v: Any) -> str:
    text = v if isinstance(v, str) else __import__("json").dumps(v, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


@click.command("explain")
@click.argument("order_id")
@db_option
@json_option
def explain_cmd(order_id: str, db: str | None, as_json: bool) -> None:
    """Why an order is in its status, and what happens next."""
    ledger = open_reader(db)
    found = explain(ledger, order_id)
    if found is None:
        err_console.print(f"no order {order_id} in the ledger", markup=False)
        sys.exit(1)
    result = plain(found)
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
    ledger = open_reader(db)
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
    if as_json:
        print_json({"imported": n})
    else:
        console.print(f"imported {n} events; run `order-ledger rebuild` to build the views",
                      markup=False)


@import_group.command("bundle")
@click.argument("file", type=click.Path(dir_okay=False))
@db_option
@json_option
def import_bundle_cmd(file: str, db: str | None, as_json: bool) -> None:
    """Import an event bundle into a new, empty ledger (checksum verified first)."""
    import_bundle_file(file, db, as_json)


# --- audit ------------------------------------------------------------------------------------

views_file_option = click.option(
    "--views", envvar="ORDER_LEDGER_VIEWS", default=None, metavar="PATH",
    help="The views file (default: beside the ledger). Also ORDER_LEDGER_VIEWS.")


@click.command("audit")
@click.option("--order", "order_id", default=None, help="Only events of this order "
              "(its inventory movements included).")
@click.option("--type", "types", multiple=True, metavar="TYPE",
              help="Only this event type, e.g. LedgerCanceled (repeat for several).")
@click.option("--actor", default=None, help="Only events by this actor (seller, buyer, "
              "payments, ledger, ...).")
@click.option("--since", type=WHEN, default=None,
              help="Only events whose business time is at or after this (inclusive).")
@click.option("--until", type=WHEN, default=None,
              help="Only events whose business time is at or before this (inclusive).")
@click.option("--reason", default=None, help="Only events with this reason (cancel reason "
              "code, adjustment reason, declined/fraud, PaymentNotVerified, ...).")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Only the newest N matches (still printed oldest first).")
@click.option("--offset", type=click.IntRange(min=0), default=0, metavar="N",
              help="Skip the newest N matches first (with --limit: page back in time).")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default=None,
              help="Output format (default: table; --json is --format json).")
@db_option
@views_file_option
@json_option
@known_at_option
def audit_cmd(order_id: str | None, types: tuple[str, ...], actor: str | None,
              since: datetime | None, until: datetime | None, reason: str | None,
              limit: int | None, fmt: str | None, db: str | None, views: str | None,
              as_json: bool, offset: int = 0) -> None:
    """Events across all orders matching every filter given, newest last.

    Served from the audit index view (caught up first), so it answers fast on
    big ledgers. json and csv add each event's own fields (decoded from the
    ledger by position).
    """
    from replay.audit import OUTPUT_COLUMNS, AuditError, AuditQuery, query, with_fields

    if as_json and fmt not in (None, "json"):
        raise click.UsageError("give --json or --format, not both")
    fmt = "json" if as_json else (fmt or "table")
    try:
        q = AuditQuery(order_id=order_id, types=types, actor=actor, since=since, until=until,
                       reason=reason, limit=limit, offset=offset)
    except AuditError as exc:
        raise click.UsageError(str(exc)) from None

    async def work(v: Any, ledger: Any) -> list[dict]:
        k = known_at()
        if k is not None:
            q.upto = ledger.position_known_at(k)
        rows = await query(v, q)
        return with_fields(ledger, rows) if fmt != "table" else rows

    rows = run_views(db, views, work)
    if fmt == "json":
        print_json(rows)
    elif fmt == "csv":
        import csv
        import json as _json

        w = csv.writer(sys.stdout, lineterminator="\n")
        w.writerow([*OUTPUT_COLUMNS, "fields", "recorded_at"])
        for r in rows:
            w.writerow(["" if r[c] is None else r[c] for c in OUTPUT_COLUMNS]
                       + [_json.dumps(to_jsonable(r["fields"]), ensure_ascii=False),
                          r["recorded_at"] or ""])
    else:
        aligned([{"#": r["position"], "at": r["at"], "type": r["type"], "actor": r["actor"],
                  "command": r["command_id"], "order": r["order_id"], "sku": r["sku"],
                  "reason": r["reason"]} for r in rows])
        err_console.print(f"{len(rows)} event{'s' if len(rows) != 1 else ''}", markup=False)


def aligned(rows: list[dict]) -> None:
    """A plain table for people: aligned columns, never wrapped or cut (wide is fine:
    ids and times stay whole); columns empty in every row are left out."""
    if not rows:
        return
    cols = [c for c in rows[0] if any(r[c] not in (None, "") for r in rows)]
    cells = [[("" if r[c] is None else str(r[c])) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    out = ["  ".join(c.ljust(w) for c, w in zip(cols, widths)).rstrip()]
    out += ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells]
    sys.stdout.write("\n".join(out) + "\n")


# --- replay to a directory --------------------------------------------------------------------


def parse_until(value: str | None) -> tuple[datetime | None, int | None]:
    """``--until``: a whole number is a position, anything else an ISO time."""
    if value is None:
        return None, None
    text = value.strip()
    if text.isdigit():
        return None, int(text)
    return WHEN.convert(text, None, None), None


@click.command("replay")
@click.option("--until", "until", default=None, metavar="TIME|POSITION",
              help="Replay up to this business time (the commands applied by then) or "
                   "global position (default: everything).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Directory for the files; created if missing (its parent must exist).")
@click.option("--at", "at", type=WHEN, default=None,
              help="Evaluation time of the metrics and the Unshipped report (default: the "
                   "--until time, or the ledger's clock at that position).")
@db_option
@json_option
def replay_cmd(until: str | None, out_dir: str, at: datetime | None, db: str | None,
               as_json: bool) -> None:
    """Rebuild every view as of a point, in memory, and write them into a directory.

    orders.txt and unshipped.txt (the reports), manage-orders.json,
    inventory.json, metrics.json, notifications.json, and replay.json (the
    point and each file's SHA-256). The live views are not touched; the same
    events and point give byte-identical files.
    """
    from replay.replay_dir import ReplayDirError, write_replay

    try:
        as_of, position = parse_until(until)
    except click.BadParameter as exc:
        raise click.UsageError(f"--until: {exc.message}") from None
    ledger = open_reader(db)
    point = resolve_point(ledger, as_of, position)
    try:
        manifest = write_replay(ledger, point, out_dir, at)
    except ReplayDirError as exc:
        raise click.UsageError(str(exc)) from None
    if as_json:
        print_json(manifest | {"out": out_dir})
        return
    what = f"as of {manifest['as_of']}" if manifest["as_of"] else "at"
    console.print(f"replayed {what} position {manifest['position']} (evaluated at "
                  f"{manifest['at']}) into {out_dir}:", markup=False)
    for name, digest in manifest["files"].items():
        console.print(f"  {name}  sha256 {digest}", markup=False)


# --- bisect -------------------------------------------------------------------------------------


def _order_line(o: dict | None) -> str:
    if o is None:
        return "the order does not exist yet"
    items = ", ".join(f"{i['order_item_id']} {i['quantity_shipped']} shipped/"
                      f"{i['quantity_canceled']} canceled of {i['quantity']}" for i in o["items"])
    extra = []
    if o.get("warning"):
        extra.append(f"warning: {o['warning']}")
    if o.get("cancel_reason"):
        extra.append(f"canceled ({o['cancel_reason']}) by {o.get('canceled_by')}")
    if o.get("next_deadline"):
        extra.append(f"next {o['next_deadline']['kind']} at {o['next_deadline']['at']}")
    return f"{o['status']}; {items}" + ("; " + "; ".join(extra) if extra else "")


def _metrics_line(m: dict | None) -> str:
    if m is None:
        return ""
    parts = []
    for label, x in (("cancellation", m["cancellation_rate"]),
                     ("late 10d", m["late_shipment_rate"]["10d"]),
                     ("late 30d", m["late_shipment_rate"]["30d"]),
                     ("tracking", m["valid_tracking_rate"])):
        rate = "-" if x["rate"] is None else f"{x['rate'] * 100:.2f}%"
        parts.append(f"{label} {x['numerator']}/{x['denominator']} {rate}"
                     + (" BREACHED" if x["breached"] else ""))
    return f"metrics at {m['at']}: " + ", ".join(parts)


def _state_lines(label: str, st: dict | None, show_order: bool, show_metrics: bool) -> None:
    if st is None:
        return
    where = f"#{st['position']}" if st.get("position") is not None else "start"
    if show_order:
        console.print(f"  {label} ({where}): {_order_line(st.get('order'))}", markup=False)
    if show_metrics:
        console.print(f"  {label} ({where}): {_metrics_line(st.get('metrics'))}", markup=False)


@click.command("bisect")
@click.option("--order", "order_id", default=None, help="The order the condition is about.")
@click.option("--until-status", type=click.Choice(
    ["Pending", "Unshipped", "PartiallyShipped", "Shipped", "Canceled"]), default=None,
    help="Find the event after which the order's status became this.")
@click.option("--expect", "expect", default=None, metavar="CONDITION",
              help="A Python expression over `order` and/or `metrics` that held at first, "
                   "e.g. \"metrics.cancellation_rate.rate < 0.025\".")
@click.option("--at", "at", type=WHEN, default=None,
              help="Evaluate metrics at this instant at every position (default: the "
                   "ledger's clock at each position).")
@click.option("--linear", is_flag=True,
              help="With metrics: check after every event instead of binary search (exact "
                   "first failure even if the condition flips back; slower).")
@db_option
@json_option
@known_at_option
def bisect_cmd(order_id: str | None, until_status: str | None, expect: str | None,
               at: datetime | None, linear: bool, db: str | None, as_json: bool) -> None:
    """Find the first event after which a condition stops holding.

    --until-status S (with --order) finds the event that made the order S;
    --expect takes any condition (see docs/replay.md). Prints the event and the
    states just before and after it. Exit 0 when found, 1 when the condition
    never stops holding or does not hold at the start, 2 for a bad condition.
    """
    from replay.bisect import BisectError, bisect, compile_predicate, until_status as status_pred

    if (until_status is None) == (expect is None):
        raise click.UsageError("give --until-status or --expect (one of them)")
    try:
        pred = status_pred(until_status) if until_status else compile_predicate(expect or "")
    except BisectError as exc:
        raise click.UsageError(str(exc)) from None
    if until_status and not order_id:
        raise click.UsageError("--until-status needs --order ID")
    ledger = open_reader(db)
    try:
        k = known_at()
        f = bisect(ledger, pred, order_id, at=at, linear=linear,
                   upto=ledger.position_known_at(k) if k is not None else None)
    except BisectError as exc:
        raise click.UsageError(str(exc)) from None
    if as_json:
        print_json(f.as_dict())
        sys.exit(0 if f.found else 1)
    subject = f" on order {order_id}" if order_id else ""
    how = {"order-events": "checked after each of the order's events",
           "binary": f"binary search, {f.evaluations} replays",
           "linear": f"checked after each event, {f.evaluations} checks"}[f.method]
    console.print(f"Condition{subject}: {f.predicate}  ({how})", markup=False)
    if f.outcome == "never-fails":
        console.print("It never stops holding: it still holds after the last event.",
                      markup=False)
        _state_lines("now", f.after, pred.uses_order, pred.uses_metrics)
        sys.exit(1)
    if f.outcome == "fails-at-start":
        console.print("It does not hold at the start (before any event): nothing to bisect.",
                      markup=False)
        _state_lines("start", f.after, pred.uses_order, pred.uses_metrics)
        sys.exit(1)
    e = f.event or {}
    console.print(f"It stops holding after event #{e['position']}:", markup=False)
    _event_lines(e, indent="  ", suffix=f" on {e['aggregate']}")
    _state_lines("before", f.before, pred.uses_order, pred.uses_metrics)
    _state_lines("after", f.after, pred.uses_order, pred.uses_metrics)


# --- diff ----------------------------------------------------------------------------------------

PEOPLE_LIMIT = 20


def _val(v: Any) -> str:
    if v is None:
        return "(none)"
    return _short(v)


def _print_diff(d: Any) -> None:
    console.print(f"A: {d.a.label}", markup=False)
    console.print(f"B: {d.b.label}", markup=False)
    for note in d.notes:
        console.print(f"note: {note}", markup=False)
    for side in (d.a, d.b):
        for section, err in side.errors.items():
            console.print(f"{section}: cannot read {side.label}: {err}", markup=False)
    total = 0
    for title, parts in (("", d.sections), ("table ", d.tables)):
        for name, sec in parts.items():
            c = sec["counts"]
            n = sum(c.values())
            total += n
            if not n:
                continue
            summary = ", ".join(f"{v} {k}" for k, v in c.items() if v)
            console.print(f"{title}{name}: {summary}", markup=False)
            if sec.get("note"):
                console.print(f"  ({sec['note']})", markup=False)
            if sec.get("header"):
                console.print("  header differs", markup=False)
            if sec.get("columns"):
                console.print(f"  columns: {sec['columns'][0]} -> {sec['columns'][1]}",
                              markup=False)
            shown = 0
            for sign, kind in (("+", "added"), ("-", "removed"), ("~", "changed")):
                for entry in sec[kind]:
                    if shown >= PEOPLE_LIMIT:
                        break
                    shown += 1
                    if kind == "changed":
                        changes = "; ".join(f"{f} {_val(a)} -> {_val(b)}"
                                            for f, (a, b) in entry["fields"].items())
                        console.print(f"  {sign} {entry['key']}: {changes}", markup=False)
                    else:
                        console.print(f"  {sign} {entry['key']}", markup=False)
            if n > shown:
                console.print(f"  ... and {n - shown} more (--json lists them)", markup=False)
    if d.identical:
        console.print("identical", markup=False)
    else:
        console.print(f"different: {total} difference{'s' if total != 1 else ''}",
                      markup=False)


@click.command("diff")
@db_option
@click.option("--other-db", default=None, metavar="PATH|URL",
              help="The ledger to compare with (default: the same ledger, at another point).")
@click.option("--as-of", "as_of", type=WHEN, default=None, help="Side A as of this time.")
@click.option("--other-as-of", type=WHEN, default=None, help="Side B as of this time.")
@click.option("--at-position", type=click.IntRange(min=0), default=None,
              help="Side A at this position.")
@click.option("--other-at-position", type=click.IntRange(min=0), default=None,
              help="Side B at this position.")
@click.option("--known-at", "known", type=WHEN, default=None,
              help="Side A as the ledger knew it at this recording time.")
@click.option("--other-known-at", "other_known", type=WHEN, default=None,
              help="Side B as the ledger knew it at this recording time.")
@click.option("--at", "at", type=WHEN, default=None,
              help="Evaluate metrics and the Unshipped report at this instant on both sides "
                   "(default: each side's own time).")
@click.option("--views", "views", is_flag=False, flag_value="", default=None, metavar="[PATH]",
              help="Compare the stored views (default location, or PATH) with a fresh replay "
                   "of the same events: what a rebuild would change.")
@json_option
def diff_cmd(db: str | None, other_db: str | None, as_of: datetime | None,
             other_as_of: datetime | None, at_position: int | None,
             other_at_position: int | None, at: datetime | None, views: str | None,
             as_json: bool, known: datetime | None = None,
             other_known: datetime | None = None) -> None:
    """Row-by-row differences of every view and report between two ledgers, two points
    of one ledger (--as-of/--at-position/--known-at for A, --other-as-of/
    --other-at-position/--other-known-at for B; no option: the head), or the stored
    views and a rebuild (--views).

    Exit 0 when identical, 1 when different.
    """
    import asyncio

    from projections import ViewsError, views_path
    from replay.diff import compare, side_at, views_vs_rebuild

    if views is not None:
        if any(x is not None for x in (other_db, as_of, other_as_of, at_position, known,
                                       other_known,
                                       other_at_position)):
            raise click.UsageError("--views compares the stored views with a rebuild at their "
                                   "checkpoints: it takes no other ledger or point")
        ledger = open_reader(db)
        path = views_path(ledger.db, views or None)
        if path == ":memory:" or not os.path.exists(path):
            raise click.UsageError(f"no views file at {path!r}: nothing to compare "
                                   "(run `order-ledger sync` first, or give --views PATH)")
        try:
            d = asyncio.run(views_vs_rebuild(ledger, views or None, at))
        except ViewsError as exc:
            raise click.ClickException(str(exc)) from None
    else:
        a = open_reader(db)
        b = open_reader(other_db) if other_db else a
        pa = resolve_point(a, as_of, at_position, known)
        pb = resolve_point(b, other_as_of, other_at_position, other_known)
        side_a = side_at(a, pa, f"{a.db} {pa.describe()}", at)
        side_b = side_at(b, pb, f"{b.db} {pb.describe()}", at)
        d = compare(side_a, side_b)
    if as_json:
        print_json(d.as_dict())
    else:
        _print_diff(d)
    sys.exit(0 if d.identical else 1)


def register(main: click.Group) -> None:
    for cmd in (history, explain_cmd, export_cmd, audit_cmd, replay_cmd,
                bisect_cmd, diff_cmd, conflicts_cmd):
        main.add_command(cmd)


@click.command("conflicts")
@click.option("--order", "order_id", default=None, help="Only this order's conflicts.")
@db_option
@json_option
def conflicts_cmd(order_id: str | None, db: str | None, as_json: bool) -> None:
    """Late facts the ledger refused because a deadline had already been applied.

    Each is a command (a shipment, a payment verification, ...) whose business
    time is before a deadline the ledger applied on the order (the day-30
    cancel, the hold expiry, ...) but which arrived after it: the ledger and
    its source disagree, and someone should reconcile them. Oldest first.
    """
    from .common import print_table

    ledger = open_ledger(db)
    rows = ledger.conflicts(order_id)
    if as_json:
        for row in rows:
            print_json(row)
        return
    print_table(rows, ["recorded_at", "order_id", "type", "at", "deadline", "deadline_at",
                       "command_id"], title="conflicts: late facts after a deadline")
