"""Import orders from the Selling Partner API (Orders API v0 and 2026-01-01).

Input is any mix of responses -- v0 ``getOrders`` pages, ``getOrder``,
``getOrderItems``, ``getOrderAddress``, ``getOrderBuyerInfo``,
``getOrderItemsBuyerInfo``; 2026-01-01 ``searchOrders`` pages and ``getOrder``
-- each told by its structure (:func:`detect_shape`) and merged by order id
(:class:`Collected`); 2026-01-01 orders are rewritten in the v0 shape
(:func:`order_from_2026`). Every v0 ``OrderStatus`` and 2026-01-01
``fulfillmentStatus`` is mapped (``STATUS_AS``, ``STATUS_SKIPPED``,
``FULFILLMENT_STATUS``); orders fetched without a restricted data token import
with placeholders, marked ``restricted``, and a later response with the data
releases them (``release-restricted``). Each order becomes a short, fixed list
of ledger commands chosen by its status (:func:`plan_order`, pure);
:func:`import_documents` sorts every command by time and applies them in one
run of ``Ledger.apply_lines``, then reports per order.

Command ids are ``spapi:<AmazonOrderId>:<step>`` so importing the same files
twice adds nothing; a later poll of the same order (say Unshipped, then
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
    command: dict[str, Any]
    status: str = "pending"  # applied | duplicate | rejected
    error: dict[str, Any] | None = None
    events: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"step": self.name, "type": self.command["type"],
                               "at": self.at.isoformat(),
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
    #: imported | already-imported | skipped | incomplete | unknown-status | rejected
    #: (pending before apply)
    result: str = "pending"
    reason: str | None = None
    notes: list[str] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    ledger_status: str | None = None

    def as_dict(self) -> dict[str, Any]:
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

    def summary(self) -> dict[str, Any]:
        return {"orders": len(self.orders), "imported": self.count("imported"),
                "already_imported": self.count("already-imported"),
                "skipped": self.count("skipped"), "incomplete": self.count("incomplete"),
                "unknown_status": self.count("unknown-status"),
                "rejected": self.count("rejected"), "events": self.events}

    def as_dict(self) -> dict[str, Any]:
        return {**self.summary(), "results": [o.as_dict() for o in self.orders]}


# --- reading the JSON -------------------------------------------------------------------


def _json(data: bytes | str | Any, what: str) -> Any:
    if isinstance(data, (bytes, str)):
        try:
            return json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise SpApiError(f"the {what} file is not valid JSON: {exc}") from None
    return data


def load_orders(data: bytes | str | Any) -> list[dict[str, Any]]:
    """The orders of a ``getOrders`` response (or a list of response pages)."""
    doc = _json(data, "getOrders")
    pages = doc if isinstance(doc, list) else [doc]
    orders: list[dict[str, Any]] = []
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


def load_items(data: bytes | str | Any) -> dict[str, list[dict[str, Any]]]:
    """OrderItems per AmazonOrderId, from a separate items file.

    Either an object mapping AmazonOrderId -> getOrderItems response (or a bare
    list of items), or a list of getOrderItems responses each naming its
    ``payload.AmazonOrderId``.
    """
    doc = _json(data, "items")
    out: dict[str, list[dict[str, Any]]] = {}
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


def _items_of(resp: Any, order_id: str) -> list[dict[str, Any]]:
    if isinstance(resp, list):
        return resp
    body = resp.get("payload", resp) if isinstance(resp, dict) else None
    items = body.get("OrderItems") if isinstance(body, dict) else None
    if not isinstance(items, list):
        raise SpApiError(f"the items of order {order_id} have no payload.OrderItems list")
    return items


# --- every response shape, merged by order id ------------------------------------------

#: 2026-01-01 ``fulfillment.fulfillmentStatus`` -> the v0 ``OrderStatus`` it is planned as.
FULFILLMENT_STATUS: dict[str, str] = {
    "PENDING_AVAILABILITY": "PendingAvailability", "PENDING": "Pending",
    "UNSHIPPED": "Unshipped", "PARTIALLY_SHIPPED": "PartiallyShipped", "SHIPPED": "Shipped",
    "CANCELLED": "Canceled", "UNFULFILLABLE": "Unfulfillable",
}

#: 2026-01-01 ``fulfillment.fulfillmentServiceLevel`` -> the v0 ``ShipmentServiceLevelCategory``.
SERVICE_LEVEL_CATEGORY: dict[str, str] = {
    "STANDARD": "Standard", "EXPEDITED": "Expedited", "NEXT_DAY": "NextDay",
    "SECOND_DAY": "SecondDay", "SAME_DAY": "SameDay", "FREE_ECONOMY": "FreeEconomy",
    "SCHEDULED": "Scheduled", "PRIORITY": "Priority",
}

#: The response shapes :func:`detect_shape` recognises.
SHAPES = ("v0 getOrders", "v0 getOrder", "v0 getOrderItems", "v0 getOrderAddress",
          "v0 getOrderBuyerInfo", "v0 getOrderItemsBuyerInfo", "2026-01-01 searchOrders",
          "2026-01-01 getOrder", "items by order id")

_BUYER_INFO_KEYS = ("BuyerEmail", "BuyerName", "BuyerCounty", "BuyerTaxInfo",
                    "PurchaseOrderNumber")


def detect_shape(doc: Any) -> str:
    """Which Orders API response ``doc`` is, from its structure alone."""
    if isinstance(doc, list):
        shapes = {detect_shape(d) for d in doc}
        if len(shapes) == 1:
            return shapes.pop()
        raise SpApiError("a list of responses must hold pages of one kind (got "
                         f"{', '.join(sorted(shapes)) or 'nothing'})")
    if not isinstance(doc, dict):
        raise SpApiError("expected an Orders API response: a JSON object")
    if isinstance(doc.get("orders"), list):
        return "2026-01-01 searchOrders"
    if isinstance(doc.get("order"), dict):
        return "2026-01-01 getOrder"
    body = doc.get("payload", doc)
    if isinstance(body, dict):
        if isinstance(body.get("Orders"), list):
            return "v0 getOrders"
        if body.get("AmazonOrderId"):
            if "OrderStatus" in body or "PurchaseDate" in body:
                return "v0 getOrder"
            if isinstance(body.get("OrderItems"), list):
                items = body["OrderItems"]
                if items and all(isinstance(i, dict) and "QuantityOrdered" not in i
                                 for i in items):
                    return "v0 getOrderItemsBuyerInfo"
                return "v0 getOrderItems"
            if isinstance(body.get("ShippingAddress"), dict):
                return "v0 getOrderAddress"
            if any(k in body for k in _BUYER_INFO_KEYS):
                return "v0 getOrderBuyerInfo"
        if body is doc and body and all(ORDER_ID_RE.match(str(k)) for k in body):
            return "items by order id"
    if doc.get("errors"):
        raise SpApiError(f"the response is an error response: {doc['errors']}")
    raise SpApiError("not an Orders API response this import reads: expected a v0 getOrders, "
                     "getOrder, getOrderItems, getOrderAddress, getOrderBuyerInfo or "
                     "getOrderItemsBuyerInfo response (payload.Orders, payload.AmazonOrderId ...) "
                     "or a 2026-01-01 searchOrders or getOrder response (orders, order)")


def _amount(value: Any) -> dict[str, Any] | None:
    """A 2026-01-01 ``Money`` ({amount, currencyCode}) as a v0 one ({Amount, CurrencyCode})."""
    if not isinstance(value, dict):
        return None
    return {"Amount": value.get("amount"), "CurrencyCode": value.get("currencyCode")}


def _dec(money: dict[str, Any] | None) -> Decimal:
    try:
        return Decimal(str((money or {}).get("Amount") or "0"))
    except InvalidOperation:
        return Decimal(0)


def order_from_2026(o: Any) -> dict[str, Any]:
    """A 2026-01-01 ``Order`` rewritten in the v0 shape :func:`plan_order` reads.

    Only the fields the ledger keeps are carried; the mapping is in
    ``docs/sp-api-import.md``. Packages become our ``ShipmentTracking`` key.
    """
    if not isinstance(o, dict):
        raise SpApiError("a 2026-01-01 order is not a JSON object")
    ful = o.get("fulfillment") or {}
    sales = o.get("salesChannel") or {}
    programs = o.get("programs") or []
    status = ful.get("fulfillmentStatus")
    out: dict[str, Any] = {"AmazonOrderId": o.get("orderId"), "PurchaseDate": o.get("createdTime"),
                 "LastUpdateDate": o.get("lastUpdatedTime"),
                 "OrderStatus": FULFILLMENT_STATUS.get(str(status), status),
                 "FulfillmentChannel": "AFN" if ful.get("fulfilledBy") == "AMAZON" else "MFN",
                 "_api": "2026-01-01", "_status": status}
    if sales.get("marketplaceId"):
        out["MarketplaceId"] = sales["marketplaceId"]
    if sales.get("marketplaceName"):
        out["SalesChannel"] = sales["marketplaceName"]
    level = ful.get("fulfillmentServiceLevel")
    if level:
        out["ShipmentServiceLevelCategory"] = SERVICE_LEVEL_CATEGORY.get(str(level), level)
    for window, first, last in (("shipByWindow", "EarliestShipDate", "LatestShipDate"),
                                ("deliverByWindow", "EarliestDeliveryDate",
                                 "LatestDeliveryDate")):
        w = ful.get(window) or {}
        if w.get("earliestDateTime"):
            out[first] = w["earliestDateTime"]
        if w.get("latestDateTime"):
            out[last] = w["latestDateTime"]
    if isinstance(programs, list):
        out["IsPrime"] = "PRIME" in programs
        out["IsBusinessOrder"] = "AMAZON_BUSINESS" in programs
    total = _amount((o.get("proceeds") or {}).get("grandTotal"))
    if total:
        out["OrderTotal"] = total
    buyer = o.get("buyer") or {}
    info = {k: buyer[v] for k, v in (("BuyerName", "buyerName"), ("BuyerEmail", "buyerEmail"),
                                     ("PurchaseOrderNumber", "buyerPurchaseOrderNumber"))
            if buyer.get(v)}
    if info:
        out["BuyerInfo"] = info
    addr = (o.get("recipient") or {}).get("deliveryAddress") or {}
    if addr:
        out["ShippingAddress"] = {
            k: addr[v] for k, v in (
                ("Name", "name"), ("AddressLine1", "addressLine1"),
                ("AddressLine2", "addressLine2"), ("AddressLine3", "addressLine3"),
                ("City", "city"), ("StateOrRegion", "stateOrRegion"),
                ("PostalCode", "postalCode"), ("CountryCode", "countryCode"),
                ("Phone", "phone"), ("AddressType", "addressType")) if addr.get(v)}
    if isinstance(o.get("orderItems"), list):
        out["OrderItems"] = [_item_from_2026(i) for i in o["orderItems"]]
    packages = [p for p in o.get("packages") or [] if isinstance(p, dict)]
    if packages:
        p = packages[-1]
        tracking = {"CarrierCode": "Other", "CarrierName": p.get("carrier") or "Other"}
        if p.get("trackingNumber"):
            tracking["TrackingNumber"] = p["trackingNumber"]
        if p.get("shippingService"):
            tracking["ShipMethod"] = p["shippingService"]
        out["ShipmentTracking"] = tracking
    return out


def _item_from_2026(i: Any) -> dict[str, Any]:
    if not isinstance(i, dict):
        return {}
    product = i.get("product") or {}
    price = product.get("price") or {}
    proceeds = i.get("proceeds") or {}
    qty = i.get("quantityOrdered", 0)
    item: dict[str, Any] = {"OrderItemId": i.get("orderItemId"), "ASIN": product.get("asin"),
                  "SellerSKU": product.get("sellerSku"), "Title": product.get("title"),
                  "QuantityOrdered": qty}
    if "quantityFulfilled" in (i.get("fulfillment") or {}):
        item["QuantityShipped"] = i["fulfillment"]["quantityFulfilled"]
    if price.get("priceDesignation"):
        item["PriceDesignation"] = price["priceDesignation"]
    parts: dict[str, dict[str, Any]] = {}
    currency = None
    for b in proceeds.get("breakdowns") or []:
        if not isinstance(b, dict):
            continue
        sub = _amount(b.get("subtotal"))
        currency = currency or (sub or {}).get("CurrencyCode")
        kind = b.get("type")
        if kind == "TAX" and b.get("detailedBreakdowns"):
            for d in b["detailedBreakdowns"]:
                key = "ShippingTax" if d.get("subtype") == "SHIPPING" else "ItemTax"
                val = _amount(d.get("value"))
                if val:
                    prev = parts.get(key)
                    parts[key] = {"Amount": str(_dec(prev) + _dec(val)),
                                  "CurrencyCode": val["CurrencyCode"]}
        elif kind in ("ITEM", "TAX", "SHIPPING", "GIFT_WRAP") and sub:
            key = {"ITEM": "ItemPrice", "TAX": "ItemTax", "SHIPPING": "ShippingPrice",
                   "GIFT_WRAP": "GiftWrapPrice"}[kind]
            parts[key] = sub
        elif kind in ("DISCOUNT", "PROMOTION") and sub:
            parts["PromotionDiscount"] = {"Amount": str(abs(_dec(sub))),
                                          "CurrencyCode": sub["CurrencyCode"]}
    if "ItemPrice" not in parts:
        unit = _amount(price.get("unitPrice"))
        if unit:
            try:
                parts["ItemPrice"] = {"Amount": str(_dec(unit) * int(qty)),
                                      "CurrencyCode": unit["CurrencyCode"]}
            except (TypeError, ValueError):
                parts["ItemPrice"] = unit
    item.update(parts)
    req = ((i.get("cancellation") or {}).get("cancellationRequest") or {})
    if req.get("requester") == "BUYER":
        item["BuyerRequestedCancel"] = {"IsBuyerRequestedCancel": "true",
                                        "BuyerCancelReason": req.get("cancelReason")}
    return item


@dataclass
class Collected:
    """What a set of responses says, merged by order id."""

    #: order id -> the order (v0 shape), the newest LastUpdateDate winning
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: order id -> its items (getOrderItems, pages appended)
    items: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    #: order id -> ShippingAddress from getOrderAddress
    addresses: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: order id -> BuyerInfo fields from getOrderBuyerInfo
    buyers: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: order id -> order item id -> getOrderItemsBuyerInfo fields
    item_extras: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    #: (source, shape) per document read
    shapes: list[tuple[str, str]] = field(default_factory=list)
    #: orders that are not JSON objects or have no id (the import reports them)
    bad: list[Any] = field(default_factory=list)

    def add(self, doc: Any, source: str = "") -> str:
        shape = detect_shape(doc)
        self.shapes.append((source, shape))
        pages = doc if isinstance(doc, list) else [doc]
        for page in pages:
            self._add(shape, page)
        return shape

    def _order(self, order: Any) -> None:
        oid = order.get("AmazonOrderId") if isinstance(order, dict) else None
        if not oid:
            self.bad.append(order)
            return
        old = self.orders.get(oid)
        if old is None:
            self.orders[oid] = order
            return
        newer, older = order, old
        if str(old.get("LastUpdateDate") or "") > str(order.get("LastUpdateDate") or ""):
            newer, older = old, order
        # the newest version wins; what only the older one gave (items, address lines
        # or buyer fields fetched with a restricted data token) is kept
        merged = dict(newer)
        if not isinstance(newer.get("OrderItems"), list) and \
                isinstance(older.get("OrderItems"), list):
            merged["OrderItems"] = older["OrderItems"]
        for key in ("ShippingAddress", "BuyerInfo"):
            if isinstance(older.get(key), dict):
                merged[key] = {**older[key], **(newer.get(key) or {})}
        self.orders[oid] = merged

    def _add(self, shape: str, page: Any) -> None:
        body = page.get("payload", page) if isinstance(page, dict) else page
        if shape == "v0 getOrders":
            for o in body["Orders"]:
                self._order(o)
        elif shape == "v0 getOrder":
            self._order(body)
        elif shape == "2026-01-01 searchOrders":
            for o in page["orders"]:
                self._order(order_from_2026(o))
        elif shape == "2026-01-01 getOrder":
            self._order(order_from_2026(page["order"]))
        elif shape == "v0 getOrderItems":
            self.items.setdefault(body["AmazonOrderId"], []).extend(body["OrderItems"])
        elif shape == "v0 getOrderItemsBuyerInfo":
            extras = self.item_extras.setdefault(body["AmazonOrderId"], {})
            for i in body["OrderItems"]:
                if isinstance(i, dict) and i.get("OrderItemId"):
                    extras[str(i["OrderItemId"])] = i
        elif shape == "v0 getOrderAddress":
            self.addresses[body["AmazonOrderId"]] = body["ShippingAddress"]
        elif shape == "v0 getOrderBuyerInfo":
            self.buyers[body["AmazonOrderId"]] = {k: body[k] for k in _BUYER_INFO_KEYS
                                                  if k in body}
        elif shape == "items by order id":
            for order_id, resp in body.items():
                self.items.setdefault(order_id, []).extend(_items_of(resp, order_id))

    def merged(self) -> list[tuple[str, dict[str, Any] | None, list[dict[str, Any]] | None]]:
        """(order id, the order with its address and buyer info merged in, its items),
        for every order id any document named (the order None when no order response
        gave it)."""
        ids = list(dict.fromkeys([*self.orders, *self.items, *self.addresses, *self.buyers,
                                  *self.item_extras]))
        out = []
        for oid in ids:
            order = self.orders.get(oid)
            if order is not None:
                order = dict(order)
                if oid in self.addresses:
                    order["ShippingAddress"] = {**(order.get("ShippingAddress") or {}),
                                                **self.addresses[oid]}
                if oid in self.buyers:
                    order["BuyerInfo"] = {**(order.get("BuyerInfo") or {}), **self.buyers[oid]}
            items = self.items.get(oid)
            extras = self.item_extras.get(oid)
            if extras:
                if order is not None and isinstance(order.get("OrderItems"), list):
                    order["OrderItems"] = [{**i, **extras.get(str(i.get("OrderItemId")), {})}
                                           for i in order["OrderItems"]]
                if items is not None:
                    items = [{**i, **extras.get(str(i.get("OrderItemId")), {})} for i in items]
            out.append((oid, order, items))
        return out


# --- one order -> commands (pure) ------------------------------------------------------


def _time(order: dict[str, Any], key: str, *, required: bool = False) -> datetime | None:
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


def _money(item: dict[str, Any], key: str, currency: set[str]) -> str:
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


def _language(order: dict[str, Any], language: str | None) -> str:
    buyer = order.get("BuyerInfo") or {}
    if buyer.get("BuyerLanguage"):
        return str(buyer["BuyerLanguage"])
    if language:
        return language
    country = MARKETPLACE_COUNTRY.get(order.get("MarketplaceId") or "")
    if country is None:
        country = (order.get("ShippingAddress") or {}).get("CountryCode")
    if country in COUNTRY_LANGUAGE:
        return COUNTRY_LANGUAGE[country]
    raise OrderProblem("cannot tell the buyer's language (unknown MarketplaceId and "
                       "ShippingAddress.CountryCode); pass --language")


#: v0 order keys kept as they are on the place command's ``market`` (API -> ours).
_MARKET_TEXT = (("SalesChannel", "sales_channel"),
                ("ShipmentServiceLevelCategory", "ship_service_category"))
_MARKET_FLAGS = (("IsPrime", "is_prime"), ("IsBusinessOrder", "is_business_order"))
_MARKET_TIMES = (("EarliestShipDate", "earliest_ship_date"),
                 ("EarliestDeliveryDate", "earliest_delivery_date"))


def market_fields(order: dict[str, Any], address: dict[str, Any],
                  buyer_info: dict[str, Any]) -> dict[str, Any]:
    """What the marketplace says of an order beyond the rules' needs, for ``place``."""
    out: dict[str, Any] = {}
    for api, ours in _MARKET_TEXT:
        if order.get(api):
            out[ours] = str(order[api])
    for api, ours in _MARKET_FLAGS:
        if order.get(api) is not None:
            out[ours] = _truthy(order[api])
    for api, ours in _MARKET_TIMES:
        t = _time(order, api)
        if t is not None:
            out[ours] = t.isoformat()
    po = buyer_info.get("PurchaseOrderNumber") or order.get("PurchaseOrderNumber")
    if po:
        out["purchase_order_number"] = str(po)
    if address.get("AddressType"):
        out["address_type"] = str(address["AddressType"])
    return out


