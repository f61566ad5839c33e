"""The projections' apply code: pure functions of the event stream.

Each projection is a class whose ``handlers()`` map event types to functions
``(position, event) -> None`` that evolve in-memory state. The very same code
runs in two places:

- :func:`projections.memory.project` applies a whole stream to fresh objects
  (``complete=True``: whatever is not in memory does not exist);
- :class:`projections.views.Views` applies batches to objects whose state is
  loaded on demand from the views file and written back with ``flush_ops()``.

So the stored views and the in-memory ones cannot drift apart.

Order projections keep one small record per order. Times are kept both as the
ISO-8601 text the event carried (offset included) and, where they are compared
or sorted, as microseconds since the epoch (``*_us``).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Callable, ClassVar, Iterable, Sequence, get_args

import msgspec

from ledger import events as ev
from ledger.domain import ORDER_PREFIX
from ledger.rules import BUYER_WISH_REASONS, SELLER_CANCEL_REASONS
from ledger.store import to_us

PENDING, UNSHIPPED, PARTIALLY_SHIPPED, SHIPPED, CANCELED = (
    ev.PENDING, ev.UNSHIPPED, ev.PARTIALLY_SHIPPED, ev.SHIPPED, ev.CANCELED)
OPEN = (UNSHIPPED, PARTIALLY_SHIPPED)
STATUSES: tuple[str, ...] = get_args(ev.Status)

Handler = Callable[[int, Any], None]

_enc = msgspec.json.Encoder()


def _json(obj: Any) -> str:
    return _enc.encode(obj).decode()


def iso(t: Any) -> str:
    """ISO-8601 text of an aware datetime, as msgspec writes it (UTC as ``Z``).

    Several times faster than ``datetime.isoformat`` for fixed-offset zones.
    """
    return _enc.encode(t)[1:-1].decode()


# --- records ----------------------------------------------------------------------


class ItemRow(msgspec.Struct, array_like=True, gc=False):
    """One order item line as Manage Orders and the reports show it."""

    order_item_id: str
    sku: str
    title: str
    quantity: int
    shipped: int
    canceled: int
    item_price: Decimal
    item_tax: Decimal
    shipping_price: Decimal
    shipping_tax: Decimal
    gift_wrap_price: Decimal = Decimal(0)
    gift_wrap_tax: Decimal = Decimal(0)
    promotion_discount: Decimal = Decimal(0)
    ship_promotion_discount: Decimal = Decimal(0)
    price_designation: str | None = None


class OrderDoc(msgspec.Struct, gc=False):
    """A row of the ``orders`` table (Manage Orders and both reports).

    The field order is the column order; ``ship_to`` is the address as JSON and
    ``items`` is encoded to JSON when written.
    """

    order_id: str
    status: str
    purchase_date: str
    purchase_us: int
    payments_date: str | None
    latest_ship_date: str
    latest_delivery_date: str
    buyer_name: str
    buyer_email: str | None
    buyer_phone: str | None
    buyer_language: str
    currency: str
    ship_service_level: str
    payment: str | None
    warning: str | None
    cancel_reason: str | None
    canceled_by: str | None
    buyer_requested_cancel: bool
    ever_released: bool
    ship_to: str
    #: the marketplace's fields as JSON (``ledger.events.MarketInfo`` set fields, plus
    #: ``merchant_order_id`` and ``restricted``); "{}" when there are none
    market: str
    #: the business time of the order's latest event (the All Orders report's
    #: last-updated-date)
    last_updated: str
    items: list[ItemRow]


ORDER_COLUMNS: tuple[str, ...] = OrderDoc.__struct_fields__
_items_decoder = msgspec.json.Decoder(list[ItemRow])
_address_decoder = msgspec.json.Decoder(ev.Address)


def doc_to_row(d: OrderDoc) -> tuple[Any, ...]:
    """The ``orders`` row of an :class:`OrderDoc` (``items`` as JSON)."""
    t = msgspec.structs.astuple(d)
    return t[:_DOC_ITEMS] + (_enc.encode(d.items).decode(),) + t[_DOC_ITEMS + 1:]


#: where the ``bool`` fields of :class:`OrderDoc` are (SQLite gives them back as 0 / 1)
_DOC_BOOLS = tuple(i for i, f in enumerate(msgspec.structs.fields(OrderDoc)) if f.type is bool)
_DOC_ITEMS = ORDER_COLUMNS.index("items")


def row_to_doc(row: Iterable[Any]) -> OrderDoc:
    """An ``orders`` row (its columns in :data:`ORDER_COLUMNS` order) as an
    :class:`OrderDoc`; the conversions follow the fields' types."""
    vals = list(row)
    vals[_DOC_ITEMS] = _items_decoder.decode(vals[_DOC_ITEMS])
    for i in _DOC_BOOLS:
        vals[i] = bool(vals[i])
    return OrderDoc(*vals)


def address_of(d: OrderDoc) -> ev.Address:
    return _address_decoder.decode(d.ship_to)


_market_decoder = msgspec.json.Decoder(dict[str, Any])


def market_of(d: OrderDoc) -> dict[str, Any]:
    return _market_decoder.decode(d.market) if d.market else {}


