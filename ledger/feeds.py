"""The marketplace's flat-file feeds (docs/rules.md §7) turned into ledger commands.

A feed is a tab-separated file with a header row: shipping confirmation
(``POST_FLAT_FILE_FULFILLMENT_DATA``), order cancellation
(``POST_FLAT_FILE_ORDER_ACKNOWLEDGEMENT_DATA``) and order adjustment
(``POST_FLAT_FILE_PAYMENT_ADJUSTMENT_DATA``). Columns are found by header name
(any order, unknown extra columns ignored), CRLF or LF; blank lines are skipped.
An Amazon template's first row (``TemplateType=OrderFulfillment<TAB>Version=...``)
before the header is skipped and named in the report. Encoding: UTF-8 (with
or without a BOM) when the file decodes as UTF-8, else Windows-1252 (which
covers ISO-8859-1's printable range), or the one forced with ``encoding=``;
UTF-16/32 and binary files are rejected whole.

Two steps:

1. :func:`build_commands` is pure: file bytes (plus what it needs to know about
   orders, passed in as a lookup) become one :class:`FeedLine` per data line,
   each holding ONE command in the command-file format or a line-level
   rejection with the column at fault.
2. :func:`process_feed` sends the accepted commands through the ledger in file
   order (``Ledger.apply_lines``, one batch) and maps every outcome back to its
   feed line, so ledger rejections (unknown order, quantity too large, order not
   open...) are reported with the feed's line number and column too.

Line numbers are physical line numbers in the file: the header is line 1.
Every command gets ``command_id = feed:<feed>:<sha256[:12]>:<line>`` so sending
the same file again is idempotent (its lines are reported ``duplicate``).
See ``docs/feeds.md``.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Callable, Iterable

from . import rules
from .commands import ORDER_ID_RE
from .errors import CommandRejected
from .textfile import SAMPLE_BYTES, sniff, wide_encoding

if TYPE_CHECKING:  # pragma: no cover
    from .application import Ledger

SHIPPING_CONFIRMATION = "shipping-confirmation"
CANCELLATION = "cancellation"
ADJUSTMENT = "adjustment"


@dataclass(frozen=True)
class FeedSpec:
    """One feed type: its columns and how ledger fields map back to them."""

    name: str
    feed_type: str
    columns: tuple[str, ...]
    required: tuple[str, ...]
    #: ledger error field (``items[n].`` prefix removed) -> feed column
    fields: dict[str, str]
    #: column for an error on a whole ``items[n]`` entry
    item_column: str


#: the shipping-confirmation layout's ship-from columns -> the ship command's
#: ``ship_from`` fields (the current template's names, underscores and all)
SHIP_FROM_COLUMNS: tuple[tuple[str, str], ...] = (
    ("ship_from_address_name", "name"), ("ship_from_address_line1", "address_1"),
    ("ship_from_address_line2", "address_2"), ("ship_from_address_line3", "address_3"),
    ("ship_from_address_city", "city"), ("ship_from_address_county", "county"),
    ("ship_from_address_state_or_region", "state"),
    ("ship_from_address_postalcode", "postal_code"),
    ("ship_from_address_countrycode", "country"),
)

FEEDS: dict[str, FeedSpec] = {
    SHIPPING_CONFIRMATION: FeedSpec(
        name=SHIPPING_CONFIRMATION,
        feed_type="POST_FLAT_FILE_FULFILLMENT_DATA",
        columns=("order-id", "order-item-id", "quantity", "ship-date", "carrier-code",
                 "carrier-name", "tracking-number", "ship-method", "transparency_code",
                 *(column for column, _ in SHIP_FROM_COLUMNS)),
        required=("order-id", "ship-date"),
        fields={"order_id": "order-id", "order_item_id": "order-item-id",
                "quantity": "quantity", "items": "order-item-id", "ship_date": "ship-date",
                "carrier_code": "carrier-code", "carrier_name": "carrier-name",
                "tracking_number": "tracking-number", "ship_method": "ship-method",
                "transparency_codes": "transparency_code",
                **{f"ship_from.{field}": column for column, field in SHIP_FROM_COLUMNS},
                "ship_from": "ship_from_address_name"},
        item_column="order-item-id",
    ),
    CANCELLATION: FeedSpec(
        name=CANCELLATION,
        feed_type="POST_FLAT_FILE_ORDER_ACKNOWLEDGEMENT_DATA",
        columns=("order-id", "cancellation-reason-code", "amazon-order-item-code",
                 "merchant-order-id"),
        required=("order-id", "cancellation-reason-code"),
        fields={"order_id": "order-id", "reason": "cancellation-reason-code",
                "merchant_order_id": "merchant-order-id",
                "order_item_id": "amazon-order-item-code",
                "quantity_cancelled": "amazon-order-item-code",
                "items": "amazon-order-item-code"},
        item_column="amazon-order-item-code",
    ),
    ADJUSTMENT: FeedSpec(
        name=ADJUSTMENT,
        feed_type="POST_FLAT_FILE_PAYMENT_ADJUSTMENT_DATA",
        columns=("order-id", "order-item-id", "adjustment-reason-code", "currency",
                 "item-price-adj", "item-tax-adj", "shipping-price-adj", "shipping-tax-adj",
                 "gift-wrap-price-adj", "gift-wrap-tax-adj", "item-promotion-adj",
                 "ship-promotion-adj", "quantity-cancelled"),
        required=("order-id", "order-item-id", "adjustment-reason-code", "currency"),
        fields={"order_id": "order-id", "order_item_id": "order-item-id",
                "reason": "adjustment-reason-code", "quantity_cancelled": "quantity-cancelled",
                "item_price_adj": "item-price-adj", "item_tax_adj": "item-tax-adj",
                "shipping_price_adj": "shipping-price-adj",
                "shipping_tax_adj": "shipping-tax-adj",
                "gift_wrap_price_adj": "gift-wrap-price-adj",
                "gift_wrap_tax_adj": "gift-wrap-tax-adj",
                "item_promotion_adj": "item-promotion-adj",
                "ship_promotion_adj": "ship-promotion-adj",
                "item_price": "item-price-adj", "item_tax": "item-tax-adj",
                "shipping_price": "shipping-price-adj", "shipping_tax": "shipping-tax-adj",
                "items": "order-item-id"},
        item_column="order-item-id",
    ),
}

#: An item-level cancellation becomes an adjustment with this reason.
CANCEL_TO_ADJUSTMENT_REASON: dict[str, str] = {
    "NoInventory": "NoInventory",
    "BuyerCanceled": "BuyerCanceled",
    "GeneralAdjustment": "GeneralAdjustment",
    "PricingError": "PriceError",
    "ShippingAddressUndeliverable": "Undeliverable",
    "CustomerExchange": "Exchange",
}

ALREADY_PROCESSED = "already processed (the same line of the same file was accepted before)"

_AMOUNT_COLUMNS = ("item-price-adj", "item-tax-adj", "shipping-price-adj", "shipping-tax-adj",
                   "gift-wrap-price-adj", "gift-wrap-tax-adj")
#: promotion adjustments: the file may write them negative (a discount) or positive;
#: either way the amount is the part of a promotion taken back from the refund
_PROMOTION_COLUMNS = ("item-promotion-adj", "ship-promotion-adj")
#: "NULL" in tracking-number: no tracking number (the marketplace's way to clear it)
NULL_TRACKING = "NULL"
#: a UTF-8 encoded non-ASCII character (in a file that is otherwise not UTF-8: mixed)
_UTF8_SEQUENCE = re.compile(rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}"
                            rb"|[\xf0-\xf4][\x80-\xbf]{3}")
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")
_TEMPLATE_RE = re.compile(r"^\s*TemplateType\s*=", re.IGNORECASE)
_QUANTITY_RE = re.compile(r"^\+?\d+$")
_AMOUNT_RE = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")
_CURRENCY_RE = re.compile(r"^[A-Za-z]{3}$")
_ITEM_PREFIX = re.compile(r"^items\[\d+\]\.?")


class FeedError(Exception):
    """The whole file is rejected (nothing applied): bad encoding, bad header."""


class LineRejected(Exception):
    """One line is rejected before it reaches the ledger."""

    def __init__(self, column: str | None, code: str, message: str,
                 hint: str | None = None) -> None:
        super().__init__(message)
        self.column = column
        self.code = code
        self.message = message
        self.hint = hint


@dataclass(frozen=True)
class OrderInfo:
    """What the feed needs to know about an order already in the ledger."""

    status: str
    currency: str
    remaining: dict[str, int]


OrderLookup = Callable[[str], "OrderInfo | None"]


@dataclass
class FeedRow:
    line: int
    values: dict[str, str]
    extra: list[str] = field(default_factory=list)
    width: int = 0  # columns in the header
    error: LineRejected | None = None  # the line could not even be split into fields

    def get(self, column: str) -> str:
        return self.values.get(column, "")


@dataclass
class FeedLine:
    """One data line of a feed and what became of it."""

    line: int
    status: str = "pending"  # pending -> accepted | duplicate | rejected
    order_id: str | None = None
    command_id: str | None = None
    command: dict[str, Any] | None = None
    column: str | None = None
    code: str | None = None
    message: str | None = None
    hint: str | None = None
    events: list[str] = field(default_factory=list)

    def reject(self, column: str | None, code: str, message: str,
               hint: str | None = None) -> None:
        self.status = "rejected"
        self.column, self.code, self.message, self.hint = column, code, message, hint

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"line": self.line, "status": self.status, "column": self.column,
                     "code": self.code, "message": self.message}
        if self.hint:
            out["hint"] = self.hint
        if self.order_id:
            out["order_id"] = self.order_id
        if self.command:
            out["command"] = self.command["type"]
        if self.command_id:
            out["command_id"] = self.command_id
        if self.events:
            out["events"] = self.events
        return out


@dataclass
class FeedReport:
    """The processing report: counts and every line's result."""

    feed: str
    sha256: str
    lines: list[FeedLine]
    #: the encoding the file was read in (``utf-8``, ``utf-8-sig`` with a BOM, ``cp1252``...)
    encoding: str = "utf-8"
    #: the skipped TemplateType row, ``{"line": 1, "template_type": ..., "version": ...}``
    template: dict[str, Any] | None = None

    def _count(self, status: str) -> int:
        return sum(1 for ln in self.lines if ln.status == status)

    @property
    def processed(self) -> int:
        return len(self.lines)

    @property
    def accepted(self) -> int:
        return self._count("accepted")

    @property
    def duplicate(self) -> int:
        return self._count("duplicate")

    @property
    def rejected(self) -> int:
        return self._count("rejected")

    @property
    def events(self) -> int:
        return sum(len(ln.events) for ln in self.lines)

    def as_dict(self) -> dict[str, Any]:
        return {"feed": self.feed, "feed_type": FEEDS[self.feed].feed_type,
                "sha256": self.sha256, "encoding": self.encoding,
                "template": self.template, "processed": self.processed,
                "accepted": self.accepted, "duplicate": self.duplicate,
                "rejected": self.rejected, "events": self.events,
                "lines": [ln.as_dict() for ln in self.lines]}


