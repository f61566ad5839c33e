"""Every error the service returns is JSON: ``{"error": {"code", "message", "field", "hint"}}``.

Codes are the command line's where one exists (``malformed-json``,
``invalid-field``, ``unknown-order`` ...); HTTP-level ones are named for their
status (``unauthorized``, ``forbidden``, ``not-found``, ``method-not-allowed``,
``too-large``, ``unsupported-media-type``, ``bad-parameter``). No input gives
a 500: the catch-all handler answers ``internal-error`` and logs the traceback
(never a request header, so never a token).
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException

from ledger.errors import LedgerBusy, LedgerError, StoreError

log = logging.getLogger("order_ledger.service")


class ErrorDetail(msgspec.Struct):
    code: str
    message: str
    field: str | None = None
    hint: str | None = None


class ErrorBody(msgspec.Struct):
    error: ErrorDetail


class ServiceError(Exception):
    """An error to answer with ``status`` and a JSON body."""

    def __init__(self, status: int, code: str, message: str, *, field: str | None = None,
                 hint: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.hint = hint
        self.headers = headers or {}


CODES = {400: "bad-request", 401: "unauthorized", 403: "forbidden", 404: "not-found",
         405: "method-not-allowed", 406: "not-acceptable", 409: "conflict",
         413: "too-large", 415: "unsupported-media-type", 422: "invalid-field",
         429: "too-many-requests", 503: "unavailable"}

HINTS = {401: "send Authorization: Bearer <token> (make one with `order-ledger token create`)",
         405: "see /schema/openapi.json for the methods of each path",
         413: "send a smaller body (split the command file)",
         415: "send application/json or application/x-ndjson"}


def error_response(status: int, code: str, message: str, field: str | None = None,
                   hint: str | None = None, headers: dict[str, str] | None = None) -> Response:
    return Response(content=ErrorBody(ErrorDetail(code, message, field, hint)),
                    status_code=status, media_type=MediaType.JSON, headers=headers)


def _service_error(_: Request, exc: ServiceError) -> Response:
    return error_response(exc.status, exc.code, exc.message, exc.field, exc.hint, exc.headers)


def _validation(_: Request, exc: ValidationException) -> Response:
    extra = exc.extra if isinstance(exc.extra, list) else []
    field = None
    message = exc.detail or "the request is not valid"
    if extra and isinstance(extra[0], dict):
        field = extra[0].get("key")
        if extra[0].get("message"):
            message = f"{extra[0]['message']}"
            if extra[0].get("source"):
                message = f"{extra[0]['source']} parameter {field!r}: {message}"
    return error_response(400, "bad-parameter", message, field,
                          "see /schema/openapi.json for the parameters and their types")


def _http(_: Request, exc: HTTPException) -> Response:
    status = exc.status_code
    if status >= 500:
        status = 503
    code = CODES.get(status, "bad-request")
    return error_response(status, code, exc.detail or code, None, HINTS.get(status),
                          dict(exc.headers or {}))


#: an error's answer: status, code, message, field, hint, headers
ErrorParts = tuple[int, str, str, "str | None", "str | None", "dict[str, str] | None"]


def ledger_error(exc: LedgerError) -> ErrorParts:
    if isinstance(exc, LedgerBusy):
        return 503, "ledger-busy", str(exc), None, "try again in a moment", {"Retry-After": "1"}
    if isinstance(exc, StoreError):
        return 503, "store-error", str(exc), None, None, None
    code = getattr(exc, "code", None) or "ledger-error"
    return 409 if code == "ledger-error" else 400, code, str(exc), None, None, None


def store_error(exc: Exception) -> ErrorParts:
    """The database failed under a request (server gone, disk full, lock timeout)."""
    log.warning("store error: %s: %s", type(exc).__name__, exc)
    return (503, "store-error", f"the ledger's store failed: {type(exc).__name__}", None,
            "try again; if it persists, check the database", {"Retry-After": "1"})


def unexpected_error(exc: Exception, method: str, path: str) -> ErrorParts:
    log.exception("unexpected error in %s %s", method, path, exc_info=exc)
    return (500, "internal-error", f"{type(exc).__name__}: the service failed on this "
            "request; nothing was written by it", None, "report this with the time of the request",
            None)


def error_parts(exc: Exception, method: str, path: str) -> ErrorParts:
    """What :data:`EXCEPTION_HANDLERS` answer for an error of the ledger, of its store or
    of anything else (for code that answers without Litestar: the commands' fast path)."""
    if isinstance(exc, LedgerError):
        return ledger_error(exc)
    if isinstance(exc, tuple(_store_errors())):
        return store_error(exc)
    return unexpected_error(exc, method, path)


def _ledger(_: Request, exc: LedgerError) -> Response:
    return error_response(*ledger_error(exc))


def _store(_: Request, exc: Exception) -> Response:
    return error_response(*store_error(exc))


def _anything(request: Request, exc: Exception) -> Response:
    return error_response(*unexpected_error(exc, request.method, request.url.path))


def _store_errors() -> list[type]:
    import sqlite3

    from eventsourcing.persistence import PersistenceError

    kinds: list[type] = [PersistenceError, sqlite3.Error]
    try:
        import psycopg

        kinds.append(psycopg.Error)
    except ImportError:  # pragma: no cover
        pass
    return kinds


EXCEPTION_HANDLERS: dict[Any, Any] = {
    ServiceError: _service_error,
    ValidationException: _validation,
    HTTPException: _http,
    LedgerError: _ledger,
    **{kind: _store for kind in _store_errors()},
    Exception: _anything,
}

#: responses every /api route may give (for the OpenAPI document)
def error_responses(*statuses: int) -> dict[int, Any]:
    from litestar.openapi.datastructures import ResponseSpec

    text = {400: "Bad parameter", 401: "No or unknown token", 403: "Role may not do this",
            404: "Not found", 413: "Body too large", 415: "Unsupported media type",
            503: "The ledger is busy or its store failed"}
    return {s: ResponseSpec(data_container=ErrorBody, description=text.get(s, "Error"))
            for s in statuses}
