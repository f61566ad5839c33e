"""Response types of the service, as msgspec Structs, so /schema/openapi.json is exact.

The read side's rows are the library's own (``projections.rows``: Manage Orders,
show, history, explain, inventory, metrics, notifications), so the document
describes exactly what the command line prints; what only the service answers
(health, outcomes, pages, feeds and imports, audit rows, conflicts) is defined
here. :func:`to` converts what the library returns (after redaction) on the way out.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import msgspec

from projections.rows import (
    CancellationMetric,
    Explanation,
    HistoryStep,
    InventoryRow,
    ItemRow,
    LateShipment,
    Metric,
    Metrics,
    NextDeadline,
    NextStep,
    Notification,
    OrderRow,
    OrderView,
    Reason,
    Window,
)

__all__ = ["CancellationMetric", "Explanation", "HistoryStep", "InventoryRow", "ItemRow",
           "LateShipment", "Metric", "Metrics", "NextDeadline", "NextStep", "Notification",
           "OrderRow", "OrderView", "Reason", "Window"]

T = TypeVar("T")


def to(kind: Any, obj: Any) -> Any:
    """``obj`` (dicts or rows from the library) as ``kind``; unknown keys are dropped."""
    return msgspec.convert(msgspec.to_builtins(obj), kind, strict=False)


class Health(msgspec.Struct):
    status: str
    head: int
    ledger: str
    version: str
    #: this process: command requests answered, and the group commits they shared
    requests: int
    commits: int
    #: this process: pid, and whether it leads the ticker
    pid: int
    ticker_leader: bool


class Violation(msgspec.Struct, omit_defaults=True):
    rule: str | None = None
    message: str | None = None
    field: str | None = None
    hint: str | None = None


class LineError(msgspec.Struct, omit_defaults=True):
    code: str
    message: str
    field: str | None = None
    hint: str | None = None
    violations: list[dict[str, Any]] | None = None


class Outcome(msgspec.Struct, omit_defaults=True, kw_only=True):
    """One command line's outcome, exactly as ``order-ledger apply --json`` prints it
    (the same keys in the same order; absent ones left out)."""

    line: int | None = None
    status: str  # applied | duplicate | rejected
    type: str | None = None
    command_id: str | None = None
    order_id: str | None = None
    at: str | None = None
    events: list[str]
    error: LineError | None = None


class OrderPage(msgspec.Struct):
    items: list[OrderRow]
    next_cursor: str | None


class HistoryPage(msgspec.Struct):
    items: list[HistoryStep]
    next_cursor: str | None


class InventoryPage(msgspec.Struct):
    items: list[InventoryRow]
    next_cursor: str | None


class NotificationPage(msgspec.Struct):
    items: list[Notification]
    next_cursor: str | None


class AuditRow(msgspec.Struct):
    position: int
    at: str
    type: str
    actor: str | None
    command_id: str | None
    order_id: str | None
    sku: str | None
    reason: str | None
    fields: dict[str, Any] | None = None
    recorded_at: str | None = None


class AuditPage(msgspec.Struct):
    items: list[AuditRow]
    next_cursor: str | None


class Conflict(msgspec.Struct):
    recorded_at: str
    order_id: str
    command_id: str
    type: str
    at: str
    deadline: str
    deadline_at: str
    command: str


class ConflictPage(msgspec.Struct):
    items: list[Conflict]
    next_cursor: str | None


class Report(msgspec.Struct, Generic[T]):
    """Unused at run time: documents nothing but keeps the generic import used."""

    items: list[T]


class FeedLine(msgspec.Struct, omit_defaults=True, kw_only=True):
    line: int
    status: str  # accepted | duplicate | rejected
    column: str | None
    code: str | None
    message: str | None
    hint: str | None = None
    order_id: str | None = None
    command: str | None = None
    command_id: str | None = None
    events: list[str] | None = None


class FeedReport(msgspec.Struct):
    """``order-ledger feed NAME --json``: counts and every line's result."""

    feed: str
    feed_type: str
    sha256: str
    encoding: str
    template: dict[str, Any] | None
    processed: int
    accepted: int
    duplicate: int
    rejected: int
    events: int
    lines: list[FeedLine]


class ImportStep(msgspec.Struct, omit_defaults=True, kw_only=True):
    step: str
    type: str
    at: str
    command_id: str
    status: str
    error: dict[str, Any] | None = None
    events: list[str] | None = None


class OrderImport(msgspec.Struct):
    order_id: str | None
    order_status: str | None
    result: str
    reason: str | None
    notes: list[str]
    ledger_status: str | None
    steps: list[ImportStep]


class ImportReport(msgspec.Struct):
    """``order-ledger import sp-api --json``: counts and every order's result."""

    orders: int
    imported: int
    already_imported: int
    skipped: int
    unknown_status: int
    rejected: int
    events: int
    results: list[OrderImport]
