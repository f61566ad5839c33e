"""The HTTP service through a real server (uvicorn subprocess) on both backends:
auth (401/403), JSON errors, health, commands, orders."""

from __future__ import annotations

import json
import uuid

import pytest

from datetime import datetime, timedelta, timezone

from builders import at, oid, place, walkthrough_lines

#: after the walkthrough's last event (its clock ends 2026-04-20 23:52 +02:00)
LATER = datetime(2026, 4, 21, 6, 0, tzinfo=timezone(timedelta(hours=2)))
from ledger.application import Ledger
from service_harness import Server, cli


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(request, tmp_path_factory):
    """A server on a ledger holding the walkthrough (200 commands), per backend."""
    if request.param == "sqlite":
        db = str(tmp_path_factory.mktemp("svc") / "ledger.db")
        drop = None
    else:
        from conftest import PG_URL, _drop_schema, pg_available

        if not pg_available():
            pytest.skip("PostgreSQL is not reachable")
        schema = "svc_" + uuid.uuid4().hex[:10]
        db = f"{PG_URL}?schema={schema}"
        drop = schema
    with Ledger(db, advance_clock=True) as led:
        list(led.apply_lines(walkthrough_lines()))
    srv = Server(db).start()
    yield srv
    srv.stop()
    if drop:
        _drop_schema(drop)


def first_order(server) -> str:
    with server.client("operator") as c:
        return c.get("/api/orders", params={"limit": 1}).json()["items"][0]["order_id"]


def assert_error(resp, status: int, code: str) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "field", "hint"}
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]
    return body["error"]


# --- health, auth and errors -----------------------------------------------------------


def test_health_needs_no_token(server):
    with server.client(None) as c:
        r = c.get("/health")
    assert r.status_code == 200
    assert r.json()["status"] == "ok"
    assert r.json()["head"] >= 247


@pytest.mark.parametrize("path", ["/api/orders", "/api/inventory", "/api/audit",
                                  "/api/events"])
def test_no_token_is_401(server, path):
    with server.client(None) as c:
        r = c.get(path)
    err = assert_error(r, 401, "unauthorized")
    assert "token" in err["hint"]
    assert r.headers["www-authenticate"].startswith("Bearer")


def test_unknown_or_malformed_token_is_401(server):
    with server.client(None) as c:
        for header in ("Bearer olt_nope", "Bearer", "Basic abc", "bearer" + "x" * 300,
                       "Bearer " + server.tokens["operator"] + "x"):
            assert_error(c.get("/api/orders", headers={"Authorization": header}), 401,
                         "unauthorized")


def test_revoked_token_stops_working(server, tmp_path):
    import time

    token = cli("token", "create", "--role", "viewer", "--name", "short-lived", "--db",
                server.db).stdout.strip()
    with server.client(None) as c:
        auth = {"Authorization": f"Bearer {token}"}
        assert c.get("/api/inventory", headers=auth).status_code == 200
        listed = json.loads(cli("token", "list", "--json", "--db", server.db).stdout)
        mine = [t for t in listed if t["name"] == "short-lived"]
        assert len(mine) == 1 and token not in json.dumps(listed)
        cli("token", "revoke", mine[0]["token_id"], "--db", server.db)
        time.sleep(1.2)  # the service remembers a verified token for a second
        assert_error(c.get("/api/inventory", headers=auth), 401, "unauthorized")


@pytest.mark.parametrize("role", ["viewer", "auditor"])
def test_readers_may_not_write(server, role):
    with server.client(role) as c:
        r = c.post("/api/commands", json=[{"type": "set-inventory", "sku": "NOPE-1",
                                           "quantity": 1, "at": at()}])
    err = assert_error(r, 403, "forbidden")
    assert role in err["message"] and "operator" in err["message"]


def test_viewer_may_not_read_history(server):
    order = first_order(server)
    with server.client("viewer") as c:
        assert_error(c.get(f"/api/orders/{order}/history"), 403, "forbidden")
    with server.client("auditor") as c:
        assert c.get(f"/api/orders/{order}/history").status_code == 200


def test_unknown_path_and_method_are_json(server):
    with server.client("operator") as c:
        assert_error(c.get("/api/nothing-here"), 404, "not-found")
        assert_error(c.delete("/api/orders"), 405, "method-not-allowed")
        assert_error(c.get("/api/orders", params={"limit": "many"}), 400, "bad-parameter")
        assert_error(c.get("/api/orders", params={"limit": 0}), 400, "bad-parameter")
        assert_error(c.get("/api/orders", params={"cursor": "garbage"}), 400, "bad-parameter")
        assert_error(c.get("/api/orders", params={"status": "Lost"}), 400, "bad-parameter")
        assert_error(c.get("/api/orders", params={"as_of": "2026-03-02T10:00:00"}), 400,
                     "bad-parameter")


