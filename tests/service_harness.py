"""A real ``order-ledger serve`` in a subprocess on a free port, and an httpx client.

``Server(db).start()`` creates the ledger if needed, makes one token per role
(``server.tokens[role]``) and starts the service; ``server.client(role)`` is an
``httpx.Client`` with that role's bearer token (``role=None``: no token).
Stop it with ``server.stop()`` (SIGTERM) or ``server.kill()`` (SIGKILL).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
ROLES = ("operator", "auditor", "viewer")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(*args: str, env: dict[str, str] | None = None, check: bool = True
        ) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    # a scratch working directory: a PostgreSQL ledger's default views file goes there
    out = subprocess.run([sys.executable, "-m", "order_ledger", *args], capture_output=True,
                         text=True, env=full_env, cwd=_scratch(), timeout=120)
    if check and out.returncode != 0:
        raise AssertionError(f"order-ledger {' '.join(args)} exited {out.returncode}: "
                             f"{out.stderr}")
    return out


_SCRATCH: list[str] = []


def _scratch() -> str:
    if not _SCRATCH:
        import tempfile

        _SCRATCH.append(tempfile.mkdtemp(prefix="order-ledger-cli-"))
    return _SCRATCH[0]


def make_token(db: str, role: str, name: str | None = None) -> str:
    args = ["token", "create", "--role", role, "--db", db]
    if name:
        args += ["--name", name]
    return cli(*args).stdout.strip()


class Server:
    def __init__(self, db: str, *, views: str | None = None, workers: int = 1,
                 extra: tuple[str, ...] = ("--tick-interval", "0"),
                 tokens: dict[str, str] | None = None, env: dict[str, str] | None = None,
                 log: Path | None = None) -> None:
        self.db = db
        self.views = views
        self.workers = workers
        self.extra = extra
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.tokens: dict[str, str] = dict(tokens or {})
        self.env = env or {}
        self.proc: subprocess.Popen | None = None
        self.log = log
        self._log_file: Any = None

    def start(self, timeout: float = 30.0) -> "Server":
        for role in ROLES:
            if role not in self.tokens:
                self.tokens[role] = make_token(self.db, role)
        args = [sys.executable, "-m", "order_ledger", "serve", "--db", self.db,
                "--port", str(self.port), "--workers", str(self.workers), *self.extra]
        if self.views is None:  # never the default (for PostgreSQL: the working directory)
            import tempfile

            self.views = os.path.join(tempfile.mkdtemp(prefix="order-ledger-views-"),
                                      "views.db")
        args += ["--views", self.views]
        env = {**os.environ, "PYTHONPATH": str(ROOT), **self.env}
        if self.log is None:
            import tempfile

            fd, name = tempfile.mkstemp(prefix="order-ledger-serve-", suffix=".log")
            os.close(fd)
            self.log = Path(name)
        self._log_file = open(self.log, "ab")
        self.proc = subprocess.Popen(args, cwd=_scratch(), env=env, stdout=self._log_file,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.output()
                raise RuntimeError(f"serve exited {self.proc.returncode}: {err}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError("serve did not answer /health in time")

    def client(self, role: str | None = "operator", **kw: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[role]}"} if role else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=kw.pop("timeout", 30),
                            **kw)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._close()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._close()

    def output(self) -> str:
        """What the server printed (its log)."""
        return self.log.read_text(errors="replace") if self.log else ""

    def _close(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> "Server":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
