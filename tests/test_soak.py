"""Issue 17.1: the soak harness (``bench/soak.py``), a short version in CI.

It kills ``apply`` (with ``follow``/``sync``/``rebuild``), ``feed
shipping-confirmation`` and ``import sp-api`` at random moments, retries each
by command id and checks every round; the long run is by hand
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
