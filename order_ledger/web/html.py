"""The page's HTML, built by small functions; every value goes through :func:`h`.

No template engine: the markup is short, and escaping at one place keeps it safe.
"""

from __future__ import annotations

from datetime import datetime
from html import escape
from typing import Any, Iterable
from urllib.parse import urlencode

from ledger.rules import SELLER_CANCEL_REASONS

STATUSES = ("Pending", "Unshipped", "PartiallyShipped", "Shipped", "Canceled")


def h(v: Any) -> str:
    """Text for HTML (None is empty)."""
    return "" if v is None else escape(str(v), quote=True)


def short_time(t: str | None) -> str:
    """``2026-03-02T09:00:00+01:00`` -> ``2026-03-02 09:00 +01:00``."""
    if not t:
        return ""
    try:
        d = datetime.fromisoformat(t)
    except ValueError:
        return t
    off = d.strftime("%z")
    off = f"{off[:3]}:{off[3:]}" if off else ""
    return f"{d:%Y-%m-%d %H:%M} {off}".strip()


def time_tag(t: str | None) -> str:
    return f'<time datetime="{h(t)}">{h(short_time(t))}</time>' if t else ""


def qs(params: dict[str, Any]) -> str:
    clean = {k: v for k, v in params.items() if v not in (None, "")}
    return ("?" + urlencode(clean)) if clean else ""


# --- the frame ------------------------------------------------------------------------

NAV = (("orders", "/orders", "Manage Orders"), ("metrics", "/metrics", "Metrics"),
       ("inventory", "/inventory", "Manage Inventory"), ("reports", "/reports", "Reports"))


def layout(title: str, body: str, *, user: Any = None, csrf: str = "", active: str = "",
           time_params: dict[str, str] | None = None, when_form: str = "",
           past_banner: str = "", live: bool = False) -> str:
    tq = qs(time_params or {})
    nav = ""
    if user is not None:
        links = "".join(
            f'<li><a href="{href}{h(tq)}"{" aria-current=page" if key == active else ""}>'
            f"{h(label)}</a></li>" for key, href, label in NAV)
        who = f"{h(user.name or 'signed in')} ({h(user.role)})"
        nav = (f'<nav aria-label="Main"><ul>{links}</ul>'
               f'<form method="post" action="/sign-out" class="signout">'
               f'<input type="hidden" name="_csrf" value="{h(csrf)}">'
               f'<span class="who">{who}</span> <button type="submit">Sign out</button></form>'
               "</nav>")
    live_attr = ' data-live="1"' if live else ""
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{h(title)} - Order Ledger</title>
<link rel="stylesheet" href="/static/page.css">
<noscript><style>.actions-row.collapsed {{ display: table-row; }}</style></noscript>
<script src="/static/page.js" defer></script>
</head>
<body class="{'past' if past_banner else 'present'}"{live_attr}>
<a class="skip" href="#main">Skip to content</a>
<header><p class="brand">Order Ledger</p>{nav}</header>
{past_banner}
{when_form}
<main id="main">
<h1>{h(title)}</h1>
{body}
</main>
</body>
</html>"""


def past_banner(as_of: datetime | None, known_at: datetime | None, present_href: str) -> str:
    parts = []
    if as_of is not None:
        parts.append(f"as of {h(short_time(as_of.isoformat()))}")
    if known_at is not None:
        parts.append(f"as known at {h(short_time(known_at.isoformat()))}")
    return (f'<section class="past-banner" role="status" aria-label="Past view">'
            f"<p><strong>Past view</strong>: what was true {' '.join(parts)}. "
            f"Actions are disabled. <a href=\"{h(present_href)}\">Back to the present</a></p>"
            f"</section>")


def when_form(action: str, as_of: str, known_at: str, tz: str, keep: dict[str, str],
              error: str | None = None) -> str:
    """The as-of control on every page (a GET form)."""
    hidden = "".join(f'<input type="hidden" name="{h(k)}" value="{h(v)}">'
                     for k, v in keep.items() if v not in (None, ""))
    err = (f'<p class="error" role="alert" id="when-error">{h(error)}</p>' if error else "")
    return f"""<form class="when" method="get" action="{h(action)}" aria-label="Time travel">
{hidden}
<fieldset><legend>Time travel</legend>
<label for="as_of">As of (date and time)</label>
<input type="datetime-local" id="as_of" name="as_of" value="{h(as_of)}" step="60">
<label for="known_at">As known at</label>
<input type="datetime-local" id="known_at" name="known_at" value="{h(known_at)}" step="60">
<label for="tz">UTC offset</label>
<input type="text" id="tz" name="tz" value="{h(tz)}" size="6" pattern="[+-][0-9]{{2}}:[0-9]{{2}}"
 title="+HH:MM or -HH:MM" aria-describedby="tz-help">
