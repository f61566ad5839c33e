"""The writer leader's relay, in one process: a follower's requests share one
connection to the leader, each is answered with its own outcomes once committed,
and requests waiting on a leader that goes away are told to send again."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import pytest

from builders import at, oid, place
from ledger.application import Ledger
from ledger.clock import SystemClock
from ledger.errors import LedgerBusy
from order_ledger.service.runtime import GroupWriter, WriteRouter


def _line(n: int) -> list[tuple[int, bytes]]:
    return [(1, json.dumps(place(oid(n), at(n), command_id=f"relay-{n}")).encode())]


@pytest.fixture
def two_routers(tmp_path: Path):
    db = str(tmp_path / "relay.db")
    ledgers = [Ledger(db, clock=SystemClock(), mode="write") for _ in range(2)]
    writers = [GroupWriter(led) for led in ledgers]
    yield db, writers
    for w in writers:
        w.close()
        w.ledger.close()


async def test_a_follower_sends_every_request_over_one_connection(two_routers):
    db, (lead_writer, follow_writer) = two_routers
    leader, follower = WriteRouter(lead_writer, db), WriteRouter(follow_writer, db)
    await leader.start()
    await follower.start()
    try:
        assert leader.lead_fd is not None and follower.lead_fd is None
        first = await follower.submit(_line(1))
        link = follower._conn
        assert link is not None
        outs = await asyncio.gather(*(follower.submit(_line(n)) for n in range(2, 22)))
        assert follower._conn is link  # no new connection per request
        assert [o.status for o in first] == ["applied"]
        # each request gets its own line back, in its own numbering
        assert [(o[0].order_id, o[0].line) for o in outs] == [(oid(n), 1) for n in range(2, 22)]
        assert all(o[0].status == "applied" for o in outs)
        assert follower.forwarded == 21
        assert lead_writer.requests == 21
        assert lead_writer.commits < 21  # concurrent requests shared commits
        # the follower counts its requests and the group commits they shared (its /health)
        assert follow_writer.requests == 21 and follow_writer.commits == lead_writer.commits
        # a command sent again is a duplicate, not a second event
        again = await follower.submit(_line(5))
        assert [o.status for o in again] == ["duplicate"]
    finally:
        await follower.stop()
        await leader.stop()


async def test_requests_waiting_on_a_leader_that_goes_away_get_busy_then_one_takes_the_lead(
        two_routers):
    db, (lead_writer, follow_writer) = two_routers
    leader, follower = WriteRouter(lead_writer, db), WriteRouter(follow_writer, db)
    release = threading.Event()
    await leader.start()
    await follower.start()
    try:
        await follower.submit(_line(1))
        # the leader's writer stalls on a long call: the next request waits on it
        lead_writer.run_sync(lambda led: release.wait(10))
        waiting = asyncio.create_task(follower.submit(_line(2)))
        await asyncio.sleep(0.2)
        assert not waiting.done()
        # the leader goes away: its connection and its lock with it
        assert follower._conn is not None
        follower._conn.transport.close()  # the connection breaks, as when the leader dies
        with pytest.raises(LedgerBusy, match="send the same commands again"):
            await asyncio.wait_for(waiting, 5)
        release.set()
        await leader.stop()
        # the next request finds no leader, takes the lead and writes itself
        outs = await follower.submit(_line(3))
        assert [o.status for o in outs] == ["applied"]
        assert follower.lead_fd is not None
        assert follow_writer.requests == 2  # one relayed before, one written itself
        assert follow_writer.commits == 2
    finally:
        release.set()
        await follower.stop()
        await leader.stop()


async def test_a_batch_is_answered_with_one_wake_up_of_the_event_loop(two_routers):
    """Requests that share a batch are answered together: the writer thread hands the
    loop one call for all of them, not one per request."""
    _, (writer, _) = two_routers
    loop = asyncio.get_running_loop()
    release = threading.Event()
    writer.run_sync(lambda led: release.wait(10))  # the next requests gather meanwhile
    waiting = [asyncio.create_task(writer.submit(_line(n))) for n in range(40, 50)]
    await asyncio.sleep(0.1)
    calls = []
    real = loop.call_soon_threadsafe

    def counting(callback, *args):
        calls.append(callback)
        return real(callback, *args)

    loop.call_soon_threadsafe = counting  # type: ignore[method-assign]
    try:
        release.set()
        outs = await asyncio.wait_for(asyncio.gather(*waiting), 10)
    finally:
        del loop.call_soon_threadsafe
    assert [o[0].status for o in outs] == ["applied"] * 10
    assert writer.commits == 1 and writer.requests == 10
    answers = [c for c in calls if getattr(c, "__name__", "") == "_answer_all"]
    assert len(answers) == 1
