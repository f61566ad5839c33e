"""As of: what the seller would have seen at an earlier moment, by replaying a prefix.

Nothing is written: the views of the past are computed in memory with
:func:`projections.project` over ``ledger.iter_events(upto=P)`` (and an
order's state with :func:`replay.history.order_history`), so the live views
are left alone.

**The definition.** "As of T" is the prefix of the log written by the
commands whose business time is at or before T: exactly what the live views
held once every command with ``at <= T`` had been applied, and nothing the
ledger did later. Two things make this differ from "every event with
``at <= T``":

* a deadline (hold expiry, day-21 verification limit, day-23 warning, day-30
  cancel) is applied when the next *command* arrives, as an event stamped with
  its own due time. A deadline due at 10:00 applied by the 06:00 tick of the
  next day carries ``at = 10:00`` but was not there at 11:00: as of 11:00 it is
  not applied (``show`` then lists it as the next deadline, already due);
* a ``tick`` command that applied deadlines carries the tick's time only in the
  ledger's command index (``ledger_commands``), not on its events.

Commands are accepted in time order only, so the command time along the log
never decreases and the prefix is found by binary search over positions: the
command time of an event is its own ``at`` for every event a command writes
itself; for events a deadline can write (``HoldExpired``, ``LedgerCanceled``,
``ShipByWarningIssued``, ``InventoryReturned``) it is looked up by the event's
``command_id`` in ``ledger_commands``. (A ledger made by ``import`` knows the
time of each command only through its events: a deadline applied by a command
is attributed to that command's own events; a tick's time is taken as that of
its latest deadline.)

``--at-position N`` is simply the prefix up to position N. The default
evaluation time of metrics and the Unshipped report is T for ``--as-of T``,
and the ledger's clock right after the command that wrote position N for
``--at-position N``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable

from ledger import events as ev
from ledger.application import Ledger
from ledger.store import from_us, to_us
from projections import Snapshot, project
from projections import rows as out

from .history import order_history

#: every projection a seller reads (the audit index is not a seller's view)
VIEW_NAMES: tuple[str, ...] = ("orders", "inventory", "metrics", "notifications")

#: events a deadline may write: their ``at`` is the due time, not the command's
DEADLINE_TYPES: tuple[type, ...] = (
    ev.HoldExpired, ev.LedgerCanceled, ev.ShipByWarningIssued, ev.InventoryReturned)

#: events of one imported command looked at to find its time (see the module doc)
_RUN_LOOKAHEAD = 64


class AsOfError(ValueError):
    """The point asked for does not exist (message says why)."""


@dataclass(frozen=True)
class Point:
    """A point in the ledger's history: the log prefix up to ``position``."""

    position: int
    #: the default evaluation time (metrics windows, Unshipped report): T for
    #: ``--as-of T``, the clock after the command at ``--at-position N``, the
    #: ledger's clock for the head; None for an empty prefix without a time
    at: datetime | None
    as_of: datetime | None = None
    #: with ``as_of``: the last position looked at (the head, or what was recorded by
    #: ``--known-at``); events up to it whose command time is at or before ``as_of``
    #: count, late facts too
    upto: int | None = None

    def describe(self) -> str:
        if self.as_of is not None:
            return f"as of {self.as_of.isoformat()} (position {self.position})"
        return f"at position {self.position}"

    def as_dict(self) -> dict[str, Any]:
        return {"position": self.position,
                "as_of": self.as_of.isoformat() if self.as_of else None,
                "at": self.at.isoformat() if self.at else None}


def _command(ledger: Ledger, command_id: str) -> tuple[int, str] | None:
    """(at_us, type) of an accepted command from the ledger's command index."""
    found = ledger.command_times([command_id]).get(command_id)
    return (int(found[1]), found[0]) if found else None


def _command_time(ledger: Ledger, position: int, e: ev.Event) -> int:
    """The business time (µs) of the command that wrote the event at ``position``."""
    t = to_us(e.at)
    if not isinstance(e, DEADLINE_TYPES):
        return t
    known = _command(ledger, e.command_id)
    if known is None or known[1] == "import":
        # an imported ledger: the command's own events follow in the same run
        for _, _, f in ledger.read_events(after=position, limit=_RUN_LOOKAHEAD):
            if f.command_id != e.command_id:
                break
            t = max(t, to_us(f.at))
    if known is not None:
        t = max(t, known[0])
    return t


def _probe(ledger: Ledger, p: int) -> tuple[int, int, ev.Event] | None:
    """(position, command time µs, payload) of the first event at or after ``p``."""
    rows = ledger.read_events(after=max(p, 1) - 1, limit=1)
    if not rows:
        return None
    q, _, e = rows[0]
    return q, _command_time(ledger, q, e), e


def position_as_of(ledger: Ledger, t: datetime, head: int | None = None) -> int:
    """The last position written by a command with business time <= ``t`` (0: none).

    Binary search: O(log n) single-event reads (and command-index lookups).
    """
    if t.tzinfo is None:
        raise AsOfError("an as-of time needs a UTC offset")
    limit = to_us(t)
    lo, hi = 0, (ledger.head() if head is None else head) + 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        r = _probe(ledger, mid)
        if r is None or r[0] >= hi or r[1] > limit:
            hi = mid
        else:
            lo = r[0]
    return lo