# --- reading the file -------------------------------------------------------------------


def spec_of(feed: str) -> FeedSpec:
    try:
        return FEEDS[feed]
    except KeyError:
        raise FeedError(f"unknown feed type {feed!r}; use one of: {', '.join(FEEDS)}") from None


def file_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def command_id(feed: str, digest: str, line: int) -> str:
    return f"feed:{feed}:{digest[:12]}:{line}"


@dataclass
class FeedFile:
    """A read feed file: its data rows, the encoding used, the skipped template row."""

    rows: list[FeedRow]
    encoding: str
    template: dict[str, Any] | None = None


def check_encoding(name: str) -> str:
    """The codec's canonical name; :class:`FeedError` for an unknown or unsuitable one."""
    try:
        info = codecs.lookup(name)
    except LookupError:
        raise FeedError(f"unknown encoding {name!r}; use e.g. utf-8, utf-8-sig, cp1252 "
                        "(Windows-1252) or latin-1 (ISO-8859-1)") from None
    if not getattr(info, "_is_text_encoding", True) or info.name.startswith(("utf-16", "utf-32")):
        raise FeedError(f"encoding {name!r} is not supported for feeds; use utf-8, cp1252 "
                        "or latin-1")
    return info.name


def decode_feed(data: bytes, encoding: str | None = None) -> tuple[str, str]:
    """The file's text and the encoding used: ``encoding`` when given, else UTF-8
    (``utf-8-sig`` when it starts with a BOM), else Windows-1252.

    Raises :class:`FeedError` for UTF-16/32 and binary files, and for bytes the
    forced encoding cannot decode.
    """
    problem = wide_encoding(data[:SAMPLE_BYTES])  # UTF-16/32 even when it decodes
    if problem is not None:
        raise FeedError(str(problem))
    if encoding is not None:
        name = check_encoding(encoding)
        if name == "utf-8" and data.startswith(codecs.BOM_UTF8):
            name = "utf-8-sig"
        try:
            return data.decode(name), name
        except UnicodeDecodeError as exc:
            raise FeedError(f"the file is not {encoding} (byte {exc.start}: "
                            f"{data[exc.start:exc.start + 1]!r}); give the encoding it was "
                            "saved in, or leave out --encoding to detect it") from None
    name = "utf-8-sig" if data.startswith(codecs.BOM_UTF8) else "utf-8"
    try:
        return data.decode(name), name
    except UnicodeDecodeError as exc:
        first_bad = exc.start + (len(codecs.BOM_UTF8) if name == "utf-8-sig" else 0)
    bad_line = data.count(b"\n", 0, first_bad) + 1
    if name == "utf-8-sig":
        raise FeedError(f"the file starts with a UTF-8 byte-order mark but byte {first_bad} "
                        f"(line {bad_line}) is not UTF-8; save it as UTF-8 again, or give its "
                        "encoding with --encoding")
    # binary, gzip ...: say what it looks like; text in another encoding is read as
    # Windows-1252 (a superset of ISO-8859-1's printable characters)
    problem = sniff(data[:SAMPLE_BYTES], complete=len(data) <= SAMPLE_BYTES)
    if problem is not None and "Windows-1252" not in problem.looks_like:
        raise FeedError(f"{problem} (byte {first_bad} is not UTF-8)")
    utf8 = _UTF8_SEQUENCE.search(data)
    if utf8 is not None:
        utf8_line = data.count(b"\n", 0, utf8.start()) + 1
        raise FeedError(f"the file mixes encodings: line {utf8_line} "
                        f"has UTF-8 characters but byte {first_bad} (line {bad_line}) is not "
                        "UTF-8; save it in one encoding, or force one with --encoding")
    try:
        text = data.decode("cp1252")
    except UnicodeDecodeError as exc:
        raise FeedError(f"the file is neither UTF-8 nor Windows-1252 (byte {exc.start}); "
                        "save it as UTF-8, or give its encoding with --encoding") from None
    if _CONTROL_CHARS.search(text):
        raise FeedError("the file is not text: it holds control characters in neither UTF-8 "
                        "nor Windows-1252; give a text file")
    return text, "cp1252"


