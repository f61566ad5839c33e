"""Bisect: the first event after which a condition on an order or the metrics stops holding.

A condition is a Python expression over ``order`` (the order's ``show --json``
view) and/or ``metrics`` (``metrics --json`` at that point), with attribute
access (``order.status``, ``order.items[0].quantity_shipped``,
``metrics.cancellation_rate.rate``; keys that are not identifiers by index:
``metrics.late_shipment_rate["10d"].rate``). Only a few harmless builtins are
available (``len any all min max sum abs round sorted int float str bool
list tuple set dict``) and names or attributes starting with ``_`` are refused.

**None.** A comparison with ``None`` -- a rate when nothing is in its window,
a payments date not set yet -- makes the condition *undefined*, which counts
as holding (as docs/rules.md §8 reads it: a null rate is never breached). Write
``metrics.cancellation_rate.rate is not None and ...`` to count it as failing.

**How it searches.**

* Only ``order``: the order's own events are replayed once (nothing else is
  read) and the condition checked after each one: the exact first event after
  which it fails, even if it holds again later. Before the order's first
  event the condition is taken to hold.
* ``metrics`` involved: binary search over global positions, one in-memory
  replay of the prefix per probe (O(log n) replays). Metrics at position p
  are evaluated at the ledger's clock right after the command that wrote p
  (``at`` fixes one instant instead). Like ``git bisect`` this assumes that
  once the condition fails it keeps failing; if it can flip back, the event
  found is *a* point where it stops holding, not necessarily the first.
  ``linear=True`` replays once and checks after every event (exact; cost
  grows with events x orders, for small ledgers).
"""

from __future__ import annotations

import ast
import bisect as _bisect
import builtins
from dataclasses import dataclass
from datetime import datetime, timezone
from types import CodeType, SimpleNamespace
from typing import Any

from ledger import events as ev
from ledger.application import Ledger
from ledger.store import from_us, to_us
from projections import Snapshot, project
from projections.model import MetricsProjection, dispatch_table
from projections.rows import Metrics, plain

from .asof import _command_time, clock_at, events_upto
from .history import Step, event_fields, order_history

SAFE_BUILTINS: dict[str, Any] = {name: getattr(builtins, name) for name in (
    "abs", "all", "any", "bool", "dict", "float", "int", "len", "list", "max", "min",
    "round", "set", "sorted", "str", "sum", "tuple")}

STATUSES = ("Pending", "Unshipped", "PartiallyShipped", "Shipped", "Canceled")


class BisectError(ValueError):
    """The bisect cannot run as asked (message says why)."""


class Record(SimpleNamespace):
    """A dict with attribute access; ``r["10d"]`` for keys that are not identifiers."""

    def __getitem__(self, key: str) -> Any:
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key) from None


def wrap(value: Any) -> Any:
    """Dicts become :class:`Record` objects, recursively (lists stay lists)."""
    if isinstance(value, dict):
        return Record(**{str(k): wrap(v) for k, v in value.items()})
    if isinstance(value, list):
        return [wrap(v) for v in value]
    return value


@dataclass
class Predicate:
    """A compiled condition; :meth:`holds` evaluates it on one state."""

    text: str
    code: CodeType
    uses_order: bool
    uses_metrics: bool

    def holds(self, order: Any, metrics: Any) -> bool:
        """Whether the condition holds of the order and metrics (dicts or rows)."""
        env: dict[str, Any] = {}
        if self.uses_order:
            env["order"] = wrap(plain(order))
        if self.uses_metrics:
            env["metrics"] = wrap(plain(metrics))
        try:
            return bool(eval(self.code, {"__builtins__": SAFE_BUILTINS}, env))  # noqa: S307
        except TypeError as exc:
            if "NoneType" in str(exc):
                return True  # undefined (a null value was compared): counts as holding
            raise BisectError(f"cannot evaluate {self.text!r}: {exc}") from None
        except Exception as exc:  # AttributeError, NameError, KeyError, IndexError, ...
            raise BisectError(
                f"cannot evaluate {self.text!r}: {type(exc).__name__}: {exc}") from None


