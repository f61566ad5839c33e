"""The projections: their tables, records, loading and flushing.

Each projection is a class whose ``handlers()`` map event types to functions
``(position, event) -> None`` that evolve in-memory state; the handlers of all
of them live in :mod:`projections.fused`, one function per event type for any
set of projections (:func:`dispatch_table`). The very same code runs in two
places:

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

import sqlite3
from decimal import Decimal
from typing import Any, Callable, ClassVar, Iterable, get_args

import msgspec

from ledger import events as ev
from ledger.rules import SELLER_CANCEL_REASONS

PENDING, UNSHIPPED, PARTIALLY_SHIPPED, SHIPPED, CANCELED = (
    ev.PENDING, ev.UNSHIPPED, ev.PARTIALLY_SHIPPED, ev.SHIPPED, ev.CANCELED)
OPEN = (UNSHIPPED, PARTIALLY_SHIPPED)
STATUSES: tuple[str, ...] = get_args(ev.Status)

Handler = Callable[[int, Any], None]

_enc = msgspec.json.Encoder()

# The sqlite3 module binds a None only after failing to find an adapter for it (an
# AttributeError raised and cleared per value: ~5 % of a rebuild, whose rows have
# many NULL columns). An adapter that returns None (an empty dict's ``get``: a
# call into C, no Python frame) is found at once; the value bound is the same NULL.
_no_keys: dict[None, None] = {}
sqlite3.register_adapter(type(None), _no_keys.get)


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
    """The ``orders`` row of an :class:`OrderDoc` (``items`` as JSON). Booleans are
    bound as the integers SQLite stores for them anyway: the sqlite3 module binds a
    ``bool`` only after failing to find an adapter for it (an exception raised and
    cleared per value)."""
    t = list(msgspec.structs.astuple(d))
    t[_DOC_ITEMS] = _enc.encode(d.items).decode()
    for i in _DOC_BOOLS:
        t[i] = int(t[i])
    return tuple(t)


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
    if e.market is None and not e.restricted:
        return "{}"
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


assert METRIC_COLUMNS[2] == "released"


def _metric_row(t: tuple[Any, ...]) -> tuple[Any, ...]:
    """A ``metric_orders`` row: ``released`` as an integer (see :func:`doc_to_row`)."""
    return t[:2] + (int(t[2]),) + t[3:]


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
    #: whether a rebuild of all views rebuilds this one even when it is built at its
    #: current version (False: rebuilt only when its version changes or when named)
    rebuilt_by_default: ClassVar[bool] = True

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
        from .fused import handlers_for

        return handlers_for([self])

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

    def __init__(self, complete: bool = True) -> None:
        super().__init__(complete)
        self.available: dict[str, int] = {}
        self.dirty: set[str] = set()
        self.pending: dict[str, dict[str, int]] = {}
        self.new_pending: set[str] = set()
        self.gone: set[str] = set()

    def handlers(self) -> dict[type, Handler]:
        from .fused import handlers_for

        return handlers_for([self])

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
        from .fused import handlers_for

        return handlers_for([self])

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
                        [_metric_row(astuple(recs[k])) for k in keys]))
        if self.shipments:
            ops.append((f"INSERT INTO {t['metric_shipments']} (position, order_id, at_us, tracked)"
                        " VALUES (?, ?, ?, ?)",
                        [(p, o, at, int(tracked)) for p, o, at, tracked in self.shipments]))
            self.shipments = []
        if self.retracked:
            table = t["metric_shipments"]
            ops.append((f"UPDATE {table} SET tracked = ? WHERE position = "
                        f"(SELECT MAX(position) FROM {table} WHERE order_id = ?)",
                        [(int(tracked), o) for tracked, o in self.retracked]))
            self.retracked = []
        return ops

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
        from .fused import handlers_for

        return handlers_for([self])

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
    # its rows copy fields of one event each (time, type, actor, ids, reason): no
    # change to the views' code changes them, so `rebuild` keeps it when current
    rebuilt_by_default = False
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
        from .fused import handlers_for

        return handlers_for([self])

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
    """Event type -> the handlers to call for it: one fused handler per type applying
    the event to every projection in ``projs`` (see :mod:`projections.fused`)."""
    from .fused import handlers_for

    return {k: (h,) for k, h in handlers_for(projs).items()}
