"""PostgreSQL faults while writers and the follower run: the server restarted, its
sessions terminated (``pg_terminate_backend``), the server down for longer than a
writer waits.

Each test runs against a private server (``tests/pg_cluster.py``: ``initdb`` in a
temporary directory, its own port), so stopping it disturbs nothing else. The
command file is applied by ``order-ledger apply --json`` in a subprocess; every
JSON line it prints is an acknowledgement. After the faults, the ledger must hold
every acknowledged command once and equal a clean run of the same file
(``crash_harness.snapshot``), and ``check`` (ledger and views) must pass.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from crash_harness import _write_workload, differences, quick_check, run_apply, snapshot
from ledger.application import Ledger
from ledger.errors import StoreUnavailable
from ledger.store import connection_lost
from pg_cluster import PrivateCluster

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "order_ledger"]


@pytest.fixture(scope="module")
def cluster():
    try:
        pg = PrivateCluster()
    except Exception as exc:  # CI must fail, not skip, when the server cannot start
        pytest.fail(f"cannot start a private PostgreSQL server: {exc}")
    yield pg
    pg.close()


@pytest.fixture(scope="module")
def workload(tmp_path_factory) -> tuple[Path, dict[str, Any]]:
    """A command file every line of which is accepted, and its clean run's snapshot."""
    tmp = tmp_path_factory.mktemp("pgfaults")
    path = tmp / "workload.jsonl"
    _write_workload(path, orders=150, seed=7)
    reference = str(tmp / "reference.db")
    run = run_apply(reference, str(path), 25)
    assert run.returncode == 0, run.stderr
    return path, snapshot(reference)


class Writer:
    """``order-ledger apply --json`` in the background, its acknowledgements collected."""

    def __init__(self, db: str, path: Path, *, app: str, env: dict[str, str] | None = None,
                 batch_size: int = 2) -> None:
        full_env = dict(os.environ, PYTHONUNBUFFERED="1", PGAPPNAME=app, **(env or {}))
        self.proc = subprocess.Popen(
            CLI + ["apply", "--json", "--batch-size", str(batch_size), "--db", db, str(path)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=str(ROOT), env=full_env)
        self.acks: list[dict] = []
        self.stderr = ""
        self._out = threading.Thread(target=self._read, daemon=True)
        self._out.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None and self.proc.stderr is not None
        for raw in self.proc.stdout:
            if raw.endswith(b"\n"):
                self.acks.append(json.loads(raw))
        self.stderr = self.proc.stderr.read().decode(errors="replace")

    def wait_acks(self, n: int, timeout: float = 60) -> None:
        end = time.monotonic() + timeout
        while len(self.acks) < n:
            assert self.proc.poll() is None or self._out.is_alive(), (
                f"apply ended after {len(self.acks)} acknowledgements: {self.stderr}")
            assert time.monotonic() < end, f"only {len(self.acks)} acknowledgements"
            time.sleep(0.02)

    def finish(self, timeout: float = 240) -> int:
        rc = self.proc.wait(timeout=timeout)
        self._out.join(timeout=30)
        return rc

    def applied(self) -> dict[str, int]:
        return {a["command_id"]: a["line"] for a in self.acks if a.get("status") == "applied"}


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + list(args), capture_output=True, text=True, cwd=str(ROOT),
                          env=dict(os.environ, **(env or {})), timeout=240)


def _assert_same_as_clean_run(db: str, reference: dict[str, Any], acked: dict[str, int]) -> None:
    problems, lost = quick_check(db, acked)
    assert lost == 0 and problems == []
    assert differences(snapshot(db), reference) == []
    done = _cli("check", "--db", db)
    assert done.returncode == 0, done.stdout + done.stderr


def test_connection_failures_are_told_from_answers():
    refused = psycopg.OperationalError("connection refused")  # no SQLSTATE: never reached it
    assert connection_lost(refused)
    assert connection_lost(psycopg.errors.AdminShutdown("terminating connection"))
    assert connection_lost(psycopg.InterfaceError("the connection is closed"))
    wrapped = RuntimeError("the store failed")
    wrapped.__cause__ = psycopg.errors.AdminShutdown("terminating connection")
    assert connection_lost(wrapped)
    # answers from the server are not waited out: they would fail again
    assert not connection_lost(psycopg.errors.LockNotAvailable("lock timeout"))
    assert not connection_lost(psycopg.errors.UniqueViolation("duplicate key"))
    assert not connection_lost(psycopg.errors.DiskFull("no space left"))
    assert not connection_lost(ValueError("bad"))


