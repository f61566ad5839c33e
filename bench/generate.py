"""A realistic, deterministic command stream for benchmarks.

    python -m bench.generate --orders N --seed S > commands.jsonl

Orders arrive over four weeks of business time (Swedish seller, SEK), then the
stream runs on five more weeks so every deadline falls due. The mix follows
the benchmark issue: about 80 % verified and shipped (some partially, some
late, some without tracking), 5 % buyer cancels in the hold, 3 % payment
extended (some released, some timing out at 21 days), 1 % declined or fraud,
3 % seller cancels, some day-30 auto-cancels, adjustments, buyer requests,
messages, address changes, inventory updates, multi-item orders and ticks.
Every line is meant to be accepted; the same arguments give the same bytes.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from datetime import datetime, timedelta, timezone
from typing import IO, Iterator

TZ = timezone(timedelta(hours=1))
START = datetime(2026, 3, 2, 0, 0, tzinfo=TZ)
ARRIVAL_DAYS = 28
TAIL_DAYS = 35
TICK_EVERY = timedelta(minutes=30)
TRACKED_SKUS = 20
SKUS = 400
CARRIERS = ["PostNord", "DHL", "UPS", "Bring", "Other"]
REASONS = ["NoInventory", "GeneralAdjustment", "PricingError", "ShippingAddressUndeliverable",
           "CustomerExchange"]
CITIES = [("Stockholm", "11122"), ("Göteborg", "41101"), ("Malmö", "21120"),
          ("Uppsala", "75310"), ("Umeå", "90326")]
NAMES = ["Anna Andersson", "Erik Johansson", "Maria Karlsson", "Lars Nilsson",
         "Karin Eriksson", "Per Larsson", "Sara Olsson", "Johan Persson"]


def order_id(n: int) -> str:
    return f"203-{n % 10_000_000:07d}-{(n * 7_919 + 1_234_567) % 10_000_000:07d}"


class Stream:
    def __init__(self) -> None:
        self.rows: list[tuple[datetime, int, dict]] = []
        self.seq = 0

    def add(self, at: datetime, ctype: str, **fields: object) -> None:
        self.seq += 1
        cmd = {"type": ctype, "at": at.isoformat(), "command_id": f"g-{self.seq}", **fields}
        self.rows.append((at, self.seq, cmd))

    def sorted(self) -> list[dict]:
        return [c for _, _, c in sorted(self.rows, key=lambda r: (r[0], r[1]))]


def _minutes(rng: random.Random, lo: float, hi: float) -> timedelta:
    return timedelta(minutes=rng.uniform(lo, hi))


def _ship(s: Stream, rng: random.Random, oid: str, at: datetime, items: list | None,
          tracking: bool = True) -> None:
    carrier = rng.choice(CARRIERS)
    fields: dict = {"order_id": oid, "carrier_code": carrier, "ship_date": at.date().isoformat()}
    if carrier == "Other":
        fields["carrier_name"] = "Schenker"
    if tracking:
        fields["tracking_number"] = f"TRK{rng.randrange(10**9):09d}"
    if items is not None:
        fields["items"] = items
    s.add(at, "ship", **fields)


def generate(orders: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    s = Stream()
    for k in range(TRACKED_SKUS):
        s.add(START, "set-inventory", sku=f"SKU-{k:04d}", quantity=orders)
    span = ARRIVAL_DAYS * 86_400
    for n in range(orders):
        t = START + timedelta(seconds=60 + span * n / max(orders, 1) + rng.uniform(0, 30))
        oid = order_id(n)
        n_items = 1 if rng.random() < 0.8 else rng.randint(2, 3)
        items = []
        for j in range(n_items):
            sku = f"SKU-{rng.randrange(SKUS):04d}"
            qty = 1 if rng.random() < 0.85 else 2
            price = rng.randrange(4_900, 99_900) / 100
            items.append({"order_item_id": f"{n:010d}{j:04d}", "sku": sku,
                          "title": f"Produkt {sku}", "quantity": qty,
                          "item_price": f"{price * qty:.2f}", "item_tax": f"{price * qty * 0.2:.2f}",
                          "shipping_price": "49.00", "shipping_tax": "9.80"})
        name = rng.choice(NAMES)
        city, postal = rng.choice(CITIES)
        s.add(t, "place", order_id=oid, items=items, currency="SEK",
              ship_service_level="Expedited" if rng.random() < 0.1 else "Standard",
              buyer={"name": name, "email": f"buyer{n}@marketplace.example", "language": "sv-SE"},
              ship_to={"name": name, "address_1": f"Storgatan {rng.randint(1, 99)}",
                       "city": city, "postal_code": postal, "country": "SE"})
        r = rng.random()
        if r < 0.05:  # buyer cancels inside the hold
            s.add(t + _minutes(rng, 1, 25), "cancel", order_id=oid, by="buyer")
            continue
        if r < 0.06:  # declined or fraud
            s.add(t + _minutes(rng, 2, 20), "verify-payment", order_id=oid,
                  outcome=rng.choice(["declined", "fraud"]))
            continue
        if r < 0.09:  # extended; two thirds released later, a third time out at 21 days
            s.add(t + _minutes(rng, 2, 20), "verify-payment", order_id=oid, outcome="extended")
            if rng.random() < 0.34:
                continue
            released = t + timedelta(days=rng.uniform(1, 10))
            s.add(released, "verify-payment", order_id=oid, outcome="verified")
            _ship(s, rng, oid, released + timedelta(hours=rng.uniform(2, 40)), None)
            continue
        verified = t + _minutes(rng, 1, 28)
        s.add(verified, "verify-payment", order_id=oid, outcome="verified")
        open_from = t + timedelta(minutes=31)
        if r < 0.12:  # seller cancels
            s.add(open_from + timedelta(hours=rng.uniform(1, 30)), "cancel", order_id=oid,
                  by="seller", reason=rng.choice(REASONS), memo="out of stock at supplier")
            continue
        if r < 0.13:  # buyer asks, seller agrees
            asked = open_from + timedelta(hours=rng.uniform(1, 10))
            s.add(asked, "request-cancel", order_id=oid, reason="Ordered by mistake")
            s.add(asked + timedelta(hours=2), "cancel", order_id=oid, by="seller",
                  reason="BuyerCanceled")
            continue
        if r < 0.14:  # never confirmed: warned on day 23, canceled on day 30
            continue
        if r < 0.15:  # confirmed only after the day-23 warning
            _ship(s, rng, oid, t + timedelta(days=24, hours=rng.uniform(0, 100)), None)
            continue
        # the common case: shipped, sometimes late, sometimes split, sometimes untracked
        late = rng.random() < 0.05
        ship_at = open_from + (timedelta(days=rng.uniform(2.1, 5)) if late
                               else timedelta(hours=rng.uniform(1, 40)))
        tracking = rng.random() > 0.03
        x = rng.random()
        if x < 0.02:  # address change requested by the buyer first
            s.add(open_from + timedelta(minutes=20), "receive-message", order_id=oid,
                  **{"from": "buyer"}, body=f"Hej! Kan ni skicka order {oid} till min nya adress?",
                  requests_address_change=True)
            s.add(open_from + timedelta(minutes=50), "change-address", order_id=oid,
                  ship_to={"name": name, "address_1": "Nygatan 5", "city": city,
                           "postal_code": postal, "country": "SE"})
        elif x < 0.04:  # a delivery question answered by the seller
            s.add(open_from + timedelta(minutes=20), "send-message", order_id=oid,
                  purpose="delivery-problem", language="sv-SE",
                  body=f"Hej! Din beställning {oid} blir en dag försenad på grund av "
                       f"vädret. Vi skickar den så snart vi kan.")
        if n_items > 1 and rng.random() < 0.5:  # split: first item now, the rest later
            first = items[0]
            _ship(s, rng, oid, ship_at, [{"order_item_id": first["order_item_id"],
                                          "quantity": first["quantity"]}], tracking)
            if rng.random() < 0.2:  # the rest could not be found: adjust it away
                rest = items[1]
                s.add(ship_at + timedelta(hours=1), "adjust", order_id=oid, items=[{
                    "order_item_id": rest["order_item_id"], "reason": "NoInventory",
                    "quantity_cancelled": rest["quantity"], "item_price_adj": rest["item_price"]}])
                if n_items > 2:
                    _ship(s, rng, oid, ship_at + timedelta(hours=2), None, tracking)
            else:
                _ship(s, rng, oid, ship_at + timedelta(hours=rng.uniform(2, 24)), None, tracking)
        else:
            _ship(s, rng, oid, ship_at, None, tracking)
        if rng.random() < 0.03:  # returned later: refund after return
            first = items[0]
            s.add(ship_at + timedelta(days=rng.uniform(5, 9)), "adjust", order_id=oid, items=[{
                "order_item_id": first["order_item_id"], "reason": "CustomerReturn",
                "item_price_adj": first["item_price"]}])
    # restocks and ticks
    day = START
    end = START + timedelta(days=ARRIVAL_DAYS + TAIL_DAYS)
    while day < end:
        for k in range(TRACKED_SKUS):
            if rng.random() < 0.2:
                s.add(day + timedelta(hours=6), "set-inventory", sku=f"SKU-{k:04d}",
                      quantity=orders)
        day += timedelta(days=1)
    t = START + TICK_EVERY
    while t <= end:
        s.add(t, "tick")
        t += TICK_EVERY
    return s.sorted()


def write(commands: list[dict], out: IO[str]) -> None:
    for cmd in commands:
        out.write(json.dumps(cmd, ensure_ascii=False, separators=(",", ":")) + "\n")


def iter_lines(orders: int, seed: int) -> Iterator[str]:
    for cmd in generate(orders, seed):
        yield json.dumps(cmd, ensure_ascii=False, separators=(",", ":"))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--orders", type=int, default=1000, help="number of orders")
    p.add_argument("--seed", type=int, default=1, help="random seed")
    a = p.parse_args(argv)
    write(generate(a.orders, a.seed), sys.stdout)


if __name__ == "__main__":
    main()
