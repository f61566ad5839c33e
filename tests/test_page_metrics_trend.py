"""Daily seller metrics (replay.trend.metrics_over_time, the page's charts) and their
SVG: each daily point equals `metrics --as-of` that day, late facts and known-at
included, on both backends."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from builders import at, cmd, oid, released
from ledger.application import Ledger
from ledger.clock import FixedClock
from replay.asof import resolve, snapshot
from replay.trend import SERIES, day_boundaries, metrics_over_time

from order_ledger.web.charts import line_chart


def _same_as_as_of(ledger: Ledger, trend: dict, known_at: datetime | None = None) -> int:
    """Every point equals the as-of metrics at its time; returns how many were compared."""
    for p in trend["points"]:
        b = datetime.fromisoformat(p["at"])
        m = snapshot(ledger, resolve(ledger, as_of=b, known_at=known_at)).metrics(b)
        for key, (_, pick) in SERIES.items():
            x = pick(m)
            got = p[key]
            assert (got["numerator"], got["denominator"], got["rate"], got["breached"]) == (
                x.numerator, x.denominator, x.rate, x.breached), (p["at"], key)
    return len(trend["points"])


def test_each_day_equals_metrics_as_of_that_day_on_the_walkthrough(walkthrough_db):
    with Ledger(walkthrough_db, mode="read") as led:
        trend = metrics_over_time(led)
        n = _same_as_as_of(led, trend)
        end = led.now()
    assert n >= 45  # the walkthrough spans seven weeks: a point a day
    assert trend["points"][-1]["at"] == end.isoformat()  # the last point is the ledger's clock
    days = [datetime.fromisoformat(p["at"]) for p in trend["points"][:-1]]
    assert all(d.hour == 0 and d.minute == 0 for d in days)
    assert all((b - a) == timedelta(days=1) for a, b in zip(days, days[1:]))
    # something happened in it: some day breached a target, some did not
    breached = [p["late_shipment_rate_10d"]["breached"] for p in trend["points"]]
    assert any(breached) and not all(breached)
    assert trend["series"]["cancellation_rate"]["target_text"] == "< 2.5%"


def test_a_past_point_ends_the_series_there(walkthrough_db):
    with Ledger(walkthrough_db, mode="read") as led:
        t = datetime(2026, 3, 20, 12, 0, tzinfo=timezone(timedelta(hours=1)))
        trend = metrics_over_time(led, resolve(led, as_of=t))
        _same_as_as_of(led, trend)
    assert trend["points"][-1]["at"] == t.isoformat()
    assert all(datetime.fromisoformat(p["at"]) <= t for p in trend["points"])


REC1 = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)
REC2 = datetime(2026, 6, 2, 12, 0, tzinfo=timezone.utc)


def _late_cancel(db: str) -> None:
    """Two orders released on day 0 (recorded REC1); a seller cancel dated day 1 is
    recorded on REC2 after a tick at day 3: a late fact."""
    clock = FixedClock(REC1)
    with Ledger(db, clock=clock) as led:
        lines = [json.dumps(c) for c in (*released(oid(1)), *released(oid(2), when_minutes=60),
                                          cmd("tick", at(days=3)))]
        assert all(o.ok for o in led.apply_lines(lines))
        clock.set(REC2)
        late = led.execute(cmd("cancel", at(days=1), order_id=oid(1), by="seller",
                               reason="NoInventory"))
        assert late.status == "applied", late.error


def test_a_late_fact_counts_from_its_own_day_and_known_at_leaves_it_out(db_url):
    _late_cancel(db_url)
    with Ledger(db_url, mode="read") as led:
        trend = metrics_over_time(led)
        _same_as_as_of(led, trend)
        rates = {p["at"][:10]: p["cancellation_rate"]["numerator"] for p in trend["points"]}
        # the cancel dated day 1 (2026-03-03) shows from that day's end, though recorded later
        assert rates["2026-03-03"] == 0 and rates["2026-03-04"] == 1
        then = REC1 + timedelta(hours=1)
        known_then = metrics_over_time(led, resolve(led, known_at=then))
        _same_as_as_of(led, known_then, known_at=then)
        assert all(p["cancellation_rate"]["numerator"] == 0 for p in known_then["points"])


def test_the_last_point_is_what_metrics_gives_now(db_url, tmp_path):
    """A cancel acted after the ledger's last tick (the clock) counts in `metrics` and so
    in the chart's last point, not in the days before."""
    from projections import BlockingViews

    with Ledger(db_url) as led:
        lines = [json.dumps(c) for c in (*released(oid(1)), *released(oid(2), when_minutes=60),
                                          cmd("tick", at(days=2)))]
        assert all(o.ok for o in led.apply_lines(lines, advance_clock=True))
        out = led.execute(cmd("cancel", at(days=2, hours=3), order_id=oid(1), by="seller",
                              reason="NoInventory"))
        assert out.status == "applied", out.error
    with Ledger(db_url, mode="read") as led:
        clock = led.now()
        trend = metrics_over_time(led)
        now = BlockingViews(led, str(tmp_path / "v.db")).metrics(clock)
    last = trend["points"][-1]
    assert last["at"] == clock.isoformat()
    assert (last["cancellation_rate"]["numerator"], last["cancellation_rate"]["denominator"]) \
        == (now.cancellation_rate.numerator, now.cancellation_rate.denominator) \
        == (1, 2)
    assert all(p["cancellation_rate"]["numerator"] == 0 for p in trend["points"][:-1])