def read_feed(feed: str, data: bytes, encoding: str | None = None) -> list[FeedRow]:
    """Decode and split a feed file into rows keyed by header name.

    Raises :class:`FeedError` when the whole file must be rejected.
    """
    return read_feed_file(feed, data, encoding).rows


def read_feed_file(feed: str, data: bytes, encoding: str | None = None) -> FeedFile:
    """:func:`read_feed` with the encoding used and the skipped template row."""
    spec = spec_of(feed)
    text, used = decode_feed(data, encoding)
    template: dict[str, Any] | None = None
    source = _LastLine(io.StringIO(text, newline=""))
    reader = csv.reader(source, delimiter="\t", quoting=csv.QUOTE_NONE, strict=False)
    header: list[str] | None = None
    rows: list[FeedRow] = []
    while True:
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:  # a field over csv's limit: this line only
            if header is None:
                raise FeedError(f"the header (line {reader.line_num}) is unusable: {exc}") from None
            rows.append(_too_long(source.last, header, reader.line_num, exc))
            continue
        if not any(v.strip() for v in record):
            continue  # blank line
        if header is None and template is None and record and _TEMPLATE_RE.match(record[0]):
            template = _template_row(record, reader.line_num)
            continue
        if header is None:
            header = [h.strip().lower() for h in record]
            _check_header(spec, header, reader.line_num)
            continue
        values: dict[str, str] = {}
        for name, value in zip(header, record):
            if name and name not in values:
                values[name] = value.strip()
        extra = [v for v in record[len(header):] if v.strip()]
        rows.append(FeedRow(reader.line_num, values, extra, len(header)))
    if header is None:
        raise FeedError("the file is empty: it needs a header row ("
                        + "\t".join(spec.columns) + ") and data lines")
    return FeedFile(rows, used, template)