def _market_json(e: ev.OrderPlaced) -> str:
    out: dict[str, Any] = {}
    if e.market is not None:
        out.update(msgspec.to_builtins(e.market))
    if e.restricted:
        out["restricted"] = list(e.restricted)
    return _json(out)


class MetricOrder(msgspec.Struct, gc=False):
    """A row of ``metric_orders``: what seller metrics need to know of an order."""

    order_id: str
    purchase_us: int
    released: bool  # left Pending as Unshipped
    latest_ship_us: int
    last_confirmation_us: int | None  # the latest ShipmentConfirmed.at
    status: str
    counted_reason: str | None  # first seller-caused cancellation (counts once)
    counted_us: int | None


METRIC_COLUMNS: tuple[str, ...] = MetricOrder.__struct_fields__


def row_to_metric(row: Iterable[Any]) -> MetricOrder:
    m = MetricOrder(*row)
    m.released = bool(m.released)
    return m


class NItem(msgspec.Struct, gc=False):
    """An item line as notifications show it."""

    order_item_id: str
    sku: str
    title: str
    quantity: int


# Notification contents (JSON objects, keys in this order).


class OrderConfirmation(msgspec.Struct, gc=False):
    """To the buyer when payment is verified and the order released."""

    order_id: str
    buyer_name: str
    buyer_email: str | None
    language: str
    estimated_delivery_date: str
    items: list[NItem]


class SoldShipNow(msgspec.Struct, gc=False):
    """To the seller when an order is released: never the buyer's address or details."""

    order_id: str
    ship_by: str
    ship_service_level: str
    items: list[NItem]


class CanceledItem(msgspec.Struct, gc=False, omit_defaults=True):
    order_item_id: str
    title: str
    quantity: int
    reason: str | None = None  # per item, for adjustments


class Cancellation(msgspec.Struct, gc=False):
    """To the buyer when the seller cancels (all that was left, or items by adjustment)."""

    order_id: str
    buyer_email: str | None
    language: str | None
    reason: str
    reason_text: str
    whole_order: bool
    items: list[CanceledItem]


class ShipByWarning(msgspec.Struct, gc=False):
    """To the seller on day 23."""

    order_id: str
    ship_by: str
    text: str


class NotifyOrder(msgspec.Struct, array_like=True, gc=False):
    """What the notifications projection remembers of an order."""

    order_id: str
    buyer_name: str
    buyer_email: str | None
    language: str
    ship_service_level: str
    latest_ship_date: str
    latest_delivery_date: str
    items: list[NItem]


_notify_decoder = msgspec.json.Decoder(NotifyOrder)


# --- the projection base -------------------------------------------------------------


class Table(msgspec.Struct, frozen=True):
    """One table of a projection: ``ddl`` has ``{t}`` for the table name;
    ``indexes`` are (name, columns) created when a rebuilt table is swapped in
    (a name starting with ``"UNIQUE "`` makes a unique index)."""

    name: str
    ddl: str
    indexes: tuple[tuple[str, str], ...] = ()


class Projection:
    """Base: state in memory, loaded by key on demand, flushed per batch."""

    name: ClassVar[str]
    version: ClassVar[int]
    tables: ClassVar[tuple[Table, ...]]
    description: ClassVar[str]
    #: whether events must have their order's record loaded first
    keyed: ClassVar[bool] = True
    #: event types whose handlers never read the order's record (nothing to load)
    no_load: ClassVar[frozenset[type]] = frozenset()

    def __init__(self, complete: bool = True) -> None:
        #: True when every record that exists is in memory (a fresh build)
        self.complete = complete

    def handlers(self) -> dict[type, Handler]:  # pragma: no cover - overridden
        raise NotImplementedError

    # storage hooks -------------------------------------------------------------
    def missing(self, keys: set[str]) -> list[str]:
        """Keys whose records must be loaded before applying a batch."""
        return []

    def loaded(self, rows: list[tuple[Any, ...]]) -> None:
        """Records read from the views file (for keys from :meth:`missing`)."""

    def load_sql(self, t: dict[str, str]) -> str | None:
        """SELECT with one ``{marks}`` placeholder list for the keys."""
        return None

    def flush_ops(self, t: dict[str, str], defer: int = 0) -> list[tuple[str, list[tuple[Any, ...]]]]:
        """SQL statements and their rows for everything changed since the last flush.

        Per-order records may be held back while fewer than ``defer`` changed
        (rebuilds); append-only rows and everything else are always returned.
        """
        return []

    def trim(self, limit: int) -> None:
        """After a flush: forget cached records if there are too many."""

    def evict_settled(self) -> int:
        """After a flush: forget records of settled orders (shipped or canceled) that
        are written; returns how many. A later event of such an order loads its
        record again, so memory follows the open orders, not all orders."""
        return 0


