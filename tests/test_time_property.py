"""Property: facts from several sources, in any interleaving, give the ledger of the
one time-sorted stream.

Each order's commands come from one source, each source is time-sorted, the
sources are interleaved at random -- applied one line at a time, in batches, or by
concurrent processes -- and ticks are issued only at times every source has
passed. The final state of every order, the seller's views and the report files
must equal those of the one time-sorted stream (docs/decisions.md, "Time").
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

from builders import T0, at, cmd, oid, place
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_projections_property import order_script
from test_projections_support import everything

from ledger.application import Ledger
from ledger.clock import FixedClock
from projections import project

ORDERS = [oid(n) for n in range(1, 7)]
REC = datetime(2027, 6, 1, tzinfo=timezone.utc)  # the recording clock: after every fact
END = 40 * 24 * 60  # a last tick 40 days in: every deadline has fired
REPORT_TIME = T0 + timedelta(days=45)


def _tick(minute: int) -> dict:
    return cmd("tick", at(minute), command_id=f"tick-{minute}")


@st.composite
def multi_source(draw):
    n = draw(st.integers(2, 5))
    k = draw(st.integers(2, 3))
    sources: list[list[tuple[int, dict]]] = [[] for _ in range(k)]
    for o in ORDERS[:n]:
        script = draw(order_script(o))
        for i, (t, c) in enumerate(script):
            c["command_id"] = f"{o}-{i}"
        sources[draw(st.integers(0, k - 1))].extend(script)
    for src in sources:
        src.sort(key=lambda x: x[0])
    turns = draw(st.permutations([i for i, src in enumerate(sources) for _ in src]))
    ticks = draw(st.lists(st.booleans(), min_size=len(turns), max_size=len(turns)))
    return sources, turns, ticks


def interleave(sources, turns, ticks) -> list[dict]:
    """The lines as they reach the ledger: the sources interleaved; after some turns a
    tick at one minute before the earliest time any source still has to deliver."""
    nxt = [0] * len(sources)
    out: list[dict] = []
    last_tick = -1
    for s, tick in zip(turns, ticks):
        out.append(sources[s][nxt[s]][1])
        nxt[s] += 1
        if tick:
            pending = [src[i][0] for src, i in zip(sources, nxt) if i < len(src)]
            w = min(pending) - 1 if pending else END
            if w > last_tick:
                out.append(_tick(w))
                last_tick = w
    out.append(_tick(END))
    return out


def time_sorted(lines: list[dict]) -> list[dict]:
    """The one time-sorted stream of the same lines (a tick after the commands of its
    minute, as it came after them in any interleaving)."""
    def key(c):
        t = datetime.fromisoformat(c["at"])
        return (t, c["type"] == "tick")
    return sorted(lines, key=key)


def _apply(db: str, lines: list[dict], batch_size: int) -> list[tuple[str, str]]:
    with Ledger(db, clock=FixedClock(REC)) as led:
        outs = list(led.apply_lines([json.dumps(c) for c in lines], batch_size=batch_size))
    return [(o.command_id, o.status) for o in outs]


def _state(db: str) -> dict:
    """Every order's state, the seller's views and both report files."""
    with Ledger(db) as led:
        orders = {o: (led.order(o).view() if led.order(o) else None) for o in ORDERS}
        views = asyncio.run(everything(project(led.iter_events()), REPORT_TIME))
        # every order's own events, in order (a deadline's command_id names whichever
        # line fired it -- a tick or the order's next command -- and may differ)
        per_order = {o: [(type(e).__name__, e.at) for _, _, e in
                         led.iter_events() if getattr(e, "order_id", None) == o]
                     for o in ORDERS}
    # The outbox lists notifications in recording order, with their log positions: the
    # same notifications, in an order and at positions that follow the interleaving.
    views["notifications"] = sorted(
        json.dumps({k: v for k, v in n.items() if k not in ("position", "seq")},
                   sort_keys=True) for n in views["notifications"])
    return {"orders": orders, "views": views, "events": per_order}


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(multi_source(), st.sampled_from([1, 4, 1000]))
def test_any_interleaving_of_sources_gives_the_time_sorted_ledger(scenario, batch_size):
    sources, turns, ticks = scenario
    lines = interleave(sources, turns, ticks)
    with tempfile.TemporaryDirectory() as d:
        mixed, sorted_db = str(Path(d) / "mixed.db"), str(Path(d) / "sorted.db")
        outcomes = dict(_apply(mixed, lines, batch_size))
        reference = dict(_apply(sorted_db, time_sorted(lines), 1000))
        assert outcomes == reference  # every line decided the same way
        assert not any(s == "rejected" and cid.startswith("tick") for cid, s in outcomes.items())
        got, want = _state(mixed), _state(sorted_db)
        assert got["events"] == want["events"]
        assert got["orders"] == want["orders"]
        for key in want["views"]:
            assert got["views"][key] == want["views"][key], key


def test_concurrent_processes_applying_their_own_sources(tmp_path, db_url):
    """Three sources, each applied by its own process at the same time (no ticks until
    all are done): nothing rejected for time, and the ledger of the time-sorted stream."""
    rng = random.Random(7)
    sources: list[list[dict]] = [[], [], []]
    for n in range(1, 31):
        t = rng.randrange(0, 3 * 24 * 60)
        o = oid(n)
        script = [place(o, at(t)),
                  cmd("verify-payment", at(t + 5), order_id=o, outcome="verified")]
        if n % 3:
            script.append(cmd("ship", at(t + 24 * 60), order_id=o, carrier_code="UPS",
                              ship_date=(T0 + timedelta(minutes=t + 24 * 60)).date().isoformat(),
                              tracking_number=f"1Z{n}"))
        for i, c in enumerate(script):
            c["command_id"] = f"{o}-{i}"
        sources[n % 3].extend(script)
    files = []
    for i, src in enumerate(sources):
        src.sort(key=lambda c: datetime.fromisoformat(c["at"]))
        f = tmp_path / f"source{i}.jsonl"
        f.write_text("".join(json.dumps(c) + "\n" for c in src))
        files.append(f)
    exe = Path(sys.executable).with_name("order-ledger")
    prog = [str(exe)] if exe.exists() else ["order-ledger"]
    Ledger(db_url).close()  # created before the writers race to create it
    procs = [subprocess.Popen([*prog, "apply", str(f), "--db", db_url, "--json",
                               "--batch-size", "3"], stdout=subprocess.PIPE, text=True)
             for f in files]
    outs = [json.loads(line) for p in procs for line in p.communicate(timeout=300)[0].splitlines()]
    assert all(p.returncode == 0 for p in procs)
    assert [o for o in outs if o["status"] != "applied"] == []
    with Ledger(db_url, clock=FixedClock(REC)) as led:
        assert led.execute(_tick(END)).status == "applied"
    reference = str(tmp_path / "ref.db")
    everything_sorted = time_sorted([c for src in sources for c in src] + [_tick(END)])
    _apply(reference, everything_sorted, 1000)
    got, want = _state(db_url), _state(reference)
    assert got["orders"] == want["orders"]
    assert got["views"] == want["views"]
