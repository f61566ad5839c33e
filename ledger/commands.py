"""The command file: JSON Lines, one command per line, tagged by ``"type"``.

This module is the public contract other tools rely on. Each command is a
msgspec Struct; the union :data:`AnyCommand` decodes any line, rejects unknown
types and unknown fields, and checks types and simple bounds. Rules that need
the ledger's state live in :mod:`ledger.domain`.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from decimal import Decimal
from typing import Annotated, Literal, Union

import msgspec
from msgspec import Meta

from .errors import CommandRejected
from .events import Address, Attachment, Buyer

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
    at: At
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
    item_tax: Decimal = Decimal("0")
    shipping_price: Decimal = Decimal("0")
    shipping_tax: Decimal = Decimal("0")


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


class AdjustItem(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    order_item_id: ItemId
    reason: NonEmpty
    quantity_cancelled: NonNegative = 0
    item_price_adj: Decimal = Decimal("0")
    item_tax_adj: Decimal = Decimal("0")
    shipping_price_adj: Decimal = Decimal("0")
    shipping_tax_adj: Decimal = Decimal("0")


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


def _where(msg: str) -> tuple[str, str | None]:
    """Split msgspec's ``... - at `$.items[0].quantity``` into text and field."""
    text, sep, path = msg.rpartition(" - at `")
    if not sep:
        return msg, None
    field = path.rstrip("`").removeprefix("$").removeprefix(".")
    return text, field or None


def parse_command(line: str | bytes) -> Command:
    """Decode one command-file line, or raise :class:`CommandRejected`."""
    size = len(line) if isinstance(line, (bytes, bytearray, memoryview)) else (
        len(line) if len(line) * 4 <= MAX_LINE_BYTES else len(line.encode("utf-8", "replace")))
    if size > MAX_LINE_BYTES:
        raise CommandRejected(
            "line-too-long", f"the line has {size:,} bytes; the limit is {MAX_LINE_BYTES:,}",
            hint="split large message bodies or check that lines end with a newline")
    try:
        command = _decoder.decode(line)
    except msgspec.DecodeError as exc:
        msg = str(exc)
        if msg.startswith("JSON is malformed") or msg.startswith("Input data was truncated"):
            raise CommandRejected(
                "malformed-json",
                f"the line is not valid JSON ({msg})",
                hint="write one JSON object per line",
            ) from None
        text, field = _where(msg)
        if "Invalid value" in text and field == "type":
            known = ", ".join(COMMAND_NAMES.values())
            raise CommandRejected(
                "unknown-type",
                f"unknown command type ({text})",
                field="type",
                hint=f"use one of: {known}",
            ) from None
        if text.startswith("Object contains unknown field"):
            raise CommandRejected(
                "unknown-field",
                text,
                field=field,
                hint="remove the field or check its spelling against docs/command-file.md",
            ) from None
        if text.startswith("Object missing required field"):
            raise CommandRejected(
                "missing-field", text, field=field, hint="add the field"
            ) from None
        if field == "type" or text.startswith("Expected `object`"):
            raise CommandRejected(
                "bad-command", text, field=field,
                hint='each line must be a JSON object with a "type" field',
            ) from None
        if field and field.endswith("order_id") and "regex" in text:
            raise CommandRejected(
                "bad-order-id",
                f"order id must have the 3-7-7 digit form ({text})",
                field=field,
                hint="write it like 203-1234567-7654321",
            ) from None
        if "timezone" in text or "tz" in text:
            raise CommandRejected(
                "bad-time", text, field=field,
                hint="write times as ISO-8601 with an offset, e.g. 2026-03-01T10:00:00+01:00",
            ) from None
        if "regex" in text and "x00-" in text:
            raise CommandRejected(
                "invalid-field", "the text contains a control character (such as NUL or a "
                "line break)", field=field, hint="remove control characters from ids and SKUs",
            ) from None
        raise CommandRejected(
            "invalid-field", text, field=field,
            hint="see docs/command-file.md for the field's type and limits") from None
    except UnicodeDecodeError as exc:  # bytes inside a JSON string that are not UTF-8
        raise CommandRejected(
            "malformed-json", f"the line is not valid UTF-8 (byte {exc.start}: {exc.reason})",
            hint="save the command file as UTF-8") from None
    except RecursionError:
        raise CommandRejected(
            "malformed-json", "the line nests JSON arrays or objects too deeply",
            hint="write one flat JSON object per line") from None
    except Exception as exc:  # noqa: BLE001 - whatever msgspec raises, the line is bad
        raise CommandRejected(
            "malformed-json", f"the line cannot be decoded ({type(exc).__name__}: {exc})",
            hint="write one JSON object per line") from None
    _check_limits(command)
    return command


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


_AMOUNTS = ("item_price", "item_tax", "shipping_price", "shipping_tax")


def _check_limits(command: Command) -> None:
    """Bounds msgspec's schema cannot express: time range, finite bounded amounts."""
    _check_time(command.at, "at")
    if isinstance(command, Place):
        for name in ("latest_ship_date", "latest_delivery_date"):
            value = getattr(command, name)
            if value is not None:
                _check_time(value, name)
        for i, item in enumerate(command.items):
            for comp in _AMOUNTS:
                _check_amount(getattr(item, comp), f"items[{i}].{comp}")
    elif isinstance(command, Adjust):
        for i, adj in enumerate(command.items):
            for comp in _AMOUNTS:
                _check_amount(getattr(adj, comp + "_adj"), f"items[{i}].{comp}_adj")


def encode_command(command: Command) -> bytes:
    """Encode a command back to its command-file line (without newline)."""
    return msgspec.json.encode(command)
