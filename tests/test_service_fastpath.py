"""``POST /api/commands`` answered without Litestar (order_ledger/service/fastpath.py):
the same status, headers and bytes as the Litestar route, and everything it does
not handle handed to the app as it came."""

from __future__ import annotations

import json
from typing import Any

from litestar.testing import TestClient

from builders import at, oid, place
from ledger.application import Ledger
from ledger.errors import LedgerBusy
from ledger.tokens import create_token
from order_ledger.service.app import create_app
from order_ledger.service.fastpath import CommandsFastPath
from order_ledger.service.runtime import ServiceConfig


class Counting:
    """The Litestar app, counting the requests that reach it."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.app, name)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.calls += 1
        await self.app(scope, receive, send)


def _chunked(body: bytes):
    yield body  # no Content-Length: Transfer-Encoding chunked, which the fast path leaves


def _app(tmp_path) -> tuple[CommandsFastPath, Counting, str, str]:
    db = str(tmp_path / "fast.db")
    with Ledger(db) as led:
        led.probe_store()
        led.recorder.ensure_tokens_table()
        op, _ = create_token(led, "operator")
        viewer, _ = create_token(led, "viewer")
    inner = Counting(create_app(ServiceConfig(db=db, tick_interval=0)))
    return CommandsFastPath(inner), inner, op, viewer


def test_the_fast_path_answers_as_the_litestar_route(tmp_path):
    fast, inner, op, viewer = _app(tmp_path)
    auth = {"Authorization": f"Bearer {op}", "Content-Type": "application/json"}
    body = json.dumps([place(oid(1), at(1), command_id="f-1"),
                       place(oid(1), at(2), command_id="f-2")]).encode()
    with TestClient(fast) as c:
        first = c.post("/api/commands", content=body, headers=auth)  # the guard looks it up
        assert inner.calls == 1
        assert first.status_code == 422  # the second line is rejected
        assert [o["status"] for o in first.json()] == ["applied", "rejected"]
        again = c.post("/api/commands", content=body, headers=auth)  # token remembered
        assert inner.calls == 1  # answered by the fast path
        routed = c.post("/api/commands", content=_chunked(body), headers=auth)
        assert inner.calls == 2  # through Litestar
        assert again.status_code == routed.status_code == 422
        assert again.content == routed.content
        assert [o["status"] for o in again.json()] == ["duplicate", "rejected"]
        assert again.headers["content-type"] == routed.headers["content-type"]
        assert again.headers["content-length"] == routed.headers["content-length"]

        # a body that does not parse, a viewer, another path: the app answers
        bad = c.post("/api/commands", content=b"[{", headers=auth)
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "malformed-json"
        assert inner.calls == 3
        c.get("/api/orders", headers={"Authorization": f"Bearer {viewer}"})
        denied = c.post("/api/commands", content=body,
                        headers={**auth, "Authorization": f"Bearer {viewer}"})
        assert denied.status_code == 403 and inner.calls == 5

        # the ledger's errors as the app's handlers answer them
        svc = fast.state.service

        async def busy(lines: Any) -> Any:
            raise LedgerBusy("the ledger is busy: try again")

        svc.submit = busy
        fast_busy = c.post("/api/commands", content=body, headers=auth)
        assert inner.calls == 5
        routed_busy = c.post("/api/commands", content=_chunked(body), headers=auth)
        assert inner.calls == 6
        assert fast_busy.status_code == routed_busy.status_code == 503
        assert fast_busy.content == routed_busy.content
        assert fast_busy.headers["retry-after"] == routed_busy.headers["retry-after"] == "1"
