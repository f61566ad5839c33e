"""Several service processes on one ledger: the ticker ticks once per deployment
(leader by lock), two ``serve`` processes share one PostgreSQL ledger, and
concurrent requests share group commits."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone

import httpx

from builders import oid, place
from service_harness import Server, make_token


def now_iso(minutes: float = 0) -> str:
    return (datetime.now(timezone.utc) + timedelta(minutes=minutes)).isoformat()


def health_of_each(server: Server, workers: int) -> dict[int, dict]:
    """/health of every worker process reached (new connections land on any worker)."""
    seen: dict[int, dict] = {}
    deadline = time.monotonic() + 20
    while len(seen) < workers and time.monotonic() < deadline:
        with httpx.Client(base_url=server.url, timeout=5) as c:
            h = c.get("/health", headers={"Connection": "close"}).json()
        seen[h["pid"]] = h
    return seen


def wait_for(predicate, timeout: float = 20.0, step: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return predicate()


def test_ticker_fires_deadlines_at_clock_minus_lateness(db_url):
    """An order placed and verified 2 h ago: its hold ended 90 minutes ago. Nobody
    sends a tick; the ticker of one of two services does (at now - 5 min), and when
    that service dies the other takes over. Both backends."""
    db = db_url
    first = Server(db, extra=("--tick-interval", "0.3s", "--allowed-lateness", "5m")).start()
    second = Server(db, tokens=first.tokens,
                    extra=("--tick-interval", "0.3s", "--allowed-lateness", "5m")).start()
    try:
        with first.client("operator") as c:
            r = c.post("/api/commands", json=[place(oid(1), now_iso(-120), command_id="old-1"),
                                              {"type": "verify-payment", "order_id": oid(1),
                                               "outcome": "verified", "at": now_iso(-119),
                                               "command_id": "old-2"}])
            assert r.status_code == 200, r.text
            status = wait_for(lambda: c.get(f"/api/orders/{oid(1)}").json()["status"]
                              != "Pending" and c.get(f"/api/orders/{oid(1)}").json()["status"])
        assert status == "Unshipped"
        leaders = [h["ticker_leader"] for s in (first, second)
                   for h in health_of_each(s, 1).values()]
        assert sorted(leaders) == [False, True]  # one ticker for the deployment
        from ledger.application import Ledger

        with Ledger(db, mode="read") as led:
            clock = led.now()
            ticks = [p for _, _, p in led.iter_events() if type(p).__name__ == "HoldExpired"]
        lag = datetime.now(timezone.utc) - clock
        assert timedelta(minutes=5) <= lag < timedelta(minutes=5, seconds=30)
        assert len(ticks) == 1
        # the leader goes away: the other takes over at its next try
        was_leader = first if health_of_each(first, 1).popitem()[1]["ticker_leader"] else second
        other = second if was_leader is first else first
        was_leader.kill()
        assert wait_for(lambda: health_of_each(other, 1).popitem()[1]["ticker_leader"])
    finally:
        first.stop()
        second.stop()


def test_concurrent_posts_share_commits(tmp_path):
    db = str(tmp_path / "ledger.db")
    with Server(db) as server:
        errors: list[str] = []

        def client(k: int) -> None:
            with server.client("operator") as c:
                for j in range(15):
                    n = 1000 + k * 100 + j
                    r = c.post("/api/commands", json=[place(oid(n), now_iso(),
                                                            command_id=f"g-{n}")])
                    if r.status_code != 200:
                        errors.append(r.text)

        threads = [threading.Thread(target=client, args=(k,)) for k in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        (h,) = health_of_each(server, 1).values()
        assert h["requests"] == 16 * 15
        assert h["commits"] < h["requests"]  # requests shared durable transactions
        with server.client("viewer") as c:
            assert len(c.get("/api/orders", params={"limit": 1000}).json()["items"]) == 240


def test_two_services_on_one_postgresql_ledger(pg_url):
    token = {}
    first = Server(pg_url, workers=2).start()
    token = first.tokens
    second = Server(pg_url, tokens=token).start()
    try:
        errors: list[str] = []

        def client(server: Server, k: int) -> None:
            with server.client("operator") as c:
                for j in range(10):
                    n = 5000 + k * 100 + j
                    r = c.post("/api/commands", json=[place(oid(n), now_iso(),
                                                            command_id=f"pg-{n}")])
                    if r.status_code != 200:
                        errors.append(r.text)
                    # the same command through the other service: a duplicate, never twice
                    other = second if server is first else first
                    with other.client("operator") as o:
                        again = o.post("/api/commands", json=[place(oid(n), now_iso(),
                                                                    command_id=f"pg-{n}")])
                        if again.status_code != 200 or again.json()[0]["status"] != "duplicate":
                            errors.append(again.text)

        threads = [threading.Thread(target=client, args=(s, k))
                   for k, s in enumerate([first, second] * 4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors[:3]
        for server in (first, second):
            with server.client("viewer") as c:
                rows = c.get("/api/orders", params={"limit": 1000}).json()["items"]
                assert len(rows) == 80
        with first.client("auditor") as c:
            placed = c.get("/api/audit", params={"type": "OrderPlaced", "limit": 1000}).json()
        ids = [r["order_id"] for r in placed["items"]]
        assert len(ids) == len(set(ids)) == 80
        # a token made while both run works on both
        viewer = make_token(pg_url, "viewer", "late")
        for server in (first, second):
            r = httpx.get(server.url + "/api/inventory",
                          headers={"Authorization": f"Bearer {viewer}"})
            assert r.status_code == 200
    finally:
        first.stop()
        second.stop()


def test_workers_share_the_leaders_group_commit(tmp_path):
    """With --workers 2 on SQLite one process leads the writes: the other forwards its
    requests' lines, so all of them share the leader's commits. When the leader is
    killed, requests fail with 503 (safe to retry) until another process leads."""
    import os
    import signal

    db = str(tmp_path / "ledger.db")
    with Server(db, workers=2) as server:
        errors: list[str] = []

        def client(k: int) -> None:
            with server.client("operator") as c:
                for j in range(10):
                    n = 3000 + k * 100 + j
                    r = c.post("/api/commands", json=[place(oid(n), now_iso(),
                                                            command_id=f"w-{n}")],
                               headers={"Connection": "close"})
                    if r.status_code != 200:
                        errors.append(r.text)

        threads = [threading.Thread(target=client, args=(k,)) for k in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        procs = health_of_each(server, 2)
        assert len(procs) == 2
        # the leader counts every request, forwarded ones too; the other its own, and
        # the leader's commits they shared
        leaders = [h for h in procs.values() if h["requests"] == 160]
        assert len(leaders) == 1
        assert leaders[0]["commits"] < 160
        (other,) = [h for h in procs.values() if h is not leaders[0]]
        assert 0 < other["requests"] < 160
        assert 0 < other["commits"] <= leaders[0]["commits"]
        os.kill(leaders[0]["pid"], signal.SIGKILL)
        statuses = []
        with server.client("operator") as c:
            for j in range(100):
                r = c.post("/api/commands", json=[place(oid(9000), now_iso(),
                                                        command_id="after-kill")],
                           headers={"Connection": "close"})
                statuses.append(r.status_code)
                if r.status_code == 200:
                    break
                time.sleep(0.1)
        assert statuses[-1] == 200 and set(statuses) <= {200, 503}
        with server.client("viewer") as c:
            assert len(c.get("/api/orders", params={"limit": 1000}).json()["items"]) == 161


def test_a_lost_database_is_503_not_500(pg_url):
    """The ledger's schema disappears under a running service: every request says the
    store failed (503, retry), none is a 500."""
    import psycopg

    from conftest import PG_URL

    with Server(pg_url) as server:
        with server.client("operator") as c:
            assert c.get("/api/orders").status_code == 200
            schema = pg_url.split("schema=")[1]
            with psycopg.connect(PG_URL, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
            for path in ("/health", "/api/orders/203-0000001-0007919", "/api/audit",
                         "/api/orders/203-0000001-0007919/history"):
                r = c.get(path)
                assert r.status_code == 503, (path, r.text)
                assert r.json()["error"]["code"] in ("store-error", "views-error", "ledger-busy")
            r = c.post("/api/commands", json=[place(oid(1), now_iso())])
            assert r.status_code == 503, r.text


def test_stopped_while_it_restarts_a_worker_it_starts_nothing_more(tmp_path):
    """SIGTERM to ``serve --workers 2`` while it is about to start a worker again (one
    died a moment ago): every worker stops and ``serve`` ends, not a worker started
    after the signal that nobody told to stop (it was waited for, then killed)."""
    import os
    import signal

    server = Server(str(tmp_path / "ledger.db"), workers=2).start()
    try:
        procs = health_of_each(server, 2)
        assert len(procs) == 2
        os.kill(next(iter(procs)), signal.SIGKILL)
        time.sleep(0.3)  # the supervisor sees the death within 0.2 s, then pauses 0.5 s
        os.kill(server.proc.pid, signal.SIGTERM)
        server.proc.wait(timeout=10)  # a worker it failed to tell would hold it 20 s
        assert "starting another" in server.output()
    finally:
        server.kill()