class KeyedProjection(Projection):
    """A projection with one record per order in ``self.recs``."""

    def __init__(self, complete: bool = True) -> None:
        super().__init__(complete)
        self.recs: dict[str, Any] = {}
        self.dirty: set[str] = set()
        #: keys whose order reached Shipped or Canceled since the last eviction
        self.ended: set[str] = set()

    def missing(self, keys: set[str]) -> list[str]:
        if self.complete:
            return []
        recs = self.recs
        return [k for k in keys if k not in recs]

    def _get(self, e: Any) -> Any:
        """The record of the event's order (marked changed), or None if unknown."""
        rec = self.recs.get(e.order_id)
        if rec is not None:
            self.dirty.add(e.order_id)
        return rec

    def take_dirty(self, defer: int) -> list[str]:
        """The changed keys to write now, sorted (b-tree friendly); none while fewer
        than ``defer`` (a rebuild writes each record about once, at the end)."""
        if not self.dirty or len(self.dirty) < defer:
            return []
        keys = sorted(self.dirty)
        self.dirty.clear()
        return keys

    def trim(self, limit: int) -> None:
        if len(self.recs) > limit and not self.dirty:
            self.recs.clear()
            self.ended.clear()
            self.complete = False

    def evict_settled(self) -> int:
        # only once everything is written (a rebuild holds records back until
        # DEFER_LIMIT changed): then every ended record is in the table
        ended = self.ended
        if not ended or self.dirty:
            return 0
        pop = self.recs.pop
        for k in ended:
            pop(k, None)
        gone = len(ended)
        self.ended = set()
        self.complete = False  # from now on a missing record may be stored
        return gone


# --- Manage Orders + reports --------------------------------------------------------


