"""``create_app`` in process (Litestar's TestClient): routes added beside the API
with ``extra_route_handlers`` get the same guard, principal and redaction."""

from __future__ import annotations

from litestar import Request, get
from litestar.testing import TestClient

from builders import walkthrough_lines
from ledger.application import Ledger
from ledger.tokens import create_token
from order_ledger.service.app import create_app
from order_ledger.service.auth import bearer_guard, principal_of, redact
from order_ledger.service.runtime import ServiceConfig


@get("/", guards=[bearer_guard], sync_to_thread=False)
def home(request: Request) -> dict:
    who = principal_of(request)
    return {"role": who.role, "buyer": redact({"buyer_name": "Anna Lindqvist"}, who)}


@get("/ui/open", sync_to_thread=False)
def open_page() -> str:
    return "no token needed here"


def test_extra_route_handlers_share_auth_and_redaction(tmp_path):
    db = str(tmp_path / "ledger.db")
    with Ledger(db, advance_clock=True) as led:
        list(led.apply_lines(walkthrough_lines(20)))
        op, _ = create_token(led, "operator")
        viewer, _ = create_token(led, "viewer")
    app = create_app(ServiceConfig(db=db, tick_interval=0),
                     extra_route_handlers=[home, open_page])
    with TestClient(app) as c:
        assert c.get("/ui/open").text == "no token needed here"
        assert c.get("/").status_code == 401
        r = c.get("/", headers={"Authorization": f"Bearer {viewer}"})
        assert r.json() == {"role": "viewer", "buyer": {"buyer_name": "[redacted]"}}
        r = c.get("/", headers={"Authorization": f"Bearer {op}"})
        assert r.json()["buyer"] == {"buyer_name": "Anna Lindqvist"}
        orders = c.get("/api/orders", headers={"Authorization": f"Bearer {viewer}"}).json()
        assert orders["items"] and orders["items"][0]["buyer_name"] == "[redacted]"
        assert c.get("/health").json()["status"] == "ok"
