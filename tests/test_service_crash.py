"""SIGKILL the server while clients post: every acknowledged command is in the
ledger, and nothing is there twice (clients retry with the same command ids)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import datetime, timezone

import httpx

from builders import oid, place
from ledger.application import Ledger
from service_harness import Server

CLIENTS = 8
PER_CLIENT = 30
KILLS = 3


def run_crash(db: str, tmp_path) -> None:
    current = {"server": Server(db, log=tmp_path / "serve.log").start()}
    tokens = current["server"].tokens
    acked: dict[str, str] = {}  # command id -> status when acknowledged
    lock = threading.Lock()
    failures: list[str] = []

    def client(k: int) -> None:
        for j in range(PER_CLIENT):
            n = 10_000 + k * 1000 + j
            cid = f"crash-{n}"
            body = [place(oid(n), datetime.now(timezone.utc).isoformat(), command_id=cid)]
            for _ in range(600):  # retry until acknowledged (bounded: ~60 s)
                url = current["server"].url
                try:
                    r = httpx.post(url + "/api/commands", json=body, timeout=10,
                                   headers={"Authorization": f"Bearer {tokens['operator']}"})
                except httpx.HTTPError:
                    time.sleep(0.1)
                    continue
                if r.status_code == 200:
                    with lock:
                        acked[cid] = r.json()[0]["status"]
                    break
                if r.status_code == 503:  # busy or restarting: try again
                    time.sleep(0.1)
                    continue
                failures.append(f"{r.status_code} {r.text[:200]}")
                break
            else:
                failures.append(f"{cid} never acknowledged")

    threads = [threading.Thread(target=client, args=(k,)) for k in range(CLIENTS)]
    for t in threads:
        t.start()
    try:
        for kill in range(KILLS):
            target = (kill + 1) * CLIENTS * PER_CLIENT // (KILLS + 2)
            deadline = time.monotonic() + 60
            while len(acked) < target and time.monotonic() < deadline:
                time.sleep(0.01)
            current["server"].kill()  # SIGKILL, mid-flight
            current["server"] = Server(db, tokens=tokens, log=tmp_path / "serve.log").start()
        for t in threads:
            t.join(timeout=120)
    finally:
        current["server"].stop()
    assert not failures, failures[:5]
    assert len(acked) == CLIENTS * PER_CLIENT
    with Ledger(db, mode="read") as led:
        placed = Counter(p.order_id for _, _, p in led.iter_events()
                         if type(p).__name__ == "OrderPlaced")
        known = led.recorder.known_commands(acked)
    assert set(acked) == known  # every acknowledged command is in the ledger
    assert len(placed) == CLIENTS * PER_CLIENT
    assert set(placed.values()) == {1}  # and nothing twice
    # some retries met a command the killed server had committed but not answered
    assert set(acked.values()) <= {"applied", "duplicate"}


def test_sigkill_while_posting_sqlite(tmp_path):
    run_crash(str(tmp_path / "ledger.db"), tmp_path)


def test_sigkill_while_posting_postgres(pg_url, tmp_path):
    run_crash(pg_url, tmp_path)
