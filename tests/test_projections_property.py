"""Property: catching up incrementally -- any batch sizes, stops at any positions,
restarts with new Views objects, the ledger growing in between -- gives exactly
the rows and byte-identical reports of one rebuild (in one process, or in
several that each write their own partition's rows), and of ``project()``; on both
backends (a SQLite ledger file and a PostgreSQL schema)."""

from __future__ import annotations

import json
import sqlite3
import tempfile
import uuid
from datetime import timedelta
from pathlib import Path

from builders import T0, at, cmd, item, oid, place
import pytest
from conftest import PG_URL, _drop_schema, pg_available
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_projections_support import everything

from ledger.application import Ledger
from projections import Views, project

ORDERS = [oid(n) for n in range(1, 7)]
SKUS = ["SKU-1", "SKU-2"]
ITEMS = ["I1", "I2"]
DAY = 24 * 60

gap_st = st.integers(1, 3 * DAY)
ship_st = st.tuples(st.just("ship"), st.sampled_from([None, None, "I1", "I2"]),
                    st.integers(1, 3), st.booleans())
step_st = st.one_of(
    ship_st, ship_st, ship_st,
    st.tuples(st.just("cancel"), st.sampled_from(["NoInventory", "BuyerCanceled", "PricingError"])),
    st.tuples(st.just("request")),
    st.tuples(st.just("adjust"), st.sampled_from(ITEMS), st.integers(0, 2),
              st.sampled_from(["NoInventory", "CustomerCancel", "GeneralAdjustment"])),
)


@st.composite
def order_script(draw, order_id: str) -> list[tuple[int, dict]]:
    """One order's commands with their minute: place, a payment outcome (or a buyer
    cancel in the hold), then a few seller/buyer steps. Some may be rejected."""
    t = draw(st.integers(0, 2 * DAY))
    lines = [(sku, q) for sku, q in draw(st.lists(
        st.tuples(st.sampled_from(SKUS), st.integers(1, 3)), min_size=1, max_size=2))]
    out = [(t, place(order_id, at(t), [item(ITEMS[i], sku, q) for i, (sku, q) in
                                        enumerate(lines)]))]
    first = draw(st.sampled_from(["verified", "verified", "verified", "late", "extended",
                                  "declined", "fraud", "buyer-cancel", "nothing"]))
    t += draw(st.integers(1, 29))
    if first == "buyer-cancel":
        out.append((t, cmd("cancel", at(t), order_id=order_id, by="buyer")))
    elif first == "late":  # verified after the hold: promise dates shift
        t += draw(st.integers(30, 2 * DAY))
        out.append((t, cmd("verify-payment", at(t), order_id=order_id, outcome="verified")))
    elif first != "nothing":
        out.append((t, cmd("verify-payment", at(t), order_id=order_id, outcome=first)))
    for step in draw(st.lists(step_st, max_size=4)):
        t += draw(gap_st)
        kind = step[0]
        if kind == "ship":
            c = cmd("ship", at(t), order_id=order_id, carrier_code="UPS",
                    ship_date=(T0 + timedelta(minutes=t)).date().isoformat())
            if step[3]:
                c["tracking_number"] = "1Z999"
            if step[1] is not None:
                c["items"] = [{"order_item_id": step[1], "quantity": step[2]}]
        elif kind == "cancel":
            c = cmd("cancel", at(t), order_id=order_id, by="seller", reason=step[1])
        elif kind == "request":
            c = cmd("request-cancel", at(t), order_id=order_id)
        else:
            adj = {"order_item_id": step[1], "reason": step[3], "quantity_cancelled": step[2]}
            if step[2] == 0:
                adj["item_price_adj"] = "1"
            c = cmd("adjust", at(t), order_id=order_id, items=[adj])
        out.append((t, c))
    return out


