"""Issue 17.1: the soak harness (``bench/soak.py``), a short version in CI.

It kills ``apply`` (with ``follow``/``sync``/``rebuild``), ``feed
shipping-confirmation``, ``import sp-api`` and ``serve`` (mid-request, clients
posting) at random moments, retries each by command id and checks every round; the long run is by hand
(docs/reliability.md, "Soak").
"""

from __future__ import annotations

import json
import subprocess
import sys

from crash_harness import ROOT

SOAK = [sys.executable, "-m", "bench.soak"]


def _soak(*args: str) -> tuple[int, dict]:
    out = subprocess.run(SOAK + list(args), cwd=str(ROOT), capture_output=True, text=True,
                         timeout=120)
    assert "Traceback" not in out.stderr, out.stderr[-2000:]
    return out.returncode, json.loads(out.stdout)


def _assert_clean(fig: dict) -> None:
    assert fig["ok"] is True, fig["problems"]
    assert fig["lost"] == 0 and fig["duplicated"] == 0
    assert fig["check_failures"] == 0 and fig["views_mismatches"] == 0
    assert fig["rounds_differing_from_clean_run"] == 0 and fig["tracebacks"] == 0
    assert fig["rounds"] >= 1 and fig["rounds_checked"] == fig["rounds"]
    assert fig["acknowledged_commands"] > 0


def test_soak_sqlite_rotates_the_writers():
    rc, fig = _soak("--kills", "3", "--orders", "12", "--seed", "5")
    assert rc == 0
    _assert_clean(fig)
    assert fig["kills_per_backend"]["sqlite"] >= 3
    assert set(fig["rounds_per_kind"]) == {"apply", "feed", "import-sp-api"}
    assert fig["kills_per_command"].get("apply", 0) >= 1


def test_soak_postgres_two_kills(pg_url):
    base = pg_url.split("?")[0]
    rc, fig = _soak("--kills", "0", "--pg-kills", "2", "--pg", base,
                    "--kinds", "import-sp-api,feed", "--seed", "2")
    assert rc == 0
    _assert_clean(fig)
    assert fig["kills_per_backend"]["postgresql"] >= 2
    assert "sqlite" not in fig["kills_per_backend"]


def test_soak_usage_errors_exit_2():
    out = subprocess.run(SOAK + ["--kills", "1", "--kinds", "tick"], cwd=str(ROOT),
                         capture_output=True, text=True)
    assert out.returncode == 2 and "--kinds: unknown tick" in out.stderr
    out = subprocess.run(SOAK, cwd=str(ROOT), capture_output=True, text=True)
    assert out.returncode == 2 and "--minutes" in out.stderr
    out = subprocess.run(SOAK + ["--kills", "1", "--kinds", "service", "--service-kills", "0"],
                         cwd=str(ROOT), capture_output=True, text=True)
    assert out.returncode == 2 and "--service-kills and --clients" in out.stderr


# --- the service: order-ledger serve SIGKILLed mid-request ----------------------------------


def test_soak_service_sqlite_kills_the_server_mid_request():
    rc, fig = _soak("--kinds", "service", "--kills", "3", "--service-kills", "3",
                    "--orders", "12", "--seed", "3")
    assert rc == 0
    _assert_clean(fig)
    assert fig["kills_per_command"]["service"] >= 3
    assert fig["kills_per_backend"]["sqlite"] == fig["kills_per_command"]["service"]
    assert set(fig["rounds_per_kind"]) == {"service"}
    svc = fig["service"]
    assert svc["in_flight_at_kill"] >= fig["kills_per_command"]["service"]  # mid-request
    assert svc["requests_sent_again"] >= 1  # clients had to retry by command id


def test_service_workload_keeps_every_aggregate_with_one_client():
    from bench.soak import _keys, service_workload

    lines, shares = service_workload(12, 3, 4)
    assert lines[-1]["type"] == "tick" and shares[-1] == [lines[-1]]  # the tick, last, alone
    posted = [c for s in shares for c in s]
    assert sorted(c["command_id"] for c in posted) == sorted(c["command_id"] for c in lines)
    assert len(shares) == 5 and all(len(s) > 1 for s in shares[:-1])
    order = {c["command_id"]: i for i, c in enumerate(lines)}
    owner: dict[str, int] = {}
    for n, share in enumerate(shares[:-1]):
        assert [order[c["command_id"]] for c in share] == sorted(order[c["command_id"]]
                                                                  for c in share)
        for c in share:
            for key in _keys(c):  # an order, its SKUs and their inventory: one client's
                assert owner.setdefault(key, n) == n, key


def test_unordered_comparison_still_sees_an_aggregate_reordered():
    from bench.soak import _unordered
    from crash_harness import differences

    base = {"orders": {}, "inventory": {}, "commands": set(), "clock": None}
    a = dict(base, events=[("order:1", "Placed", b"1"), ("sku:X", "Set", b"2"),
                           ("order:1", "Shipped", b"3")])
    interleaved = dict(base, events=[("sku:X", "Set", b"2"), ("order:1", "Placed", b"1"),
                                     ("order:1", "Shipped", b"3")])
    swapped = dict(base, events=[("order:1", "Shipped", b"3"), ("sku:X", "Set", b"2"),
                                 ("order:1", "Placed", b"1")])
    assert differences(_unordered(a), _unordered(interleaved)) == []
    assert differences(_unordered(a), _unordered(swapped))
    assert differences(a, interleaved)  # the ordered comparison would not allow it