# --- commands ------------------------------------------------------------------------------


def test_commands_outcomes_are_apply_json(server, tmp_path):
    """The body lists every line's outcome exactly as `apply --json` prints them."""
    n = 900_000 + int(uuid.uuid4().int % 90_000)
    cmds = [place(oid(n), at(base=LATER), command_id=f"api-{n}-1"),
            {"type": "verify-payment", "at": at(5, base=LATER), "order_id": oid(n),
             "outcome": "verified", "command_id": f"api-{n}-2"},
            {"type": "ship", "at": at(6, base=LATER), "order_id": oid(n),
             "carrier_code": "PostNord", "ship_date": "2026-04-21",
             "command_id": f"api-{n}-3"}]  # in the hold: rejected
    with server.client("operator") as c:
        r = c.post("/api/commands", json=cmds)
    assert r.status_code == 422, r.text
    body = r.json()
    path = tmp_path / "cmds.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in cmds))
    out = cli("apply", str(path), "--json", "--db", str(tmp_path / "fresh.db"), check=False)
    expected = [json.loads(line) for line in out.stdout.splitlines()]
    assert body == expected
    assert [list(o) for o in body] == [list(o) for o in expected]  # the same keys, in order
    assert [o["status"] for o in body] == ["applied", "applied", "rejected"]


def test_commands_as_json_lines_keep_line_numbers(server):
    n = 910_000 + int(uuid.uuid4().int % 80_000)
    text = (json.dumps(place(oid(n), at(), command_id=f"nd-{n}")) + "\n\n"
            + '{"type": "bogus"}\n'
            + json.dumps(place(oid(n + 1), at(), command_id=f"nd-{n + 1}")) + "\n")
    with server.client("operator") as c:
        r = c.post("/api/commands", content=text.encode(),
                   headers={"Content-Type": "application/x-ndjson"})
        assert r.status_code == 422
        assert [(o["line"], o["status"]) for o in r.json()] == [
            (1, "applied"), (3, "rejected"), (4, "applied")]
        assert r.json()[1]["error"]["code"] == "unknown-type"
        # the same again: every line a duplicate or the same rejection
        again = c.post("/api/commands", content=text.encode(),
                       headers={"Content-Type": "application/x-ndjson"}).json()
        assert [o["status"] for o in again] == ["duplicate", "rejected", "duplicate"]
        assert c.get(f"/api/orders/{oid(n + 1)}").status_code == 200


def test_all_applied_is_200_and_at_is_optional(server):
    sku = "API-" + uuid.uuid4().hex[:8].upper()
    with server.client("operator") as c:
        r = c.post("/api/commands", json=[{"type": "set-inventory", "sku": sku,
                                           "quantity": 7}])
        assert r.status_code == 200, r.text
        (o,) = r.json()
        assert o["status"] == "applied" and o["events"] == ["InventorySet"]
        assert o["at"]  # stamped by the ledger when it recorded the command
        inv = c.get("/api/inventory", params={"limit": 1000}).json()["items"]
    assert {"sku": sku, "available": 7, "active": True, "reserved": 0} in inv


def test_rejected_command_writes_nothing(server):
    n = 920_000 + int(uuid.uuid4().int % 70_000)
    bad = place(oid(n), at(), currency="KRONOR")
    with server.client("operator") as c:
        head = c.get("/health").json()["head"]
        r = c.post("/api/commands", json=[bad])
        assert r.status_code == 422
        assert r.json()[0]["error"]["field"]
        assert c.get("/health").json()["head"] == head
        assert_error(c.get(f"/api/orders/{oid(n)}"), 404, "unknown-order")


def test_bad_bodies(server):
    with server.client("operator") as c:
        assert_error(c.post("/api/commands", content=b"[{",
                            headers={"Content-Type": "application/json"}), 400,
                     "malformed-json")
        assert_error(c.post("/api/commands", content=b"42",
                            headers={"Content-Type": "application/json"}), 400,
                     "malformed-json")
        assert_error(c.post("/api/commands", content=b"<xml/>",
                            headers={"Content-Type": "application/xml"}), 415,
                     "unsupported-media-type")
        assert_error(c.post("/api/commands", content=b"\xff\xfe{\x00",
                            headers={"Content-Type": "application/x-ndjson"}), 400, "not-text")
        r = c.post("/api/commands", content=b"[]", headers={"Content-Type": "application/json"})
        assert r.status_code == 200 and r.json() == []


