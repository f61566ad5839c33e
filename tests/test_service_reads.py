"""Every read endpoint through a real server, on both backends: the same answer as
the matching CLI command, the right roles, buyer data redacted for non-operators,
pages; feeds and the SP-API import."""

from __future__ import annotations

import json
import uuid

import pytest

from builders import walkthrough_lines
from ledger.application import Ledger
from service_harness import ROOT, Server, cli

EXAMPLES = ROOT / "examples"
ORDER = "203-0000001-0007919"  # the walkthrough's first order: placed, verified, shipped
#: personal data of the walkthrough's buyers that must never reach a non-operator
SECRETS = ("Lindqvist", "anna.lindqvist@example.se", "Storgatan 12", "111 22")


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(request, tmp_path_factory):
    if request.param == "sqlite":
        db = str(tmp_path_factory.mktemp("reads") / "ledger.db")
        schema = None
    else:
        from conftest import PG_URL, pg_available

        if not pg_available():
            pytest.skip("PostgreSQL is not reachable")
        schema = "svr_" + uuid.uuid4().hex[:10]
        db = f"{PG_URL}?schema={schema}"
    with Ledger(db, advance_clock=True) as led:
        list(led.apply_lines(walkthrough_lines()))
    srv = Server(db).start()
    yield srv
    srv.stop()
    if schema:
        from conftest import _drop_schema

        _drop_schema(schema)


def cli_json(server, *args: str):
    return json.loads(cli(*args, "--json", "--db", server.db).stdout)


def get(server, role: str, path: str, **params):
    with server.client(role) as c:
        return c.get(path, params=params)


def no_secrets(text: str) -> None:
    for s in SECRETS:
        assert s not in text, s


# --- views ----------------------------------------------------------------------------------


def test_inventory_is_the_cli(server):
    expected = cli_json(server, "inventory")
    for role in ("operator", "auditor", "viewer"):
        r = get(server, role, "/api/inventory")
        assert r.status_code == 200
        assert r.json() == {"items": expected, "next_cursor": None}
    page = get(server, "viewer", "/api/inventory", limit=2, sort="available").json()
    assert len(page["items"]) == 2 and page["next_cursor"]
    rest = get(server, "viewer", "/api/inventory", limit=100, sort="available",
               cursor=page["next_cursor"]).json()
    assert [r["sku"] for r in page["items"] + rest["items"]] == \
        [r["sku"] for r in cli_json(server, "inventory", "--sort", "available")]


def test_metrics_is_the_cli(server):
    assert get(server, "viewer", "/api/metrics").json() == cli_json(server, "metrics")
    at = "2026-04-01T00:00:00+02:00"
    assert get(server, "viewer", "/api/metrics", at=at).json() == \
        cli_json(server, "metrics", "--at", at)
    as_of = "2026-03-20T00:00:00+01:00"
    assert get(server, "viewer", "/api/metrics", as_of=as_of).json() == \
        cli_json(server, "metrics", "--as-of", as_of)


def test_notifications_redacted_and_paged(server):
    expected = cli_json(server, "notifications")
    with server.client("operator") as c:
        got, cursor = [], None
        while True:
            page = c.get("/api/notifications",
                         params={"limit": 25, **({"cursor": cursor} if cursor else {})}).json()
            got += page["items"]
            cursor = page["next_cursor"]
            if not cursor:
                break
    assert got == expected
    viewer = get(server, "viewer", "/api/notifications", limit=1000)
    assert viewer.status_code == 200
    no_secrets(viewer.text)
    confirmations = [n for n in viewer.json()["items"] if n["kind"] == "order-confirmation"]
    assert confirmations and all(n["content"]["buyer_name"] == "[redacted]"
                                 for n in confirmations)
    mine = get(server, "viewer", "/api/notifications", order=ORDER, limit=1000).json()["items"]
    assert mine and {n["order_id"] for n in mine} == {ORDER}