def plan_order(order: dict[str, Any], items: list[dict[str, Any]] | None, *,
               language: str | None = None,
               index: int = 0) -> OrderImport:
    """The commands that rebuild one API order in the ledger (nothing is applied)."""
    order_id = order.get("AmazonOrderId") if isinstance(order, dict) else None
    status = order.get("OrderStatus") if isinstance(order, dict) else None
    if isinstance(order, dict) and order.get("_api"):
        status = f"{order.get('_status')} ({order['_api']})"
    imp = OrderImport(index, order_id, status)
    try:
        _plan(imp, order, items, language)
    except OrderProblem as exc:
        imp.result, imp.reason, imp.steps = "rejected", str(exc), []
    return imp


def _plan(imp: OrderImport, order: Any, items: list[dict[str, Any]] | None,
          language: str | None) -> None:
    if not isinstance(order, dict):
        raise OrderProblem("the order is not a JSON object")
    oid = imp.order_id
    if not oid:
        raise OrderProblem("AmazonOrderId is missing")
    if not ORDER_ID_RE.match(str(oid)):
        raise OrderProblem(f"AmazonOrderId {oid!r} does not have the 3-7-7 digit form")
    if order.get("FulfillmentChannel", "MFN") == "AFN":
        imp.result = "skipped"
        imp.reason = ("fulfilled by Amazon (fulfilledBy AMAZON): not seller-fulfilled"
                      if order.get("_api") else
                      "fulfilled by Amazon (FulfillmentChannel AFN): not seller-fulfilled")
        return
    status = order.get("OrderStatus")
    if status not in KNOWN_STATUSES:
        imp.result = "unknown-status"
        if order.get("_api"):
            imp.reason = (f"fulfillmentStatus {order.get('_status')!r} is not mapped (only "
                          f"{', '.join(FULFILLMENT_STATUS)}); the order was not imported")
        else:
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
        imp.result = "incomplete"
        imp.reason = ("items missing: no getOrderItems response for this order (give it as "
                      "another FILE, inline OrderItems, or --items); nothing imported for it")
        return

    purchased = _time(order, "PurchaseDate", required=True)
    assert purchased is not None
    updated = _time(order, "LastUpdateDate")
    latest_ship = _time(order, "LatestShipDate")
    latest_delivery = _time(order, "LatestDeliveryDate")

    currencies: set[str] = set()
    total = order.get("OrderTotal") or {}
    if total.get("CurrencyCode"):
        currencies.add(total["CurrencyCode"])
    lines: list[dict[str, Any]] = []
    shipped: list[dict[str, Any]] = []
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
        for api, ours in (("GiftWrapPrice", "gift_wrap_price"), ("GiftWrapTax", "gift_wrap_tax"),
                          ("PromotionDiscount", "promotion_discount"),
                          ("ShippingDiscount", "ship_promotion_discount")):
            if item.get(api) is not None:
                value = _money(item, api, currencies)
                if Decimal(value):
                    line[ours] = value
        if item.get("PriceDesignation"):
            line["price_designation"] = str(item["PriceDesignation"])
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
    place: dict[str, Any] = {"type": "place", "order_id": oid, "items": lines,
                   "currency": currencies.pop(),
                   "ship_service_level": order.get("ShipServiceLevel") or "Standard",
                   "buyer": buyer, "ship_to": ship_to}
    if restricted:
        place["restricted"] = restricted
    market = market_fields(order, address, buyer_info)
    if market:
        place["market"] = market
    if latest_ship is not None:
        place["latest_ship_date"] = latest_ship.isoformat()
        if latest_delivery is None and latest_ship > purchased + rules.DEFAULT_DELIVER_BY:
            latest_delivery = latest_ship
    if latest_delivery is not None:
        place["latest_delivery_date"] = latest_delivery.isoformat()

    def add(name: str, at: datetime, body: dict[str, Any]) -> None:
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
        ship: dict[str, Any] = {"type": "ship", "order_id": oid,
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


def plan_import(orders: Iterable[dict[str, Any]],
                items: dict[str, list[dict[str, Any]]] | None = None, *,
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
    """Import one response (and an items file) into the ledger; report per order."""
    return import_documents(ledger, [orders_data], items_data, language=language,
                            dry_run=dry_run)


def collect(docs: Iterable[bytes | str | Any], items_data: bytes | str | Any | None = None,
            sources: Iterable[str] | None = None) -> Collected:
    """Read every response (any shape, any order) and merge them by order id."""
    col = Collected()
    names = list(sources) if sources is not None else []
    for i, data in enumerate(docs):
        name = names[i] if i < len(names) else f"#{i + 1}"
        col.add(_json(data, name), name)
    if items_data is not None:
        for order_id, items in load_items(items_data).items():
            col.items.setdefault(order_id, []).extend(items)
    return col


def _release_step(imp: OrderImport, oid: str, order: dict[str, Any] | None, agg: Any,
                  place: dict[str, Any] | None, address: dict[str, Any] | None,
                  buyer: dict[str, Any] | None,
                  language: str | None) -> None:
    """When the ledger holds ``oid`` with withheld parts that these responses now give,
    plan the ``release-restricted`` step that replaces the placeholders."""
    withheld = list(getattr(agg, "restricted", []) or [])
    if not withheld:
        return
    body: dict[str, Any] = {"type": "release-restricted", "order_id": oid}
    if place is not None:
        given = {"ship_to", "buyer"} - set(place.get("restricted", []))
        if "ship_to" in withheld and "ship_to" in given:
            body["ship_to"] = place["ship_to"]
        if "buyer" in withheld and "buyer" in given:
            body["buyer"] = place["buyer"]
    else:
        if "ship_to" in withheld and address and address.get("AddressLine1"):
            old = agg.ship_to
            ship_to = {"name": address.get("Name") or old.name,
                       "address_1": address["AddressLine1"],
                       "city": address.get("City") or old.city,
                       "postal_code": address.get("PostalCode") or old.postal_code,
                       "country": address.get("CountryCode") or old.country}
            for api, ours in (("AddressLine2", "address_2"), ("AddressLine3", "address_3"),
                              ("StateOrRegion", "state"), ("Phone", "phone")):
                if address.get(api):
                    ship_to[ours] = address[api]
            body["ship_to"] = ship_to
        if "buyer" in withheld and buyer and (buyer.get("BuyerName") or buyer.get("BuyerEmail")):
            old_buyer = agg.buyer
            b = {"name": buyer.get("BuyerName") or old_buyer.name,
                 "language": old_buyer.language}
            if buyer.get("BuyerEmail"):
                b["email"] = buyer["BuyerEmail"]
            body["buyer"] = b
    parts = [k for k in ("ship_to", "buyer") if k in body]
    if not parts:
        return
    times = [t for t in (getattr(agg, "fact_at", None), getattr(agg, "deadline_at", None))
             if t is not None]
    if order is not None:
        try:
            updated = _time(order, "LastUpdateDate")
        except OrderProblem:
            updated = None
        if updated is not None:
            times.append(updated)
    at = max(times)
    name = "release-" + "-".join(parts)
    imp.steps.append(Step(name, at, {"type": body.pop("type"), "at": at.isoformat(),
                                     "command_id": f"spapi:{oid}:{name}", **body}))
    imp.notes.append(f"the marketplace now gives the withheld {' and '.join(parts)}: "
                     "the placeholders are replaced")


def _items_in_ledger(agg: Any) -> list[dict[str, Any]]:
    """An order's items as the ledger holds them, in the API's shape (no QuantityShipped)."""
    cur = agg.placed.currency
    out = []
    for item_id, it in agg.items.items():
        line = it.line
        out.append({"OrderItemId": item_id, "SellerSKU": line.sku, "Title": line.title,
                    "QuantityOrdered": line.quantity,
                    **{api: {"CurrencyCode": cur, "Amount": str(getattr(line, ours))}
                       for api, ours in (("ItemPrice", "item_price"), ("ItemTax", "item_tax"),
                                         ("ShippingPrice", "shipping_price"),
                                         ("ShippingTax", "shipping_tax"))}})
    return out


def import_documents(ledger: "Ledger", docs: Iterable[bytes | str | Any],
                     items_data: bytes | str | Any | None = None, *,
                     language: str | None = None, dry_run: bool = False,
                     sources: Iterable[str] | None = None) -> ImportReport:
    """Import any mix of Orders API responses (v0 and 2026-01-01, every shape),
    merged by order id, into the ledger; report per order.

    ``dry_run``: decide every command as the import would and report the same,
    writing nothing (``Ledger.apply_lines`` with a :class:`DryRun`, whose state
    gives each order's resulting status).
    """
    from .application import DryRun
    from .domain import order_key

    dry = DryRun(ledger) if dry_run else None
    col = collect(docs, items_data, sources)
    merged = col.merged()
    known = (dry or ledger).load_many([order_key(oid) for oid, *_ in merged
                                       if ORDER_ID_RE.match(str(oid))]) if merged else {}
    plans: list[OrderImport] = []
    for oid, order, items in merged:
        index = len(plans)
        agg = known.get(order_key(oid)) if ORDER_ID_RE.match(str(oid)) else None
        if order is None:
            imp = OrderImport(index, oid, None)
            if agg is not None:
                _release_step(imp, oid, None, agg, None, col.addresses.get(oid),
                              col.buyers.get(oid), language)
            if not imp.steps:
                imp.result = "incomplete"
                given = [w for w, d in (("items", col.items), ("address", col.addresses),
                                        ("buyer info", col.buyers),
                                        ("item buyer info", col.item_extras)) if oid in d]
                imp.reason = (f"order missing: only its {', '.join(given)} given, no getOrders, "
                              "getOrder or searchOrders response for it; nothing imported")
                if agg is not None:
                    imp.reason = (f"nothing new: only its {', '.join(given)} given, and the "
                                  "ledger withholds nothing of it")
                    imp.result = "already-imported"
            plans.append(imp)
            continue
        from_ledger = (agg is not None and getattr(agg, "placed", None) is not None
                       and not items and not isinstance(order.get("OrderItems"), list))
        if from_ledger:
            items = _items_in_ledger(agg)
        imp = plan_order(order, items, language=language, index=index)
        if from_ledger and imp.result == "pending":
            imp.notes.append("no getOrderItems response given: the items already in the ledger "
                             "are used")
        if agg is not None and imp.result == "pending":
            place = next((st.command for st in imp.steps if st.name == "place"), None)
            _release_step(imp, oid, order, agg, place, None, None, language)
        plans.append(imp)
    for bad in col.bad:
        plans.append(plan_order(bad, None, language=language, index=len(plans)))
    steps = sorted(((s.at, p.index, k, s) for p in plans for k, s in enumerate(p.steps)),
                   key=lambda t: (t[0], t[1], t[2]))
    if steps:
        encoded = [json.dumps(s.command) for *_, s in steps]
        for (*_, step), out in zip(steps, ledger.apply_lines(encoded, dry_run=dry or False)):
            step.status = out.status
            step.error = out.error
            step.events = list(out.events)
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
