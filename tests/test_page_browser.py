"""The browser page through Debian's Chromium (Playwright, sync API) against a real
``order-ledger serve``: sign in, Manage Orders, actions, time travel, live updates,
roles, the other pages. One server and one browser for the module; the tests run in
file order and build on each other (the shipment confirmed here is travelled back
from further down).
"""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timezone

import httpx
import pytest
from playwright.sync_api import expect, sync_playwright

from page_support import (
    BUYERS,
    ORDERS,
    build_ledger,
    cli,
    keep_for_docs,
    launch,
    make_token,
    order_command,
    served,
    shot,
    sign_in,
    utc_now,
)

SHORT = 10_000  # ms: the longest any expectation waits


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    work = tmp_path_factory.mktemp("page")
    db = str(work / "page.db")
    now = utc_now()
    build_ledger(db, now)
    tokens = {role: make_token(db, role, name) for role, name in
              (("operator", "olle"), ("viewer", "vera"))}
    with served(db, work) as base:
        yield {"db": db, "base": base, "tokens": tokens, "now": now, "marks": {}}


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = launch(p)  # no skip: a browser that cannot start fails the module
        yield b
        b.close()


@pytest.fixture(scope="module")
def operator(site, browser):
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    ctx.set_default_timeout(SHORT)
    page = ctx.new_page()
    sign_in(page, site["base"], site["tokens"]["operator"])
    yield page
    ctx.close()


def row(page, key: str):
    return page.locator(f"tr#row-{ORDERS[key]}")


def test_sign_in_page_has_a_labelled_token_field(site, browser):
    ctx = browser.new_context()
    page = ctx.new_page()
    page.goto(site["base"] + "/")
    expect(page.get_by_label("Token")).to_be_visible()
    keep_for_docs(shot(page, "sign-in"), "page-sign-in.png")
    page.get_by_label("Token").fill("not-a-token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("Unknown or revoked token")
    assert "/orders" not in page.url
    ctx.close()


def test_session_cookie_is_httponly_strict_and_holds_no_token(site, operator):
    cookies = {c["name"]: c for c in operator.context.cookies()}
    session = cookies["order_ledger_session"]
    assert session["httpOnly"] is True
    assert session["sameSite"] == "Strict"
    assert site["tokens"]["operator"] not in session["value"]


def test_list_greys_pending_and_canceled_and_shows_the_warning(site, operator):
    page = operator
    page.goto(site["base"] + "/orders")
    for key in ("pending", "canceled"):
        expect(row(page, key)).to_have_attribute("aria-disabled", "true")
        expect(row(page, key)).to_contain_text("greyed out")  # said, not only shown
    for key in ("to_ship", "warned"):
        assert row(page, key).get_attribute("aria-disabled") is None
        expect(row(page, key).get_by_role("button", name="Confirm shipment")).to_be_enabled()
    expect(row(page, "warned")).to_contain_text(
        re.compile(r"Confirm as shipped by \d{4}-\d{2}-\d{2} to avoid cancellation"))
    expect(row(page, "to_ship")).to_contain_text(BUYERS["to_ship"])  # operators see names
    keep_for_docs(shot(page, "orders"), "page-orders.png")


def test_filter_by_status_and_search_by_order_id(site, operator):
    page = operator
    page.goto(site["base"] + "/orders")
    page.get_by_label("Status").select_option("Pending")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("tbody tr[data-order]")).to_have_count(1)
    expect(row(page, "pending")).to_be_visible()
    page.get_by_label("Status").select_option("")
    page.get_by_label("Order id").fill(ORDERS["warned"][4:])
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("tbody tr[data-order]")).to_have_count(1)
    expect(row(page, "warned")).to_be_visible()


def test_confirm_shipment_through_the_form(site, operator):
    page = operator
    page.goto(site["base"] + "/orders")
    site["marks"]["before_ship"] = datetime.now(timezone.utc)
    r = row(page, "to_ship")
    r.get_by_role("button", name="Confirm shipment").click()
    form = page.get_by_role("form", name=f"Confirm shipment of {ORDERS['to_ship']}")
    expect(form.get_by_label("Carrier", exact=True)).to_be_focused()  # keyboard: focus moves in
    form.get_by_label("Carrier", exact=True).fill("PostNord")
    form.get_by_label("Tracking number").fill("PN000111222SE")
    form.get_by_label("Ship date").fill(site["now"].date().isoformat())
    form.get_by_role("button", name="Confirm shipment").click()
    expect(page.get_by_role("status").filter(has_text="Shipment confirmed")).to_be_visible()
    expect(row(page, "to_ship")).to_have_attribute("data-status", "Shipped")
    expect(row(page, "to_ship").locator(".status")).to_contain_text("Shipped")


