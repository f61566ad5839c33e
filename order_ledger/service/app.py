"""``create_app(config)``: the Litestar application over one ledger.

One :class:`Service` per process holds the group-commit writer, a pool of
reading ledgers, the stored views and the ticker; routes reach it as
``request.app.state.service``. Other fronts (the browser pages) plug their own
route handlers in with ``extra_route_handlers``; ``/``, ``/ui`` and
``/static`` are left to them.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import Any, AsyncIterator, Callable, Iterable

import anyio
from litestar import Litestar, Router
from litestar.config.app import ExperimentalFeatures  # noqa: F401 - documented option
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme

from ledger.application import Ledger
from ledger.clock import SystemClock
from ledger.tokens import verify_token

from .auth import TokenCheck, bearer_guard
from .errors import EXCEPTION_HANDLERS
from .runtime import GroupWriter, ReaderPool, ServiceConfig

log = logging.getLogger("order_ledger.service")

__all__ = ["Service", "ServiceConfig", "create_app"]


class Service:
    """What one process serves from: see the module's docstring."""

    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        self.writer: GroupWriter | None = None
        self.readers: ReaderPool = ReaderPool(config.db, config.readers)
        self.views: Any = None
        self._views_ledger: Ledger | None = None
        self._views_lock = asyncio.Lock()
        self.ticker: Any = None
        self.router: Any = None
        self.stopping = asyncio.Event()

    # --- life ------------------------------------------------------------------------

    def start(self) -> None:
        """Open the ledger for writing (creating it when missing), then the readers."""
        led = Ledger(self.config.db, clock=SystemClock(), mode="write")
        try:
            led.probe_store()
            led.recorder.ensure_tokens_table()
        except BaseException:
            led.close()
            raise
        self.writer = GroupWriter(led, self.config.max_batch_lines)
        self.tokens = TokenCheck(self._lookup)

    def _lookup(self, token: str) -> Any:
        with self.readers.ledger() as led:
            return verify_token(led, token)

    async def open_views(self) -> None:
        from projections import Views

        self._views_ledger = await anyio.to_thread.run_sync(
            lambda: Ledger(self.config.db, clock=SystemClock(), mode="read"))
        self.views = Views(self._views_ledger, self.config.views)
        await self.views.open()

    async def submit(self, lines: list[tuple[int, bytes]]) -> list[Any]:
        """Apply command lines in a group commit (the host's leader's, see WriteRouter)."""
        if self.router is not None:
            return await self.router.submit(lines)
        return await self.writer.submit(lines)  # type: ignore[union-attr]

    async def stop(self) -> None:
        self.stopping.set()
        if self.router is not None:
            await self.router.stop()
        if self.ticker is not None:
            await self.ticker.stop()
        if self.views is not None:
            await self.views.close()
        if self._views_ledger is not None:
            self._views_ledger.close()
        if self.writer is not None:
            writer = self.writer
            await anyio.to_thread.run_sync(writer.close)
            writer.ledger.close()
        self.readers.close()

    # --- helpers for the routes --------------------------------------------------------

    def describe_db(self) -> str:
        """The backend's name only: /health needs no token, so it names no host or file."""
        from ledger.store import is_postgres

        return "postgresql" if is_postgres(self.config.db) else "sqlite"

    @staticmethod
    def default_time(ledger: Any) -> datetime:
        """The ledger's clock (its latest tick), else now: as the CLI's reads."""
        return ledger.now() or datetime.now(timezone.utc)

    async def read_views(self, from_views: Callable[[Any], Any],
                         from_snapshot: Callable[..., Any] | None,
                         as_of: datetime | None, at_position: int | None,
                         known_at: datetime | None, names: Iterable[str],
                         with_time: bool = False) -> Any:
        """Read the stored views (caught up first), or, when a past point is asked for,
        the projections replayed to it in memory (as the CLI's ``--as-of``)."""
        from projections import ViewsError

        from .api import past_point, resolve_point
        from .errors import ServiceError

        if past_point(as_of, at_position, known_at) and from_snapshot is not None:
            from replay.asof import evaluation_time, snapshot

            def work() -> Any:
                with self.readers.ledger() as led:
                    point = resolve_point(led, as_of, at_position, known_at)
                    snap = snapshot(led, point, list(names))
                    if with_time:
                        return from_snapshot(snap, evaluation_time(point))
                    return from_snapshot(snap)

            return await anyio.to_thread.run_sync(work)
        try:
            async with self._views_lock:
                await self.views.sync()
                return await from_views(self.views)
        except ViewsError as exc:
            raise ServiceError(503, "views-error", str(exc),
                               hint="the views file could not be brought up to date") from None


