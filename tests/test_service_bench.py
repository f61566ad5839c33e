"""Opt-in load test of the HTTP service: `pytest -m bench tests/test_service_bench.py`.

Runs bench/service_load.py small (loopback, bounded): 16 clients posting one
command each per request while readers poll and one client follows the event
stream; no request may fail, no event may be lost, and concurrent requests must
share commits. The figures themselves are in docs/benchmarks.md.
"""

from __future__ import annotations

import json

import pytest


@pytest.mark.bench
@pytest.mark.parametrize("workers", [1, 4])
def test_service_load_sqlite(workers, capsys):
    from bench import service_load

    rc = service_load.main(["--commands", "600", "--workers", str(workers), "--json",
                            "--max-seconds", "60"])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rc == 0
    assert result["acked"] == 600 and result["failures"] == 0
    assert result["events_lost"] == 0 and result["events"] == 600
    assert result["commits_seen"] < result["requests_seen"]
    assert result["throughput"] > 0 and result["ratio"] > 0


@pytest.mark.bench
def test_service_load_postgres(pg_url):
    from bench import service_load
    from conftest import PG_URL

    assert service_load.main(["--commands", "300", "--workers", "2", "--db", PG_URL,
                              "--max-seconds", "60"]) == 0