<span id="tz-help" class="help">for both times, e.g. +01:00</span>
<button type="submit">Show</button>
</fieldset>{err}
</form>"""


# --- sign in ---------------------------------------------------------------------------


def sign_in(pre_csrf: str, error: str | None = None) -> str:
    err = f'<p class="error" role="alert" id="signin-error">{h(error)}</p>' if error else ""
    return f"""<form method="post" action="/sign-in" class="signin">
<input type="hidden" name="_csrf" value="{h(pre_csrf)}">
<p>Sign in with a token made by <code>order-ledger token create</code>.</p>
<label for="token">Token</label>
<input type="password" id="token" name="token" autocomplete="current-password" required
 {'aria-describedby="signin-error" aria-invalid="true"' if error else ''}>
<button type="submit">Sign in</button>
{err}
</form>"""


# --- Manage Orders ----------------------------------------------------------------------


def items_text(row: dict) -> str:
    parts = []
    for it in row["items"]:
        extra = []
        if it["quantity_shipped"]:
            extra.append(f"{it['quantity_shipped']} shipped")
        if it["quantity_canceled"]:
            extra.append(f"{it['quantity_canceled']} canceled")
        parts.append(f"{h(it['sku'])} &times; {h(it['quantity'])}"
                     + (f" ({h(', '.join(extra))})" if extra else "")
                     + f'<span class="title"> {h(it["title"])}</span>')
    return "<br>".join(parts)


def _ship_form(row: dict, csrf: str, back: str, today: str, error: str | None,
               values: dict[str, str]) -> str:
    oid = row["order_id"]
    fid = f"ship-{oid}"
    items = "".join(
        f'<label for="{fid}-q-{h(it["order_item_id"])}">Quantity of {h(it["sku"])} '
        f'(item {h(it["order_item_id"])}, {h(it["quantity_to_ship"])} to ship)</label>'
        f'<input type="number" id="{fid}-q-{h(it["order_item_id"])}" '
        f'name="qty:{h(it["order_item_id"])}" min="0" max="{h(it["quantity_to_ship"])}" '
        f'value="{h(values.get("qty:" + it["order_item_id"], it["quantity_to_ship"]))}">'
        f'<input type="hidden" name="max:{h(it["order_item_id"])}" '
        f'value="{h(it["quantity_to_ship"])}">'
        for it in row["items"] if it["quantity_to_ship"] > 0)
    err = (f'<p class="error" role="alert" id="{fid}-error">{h(error)}</p>' if error else "")
    return f"""<form method="post" action="/orders/{h(oid)}/ship" class="action ship"
 aria-label="Confirm shipment of {h(oid)}"{f' aria-describedby="{fid}-error"' if error else ''}>
<input type="hidden" name="_csrf" value="{h(csrf)}"><input type="hidden" name="back" value="{h(back)}">
<fieldset><legend>Confirm shipment</legend>
<label for="{fid}-carrier">Carrier</label>
<input id="{fid}-carrier" name="carrier" list="carriers" required value="{h(values.get('carrier', ''))}">
<label for="{fid}-carrier-name">Carrier name (when the carrier is Other)</label>
<input id="{fid}-carrier-name" name="carrier_name" value="{h(values.get('carrier_name', ''))}">
<label for="{fid}-tracking">Tracking number</label>
<input id="{fid}-tracking" name="tracking_number" value="{h(values.get('tracking_number', ''))}">
<label for="{fid}-date">Ship date</label>
<input type="date" id="{fid}-date" name="ship_date" required value="{h(values.get('ship_date', today))}">
{items}
<button type="submit">Confirm shipment</button>
</fieldset>{err}
</form>"""


def _cancel_form(row: dict, csrf: str, back: str, error: str | None,
                 values: dict[str, str]) -> str:
    oid = row["order_id"]
    fid = f"cancel-{oid}"
    chosen = values.get("reason", "")
    options = '<option value="">Choose a reason</option>' + "".join(
        f'<option value="{h(code)}"{" selected" if code == chosen else ""}>{h(label)} '
        f"({h(code)})</option>" for code, label in SELLER_CANCEL_REASONS.items())
    err = (f'<p class="error" role="alert" id="{fid}-error">{h(error)}</p>' if error else "")
    return f"""<form method="post" action="/orders/{h(oid)}/cancel" class="action cancel"
 aria-label="Cancel order {h(oid)}"{f' aria-describedby="{fid}-error"' if error else ''}>