def test_rejected_action_shows_the_ledgers_message_and_changes_nothing(site, operator):
    page = operator
    page.goto(site["base"] + "/orders")
    row(page, "to_reject").get_by_role("button", name="Confirm shipment").click()
    form = page.get_by_role("form", name=f"Confirm shipment of {ORDERS['to_reject']}")
    form.get_by_label("Carrier", exact=True).fill("PostNord")
    form.get_by_label("Ship date").fill("2001-01-01")  # before the purchase: the ledger says no
    form.get_by_role("button", name="Confirm shipment").click()
    form = page.get_by_role("form", name=f"Confirm shipment of {ORDERS['to_reject']}")
    alert = form.get_by_role("alert")
    expect(alert).to_contain_text("Rejected")
    expect(alert).to_contain_text("ship date")
    keep_for_docs(shot(page, "rejected"), "page-rejected.png")
    expect(row(page, "to_reject")).to_have_attribute("data-status", "Unshipped")
    with httpx.Client(base_url=site["base"]) as c:  # and the ledger agrees
        got = c.get(f"/api/orders/{ORDERS['to_reject']}",
                    headers={"Authorization": f"Bearer {site['tokens']['operator']}"})
    assert got.json()["status"] == "Unshipped"


def test_cancel_order_through_the_form(site, operator):
    page = operator
    page.goto(site["base"] + "/orders")
    row(page, "to_cancel").get_by_role("button", name="Cancel order").click()
    form = page.get_by_role("form", name=f"Cancel order {ORDERS['to_cancel']}")
    reasons = form.get_by_label("Reason").locator("option:not([value=''])")
    expect(reasons).to_have_count(6)
    form.get_by_label("Reason").select_option("NoInventory")
    form.get_by_label("Seller memo").fill("out of blue mugs")
    form.get_by_role("button", name="Cancel order").click()
    expect(row(page, "to_cancel")).to_have_attribute("data-status", "Canceled")
    expect(row(page, "to_cancel")).to_have_attribute("aria-disabled", "true")


def test_time_travel_before_the_shipment(site, operator):
    page = operator
    before = site["marks"]["before_ship"].replace(second=0, microsecond=0)
    page.goto(site["base"] + "/orders")
    page.get_by_label("As of (date and time)").fill(before.strftime("%Y-%m-%dT%H:%M"))
    page.get_by_label("UTC offset").fill("+00:00")
    page.get_by_role("button", name="Show").click()
    expect(page.get_by_role("status", name="Past view")).to_contain_text("Past view")
    r = row(page, "to_ship")
    expect(r).to_have_attribute("data-status", "Unshipped")
    expect(r.get_by_role("button", name="Confirm shipment")).to_be_disabled()
    expect(r.get_by_role("button", name="Cancel order")).to_be_disabled()
    expect(page.locator("form.action")).to_have_count(0)  # no form to submit in the past
    keep_for_docs(shot(page, "past-view"), "page-past-view.png")
    # the order page travels too, and links keep the time
    r.get_by_role("link", name=ORDERS["to_ship"]).click()
    expect(page.get_by_role("status", name="Past view")).to_be_visible()
    expect(page.locator("dl.facts")).to_contain_text("Unshipped")
    expect(page.locator("ol.timeline")).not_to_contain_text("ShipmentConfirmed")


def test_order_page_shows_state_history_and_explain(site, operator):
    page = operator
    page.goto(site["base"] + f"/orders/{ORDERS['to_ship']}")
    expect(page.locator("dl.facts")).to_contain_text("Shipped")
    steps = page.locator("ol.timeline li.step")
    expect(steps.last).to_contain_text("ShipmentConfirmed")
    expect(steps.last).to_contain_text("by olle")
    expect(steps.first).to_contain_text("business time")
    expect(steps.first).to_contain_text("recorded")
    expect(page.get_by_role("heading", name="Why it is here and what happens next")).to_be_visible()
    keep_for_docs(shot(page, "order"), "page-order.png")


