"""The docs are executable: every ``order-ledger`` command they show runs as shown.

Conventions (also in docs/decisions.md, "Executable docs"):

- A fenced block marked ``sh`` that mentions ``order-ledger`` is run, every
  line of it, in order (``export`` lines too); a chain ``setup && order-ledger
  …`` runs from its first ``order-ledger`` (the installation steps before it
  are the test environment's job). A ``console`` block runs its ``$ `` lines.
  Blocks marked ``text`` (synopses such as ``[--db PATH]``), plain blocks and
  blocks that never mention ``order-ledger`` (pip, pytest, bench) are not run.
- A command must exit 0 unless its line ends with ``# exit N``.
- Each file runs in one shell, in order, in a fresh temporary directory that
  holds a link to ``examples/``: the default ledger ``./order-ledger.db`` starts
  empty, ``/tmp/`` in a command means that directory, and a ``postgresql://``
  URL is pointed at a fresh schema of the test server (dropped afterwards).
- Standard input is empty and not a terminal, as in CI.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^\s*```(\S*)")
EXIT = re.compile(r"#\s*exit\s+(\d+)\s*$")
PG = re.compile(r"postgresql://[^\s'\"]+")


def runnable_commands(path: Path) -> list[tuple[int, str, int]]:
    """``(line number, shell command, expected exit status)`` in document order."""
    out: list[tuple[int, str, int]] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        info, start = m.group(1), i + 1
        j = start
        while j < len(lines) and not FENCE.match(lines[j]):
            j += 1
        body = lines[start:j]
        i = j + 1
        if info not in ("sh", "console") or not any("order-ledger" in ln for ln in body):
            continue
        k = 0
        while k < len(body):
            n, text = start + k + 1, body[k]
            while text.endswith("\\") and k + 1 < len(body):  # continuation lines
                k += 1
                text = text[:-1] + " " + body[k].strip()
            k += 1
            if info == "console":
                if not text.startswith("$ "):
                    continue  # output shown in the transcript
                text = text[2:]
            if not text.strip() or text.lstrip().startswith("#"):
                continue
            expected = int(EXIT.search(text).group(1)) if EXIT.search(text) else 0
            if "order-ledger" in text and "&&" in text:
                steps = text.split("&&")
                first = next(s for s, step in enumerate(steps) if "order-ledger" in step)
                text = "&&".join(steps[first:]).strip()
            out.append((n, text, expected))
    return out


def _script(cmds: list[tuple[int, str, int]], tmp: Path, pg: str | None) -> str:
    parts = ["set -o pipefail", f'cd "{tmp}"']
    for n, text, _ in cmds:
        text = text.replace("/tmp/", f"{tmp}/")
        if pg:
            text = PG.sub(pg, text)
        parts += [f"echo '@@ line {n}: '{_quote(text)}; echo '@@ line {n}' >&2", text,
                  f'echo "{n} $?" >> "{tmp}/.rc"']
    return "\n".join(parts) + "\n"


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def _docs_with_commands() -> list[Path]:
    return [p for p in DOC_FILES if runnable_commands(p)]


def _run_doc(doc: Path, tmp_path: Path) -> tuple[list[tuple[int, str, int]], dict, Any]:
    """Run one file's commands in one shell; returns them, their exit statuses, the run."""
    cmds = runnable_commands(doc)
    work = tmp_path / "work"
    work.mkdir(parents=True)
    (work / "examples").symlink_to(ROOT / "examples")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "order-ledger"  # the code under test, whatever is installed
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m order_ledger "$@"\n')
    wrapper.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDER_LEDGER_")
           or k == "ORDER_LEDGER_TEST_PG"}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])])
    pg, schema = None, None
    if any(PG.search(text) for _, text, _ in cmds):
        from conftest import PG_URL, _drop_schema, pg_available

        if not pg_available():
            return cmds, {}, None  # the test skips it
        schema = "t_docs_" + uuid.uuid4().hex[:10]
        pg = f"{PG_URL}{'&' if '?' in PG_URL else '?'}schema={schema}"
    try:
        r = subprocess.run(["bash", "-c", _script(cmds, work, pg)], cwd=work, env=env,
                           stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=300)
    finally:
        if schema:
            _drop_schema(schema)
    rc_file = work / ".rc"
    got = dict(line.split() for line in rc_file.read_text().splitlines()) if rc_file.exists() else {}
    return cmds, got, r


