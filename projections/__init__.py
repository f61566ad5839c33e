"""Read models (views) that are nothing but a function of the event stream.

- :class:`Views` -- the stored views (SQLite via aiosqlite, one file beside the
  ledger), async; :class:`BlockingViews` -- the same without ``await``;
- :func:`project` -- every projection computed in memory from an iterable of
  ``(position, payload)``; returns a :class:`Snapshot` read like the views;
- :func:`views_path` -- where the views of a ledger live.

Reads return the Structs of :mod:`projections.rows` (``rows.plain()`` gives the
JSON-ready form ``--json`` prints); :mod:`projections.queries` is the one query
layer both the stored views and the snapshots use; the stored views are
:mod:`projections.store` (the file) and :mod:`projections.runner` (sync, rebuild).

Projections: ``orders`` (Manage Orders, Orders and Unshipped Orders reports),
``inventory`` (Manage Inventory), ``metrics`` (seller metrics),
``notifications`` (the outbox) and ``audit`` (one row per event, for
``order-ledger audit``). See ``docs/projections.md`` and ``docs/replay.md``.
"""

from .memory import Snapshot, project
from .model import AUDIT_COLUMNS, NAMES, PROJECTIONS, AuditProjection
from .read import (
    ALL_ORDERS_REPORT_COLUMNS,
    ORDERS_REPORT_COLUMNS,
    UNSHIPPED_REPORT_COLUMNS,
    UNSHIPPED_REPORT_COLUMNS_OLD,
    days_past_promise,
)
from .views import BlockingViews, RunResult, Views, ViewsError, ViewsLocationError, views_path

__all__ = [
    "AUDIT_COLUMNS",
    "AuditProjection",
    "NAMES",
    "ALL_ORDERS_REPORT_COLUMNS",
    "ORDERS_REPORT_COLUMNS",
    "PROJECTIONS",
    "UNSHIPPED_REPORT_COLUMNS",
    "UNSHIPPED_REPORT_COLUMNS_OLD",
    "BlockingViews",
    "RunResult",
    "Snapshot",
    "Views",
    "ViewsError",
    "ViewsLocationError",
    "days_past_promise",
    "project",
    "views_path",
]
