"""What the read side hands out: every output row as a msgspec Struct, built by keyword.

One definition per shape, shared by the command line (``orders --json``, ``show
--json``, ``inventory --json`` ...), the HTTP service (these Structs are its
response schemas, so the OpenAPI document follows them), the page and replay.

A Manage Orders row takes every field it shares by name with the stored order
record (:class:`projections.model.OrderDoc`) from that record: adding a column
is a field on ``OrderDoc`` (with the handler that sets it) and a field here
(``docs/architecture.md``, "Adding a column to Manage Orders").
"""

from __future__ import annotations

from typing import Any

import msgspec

from ledger.events import ShipFrom

from .model import CANCELED, OPEN, PENDING, OrderDoc, market_of

# --- Manage Orders -----------------------------------------------------------------


class ItemRow(msgspec.Struct, kw_only=True):
    """One item of an order as Manage Orders and ``show`` give it."""

    order_item_id: str
    sku: str
    title: str
    quantity: int
    quantity_shipped: int
    quantity_canceled: int
    #: what is left to ship while the order is open (0 once it is not)
    quantity_to_ship: int


class OrderRow(msgspec.Struct, kw_only=True):
    """A Manage Orders row (``order-ledger orders --json``, ``GET /api/orders``)."""

    order_id: str
    status: str
    actionable: bool
    #: Pending and Canceled orders are greyed out
    greyed_out: bool
    purchase_date: str
    payments_date: str | None
    latest_ship_date: str
    latest_delivery_date: str
    #: the day-23 warning while the order is open
    warning: str | None
    buyer_name: str
    ship_service_level: str
    currency: str
    payment: str | None
    cancel_reason: str | None
    canceled_by: str | None
    buyer_requested_cancel: bool
    #: withheld buyer data (``ship_to``, ``buyer``) of an order imported without it
    restricted: list[str]
    #: what the marketplace said beyond the rules (service category, sales channel,
    #: Prime, business order, purchase order number, dates, address type; per item
    #: promotions and price designation under ``items``): only what was given
    market: dict[str, Any]
    items: list[ItemRow]


#: the fields of a Manage Orders row computed by :func:`order_row`; every other field is
#: the stored record's field of the same name
_COMPUTED = ("actionable", "greyed_out", "warning", "buyer_requested_cancel", "restricted",
             "market", "items")
#: the fields copied by name from :class:`OrderDoc`
FROM_DOC: tuple[str, ...] = tuple(f for f in OrderRow.__struct_fields__ if f not in _COMPUTED)


def _row_builder() -> Any:
    """``build(d, <computed fields>) -> OrderRow``: every field of :data:`FROM_DOC` read
    from ``d`` by name, the computed ones as given -- written out once, from the fields
    (as ``dataclasses`` writes ``__init__``), so a row costs what a hand-written
    constructor call costs."""
    copied = "".join(f"{f}=d.{f}, " for f in FROM_DOC)
    given = "".join(f"{f}={f}, " for f in _COMPUTED)
    src = (f"def build(d, {', '.join(_COMPUTED)}):\n"
           f"    return OrderRow({copied}{given})\n")
    scope: dict[str, Any] = {"OrderRow": OrderRow}
    exec(src, scope)  # noqa: S102 - the source is built from the Struct's own field names
    return scope["build"]


_build_row = _row_builder()


def order_row(d: OrderDoc) -> OrderRow:
    """The Manage Orders row of a stored (or in-memory) order record."""
    is_open = d.status in OPEN
    market = market_of(d)
    for key in ("merchant_order_id", "buyer_cancel_reason"):
        market.pop(key, None)
    row: OrderRow = _build_row(
        d,
        actionable=is_open,
        greyed_out=d.status in (PENDING, CANCELED),
        warning=d.warning if is_open else None,
        buyer_requested_cancel=bool(d.buyer_requested_cancel),
        restricted=market.pop("restricted", []),
        market=market,
        items=[
            ItemRow(
                order_item_id=i.order_item_id,
                sku=i.sku,
                title=i.title,
                quantity=i.quantity,
                quantity_shipped=i.shipped,
                quantity_canceled=i.canceled,
                quantity_to_ship=(i.quantity - i.shipped - i.canceled) if is_open else 0,
            )
            for i in d.items
        ],
    )
    return row


# --- one order: show, history, explain ------------------------------------------------


class NextDeadline(msgspec.Struct, kw_only=True):
    kind: str
    at: str


