"""Issue 12, items 2-4 and 10: opening a ledger.

- reads never create a ledger: "no ledger at ...", exit 2, nothing created;
- PostgreSQL connection failures are fast and give the server's reason;
- readers work on read-only storage, writers say the ledger is read-only;
- a cipher key that does not fit the ledger is named in one line.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import uuid

import pytest
from click.testing import CliRunner

from builders import at, cmd
from conftest import PG_URL
from ledger.application import Ledger
from ledger.check import check_ledger
from ledger.errors import CipherKeyMismatch, LedgerNotFound, LedgerReadOnly, StoreError
from order_ledger.cli import main

ORDER = "203-0000044-0348436"  # the walkthrough's last order (Pending)

# Every command that only reads the ledger (the views they may write are not the ledger).
READS = [
    ["show", ORDER], ["show", ORDER, "--as-of", "2026-04-01T00:00:00Z"], ["history", ORDER],
    ["explain", ORDER], ["orders"], ["orders", "--as-of", "2026-04-01T00:00:00Z"],
    ["report", "orders"], ["report", "unshipped"], ["inventory"], ["metrics"],
    ["notifications"], ["audit"], ["check"], ["export"], ["diff"],
    ["bisect", "--order", ORDER, "--until-status", "Shipped"], ["sync"], ["rebuild"],
    ["replay", "--out", "replayed"], ["backup", "copy.db"],
    ["send-message", ORDER, "--purpose", "order-information", "--language", "sv",
     "--body", "hej", "--check-only"],
]


def cli(*args: str, env: dict | None = None, prefix: list[str] | None = None,
        cwd: str | None = None) -> subprocess.CompletedProcess:
    """The real command line in a child process (inherits PYTHONPATH)."""
    return subprocess.run(
        [*(prefix or []), sys.executable, "-c", "from order_ledger.cli import main; main()",
         *args], capture_output=True, text=True, timeout=120, cwd=cwd,
        errors="replace",  # reports are in the marketplace's encoding (windows-1252)
        env={**os.environ, **(env or {})})


def pg_schema_exists(schema: str) -> bool:
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as conn:
        return conn.execute("SELECT 1 FROM information_schema.schemata WHERE schema_name = %s",
                            (schema,)).fetchone() is not None


# --- 2. reads never create a ledger ----------------------------------------------------------


@pytest.mark.parametrize("args", READS, ids=lambda a: " ".join(a[:2]))
def test_a_read_of_a_missing_sqlite_ledger_creates_nothing(args, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ORDER_LEDGER_VIEWS", raising=False)
    r = CliRunner().invoke(main, [*args, "--db", str(tmp_path / "typo2.db")])
    assert r.exit_code == 2, r.output
    assert f"no ledger at {tmp_path / 'typo2.db'}" in r.output
    assert "Traceback" not in r.output
    assert os.listdir(tmp_path) == []  # no file, -wal, -shm, views, lock or output


@pytest.mark.parametrize("args", [["orders"], ["show", ORDER], ["history", ORDER], ["check"],
                                  ["audit"], ["export"], ["report", "orders"]],
                         ids=lambda a: a[0])
def test_a_read_of_a_missing_postgres_ledger_creates_no_schema(args, pg_url, tmp_path,
                                                               monkeypatch):
    monkeypatch.chdir(tmp_path)  # where a PostgreSQL ledger's views would go
    schema = pg_url.rsplit("schema=", 1)[1]
    r = CliRunner().invoke(main, [*args, "--db", pg_url])
    assert r.exit_code == 2, r.output
    assert f"no ledger at {pg_url}" in r.output
    assert not pg_schema_exists(schema)
    assert os.listdir(tmp_path) == []


def test_writes_still_create_the_ledger(db_url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(main, ["set-inventory", "MUG", "3", "--now", at(0), "--db", db_url])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["inventory", "--db", db_url, "--json"])
    assert r.exit_code == 0 and '"MUG"' in r.output


def test_the_library_opens_for_reading_without_creating(db_url):
    with pytest.raises(LedgerNotFound, match="no ledger at"):
        Ledger(db_url, mode="read")
    if "://" not in db_url:
        assert not os.path.exists(db_url)
    with Ledger(db_url) as led:  # a writer creates it
        led.execute(cmd("set-inventory", at(0), sku="MUG", quantity=2))
    with Ledger(db_url, mode="read") as led:
        assert led.inventory("MUG").available == 2
        head = led.head()
        with pytest.raises(LedgerReadOnly, match="opened for reading"):
            led.execute(cmd("set-inventory", at(1), sku="MUG", quantity=5))
    with Ledger(db_url, mode="read") as led:
        assert led.head() == head


def test_a_file_that_holds_no_ledger_is_not_a_ledger(tmp_path):
    empty = tmp_path / "empty.db"
    empty.touch()
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE t (x)")
    text = tmp_path / "notes.txt"
    text.write_text("hello, not a database\n" * 100)
    for path, why in ((empty, ""), (other, "holds no order ledger"),
                      (text, "not a SQLite database")):
        before = sorted(os.listdir(tmp_path))
        r = CliRunner().invoke(main, ["orders", "--db", str(path)])
        assert r.exit_code == 2 and f"no ledger at {path}" in r.output and why in r.output
        assert sorted(os.listdir(tmp_path)) == before


# --- 3. PostgreSQL errors fast, with the server's reason -------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg(user: str = "postgres", port: int = 5432, dbname: str = "test") -> str:
    from urllib.parse import urlparse

    u = urlparse(PG_URL)
    return f"postgresql://{user}@{u.hostname}:{port}/{dbname}?schema=s_{uuid.uuid4().hex[:8]}"


@pytest.mark.parametrize("case", ["refused", "unknown-database", "unknown-role"])
@pytest.mark.parametrize("command", [["orders"], ["tick", "--now", "2026-03-01T10:00:00Z"]],
                         ids=["read", "write"])
def test_postgres_connection_errors_are_fast_and_say_why(case, command, tmp_path):
    from conftest import pg_available

    if case != "refused" and not pg_available():
        pytest.skip("PostgreSQL is not reachable")
    name = "nope_" + uuid.uuid4().hex[:8]
    url, reason = {
        "refused": (_pg(port=_free_port()), "Connection refused"),
        "unknown-database": (_pg(dbname=name), f'database "{name}" does not exist'),
        "unknown-role": (_pg(user=name), f'role "{name}" does not exist'),
    }[case]
    started = time.monotonic()
    r = cli(*command, "--db", url, cwd=str(tmp_path))
    took = time.monotonic() - started
    assert r.returncode == 2, r.stderr
    assert reason in r.stderr and "cannot connect to PostgreSQL" in r.stderr
    assert "Traceback" not in r.stderr and "couldn't get a connection" not in r.stderr
    assert took < 5, f"took {took:.1f} s"
    assert os.listdir(tmp_path) == []


def test_a_password_in_the_url_is_not_printed(tmp_path):
    url = f"postgresql://someone:s3cret-pw@127.0.0.1:{_free_port()}/test?schema=x"
    r = cli("orders", "--db", url, cwd=str(tmp_path))
    assert r.returncode == 2 and "s3cret-pw" not in r.stderr + r.stdout


# --- 4. read-only storage ----------------------------------------------------------------------


def _unprivileged() -> list[str]:
    """A prefix that makes the child subject to file permissions.

    Root ignores chmod, so as root the child keeps uid 0 (it can still run this
    Python) but loses the capabilities that override permissions.
    """
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: chmod cannot make storage read-only")
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search,-fowner"]


@pytest.fixture
def ro_ledger(walkthrough_db, tmp_path):
    """A copy of the walkthrough ledger in directory ``ro/``; made read-only by the test.

    Copied with SQLite's backup API into one file: the shared ledger may have a
    ``-wal`` beside it (readers of a WAL-mode file in a writable directory leave
    one), which a plain file copy would miss."""
    d = tmp_path / "ro"
    d.mkdir()
    db = d / "ledger.db"
    src = sqlite3.connect(f"file:{walkthrough_db}?mode=ro", uri=True)
    dst = sqlite3.connect(db)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()
    assert not os.path.exists(str(db) + "-wal")
    yield d, db
    os.chmod(d, 0o755)
    os.chmod(db, 0o644)


READ_ONLY_READS = [
    (["orders", "--json"], ORDER), (["show", ORDER], f"Order {ORDER}: Pending"),
    (["history", ORDER], f"History of order {ORDER}"), (["explain", ORDER], ORDER),
    (["check"], "ledger OK: 247 events"), (["audit", "--order", ORDER], "PaymentVerified"),
    (["report", "orders"], "203-0000042-0332598"), (["inventory"], "MUGG-BLA"),
    (["orders", "--as-of", "2026-03-10T00:00:00Z"], "203-0000001-0007919"),
    (["diff"], "identical"),
    (["bisect", "--order", ORDER, "--until-status", "Pending"], "after (#246): Pending"),
]


@pytest.mark.parametrize("what", ["directory and file", "directory", "file"])
def test_readers_work_on_read_only_storage(ro_ledger, what):
    d, db = ro_ledger
    if what != "directory":
        os.chmod(db, 0o444)
    if what != "file":
        os.chmod(d, 0o555)
    before = sorted(os.listdir(d))
    ro = _unprivileged()
    for args, expected in READ_ONLY_READS:
        r = cli(*args, "--db", str(db), prefix=ro)
        assert r.returncode == 0, (args, r.stderr)
        assert expected in r.stdout, (args, r.stdout[-500:])
    out = d.parent / "bundle.jsonl"
    r = cli("export", "--db", str(db), "--out", str(out), prefix=ro)
    assert r.returncode == 0 and "exported 247 events" in r.stderr
    copy = d.parent / "copy.db"
    r = cli("backup", str(copy), "--db", str(db), prefix=ro)
    assert r.returncode == 0 and "backed up 247 events" in r.stdout, r.stderr
    r = cli("replay", "--out", str(d.parent / "replayed"), "--db", str(db), prefix=ro)
    assert r.returncode == 0 and (d.parent / "replayed").is_dir(), r.stderr
    if what != "file":
        assert sorted(os.listdir(d)) == before  # nothing created in a read-only directory
        assert "views computed in memory" in cli("orders", "--db", str(db), prefix=ro).stderr


def test_views_go_to_a_writable_views_path(ro_ledger):
    d, db = ro_ledger
    os.chmod(db, 0o444)
    os.chmod(d, 0o555)
    views = d.parent / "audit.views.db"
    r = cli("orders", "--db", str(db), "--views", str(views), prefix=_unprivileged())
    assert r.returncode == 0 and ORDER in r.stdout
    assert views.exists() and "in memory" not in r.stderr
    r = cli("orders", "--db", str(db), "--views", str(d / "x.views.db"), prefix=_unprivileged())
    assert r.returncode == 2 and "x.views.db" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("what", ["directory and file", "directory", "file"])
def test_a_write_to_a_read_only_ledger_says_so(ro_ledger, tmp_path, what):
    d, db = ro_ledger
    if what != "directory":
        os.chmod(db, 0o444)
    if what != "file":
        os.chmod(d, 0o555)
    before = db.read_bytes()
    ro = _unprivileged()
    line = tmp_path / "one.jsonl"
    line.write_text(json.dumps(cmd("set-inventory", "2026-04-21T10:00:00+02:00",
                                   sku="MUGG-BLA", quantity=9)) + "\n")
    for args in (["apply", str(line)], ["tick", "--now", "2026-04-22T10:00:00+02:00"],
                 ["set-inventory", "MUGG-BLA", "1", "--now", "2026-04-22T10:00:00+02:00"]):
        r = cli(*args, "--db", str(db), prefix=ro)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert f"the ledger at {db} is read-only" in r.stderr
        assert "Traceback" not in r.stderr
    assert db.read_bytes() == before


def test_a_new_ledger_in_a_read_only_directory_is_refused(tmp_path):
    d = tmp_path / "ro"
    d.mkdir()
    os.chmod(d, 0o555)
    try:
        r = cli("set-inventory", "MUG", "1", "--now", at(0), "--db", str(d / "new.db"),
                prefix=_unprivileged())
        assert r.returncode == 2 and "is read-only" in r.stderr and "not writable" in r.stderr
        assert os.listdir(d) == []
    finally:
        os.chmod(d, 0o755)


# --- 10. encryption messages ---------------------------------------------------------------------


def _key() -> str:
    return CliRunner().invoke(main, ["keygen"]).output.strip()


def _fill(db: str) -> None:
    with Ledger(db) as led:
        for n in range(3):
            led.execute(cmd("set-inventory", at(n), sku=f"SKU-{n}", quantity=n + 1))


@pytest.mark.parametrize("case", ["key on a plain ledger", "no key on an encrypted ledger",
                                  "another key"])
def test_a_key_that_does_not_fit_is_named_in_one_line(case, db_url, monkeypatch):
    monkeypatch.delenv("ORDER_LEDGER_CIPHER_KEY", raising=False)
    if case != "key on a plain ledger":
        monkeypatch.setenv("ORDER_LEDGER_CIPHER_KEY", _key())
    _fill(db_url)
    if case == "no key on an encrypted ledger":
        monkeypatch.delenv("ORDER_LEDGER_CIPHER_KEY")
    else:
        monkeypatch.setenv("ORDER_LEDGER_CIPHER_KEY", _key())
    expected = {"key on a plain ledger": CipherKeyMismatch.NOT_ENCRYPTED,
                "no key on an encrypted ledger": CipherKeyMismatch.ENCRYPTED,
                "another key": CipherKeyMismatch.OTHER_KEY}[case]
    runner = CliRunner()
    for args in (["inventory", "--views", ":memory:"], ["export"]):
        r = runner.invoke(main, [*args, "--db", db_url])
        assert r.exit_code == 2 and r.output.strip().splitlines()[-1] == f"Error: {expected}", \
            r.output
    # a writer is refused before writing anything: on the command line at once, exit 2
    r = runner.invoke(main, ["set-inventory", "NEW", "1", "--now", at(10), "--db", db_url])
    assert r.exit_code == 2 and r.output.strip().splitlines()[-1] == f"Error: {expected}", \
        r.output
    with Ledger(db_url) as led:
        head = led.head()
        with pytest.raises(CipherKeyMismatch, match=expected.split(":")[0]):
            led.execute(cmd("set-inventory", at(10), sku="NEW", quantity=1))
        assert led.head() == head
        report = check_ledger(led)
    assert [(p.code, p.message) for p in report.problems] == [("cipher-key", expected)]
    r = runner.invoke(main, ["check", "--db", db_url])
    assert r.exit_code == 1
    problem_lines = [ln for ln in r.output.splitlines() if ln.startswith("[")]
    assert problem_lines == [f"[cipher-key] position 1 (sku:SKU-0 v1): {expected}"]
    assert "ledger has 1 problem(s) (cipher-key 1)" in r.output
    assert "3 events" in r.output


def test_the_right_key_still_reads(db_url, monkeypatch):
    monkeypatch.setenv("ORDER_LEDGER_CIPHER_KEY", _key())
    _fill(db_url)
    r = CliRunner().invoke(main, ["check", "--db", db_url])
    assert r.exit_code == 0 and "ledger OK: 3 events" in r.output
    assert isinstance(CipherKeyMismatch(CipherKeyMismatch.ENCRYPTED), StoreError)


def test_the_views_module_never_creates_a_ledger(tmp_path):
    r = subprocess.run([sys.executable, "-m", "projections", "sync", "--db",
                        str(tmp_path / "typo.db")], capture_output=True, text=True,
                       timeout=60, cwd=str(tmp_path))
    assert r.returncode == 2 and "no ledger at" in r.stderr and "Traceback" not in r.stderr
    assert os.listdir(tmp_path) == []
