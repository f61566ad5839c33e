"""``GET /api/events``: Server-Sent Events, every event as the ledger records it.

Each event is sent as ``id: <global position>``, ``event: <type>`` and a JSON
``data`` line (position, aggregate, type, times, actor, command id and the
event's fields, redacted for non-operators). A client resumes with
``?after=N`` or the ``Last-Event-ID`` header (the last id it saw). Events are
read from the store in small batches only as fast as the client takes them,
so memory stays bounded; a client more than ``sse_max_lag`` events behind the
head is sent ``event: overflow`` (with where to resume) and the stream ends.
A comment line is sent every 15 s of silence to keep proxies from closing it.

The events of one read from the store go out as one chunk (one write to the
socket, not one per event), and a read that found fewer than a full batch
waits :data:`GATHER` seconds before the next, so a busy ledger's events are
sent in batches rather than one by one.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, AsyncIterator

import anyio
import msgspec
from litestar import Request, get
from litestar.params import HeaderParameter, QueryParameter
from litestar.response import Stream

from .auth import principal_of, redact
from .errors import ServiceError, error_responses

BATCH = 200
KEEPALIVE = 15.0
#: after a read that was not a full batch, wait this long before the next one
GATHER = 0.05
#: the separator Litestar's ServerSentEvent uses (kept, so the stream's bytes stay as
#: they were)
SEP = b"\r\n"


def frame(event: str | None = None, data: bytes | None = None, id: int | None = None,
          comment: str | None = None) -> bytes:
    """One Server-Sent Events message. ``data`` is one line (compact JSON: no line
    breaks); ``event`` and ``comment`` are our own words, without line breaks."""
    out = b""
    if comment is not None:
        out += b": " + comment.encode() + SEP
    if id is not None:
        out += b"id: %d" % id + SEP
    if event is not None:
        out += b"event: " + event.encode() + SEP
    if data is not None:
        out += b"data: " + data + SEP
    return out + SEP


def _event_row(position: int, aggregate: str, payload: Any) -> dict[str, Any]:
    from ledger import events as ev
    from replay.history import event_fields

    return {"position": position, "aggregate": aggregate, "type": type(payload).__name__,
            "at": payload.at.isoformat(), "recorded_at": ev.recorded_at(payload).isoformat(),
            "actor": payload.actor, "command_id": payload.command_id,
            "order_id": getattr(payload, "order_id", None),
            "fields": event_fields(payload)}


@get("/api/events", summary="Server-Sent Events: every event as it is recorded",
     description=("Resumable: `after` or the Last-Event-ID header. `limit` ends the stream "
                  "after that many events (for polling clients). A client too far behind "
                  "gets `event: overflow` and the stream ends."),
     tags=["audit"], opt={"need": "audit"}, media_type="text/event-stream",
     responses=error_responses(400, 401, 403))
async def stream_events(
    request: Request,
    after: Annotated[int | None, QueryParameter(name="after", required=False, ge=0,
                                  description="Send events after this global position.")] = None,
    limit: Annotated[int | None, QueryParameter(name="limit", required=False, ge=1, le=1_000_000,
                                  description="End the stream after this many events.")] = None,
    last_event_id: Annotated[str | None, HeaderParameter(name="Last-Event-ID", required=False,
                                          max_length=40)] = None,
) -> Stream:
    start = after or 0
    if last_event_id is not None and last_event_id.strip():
        if not last_event_id.strip().isdigit():
            raise ServiceError(400, "bad-parameter", "Last-Event-ID is not a position",
                               field="Last-Event-ID", hint="send the id of the last event seen")
        start = max(start, int(last_event_id.strip()))
    svc = request.app.state.service
    principal = principal_of(request)
    config = svc.config

    def fetch(pos: int, most: int) -> tuple[int, int, int, bytes]:
        """(head, last position read, events read, their messages as one chunk)."""
        with svc.readers.ledger() as led:
            head = led.head()
            rows = led.read_events(pos, most) if head > pos else []
        encode = msgspec.json.encode
        chunk = b"".join(frame(type(e).__name__, encode(redact(_event_row(p, a, e), principal)),
                               id=p) for p, a, e in rows)
        return head, (rows[-1][0] if rows else pos), len(rows), chunk

    async def gen() -> AsyncIterator[bytes]:
        pos = start
        sent = 0
        quiet_since = time.monotonic()
        yield frame(comment=f"order-ledger events after {pos}")
        while not svc.stopping.is_set():
            most = BATCH if limit is None else min(BATCH, limit - sent)
            head, last, count, chunk = await anyio.to_thread.run_sync(fetch, pos, most)
            if head - pos > config.sse_max_lag:
                yield frame("overflow", msgspec.json.encode({
                    "reason": f"more than {config.sse_max_lag} events behind the head "
                              f"({head - pos})",
                    "resume_after": pos, "head": head,
                    "hint": "reconnect with Last-Event-ID (or after=) to go on from "
                            "resume_after"}), id=pos)
                return
            if not count:
                if time.monotonic() - quiet_since > KEEPALIVE:
                    quiet_since = time.monotonic()
                    yield frame(comment="keep-alive")
                await anyio.sleep(config.sse_poll)
                continue
            quiet_since = time.monotonic()
            sent += count
            pos = last
            if limit is not None and sent >= limit:
                yield chunk + frame("end", msgspec.json.encode(
                    {"reason": "limit", "resume_after": pos}), id=pos)
                return
            yield chunk
            if count < most:
                await anyio.sleep(GATHER)

    return Stream(gen(), media_type="text/event-stream",
                  headers={"Cache-Control": "no-cache", "Connection": "keep-alive",
                           "X-Accel-Buffering": "no"})


ROUTES = [stream_events]