@st.composite
def scenarios(draw):
    n = draw(st.integers(1, len(ORDERS)))
    timed: list[tuple[int, dict]] = []
    for o in ORDERS[:n]:
        timed += draw(order_script(o))
    for sku in draw(st.lists(st.sampled_from(SKUS), max_size=2)):
        t = draw(st.integers(0, 3 * DAY))
        timed.append((t, cmd("set-inventory", at(t), sku=sku, quantity=draw(st.integers(0, 8)))))
    # ticks: hold expiries, and perhaps the day-23 warnings and day-30 cancellations
    for t in draw(st.lists(st.sampled_from([40, DAY, 10 * DAY, 24 * DAY, 31 * DAY]),
                           max_size=3)):
        timed.append((t, cmd("tick", at(t))))
    commands = [c for _, c in sorted(timed, key=lambda x: x[0])]
    # the ledger grows in chunks; after each one the views catch up in pieces
    cuts = sorted(draw(st.lists(st.integers(0, len(commands)), max_size=2)))
    plan = draw(st.lists(st.tuples(st.integers(1, 7), st.integers(1, 60)), min_size=1,
                         max_size=4))
    report_minutes = draw(st.integers(0, 40 * DAY))
    jobs = draw(st.sampled_from([1, 2, 3]))  # the reference rebuild: 1 or more processes
    # a rebuild with a tiny memory budget: records written early, settled orders
    # forgotten and loaded back when a later event needs them
    limits = draw(st.sampled_from([(2, 100), (4, 100), (10_000, 1), (10_000, 3)]))
    small = dict(cache_limit=limits[0], defer_limit=limits[1],
                 batch_size=draw(st.integers(1, 4)), jobs=draw(st.sampled_from([1, 2])))
    return commands, cuts, plan, report_minutes, jobs, small


def _table_rows(path: str) -> dict[str, list[tuple]]:
    """Every row of every table of a views file, sorted (the stored bytes, not the
    reads: a column no read shows must agree too)."""
    con = sqlite3.connect(path)
    try:
        names = [r[0] for r in con.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name != 'checkpoints'")]
        return {n: sorted(con.execute(f"SELECT * FROM {n}").fetchall(), key=repr)
                for n in names}
    finally:
        con.close()


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request):
    if request.param == "postgres" and not pg_available():
        pytest.skip(f"PostgreSQL is not reachable at {PG_URL}")
    return request.param


def _ledger_location(backend: str, d: Path) -> tuple[str, str | None]:
    """A new ledger location and, on PostgreSQL, its schema (dropped by the caller)."""
    if backend == "sqlite":
        return str(d / "l.db"), None
    schema = "p_" + uuid.uuid4().hex[:12]
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}schema={schema}", schema


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(scenario=scenarios())
async def test_incremental_catch_up_equals_one_rebuild(backend, scenario):
    commands, cuts, plan, report_minutes, jobs, small_options = scenario
    report_time = T0 + timedelta(minutes=report_minutes)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        location, schema = _ledger_location(backend, d)
        try:
            await _check(location, d, commands, cuts, plan, report_time, jobs, small_options)
        finally:
            if schema is not None:
                _drop_schema(schema)


async def _check(location, d, commands, cuts, plan, report_time, jobs, small_options):
    """Catch up in pieces, rebuild twice (as drawn), compute in memory; compare."""
    with Ledger(location) as led:
        incremental = str(d / "inc.views.db")
        bounds = [0, *cuts, len(commands)]
        for lo, hi in zip(bounds, bounds[1:]):
            list(led.apply_lines([json.dumps(c) for c in commands[lo:hi]]))
            head = led.head()
            # stop at positions along the way, each time with a new Views object
            pos = 0
            for step, batch_size in plan:
                pos = min(head, pos + step)
                async with Views(led, incremental, batch_size=batch_size,
                                 auto_sync=False) as v:
                    await v.sync(upto=pos)
        async with Views(led, incremental, batch_size=3) as v:
            got = await everything(v, report_time)
            assert set((await v.checkpoints()).values()) == {led.head()}
        async with Views(led, str(d / "full.views.db"), jobs=jobs,
                         batch_size=plan[0][1]) as v:
            await v.rebuild()
            want = await everything(v, report_time)
        async with Views(led, str(d / "small.views.db"), **small_options) as v:
            await v.rebuild()
            small = await everything(v, report_time)
        memory = await everything(project(led.iter_events()), report_time)
    stored = _table_rows(str(d / "full.views.db"))
    assert _table_rows(incremental) == stored
    assert _table_rows(str(d / "small.views.db")) == stored
    for key in want:
        assert got[key] == want[key], key
        assert memory[key] == want[key], key
        assert small[key] == want[key], key
    assert got["report_orders"].encode() == want["report_orders"].encode()
    assert got["report_unshipped"].encode() == want["report_unshipped"].encode()