@pytest.fixture(scope="module")
def doc_runs(tmp_path_factory) -> dict[str, Any]:
    """Every file's commands, the files run side by side (each in its own directory)."""
    from concurrent.futures import ThreadPoolExecutor

    docs = _docs_with_commands()
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {d.name: pool.submit(_run_doc, d, tmp_path_factory.mktemp(d.stem))
                   for d in docs}
        return {name: f.result() for name, f in futures.items()}


@pytest.mark.parametrize("doc", _docs_with_commands(), ids=lambda p: p.name)
def test_every_command_in_the_docs_exits_as_documented(doc, doc_runs):
    cmds, got, r = doc_runs[doc.name]
    if r is None:
        pytest.skip(f"{doc.name} uses PostgreSQL, which is not reachable")
    wrong = []
    for n, text, expected in cmds:
        status = got.get(str(n))
        if status is None or int(status) != expected:
            wrong.append(f"{doc.name}:{n}: `{text}` exited {status}, documented {expected}")
    assert not wrong, "\n".join(wrong) + "\n--- stdout:\n" + r.stdout[-4000:] + \
        "\n--- stderr:\n" + r.stderr[-4000:]
    assert "Traceback" not in r.stderr, r.stderr[-4000:]


def test_the_conventions_find_the_tour_and_skip_synopses():
    readme = runnable_commands(ROOT / "README.md")
    texts = [t for _, t, _ in readme]
    # the set-up line runs from its first order-ledger command, not the installation
    assert texts[0].startswith("order-ledger apply examples/walkthrough.jsonl && ")
    assert not any("pip install" in t or "pytest" in t for t in texts)
    assert any(t.startswith("order-ledger report unshipped") for t in texts)
    # no synopsis (options in brackets, placeholders) is taken for a command
    for doc in DOC_FILES:
        for n, text, _ in runnable_commands(doc):
            assert not re.search(r"\[--|\bFILE\b|\.\.\.", text), f"{doc.name}:{n}: {text}"


def test_python_dash_m_order_ledger_is_the_cli():
    r = subprocess.run([sys.executable, "-m", "order_ledger", "--help"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Usage: order-ledger")


def test_readme_states_python_and_a_virtual_environment_and_two_setup_commands():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    setup = text.split("## Set up", 1)[1].split("\n## ", 1)[0]
    assert "Python 3.11" in setup and ".venv" in setup
    blocks = re.findall(r"```sh\n(.*?)```", setup, re.S)
    assert len(blocks) == 2 and all(len(b.strip().splitlines()) == 1 for b in blocks)
    assert "pip install -e '.[test]'" in blocks[0] and "pytest" in blocks[1]


def test_what_the_tour_writes_is_ignored_by_git(tmp_path):
    """The files the README's commands create in the repository are in .gitignore."""
    names = ["order-ledger.db", "order-ledger.db-wal", "order-ledger.db-shm",
             "order-ledger.views.db", "order-ledger.db-writer.lock",
             "order-ledger.views.db.lock", "unshipped.txt", ".venv/bin/python"]
    r = subprocess.run(["git", "check-ignore", "--no-index", *names], cwd=ROOT,
                       capture_output=True, text=True, timeout=30)
    ignored = set(r.stdout.split())
    assert ignored == set(names), f"not ignored: {set(names) - ignored}"


def test_links_between_the_docs_point_at_files_in_the_repository():
    """A clone has everything the docs link to (no rule book outside the repository)."""
    broken = []
    for doc in [*DOC_FILES, ROOT / "examples" / "README.md"]:
        text = doc.read_text(encoding="utf-8")
        prose = re.sub(r"```.*?```|`[^`\n]*`", "", text, flags=re.S)  # not code
        for target in re.findall(r"\]\(([^)\s]+)\)", prose):
            path = target.split("#", 1)[0]
            if not path or re.match(r"[a-z]+:", path):
                continue
            if not (doc.parent / path).exists():
                broken.append(f"{doc.relative_to(ROOT)}: {target}")
        if "/work/" in text or "domain.md" in text:
            broken.append(f"{doc.relative_to(ROOT)}: cites a file outside the repository")
    assert not broken, "\n".join(broken)