class OrdersProjection(KeyedProjection):
    """Manage Orders: one row per order; also the source of both reports."""

    name = "orders"
    version = 2
    description = ("Manage Orders (one row per order) and the Orders / Unshipped Orders / "
                   "All Orders reports")
    tables = (
        Table("orders",
              "CREATE TABLE {t} ("
              "order_id TEXT PRIMARY KEY, status TEXT NOT NULL, purchase_date TEXT NOT NULL,"
              " purchase_us INTEGER NOT NULL, payments_date TEXT, latest_ship_date TEXT NOT NULL,"
              " latest_delivery_date TEXT NOT NULL,"
              " buyer_name TEXT NOT NULL, buyer_email TEXT, buyer_phone TEXT,"
              " buyer_language TEXT NOT NULL, currency TEXT NOT NULL,"
              " ship_service_level TEXT NOT NULL, payment TEXT, warning TEXT,"
              " cancel_reason TEXT, canceled_by TEXT, buyer_requested_cancel INTEGER NOT NULL,"
              " ever_released INTEGER NOT NULL, ship_to TEXT NOT NULL, market TEXT NOT NULL,"
              " last_updated TEXT NOT NULL, items TEXT NOT NULL,"
              " actionable INTEGER GENERATED ALWAYS AS"
              " (status IN ('Unshipped', 'PartiallyShipped')) VIRTUAL)",
              (("orders_by_status", "status, purchase_us, order_id"),
               ("orders_by_purchase", "purchase_us, order_id"))),
    )

    def handlers(self) -> dict[type, Handler]:
        return {
            ev.OrderPlaced: self._placed,
            ev.HoldExpired: self._hold_expired,
            ev.PaymentVerified: self._verified,
            ev.PaymentExtended: self._extended,
            ev.PaymentDeclined: self._declined,
            ev.BuyerCanceled: self._canceled,
            ev.SellerCanceled: self._canceled,
            ev.LedgerCanceled: self._canceled,
            ev.CancellationRequested: self._requested,
            ev.ShipByWarningIssued: self._warned,
            ev.ShipmentConfirmed: self._shipped,
            ev.OrderAdjusted: self._adjusted,
            ev.ShippingAddressChanged: self._address,
            ev.RestrictedDataReleased: self._released_data,
            ev.OrderAcknowledged: self._acknowledged,
            ev.TrackingCorrected: self._touched,
        }

    def _get(self, e: Any) -> Any:
        d = super()._get(e)
        if d is not None:  # an order's events come in its time order
            d.last_updated = iso(e.at)
        return d

    def load_sql(self, t: dict[str, str]) -> str:
        return f"SELECT {', '.join(ORDER_COLUMNS)} FROM {t['orders']} WHERE order_id IN ({{marks}})"

    def loaded(self, rows: list[tuple[Any, ...]]) -> None:
        for row in rows:
            self.recs[row[0]] = row_to_doc(row)

    def flush_ops(self, t: dict[str, str], defer: int = 0) -> list[tuple[str, list[tuple[Any, ...]]]]:
        keys = self.take_dirty(defer)
        if not keys:
            return []
        recs = self.recs
        rows = [doc_to_row(recs[k]) for k in keys]
        marks = ", ".join("?" * len(ORDER_COLUMNS))
        return [(f"INSERT OR REPLACE INTO {t['orders']} ({', '.join(ORDER_COLUMNS)}) "
                 f"VALUES ({marks})", rows)]

    # helpers -----------------------------------------------------------------------

    def _status(self, d: OrderDoc, e: Any) -> None:
        new = e.status
        if d.status == PENDING and new == UNSHIPPED:
            d.payments_date = iso(e.at)
            d.ever_released = True
        if new == SHIPPED or new == CANCELED:
            d.warning = None
            d.buyer_requested_cancel = False
            self.ended.add(d.order_id)
        d.status = new

    @staticmethod
    def _cancel_qty(d: OrderDoc, lines: list[ev.ItemQuantity]) -> None:
        if lines:
            by_id = {i.order_item_id: i for i in d.items}
            for q in lines:
                it = by_id.get(q.order_item_id)
                if it is not None:
                    it.canceled += q.quantity

    # handlers ----------------------------------------------------------------------

    def _placed(self, pos: int, e: ev.OrderPlaced) -> None:
        b = e.buyer
        self.recs[e.order_id] = OrderDoc(
            e.order_id, e.status, iso(e.at), to_us(e.at), None, iso(e.latest_ship_date),
            iso(e.latest_delivery_date), b.name, b.email, b.phone, b.language,
            e.currency, e.ship_service_level, None, None, None, None, False, False,
            _json(e.ship_to), _market_json(e), iso(e.at),
            [ItemRow(i.order_item_id, i.sku, i.title, i.quantity, 0, 0, i.item_price,
                     i.item_tax, i.shipping_price, i.shipping_tax, i.gift_wrap_price,
                     i.gift_wrap_tax, i.promotion_discount, i.ship_promotion_discount,
                     i.price_designation)
             for i in e.items])
        self.dirty.add(e.order_id)

    def _hold_expired(self, pos: int, e: ev.HoldExpired) -> None:
        d = self._get(e)
        if d is None:
            return
        self._cancel_qty(d, e.canceled)
        if e.status == CANCELED:
            d.cancel_reason = e.applied_outcome
            d.canceled_by = "payments"
        self._status(d, e)

    def _verified(self, pos: int, e: ev.PaymentVerified) -> None:
        d = self._get(e)
        if d is None:
            return
        d.payment = "verified"
        if e.effective:
            d.latest_ship_date = iso(e.latest_ship_date)
            d.latest_delivery_date = iso(e.latest_delivery_date)
        self._status(d, e)

    def _extended(self, pos: int, e: ev.PaymentExtended) -> None:
        d = self._get(e)
        if d is not None:
            d.payment = "extended"

    def _declined(self, pos: int, e: ev.PaymentDeclined) -> None:
        d = self._get(e)
        if d is None:
            return
        d.payment = e.outcome
        if e.effective:
            d.cancel_reason = e.outcome
            d.canceled_by = "payments"
            self._cancel_qty(d, e.canceled)
        self._status(d, e)

    def _canceled(self, pos: int, e: Any) -> None:
        d = self._get(e)
        if d is None:
            return
        self._cancel_qty(d, e.canceled)
        d.cancel_reason = e.reason
        d.canceled_by = e.actor
        self._status(d, e)

    def _requested(self, pos: int, e: ev.CancellationRequested) -> None:
        d = self._get(e)
        if d is not None:
            d.buyer_requested_cancel = True
            if e.reason:
                market = market_of(d)
                market["buyer_cancel_reason"] = e.reason
                d.market = _json(market)

    def _warned(self, pos: int, e: ev.ShipByWarningIssued) -> None:
        d = self._get(e)
        if d is not None and d.status in OPEN:
            d.warning = e.text

    def _shipped(self, pos: int, e: ev.ShipmentConfirmed) -> None:
        d = self._get(e)
        if d is None:
            return
        by_id = {i.order_item_id: i for i in d.items}
        for q in e.items:
            it = by_id.get(q.order_item_id)
            if it is not None:
                it.shipped += q.quantity
        self._status(d, e)

    def _adjusted(self, pos: int, e: ev.OrderAdjusted) -> None:
        d = self._get(e)
        if d is None:
            return
        by_id = {i.order_item_id: i for i in d.items}
        for a in e.items:
            it = by_id.get(a.order_item_id)
            if it is not None:
                it.canceled += a.quantity_cancelled
        if e.status != d.status and e.status == CANCELED:
            d.cancel_reason = e.items[0].reason if e.items else None
            d.canceled_by = e.actor
        self._status(d, e)

    def _address(self, pos: int, e: ev.ShippingAddressChanged) -> None:
        d = self._get(e)
        if d is not None:
            d.ship_to = _json(e.ship_to)

    def _released_data(self, pos: int, e: ev.RestrictedDataReleased) -> None:
        d = self._get(e)
        if d is None:
            return
        if e.ship_to is not None:
            d.ship_to = _json(e.ship_to)
        if e.buyer is not None:
            d.buyer_name, d.buyer_email = e.buyer.name, e.buyer.email
            if e.buyer.phone:
                d.buyer_phone = e.buyer.phone
        market = market_of(d)
        market.pop("restricted", None)
        if e.restricted:
            market["restricted"] = list(e.restricted)
        d.market = _json(market)

    def _acknowledged(self, pos: int, e: ev.OrderAcknowledged) -> None:
        d = self._get(e)
        if d is not None and e.merchant_order_id:
            market = market_of(d)
            market["merchant_order_id"] = e.merchant_order_id
            d.market = _json(market)

    def _touched(self, pos: int, e: Any) -> None:
        self._get(e)  # only the last-updated time changes


# --- Manage Inventory ---------------------------------------------------------------


