"""Aggregates: an ``Order`` per order id and an ``Inventory`` per SKU.

Each aggregate is an ``eventsourcing`` aggregate whose events are
:class:`Recorded` wrappers around a typed payload from :mod:`ledger.events`.
Command methods check every rule first and only then record events, so a
rejected command leaves the aggregate untouched. ``when()`` evolves state from
a payload and is the only place state changes, both when deciding and when
replaying stored events.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Callable, ClassVar, Iterable, TypeVar

import msgspec
import msgspec.structs
from eventsourcing.domain import BaseAggregate, CanMutateAggregate

from . import commands as c
from . import events as ev
from . import rules
from .errors import CommandRejected

#: events the ledger writes by itself when a deadline falls due
DEADLINE_EVENTS = frozenset({ev.HoldExpired, ev.LedgerCanceled, ev.ShipByWarningIssued})
from .events import CANCELED, PARTIALLY_SHIPPED, PENDING, SHIPPED, UNSHIPPED
from .store import to_us

ORDER_PREFIX = "order:"
SKU_PREFIX = "sku:"


def order_key(order_id: str) -> str:
    return ORDER_PREFIX + order_id


def sku_key(sku: str) -> str:
    return SKU_PREFIX + sku


class Recorded(CanMutateAggregate[str]):
    """An aggregate event: one payload at one version of one aggregate."""

    __slots__ = ("originator_id", "originator_version", "timestamp", "payload")

    def __init__(self, originator_id: str, originator_version: int,
                 timestamp: datetime, payload: ev.Event) -> None:
        self.originator_id = originator_id
        self.originator_version = originator_version
        self.timestamp = timestamp
        self.payload = payload

    def mutate(self, aggregate: Any) -> Any:
        if aggregate is None:
            cls = Order if self.originator_id.startswith(ORDER_PREFIX) else Inventory
            aggregate = cls.blank(self.originator_id, self.timestamp)
        return super().mutate(aggregate)

    def apply(self, aggregate: Any) -> None:
        aggregate.when(self.payload)

    def __repr__(self) -> str:
        return f"Recorded({self.originator_id!r}, v{self.originator_version}, {self.payload!r})"


class LedgerAggregate(BaseAggregate[str]):
    """Common machinery: record a payload, dispatch ``when``, checkpoints."""

    _handlers: ClassVar[dict[type, Callable[[Any, Any], None]]] = {}

    @classmethod
    def blank(cls, aggregate_id: str, timestamp: datetime) -> Any:
        agg = cls.__new__(cls)
        agg.__base_init__(aggregate_id, 0, timestamp)
        agg.init_state()
        return agg

    def init_state(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def record(self, payload: ev.Event) -> None:
        """Record a new event: what ``trigger_event`` does, without its generic overhead."""
        event = Recorded(self._id, self._version + 1, payload.at, payload)
        self._handlers[type(payload)](self, payload)
        self._version = event.originator_version
        self._modified_on = payload.at
        self._pending_events.append(event)
        sink = self.__dict__.get("_sink")
        if sink is not None:
            sink.append(event)

    def when(self, payload: ev.Event) -> None:
        self._handlers[type(payload)](self, payload)

    def collect_events(self) -> list[Any]:
        """The pending events, handed over at once (the library pops them one by one)."""
        collected, self._pending_events = self._pending_events, []
        return collected

    def checkpoint(self) -> tuple[int, int]:
        """Enough to undo a line: the version and the number of pending events.

        Undoing replays the pending events before the checkpoint onto the
        stored state (see ``UnitOfWork._rollback``): rejections are rare, so
        the common path copies nothing.
        """
        return (self._version, len(self._pending_events))


_Handler = TypeVar("_Handler", bound=Callable[..., None])


def handles(*types: type) -> Callable[[_Handler], _Handler]:
    def deco(fn: _Handler) -> _Handler:
        fn._handles = types  # type: ignore[attr-defined]
        return fn
    return deco


def _collect_handlers(cls: type[LedgerAggregate]) -> None:
    table: dict[type, Callable[[Any, Any], None]] = {}
    for name in dir(cls):
        fn = getattr(cls, name)
        for t in getattr(fn, "_handles", ()):
            table[t] = fn
    cls._handlers = table


# --- inventory -------------------------------------------------------------------


class Inventory(LedgerAggregate):
    """Available quantity of one tracked SKU."""

    def init_state(self) -> None:
        self.sku = self.id[len(SKU_PREFIX):]
        self.available = 0
        # when the SKU became tracked, and the orders that took units at that very instant
        self.tracked_since: datetime | None = None
        self.set_at: datetime | None = None
        self.first_orders: frozenset[str] = frozenset()

    @property
    def active(self) -> bool:
        return self.available > 0

    def allocated_to(self, order_id: str, placed_at: datetime) -> bool:
        """Whether an order placed at ``placed_at`` took units of this SKU.

        Only an order placed while the SKU was tracked did; units of an order
        placed before the first ``set-inventory`` were never taken, so they are
        not given back either.
        """
        if self.tracked_since is None or placed_at < self.tracked_since:
            return False
        return placed_at > self.tracked_since or order_id in self.first_orders

    @handles(ev.InventorySet)
    def _set(self, e: ev.InventorySet) -> None:
        self.available = e.quantity
        if self.tracked_since is None:
            self.tracked_since = e.at
        if self.__dict__.get("set_at") is None or e.at > self.set_at:  # type: ignore[operator]
            self.set_at = e.at  # the latest quantity set, by business time

    @handles(ev.InventoryAllocated, ev.InventoryReturned)
    def _moved(self, e: ev.InventoryAllocated | ev.InventoryReturned) -> None:
        self.available = e.available
        if isinstance(e, ev.InventoryAllocated) and e.at == self.tracked_since:
            self.first_orders = self.first_orders | {e.order_id}

    def allocate(self, order_id: str, quantity: int, at: datetime, actor: str, cid: str) -> None:
        self.record(ev.InventoryAllocated(
            at=at, actor=actor, command_id=cid, sku=self.sku, order_id=order_id,
            quantity=quantity, available=self.available - quantity))

    def give_back(self, order_id: str, quantity: int, at: datetime, actor: str, cid: str) -> None:
        self.record(ev.InventoryReturned(
            at=at, actor=actor, command_id=cid, sku=self.sku, order_id=order_id,
            quantity=quantity, available=self.available + quantity))


_collect_handlers(Inventory)


# --- orders ----------------------------------------------------------------------


class Item:
    __slots__ = ("line", "shipped", "canceled", "refunded", "promotions")

    def __init__(self, line: ev.OrderItem) -> None:
        self.line = line
        self.shipped = 0
        self.canceled = 0
        # refunded amounts per component (Decimals are immutable: a refund replaces one)
        self.refunded = [ev.ZERO] * len(_COMPONENTS)
        # promotion discounts taken back from refunds: item, shipping
        self.promotions = [ev.ZERO, ev.ZERO]

    @property
    def remaining(self) -> int:
        return self.line.quantity - self.shipped - self.canceled



OPEN = (UNSHIPPED, PARTIALLY_SHIPPED)
_COMPONENTS = ("item_price", "item_tax", "shipping_price", "shipping_tax", "gift_wrap_price",
               "gift_wrap_tax")
#: promotion adjustment -> the refunded component it is taken back from
_PROMOTIONS = (("item_promotion_adj", 0), ("ship_promotion_adj", 2))

_US = timedelta(microseconds=1)
_HOLD_US = rules.HOLD // _US
_VERIFY_US = rules.VERIFICATION_LIMIT // _US
_WARN_US = rules.SHIP_WARNING // _US
_SHIP_US = rules.SHIP_LIMIT // _US

#: Deadline kinds in the order they fall due.
HOLD, VERIFY, WARN, SHIP = "hold-expiry", "verification-limit", "ship-warning", "ship-limit"


class Order(LedgerAggregate):
    """One marketplace order and the rules of its lifecycle."""

    def init_state(self) -> None:
        self.order_id: str = self.id[len(ORDER_PREFIX):]
        self.placed: ev.OrderPlaced | None = None
        self.status: ev.Status = PENDING
        self.items: dict[str, Item] = {}
        self.hold_expired = False
        self.pending_outcome: str | None = None  # recorded during the hold
        self.payment: str | None = None  # last payment outcome
        self.released_at: datetime | None = None
        self.latest_ship_date: datetime | None = None
        self.latest_delivery_date: datetime | None = None
        self.ship_to: ev.Address | None = None
        self.warning: str | None = None
        self.ship_by: datetime | None = None
        self.cancel_reason: str | None = None
        self.canceled_by: str | None = None
        self.canceled_at: datetime | None = None
        self.cancel_request_open = False
        self.cancel_request_reason: str | None = None
        self.completed_at: datetime | None = None
        self.review_requested = False
        self.address_requests: list[str] = []
        self.shipments = 0
        self.messages = 0
        self.acknowledged = False
        self.merchant_order_id: str | None = None
        # the buyer and the withheld parts as they are now (a later poll may release them)
        self.buyer: ev.Buyer | None = None
        self.restricted: list[str] = []
        # the latest shipment's carrier and tracking number (a correction replaces them)
        self.carrier: str | None = None
        self.tracking_number: str | None = None
        self.tracking_corrections = 0
        self.ship_from: ev.ShipFrom | None = None
        self.transparency_codes: list[str] = []
        # the business time of the order's latest fact (what a command recorded)
        # and of its latest deadline event: a late command is compared to both
        self.fact_at: datetime | None = None
        self.deadline_at: datetime | None = None
        self.deadline_kind: str | None = None

    def record(self, payload: ev.Event) -> None:
        # LedgerAggregate.record and _note_time in one: it runs for every order event
        event = Recorded(self._id, self._version + 1, payload.at, payload)
        self._handlers[type(payload)](self, payload)
        self._version = event.originator_version
        self._modified_on = payload.at
        self._pending_events.append(event)
        sink = self.__dict__.get("_sink")
        if sink is not None:
            sink.append(event)
        self._note_time(payload)

    def when(self, payload: ev.Event) -> None:
        super().when(payload)
        self._note_time(payload)

    def _note_time(self, p: ev.Event) -> None:
        if type(p) in DEADLINE_EVENTS:
            if self.deadline_at is None or p.at >= self.deadline_at:
                self.deadline_at = p.at
                self.deadline_kind = type(p).__name__
        elif self.fact_at is None or p.at > self.fact_at:
            self.fact_at = p.at

    # --- derived ---------------------------------------------------------------

    @property
    def purchased(self) -> datetime:
        assert self.placed is not None
        return self.placed.at

    @property
    def actionable(self) -> bool:
        return self.status in OPEN

    def remaining(self) -> dict[str, int]:
        return {k: it.remaining for k, it in self.items.items() if it.remaining > 0}

    def _status_after(self, shipped: dict[str, int] | None = None,
                      canceled: dict[str, int] | None = None) -> ev.Status:
        shipped = shipped or {}
        canceled = canceled or {}
        left = any_shipped = 0
        for k, it in self.items.items():
            s = it.shipped + shipped.get(k, 0)
            left += it.line.quantity - s - it.canceled - canceled.get(k, 0)
            any_shipped = any_shipped or s
        if left == 0:
            return SHIPPED if any_shipped else CANCELED
        return PARTIALLY_SHIPPED if any_shipped else UNSHIPPED

    def next_deadline(self) -> tuple[datetime, str] | None:
        """The next rule that fires by itself, with its time, if any."""
        if self.placed is None or self.status in (SHIPPED, CANCELED):
            return None
        p = self.purchased
        if not self.hold_expired:
            return (self.placed.hold_until, HOLD)
        if self.status == PENDING:
            return (p + rules.VERIFICATION_LIMIT, VERIFY)
        if self.warning is None:
            return (p + rules.SHIP_WARNING, WARN)
        return (p + rules.SHIP_LIMIT, SHIP)

    def next_deadline_us(self) -> tuple[int, str] | None:
        """:meth:`next_deadline` in microseconds since the epoch (for the index)."""
        if self.placed is None or self.status in (SHIPPED, CANCELED):
            return None
        base = self.__dict__.get("_placed_us")
        if base is None:
            base = self._placed_us = to_us(self.placed.at)
        if not self.hold_expired:
            return (base + _HOLD_US, HOLD)
        if self.status == PENDING:
            return (base + _VERIFY_US, VERIFY)
        if self.warning is None:
            return (base + _WARN_US, WARN)
        return (base + _SHIP_US, SHIP)

    def view(self) -> dict[str, Any]:
        """The order's current state, as ``order-ledger show`` prints it."""
        assert self.placed is not None
        nd = self.next_deadline()
        return {
            "order_id": self.order_id,
            "status": self.status,
            "actionable": self.actionable,
            "purchase_date": self.purchased.isoformat(),
            "payments_date": self.released_at.isoformat() if self.released_at else None,
            "latest_ship_date": self.latest_ship_date.isoformat() if self.latest_ship_date else None,
            "latest_delivery_date": (
                self.latest_delivery_date.isoformat() if self.latest_delivery_date else None),
            "warning": self.warning if self.status in OPEN else None,
            "buyer_name": (self.buyer or self.placed.buyer).name,
            #: parts the marketplace withheld ("ship_to", "buyer"): placeholders in the ledger
            "restricted": list(self.restricted),
            "ship_service_level": self.placed.ship_service_level,
            #: the marketplace's own fields (service category, Prime, business order ...)
            "market": market_view(self.placed),
            "tracking_number": self.tracking_number,
            "tracking_corrections": self.tracking_corrections,
            #: where the latest shipment that said so left from
            "ship_from": (msgspec.to_builtins(self.ship_from)
                          if self.ship_from is not None else None),
            #: the Transparency codes of every shipment, in order
            "transparency_codes": list(self.transparency_codes),
            "currency": self.placed.currency,
            "payment": self.payment,
            "cancel_reason": self.cancel_reason,
            "canceled_by": self.canceled_by,
            "buyer_requested_cancel": self.cancel_request_open,
            "next_deadline": (
                {"kind": nd[1], "at": nd[0].isoformat()} if nd else None),
            "items": [
                {
                    "order_item_id": k,
                    "sku": it.line.sku,
                    "title": it.line.title,
                    "quantity": it.line.quantity,
                    "quantity_shipped": it.shipped,
                    "quantity_canceled": it.canceled,
                    "quantity_to_ship": it.remaining if self.status in OPEN else 0,
                }
                for k, it in self.items.items()
            ],
        }

    # --- evolving state (replay and decide share these) -------------------------

    def _cancel_quantities(self, canceled: Iterable[ev.ItemQuantity]) -> None:
        for q in canceled:
            self.items[q.order_item_id].canceled += q.quantity

    def _set_status(self, status: ev.Status, at: datetime) -> None:
        self.status = status
        if status in (SHIPPED, CANCELED):
            self.completed_at = at
            self.cancel_request_open = False
            self.warning = None if status == CANCELED else self.warning

    @handles(ev.OrderPlaced)
    def _placed(self, e: ev.OrderPlaced) -> None:
        self.placed = e
        self.items = {i.order_item_id: Item(i) for i in e.items}
        self.latest_ship_date = e.latest_ship_date
        self.latest_delivery_date = e.latest_delivery_date
        self.ship_to = e.ship_to
        self.buyer = e.buyer
        self.restricted = list(e.restricted)
        self.status = e.status

    @handles(ev.HoldExpired)
    def _hold_expired(self, e: ev.HoldExpired) -> None:
        self.hold_expired = True
        if e.applied_outcome == "verified" and e.status == UNSHIPPED:
            self.released_at = e.at
        if e.status == CANCELED:
            self.cancel_reason = e.applied_outcome
            self.canceled_by = "payments"
            self.canceled_at = e.at
        self._cancel_quantities(e.canceled)
        self.pending_outcome = None
        self._set_status(e.status, e.at)

    @handles(ev.PaymentVerified)
    def _verified(self, e: ev.PaymentVerified) -> None:
        self.payment = "verified"
        if e.effective:
            self.released_at = e.at
            self.latest_ship_date = e.latest_ship_date
            self.latest_delivery_date = e.latest_delivery_date
        else:
            self.pending_outcome = "verified"
        self._set_status(e.status, e.at)

    @handles(ev.PaymentExtended)
    def _extended(self, e: ev.PaymentExtended) -> None:
        self.payment = "extended"

    @handles(ev.PaymentDeclined)
    def _declined(self, e: ev.PaymentDeclined) -> None:
        self.payment = e.outcome
        if e.effective:
            self.cancel_reason = e.outcome
            self.canceled_by = "payments"
            self.canceled_at = e.at
            self._cancel_quantities(e.canceled)
        else:
            self.pending_outcome = e.outcome
        self._set_status(e.status, e.at)

    @handles(ev.BuyerCanceled, ev.SellerCanceled, ev.LedgerCanceled)
    def _canceled(self, e: ev.BuyerCanceled | ev.SellerCanceled | ev.LedgerCanceled) -> None:
        self._cancel_quantities(e.canceled)
        self.cancel_reason = e.reason
        self.canceled_by = e.actor
        self.canceled_at = e.at
        self._set_status(e.status, e.at)

    @handles(ev.CancellationRequested)
    def _requested(self, e: ev.CancellationRequested) -> None:
        self.cancel_request_open = True
        self.cancel_request_reason = e.reason

    @handles(ev.ShipByWarningIssued)
    def _warned(self, e: ev.ShipByWarningIssued) -> None:
        self.warning = e.text
        self.ship_by = e.ship_by

    @handles(ev.ShipmentConfirmed)
    def _shipped(self, e: ev.ShipmentConfirmed) -> None:
        for q in e.items:
            self.items[q.order_item_id].shipped += q.quantity
        self.shipments += 1
        self.completed_at = e.at
        self.carrier = e.carrier_name or e.carrier_code
        self.tracking_number = e.tracking_number
        if e.ship_from is not None:
            self.ship_from = e.ship_from
        self.transparency_codes.extend(e.transparency_codes)
        self._set_status(e.status, e.at)

    @handles(ev.TrackingCorrected)
    def _tracking_corrected(self, e: ev.TrackingCorrected) -> None:
        self.carrier = e.carrier_name or e.carrier_code
        self.tracking_number = e.tracking_number
        self.tracking_corrections += 1

    @handles(ev.RestrictedDataReleased)
    def _released_data(self, e: ev.RestrictedDataReleased) -> None:
        if e.ship_to is not None:
            self.ship_to = e.ship_to
        if e.buyer is not None:
            self.buyer = e.buyer
        self.restricted = list(e.restricted)

    @handles(ev.OrderAdjusted)
    def _adjusted(self, e: ev.OrderAdjusted) -> None:
        for a in e.items:
            it = self.items[a.order_item_id]
            it.canceled += a.quantity_cancelled
            for i, comp in enumerate(_COMPONENTS):
                it.refunded[i] += getattr(a, comp + "_adj")
            for i, (name, _) in enumerate(_PROMOTIONS):
                it.promotions[i] += getattr(a, name)
        if e.status != self.status:
            if e.status == CANCELED:
                self.cancel_reason = e.items[0].reason
                self.canceled_by = e.actor
                self.canceled_at = e.at
            self._set_status(e.status, e.at)

    @handles(ev.MessageSent)
    def _sent(self, e: ev.MessageSent) -> None:
        self.messages += 1
        if e.purpose == "review-request":
            self.review_requested = True

    @handles(ev.MessageReceived)
    def _received(self, e: ev.MessageReceived) -> None:
        self.messages += 1
        if e.requests_address_change:
            self.address_requests.append(e.message_id)

    @handles(ev.OrderAcknowledged)
    def _acknowledged(self, e: ev.OrderAcknowledged) -> None:
        self.acknowledged = True
        if e.merchant_order_id:
            self.merchant_order_id = e.merchant_order_id

    @handles(ev.ShippingAddressChanged)
    def _address_changed(self, e: ev.ShippingAddressChanged) -> None:
        self.ship_to = e.ship_to
        self.address_requests.remove(e.message_id)

    # --- deciding ------------------------------------------------------------

    def _require_open(self, action: str) -> None:
        if self.status == PENDING:
            raise CommandRejected(
                "order-pending",
                f"order {self.order_id} is Pending (greyed out, non-actionable): cannot {action}",
                hint="wait until payment is verified and the order is Unshipped",
            )
        if self.status not in OPEN:
            raise CommandRejected(
                f"order-{self.status.lower()}",
                f"order {self.order_id} is {self.status}: cannot {action}",
                hint="only Unshipped or PartiallyShipped orders can be acted on",
            )

    def _all_remaining(self) -> list[ev.ItemQuantity]:
        return [ev.ItemQuantity(order_item_id=k, quantity=n) for k, n in self.remaining().items()]

    def apply_deadline(self, kind: str, due: datetime, cid: str) -> list[ev.ItemQuantity]:
        """Let a due rule fire. Returns the quantities it canceled."""
        common: dict[str, Any] = dict(at=due, actor="ledger", command_id=cid, order_id=self.order_id)
        if kind == HOLD:
            outcome = self.pending_outcome
            if outcome == "verified":
                self.record(ev.HoldExpired(**common, status=UNSHIPPED, applied_outcome=outcome))
                return []
            if outcome in ("declined", "fraud"):
                canceled = self._all_remaining()
                self.record(ev.HoldExpired(**common, status=CANCELED, applied_outcome=outcome,
                                           canceled=canceled))
                return canceled
            self.record(ev.HoldExpired(**common, status=PENDING))
            return []
        if kind == VERIFY:
            canceled = self._all_remaining()
            self.record(ev.LedgerCanceled(**common, reason="PaymentNotVerified",
                                          canceled=canceled, status=CANCELED))
            return canceled
        if kind == WARN:
            ship_by = self.purchased + rules.SHIP_LIMIT
            self.record(ev.ShipByWarningIssued(**common, ship_by=ship_by,
                                               text=rules.warning_text(ship_by)))
            return []
        if kind == SHIP:
            canceled = self._all_remaining()
            status = self._status_after(canceled={q.order_item_id: q.quantity for q in canceled})
            self.record(ev.LedgerCanceled(**common, reason="ShipmentNotConfirmed",
                                          canceled=canceled, status=status))
            return canceled
        raise ValueError(kind)  # pragma: no cover

    def place(self, cmd: c.Place, actor: str, cid: str) -> None:
        seen: set[str] = set()
        for i, item in enumerate(cmd.items):
            if item.order_item_id in seen:
                raise CommandRejected(
                    "duplicate-item", f"order_item_id {item.order_item_id!r} appears twice",
                    field=f"items[{i}].order_item_id", hint="give each item line its own id")
            seen.add(item.order_item_id)
            for comp in _COMPONENTS:
                value = getattr(item, comp)
                # the default of a left-out amount is fine; the message's field name is
                # built only for an amount check_money rejects (not finite, or negative)
                if value is not ev.ZERO and not (value.is_finite() and value >= 0):
                    rules.check_money(value, f"items[{i}].{comp}")
        if not rules.LANGUAGE_RE.match(cmd.buyer.language):
            raise CommandRejected(
                "bad-language", f"buyer language {cmd.buyer.language!r} is not a BCP-47 tag",
                field="buyer.language", hint="write e.g. sv-SE, en-GB or zh-CN")
        _check_address(cmd.ship_to, "ship_to")
        ship_by: datetime = cmd.latest_ship_date or cmd.at + rules.DEFAULT_SHIP_BY  # type: ignore[operator, assignment]
        deliver_by: datetime = cmd.latest_delivery_date or cmd.at + rules.DEFAULT_DELIVER_BY  # type: ignore[operator, assignment]
        if ship_by < cmd.at:  # type: ignore[operator]
            raise CommandRejected(
                "bad-promise", "latest_ship_date is before the purchase time",
                field="latest_ship_date", hint="omit it for the default of purchase + 2 days")
        if deliver_by < ship_by:
            raise CommandRejected(
                "bad-promise", "latest_delivery_date is before latest_ship_date",
                field="latest_delivery_date", hint="omit it for the default of purchase + 7 days")
        self.record(ev.OrderPlaced(
            at=cmd.at, actor=actor, command_id=cid, order_id=cmd.order_id,  # type: ignore[arg-type]
            items=[ev.OrderItem(
                order_item_id=i.order_item_id, sku=i.sku, title=i.title, quantity=i.quantity,
                item_price=i.item_price, item_tax=i.item_tax, shipping_price=i.shipping_price,
                shipping_tax=i.shipping_tax, gift_wrap_price=i.gift_wrap_price,
                gift_wrap_tax=i.gift_wrap_tax, promotion_discount=i.promotion_discount,
                ship_promotion_discount=i.ship_promotion_discount,
                price_designation=i.price_designation) for i in cmd.items],
            currency=cmd.currency, ship_service_level=cmd.ship_service_level,
            latest_ship_date=ship_by, latest_delivery_date=deliver_by,
            buyer=cmd.buyer, ship_to=cmd.ship_to, hold_until=cmd.at + rules.HOLD,  # type: ignore[operator, arg-type]
            restricted=sorted(set(cmd.restricted)), market=cmd.market))

    def cancel(self, cmd: c.Cancel, actor: str, cid: str) -> list[ev.ItemQuantity]:
        common: dict[str, Any] = dict(at=cmd.at, actor=actor, command_id=cid, order_id=self.order_id)
        if cmd.by == "buyer":
            if self.hold_expired or self.status != PENDING:
                raise CommandRejected(
                    "hold-over",
                    f"the buyer can cancel directly only inside the 30-minute hold, which "
                    f"ended at {self.placed.hold_until.isoformat()}",  # type: ignore[union-attr]
                    field="by", hint="send a request-cancel command for the buyer instead")
            canceled = self._all_remaining()
            self.record(ev.BuyerCanceled(**common, reason=cmd.reason, canceled=canceled))
            return canceled
        if not cmd.reason:
            raise CommandRejected(
                "missing-reason", "a seller cancellation needs a reason code", field="reason",
                hint="use one of: " + ", ".join(rules.SELLER_CANCEL_REASONS))
        if cmd.reason not in rules.SELLER_CANCEL_REASONS:
            raise CommandRejected(
                "bad-reason", f"unknown cancel reason {cmd.reason!r}", field="reason",
                hint="use one of: " + ", ".join(rules.SELLER_CANCEL_REASONS))
        self._require_open("cancel")
        canceled = self._all_remaining()
        status = self._status_after(canceled={q.order_item_id: q.quantity for q in canceled})
        self.record(ev.SellerCanceled(
            **common, reason=cmd.reason, memo=cmd.memo, canceled=canceled, status=status,
            buyer_requested=self.cancel_request_open))
        return canceled

    def request_cancel(self, cmd: c.RequestCancel, actor: str, cid: str) -> None:
        if self.status == PENDING and not self.hold_expired:
            raise CommandRejected(
                "in-hold", "the order is still in its 30-minute hold: the buyer cancels directly",
                hint='send {"type": "cancel", "by": "buyer"} instead')
        self._require_open("request cancellation")
        if self.cancel_request_open:
            raise CommandRejected(
                "already-requested", f"the buyer already asked to cancel order {self.order_id}",
                hint="the seller answers with cancel (reason BuyerCanceled) or ships")
        self.record(ev.CancellationRequested(
            at=cmd.at, actor=actor, command_id=cid, order_id=self.order_id, reason=cmd.reason))  # type: ignore[arg-type]

    def verify_payment(self, cmd: c.VerifyPayment, actor: str, cid: str) -> list[ev.ItemQuantity]:
        common: dict[str, Any] = dict(at=cmd.at, actor=actor, command_id=cid, order_id=self.order_id)
        if self.status != PENDING:
            raise CommandRejected(
                "payment-settled",
                f"order {self.order_id} is {self.status}: its payment is already settled",
                field="outcome", hint="payment outcomes apply only to Pending orders")
        in_hold = not self.hold_expired
        if in_hold and self.pending_outcome is not None:
            raise CommandRejected(
                "outcome-recorded",
                f"payment outcome {self.pending_outcome!r} is already recorded and takes effect "
                f"when the hold ends at {self.placed.hold_until.isoformat()}",  # type: ignore[union-attr]
                field="outcome", hint="send one final outcome per order")
        if cmd.outcome == "extended":
            self.record(ev.PaymentExtended(**common))
            return []
        if cmd.outcome == "verified":
            ship_by, deliver_by = self.latest_ship_date, self.latest_delivery_date
            if not in_hold:
                shift = cmd.at - self.placed.hold_until  # type: ignore[union-attr, operator]
                if shift > timedelta(0):
                    ship_by += shift  # type: ignore[operator, assignment]
                    deliver_by += shift  # type: ignore[operator, assignment]
            self.record(ev.PaymentVerified(
                **common, effective=not in_hold, status=PENDING if in_hold else UNSHIPPED,
                latest_ship_date=ship_by, latest_delivery_date=deliver_by))  # type: ignore[arg-type]
            return []
        canceled = [] if in_hold else self._all_remaining()
        self.record(ev.PaymentDeclined(
            **common, outcome=cmd.outcome, effective=not in_hold,
            status=PENDING if in_hold else CANCELED, canceled=canceled))
        return canceled

    def ship(self, cmd: c.Ship, actor: str, cid: str) -> None:
        self._require_open("ship")
        if cmd.carrier_code.strip().lower() == "other" and not cmd.carrier_name:
            raise CommandRejected(
                "missing-carrier-name", "carrier_name is required when carrier_code is Other",
                field="carrier_name", hint="name the carrier, e.g. \"Bring\"")
        ship_date = rules.parse_ship_date(cmd.ship_date)
        rules.check_ship_date(ship_date, self.purchased, cmd.at)  # type: ignore[arg-type]
        if cmd.items is None:
            lines = self._all_remaining()
        else:
            lines = self._check_quantities(
                [(i.order_item_id, i.quantity) for i in cmd.items], "items", "quantity", "ship")
        shipped = {q.order_item_id: q.quantity for q in lines}
        ship_from = _check_ship_from(cmd.ship_from)
        codes = [code.strip() for code in cmd.transparency_codes]
        if len(set(codes)) != len(codes):
            raise CommandRejected(
                "duplicate-transparency-code", "a Transparency code appears twice",
                field="transparency_codes", hint="each unit has its own code; give each once")
        self.record(ev.ShipmentConfirmed(
            at=cmd.at, actor=actor, command_id=cid, order_id=self.order_id,  # type: ignore[arg-type]
            carrier_code=cmd.carrier_code, carrier_name=cmd.carrier_name,
            tracking_number=cmd.tracking_number or None, ship_date=cmd.ship_date.strip(),
            ship_method=cmd.ship_method, items=lines, status=self._status_after(shipped=shipped),
            ship_from=ship_from, transparency_codes=codes))

    def _check_quantities(self, pairs: list[tuple[str, int]], field: str, qname: str,
                          action: str) -> list[ev.ItemQuantity]:
        seen: set[str] = set()
        out = []
        for i, (item_id, qty) in enumerate(pairs):
            where = f"{field}[{i}]"
            if item_id not in self.items:
                raise CommandRejected(
                    "unknown-item", f"order {self.order_id} has no item {item_id!r}",
                    field=f"{where}.order_item_id",
                    hint="known items: " + ", ".join(self.items))
            if item_id in seen:
                raise CommandRejected(
                    "duplicate-item", f"item {item_id!r} appears twice",
                    field=f"{where}.order_item_id", hint="give each item once with its total")
            seen.add(item_id)
            left = self.items[item_id].remaining
            if qty > left:
                raise CommandRejected(
                    "quantity-too-large",
                    f"cannot {action} {qty} of item {item_id!r}: only {left} left "
                    f"(neither shipped nor canceled)",
                    field=f"{where}.{qname}", hint=f"{action} at most {left}")
            if qty:
                out.append(ev.ItemQuantity(order_item_id=item_id, quantity=qty))
        return out

    def adjust(self, cmd: c.Adjust, actor: str, cid: str) -> list[ev.ItemQuantity]:
        if self.status not in (UNSHIPPED, PARTIALLY_SHIPPED, SHIPPED):
            self._require_open("adjust")
        lines = self._check_quantities(
            [(a.order_item_id, a.quantity_cancelled) for a in cmd.items], "items",
            "quantity_cancelled", "cancel")
        for i, a in enumerate(cmd.items):
            where = f"items[{i}]"
            if a.reason not in rules.ADJUSTMENT_REASONS:
                raise CommandRejected(
                    "bad-reason", f"unknown adjustment reason {a.reason!r}",
                    field=f"{where}.reason",
                    hint="use one of: " + ", ".join(sorted(rules.ADJUSTMENT_REASONS)))
            it = self.items[a.order_item_id]
            total = Decimal(0)
            for k, comp in enumerate(_COMPONENTS):
                amount = getattr(a, comp + "_adj")
                rules.check_money(amount, f"{where}.{comp}_adj")
                total += amount
                charged = getattr(it.line, comp)
                if it.refunded[k] + amount > charged:
                    raise CommandRejected(
                        "refund-too-large",
                        f"refunding {amount} of {comp} for item {a.order_item_id!r} would exceed "
                        f"the {charged} charged ({it.refunded[k]} already refunded)",
                        field=f"{where}.{comp}_adj",
                        hint=(f"refund at most {charged - it.refunded[k]}" if charged or
                              not comp.startswith("gift_wrap") else
                              "the order's gift wrap charge is not in the ledger: place the "
                              "item with gift_wrap_price/gift_wrap_tax, or refund it as "
                              "item_price_adj"))
            for j, (name, k) in enumerate(_PROMOTIONS):
                amount = getattr(a, name)
                rules.check_money(amount, f"{where}.{name}")
                total += amount
                base = it.refunded[k] + getattr(a, _COMPONENTS[k] + "_adj")
                if it.promotions[j] + amount > base:
                    comp = _COMPONENTS[k]
                    raise CommandRejected(
                        "promotion-too-large",
                        f"taking back {amount} of promotion from the {comp} refund of item "
                        f"{a.order_item_id!r} would make it negative ({base} of {comp} "
                        f"refunded, {it.promotions[j]} of promotion already taken back)",
                        field=f"{where}.{name}",
                        hint=f"take back at most {base - it.promotions[j]}, or refund more "
                             f"{comp}")
            if total == 0 and a.quantity_cancelled == 0:
                raise CommandRejected(
                    "empty-adjustment", f"the adjustment of item {a.order_item_id!r} changes nothing",
                    field=where, hint="give quantity_cancelled or an amount to refund")
        canceled = {q.order_item_id: q.quantity for q in lines}
        status = self._status_after(canceled=canceled) if self.status in OPEN else self.status
        self.record(ev.OrderAdjusted(
            at=cmd.at, actor=actor, command_id=cid, order_id=self.order_id,  # type: ignore[arg-type]
            items=[ev.ItemAdjustment(
                order_item_id=a.order_item_id, reason=a.reason,
                quantity_cancelled=a.quantity_cancelled, item_price_adj=a.item_price_adj,
                item_tax_adj=a.item_tax_adj, shipping_price_adj=a.shipping_price_adj,
                shipping_tax_adj=a.shipping_tax_adj, gift_wrap_price_adj=a.gift_wrap_price_adj,
                gift_wrap_tax_adj=a.gift_wrap_tax_adj, item_promotion_adj=a.item_promotion_adj,
                ship_promotion_adj=a.ship_promotion_adj) for a in cmd.items],
            status=status, buyer_requested=self.cancel_request_open))
        return lines

    def send_message(self, cmd: c.SendMessage, actor: str, cid: str) -> None:
        from .messaging import check_message

        if self.status == PENDING:
            raise CommandRejected(
                "order-pending",
                f"order {self.order_id} is Pending: messages can be sent once payment is verified",
                hint="wait until the order is Unshipped")
        violations = check_message(
            order_id=self.order_id, purpose=cmd.purpose, language=cmd.language, body=cmd.body,
            attachments=cmd.attachments, phone_reason=cmd.phone_reason,
            buyer_language=self.placed.buyer.language,  # type: ignore[union-attr]
            completed_at=self.completed_at, now=cmd.at,  # type: ignore[arg-type]
            review_already_requested=self.review_requested)
        if violations:
            raise CommandRejected(
                "message-rejected",
                "the message breaks the messaging rules: "
                + "; ".join(f"{v.rule}: {v.message}" for v in violations),
                field="body", hint="fix every listed violation and send again",
                violations=[v.as_dict() for v in violations])
        self.record(ev.MessageSent(
            at=cmd.at, actor=actor, command_id=cid, order_id=self.order_id, message_id=cid,  # type: ignore[arg-type]
            purpose=cmd.purpose, language=cmd.language, body=cmd.body,
            attachments=list(cmd.attachments), phone_reason=cmd.phone_reason))

    def receive_message(self, cmd: c.ReceiveMessage, actor: str, cid: str) -> None:
        self.record(ev.MessageReceived(
            at=cmd.at, actor=actor, command_id=cid, order_id=self.order_id, message_id=cid,  # type: ignore[arg-type]
            sender=cmd.sender, body=cmd.body, requests_address_change=cmd.requests_address_change))

    def acknowledge(self, cmd: c.Acknowledge, actor: str, cid: str) -> None:
        if self.status == CANCELED:
            raise CommandRejected(
                "order-canceled", f"order {self.order_id} is Canceled: nothing to acknowledge",
                hint="acknowledge only orders that are not canceled")
        self.record(ev.OrderAcknowledged(
            at=cmd.at, actor=actor, command_id=cid, order_id=self.order_id,  # type: ignore[arg-type]
            merchant_order_id=cmd.merchant_order_id))

    def release_restricted(self, cmd: c.ReleaseRestricted, actor: str, cid: str) -> None:
        given = [part for part, value in (("ship_to", cmd.ship_to), ("buyer", cmd.buyer))
                 if value is not None]
        if not given:
            raise CommandRejected(
                "nothing-given", "give ship_to, buyer or both", field="ship_to",
                hint="send the address or the buyer the marketplace released")
        for part in given:
            if part not in self.restricted:
                raise CommandRejected(
                    "not-restricted",
                    f"order {self.order_id}'s {part} was not withheld: nothing to release",
                    field=part, hint="change an address with change-address instead")
        if cmd.ship_to is not None:
            _check_address(cmd.ship_to, "ship_to")
        if cmd.buyer is not None and not rules.LANGUAGE_RE.match(cmd.buyer.language):
            raise CommandRejected(
                "bad-language", f"buyer language {cmd.buyer.language!r} is not a BCP-47 tag",
                field="buyer.language", hint="write e.g. sv-SE, en-GB or zh-CN")
        self.record(ev.RestrictedDataReleased(
            at=cmd.at, actor=actor, command_id=cid, order_id=self.order_id,  # type: ignore[arg-type]
            ship_to=cmd.ship_to, buyer=cmd.buyer,
            restricted=[p for p in self.restricted if p not in given]))

    def correct_tracking(self, cmd: c.CorrectTracking, actor: str, cid: str) -> None:
        if self.shipments == 0:
            raise CommandRejected(
                "not-shipped", f"order {self.order_id} has no shipment to correct",
                hint="confirm the shipment with ship first")
        if cmd.carrier_code.strip().lower() == "other" and not cmd.carrier_name:
            raise CommandRejected(
                "missing-carrier-name", "carrier_name is required when carrier_code is Other",
                field="carrier_name", hint="name the carrier, e.g. \"Bring\"")
        number = cmd.tracking_number or None
        if number == self.tracking_number and (cmd.carrier_name or cmd.carrier_code) == \
                self.carrier:
            raise CommandRejected(
                "same-tracking", f"order {self.order_id} already has tracking number "
                f"{number!r} with carrier {self.carrier!r}", field="tracking_number",
                hint="send a correction only with another carrier or tracking number")
        self.record(ev.TrackingCorrected(
            at=cmd.at, actor=actor, command_id=cid, order_id=self.order_id,  # type: ignore[arg-type]
            carrier_code=cmd.carrier_code, carrier_name=cmd.carrier_name,
            tracking_number=number, ship_method=cmd.ship_method,
            replaces=self.tracking_number))

    def change_address(self, cmd: c.ChangeAddress, actor: str, cid: str) -> None:
        self._require_open("change the shipping address")
        if not self.address_requests:
            raise CommandRejected(
                "no-address-request",
                f"no received message on order {self.order_id} asks for an address change",
                hint="record the buyer's or customer service's request with receive-message "
                     "and requests_address_change: true first")
        _check_address(cmd.ship_to, "ship_to")
        self.record(ev.ShippingAddressChanged(
            at=cmd.at, actor=actor, command_id=cid, order_id=self.order_id,  # type: ignore[arg-type]
            ship_to=cmd.ship_to, message_id=self.address_requests[0]))


