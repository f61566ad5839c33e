"""The rules' constants and small pure helpers (the rules are in ``docs/rules.md``)."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from decimal import Decimal

from .errors import CommandRejected

HOLD = timedelta(minutes=30)
VERIFICATION_LIMIT = timedelta(days=21)
SHIP_WARNING = timedelta(days=23)
SHIP_LIMIT = timedelta(days=30)
DEFAULT_SHIP_BY = timedelta(days=2)
DEFAULT_DELIVER_BY = timedelta(days=7)

#: Seller Central cancel reasons and their feed codes (docs/rules.md 3.7).
SELLER_CANCEL_REASONS: dict[str, str] = {
    "NoInventory": "No inventory",
    "BuyerCanceled": "Buyer canceled",
    "GeneralAdjustment": "General adjustment",
    "PricingError": "Pricing error",
    "ShippingAddressUndeliverable": "Undeliverable shipping address",
    "CustomerExchange": "Customer exchange",
}

#: The marketplace's adjustment reason codes (docs/rules.md 3.11), plus BuyerCanceled.
ADJUSTMENT_REASONS: frozenset[str] = frozenset(
    {
        "NoInventory",
        "CustomerReturn",
        "GeneralAdjustment",
        "CouldNotShip",
        "DifferentItem",
        "Abandoned",
        "CustomerCancel",
        "PriceError",
        "ProductOutofStock",
        "CustomerAddressIncorrect",
        "Exchange",
        "Other",
        "CarrierCreditDecision",
        "RiskAssessmentInformationNotValid",
        "CarrierCoverageFailure",
        "TransactionRecord",
        "Undeliverable",
        "RefusedDelivery",
        "BuyerCanceled",
    }
)

#: Reasons under which a seller cancel or adjustment is the buyer's wish: not
#: counted against the seller while the buyer has an open cancellation request.
BUYER_WISH_REASONS: frozenset[str] = frozenset({"BuyerCanceled", "CustomerCancel"})

LANGUAGE_RE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$")
COUNTRY_RE = re.compile(r"^[A-Z]{2}$")

WARNING_TEXT = "Confirm as shipped by {date} to avoid cancellation"


def warning_text(ship_by: datetime) -> str:
    return WARNING_TEXT.format(date=ship_by.date().isoformat())


def check_money(value: Decimal, field: str, *, allow_zero: bool = True) -> None:
    if not value.is_finite():
        raise CommandRejected(
            "bad-amount", f"{value} is not a finite amount", field=field,
            hint='write amounts as decimal strings like "12.50"',
        )
    if value < 0 or (not allow_zero and value == 0):
        raise CommandRejected(
            "bad-amount", f"amount {value} must not be negative", field=field,
            hint="amounts are positive decimals; refunds are positive adjustments",
        )


def parse_ship_date(text: str, field: str = "ship_date") -> date | datetime:
    """A ship date is ``yyyy-mm-dd`` or a full ISO-8601 timestamp with offset."""
    text = text.strip()
    try:
        if len(text) == 10:
            return date.fromisoformat(text)
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise CommandRejected(
            "bad-date", f"ship date {text!r} is neither yyyy-mm-dd nor an ISO timestamp",
            field=field, hint="write e.g. 2026-03-02 or 2026-03-02T14:00:00+01:00",
        ) from None
    if value.tzinfo is None:
        raise CommandRejected(
            "bad-date", f"ship date {text!r} has no UTC offset", field=field,
            hint="add an offset such as +01:00 or Z, or give just the date",
        )
    return value


def check_ship_date(value: date | datetime, purchased: datetime, now: datetime,
                    field: str = "ship_date") -> None:
    """Rule 3.8 [ours]: not before the purchase date nor after the confirmation."""
    if isinstance(value, datetime):
        early = value < purchased
        late = value > now
    else:
        early = value < purchased.date()
        late = value > now.astimezone(purchased.tzinfo).date() and value > now.date()
    if early:
        raise CommandRejected(
            "ship-date-before-purchase",
            f"ship date {value.isoformat()} is before the purchase date "
            f"{purchased.isoformat()}",
            field=field, hint="give the day the parcel was handed to the carrier",
        )
    if late:
        raise CommandRejected(
            "ship-date-in-future",
            f"ship date {value.isoformat()} is after the confirmation time {now.isoformat()}",
            field=field, hint="confirm a shipment once it has been sent",
        )
