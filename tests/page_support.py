"""Helpers of the page's browser tests (tests/test_page_*.py): a ledger with orders in
every state relative to the wall clock, a real server (``order-ledger serve``) on it,
tokens for each role, Debian's Chromium through Playwright, screenshots kept in
``test-artifacts/page/``.

The browser must start: nothing here skips (a missing Chromium fails the tests;
``.ci/run`` installs it).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import httpx

from builders import item, oid, place

from ledger.application import Ledger

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts" / "page"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]

#: the orders of the page's ledger, by what the tests do with them
ORDERS = {
    "to_ship": oid(101),       # Unshipped: confirmed through the form
    "to_cancel": oid(102),     # Unshipped: canceled through the form
    "to_reject": oid(103),     # Unshipped: a shipment dated before its purchase is rejected
    "pending": oid(104),       # Pending (payment verification extended)
    "canceled": oid(105),      # Canceled by the buyer inside the hold
    "warned": oid(106),        # Unshipped, placed 24 days ago: the day-23 warning is on
    "shipped": oid(107),       # Shipped
    "live": oid(108),          # placed by another client while the page is open
}
BUYERS = {"to_ship": "Astrid Berg", "to_cancel": "Bo Carlsson", "to_reject": "Cecilia Dahl",
          "pending": "David Ek", "canceled": "Eva Falk", "warned": "Filip Grahn",
          "shipped": "Greta Holm", "live": "Hugo Isaksson"}


def _buyer(name: str) -> dict:
    return {"name": name, "email": "buyer@example.se", "phone": "+46701234567",
            "language": "sv-SE"}


def _ship_to(name: str) -> dict:
    return {"name": name, "address_1": "Storgatan 1", "city": "Stockholm",
            "postal_code": "11122", "country": "SE"}


def order_command(key: str, when: datetime, n_item: int = 1) -> dict:
    return place(ORDERS[key], when.isoformat(),
                 [item(f"{n_item:014d}", sku="MUG-BLUE", quantity=2, price="198.00")],
                 buyer=_buyer(BUYERS[key]), ship_to=_ship_to(BUYERS[key]))


def build_ledger(db: str, now: datetime) -> datetime:
    """Orders in every state, their times relative to ``now`` (the wall clock);
    returns the time of the last tick (the ledger's clock)."""
    cmds: list[dict] = [{"type": "set-inventory", "at": (now - timedelta(days=30)).isoformat(),
                         "sku": "MUG-BLUE", "quantity": 40},
                        {"type": "set-inventory", "at": (now - timedelta(days=30)).isoformat(),
                         "sku": "LAMP-OAK", "quantity": 0}]

    def released(key: str, when: datetime) -> None:
        cmds.append(order_command(key, when))
        cmds.append({"type": "verify-payment", "at": (when + timedelta(minutes=5)).isoformat(),
                     "order_id": ORDERS[key], "outcome": "verified"})

    released("warned", now - timedelta(days=24))
    released("shipped", now - timedelta(days=6))
    cmds.append({"type": "ship", "at": (now - timedelta(days=5)).isoformat(),
                 "order_id": ORDERS["shipped"], "carrier_code": "PostNord",
                 "tracking_number": "PN123456789SE",
                 "ship_date": (now - timedelta(days=5)).date().isoformat()})
    released("to_ship", now - timedelta(days=2))
    released("to_cancel", now - timedelta(days=2, hours=1))
    released("to_reject", now - timedelta(days=2, hours=2))
    pending = now - timedelta(hours=5)
    cmds.append(order_command("pending", pending))
    cmds.append({"type": "verify-payment", "at": (pending + timedelta(minutes=5)).isoformat(),
                 "order_id": ORDERS["pending"], "outcome": "extended"})
    canceled = now - timedelta(hours=4)
    cmds.append(order_command("canceled", canceled))
    cmds.append({"type": "cancel", "at": (canceled + timedelta(minutes=10)).isoformat(),
                 "order_id": ORDERS["canceled"], "by": "buyer"})
    clock = now - timedelta(minutes=10)
    cmds.append({"type": "tick", "at": clock.isoformat()})
    cmds.sort(key=lambda c: c["at"])
    with Ledger(db, advance_clock=True) as led:
        outs = list(led.apply_lines([json.dumps(c) for c in cmds]))
    bad = [o.as_dict() for o in outs if not o.ok]
    assert not bad, bad
    return clock


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(*args: str, db: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "order_ledger", *args, "--db", db],
                          capture_output=True, text=True, cwd=ROOT, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def make_token(db: str, role: str, name: str) -> str:
    r = cli("token", "create", "--role", role, "--name", name, "--json", db=db)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["token"]


@contextmanager
def served(db: str, workdir: Path, env: dict[str, str] | None = None,
           workers: int = 1) -> Iterator[str]:
    """``order-ledger serve`` on ``db`` (no ticker: the tests' times stay put), its views
    and log in ``workdir``; its URL."""
    port = free_port()
    log = open(workdir / "serve.log", "w")
    argv = [sys.executable, "-m", "order_ledger", "serve", "--db", db, "--port", str(port),
            "--tick-interval", "0", "--views", str(workdir / "page.views.db"),
            "--workers", str(workers)]
    proc = subprocess.Popen(
        argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                raise AssertionError("the server did not start: "
                                     + Path(log.name).read_text()[-2000:])
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def launch(playwright: Any) -> Any:
    """Debian's Chromium (fails, never skips, when it cannot start)."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def shot(page: Any, name: str) -> Path:
    """A full-page screenshot kept as a test artefact."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def keep_for_docs(path: Path, name: str) -> None:
    """Copy a screenshot into docs/img (the docs show the page)."""
    if os.environ.get("ORDER_LEDGER_DOCS_IMG"):
        dest = ROOT / "docs" / "img"
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest / name)


def sign_in(page: Any, base: str, token: str) -> None:
    page.goto(base + "/")
    page.get_by_label("Token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/orders")


def utc_now() -> datetime:
    return datetime.now(timezone.utc).replace(second=0, microsecond=0)