def _template_row(record: list[str], line: int) -> dict[str, Any]:
    """``TemplateType=OrderFulfillment<TAB>Version=1.0 ...`` as a dict for the report."""
    out: dict[str, Any] = {"line": line}
    for cell in record:
        key, sep, value = cell.strip().partition("=")
        if sep and key.strip():
            # TemplateType -> template_type
            name = re.sub(r"(?<!^)(?=[A-Z])", "_", key.strip()).lower()
            out.setdefault(name, value.strip())
    return out


class _LastLine:
    """The lines given to the csv reader, remembering the last one."""

    def __init__(self, lines: Iterable[str]) -> None:
        self.lines = iter(lines)
        self.last = ""

    def __iter__(self) -> "_LastLine":
        return self

    def __next__(self) -> str:
        self.last = next(self.lines)
        return self.last


def _too_long(raw: str, header: list[str], line: int, exc: Exception) -> FeedRow:
    """The row of a line with a field over csv's size limit: rejected, ``field-too-long``."""
    limit = csv.field_size_limit()
    values = raw.rstrip("\r\n").split("\t")
    at = next((i for i, v in enumerate(values) if len(v) > limit), None)
    column = header[at] if at is not None and at < len(header) and header[at] else None
    size = f" ({len(values[at]):,} characters)" if at is not None else ""
    order = values[header.index("order-id")].strip() if (
        "order-id" in header and header.index("order-id") < len(values)
        and len(values[header.index("order-id")]) <= limit) else ""
    row = FeedRow(line, {"order-id": order} if order else {}, width=len(header))
    row.error = LineRejected(
        column, "field-too-long",
        f"a field{' (' + column + ')' if column else ''} is longer than {limit:,} characters"
        f"{size}", "shorten the value; no feed column needs that much")
    return row


