"""replay --until --out DIR: byte-identical files for the same events, wherever they live."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from builders import walkthrough_lines
from click.testing import CliRunner

from ledger.application import Ledger
from order_ledger.cli import main
from replay.replay_dir import FILES, MANIFEST



def _run(*args: str, code: int = 0):
    r = CliRunner().invoke(main, list(args))
    assert r.exit_code == code, r.output
    return r


def _hashes(out: Path) -> dict[str, str]:
    return {name: hashlib.sha256((out / name).read_bytes()).hexdigest()
            for name in (*FILES, MANIFEST)}


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    d = tmp_path_factory.mktemp("replay")
    db = str(d / "shop.db")
    with Ledger(db) as led:
        list(led.apply_lines(walkthrough_lines()))
    return d, db


@pytest.mark.parametrize("until", ["2026-03-25T12:00:00+01:00", "164", "150", None])
def test_same_events_same_bytes_also_after_export_and_import(shop, tmp_path, until):
    d, db = shop
    point = ["--until", until] if until else []
    _run("replay", "--db", db, *point, "--out", str(tmp_path / "one"))
    _run("replay", "--db", db, *point, "--out", str(tmp_path / "two"))
    first = _hashes(tmp_path / "one")
    assert first == _hashes(tmp_path / "two")
    manifest = json.loads((tmp_path / "one" / MANIFEST).read_text())
    assert manifest["files"] == {k: v for k, v in first.items() if k != MANIFEST}
    # the same events in another ledger: exported, imported, its views rebuilt
    bundle = tmp_path / "bundle.jsonl"
    _run("export", "--db", db, "--out", str(bundle))
    copy = str(tmp_path / "copy.db")
    _run("import", str(bundle), "--db", copy)
    _run("rebuild", "--db", copy, "--quiet")
    _run("replay", "--db", copy, *point, "--out", str(tmp_path / "three"))
    assert _hashes(tmp_path / "three") == first


def test_files_are_what_the_live_reads_print(shop, tmp_path):
    d, db = shop
    out = tmp_path / "now"
    r = _run("replay", "--db", db, "--out", str(out), "--json")
    manifest = json.loads(r.output)
    assert manifest["position"] == 247 and manifest["as_of"] is None
    with Ledger(db) as led:
        assert manifest["at"] == led.now().isoformat()
    views = ["--views", str(tmp_path / "live.views.db")]
    # the bytes report writes (the marketplace's encoding)
    assert (out / "orders.txt").read_bytes() == _run("report", "orders", "--db", db,
                                                      *views).stdout_bytes
    assert (out / "unshipped.txt").read_bytes() == _run("report", "unshipped", "--db", db,
                                                         *views).stdout_bytes
    for name, cmd in (("manage-orders.json", "orders"), ("inventory.json", "inventory"),
                      ("metrics.json", "metrics"), ("notifications.json", "notifications")):
        assert json.loads((out / name).read_text()) == json.loads(
            _run(cmd, "--db", db, *views, "--json").output), name


def test_live_views_are_left_alone(shop, tmp_path):
    d, db = shop
    views = d / "shop.views.db"
    before = views.exists()
    _run("replay", "--db", db, "--until", "10", "--out", str(tmp_path / "x"))
    assert views.exists() == before
    if before:  # nothing written to them either
        stamp = os.stat(views).st_mtime_ns
        _run("replay", "--db", db, "--until", "20", "--out", str(tmp_path / "y"))
        assert os.stat(views).st_mtime_ns == stamp


def test_out_directory_rules(shop, tmp_path):
    d, db = shop
    _run("replay", "--db", db, "--until", "5", "--out", str(tmp_path / "new"))
    assert sorted(os.listdir(tmp_path / "new")) == sorted((*FILES, MANIFEST))
    # an existing directory is reused (our files replaced, nothing else touched)
    (tmp_path / "new" / "mine.txt").write_text("keep")
    _run("replay", "--db", db, "--until", "6", "--out", str(tmp_path / "new"))
    assert (tmp_path / "new" / "mine.txt").read_text() == "keep"
    assert json.loads((tmp_path / "new" / MANIFEST).read_text())["position"] == 6
    r = _run("replay", "--db", db, "--out", str(tmp_path / "no" / "such"), code=2)
    assert "parent directory" in r.output and not (tmp_path / "no").exists()
    (tmp_path / "file").write_text("x")
    _run("replay", "--db", db, "--out", str(tmp_path / "file"), code=2)
    _run("replay", "--db", db, "--until", "9999", "--out", str(tmp_path / "z"), code=2)
    _run("replay", "--db", db, "--until", "yesterday", "--out", str(tmp_path / "z"), code=2)
    _run("replay", "--db", str(tmp_path / "missing.db"), "--out", str(tmp_path / "z"), code=2)


def test_an_imported_ledger_knows_when_a_tick_ran(shop, tmp_path):
    """The PaymentNotVerified cancel of order 6 was due 2026-03-25 14:00 and applied by
    the 06:00 tick next morning. Bundles carry each event's command time, so the
    imported ledger dates that tick as the source did: as of 15:00 both show the
    order before its cancel, and replays at the same points are byte-identical."""
    d, db = shop
    bundle = tmp_path / "b.jsonl"
    _run("export", "--db", db, "--out", str(bundle))
    copy = str(tmp_path / "copy.db")
    _run("import", str(bundle), "--db", copy)
    at = ["--until", "2026-03-25T15:00:00+01:00"]
    src = json.loads(_run("replay", "--db", db, *at, "--out", str(tmp_path / "a"),
                          "--json").output)
    cp = json.loads(_run("replay", "--db", copy, *at, "--out", str(tmp_path / "b"),
                         "--json").output)
    assert src["position"] == cp["position"] == 164
    assert _hashes(tmp_path / "a") == _hashes(tmp_path / "b")
    src = json.loads(_run("replay", "--db", db, "--until", "166", "--out",
                          str(tmp_path / "c"), "--json").output)
    cp = json.loads(_run("replay", "--db", copy, "--until", "166", "--out",
                         str(tmp_path / "d"), "--json").output)
    assert src["at"] == cp["at"] == "2026-03-26T06:00:00+01:00"
    assert _hashes(tmp_path / "c") == _hashes(tmp_path / "d")
