"""Issue 7.4: online backup while a writer writes; restore; check; same state."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time

import pytest
from click.testing import CliRunner

from bench.generate import iter_lines
from crash_harness import CLI, ROOT, differences, snapshot
from ledger.application import Ledger
from ledger.check import check_ledger
from ledger.domain import Order, Recorded
from order_ledger.cli import main


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + list(args), cwd=str(ROOT), capture_output=True, text=True,
                          timeout=120)


def views_at(db: str, head: int) -> dict[str, dict]:
    """Every order's view, replayed from ``db``'s events up to position ``head``."""
    aggs: dict = {}
    with Ledger(db) as led:
        for _, agg_id, payload in led.iter_events(upto=head):
            version = aggs[agg_id].version + 1 if agg_id in aggs else 1
            aggs[agg_id] = Recorded(agg_id, version, payload.at, payload).mutate(aggs.get(agg_id))
    return {k: a.view() for k, a in aggs.items() if isinstance(a, Order)}


@pytest.fixture
def workload(tmp_path):
    path = tmp_path / "commands.jsonl"
    path.write_text("\n".join(iter_lines(90, 4)) + "\n", encoding="utf-8")
    return path


def test_backup_while_a_writer_applies_then_restore(tmp_path, workload):
    src = str(tmp_path / "live.db")
    writer = subprocess.Popen(CLI + ["apply", "--json", "--batch-size", "5", "--db", src,
                                     str(workload)],
                              cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert writer.stdout is not None
    writer.stdout.readline()  # the writer has committed its first batch
    acks: list[bytes] = []
    drain = threading.Thread(target=lambda: acks.extend(writer.stdout))  # type: ignore[arg-type]
    drain.start()
    backups = []
    for n in range(3):
        target = str(tmp_path / f"backup{n}.db")
        if n == 0:  # the first copy is taken mid-run whatever the machine's load: the
            writer.send_signal(signal.SIGSTOP)  # writer is held (maybe inside a batch)
        try:
            r = cli("backup", target, "--db", src, "--json")
        finally:
            if n == 0:
                writer.send_signal(signal.SIGCONT)
        assert r.returncode == 0, r.stderr
        backups.append((target, json.loads(r.stdout)))
        time.sleep(0.2)
    assert writer.wait(timeout=300) == 0, writer.stderr.read().decode()[-2000:]  # type: ignore[union-attr]
    drain.join()
    heads = [info["head"] for _, info in backups]
    with Ledger(src) as led:
        final_head = led.head()
    assert 0 < heads[0] and heads[-1] <= final_head
    assert heads[0] < final_head, "the backups did not overlap the writer"
    print("backup heads", heads, "final", final_head)

    source = snapshot(src)
    for target, info in backups:
        r = cli("check", "--db", target)
        assert r.returncode == 0 and "ledger OK" in r.stdout, r.stdout + r.stderr
        copy = snapshot(target)
        head = info["head"]
        assert copy["head"] == head == len(copy["events"])
        assert copy["events"] == source["events"][:head]  # a prefix: nothing torn
        assert copy["recorded"] == source["recorded"][:head]  # a byte copy, recording times too
        assert copy["commands"] <= source["commands"]
        assert copy["orders"] == views_at(src, head)

    # restore the earliest backup to a new place, check it, re-run the file: nothing is lost
    target, info = backups[0]
    restored = str(tmp_path / "restored.db")
    r = cli("restore", target, "--db", restored)
    assert r.returncode == 0, r.stderr
    restored_snap, target_snap = snapshot(restored), snapshot(target)
    assert differences(restored_snap, target_snap) == []
    assert restored_snap["recorded"] == target_snap["recorded"]
    assert cli("check", "--db", restored).returncode == 0
    r = cli("apply", "-q", str(workload), "--db", restored)
    assert r.returncode == 0, r.stderr
    assert differences(snapshot(restored), source) == []


def test_restore_over_an_existing_ledger_needs_force(tmp_path, workload):
    lines = workload.read_text().splitlines()
    a, b = str(tmp_path / "a.db"), str(tmp_path / "b.db")
    with Ledger(a) as led:
        list(led.apply_lines(lines[:300]))
    with Ledger(b) as led:
        list(led.apply_lines(lines[:500]))
        b_head = led.head()
    backup = str(tmp_path / "a-backup.db")
    assert cli("backup", backup, "--db", a).returncode == 0
    r = cli("restore", backup, "--db", b)
    assert r.returncode == 2 and "--force" in r.stderr
    with Ledger(b) as led:
        assert led.head() == b_head
    r = cli("restore", backup, "--db", b, "--force")
    assert r.returncode == 0, r.stderr
    assert differences(snapshot(b), snapshot(a)) == []
    with Ledger(b) as led:  # a writer opening the restored ledger carries on from it
        assert check_ledger(led).ok
        assert all(o.status in ("applied", "duplicate") for o in led.apply_lines(lines[:600]))


def test_open_a_backup_directly_as_the_ledger(tmp_path, workload):
    src = str(tmp_path / "live.db")
    lines = workload.read_text().splitlines()
    with Ledger(src) as led:
        list(led.apply_lines(lines[:400]))
    target = str(tmp_path / "copy.db")
    result = CliRunner().invoke(main, ["backup", target, "--db", src])
    assert result.exit_code == 0 and "backed up" in result.output, result.output
    with Ledger(target) as led:
        assert check_ledger(led).ok
        assert all(o.status in ("applied", "duplicate") for o in led.apply_lines(lines))


def test_backup_usage_errors(tmp_path, workload, pg_url):
    src = str(tmp_path / "live.db")
    with Ledger(src) as led:
        list(led.apply_lines(workload.read_text().splitlines()[:50]))
    runner = CliRunner()
    r = runner.invoke(main, ["backup", str(tmp_path / "missing" / "x.db"), "--db", src])
    assert r.exit_code == 2 and "does not exist" in r.output
    assert runner.invoke(main, ["backup", str(tmp_path / "x.db"), "--db", src]).exit_code == 0
    r = runner.invoke(main, ["backup", str(tmp_path / "x.db"), "--db", src])
    assert r.exit_code == 2 and "already exists" in r.output
    r = runner.invoke(main, ["backup", str(tmp_path / "y.db"), "--db", str(tmp_path / "no.db")])
    assert r.exit_code == 2 and "no ledger" in r.output
    r = runner.invoke(main, ["backup", str(tmp_path / "z.db"), "--db", pg_url])
    assert r.exit_code == 2 and "pg_dump" in r.output
    r = runner.invoke(main, ["restore", str(tmp_path / "nothing.db"), "--db",
                             str(tmp_path / "new.db")])
    assert r.exit_code == 2 and "no ledger file" in r.output
    r = runner.invoke(main, ["backup", str(tmp_path), "--db", src])
    assert r.exit_code == 2
