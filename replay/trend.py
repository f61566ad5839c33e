"""Seller metrics over time: one evaluation a day, from the ledger's start.

Each daily point is what ``order-ledger metrics --as-of B`` gives at that day's
boundary B (midnight in the offset of the evaluation time): the metrics of the
commands applied by B (late facts included, as as-of includes them), with the
windows ending at B. The last point is the evaluation time itself, with every
event of the point asked for: for the head, what ``order-ledger metrics`` gives
(a command acted at the wall clock after the ledger's last tick counts there).

It is computed in one pass: the events of the point asked for are ordered by
the business time of the command that wrote them (stable, so an order's own
events keep their order) and applied to a fresh metrics projection; before the
first event after a boundary, the metrics are evaluated at that boundary.
Cost: one read of the events, then O(days x orders in the projection).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from ledger.application import Ledger
from ledger.store import to_us
from projections import read
from projections.model import MetricsProjection
from projections.rows import Metrics

from .asof import CommandTimes, Point, evaluation_time, events_as_of, resolve

DAY = timedelta(days=1)

#: the charted series: key -> (label, how to pick it out of ``compute_metrics``)
SERIES: dict[str, tuple[str, Any]] = {
    "cancellation_rate": ("Cancellation rate (7 days)", lambda m: m.cancellation_rate),
    "late_shipment_rate_10d": ("Late shipment rate (10 days)",
                               lambda m: m.late_shipment_rate.d10),
    "late_shipment_rate_30d": ("Late shipment rate (30 days)",
                               lambda m: m.late_shipment_rate.d30),
    "valid_tracking_rate": ("Valid tracking rate (30 days)", lambda m: m.valid_tracking_rate),
}


def _midnight_after(t: datetime) -> datetime:
    start = t.replace(hour=0, minute=0, second=0, microsecond=0)
    return start + DAY


def day_boundaries(first: datetime, end: datetime, max_days: int | None = None) -> list[datetime]:
    """Every midnight (in ``end``'s offset) after ``first`` and before ``end``, then ``end``;
    with ``max_days``, only the last ``max_days`` of them (``end`` always kept)."""
    tz = end.tzinfo or timezone.utc
    b = _midnight_after(first.astimezone(tz))
    if max_days is not None and b < end:
        # the last max_days - 1 midnights before end: skip the earlier ones without a loop
        last = end.replace(hour=0, minute=0, second=0, microsecond=0)
        if last == end:
            last -= DAY
        b = max(b, last - DAY * max(max_days - 2, 0)) if max_days > 1 else end
    out = []
    while b < end:
        out.append(b)
        b += DAY
    out.append(end)
    return out


def _point_row(at: datetime, m: Metrics) -> dict[str, Any]:
    row: dict[str, Any] = {"at": at.isoformat()}
    for key, (_, pick) in SERIES.items():
        x = pick(m)
        row[key] = {"numerator": x.numerator, "denominator": x.denominator,
                    "rate": x.rate, "breached": x.breached}
    return row


def metrics_over_time(ledger: Ledger, point: Point | None = None, *,
                      max_days: int | None = 1000) -> dict[str, Any]:
    """Daily seller metrics from the ledger's first event to ``point`` (default: the head).

    Returns ``{"from", "to", "series": {key: {"label", "target", "target_text"}},
    "points": [{"at", key: {"numerator", "denominator", "rate", "breached"}, ...}]}``;
    no points for an empty ledger.
    """
    point = point if point is not None else resolve(ledger)
    times = CommandTimes(ledger)
    rows = [(times(pos, e), i, e) for i, (pos, _, e) in enumerate(events_as_of(ledger, point))]
    series = {}
    for key, (label, _) in SERIES.items():
        target, text, _ = read.TARGETS["late_shipment_rate" if key.startswith("late") else key]
        series[key] = {"label": label, "target": target, "target_text": text}
    if not rows:
        return {"from": None, "to": None, "series": series, "points": []}
    rows.sort(key=lambda r: (r[0], r[1]))  # stable by log order within a command time
    end = evaluation_time(point)
    first = min(rows[0][2].at, end)
    boundaries = day_boundaries(first, end, max_days)
    proj = MetricsProjection(complete=True)
    handlers = proj.handlers()
    points = []
    i = 0
    for n, b in enumerate(boundaries):
        # the last point holds every event of the point asked for, as ``metrics`` (and
        # ``--as-of`` / ``--known-at``) read it: commands acted after the ledger's clock too
        limit = to_us(b) if n < len(boundaries) - 1 else None
        while i < len(rows) and (limit is None or rows[i][0] <= limit):
            e = rows[i][2]
            h = handlers.get(type(e))
            if h is not None:
                h(i + 1, e)
            i += 1
        m = read.compute_metrics(proj.recs.values(), [(s[2], s[3]) for s in proj.shipments], b)
        points.append(_point_row(b, m))
    return {"from": boundaries[0].isoformat(), "to": end.isoformat(), "series": series,
            "points": points}
