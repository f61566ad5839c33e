"""Tamper evidence: every stored event is chained to the one before it.

``ledger_chain`` holds one row per event, ``(position, hash)``, written in the
same transaction as the event. The hash of the event at position *p* is::

    SHA-256( hash of the previous event (32 zero bytes for the first)
           || p (8 bytes) || originator_version (8 bytes)
           || len + originator_id || len + topic || len + state )

over the event exactly as stored (its ``state`` bytes, encrypted or not), so a
chain is verified without the cipher key. Editing an event, deleting one,
inserting one or moving one changes a hash that ``order-ledger check`` then
names. Someone who can write the store could recompute the whole chain, which
is what a **digest** is for: ``POSITION:HEXHASH`` of the chain's head, kept
somewhere else; a later history that still ends in that hash at that position
extends it unchanged.

The chain links events in position order, not position + 1: PostgreSQL's
notification ids may skip numbers after a rolled-back insert.
"""

from __future__ import annotations

import hashlib
import re
import struct
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

GENESIS = bytes(32)
_HEAD = struct.Struct(">QQI")
_LEN = struct.Struct(">I")
_STATE_LEN = struct.Struct(">Q")
_DIGEST_RE = re.compile(r"^(\d{1,19}):([0-9a-fA-F]{64})$")


def link(prev: bytes, position: int, originator_id: str, version: int, topic: str,
         state: bytes) -> bytes:
    """The hash of one stored event, chained to ``prev``."""
    oid = originator_id.encode("utf-8")
    tp = topic.encode("utf-8")
    h = hashlib.sha256(prev)
    h.update(_HEAD.pack(position, version, len(oid)))
    h.update(oid)
    h.update(_LEN.pack(len(tp)))
    h.update(tp)
    h.update(_STATE_LEN.pack(len(state)))
    h.update(state)
    return h.digest()


def links(prev: bytes, rows: Iterable[tuple[int, str, int, str, bytes]]
          ) -> list[tuple[int, bytes]]:
    """``(position, hash)`` for events ``(position, id, version, topic, state)`` in order.

    The same bytes as :func:`link`, hashed in one call per event: the topic's
    part is built once per topic."""
    out: list[tuple[int, bytes]] = []
    append = out.append
    sha256 = hashlib.sha256
    head, state_len, join = _HEAD.pack, _STATE_LEN.pack, b"".join
    topics: dict[str, bytes] = {}
    for position, oid, version, topic, state in rows:
        tp = topics.get(topic)
        if tp is None:
            raw = topic.encode("utf-8")
            tp = topics[topic] = _LEN.pack(len(raw)) + raw
        o = oid.encode("utf-8")
        state = bytes(state)
        prev = sha256(join((prev, head(position, version, len(o)), o, tp,
                            state_len(len(state)), state))).digest()
        append((position, prev))
    return out


@dataclass(frozen=True)
class Digest:
    """The head of a chain: the position of its last event and that event's hash."""

    position: int
    hash: bytes

    def __str__(self) -> str:
        return f"{self.position}:{self.hash.hex()}"

    @classmethod
    def parse(cls, text: str) -> "Digest":
        m = _DIGEST_RE.match(text.strip())
        if not m:
            raise ValueError(f"{text!r} is not a digest: write it as POSITION:HEXHASH, as "
                             "`order-ledger digest` prints it (64 hex digits after the colon)")
        return cls(int(m.group(1)), bytes.fromhex(m.group(2)))


@dataclass
class ChainFinding:
    code: str
    message: str
    position: int


class ChainVerifier:
    """Walks the events in position order beside the stored chain rows.

    Feed it each batch of events with :meth:`events` together with the chain
    rows that cover the same positions; call :meth:`finish` with the rows past
    the last event. Each finding names a position; after a mismatch the walk
    goes on from the stored hash, so one edit is reported once.
    """

    def __init__(self, watch: int | None = None) -> None:
        self.prev = GENESIS
        self.head: Digest | None = None
        self.verified = 0
        self.watch = watch  # a digest's position: keep the hash found there
        self.watched: bytes | None = None

    def step(self, events: Sequence[tuple[int, str, int, str, bytes]],
             chain: Sequence[tuple[int, bytes]]) -> Iterator[ChainFinding]:
        stored = {pos: bytes(h) for pos, h in chain}
        event_positions = {e[0] for e in events}
        for pos in sorted(p for p in stored if p not in event_positions):
            yield ChainFinding(
                "chain-event-deleted",
                f"the event at position {pos} is gone but its chain entry remains: "
                "an event was deleted", pos)
        for position, oid, version, topic, state in events:
            want = stored.get(position)
            got = link(self.prev, position, oid, version, topic, bytes(state))
            if want is None:
                yield ChainFinding(
                    "chain-unlinked",
                    f"the event at position {position} ({oid} v{version}) has no chain "
                    "entry: it was inserted outside the ledger", position)
                continue
            if got != want:
                yield ChainFinding(
                    "chain-mismatch",
                    f"the event at position {position} ({oid} v{version}) does not match "
                    "its hash: it, or the event chained before it, was edited or moved",
                    position)
                got = want
            else:
                self.verified += 1
            self.prev = got
            if position == self.watch:
                self.watched = got
            self.head = Digest(position, got)

    def finish(self, trailing: Sequence[tuple[int, bytes]]) -> Iterator[ChainFinding]:
        for pos, _ in trailing:
            yield ChainFinding(
                "chain-event-deleted",
                f"the event at position {pos} is gone but its chain entry remains: "
                "an event was deleted", pos)
