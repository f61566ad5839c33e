"""The command file: JSON Lines, one command per line, tagged by ``"type"``.

This module is the public contract other tools rely on. Each command is a
msgspec Struct; the union :data:`AnyCommand` decodes any line, rejects unknown
types and unknown fields, and checks types and simple bounds. Rules that need
the ledger's state live in :mod:`ledger.domain`.
"""

from __future__ import annotations

import decimal
import re
from datetime import datetime, timezone
from decimal import Decimal
from typing import Annotated, Literal, Union

import msgspec
import msgspec.inspect
import msgspec.structs
from msgspec import Meta

from .errors import CommandRejected
from .events import ZERO, Address, Attachment, Buyer, MarketInfo, ShipFrom

ORDER_ID_PATTERN = r"^\d{3}-\d{7}-\d{7}$"
ORDER_ID_RE = re.compile(ORDER_ID_PATTERN)

#: Limits that keep hostile input from reaching the store (see docs/reliability.md).
MAX_LINE_BYTES = 1 << 20  # one command line, in bytes
MAX_QUANTITY = 1_000_000_000
MAX_ID_LENGTH = 200  # command ids, SKUs and actors: they become database keys
MAX_AMOUNT = Decimal(10) ** 12  # exclusive
AMOUNT_PLACES = 6  # at most this many decimal places
EARLIEST = datetime(1970, 1, 1, tzinfo=timezone.utc)
LATEST = datetime(9000, 1, 1, tzinfo=timezone.utc)
#: no control characters (NUL cannot be stored in PostgreSQL text at all)
NO_CONTROL_PATTERN = r"^[^\x00-\x1f\x7f]*$"

OrderId = Annotated[str, Meta(pattern=ORDER_ID_PATTERN)]
At = Annotated[datetime, Meta(tz=True)]
NonEmpty = Annotated[str, Meta(min_length=1)]
Key = Annotated[str, Meta(min_length=1, max_length=MAX_ID_LENGTH, pattern=NO_CONTROL_PATTERN)]
ItemId = Annotated[str, Meta(min_length=1, max_length=32, pattern=NO_CONTROL_PATTERN)]
Positive = Annotated[int, Meta(ge=1, le=MAX_QUANTITY)]
NonNegative = Annotated[int, Meta(ge=0, le=MAX_QUANTITY)]


class Command(
    msgspec.Struct,
    kw_only=True,
    frozen=True,
    forbid_unknown_fields=True,
    tag_field="type",
):
    #: business time; null means "when the ledger records it" (taken under the
    #: writer lock, so it never goes backwards)
    at: At | None
    command_id: Key | None = None
    actor: Key | None = None

    #: who acts when the line does not say
    DEFAULT_ACTOR = "seller"


class SetInventory(Command, tag="set-inventory", kw_only=True, frozen=True):
    sku: Key
    quantity: NonNegative


