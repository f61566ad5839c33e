"""Diff: what differs between two ledgers, two points of one ledger, or the stored
views and a fresh replay of the same events.

Every seller-facing read is compared row by row:

| section | rows keyed by | compared |
|---|---|---|
| ``orders`` (Manage Orders) | order id | every field; items as ``items[ITEM].field`` |
| ``inventory`` | SKU | available, active, reserved |
| ``notifications`` | order / recipient / kind / occurrence | time, content (not the position) |
| ``metrics`` | the metric's path | every value (numerator, denominator, rate, window, ...) |
| ``orders_report``, ``unshipped_report`` | order id / order item id | every column |

A section lists ``added`` (only in B), ``removed`` (only in A) and ``changed``
rows (``fields``: ``{name: [a, b]}``).

:func:`views_vs_rebuild` compares the *stored* views with :func:`projections.project`
of the same events -- what a rebuild would change -- and also every table of
the views file row by row (``tables``), internal ones included.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterable

from ledger.application import Ledger
from projections import PROJECTIONS, Snapshot, Views, project
from projections.rows import plain
from projections.verify import replays, view_points

from .asof import VIEW_NAMES, Point, evaluation_time, events_upto

SECTIONS: tuple[str, ...] = ("orders", "inventory", "notifications", "metrics",
                             "orders_report", "unshipped_report")
#: which projection each section is read from
SOURCE = {"orders": "orders", "inventory": "inventory", "notifications": "notifications",
          "metrics": "metrics", "orders_report": "orders", "unshipped_report": "orders"}
#: rows listed per section and kind in a result (counts are always complete)
LIST_LIMIT = 1000


@dataclass
class Side:
    """Everything a seller reads at one point, and where it came from."""

    label: str
    at: datetime
    sections: dict[str, Any] = field(default_factory=dict)
    #: section -> why it could not be read (stored views only)
    errors: dict[str, str] = field(default_factory=dict)
    point: dict[str, Any] = field(default_factory=dict)


def side_from_snapshot(snap: Snapshot, at: datetime, label: str,
                       point: dict[str, Any] | None = None) -> Side:
    side = Side(label, at, point=point or {"position": snap.position})
    side.sections = {
        "orders": plain(snap.orders()),
        "inventory": plain(snap.inventory()),
        "notifications": plain(snap.notifications()),
        "metrics": plain(snap.metrics(at)),
        "orders_report": snap.report_orders(at),
        "unshipped_report": snap.report_unshipped(at),
    }
    return side


def side_at(ledger: Ledger, point: Point, label: str, at: datetime | None = None) -> Side:
    """A ledger at a point (``replay.asof``), evaluated at ``at`` or the point's time."""
    when = evaluation_time(point, at)
    snap = project(events_upto(ledger, point.position), list(VIEW_NAMES))
    return side_from_snapshot(snap, when, label, point.as_dict() | {"at": when.isoformat()})


# --- comparing -------------------------------------------------------------------------


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        out = {}
        for i, v in enumerate(value):
            out.update(_flatten(v, f"{prefix}[{i}]"))
        return out
    return {prefix: value}


def _order_fields(row: dict) -> dict[str, Any]:
    out = {k: v for k, v in row.items() if k != "items"}
    for it in row.get("items", []):
        for k, v in it.items():
            if k != "order_item_id":
                out[f"items[{it['order_item_id']}].{k}"] = v
    return out


def _notification_keys(rows: list[dict]) -> list[tuple[str, dict]]:
    seen: dict[tuple, int] = {}
    out = []
    for r in rows:
        base = (r["order_id"], r["to"], r["kind"])
        n = seen.get(base, 0)
        seen[base] = n + 1
        fields = {"at": r["at"], **_flatten(r["content"], "content")}
        out.append((f"{r['order_id']}/{r['to']}/{r['kind']}#{n + 1}", fields))
    return out


def _report_rows(text: str) -> tuple[list[str], dict[str, dict]]:
    lines = text.split("\n")
    header = lines[0].split("\t") if lines and lines[0] else []
    rows: dict[str, dict] = {}
    for line in lines[1:]:
        if not line:
            continue
        values = dict(zip(header, line.split("\t")))
        key = f"{values.get('order-id', '')}/{values.get('order-item-id', '')}"
        rows[key] = values
    return header, rows


