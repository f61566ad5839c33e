"""The page over the example ledger (examples/walkthrough.jsonl, seven weeks of orders),
served from SQLite and from PostgreSQL: paging, the metrics against the CLI's, the
charts' daily points, and the walkthrough's time-travel question from docs/replay.md
("what did the seller see of order 22 at 17:00 on 11 April?")."""

from __future__ import annotations

import json
import re
import secrets

import pytest
from playwright.sync_api import expect, sync_playwright

from builders import walkthrough_lines
from ledger.application import Ledger
from page_support import cli, keep_for_docs, launch, make_token, served, shot, sign_in

ORDER_22 = "203-0000022-0174218"


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def site(request, tmp_path_factory):
    work = tmp_path_factory.mktemp(f"walk-{request.param}")
    if request.param == "sqlite":
        db = str(work / "walk.db")
    else:
        from conftest import PG_URL, _drop_schema, pg_available

        if not pg_available():
            pytest.skip(f"PostgreSQL is not reachable at {PG_URL}")
        schema = "page_" + secrets.token_hex(6)
        db = f"{PG_URL}{'&' if '?' in PG_URL else '?'}schema={schema}"
        request.addfinalizer(lambda: _drop_schema(schema))
    with Ledger(db, advance_clock=True) as led:
        list(led.apply_lines(walkthrough_lines()))
    token = make_token(db, "operator", "olle")
    # a PostgreSQL ledger keeps its session key beside the working directory: give one
    with served(db, work, {"ORDER_LEDGER_SESSION_KEY": secrets.token_hex(32)}) as base:
        yield {"db": db, "base": base, "token": token, "backend": request.param}


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = launch(p)  # one browser for the module; fails (never skips) when it cannot start
        yield b
        b.close()


@pytest.fixture(scope="module")
def page(site, browser):
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    ctx.set_default_timeout(10_000)
    pg = ctx.new_page()
    sign_in(pg, site["base"], site["token"])
    yield pg
    ctx.close()


def test_pages_of_orders(site, page):
    page.goto(site["base"] + "/orders")
    expect(page.locator("tbody tr[data-order]")).to_have_count(25)
    page.get_by_role("link", name="Next page").click()
    expect(page.get_by_text("Page 2")).to_be_visible()
    ids = page.locator("tbody tr[data-order]").evaluate_all(
        "rows => rows.map(r => r.dataset.order)")
    r = cli("orders", "--json", "--offset", "25", "--limit", "25", db=site["db"])
    assert ids == [o["order_id"] for o in json.loads(r.stdout)]


def test_metrics_match_the_cli_and_chart_every_day(site, page):
    page.goto(site["base"] + "/metrics")
    m = json.loads(cli("metrics", "--json", db=site["db"]).stdout)
    table = page.get_by_role("table", name="Seller performance against the targets")
    late10 = m["late_shipment_rate"]["10d"]
    expect(table.get_by_role("row", name=re.compile("10 days"))).to_contain_text(
        f"{late10['numerator']} / {late10['denominator']}")
    for key in ("cancellation_rate", "late_shipment_rate_10d", "late_shipment_rate_30d",
                "valid_tracking_rate"):
        chart = page.locator(f"svg.chart[data-metric={key}]")
        # 2026-03-02 .. 2026-04-20: 49 midnights and the ledger's clock
        assert chart.get_attribute("data-points") == "50"
    if site["backend"] == "sqlite":
        keep_for_docs(shot(page, "walkthrough-metrics"), "page-metrics.png")


def test_what_the_seller_saw_of_order_22_on_the_afternoon_it_was_due(site, page):
    page.goto(site["base"] + f"/orders/{ORDER_22}?as_of=2026-04-11T17:00&tz=%2B02:00")
    expect(page.get_by_role("status", name="Past view")).to_contain_text("2026-04-11 17:00")
    facts = page.locator("dl.facts")
    expect(facts).to_contain_text("Unshipped")
    expect(page.locator("ol.timeline")).not_to_contain_text("LedgerCanceled")
    expect(page.get_by_text(re.compile(r"Next:.*ship", re.S))).to_be_visible()
    if site["backend"] == "sqlite":
        keep_for_docs(shot(page, "walkthrough-order-22-past"), "page-order-past.png")
    page.goto(site["base"] + f"/orders/{ORDER_22}")
    expect(page.locator("dl.facts")).to_contain_text("Canceled")
    expect(page.locator("ol.timeline")).to_contain_text("LedgerCanceled")


def test_metrics_as_of_a_past_day_match_the_cli(site, page):
    as_of = "2026-03-20T12:00:00+01:00"
    page.goto(site["base"] + "/metrics?as_of=2026-03-20T12:00&tz=%2B01:00")
    expect(page.get_by_role("status", name="Past view")).to_be_visible()
    m = json.loads(cli("metrics", "--json", "--as-of", as_of, db=site["db"]).stdout)
    table = page.get_by_role("table", name="Seller performance against the targets")
    for name, x in (("Cancellation rate", m["cancellation_rate"]),
                    ("30 days by latest", m["late_shipment_rate"]["30d"])):
        expect(table.get_by_role("row", name=re.compile(name))).to_contain_text(
            f"{x['numerator']} / {x['denominator']}")
    chart = page.locator("svg.chart[data-metric=cancellation_rate]")
    # 2026-03-02 .. 2026-03-20 12:00: 18 midnights and the as-of time itself
    assert chart.get_attribute("data-points") == "19"
    expect(page.locator("text=Windows end at")).to_contain_text("2026-03-20 12:00 +01:00")