def create_app(config: ServiceConfig, *, extra_route_handlers: list[Any] | None = None,
               debug: bool = False) -> Litestar:
    """The service's ASGI app for ``config`` (see :class:`ServiceConfig`).

    ``extra_route_handlers`` are added at the root (``/``, ``/ui``, ``/static`` are
    free for them); they can use :func:`~order_ledger.service.auth.bearer_guard`,
    :func:`~order_ledger.service.auth.redact` and ``app.state.service``."""
    from . import api, events
    from .ticker import Ticker

    svc = Service(config)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        await anyio.to_thread.run_sync(svc.start)
        app.state.service = svc
        app.state.tokens = svc.tokens
        await svc.open_views()
        from .runtime import WriteRouter

        svc.router = WriteRouter(svc.writer, config.db)  # type: ignore[arg-type]
        await svc.router.start()
        if config.tick_interval > 0:
            svc.ticker = Ticker(svc)
            svc.ticker.start()
        try:
            yield
        finally:
            await svc.stop()

    protected = Router(path="/", guards=[bearer_guard], security=[{"bearer": []}],
                       route_handlers=[h for h in api.ROUTES if h is not api.health]
                       + events.ROUTES)
    handlers: list[Any] = [api.health, protected, *(extra_route_handlers or [])]
    app = Litestar(
        route_handlers=handlers,
        lifespan=[lifespan],
        exception_handlers=EXCEPTION_HANDLERS,
        request_max_body_size=config.max_body,
        openapi_config=OpenAPIConfig(
            title="Order Ledger", version="1", path="/schema",
            description="The order ledger as a service: commands in, views, history and "
                        "events out. Every /api path needs Authorization: Bearer <token>.",
            components=Components(security_schemes={
                "bearer": SecurityScheme(type="http", scheme="bearer",
                                         description="A token from `order-ledger token create`")}),
        ),
        debug=debug,
    )
    # the commands' schemas, from the ledger's command Structs, beside the components
    # Litestar derives from the routes (it replaces components.schemas when it builds
    # the document, so they are added to the built document)
    _, command_components = api.command_components()
    schemas = app.openapi_schema.components.schemas
    if schemas is None or set(schemas) & set(command_components):
        raise RuntimeError("OpenAPI components clash with the commands' components")
    schemas.update(command_components)
    return app


#: the environment variable ``order-ledger serve`` passes its settings in (JSON), so
#: every uvicorn worker process builds the same app (:func:`app_from_env`)
CONFIG_VAR = "ORDER_LEDGER_SERVE_CONFIG"


def config_to_env(config: ServiceConfig) -> str:
    import json

    return json.dumps({"db": config.db, "views": config.views,
                       "allowed_lateness": config.allowed_lateness.total_seconds(),
                       "tick_interval": config.tick_interval, "readers": config.readers,
                       "sse_max_lag": config.sse_max_lag, "max_body": config.max_body})


def app_from_env() -> Any:
    """The app for a uvicorn worker: settings from :data:`CONFIG_VAR`; ``POST
    /api/commands`` answered without Litestar when nothing about it needs it
    (:mod:`~order_ledger.service.fastpath`)."""
    import json
    import os
    from datetime import timedelta

    raw = json.loads(os.environ[CONFIG_VAR])
    config = ServiceConfig(db=raw["db"], views=raw.get("views"),
                           allowed_lateness=timedelta(seconds=raw["allowed_lateness"]),
                           tick_interval=raw["tick_interval"], readers=raw["readers"],
                           sse_max_lag=raw["sse_max_lag"], max_body=raw["max_body"])
    from order_ledger.web import web_route_handlers  # the browser page at /

    from .fastpath import CommandsFastPath

    return CommandsFastPath(create_app(config, extra_route_handlers=web_route_handlers()))
