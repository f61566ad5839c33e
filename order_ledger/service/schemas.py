"""Response types of the service, as msgspec Structs, so /schema/openapi.json is exact.

Where the library already returns msgspec Structs they are used as they are;
where it returns dicts (views rows, show, history, outcomes) the Struct here
names their keys and types, and :func:`to` converts the dict (after
redaction) on the way out.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import msgspec

from ledger.events import ShipFrom

T = TypeVar("T")


def to(kind: Any, obj: Any) -> Any:
    """``obj`` (dicts from the library) as ``kind``; unknown keys are dropped."""
    return msgspec.convert(obj, kind, strict=False)


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


class ItemRow(msgspec.Struct):
    order_item_id: str
    sku: str
    title: str
    quantity: int
    quantity_shipped: int
    quantity_canceled: int
    quantity_to_ship: int


class NextDeadline(msgspec.Struct):
    kind: str
    at: str


class OrderRow(msgspec.Struct):
    """A Manage Orders row (``order-ledger orders --json``)."""

    order_id: str
    status: str
    actionable: bool
    greyed_out: bool
    purchase_date: str | None
    payments_date: str | None
    latest_ship_date: str | None
    latest_delivery_date: str | None
    warning: str | None
    buyer_name: str | None
    ship_service_level: str | None
    currency: str | None
    payment: str | None
    cancel_reason: str | None
    canceled_by: str | None
    buyer_requested_cancel: bool
    items: list[ItemRow]
    #: withheld buyer data (``ship_to``, ``buyer``) of an order imported without it
    restricted: list[str] = []
    #: what the marketplace said beyond the rules (service category, sales channel,
    #: Prime, business order, purchase order number, dates, address type; per item
    #: promotions and price designation under ``items``): only what was given
    market: dict[str, Any] = {}


class OrderPage(msgspec.Struct):
    items: list[OrderRow]
    next_cursor: str | None


class OrderView(msgspec.Struct):
    """One order as ``order-ledger show --json`` prints it."""

    order_id: str
    status: str
    actionable: bool
    purchase_date: str | None
    payments_date: str | None
    latest_ship_date: str | None
    latest_delivery_date: str | None
    warning: str | None
    buyer_name: str | None
    restricted: list[str]
    ship_service_level: str | None
    currency: str | None
    payment: str | None
    cancel_reason: str | None
    canceled_by: str | None
    buyer_requested_cancel: bool
    next_deadline: NextDeadline | None
    items: list[ItemRow]
    updated_at: str
    recorded_at: str
    market: dict[str, Any] = {}
    #: the current tracking number (after corrections; None when cleared or unshipped)
    tracking_number: str | None = None
    tracking_corrections: int = 0
    ship_from: ShipFrom | None = None
    transparency_codes: list[str] = []


class HistoryStep(msgspec.Struct):
    """One event of an order's history with the order's state after it."""

    position: int
    version: int
    at: str
    recorded_at: str
    type: str
    actor: str | None
    command_id: str | None
    fields: dict[str, Any]
    state: dict[str, Any]


class HistoryPage(msgspec.Struct):
    items: list[HistoryStep]
    next_cursor: str | None


class Reason(msgspec.Struct):
    position: int
    at: str
    type: str
    actor: str | None
    why: str
    status_after: str


class NextStep(msgspec.Struct):
    kind: str
    at: str
    what_happens: str


class Explanation(msgspec.Struct):
    order_id: str
    status: str
    actionable: bool
    because: list[Reason]
    seller_can: str
    next_deadline: NextStep | None


class InventoryRow(msgspec.Struct):
    sku: str
    available: int
    active: bool
    reserved: int


class InventoryPage(msgspec.Struct):
    items: list[InventoryRow]
    next_cursor: str | None


class Window(msgspec.Struct, rename={"from_": "from"}):
    days: int
    by: str
    from_: str
    to: str
    edges: str


class Metric(msgspec.Struct):
    window: Window
    numerator: int
    denominator: int
    rate: float | None
    target: float
    target_text: str
    breached: bool


class CancellationMetric(Metric):
    breakdown: dict[str, int]


class LateShipment(msgspec.Struct, rename={"d10": "10d", "d30": "30d"}):
    d10: Metric
    d30: Metric


class Metrics(msgspec.Struct):
    at: str
    cancellation_rate: CancellationMetric
    late_shipment_rate: LateShipment
    valid_tracking_rate: Metric


class Notification(msgspec.Struct):
    position: int
    seq: int
    at: str
    to: str
    kind: str
    order_id: str
    content: dict[str, Any]


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
