"""The page's routes: Litestar handlers, served at ``/`` beside the API.

``web_route_handlers(config)`` gives the handlers (and the static files) to
plug into the service's app. Every read and write calls the library (see
:mod:`order_ledger.web.backend`); nothing here decides what an order may do:
a rejected action shows the ledger's own message.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, AsyncIterator
from urllib.parse import urlencode, urlsplit

from litestar import Request, Response, get, post
from litestar.response import Redirect, ServerSentEvent
from litestar.static_files import create_static_files_router

from ledger.tokens import Principal, list_tokens
from projections import read
from replay.trend import SERIES

from . import html
from .backend import Backend, PageError, When
from .charts import line_chart
from .session import COOKIE, PRE_COOKIE, Session, Signer, load_key, same

STATIC = Path(__file__).resolve().parent / "static"
REPORTS = (("orders", "Orders report", "every order that left Pending, one row per item"),
           ("unshipped", "Unshipped Orders report",
            "Unshipped and PartiallyShipped orders, rows with quantity to ship"),
           ("all-orders", "All Orders report", "every order, Pending ones too"))
#: how long the page trusts its list of revoked tokens (seconds)
REVOCATION_SECONDS = 1.0


@dataclass
class WebConfig:
    """Settings of the page (the ledger and its readers come from the service)."""

    #: the session cookie's Secure flag (set it behind HTTPS)
    secure_cookie: bool = False
    #: how often the live stream looks at the ledger's head (seconds)
    live_interval: float = 0.25
    #: how long one live stream lasts before the browser reconnects (seconds)
    live_seconds: float = 300.0


_OFFSET = re.compile(r"^[+-]\d{2}:\d{2}$")


class BadTime(ValueError):
    pass


def parse_time(text: str | None, tz: str | None, label: str) -> datetime | None:
    """A datetime-local value (or a full ISO time) with the page's UTC offset."""
    if not text:
        return None
    try:
        t = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise BadTime(f"{label}: {text!r} is not a date and time (e.g. 2026-03-20T12:00)") from None
    if not 1900 <= t.year <= 9000:
        raise BadTime(f"{label}: {text!r} is out of range (years 1900 to 9000)")
    if t.tzinfo is None:
        off = (tz or "+00:00").strip()
        if not _OFFSET.match(off):
            raise BadTime(f"UTC offset: {off!r} is not +HH:MM or -HH:MM (e.g. +01:00)")
        sign = -1 if off[0] == "-" else 1
        hours, minutes = int(off[1:3]), int(off[4:6])
        if hours > 14 or minutes > 59:
            raise BadTime(f"UTC offset: {off!r} is out of range (-14:00 to +14:00)")
        t = t.replace(tzinfo=timezone(sign * timedelta(hours=hours, minutes=minutes)))
    return t


def _local(t: datetime | None) -> str:
    return "" if t is None else t.strftime("%Y-%m-%dT%H:%M")


def _offset(t: datetime | None) -> str:
    if t is None or t.utcoffset() is None:
        return "+00:00"
    z = t.strftime("%z")
    return f"{z[:3]}:{z[3:]}"


def _safe_back(back: str | None) -> str:
    """A same-site path to return to after an action (never another host)."""
    if not back:
        return "/orders"
    parts = urlsplit(back)
    if parts.scheme or parts.netloc or not back.startswith("/") or back.startswith("//"):
        return "/orders"
    return back


def B(request: Request) -> Backend:
    """The page's way to the library: the service of the app serving the request."""
    return Backend(request.app.state.service)


