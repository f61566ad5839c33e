"""``GET /api/events``: Server-Sent Events, every event as the ledger records it.

Each event is sent as ``id: <global position>``, ``event: <type>`` and a JSON
``data`` line (position, aggregate, type, times, actor, command id and the
event's fields, redacted for non-operators). A client resumes with
``?after=N`` or the ``Last-Event-ID`` header (the last id it saw). Events are
read from the store in small batches only as fast as the client takes them,
so memory stays bounded; a client more than ``sse_max_lag`` events behind the
head is sent ``event: overflow`` (with where to resume) and the stream ends.
A comment line is sent every 15 s of silence to keep proxies from closing it.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, AsyncIterator

import anyio
import msgspec
from litestar import Request, get
from litestar.params import HeaderParameter, QueryParameter
from litestar.response import ServerSentEvent, ServerSentEventMessage

from .auth import principal_of, redact
from .errors import ServiceError, error_responses

BATCH = 200
KEEPALIVE = 15.0


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
) -> ServerSentEvent:
    start = after or 0
    if last_event_id is not None and last_event_id.strip():
        if not last_event_id.strip().isdigit():
            raise ServiceError(400, "bad-parameter", "Last-Event-ID is not a position",
                               field="Last-Event-ID", hint="send the id of the last event seen")
        start = max(start, int(last_event_id.strip()))
    svc = request.app.state.service
    principal = principal_of(request)
    config = svc.config

    def fetch(pos: int) -> tuple[int, list[tuple[int, str, Any]]]:
        with svc.readers.ledger() as led:
            head = led.head()
            rows = led.read_events(pos, BATCH) if head > pos else []
            return head, [(p, a, _event_row(p, a, e)) for p, a, e in rows]

    async def gen() -> AsyncIterator[ServerSentEventMessage]:
        pos = start
        sent = 0
        quiet_since = time.monotonic()
        yield ServerSentEventMessage(comment=f"order-ledger events after {pos}", data=None)
        while not svc.stopping.is_set():
            head, rows = await anyio.to_thread.run_sync(fetch, pos)
            if head - pos > config.sse_max_lag:
                yield ServerSentEventMessage(
                    event="overflow", id=str(pos),
                    data=msgspec.json.encode({
                        "reason": f"more than {config.sse_max_lag} events behind the head "
                                  f"({head - pos})",
                        "resume_after": pos, "head": head,
                        "hint": "reconnect with Last-Event-ID (or after=) to go on from "
                                "resume_after"}).decode())
                return
            if not rows:
                if time.monotonic() - quiet_since > KEEPALIVE:
                    quiet_since = time.monotonic()
                    yield ServerSentEventMessage(comment="keep-alive", data=None)
                await anyio.sleep(config.sse_poll)
                continue
            quiet_since = time.monotonic()
            for position, _, row in rows:
                yield ServerSentEventMessage(
                    id=str(position), event=row["type"],
                    data=msgspec.json.encode(redact(row, principal)).decode())
                pos = position
                sent += 1
                if limit is not None and sent >= limit:
                    yield ServerSentEventMessage(event="end", id=str(pos),
                                                 data=msgspec.json.encode(
                                                     {"reason": "limit", "resume_after": pos}
                                                 ).decode())
                    return

    return ServerSentEvent(gen())


ROUTES = [stream_events]