<input type="hidden" name="_csrf" value="{h(csrf)}"><input type="hidden" name="back" value="{h(back)}">
<fieldset><legend>Cancel order</legend>
<label for="{fid}-reason">Reason</label>
<select id="{fid}-reason" name="reason">{options}</select>
<label for="{fid}-memo">Seller memo</label>
<input id="{fid}-memo" name="memo" maxlength="500" value="{h(values.get('memo', ''))}">
<button type="submit">Cancel order</button>
</fieldset>{err}
</form>"""


CARRIERS = ("UPS", "USPS", "FedEx", "DHL", "PostNord", "Bring", "DB Schenker", "Other")


def orders_table(rows: list[dict], *, can_act: bool, past: bool, csrf: str, back: str,
                 tq: str, today: str, failed: dict | None = None) -> str:
    """The Manage Orders table body and its caption (swapped in live)."""
    if not rows:
        return '<p class="empty">No orders match.</p>'
    out = ["""<table class="orders" id="orders-table">
<caption>Orders, newest purchase first. Pending and Canceled orders are greyed out and cannot be acted on.</caption>
<thead><tr><th scope="col">Order id</th><th scope="col">Purchase date</th><th scope="col">Status</th>
<th scope="col">Buyer name</th><th scope="col">Items</th><th scope="col">Ship by</th>
<th scope="col">Deliver by</th><th scope="col">Actions</th></tr></thead><tbody>"""]
    for r in rows:
        oid = r["order_id"]
        grey = r["greyed_out"]
        attrs = f' class="greyed" aria-disabled="true"' if grey else ""
        status = h(r["status"]) + ('<span class="note"> (greyed out, no action)</span>'
                                   if grey else "")
        notes = []
        if r.get("warning"):
            notes.append(f'<p class="warning"><strong>Warning:</strong> {h(r["warning"])}</p>')
        if r.get("cancel_reason"):
            notes.append(f'<p class="note">canceled: {h(r["cancel_reason"])}</p>')
        if r.get("buyer_requested_cancel"):
            notes.append('<p class="note">the buyer asked to cancel</p>')
        actionable = r["actionable"] and can_act
        fail = failed if failed and failed.get("order_id") == oid else None
        if actionable:
            dis = " disabled" if past else ""
            buttons = (f'<button type="button" class="toggle" data-target="act-{h(oid)}-ship" '
                       f'aria-controls="act-{h(oid)}" aria-expanded="{"true" if fail else "false"}"'
                       f"{dis}>Confirm shipment</button> "
                       f'<button type="button" class="toggle" data-target="act-{h(oid)}-cancel" '
                       f'aria-controls="act-{h(oid)}" aria-expanded="{"true" if fail else "false"}"'
                       f"{dis}>Cancel order</button>")
        elif r["actionable"]:
            buttons = '<span class="note">operators only</span>'
        else:
            buttons = '<span class="note">no action</span>'
        out.append(
            f'<tr id="row-{h(oid)}" data-order="{h(oid)}" data-status="{h(r["status"])}"{attrs}>'
            f'<th scope="row"><a href="/orders/{h(oid)}{h(tq)}">{h(oid)}</a></th>'
            f"<td>{time_tag(r['purchase_date'])}</td>"
            f'<td class="status">{status}{"".join(notes)}</td>'
            f"<td>{h(r['buyer_name'])}</td><td>{items_text(r)}</td>"
            f"<td>{time_tag(r['latest_ship_date'])}</td>"
            f"<td>{time_tag(r['latest_delivery_date'])}</td>"
            f'<td class="actions">{buttons}</td></tr>')
        if actionable and not past:
            kind = fail.get("kind") if fail else None
            vals = fail.get("values", {}) if fail else {}
            msg = fail.get("message") if fail else None
            ship = _ship_form(r, csrf, back, today, msg if kind == "ship" else None,
                              vals if kind == "ship" else {})
            cancel = _cancel_form(r, csrf, back, msg if kind == "cancel" else None,
                                  vals if kind == "cancel" else {})
            out.append(
                f'<tr class="actions-row{"" if fail else " collapsed"}" id="act-{h(oid)}">'
                f'<td colspan="8"><div class="forms">'
                f'<div id="act-{h(oid)}-ship"{" hidden" if kind == "cancel" else ""}>'
                f"{ship}</div>"
                f'<div id="act-{h(oid)}-cancel"{" hidden" if kind == "ship" else ""}>'
                f"{cancel}</div>"
                f"</div></td></tr>")
    out.append("</tbody></table>")
    out.append('<datalist id="carriers">' + "".join(f'<option value="{c}">' for c in CARRIERS)
               + "</datalist>")
    return "\n".join(out)


def filters_form(status: str | None, search: str | None, time_params: dict[str, str]) -> str:
    hidden = "".join(f'<input type="hidden" name="{h(k)}" value="{h(v)}">'
                     for k, v in time_params.items() if v)
    opts = '<option value="">All statuses</option>' + "".join(
        f'<option value="{s}"{" selected" if s == status else ""}>{s}</option>' for s in STATUSES)
    return f"""<form method="get" action="/orders" class="filters" aria-label="Filter orders">
{hidden}
<label for="status">Status</label><select id="status" name="status">{opts}</select>
<label for="q">Order id</label><input id="q" name="q" value="{h(search)}" inputmode="numeric"
 placeholder="e.g. 203-0000007">
