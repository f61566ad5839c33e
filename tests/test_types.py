"""The packages type-check: strict on ``ledger`` and ``projections``, the default
checks on ``replay`` and ``order_ledger`` (configured in pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_packages_type_check() -> None:
    """``python3 -m mypy`` as CI runs it, with mypy's own cache in the project
    (``.mypy_cache``): after CI's type-check step, or a developer's last run, only
    what changed since is checked again, with the same result as a cold run."""
    pytest.importorskip("mypy")
    proc = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Success: no issues found in" in proc.stdout


def test_write_side_and_read_models_are_checked_strictly(tmp_path: Path) -> None:
    """The strict flags reach ledger/ and projections/: an unannotated function
    there is an error, while the same code in replay/ passes the default checks.
    The probes are modules of stand-in packages in a temporary directory, checked
    with the project's configuration."""
    pytest.importorskip("mypy")
    for package, expected in (("ledger", 1), ("projections", 1), ("replay", 0)):
        root = tmp_path / package
        (root / package).mkdir(parents=True)
        (root / package / "__init__.py").write_text("")
        (root / package / "probe.py").write_text("def helper(x):\n    return x\n")
        proc = subprocess.run(
            [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
             "--cache-dir", str(tmp_path / "probe-cache"), f"{package}/probe.py"],
            cwd=root, capture_output=True, text=True, timeout=300)
        assert proc.returncode == expected, (package, proc.stdout + proc.stderr)
        if expected:
            assert "no-untyped-def" in proc.stdout
