"""``GET /api/events`` (Server-Sent Events) through a real server: delivery as events
are recorded, resume with after= and Last-Event-ID, the end-of-stream for a client
too far behind, roles and redaction."""

from __future__ import annotations

import json
import re
import threading
import time
import uuid

import pytest

from builders import walkthrough_lines
from ledger.application import Ledger
from service_harness import Server


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(request, tmp_path_factory):
    if request.param == "sqlite":
        db = str(tmp_path_factory.mktemp("sse") / "ledger.db")
        schema = None
    else:
        from conftest import PG_URL, pg_available

        if not pg_available():
            pytest.skip("PostgreSQL is not reachable")
        schema = "sse_" + uuid.uuid4().hex[:10]
        db = f"{PG_URL}?schema={schema}"
    with Ledger(db, advance_clock=True) as led:
        list(led.apply_lines(walkthrough_lines()))
    srv = Server(db, extra=("--tick-interval", "0", "--sse-max-lag", "100")).start()
    yield srv
    srv.stop()
    if schema:
        from conftest import _drop_schema

        _drop_schema(schema)


def read_events(resp, n: int, timeout: float = 20.0) -> list[dict]:
    """The next ``n`` SSE messages (comments skipped): {"id", "event", "data"}.
    ``resp``: a streamed response, or the iterator of its lines."""
    out: list[dict] = []
    cur: dict = {}
    deadline = time.monotonic() + timeout
    lines = resp.iter_lines() if hasattr(resp, "iter_lines") else resp
    for line in lines:
        if time.monotonic() > deadline:
            break
        if line == "":
            if cur:
                out.append(cur)
                cur = {}
                if len(out) >= n:
                    break
            continue
        if line.startswith(":"):
            continue
        key, _, value = line.partition(": ")
        if key == "data":
            cur["data"] = json.loads(value)
        else:
            cur[key] = value
    return out


def head(server) -> int:
    with server.client(None) as c:
        return c.get("/health").json()["head"]


def test_events_in_order_from_after(server):
    h = head(server)
    with server.client("operator") as c:
        with c.stream("GET", "/api/events", params={"after": h - 20, "limit": 5}) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            got = read_events(r, 6)
    with Ledger(server.db, mode="read") as led:
        expected = led.read_events(h - 20, 5)
    assert [int(e["id"]) for e in got[:5]] == [p for p, _, _ in expected]
    assert [e["event"] for e in got[:5]] == [type(p).__name__ for _, _, p in expected]
    assert [e["data"]["aggregate"] for e in got[:5]] == [a for _, a, _ in expected]
    assert got[5]["event"] == "end" and got[5]["data"]["resume_after"] == int(got[4]["id"])


def test_live_delivery_and_resume_with_last_event_id(server):
    start = head(server)
    sku = "SSE-" + uuid.uuid4().hex[:6].upper()

    def post() -> None:
        time.sleep(0.5)
        with server.client("operator") as c:
            for q in (1, 2, 3):
                assert c.post("/api/commands", json=[{"type": "set-inventory", "sku": sku,
                                                      "quantity": q}]).status_code == 200

    t = threading.Thread(target=post)
    t.start()
    with server.client("auditor") as c:
        with c.stream("GET", "/api/events", params={"after": start}) as r:
            first = read_events(r, 2)
        t.join()
        assert [e["data"]["fields"] for e in first] == [{"sku": sku, "quantity": 1},
                                                        {"sku": sku, "quantity": 2}]
        # the connection dropped after the second event: resume from its id
        last = first[-1]["id"]
        with c.stream("GET", "/api/events", headers={"Last-Event-ID": last},
                      params={"limit": 1}) as r:
            (third, end) = read_events(r, 2)
    assert int(third["id"]) == int(last) + 1
    assert third["data"]["fields"] == {"sku": sku, "quantity": 3}
    assert end["event"] == "end"


def test_slow_client_gets_overflow_not_unbounded_memory(server):
    """The server was started with --sse-max-lag 100: a client 247 events behind is
    told so and the stream ends, with where to resume."""
    with server.client("operator") as c:
        with c.stream("GET", "/api/events", params={"after": 0}) as r:
            lines = r.iter_lines()
            (msg,) = read_events(lines, 1)
            rest = list(lines)  # the server ended the stream
    assert msg["event"] == "overflow"
    assert msg["data"]["resume_after"] == 0 and msg["data"]["head"] >= 247
    assert "Last-Event-ID" in msg["data"]["hint"]
    assert all(not line.startswith("data") for line in rest)


def test_events_redacted_for_auditor_and_closed_to_viewer(server):
    from builders import oid, place

    h = head(server)
    with server.client("operator") as c:
        n = 700_000 + int(uuid.uuid4().int % 90_000)
        assert c.post("/api/commands", json=[place(oid(n), "2026-04-21T08:00:00+02:00")]
                      ).status_code == 200
    with server.client("auditor") as c:
        with c.stream("GET", "/api/events", params={"after": h, "limit": 1}) as r:
            (placed, _) = read_events(r, 2)
    assert placed["event"] == "OrderPlaced"
    assert placed["data"]["fields"]["buyer"]["name"] == "[redacted]"
    assert placed["data"]["fields"]["ship_to"]["city"] == "[redacted]"
    with server.client("operator") as c:
        with c.stream("GET", "/api/events", params={"after": h, "limit": 1}) as r:
            (op, _) = read_events(r, 2)
    assert op["data"]["fields"]["buyer"]["name"] == "Anna Andersson"
    assert "Anna Andersson" not in json.dumps(placed)
    with server.client("viewer") as c:
        r = c.get("/api/events", params={"after": 4, "limit": 1})
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
        bad = c.get("/api/events", headers={"Last-Event-ID": "x"})
        assert bad.status_code in (400, 403)
    with server.client("auditor") as c:
        bad = c.get("/api/events", headers={"Last-Event-ID": "yesterday"})
        assert bad.status_code == 400 and bad.json()["error"]["field"] == "Last-Event-ID"


def test_the_events_of_one_read_go_out_as_one_chunk(server):
    """A stream sends the events it read from the store in one write: the HTTP chunk
    after the greeting holds all of them, not one event per chunk."""
    import socket

    start = head(server)
    sku = "SSE-" + uuid.uuid4().hex[:6].upper()
    with server.client("operator") as c:
        r = c.post("/api/commands", json=[{"type": "set-inventory", "sku": sku, "quantity": q}
                                          for q in range(1, 6)])
        assert r.status_code == 200
    host, port = server.url.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=20) as sock:
        sock.sendall(f"GET /api/events?after={start}&limit=5 HTTP/1.1\r\nHost: x\r\n"
                     f"Authorization: Bearer {server.tokens['operator']}\r\n\r\n".encode())
        data = b""
        while b"event: end" not in data:
            more = sock.recv(65536)
            if not more:
                break
            data += more
    body = data.split(b"\r\n\r\n", 1)[1]
    chunks = []
    while body:  # chunked transfer encoding: size line, data, CRLF
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        chunks.append(rest[:size])
        body = rest[size + 2:]
    assert chunks[0].startswith(b": order-ledger events after")
    events = chunks[1]
    assert events.count(b"\r\nid: ") + events.startswith(b"id: ") == 6  # 5 and the end
    assert [int(x) for x in re.findall(rb"^id: (\d+)", events, re.M)][:5] == list(
        range(start + 1, start + 6))