def test_a_command_from_another_client_appears_without_a_reload(site, operator):
    page = operator
    page.goto(site["base"] + "/orders")
    page.evaluate("window.__notReloaded = true")
    expect(row(page, "live")).to_have_count(0)
    cmd = order_command("live", utc_now())
    cmd.pop("at")  # happens when the ledger records it
    with httpx.Client(base_url=site["base"]) as c:
        r = c.post("/api/commands", json=[cmd],
                   headers={"Authorization": f"Bearer {site['tokens']['operator']}"})
    assert r.status_code == 200, r.text
    expect(row(page, "live")).to_be_visible()
    assert page.evaluate("window.__notReloaded") is True
    expect(page.get_by_role("status").filter(has_text="Updated")).to_be_visible()


def test_viewer_sees_no_buyer_names_and_no_actions(site, browser):
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    ctx.set_default_timeout(SHORT)
    page = ctx.new_page()
    sign_in(page, site["base"], site["tokens"]["viewer"])
    expect(row(page, "warned")).to_be_visible()
    text = page.content()
    for name in BUYERS.values():
        assert name not in text
    assert "redacted" in page.locator(f"tr#row-{ORDERS['warned']}").inner_text()
    expect(page.get_by_role("button", name="Confirm shipment")).to_have_count(0)
    page.goto(site["base"] + f"/orders/{ORDERS['warned']}")
    expect(page.locator("ol.timeline")).to_be_visible()
    assert BUYERS["warned"] not in page.content()
    with page.expect_download() as dl:
        page.goto(site["base"] + "/reports")
        page.get_by_role("link", name="Orders report", exact=True).click()
    data = open(dl.value.path(), encoding="utf-8").read()
    assert data.startswith("order-id\torder-item-id")
    assert ORDERS["warned"] in data and BUYERS["warned"] not in data
    ctx.close()


def test_metrics_page_has_targets_and_a_chart_per_metric(site, operator):
    page = operator
    page.goto(site["base"] + "/metrics")
    table = page.get_by_role("table", name="Seller performance against the targets")
    expect(table.get_by_role("row")).to_have_count(5)
    expect(table).to_contain_text("< 2.5%")
    charts = page.locator("svg.chart")
    expect(charts).to_have_count(4)
    expect(page.get_by_role("img", name=re.compile("Cancellation rate"))).to_be_visible()
    chart = page.locator("svg.chart[data-metric=late_shipment_rate_30d]")
    # a point a day from the ledger's first day (30 days ago) to now
    assert int(chart.get_attribute("data-points")) >= 30
    assert chart.locator(".point").count() >= 5  # the days with orders due in the window
    shot(page, "metrics")


def test_inventory_marks_inactive_listings(site, operator):
    page = operator
    page.goto(site["base"] + "/inventory")
    lamp = page.get_by_role("row", name=re.compile("LAMP-OAK"))
    expect(lamp).to_contain_text("Inactive")
    expect(page.get_by_role("row", name=re.compile("MUG-BLUE"))).to_contain_text("Active")
    keep_for_docs(shot(page, "inventory"), "page-inventory.png")


def test_operator_downloads_the_unshipped_report(site, operator):
    page = operator
    page.goto(site["base"] + "/reports")
    shot(page, "reports")
    with page.expect_download() as dl:
        page.get_by_role("link", name="Unshipped Orders report").click()
    # the file the marketplace gives and `order-ledger report unshipped` writes: in the
    # marketplace's encoding (windows-1252 for these orders, which name no sales channel)
    raw = open(dl.value.path(), "rb").read()
    data = raw.decode("windows-1252")
    assert data.split("\n")[0].startswith("order-id\torder-item-id\tpurchase-date")
    assert ORDERS["warned"] in data and BUYERS["warned"] in data
    assert ORDERS["to_ship"] not in data  # shipped through the form above