def diff_keyed(a: Iterable[tuple[str, dict]], b: Iterable[tuple[str, dict]]) -> dict[str, Any]:
    """Rows as (key, flat fields) on both sides -> added / removed / changed."""
    da, db = dict(a), dict(b)
    added = [{"key": k, "row": db[k]} for k in db if k not in da]
    removed = [{"key": k, "row": da[k]} for k in da if k not in db]
    changed = []
    for k, ra in da.items():
        rb = db.get(k)
        if rb is None or ra == rb:
            continue
        fields = {f: [ra.get(f), rb.get(f)] for f in list(ra) + [f for f in rb if f not in ra]
                  if ra.get(f) != rb.get(f) or (f in ra) != (f in rb)}
        changed.append({"key": k, "fields": fields})
    return _section(added, removed, changed)


def _section(added: list, removed: list, changed: list, **extra: Any) -> dict[str, Any]:
    counts = {"added": len(added), "removed": len(removed), "changed": len(changed)}
    out: dict[str, Any] = {"counts": counts, "added": added[:LIST_LIMIT],
                           "removed": removed[:LIST_LIMIT], "changed": changed[:LIST_LIMIT]}
    if any(n > LIST_LIMIT for n in counts.values()):
        out["truncated"] = True
    out.update(extra)
    return out


def _metrics_rows(m: dict) -> list[tuple[str, dict]]:
    groups: dict[str, dict] = {}
    for path, v in _flatten(m).items():
        group, _, name = path.rpartition(".")
        groups.setdefault(group or "metrics", {})[name] = v
    return list(groups.items())


def compare_section(name: str, a: Any, b: Any) -> dict[str, Any]:
    if name == "orders":
        return diff_keyed(((r["order_id"], _order_fields(r)) for r in a),
                          ((r["order_id"], _order_fields(r)) for r in b))
    if name == "inventory":
        return diff_keyed(((r["sku"], r) for r in a), ((r["sku"], r) for r in b))
    if name == "notifications":
        return diff_keyed(_notification_keys(a), _notification_keys(b))
    if name == "metrics":
        return diff_keyed(_metrics_rows(a), _metrics_rows(b))
    ha, ra = _report_rows(a)
    hb, rb = _report_rows(b)
    out = diff_keyed(ra.items(), rb.items())
    if ha != hb:
        out["header"] = [ha, hb]
        out["counts"]["header"] = 1
    return out


@dataclass
class Diff:
    a: Side
    b: Side
    sections: dict[str, dict[str, Any]]
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        parts = list(self.sections.values()) + list(self.tables.values())
        return not any(sum(p["counts"].values()) for p in parts) and \
            not self.a.errors and not self.b.errors

    def as_dict(self) -> dict[str, Any]:
        return {
            "identical": self.identical,
            "a": {"label": self.a.label, **self.a.point, "errors": self.a.errors},
            "b": {"label": self.b.label, **self.b.point, "errors": self.b.errors},
            "sections": self.sections,
            "tables": self.tables,
            "notes": self.notes,
        }


def compare(a: Side, b: Side) -> Diff:
    sections = {}
    for name in SECTIONS:
        if name in a.errors or name in b.errors:
            continue
        sections[name] = compare_section(name, a.sections[name], b.sections[name])
    return Diff(a, b, sections)


# --- the stored views against a fresh replay ---------------------------------------------


async def _stored_side(v: Views, at: datetime, label: str) -> Side:
    side = Side(label, at)
    readers: dict[str, Callable[[], Any]] = {
        "orders": v.orders, "inventory": v.inventory, "notifications": v.notifications,
        "metrics": lambda: v.metrics(at), "orders_report": lambda: v.report_orders(at),
        "unshipped_report": lambda: v.report_unshipped(at)}
    for name, read in readers.items():
        try:
            side.sections[name] = plain(await read())
        except Exception as exc:  # e.g. a table whose columns the code no longer knows
            side.errors[name] = f"{type(exc).__name__}: {exc}"
    return side


def _memory_tables(snaps: dict[str, Snapshot]) -> sqlite3.Connection:
    """The tables a rebuild would write, from in-memory projections (consumes them)."""
    conn = sqlite3.connect(":memory:")
    for name, snap in snaps.items():
        p = snap.projections[name]
        tables = {t.name: t.name for t in PROJECTIONS[name].tables}
        for t in PROJECTIONS[name].tables:
            conn.execute(t.ddl.format(t=t.name))
        for sql, rows in p.flush_ops(tables, 0):
            conn.executemany(sql, rows)
    return conn


def _columns(conn: sqlite3.Connection, table: str, schema: str = "main") -> list[tuple[str, int]]:
    """(name, pk order) of a table's stored columns (generated ones excluded)."""
    return [(r[1], r[5]) for r in conn.execute(f"PRAGMA {schema}.table_info({table})")]


