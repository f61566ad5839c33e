"""The dependency policy of docs/operations.md, checked on pyproject.toml."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _requirements() -> list[str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    reqs = list(data["project"]["dependencies"]) + list(data["build-system"]["requires"])
    for extra in data["project"]["optional-dependencies"].values():
        reqs.extend(extra)
    return reqs


def test_every_dependency_has_an_upper_bound():
    unbounded = [r for r in _requirements() if not re.search(r"(<|==|~=)", r)]
    assert unbounded == []


def test_zero_major_dependencies_are_bounded_below_their_next_minor():
    for req in _requirements():
        m = re.search(r"<\s*0\.(\d+)", req)
        low = re.search(r">=\s*0\.(\d+)", req)
        if low:
            assert m, f"{req}: a 0.x dependency needs a bound below its next minor release"


def test_the_policy_is_written_down():
    ops = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    assert "## Dependencies" in ops
    for req in _requirements():
        name = re.split(r"[\[<>=~ ]", req, maxsplit=1)[0]
        assert f"`{name}`" in ops, f"{name} is not in the dependency table of docs/operations.md"
