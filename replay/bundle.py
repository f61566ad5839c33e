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
from typing import IO, Any, Iterable, Iterator

import msgspec

from ledger import chain
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
    #: the source's events are encrypted at rest: the lines hold the decrypted
    #: payloads, so the chain hashes (over the stored ciphertext) cannot be re-checked
    encrypted: bool = False


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
    #: the source's hash-chain entry for this event (hex; ``ledger/chain.py``); a full,
    #: unredacted bundle of a plain source holds the stored bytes, so it is re-checked
    chain: str | None = None


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


def _stored_rows(ledger: Ledger, head: int
                 ) -> Iterator[tuple[int, str, str, bytes, ev.Event]]:
    """``(position, aggregate id, topic, stored state, payload)`` up to ``head``."""
    after = 0
    decode = ledger.decoder()
    log = ledger.event_log(fast=False)
    try:
        while True:
            rows = log.read(after, 10_000, head)
            for position, agg_id, topic, state in rows:
                yield position, agg_id, topic, bytes(state), decode(topic, state)
            if len(rows) < 10_000:
                return
            after = rows[-1][0]
    finally:
        log.close()


def export_bundle(ledger: Ledger, out: IO[bytes], *, orders: Iterable[str] = (),
                  since: datetime | None = None, until: datetime | None = None,
                  redact: bool = False, salt: bytes | None = None) -> int:
    """Write a bundle; returns the number of events in it.

    Every line carries the source's chain hash for its position. When the stored
    state is plain JSON (no cipher, no compression) and the bundle is not redacted,
    a line's event is the stored bytes themselves, so a full bundle can be checked
    against the chain on import."""
    wanted = {ORDER_PREFIX + o for o in orders}
    head = ledger.head()
    plain = ledger.plain_decoders() is not None  # no cipher, no compression
    rows: dict[str, list[tuple[int, str, bytes, ev.Event]]] = {}
    for position, agg_id, topic, state, payload in _stored_rows(ledger, head):
        if wanted and agg_id not in wanted:
            continue
        if until is not None and payload.at > until:
            continue
        rows.setdefault(agg_id, []).append((position, topic, state, payload))
    if since is not None:
        rows = {k: v for k, v in rows.items() if any(p.at >= since for _, _, _, p in v)}
    redactor = Redactor(salt or os.urandom(16)) if redact else None
    clock = ledger.now()
    if clock is not None and until is not None and clock > until:
        clock = until  # deadlines after ``until`` are not in the bundle
    header = Header(format=FORMAT, version=VERSION, source_head=head, redacted=redact,
                    clock=clock, encrypted=ledger.encrypted, filters={
        "orders": sorted(orders), "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None})
    out.write(msgspec.json.encode(header) + b"\n")
    digest = hashlib.sha256()
    lines: list[tuple[int, Line, str]] = []
    for agg_id, events in rows.items():
        for version, (position, topic, state, payload) in enumerate(events, 1):
            if redactor is not None:
                payload = redactor.payload(payload)
            if plain and redactor is None:
                raw = msgspec.Raw(state)  # the stored bytes, as the chain hashed them
            else:
                topic, raw = ev.topic_of(type(payload)), msgspec.Raw(encode_payload(payload))
            lines.append((position, Line(
                position=position, aggregate_id=agg_id, version=version,
                topic=topic, event=raw), payload.command_id))
    commands = ledger.command_times({cid for _, _, cid in lines})
    hashes = dict(ledger.chain_rows(1, head)) if lines else {}
    for position, line, cid in lines:
        if cid in commands:
            line.command_type, line.command_at_us = commands[cid]
        if position in hashes:
            line.chain = hashes[position].hex()
    lines.sort(key=lambda x: x[0])
    for _, line, _ in lines:
        data = msgspec.json.encode(line) + b"\n"
        digest.update(data)
        out.write(data)
    out.write(msgspec.json.encode(Trailer(count=len(lines), sha256=digest.hexdigest())) + b"\n")
    return len(lines)


def verify_chain(header: Header, lines: list[tuple[Line, ev.Event]]) -> str | None:
    """Check a bundle's events against the source's hash chain they carry.

    Returns the verified head ``POSITION:HEXHASH`` (the source's digest at export),
    or None when the bundle cannot be checked (filtered, redacted, from an encrypted
    source, or from a ledger without a chain). Raises :class:`BundleError` on the
    first event that does not match."""
    filtered = any(v for v in header.filters.values())
    if filtered or header.redacted or header.encrypted or not lines:
        return None
    carried = [line.chain is not None for line, _ in lines]
    if not any(carried):
        return None
    prev = chain.GENESIS
    for line, _ in lines:
        if line.chain is None:
            raise BundleError(f"event at position {line.position:,} ({line.aggregate_id} "
                              f"v{line.version}) carries no chain hash while others do: the "
                              "bundle was edited")
        try:
            expected = bytes.fromhex(line.chain)
        except ValueError:
            raise BundleError(f"event at position {line.position:,}: its chain hash "
                              f"{line.chain!r} is not hex") from None
        got = chain.link(prev, line.position, line.aggregate_id, line.version, line.topic,
                         bytes(line.event))
        if got != expected:
            raise BundleError(
                f"hash chain mismatch at position {line.position:,} ({line.aggregate_id} "
                f"v{line.version}): the event, or one before it, is not what the source "
                "ledger recorded (edited, deleted, inserted or reordered after export); "
                "export the bundle again from the source")
        prev = expected
    last = lines[-1][0]
    if last.position != header.source_head:
        raise BundleError(f"the bundle ends at position {last.position:,} but the source's head "
                          f"was {header.source_head:,}: events were cut from its end")
    return f"{last.position}:{last.chain}"


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
            decoded = msgspec.json.decode(raw, type=Line)
            out.append((decoded, decode_payload(decoded.topic, bytes(decoded.event))))
        except Exception as exc:
            raise BundleError(f"line {n}: cannot decode the event ({exc})") from None
    return header, out


def import_bundle(ledger: Ledger, data: bytes) -> int:
    """Import a verified bundle into an empty ledger; returns the events imported."""
    header, lines = read_bundle(data)
    verify_chain(header, lines)
    if ledger.head() != 0:
        raise BundleError("the target ledger is not empty: import a bundle into a new ledger "
                          "(--db NEW)")
    versions: dict[str, int] = {}
    stored: list[Recorded] = []
    orders: dict[str, Order] = {}
    aggs: dict[str, Any] = {}
    command_ids: dict[str, tuple[str, int]] = {}
    latest = None
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
        stored.append(event)
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
    ledger.import_events(stored, batch)
    return len(stored)
