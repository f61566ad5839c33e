"""Verify a stored ledger: ``order-ledger check``.

:func:`check_ledger` reads the whole store once and reports every problem it
finds, without changing anything:

- **positions**: on SQLite the global positions are ``1..N`` without gaps (on
  PostgreSQL the sequence may skip numbers after a rolled-back insert: gaps are
  counted, not reported);
- **decoding**: every stored event decodes (right key, known topic, valid JSON);
- **replay**: every aggregate's events are numbered ``1..n`` and replay through
  the domain's ``when()`` without an error; events name the aggregate they are
  stored under; an order's business times never go backwards (a SKU's events
  are kept in recording order), nor do the recording times along the global
  order;
- **invariants**, after every event: per item ``shipped + canceled <=
  quantity`` and refunds never above the amount charged; an order's status
  agrees with its quantities (``Pending`` has nothing shipped or canceled; any
  other status is what the quantities say); a SKU's available quantity is never
  negative and moves exactly by each allocation and return;
- **commands**: each event's ``command_id`` is in ``ledger_commands``; each
  accepted command has events, unless it is a tick (a tick with nothing due
  writes none); one command's events are contiguous in the global order (a
  command applied twice would show as two runs);
- **deadline index**: ``ledger_deadlines`` holds exactly one row per open order,
  equal to that order's ``next_deadline()``, and nothing else;
- **clock**: the ledger clock (the watermark moved by ticks) has every deadline
  due by it fired; it may be behind the latest events (late or early facts).

Other packages add checks through :data:`EXTRA_CHECKS` (each gets the ledger
and the :class:`CheckState` after the pass over the events); the projections'
check (checkpoints not ahead of the head, report rows equal to a replay) is
registered from :mod:`projections` when that package provides one.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable, Iterable

from . import events as ev
from .chain import ChainVerifier, Digest
from .domain import (
    ORDER_PREFIX,
    SKU_PREFIX,
    Inventory,
    LedgerAggregate,
    Order,
    Recorded,
)
from .errors import CipherKeyMismatch
from .store import from_us, to_us

if TYPE_CHECKING:
    from .application import Ledger

_COMPONENTS = ("item_price", "item_tax", "shipping_price", "shipping_tax", "gift_wrap_price",
               "gift_wrap_tax")
#: command types that may be accepted without writing an event
NO_EVENT_TYPES = frozenset({"tick"})
READ_BATCH = 5_000


@dataclass
class Problem:
    """One thing wrong with the store."""

    code: str
    message: str
    where: str | None = None  # aggregate id, position or table

    def as_dict(self) -> dict[str, Any]:
        out = {"code": self.code, "message": self.message}
        if self.where is not None:
            out["where"] = self.where
        return out

    def __str__(self) -> str:
        return f"[{self.code}] {self.where + ': ' if self.where else ''}{self.message}"


@dataclass
class CheckState:
    """What one pass over the events learned; extra checks may read it."""

    aggregates: dict[str, LedgerAggregate] = field(default_factory=dict)
    broken: set[str] = field(default_factory=set)
    head: int = 0
    events: int = 0
    latest_at: datetime | None = None
    event_commands: set[str] = field(default_factory=set)


@dataclass
class CheckReport:
    problems: list[Problem] = field(default_factory=list)
    counts: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    omitted: int = 0  # problems beyond the limit, counted but not kept

    @property
    def ok(self) -> bool:
        return not self.problems and not self.omitted

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "counts": self.counts,
            "problems": [p.as_dict() for p in self.problems],
            "problems_omitted": self.omitted,
            "notes": self.notes,
        }


#: extra checks: ``fn(ledger, state) -> problems``; run after the built-in ones
EXTRA_CHECKS: list[Callable[["Ledger", CheckState], Iterable[Problem]]] = []


class _Collector:
    def __init__(self, report: CheckReport, limit: int) -> None:
        self.report = report
        self.limit = limit
        self.by_code: Counter[str] = Counter()

    def add(self, code: str, message: str, where: str | None = None) -> None:
        self.by_code[code] += 1
        if len(self.report.problems) < self.limit:
            self.report.problems.append(Problem(code, message, where))
        else:
            self.report.omitted += 1


# --- invariants of one aggregate ---------------------------------------------------------


def order_problems(order: Order) -> list[str]:
    """Rule invariants of an order's current state (empty when sound)."""
    out: list[str] = []
    any_shipped = False
    left = 0
    for item_id, it in order.items.items():
        q = it.line.quantity
        if it.shipped < 0 or it.canceled < 0:
            out.append(f"item {item_id}: negative quantity (shipped {it.shipped}, "
                       f"canceled {it.canceled})")
        if it.shipped + it.canceled > q:
            out.append(f"item {item_id}: shipped {it.shipped} + canceled {it.canceled} "
                       f"exceeds the {q} ordered")
        for k, comp in enumerate(_COMPONENTS):
            charged = getattr(it.line, comp)
            if it.refunded[k] > charged:
                out.append(f"item {item_id}: refunded {it.refunded[k]} of {comp} exceeds "
                           f"the {charged} charged")
        for j, (name, k) in enumerate((("item promotion", 0), ("ship promotion", 2))):
            if it.promotions[j] > it.refunded[k]:
                out.append(f"item {item_id}: {name} taken back {it.promotions[j]} exceeds the "
                           f"{it.refunded[k]} of {_COMPONENTS[k]} refunded")
        any_shipped = any_shipped or it.shipped > 0
        left += q - it.shipped - it.canceled
    if order.placed is None:
        out.append("events without an OrderPlaced first")
        return out
    if order.status == ev.PENDING:
        if any(it.shipped or it.canceled for it in order.items.values()):
            out.append("status Pending, yet items are shipped or canceled")
    else:
        expected = ((ev.SHIPPED if any_shipped else ev.CANCELED) if left == 0 else
                    (ev.PARTIALLY_SHIPPED if any_shipped else ev.UNSHIPPED))
        if expected != order.status:
            out.append(f"status {order.status} disagrees with the quantities, which say "
                       f"{expected}")
    return out