# --- orders ---------------------------------------------------------------------------------


def test_order_is_show_json(server):
    order = first_order(server)
    shown = json.loads(cli("show", order, "--json", "--db", server.db).stdout)
    with server.client("operator") as c:
        r = c.get(f"/api/orders/{order}")
    assert r.status_code == 200
    assert r.json() == shown


def test_order_as_of_and_at_position(server):
    order = "203-0000001-0007919"  # the walkthrough's first order
    with server.client("operator") as c:
        now = c.get(f"/api/orders/{order}").json()
        early = c.get(f"/api/orders/{order}",
                      params={"as_of": "2026-03-02T09:20:00+01:00"}).json()
        assert early["status"] == "Pending" and now["status"] != "Pending"
        shown = json.loads(cli("show", order, "--json", "--at-position", "6", "--db",
                               server.db).stdout)
        assert c.get(f"/api/orders/{order}", params={"at_position": 6}).json() == shown
        assert_error(c.get(f"/api/orders/{order}",
                           params={"as_of": "2026-03-01T00:00:00+01:00"}), 404, "unknown-order")
        assert_error(c.get(f"/api/orders/{order}", params={"at_position": 10**9}), 400,
                     "bad-parameter")


def test_orders_redacted_for_viewer_and_auditor(server):
    with server.client("operator") as c:
        full = c.get("/api/orders", params={"limit": 50}).json()["items"]
    assert any(r["buyer_name"] and r["buyer_name"] != "[redacted]" for r in full)
    for role in ("viewer", "auditor"):
        with server.client(role) as c:
            rows = c.get("/api/orders", params={"limit": 50}).json()["items"]
            one = c.get(f"/api/orders/{full[0]['order_id']}").json()
        assert [r["order_id"] for r in rows] == [r["order_id"] for r in full]
        assert {r["buyer_name"] for r in rows if r["buyer_name"]} == {"[redacted]"}
        assert one["buyer_name"] == "[redacted]"
        assert "Lindqvist" not in json.dumps(rows)


def test_orders_pages_with_cursor(server):
    with server.client("viewer") as c:
        everything = c.get("/api/orders", params={"limit": 1000}).json()
        assert everything["next_cursor"] is None
        seen, cursor, pages = [], None, 0
        while True:
            params = {"limit": 7, **({"cursor": cursor} if cursor else {})}
            page = c.get("/api/orders", params=params).json()
            assert len(page["items"]) <= 7
            seen += [r["order_id"] for r in page["items"]]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == [r["order_id"] for r in everything["items"]]
        assert pages == -(-len(seen) // 7)
        unshipped = c.get("/api/orders", params={"status": "Unshipped", "limit": 1000}).json()
        assert unshipped["items"] and {r["status"] for r in unshipped["items"]} == {"Unshipped"}
        by_id = c.get("/api/orders", params={"sort": "order", "desc": "false",
                                             "limit": 1000}).json()["items"]
        assert [r["order_id"] for r in by_id] == sorted(r["order_id"] for r in by_id)


def test_orders_as_of_is_the_cli_as_of(server):
    when = "2026-03-10T12:00:00+01:00"
    cli_rows = json.loads(cli("orders", "--json", "--as-of", when, "--db", server.db).stdout)
    with server.client("operator") as c:
        rows = c.get("/api/orders", params={"as_of": when, "limit": 1000}).json()["items"]
    assert rows == cli_rows


def test_too_large_body_is_413_and_openapi_is_served(server):
    with server.client("operator") as c:
        big = b"[" + b" " * (33 * 1024 * 1024) + b"]"
        r = c.post("/api/commands", content=big, headers={"Content-Type": "application/json"})
        assert_error(r, 413, "too-large")
    with server.client(None) as c:
        doc = c.get("/schema/openapi.json")
        assert doc.status_code == 200
        paths = doc.json()["paths"]
        for p in ("/api/commands", "/api/orders", "/api/orders/{order_id}", "/api/events",
                  "/api/reports/{kind}", "/api/feeds/{name}", "/api/import/sp-api",
                  "/api/audit", "/api/conflicts", "/health"):
            assert p in paths, p
        assert doc.json()["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
        assert c.get("/schema").status_code == 200