def test_server_restarted_twice_while_apply_runs(cluster, workload):
    path, reference = workload
    db = cluster.url("restart_" + uuid.uuid4().hex[:8])
    lines = sum(1 for line in path.read_text().splitlines() if line.strip())
    writer = Writer(db, path, app="restart-test")
    writer.wait_acks(lines // 5)
    # every session ends and nothing answers for 6 s: longer than the pool's 5 s wait
    # for a connection, so the batch in flight fails and is decided again
    cluster.stop()
    assert writer.proc.poll() is None and len(writer.acks) < lines  # the fault hit a running writer
    time.sleep(6.0)
    cluster.start()
    writer.wait_acks(len(writer.acks) + lines // 5)
    assert writer.proc.poll() is None
    cluster.restart(down=0.2)  # a short restart, which the pool may ride out by itself
    rc = writer.finish()
    assert rc == 0, writer.stderr
    assert "Traceback" not in writer.stderr
    assert "the PostgreSQL server is not answering" in writer.stderr
    assert "answers again" in writer.stderr
    assert len(writer.acks) == lines  # every line acknowledged once
    assert {a["status"] for a in writer.acks} <= {"applied", "duplicate"}
    _assert_same_as_clean_run(db, reference, writer.applied())


def test_sessions_terminated_under_apply_and_follow(cluster, workload, tmp_path):
    path, reference = workload
    db = cluster.url("term_" + uuid.uuid4().hex[:8])
    views = str(tmp_path / "term.views.db")
    writer = Writer(db, path, app="term-writer")
    writer.wait_acks(50)
    follower = subprocess.Popen(
        CLI + ["follow", "--db", db, "--views", views, "--interval", "0.1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=str(ROOT),
        env=dict(os.environ, PGAPPNAME="term-follower", PYTHONUNBUFFERED="1"))
    ended = 0
    rounds = 0
    while writer.proc.poll() is None and rounds < 8:
        time.sleep(0.6)
        ended += cluster.terminate("term-writer") + cluster.terminate("term-follower")
        rounds += 1
    rc = writer.finish()
    assert rc == 0, writer.stderr
    assert "Traceback" not in writer.stderr
    assert rounds >= 3 and ended >= 3, (rounds, ended)
    time.sleep(1.0)
    assert follower.poll() is None, follower.stderr.read().decode()  # still following
    follower.send_signal(signal.SIGTERM)
    out, err = follower.communicate(timeout=60)
    assert follower.returncode == 0, err.decode()
    assert b"Traceback" not in err
    _assert_same_as_clean_run(db, reference, writer.applied())
    synced = _cli("check", "--db", db, "--views", views)
    assert synced.returncode == 0, synced.stdout + synced.stderr


def test_server_down_longer_than_the_wait(cluster, workload):
    path, reference = workload
    db = cluster.url("down_" + uuid.uuid4().hex[:8])
    writer = Writer(db, path, app="down-test", env={"ORDER_LEDGER_RECONNECT_TIMEOUT": "2"})
    writer.wait_acks(30)
    cluster.stop()
    assert writer.proc.poll() is None
    try:
        rc = writer.finish(timeout=120)
    finally:
        cluster.start()
    assert rc == 1, writer.stderr
    assert "Traceback" not in writer.stderr
    assert "did not answer for 2 s" in writer.stderr
    assert "run the same lines again" in writer.stderr
    acked = writer.applied()
    assert 30 <= len(acked) < len(reference["commands"])
    # the same command again, once the server is back, completes the file
    again = Writer(db, path, app="down-again", batch_size=100)
    assert again.finish() == 0, again.stderr
    assert {a["command_id"] for a in again.acks if a["status"] == "applied"}.isdisjoint(acked)
    _assert_same_as_clean_run(db, reference, {**acked, **again.applied()})


def test_library_writer_gives_up_with_store_unavailable(cluster):
    """Through the Python API: a batch waits ``reconnect_timeout`` seconds, then raises
    StoreUnavailable; nothing of it is written; the same batch later applies."""
    db = cluster.url("lib_" + uuid.uuid4().hex[:8])
    line = json.dumps({"type": "set-inventory", "command_id": "inv-1", "sku": "MUG",
                       "quantity": 5, "at": "2026-03-02T00:00:00+01:00"})
    notices: list[str] = []
    with Ledger(db, reconnect_timeout=1.0, env={"POSTGRES_CONNECT_TIMEOUT": "1"}) as led:
        led.notice = notices.append
        assert led.head() == 0
        cluster.stop()
        try:
            started = time.monotonic()
            with pytest.raises(StoreUnavailable, match="did not answer for 1 s"):
                list(led.apply_lines([line]))
            assert time.monotonic() - started < 30
        finally:
            cluster.start()
        assert notices and "not answering" in notices[0]
        outcomes = list(led.apply_lines([line]))
        assert [o.status for o in outcomes] == ["applied"]
        assert led.head() == 1


@pytest.mark.parametrize("value", ["abc", "-1", "nan"])
def test_a_bad_reconnect_timeout_is_a_usage_error(tmp_path, value):
    """ORDER_LEDGER_RECONNECT_TIMEOUT that is not a number of seconds: exit 2 naming the
    variable, nothing created."""
    db = str(tmp_path / "ledger.db")
    done = _cli("tick", "--now", "2026-03-02T00:00:00+01:00", "--db", db,
                env={"ORDER_LEDGER_RECONNECT_TIMEOUT": value})
    assert done.returncode == 2, done.stdout + done.stderr
    assert "ORDER_LEDGER_RECONNECT_TIMEOUT" in done.stderr and "Traceback" not in done.stderr
    assert not os.path.exists(db)