def _inventory_step(before: int, payload: ev.Event) -> str | None:
    if isinstance(payload, ev.InventorySet):
        after = payload.quantity
        expected = after
    elif isinstance(payload, ev.InventoryAllocated):
        after, expected = payload.available, before - payload.quantity
    elif isinstance(payload, ev.InventoryReturned):
        after, expected = payload.available, before + payload.quantity
    else:
        return f"a {type(payload).__name__} event stored under a SKU"
    if after < 0:
        return f"available quantity {after} is negative"
    if after != expected:
        return f"available went from {before} to {after}, {type(payload).__name__} says {expected}"
    return None


# --- the check ---------------------------------------------------------------------------


def check_ledger(ledger: "Ledger", *, limit: int = 1000,
                 extra: Iterable[Callable[["Ledger", CheckState], Iterable[Problem]]] | None = None,
                 digest: Digest | None = None) -> CheckReport:
    """Check the whole store; see the module docstring for what is checked.

    With ``digest``, also prove that today's history extends that digest unchanged."""
    report = CheckReport()
    col = _Collector(report, limit)
    state = CheckState()
    rec = ledger.recorder
    chained = rec.chain_head() is not None
    verifier = ChainVerifier(watch=digest.position if digest else None)
    dense = ledger.backend.dense_positions
    decode = ledger.mapper.decode_state

    last_at: dict[str, datetime] = {}
    prev_pos = 0
    gaps = 0
    prev_cid: str | None = None
    prev_global_at: datetime | None = None
    out_of_order = 0
    cids_seen: set[str] = set()
    undecodable: Counter[str] = Counter()
    key_mismatch = False
    after = 0
    while True:
        rows = rec.select_notifications(start=after + 1, limit=READ_BATCH)  # type: ignore[attr-defined]
        if chained and rows:
            for f in verifier.step(
                    [(n.id, str(n.originator_id), n.originator_version, n.topic, n.state)
                     for n in rows], rec.chain_rows(after + 1, rows[-1].id)):
                col.add(f.code, f.message, f"position {f.position}")
        for n in rows:
            pos, agg_id = n.id, str(n.originator_id)
            where = f"position {pos} ({agg_id} v{n.originator_version})"
            if pos != prev_pos + 1:
                if dense:
                    col.add("position-gap", f"positions jump from {prev_pos} to {pos}", where)
                else:
                    gaps += 1
            prev_pos = pos
            state.events += 1
            try:
                payload = decode(n.topic, n.state)
            except Exception as exc:  # noqa: BLE001 - every failure is a finding
                if isinstance(exc, CipherKeyMismatch) and state.events == 1:
                    # the key does not fit the ledger (the first event says so): one
                    # finding that says what to do, not one per event
                    col.add("cipher-key", str(exc), where)
                    key_mismatch = True
                    break
                text = f"{type(exc).__name__}: {exc}"
                kind = str(exc).replace(n.topic, "")  # group alike failures across topics
                undecodable[kind] += 1
                if undecodable[kind] <= 3:
                    col.add("undecodable", f"cannot decode the {n.topic} event: {text}", where)
                else:
                    col.by_code["undecodable"] += 1
                    report.omitted += 1
                state.broken.add(agg_id)
                prev_cid = None
                continue
            # commands: contiguous runs
            cid = payload.command_id
            state.event_commands.add(cid)
            if cid != prev_cid:
                if cid in cids_seen:
                    col.add("command-split",
                            f"events of command {cid!r} are not contiguous: applied twice?", where)
                cids_seen.add(cid)
            prev_cid = cid
            # recording time along the global order (business times may be late)
            rec_at = ev.recorded_at(payload)
            if prev_global_at is not None and rec_at < prev_global_at:
                out_of_order += 1
                if out_of_order <= 3:
                    col.add("recorded-time-order",
                            f"recorded at {rec_at.isoformat()}, before the previous "
                            f"event's {prev_global_at.isoformat()}", where)
                else:
                    col.by_code["recorded-time-order"] += 1
                    report.omitted += 1
            else:
                prev_global_at = rec_at
            if state.latest_at is None or payload.at > state.latest_at:
                state.latest_at = payload.at
            _replay_one(col, state, last_at, agg_id, n.originator_version, payload, where)
        if key_mismatch or len(rows) < READ_BATCH:
            break
        after = rows[-1].id
    if key_mismatch:
        prev_pos = ledger.head()
        state.events = prev_pos  # counted, not read: none can be decoded with this key
    state.head = prev_pos
    _check_chain(ledger, col, report, verifier, chained, prev_pos, digest)
    if gaps:
        report.notes.append(f"{gaps} gap(s) in the PostgreSQL notification ids "
                            "(a rolled-back insert consumes sequence numbers; harmless)")

    if key_mismatch:
        report.notes.append("no event could be read with this ORDER_LEDGER_CIPHER_KEY setting: "
                            "the other checks were skipped")
        commands = len(read_commands(ledger))
        deadlines = len(read_deadlines(ledger))
        clock = ledger.recorder.read_clock()
    elif undecodable:
        # Cross-checks against events we could not read would only repeat the finding.
        report.notes.append(f"{sum(undecodable.values())} event(s) could not be decoded: the "
                            "command and deadline cross-checks were skipped")
        commands = len(read_commands(ledger))
        deadlines = len(read_deadlines(ledger))
        clock = ledger.recorder.read_clock()
    else:
        commands = _check_commands(ledger, col, state)
        deadlines = _check_deadlines(ledger, col, state)
        clock = _check_clock(ledger, col, state)

    for fn in [] if key_mismatch else list(EXTRA_CHECKS) + list(extra or []):
        try:
            for p in fn(ledger, state):
                col.add(p.code, p.message, p.where)
        except Exception as exc:  # noqa: BLE001
            col.add("extra-check-failed", f"{getattr(fn, '__name__', fn)} failed: "
                    f"{type(exc).__name__}: {exc}")

    statuses = Counter(a.status for a in state.aggregates.values() if isinstance(a, Order))
    report.counts = {
        "events": state.events,
        "head": state.head,
        "orders": sum(statuses.values()),
        "skus": sum(1 for a in state.aggregates.values() if isinstance(a, Inventory)),
        "commands": commands,
        "deadlines": deadlines,
        "clock": clock.isoformat() if clock else None,
        "latest_event_at": state.latest_at.isoformat() if state.latest_at else None,
        "statuses": dict(sorted(statuses.items())),
        "problems": dict(sorted(col.by_code.items())),
    }
    if not EXTRA_CHECKS and extra is None:
        report.notes.append("no projection checks registered")
    return report


