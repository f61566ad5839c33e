"""The ledger's events: immutable facts, one msgspec Struct per kind.

Every event carries the business time it happened at (``at``), who did it
(``actor``) and the ``command_id`` of the command that caused it. Order events
carry the ``order_id``; events that change an order's status carry the status
*after* the event, so read models never re-implement the rules.

Events are stored as JSON produced by msgspec, under the topic ``Name:vN``
(see :mod:`ledger.codec`). ``Decimal``, ``datetime`` and ``UUID`` come back as
those types on decode because the schema says so.

To change an event's shape: bump its ``VERSION`` and add an upcaster in
:data:`ledger.codec.UPCASTERS` that turns the old dict into the new one.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import ClassVar, Literal, Union

import msgspec

Status = Literal["Pending", "Unshipped", "PartiallyShipped", "Shipped", "Canceled"]

PENDING: Status = "Pending"
UNSHIPPED: Status = "Unshipped"
PARTIALLY_SHIPPED: Status = "PartiallyShipped"
SHIPPED: Status = "Shipped"
CANCELED: Status = "Canceled"

ZERO = Decimal("0")


#: The value of a field the marketplace withheld (see ``OrderPlaced.restricted``).
RESTRICTED = "(restricted)"


class Buyer(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    name: str
    language: str
    email: str | None = None
    phone: str | None = None


class Address(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    name: str
    address_1: str
    city: str
    postal_code: str
    country: str
    address_2: str | None = None
    address_3: str | None = None
    state: str | None = None
    phone: str | None = None


class OrderItem(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    order_item_id: str
    sku: str
    title: str
    quantity: int
    item_price: Decimal
    item_tax: Decimal = ZERO
    shipping_price: Decimal = ZERO
    shipping_tax: Decimal = ZERO
    gift_wrap_price: Decimal = ZERO
    gift_wrap_tax: Decimal = ZERO
    #: promotion discounts the marketplace gave on the item and its shipping (kept, shown
    #: in the reports; the charged amounts above are before them)
    promotion_discount: Decimal = ZERO
    ship_promotion_discount: Decimal = ZERO
    #: the marketplace's price designation (``BusinessPrice``), when it gave one
    price_designation: str | None = None


class MarketInfo(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True,
                 omit_defaults=True):
    """What the marketplace says of an order beyond what the rules need: kept and shown
    (``show``, the reports), never used by a rule. Every field is optional."""

    #: the category of the shipping service (Standard, Expedited, ...); the report's
    #: ``ship-service-level`` (the place command's ``ship_service_level`` is its name)
    ship_service_category: str | None = None
    sales_channel: str | None = None
    is_prime: bool | None = None
    is_business_order: bool | None = None
    purchase_order_number: str | None = None
    earliest_ship_date: datetime | None = None
    earliest_delivery_date: datetime | None = None
    #: Residential, Commercial, PickupPoint ... as the marketplace writes it
    address_type: str | None = None


class ShipFrom(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True,
               omit_defaults=True):
    """Where a shipment left from (the shipping-confirmation feed's ``ship_from_address_*``
    columns): kept and shown, never used by a rule. Every field is optional."""

    name: str | None = None
    address_1: str | None = None
    address_2: str | None = None
    address_3: str | None = None
    city: str | None = None
    county: str | None = None
    state: str | None = None
    postal_code: str | None = None
    #: ISO 3166-1 alpha-2, e.g. SE
    country: str | None = None


class ItemQuantity(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    order_item_id: str
    quantity: int


class ItemAdjustment(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    order_item_id: str
    reason: str
    quantity_cancelled: int = 0
    item_price_adj: Decimal = ZERO
    item_tax_adj: Decimal = ZERO
    shipping_price_adj: Decimal = ZERO
    shipping_tax_adj: Decimal = ZERO
    gift_wrap_price_adj: Decimal = ZERO
    gift_wrap_tax_adj: Decimal = ZERO
    item_promotion_adj: Decimal = ZERO
    ship_promotion_adj: Decimal = ZERO


class Attachment(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    name: str
    kind: str


class Event(msgspec.Struct, kw_only=True, frozen=True, tag_field="type", tag=True):
    """Base of every event. ``type`` (the class name) is the tag."""

    VERSION: ClassVar[int] = 1

    at: datetime
    actor: str
    command_id: str
    #: when the ledger recorded it (the commit's time, never before the previous
    #: commit's); None in events written before recording times existed, which
    #: are read as recorded at their business time (:func:`recorded_at`)
    recorded_at: datetime | None = None


def recorded_at(e: Event) -> datetime:
    """When the event was recorded: ``recorded_at``, or ``at`` for older events."""
    return e.recorded_at or e.at


class InventoryEvent(Event, kw_only=True, frozen=True):
    sku: str


class OrderEvent(Event, kw_only=True, frozen=True):
    order_id: str


# --- inventory -----------------------------------------------------------------


class InventorySet(InventoryEvent, kw_only=True, frozen=True):
    """The seller set the available quantity of a SKU."""

    quantity: int


class InventoryAllocated(InventoryEvent, kw_only=True, frozen=True):
    """A placed order took ``quantity`` units of a tracked SKU."""

    order_id: str
    quantity: int
    available: int


class InventoryReturned(InventoryEvent, kw_only=True, frozen=True):
    """Canceled unshipped units went back to a tracked SKU."""

    order_id: str
    quantity: int
    available: int


# --- orders --------------------------------------------------------------------


class OrderPlaced(OrderEvent, kw_only=True, frozen=True):
    items: list[OrderItem]
    currency: str
    ship_service_level: str
    latest_ship_date: datetime
    latest_delivery_date: datetime
    buyer: Buyer
    ship_to: Address
    hold_until: datetime
    status: Status = PENDING
    #: parts the marketplace withheld ("ship_to", "buyer"; e.g. an Orders API
    #: response fetched without a restricted-data token): their missing fields
    #: hold the placeholder ``RESTRICTED``. Empty in events written before it existed.
    restricted: list[str] = []
    #: the marketplace's own fields (None in events written before it existed)
    market: MarketInfo | None = None


class HoldExpired(OrderEvent, kw_only=True, frozen=True):
    """The 30-minute buyer hold ended (written by the ledger's clock).

    ``applied_outcome`` is a payment outcome recorded during the hold that takes
    effect now: ``verified`` releases the order, ``declined``/``fraud`` cancel it.
    """

    status: Status
    applied_outcome: str | None = None
    canceled: list[ItemQuantity] = []


class PaymentVerified(OrderEvent, kw_only=True, frozen=True):
    """Payment verified. ``effective`` is false when recorded during the hold.

    When effective, the order leaves Pending now; the promise dates are the
    ones after shifting for a delayed release.
    """

    effective: bool
    status: Status
    latest_ship_date: datetime
    latest_delivery_date: datetime


class PaymentExtended(OrderEvent, kw_only=True, frozen=True):
    """Verification initially unsuccessful or extended: the order stays Pending."""


class PaymentDeclined(OrderEvent, kw_only=True, frozen=True):
    """Authorization failed (``declined``) or ``fraud``. Nobody is notified."""

    outcome: Literal["declined", "fraud"]
    effective: bool
    status: Status
    canceled: list[ItemQuantity] = []


class BuyerCanceled(OrderEvent, kw_only=True, frozen=True):
    """The buyer canceled the whole order inside the 30-minute hold."""

    reason: str | None = None
    canceled: list[ItemQuantity]
    status: Status = CANCELED


class CancellationRequested(OrderEvent, kw_only=True, frozen=True):
    """The buyer asked the seller to cancel (after the hold)."""

    reason: str | None = None


class SellerCanceled(OrderEvent, kw_only=True, frozen=True):
    """The seller canceled what was left to ship, with a reason code."""

    reason: str
    memo: str | None = None
    canceled: list[ItemQuantity]
    status: Status
    buyer_requested: bool = False


class LedgerCanceled(OrderEvent, kw_only=True, frozen=True):
    """The ledger canceled on a deadline.

    ``PaymentNotVerified`` (still Pending 21 days after purchase) or
    ``ShipmentNotConfirmed`` (quantities unconfirmed 30 days after purchase).
    """

    reason: Literal["PaymentNotVerified", "ShipmentNotConfirmed"]
    canceled: list[ItemQuantity]
    status: Status


class ShipByWarningIssued(OrderEvent, kw_only=True, frozen=True):
    """Day 23: confirm shipment by ``ship_by`` to avoid cancellation."""

    ship_by: datetime
    text: str


class ShipmentConfirmed(OrderEvent, kw_only=True, frozen=True):
    carrier_code: str
    carrier_name: str | None = None
    tracking_number: str | None = None
    ship_date: str
    ship_method: str | None = None
    items: list[ItemQuantity]
    status: Status
    #: where the shipment left from (None in events written before it existed)
    ship_from: ShipFrom | None = None
    #: the Transparency codes of the units shipped (empty in events written before)
    transparency_codes: list[str] = []


class OrderAdjusted(OrderEvent, kw_only=True, frozen=True):
    items: list[ItemAdjustment]
    status: Status
    buyer_requested: bool = False


class MessageSent(OrderEvent, kw_only=True, frozen=True):
    message_id: str
    purpose: str
    language: str
    body: str
    attachments: list[Attachment] = []
    phone_reason: str | None = None


class MessageReceived(OrderEvent, kw_only=True, frozen=True):
    message_id: str
    sender: Literal["buyer", "customer-service"]
    body: str
    requests_address_change: bool = False


class ShippingAddressChanged(OrderEvent, kw_only=True, frozen=True):
    ship_to: Address
    message_id: str


class RestrictedDataReleased(OrderEvent, kw_only=True, frozen=True):
    """The marketplace gave data it had withheld at placing (a later poll with a
    restricted-data token): the placeholders are replaced. ``restricted`` is what
    stays withheld after it."""

    ship_to: Address | None = None
    buyer: Buyer | None = None
    restricted: list[str] = []


class TrackingCorrected(OrderEvent, kw_only=True, frozen=True):
    """The seller sent another carrier/tracking number for what is already shipped
    (the marketplace overwrites it): nothing is shipped again."""

    carrier_code: str
    carrier_name: str | None = None
    tracking_number: str | None = None
    ship_method: str | None = None
    #: the tracking number it replaces (None: there was none)
    replaces: str | None = None


class OrderAcknowledged(OrderEvent, kw_only=True, frozen=True):
    """The seller acknowledged the order (a feed row without a cancel reason);
    nothing else changes."""

    merchant_order_id: str | None = None


INVENTORY_EVENTS: tuple[type[Event], ...] = (
    InventorySet,
    InventoryAllocated,
    InventoryReturned,
)

ORDER_EVENTS: tuple[type[Event], ...] = (
    OrderPlaced,
    HoldExpired,
    PaymentVerified,
    PaymentExtended,
    PaymentDeclined,
    BuyerCanceled,
    CancellationRequested,
    SellerCanceled,
    LedgerCanceled,
    ShipByWarningIssued,
    ShipmentConfirmed,
    OrderAdjusted,
    MessageSent,
    MessageReceived,
    ShippingAddressChanged,
    OrderAcknowledged,
    RestrictedDataReleased,
    TrackingCorrected,
)

ALL_EVENTS: tuple[type[Event], ...] = INVENTORY_EVENTS + ORDER_EVENTS

AnyEvent = Union[ALL_EVENTS]  # type: ignore[valid-type]

EVENT_TYPES: dict[str, type[Event]] = {cls.__name__: cls for cls in ALL_EVENTS}

#: Events after which an order is no longer open for shipping: they end it.
CANCEL_EVENTS: tuple[type[Event], ...] = (
    BuyerCanceled,
    SellerCanceled,
    LedgerCanceled,
    PaymentDeclined,
    HoldExpired,
)


def topic_of(cls: type[Event]) -> str:
    """The stored topic of an event class: ``Name:vN``."""
    return f"{cls.__name__}:v{cls.VERSION}"
