#!/usr/bin/env python3
"""Generate ``walkthrough.jsonl`` and ``rejections.jsonl`` deterministically.

A small Swedish shop ("Hemma i Norden", prices in SEK, buyers mostly writing
sv-SE) over seven weeks of business time, 2026-03-02 .. 2026-04-20, in local
Stockholm time (+01:00, then +02:00 from 29 March). Every rule of the rule
book appears at least once; every line is accepted. ``rejections.jsonl`` holds
typical mistakes made right after the walkthrough, one per rejection kind,
each of which the ledger rejects.

    python examples/make_walkthrough.py            # rewrite both files
    python examples/make_walkthrough.py --check    # also apply them to a temporary ledger

No randomness and no wall clock: running it twice gives the same bytes.
"""

from __future__ import annotations

import json
import sys
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
CET, CEST = timezone(timedelta(hours=1)), timezone(timedelta(hours=2))
SUMMER_TIME = datetime(2026, 3, 29, 1, 0, tzinfo=timezone.utc)  # clocks go forward


def local(month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    """Stockholm wall-clock time 2026-MM-DD hh:mm with its UTC offset."""
    naive = datetime(2026, month, day, hour, minute)
    cet = naive.replace(tzinfo=CET)
    return naive.replace(tzinfo=CEST) if cet >= SUMMER_TIME else cet


def oid(n: int) -> str:
    """Order ids in the marketplace's 3-7-7 form (same formula as tests/builders.py)."""
    return f"203-{n:07d}-{(n * 7919) % 10_000_000:07d}"


# --- catalogue ---------------------------------------------------------------------------

PRODUCTS = {
    # sku: (title, unit price incl. 25 % VAT)
    "MUGG-BLA": ("Kaffemugg i stengods, blå", "149.00"),
    "TEKANNA-GJ": ("Tekanna i gjutjärn 1,2 l", "449.00"),
    "FAT-EK": ("Serveringsfat i ek", "329.00"),
    "LJUS-3P": ("Blockljus, 3-pack", "119.00"),
    "HANDDUK-LIN": ("Linnehandduk, grå", "199.00"),       # untracked: never set
    "KORG-SJO": ("Korg i sjögräs", "279.00"),             # untracked
    "BRICKA-BJ": ("Bricka i björk", "249.00"),            # untracked
}
STOCK = {"MUGG-BLA": 24, "TEKANNA-GJ": 6, "FAT-EK": 3, "LJUS-3P": 40}
SHIPPING = {"Standard": ("49.00", "9.80"), "Expedited": ("89.00", "17.80")}

BUYERS = [
    # name, e-mail, street, postal code, city
    ("Anna Lindqvist", "anna.lindqvist@example.se", "Storgatan 12", "111 22", "Stockholm"),
    ("Erik Johansson", "erik.j@example.se", "Kungsgatan 4B", "411 19", "Göteborg"),
    ("Maria Nilsson", "maria.nilsson@example.se", "Östra Förstadsgatan 31", "212 12", "Malmö"),
    ("Lars Karlsson", "lars.k@example.se", "Dragarbrunnsgatan 9", "753 20", "Uppsala"),
    ("Karin Andersson", "karin.a@example.se", "Drottninggatan 55", "602 24", "Norrköping"),
    ("Johan Berg", "johan.berg@example.se", "Järnvägsgatan 3", "903 26", "Umeå"),
    ("Sofia Holm", "sofia.holm@example.se", "Sankt Larsgatan 18", "582 24", "Linköping"),
    ("Mikael Ek", "mikael.ek@example.se", "Västra Hamngatan 7", "252 21", "Helsingborg"),
    ("Elin Sandberg", "elin.s@example.se", "Nygatan 21", "803 11", "Gävle"),
    ("Oskar Lund", "oskar.lund@example.se", "Storgatan 40", "852 30", "Sundsvall"),
    ("Ingrid Dahl", "ingrid.dahl@example.se", "Kyrkogatan 2", "972 32", "Luleå"),
    ("Peter Wallin", "peter.w@example.se", "Bangårdsgatan 14", "541 30", "Skövde"),
]


def money(x: str, n: int = 1) -> str:
    return f"{float(x) * n:.2f}"


def vat_of(gross: str) -> str:
    """The VAT inside a gross amount at 25 %: a fifth of it."""
    return f"{float(gross) / 5:.2f}"


class Walkthrough:
    def __init__(self) -> None:
        self.rows: list[tuple[datetime, int, dict]] = []
        self.seq = 0

    def add(self, at: datetime, ctype: str, **fields) -> dict:
        self.seq += 1
        command = {"type": ctype, "at": at.isoformat(), **fields}
        self.rows.append((at, self.seq, command))
        return command

    # --- commands ------------------------------------------------------------------------

    def place(self, n: int, at: datetime, lines: list[tuple[str, int]], buyer: int,
              level: str = "Standard", language: str = "sv-SE", **extra) -> str:
        name, email, street, postal, city = BUYERS[buyer % len(BUYERS)]
        ship_price, ship_tax = SHIPPING[level]
        items = []
        for k, (sku, qty) in enumerate(lines):
            title, unit = PRODUCTS[sku]
            price = money(unit, qty)
            item = {"order_item_id": f"{40_000_000_000_000 + n * 100 + k + 1:014d}", "sku": sku,
                    "title": title, "quantity": qty, "item_price": price,
                    "item_tax": vat_of(price)}
            if k == 0:  # shipping is charged on the first line
                item.update(shipping_price=ship_price, shipping_tax=ship_tax)
            items.append(item)
        self.add(at, "place", order_id=oid(n), items=items, currency="SEK",
                 ship_service_level=level,
                 buyer={"name": name, "email": email, "language": language},
                 ship_to={"name": name, "address_1": street, "city": city,
                          "postal_code": postal, "country": "SE"}, **extra)
        return oid(n)

    def item_id(self, n: int, k: int = 0) -> str:
        return f"{40_000_000_000_000 + n * 100 + k + 1:014d}"

    def pay(self, n: int, at: datetime, outcome: str = "verified") -> None:
        self.add(at, "verify-payment", order_id=oid(n), outcome=outcome)

    def ship(self, n: int, at: datetime, *, carrier: str = "PostNord", tracking: str | None = "auto",
             ship_date: str | None = None, items: list[tuple[int, int]] | None = None,
             **extra) -> None:
        fields = {"order_id": oid(n), "carrier_code": carrier,
                  "ship_date": ship_date or at.date().isoformat()}
        if tracking == "auto":
            tracking = f"00370733{n:04d}{at.day:02d}{at.hour:02d}{at.minute:02d}"
        if tracking:
            fields["tracking_number"] = tracking
        if items is not None:
            fields["items"] = [{"order_item_id": self.item_id(n, k), "quantity": q}
                               for k, q in items]
        self.add(at, "ship", **fields, **extra)

    def cancel(self, n: int, at: datetime, reason: str, memo: str | None = None) -> None:
        fields = {"order_id": oid(n), "by": "seller", "reason": reason}
        if memo:
            fields["memo"] = memo
        self.add(at, "cancel", **fields)

    def receive(self, n: int, at: datetime, body: str, *, sender: str = "buyer",
                address_change: bool = False) -> None:
        fields = {"order_id": oid(n), "from": sender, "body": body}
        if address_change:
            fields["requests_address_change"] = True
        self.add(at, "receive-message", **fields)

    def send(self, n: int, at: datetime, purpose: str, body: str, language: str = "sv-SE",
             **extra) -> None:
        self.add(at, "send-message", order_id=oid(n), purpose=purpose, language=language,
                 body=body.replace("{id}", oid(n)), **extra)

    def adjust(self, n: int, at: datetime, *lines: dict) -> None:
        self.add(at, "adjust", order_id=oid(n), items=list(lines))

    # --- output --------------------------------------------------------------------------

    def commands(self) -> list[dict]:
        out = []
        for number, (_, _, command) in enumerate(sorted(self.rows, key=lambda r: (r[0], r[1])), 1):
            out.append({"type": command["type"], "command_id": f"wt-{number:04d}", **command})
        return out


def build() -> list[dict]:
    w = Walkthrough()
    L = local

    # the shop's stock: four tracked SKUs; towels, baskets and trays are made to order (untracked)
    for sku, qty in STOCK.items():
        w.add(L(3, 2, 7, 30), "set-inventory", sku=sku, quantity=qty)

    # the ledger's clock job: a tick every morning at 06:00 lets deadlines fire on time
    day = date(2026, 3, 3)
    while day <= date(2026, 4, 20):
        w.add(L(day.month, day.day, 6, 0), "tick")
        day += timedelta(days=1)

    # 1. the everyday case: verified inside the hold, shipped the next morning, a delivery note
    w.place(1, L(3, 2, 9, 12), [("MUGG-BLA", 2)], buyer=0)
    w.pay(1, L(3, 2, 9, 14))
    w.ship(1, L(3, 3, 8, 40))
    w.send(1, L(3, 3, 8, 45), "order-information",
           "Hej Anna! Din beställning {id} lämnades till PostNord i morse och beräknas komma "
           "fram inom två arbetsdagar. Vänliga hälsningar, Hemma i Norden")

    # 2. multi-item order shipped in two parts
    w.place(2, L(3, 2, 10, 40), [("MUGG-BLA", 2), ("LJUS-3P", 1), ("HANDDUK-LIN", 1)], buyer=1)
    w.pay(2, L(3, 2, 10, 41))
    w.ship(2, L(3, 3, 9, 5), items=[(0, 2), (1, 1)])
    w.ship(2, L(3, 5, 14, 30))  # the rest: the towel came from the weaver

    # 3. the buyer cancels inside the 30-minute hold: whole order Canceled, teapot back in stock
    w.place(3, L(3, 2, 13, 5), [("TEKANNA-GJ", 1)], buyer=2)
    w.add(L(3, 2, 13, 21), "cancel", order_id=oid(3), by="buyer", reason="Beställde fel färg")

    # 4. payment verified just after the hold: promise dates move by ten minutes
    w.place(4, L(3, 3, 8, 30), [("KORG-SJO", 1)], buyer=3)
    w.pay(4, L(3, 3, 9, 10))
    w.ship(4, L(3, 4, 10, 0), carrier="DHL")

    # 5. verification extended, released two days later: the buyer gets new dates
    w.place(5, L(3, 3, 20, 15), [("TEKANNA-GJ", 1), ("MUGG-BLA", 2)], buyer=4)
    w.pay(5, L(3, 3, 20, 20), "extended")
    w.pay(5, L(3, 5, 11, 0))
    w.ship(5, L(3, 6, 9, 30), carrier="DHL")

    # 6. verification extended and never completed: canceled at purchase + 21 days
    w.place(6, L(3, 4, 14, 0), [("LJUS-3P", 2)], buyer=5)
    w.pay(6, L(3, 4, 14, 5), "extended")
    w.pay(6, L(3, 9, 12, 0), "extended")

    # 8. authorization declined inside the hold: Canceled at hold end, nobody is told
    w.place(8, L(3, 5, 9, 0), [("FAT-EK", 1)], buyer=6)
    w.pay(8, L(3, 5, 9, 10), "declined")

    # 9. extended, then flagged as fraud: Canceled at once
    w.place(9, L(3, 5, 22, 0), [("MUGG-BLA", 4)], buyer=7)
    w.pay(9, L(3, 5, 22, 5), "extended")
    w.pay(9, L(3, 6, 10, 0), "fraud")

    # 10. declined after the hold
    w.place(10, L(3, 6, 7, 45), [("BRICKA-BJ", 1)], buyer=8)
    w.pay(10, L(3, 6, 8, 30), "declined")

    # 11-16. seller cancellations, one per reason code
    w.place(11, L(3, 7, 10, 0), [("FAT-EK", 1)], buyer=9)
    w.pay(11, L(3, 7, 10, 5))
    w.cancel(11, L(3, 7, 16, 0), "NoInventory", "Fatet sprack vid packning, inga fler i lager")

    w.place(12, L(3, 8, 11, 20), [("TEKANNA-GJ", 1)], buyer=10)
    w.pay(12, L(3, 8, 11, 22))
    w.cancel(12, L(3, 8, 12, 0), "PricingError", "Fel pris i annonsen: 49 i stället för 449")

    w.place(13, L(3, 9, 9, 0), [("KORG-SJO", 1)], buyer=11)
    w.pay(13, L(3, 9, 9, 1))
    w.receive(13, L(3, 9, 15, 0), "Hej, jag har flyttat och adressen på ordern finns inte längre.")
    w.cancel(13, L(3, 10, 8, 0), "ShippingAddressUndeliverable")

    w.place(14, L(3, 9, 12, 0), [("LJUS-3P", 3)], buyer=0)
    w.pay(14, L(3, 9, 12, 2))
    w.add(L(3, 9, 18, 0), "request-cancel", order_id=oid(14), reason="Hittade dem billigare i butik")
    w.cancel(14, L(3, 10, 8, 10), "BuyerCanceled", "Köparen ångrade sig")

    w.place(15, L(3, 10, 13, 0), [("HANDDUK-LIN", 2)], buyer=1)
    w.pay(15, L(3, 10, 13, 1))
    w.cancel(15, L(3, 11, 9, 0), "GeneralAdjustment", "Dubbelbeställning, köparen har en annan order")

    w.place(16, L(3, 11, 10, 30), [("MUGG-BLA", 1)], buyer=2)
    w.pay(16, L(3, 11, 10, 31))
    w.receive(16, L(3, 11, 12, 0), "Kan jag byta till den gröna muggen i stället?")
    w.cancel(16, L(3, 11, 14, 0), "CustomerExchange", "Byts mot grön mugg på ny order")

    # 17. shipped without a tracking number (letter post)
    w.place(17, L(3, 11, 19, 0), [("LJUS-3P", 1)], buyer=3)
    w.pay(17, L(3, 11, 19, 3))
    w.ship(17, L(3, 12, 10, 0), tracking=None, ship_method="Varubrev")

    # 18. a late shipment: due 13 March, handed over on Friday the 13th, confirmed on Monday
    w.place(18, L(3, 11, 21, 0), [("BRICKA-BJ", 1)], buyer=4)
    w.pay(18, L(3, 11, 21, 2))
    w.ship(18, L(3, 16, 8, 15), ship_date="2026-03-13")

    # 19-20. carrier code Other with the carrier's name
    w.place(19, L(3, 12, 8, 0), [("KORG-SJO", 1)], buyer=5)
    w.pay(19, L(3, 12, 8, 2))
    w.ship(19, L(3, 12, 16, 0), carrier="Other", carrier_name="Bring", ship_method="Paket")

    w.place(20, L(3, 12, 9, 30), [("MUGG-BLA", 2)], buyer=6, level="Expedited",
            latest_ship_date=L(3, 12, 17, 0).isoformat(),
            latest_delivery_date=L(3, 13, 21, 0).isoformat())
    w.pay(20, L(3, 12, 9, 31))
    w.ship(20, L(3, 12, 15, 45), carrier="Other", carrier_name="Budbee",
           ship_date=L(3, 12, 15, 30).isoformat())

    # 21. the day-23 warning, then the shipment just in time
    w.place(21, L(3, 10, 11, 0), [("TEKANNA-GJ", 1)], buyer=7)
    w.pay(21, L(3, 10, 11, 4))
    w.receive(21, L(3, 20, 10, 0), "Hej! När skickas min tekanna?")
    w.send(21, L(3, 20, 11, 0), "delivery-problem",
           "Hej! Tekannan i beställning {id} är försenad från vår leverantör. Vi räknar med att "
           "skicka den i början av april. Vänliga hälsningar, Hemma i Norden")
    w.ship(21, L(4, 5, 9, 0))

    # 22. never shipped: the day-30 rule cancels it, the teapot returns to stock
    w.place(22, L(3, 12, 15, 0), [("TEKANNA-GJ", 1)], buyer=8)
    w.pay(22, L(3, 12, 15, 1))

    # 23. partly shipped, the rest never confirmed: the day-30 rule cancels the rest -> Shipped
    w.place(23, L(3, 14, 10, 0), [("MUGG-BLA", 2), ("LJUS-3P", 2)], buyer=9)
    w.pay(23, L(3, 14, 10, 1))
    w.ship(23, L(3, 16, 11, 0), items=[(0, 2)])

    # 24. partial cancellation by adjustment: the platter is broken, the teapot ships
    w.place(24, L(3, 16, 12, 0), [("TEKANNA-GJ", 1), ("FAT-EK", 1)], buyer=10)
    w.pay(24, L(3, 16, 12, 3))
    w.ship(24, L(3, 17, 9, 0), items=[(0, 1)])
    fat = money(PRODUCTS["FAT-EK"][1])
    w.adjust(24, L(3, 17, 9, 10), {"order_item_id": w.item_id(24, 1), "reason": "NoInventory",
                                   "quantity_cancelled": 1, "item_price_adj": fat,
                                   "item_tax_adj": vat_of(fat)})
    w.send(24, L(3, 17, 9, 20), "order-problem",
           "Hej! Serveringsfatet i beställning {id} gick sönder i vårt lager och finns inte i "
           "lager igen. Vi har därför justerat orderbeloppet och återbetalat fatet. Tekannan är "
           "skickad. Vänliga hälsningar, Hemma i Norden")

    # 25. returned after delivery: refund by adjustment (CustomerReturn) on a Shipped order
    w.place(25, L(3, 16, 19, 0), [("HANDDUK-LIN", 2)], buyer=11)
    w.pay(25, L(3, 16, 19, 1))
    w.ship(25, L(3, 17, 10, 0))
    w.receive(25, L(3, 20, 18, 0), "Handdukarna var tyvärr för små, jag vill returnera dem.")
    w.send(25, L(3, 21, 9, 0), "return-question",
           "Hej! Returen av beställning {id} är registrerad. Skicka tillbaka handdukarna med "
           "returetiketten i bilagan. Vänliga hälsningar, Hemma i Norden",
           attachments=[{"name": "returetikett.pdf", "kind": "label"}])
    towels = money(PRODUCTS["HANDDUK-LIN"][1], 2)
    w.adjust(25, L(3, 27, 14, 0), {"order_item_id": w.item_id(25), "reason": "CustomerReturn",
                                   "item_price_adj": towels, "item_tax_adj": vat_of(towels)})
    w.send(25, L(3, 27, 14, 5), "return-follow-up",
           "Hej! Vi har tagit emot returen av beställning {id} och återbetalat handdukarna. "
           "Vänliga hälsningar, Hemma i Norden")

    # 26. the buyer asks for a new address through messaging; the seller redirects the order
    w.place(26, L(3, 18, 8, 0), [("LJUS-3P", 2)], buyer=0)
    w.pay(26, L(3, 18, 8, 1))
    w.receive(26, L(3, 18, 9, 0), "Hej! Kan ni skicka paketet till mitt jobb i stället: "
              "Sveavägen 44, Stockholm?", address_change=True)
    w.add(L(3, 18, 9, 30), "change-address", order_id=oid(26),
          ship_to={"name": "Anna Lindqvist", "address_1": "Sveavägen 44", "address_2": "Reception",
                   "city": "Stockholm", "postal_code": "111 34", "country": "SE"})
    w.ship(26, L(3, 18, 15, 0))

    # 27. customer service asks for the change on the buyer's behalf
    w.place(27, L(3, 19, 20, 0), [("KORG-SJO", 1)], buyer=1)
    w.pay(27, L(3, 19, 20, 1))
    w.receive(27, L(3, 20, 8, 0), "Köparen har bett oss ändra leveransadressen till "
              "Första Långgatan 8, Göteborg.", sender="customer-service", address_change=True)
    w.add(L(3, 20, 8, 30), "change-address", order_id=oid(27),
          ship_to={"name": "Erik Johansson", "address_1": "Första Långgatan 8",
                   "city": "Göteborg", "postal_code": "413 27", "country": "SE"})
    w.ship(27, L(3, 20, 14, 0))

    # 28. the platters sell out: FAT-EK reaches 0 (inactive), is restocked a week later
    w.place(28, L(3, 21, 10, 0), [("FAT-EK", 3)], buyer=2)
    w.pay(28, L(3, 21, 10, 2))
    w.ship(28, L(3, 23, 9, 0))
    w.add(L(3, 30, 8, 0), "set-inventory", sku="FAT-EK", quantity=5)
    w.place(29, L(3, 31, 12, 0), [("FAT-EK", 1)], buyer=3)
    w.pay(29, L(3, 31, 12, 1))
    w.ship(29, L(4, 1, 10, 0))

    # 30. a single, honest review request after delivery
    w.place(30, L(3, 23, 11, 0), [("BRICKA-BJ", 2)], buyer=4)
    w.pay(30, L(3, 23, 11, 1))
    w.ship(30, L(3, 24, 9, 0))
    w.send(30, L(4, 1, 10, 0), "review-request",
           "Hej! Vi hoppas att brickorna i beställning {id} har kommit fram. Vi vore tacksamma "
           "för en ärlig recension av produkten. Vänliga hälsningar, Hemma i Norden")

    # 31. an English-speaking buyer gets a message in English
    w.place(31, L(3, 24, 17, 0), [("MUGG-BLA", 1), ("LJUS-3P", 1)], buyer=5, language="en-GB")
    w.pay(31, L(3, 24, 17, 1))
    w.ship(31, L(3, 25, 10, 0))
    w.send(31, L(3, 25, 10, 5), "order-information",
           "Hello! Your order {id} was handed to PostNord this morning and should arrive within "
           "three working days. Kind regards, Hemma i Norden", language="en-GB")

    # 32-40. ordinary days across April (summer time from 29 March)
    plain = [
        (32, L(3, 26, 9, 0), [("LJUS-3P", 4)], L(3, 26, 15, 0)),
        (33, L(3, 28, 14, 0), [("MUGG-BLA", 2), ("BRICKA-BJ", 1)], L(3, 30, 9, 0)),
        (34, L(4, 1, 18, 30), [("KORG-SJO", 2)], L(4, 2, 10, 0)),
        (35, L(4, 3, 8, 15), [("TEKANNA-GJ", 1)], L(4, 3, 16, 0)),
        (36, L(4, 7, 12, 0), [("HANDDUK-LIN", 3)], L(4, 8, 9, 30)),
        (37, L(4, 9, 21, 0), [("LJUS-3P", 2), ("MUGG-BLA", 1)], L(4, 10, 11, 0)),
        (38, L(4, 13, 10, 0), [("FAT-EK", 1)], L(4, 14, 9, 0)),
        (39, L(4, 15, 19, 45), [("BRICKA-BJ", 1)], L(4, 16, 10, 0)),
        (40, L(4, 17, 9, 0), [("MUGG-BLA", 2)], L(4, 17, 15, 0)),
    ]
    for n, at, lines, shipped in plain:
        w.place(n, at, lines, buyer=n)
        w.pay(n, at + timedelta(minutes=1))
        w.ship(n, shipped)

    # still open when the walkthrough ends ------------------------------------------------
    # 7. verified, not shipped yet (the README's tour continues with it)
    w.place(7, L(4, 6, 10, 15), [("TEKANNA-GJ", 1), ("LJUS-3P", 1)], buyer=6)
    w.pay(7, L(4, 6, 10, 16))
    w.receive(7, L(4, 8, 19, 0), "Hej! Går det bra att lämna paketet hos grannen om jag inte är hemma?")

    # 41. Unshipped, the buyer has asked to cancel and waits for the seller's answer
    w.place(41, L(4, 16, 10, 0), [("KORG-SJO", 1)], buyer=7)
    w.pay(41, L(4, 16, 10, 1))
    w.add(L(4, 17, 20, 0), "request-cancel", order_id=oid(41), reason="Behöver den inte längre")

    # 42. partly shipped
    w.place(42, L(4, 18, 9, 0), [("MUGG-BLA", 3), ("HANDDUK-LIN", 1)], buyer=8)
    w.pay(42, L(4, 18, 9, 1))
    w.ship(42, L(4, 19, 10, 0), items=[(0, 3)])

    # 43. payment still being verified (extended)
    w.place(43, L(4, 19, 21, 0), [("LJUS-3P", 1)], buyer=9)
    w.pay(43, L(4, 19, 21, 10), "extended")

    # 44. placed late on the last evening: still in its hold when the walkthrough ends
    w.place(44, L(4, 20, 23, 50), [("BRICKA-BJ", 1)], buyer=10)
    w.pay(44, L(4, 20, 23, 52))

    return w.commands()


# --- typical mistakes, each rejected ------------------------------------------------------

AFTER = local(4, 21, 0, 5)   # right after the walkthrough: order 44 is still in its hold


def rejections() -> list[tuple[str, str]]:
    """(line, expected rejection code), in file order."""
    at = AFTER.isoformat()
    addr = {"name": "Anna Lindqvist", "address_1": "Storgatan 12", "city": "Stockholm",
            "postal_code": "111 22", "country": "SE"}

    def item(**extra):
        return {"order_item_id": "49999999999901", "sku": "MUGG-BLA", "title": "Kaffemugg",
                "quantity": 1, "item_price": "149.00", **extra}

    def place(n, **extra):
        c = {"type": "place", "at": at, "order_id": oid(n), "items": [item()], "currency": "SEK",
             "ship_service_level": "Standard",
             "buyer": {"name": "Anna Lindqvist", "language": "sv-SE"}, "ship_to": dict(addr)}
        for k, v in extra.items():
            if k in ("buyer", "ship_to"):
                c[k] = {**c[k], **v}
            else:
                c[k] = v
        return c

    def ship(n, **extra):
        return {"type": "ship", "at": at, "order_id": oid(n), "carrier_code": "PostNord",
                "tracking_number": "00370733999999", "ship_date": "2026-04-20", **extra}

    def j(c):
        return json.dumps(c, ensure_ascii=False)

    rows = [
        ('{"type": "tick", "at": "2026-04-21T00:05:00+02:00"', "malformed-json"),
        ('["tick", "2026-04-21T00:05:00+02:00"]', "bad-command"),
        (j({"type": "shipped", "at": at, "order_id": oid(7)}), "unknown-type"),
        (j({"type": "tick", "at": at, "when": "now"}), "unknown-field"),
        (j({"type": "ship", "at": at, "order_id": oid(7), "ship_date": "2026-04-20"}),
         "missing-field"),
        (j(ship(7) | {"order_id": "203-00007-55433"}), "bad-order-id"),
        (j({"type": "tick", "at": "2026-04-21T00:05:00"}), "bad-time"),
        (j({"type": "tick", "at": "2026-04-01T12:00:00+02:00"}), "time-backwards"),
        (j(place(60, items=[item(quantity=0)])), "invalid-field"),
        (j(ship(99)), "unknown-order"),
        (j(place(1)), "order-exists"),
        (j(place(61, items=[item(sku="FAT-EK", quantity=9)])), "insufficient-inventory"),
        (j(place(62, items=[item(), item(sku="LJUS-3P")])), "duplicate-item"),
        (j(place(63, items=[item(item_price="-149.00")])), "bad-amount"),
        (j(place(64, ship_to={"country": "Sverige"})), "bad-country"),
        (j(place(65, buyer={"language": "svenska"})), "bad-language"),
        (j(place(66, latest_ship_date="2026-04-20T12:00:00+02:00")), "bad-promise"),
        (j({"type": "cancel", "at": at, "order_id": oid(7), "by": "buyer"}), "hold-over"),
        (j({"type": "request-cancel", "at": at, "order_id": oid(44)}), "in-hold"),
        (j({"type": "request-cancel", "at": at, "order_id": oid(41)}), "already-requested"),
        (j(ship(43)), "order-pending"),
        (j(ship(1)), "order-shipped"),
        (j({"type": "cancel", "at": at, "order_id": oid(3), "by": "seller",
            "reason": "NoInventory"}), "order-canceled"),
        (j({"type": "cancel", "at": at, "order_id": oid(7), "by": "seller"}), "missing-reason"),
        (j({"type": "cancel", "at": at, "order_id": oid(7), "by": "seller",
            "reason": "OutOfStock"}), "bad-reason"),
        (j({"type": "verify-payment", "at": at, "order_id": oid(7), "outcome": "verified"}),
         "payment-settled"),
        (j({"type": "verify-payment", "at": at, "order_id": oid(44), "outcome": "declined"}),
         "outcome-recorded"),
        (j(ship(7, carrier_code="Other")), "missing-carrier-name"),
        (j(ship(7, ship_date="2026-04-05")), "ship-date-before-purchase"),
        (j(ship(7, ship_date="2026-04-22")), "ship-date-in-future"),
        (j(ship(7, ship_date="20/04/2026")), "bad-date"),
        (j(ship(42, items=[{"order_item_id": "40000000004202", "quantity": 2}])),
         "quantity-too-large"),
        (j(ship(7, items=[{"order_item_id": "40000000009999", "quantity": 1}])), "unknown-item"),
        (j({"type": "adjust", "at": at, "order_id": oid(25), "items": [{
            "order_item_id": "40000000002501", "reason": "CustomerReturn",
            "item_price_adj": "10.00"}]}), "refund-too-large"),
        (j({"type": "adjust", "at": at, "order_id": oid(7), "items": [{
            "order_item_id": "40000000000701", "reason": "NoInventory"}]}), "empty-adjustment"),
        (j({"type": "change-address", "at": at, "order_id": oid(7), "ship_to": addr}),
         "no-address-request"),
        (j({"type": "send-message", "at": at, "order_id": oid(7), "purpose": "order-information",
            "language": "en-GB",
            "body": "Thanks for your order! Here is a discount coupon for next time: "
                    "http://example.com \U0001F600"}),
         "message-rejected"),
    ]
    return rows


def write(path: Path, rows: list[str]) -> None:
    path.write_text("".join(r + "\n" for r in rows), encoding="utf-8")


def main(argv: list[str]) -> int:
    walkthrough = [json.dumps(c, ensure_ascii=False) for c in build()]
    mistakes = rejections()
    write(HERE / "walkthrough.jsonl", walkthrough)
    write(HERE / "rejections.jsonl", [line for line, _ in mistakes])
    print(f"wrote {len(walkthrough)} lines to walkthrough.jsonl and "
          f"{len(mistakes)} to rejections.jsonl")
    if "--check" in argv:
        import tempfile

        sys.path.insert(0, str(HERE.parent))
        from ledger.application import Ledger

        with tempfile.TemporaryDirectory() as tmp, Ledger(str(Path(tmp) / "check.db")) as led:
            bad = [o for o in led.apply_lines(walkthrough) if o.status != "applied"]
            for o in bad:
                print(f"walkthrough line {o.line}: {o.status} {o.error}")
            outs = list(led.apply_lines([line for line, _ in mistakes]))
            for o, (_, code) in zip(outs, mistakes):
                got = (o.error or {}).get("code")
                if o.status != "rejected" or got != code:
                    bad.append(o)
                    print(f"rejections line {o.line}: expected {code}, got {o.status} {got}")
            print("check:", "FAILED" if bad else "every walkthrough line applied, "
                  "every mistake rejected as expected")
            return 1 if bad else 0
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