def compare_tables(stored: sqlite3.Connection, memory: sqlite3.Connection,
                   names: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Every table of the named projections, row by row, keyed by the primary key."""
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        for t in PROJECTIONS[name].tables:
            mem_cols = _columns(memory, t.name)
            try:
                st_cols = _columns(stored, t.name)
            except sqlite3.DatabaseError:
                st_cols = []
            if not st_cols:
                rows = memory.execute(f"SELECT * FROM {t.name}").fetchall()
                out[t.name] = _section(
                    [{"key": _key(r, mem_cols), "row": None} for r in rows], [], [],
                    note="the table is missing from the views file")
                continue
            common = [c for c, _ in mem_cols if c in {s for s, _ in st_cols}]
            pk = [c for c, k in sorted(mem_cols, key=lambda x: x[1]) if k] or \
                (["position", "seq"] if {"position", "seq"} <= set(common) else common)
            sel = ", ".join(common)
            ia = {_k(r, common, pk): r for r in stored.execute(f"SELECT {sel} FROM {t.name}")}
            ib = {_k(r, common, pk): r for r in memory.execute(f"SELECT {sel} FROM {t.name}")}
            added = [{"key": k, "row": None} for k in ib if k not in ia]
            removed = [{"key": k, "row": None} for k in ia if k not in ib]
            changed = []
            for k, ra in ia.items():
                rb = ib.get(k)
                if rb is not None and ra != rb:
                    changed.append({"key": k, "fields": {
                        c: [x, y] for c, x, y in zip(common, ra, rb) if x != y}})
            extra: dict[str, Any] = {}
            cols_a, cols_b = [c for c, _ in st_cols], [c for c, _ in mem_cols]
            if cols_a != cols_b:
                extra["columns"] = [cols_a, cols_b]
            out[t.name] = _section(added, removed, changed, **extra)
            if cols_a != cols_b:
                out[t.name]["counts"]["columns"] = 1
    return out


def _k(row: tuple, cols: list[str], pk: list[str]) -> str:
    return "/".join(str(row[cols.index(c)]) for c in pk)


def _key(row: tuple, cols: list[tuple[str, int]]) -> str:
    pk = [i for i, (_, k) in sorted(enumerate(cols), key=lambda x: x[1][1]) if k]
    return "/".join(str(row[i]) for i in (pk or range(len(row))))


async def views_vs_rebuild(ledger: Ledger, views: str | None = None,
                           at: datetime | None = None) -> Diff:
    """The stored views (A) against a fresh in-memory replay of the same events (B).

    Each view is compared at its own checkpoint (a view never built, or whose
    tables are missing, against the ledger's head: what a sync would build).
    Nothing is synced or rebuilt.
    """
    head = ledger.head()
    when = at or ledger.now()
    notes: list[str] = []
    async with Views(ledger, views, auto_sync=False) as v:
        points = await view_points(v, head)
        for p in points.values():
            if p.ahead:
                notes.append(f"the {p.name} view is ahead of the ledger (checkpoint "
                             f"{p.checkpoint} > head {head}): it belongs to another ledger")
            if not p.built:
                notes.append(f"the {p.name} view is not built: a sync would build it "
                             f"(compared with the ledger's head, position {head})")
            elif p.behind:
                notes.append(f"the {p.name} view is behind the head (position {p.checkpoint} "
                             f"< {head}): compared at its checkpoint")
        target = {name: p.target for name, p in points.items()}
        if when is None:
            when = datetime.now(timezone.utc)
        stored = await _stored_side(v, when, f"stored views ({v.path})")
        path = v.path
    snaps = replays(ledger, target)
    fresh = Side("a fresh replay of the same events (what a rebuild would give)", when)
    for section in SECTIONS:
        s = snaps[SOURCE[section]]
        read: dict[str, Callable[[], Any]] = {
            "orders": s.orders, "inventory": s.inventory, "notifications": s.notifications,
            "metrics": lambda: s.metrics(when), "orders_report": lambda: s.report_orders(when),
            "unshipped_report": lambda: s.report_unshipped(when)}
        fresh.sections[section] = plain(read[section]())
    stored.point = {"checkpoints": {n: points[n].checkpoint for n in PROJECTIONS}, "at": when.isoformat()}
    fresh.point = {"positions": target, "at": when.isoformat()}
    result = compare(stored, fresh)
    result.notes = notes
    memory = _memory_tables(snaps)
    stored_conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        result.tables = compare_tables(stored_conn, memory, PROJECTIONS)
    finally:
        stored_conn.close()
        memory.close()
    return result
