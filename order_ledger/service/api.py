"""The routes: each one calls the library functions the matching CLI command calls.

Reads take ``as_of``, ``at_position`` and ``known_at`` as the CLI's
``--as-of``, ``--at-position`` and ``--known-at``: with any of them the read
replays the ledger's prefix in memory (``replay.asof``); without, it reads
the stored views, caught up first. Lists page with ``limit`` and an opaque
``cursor`` (the previous page's ``next_cursor``).
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import datetime
from typing import Annotated, Any, Callable, Union

import anyio
import msgspec
from litestar import MediaType, Request, Response, get, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, QueryParameter

from projections import ViewsError, read

from . import schemas as s
from .auth import principal_of, redact as _redact, redact_tsv
from .errors import ServiceError, error_responses


def redact(obj: Any, principal: Any) -> Any:
    """:func:`auth.redact` of the JSON-ready form of ``obj`` (the library's rows are
    Structs: redaction walks their fields as keys)."""
    return _redact(msgspec.to_builtins(obj), principal)


JSON_TYPES = ("application/json",)
LINES_TYPES = ("application/x-ndjson", "application/jsonl", "application/json-lines",
               "application/x-jsonlines", "text/plain")

READ_ERRORS = error_responses(400, 401, 403, 503)
AUDIT_ERRORS = READ_ERRORS
WRITE_ERRORS = error_responses(400, 401, 403, 413, 415, 503)

MAX_LIMIT = 1000


def _body_operation(content: dict[str, Any], description: str) -> type:
    """An OpenAPI operation documenting a body the route reads itself (so that a bad line
    is that line's rejection, not a 400 for the whole body)."""
    from dataclasses import dataclass

    from litestar.openapi.spec import OpenAPIMediaType, Operation, RequestBody

    @dataclass
    class WithBody(Operation):
        def __post_init__(self) -> None:
            self.request_body = RequestBody(
                content={k: OpenAPIMediaType(schema=v) for k, v in content.items()},
                description=description, required=True)

    return WithBody


#: the prefix of the command components' names in the OpenAPI document (the output rows
#: have components of their own, some with the same short names, e.g. ShipFrom)
COMMAND_COMPONENT_PREFIX = "command."
_COMMAND_REF = "#/components/schemas/" + COMMAND_COMPONENT_PREFIX + "{name}"
_AT_DESCRIPTION = ("Business time, ISO-8601 with offset; left out or null: when the ledger "
                   "records it (stamped under the writer lock)")


def _json_schema_to_openapi(node: Any) -> Any:
    """A JSON Schema (as msgspec generates it) as Litestar's OpenAPI spec objects."""
    from litestar.openapi.spec import Discriminator, Reference, Schema
    from litestar.openapi.spec.enums import OpenAPIType

    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return Reference(ref=node["$ref"])
    fields: dict[str, Any] = {}
    for key, value in node.items():
        if key == "type":
            fields["type"] = ([OpenAPIType(v) for v in value] if isinstance(value, list)
                              else OpenAPIType(value))
        elif key in ("anyOf", "oneOf", "allOf"):
            fields[re.sub(r"([A-Z])", r"_\1", key).lower()] = [
                _json_schema_to_openapi(v) for v in value]
        elif key == "properties":
            fields["properties"] = {k: _json_schema_to_openapi(v) for k, v in value.items()}
        elif key in ("items", "additionalProperties"):
            fields[re.sub(r"([A-Z])", r"_\1", key).lower()] = _json_schema_to_openapi(value)
        elif key == "discriminator":
            fields["discriminator"] = Discriminator(property_name=value["propertyName"],
                                                    mapping=value.get("mapping"))
        else:  # scalar keywords: maxLength -> max_length, minimum, pattern, enum ...
            fields[re.sub(r"([A-Z])", r"_\1", key).lower()] = value
    return Schema(**fields)


def command_components() -> tuple[Any, dict[str, Any]]:
    """One command's OpenAPI schema (a ``oneOf`` over every command type, discriminated by
    ``type``) and the components it refers to, derived from the ledger's own command
    Structs (:data:`ledger.commands.COMMAND_TYPES`), so the document cannot drift from what
    the ledger accepts. ``at`` is optional: the service stamps a line that leaves it out."""
    from ledger.commands import COMMAND_TYPES

    (union,), components = msgspec.json.schema_components(
        [Union[COMMAND_TYPES]], ref_template=_COMMAND_REF)
    union["oneOf"] = union.pop("anyOf")
    union["description"] = "One command, as a line of a command file (docs/command-file.md)"
    for cls in COMMAND_TYPES:
        body = components[cls.__name__]
        body["required"] = [f for f in body.get("required", []) if f != "at"]
        body["properties"]["at"]["description"] = _AT_DESCRIPTION
    return (_json_schema_to_openapi(union),
            {COMMAND_COMPONENT_PREFIX + name: _json_schema_to_openapi(schema)
             for name, schema in components.items()})


def _command_schemas() -> dict[str, Any]:
    from litestar.openapi.spec import Schema
    from litestar.openapi.spec.enums import OpenAPIType

    command, _ = command_components()
    return {"application/json": Schema(type=OpenAPIType.ARRAY, items=command),
            "application/x-ndjson": Schema(type=OpenAPIType.STRING,
                                           description="JSON Lines: one command per line, "
                                                       "each as in application/json")}


def _string_schema(description: str) -> Any:
    from litestar.openapi.spec import Schema
    from litestar.openapi.spec.enums import OpenAPIType

    return Schema(type=OpenAPIType.STRING, description=description)


def _object_schema(description: str) -> Any:
    from litestar.openapi.spec import Schema
    from litestar.openapi.spec.enums import OpenAPIType

    return Schema(type=OpenAPIType.OBJECT, description=description)


def service(request: Request) -> Any:
    return request.app.state.service


# --- parameters ----------------------------------------------------------------------

AsOf = QueryParameter(name="as_of", required=False, description=(
    "Read the past: what the seller saw at this business time (ISO-8601 with offset)."))
AtPosition = QueryParameter(name="at_position", required=False, ge=0, description=(
    "Read the past: right after the event at this global position."))
KnownAt = QueryParameter(name="known_at", required=False, description=(
    "Only what the ledger had recorded by this time (ISO-8601 with offset); with as_of: "
    "what was known then about that time."))
Limit = QueryParameter(name="limit", required=False, ge=1, le=MAX_LIMIT,
                  description=f"At most this many rows (1 to {MAX_LIMIT}, default 100).")
Cursor = QueryParameter(name="cursor", required=False, max_length=200,
                   description="The next_cursor of the previous page.")


def _need_offset(name: str, t: datetime | None) -> None:
    if t is not None and t.tzinfo is None:
        raise ServiceError(400, "bad-parameter", f"{name} {t.isoformat()} has no UTC offset",
                           field=name, hint="add one such as +01:00 or Z")


def past_point(as_of: datetime | None, at_position: int | None,
               known_at: datetime | None) -> bool:
    _need_offset("as_of", as_of)
    _need_offset("known_at", known_at)
    return as_of is not None or at_position is not None or known_at is not None


def resolve_point(ledger: Any, as_of: datetime | None, at_position: int | None,
                  known_at: datetime | None) -> Any:
    from replay.asof import AsOfError, resolve

    try:
        return resolve(ledger, as_of, at_position, known_at)
    except AsOfError as exc:
        raise ServiceError(400, "bad-parameter", str(exc),
                           hint="give as_of or at_position (known_at combines with as_of)")


def encode_cursor(kind: str, value: int) -> str:
    raw = msgspec.json.encode({"k": kind, "v": value})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None, kind: str) -> int:
    if not cursor:
        return 0
    try:
        data = msgspec.json.decode(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if isinstance(data, dict) and data.get("k") == kind and isinstance(data.get("v"), int) \
                and data["v"] >= 0:
            return data["v"]
    except (ValueError, binascii.Error, msgspec.DecodeError):
        pass
    raise ServiceError(400, "bad-parameter", "the cursor is not one this list gave",
                       field="cursor", hint="pass the next_cursor of the previous page, "
                                            "or no cursor for the first page")


def page_of(rows: list, limit: int, offset: int, kind: str = "offset") -> tuple[list, str | None]:
    """``rows`` were fetched with one extra row: the page and the cursor to the next."""
    more = len(rows) > limit
    return rows[:limit], encode_cursor(kind, offset + limit) if more else None


async def blocking(request: Request, fn: Callable[[Any], Any]) -> Any:
    """``fn(reader ledger)`` in a worker thread with a pooled reader."""
    svc = service(request)

    def run() -> Any:
        with svc.readers.ledger() as led:
            return fn(led)

    return await anyio.to_thread.run_sync(run)


def views_error(exc: ViewsError) -> ServiceError:
    return ServiceError(400 if "sort" in str(exc) or "status" in str(exc) else 503,
                        "views-error", str(exc))


# --- health --------------------------------------------------------------------------


@get("/health", summary="Liveness: the ledger is reachable", tags=["service"])
async def health(request: Request) -> s.Health:
    from importlib.metadata import PackageNotFoundError, version

    svc = service(request)
    head = await blocking(request, lambda led: led.head())
    try:
        v = version("order-ledger")
    except PackageNotFoundError:  # pragma: no cover
        v = "unknown"
    import os

    w = svc.writer
    return s.Health(status="ok", head=head, ledger=svc.describe_db(), version=v,
                    requests=w.requests if w else 0, commits=w.commits if w else 0,
                    pid=os.getpid(),
                    ticker_leader=bool(svc.ticker is not None and svc.ticker.lock.held))


# --- commands ------------------------------------------------------------------------


def _stamp_later(item: Any) -> Any:
    """A command without ``at`` happens when the ledger records it: ``"at": null``, as the
    CLI's one-command verbs send it (the ledger stamps it under its writer lock)."""
    if isinstance(item, dict) and "at" not in item:
        item = {**item, "at": None}
    return item


def _stamp_line(line: bytes) -> bytes:
    if b'"at"' in line:
        return line
    try:
        item = msgspec.json.decode(line)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return line  # the ledger reports it (malformed-json) with its line number
    return msgspec.json.encode(_stamp_later(item)) if isinstance(item, dict) else line


def parse_command_body(body: bytes, content_type: str) -> list[tuple[int, bytes]]:
    """The body's command lines as ``(line number, JSON bytes)``: a JSON array (numbered
    from 1 by position) or JSON Lines (numbered as in the file; blank lines skipped)."""
    media = content_type.split(";")[0].strip().lower()
    if media in JSON_TYPES:
        try:
            doc = msgspec.json.decode(body)
        except msgspec.DecodeError as exc:
            raise ServiceError(400, "malformed-json", f"the body is not JSON: {exc}",
                               hint="send a JSON array of commands, or JSON Lines as "
                                    "application/x-ndjson")
        if isinstance(doc, dict):
            doc = [doc]
        if not isinstance(doc, list):
            raise ServiceError(400, "malformed-json", "the body is not a JSON array of commands",
                               hint="send [ {\"type\": ...}, ... ]")
        return [(i, msgspec.json.encode(_stamp_later(item))) for i, item in enumerate(doc, 1)]
    if media in LINES_TYPES or media == "":
        from ledger.textfile import NotText, text_lines
        import io

        try:
            lines = list(text_lines(io.BytesIO(body)))
        except NotText as exc:
            raise ServiceError(400, "not-text", f"the body is not UTF-8 text: {exc}; nothing "
                               "applied", hint="send the command file as UTF-8")
        from ledger.application import command_lines

        return [(n, _stamp_line(line if isinstance(line, bytes) else line.encode("utf-8")))
                for n, line in command_lines(lines)]
    raise ServiceError(415, "unsupported-media-type",
                       f"cannot read commands sent as {media!r}",
                       hint="send application/json (an array) or application/x-ndjson")


@post("/api/commands", summary="Apply commands (a JSON array or JSON Lines)",
      description=(
          "Every line's outcome, exactly as `order-ledger apply --json`: 200 when every line "
          "was applied or was a duplicate, 422 when any was rejected (the others are applied). "
          "`at` may be left out: the command happens when the ledger records it. Concurrent "
          "requests share durable transactions; each is answered once its lines committed."),
      tags=["commands"], opt={"need": "write"}, status_code=200,
      operation_class=_body_operation(_command_schemas(), "Commands: a JSON array or JSON Lines"),
      responses={422: ResponseSpec(data_container=list[s.Outcome],
                               description="Some line was rejected"), **WRITE_ERRORS})
async def post_commands(request: Request) -> Response[list[s.Outcome]]:
    body = await request.body()
    lines = parse_command_body(body, request.headers.get("content-type", ""))
    svc = service(request)
    outcomes = await svc.submit(lines) if lines else []
    rows = [s.to(s.Outcome, o.as_dict()) for o in outcomes]
    rejected = any(o.status == "rejected" for o in outcomes)
    return Response(rows, status_code=422 if rejected else 200, media_type=MediaType.JSON)


# --- feeds and imports -----------------------------------------------------------------

FEED_NAMES = ("shipping-confirmation", "cancellation", "adjustment")


async def on_writer(request: Request, fn: Callable[[Any], Any]) -> Any:
    """``fn(writing ledger)`` on the writer thread, between group commits."""
    import asyncio

    return await asyncio.wrap_future(service(request).writer.run_sync(fn))


@post("/api/feeds/{name:str}",
      summary="Process a marketplace flat-file feed (the file as the body)",
      description=("name: shipping-confirmation, cancellation or adjustment. The report is "
                   "`order-ledger feed NAME --json`'s: 200 when no line was rejected, 422 when "
                   "any was; a file rejected as a whole (encoding, header) is 400 "
                   "`file-rejected` and nothing is applied."),
      tags=["commands"], opt={"need": "write"}, status_code=200,
      operation_class=_body_operation(
          {"text/tab-separated-values": _string_schema("The feed file: a header row, then "
                                                       "tab-separated lines")},
          "The feed file"),
      responses={422: ResponseSpec(data_container=s.FeedReport, description="Some line rejected"),
                 **error_responses(400, 401, 403, 404, 413, 503)})
async def post_feed(request: Request, name: FromPath[str],
                    encoding: Annotated[str | None, QueryParameter(
                        name="encoding", required=False, max_length=40,
                        description="The file's encoding when it is not UTF-8 "
                                    "(e.g. cp1252); default: detected.")] = None
                    ) -> Response[s.FeedReport]:
    from ledger import feeds

    if name not in FEED_NAMES:
        raise ServiceError(404, "not-found", f"no feed {name!r}", field="name",
                           hint=", ".join(FEED_NAMES))
    data = await request.body()
    try:
        feeds.read_feed(name, data, encoding)  # whole-file checks, nothing touched
    except (feeds.FeedError, LookupError) as exc:
        raise ServiceError(400, "file-rejected",
                           f"the feed was rejected, nothing applied: {exc}",
                           hint="see docs/feeds.md for the columns and encodings")
    svc = service(request)
    now = svc.config.clock()
    report = await on_writer(request, lambda led: feeds.process_feed(
        led, name, data, at=now, encoding=encoding))
    body = s.to(s.FeedReport, redact(report.as_dict(), principal_of(request)))
    return Response(body, status_code=422 if report.rejected else 200,
                    media_type=MediaType.JSON)


@post("/api/import/sp-api",
      summary="Import a getOrders response (Orders API v0) as ledger commands",
      description=("The body is the getOrders response (or a list of pages), or "
                   "`{\"orders\": <getOrders>, \"items\": <getOrderItems by order>}`. "
                   "The report is `order-ledger import sp-api --json`'s: 200 when every order "
                   "was imported, already imported or skipped, 422 otherwise; an unusable "
                   "file is 400 `file-rejected`."),
      tags=["commands"], opt={"need": "write"}, status_code=200,
      operation_class=_body_operation(
          {"application/json": _object_schema("A getOrders response (payload.Orders)")},
          "The getOrders response"),
      responses={422: ResponseSpec(data_container=s.ImportReport, description="Some order failed"),
                 **error_responses(400, 401, 403, 413, 503)})
async def post_sp_api(request: Request,
                      language: Annotated[str | None, QueryParameter(
                          name="language", required=False, max_length=35,
                          description="Buyer language (BCP-47) for orders that do not say.")] = None
                      ) -> Response[s.ImportReport]:
    from ledger import spapi
    from ledger.rules import LANGUAGE_RE

    if language is not None and not LANGUAGE_RE.match(language):
        raise ServiceError(400, "bad-parameter", f"{language!r} is not a BCP-47 tag",
                           field="language", hint="e.g. sv-SE")
    raw = await request.body()
    try:
        doc = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise ServiceError(400, "file-rejected", f"not valid JSON: {exc}",
                           hint="send the getOrders response as it came")
    items = None
    if isinstance(doc, dict) and "orders" in doc and "payload" not in doc:
        doc, items = doc["orders"], doc.get("items")
    try:
        spapi.load_orders(doc)
        if items is not None:
            spapi.load_items(items)
    except spapi.SpApiError as exc:
        raise ServiceError(400, "file-rejected", str(exc),
                           hint="see docs/sp-api-import.md for what is read")
    except (TypeError, AttributeError, KeyError, ValueError) as exc:
        raise ServiceError(400, "file-rejected", f"not a getOrders response: {exc}",
                           hint="see docs/sp-api-import.md for what is read")
    report = await on_writer(request, lambda led: spapi.import_orders(
        led, doc, items, language=language))
    body = s.to(s.ImportReport, redact(report.as_dict(), principal_of(request)))
    return Response(body, status_code=200 if report.ok else 422, media_type=MediaType.JSON)


# --- orders --------------------------------------------------------------------------


@get("/api/orders", summary="Manage Orders: every order, newest purchase first",
     tags=["orders"], responses=READ_ERRORS)
async def list_orders(
    request: Request,
    status: Annotated[str | None, QueryParameter(name="status", required=False,
                                   description="Only orders with this status.")] = None,
    sort: Annotated[str | None, QueryParameter(name="sort", required=False,
                                 description="purchased (default), order or status.")] = None,
    desc: Annotated[bool | None, QueryParameter(name="desc", required=False,
                                  description="Descending (true) or ascending (false).")] = None,
    limit: Annotated[int, Limit] = 100, cursor: Annotated[str | None, Cursor] = None,
    as_of: Annotated[datetime | None, AsOf] = None,
    at_position: Annotated[int | None, AtPosition] = None,
    known_at: Annotated[datetime | None, KnownAt] = None,
) -> s.OrderPage:
    from projections.model import STATUSES

    if status is not None and status not in STATUSES:
        raise ServiceError(400, "bad-parameter", f"unknown status {status!r}", field="status",
                           hint=f"one of {', '.join(STATUSES)}")
    if sort is not None and sort not in read.SORT_KEYS["orders"]:
        raise ServiceError(400, "bad-parameter", f"cannot sort orders by {sort!r}",
                           field="sort", hint="purchased, order or status")
    limit = limit or 100
    offset = decode_cursor(cursor, "offset")
    page = read.Page(sort=sort, desc=desc, limit=limit + 1, offset=offset)
    rows = await service(request).read_views(
        lambda v: v.orders(status, page), lambda snap: snap.orders(status, page),
        as_of, at_position, known_at, ["orders"])
    items, nxt = page_of(rows, limit, offset)
    items = redact(items, principal_of(request))
    return s.OrderPage(items=s.to(list[s.OrderRow], items), next_cursor=nxt)


@get("/api/orders/{order_id:str}", summary="One order, as `order-ledger show --json`",
     tags=["orders"], responses=error_responses(400, 401, 403, 404, 503))
async def get_order(request: Request,
                    order_id: FromPath[str],
                    as_of: Annotated[datetime | None, AsOf] = None,
                    at_position: Annotated[int | None, AtPosition] = None,
                    known_at: Annotated[datetime | None, KnownAt] = None) -> s.OrderView:
    from replay.asof import show_order

    in_past = past_point(as_of, at_position, known_at)

    def work(led: Any) -> Any:
        point = resolve_point(led, as_of, at_position, known_at) if in_past else None
        return show_order(led, order_id, point)

    view = await blocking(request, work)
    if view is None:
        raise ServiceError(404, "unknown-order", f"no order {order_id} in the ledger"
                           + (" at that point" if in_past else ""), field="order_id",
                           hint="GET /api/orders lists the orders")
    return s.to(s.OrderView, redact(view, principal_of(request)))


@get("/api/orders/{order_id:str}/history",
     summary="Every event of an order with the state after it (`order-ledger history --json`)",
     tags=["orders"], opt={"need": "audit"},
     responses=error_responses(400, 401, 403, 404, 503))
async def order_history(request: Request,
                        order_id: FromPath[str],
                        limit: Annotated[int, Limit] = 100,
                        cursor: Annotated[str | None, Cursor] = None,
                        as_of: Annotated[datetime | None, AsOf] = None,
                        at_position: Annotated[int | None, AtPosition] = None,
                        known_at: Annotated[datetime | None, KnownAt] = None) -> s.HistoryPage:
    from replay.asof import steps_as_of
    from replay.history import order_history as history

    in_past = past_point(as_of, at_position, known_at)
    limit = limit or 100
    offset = decode_cursor(cursor, "offset")

    def work(led: Any) -> Any:
        if in_past:
            steps = steps_as_of(led, order_id, resolve_point(led, as_of, at_position, known_at))
        else:
            steps = history(led, order_id)
        return len(steps), [st.as_dict() for st in steps[offset:offset + limit + 1]]

    total, rows = await blocking(request, work)
    if not total:
        raise ServiceError(404, "unknown-order", f"no order {order_id} in the ledger",
                           field="order_id", hint="GET /api/orders lists the orders")
    items, nxt = page_of(rows, limit, offset)
    return s.HistoryPage(items=s.to(list[s.HistoryStep], redact(items, principal_of(request))),
                         next_cursor=nxt)


@get("/api/orders/{order_id:str}/explain",
     summary="Why the order is in its status and what happens next (`order-ledger explain`)",
     tags=["orders"], opt={"need": "audit"},
     responses=error_responses(401, 403, 404, 503))
async def order_explain(request: Request, order_id: FromPath[str]) -> s.Explanation:
    from replay.history import explain

    out = await blocking(request, lambda led: explain(led, order_id))
    if out is None:
        raise ServiceError(404, "unknown-order", f"no order {order_id} in the ledger",
                           field="order_id", hint="GET /api/orders lists the orders")
    return s.to(s.Explanation, redact(out, principal_of(request)))


# --- reports and other views ------------------------------------------------------------


@get("/api/reports/{kind:str}",
     summary="The Orders or Unshipped Orders report (tab-separated, header first)",
     description="kind: orders, unshipped or all-orders (every order, Pending ones too).",
     tags=["views"], media_type="text/tab-separated-values",
     responses=error_responses(400, 401, 403, 404, 503))
async def get_report(request: Request, kind: FromPath[str],
                     at: Annotated[datetime | None, QueryParameter(
                         name="at", required=False,
                         description="The report time; default: the ledger's clock, else now.",
                     )] = None,
                     as_of: Annotated[datetime | None, AsOf] = None,
                     at_position: Annotated[int | None, AtPosition] = None,
                     known_at: Annotated[datetime | None, KnownAt] = None,
                     layout: Annotated[str | None, QueryParameter(
                         name="layout", required=False, max_length=20,
                         description="unshipped only: current (default, the marketplace's "
                                     "current columns) or old (the earlier 26 columns).",
                     )] = None,
                     encoding: Annotated[str | None, QueryParameter(
                         name="encoding", required=False, max_length=20,
                         description="marketplace (default: what the orders' marketplace "
                                     "writes, windows-1252 or cp932), utf-8, windows-1252, "
                                     "iso-8859-1, shift_jis or cp932; the charset of the "
                                     "response says which.",
                     )] = None) -> Response[bytes]:
    if kind not in ("orders", "unshipped", "all-orders"):
        raise ServiceError(404, "not-found", f"no report {kind!r}", field="kind",
                           hint="orders, unshipped or all-orders")
    layout = layout or "current"
    if layout not in ("current", "old") or (layout == "old" and kind != "unshipped"):
        raise ServiceError(400, "invalid-field", f"no layout {layout!r} for the {kind} report",
                           field="layout", hint="current, or old for the unshipped report")
    want = encoding or "marketplace"
    if want not in read.REPORT_ENCODINGS:
        raise ServiceError(400, "invalid-field", f"no report encoding {want!r}",
                           field="encoding", hint=", ".join(read.REPORT_ENCODINGS))
    _need_offset("at", at)
    svc = service(request)

    def from_snapshot(snap: Any, when: datetime) -> Any:
        if kind == "orders":
            return snap.report_orders(at or when)
        if kind == "all-orders":
            return snap.report_all_orders(at or when)
        return snap.report_unshipped(at or when, layout)

    async def from_views(v: Any) -> str:
        when = at or svc.default_time(v.ledger)
        if kind == "orders":
            return await v.report_orders(when)
        if kind == "all-orders":
            return await v.report_all_orders(when)
        return await v.report_unshipped(when, layout)

    text = await svc.read_views(from_views, from_snapshot, as_of, at_position, known_at,
                                ["orders"], with_time=True)
    try:  # the encoding comes from the orders' marketplaces, before redaction
        chosen = read.report_encoding(text, want)
    except read.ReportEncodingError as exc:
        raise ServiceError(400, "mixed-encodings", str(exc).replace("--encoding", "encoding="),
                           field="encoding", hint="pass encoding=utf-8 to keep every character")
    data, used, _ = read.encode_report(redact_tsv(text, principal_of(request)), chosen)
    # Litestar names the charset of a text/* response from ``encoding``
    return Response(data, media_type="text/tab-separated-values", encoding=used)


@get("/api/inventory", summary="Manage Inventory: tracked SKUs", tags=["views"],
     responses=READ_ERRORS)
async def get_inventory(
    request: Request,
    sort: Annotated[str | None, QueryParameter(name="sort", required=False,
                                 description="sku (default), available or reserved.")] = None,
    desc: Annotated[bool | None, QueryParameter(name="desc", required=False)] = None,
    limit: Annotated[int, Limit] = 100, cursor: Annotated[str | None, Cursor] = None,
    as_of: Annotated[datetime | None, AsOf] = None,
    at_position: Annotated[int | None, AtPosition] = None,
    known_at: Annotated[datetime | None, KnownAt] = None,
) -> s.InventoryPage:
    if sort is not None and sort not in read.SORT_KEYS["inventory"]:
        raise ServiceError(400, "bad-parameter", f"cannot sort inventory by {sort!r}",
                           field="sort", hint="sku, available or reserved")
    limit = limit or 100
    offset = decode_cursor(cursor, "offset")
    page = read.Page(sort=sort, desc=desc, limit=limit + 1, offset=offset)
    rows = await service(request).read_views(
        lambda v: v.inventory(page), lambda snap: snap.inventory(page),
        as_of, at_position, known_at, ["inventory"])
    items, nxt = page_of(rows, limit, offset)
    return s.InventoryPage(items=s.to(list[s.InventoryRow], items), next_cursor=nxt)


@get("/api/metrics", summary="Seller metrics (`order-ledger metrics --json`)",
     tags=["views"], responses=READ_ERRORS)
async def get_metrics(request: Request,
                      at: Annotated[datetime | None, QueryParameter(name="at", required=False,
                          description="The instant the windows end at; default: the "
                                      "ledger's clock, else now.")] = None,
                      as_of: Annotated[datetime | None, AsOf] = None,
                      at_position: Annotated[int | None, AtPosition] = None,
                      known_at: Annotated[datetime | None, KnownAt] = None) -> s.Metrics:
    _need_offset("at", at)
    svc = service(request)

    async def from_views(v: Any) -> s.Metrics:
        return await v.metrics(at or svc.default_time(v.ledger))

    m = await svc.read_views(from_views, lambda snap, when: snap.metrics(at or when),
                             as_of, at_position, known_at, ["metrics"], with_time=True)
    return m


@get("/api/notifications", summary="The notifications the ledger sends, in event order",
     tags=["views"], responses=READ_ERRORS)
async def get_notifications(
    request: Request,
    order: Annotated[str | None, QueryParameter(name="order", required=False,
                                  description="Only this order's notifications.")] = None,
    limit: Annotated[int, Limit] = 100, cursor: Annotated[str | None, Cursor] = None,
    as_of: Annotated[datetime | None, AsOf] = None,
    at_position: Annotated[int | None, AtPosition] = None,
    known_at: Annotated[datetime | None, KnownAt] = None,
) -> s.NotificationPage:
    limit = limit or 100
    offset = decode_cursor(cursor, "offset")
    page = read.Page(limit=limit + 1, offset=offset)
    rows = await service(request).read_views(
        lambda v: v.notifications(order, page), lambda snap: snap.notifications(order, page),
        as_of, at_position, known_at, ["notifications"])
    items, nxt = page_of(rows, limit, offset)
    return s.NotificationPage(items=s.to(list[s.Notification],
                                         redact(items, principal_of(request))),
                              next_cursor=nxt)


@get("/api/audit", summary="Events across all orders matching every filter, oldest first",
     tags=["audit"], opt={"need": "audit"}, responses=AUDIT_ERRORS)
async def get_audit(
    request: Request,
    order: Annotated[str | None, QueryParameter(name="order", required=False)] = None,
    type_: Annotated[list[str] | None, QueryParameter(name="type", required=False,
                                        description="Event types, e.g. LedgerCanceled.")] = None,
    actor: Annotated[str | None, QueryParameter(name="actor", required=False)] = None,
    since: Annotated[datetime | None, QueryParameter(name="since", required=False)] = None,
    until: Annotated[datetime | None, QueryParameter(name="until", required=False)] = None,
    reason: Annotated[str | None, QueryParameter(name="reason", required=False)] = None,
    fields: Annotated[bool, QueryParameter(name="fields", required=False,
                             description="Add each event's own fields.")] = True,
    limit: Annotated[int, Limit] = 100, cursor: Annotated[str | None, Cursor] = None,
    known_at: Annotated[datetime | None, KnownAt] = None,
) -> s.AuditPage:
    from replay.audit import AuditError, AuditQuery, query, with_fields

    _need_offset("known_at", known_at)
    limit = limit or 100
    after = decode_cursor(cursor, "position")
    try:
        q = AuditQuery(order_id=order, types=tuple(type_ or ()), actor=actor, since=since,
                       until=until, reason=reason, after=after, first=limit + 1)
    except AuditError as exc:
        raise ServiceError(400, "bad-parameter", str(exc).replace("--", ""))
    svc = service(request)

    async def work(v: Any) -> list[dict]:
        if known_at is not None:
            q.upto = await anyio.to_thread.run_sync(v.ledger.position_known_at, known_at)
        rows = await query(v, q)
        if fields and rows:
            rows = await anyio.to_thread.run_sync(
                lambda: _with_fields(svc, rows, with_fields))
        return rows

    rows = await svc.read_views(work, None, None, None, None, ["audit"])
    more = len(rows) > limit
    rows = rows[:limit]
    nxt = encode_cursor("position", rows[-1]["position"]) if more and rows else None
    return s.AuditPage(items=s.to(list[s.AuditRow], redact(rows, principal_of(request))),
                       next_cursor=nxt)


def _with_fields(svc: Any, rows: list[dict], with_fields: Callable) -> list[dict]:
    with svc.readers.ledger() as led:
        return with_fields(led, rows)


@get("/api/conflicts", summary="Late facts refused because a deadline had been applied",
     tags=["audit"], opt={"need": "audit"}, responses=AUDIT_ERRORS)
async def get_conflicts(request: Request,
                        order: Annotated[str | None,
                                         QueryParameter(name="order", required=False)] = None,
                        limit: Annotated[int, Limit] = 100,
                        cursor: Annotated[str | None, Cursor] = None) -> s.ConflictPage:
    limit = limit or 100
    offset = decode_cursor(cursor, "offset")
    rows = await blocking(request, lambda led: led.conflicts(order))
    items, nxt = page_of(rows[offset:offset + limit + 1], limit, offset)
    who = principal_of(request)
    if not who.sees_personal_data:  # the refused command as sent: its buyer data too
        items = [{**r, "command": _redact_json_text(r["command"], who)} for r in items]
    return s.ConflictPage(items=s.to(list[s.Conflict], redact(items, who)), next_cursor=nxt)


def _redact_json_text(text: str, who: Any) -> str:
    try:
        return msgspec.json.encode(redact(msgspec.json.decode(text), who)).decode()
    except (msgspec.DecodeError, UnicodeDecodeError):
        return text


ROUTES: list[Any] = [health, post_commands, post_feed, post_sp_api, list_orders, get_order,
                     order_history,
                     order_explain, get_report, get_inventory, get_metrics, get_notifications,
                     get_audit, get_conflicts]