<button type="submit">Filter</button>
</form>"""


def pager(page: int, more: bool, params: dict[str, Any]) -> str:
    links = []
    if page > 1:
        links.append(f'<a rel="prev" href="/orders{h(qs({**params, "page": page - 1}))}">'
                     "Previous page</a>")
    links.append(f'<span aria-current="page">Page {page}</span>')
    if more:
        links.append(f'<a rel="next" href="/orders{h(qs({**params, "page": page + 1}))}">'
                     "Next page</a>")
    return f'<nav class="pager" aria-label="Pages">{" ".join(links)}</nav>'


def flash(text: str | None, kind: str = "ok") -> str:
    if not text:
        return ""
    role = "alert" if kind == "error" else "status"
    return f'<p class="flash {kind}" role="{role}">{h(text)}</p>'


# --- order page ----------------------------------------------------------------------------


def _value(v: Any) -> str:
    if isinstance(v, dict):
        return ", ".join(f"{k}: {_value(x)}" for k, x in v.items() if x not in (None, "", []))
    if isinstance(v, list):
        return "; ".join(_value(x) for x in v)
    return str(v)


def order_page(data: dict, tq: str) -> str:
    st = data["state"]
    ex = data["explain"]
    grey = "" if st["actionable"] else " (greyed out, no action)"
    facts = [("Status", f"{h(st['status'])}{h(grey)}"),
             ("Purchase date", time_tag(st.get("purchase_date"))),
             ("Payments date", time_tag(st.get("payments_date"))),
             ("Ship by", time_tag(st.get("latest_ship_date"))),
             ("Deliver by", time_tag(st.get("latest_delivery_date"))),
             ("Buyer name", h(st.get("buyer_name"))),
             ("Ship service level", h(st.get("ship_service_level"))),
             ("Cancel reason", h(st.get("cancel_reason")))]
    dl = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts if v)
    warn = (f'<p class="warning"><strong>Warning:</strong> {h(st["warning"])}</p>'
            if st.get("warning") else "")
    items = "".join(
        f"<tr><th scope=\"row\">{h(i['order_item_id'])}</th><td>{h(i['sku'])}</td>"
        f"<td>{h(i['title'])}</td><td>{h(i['quantity'])}</td><td>{h(i['quantity_shipped'])}</td>"
        f"<td>{h(i['quantity_canceled'])}</td><td>{h(i['quantity_to_ship'])}</td></tr>"
        for i in st["items"])
    because = "".join(
        f"<li>{time_tag(b['at'])} <strong>{h(b['type'])}</strong> by {h(b['actor'])}: "
        f"{h(b['why'])} &rarr; {h(b['status_after'])}</li>" for b in ex["because"])
    nd = ex["next_deadline"]
    nxt = (f"At {time_tag(nd['at'])} ({h(nd['kind'])}): {h(nd['what_happens'])}" if nd
           else "No deadline is pending; nothing happens by itself.")
    steps = []
    for s in data["steps"]:
        fields = "".join(f"<li>{h(k)}: {h(_value(v))}</li>" for k, v in s["fields"].items()
                         if v not in (None, "", [], {}))
        steps.append(
            f'<li class="step"><p><span class="pos">#{h(s["position"])}</span> '
            f'<strong>{h(s["type"])}</strong> by <span class="actor">{h(s["actor"])}</span></p>'
            f'<p>business time {time_tag(s["at"])}; recorded {time_tag(s["recorded_at"])}</p>'
            f'<p>status after: {h(s["state"]["status"])}</p>'
            + (f'<ul class="fields">{fields}</ul>' if fields else "") + "</li>")
    return f"""<p><a href="/orders{h(tq)}">&larr; Manage Orders</a></p>
