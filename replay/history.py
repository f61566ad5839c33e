"""An order's life step by step, and why it is where it is.

Both read the order's own events (with their global positions) and replay
them through the domain, so the state after each step is exactly what the
ledger held then.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from ledger import events as ev
from ledger.application import Ledger
from ledger.domain import HOLD, SHIP, VERIFY, WARN, Order, Recorded, order_key
from projections.rows import Explanation, NextStep, Reason

_ENVELOPE = ("type", "at", "recorded_at", "actor", "command_id", "order_id")


@dataclass
class Step:
    position: int
    version: int
    payload: ev.Event
    state: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        p = self.payload
        return {
            "position": self.position,
            "version": self.version,
            "at": p.at.isoformat(),
            "recorded_at": ev.recorded_at(p).isoformat(),
            "type": type(p).__name__,
            "actor": p.actor,
            "command_id": p.command_id,
            "fields": event_fields(p),
            "state": self.state,
        }


def event_fields(payload: ev.Event) -> dict[str, Any]:
    """An event's own fields as JSON-ready values (without the envelope)."""
    data = msgspec.to_builtins(payload)
    return {k: v for k, v in data.items() if k not in _ENVELOPE}


def order_history(ledger: Ledger, order_id: str, upto: int | None = None) -> list[Step]:
    """Every event of the order, in order, with the order's state after each.

    ``upto`` stops at a global position (inclusive).
    """
    key = order_key(order_id)
    steps: list[Step] = []
    order: Order | None = None
    for position, version, payload in ledger.events_of(key, upto):
        order = Recorded(key, version, payload.at, payload).mutate(order)
        steps.append(Step(position, version, payload, order.view()))
    return steps


# --- explain -------------------------------------------------------------------------

WHY: dict[type, str] = {
    ev.OrderPlaced: "placed: the order starts Pending, in the buyer's 30-minute hold (docs/rules.md 3.1-3.2)",
    ev.HoldExpired: "the 30-minute hold ended (docs/rules.md 3.3)",
    ev.PaymentVerified: "payment verified (docs/rules.md 3.4)",
    ev.PaymentExtended: "payment verification extended: it may take up to 21 days (docs/rules.md 3.4)",
    ev.PaymentDeclined: "payment declined or fraud: canceled, the seller is not notified (docs/rules.md 3.4)",
    ev.BuyerCanceled: "the buyer canceled inside the hold (docs/rules.md 3.2)",
    ev.CancellationRequested: "the buyer asked the seller to cancel (docs/rules.md 3.7)",
    ev.SellerCanceled: "the seller canceled with a reason code (docs/rules.md 3.7)",
    ev.LedgerCanceled: "the ledger canceled on a deadline (docs/rules.md 3.4, 3.9)",
    ev.ShipByWarningIssued: "day 23: confirm shipment within a week or the order is canceled (docs/rules.md 3.9)",
    ev.ShipmentConfirmed: "shipment confirmed (docs/rules.md 3.8)",
    ev.OrderAdjusted: "order adjusted: quantities canceled and/or amounts refunded (docs/rules.md 3.11)",
    ev.MessageSent: "the seller messaged the buyer (docs/rules.md §4)",
    ev.MessageReceived: "a message was received (docs/rules.md §4)",
    ev.ShippingAddressChanged: "the shipping address was changed on request (docs/rules.md 3.10)",
    ev.OrderAcknowledged: "the seller acknowledged the order (an acknowledgement feed row); nothing canceled",
    ev.RestrictedDataReleased: "the marketplace released data it had withheld (address or buyer): the placeholders replaced",
    ev.TrackingCorrected: "the tracking of the shipment was corrected (a re-sent confirmation); nothing shipped again",
}

NEXT: dict[str, str] = {
    HOLD: "the hold ends: an outcome recorded during the hold takes effect; without one "
          "the order stays Pending until payment is verified",
    VERIFY: "still Pending 21 days after purchase: the ledger cancels it (PaymentNotVerified)",
    WARN: "day 23: the seller is warned to confirm shipment within a week",
    SHIP: "day 30: whatever is not confirmed as shipped is canceled (ShipmentNotConfirmed)",
}

ACTIONS: dict[str, str] = {
    "Pending": "nothing for the seller: a Pending order is greyed out and non-actionable",
    "Unshipped": "ship it (ship) or cancel it with a reason (cancel)",
    "PartiallyShipped": "ship the rest or cancel/adjust what cannot be shipped",
    "Shipped": "nothing left to ship; refunds after a return go through adjust",
    "Canceled": "nothing: the order is closed",
}


def explain(ledger: Ledger, order_id: str,
            steps: list[Step] | None = None) -> Explanation | None:
    """Why the order is in its status, and what happens next; ``steps``: the order's
    history to explain (default: all of it; e.g. ``replay.asof.steps_as_of`` for a past
    view)."""
    if steps is None:
        steps = order_history(ledger, order_id)
    if not steps:
        return None
    state = steps[-1].state
    reasons: list[Reason] = []
    prev_status = None
    for step in steps:
        p = step.payload
        status = step.state["status"]
        changed = status != prev_status
        text = WHY.get(type(p), type(p).__name__)
        detail = _detail(p)
        if changed or isinstance(p, (ev.ShipmentConfirmed, ev.OrderAdjusted,
                                     ev.ShipByWarningIssued, ev.CancellationRequested)):
            reasons.append(Reason(
                position=step.position, at=p.at.isoformat(), type=type(p).__name__,
                actor=p.actor, why=text + (f": {detail}" if detail else ""),
                status_after=status))
        prev_status = status
    nd = state.get("next_deadline")
    return Explanation(
        order_id=order_id,
        status=state["status"],
        actionable=state["actionable"],
        because=reasons,
        seller_can=ACTIONS[state["status"]],
        next_deadline=(NextStep(kind=nd["kind"], at=nd["at"], what_happens=NEXT[nd["kind"]])
                       if nd else None),
    )


def _detail(p: ev.Event) -> str:
    if isinstance(p, (ev.SellerCanceled, ev.LedgerCanceled, ev.BuyerCanceled)):
        return f"reason {p.reason}" if p.reason else ""
    if isinstance(p, ev.PaymentDeclined):
        return p.outcome + ("" if p.effective else ", takes effect when the hold ends")
    if isinstance(p, ev.PaymentVerified):
        return "takes effect when the hold ends" if not p.effective else \
            f"released; ship by {p.latest_ship_date.isoformat()}"
    if isinstance(p, ev.HoldExpired) and p.applied_outcome:
        return f"applied the {p.applied_outcome} outcome recorded during the hold"
    if isinstance(p, ev.ShipmentConfirmed):
        return ", ".join(f"{q.quantity} × {q.order_item_id}" for q in p.items) + \
            f" via {p.carrier_code}"
    if isinstance(p, ev.ShipByWarningIssued):
        return p.text
    return ""
