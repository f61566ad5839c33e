"""The page's routes against odd and hostile input, over HTTP (no browser): never a 500,
never a traceback, a rejected or refused action writes nothing."""

from __future__ import annotations

import re
import time
from contextlib import closing

import httpx
import pytest

from page_support import ORDERS, build_ledger, make_token, served, utc_now


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    work = tmp_path_factory.mktemp("page-inputs")
    db = str(work / "page.db")
    build_ledger(db, utc_now())
    tokens = {r: make_token(db, r, f"{r}-1") for r in ("operator", "viewer")}
    with served(db, work) as base:
        yield {"base": base, "tokens": tokens, "db": db}


def signed_in(base: str, token: str) -> tuple[httpx.Client, str]:
    """A client with a session, and the session's CSRF token (read off the page)."""
    c = httpx.Client(base_url=base, timeout=20)
    first = c.get("/")
    pre = re.search(r'name="_csrf" value="([^"]+)"', first.text).group(1)
    r = c.post("/sign-in", data={"_csrf": pre, "token": token})
    assert r.status_code == 303 and r.headers["location"] == "/orders"
    page = c.get("/orders")
    csrf = re.search(r'name="_csrf" value="([^"]+)"', page.text).group(1)
    return c, csrf


def no_traceback(r: httpx.Response) -> None:
    assert r.status_code < 500, (r.status_code, r.text[:500])
    assert "Traceback" not in r.text


def test_without_a_session_every_page_sends_to_sign_in(site):
    with httpx.Client(base_url=site["base"]) as c:
        for path in ("/orders", "/metrics", "/inventory", "/reports", "/reports/orders",
                     f"/orders/{ORDERS['warned']}"):
            r = c.get(path)
            assert r.status_code == 303 and r.headers["location"] == "/", path
        assert c.get("/live").status_code == 401
        assert c.get("/orders/fragment").status_code == 401
        c.cookies.set("order_ledger_session", "eyJyIjoib3BlcmF0b3IifQ.forged")
        assert c.get("/orders").status_code == 303
        r = c.post(f"/orders/{ORDERS['warned']}/cancel", data={"reason": "NoInventory"})
        assert r.status_code == 303 and r.headers["location"] == "/"


def test_sign_in_refuses_odd_tokens_and_a_missing_form_token(site):
    with httpx.Client(base_url=site["base"]) as c:
        first = c.get("/")
        pre = re.search(r'name="_csrf" value="([^"]+)"', first.text).group(1)
        for token in ("", "x" * 10_000, "\x00\n", "Bearer abc", "ö" * 300):
            r = c.post("/sign-in", data={"_csrf": pre, "token": token})
            no_traceback(r)
            assert r.status_code == 401 and "order_ledger_session" not in r.cookies
            pre = re.search(r'name="_csrf" value="([^"]+)"', r.text).group(1)  # a new form
        r = c.post("/sign-in", data={"token": site["tokens"]["operator"]})  # no form token
        assert r.status_code == 403 and "order_ledger_session" not in r.cookies


ODD = ["", "x", "9999-99-99T99:99", "0001-01-01T00:00", "9999-12-31T23:59",
       "2026-03-01T10:00:00+01:00", "2026-03-01T10:00Z", "<script>alert(1)</script>", "'; --",
       "2026-02-30T10:00", "\u202e2026", "1" * 500]


@pytest.mark.parametrize("path", ["/orders", "/metrics", "/inventory", "/reports",
                                  "/reports/unshipped", "/orders/fragment",
                                  f"/orders/{ORDERS['warned']}"])
def test_odd_time_travel_and_list_parameters_never_fail(site, path):
    c, _ = signed_in(site["base"], site["tokens"]["viewer"])
    with closing(c):
        for value in ODD:
            for params in ({"as_of": value}, {"known_at": value}, {"as_of": value, "tz": value},
                           {"as_of": "2026-03-01T10:00", "tz": value}, {"status": value},
                           {"q": value}, {"page": value}):
                r = c.get(path, params=params)
                no_traceback(r)
                assert "<script>alert(1)</script>" not in r.text  # always escaped


def test_odd_paths_never_fail(site):
    c, _ = signed_in(site["base"], site["tokens"]["viewer"])
    with closing(c):
        for path in ("/orders/%3Cscript%3E", "/orders/" + "9" * 300, "/orders/203-0000000-0000000",
                     "/reports/../../etc/passwd", "/reports/%00", "/static/../routes.py",
                     "/static/nothing.css"):
            r = c.get(path)
            no_traceback(r)
            assert "<script>" not in r.text
        assert c.get("/orders/203-0000000-0000000").status_code == 404
        assert c.get("/reports/nothing").status_code == 404


FORMS = [
    ("ship", {}),
    ("ship", {"carrier": "PostNord", "ship_date": "tomorrow"}),
    ("ship", {"carrier": "", "ship_date": ""}),
    ("ship", {"carrier": "Other", "ship_date": "2026-01-01"}),
    ("ship", {"carrier": "PostNord", "ship_date": "2026-01-01", "qty:00000000000001": "abc",
              "max:00000000000001": "2"}),
    ("ship", {"carrier": "PostNord", "ship_date": "2026-01-01", "qty:00000000000001": "99",
              "max:00000000000001": "2"}),
    ("ship", {"carrier": "PostNord", "ship_date": "2026-01-01", "qty:00000000000001": "0",
              "max:00000000000001": "2"}),
    ("ship", {"carrier": "x" * 5000, "ship_date": "2001-01-01", "qty:" + "9" * 40: "1"}),
    ("cancel", {}),
    ("cancel", {"reason": "NotAReason"}),
    ("cancel", {"reason": "NoInventory", "memo": "m" * 20_000}),
    ("cancel", {"reason": "<b>x</b>", "back": "https://evil.example/"}),
]