def clock_at(ledger: Ledger, position: int) -> datetime | None:
    """The ledger's clock right after the command that wrote ``position`` (None at 0).

    Given in the UTC offset of that event (a deadline's due time keeps the
    offset of the order's purchase).
    """
    if position <= 0:
        return None
    r = _probe(ledger, position)
    if r is None:
        return None
    _, us, e = r
    if us == to_us(e.at):
        return e.at
    return from_us(us).astimezone(e.at.tzinfo or timezone.utc)


def resolve(ledger: Ledger, as_of: datetime | None = None,
            at_position: int | None = None, known_at: datetime | None = None) -> Point:
    """The point ``--as-of`` / ``--at-position`` / ``--known-at`` name (none: the head, now).

    ``known_at`` K keeps only what the ledger had recorded by K (the log's prefix up
    to the last position recorded at or before K); with ``as_of`` T it answers
    "what did we know at K about time T".
    """
    if as_of is not None and at_position is not None:
        raise AsOfError("give --as-of or --at-position, not both")
    if known_at is not None and at_position is not None:
        raise AsOfError("give --known-at or --at-position, not both")
    head = ledger.head()
    if known_at is not None:
        if known_at.tzinfo is None:
            raise AsOfError("a known-at time needs a UTC offset")
        head = min(head, ledger.position_known_at(known_at))
        if as_of is None:
            return Point(head, clock_at(ledger, head) if head else None)
    if as_of is not None:
        return Point(position_as_of(ledger, as_of, head), as_of, as_of, upto=head)
    if at_position is not None:
        if at_position < 0:
            raise AsOfError("a position is 0 or more")
        if at_position > head:
            raise AsOfError(f"position {at_position} is beyond the ledger's head ({head})")
        return Point(at_position, clock_at(ledger, at_position))
    if as_of is not None:
        return Point(position_as_of(ledger, as_of, head), as_of, as_of)
    return Point(head, ledger.now())


def evaluation_time(point: Point, at: datetime | None = None) -> datetime:
    """``at`` if given, else the point's own time, else the wall clock."""
    return at or point.at or datetime.now(timezone.utc)


def events_upto(ledger: Ledger, position: int) -> Iterable[tuple[int, str, ev.Event]]:
    if position <= 0:
        return iter(())
    return ledger.iter_events(upto=position)


class CommandTimes:
    """The command time of events, with the command index looked up once per command."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.known: dict[str, int] = {}

    def __call__(self, position: int, e: ev.Event) -> int:
        if not isinstance(e, DEADLINE_TYPES):
            return to_us(e.at)
        t = self.known.get(e.command_id)
        if t is None:
            t = self.known[e.command_id] = _command_time(self.ledger, position, e)
        return max(t, to_us(e.at))


def events_as_of(ledger: Ledger, point: Point) -> Iterable[tuple[int, str, ev.Event]]:
    """The events that make up ``point``: a prefix of the log, or, for ``--as-of T``,
    every event up to ``point.upto`` whose command time is at or before T -- the
    prefix for a log written in time order, plus any fact that arrived late."""
    if point.as_of is None or point.upto is None:
        return events_upto(ledger, point.position)
    limit = to_us(point.as_of)
    times = CommandTimes(ledger)
    return ((pos, agg, e) for pos, agg, e in events_upto(ledger, point.upto)
            if times(pos, e) <= limit)


def snapshot(ledger: Ledger, point: Point | int,
             names: Iterable[str] = VIEW_NAMES) -> Snapshot:
    """Every named projection as of ``point``, computed in memory."""
    if not isinstance(point, Point):
        point = Point(point, None)
    return project(events_as_of(ledger, point), list(names))


def steps_as_of(ledger: Ledger, order_id: str, point: Point | int) -> list[Any]:
    """The order's history (``replay.history.Step``) as of ``point``."""
    if not isinstance(point, Point):
        point = Point(point, None)
    upto = point.upto if point.as_of is not None and point.upto is not None else point.position
    if upto <= 0:
        return []
    steps = order_history(ledger, order_id, upto=upto)
    if point.as_of is not None and point.upto is not None:
        limit, times = to_us(point.as_of), CommandTimes(ledger)
        # an order's events come in time order: as of T it is its steps by then
        steps = [s for s in steps if times(s.position, s.payload) <= limit]
    return steps


def order_view(ledger: Ledger, order_id: str, point: Point | int) -> dict[str, Any] | None:
    """``order-ledger show`` of the order as it was at ``point`` (None: not placed yet)."""
    steps = steps_as_of(ledger, order_id, point)
    return steps[-1].state if steps else None


def show_order(ledger: Ledger, order_id: str,
               point: Point | None = None) -> out.OrderView | None:
    """``order-ledger show --json``: the order now (``point`` None) or as of ``point``,
    with the business time (``updated_at``) and the recording time (``recorded_at``)
    of its latest event; None when the ledger holds no such order (by then)."""
    steps = steps_as_of(ledger, order_id, point) if point is not None \
        else order_history(ledger, order_id)
    if not steps:
        return None
    last = steps[-1].payload
    return out.order_view(steps[-1].state | {"updated_at": last.at.isoformat(),
                                             "recorded_at": ev.recorded_at(last).isoformat()})