class InventoryProjection(Projection):
    """Per tracked SKU: available quantity, active, reserved by Pending orders."""

    name = "inventory"
    version = 1
    keyed = False
    description = "Manage Inventory: available, active and reserved-by-pending per tracked SKU"
    tables = (
        Table("inventory",
              "CREATE TABLE {t} (sku TEXT PRIMARY KEY, available INTEGER NOT NULL,"
              " active INTEGER GENERATED ALWAYS AS (available > 0) VIRTUAL) WITHOUT ROWID"),
        Table("inventory_pending",
              "CREATE TABLE {t} (order_id TEXT NOT NULL, sku TEXT NOT NULL,"
              " quantity INTEGER NOT NULL, PRIMARY KEY (order_id, sku)) WITHOUT ROWID",
              (("inventory_pending_by_sku", "sku"),)),
    )

    #: events that can take an order out of Pending
    _LEAVE = (ev.HoldExpired, ev.PaymentVerified, ev.PaymentDeclined, ev.BuyerCanceled,
              ev.LedgerCanceled)

    def __init__(self, complete: bool = True) -> None:
        super().__init__(complete)
        self.available: dict[str, int] = {}
        self.dirty: set[str] = set()
        self.pending: dict[str, dict[str, int]] = {}
        self.new_pending: set[str] = set()
        self.gone: set[str] = set()

    def handlers(self) -> dict[type, Handler]:
        h: dict[type, Handler] = {
            ev.InventorySet: self._set,
            ev.InventoryAllocated: self._moved,
            ev.InventoryReturned: self._moved,
            ev.OrderPlaced: self._placed,
        }
        for cls in self._LEAVE:
            h[cls] = self._maybe_left
        return h

    def _set(self, pos: int, e: ev.InventorySet) -> None:
        self.available[e.sku] = e.quantity
        self.dirty.add(e.sku)

    def _moved(self, pos: int, e: Any) -> None:
        self.available[e.sku] = e.available
        self.dirty.add(e.sku)

    def _placed(self, pos: int, e: ev.OrderPlaced) -> None:
        if e.status != PENDING:  # pragma: no cover - orders start Pending
            return
        skus: dict[str, int] = {}
        for i in e.items:
            skus[i.sku] = skus.get(i.sku, 0) + i.quantity
        self.pending[e.order_id] = skus
        self.new_pending.add(e.order_id)

    def _maybe_left(self, pos: int, e: Any) -> None:
        if e.status == PENDING:
            return
        oid = e.order_id
        had = self.pending.pop(oid, None)
        if oid in self.new_pending:
            self.new_pending.discard(oid)  # never written: nothing to delete
        elif had is not None or not self.complete:
            self.gone.add(oid)

    def flush_ops(self, t: dict[str, str], defer: int = 0) -> list[tuple[str, list[tuple[Any, ...]]]]:
        ops: list[tuple[str, list[tuple[Any, ...]]]] = []
        if self.gone:
            ops.append((f"DELETE FROM {t['inventory_pending']} WHERE order_id = ?",
                        [(o,) for o in self.gone]))
            self.gone.clear()
        if self.new_pending:
            rows = [(o, sku, q) for o in self.new_pending for sku, q in self.pending[o].items()]
            ops.append((f"INSERT OR REPLACE INTO {t['inventory_pending']} (order_id, sku, quantity)"
                        " VALUES (?, ?, ?)", rows))
            self.new_pending.clear()
        if self.dirty:
            ops.append((f"INSERT OR REPLACE INTO {t['inventory']} (sku, available) VALUES (?, ?)",
                        [(s, self.available[s]) for s in self.dirty]))
            self.dirty.clear()
        return ops

    def trim(self, limit: int) -> None:
        if len(self.pending) > limit:
            self.pending.clear()
            self.complete = False


# --- seller metrics -------------------------------------------------------------------