class OrderView(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """One order as ``order-ledger show --json`` prints it (the order's state after an
    event in ``history``, without ``updated_at`` / ``recorded_at``)."""

    order_id: str
    status: str
    actionable: bool
    purchase_date: str
    payments_date: str | None
    latest_ship_date: str | None
    latest_delivery_date: str | None
    warning: str | None
    buyer_name: str
    restricted: list[str]
    ship_service_level: str
    market: dict[str, Any]
    #: the current tracking number (after corrections; None when cleared or unshipped)
    tracking_number: str | None
    tracking_corrections: int
    #: where the latest shipment that said so left from
    ship_from: ShipFrom | None
    #: the Transparency codes of every shipment, in order
    transparency_codes: list[str]
    currency: str
    payment: str | None
    cancel_reason: str | None
    canceled_by: str | None
    buyer_requested_cancel: bool
    next_deadline: NextDeadline | None
    items: list[ItemRow]
    #: the business time of the order's latest event (``show`` only)
    updated_at: str | None = None
    #: when the ledger recorded that event (``show`` only)
    recorded_at: str | None = None


def order_view(view: dict[str, Any]) -> OrderView:
    """The order's state (``ledger.domain.Order.view``) as an :class:`OrderView`; a key
    the Struct does not name is an error, so the two cannot drift apart."""
    return msgspec.convert(view, OrderView)


class HistoryStep(msgspec.Struct, kw_only=True):
    """One event of an order's history with the order's state after it."""

    position: int
    version: int
    at: str
    recorded_at: str
    type: str
    actor: str | None
    command_id: str | None
    #: the event's own fields (without the envelope)
    fields: dict[str, Any]
    state: OrderView


class Reason(msgspec.Struct, kw_only=True):
    position: int
    at: str
    type: str
    actor: str | None
    why: str
    status_after: str


class NextStep(msgspec.Struct, kw_only=True):
    kind: str
    at: str
    what_happens: str


class Explanation(msgspec.Struct, kw_only=True):
    """Why the order is in its status and what happens next (``order-ledger explain``)."""

    order_id: str
    status: str
    actionable: bool
    because: list[Reason]
    seller_can: str
    next_deadline: NextStep | None


# --- Manage Inventory -------------------------------------------------------------------


class InventoryRow(msgspec.Struct, kw_only=True):
    """A Manage Inventory row: ``reserved`` is units in orders still Pending."""

    sku: str
    available: int
    active: bool
    reserved: int


def inventory_row(sku: str, available: int, reserved: int) -> InventoryRow:
    return InventoryRow(sku=sku, available=available, active=available > 0,
                        reserved=reserved)


# --- notifications ----------------------------------------------------------------------

_dec = msgspec.json.Decoder()


class Notification(msgspec.Struct, kw_only=True):
    """One notification of the outbox (docs/rules.md §5)."""

    position: int
    seq: int
    at: str
    to: str
    kind: str
    order_id: str
    content: dict[str, Any]


def notification_row(row: tuple[Any, ...]) -> Notification:
    """A stored notification ``(position, seq, at, to, kind, order_id, content JSON)``."""
    position, seq, at, to, kind, order_id, content = row
    return Notification(position=position, seq=seq, at=at, to=to, kind=kind,
                        order_id=order_id, content=_dec.decode(content))


# --- seller metrics -----------------------------------------------------------------------


class Window(msgspec.Struct, kw_only=True, rename={"from_": "from"}):
    days: int
    by: str
    from_: str
    to: str
    edges: str


class Metric(msgspec.Struct, kw_only=True):
    window: Window
    numerator: int
    denominator: int
    rate: float | None
    target: float
    target_text: str
    breached: bool


class CancellationMetric(Metric, kw_only=True):
    #: canceled orders by reason
    breakdown: dict[str, int]


class LateShipment(msgspec.Struct, kw_only=True, rename={"d10": "10d", "d30": "30d"}):
    d10: Metric
    d30: Metric


class Metrics(msgspec.Struct, kw_only=True):
    """The seller metrics at ``at`` (``order-ledger metrics --json``)."""

    at: str
    cancellation_rate: CancellationMetric
    late_shipment_rate: LateShipment
    valid_tracking_rate: Metric


def plain(obj: Any) -> Any:
    """Rows (or anything holding them) as JSON-ready builtins, keys in field order; text
    (a report) as it is."""
    if isinstance(obj, str):
        return obj
    return msgspec.to_builtins(obj)