@pytest.mark.parametrize("kind", ["orders", "unshipped"])
def test_reports_are_the_cli_file(server, kind):
    expected = cli("report", kind, "--db", server.db, text=False).stdout
    r = get(server, "operator", f"/api/reports/{kind}")
    assert r.status_code == 200
    # the same bytes, in the marketplace's encoding (the walkthrough's Swedish names in
    # windows-1252), which the response names
    assert r.headers["content-type"] == "text/tab-separated-values; charset=windows-1252"
    assert r.content == expected
    utf8 = get(server, "operator", f"/api/reports/{kind}", encoding="utf-8")
    assert utf8.headers["content-type"].endswith("charset=utf-8")
    assert utf8.content == cli("report", kind, "--encoding", "utf-8", "--db", server.db,
                               text=False).stdout
    assert utf8.content != r.content  # å, ä, ö differ between the two
    viewer = get(server, "viewer", f"/api/reports/{kind}")
    no_secrets(viewer.text)
    lines = viewer.text.splitlines()
    assert len(lines) == len(expected.splitlines())
    header = lines[0].split("\t")
    row = dict(zip(header, lines[1].split("\t")))
    assert row["buyer-name"] == "[redacted]" and row["sku"]


def test_report_all_orders_has_pending_ones(server):
    orders = get(server, "operator", "/api/reports/orders").text.splitlines()
    every = get(server, "operator", "/api/reports/all-orders").text.splitlines()
    assert every[0].split("\t")[:2] == ["amazon-order-id", "merchant-order-id"]
    assert every[0] != orders[0]  # the All Orders layout, not the Orders report's
    assert every == cli("report", "all-orders", "--db", server.db,
                        text=False).stdout.decode("windows-1252").splitlines()
    in_orders = {line.split("\t")[0] for line in orders[1:]}
    in_every = {line.split("\t")[0] for line in every[1:]}
    assert in_orders < in_every  # the Pending orders (still in their hold) too
    pending = {r["order_id"] for r in get(server, "operator", "/api/orders", status="Pending",
                                           limit=1000).json()["items"]}
    assert pending and pending <= in_every
    assert get(server, "operator", "/api/reports/weekly").status_code == 404


def test_report_layout_and_encoding_are_checked(server):
    old = get(server, "operator", "/api/reports/unshipped", layout="old")
    assert old.status_code == 200
    assert old.content == cli("report", "unshipped", "--layout", "old", "--db", server.db,
                              text=False).stdout
    assert len(old.text.splitlines()[0].split("\t")) == 26
    bad = get(server, "operator", "/api/reports/orders", layout="old")
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "layout"
    bad = get(server, "operator", "/api/reports/orders", encoding="ebcdic")
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "encoding"


def test_report_as_of_is_the_cli(server):
    as_of = "2026-03-15T12:00:00+01:00"
    expected = cli("report", "unshipped", "--as-of", as_of, "--db", server.db, text=False).stdout
    assert get(server, "operator", "/api/reports/unshipped", as_of=as_of).content == expected


# --- history, explain, audit ----------------------------------------------------------------


def test_history_is_the_cli_and_paged(server):
    expected = cli_json(server, "history", ORDER)
    full = get(server, "auditor", f"/api/orders/{ORDER}/history", limit=1000)
    assert full.status_code == 200
    no_secrets(full.text)  # the auditor reads history, without buyer data
    op = get(server, "operator", f"/api/orders/{ORDER}/history", limit=2).json()
    assert op["items"] == expected[:2] and op["next_cursor"]
    rest = get(server, "operator", f"/api/orders/{ORDER}/history", limit=1000,
               cursor=op["next_cursor"]).json()
    assert op["items"] + rest["items"] == expected
    placed = full.json()["items"][0]
    assert placed["fields"]["buyer"]["name"] == "[redacted]"
    assert placed["fields"]["buyer"]["language"] == "sv-SE"
    assert placed["fields"]["ship_to"]["address_1"] == "[redacted]"
    assert placed["fields"]["ship_to"]["country"] == "SE"
    assert placed["state"]["buyer_name"] == "[redacted]"
    at_pos = get(server, "operator", f"/api/orders/{ORDER}/history", at_position=6).json()
    assert at_pos["items"] == cli_json(server, "history", ORDER, "--at-position", "6")
    r = get(server, "auditor", "/api/orders/203-9999999-9999999/history")
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown-order"


def test_explain_is_the_cli(server):
    assert get(server, "auditor", f"/api/orders/{ORDER}/explain").json() == \
        cli_json(server, "explain", ORDER)
    assert get(server, "viewer", f"/api/orders/{ORDER}/explain").status_code == 403
    assert get(server, "auditor", "/api/orders/203-9999999-9999999/explain").status_code == 404


