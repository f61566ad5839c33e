"""As of: reads of the past equal what the live views showed at that moment."""

from __future__ import annotations

import json
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import test_projections_property as tpp
from builders import T0, WALKTHROUGH, lines, released, walkthrough_lines
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.application import Ledger
from order_ledger.cli import main
from replay import asof

O7, O22, O23, O44 = ("203-0000007-0055433", "203-0000022-0174218", "203-0000023-0182137",
                     "203-0000044-0348436")

#: where the walkthrough is cut: some right after a deadline fell due but before the
#: next command applied it (03-25 15:00: PaymentNotVerified due 14:00, applied by the
#: 06:00 tick next day; 04-11 16:00+02:00: order 22's day-30 cancel due that minute)
CUTS = ["2026-03-04T15:00:00+01:00", "2026-03-25T15:00:00+01:00",
        "2026-04-11T16:00:00+02:00", "2026-04-17T14:00:00+02:00"]


def _at(line: str) -> datetime:
    return datetime.fromisoformat(json.loads(line)["at"])


def _shown(result: tuple[int, str]) -> tuple[int, str]:
    """``show``: the view, or just "not there" (the message names the point)."""
    return result if result[0] == 0 else (result[0], "")


def test_as_of_and_at_position_equal_what_the_live_views_showed(tmp_path):
    db = str(tmp_path / "wt.db")
    all_lines = WALKTHROUGH.read_text(encoding="utf-8").splitlines()
    runner = CliRunner()

    def run(*args: str, ok: bool = True) -> tuple[int, str]:
        r = runner.invoke(main, [*args, "--db", db])
        if ok:
            assert r.exit_code == 0, (args, r.output)
        return r.exit_code, r.output

    def reads(*point: str, at: str | None = None) -> dict:
        when = ["--at", at] if at else []
        return {
            "orders": run("orders", "--json", *point),
            "inventory": run("inventory", "--json", *point),
            "unshipped": run("report", "unshipped", *point, *when),
            "orders_report": run("report", "orders", *point),
            "metrics": run("metrics", "--json", *point, *when),
            **{f"show {o}": _shown(run("show", o, "--json", *point, ok=False))
               for o in (O7, O22, O44)},
        }

    recorded = []
    done = 0
    for cut in CUTS:
        t = datetime.fromisoformat(cut)
        chunk = [line for line in all_lines[done:] if _at(line) <= t]
        done += len(chunk)
        path = tmp_path / "chunk.jsonl"
        path.write_text("\n".join(chunk) + "\n", encoding="utf-8")
        run("apply", str(path))
        with Ledger(db) as led:
            head = led.head()
        recorded.append((cut, head, reads(at=cut)))  # live: the views, caught up
    (tmp_path / "rest.jsonl").write_text("\n".join(all_lines[done:]) + "\n", encoding="utf-8")
    run("apply", str(tmp_path / "rest.jsonl"))
    assert recorded[-1][2]["show " + O7][0] == 0 and recorded[0][2]["show " + O44][0] == 1
    for cut, head, live in recorded:
        assert reads("--as-of", cut) == live, cut  # report and metrics times default to T
        assert reads("--at-position", str(head), at=cut) == live, cut


def test_a_deadline_not_applied_yet_is_not_applied_as_of_then(tmp_path):
    """Order 22's day-30 cancel was due 2026-04-11 15:00+01:00 but applied by the
    next morning's tick: an hour after it fell due the seller still saw it Unshipped."""
    with Ledger(str(tmp_path / "wt.db")) as led:
        list(led.apply_lines(walkthrough_lines()))
        t = datetime.fromisoformat("2026-04-11T17:00:00+02:00")
        cancel = next(p for p, _, e in led.iter_events()
                      if type(e).__name__ == "LedgerCanceled" and e.order_id == O22)
        [(_, _, event)] = led.read_events(cancel - 1, 1)
        assert event.at <= t  # "every event with at <= T" would include it...
        point = asof.resolve(led, t)
        assert point.position < cancel  # ...but the ledger had not applied it then
        view = asof.order_view(led, O22, point)
        assert view["status"] == "Unshipped"
        assert view["next_deadline"] == {"kind": "ship-limit", "at": "2026-04-11T15:00:00+01:00"}
        assert asof.snapshot(led, point).order(O22).status == "Unshipped"
        # the tick at 06:00 the next morning applied it
        after = asof.resolve(led, datetime.fromisoformat("2026-04-12T06:00:00+02:00"))
        assert asof.order_view(led, O22, after)["status"] == "Canceled"
        assert asof.resolve(led, datetime.fromisoformat("2026-04-12T05:59:59+02:00")).position \
            == point.position
        # the clock after the tick is the tick's time, not the deadline's
        assert asof.clock_at(led, cancel) == datetime.fromisoformat("2026-04-12T06:00:00+02:00")