def web_route_handlers(config: WebConfig | None = None) -> list[Any]:
    """The page's handlers and static files, for ``create_app(extra_route_handlers=...)``."""
    from order_ledger.service.auth import redact as redact_for, redact_tsv

    config = config or WebConfig(
        secure_cookie=os.environ.get("ORDER_LEDGER_SECURE_COOKIE", "") not in ("", "0"))
    state: dict[str, Any] = {}

    def signer(request: Request) -> Signer:
        if "s" not in state:
            state["s"] = Signer(load_key(request.app.state.service.config.db))
        return state["s"]

    async def active_tokens(request: Request) -> set[str]:
        """The ids of the tokens not revoked (re-read at most every REVOCATION_SECONDS)."""
        hit = state.get("active")
        if hit is None or time.monotonic() - hit[0] > REVOCATION_SECONDS:
            ids = await B(request)._blocking(
                lambda led: {t.token_id for t in list_tokens(led) if t.active})
            hit = state["active"] = (time.monotonic(), ids)
        return hit[1]

    async def session_of(request: Request) -> Session | None:
        """The signed-in session; None when absent, forged, expired or its token revoked."""
        s = signer(request).read(request.cookies.get(COOKIE), time.time())
        if s is None or s.token_id not in await active_tokens(request):
            return None
        return s

    def principal(s: Session) -> Principal:
        return Principal(token_id=s.token_id, name=s.name or s.role, role=s.role)

    def redact(obj: Any, s: Session) -> Any:
        return redact_for(obj, principal(s))

    def page(body: str, status: int = 200, cookies: list | None = None) -> Response:
        r = Response(body, status_code=status, media_type="text/html",
                     headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY",
                              "Content-Security-Policy":
                                  "default-src 'self'; img-src 'self' data:; "
                                  "style-src 'self' 'unsafe-inline'; frame-ancestors 'none'"})
        for c in cookies or []:
            r.set_cookie(**c)
        return r

    def sign_in_page(error: str | None = None, status: int = 200) -> Response:
        pre = secrets.token_urlsafe(24)
        return page(html.layout("Sign in", html.sign_in(pre, error)), status, [dict(
            key=PRE_COOKIE, value=pre, httponly=True, samesite="strict", path="/sign-in",
            secure=config.secure_cookie)])

    class Ctx:
        """One request's view of the page: who, when, and the links that keep the time."""

        def __init__(self, request: Request, s: Session) -> None:
            self.request = request
            self.session = s
            self.user = principal(s)
            q = request.query_params
            self.raw = {"as_of": q.get("as_of") or "", "known_at": q.get("known_at") or "",
                        "tz": q.get("tz") or ""}
            self.error: str | None = None
            try:
                as_of = parse_time(self.raw["as_of"], self.raw["tz"], "As of")
                known = parse_time(self.raw["known_at"], self.raw["tz"], "As known at")
            except BadTime as exc:
                self.error = str(exc)
                as_of = known = None
            self.when = When(as_of, known)
            #: the offset the time-travel form starts with (the ledger clock's; set by ctx())
            self.default_tz = "+00:00"

        @property
        def time_params(self) -> dict[str, str]:
            if not self.when.past:
                return {}
            return {k: v for k, v in self.raw.items() if v}

        @property
        def tq(self) -> str:
            return html.qs(self.time_params)

        def render(self, title: str, body: str, active: str, path: str,
                   keep: dict[str, str] | None = None, status: int = 200,
                   live: bool = False) -> Response:
            tz = self.raw["tz"] or (_offset(self.when.as_of or self.when.known_at)
                                    if self.when.past else self.default_tz)
            form = html.when_form(path, self.raw["as_of"], self.raw["known_at"], tz,
                                  keep or {}, self.error)
            banner = ""
            if self.when.past:
                banner = html.past_banner(self.when.as_of, self.when.known_at,
                                          path + html.qs(keep or {}))
            return page(html.layout(title, body, user=self.user, csrf=self.session.csrf,
                                    active=active, time_params=self.time_params,
                                    when_form=form, past_banner=banner, live=live), status)

    async def make_ctx(request: Request, s: Session) -> "Ctx":
        ctx = Ctx(request, s)
        clock = await B(request).clock()
        if clock is not None:
            ctx.default_tz = _offset(clock)
        return ctx

    async def need_session(request: Request) -> Session | Response:
        s = await session_of(request)
        if s is None:
            return Redirect("/", status_code=303)
        return s

    def can_act(s: Session) -> bool:
        return principal(s).can_write

    # --- sign in and out -----------------------------------------------------------

    @get("/", include_in_schema=False)
    async def home(request: Request) -> Response:
        if await session_of(request) is not None:
            return Redirect("/orders", status_code=303)
        return sign_in_page()

    @post("/sign-in", include_in_schema=False, status_code=303)
    async def sign_in(request: Request) -> Response:
        form = await request.form()
        if not same(form.get("_csrf"), request.cookies.get(PRE_COOKIE)):
            return sign_in_page("The form expired; sign in again.", 403)
        token = form.get("token")
        token = token.strip() if isinstance(token, str) else ""
        verify = request.app.state.tokens.verify
        who = await asyncio.to_thread(verify, token) if token else None
        if who is None:
            return sign_in_page("Unknown or revoked token: check it, or make one with "
                                "`order-ledger token create --role viewer`.", 401)
        value, _ = signer(request).issue(who.role, who.name, who.token_id, time.time())
        r = Redirect("/orders", status_code=303)
        r.set_cookie(key=COOKIE, value=value, httponly=True, samesite="strict", path="/",
                     secure=config.secure_cookie, max_age=8 * 3600)
        r.delete_cookie(PRE_COOKIE, path="/sign-in")
        return r

    @post("/sign-out", include_in_schema=False, status_code=303)
    async def sign_out(request: Request) -> Response:
        s = await session_of(request)
        form = await request.form()
        if s is not None and not same(form.get("_csrf"), s.csrf):
            return page(html.layout("Sign out", html.flash(
                "The form expired: reload the page and sign out again.", "error")), 403)
        r = Redirect("/", status_code=303)
        r.delete_cookie(COOKIE, path="/")
        return r

    # --- Manage Orders --------------------------------------------------------------

    def orders_params(request: Request) -> tuple[str | None, str, int, str | None]:
        q = request.query_params
        status = q.get("status") or None
        err = None
        if status is not None and status not in html.STATUSES:
            err = f"Status: unknown status {status!r}; choose one of {', '.join(html.STATUSES)}"
            status = None
        search = (q.get("q") or "").strip()[:40]
        try:
            n = max(1, min(int(q.get("page") or 1), 1_000_000))
        except ValueError:
            n = 1
        return status, search, n, err

    async def orders_body(ctx: Ctx, failed: dict | None = None) -> tuple[str, str]:
        request = ctx.request
        status, search, n, err = orders_params(request)
        rows: list[dict]
        if ctx.error:
            rows, more = [], False
        else:
            try:
                rows, more = await B(request).orders(ctx.when, status, search or None, n)
            except PageError as exc:
                ctx.error, rows, more = str(exc), [], False
        rows = redact(rows, ctx.session)
        params = {"status": status, "q": search, **ctx.time_params}
        back = "/orders" + html.qs({**params, "page": n if n > 1 else None})
        today = datetime.now(timezone.utc).date().isoformat()
        table = html.orders_table(rows, can_act=can_act(ctx.session), past=ctx.when.past,
                                  csrf=ctx.session.csrf, back=back, tq=ctx.tq, today=today,
                                  failed=failed)
        head = await B(request).head()
        body = (html.flash(err, "error") + html.filters_form(status, search, ctx.time_params)
                + f'<div id="live-status" role="status" aria-live="polite" class="live"></div>'
                + f'<div id="orders" data-head="{head}">{table}'
                + html.pager(n, more, params) + "</div>")
        return body, back

    @get("/orders", include_in_schema=False)
    async def orders(request: Request) -> Response:
        s = await need_session(request)
        if not isinstance(s, Session):
            return s
        ctx = await make_ctx(request, s)
        body, _ = await orders_body(ctx)
        q = request.query_params
        msg = None
        if q.get("done") in ("ship", "cancel") and q.get("order"):
            msg = (f"Shipment confirmed for order {q.get('order')}." if q.get("done") == "ship"
                   else f"Order {q.get('order')} canceled.")
        keep = {"status": q.get("status") or "", "q": q.get("q") or ""}
        return ctx.render("Manage Orders", html.flash(msg) + body, "orders", "/orders", keep,
                          live=not ctx.when.past)

    @get("/orders/fragment", include_in_schema=False)
    async def orders_fragment(request: Request) -> Response:
        """The table alone (what the live updates swap in)."""
        s = await session_of(request)
        if s is None:
            return Response("", status_code=401)
        ctx = await make_ctx(request, s)
        body, _ = await orders_body(ctx)
        return page(body)

    async def act(request: Request, order_id: str, kind: str) -> Response:
        s = await session_of(request)
        if s is None:
            return Redirect("/", status_code=303)
        form = await request.form()
        if not same(form.get("_csrf"), s.csrf):
            return page(html.layout("Not done", html.flash(
                "The form expired (CSRF check failed): reload the page and try again.",
                "error")), 403)
        if not can_act(s):
            return page(html.layout("Not allowed", html.flash(
                f"Your role ({s.role}) cannot change orders; an operator can.", "error")), 403)
        values = {k: v for k, v in form.items()  # text fields only (a file is ignored)
                  if k not in ("_csrf", "back") and isinstance(v, str)}
        if kind == "ship":
            command = ship_command(order_id, values)
        else:
            command = {"type": "cancel", "order_id": order_id, "by": "seller",
                       "reason": values.get("reason") or None,
                       "memo": values.get("memo") or None}
        command["command_id"] = f"page-{uuid.uuid4()}"
        if s.name:
            command["actor"] = s.name[:200]
        # no "at": the command happens when the ledger records it, as the CLI's verbs
        command = {"at": None, **{k: v for k, v in command.items() if v is not None}}
        out = await B(request).submit(command)
        back_field = form.get("back")
        back = _safe_back(back_field if isinstance(back_field, str) else "")
        if out.get("status") != "rejected":
            sep = "&" if "?" in back else "?"
            return Redirect(f"{back}{sep}{urlencode({'done': kind, 'order': order_id})}",
                            status_code=303)
        err = out.get("error") or {}
        text = str(err.get("message") or "rejected")
        if err.get("hint"):
            text += f" Fix: {err['hint']}"
        for v in err.get("violations", []) or []:
            text += f" {v.get('message')}"
        # show the list the action came from, with the message next to the form
        scope: Any = dict(request.scope)
        _, _, query = back.partition("?")
        scope["query_string"] = query.encode()
        scope["method"] = "GET"
        ctx = await make_ctx(Request(scope, receive=request.receive), s)
        body, _ = await orders_body(ctx, failed={"order_id": order_id, "kind": kind,
                                                 "message": f"Rejected: {text}",
                                                 "values": values})
        summary = f"Order {order_id}: the ledger rejected the action; nothing was changed."
        if f'id="{kind}-{order_id}-error"' not in body:  # no form of it on this page
            summary += f" Rejected: {text}"
        return ctx.render("Manage Orders", html.flash(summary, "error") + body, "orders",
                          "/orders", status=422)

    def ship_command(order_id: str, values: dict[str, str]) -> dict:
        """``order-ledger ship`` as a command: items only when some quantity differs
        from all that is left (the default: the whole order)."""
        items = []
        partial = False
        for k, v in values.items():
            if not k.startswith("qty:"):
                continue
            item_id = k[4:]
            try:
                q = int(v)
            except ValueError:
                q = -1  # the ledger says what is wrong with it
            if v != values.get(f"max:{item_id}"):
                partial = True
            if q != 0:
                items.append({"order_item_id": item_id, "quantity": q})
        return {"type": "ship", "order_id": order_id,
                "carrier_code": values.get("carrier") or "",
                "carrier_name": values.get("carrier_name") or None,
                "tracking_number": values.get("tracking_number") or None,
                "ship_date": values.get("ship_date") or "",
                "items": items if partial else None}

    @post("/orders/{order_id:str}/ship", include_in_schema=False, status_code=303)
    async def ship(request: Request, order_id: str) -> Response:
        return await act(request, order_id, "ship")

    @post("/orders/{order_id:str}/cancel", include_in_schema=False, status_code=303)
    async def cancel(request: Request, order_id: str) -> Response:
        return await act(request, order_id, "cancel")

    # --- one order --------------------------------------------------------------------

    @get("/orders/{order_id:str}", include_in_schema=False)
    async def order(request: Request, order_id: str) -> Response:
        s = await need_session(request)
        if not isinstance(s, Session):
            return s
        ctx = await make_ctx(request, s)
        path = f"/orders/{order_id}"
        data = None
        if not ctx.error:
            try:
                data = await B(request).order_page(ctx.when, order_id)
            except PageError as exc:
                ctx.error = str(exc)
        if data is None:
            when = " at that time" if ctx.when.past else ""
            return ctx.render(f"Order {order_id}", html.flash(
                f"No order {order_id} in the ledger{when}.", "error")
                + f'<p><a href="/orders{html.h(ctx.tq)}">Manage Orders</a></p>', "orders",
                path, status=404)
        data = redact(data, s)
        return ctx.render(f"Order {order_id}", html.order_page(data, ctx.tq), "orders", path)

    # --- metrics, inventory, reports ----------------------------------------------------

    @get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        s = await need_session(request)
        if not isinstance(s, Session):
            return s
        ctx = await make_ctx(request, s)
        if ctx.error:
            return ctx.render("Metrics", "", "metrics", "/metrics", status=400)
        try:
            current, trend = await B(request).metrics(ctx.when)
        except PageError as exc:
            ctx.error = str(exc)
            return ctx.render("Metrics", "", "metrics", "/metrics", status=400)
        charts = []
        for key, (label, _) in SERIES.items():
            meta = trend["series"][key]
            charts.append((key, label, meta, line_chart(key, label, meta["target"],
                                                        meta["target_text"], trend["points"])))
        return ctx.render("Metrics", html.metrics_page(current, charts), "metrics", "/metrics")

    @get("/inventory", include_in_schema=False)
    async def inventory(request: Request) -> Response:
        s = await need_session(request)
        if not isinstance(s, Session):
            return s
        ctx = await make_ctx(request, s)
        rows: list[dict] = []
        if not ctx.error:
            try:
                rows = await B(request).inventory(ctx.when)
            except PageError as exc:
                ctx.error = str(exc)
        return ctx.render("Manage Inventory", html.inventory_page(rows), "inventory",
                          "/inventory")

    @get("/reports", include_in_schema=False)
    async def reports(request: Request) -> Response:
        s = await need_session(request)
        if not isinstance(s, Session):
            return s
        ctx = await make_ctx(request, s)
        redacted = not principal(s).sees_personal_data
        return ctx.render("Reports", html.reports_page(REPORTS, ctx.tq, redacted),
                          "reports", "/reports")

    @get("/reports/{kind:str}", include_in_schema=False)
    async def report(request: Request, kind: str) -> Response:
        s = await need_session(request)
        if not isinstance(s, Session):
            return s
        ctx = await make_ctx(request, s)
        if kind not in {k for k, _, _ in REPORTS}:
            return ctx.render("Reports", html.flash(
                f"No report {kind!r}; the reports are orders, unshipped and all-orders.", "error"),
                "reports", "/reports", status=404)
        if ctx.error:
            return ctx.render("Reports", "", "reports", "/reports", status=400)
        try:
            text = await B(request).report(ctx.when, kind)
        except PageError as exc:
            ctx.error = str(exc)
            return ctx.render("Reports", "", "reports", "/reports", status=400)
        try:  # the file the marketplace would give: its encoding (as `report` writes it)
            chosen = read.report_encoding(text)
        except read.ReportEncodingError:
            chosen = "utf-8"  # orders of several marketplaces: keep every character
        data, used, _ = read.encode_report(redact_tsv(text, principal(s)), chosen)
        name = f"{kind}-report.txt"
        return Response(data, media_type="text/tab-separated-values", encoding=used,
                        headers={"Content-Disposition": f'attachment; filename="{name}"',
                                 "Cache-Control": "no-store"})

    # --- live -------------------------------------------------------------------------

    @get("/live", include_in_schema=False)
    async def live(request: Request) -> Response:
        """Server-Sent Events for the page: an event each time the ledger's head moves."""
        s = await session_of(request)
        if s is None:
            return Response("", status_code=401)
        try:
            # a reconnecting EventSource sends the last id it saw: it wins over ?after=
            after = int(request.headers.get("last-event-id")
                        or request.query_params.get("after") or -1)
        except ValueError:
            after = -1

        async def events() -> AsyncIterator[dict]:
            nonlocal after
            if after < 0:
                after = await B(request).head()
            stop = time.monotonic() + config.live_seconds
            yield {"event": "hello", "data": str(after), "id": str(after)}
            while time.monotonic() < stop:
                head = await B(request).head()
                if head > after:
                    yield {"event": "ledger", "data": str(head), "id": str(head)}
                    after = head
                await asyncio.sleep(config.live_interval)

        return ServerSentEvent(events())

    static = create_static_files_router(path="/static", directories=[STATIC],
                                        include_in_schema=False, name="web-static")
    handlers = [home, sign_in, sign_out, orders, orders_fragment, ship, cancel, order, metrics,
                inventory, reports, report, live, static]
    return handlers