def test_rejected_and_odd_actions_write_nothing_and_say_why(site):
    from ledger.application import Ledger

    def ledger_head() -> int:
        with Ledger(site["db"], mode="read") as led:
            return led.head()

    c, csrf = signed_in(site["base"], site["tokens"]["operator"])
    with closing(c):
        before = ledger_head()
        for kind, form in FORMS:
            for order in (ORDERS["pending"], ORDERS["canceled"], "not-an-order"):
                r = c.post(f"/orders/{order}/{kind}", data={"_csrf": csrf, **form})
                no_traceback(r)
                assert r.status_code == 422, (kind, form, order, r.status_code)
                assert "Rejected:" in r.text and "nothing was changed" in r.text
                assert "<b>x</b>" not in r.text
        assert ledger_head() == before


def test_a_viewer_cannot_act_even_with_its_own_form_token(site):
    from ledger.application import Ledger

    c, csrf = signed_in(site["base"], site["tokens"]["viewer"])
    with closing(c), Ledger(site["db"], mode="read") as led:
        before = led.head()
        r = c.post(f"/orders/{ORDERS['warned']}/cancel",
                   data={"_csrf": csrf, "reason": "NoInventory"})
        assert r.status_code == 403 and "cannot change orders" in r.text
        assert led.head() == before


def test_an_action_returns_only_to_this_site(site):
    c, csrf = signed_in(site["base"], site["tokens"]["operator"])
    with closing(c):
        r = c.post(f"/orders/{ORDERS['warned']}/cancel",
                   data={"_csrf": csrf, "reason": "NoInventory", "back": "//evil.example/x"})
        assert r.status_code == 303
        assert r.headers["location"].startswith("/orders?")


def test_a_new_empty_ledger_serves_every_page(tmp_path):
    from ledger.application import Ledger

    db = str(tmp_path / "empty.db")
    Ledger(db).close()
    token = make_token(db, "operator", "first")
    with served(db, tmp_path) as base:
        c, _ = signed_in(base, token)
        with closing(c):
            for path in ("/orders", "/metrics", "/inventory", "/reports", "/reports/orders",
                         "/reports/unshipped", "/reports/all-orders",
                         "/orders?as_of=2026-01-01T10:00"):
                r = c.get(path)
                assert r.status_code == 200, (path, r.text[:300])
            assert "No orders match." in c.get("/orders").text
            assert c.get("/metrics").text.count("<svg") == 4


def test_files_where_form_fields_belong_are_refused_without_failing(site):
    c, csrf = signed_in(site["base"], site["tokens"]["operator"])
    with closing(c):
        r = c.post(f"/orders/{ORDERS['warned']}/cancel",
                   files={"_csrf": ("x.txt", csrf.encode()), "reason": ("r.txt", b"NoInventory")})
        no_traceback(r)
        assert r.status_code == 403  # a file is not the form token
        r = c.post(f"/orders/{ORDERS['pending']}/cancel", data={"_csrf": csrf},
                   files={"reason": ("r.txt", b"NoInventory")})
        no_traceback(r)
        assert r.status_code == 422  # no reason given: the ledger says what is missing
        r = c.post("/sign-in", files={"token": ("t.txt", b"x"), "_csrf": ("c.txt", b"y")})
        no_traceback(r)
        assert r.status_code == 403


def test_a_session_holds_across_workers(tmp_path):
    """Two worker processes share the session key (the file beside the ledger): a session
    made by one is good on the other, and an action goes through either."""
    from ledger.application import Ledger

    db = str(tmp_path / "two.db")
    build_ledger(db, utc_now())
    token = make_token(db, "operator", "two")
    with served(db, tmp_path, workers=2) as base:
        c, csrf = signed_in(base, token)
        with closing(c):
            pids = set()
            close = {"Connection": "close"}  # a new connection each time: either worker
            pids: set[int] = set()
            deadline = time.monotonic() + 20
            while len(pids) < 2 and time.monotonic() < deadline:  # both workers up
                pids.add(c.get("/health", headers=close).json()["pid"])
            assert len(pids) == 2
            for _ in range(30):
                r = c.get("/orders", headers=close)
                assert r.status_code == 200 and "Sign out" in r.text
            r = c.post(f"/orders/{ORDERS['to_cancel']}/cancel",
                       data={"_csrf": csrf, "reason": "NoInventory"})
            assert r.status_code == 303
    with Ledger(db, mode="read") as led:
        from replay.history import order_history

        assert order_history(led, ORDERS["to_cancel"])[-1].state["status"] == "Canceled"


def test_the_page_stays_out_of_the_api_schema(site):
    """The OpenAPI document (and so schemathesis) covers the API only."""
    paths = httpx.get(site["base"] + "/schema/openapi.json", timeout=20).json()["paths"]
    assert any(p.startswith("/api/") for p in paths)
    page_paths = ("/", "/orders", "/sign-in", "/live", "/metrics", "/reports", "/static")
    assert not [p for p in paths if p in page_paths or p.startswith(("/orders", "/static"))]
