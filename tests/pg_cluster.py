"""A private PostgreSQL server for fault tests: made with ``initdb`` in a temporary
directory, on its own port, so a test can stop, restart and kill it without
touching the shared server other tests use.

Needs the server binaries (Debian's ``postgresql`` package: ``/usr/lib/postgresql/N/bin``)
and, when run as root, the ``postgres`` system user to own the cluster.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def _bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).parent if pg_ctl else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateCluster:
    """``with PrivateCluster() as pg: pg.url(schema)``; ``pg.stop()``, ``pg.start()``,
    ``pg.restart(down=2.0)``, ``pg.terminate(application_name)``."""

    def __init__(self) -> None:
        bindir = _bindir()
        if bindir is None:
            raise RuntimeError("PostgreSQL server binaries (pg_ctl, initdb) not found: "
                               "install Debian's postgresql package")
        self.bin = bindir
        self.dir = Path(tempfile.mkdtemp(prefix="ledger-pg-"))
        self.data = self.dir / "data"
        self.port = _free_port()
        self._as: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
            self._as = ["runuser", "-u", "postgres", "--"]
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres",
                  "--no-sync")
        self.start()

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run(self._as + [str(self.bin / tool), *args], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)

    def _options(self) -> str:
        return (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 "
                "-c fsync=off -c full_page_writes=off")

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-o", self._options(),
                  "-l", str(self.dir / "log"), "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        """``fast``: ends every session, as ``pg_ctlcluster … restart`` does;
        ``immediate``: the server dies without a shutdown checkpoint, as in a crash."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self, down: float = 0.0, mode: str = "fast") -> None:
        self.stop(mode)
        time.sleep(down)
        self.start()

    def url(self, schema: str = "public") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres?schema={schema}"

    def terminate(self, application_name: str | None = None) -> int:
        """``pg_terminate_backend`` every session (of one application name): the
        server stays up, the connections die. Returns how many were ended."""
        import psycopg

        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/postgres",
                             autocommit=True, connect_timeout=5) as conn:
            sql = ("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                   "WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'")
            params: tuple = ()
            if application_name is not None:
                sql += " AND application_name = %s"
                params = (application_name,)
            row = conn.execute(sql, params).fetchone()
            return int(row[0]) if row else 0

    def close(self) -> None:
        try:
            self.stop("immediate")
        except Exception:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "PrivateCluster":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
