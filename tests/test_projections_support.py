"""Helpers for the projection tests (no tests here).

``build`` applies command dicts to a SQLite ledger; ``views_and_memory`` reads
every projection from the stored views AND from ``project()`` over the same
events, asserts they agree, and returns the result.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from builders import T0, at, cmd, item, place

from ledger.application import Ledger
from projections import Views, project
from projections.rows import plain

__all__ = ["T0", "at", "cmd", "item", "place", "build", "apply", "timeline", "everything",
           "views_and_memory", "ship", "seller_cancel", "tsv_rows", "when"]


def when(text: str) -> datetime:
    return datetime.fromisoformat(text)


def timeline(*groups: Any) -> list[dict]:
    """Flatten commands (or lists of them) and sort them by time (stable)."""
    flat: list[dict] = []
    for g in groups:
        flat.extend(g if isinstance(g, list) else [g])
    return sorted(flat, key=lambda c: when(c["at"]))


def apply(ledger: Ledger, cmds: list[dict], *, strict: bool = True) -> list:
    outs = list(ledger.apply_lines([json.dumps(c) for c in cmds]))
    if strict:
        bad = [(o.line, o.error) for o in outs if not o.ok]
        assert not bad, bad
    return outs


def build(tmp_path: Path, cmds: list[dict], *, strict: bool = True,
          name: str = "ledger.db") -> Ledger:
    led = Ledger(str(tmp_path / name))
    apply(led, cmds, strict=strict)
    return led


def ship(order_id: str, when_: str, items: list[tuple[str, int]] | None = None,
         tracking: str | None = "TRACK-1", **extra: Any) -> dict:
    c = cmd("ship", when_, order_id=order_id, carrier_code="PostNord",
            ship_date=when(when_).date().isoformat(), **extra)
    if tracking is not None:
        c["tracking_number"] = tracking
    if items:
        c["items"] = [{"order_item_id": i, "quantity": q} for i, q in items]
    return c


def seller_cancel(order_id: str, when_: str, reason: str = "NoInventory") -> dict:
    return cmd("cancel", when_, order_id=order_id, by="seller", reason=reason)


async def everything(v: Any, report_time: datetime) -> dict:
    """Every read of a Views (async) or Snapshot (sync) object, JSON-ready (as ``--json``
    prints the rows)."""
    async def call(name: str, *args: Any) -> Any:
        r = getattr(v, name)(*args)
        if hasattr(r, "__await__"):
            r = await r
        return plain(r)
    return {
        "orders": await call("orders"),
        "inventory": await call("inventory"),
        "notifications": await call("notifications"),
        "metrics": await call("metrics", report_time),
        "report_orders": await call("report_orders", report_time),
        "report_unshipped": await call("report_unshipped", report_time),
        "report_unshipped_old": await call("report_unshipped", report_time, "old"),
        "report_all_orders": await call("report_all_orders", report_time),
    }


async def views_and_memory(ledger: Ledger, tmp_path: Path, report_time: datetime,
                           *, views: str = "check.views.db") -> dict:
    """Stored views (caught up) and in-memory projections must agree; returns them."""
    async with Views(ledger, str(tmp_path / views)) as v:
        stored = await everything(v, report_time)
    memory = await everything(project(ledger.iter_events()), report_time)
    for key in stored:
        assert stored[key] == memory[key], key
    return stored


def tsv_rows(text: str) -> list[dict[str, str]]:
    lines = text.split("\n")
    assert lines[-1] == "", "a report ends with a newline"
    header = lines[0].split("\t")
    rows = [dict(zip(header, line.split("\t"), strict=True)) for line in lines[1:-1]]
    return rows