def compile_predicate(text: str) -> Predicate:
    """Check and compile a condition (raises :class:`BisectError`)."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise BisectError(f"{text!r} is not a Python expression: {exc.msg}") from None
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            raise BisectError(f"attribute {node.attr!r} is not allowed in a condition")
        if isinstance(node, ast.Name):
            if node.id.startswith("_"):
                raise BisectError(f"name {node.id!r} is not allowed in a condition")
            names.add(node.id)
        if isinstance(node, (ast.Lambda, ast.NamedExpr, ast.Await, ast.Yield, ast.YieldFrom)):
            raise BisectError(f"{type(node).__name__} is not allowed in a condition")
    uses_order, uses_metrics = "order" in names, "metrics" in names
    if not uses_order and not uses_metrics:
        raise BisectError("a condition must use `order` and/or `metrics`, e.g. "
                          "\"order.status != 'Canceled'\" or "
                          "'metrics.cancellation_rate.rate < 0.025'")
    code = compile(tree, "<condition>", "eval")
    return Predicate(text.strip(), code, uses_order, uses_metrics)


def until_status(status: str) -> Predicate:
    """``--until-status S``: the condition ``order.status != S``."""
    if status not in STATUSES:
        raise BisectError(f"unknown status {status!r}; known: {', '.join(STATUSES)}")
    return compile_predicate(f"order.status != {status!r}")


@dataclass
class Finding:
    """What a bisect found."""

    #: "found" | "never-fails" | "fails-at-start"
    outcome: str
    predicate: str
    order_id: str | None
    method: str  # "order-events" | "binary" | "linear"
    evaluations: int
    position: int | None = None
    event: dict[str, Any] | None = None
    #: {"position": p, "order": view or None, "metrics": dict or None}
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None

    @property
    def found(self) -> bool:
        return self.outcome == "found"

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def describe_event(position: int, aggregate: str, p: ev.Event) -> dict[str, Any]:
    return {"position": position, "aggregate": aggregate, "at": p.at.isoformat(),
            "recorded_at": ev.recorded_at(p).isoformat(), "type": type(p).__name__,
            "actor": p.actor, "command_id": p.command_id,
            "fields": event_fields(p)}


def bisect(ledger: Ledger, predicate: Predicate, order_id: str | None = None, *,
           at: datetime | None = None, linear: bool = False,
           upto: int | None = None) -> Finding:
    """Find the first event after which ``predicate`` stops holding (see the module doc).

    ``upto``: search only the log up to this position (what was recorded by a
    ``--known-at`` time)."""
    if predicate.uses_order and not order_id:
        raise BisectError("the condition uses `order`: give --order ID")
    steps: list[Step] = []
    if order_id:
        steps = order_history(ledger, order_id, upto=upto)
        if not steps and predicate.uses_order:
            raise BisectError(f"no order {order_id} in the ledger")
    if not predicate.uses_metrics:
        return _scan_order(predicate, order_id, steps)
    search = _Search(ledger, predicate, order_id, steps, at, upto)
    return search.linear() if linear else search.binary()


def _scan_order(predicate: Predicate, order_id: str | None, steps: list[Step]) -> Finding:
    prev: Step | None = None
    for n, step in enumerate(steps, 1):
        if not predicate.holds(step.state, None):
            p = step.payload
            return Finding(
                "found", predicate.text, order_id, "order-events", n, step.position,
                describe_event(step.position, f"order:{order_id}", p),
                {"position": prev.position if prev else None,
                 "order": prev.state if prev else None, "metrics": None},
                {"position": step.position, "order": step.state, "metrics": None})
        prev = step
    last = steps[-1]
    return Finding("never-fails", predicate.text, order_id, "order-events", len(steps),
                   after={"position": last.position, "order": last.state, "metrics": None})


class _Search:
    """Evaluating a condition that involves the metrics at any position."""

    def __init__(self, ledger: Ledger, predicate: Predicate, order_id: str | None,
                 steps: list[Step], at: datetime | None, upto: int | None = None) -> None:
        self.ledger = ledger
        self.predicate = predicate
        self.order_id = order_id
        self.steps = steps if predicate.uses_order else []
        self.positions = [s.position for s in self.steps]
        self.at = at
        self.head = ledger.head() if upto is None else min(upto, ledger.head())
        self.evaluations = 0
        self.cache: dict[int, tuple[bool, dict]] = {}
        self._fallback: datetime | None = None

    # states ------------------------------------------------------------------------

    def order_at(self, position: int) -> dict | None:
        if not self.steps:
            return None
        i = _bisect.bisect_right(self.positions, position)
        return self.steps[i - 1].state if i else None

    def when(self, position: int) -> datetime:
        if self.at is not None:
            return self.at
        t = clock_at(self.ledger, position) if position > 0 else None
        if t is None:
            if self._fallback is None:
                self._fallback = clock_at(self.ledger, 1) or datetime.now(timezone.utc)
            t = self._fallback
        return t

    def state(self, position: int, metrics: Metrics) -> dict:
        return {"position": position, "order": self.order_at(position),
                "metrics": plain(metrics)}

    def state_at(self, position: int) -> dict:
        """The order and the metrics right after ``position`` (one prefix replay)."""
        snap = project(events_upto(self.ledger, position), ["metrics"])
        return self.state(position, snap.metrics(self.when(position)))

    def evaluate(self, position: int) -> tuple[bool, dict]:
        if position not in self.cache:
            st = self.state_at(position)
            self.evaluations += 1
            self.cache[position] = (self.predicate.holds(st["order"], st["metrics"]), st)
        return self.cache[position]

    def start(self) -> int:
        """Where the condition is first looked at: before the order's first event
        (taken to hold), or position 0 (evaluated) when it is about the metrics only."""
        return self.positions[0] - 1 if self.positions else 0

    def finding(self, outcome: str, method: str, **kw: Any) -> Finding:
        return Finding(outcome, self.predicate.text, self.order_id, method, self.evaluations,
                       **kw)

    def event_at(self, position: int) -> dict[str, Any]:
        rows = self.ledger.read_events(after=position - 1, limit=1)
        pos, agg, p = rows[0]
        return describe_event(pos, agg, p)

    # searches ----------------------------------------------------------------------

    def binary(self) -> Finding:
        lo = self.start()
        if not self.positions:
            ok, st = self.evaluate(lo)
            if not ok:
                return self.finding("fails-at-start", "binary", after=st)
        hi = self.head
        ok, st = self.evaluate(hi)
        if ok:
            return self.finding("never-fails", "binary", after=st)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.evaluate(mid)[0]:
                lo = mid
            else:
                hi = mid
        # lo was evaluated, or is the point before the order's first event (taken to hold)
        before = self.cache[lo][1] if lo in self.cache else self.state_at(lo)
        after = self.cache[hi][1]
        return self.finding("found", "binary", position=hi, event=self.event_at(hi),
                            before=before, after=after)

    def linear(self) -> Finding:
        proj = MetricsProjection(complete=True)
        snap = Snapshot({"metrics": proj}, 0)
        table = dispatch_table([proj])
        start = self.start()
        prev: dict | None = None
        if not self.positions:
            ok, prev = self.evaluate(0)
            if not ok:
                return self.finding("fails-at-start", "linear", after=prev)
        for pos, agg, e in self.ledger.iter_events(upto=self.head):
            if pos > start and prev is None:  # just before the order's first event
                prev = self.state(start, snap.metrics(self.when(start)))
            for h in table.get(type(e), ()):
                h(pos, e)
            if pos <= start:
                continue
            when = self.at or self._when_linear(pos, e)
            st = self.state(pos, snap.metrics(when))
            self.evaluations += 1
            if not self.predicate.holds(st["order"], st["metrics"]):
                return self.finding("found", "linear", position=pos,
                                    event=describe_event(pos, agg, e), before=prev, after=st)
            prev = st
        return self.finding("never-fails", "linear", after=prev)

    def _when_linear(self, pos: int, e: ev.Event) -> datetime:
        us = _command_time(self.ledger, pos, e)
        return e.at if us == to_us(e.at) else from_us(us).astimezone(e.at.tzinfo)
