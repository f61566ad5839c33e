"""The projections: their tables, records, handlers, loading and flushing.

Each projection is a class whose ``handlers()`` map event types to functions
``(position, event) -> None`` that evolve in-memory state; the handlers of all
of them are written once, fused: one function per event type for any set of
projections (:func:`handlers_for`, :func:`dispatch_table`). The very same code
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

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Callable, ClassVar, Iterable, Sequence, get_args

import msgspec

from ledger import events as ev
from ledger.rules import BUYER_WISH_REASONS, SELLER_CANCEL_REASONS
from ledger.store import EPOCH
from ledger.store import to_us as _to_us_any

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

    def trim(self, limit: int, late: bool = False) -> None:
        """After a flush: forget cached records if there are too many (``late``: see
        :meth:`evict_settled`)."""

    def evict_settled(self, late: bool = False) -> int:
        """After a flush: forget records of settled orders (shipped or canceled) that
        are written; returns how many. A later event of such an order loads its
        record again, so memory follows the open orders, not all orders.

        Called only when every row built so far is committed. ``late``: the rows of
        an earlier batch's flush were committed only now (a parallel rebuild's
        worker that skipped its turns), so records changed since then are dirty
        again: those stay, the others may go."""
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

    def trim(self, limit: int, late: bool = False) -> None:
        if len(self.recs) <= limit:
            return
        if not self.dirty:
            self.recs.clear()
            self.ended.clear()
            self.complete = False
        elif late:  # every record not dirty is written: keep the dirty ones only
            recs = self.recs
            self.recs = {k: recs[k] for k in self.dirty if k in recs}
            self.ended &= self.dirty
            self.complete = False

    def evict_settled(self, late: bool = False) -> int:
        # only once everything is written (a rebuild holds records back until
        # DEFER_LIMIT changed): then every ended record is in the table
        ended = self.ended
        if not ended:
            return 0
        if not self.dirty:
            gone, self.ended = ended, set()
        elif late:  # written by a late turn, and not changed since
            gone = ended - self.dirty
            if not gone:
                return 0
            self.ended = ended & self.dirty
        else:
            return 0
        pop = self.recs.pop
        for k in gone:
            pop(k, None)
        self.complete = False  # from now on a missing record may be stored
        return len(gone)


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

    def trim(self, limit: int, late: bool = False) -> None:
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


# --- the handlers: one per event type, for any set of the projections above ----------
#
# For a set of projection objects, handlers_for() returns one handler per event
# type that updates all of them: the event's order id, its time as ISO-8601 text
# (iso) and as microseconds (to_us) are computed once per event and shared by
# the views and the audit row, and no per-view dispatch, method lookup or
# repeated record lookup is paid. The same handlers serve every caller -- a
# rebuild, catch-up (checkpoints equal or not: a view alone is the same function
# with the others absent), the parallel rebuild's workers and project() -- so
# there is one apply path. ``Projection.handlers()`` of one view is
# ``handlers_for([view])``.

#: the event types each projection handles (the audit: every type)
INTERESTS: dict[str, frozenset[type]] = {
    "orders": frozenset((
        ev.OrderPlaced, ev.HoldExpired, ev.PaymentVerified, ev.PaymentExtended,
        ev.PaymentDeclined, ev.BuyerCanceled, ev.SellerCanceled, ev.LedgerCanceled,
        ev.CancellationRequested, ev.ShipByWarningIssued, ev.ShipmentConfirmed,
        ev.OrderAdjusted, ev.ShippingAddressChanged, ev.RestrictedDataReleased,
        ev.OrderAcknowledged, ev.TrackingCorrected)),
    "inventory": frozenset((
        ev.InventorySet, ev.InventoryAllocated, ev.InventoryReturned, ev.OrderPlaced,
        ev.HoldExpired, ev.PaymentVerified, ev.PaymentDeclined, ev.BuyerCanceled,
        ev.LedgerCanceled)),
    "metrics": frozenset((
        ev.OrderPlaced, ev.HoldExpired, ev.PaymentVerified, ev.PaymentDeclined,
        ev.BuyerCanceled, ev.SellerCanceled, ev.LedgerCanceled, ev.ShipmentConfirmed,
        ev.OrderAdjusted, ev.TrackingCorrected)),
    # ShipmentConfirmed, BuyerCanceled, LedgerCanceled, PaymentDeclined: only to know
    # when an order is settled (its record may then be evicted)
    "notifications": frozenset((
        ev.OrderPlaced, ev.PaymentVerified, ev.HoldExpired, ev.SellerCanceled,
        ev.OrderAdjusted, ev.ShipByWarningIssued, ev.ShipmentConfirmed, ev.BuyerCanceled,
        ev.LedgerCanceled, ev.PaymentDeclined)),
    "audit": frozenset(ev.ALL_EVENTS),
}

_KINDS: dict[str, type] = {
    "orders": OrdersProjection, "inventory": InventoryProjection,
    "metrics": MetricsProjection, "notifications": NotificationsProjection,
    "audit": AuditProjection,
}


def handlers_for(projs: Iterable[Projection]) -> dict[type, Handler]:
    """One handler per event type applying the event to every projection in ``projs``.

    Each of the five projections may be present at most once (any subset);
    ``Projection`` subclasses of other kinds keep their own ``handlers()``, called
    after the fused handler of the same event type.
    """
    known: dict[str, Any] = {}
    others: list[Projection] = []
    for p in projs:
        kind = _KINDS.get(getattr(p, "name", ""))
        if kind is not None and type(p) is kind and p.name not in known:
            known[p.name] = p
        else:
            others.append(p)
    table = _Fused(known).table()
    if others:
        extra: dict[type, list[Handler]] = {}
        for p in others:
            for cls, h in p.handlers().items():
                extra.setdefault(cls, []).append(h)
        for cls, hs in extra.items():
            table[cls] = _chain(table.get(cls), hs)
    return table


def _chain(first: Handler | None, rest: Sequence[Handler]) -> Handler:
    calls = ([first] if first is not None else []) + list(rest)

    def run(pos: int, e: Any) -> None:
        for h in calls:
            h(pos, e)
    return run


_EPOCHS: dict[Any, Any] = {}


def to_us(t: datetime) -> int:
    """:func:`ledger.store.to_us`, about twice as fast for the fixed-offset times events
    carry: the epoch expressed in the time's own zone is subtracted (same ``tzinfo``:
    no offset is computed on either side). msgspec decodes an offset to one shared
    ``timezone`` object, so the cache holds a handful of entries."""
    tz = t.tzinfo
    if type(tz) is not timezone:
        return _to_us_any(t)
    e = _EPOCHS.get(tz)
    if e is None:
        e = _EPOCHS[tz] = EPOCH.astimezone(tz)
    d: timedelta = t - e
    return (d.days * 86_400 + d.seconds) * 1_000_000 + d.microseconds


def _cancel_qty(d: OrderDoc, lines: list[ev.ItemQuantity]) -> None:
    if lines:
        by_id = {i.order_item_id: i for i in d.items}
        for q in lines:
            it = by_id.get(q.order_item_id)
            if it is not None:
                it.canceled += q.quantity


class _Fused:
    """The handlers over the present projections (``None`` for an absent one)."""

    def __init__(self, known: dict[str, Any]) -> None:
        self.O: OrdersProjection | None = known.get("orders")
        self.I: InventoryProjection | None = known.get("inventory")
        self.M: MetricsProjection | None = known.get("metrics")
        self.N: NotificationsProjection | None = known.get("notifications")
        self.A: AuditProjection | None = known.get("audit")
        self.wanted: set[type] = set()
        for name in known:
            self.wanted |= INTERESTS[name]

    # --- shared steps --------------------------------------------------------------

    def _o_get(self, oid: str, at_iso: str) -> OrderDoc | None:
        O = self.O
        if O is None:
            return None
        d: OrderDoc | None = O.recs.get(oid)
        if d is not None:  # an order's events come in its time order
            O.dirty.add(oid)
            d.last_updated = at_iso
        return d

    def _o_status(self, d: OrderDoc, new: str, at_iso: str) -> None:
        if d.status == PENDING and new == UNSHIPPED:
            d.payments_date = at_iso
            d.ever_released = True
        if new == SHIPPED or new == CANCELED:
            d.warning = None
            d.buyer_requested_cancel = False
            self.O.ended.add(d.order_id)  # type: ignore[union-attr]
        d.status = new

    def _m_get(self, oid: str) -> MetricOrder | None:
        M = self.M
        if M is None:
            return None
        r: MetricOrder | None = M.recs.get(oid)
        if r is not None:
            M.dirty.add(oid)
        return r

    def _m_status(self, r: MetricOrder, new: str) -> None:
        if r.status == PENDING and new == UNSHIPPED:
            r.released = True
        if new == SHIPPED or new == CANCELED:
            self.M.ended.add(r.order_id)  # type: ignore[union-attr]
        r.status = new

    @staticmethod
    def _m_count(r: MetricOrder, reason: str, at_us: int) -> None:
        if r.counted_reason is None:
            r.counted_reason = reason
            r.counted_us = at_us

    def _i_left(self, e: Any) -> None:
        """Inventory: the order left Pending (its reservation ends)."""
        I = self.I
        if I is None or e.status == PENDING:
            return
        oid = e.order_id
        had = I.pending.pop(oid, None)
        if oid in I.new_pending:
            I.new_pending.discard(oid)  # never written: nothing to delete
        elif had is not None or not I.complete:
            I.gone.add(oid)

    def _n_settles(self, e: Any) -> None:
        N = self.N
        if N is not None and (e.status == SHIPPED or e.status == CANCELED):
            N.ended.add(e.order_id)

    def _n_emit(self, pos: int, seq: int, at: str, to: str, kind: str, order_id: str,
                content: Any) -> None:
        self.N.rows.append(  # type: ignore[union-attr]
            (pos, seq, at, to, kind, order_id, _enc.encode(content).decode()))

    def _n_released(self, pos: int, at_iso: str, n: NotifyOrder) -> None:
        self._n_emit(pos, 0, at_iso, "buyer", "order-confirmation", n.order_id, OrderConfirmation(
            n.order_id, n.buyer_name, n.buyer_email, n.language, n.latest_delivery_date,
            n.items))
        self._n_emit(pos, 1, at_iso, "seller", "sold-ship-now", n.order_id, SoldShipNow(
            n.order_id, n.latest_ship_date, n.ship_service_level, n.items))

    def _n_cancellation(self, pos: int, e: Any, at_iso: str, reasons: list[str],
                        lines: Sequence[tuple[str, int, str | None]]) -> None:
        n: NotifyOrder | None = self.N.recs.get(e.order_id)  # type: ignore[union-attr]
        titles = {i.order_item_id: i.title for i in n.items} if n is not None else {}
        self._n_emit(pos, 0, at_iso, "buyer", "cancellation", e.order_id, Cancellation(
            e.order_id, n.buyer_email if n else None, n.language if n else None,
            ", ".join(reasons), "; ".join(reason_text(r) for r in reasons),
            e.status == CANCELED,
            [CanceledItem(k, titles.get(k, ""), q, r) for k, q, r in lines]))

    # --- the table -----------------------------------------------------------------

    def table(self) -> dict[type, Handler]:
        makers: dict[type, Callable[[type], Handler]] = {
            ev.OrderPlaced: self._placed,
            ev.HoldExpired: self._hold_expired,
            ev.PaymentVerified: self._verified,
            ev.PaymentExtended: self._extended,
            ev.PaymentDeclined: self._declined,
            ev.BuyerCanceled: self._buyer_canceled,
            ev.SellerCanceled: self._seller_canceled,
            ev.LedgerCanceled: self._ledger_canceled,
            ev.CancellationRequested: self._requested,
            ev.ShipByWarningIssued: self._warned,
            ev.ShipmentConfirmed: self._shipped,
            ev.OrderAdjusted: self._adjusted,
            ev.ShippingAddressChanged: self._address,
            ev.RestrictedDataReleased: self._released_data,
            ev.OrderAcknowledged: self._acknowledged,
            ev.TrackingCorrected: self._retracked,
            ev.InventorySet: self._inventory,
            ev.InventoryAllocated: self._inventory,
            ev.InventoryReturned: self._inventory,
        }
        out: dict[type, Handler] = {}
        for cls in ev.ALL_EVENTS:
            if cls in self.wanted:
                out[cls] = makers.get(cls, self._audit_only)(cls)
        return out

    def _audit(self, cls: type) -> Callable[[int, Any, int, str, Any], None] | None:
        """The audit row of an event of type ``cls``: ``(pos, e, at_us, at_iso, order_id)``."""
        A = self.A
        if A is None:
            return None
        name = cls.__name__
        has_sku = "sku" in cls.__struct_fields__  # type: ignore[attr-defined]
        reasoned = cls in _REASONED

        def row(pos: int, e: Any, at_us: int, at_iso: str, oid: Any) -> None:
            A.rows.append((pos, at_us, at_iso, name, e.actor, e.command_id, oid,
                           e.sku if has_sku else None,
                           _audit_reason(e) if reasoned else None))
        return row

    def _audit_only(self, cls: type) -> Handler:
        audit = self._audit(cls)
        assert audit is not None  # only the audit wants the other event types
        has_order = "order_id" in cls.__struct_fields__  # type: ignore[attr-defined]

        def h(pos: int, e: Any) -> None:
            at = e.at
            audit(pos, e, to_us(at), iso(at), e.order_id if has_order else None)
        return h

    def _placed(self, cls: type) -> Handler:
        O, I, M, N, audit = self.O, self.I, self.M, self.N, self._audit(cls)

        def h(pos: int, e: ev.OrderPlaced) -> None:
            at = e.at
            at_iso = iso(at)
            at_us = to_us(at)
            oid = e.order_id
            if O is not None or N is not None:
                ship, deliver = iso(e.latest_ship_date), iso(e.latest_delivery_date)
                b = e.buyer
                if O is not None:
                    # positional: several times faster than keywords for 23 fields
                    # (the order of OrderDoc's fields, which is the table's columns)
                    O.recs[oid] = OrderDoc(
                        oid, e.status, at_iso, at_us, None, ship, deliver, b.name, b.email,
                        b.phone, b.language, e.currency, e.ship_service_level, None, None,
                        None, None, False, False, _json(e.ship_to), _market_json(e), at_iso,
                        [ItemRow(i.order_item_id, i.sku, i.title, i.quantity, 0, 0,
                                 i.item_price, i.item_tax, i.shipping_price, i.shipping_tax,
                                 i.gift_wrap_price, i.gift_wrap_tax, i.promotion_discount,
                                 i.ship_promotion_discount, i.price_designation)
                         for i in e.items])
                    O.dirty.add(oid)
                if N is not None:
                    N.recs[oid] = NotifyOrder(
                        oid, b.name, b.email, b.language, e.ship_service_level, ship, deliver,
                        [NItem(i.order_item_id, i.sku, i.title, i.quantity) for i in e.items])
                    N.dirty.add(oid)
            if I is not None and e.status == PENDING:  # orders start Pending
                skus: dict[str, int] = {}
                for i in e.items:
                    skus[i.sku] = skus.get(i.sku, 0) + i.quantity
                I.pending[oid] = skus
                I.new_pending.add(oid)
            if M is not None:
                M.recs[oid] = MetricOrder(
                    oid, at_us, False, to_us(e.latest_ship_date), None, e.status, None, None)
                M.dirty.add(oid)
            if audit is not None:
                audit(pos, e, at_us, at_iso, oid)
        return h

    def _hold_expired(self, cls: type) -> Handler:
        N, audit = self.N, self._audit(cls)

        def h(pos: int, e: ev.HoldExpired) -> None:
            at = e.at
            at_iso = iso(at)
            oid = e.order_id
            new = e.status
            d = self._o_get(oid, at_iso)
            if d is not None:
                _cancel_qty(d, e.canceled)
                if new == CANCELED:
                    d.cancel_reason = e.applied_outcome
                    d.canceled_by = "payments"
                self._o_status(d, new, at_iso)
            self._i_left(e)
            r = self._m_get(oid)
            if r is not None:
                self._m_status(r, new)
            if N is not None:
                if new != UNSHIPPED:
                    self._n_settles(e)
                else:
                    n = N.recs.get(oid)
                    if n is not None:
                        self._n_released(pos, at_iso, n)
            if audit is not None:
                audit(pos, e, to_us(at), at_iso, oid)
        return h

    def _verified(self, cls: type) -> Handler:
        N, audit = self.N, self._audit(cls)

        def h(pos: int, e: ev.PaymentVerified) -> None:
            at = e.at
            at_iso = iso(at)
            oid = e.order_id
            new = e.status
            effective = e.effective
            if effective:
                ship, deliver = iso(e.latest_ship_date), iso(e.latest_delivery_date)
            d = self._o_get(oid, at_iso)
            if d is not None:
                d.payment = "verified"
                if effective:
                    d.latest_ship_date = ship
                    d.latest_delivery_date = deliver
                self._o_status(d, new, at_iso)
            self._i_left(e)
            r = self._m_get(oid)
            if r is not None:
                if effective:
                    r.latest_ship_us = to_us(e.latest_ship_date)
                self._m_status(r, new)
            if N is not None and effective:
                n = N.recs.get(oid)
                if n is not None:
                    if ship != n.latest_ship_date or deliver != n.latest_delivery_date:
                        n.latest_ship_date, n.latest_delivery_date = ship, deliver
                        N.dirty.add(oid)
                    if new == UNSHIPPED:
                        self._n_released(pos, at_iso, n)
            if audit is not None:
                audit(pos, e, to_us(at), at_iso, oid)
        return h

    def _extended(self, cls: type) -> Handler:
        audit = self._audit(cls)

        def h(pos: int, e: ev.PaymentExtended) -> None:
            at_iso = iso(e.at)
            d = self._o_get(e.order_id, at_iso)
            if d is not None:
                d.payment = "extended"
            if audit is not None:
                audit(pos, e, to_us(e.at), at_iso, e.order_id)
        return h

    def _declined(self, cls: type) -> Handler:
        audit = self._audit(cls)

        def h(pos: int, e: ev.PaymentDeclined) -> None:
            at_iso = iso(e.at)
            oid = e.order_id
            d = self._o_get(oid, at_iso)
            if d is not None:
                d.payment = e.outcome
                if e.effective:
                    d.cancel_reason = e.outcome
                    d.canceled_by = "payments"
                    _cancel_qty(d, e.canceled)
                self._o_status(d, e.status, at_iso)
            self._i_left(e)
            r = self._m_get(oid)
            if r is not None:
                self._m_status(r, e.status)
            self._n_settles(e)
            if audit is not None:
                audit(pos, e, to_us(e.at), at_iso, oid)
        return h

    def _o_canceled(self, e: Any, at_iso: str) -> None:
        d = self._o_get(e.order_id, at_iso)
        if d is not None:
            _cancel_qty(d, e.canceled)
            d.cancel_reason = e.reason
            d.canceled_by = e.actor
            self._o_status(d, e.status, at_iso)

    def _buyer_canceled(self, cls: type) -> Handler:
        audit = self._audit(cls)

        def h(pos: int, e: ev.BuyerCanceled) -> None:
            at_iso = iso(e.at)
            self._o_canceled(e, at_iso)
            self._i_left(e)
            r = self._m_get(e.order_id)
            if r is not None:
                self._m_status(r, e.status)
            self._n_settles(e)
            if audit is not None:
                audit(pos, e, to_us(e.at), at_iso, e.order_id)
        return h

    def _seller_canceled(self, cls: type) -> Handler:
        N, audit = self.N, self._audit(cls)

        def h(pos: int, e: ev.SellerCanceled) -> None:
            at = e.at
            at_iso = iso(at)
            at_us = to_us(at)
            self._o_canceled(e, at_iso)
            r = self._m_get(e.order_id)
            if r is not None:
                if e.canceled and not (e.buyer_requested and e.reason in BUYER_WISH_REASONS):
                    self._m_count(r, e.reason, at_us)
                self._m_status(r, e.status)
            if N is not None:
                self._n_settles(e)
                self._n_cancellation(pos, e, at_iso, [e.reason],
                                     [(q.order_item_id, q.quantity, None) for q in e.canceled])
            if audit is not None:
                audit(pos, e, at_us, at_iso, e.order_id)
        return h

    def _ledger_canceled(self, cls: type) -> Handler:
        audit = self._audit(cls)

        def h(pos: int, e: ev.LedgerCanceled) -> None:
            at = e.at
            at_iso = iso(at)
            at_us = to_us(at)
            self._o_canceled(e, at_iso)
            self._i_left(e)
            r = self._m_get(e.order_id)
            if r is not None:
                if e.reason == "ShipmentNotConfirmed" and e.canceled:
                    self._m_count(r, e.reason, at_us)
                self._m_status(r, e.status)
            self._n_settles(e)
            if audit is not None:
                audit(pos, e, at_us, at_iso, e.order_id)
        return h

    def _requested(self, cls: type) -> Handler:
        audit = self._audit(cls)

        def h(pos: int, e: ev.CancellationRequested) -> None:
            at_iso = iso(e.at)
            d = self._o_get(e.order_id, at_iso)
            if d is not None:
                d.buyer_requested_cancel = True
                if e.reason:
                    market = market_of(d)
                    market["buyer_cancel_reason"] = e.reason
                    d.market = _json(market)
            if audit is not None:
                audit(pos, e, to_us(e.at), at_iso, e.order_id)
        return h

    def _warned(self, cls: type) -> Handler:
        N, audit = self.N, self._audit(cls)

        def h(pos: int, e: ev.ShipByWarningIssued) -> None:
            at_iso = iso(e.at)
            oid = e.order_id
            d = self._o_get(oid, at_iso)
            if d is not None and d.status in OPEN:
                d.warning = e.text
            if N is not None:
                self._n_emit(pos, 0, at_iso, "seller", "ship-by-warning", oid,
                             ShipByWarning(oid, iso(e.ship_by), e.text))
            if audit is not None:
                audit(pos, e, to_us(e.at), at_iso, oid)
        return h

    def _shipped(self, cls: type) -> Handler:
        M, audit = self.M, self._audit(cls)

        def h(pos: int, e: ev.ShipmentConfirmed) -> None:
            at = e.at
            at_iso = iso(at)
            at_us = to_us(at)
            oid = e.order_id
            new = e.status
            d = self._o_get(oid, at_iso)
            if d is not None:
                by_id = {i.order_item_id: i for i in d.items}
                for q in e.items:
                    it = by_id.get(q.order_item_id)
                    if it is not None:
                        it.shipped += q.quantity
                self._o_status(d, new, at_iso)
            r = self._m_get(oid)
            if r is not None:
                r.last_confirmation_us = at_us
                tn = e.tracking_number
                M.shipments.append((pos, oid, at_us, bool(tn and tn.strip())))  # type: ignore[union-attr]
                self._m_status(r, new)
            self._n_settles(e)
            if audit is not None:
                audit(pos, e, at_us, at_iso, oid)
        return h

    def _adjusted(self, cls: type) -> Handler:
        N, audit = self.N, self._audit(cls)

        def h(pos: int, e: ev.OrderAdjusted) -> None:
            at = e.at
            at_iso = iso(at)
            at_us = to_us(at)
            oid = e.order_id
            d = self._o_get(oid, at_iso)
            if d is not None:
                by_id = {i.order_item_id: i for i in d.items}
                for a in e.items:
                    it = by_id.get(a.order_item_id)
                    if it is not None:
                        it.canceled += a.quantity_cancelled
                if e.status != d.status and e.status == CANCELED:
                    d.cancel_reason = e.items[0].reason if e.items else None
                    d.canceled_by = e.actor
                self._o_status(d, e.status, at_iso)
            r = self._m_get(oid)
            if r is not None:
                for a in e.items:
                    if a.quantity_cancelled > 0 and not (
                            e.buyer_requested and a.reason in BUYER_WISH_REASONS):
                        self._m_count(r, a.reason, at_us)
                        break
                self._m_status(r, e.status)
            if N is not None:
                self._n_settles(e)
                lines = [(a.order_item_id, a.quantity_cancelled, a.reason)
                         for a in e.items if a.quantity_cancelled > 0]
                if lines:  # a refund only is not a cancellation
                    self._n_cancellation(pos, e, at_iso, sorted({r for _, _, r in lines}), lines)
            if audit is not None:
                audit(pos, e, at_us, at_iso, oid)
        return h

    def _address(self, cls: type) -> Handler:
        audit = self._audit(cls)

        def h(pos: int, e: ev.ShippingAddressChanged) -> None:
            at_iso = iso(e.at)
            d = self._o_get(e.order_id, at_iso)
            if d is not None:
                d.ship_to = _json(e.ship_to)
            if audit is not None:
                audit(pos, e, to_us(e.at), at_iso, e.order_id)
        return h

    def _released_data(self, cls: type) -> Handler:
        audit = self._audit(cls)

        def h(pos: int, e: ev.RestrictedDataReleased) -> None:
            at_iso = iso(e.at)
            d = self._o_get(e.order_id, at_iso)
            if d is not None:
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
            if audit is not None:
                audit(pos, e, to_us(e.at), at_iso, e.order_id)
        return h

    def _acknowledged(self, cls: type) -> Handler:
        audit = self._audit(cls)

        def h(pos: int, e: ev.OrderAcknowledged) -> None:
            at_iso = iso(e.at)
            d = self._o_get(e.order_id, at_iso)
            if d is not None and e.merchant_order_id:
                market = market_of(d)
                market["merchant_order_id"] = e.merchant_order_id
                d.market = _json(market)
            if audit is not None:
                audit(pos, e, to_us(e.at), at_iso, e.order_id)
        return h

    def _retracked(self, cls: type) -> Handler:
        M, audit = self.M, self._audit(cls)

        def h(pos: int, e: ev.TrackingCorrected) -> None:
            at_iso = iso(e.at)
            oid = e.order_id
            self._o_get(oid, at_iso)  # only the last-updated time changes
            if M is not None:
                # the order's latest shipment now has the corrected tracking number (or none)
                tn = e.tracking_number
                tracked = bool(tn and tn.strip())
                ships = M.shipments
                for i in range(len(ships) - 1, -1, -1):
                    if ships[i][1] == oid:
                        ships[i] = (*ships[i][:3], tracked)
                        break
                else:
                    M.retracked.append((tracked, oid))
            if audit is not None:
                audit(pos, e, to_us(e.at), at_iso, oid)
        return h

    def _inventory(self, cls: type) -> Handler:
        I, audit = self.I, self._audit(cls)
        is_set = cls is ev.InventorySet
        has_order = "order_id" in cls.__struct_fields__  # type: ignore[attr-defined]

        def h(pos: int, e: Any) -> None:
            if I is not None:
                I.available[e.sku] = e.quantity if is_set else e.available
                I.dirty.add(e.sku)
            if audit is not None:
                at = e.at
                audit(pos, e, to_us(at), iso(at), e.order_id if has_order else None)
        return h


def dispatch_table(projs: Iterable[Projection]) -> dict[type, tuple[Handler, ...]]:
    """Event type -> the handlers to call for it: one fused handler per type applying
    the event to every projection in ``projs`` (see :func:`handlers_for`)."""
    return {k: (h,) for k, h in handlers_for(projs).items()}
