"""Event bundles: a portable, checksummed slice of a ledger.

A bundle is JSON Lines: a header, one line per event, and a trailer with the
event count and the SHA-256 of the event lines. An edited line or a cut file
is refused before anything is imported. ``redact`` replaces buyer names,
e-mail addresses, phone numbers and street addresses with pseudonyms that are
stable within the bundle (and across bundles made with the same salt).

Bundles carry whole aggregates from their first event, so they replay:
``orders`` picks order aggregates, ``since`` picks aggregates with an event at
or after it, ``until`` cuts each aggregate's tail.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from datetime import datetime
from typing import IO, Any, Iterable

import msgspec

from ledger import events as ev
from ledger.application import Ledger
from ledger.codec import decode_payload, encode_payload
from ledger.domain import ORDER_PREFIX, Order, Recorded
from ledger.errors import LedgerError
from ledger.store import Batch, to_us

FORMAT = "order-ledger-bundle"
VERSION = 1


class BundleError(LedgerError):
    """The bundle is not usable; nothing was imported."""


class Header(msgspec.Struct, kw_only=True):
    format: str
    version: int
    source_head: int
    filters: dict[str, Any] = {}
    redacted: bool = False
    #: the source's clock (watermark) as of the bundle, capped at ``until``; null when
    #: the source has none; older bundles lack it and import with the latest event's time
    clock: datetime | None | msgspec.UnsetType = msgspec.UNSET


class Line(msgspec.Struct, kw_only=True, omit_defaults=True):
    position: int
    aggregate_id: str
    version: int
    topic: str
    event: msgspec.Raw
    #: the causing command's type and business time (microseconds), so an
    #: imported ledger dates deadline events exactly as the source did
    command_type: str | None = None
    command_at_us: int | None = None


class Trailer(msgspec.Struct, kw_only=True):
    count: int
    sha256: str


_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")


class Redactor:
    """Stable pseudonyms for personal data."""

    def __init__(self, salt: bytes) -> None:
        self.salt = salt

    def tag(self, value: str) -> str:
        return hmac.new(self.salt, value.encode(), hashlib.sha256).hexdigest()[:10]

    def name(self, v: str | None) -> str | None:
        return None if v is None else f"Person {self.tag(v)}"

    def email(self, v: str | None) -> str | None:
        return None if v is None else f"{self.tag(v)}@redacted.invalid"

    def phone(self, v: str | None) -> str | None:
        return None if v is None else "+0" + str(int(self.tag(v), 16))[:9]

    def line(self, v: str | None) -> str | None:
        return None if v is None else f"Street {self.tag(v)}"

    def address(self, a: ev.Address) -> ev.Address:
        return msgspec.structs.replace(
            a, name=self.name(a.name), address_1=self.line(a.address_1),
            address_2=self.line(a.address_2), address_3=self.line(a.address_3),
            postal_code=f"P{self.tag(a.postal_code)[:5]}", phone=self.phone(a.phone))

    def text(self, body: str) -> str:
        return _EMAIL.sub(lambda m: self.email(m.group(0)) or "", body)

    def payload(self, p: ev.Event) -> ev.Event:
        replace = msgspec.structs.replace
        if isinstance(p, ev.OrderPlaced):
            buyer = replace(p.buyer, name=self.name(p.buyer.name), email=self.email(p.buyer.email),
                            phone=self.phone(p.buyer.phone))
            return replace(p, buyer=buyer, ship_to=self.address(p.ship_to))
        if isinstance(p, ev.ShippingAddressChanged):
            return replace(p, ship_to=self.address(p.ship_to))
        if isinstance(p, (ev.MessageSent, ev.MessageReceived)):
            return replace(p, body=self.text(p.body))
        return p


def export_bundle(ledger: Ledger, out: IO[bytes], *, orders: Iterable[str] = (),
                  since: datetime | None = None, until: datetime | None = None,
                  redact: bool = False, salt: bytes | None = None) -> int:
    """Write a bundle; returns the number of events in it."""
    wanted = {ORDER_PREFIX + o for o in orders}
    head = ledger.head()
    rows: dict[str, list[tuple[int, ev.Event]]] = {}
    for position, agg_id, payload in ledger.iter_events(upto=head):
        if wanted and agg_id not in wanted:
            continue
        if until is not None and payload.at > until:
            continue
        rows.setdefault(agg_id, []).append((position, payload))
    if since is not None:
        rows = {k: v for k, v in rows.items() if any(p.at >= since for _, p in v)}
    redactor = Redactor(salt or os.urandom(16)) if redact else None
    clock = ledger.now()
    if clock is not None and until is not None and clock > until:
        clock = until  # deadlines after ``until`` are not in the bundle
    header = Header(format=FORMAT, version=VERSION, source_head=head, redacted=redact,
                    clock=clock, filters={
        "orders": sorted(orders), "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None})
    out.write(msgspec.json.encode(header) + b"\n")
    digest = hashlib.sha256()
    lines: list[tuple[int, Line, str]] = []
    for agg_id, events in rows.items():
        for version, (position, payload) in enumerate(events, 1):
            if redactor is not None:
                payload = redactor.payload(payload)
            lines.append((position, Line(
                position=position, aggregate_id=agg_id, version=version,
                topic=ev.topic_of(type(payload)), event=msgspec.Raw(encode_payload(payload))),
                payload.command_id))
    commands = ledger.recorder.command_rows({cid for _, _, cid in lines})
    for _, line, cid in lines:
        if cid in commands:
            line.command_type, line.command_at_us = commands[cid]
    lines.sort(key=lambda x: x[0])
    for _, line, _ in lines:
        data = msgspec.json.encode(line) + b"\n"
        digest.update(data)
        out.write(data)
    out.write(msgspec.json.encode(Trailer(count=len(lines), sha256=digest.hexdigest())) + b"\n")
    return len(lines)


def read_bundle(data: bytes) -> tuple[Header, list[tuple[Line, ev.Event]]]:
    """Parse and verify a bundle, or raise :class:`BundleError`."""
    raw_lines = data.splitlines(keepends=True)
    if len(raw_lines) < 2:
        raise BundleError("the bundle is empty or cut short: no header and trailer")
    try:
        header = msgspec.json.decode(raw_lines[0], type=Header)
    except msgspec.DecodeError as exc:
        raise BundleError(f"line 1 is not a bundle header ({exc})") from None
    if header.format != FORMAT or header.version != VERSION:
        raise BundleError(f"not an {FORMAT} v{VERSION} file (got {header.format} v{header.version})")
    try:
        trailer = msgspec.json.decode(raw_lines[-1], type=Trailer)
    except msgspec.DecodeError:
        raise BundleError("the bundle is cut short: its last line is not the trailer "
                          "(count and checksum)") from None
    body = raw_lines[1:-1]
    if len(body) != trailer.count:
        raise BundleError(f"the bundle should hold {trailer.count} events but holds {len(body)}")
    digest = hashlib.sha256()
    for line in body:
        digest.update(line)
    if digest.hexdigest() != trailer.sha256:
        raise BundleError("checksum mismatch: the bundle was edited or damaged after export")
    out = []
    for n, raw in enumerate(body, 2):
        try:
            line = msgspec.json.decode(raw, type=Line)
            out.append((line, decode_payload(line.topic, bytes(line.event))))
        except Exception as exc:
            raise BundleError(f"line {n}: cannot decode the event ({exc})") from None
    return header, out


def import_bundle(ledger: Ledger, data: bytes) -> int:
    """Import a verified bundle into an empty ledger; returns the events imported."""
    header, lines = read_bundle(data)
    if ledger.head() != 0:
        raise BundleError("the target ledger is not empty: import a bundle into a new ledger "
                          "(--db NEW)")
    versions: dict[str, int] = {}
    stored = []
    orders: dict[str, Order] = {}
    aggs: dict[str, Any] = {}
    command_ids: dict[str, tuple[str, int]] = {}
    latest = None
    to_stored = ledger.mapper.to_stored_event
    for line, payload in lines:
        expected = versions.get(line.aggregate_id, 0) + 1
        if line.version != expected:
            raise BundleError(f"event {line.aggregate_id} v{line.version} is out of sequence "
                              f"(expected v{expected})")
        versions[line.aggregate_id] = expected
        event = Recorded(line.aggregate_id, line.version, payload.at, payload)
        try:
            aggs[line.aggregate_id] = event.mutate(aggs.get(line.aggregate_id))
        except Exception as exc:
            raise BundleError(f"event {line.aggregate_id} v{line.version} does not replay "
                              f"({exc.__class__.__name__}: {exc})") from None
        if line.aggregate_id.startswith(ORDER_PREFIX):
            orders[line.aggregate_id] = aggs[line.aggregate_id]
        stored.append(to_stored(event))
        if line.command_at_us is not None:
            command_ids[payload.command_id] = (line.command_type or "import", line.command_at_us)
        else:
            command_ids.setdefault(payload.command_id, ("import", to_us(payload.at)))
        latest = payload.at if latest is None or payload.at > latest else latest
    # the clock is a watermark, not the latest event: a later event must not make the
    # target's clock pass deadlines the source never fired
    clock = latest if header.clock is msgspec.UNSET else header.clock
    batch = Batch(commands=[(cid, t, us) for cid, (t, us) in command_ids.items()], clock=clock)
    for order in orders.values():
        nd = order.next_deadline()
        if nd is not None:
            batch.deadlines.append((order.order_id, to_us(nd[0]), nd[1]))
    ledger.recorder.insert_events(stored, batch=batch)  # type: ignore[attr-defined]
    return len(stored)
