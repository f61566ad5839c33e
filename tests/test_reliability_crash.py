"""Issue 7.2: SIGKILL at random points loses and duplicates nothing.

The harness (``tests/crash_harness.py``, runnable as ``python -m
tests.crash_harness --kills N``) kills ``order-ledger apply`` and re-runs it on
the same ledger; see its docstring. CI runs a short version; the long one
(100 kills) is run by hand and its figures are in docs/reliability.md.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from crash_harness import CLI, ROOT, harness, main, slow_gate  # noqa: F401 - autouse fixture


def _assert_clean(report) -> None:
    assert report.ok, report.problems[:10]
    assert report.lost == 0 and report.duplicated == 0 and report.mismatched_rounds == 0
    assert report.tracebacks == 0 and report.check_problems == 0


def test_crash_harness_short_sqlite():
    report = harness(8, orders=30, seed=7, batch_size=10, tick_every=24)
    _assert_clean(report)
    assert report.kills == 8 and report.rounds >= 1


@pytest.mark.slow
def test_crash_harness_postgres(pg_url):
    report = harness(8, orders=40, seed=11, batch_size=20, db=pg_url)
    _assert_clean(report)


@pytest.mark.slow
def test_crash_harness_encrypted():
    report = harness(8, orders=40, seed=13, batch_size=20, encrypt=True)
    _assert_clean(report)
    assert report.encrypted


@pytest.mark.slow
def test_crash_harness_long():
    report = harness(40, orders=60, seed=17, batch_size=25)
    _assert_clean(report)


@pytest.mark.slow
def test_harness_command_line(capsys):
    assert main(["--kills", "2", "--orders", "10", "--seed", "3", "--json", "--no-views"]) == 0
    assert '"lost": 0' in capsys.readouterr().out


def test_killed_backup_leaves_no_partial_file(tmp_path):
    """A backup killed half-way leaves nothing under the target name."""
    import json

    from bench.generate import iter_lines

    db = str(tmp_path / "ledger.db")
    src = tmp_path / "cmds.jsonl"
    src.write_text("\n".join(iter_lines(150, 2)) + "\n")
    subprocess.run(CLI + ["apply", "-q", str(src), "--db", db], check=True, cwd=str(ROOT),
                   capture_output=True)
    target = tmp_path / "backup.db"
    for delay in (0.3, 0.5, 0.7):
        proc = subprocess.Popen(CLI + ["backup", str(target), "--db", db], cwd=str(ROOT),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if target.exists():  # the backup finished before the kill: it must be whole
            r = subprocess.run(CLI + ["check", "--json", "--db", str(target)], cwd=str(ROOT),
                               capture_output=True, text=True)
            assert r.returncode == 0 and json.loads(r.stdout)["ok"], r.stdout + r.stderr
            target.unlink()
    leftovers = [p for p in os.listdir(tmp_path) if p.startswith("backup.db.partial")]
    # a killed backup may leave its temporary file, never a half-written target
    assert all(p.startswith("backup.db.partial-") for p in leftovers)