def _check_header(spec: FeedSpec, header: list[str], line: int) -> None:
    seen: set[str] = set()
    for name in header:
        if name and name in seen:
            raise FeedError(f"header (line {line}) names column {name!r} twice")
        seen.add(name)
    missing = [c for c in spec.required if c not in seen]
    if spec.name == SHIPPING_CONFIRMATION and not {"carrier-code", "carrier-name"} & seen:
        missing.append("carrier-code (or carrier-name)")
    if missing:
        known = [c for c in spec.columns if c in seen]
        raise FeedError(
            f"header (line {line}) lacks required column(s) {', '.join(missing)} for a "
            f"{spec.name} feed ({spec.feed_type}); "
            f"found {', '.join(known) or 'none of its columns'}; "
            f"the header row must name: {', '.join(spec.columns)} (tab-separated)")


# --- building commands (pure) -----------------------------------------------------------


def build_commands(feed: str, data: bytes, *, at: datetime, lookup: OrderLookup,
                   known: Iterable[str] = (), encoding: str | None = None) -> list[FeedLine]:
    """One :class:`FeedLine` per data line: a command to apply, or a rejection.

    ``lookup(order_id)`` tells what the ledger knows of an order (used for
    item-level cancellations and the adjustment's currency check); ``known`` are
    command ids the ledger has already accepted (those lines are ``duplicate``).
    """
    rows = read_feed(feed, data, encoding)
    digest = file_digest(data)
    known = set(known)
    build = _BUILDERS[feed]
    claimed: dict[tuple[str, str], tuple[int, int]] = {}
    out: list[FeedLine] = []
    for row in rows:
        fl = FeedLine(row.line, command_id=command_id(feed, digest, row.line))
        fl.order_id = row.get("order-id") or None
        out.append(fl)
        if fl.command_id in known:
            fl.status = "duplicate"
            fl.message = ALREADY_PROCESSED
            continue
        try:
            if row.error is not None:
                raise row.error
            if row.extra:
                raise LineRejected(
                    None, "too-many-fields",
                    f"the line has more values than the header has columns ({row.width}): "
                    f"{', '.join(repr(v) for v in row.extra)}",
                    "remove the extra tab-separated values")
            body = build(row, lookup, claimed)
        except LineRejected as exc:
            fl.reject(exc.column, exc.code, exc.message, exc.hint)
            continue
        fl.command = {"type": body.pop("type"), "at": at.isoformat(),
                      "command_id": fl.command_id, **body}
    return out


