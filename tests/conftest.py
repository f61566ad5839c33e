"""Shared fixtures: every ledger test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import compileall
import os
import uuid
from pathlib import Path

import pytest

from ledger.application import Ledger

PG_URL = os.environ.get("ORDER_LEDGER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
_pg_ok: bool | None = None
ROOT = Path(__file__).resolve().parent.parent


def pytest_configure(config) -> None:
    """Compile the project's modules to bytecode once, before any test starts.

    The tests start the command line and the service as subprocesses many hundreds
    of times. Where writing bytecode is turned off (``PYTHONDONTWRITEBYTECODE``, as
    on the CI machine) every one of them would compile the project's modules from
    source again, about a third of a second each; Python still reads a cache that
    is there (and checks it against the source), so one compilation here serves
    them all."""
    for package in ("ledger", "projections", "replay", "order_ledger", "bench", "tests"):
        compileall.compile_dir(ROOT / package, quiet=1)


def pg_available() -> bool:
    global _pg_ok
    if _pg_ok is None:
        try:
            import psycopg

            with psycopg.connect(PG_URL, connect_timeout=3):
                _pg_ok = True
        except Exception:
            _pg_ok = False
    return _pg_ok


def _drop_schema(schema: str) -> None:
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(scope="session")
def walkthrough_db(tmp_path_factory) -> str:
    """A SQLite ledger with examples/walkthrough.jsonl applied, built once per run;
    for tests that only read it (and the views next to it)."""
    from builders import walkthrough_lines

    db = str(tmp_path_factory.mktemp("walkthrough") / "wt.db")
    with Ledger(db, advance_clock=True) as led:  # one time-sorted stream
        list(led.apply_lines(walkthrough_lines()))
    return db


@pytest.fixture
def pg_url():
    """A fresh PostgreSQL schema for one test, dropped afterwards."""
    if not pg_available():
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is not reachable at {PG_URL}")
        pytest.skip(f"PostgreSQL is not reachable at {PG_URL}")
    schema = "t_" + uuid.uuid4().hex[:12]
    sep = "&" if "?" in PG_URL else "?"
    yield f"{PG_URL}{sep}schema={schema}"
    _drop_schema(schema)


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path):
    """A new, empty ledger location on each backend."""
    if request.param == "sqlite":
        yield str(tmp_path / "ledger.db")
    else:
        yield request.getfixturevalue("pg_url")


@pytest.fixture
def sqlite_url(tmp_path):
    return str(tmp_path / "ledger.db")


@pytest.fixture
def ledger(db_url):
    # The rules tests feed one time-sorted stream, each command also moving the
    # world's clock (apply --advance-clock); tests/test_time.py covers the default.
    with Ledger(db_url, advance_clock=True) as led:
        yield led
