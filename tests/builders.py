"""Small builders for command-file lines, used across the tests."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

#: the example command file the README runs: 200 lines, 247 events
WALKTHROUGH = Path(__file__).resolve().parent.parent / "examples" / "walkthrough.jsonl"


def walkthrough_lines(n: int | None = None) -> list[bytes]:
    """The walkthrough's lines (the first ``n`` of them)."""
    return WALKTHROUGH.read_bytes().splitlines()[:n]

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone(timedelta(hours=1)))


def at(minutes: float = 0, *, days: float = 0, hours: float = 0, base: datetime = T0) -> str:
    """An ISO time relative to T0 (2026-03-02 09:00 +01:00)."""
    return (base + timedelta(days=days, hours=hours, minutes=minutes)).isoformat()


def oid(n: int) -> str:
    """A valid 3-7-7 order id for a small number."""
    return f"203-{n:07d}-{(n * 7919) % 10_000_000:07d}"


def item(item_id: str = "10000000000001", sku: str = "SKU-1", quantity: int = 1,
         price: str = "100.00", **extra) -> dict:
    return {"order_item_id": item_id, "sku": sku, "title": f"Product {sku}",
            "quantity": quantity, "item_price": price, **extra}


def place(order_id: str, when: str, items: list[dict] | None = None, **extra) -> dict:
    cmd = {
        "type": "place", "at": when, "order_id": order_id, "currency": "SEK",
        "ship_service_level": "Standard", "items": items or [item()],
        "buyer": {"name": "Anna Andersson", "email": "anna@example.se", "phone": "+46701234567",
                  "language": "sv-SE"},
        "ship_to": {"name": "Anna Andersson", "address_1": "Storgatan 1", "city": "Stockholm",
                    "postal_code": "11122", "country": "SE"},
    }
    cmd.update(extra)
    return cmd


def cmd(ctype: str, when: str, **fields) -> dict:
    return {"type": ctype, "at": when, **fields}


def lines(*cmds: dict) -> list[str]:
    return [json.dumps(c) for c in cmds]


def released(order_id: str, *, when_minutes: float = 0, items: list[dict] | None = None) -> list[dict]:
    """Place an order and verify it during the hold; it is Unshipped once the hold ends."""
    return [
        place(order_id, at(when_minutes), items),
        cmd("verify-payment", at(when_minutes + 5), order_id=order_id, outcome="verified"),
        cmd("tick", at(when_minutes + 30)),
    ]