def _value(row: FeedRow, column: str) -> str:
    value = row.get(column)
    if not value:
        raise LineRejected(column, "missing-value", f"{column} is empty",
                           f"fill in {column}")
    return value


def _order_id(row: FeedRow) -> str:
    value = _value(row, "order-id")
    if not ORDER_ID_RE.match(value):
        raise LineRejected("order-id", "bad-order-id",
                           f"order id {value!r} does not have the 3-7-7 digit form",
                           "write it like 203-1234567-7654321")
    return value


def _quantity(row: FeedRow, column: str, *, allow_zero: bool = False) -> int:
    value = row.get(column)
    if not value:
        if allow_zero:
            return 0
        raise LineRejected(column, "missing-value", f"{column} is empty",
                           f"fill in {column}")
    if not _QUANTITY_RE.match(value):
        raise LineRejected(column, "bad-quantity", f"{column} {value!r} is not a whole number",
                           "write a whole number such as 1")
    n = int(value)
    if n == 0 and not allow_zero:
        raise LineRejected(column, "bad-quantity", f"{column} must be at least 1, not 0",
                           "leave out lines that ship nothing")
    return n


def _amount(row: FeedRow, column: str) -> str:
    value = row.get(column)
    if not value:
        return "0"
    if not _AMOUNT_RE.match(value):
        raise LineRejected(column, "bad-amount", f"{column} {value!r} is not a decimal amount",
                           "write amounts like 12.50 (a dot, no thousands separator)")
    return str(Decimal(value))


def _ship_line(row: FeedRow, lookup: OrderLookup,
               claimed: dict[tuple[str, str], tuple[int, int]]) -> dict[str, Any]:
    order_id = _order_id(row)
    item_id = row.get("order-item-id")
    cmd: dict[str, Any] = {"type": "ship", "order_id": order_id}
    if item_id:
        cmd["items"] = [{"order_item_id": item_id, "quantity": _quantity(row, "quantity")}]
    elif row.get("quantity"):
        raise LineRejected(
            "quantity", "quantity-without-item",
            "a quantity needs an order-item-id (an empty order-item-id ships the whole order)",
            "fill in order-item-id, or empty quantity to ship everything left")
    ship_date = _value(row, "ship-date")
    try:
        rules.parse_ship_date(ship_date)
    except CommandRejected as exc:
        raise LineRejected("ship-date", exc.code, exc.message, exc.hint) from None
    cmd["ship_date"] = ship_date
    carrier_code = row.get("carrier-code")
    if not carrier_code:
        if not row.get("carrier-name"):
            raise LineRejected("carrier-code", "missing-value",
                               "carrier-code is empty and no carrier-name is given",
                               "fill in carrier-code (e.g. PostNord), or carrier-name")
        carrier_code = "Other"  # the carrier is named by carrier-name only
    cmd["carrier_code"] = carrier_code
    for column, name in (("carrier-name", "carrier_name"), ("tracking-number", "tracking_number"),
                         ("ship-method", "ship_method")):
        value = row.get(column)
        if column == "tracking-number" and value.upper() == NULL_TRACKING:
            continue  # no tracking number
        if value:
            cmd[name] = value
    ship_from = {field: row.get(column) for column, field in SHIP_FROM_COLUMNS
                 if row.get(column)}
    if ship_from:
        cmd["ship_from"] = ship_from
    codes = [c.strip() for c in row.get("transparency_code").split(",") if c.strip()]
    if codes:
        cmd["transparency_codes"] = codes
    if _already_shipped(lookup(order_id), item_id):
        # a re-upload for what is already shipped: the marketplace overwrites the
        # carrier and tracking number; nothing is shipped again
        cmd["type"] = "correct-tracking"
        del cmd["ship_date"]
        cmd.pop("items", None)
        # the shipment's origin and codes were recorded with it; a correction
        # changes the carrier and tracking number only
        cmd.pop("ship_from", None)
        cmd.pop("transparency_codes", None)
    return cmd


