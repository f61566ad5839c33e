"""Every command and subcommand of the registry answers ``--help`` (as sqlite-utils
tests its own), and the command modules share options through one module."""

from __future__ import annotations

import ast
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from order_ledger.cli import main

PACKAGE = Path(__file__).resolve().parent.parent / "order_ledger"


def _paths(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for name, cmd in sorted(group.commands.items()):
        out.append((*prefix, name))
        if isinstance(cmd, click.Group):
            out.extend(_paths(cmd, (*prefix, name)))
    return out


COMMANDS = _paths(main)


def test_the_registry_holds_every_front_module():
    names = {" ".join(p) for p in COMMANDS}
    # one command of each module, and both halves of the one import group
    assert {"apply", "orders", "history", "feed", "check", "import bundle",
            "import sp-api", "message check"} <= names
    assert len(COMMANDS) > 40


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_help(path):
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Usage: ")
    assert " ".join(path) in result.output.splitlines()[0]
    assert result.exception is None


def test_import_runs_its_default_command_for_a_file(tmp_path):
    """``import FILE`` is ``import bundle FILE``; a subcommand name is that subcommand."""
    missing = tmp_path / "nothing.jsonl"
    short = CliRunner().invoke(main, ["import", str(missing), "--db", str(tmp_path / "a.db")])
    full = CliRunner().invoke(main, ["import", "bundle", str(missing),
                                     "--db", str(tmp_path / "a.db")])
    assert short.exit_code == full.exit_code == 2
    assert "cannot read" in short.output and short.output == full.output
    sp = CliRunner().invoke(main, ["import", "sp-api", str(missing)])
    assert sp.exit_code == 2 and "does not exist" in sp.output


def _relative_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found.add(node.module or "")
            if node.module is None:
                found.update(a.name for a in node.names)
    return found


@pytest.mark.parametrize("module", ["read_commands", "replay_commands", "feed_commands",
                                    "ops_commands"])
def test_command_modules_import_only_the_shared_module(module):
    """No import cycles between the command modules: what they share (options, opening
    the ledger, the views runner, the import group) is in order_ledger/common.py."""
    assert _relative_imports(PACKAGE / f"{module}.py") <= {"common"}


@pytest.mark.parametrize("args, code", [
    (["show", "203-0000000-0000000"], 1),                     # sys.exit inside the command
    (["tick", "--now", "2026-03-01T10:00:00Z"], 0),
    (["history", "203-0000000-0000000"], 1),
    (["tick"], 2),  # the wall clock is years past the ledger's: refused after opening
])
def test_the_ledger_a_command_opens_is_closed_when_it_ends(tmp_path, monkeypatch, args, code):
    """Every ledger a command opens is a resource of its click context: closed however
    the command ends (exit 0, 1 or a usage error after opening)."""
    from ledger.application import Ledger

    db = str(tmp_path / "l.db")
    assert CliRunner().invoke(main, ["tick", "--now", "2020-01-01T00:00:00Z",
                                     "--db", db]).exit_code == 0
    opened, closed = [], []
    real_init, real_close = Ledger.__init__, Ledger.close

    def init(self, *a, **kw):
        real_init(self, *a, **kw)
        opened.append(self)

    def close(self):
        closed.append(self)
        real_close(self)

    monkeypatch.setattr(Ledger, "__init__", init)
    monkeypatch.setattr(Ledger, "close", close)
    result = CliRunner().invoke(main, [*args, "--db", db])
    assert result.exit_code == code, result.output
    assert opened and all(led in closed for led in opened)
