"""Opt-in benchmark smoke test: `pytest -m bench` (off by default and in CI).

It runs the whole benchmark at N = 2,000 orders and checks that every
scenario completed and reported its figures. It never asserts a time.
"""

from __future__ import annotations

import argparse
import json

import pytest

from conftest import PG_URL, pg_available


@pytest.mark.bench
def test_benchmark_runs_every_scenario(tmp_path):
    from bench import run

    out = tmp_path / "bench.json"
    args = ["--orders", "2000", "--work", str(tmp_path / "work"), "--out", str(out),
            "--single", "200", "--naive-events", "2000"]
    if pg_available():
        args += ["--pg", PG_URL]
    run.main(args)
    report = json.loads(out.read_text())
    assert set(report["scenarios"]) == set(run.SCENARIOS)
    for name, result in report["scenarios"].items():
        assert "error" not in result, (name, result)
        if "skipped" in result:
            assert name.startswith("pg_") and not pg_available()
            continue
        assert result["peak_rss_mb"] > 0
        assert result.get("events_per_s") or result.get("median_ms") is not None, name
    bulk = report["scenarios"]["apply_bulk"]
    assert 0 < bulk["store_seconds"] < bulk["seconds"]
    assert bulk["ratio_without_store"] > bulk["ratio"]
    assert report["scenarios"]["rebuild_no_writes"]["rows_written"] == 0
    again = report["scenarios"]["rebuild_again"]  # the audit index is kept, not rebuilt
    assert "audit" not in again["rebuilt"] and "orders" in again["rebuilt"]
    for name, base in run.BASELINES.items():
        if "skipped" not in report["scenarios"][name]:
            assert report["scenarios"][name]["baseline"] == base
            assert report["scenarios"][name]["ratio"] > 0


@pytest.mark.bench
def test_apply_scenarios_start_from_an_empty_ledger_in_a_reused_work_dir(tmp_path):
    """Run twice in one work directory, bulk apply still applies every line (a
    ledger left by the first run would turn them all into duplicates)."""
    from bench import run

    a = argparse.Namespace(
        orders=200, seed=1, work=str(tmp_path), single=50, naive_events=100, pg=None)
    first = run.SCENARIOS["apply_bulk"](a)
    again = run.SCENARIOS["apply_bulk"](a)
    assert first["lines_applied"] > 0 and first["lines_duplicate"] == 0
    assert again["lines_applied"] == first["lines_applied"]
    assert again["lines_duplicate"] == 0 and again["events"] == first["events"]
    assert run.SCENARIOS["apply_single"](a)["events"] == run.SCENARIOS["apply_single"](a)["events"]


def test_median_run_picks_the_middle_run_and_keeps_every_figure():
    from bench.run import median_run

    runs = [{"events": 10, "seconds": s} for s in (3.0, 1.0, 2.0)]
    assert median_run(runs) == {"events": 10, "seconds": 2.0, "runs": [3.0, 1.0, 2.0]}
    lat = [{"median_ms": m, "p99_ms": m * 2} for m in (0.5, 0.7)]
    assert median_run(lat)["median_ms"] == 0.5 and median_run(lat)["runs"] == [0.5, 0.7]
    assert median_run([{"seconds": 1.0}, {"error": "boom"}]) == {"error": "boom"}
    assert median_run([{"seconds": 1.0}]) == {"seconds": 1.0}


@pytest.mark.bench
def test_repeat_runs_each_scenario_that_many_times(tmp_path):
    from bench import run

    report = run.main(["--orders", "200", "--work", str(tmp_path), "--repeat", "3",
                       "--only", "raw_read_decode", "rebuild"])
    assert report["repeat"] == 3
    for name in ("raw_read_decode", "rebuild"):
        r = report["scenarios"][name]
        assert len(r["runs"]) == 3 and r["seconds"] == sorted(r["runs"])[1]
    assert report["scenarios"]["rebuild"]["baseline"] == "raw_read_decode"


@pytest.mark.bench
@pytest.mark.skipif(not pg_available(), reason="no local PostgreSQL")
def test_pg_rebuild_alone_builds_its_ledger_in_another_process(tmp_path):
    """Run without pg_apply_bulk before it (as --repeat's reversed rounds do), it
    still rebuilds every event; the peak it reports is its own, and the schema is
    gone afterwards."""
    import psycopg

    from bench import run

    report = run.main(["--orders", "200", "--work", str(tmp_path), "--pg", PG_URL,
                       "--only", "pg_rebuild"])
    r = report["scenarios"]["pg_rebuild"]
    assert "error" not in r and r["events"] > 200
    assert "workers_peak_rss_mb" not in r
    schema, _ = run._pg_url(argparse.Namespace(work=str(tmp_path), pg=PG_URL))
    with psycopg.connect(PG_URL) as con:
        left = con.execute("SELECT 1 FROM information_schema.schemata WHERE schema_name = %s",
                           (schema,)).fetchall()
    assert left == []


@pytest.mark.bench
def test_chain_cost_benchmark_runs_on_both_backends(pg_url):
    from bench import chain_cost

    for pg in (None, pg_url.partition("?schema=")[0]):
        result = chain_cost.run(orders=200, repeat=2, pg=pg)
        assert result["events"] > 200 and len(result["runs"]["with"]) == 2
        assert result["apply_seconds_with_chain"] > 0