def test_a_post_without_the_csrf_token_is_refused(site, operator):
    cookies = {c["name"]: c["value"] for c in operator.context.cookies()}
    with httpx.Client(base_url=site["base"], cookies=cookies) as c:
        r = c.post(f"/orders/{ORDERS['warned']}/cancel",
                   data={"reason": "NoInventory", "_csrf": "forged"})
    assert r.status_code == 403
    page = operator
    page.goto(site["base"] + "/orders")
    expect(row(page, "warned")).to_have_attribute("data-status", "Unshipped")


def test_bad_time_travel_input_says_what_is_wrong(site, operator):
    page = operator
    page.goto(site["base"] + "/orders?as_of=yesterday")
    expect(page.get_by_role("alert")).to_contain_text("is not a date and time")
    page.goto(site["base"] + "/orders?as_of=2026-01-01T10:00&tz=%2B99:00")
    expect(page.get_by_role("alert")).to_contain_text("UTC offset")


def test_the_forms_work_from_the_keyboard(site, operator):
    page = operator
    page.goto(site["base"] + "/orders")
    toggle = row(page, "warned").get_by_role("button", name="Cancel order")
    toggle.focus()
    page.keyboard.press("Enter")
    expect(toggle).to_have_attribute("aria-expanded", "true")
    form = page.get_by_role("form", name=f"Cancel order {ORDERS['warned']}")
    expect(form.get_by_label("Reason")).to_be_focused()
    page.keyboard.press("Tab")
    expect(form.get_by_label("Seller memo")).to_be_focused()
    page.keyboard.press("Tab")
    expect(form.get_by_role("button", name="Cancel order")).to_be_focused()
    page.keyboard.press("Escape")  # nothing submitted: the order is untouched
    page.goto(site["base"] + "/orders")
    expect(row(page, "warned")).to_have_attribute("data-status", "Unshipped")


def test_all_orders_report_has_pending_orders_too(site, operator):
    page = operator
    page.goto(site["base"] + "/reports")
    with page.expect_download() as dl:
        page.get_by_role("link", name="All Orders report").click()
    data = open(dl.value.path(), encoding="utf-8").read()
    assert ORDERS["pending"] in data and ORDERS["warned"] in data


def test_revoking_the_token_ends_the_session(site, browser):
    token = make_token(site["db"], "viewer", "short-lived")
    listed = cli("token", "list", "--json", db=site["db"])
    token_id = [t for t in json.loads(listed.stdout) if t["name"] == "short-lived"][0]["token_id"]
    ctx = browser.new_context()
    ctx.set_default_timeout(SHORT)
    page = ctx.new_page()
    sign_in(page, site["base"], token)
    expect(row(page, "warned")).to_be_visible()
    assert cli("token", "revoke", token_id, db=site["db"]).returncode == 0
    time.sleep(1.2)  # the page re-reads the revoked tokens at most every second
    page.goto(site["base"] + "/orders")
    expect(page.get_by_label("Token")).to_be_visible()
    ctx.close()


UNLABELLED = """() => [...document.querySelectorAll(
    'input:not([type=hidden]), select, textarea')].filter(
    el => el.labels.length === 0 && !el.getAttribute('aria-label')).map(el => el.outerHTML)"""
HEADERLESS = """() => [...document.querySelectorAll('table')].filter(
    t => t.querySelectorAll('thead th[scope=col]').length === 0 || !t.caption).length"""


@pytest.mark.parametrize("path", ["/orders", "/metrics", "/inventory", "/reports",
                                  f"/orders/{ORDERS['warned']}",
                                  "/orders?as_of=2026-01-01T10:00&tz=%2B01:00"])
def test_every_control_has_a_label_and_every_table_headers(site, operator, path):
    page = operator
    page.goto(site["base"] + path)
    for toggle in page.locator("button.toggle:not([disabled])").all()[:2]:
        toggle.click()  # the action forms too
    assert page.evaluate(UNLABELLED) == []
    assert page.evaluate(HEADERLESS) == 0
    assert page.locator("h1").count() == 1 and page.locator("main#main").count() == 1


def test_sign_out(site, operator):
    page = operator
    page.goto(site["base"] + "/orders")
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("Token")).to_be_visible()
    page.goto(site["base"] + "/orders")
    expect(page.get_by_label("Token")).to_be_visible()  # the session is gone