def _already_shipped(info: OrderInfo | None, item_id: str | None) -> bool:
    """Is the line's order (or item) already shipped in full, so the line can only
    correct the shipment's tracking?"""
    if info is None:
        return False
    if not item_id:
        return info.status == "Shipped"
    return info.status in ("PartiallyShipped", "Shipped") and info.remaining.get(item_id) == 0


def _cancel_line(row: FeedRow, lookup: OrderLookup,
                 claimed: dict[tuple[str, str], tuple[int, int]]) -> dict[str, Any]:
    order_id = _order_id(row)
    item_id = row.get("amazon-order-item-code")
    if not row.get("cancellation-reason-code"):
        if item_id:
            raise LineRejected("cancellation-reason-code", "missing-value",
                               "cancellation-reason-code is empty but an item is given: an "
                               "acknowledgement is for a whole order",
                               "fill in the reason to cancel the item, or empty "
                               "amazon-order-item-code to acknowledge the order")
        # an acknowledgement: the order is confirmed, nothing canceled
        cmd: dict[str, Any] = {"type": "acknowledge", "order_id": order_id}
        if row.get("merchant-order-id"):
            cmd["merchant_order_id"] = row.get("merchant-order-id")
        return cmd
    reason = _value(row, "cancellation-reason-code")
    if not item_id:
        # the whole order: the ledger checks the reason code and the status
        return {"type": "cancel", "order_id": order_id, "by": "seller", "reason": reason}
    if reason not in CANCEL_TO_ADJUSTMENT_REASON:
        raise LineRejected("cancellation-reason-code", "bad-reason",
                           f"unknown cancel reason {reason!r}",
                           "use one of: " + ", ".join(rules.SELLER_CANCEL_REASONS))
    info = lookup(order_id)
    if info is None:
        raise LineRejected("order-id", "unknown-order", f"no order {order_id} in the ledger",
                           "check the order id, or place the order first")
    if item_id not in info.remaining:
        raise LineRejected("amazon-order-item-code", "unknown-item",
                           f"order {order_id} has no item {item_id!r}",
                           "known items: " + ", ".join(info.remaining))
    left = info.remaining[item_id]
    if info.status not in ("Pending", "Canceled"):  # those the ledger rejects by status
        earlier = claimed.get((order_id, item_id))
        if earlier is not None:
            raise LineRejected("amazon-order-item-code", "nothing-to-cancel",
                               f"item {item_id!r} of order {order_id} is already canceled "
                               f"by line {earlier[0]} of this feed",
                               "give each item once")
        if left <= 0:
            raise LineRejected("amazon-order-item-code", "nothing-to-cancel",
                               f"item {item_id!r} of order {order_id} has nothing left to "
                               "cancel (all shipped or canceled)",
                               "refund shipped items with an adjustment feed instead")
        claimed[(order_id, item_id)] = (row.line, left)
    return {"type": "adjust", "order_id": order_id, "items": [{
        "order_item_id": item_id, "reason": CANCEL_TO_ADJUSTMENT_REASON[reason],
        "quantity_cancelled": left}]}