_collect_handlers(Order)


def market_view(placed: ev.OrderPlaced) -> dict[str, Any]:
    """The marketplace's fields of an order (set ones only), and the items' promotions
    and price designations, as ``show --json`` gives them."""
    out: dict[str, Any] = {}
    if placed.market is not None:
        for name in placed.market.__struct_fields__:
            value = getattr(placed.market, name)
            if value is not None:
                out[name] = value.isoformat() if isinstance(value, datetime) else value
    for i in placed.items:
        extra = {k: (str(v) if isinstance(v, Decimal) else v) for k, v in (
            ("promotion_discount", i.promotion_discount),
            ("ship_promotion_discount", i.ship_promotion_discount),
            ("price_designation", i.price_designation)) if v}
        if extra:
            out.setdefault("items", {})[i.order_item_id] = extra
    return out


def _check_address(a: ev.Address, field: str) -> None:
    for name in ("name", "address_1", "city", "postal_code"):
        if not getattr(a, name).strip():
            raise CommandRejected(
                "missing-field", f"{field}.{name} is empty", field=f"{field}.{name}",
                hint="fill in the address line")
    if not rules.COUNTRY_RE.match(a.country):
        raise CommandRejected(
            "bad-country", f"country {a.country!r} is not an ISO 3166 alpha-2 code",
            field=f"{field}.country", hint="write e.g. SE, DE or GB")


def sku_quantities(lines: Iterable[ev.ItemQuantity], order: Order) -> dict[str, int]:
    """Sum item quantities by SKU."""
    out: dict[str, int] = defaultdict(int)
    for q in lines:
        out[order.items[q.order_item_id].line.sku] += q.quantity
    return dict(out)


def _check_ship_from(ship_from: ev.ShipFrom | None) -> ev.ShipFrom | None:
    """A ship-from address with its blank fields dropped (None when nothing is left);
    the country, when given, must be a two-letter code."""
    if ship_from is None:
        return None
    given = {k: v.strip() for k, v in msgspec.structs.asdict(ship_from).items()
             if v is not None and v.strip()}
    if not given:
        return None
    country = given.get("country")
    if country is not None:
        if not (len(country) == 2 and country.isascii() and country.isalpha()):
            raise CommandRejected(
                "bad-country", f"ship-from country {country!r} is not a two-letter code",
                field="ship_from.country", hint="write the ISO 3166 code, e.g. SE or DE")
        given["country"] = country.upper()
    return ev.ShipFrom(**given)