class MetricsProjection(KeyedProjection):
    """Per-order facts for the seller metrics, and one row per ship confirmation."""

    name = "metrics"
    version = 2
    description = "Seller metrics: cancellation, late shipment and valid tracking rates"
    tables = (
        Table("metric_orders",
              "CREATE TABLE {t} (order_id TEXT PRIMARY KEY, purchase_us INTEGER NOT NULL,"
              " released INTEGER NOT NULL, latest_ship_us INTEGER NOT NULL,"
              " last_confirmation_us INTEGER, status TEXT NOT NULL, counted_reason TEXT,"
              " counted_us INTEGER) WITHOUT ROWID",
              (("metric_orders_by_purchase", "purchase_us"),
               ("metric_orders_by_ship", "latest_ship_us"))),
        Table("metric_shipments",
              "CREATE TABLE {t} (position INTEGER PRIMARY KEY, order_id TEXT NOT NULL,"
              " at_us INTEGER NOT NULL, tracked INTEGER NOT NULL)",
              (("metric_shipments_by_time", "at_us"),
               ("metric_shipments_by_order", "order_id, position"))),
    )

    def __init__(self, complete: bool = True) -> None:
        super().__init__(complete)
        #: (position, order_id, at_us, tracked) not yet flushed (all of them in memory)
        self.shipments: list[tuple[int, str, int, bool]] = []
        #: (tracked, order_id): a tracking correction of the order's latest shipment,
        #: to write to the stored table
        self.retracked: list[tuple[bool, str]] = []

    def handlers(self) -> dict[type, Handler]:
        return {
            ev.OrderPlaced: self._placed,
            ev.HoldExpired: self._status_only,
            ev.PaymentVerified: self._verified,
            ev.PaymentDeclined: self._status_only,
            ev.BuyerCanceled: self._status_only,
            ev.SellerCanceled: self._seller_canceled,
            ev.LedgerCanceled: self._ledger_canceled,
            ev.ShipmentConfirmed: self._shipped,
            ev.OrderAdjusted: self._adjusted,
            ev.TrackingCorrected: self._retracked,
        }

    def load_sql(self, t: dict[str, str]) -> str:
        return (f"SELECT {', '.join(METRIC_COLUMNS)} FROM {t['metric_orders']} "
                "WHERE order_id IN ({marks})")

    def loaded(self, rows: list[tuple[Any, ...]]) -> None:
        for row in rows:
            self.recs[row[0]] = row_to_metric(row)

    def flush_ops(self, t: dict[str, str], defer: int = 0) -> list[tuple[str, list[tuple[Any, ...]]]]:
        ops: list[tuple[str, list[tuple[Any, ...]]]] = []
        keys = self.take_dirty(defer)
        if keys:
            recs = self.recs
            astuple = msgspec.structs.astuple
            ops.append((f"INSERT OR REPLACE INTO {t['metric_orders']} ({', '.join(METRIC_COLUMNS)})"
                        f" VALUES ({', '.join('?' * len(METRIC_COLUMNS))})",
                        [astuple(recs[k]) for k in keys]))
        if self.shipments:
            ops.append((f"INSERT INTO {t['metric_shipments']} (position, order_id, at_us, tracked)"
                        " VALUES (?, ?, ?, ?)", self.shipments))
            self.shipments = []
        if self.retracked:
            table = t["metric_shipments"]
            ops.append((f"UPDATE {table} SET tracked = ? WHERE position = "
                        f"(SELECT MAX(position) FROM {table} WHERE order_id = ?)", self.retracked))
            self.retracked = []
        return ops

    def _status(self, m: MetricOrder, e: Any) -> None:
        new = e.status
        if m.status == PENDING and new == UNSHIPPED:
            m.released = True
        if new == SHIPPED or new == CANCELED:
            self.ended.add(m.order_id)
        m.status = new

    @staticmethod
    def _count(m: MetricOrder, reason: str, e: Any) -> None:
        if m.counted_reason is None:
            m.counted_reason = reason
            m.counted_us = to_us(e.at)

    def _placed(self, pos: int, e: ev.OrderPlaced) -> None:
        self.recs[e.order_id] = MetricOrder(
            e.order_id, to_us(e.at), False, to_us(e.latest_ship_date), None, e.status, None, None)
        self.dirty.add(e.order_id)

    def _status_only(self, pos: int, e: Any) -> None:
        m = self._get(e)
        if m is not None:
            self._status(m, e)

    def _verified(self, pos: int, e: ev.PaymentVerified) -> None:
        m = self._get(e)
        if m is None:
            return
        if e.effective:
            m.latest_ship_us = to_us(e.latest_ship_date)
        self._status(m, e)

    def _seller_canceled(self, pos: int, e: ev.SellerCanceled) -> None:
        m = self._get(e)
        if m is None:
            return
        if e.canceled and not (e.buyer_requested and e.reason in BUYER_WISH_REASONS):
            self._count(m, e.reason, e)
        self._status(m, e)

    def _ledger_canceled(self, pos: int, e: ev.LedgerCanceled) -> None:
        m = self._get(e)
        if m is None:
            return
        if e.reason == "ShipmentNotConfirmed" and e.canceled:
            self._count(m, e.reason, e)
        self._status(m, e)

    def _adjusted(self, pos: int, e: ev.OrderAdjusted) -> None:
        m = self._get(e)
        if m is None:
            return
        for a in e.items:
            if a.quantity_cancelled > 0 and not (
                    e.buyer_requested and a.reason in BUYER_WISH_REASONS):
                self._count(m, a.reason, e)
                break
        self._status(m, e)

    def _shipped(self, pos: int, e: ev.ShipmentConfirmed) -> None:
        m = self._get(e)
        if m is None:
            return
        at = to_us(e.at)
        m.last_confirmation_us = at
        tn = e.tracking_number
        self.shipments.append((pos, e.order_id, at, bool(tn and tn.strip())))
        self._status(m, e)

    def _retracked(self, pos: int, e: ev.TrackingCorrected) -> None:
        """The order's latest shipment now has the corrected tracking number (or none)."""
        tn = e.tracking_number
        tracked = bool(tn and tn.strip())
        ships = self.shipments
        for i in range(len(ships) - 1, -1, -1):
            if ships[i][1] == e.order_id:
                ships[i] = (*ships[i][:3], tracked)
                return
        self.retracked.append((tracked, e.order_id))


# --- notifications ---------------------------------------------------------------------


def reason_text(reason: str) -> str:
    return SELLER_CANCEL_REASONS.get(reason, reason)