class PlaceItem(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    order_item_id: ItemId
    sku: Key
    title: str
    quantity: Positive
    item_price: Decimal
    item_tax: Decimal = ZERO
    shipping_price: Decimal = ZERO
    shipping_tax: Decimal = ZERO
    #: gift wrap charged (optional: 0 = none, or not known to the ledger)
    gift_wrap_price: Decimal = ZERO
    gift_wrap_tax: Decimal = ZERO
    #: promotion discounts the marketplace gave (kept and shown, not charged)
    promotion_discount: Decimal = ZERO
    ship_promotion_discount: Decimal = ZERO
    price_designation: str | None = None


class Place(Command, tag="place", kw_only=True, frozen=True):
    DEFAULT_ACTOR = "buyer"

    order_id: OrderId
    items: Annotated[list[PlaceItem], Meta(min_length=1)]
    currency: Annotated[str, Meta(pattern=r"^[A-Z]{3}$")]
    ship_service_level: NonEmpty
    buyer: Buyer
    ship_to: Address
    latest_ship_date: At | None = None
    latest_delivery_date: At | None = None
    #: parts the marketplace withheld (their missing fields hold a placeholder)
    restricted: list[Literal["ship_to", "buyer"]] = []
    #: the marketplace's own fields (service category, Prime, business order ...)
    market: MarketInfo | None = None


class Cancel(Command, tag="cancel", kw_only=True, frozen=True):
    order_id: OrderId
    by: Literal["buyer", "seller"]
    reason: str | None = None
    memo: str | None = None


class RequestCancel(Command, tag="request-cancel", kw_only=True, frozen=True):
    DEFAULT_ACTOR = "buyer"

    order_id: OrderId
    reason: str | None = None


class VerifyPayment(Command, tag="verify-payment", kw_only=True, frozen=True):
    DEFAULT_ACTOR = "payments"

    order_id: OrderId
    outcome: Literal["verified", "extended", "declined", "fraud"]


class ShipItem(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    order_item_id: ItemId
    quantity: Positive


class Ship(Command, tag="ship", kw_only=True, frozen=True):
    order_id: OrderId
    carrier_code: NonEmpty
    ship_date: NonEmpty
    carrier_name: str | None = None
    tracking_number: str | None = None
    ship_method: str | None = None
    items: Annotated[list[ShipItem], Meta(min_length=1)] | None = None
    #: where the shipment left from (kept and shown; no rule reads it)
    ship_from: ShipFrom | None = None
    #: the Transparency codes of the units shipped (kept and shown)
    transparency_codes: list[NonEmpty] = []


class AdjustItem(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    order_item_id: ItemId
    reason: NonEmpty
    quantity_cancelled: NonNegative = 0
    item_price_adj: Decimal = ZERO
    item_tax_adj: Decimal = ZERO
    shipping_price_adj: Decimal = ZERO
    shipping_tax_adj: Decimal = ZERO
    gift_wrap_price_adj: Decimal = ZERO
    gift_wrap_tax_adj: Decimal = ZERO
    #: part of the item's / shipping's promotion discount taken back from this refund
    #: (the buyer gets item_price_adj - item_promotion_adj); docs/decisions.md
    item_promotion_adj: Decimal = ZERO
    ship_promotion_adj: Decimal = ZERO


class Adjust(Command, tag="adjust", kw_only=True, frozen=True):
    order_id: OrderId
    items: Annotated[list[AdjustItem], Meta(min_length=1)]


class SendMessage(Command, tag="send-message", kw_only=True, frozen=True):
    order_id: OrderId
    purpose: NonEmpty
    language: NonEmpty
    body: str
    attachments: list[Attachment] = []
    phone_reason: Literal["warranty", "carrier", "manufacturer"] | None = None


class ReceiveMessage(Command, tag="receive-message", kw_only=True, frozen=True):
    order_id: OrderId
    sender: Literal["buyer", "customer-service"] = msgspec.field(name="from")
    body: str
    requests_address_change: bool = False


class ChangeAddress(Command, tag="change-address", kw_only=True, frozen=True):
    order_id: OrderId
    ship_to: Address


class Acknowledge(Command, tag="acknowledge", kw_only=True, frozen=True):
    DEFAULT_ACTOR = "seller"

    order_id: OrderId
    #: the seller's own id for the order (the feed's merchant-order-id)
    merchant_order_id: Key | None = None


class ReleaseRestricted(Command, tag="release-restricted", kw_only=True, frozen=True):
    """Data the marketplace withheld at placing, given now (replaces the placeholders)."""

    DEFAULT_ACTOR = "marketplace"

    order_id: OrderId
    ship_to: Address | None = None
    buyer: Buyer | None = None


class CorrectTracking(Command, tag="correct-tracking", kw_only=True, frozen=True):
    """Another carrier/tracking number for an order already shipped in full."""

    order_id: OrderId
    carrier_code: NonEmpty
    carrier_name: str | None = None
    tracking_number: str | None = None
    ship_method: str | None = None


class Tick(Command, tag="tick", kw_only=True, frozen=True):
    DEFAULT_ACTOR = "ledger"


COMMAND_TYPES: tuple[type[Command], ...] = (
    SetInventory,
    Place,
    Cancel,
    RequestCancel,
    VerifyPayment,
    Ship,
    Adjust,
    SendMessage,
    ReceiveMessage,
    ChangeAddress,
    Acknowledge,
    ReleaseRestricted,
    CorrectTracking,
    Tick,
)

AnyCommand = Union[COMMAND_TYPES]  # type: ignore[valid-type]

COMMAND_NAMES: dict[type[Command], str] = {
    cls: cls.__struct_config__.tag for cls in COMMAND_TYPES  # type: ignore[misc]
}

_decoder = msgspec.json.Decoder(AnyCommand)


def command_type(command: Command) -> str:
    """The command's ``"type"`` as written in the command file."""
    return COMMAND_NAMES[type(command)]


def actor_of(command: Command) -> str:
    """Who did it: the line's ``actor``, else the command type's default."""
    if command.actor:
        return command.actor
    if isinstance(command, Cancel):
        return command.by
    if isinstance(command, ReceiveMessage):
        return command.sender
    return command.DEFAULT_ACTOR


def _where(msg: str) -> str:
    """msgspec's message without its trailing `` - at `$.path``` (shown to people only)."""
    text, sep, _ = msg.rpartition(" - at `")
    return text if sep else msg


_TAGS: dict[str, type[Command]] = {tag: cls for cls, tag in COMMAND_NAMES.items()}
#: untyped decoding, to locate an error; numbers with a fraction stay exact
_plain = msgspec.json.Decoder(float_hook=Decimal)
_plain_encoder = msgspec.json.Encoder(decimal_format="number")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_FIELD_HINT = "see docs/command-file.md for the field's type and limits"


def _bad_utf8(line: bytes) -> CommandRejected | None:
    """Our own UTF-8 check: the decoder's wording for bad bytes varies between versions."""
    if line.isascii():
        return None
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return CommandRejected(
            "malformed-json", f"the line is not valid UTF-8 (byte {exc.start}: {exc.reason})",
            hint="save the command file as UTF-8")
    return None


def parse_command(line: str | bytes) -> Command:
    """Decode one command-file line, or raise :class:`CommandRejected`.

    The rejection's code and field are decided from the bytes, the line's
    structure and the command types, never from the wording of the decoder's
    messages (which changes between msgspec versions); its text is only shown.
    """
    size = len(line) if isinstance(line, (bytes, bytearray, memoryview)) else (
        len(line) if len(line) * 4 <= MAX_LINE_BYTES else len(line.encode("utf-8", "replace")))
    if size > MAX_LINE_BYTES:
        raise CommandRejected(
            "line-too-long", f"the line has {size:,} bytes; the limit is {MAX_LINE_BYTES:,}",
            hint="split large message bodies or check that lines end with a newline")
    if isinstance(line, (bytearray, memoryview)):
        line = bytes(line)
    if isinstance(line, bytes):
        bad = _bad_utf8(line)
        if bad is not None:
            raise bad
    try:
        command = _decoder.decode(line)
    except msgspec.ValidationError as exc:  # well-formed JSON that is not a valid command
        raise _classify(line, _where(str(exc))) from None
    except msgspec.DecodeError as exc:  # not JSON at all
        raise CommandRejected(
            "malformed-json", f"the line is not valid JSON ({exc})",
            hint="write one JSON object per line") from None
    except RecursionError:
        raise CommandRejected(
            "malformed-json", "the line nests JSON arrays or objects too deeply",
            hint="write one flat JSON object per line") from None
    except Exception as exc:  # noqa: BLE001 - whatever the decoder raises, the line is bad
        raise CommandRejected(
            "malformed-json", f"the line cannot be decoded ({type(exc).__name__}: {exc})",
            hint="write one JSON object per line") from None
    _check_limits(command)
    return command


def _classify(line: str | bytes, text: str) -> CommandRejected:
    """Find which part of a well-formed line breaks the command types, and why."""
    try:
        obj = _plain.decode(line)
    except (msgspec.DecodeError, RecursionError):
        return CommandRejected("invalid-field", text, hint=_FIELD_HINT)
    if not isinstance(obj, dict):
        return CommandRejected(
            "bad-command", f"Expected `object`, got `{_kind(obj)}`",
            hint='each line must be a JSON object with a "type" field')
    if "type" not in obj:
        return CommandRejected("missing-field", "Object missing required field `type`",
                               field="type", hint="add the field")
    tag = obj["type"]
    if not isinstance(tag, str):
        return CommandRejected(
            "bad-command", f'"type" must be a string, not a JSON {_kind(tag)}', field="type",
            hint='each line must be a JSON object with a "type" field')
    cls = _TAGS.get(tag)
    if cls is None:
        known = ", ".join(COMMAND_NAMES.values())
        return CommandRejected("unknown-type", f"unknown command type {tag[:80]!r}",
                               field="type", hint=f"use one of: {known}")
    try:
        found = _locate(obj, cls, "", top=True)
    except RecursionError:
        found = None
    return found or CommandRejected("invalid-field", text, hint=_FIELD_HINT)


def _kind(value: object) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean",
            type(None): "null"}.get(type(value), "number")


def _locate(obj: dict[str, object], cls: type, prefix: str, *, top: bool = False) -> CommandRejected | None:
    """The first field of ``obj`` that does not fit Struct ``cls``, as a rejection."""
    fields = msgspec.structs.fields(cls)
    names = {f.encode_name for f in fields}
    for key in obj:
        if key not in names and not (top and key == "type"):
            return CommandRejected(
                "unknown-field", f"Object contains unknown field `{key[:80]}`",
                field=prefix + key,
                hint="remove the field or check its spelling against docs/command-file.md")
    for f in fields:
        if f.required and f.encode_name not in obj:
            return CommandRejected(
                "missing-field", f"Object missing required field `{f.encode_name}`",
                field=prefix + f.encode_name, hint="add the field")
    for f in fields:
        if f.encode_name not in obj:
            continue
        value = obj[f.encode_name]
        path = prefix + f.encode_name
        try:
            msgspec.json.decode(_plain_encoder.encode(value), type=f.type)
            continue
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            text = _where(str(exc))
        except RecursionError:
            text = "the value nests arrays or objects too deeply"
        inner = _struct_of(f.type)
        if inner is not None:
            items = ([(path + ".", value)] if isinstance(value, dict) else
                     [(f"{path}[{n}].", v) for n, v in enumerate(value)]
                     if isinstance(value, list) else [])
            for where, item in items:
                found = _locate(item, inner, where) if isinstance(item, dict) else None
                if found is not None:
                    return found
        return _field_error(path, f.type, value, text)
    return None


def _args(tp: object) -> tuple[object, ...]:
    """The types inside ``T | None``, ``list[T]`` and ``Annotated[T, ...]``."""
    if getattr(tp, "__metadata__", None) is not None:  # Annotated
        return (tp.__origin__,)  # type: ignore[attr-defined]
    return tuple(getattr(tp, "__args__", ()) or ())


def _struct_of(tp: object) -> type | None:
    """The Struct type a field holds directly, optionally or as list items."""
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return tp
    for arg in _args(tp):
        found = _struct_of(arg)
        if found is not None:
            return found
    return None


def _holds(tp: object, wanted: type) -> bool:
    return tp is wanted or any(_holds(arg, wanted) for arg in _args(tp))


def _field_error(path: str, tp: object, value: object, text: str) -> CommandRejected:
    got = _shown(value)
    if path.rsplit(".", 1)[-1] == "order_id" and isinstance(value, str):
        return CommandRejected(
            "bad-order-id", f"order id must have the 3-7-7 digit form, not {got}", field=path,
            hint="write it like 203-1234567-7654321")
    expected = _describe(msgspec.inspect.type_info(tp))
    if _holds(tp, datetime) and _naive_time(value):
        return CommandRejected(
            "bad-time", f"{path} must be {expected}, not {got}", field=path,
            hint="write times as ISO-8601 with an offset, e.g. 2026-03-01T10:00:00+01:00")
    if isinstance(value, str) and _CONTROL_RE.search(value):
        return CommandRejected(
            "invalid-field", "the text contains a control character (such as NUL or a "
            "line break)", field=path, hint="remove control characters from ids and SKUs")
    return CommandRejected("invalid-field", f"{path} must be {expected}, not {got}",
                           field=path, hint=_FIELD_HINT)


def _naive_time(value: object) -> bool:
    """A well-formed ISO-8601 time without its UTC offset."""
    if not isinstance(value, str):
        return False
    try:
        return datetime.fromisoformat(value).tzinfo is None
    except ValueError:
        return False


def _shown(value: object) -> str:
    if isinstance(value, (dict, list)) or value is None:
        return f"a JSON {_kind(value)}"
    text = msgspec.json.encode(value).decode()
    return (text if len(text) <= 60 else text[:57] + "...") + (
        " (a string)" if isinstance(value, str) else "")


def _describe(t: msgspec.inspect.Type) -> str:
    """What a field accepts, in words (from the command types, not the decoder's text)."""
    mi = msgspec.inspect
    if isinstance(t, mi.UnionType):
        parts = [_describe(x) for x in t.types if not isinstance(x, mi.NoneType)]
        return " or ".join(parts) + (" or null" if t.includes_none else "")
    if isinstance(t, mi.IntType):
        bounds = [f">= {t.ge}" if t.ge is not None else "", f"> {t.gt}" if t.gt is not None
                  else "", f"<= {t.le:,}" if t.le is not None else "",
                  f"< {t.lt:,}" if t.lt is not None else ""]
        return " ".join(["an integer", " and ".join(b for b in bounds if b)]).strip()
    if isinstance(t, mi.StrType):
        words = ["text"]
        if t.min_length and t.max_length:
            words.append(f"of {t.min_length} to {t.max_length} characters")
        elif t.min_length:
            words.append("that is not empty" if t.min_length == 1 else
                         f"of at least {t.min_length} characters")
        elif t.max_length:
            words.append(f"of at most {t.max_length} characters")
        if t.pattern == NO_CONTROL_PATTERN:
            words.append("without control characters")
        elif t.pattern:
            words.append(f"matching {t.pattern}")
        return " ".join(words)
    if isinstance(t, mi.LiteralType):
        return "one of " + ", ".join(str(v) for v in t.values)
    if isinstance(t, mi.DateTimeType):
        return "an ISO-8601 time" + (" with a UTC offset (such as +01:00 or Z)" if t.tz else "")
    if isinstance(t, mi.ListType):
        size = f" of at least {t.min_length}" if t.min_length else ""
        return f"a list{size} of {_describe(t.item_type)}"
    if isinstance(t, mi.StructType):
        return "an object"
    return {mi.DecimalType: "a decimal number (as a string or number)",
            mi.BoolType: "true or false", mi.FloatType: "a number"}.get(
        type(t), type(t).__name__.removesuffix("Type").lower())


def _check_time(value: datetime, field: str) -> None:
    # compare years first: comparing aware datetimes across offsets is slow
    if not (1970 < value.year < 8999 or EARLIEST <= value < LATEST):
        raise CommandRejected(
            "bad-time", f"{field} {value.isoformat()} is outside the years 1970 to 8999",
            field=field, hint="check the year of the timestamp")


def _check_amount(value: Decimal, field: str) -> None:
    if not value.is_finite():
        raise CommandRejected(
            "bad-amount", f"{value} is not a finite amount", field=field,
            hint='write amounts as decimal strings like "12.50"')
    if abs(value) >= MAX_AMOUNT:
        raise CommandRejected(
            "bad-amount", f"amount {value} is too large (the limit is {MAX_AMOUNT:,})",
            field=field, hint="check the amount's decimal point and exponent")
    if (value.as_tuple().exponent < -AMOUNT_PLACES  # type: ignore[operator]
            and value != value.quantize(Decimal(1).scaleb(-AMOUNT_PLACES))):
        raise CommandRejected(
            "bad-amount", f"amount {value} has more than {AMOUNT_PLACES} decimal places",
            field=field, hint='write amounts like "12.50"')


_AMOUNTS = ("item_price", "item_tax", "shipping_price", "shipping_tax", "gift_wrap_price",
            "gift_wrap_tax")
_PROMOTIONS = ("item_promotion_adj", "ship_promotion_adj")
_PLACE_AMOUNTS = _AMOUNTS + ("promotion_discount", "ship_promotion_discount")
_ADJ_AMOUNTS = tuple(comp + "_adj" for comp in _AMOUNTS) + _PROMOTIONS
_NEG_MAX_AMOUNT = -MAX_AMOUNT


#: the amounts' decimal places, as a quantum; a context of our own, so that the
#: caller's decimal context (its precision, its traps) changes nothing here
_PLACES = Decimal(1).scaleb(-AMOUNT_PLACES)
_AMOUNT_CONTEXT = decimal.Context(prec=40, traps=[])


def _amount_ok(value: Decimal) -> bool:
    """The common case of :func:`_check_amount`, cheaply: finite, in range, and
    exact to ``AMOUNT_PLACES`` decimal places (anything else goes through
    :func:`_check_amount`, which decides and words the rejection). Rounding to
    the places and comparing costs a third of ``as_tuple()``."""
    return (value.is_finite() and _NEG_MAX_AMOUNT < value < MAX_AMOUNT
            and value == value.quantize(_PLACES, context=_AMOUNT_CONTEXT))


def _check_limits(command: Command) -> None:
    """Bounds msgspec's schema cannot express: time range, finite bounded amounts.

    Per line, so the common case does little: the years compared without
    building datetimes, field names for messages built only for a rejection.
    """
    at = command.at
    if at is not None and not 1970 < at.year < 8999:
        _check_time(at, "at")
    if isinstance(command, Place):
        for name in ("latest_ship_date", "latest_delivery_date"):
            value = getattr(command, name)
            if value is not None and not 1970 < value.year < 8999:
                _check_time(value, name)
        for i, item in enumerate(command.items):
            for comp in _PLACE_AMOUNTS:
                value = getattr(item, comp)
                # an amount the line leaves out is the shared default: nothing to check
                if value is not ZERO and not _amount_ok(value):
                    _check_amount(value, f"items[{i}].{comp}")
        if command.market is not None:
            for name in ("earliest_ship_date", "earliest_delivery_date"):
                value = getattr(command.market, name)
                if value is not None:
                    if value.tzinfo is None:
                        raise CommandRejected(
                            "bad-time", f"market.{name} has no UTC offset",
                            field=f"market.{name}", hint="write e.g. 2026-03-01T10:00:00+00:00")
                    if not 1970 < value.year < 8999:
                        _check_time(value, f"market.{name}")
    elif isinstance(command, Adjust):
        for i, adj in enumerate(command.items):
            for comp in _ADJ_AMOUNTS:
                value = getattr(adj, comp)
                if value is not ZERO and not _amount_ok(value):
                    _check_amount(value, f"items[{i}].{comp}")


def encode_command(command: Command) -> bytes:
    """Encode a command back to its command-file line (without newline)."""
    return msgspec.json.encode(command)