def _check_chain(ledger: "Ledger", col: _Collector, report: CheckReport,
                 verifier: ChainVerifier, chained: bool, head: int,
                 digest: Digest | None) -> None:
    rec = ledger.recorder
    if chained:
        while True:
            trailing = rec.chain_after(head, READ_BATCH)
            for f in verifier.finish(trailing):
                col.add(f.code, f.message, f"position {f.position}")
            if len(trailing) < READ_BATCH:
                break
            head = trailing[-1][0]
        report.notes.append(f"hash chain: {verifier.verified:,} event(s) verified, head "
                            f"{verifier.head or 'empty'}")
    elif head:
        report.notes.append("this ledger has no hash chain yet: run `order-ledger migrate` "
                            "once to add it")
    if digest is None:
        return
    if not chained or verifier.watched is None:
        col.add("digest-not-found",
                f"no chained event at position {digest.position:,} any more: the history that "
                f"digest {digest} was taken of is gone or was cut short", "digest")
    elif verifier.watched != digest.hash:
        col.add("digest-mismatch",
                f"the history up to position {digest.position:,} no longer ends in "
                f"{digest.hash.hex()[:16]}…: it was rewritten at or before that position",
                "digest")
    else:
        report.notes.append(f"digest {digest.position}:{digest.hash.hex()[:16]}… holds: "
                            "today's history extends it unchanged")


