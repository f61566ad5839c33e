"""Event encoding with msgspec, in place of the library's JSON transcoder.

A stored event's ``topic`` is ``Name:vN`` and its ``state`` is the payload as
msgspec JSON (optionally compressed and encrypted by the library's cipher).
Decoding is typed: ``Decimal``, ``datetime`` and nested Structs come back as
themselves. An event stored under an older version is decoded to a dict, run
through :data:`UPCASTERS` one version at a time, and converted to the current
type.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import msgspec
from eventsourcing.persistence import Cipher, Compressor, Mapper, StoredEvent

from . import events as ev
from .errors import CipherKeyMismatch, StoreError

#: (event name, from version) -> function turning the old dict into the next version's
UPCASTERS: dict[tuple[str, int], Callable[[dict[str, Any]], dict[str, Any]]] = {}

_encoder = msgspec.json.Encoder(decimal_format="string")
_decoders: dict[str, msgspec.json.Decoder[ev.Event]] = {
    ev.topic_of(cls): msgspec.json.Decoder(cls) for cls in ev.ALL_EVENTS
}
_untyped = msgspec.json.Decoder()
#: event class -> its stored topic (``to_stored_events``)
_TOPICS: dict[type, str] = {}


class StoredRow(NamedTuple):
    """A stored event as the recorders read it (the fields of the library's
    ``StoredEvent``), made as a plain tuple: a batch makes one per event, and the
    library's frozen dataclass costs several attribute writes each."""

    originator_id: str
    originator_version: int
    topic: str
    state: bytes


def encode_payload(payload: ev.Event) -> bytes:
    return _encoder.encode(payload)


def topic_for(payload: ev.Event) -> str:
    return ev.topic_of(type(payload))


def decode_payload(topic: str, data: bytes) -> ev.Event:
    """Decode a stored payload by its topic, upcasting old versions."""
    decoder = _decoders.get(topic)
    if decoder is not None:
        event: ev.Event = decoder.decode(data)
        return event
    name, _, version = topic.partition(":v")
    cls = ev.EVENT_TYPES.get(name)
    if cls is None or not version.isdigit():
        raise StoreError(f"unknown event topic {topic!r}")
    obj = _untyped.decode(data)
    v = int(version)
    while v < cls.VERSION:
        try:
            obj = UPCASTERS[(name, v)](obj)
        except KeyError:
            raise StoreError(f"no upcaster for {name} v{v} -> v{v + 1}") from None
        v += 1
    return msgspec.convert(obj, cls)


def _looks_encrypted(state: bytes) -> bool:
    """Ciphertext is random bytes: practically never a UTF-8 text starting with ``{``."""
    if bytes(state[:1]) != b"{":
        return True
    try:
        bytes(state).decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


class PayloadMapper(Mapper[str]):
    """Maps :class:`ledger.domain.Recorded` events to stored events and back."""

    def __init__(self, compressor: Compressor | None = None, cipher: Cipher | None = None):
        super().__init__(transcoder=None, compressor=compressor, cipher=cipher)  # type: ignore[arg-type]

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        payload = domain_event.payload
        state = _encoder.encode(payload)
        if self.compressor:
            state = self.compressor.compress(state)
        if self.cipher:
            state = self.cipher.encrypt(state)
        return StoredEvent(
            originator_id=domain_event.originator_id,
            originator_version=domain_event.originator_version,
            topic=ev.topic_of(type(payload)),
            state=state,
        )

    def to_stored_events(self, events: list[Any], recorded_at: Any = None) -> list[StoredRow]:
        """:meth:`to_stored_event` for a batch's events, in one loop; with
        ``recorded_at``, each event's payload is first given that recording time
        (the payload is replaced on the event, as the stored one says)."""
        encode = _encoder.encode
        replace = msgspec.structs.replace
        topics = _TOPICS
        compressor, cipher = self.compressor, self.cipher
        out: list[StoredRow] = []
        append = out.append
        make = tuple.__new__
        for e in events:
            payload = e.payload
            if recorded_at is not None:
                payload = e.payload = replace(payload, recorded_at=recorded_at)
            state = encode(payload)
            if compressor:
                state = compressor.compress(state)
            if cipher:
                state = cipher.encrypt(state)
            cls = type(payload)
            topic = topics.get(cls)
            if topic is None:
                topic = topics[cls] = ev.topic_of(cls)
            append(make(StoredRow, (e.originator_id, e.originator_version, topic, state)))
        return out

    def plain_decoders(self) -> dict[str, msgspec.json.Decoder[ev.Event]] | None:
        """Topic -> decoder of the current event versions, for bulk readers; None when
        payloads are compressed or encrypted. A row whose topic is missing (an older
        version) or that does not decode must go through :meth:`decode_state`."""
        if self.cipher or self.compressor:
            return None
        return _decoders

    def decode_state(self, topic: str, state: bytes) -> ev.Event:
        if self.cipher:
            try:
                state = self.cipher.decrypt(state)
            except Exception:
                raise CipherKeyMismatch(
                    CipherKeyMismatch.OTHER_KEY if _looks_encrypted(state)
                    else CipherKeyMismatch.NOT_ENCRYPTED) from None
        if self.compressor:
            try:
                state = self.compressor.decompress(state)
            except Exception as exc:
                raise StoreError(f"cannot decompress a stored {topic} event "
                                 f"({exc.__class__.__name__}: {exc})") from None
        try:
            return decode_payload(topic, state)
        except StoreError:
            raise
        except Exception as exc:  # msgspec's DecodeError/ValidationError, bad upcasts
            if not self.cipher and _looks_encrypted(state):
                # An encrypted payload read without a key is not JSON at all.
                raise CipherKeyMismatch(CipherKeyMismatch.ENCRYPTED) from None
            raise StoreError(
                f"cannot decode a stored {topic} event ({exc.__class__.__name__}: {exc})"
            ) from None

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        from .domain import Recorded

        payload = self.decode_state(stored_event.topic, stored_event.state)
        return Recorded(
            str(stored_event.originator_id), stored_event.originator_version,
            payload.at, payload)