def test_an_empty_ledger_has_no_points(sqlite_url):
    Ledger(sqlite_url).close()
    with Ledger(sqlite_url, mode="read") as led:
        trend = metrics_over_time(led)
    assert trend["points"] == [] and set(trend["series"]) == set(SERIES)


def test_day_boundaries_keep_the_last_days_when_capped():
    tz = timezone(timedelta(hours=2))
    end = datetime(2026, 5, 10, 15, 30, tzinfo=tz)
    first = datetime(2026, 5, 1, 23, 0, tzinfo=timezone.utc)  # 2 May 01:00 at +02:00
    days = day_boundaries(first, end)
    assert days[0] == datetime(2026, 5, 3, tzinfo=tz) and days[-1] == end
    assert len(days) == 9
    capped = day_boundaries(first, end, max_days=3)
    assert capped == [datetime(2026, 5, 9, tzinfo=tz), datetime(2026, 5, 10, tzinfo=tz), end]


@pytest.mark.parametrize("breached", [False, True])
def test_the_chart_says_in_text_what_it_shows(breached):
    points = [{"at": f"2026-03-0{d}T00:00:00+01:00",
               "late_shipment_rate_10d": {"numerator": d, "denominator": 10, "rate": d / 10,
                                          "breached": breached}} for d in range(1, 5)]
    points.insert(2, {"at": "2026-03-02T12:00:00+01:00",
                      "late_shipment_rate_10d": {"numerator": 0, "denominator": 0,
                                                 "rate": None, "breached": False}})
    svg = line_chart("late_shipment_rate_10d", "Late <10 days>", 0.04, "< 4%", points)
    assert svg.startswith("<svg") and 'role="img"' in svg
    assert "<title id=\"chart-late_shipment_rate_10d-title\">Late &lt;10 days&gt;</title>" in svg
    assert "target &lt; 4%" in svg and 'data-points="5"' in svg
    assert svg.count('<path class="rate"') == 2  # a gap where nothing was in the window
    # a breach is a square marker with "target breached" in its tooltip, not only a colour
    assert svg.count("<rect") == (4 if breached else 0)
    assert svg.count(" - target breached</title>") == (4 if breached else 0)
    assert f"target breached on {4 if breached else 0} of them" in svg
    assert "latest 40%" in svg