def _replay_one(col: _Collector, state: CheckState, last_at: dict[str, datetime],
                agg_id: str, version: int, payload: ev.Event, where: str) -> None:
    if agg_id in state.broken:
        return
    if agg_id.startswith(ORDER_PREFIX):
        belongs = (isinstance(payload, ev.OrderEvent)
                   and ORDER_PREFIX + payload.order_id == agg_id)
    elif agg_id.startswith(SKU_PREFIX):
        belongs = isinstance(payload, ev.InventoryEvent) and SKU_PREFIX + payload.sku == agg_id
    else:
        col.add("unknown-aggregate", f"aggregate id {agg_id!r} is neither order: nor sku:", where)
        state.broken.add(agg_id)
        return
    if not belongs:
        col.add("wrong-aggregate", f"a {type(payload).__name__} event does not belong to "
                f"{agg_id}", where)
        state.broken.add(agg_id)
        return
    prev = last_at.get(agg_id)
    # an order's events come in business-time order; a SKU's in recording order
    if prev is not None and payload.at < prev and agg_id.startswith(ORDER_PREFIX):
        col.add("aggregate-time-order", f"business time {payload.at.isoformat()} is before "
                f"this aggregate's previous event at {prev.isoformat()}", where)
    last_at[agg_id] = payload.at
    agg = state.aggregates.get(agg_id)
    before = agg.available if isinstance(agg, Inventory) else 0
    try:
        agg = Recorded(agg_id, version, payload.at, payload).mutate(agg)
    except Exception as exc:  # noqa: BLE001
        col.add("replay-failed", f"{type(payload).__name__} does not replay: "
                f"{type(exc).__name__}: {exc}", where)
        state.broken.add(agg_id)
        return
    state.aggregates[agg_id] = agg
    if isinstance(agg, Order):
        for text in order_problems(agg):
            col.add("order-invariant", text, where)
    else:
        step = _inventory_step(before, payload)
        if step:
            col.add("inventory-invariant", step, where)