def test_points_on_both_backends(db_url):
    with Ledger(db_url) as led:
        list(led.apply_lines(lines(*released("203-0000001-0007919"))))
        head = led.head()
        assert asof.resolve(led).position == head
        assert asof.resolve(led, T0 - timedelta(minutes=1)).position == 0
        assert asof.resolve(led, T0).position == 1  # the OrderPlaced at exactly T0
        # the verification 5 minutes in is there; the hold expiry at 30 is not yet
        p = asof.resolve(led, T0 + timedelta(minutes=29))
        assert asof.order_view(led, "203-0000001-0007919", p)["status"] == "Pending"
        p = asof.resolve(led, T0 + timedelta(minutes=30))
        assert p.position == head
        assert asof.order_view(led, "203-0000001-0007919", p)["status"] == "Unshipped"
        assert asof.clock_at(led, head) == led.now()
        assert asof.order_view(led, "203-0000001-0007919", 0) is None
        with pytest.raises(asof.AsOfError, match="beyond"):
            asof.resolve(led, at_position=head + 1)
        with pytest.raises(asof.AsOfError, match="not both"):
            asof.resolve(led, T0, 1)


def test_as_of_cli_errors(tmp_path):
    db = str(tmp_path / "l.db")
    with Ledger(db) as led:
        list(led.apply_lines(lines(*released("203-0000001-0007919"))))
    runner = CliRunner()

    def code(*args: str) -> tuple[int, str]:
        r = runner.invoke(main, [*args, "--db", db])
        return r.exit_code, r.output

    assert code("orders", "--as-of", T0.isoformat(), "--at-position", "1")[0] == 2
    assert code("metrics", "--at-position", "99")[0] == 2
    assert code("inventory", "--as-of", "2026-03-02T09:00:00")[0] == 2  # no offset
    n, out = code("show", "203-0000001-0007919", "--as-of", "2026-03-01T00:00:00Z")
    assert n == 1 and "as of 2026-03-01" in out
    assert code("orders", "--as-of", "2026-03-01T00:00:00Z", "--json") == (0, "[]\n")
    assert runner.invoke(main, ["orders", "--as-of", T0.isoformat(), "--db",
                                str(tmp_path / "missing.db")]).exit_code == 2
    # the views were never created by an as-of read
    assert not (tmp_path / "l.views.db").exists()


# --- property: as of T == a ledger that only ever received the commands up to T --------------


@st.composite
def _as_of_scenario(draw):
    commands, *_ = draw(tpp.scenarios())
    times = [datetime.fromisoformat(c["at"]) for c in commands]
    base = draw(st.sampled_from(times))
    t = base + timedelta(minutes=draw(st.sampled_from([-1, 0, 0, 1, 7 * 60, 3 * 1440])))
    return commands, t


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(_as_of_scenario())
def test_as_of_equals_a_ledger_fed_only_the_commands_up_to_then(scenario):
    commands, t = scenario
    with tempfile.TemporaryDirectory() as tmp:
        with Ledger(str(Path(tmp) / "full.db")) as full, \
                Ledger(str(Path(tmp) / "prefix.db")) as prefix:
            list(full.apply_lines([json.dumps(c) for c in commands]))
            list(prefix.apply_lines([json.dumps(c) for c in commands
                                     if datetime.fromisoformat(c["at"]) <= t]))
            point = asof.resolve(full, t)
            assert point.position == prefix.head()
            past, then = asof.snapshot(full, point), asof.snapshot(prefix, prefix.head())
            assert past.orders() == then.orders()
            assert past.inventory() == then.inventory()
            assert past.notifications() == then.notifications()
            assert past.metrics(t) == then.metrics(t)
            assert past.report_unshipped(t) == then.report_unshipped(t)
            for o in tpp.ORDERS:
                assert asof.order_view(full, o, point) == (
                    prefix.order(o).view() if prefix.order(o) else None)