class NotificationsProjection(KeyedProjection):
    """The outbox of docs/rules.md §5: what the ledger tells buyer and seller."""

    name = "notifications"
    version = 1
    description = "Notifications to buyers and sellers (the outbox of docs/rules.md §5)"
    tables = (
        Table("notifications",
              "CREATE TABLE {t} (position INTEGER NOT NULL, seq INTEGER NOT NULL,"
              " at TEXT NOT NULL, recipient TEXT NOT NULL, kind TEXT NOT NULL,"
              " order_id TEXT NOT NULL, content TEXT NOT NULL)",
              (("UNIQUE notifications_position", "position, seq"),
               ("notifications_by_order", "order_id, position, seq"))),
        Table("notify_orders",
              "CREATE TABLE {t} (order_id TEXT PRIMARY KEY, state TEXT NOT NULL)"),
    )

    def __init__(self, complete: bool = True) -> None:
        super().__init__(complete)
        #: (position, seq, at, to, kind, order_id, content JSON) not yet flushed
        self.rows: list[tuple[int, int, str, str, str, str, str]] = []

    no_load = frozenset((ev.ShipByWarningIssued, ev.ShipmentConfirmed, ev.BuyerCanceled,
                         ev.LedgerCanceled, ev.PaymentDeclined))

    def handlers(self) -> dict[type, Handler]:
        return {
            ev.OrderPlaced: self._placed,
            ev.PaymentVerified: self._verified,
            ev.HoldExpired: self._hold_expired,
            ev.SellerCanceled: self._seller_canceled,
            ev.OrderAdjusted: self._adjusted,
            ev.ShipByWarningIssued: self._warned,
            # only to know when an order is settled (its record may then be evicted)
            ev.ShipmentConfirmed: self._settles,
            ev.BuyerCanceled: self._settles,
            ev.LedgerCanceled: self._settles,
            ev.PaymentDeclined: self._settles,
        }

    def _settles(self, pos: int, e: Any) -> None:
        if e.status == SHIPPED or e.status == CANCELED:
            self.ended.add(e.order_id)

    def load_sql(self, t: dict[str, str]) -> str:
        return f"SELECT order_id, state FROM {t['notify_orders']} WHERE order_id IN ({{marks}})"

    def loaded(self, rows: list[tuple[Any, ...]]) -> None:
        for oid, state in rows:
            self.recs[oid] = _notify_decoder.decode(state)

    def flush_ops(self, t: dict[str, str], defer: int = 0) -> list[tuple[str, list[tuple[Any, ...]]]]:
        ops: list[tuple[str, list[tuple[Any, ...]]]] = []
        keys = self.take_dirty(defer)
        if keys:
            recs = self.recs
            ops.append((f"INSERT OR REPLACE INTO {t['notify_orders']} (order_id, state) VALUES (?, ?)",
                        [(k, _enc.encode(recs[k]).decode()) for k in keys]))
        if self.rows:
            ops.append((f"INSERT INTO {t['notifications']} "
                        "(position, seq, at, recipient, kind, order_id, content) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)", self.rows))
            self.rows = []
        return ops

    def _emit(self, pos: int, seq: int, at: str, to: str, kind: str, order_id: str,
              content: msgspec.Struct) -> None:
        self.rows.append((pos, seq, at, to, kind, order_id, _enc.encode(content).decode()))

    def _placed(self, pos: int, e: ev.OrderPlaced) -> None:
        b = e.buyer
        self.recs[e.order_id] = NotifyOrder(
            e.order_id, b.name, b.email, b.language, e.ship_service_level,
            iso(e.latest_ship_date), iso(e.latest_delivery_date),
            [NItem(i.order_item_id, i.sku, i.title, i.quantity) for i in e.items])
        self.dirty.add(e.order_id)

    def _released(self, pos: int, e: Any, n: NotifyOrder) -> None:
        at = iso(e.at)
        self._emit(pos, 0, at, "buyer", "order-confirmation", n.order_id, OrderConfirmation(
            n.order_id, n.buyer_name, n.buyer_email, n.language, n.latest_delivery_date,
            n.items))
        self._emit(pos, 1, at, "seller", "sold-ship-now", n.order_id, SoldShipNow(
            n.order_id, n.latest_ship_date, n.ship_service_level, n.items))

    def _verified(self, pos: int, e: ev.PaymentVerified) -> None:
        if not e.effective:
            return
        n = self.recs.get(e.order_id)
        if n is None:
            return
        ship, deliver = iso(e.latest_ship_date), iso(e.latest_delivery_date)
        if ship != n.latest_ship_date or deliver != n.latest_delivery_date:
            n.latest_ship_date, n.latest_delivery_date = ship, deliver
            self.dirty.add(e.order_id)
        if e.status == UNSHIPPED:
            self._released(pos, e, n)

    def _hold_expired(self, pos: int, e: ev.HoldExpired) -> None:
        if e.status != UNSHIPPED:
            self._settles(pos, e)
            return
        n = self.recs.get(e.order_id)
        if n is not None:
            self._released(pos, e, n)

    def _cancellation(self, pos: int, e: Any, reasons: list[str],
                      lines: Sequence[tuple[str, int, str | None]]) -> None:
        n: NotifyOrder | None = self.recs.get(e.order_id)
        titles = {i.order_item_id: i.title for i in n.items} if n is not None else {}
        self._emit(pos, 0, iso(e.at), "buyer", "cancellation", e.order_id, Cancellation(
            e.order_id, n.buyer_email if n else None, n.language if n else None,
            ", ".join(reasons), "; ".join(reason_text(r) for r in reasons),
            e.status == CANCELED,
            [CanceledItem(k, titles.get(k, ""), q, r) for k, q, r in lines]))

    def _seller_canceled(self, pos: int, e: ev.SellerCanceled) -> None:
        self._settles(pos, e)
        self._cancellation(pos, e, [e.reason],
                           [(q.order_item_id, q.quantity, None) for q in e.canceled])

    def _adjusted(self, pos: int, e: ev.OrderAdjusted) -> None:
        self._settles(pos, e)
        lines = [(a.order_item_id, a.quantity_cancelled, a.reason)
                 for a in e.items if a.quantity_cancelled > 0]
        if lines:  # a refund only is not a cancellation
            self._cancellation(pos, e, sorted({r for _, _, r in lines}), lines)

    def _warned(self, pos: int, e: ev.ShipByWarningIssued) -> None:
        self._emit(pos, 0, iso(e.at), "seller", "ship-by-warning", e.order_id,
                   ShipByWarning(e.order_id, iso(e.ship_by), e.text))