<section aria-labelledby="state-h"><h2 id="state-h">State</h2>{warn}<dl class="facts">{dl}</dl>
<table class="items"><caption>Items</caption><thead><tr><th scope="col">Item</th><th scope="col">SKU</th>
<th scope="col">Title</th><th scope="col">Ordered</th><th scope="col">Shipped</th>
<th scope="col">Canceled</th><th scope="col">To ship</th></tr></thead><tbody>{items}</tbody></table>
</section>
<section aria-labelledby="explain-h"><h2 id="explain-h">Why it is here and what happens next</h2>
<p>{h(st['status'])} because:</p><ol class="because">{because}</ol>
<p><strong>The seller can:</strong> {h(ex['seller_can'])}</p><p><strong>Next:</strong> {nxt}</p>
</section>
<section aria-labelledby="history-h"><h2 id="history-h">History</h2>
<ol class="timeline">{''.join(steps)}</ol></section>"""


# --- metrics, inventory, reports ---------------------------------------------------------


def pct(rate: float | None) -> str:
    return "no orders in the window" if rate is None else f"{rate * 100:.2f}%"


def metrics_page(m: dict, charts: Iterable[tuple[str, str, dict, str]]) -> str:
    rows = []
    for label, x in (("Cancellation rate", m["cancellation_rate"]),
                     ("Late shipment rate", m["late_shipment_rate"]["10d"]),
                     ("Late shipment rate", m["late_shipment_rate"]["30d"]),
                     ("Valid tracking rate", m["valid_tracking_rate"])):
        state = "BREACHED" if x["breached"] else "ok"
        rows.append(
            f'<tr class="{"breached" if x["breached"] else "ok"}"><th scope="row">{h(label)}</th>'
            f"<td>{h(x['window']['days'])} days by {h(x['window']['by'])}</td>"
            f"<td>{h(x['numerator'])} / {h(x['denominator'])}</td><td>{h(pct(x['rate']))}</td>"
            f"<td>{h(x['target_text'])}</td><td>{'&#9888; ' if x['breached'] else ''}{state}</td></tr>")
    bd = m["cancellation_rate"]["breakdown"]
    breakdown = ("<p>Seller-caused cancellations by reason: "
                 + ", ".join(f"{h(k)} {h(n)}" for k, n in bd.items()) + "</p>") if bd else ""
    figs = []
    for key, label, _series, svg in charts:
        figs.append(f'<figure id="fig-{h(key)}"><figcaption>{h(label)}, daily</figcaption>'
                    f"{svg}</figure>")
    return f"""<p>Windows end at {time_tag(m['at'])}: [end &minus; days, end).</p>
<table class="metrics"><caption>Seller performance against the targets</caption>
<thead><tr><th scope="col">Metric</th><th scope="col">Window</th><th scope="col">Count</th>
<th scope="col">Rate</th><th scope="col">Target</th><th scope="col">Status</th></tr></thead>
<tbody>{''.join(rows)}</tbody></table>{breakdown}
<h2>Over time</h2>
<p>One point a day from the ledger's first event (each what the metrics were that day, computed
on the server); a square marker means the target was breached that day.</p>
<div class="charts">{''.join(figs)}</div>"""


def inventory_page(rows: list[dict]) -> str:
    if not rows:
        return '<p class="empty">No tracked SKUs (set a quantity with set-inventory).</p>'
    body = "".join(
        f'<tr class="{"active" if r["active"] else "inactive"}">'
        f'<th scope="row">{h(r["sku"])}</th><td>{h(r["available"])}</td>'
        f'<td>{"Active" if r["active"] else "<strong>Inactive</strong> (quantity 0: not offered)"}</td>'
        f"<td>{h(r['reserved'])}</td></tr>" for r in rows)
    return f"""<table class="inventory"><caption>Tracked SKUs</caption>
<thead><tr><th scope="col">SKU</th><th scope="col">Available</th><th scope="col">Listing</th>
<th scope="col">Reserved by Pending orders</th></tr></thead><tbody>{body}</tbody></table>"""


def reports_page(kinds: Iterable[tuple[str, str, str]], tq: str, redacted: bool) -> str:
    items = "".join(f'<li><a href="/reports/{h(k)}{h(tq)}" download>{h(label)}</a> '
                    f"<span class=\"help\">{h(what)}</span></li>" for k, label, what in kinds)
    note = ("<p>Buyer names, e-mails, phone numbers and addresses are redacted for your "
            "role.</p>" if redacted else "")
    return f"<p>Tab-separated report files, header row first.</p>{note}<ul>{items}</ul>"
