"""Helpers shared by the ``test_rules*.py`` files (this module has no tests).

Every rejection is checked with :func:`rejects`, which also proves the rule
"a rejected command writes nothing": the head, the full event list and the
ledger clock are compared before and after.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from builders import T0, cmd, item, lines, place

from ledger.application import Ledger, Outcome

__all__ = ["T0", "cmd", "item", "lines", "place"]


def t(days: float = 0, hours: float = 0, minutes: float = 0, seconds: float = 0,
      microseconds: float = 0, base: datetime = T0) -> str:
    """An ISO time relative to T0 (2026-03-02 09:00 +01:00), down to the microsecond."""
    return (base + timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds,
                             microseconds=microseconds)).isoformat()


def dt(text: str) -> datetime:
    return datetime.fromisoformat(text)


def run(ledger: Ledger, *cmds: dict, batch_size: int = 1000) -> list[Outcome]:
    """Apply commands as command-file lines; every outcome, in order."""
    return list(ledger.apply_lines(lines(*cmds), batch_size=batch_size))


def ok(ledger: Ledger, *cmds: dict) -> list[Outcome]:
    """Apply commands that must all be accepted."""
    outs = run(ledger, *cmds)
    for o in outs:
        assert o.status == "applied", (o.line, o.type, o.error)
    return outs


def ok1(ledger: Ledger, command: dict) -> Outcome:
    """Apply one command that must be accepted; its outcome."""
    out = ledger.execute(command)
    assert out.status == "applied", (out.type, out.error)
    return out


def snapshot(ledger: Ledger) -> tuple:
    return ledger.head(), list(ledger.iter_events()), ledger.now()


def rejects(ledger: Ledger, command: dict | str, code: str) -> dict:
    """The command is rejected with ``code``, says what and how, and writes nothing."""
    before = snapshot(ledger)
    out = ledger.execute(command if isinstance(command, (dict, str)) else command)
    assert out.status == "rejected", f"expected {code}, got {out.status} {out.events}"
    assert out.error is not None and out.error["code"] == code, out.error
    assert out.error["message"], out.error
    assert out.events == []
    assert snapshot(ledger) == before, "a rejected command wrote something"
    return out.error


def view(ledger: Ledger, order_id: str) -> dict:
    order = ledger.order(order_id)
    assert order is not None, f"no order {order_id}"
    return order.view()


def quantities(ledger: Ledger, order_id: str) -> list[tuple[int, int, int]]:
    """Per item: (shipped, canceled, to ship)."""
    return [(i["quantity_shipped"], i["quantity_canceled"], i["quantity_to_ship"])
            for i in view(ledger, order_id)["items"]]


def available(ledger: Ledger, sku: str) -> int | None:
    inv = ledger.inventory(sku)
    return None if inv is None else inv.available


def order_events(ledger: Ledger, order_id: str) -> list:
    """The payloads of one order's events, in order."""
    return [e for _, agg, e in ledger.iter_events() if agg == "order:" + order_id]


def names(payloads: list) -> list[str]:
    return [type(p).__name__ for p in payloads]


def last_event(ledger: Ledger, order_id: str, kind: str):
    found = [e for e in order_events(ledger, order_id) if type(e).__name__ == kind]
    assert found, f"no {kind} on {order_id}"
    return found[-1]


def released(order_id: str, minutes: float = 0, items: list[dict] | None = None,
             **extra) -> list[dict]:
    """Place at T0+minutes, verify inside the hold, tick at hold end: Unshipped."""
    return [
        place(order_id, t(minutes=minutes), items, **extra),
        cmd("verify-payment", t(minutes=minutes + 5), order_id=order_id, outcome="verified"),
        cmd("tick", t(minutes=minutes + 30)),
    ]


def ship(order_id: str, when: str, items: list[tuple[str, int]] | None = None,
         ship_date: str | None = None, **extra) -> dict:
    fields = {"order_id": order_id, "carrier_code": "PostNord", "tracking_number": "SE123456789",
              "ship_date": ship_date or when[:10], **extra}
    if items is not None:
        fields["items"] = [{"order_item_id": i, "quantity": q} for i, q in items]
    return cmd("ship", when, **fields)


def adjust(order_id: str, when: str, *adj: dict) -> dict:
    return cmd("adjust", when, order_id=order_id, items=list(adj))


def adj(item_id: str = "10000000000001", reason: str = "NoInventory", **fields) -> dict:
    return {"order_item_id": item_id, "reason": reason, **fields}


def raw(command: dict) -> str:
    return json.dumps(command)


# two-item order used by several files
A, B = "10000000000001", "10000000000002"


def two_items(qa: int = 2, qb: int = 1, sku_a: str = "MUG-1", sku_b: str = "CUP-1") -> list[dict]:
    return [item(A, sku_a, qa, "398.00", item_tax="99.50", shipping_price="49.00",
                 shipping_tax="12.25"),
            item(B, sku_b, qb, "99.00", item_tax="24.75")]
