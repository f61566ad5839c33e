"""``POST /api/commands`` without Litestar's request machinery, when nothing about the
request needs it.

A client posting commands one request at a time pays for routing, the guard, the
request and response objects and their headers on every command: about 0.1 ms of
CPU a request, as much as uvicorn's HTTP parsing. :class:`CommandsFastPath` wraps
the Litestar app and answers the common case itself: ``POST /api/commands`` with a
``Content-Length`` no larger than the service's limit, from a bearer token
verified within the last second (:meth:`~order_ledger.service.auth.TokenCheck.cached`)
whose role may write. The body is read through the same
:func:`~order_ledger.service.api.parse_command_body`, the lines go to the same group
commit, the answer is the same JSON with the same status (200, or 422 when a line
was rejected) and the same headers, and an error of the ledger or its store is the
same error body (:func:`~order_ledger.service.errors.error_parts`).

Everything else goes to the Litestar app unchanged: other paths and methods, a
token not verified within the second (Litestar's guard looks it up and remembers
it), a role that may not write, a chunked body, and a body that does not parse
(the app, handed the body already read, answers it with its own error).
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

import msgspec

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

PATH = "/api/commands"
_JSON_HEADERS = [(b"content-type", b"application/json")]


class CommandsFastPath:
    """ASGI middleware: see the module's docstring."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._encode = msgspec.json.Encoder().encode

    def __getattr__(self, name: str) -> Any:  # the app's state, routes, openapi ...
        return getattr(self.app, name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or scope["method"] != "POST"
                or scope["path"] != PATH):
            await self.app(scope, receive, send)
            return
        svc = getattr(self.app.state, "service", None)
        if svc is None:
            await self.app(scope, receive, send)
            return
        authorization = content_type = length = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
            elif name == b"content-type":
                content_type = value
            elif name == b"content-length":
                length = value
        if not self._may_write(authorization) or length is None or not length.isdigit() \
                or int(length) > svc.config.max_body:
            await self.app(scope, receive, send)
            return
        body, state = await _read(receive, int(length))
        if state == "gone":  # the client went away before its body was in: nothing to do
            return
        if state != "ok":  # not the length it announced: Litestar answers it
            await self.app(scope, _replay(body, receive), send)
            return
        from .api import parse_command_body
        from .errors import ServiceError

        try:
            lines = parse_command_body(body, (content_type or b"").decode("latin-1"))
        except ServiceError:
            await self.app(scope, _replay(body, receive), send)
            return
        try:
            outcomes = await svc.submit(lines) if lines else []
        except Exception as exc:  # noqa: BLE001 - answered as the app's handlers answer
            await self._error(exc, send)
            return
        from . import schemas as s

        rows = [s.to(s.Outcome, o.as_dict()) for o in outcomes]
        rejected = any(o.status == "rejected" for o in outcomes)
        await self._respond(send, 422 if rejected else 200, self._encode(rows))

    def _may_write(self, authorization: bytes | None) -> bool:
        from .auth import bearer_token

        if authorization is None:
            return False
        token = bearer_token(authorization.decode("latin-1"))
        if token is None:
            return False
        known, principal = self.app.state.tokens.cached(token)
        return bool(known and principal is not None and principal.can_write)

    async def _error(self, exc: Exception, send: Send) -> None:
        from .errors import ErrorBody, ErrorDetail, error_parts

        status, code, message, field, hint, headers = error_parts(exc, "POST", PATH)
        body = self._encode(ErrorBody(ErrorDetail(code, message, field, hint)))
        extra = [(k.lower().encode("latin-1"), v.encode("latin-1"))
                 for k, v in (headers or {}).items()]
        await self._respond(send, status, body, extra)

    @staticmethod
    async def _respond(send: Send, status: int, body: bytes,
                       extra: list[tuple[bytes, bytes]] | None = None) -> None:
        await send({"type": "http.response.start", "status": status,
                    "headers": _JSON_HEADERS + (extra or [])
                    + [(b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


async def _read(receive: Receive, length: int) -> tuple[bytes, str]:
    """The body (at most ``length`` bytes and what came with them) and how it ended:
    ``ok`` (as announced), ``gone`` (the client disconnected) or ``other``."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # http.disconnect
            return b"".join(chunks), "gone"
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if size > length:
            return b"".join(chunks), "other"
        if not message.get("more_body", False):
            return b"".join(chunks), "ok" if size == length else "other"


def _replay(body: bytes, receive: Receive) -> Receive:
    """``receive`` for the app: the body already read first, then the rest as it comes."""
    given = False

    async def again() -> dict[str, Any]:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again