# --- audit index -----------------------------------------------------------------------

#: the columns of the ``audit`` table, in order
AUDIT_COLUMNS: tuple[str, ...] = (
    "position", "at_us", "at", "type", "actor", "command_id", "order_id", "sku", "reason")


def _audit_reason(e: Any) -> str | None:
    """The reason an event carries, if any: cancel reason codes, adjustment reasons,
    a payment outcome that canceled.

    An adjustment with several distinct reasons stores them sorted and wrapped in
    commas (``,CustomerReturn,NoInventory,``): such rows then form one range of the
    reason index (``',' <= reason < '-'``), so "this reason, alone or among
    others" is two index lookups instead of a scan.
    """
    t = type(e)
    if t is ev.OrderAdjusted:
        reasons = sorted({a.reason for a in e.items})
        if len(reasons) > 1:
            return "," + ",".join(reasons) + ","
        return reasons[0] if reasons else None
    reason: str | None
    if t is ev.PaymentDeclined:
        reason = e.outcome
    elif t is ev.HoldExpired:
        reason = e.applied_outcome if e.status == CANCELED else None
    else:
        reason = e.reason  # BuyerCanceled, CancellationRequested, SellerCanceled, LedgerCanceled
    return reason


_REASONED = (ev.BuyerCanceled, ev.CancellationRequested, ev.SellerCanceled, ev.LedgerCanceled,
             ev.OrderAdjusted, ev.PaymentDeclined, ev.HoldExpired)


class AuditProjection(Projection):
    """The audit index: one row per event, every event type, append-only.

    Rows are keyed by the event's global position, so (like notifications)
    every row depends on one event only: catch-up, rebuild and the parallel
    rebuild's partitions need nothing else. The event's own fields are not
    copied; ``replay.audit`` decodes them from the ledger by position.
    """

    name = "audit"
    version = 1
    keyed = False
    description = "Audit index: one row per event (time, type, actor, command, order, SKU, reason)"
    tables = (
        Table("audit",
              "CREATE TABLE {t} (position INTEGER PRIMARY KEY, at_us INTEGER NOT NULL,"
              " at TEXT NOT NULL, type TEXT NOT NULL, actor TEXT NOT NULL,"
              " command_id TEXT NOT NULL, order_id TEXT, sku TEXT, reason TEXT)",
              (("audit_by_order", "order_id, position"),
               ("audit_by_type", "type, position"),
               ("audit_by_actor", "actor, position"),
               ("audit_by_time", "at_us"),
               ("audit_by_reason", "reason, position"))),
    )

    def __init__(self, complete: bool = True) -> None:
        super().__init__(complete)
        #: rows not yet flushed (in memory: all of them), in position order
        self.rows: list[tuple[Any, ...]] = []

    def handlers(self) -> dict[type, Handler]:
        return {cls: self._handler(cls) for cls in ev.ALL_EVENTS}

    def _handler(self, cls: type[ev.Event]) -> Handler:
        name = cls.__name__
        has_order = "order_id" in cls.__struct_fields__
        has_sku = "sku" in cls.__struct_fields__
        reasoned = cls in _REASONED

        def row(pos: int, e: Any) -> None:
            self.rows.append((
                pos, to_us(e.at), iso(e.at), name, e.actor, e.command_id,
                e.order_id if has_order else None, e.sku if has_sku else None,
                _audit_reason(e) if reasoned else None))
        return row

    def flush_ops(self, t: dict[str, str], defer: int = 0) -> list[tuple[str, list[tuple[Any, ...]]]]:
        if not self.rows:
            return []
        rows, self.rows = self.rows, []
        return [(f"INSERT INTO {t['audit']} ({', '.join(AUDIT_COLUMNS)}) "
                 f"VALUES ({', '.join('?' * len(AUDIT_COLUMNS))})", rows)]


PROJECTIONS: dict[str, type[Projection]] = {
    cls.name: cls for cls in (
        OrdersProjection, InventoryProjection, MetricsProjection, NotificationsProjection,
        AuditProjection)
}
NAMES: tuple[str, ...] = tuple(PROJECTIONS)


def dispatch_table(projs: Iterable[Projection]) -> dict[type, tuple[Handler, ...]]:
    """Event type -> the handlers of every projection interested in it."""
    table: dict[type, list[Handler]] = {}
    for p in projs:
        for cls, h in p.handlers().items():
            table.setdefault(cls, []).append(h)
    return {k: tuple(v) for k, v in table.items()}
