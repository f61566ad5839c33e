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
