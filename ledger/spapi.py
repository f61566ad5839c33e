"""Import orders from the Selling Partner API (Orders API v0) into the ledger.

Every v0 ``OrderStatus`` is mapped (``STATUS_AS``, ``STATUS_SKIPPED``); orders fetched
without a restricted data token import with placeholders, marked ``restricted``.

Input is what ``getOrders`` returns (``payload.Orders``), with each order's
``getOrderItems`` result either inlined (key ``OrderItems`` on the order) or
given separately (:func:`load_items`). Each order becomes a short, fixed list of
ledger commands chosen by its ``OrderStatus`` (:func:`plan_order`, pure);
:func:`import_orders` sorts every command of the file by time and applies them
in one run of ``Ledger.apply_lines``, then reports per order.

Command ids are ``spapi:<AmazonOrderId>:<step>`` so importing the same file
twice adds nothing; a later export of the same order (say Unshipped, then
Shipped) adds only the new steps. The mapping and its reasons are in
``docs/sp-api-import.md``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Iterable

from . import rules
from .commands import ORDER_ID_RE
from .events import RESTRICTED

if TYPE_CHECKING:  # pragma: no cover
    from .application import Ledger

#: Statuses this import maps; anything else is reported, not guessed.
KNOWN_STATUSES = ("Pending", "Unshipped", "PartiallyShipped", "Shipped", "Canceled",
                  "InvoiceUnconfirmed", "PendingAvailability", "Unfulfillable")

#: API statuses imported as another one: (the status planned, the note given).
STATUS_AS: dict[str, tuple[str, str]] = {
    "InvoiceUnconfirmed": ("Shipped", "InvoiceUnconfirmed (every item shipped, the invoice not yet "
                                      "confirmed): imported as Shipped, every item shipped"),
    "PendingAvailability": ("Pending", "PendingAvailability (a pre-order, not yet released): "
                                       "imported as Pending"),
}

#: API statuses skipped, with the reason reported.
STATUS_SKIPPED: dict[str, str] = {
    "Unfulfillable": ("Unfulfillable (the API uses it only for Multi-Channel Fulfillment "
                      "orders, which Amazon fulfils): not seller-fulfilled, not imported"),
}

#: Marketplace id -> country (the Selling Partner API's published ids).
MARKETPLACE_COUNTRY: dict[str, str] = {
    "A2NODRKZP88ZB9": "SE", "A1PA6795UKMFR9": "DE", "A1F83G8C2ARO7P": "GB",
    "A13V1IB3VIYZZH": "FR", "APJ6JRA9NG5V4": "IT", "A1RKKUPIHCS9HS": "ES",
    "A1805IZSGTT6HS": "NL", "A1C3SOZRARQ6R3": "PL", "AMEN7PMS3EDWL": "BE",
    "A28R8C7NBKEWEA": "IE", "A33AVAJ2PDY3EV": "TR", "ATVPDKIKX0DER": "US",
    "A2EUQ1WTGCTBG2": "CA", "A1AM78C64UM0Y8": "MX", "A2Q3Y263D00KWC": "BR",
    "A1VC38T7YXB528": "JP", "AAHKV2X7AFYLW": "CN", "A39IBJ37TRP1C6": "AU",
    "A21TJRUUN4KGV": "IN", "A19VAU5U5O7RUS": "SG", "A2VIGQ35RCS4UG": "AE",
    "A17E79C6D8DWNP": "SA", "ARBP9OOSHTCHU": "EG",
}

#: Country -> the buyer language assumed when the order does not say.
COUNTRY_LANGUAGE: dict[str, str] = {
    "SE": "sv-SE", "DE": "de-DE", "AT": "de-AT", "GB": "en-GB", "FR": "fr-FR",
    "IT": "it-IT", "ES": "es-ES", "NL": "nl-NL", "PL": "pl-PL", "BE": "fr-BE",
    "IE": "en-IE", "TR": "tr-TR", "US": "en-US", "CA": "en-CA", "MX": "es-MX",
    "BR": "pt-BR", "JP": "ja-JP", "CN": "zh-CN", "AU": "en-AU", "IN": "en-IN",
    "SG": "en-SG", "AE": "ar-AE", "SA": "ar-SA", "EG": "ar-EG", "DK": "da-DK",
    "NO": "nb-NO", "FI": "fi-FI",
}

IMPORTED_CARRIER_CODE = "Other"
IMPORTED_CARRIER_NAME = "Imported"
#: The latest moment a step may take: just before the 30-day rule fires.
_LAST = rules.SHIP_LIMIT - timedelta(seconds=1)

#: Ledger error fields of a ``place`` command -> the API's field names.
_API_FIELDS = {
    "order_id": "AmazonOrderId", "currency": "OrderTotal.CurrencyCode",
    "ship_service_level": "ShipServiceLevel", "latest_ship_date": "LatestShipDate",
    "latest_delivery_date": "LatestDeliveryDate", "buyer.language": "BuyerInfo (language)",
    "ship_to.name": "ShippingAddress.Name", "ship_to.address_1": "ShippingAddress.AddressLine1",
    "ship_to.city": "ShippingAddress.City", "ship_to.postal_code": "ShippingAddress.PostalCode",
    "ship_to.country": "ShippingAddress.CountryCode",
}


class SpApiError(Exception):
    """The input as a whole is unusable (not JSON, no ``payload.Orders``)."""


class OrderProblem(Exception):
    """One order cannot be turned into commands."""


@dataclass
class Step:
    name: str
    at: datetime
    command: dict
    status: str = "pending"  # applied | duplicate | rejected
    error: dict | None = None
    events: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        out: dict = {"step": self.name, "type": self.command["type"], "at": self.at.isoformat(),
                     "command_id": self.command["command_id"], "status": self.status}
        if self.error:
            out["error"] = self.error
        if self.events:
            out["events"] = self.events
        return out


@dataclass
class OrderImport:
    """One order of the file: its plan, then its result."""

    index: int
    order_id: str | None
    api_status: str | None
    #: imported | already-imported | skipped | unknown-status | rejected (pending before apply)
    result: str = "pending"
    reason: str | None = None
    notes: list[str] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    ledger_status: str | None = None

    def as_dict(self) -> dict:
        return {"order_id": self.order_id, "order_status": self.api_status,
                "result": self.result, "reason": self.reason, "notes": self.notes,
                "ledger_status": self.ledger_status,
                "steps": [s.as_dict() for s in self.steps]}


@dataclass
class ImportReport:
    orders: list[OrderImport]

    def count(self, result: str) -> int:
        return sum(1 for o in self.orders if o.result == result)

    @property
    def events(self) -> int:
        return sum(len(s.events) for o in self.orders for s in o.steps)

    @property
    def ok(self) -> bool:
        return not (self.count("rejected") or self.count("unknown-status"))

    def summary(self) -> dict:
        return {"orders": len(self.orders), "imported": self.count("imported"),
                "already_imported": self.count("already-imported"),
                "skipped": self.count("skipped"), "unknown_status": self.count("unknown-status"),
                "rejected": self.count("rejected"), "events": self.events}

    def as_dict(self) -> dict:
        return {**self.summary(), "results": [o.as_dict() for o in self.orders]}


# --- reading the JSON -------------------------------------------------------------------


def _json(data: bytes | str | Any, what: str) -> Any:
    if isinstance(data, (bytes, str)):
        try:
            return json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise SpApiError(f"the {what} file is not valid JSON: {exc}") from None
    return data


def load_orders(data: bytes | str | Any) -> list[dict]:
    """The orders of a ``getOrders`` response (or a list of response pages)."""
    doc = _json(data, "getOrders")
    pages = doc if isinstance(doc, list) else [doc]
    orders: list[dict] = []
    for page in pages:
        if not isinstance(page, dict):
            raise SpApiError("expected a getOrders response: an object with payload.Orders")
        body = page.get("payload", page)
        if not isinstance(body, dict) or not isinstance(body.get("Orders"), list):
            if page.get("errors"):
                raise SpApiError(f"the response is an error response: {page['errors']}")
            raise SpApiError("expected a getOrders response: an object with payload.Orders "
                             "(a list of orders)")
        orders.extend(body["Orders"])
    return orders


def load_items(data: bytes | str | Any) -> dict[str, list[dict]]:
    """OrderItems per AmazonOrderId, from a separate items file.

    Either an object mapping AmazonOrderId -> getOrderItems response (or a bare
    list of items), or a list of getOrderItems responses each naming its
    ``payload.AmazonOrderId``.
    """
    doc = _json(data, "items")
    out: dict[str, list[dict]] = {}
    if isinstance(doc, dict) and ("payload" in doc or "OrderItems" in doc):
        doc = [doc]
    if isinstance(doc, dict):
        for order_id, resp in doc.items():
            out[order_id] = _items_of(resp, order_id)
        return out
    if isinstance(doc, list):
        for i, resp in enumerate(doc):
            body = resp.get("payload", resp) if isinstance(resp, dict) else None
            order_id = body.get("AmazonOrderId") if isinstance(body, dict) else None
            if not order_id:
                raise SpApiError(f"items response #{i + 1} has no payload.AmazonOrderId")
            out.setdefault(order_id, []).extend(_items_of(resp, order_id))
        return out
    raise SpApiError("the items file must be an object (AmazonOrderId -> getOrderItems "
                     "response) or a list of getOrderItems responses")


def _items_of(resp: Any, order_id: str) -> list[dict]:
    if isinstance(resp, list):
        return resp
    body = resp.get("payload", resp) if isinstance(resp, dict) else None
    items = body.get("OrderItems") if isinstance(body, dict) else None
    if not isinstance(items, list):
        raise SpApiError(f"the items of order {order_id} have no payload.OrderItems list")
    return items


# --- one order -> commands (pure) ------------------------------------------------------


def _time(order: dict, key: str, *, required: bool = False) -> datetime | None:
    value = order.get(key)
    if not value:
        if required:
            raise OrderProblem(f"{key} is missing")
        return None
    try:
        t = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise OrderProblem(f"{key} {value!r} is not an ISO-8601 time") from None
    if t.tzinfo is None:
        raise OrderProblem(f"{key} {value!r} has no UTC offset")
    return t


def _money(item: dict, key: str, currency: set[str]) -> str:
    value = item.get(key)
    if value is None:
        return "0"
    if not isinstance(value, dict):
        raise OrderProblem(f"item {item.get('OrderItemId')}: {key} is not a "
                           "{CurrencyCode, Amount} object")
    amount = value.get("Amount", "0")
    try:
        dec = Decimal(str(amount))
    except InvalidOperation:
        raise OrderProblem(f"item {item.get('OrderItemId')}: {key}.Amount {amount!r} is not "
                           "a decimal") from None
    if not dec.is_finite():
        raise OrderProblem(f"item {item.get('OrderItemId')}: {key}.Amount {amount!r} is not "
                           "a finite decimal")
    if value.get("CurrencyCode"):
        currency.add(value["CurrencyCode"])
    return str(dec)


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def _language(order: dict, language: str | None) -> str:
    buyer = order.get("BuyerInfo") or {}
    if buyer.get("BuyerLanguage"):
        return buyer["BuyerLanguage"]
    if language:
        return language
    country = MARKETPLACE_COUNTRY.get(order.get("MarketplaceId") or "")
    if country is None:
        country = (order.get("ShippingAddress") or {}).get("CountryCode")
    if country in COUNTRY_LANGUAGE:
        return COUNTRY_LANGUAGE[country]  # type: ignore[index]
    raise OrderProblem("cannot tell the buyer's language (unknown MarketplaceId and "
                       "ShippingAddress.CountryCode); pass --language")


def plan_order(order: dict, items: list[dict] | None, *, language: str | None = None,
               index: int = 0) -> OrderImport:
    """The commands that rebuild one API order in the ledger (nothing is applied)."""
    order_id = order.get("AmazonOrderId") if isinstance(order, dict) else None
    status = order.get("OrderStatus") if isinstance(order, dict) else None
    imp = OrderImport(index, order_id, status)
    try:
        _plan(imp, order, items, language)
    except OrderProblem as exc:
        imp.result, imp.reason, imp.steps = "rejected", str(exc), []
    return imp


def _plan(imp: OrderImport, order: Any, items: list[dict] | None, language: str | None) -> None:
    if not isinstance(order, dict):
        raise OrderProblem("the order is not a JSON object")
    oid = imp.order_id
    if not oid:
        raise OrderProblem("AmazonOrderId is missing")
    if not ORDER_ID_RE.match(str(oid)):
        raise OrderProblem(f"AmazonOrderId {oid!r} does not have the 3-7-7 digit form")
    if order.get("FulfillmentChannel", "MFN") == "AFN":
        imp.result = "skipped"
        imp.reason = "fulfilled by Amazon (FulfillmentChannel AFN): not seller-fulfilled"
        return
    status = imp.api_status
    if status not in KNOWN_STATUSES:
        imp.result = "unknown-status"
        imp.reason = (f"OrderStatus {status!r} is not mapped (only "
                      f"{', '.join(KNOWN_STATUSES)}); the order was not imported")
        return
    if status in STATUS_SKIPPED:
        imp.result, imp.reason = "skipped", STATUS_SKIPPED[status]
        return
    every_item_shipped = status == "InvoiceUnconfirmed"
    if status in STATUS_AS:
        status, note = STATUS_AS[status]
        imp.notes.append(note)
    items = order.get("OrderItems") if isinstance(order.get("OrderItems"), list) else items
    if not items:
        raise OrderProblem("no OrderItems (inline them on the order or give --items)")

    purchased = _time(order, "PurchaseDate", required=True)
    assert purchased is not None
    updated = _time(order, "LastUpdateDate")
    latest_ship = _time(order, "LatestShipDate")
    latest_delivery = _time(order, "LatestDeliveryDate")

    currencies: set[str] = set()
    total = order.get("OrderTotal") or {}
    if total.get("CurrencyCode"):
        currencies.add(total["CurrencyCode"])
    lines: list[dict] = []
    shipped: list[dict] = []
    any_shipped_info = False
    buyer_requested = _truthy(order.get("IsBuyerRequestedCancellation"))
    cancel_reason = None
    for item in items:
        item_id = item.get("OrderItemId")
        if not item_id:
            raise OrderProblem("an item has no OrderItemId")
        try:
            qty = int(item.get("QuantityOrdered", 0))
            qty_shipped = int(item.get("QuantityShipped") or 0)
        except (TypeError, ValueError):
            raise OrderProblem(f"item {item_id}: QuantityOrdered/QuantityShipped is not a "
                               "whole number") from None
        any_shipped_info = ((any_shipped_info or "QuantityShipped" in item)
                            and not every_item_shipped)
        req = item.get("BuyerRequestedCancel") or {}
        if _truthy(req.get("IsBuyerRequestedCancel")):
            buyer_requested = True
            cancel_reason = cancel_reason or req.get("BuyerCancelReason")
        if qty < 1:
            imp.notes.append(f"item {item_id} has QuantityOrdered {qty}: left out")
            continue
        line = {"order_item_id": str(item_id),
                "sku": item.get("SellerSKU") or item.get("ASIN") or str(item_id),
                "title": item.get("Title") or "", "quantity": qty,
                "item_price": _money(item, "ItemPrice", currencies),
                "item_tax": _money(item, "ItemTax", currencies),
                "shipping_price": _money(item, "ShippingPrice", currencies),
                "shipping_tax": _money(item, "ShippingTax", currencies)}
        if not item.get("SellerSKU"):
            imp.notes.append(f"item {item_id} has no SellerSKU: its ASIN is used as the SKU")
        lines.append(line)
        if qty_shipped > 0 and not every_item_shipped:
            shipped.append({"order_item_id": str(item_id), "quantity": qty_shipped})
    if not lines:
        if status == "Canceled":
            imp.result = "skipped"
            imp.reason = ("canceled with nothing ordered (every QuantityOrdered is 0): "
                          "nothing to import")
            return
        raise OrderProblem("no item has a QuantityOrdered of 1 or more")
    if len(currencies) > 1:
        raise OrderProblem(f"the order mixes currencies {', '.join(sorted(currencies))}")
    if not currencies:
        raise OrderProblem("no currency: neither OrderTotal nor the items give a CurrencyCode")

    buyer_info = order.get("BuyerInfo") or {}
    address = order.get("ShippingAddress") or {}
    restricted: list[str] = []
    if not address.get("AddressLine1"):
        if status == "Pending":
            imp.result = "skipped"
            imp.reason = ("Pending without a full ShippingAddress (the API releases it only "
                          "once the order leaves Pending): import it again when it is Unshipped")
            return
        missing = [k for k in ("City", "PostalCode", "CountryCode") if not address.get(k)]
        if missing:
            raise OrderProblem(f"ShippingAddress has no AddressLine1 and no {', '.join(missing)}: "
                               "nothing to ship to; fetch the order again (with a restricted "
                               "data token for the full address)")
        restricted.append("ship_to")
        imp.notes.append("ShippingAddress has no AddressLine1 (fetched without a restricted "
                         f"data token): the address is imported as restricted, {RESTRICTED!r} "
                         "where the API gave nothing")
    if not (buyer_info.get("BuyerName") or buyer_info.get("BuyerEmail")):
        restricted.append("buyer")
        imp.notes.append("BuyerInfo has no BuyerName or BuyerEmail (fetched without a restricted "
                         "data token): the buyer is imported as restricted")
    buyer = {"name": buyer_info.get("BuyerName") or address.get("Name") or RESTRICTED,
             "language": _language(order, language)}
    if buyer_info.get("BuyerEmail"):
        buyer["email"] = buyer_info["BuyerEmail"]
    ship_to = {"name": address.get("Name") or buyer["name"],
               "address_1": address.get("AddressLine1") or RESTRICTED,
               "city": address.get("City") or "", "postal_code": address.get("PostalCode") or "",
               "country": address.get("CountryCode") or ""}
    for api, ours in (("AddressLine2", "address_2"), ("AddressLine3", "address_3"),
                      ("StateOrRegion", "state"), ("Phone", "phone")):
        if address.get(api):
            ship_to[ours] = address[api]
    place: dict = {"type": "place", "order_id": oid, "items": lines,
                   "currency": currencies.pop(),
                   "ship_service_level": order.get("ShipServiceLevel") or "Standard",
                   "buyer": buyer, "ship_to": ship_to}
    if restricted:
        place["restricted"] = restricted
    if latest_ship is not None:
        place["latest_ship_date"] = latest_ship.isoformat()
        if latest_delivery is None and latest_ship > purchased + rules.DEFAULT_DELIVER_BY:
            latest_delivery = latest_ship
    if latest_delivery is not None:
        place["latest_delivery_date"] = latest_delivery.isoformat()

    def add(name: str, at: datetime, body: dict) -> None:
        cmd = {"type": body.pop("type"), "at": at.isoformat(),
               "command_id": f"spapi:{oid}:{name}", **body}
        imp.steps.append(Step(name, at, cmd))

    add("place", purchased, place)
    if status == "Pending":
        if buyer_requested:
            imp.notes.append("the buyer's cancellation request is not recorded: a Pending order "
                             "is not actionable")
        return

    hold_end = purchased + rules.HOLD
    limit = purchased + _LAST

    def clamp(t: datetime | None) -> datetime:
        t = t or hold_end
        return min(max(t, hold_end), limit)

    if status == "Canceled" and updated is not None and updated < hold_end and not shipped:
        add("cancel", updated, {"type": "cancel", "order_id": oid, "by": "buyer",
                                "reason": cancel_reason})
        imp.notes.append("canceled inside the 30-minute hold (LastUpdateDate): a buyer cancel")
        return

    add("verify", hold_end, {"type": "verify-payment", "order_id": oid, "outcome": "verified"})
    ship_at = hold_end
    if status in ("PartiallyShipped", "Shipped", "Canceled") and (shipped or (
            status == "Shipped" and not any_shipped_info)):
        ship_time = updated
        if ship_time is not None and latest_ship is not None and ship_time > latest_ship:
            ship_time = latest_ship
        ship_at = clamp(ship_time)
        tracking = order.get("ShipmentTracking") or {}  # our extension, not in the API
        ship: dict = {"type": "ship", "order_id": oid,
                      "carrier_code": tracking.get("CarrierCode") or IMPORTED_CARRIER_CODE,
                      "ship_date": ship_at.astimezone(purchased.tzinfo).date().isoformat()}
        if tracking.get("CarrierCode") and tracking.get("CarrierName"):
            ship["carrier_name"] = tracking["CarrierName"]
        elif not tracking.get("CarrierCode"):
            ship["carrier_name"] = IMPORTED_CARRIER_NAME
        if tracking.get("TrackingNumber"):
            ship["tracking_number"] = tracking["TrackingNumber"]
        if tracking.get("ShipMethod"):
            ship["ship_method"] = tracking["ShipMethod"]
        if shipped:
            ship["items"] = shipped
        add("ship", ship_at, ship)
        if status == "Shipped" and shipped:
            short = sum(ln["quantity"] for ln in lines) - sum(s["quantity"] for s in shipped)
            if short > 0:
                imp.notes.append(f"the API says Shipped but {short} unit(s) have no "
                                 "QuantityShipped: they stay to ship in the ledger")
    elif status in ("PartiallyShipped", "Shipped"):
        imp.notes.append(f"{status} but no item has QuantityShipped > 0: nothing shipped")
    later = max(clamp(updated), ship_at)
    if buyer_requested:
        if status == "Shipped":
            imp.notes.append("the buyer's cancellation request is not recorded: the order is "
                             "already Shipped")
        else:
            add("request-cancel", later, {"type": "request-cancel", "order_id": oid,
                                          "reason": cancel_reason})
    if status == "Canceled":
        reason = "BuyerCanceled" if buyer_requested else "GeneralAdjustment"
        add("cancel", later, {"type": "cancel", "order_id": oid, "by": "seller",
                              "reason": reason,
                              "memo": "imported from the Orders API (OrderStatus Canceled)"})
        imp.notes.append(f"canceled after the hold: a seller cancel with reason {reason}")


def plan_import(orders: Iterable[dict], items: dict[str, list[dict]] | None = None, *,
                language: str | None = None) -> list[OrderImport]:
    items = items or {}
    return [plan_order(o, items.get(o.get("AmazonOrderId", "")) if isinstance(o, dict) else None,
                       language=language, index=i)
            for i, o in enumerate(orders)]


# --- applying --------------------------------------------------------------------------


def _describe(step: Step) -> str:
    err = step.error or {}
    fld = err.get("field")
    where = ""
    if fld:
        where = f" ({_API_FIELDS.get(fld, fld)})"
    return f"{step.name}: [{err.get('code')}] {err.get('message')}{where}"


def import_orders(ledger: "Ledger", orders_data: bytes | str | Any,
                  items_data: bytes | str | Any | None = None, *,
                  language: str | None = None, dry_run: bool = False) -> ImportReport:
    """Import a getOrders response (and items) into the ledger; report per order.

    ``dry_run``: decide every command as the import would and report the same,
    writing nothing (``Ledger.apply_lines`` with a :class:`DryRun`, whose state
    gives each order's resulting status).
    """
    from .application import DryRun

    dry = DryRun(ledger) if dry_run else None
    orders = load_orders(orders_data)
    items = load_items(items_data) if items_data is not None else {}
    plans = plan_import(orders, items, language=language)
    steps = sorted(((s.at, p.index, k, s) for p in plans for k, s in enumerate(p.steps)),
                   key=lambda t: (t[0], t[1], t[2]))
    if steps:
        encoded = [json.dumps(s.command) for *_, s in steps]
        for (*_, step), out in zip(steps, ledger.apply_lines(encoded, dry_run=dry or False)):
            step.status = out.status
            step.error = out.error
            step.events = list(out.events)
    from .domain import order_key

    todo = [p for p in plans if p.result == "pending"]
    keys = [order_key(p.order_id) for p in todo]  # type: ignore[arg-type]
    states = (dry or ledger).load_many(keys) if keys else {}
    for p in todo:
        agg = states.get(order_key(p.order_id))  # type: ignore[arg-type]
        p.ledger_status = getattr(agg, "status", None)
        bad = [s for s in p.steps if s.status == "rejected"]
        if bad:
            p.result, p.reason = "rejected", _describe(bad[0])
            if any(s.status == "applied" for s in p.steps):
                p.notes.append("the steps before the rejected one stay applied")
        elif all(s.status == "duplicate" for s in p.steps):
            p.result = "already-imported"
        else:
            p.result = "imported"
    return ImportReport(plans)
