"""The group-commit writer's pipeline on a SQLite file: the next batch is decided
while the one before commits, every request is answered only after its own
batch's commit, and a batch decided on a commit that then failed is decided
again on what the store holds."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.persistence import OperationalError

from builders import at, oid, place
from ledger.application import Ledger, PendingBatch
from ledger.clock import SystemClock
from ledger.errors import StoreWriteFailed
from order_ledger.service.runtime import GroupWriter


def _body(command: dict[str, Any]) -> list[tuple[int, bytes]]:
    return [(1, json.dumps(command).encode())]


class Gate:
    """PendingBatch.write held at a gate: each commit waits until released, and may be
    told to fail instead of committing."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        self.entered = threading.Semaphore(0)
        self.opened: list[threading.Event] = [threading.Event() for _ in range(10)]
        self.fail: set[int] = set()
        real = PendingBatch.write

        def write(batch: PendingBatch) -> list[int]:
            n = self.calls
            self.calls += 1
            self.entered.release()
            self.opened[n].wait(10)
            if n in self.fail:
                raise OperationalError("disk I/O error")
            return real(batch)

        monkeypatch.setattr(PendingBatch, "write", write)

    async def reached(self) -> None:
        """Until the next commit is at the gate."""
        for _ in range(500):
            if self.entered.acquire(blocking=False):
                return
            await asyncio.sleep(0.01)
        raise AssertionError("no commit reached the gate")


async def _until(predicate: Any) -> None:
    for _ in range(500):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("never happened")


def _orders(db: str) -> set[str]:
    with Ledger(db, mode="read") as led:
        return {p.order_id for _, _, p in led.read_events(0, 100)}


@pytest.fixture
def writer(tmp_path: Path):
    led = Ledger(str(tmp_path / "pipe.db"), clock=SystemClock(), mode="write")
    w = GroupWriter(led)
    yield w
    w.close()
    led.close()


async def test_the_next_batch_is_decided_while_one_commits_each_answered_after_its_commit(
        writer, monkeypatch):
    gate = Gate(monkeypatch)
    db = writer.ledger.db
    assert writer.pipelined
    first = asyncio.create_task(writer.submit(_body(place(oid(1), at(1), command_id="p-1"))))
    await gate.reached()  # the first batch is committing (held at the gate)
    later = [asyncio.create_task(writer.submit(_body(place(oid(n), at(n), command_id=f"p-{n}"))))
             for n in (2, 3)]
    # both decided into the next batch while the first one's commit has not returned
    await _until(lambda: writer._pending is not None and len(writer._pending[1]) == 2)
    decided = [outs[0].status for _, outs in writer._pending[1]]
    assert decided == ["applied", "applied"]
    assert not first.done() and not any(t.done() for t in later)
    assert _orders(db) == set()
    gate.opened[0].set()  # the first commit returns: it is answered, the next one starts
    outs = await asyncio.wait_for(first, 5)
    assert [o.status for o in outs] == ["applied"]
    await gate.reached()
    assert _orders(db) == {oid(1)}
    await asyncio.sleep(0.1)
    assert not any(t.done() for t in later)  # not answered before their own commit
    gate.opened[1].set()
    outs2 = await asyncio.wait_for(asyncio.gather(*later), 5)
    assert [o[0].status for o in outs2] == ["applied", "applied"]
    assert _orders(db) == {oid(1), oid(2), oid(3)}
    assert writer.commits == 2 and writer.requests == 3


async def test_a_batch_decided_on_a_commit_that_failed_is_decided_again(writer, monkeypatch):
    gate = Gate(monkeypatch)
    gate.fail.add(0)
    db = writer.ledger.db
    first = asyncio.create_task(writer.submit(_body(place(oid(1), at(1), command_id="a-1"))))
    await gate.reached()
    # decided on the first batch's state: the order exists there, so this is refused ...
    again = asyncio.create_task(writer.submit(_body(place(oid(1), at(2), command_id="b-1"))))
    other = asyncio.create_task(writer.submit(_body(place(oid(2), at(2), command_id="b-2"))))
    await _until(lambda: writer._pending is not None and len(writer._pending[1]) == 2)
    assert [outs[0].status for _, outs in writer._pending[1]] == ["rejected", "applied"]
    assert writer._pending[1][0][1][0].error["code"] == "order-exists"
    for gate_open in gate.opened:
        gate_open.set()
    # ... but that commit fails: its request gets the error, and the next batch is
    # decided again on what the store holds, where the order does not exist
    with pytest.raises(StoreWriteFailed, match="disk I/O error"):
        await asyncio.wait_for(first, 5)
    outs = await asyncio.wait_for(asyncio.gather(again, other), 5)
    assert [o[0].status for o in outs] == ["applied", "applied"]
    assert _orders(db) == {oid(1), oid(2)}
    with Ledger(db, mode="read") as led:
        assert led.recorder.known_commands(["a-1", "b-1", "b-2"]) == {"b-1", "b-2"}
        assert [(p.command_id, p.at) for _, _, p in led.read_events(0, 10)
                if p.order_id == oid(1)][0][0] == "b-1"


async def test_a_rejected_line_reloads_what_the_commit_in_flight_wrote(writer, monkeypatch):
    """A line that changed an order and was then refused is undone by reloading the
    order from the store: while the batch that placed the order still commits, the
    reload waits for that commit, or the order would vanish from the batch."""
    from builders import cmd

    gate = Gate(monkeypatch)
    placed = asyncio.create_task(writer.submit(_body(place(oid(1), at(0), command_id="x-1"))))
    await gate.reached()

    def ship(minutes: int) -> list[tuple[int, bytes]]:
        return _body(cmd("ship", at(minutes), order_id=oid(1), carrier_code="PostNord",
                         ship_date="2026-03-02", command_id=f"ship-{minutes}"))

    # the hold's end fires for the order within this line, then the line is refused
    first = asyncio.create_task(writer.submit(ship(45)))
    await _until(lambda: writer._pending is not None)
    await asyncio.sleep(0.2)
    assert writer._pending is not None and writer._pending[1] == []  # waiting for the commit
    second = asyncio.create_task(writer.submit(ship(46)))
    verify = asyncio.create_task(writer.submit(_body(cmd(
        "verify-payment", at(47), order_id=oid(1), outcome="verified", command_id="v-1"))))
    await asyncio.sleep(0.1)
    for gate_open in gate.opened:
        gate_open.set()
    assert [o.status for o in await asyncio.wait_for(placed, 5)] == ["applied"]
    outs = await asyncio.wait_for(asyncio.gather(first, second), 5)
    # both see the order the first batch placed (Pending), neither an unknown order
    assert [o[0].error["code"] for o in outs] == ["order-pending", "order-pending"]
    # and what the refused line did to the order is gone from the batch: the next line
    # starts from the order as stored, and the order's events follow one another
    assert [o.status for o in await asyncio.wait_for(verify, 5)] == ["applied"]
    with Ledger(writer.ledger.db, mode="read") as led:
        versions = [v for _, v, _ in led.events_of(f"order:{oid(1)}")]
        assert versions == list(range(1, len(versions) + 1))
        assert led.order(oid(1)) is not None