def read_commands(ledger: "Ledger") -> list[tuple[str, str, int]]:
    """Every accepted command: ``(command_id, type, at_us)``."""
    rec = ledger.recorder
    return [tuple(r) for r in rec._rows(
        f"SELECT command_id, type, at_us FROM {rec.prefix}ledger_commands")]


def read_deadlines(ledger: "Ledger") -> dict[str, tuple[int, str]]:
    """The deadline index: ``order_id -> (due_us, kind)``."""
    rec = ledger.recorder
    return {r[0]: (r[1], r[2]) for r in rec._rows(
        f"SELECT order_id, due_us, kind FROM {rec.prefix}ledger_deadlines")}


def _check_commands(ledger: "Ledger", col: _Collector, state: CheckState) -> int:
    rows = read_commands(ledger)
    accepted = {r[0] for r in rows}
    for cid, ctype, _ in rows:
        if cid not in state.event_commands and ctype not in NO_EVENT_TYPES:
            col.add("command-without-events",
                    f"accepted {ctype} command {cid!r} has no events", "ledger_commands")
    missing = state.event_commands - accepted
    for cid in sorted(missing)[:20]:
        col.add("events-without-command",
                f"events carry command id {cid!r}, which is not in ledger_commands",
                "ledger_commands")
    if len(missing) > 20:
        col.by_code["events-without-command"] += len(missing) - 20
        col.report.omitted += len(missing) - 20
    return len(rows)


def _check_deadlines(ledger: "Ledger", col: _Collector, state: CheckState) -> int:
    index = read_deadlines(ledger)
    for agg_id, agg in state.aggregates.items():
        if not isinstance(agg, Order) or agg_id in state.broken:
            continue
        nd = agg.next_deadline()
        row = index.pop(agg.order_id, None)
        if nd is None:
            if row is not None:
                col.add("deadline-index", f"index has {row[1]} at {from_us(row[0]).isoformat()} "
                        f"but the {agg.status} order has no deadline", agg_id)
        elif row is None:
            col.add("deadline-index", f"the order's next deadline {nd[1]} at "
                    f"{nd[0].isoformat()} is missing from the index", agg_id)
        elif row != (to_us(nd[0]), nd[1]):
            col.add("deadline-index", f"index has {row[1]} at {from_us(row[0]).isoformat()}, "
                    f"the order says {nd[1]} at {nd[0].isoformat()}", agg_id)
    for order_id, (due_us, kind) in sorted(index.items()):
        if ORDER_PREFIX + order_id in state.broken:
            continue
        col.add("deadline-index", f"index has {kind} at {from_us(due_us).isoformat()} for an "
                "order with no events", ORDER_PREFIX + order_id)
    return len(read_deadlines(ledger))


def _check_clock(ledger: "Ledger", col: _Collector, state: CheckState) -> datetime | None:
    """The clock is the watermark: every deadline due by it has fired."""
    clock = ledger.recorder.read_clock()
    if clock is None:
        return None
    late = 0
    for agg_id, agg in sorted(state.aggregates.items()):
        if not isinstance(agg, Order) or agg_id in state.broken:
            continue
        nd = agg.next_deadline()
        if nd is not None and nd[0] <= clock:
            late += 1
            if late <= 3:
                col.add("clock", f"{nd[1]} due at {nd[0].isoformat()} has not fired although "
                        f"the clock is at {clock.isoformat()}", agg_id)
            else:
                col.by_code["clock"] += 1
                col.report.omitted += 1
    return clock