def _adjust_line(row: FeedRow, lookup: OrderLookup,
                 claimed: dict[tuple[str, str], tuple[int, int]]) -> dict[str, Any]:
    order_id = _order_id(row)
    item_id = _value(row, "order-item-id")
    reason = _value(row, "adjustment-reason-code")
    currency = _value(row, "currency")
    if not _CURRENCY_RE.match(currency):
        raise LineRejected("currency", "bad-currency",
                           f"currency {currency!r} is not an ISO 4217 code",
                           "write e.g. SEK or EUR")
    amounts = {c: _amount(row, c) for c in _AMOUNT_COLUMNS}
    for c in _PROMOTION_COLUMNS:
        amounts[c] = str(abs(Decimal(_amount(row, c))))
    quantity = _quantity(row, "quantity-cancelled", allow_zero=True)
    info = lookup(order_id)
    if info is not None and currency.upper() != info.currency:
        raise LineRejected("currency", "wrong-currency",
                           f"currency {currency} is not the order's currency {info.currency}",
                           f"write {info.currency}")
    return {"type": "adjust", "order_id": order_id, "items": [{
        "order_item_id": item_id, "reason": reason, "quantity_cancelled": quantity,
        "item_price_adj": amounts["item-price-adj"], "item_tax_adj": amounts["item-tax-adj"],
        "shipping_price_adj": amounts["shipping-price-adj"],
        "shipping_tax_adj": amounts["shipping-tax-adj"],
        **{c.replace("-", "_"): amounts[c] for c in (
            "gift-wrap-price-adj", "gift-wrap-tax-adj", "item-promotion-adj", "ship-promotion-adj")
           if Decimal(amounts[c]) != 0}}]}


_BUILDERS = {SHIPPING_CONFIRMATION: _ship_line, CANCELLATION: _cancel_line,
             ADJUSTMENT: _adjust_line}


# --- applying through the ledger ------------------------------------------------------


def column_of(feed: str, err: dict[str, Any]) -> str | None:
    """The feed column a ledger error points at."""
    spec = spec_of(feed)
    fld = err.get("field")
    if err.get("code") == "time-backwards" or fld == "at":
        return None
    if not fld:
        return "order-id"  # the order's state is at fault (not open, pending, ...)
    name = _ITEM_PREFIX.sub("", fld)
    if not name:
        return spec.item_column
    head = re.sub(r"\[\d+\]$", "", name.split(".")[0])   # transparency_codes[1] -> ...
    return spec.fields.get(name) or spec.fields.get(head) or "order-id"


def ledger_lookup(ledger: "Ledger") -> OrderLookup:
    """An :data:`OrderLookup` reading the ledger (cached for one feed)."""
    cache: dict[str, OrderInfo | None] = {}

    def lookup(order_id: str) -> OrderInfo | None:
        if order_id not in cache:
            order = ledger.order(order_id)
            cache[order_id] = None if order is None or order.placed is None else OrderInfo(
                status=order.status, currency=order.placed.currency,
                remaining={k: it.remaining for k, it in order.items.items()})
        return cache[order_id]

    return lookup


def process_feed(ledger: "Ledger", feed: str, data: bytes, *, at: datetime,
                 dry_run: bool = False, encoding: str | None = None) -> FeedReport:
    """Apply a feed file at business time ``at``; every line accepted or rejected.

    Raises :class:`FeedError` (and applies nothing) when the whole file is bad.
    ``dry_run``: every line decided the same way, nothing written
    (``Ledger.apply_lines(dry_run=True)``).
    """
    read = read_feed_file(feed, data, encoding)  # whole-file problems first, before any lookup
    rows = read.rows
    digest = file_digest(data)
    ids = [command_id(feed, digest, r.line) for r in rows]
    known = ledger.recorder.known_commands(ids) if ids else set()
    lines = build_commands(feed, data, at=at, lookup=ledger_lookup(ledger), known=known,
                           encoding=encoding)
    todo = [fl for fl in lines if fl.command is not None]
    if todo:
        encoded = [json.dumps(fl.command) for fl in todo]
        for fl, out in zip(todo, ledger.apply_lines(encoded, dry_run=dry_run)):
            fl.events = list(out.events)
            if out.status == "applied":
                fl.status = "accepted"
            elif out.status == "duplicate":
                fl.status = "duplicate"
                fl.message = ALREADY_PROCESSED
            else:
                err = out.error or {}
                fl.reject(column_of(feed, err), err.get("code", "rejected"),
                          err.get("message", "rejected by the ledger"), err.get("hint"))
    return FeedReport(feed, digest, lines, read.encoding, read.template)
