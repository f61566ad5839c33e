"""The projections' handlers, fused: one function per event type for every view at once.

This module is the apply code of the five projections of :mod:`projections.model`
(which keeps their tables, records, loading and flushing). For a set of
projection objects, :func:`handlers_for` returns one handler per event type
that updates all of them: the event's order id, its time as ISO-8601 text
(:func:`projections.model.iso`) and as microseconds (:func:`ledger.store.to_us`)
are computed once per event and shared by the views and the audit row, and no
per-view dispatch, method lookup or repeated record lookup is paid.

The same handlers serve every caller -- a rebuild, catch-up (batch by batch,
checkpoints equal or not: a view alone is the same function with the others
absent), the parallel rebuild's workers and :func:`projections.memory.project`
-- so there is one apply path. ``Projection.handlers()`` of one view is
``handlers_for([view])``.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable, Sequence

from ledger import events as ev
from ledger.rules import BUYER_WISH_REASONS
from ledger.store import EPOCH
from ledger.store import to_us as _to_us_any

from . import model as m
from .model import (
    CANCELED,
    OPEN,
    PENDING,
    SHIPPED,
    UNSHIPPED,
    Cancellation,
    CanceledItem,
    ItemRow,
    MetricOrder,
    NItem,
    NotifyOrder,
    _REASONED,
    _audit_reason,
    OrderConfirmation,
    OrderDoc,
    ShipByWarning,
    SoldShipNow,
    iso,
    reason_text,
)

Handler = Callable[[int, Any], None]

__all__ = ["handlers_for", "INTERESTS"]

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
    "orders": m.OrdersProjection, "inventory": m.InventoryProjection,
    "metrics": m.MetricsProjection, "notifications": m.NotificationsProjection,
    "audit": m.AuditProjection,
}


def handlers_for(projs: Iterable[m.Projection]) -> dict[type, Handler]:
    """One handler per event type applying the event to every projection in ``projs``.

    Each of the five projections may be present at most once (any subset);
    ``Projection`` subclasses of other kinds keep their own ``handlers()``, called
    after the fused handler of the same event type.
    """
    known: dict[str, Any] = {}
    others: list[m.Projection] = []
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
        self.O: m.OrdersProjection | None = known.get("orders")
        self.I: m.InventoryProjection | None = known.get("inventory")
        self.M: m.MetricsProjection | None = known.get("metrics")
        self.N: m.NotificationsProjection | None = known.get("notifications")
        self.A: m.AuditProjection | None = known.get("audit")
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
            (pos, seq, at, to, kind, order_id, m._enc.encode(content).decode()))

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
                        None, None, False, False, m._json(e.ship_to), m._market_json(e), at_iso,
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
                    market = m.market_of(d)
                    market["buyer_cancel_reason"] = e.reason
                    d.market = m._json(market)
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
                d.ship_to = m._json(e.ship_to)
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
                    d.ship_to = m._json(e.ship_to)
                if e.buyer is not None:
                    d.buyer_name, d.buyer_email = e.buyer.name, e.buyer.email
                    if e.buyer.phone:
                        d.buyer_phone = e.buyer.phone
                market = m.market_of(d)
                market.pop("restricted", None)
                if e.restricted:
                    market["restricted"] = list(e.restricted)
                d.market = m._json(market)
            if audit is not None:
                audit(pos, e, to_us(e.at), at_iso, e.order_id)
        return h

    def _acknowledged(self, cls: type) -> Handler:
        audit = self._audit(cls)

        def h(pos: int, e: ev.OrderAcknowledged) -> None:
            at_iso = iso(e.at)
            d = self._o_get(e.order_id, at_iso)
            if d is not None and e.merchant_order_id:
                market = m.market_of(d)
                market["merchant_order_id"] = e.merchant_order_id
                d.market = m._json(market)
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