def test_audit_is_the_cli_and_paged(server):
    expected = cli_json(server, "audit", "--type", "LedgerCanceled")
    with server.client("auditor") as c:
        got, cursor = [], None
        while True:
            page = c.get("/api/audit", params={"type": "LedgerCanceled", "limit": 3,
                                               **({"cursor": cursor} if cursor else {})}).json()
            got += page["items"]
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert got == expected
        placed = c.get("/api/audit", params={"type": "OrderPlaced", "order": ORDER}).json()
        assert placed["items"][0]["fields"]["buyer"]["email"] == "[redacted]"
        bad = c.get("/api/audit", params={"type": "NoSuchEvent"})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "bad-parameter"
    op = get(server, "operator", "/api/audit", type="OrderPlaced", order=ORDER).json()
    assert op["items"] == cli_json(server, "audit", "--type", "OrderPlaced", "--order", ORDER)


# --- writes: feeds, sp-api, then a conflict -------------------------------------------------


def test_feed_report_is_the_cli(server, tmp_path):
    feed = EXAMPLES / "feeds" / "shipping-confirmation-with-errors.txt"
    expected = json.loads(cli("feed", "shipping-confirmation", str(feed), "--json", "--check",
                              "--db", server.db, check=False).stdout)
    with server.client("operator") as c:
        r = c.post("/api/feeds/shipping-confirmation", content=feed.read_bytes())
        assert r.status_code == 422  # some lines rejected
        body = r.json()
        assert body["processed"] == expected["processed"]
        assert body["rejected"] == expected["rejected"] > 0
        assert [(x["line"], x["status"], x.get("code")) for x in body["lines"]] == \
            [(x["line"], x["status"], x.get("code")) for x in expected["lines"]]
        whole = c.post("/api/feeds/adjustment", content=b"not\ta\tfeed\n")
        assert whole.status_code == 400 and whole.json()["error"]["code"] == "file-rejected"
        assert c.post("/api/feeds/refunds", content=b"x").status_code == 404
    assert get(server, "auditor", "/api/inventory").status_code == 200
    with server.client("auditor") as c:
        assert c.post("/api/feeds/adjustment", content=b"x").status_code == 403


def test_sp_api_import(server):
    body = (EXAMPLES / "sp-api" / "getOrders-with-items.json").read_bytes()
    with server.client("operator") as c:
        r = c.post("/api/import/sp-api", content=body,
                   headers={"Content-Type": "application/json"})
        assert r.status_code in (200, 422), r.text
        first = r.json()
        assert first["orders"] == len(first["results"]) > 0
        again = c.post("/api/import/sp-api", content=body).json()
        assert again["imported"] == 0
        assert again["already_imported"] == first["imported"] + first["already_imported"]
        bad = c.post("/api/import/sp-api", content=b'{"payload": 3}')
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "file-rejected"
        assert c.post("/api/import/sp-api", content=b"{").json()["error"]["code"] == \
            "file-rejected"


def test_conflicts_is_the_cli(server):
    """Last in this module: it moves the ledger's clock a month on."""
    order = "203-0000007-0055433"  # Unshipped at the walkthrough's end
    with server.client("operator") as c:
        assert c.post("/api/commands", json=[
            {"type": "tick", "at": "2026-06-01T06:00:00+02:00", "command_id": "svc-tick-june"},
            {"type": "ship", "at": "2026-04-21T10:00:00+02:00", "order_id": order,
             "carrier_code": "PostNord", "tracking_number": "SE123", "ship_date": "2026-04-21",
             "command_id": "svc-late-ship"}]).status_code == 422
        ops = c.get("/api/conflicts").json()
    expected = [json.loads(x) for x in
                cli("conflicts", "--json", "--db", server.db).stdout.splitlines()]
    assert ops == {"items": expected, "next_cursor": None}
    assert expected and expected[-1]["command_id"] == "svc-late-ship"
    assert get(server, "auditor", "/api/conflicts", order=order).json()["items"][-1][
        "command_id"] == "svc-late-ship"
    assert get(server, "viewer", "/api/conflicts").status_code == 403
