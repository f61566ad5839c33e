"""Reading the projections: rows, reports and metrics from projection records.

Both the stored views and the in-memory ones hand their records to these
functions, so what a reader gets cannot differ between them.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Callable, Iterable

import msgspec

from ledger.store import to_us

from .model import (
    CANCELED,
    OPEN,
    PENDING,
    MetricOrder,
    OrderDoc,
    address_of,
    iso,
    market_of,
)
from .rows import CancellationMetric, LateShipment, Metric, Metrics, Window

DAY = timedelta(days=1)
DAY_US = 86_400_000_000

# --- sorting and paging lists ----------------------------------------------------------

#: per list: sort key -> (field, descending by default); the field is both the SQL
#: column (or alias) and the attribute / key of the records sorted in memory
SORT_KEYS: dict[str, dict[str, tuple[str, bool]]] = {
    "orders": {"purchased": ("purchase_us", True), "order": ("order_id", False),
               "status": ("status", False)},
    "inventory": {"sku": ("sku", False), "available": ("available", False),
                  "reserved": ("reserved", True)},
    "notifications": {"position": ("position", False), "order": ("order_id", False),
                      "kind": ("kind", False)},
}
#: the key a list is sorted by when none is asked for
DEFAULT_SORT = {"orders": "purchased", "inventory": "sku", "notifications": "position"}
#: ties are broken by these fields, ascending, whatever the key and direction
TIEBREAK = {"orders": ("order_id",), "inventory": ("sku",),
            "notifications": ("position", "seq")}


class PageError(ValueError):
    """A sort key the list does not have, or a negative limit / offset."""


class Page(msgspec.Struct, frozen=True):
    """Which rows of a list, in which order: ``sort`` key (default: the list's own),
    ``desc`` (None: the key's default direction), then ``offset`` rows skipped and at
    most ``limit`` returned. Applied in SQL by the stored views and in memory by
    :class:`projections.memory.Snapshot`, with the same order and tie-breaks."""

    sort: str | None = None
    desc: bool | None = None
    limit: int | None = None
    offset: int = 0

    def spec(self, listing: str) -> tuple[str, bool]:
        """(field, descending) for ``listing``; raises :class:`PageError`."""
        keys = SORT_KEYS[listing]
        key = self.sort or DEFAULT_SORT[listing]
        if key not in keys:
            raise PageError(f"cannot sort {listing} by {key!r}; keys: {', '.join(keys)}")
        if self.limit is not None and self.limit < 0 or self.offset < 0:
            raise PageError("limit and offset are 0 or more")
        field, desc = keys[key]
        return field, desc if self.desc is None else self.desc

    def sql(self, listing: str) -> tuple[str, list[int]]:
        """`` ORDER BY ... [LIMIT ? OFFSET ?]`` and its parameters."""
        field, desc = self.spec(listing)
        ties = [t for t in TIEBREAK[listing] if t != field]
        text = f" ORDER BY {field} {'DESC' if desc else 'ASC'}" + "".join(
            f", {t}" for t in ties)
        if self.limit is None and not self.offset:
            return text, []
        return text + " LIMIT ? OFFSET ?", [-1 if self.limit is None else self.limit,
                                             self.offset]

    def apply(self, listing: str, records: Iterable[Any]) -> list[Any]:
        """The same in memory; records are objects or dicts with the fields."""
        field, desc = self.spec(listing)
        items = list(records)
        if not items:
            return items
        get = (lambda r, f: r[f]) if isinstance(items[0], dict) else getattr
        items.sort(key=lambda r: tuple(get(r, t) for t in TIEBREAK[listing]))
        items.sort(key=lambda r: get(r, field), reverse=desc)
        end = None if self.limit is None else self.offset + self.limit
        return items[self.offset:end]


DEFAULT_PAGE = Page()


class Where(msgspec.Struct, frozen=True):
    """``field`` is one of ``values``: a filter written once, applied in SQL by the stored
    views (:meth:`sql`) and in memory by the snapshots (:meth:`test`)."""

    field: str
    values: tuple[Any, ...]

    def sql(self) -> tuple[str, list[Any]]:
        """``field IN (?, ...)`` and its parameters."""
        return f"{self.field} IN ({', '.join('?' * len(self.values))})", list(self.values)

    def test(self, record: Any) -> bool:
        return bool(getattr(record, self.field) in self.values)


def manage_orders_key(d: OrderDoc) -> tuple[Any, ...]:
    """Manage Orders lists the newest purchase first, ties by order id."""
    return (-d.purchase_us, d.order_id)


# --- reports ---------------------------------------------------------------------------

#: The Orders report (flat file of new orders): 32 columns, the current file's last three
#: (is-business-order, purchase-order-number, price-designation) after the older 29.
ORDERS_REPORT_COLUMNS: tuple[str, ...] = (
    "order-id", "order-item-id", "purchase-date", "payments-date", "buyer-email",
    "buyer-name", "buyer-phone-number", "sku", "product-name", "quantity-purchased",
    "currency", "item-price", "item-tax", "shipping-price", "shipping-tax",
    "ship-service-level", "recipient-name", "ship-address-1", "ship-address-2",
    "ship-address-3", "ship-city", "ship-state", "ship-postal-code", "ship-country",
    "ship-phone-number", "delivery-start-date", "delivery-end-date", "delivery-time-zone",
    "delivery-Instructions", "is-business-order", "purchase-order-number", "price-designation",
)

#: The Unshipped Orders report, current layout (41 columns; sources in docs/projections.md).
UNSHIPPED_REPORT_COLUMNS: tuple[str, ...] = (
    "order-id", "order-item-id", "purchase-date", "payments-date", "reporting-date",
    "promise-date", "days-past-promise", "buyer-email", "buyer-name", "cpf",
    "buyer-phone-number", "sku", "number-of-items", "product-name", "quantity-purchased",
    "quantity-shipped", "quantity-to-ship", "ship-service-level", "ship-service-name",
    "recipient-name", "ship-address-1", "ship-address-2", "ship-address-3", "ship-city",
    "ship-state", "ship-postal-code", "ship-country", "sales-channel", "customized-url",
    "customized-page", "is-business-order", "purchase-order-number", "price-designation",
    "is-prime", "is-buyer-requested-cancellation", "buyer-requested-cancel-reason",
    "verge-of-cancellation", "verge-of-lateShipment", "signature-confirmation-recommended",
    "buyer-identification-number", "buyer-identification-type",
)

#: The Unshipped Orders report as this project wrote it first (26 columns): ``--layout old``.
UNSHIPPED_REPORT_COLUMNS_OLD: tuple[str, ...] = (
    "order-id", "order-item-id", "purchase-date", "payments-date", "reporting-date",
    "promise-date", "days-past-promise", "buyer-email", "buyer-name", "buyer-phone-number",
    "sku", "product-name", "quantity-purchased", "quantity-shipped", "quantity-to-ship",
    "ship-service-level", "recipient-name", "ship-address-1", "ship-address-2",
    "ship-address-3", "ship-city", "ship-state", "ship-postal-code", "ship-country",
    "is-buyer-requested-cancellation", "verge-of-cancellation",
)

#: The All Orders report (GET_FLAT_FILE_ALL_ORDERS_DATA_BY_ORDER_DATE_GENERAL): 32 columns.
ALL_ORDERS_REPORT_COLUMNS: tuple[str, ...] = (
    "amazon-order-id", "merchant-order-id", "purchase-date", "last-updated-date",
    "order-status", "fulfillment-channel", "sales-channel", "order-channel", "url",
    "ship-service-level", "product-name", "sku", "asin", "item-status", "quantity",
    "currency", "item-price", "item-tax", "shipping-price", "shipping-tax", "gift-wrap-price",
    "gift-wrap-tax", "item-promotion-discount", "ship-promotion-discount", "ship-city",
    "ship-state", "ship-postal-code", "ship-country", "promotion-ids", "is-business-order",
    "purchase-order-number", "price-designation",
)

#: Report layouts by name (``order-ledger report unshipped --layout``).
UNSHIPPED_LAYOUTS = ("current", "old")

#: The All Orders report's order-status and item-status words for the ledger's statuses.
ALL_ORDERS_STATUS = {"Pending": "Pending", "Unshipped": "Unshipped",
                     "PartiallyShipped": "Shipping", "Shipped": "Shipped",
                     "Canceled": "Cancelled"}

#: The shipping window before the promise in which an open order is on the verge of
#: shipping late (the report's verge-of-lateShipment).
VERGE_OF_LATE = timedelta(hours=24)

#: every character a TSV or line-based reader could take as a field or line break
_BREAKS = {ord(c): " " for c in "\t\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"}


def clean(v: Any) -> str:
    """A TSV field: None is empty, tabs and line breaks become spaces."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v).translate(_BREAKS)


def report_key(d: OrderDoc) -> tuple[Any, ...]:
    """Report rows: by purchase instant, then order id (then item order)."""
    return (d.purchase_us, d.order_id)


#: which orders each report reads (besides its own per-item rules): the Orders report
#: those that left Pending (Canceled ones only if they ever did), the Unshipped Orders
#: report the open ones, the All Orders report every order
REPORT_WHERE: dict[str, Where | None] = {
    "orders": Where("ever_released", (True,)),
    "unshipped": Where("status", OPEN),
    "all_orders": None,
}


def in_orders_report(d: OrderDoc) -> bool:
    """Orders that left Pending (Canceled ones only if they ever did)."""
    return _in_report("orders", d)


def in_unshipped_report(d: OrderDoc) -> bool:
    return _in_report("unshipped", d)


def _in_report(kind: str, d: OrderDoc) -> bool:
    where = REPORT_WHERE[kind]
    return where is None or where.test(d)


def days_past_promise(promise: datetime, report_time: datetime) -> int:
    """Whole days from the promise to the report time: floor((report - promise) / 1 day).

    Negative while the promise has not passed (e.g. 1 hour before: -1), 0 during
    the first 24 hours after it, 1 from 24 hours after it, and so on.
    """
    return (report_time - promise) // DAY


def _tsv(header: Iterable[str], rows: Iterable[Iterable[Any]]) -> str:
    out = ["\t".join(header)]
    out.extend("\t".join(clean(v) for v in row) for row in rows)
    return "\n".join(out) + "\n"


# --- the report file's encoding ---------------------------------------------------------

#: the encodings a report can be written in ("marketplace": the one its orders'
#: marketplace writes, see :func:`marketplace_encoding`)
REPORT_ENCODINGS = ("marketplace", "utf-8", "windows-1252", "iso-8859-1", "shift_jis",
                    "cp932")
#: what the marketplace writes its flat files in outside Japan (the report document's
#: ``Content-Type: text/plain; charset=Cp1252`` in Europe and North America)
MARKETPLACE_DEFAULT_ENCODING = "windows-1252"
#: sales channels whose files are in another encoding: Amazon.co.jp writes Shift_JIS
#: as Windows does (cp932, also called Windows-31J: Shift_JIS plus the NEC and IBM
#: characters Japanese text uses, such as circled digits)
CHANNEL_ENCODING = {"amazon.co.jp": "cp932"}


class ReportEncodingError(ValueError):
    """The report's orders come from marketplaces whose files use different encodings."""


class ReportText(str):
    """A report's text, with the encoding its orders' marketplace writes.

    ``channels`` maps each sales channel of the orders written (as the marketplace
    names it, e.g. ``Amazon.co.jp``) to that channel's encoding; orders the
    marketplace gave no sales channel for have no say.
    """

    channels: dict[str, str]

    @property
    def encoding(self) -> str | None:
        """The marketplace's encoding: windows-1252 when no order says otherwise, None
        when the orders' channels disagree."""
        found = set(self.channels.values())
        if not found:
            return MARKETPLACE_DEFAULT_ENCODING
        return found.pop() if len(found) == 1 else None


def marketplace_encoding(channel: str | None) -> str:
    """The encoding the marketplace behind ``channel`` (``Amazon.de``) writes its files in."""
    if not channel:
        return MARKETPLACE_DEFAULT_ENCODING
    return CHANNEL_ENCODING.get(channel.strip().lower(), MARKETPLACE_DEFAULT_ENCODING)


def _report(text: str, written: Iterable[OrderDoc]) -> ReportText:
    out = ReportText(text)
    channels: dict[str, str] = {}
    for d in written:
        channel = market_of(d).get("sales_channel")
        if channel:
            channels[channel] = marketplace_encoding(channel)
    out.channels = dict(sorted(channels.items()))
    return out


def report_encoding(text: str, encoding: str = "marketplace") -> str:
    """The encoding a report is written in: ``encoding`` itself, or for ``marketplace``
    the one its orders' marketplace writes (``text`` a :class:`ReportText`; a plain
    ``str`` gets windows-1252). Raises :class:`ReportEncodingError` when the orders'
    marketplaces disagree, ValueError for an unknown name. A front that changes the
    text before writing it (redaction) asks this of the original text first."""
    if encoding not in REPORT_ENCODINGS:
        raise ValueError(f"unknown encoding {encoding!r}; known: {', '.join(REPORT_ENCODINGS)}")
    if encoding != "marketplace":
        return encoding
    if not isinstance(text, ReportText):
        return MARKETPLACE_DEFAULT_ENCODING
    chosen = text.encoding
    if chosen is None:
        names = ", ".join(f"{c} ({e})" for c, e in text.channels.items())
        raise ReportEncodingError(
            f"the report's orders come from marketplaces whose files use different "
            f"encodings: {names}; pass --encoding (utf-8 keeps every character)")
    return chosen


def encode_report(text: str, encoding: str = "marketplace") -> tuple[bytes, str, int]:
    """A report's bytes: ``(data, encoding used, characters written as '?')``.

    ``marketplace`` picks the encoding of the orders' marketplace (``text`` must then
    be a :class:`ReportText`; a plain ``str`` gets windows-1252). A character the
    encoding lacks is written as ``?``, as the marketplace's own files have it; UTF-8
    loses nothing. Raises :class:`ReportEncodingError` when ``marketplace`` is asked
    and the orders' marketplaces disagree.
    """
    encoding = report_encoding(text, encoding)
    try:
        return text.encode(encoding), encoding, 0
    except UnicodeEncodeError:
        pass
    lost = 0
    for ch in set(text):
        try:
            ch.encode(encoding)
        except UnicodeEncodeError:
            lost += text.count(ch)
    return text.encode(encoding, errors="replace"), encoding, lost


def _service_level(d: OrderDoc, market: dict[str, Any]) -> str:
    """The report's ship-service-level: the service category (Standard, Expedited ...)
    when the marketplace gave one, else the service the order was placed with."""
    return market.get("ship_service_category") or d.ship_service_level


def _flag(market: dict[str, Any], key: str) -> bool | None:
    value = market.get(key)
    return None if value is None else bool(value)


def render_orders_report(docs: Iterable[OrderDoc]) -> ReportText:
    """The Orders report (flat file), docs in any order."""
    rows = []
    written = sorted((d for d in docs if in_orders_report(d)), key=report_key)
    for d in written:
        a = address_of(d)
        m = market_of(d)
        level = _service_level(d, m)
        business, po = _flag(m, "is_business_order"), m.get("purchase_order_number")
        for i in d.items:
            rows.append((
                d.order_id, i.order_item_id, d.purchase_date, d.payments_date, d.buyer_email,
                d.buyer_name, d.buyer_phone, i.sku, i.title, i.quantity, d.currency,
                i.item_price, i.item_tax, i.shipping_price, i.shipping_tax,
                level, a.name, a.address_1, a.address_2, a.address_3, a.city,
                a.state, a.postal_code, a.country, a.phone, None, None, None, None,
                business, po, i.price_designation))
    return _report(_tsv(ORDERS_REPORT_COLUMNS, rows), (d for d in written if d.items))


def render_unshipped_report(docs: Iterable[OrderDoc], report_time: datetime,
                            layout: str = "current") -> ReportText:
    """The Unshipped Orders report at ``report_time``, docs in any order; ``layout``
    ``current`` (the marketplace's file today) or ``old`` (the first 26 columns)."""
    if layout not in UNSHIPPED_LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; known: {', '.join(UNSHIPPED_LAYOUTS)}")
    _need_offset(report_time)
    reporting = iso(report_time)
    old = layout == "old"
    rows: list[tuple[Any, ...]] = []
    written: list[OrderDoc] = []
    for d in sorted((d for d in docs if in_unshipped_report(d)), key=report_key):
        a = address_of(d)
        promise = datetime.fromisoformat(d.latest_ship_date)
        past = days_past_promise(promise, report_time)
        requested = bool(d.buyer_requested_cancel)
        verge = d.warning is not None
        m = market_of(d)
        late_soon = promise - VERGE_OF_LATE <= report_time < promise
        for i in d.items:
            to_ship = i.quantity - i.shipped - i.canceled
            if to_ship <= 0:
                continue
            if not written or written[-1] is not d:
                written.append(d)
            if old:
                rows.append((
                    d.order_id, i.order_item_id, d.purchase_date, d.payments_date, reporting,
                    d.latest_ship_date, past, d.buyer_email, d.buyer_name, d.buyer_phone,
                    i.sku, i.title, i.quantity, i.shipped, to_ship, d.ship_service_level,
                    a.name, a.address_1, a.address_2, a.address_3, a.city, a.state,
                    a.postal_code, a.country, requested, verge))
                continue
            rows.append((
                d.order_id, i.order_item_id, d.purchase_date, d.payments_date, reporting,
                d.latest_ship_date, past, d.buyer_email, d.buyer_name, None, d.buyer_phone,
                i.sku, None, i.title, i.quantity, i.shipped, to_ship, _service_level(d, m),
                d.ship_service_level, a.name, a.address_1, a.address_2, a.address_3, a.city,
                a.state, a.postal_code, a.country, m.get("sales_channel"), None, None,
                _flag(m, "is_business_order"), m.get("purchase_order_number"),
                i.price_designation, _flag(m, "is_prime"), requested,
                m.get("buyer_cancel_reason") if requested else None, verge, late_soon, None, None,
                None))
    return _report(_tsv(UNSHIPPED_REPORT_COLUMNS_OLD if old else UNSHIPPED_REPORT_COLUMNS, rows),
                   written)


def item_status(d: OrderDoc, quantity: int, shipped: int, canceled: int) -> str:
    """An item's status in the All Orders report."""
    if canceled >= quantity:
        return "Cancelled"
    if shipped and shipped + canceled >= quantity:
        return "Shipped"
    if d.status == PENDING:
        return "Pending"
    return "Unshipped"


def render_all_orders_report(docs: Iterable[OrderDoc]) -> ReportText:
    """The All Orders report: every order (Pending and Canceled too), one row per item."""
    rows = []
    written = sorted(docs, key=report_key)
    for d in written:
        a = address_of(d)
        m = market_of(d)
        status = ALL_ORDERS_STATUS.get(d.status, d.status)
        level = _service_level(d, m)
        business, po = _flag(m, "is_business_order"), m.get("purchase_order_number")
        for i in d.items:
            rows.append((
                d.order_id, m.get("merchant_order_id"), d.purchase_date, d.last_updated,
                status, "Merchant", m.get("sales_channel"), None, None, level, i.title, i.sku,
                None, item_status(d, i.quantity, i.shipped, i.canceled), i.quantity,
                d.currency, i.item_price, i.item_tax, i.shipping_price, i.shipping_tax,
                i.gift_wrap_price, i.gift_wrap_tax, _neg(i.promotion_discount),
                _neg(i.ship_promotion_discount), a.city, a.state, a.postal_code, a.country,
                None, business, po, i.price_designation))
    return _report(_tsv(ALL_ORDERS_REPORT_COLUMNS, rows), (d for d in written if d.items))


def _neg(amount: Any) -> Any:
    """A discount as the All Orders report writes it: negative, empty when none."""
    return -amount if amount else None


def _need_offset(t: datetime) -> None:
    if t.tzinfo is None:
        raise ValueError("a report or metrics time needs a UTC offset")


# --- seller metrics -------------------------------------------------------------------

CANCELLATION_DAYS = 7
#: the late shipment windows (the fields of :class:`projections.rows.LateShipment`)
LATE_SHIPMENT_DAYS = (10, 30)
VALID_TRACKING_DAYS = 30

TARGETS: dict[str, tuple[float, str, Callable[[int, int], bool]]] = {
    # name: (target, text, breached(numerator, denominator)) -- integer arithmetic
    "cancellation_rate": (0.025, "< 2.5%", lambda n, d: n * 1000 >= d * 25),
    "late_shipment_rate": (0.04, "< 4%", lambda n, d: n * 100 >= d * 4),
    "valid_tracking_rate": (0.95, "> 95%", lambda n, d: n * 100 <= d * 95),
}


def window(at: datetime, days: int) -> tuple[int, int]:
    """The half-open window [at - days, at) in microseconds since the epoch."""
    end = to_us(at)
    return end - days * DAY_US, end


def metric_ranges(at: datetime) -> dict[str, tuple[int, int]]:
    """The windows a metrics evaluation at ``at`` reads (for querying the store)."""
    return {
        "purchase": window(at, CANCELLATION_DAYS),
        "ship": window(at, max(LATE_SHIPMENT_DAYS)),
        "confirmation": window(at, VALID_TRACKING_DAYS),
    }


def _metric(name: str, at: datetime, days: int, by: str, num: int, den: int) -> Metric:
    target, text, breached = TARGETS[name]
    return Metric(
        window=Window(days=days, by=by, from_=iso(at - timedelta(days=days)), to=iso(at),
                      edges="[from, to)"),
        numerator=num,
        denominator=den,
        rate=(num / den) if den else None,
        target=target,
        target_text=text,
        breached=bool(den) and breached(num, den),
    )


def is_late(m: MetricOrder) -> bool:
    """Late: still open past its promise, or last confirmed after latest_ship_date."""
    if m.status in OPEN:
        return True
    return m.last_confirmation_us is not None and m.last_confirmation_us > m.latest_ship_us


def compute_metrics(orders: Iterable[MetricOrder], shipments: Iterable[tuple[int, Any]],
                    at: datetime) -> Metrics:
    """Seller metrics at ``at`` from per-order facts and (at_us, tracked) confirmations.

    ``orders`` and ``shipments`` may hold more than the windows; they are filtered here.
    """
    _need_offset(at)
    c_lo, c_hi = window(at, CANCELLATION_DAYS)
    l_windows = {d: window(at, d) for d in LATE_SHIPMENT_DAYS}
    v_lo, v_hi = window(at, VALID_TRACKING_DAYS)
    c_num = c_den = 0
    breakdown: dict[str, int] = {}
    late = {d: [0, 0] for d in LATE_SHIPMENT_DAYS}
    for m in orders:
        if not m.released:
            continue
        if c_lo <= m.purchase_us < c_hi:
            c_den += 1
            if m.counted_reason is not None:
                c_num += 1
                breakdown[m.counted_reason] = breakdown.get(m.counted_reason, 0) + 1
        if m.status != CANCELED:
            for d, (lo, hi) in l_windows.items():
                if lo <= m.latest_ship_us < hi:
                    late[d][1] += 1
                    if is_late(m):
                        late[d][0] += 1
    v_num = v_den = 0
    for at_us, tracked in shipments:
        if v_lo <= at_us < v_hi:
            v_den += 1
            if tracked:
                v_num += 1
    cancel = CancellationMetric(
        **msgspec.structs.asdict(_metric("cancellation_rate", at, CANCELLATION_DAYS,
                                         "purchase date", c_num, c_den)),
        breakdown=dict(sorted(breakdown.items())))
    d10, d30 = (_metric("late_shipment_rate", at, d, "latest ship date", *late[d])
                for d in LATE_SHIPMENT_DAYS)
    return Metrics(
        at=iso(at),
        cancellation_rate=cancel,
        late_shipment_rate=LateShipment(d10=d10, d30=d30),
        valid_tracking_rate=_metric("valid_tracking_rate", at, VALID_TRACKING_DAYS,
                                    "confirmation time", v_num, v_den),
    )
