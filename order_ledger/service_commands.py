"""``order-ledger serve`` and ``order-ledger token create|list|revoke``."""

from __future__ import annotations

import re
import sys
from datetime import timedelta
from typing import Any

import click

from .common import console, db_option, err_console, json_option, open_ledger, open_reader, \
    print_json, print_table


def parse_duration(text: str) -> timedelta:
    """``90s``, ``5m``, ``1h``, ``0`` (seconds when no unit)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*", text or "")
    if not m:
        raise click.BadParameter(f"{text!r} is not a duration such as 30s, 5m or 1h")
    n = float(m.group(1))
    unit = m.group(2) or "s"
    return timedelta(milliseconds=n) if unit == "ms" else timedelta(
        seconds=n * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit])


class Duration(click.ParamType):
    name = "DURATION"

    def convert(self, value: Any, param: Any, ctx: Any) -> timedelta:
        if isinstance(value, timedelta):
            return value
        try:
            return parse_duration(str(value))
        except click.BadParameter as exc:
            self.fail(exc.message, param, ctx)


@click.command("serve")
@db_option
@click.option("--views", envvar="ORDER_LEDGER_VIEWS", default=None, metavar="PATH",
              help="The views file (default: beside the ledger). Also ORDER_LEDGER_VIEWS.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0: every interface).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Worker processes (they share the ledger; its writer lock serialises "
                   "their commits).")
@click.option("--allowed-lateness", default="5m", show_default=True, type=Duration(),
              help="The ticker ticks at the system clock minus this: facts may arrive that "
                   "late and still be accepted.")
@click.option("--tick-interval", default="60s", show_default=True, type=Duration(),
              help="How often the ticker ticks (0: no ticker; send ticks yourself).")
@click.option("--sse-max-lag", default=10_000, show_default=True, type=click.IntRange(1),
              metavar="N", help="An event-stream client more than N events behind the head "
                                "is sent `event: overflow` and the stream ends (it resumes "
                                "from where it was with Last-Event-ID).")
@click.option("--log-level", default="warning", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
def serve_cmd(db: str | None, views: str | None, host: str, port: int, workers: int,
              allowed_lateness: timedelta, tick_interval: timedelta, sse_max_lag: int,
              log_level: str) -> None:
    """Serve the ledger over HTTP (Litestar on uvicorn); see docs/service.md.

    Every /api request needs a bearer token (`order-ledger token create`).
    The OpenAPI document is at /schema/openapi.json. Creates the ledger when
    missing. Stops on Ctrl-C or SIGTERM, after answering the requests in flight.
    """
    import os

    import uvicorn

    from ledger.store import resolve_db

    from .service.app import CONFIG_VAR, config_to_env
    from .service.runtime import ServiceConfig

    # open once here: a bad location or key is a usage error before any worker starts
    open_ledger(db).close()
    config = ServiceConfig(db=resolve_db(db), views=views, allowed_lateness=allowed_lateness,
                           tick_interval=tick_interval.total_seconds(), sse_max_lag=sse_max_lag)
    os.environ[CONFIG_VAR] = config_to_env(config)
    err_console.print(f"serving {config.db if '://' not in config.db else 'PostgreSQL'} on "
                      f"http://{host}:{port} ({workers} worker{'s' if workers > 1 else ''}); "
                      "API docs at /schema", markup=False)
    if workers == 1:
        # httptools and uvloop when installed (see service/worker.py)
        uvicorn.run("order_ledger.service.app:app_from_env", factory=True, host=host,
                    port=port, log_level=log_level, access_log=False,
                    timeout_graceful_shutdown=10, http="auto", loop="auto")
        return
    run_workers(host, port, workers, log_level)


def run_workers(host: str, port: int, workers: int, log_level: str) -> None:
    """N worker processes, each with its own SO_REUSEPORT socket on host:port (the
    kernel spreads connections over them); one that dies is started again; SIGTERM or
    Ctrl-C stops them all (each finishes the requests it has)."""
    import signal
    import subprocess
    import time

    from .service.worker import listening_socket

    listening_socket(host, port).close()  # the address is free: fail here, not N times
    args = [sys.executable, "-m", "order_ledger.service.worker", host, str(port), log_level]
    procs = [subprocess.Popen(args) for _ in range(workers)]
    stopping = False

    def stop(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while True:
        for i, p in enumerate(procs):
            if p.poll() is not None and not stopping:
                err_console.print(f"worker {p.pid} exited ({p.returncode}); starting another",
                                  markup=False)
                time.sleep(0.5)
                if stopping:  # told to stop during the pause: start nothing more
                    break
                procs[i] = subprocess.Popen(args)
        if stopping:
            # a worker started while the signal was being handled did not get it
            for p in procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()
            return
        time.sleep(0.2)


@click.group("token")
def token_group() -> None:
    """Bearer tokens for `order-ledger serve`: create, list, revoke."""


@token_group.command("create")
@click.option("--role", required=True, type=click.Choice(["operator", "auditor", "viewer"]),
              help="operator: writes and reads everything; auditor: reads everything, "
                   "history and audit included; viewer: reads the views. Only operators see "
                   "buyer names, e-mails, phones and addresses.")
@click.option("--name", default=None, help="Who or what uses it (default: the role).")
@db_option
@json_option
def token_create(role: str, name: str | None, db: str | None, as_json: bool) -> None:
    """Make a token and print it once (only its hash is kept in the ledger's store)."""
    from ledger.tokens import TokenError, create_token

    ledger = open_ledger(db)
    try:
        token, info = create_token(ledger, role, name)
    except TokenError as exc:
        raise click.UsageError(f"{exc.message}" + (f" ({exc.hint})" if exc.hint else "")) \
            from None
    finally:
        ledger.close()
    if as_json:
        print_json({"token": token, **info.as_dict()})
        return
    sys.stdout.write(token + "\n")
    err_console.print(f"token {info.token_id} ({info.role}, {info.name}): shown once, keep it "
                      "secret; revoke with `order-ledger token revoke "
                      f"{info.token_id}`", markup=False)


@token_group.command("list")
@db_option
@json_option
def token_list(db: str | None, as_json: bool) -> None:
    """Every token's id, role, name and times (never the token)."""
    from ledger.tokens import list_tokens

    ledger = open_reader(db)
    try:
        rows = [t.as_dict() for t in list_tokens(ledger)]
    finally:
        ledger.close()
    if as_json:
        print_json(rows)
        return
    print_table([{**r, "revoked_at": r["revoked_at"] or ""} for r in rows],
                ["token_id", "role", "name", "created_at", "revoked_at"], title="tokens")


@token_group.command("revoke")
@click.argument("token_id")
@db_option
@json_option
def token_revoke(token_id: str, db: str | None, as_json: bool) -> None:
    """Revoke a token by its id (`token list`); a running service refuses it within a
    second."""
    from ledger.tokens import TokenError, revoke_token

    ledger = open_ledger(db)
    try:
        info = revoke_token(ledger, token_id)
    except TokenError as exc:
        err_console.print(f"Error: {exc.message}" + (f" ({exc.hint})" if exc.hint else ""),
                          markup=False)
        sys.exit(1)
    finally:
        ledger.close()
    if as_json:
        print_json(info.as_dict())
    else:
        console.print(f"token {info.token_id} ({info.role}, {info.name}) revoked", markup=False)


def register(main: click.Group) -> None:
    main.add_command(serve_cmd)
    main.add_command(token_group)
