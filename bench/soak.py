"""Soak harness: SIGKILL the writers and the views for minutes or N kills, then verify.

    python -m bench.soak --minutes 5                       # the long run, by hand (SQLite)
    python -m bench.soak --kills 300 --pg postgresql://postgres@127.0.0.1:5432/test
    python -m bench.soak --kills 6                         # about what CI runs
    python -m bench.soak --kinds service --kills 300       # the HTTP service, killed mid-request

It reuses ``tests/crash_harness.py`` (imported, not copied) and rotates rounds
through three writers, each killed at random moments and re-run (the client
retrying: the same file, so the same command ids) until a run completes:

- ``apply``: one ``crash_harness.harness`` call (kills ``apply``, and beside it
  ``follow``, ``sync`` and ``rebuild`` of the views; it checks every
  acknowledged command is present once, ``check`` is clean, views equal a
  replay, and the state equals a clean run);
- ``feed shipping-confirmation`` on a ledger holding the example orders;
- ``import sp-api`` of the example Orders API pages;
- ``service`` (opt-in: ``--kinds service`` or ``--kinds apply,feed,import-sp-api,service``):
  ``order-ledger serve`` (one worker or two) while client threads post a
  realistic workload one to three lines a request; the whole process group is
  SIGKILLed while requests are in flight and started again, and every request
  that got no answer (connection error, 503) is sent again with the same
  command ids until every line has an answer (see :meth:`Soak.service_round`).

After every feed/import round: the state equals a clean run of the same
command (same events in the same order, same command ids: nothing lost,
nothing doubled), ``check`` is clean, and after ``sync`` the views equal a
replay (``check --views``). With ``--pg URL`` every other round runs on a
fresh PostgreSQL schema (dropped afterwards).

Prints the figures as JSON; exit status 0 when nothing was lost, doubled or
different, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "tests"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import crash_harness as ch  # noqa: E402 - tests/crash_harness.py, reused

from ledger.application import Ledger  # noqa: E402
from ledger.check import check_ledger, read_commands  # noqa: E402

EXAMPLES = ROOT / "examples"
FEED_SETUP = EXAMPLES / "feeds" / "orders.jsonl"
FEED_ARGS = ["feed", "shipping-confirmation", str(EXAMPLES / "feeds" / "shipping-confirmation.txt"),
             "--now", "2026-04-23T10:00:00+02:00", "--yes"]
SPAPI_ARGS = ["import", "sp-api", str(EXAMPLES / "sp-api" / "getOrders.json"),
              "--items", str(EXAMPLES / "sp-api" / "getOrderItems.json")]
KINDS = ("apply", "feed", "import-sp-api")
ALL_KINDS = KINDS + ("service",)


def _cli(args: list[str], db: str, kill_after: float | None = None) -> tuple[int | None, bool, str]:
    """Run ``order-ledger ARGS --db DB``; SIGKILL it after ``kill_after`` seconds if asked."""
    proc = subprocess.Popen(ch.CLI + args + ["--db", db], cwd=str(ROOT), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    killed = threading.Event()

    def kill() -> None:
        if proc.poll() is None:
            killed.set()
            proc.send_signal(signal.SIGKILL)

    timer = threading.Timer(kill_after, kill) if kill_after is not None else None
    if timer:
        timer.start()
    _, err = proc.communicate()
    if timer:
        timer.cancel()
    return proc.returncode, killed.is_set(), err.decode(errors="replace")


def _prepare(db: str, kind: str) -> None:
    if kind == "feed":
        rc, _, err = _cli(["apply", "--quiet", str(FEED_SETUP)], db)
        if rc != 0:
            raise RuntimeError(f"setting up the feed's orders failed: {err[-500:]}")


def _args(kind: str) -> list[str]:
    return FEED_ARGS if kind == "feed" else SPAPI_ARGS


# --- the service: a workload that concurrent clients can post -------------------------------


def _unordered(snap: dict) -> dict:
    """The snapshot with its events grouped by aggregate, each aggregate's in its order."""
    return dict(snap, events=sorted(snap["events"], key=lambda e: e[0]))


def _keys(line: dict) -> list[str]:
    keys = [f"order:{line['order_id']}"] if line.get("order_id") else []
    if line.get("sku"):
        keys.append(f"sku:{line['sku']}")
    keys += [f"sku:{it['sku']}" for it in line.get("items") or () if it.get("sku")]
    return keys


def service_workload(orders: int, seed: int, clients: int) -> tuple[list[dict], list[list[dict]]]:
    """``bench.generate``'s stream for the service, and each client's share of it.

    The lines are those of the crash harness's workload without its ticks (a tick
    touches every order, so where it falls among concurrent clients' lines would
    decide what a late line meets), then one tick at the workload's last tick, posted
    after every client is done. Lines that touch one aggregate -- an order, a SKU, and
    the orders that reserve that SKU -- are joined into one group (union-find), and
    each group belongs to one client, which posts its lines in the file's order: every
    aggregate sees its commands in the file's order, and only the interleaving of
    independent groups differs from run to run. The first list (the groups' lines in
    the file's order, then the tick) is what the clean ``apply`` of the reference gets.
    """
    from bench.generate import generate

    stream = generate(orders, seed)
    ticks = [c for c in stream if c["type"] == "tick"]
    lines = [c for c in stream if c["type"] != "tick"]
    parent: dict[str, str] = {}

    def find(k: str) -> str:
        parent.setdefault(k, k)
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    for c in lines:
        keys = _keys(c)
        if not keys:
            raise ValueError(f"a line the service workload cannot place: {c}")
        for k in keys[1:]:
            parent[find(k)] = find(keys[0])
        find(keys[0])
    groups: dict[str, list[dict]] = {}
    for c in lines:
        groups.setdefault(find(_keys(c)[0]), []).append(c)
    shares: list[list[dict]] = [[] for _ in range(clients)]
    for g in sorted(groups.values(), key=len, reverse=True):  # biggest first, to the lightest
        min(shares, key=len).extend(g)
    index = {c["command_id"]: i for i, c in enumerate(lines)}
    for s in shares:
        s.sort(key=lambda c: index[c["command_id"]])
    final = [dict(ticks[-1], command_id="soak-final-tick")] if ticks else []
    return lines + final, [s for s in shares if s] + ([final] if final else [])


class _Posting:
    """Client threads posting their shares to whichever server is up, retrying."""

    def __init__(self, soak: "Soak", token: str, where: str) -> None:
        self.soak = soak
        self.token = token
        self.where = where
        self.url = ""
        self.lock = threading.Lock()
        self.in_flight = 0
        self.answers: dict[str, list[str]] = {}  # command id -> every status answered
        self.requests = 0
        self.retries = 0
        self.give_up = time.monotonic() + 600

    def post(self, chunk: list[dict]) -> None:
        import httpx

        body = json.dumps(chunk).encode()
        while True:
            if time.monotonic() > self.give_up:
                self.soak.problems.append(f"{self.where}: a request never got an answer")
                return
            with self.lock:
                self.in_flight += 1
                self.requests += 1
                url = self.url
            try:
                r = httpx.post(url + "/api/commands", content=body, timeout=60,
                               headers={"Authorization": f"Bearer {self.token}",
                                        "Content-Type": "application/json"})
            except httpx.HTTPError:  # killed under us, or not up yet: the same ids again
                r = None
            finally:
                with self.lock:
                    self.in_flight -= 1
            if r is None or r.status_code == 503:
                with self.lock:
                    self.retries += 1
                time.sleep(0.05)
                continue
            if "Traceback" in r.text or r.status_code >= 500:
                self.soak.tracebacks += "Traceback" in r.text
                self.soak.problems.append(f"{self.where}: {r.status_code} {r.text[:300]}")
                return
            try:
                rows = r.json()
                statuses = [row["status"] for row in rows]
            except (ValueError, KeyError, TypeError):
                self.soak.problems.append(f"{self.where}: {r.status_code} {r.text[:300]}")
                return
            if len(rows) != len(chunk):
                self.soak.problems.append(f"{self.where}: {len(chunk)} lines, {len(rows)} answers")
            with self.lock:
                for line, row in zip(chunk, rows):
                    self.answers.setdefault(line["command_id"], []).append(row["status"])
            bad = [row for row in rows if row["status"] not in ("applied", "duplicate")]
            if bad:
                self.soak.problems.append(f"{self.where}: rejected: {str(bad[0])[:300]}")
            return

    def client(self, share: list[dict], rng: random.Random) -> None:
        i = 0
        while i < len(share):
            n = rng.choice((1, 1, 1, 2, 3))  # one to three lines a request
            self.post(share[i:i + n])
            i += n


class Soak:
    def __init__(self, *, pg: str | None, seed: int, workdir: Path, verbose: bool,
                 kinds: tuple[str, ...] = KINDS, orders: int = 20, service_kills: int = 4,
                 clients: int = 4) -> None:
        self.pg = pg
        self.kinds = kinds
        self.orders = orders
        self.rng = random.Random(seed)
        self.seed = seed
        self.tmp = workdir
        self.verbose = verbose
        self.kills: Counter = Counter()
        self.kills_by_backend: Counter = Counter()
        self.rounds: Counter = Counter()
        self.rounds_checked = 0
        self.acknowledged = 0
        self.lost = 0
        self.duplicated = 0
        self.check_failures = 0
        self.views_mismatches = 0
        self.mismatched_rounds = 0
        self.tracebacks = 0
        self.problems: list[str] = []
        self.refs: dict[tuple[str, str], tuple[dict, int | None, float]] = {}
        self.n = 0
        self.service_kills = service_kills
        self.clients = clients
        self.service: Counter = Counter()  # requests, retries, answers, workers...
        self.service_refs: dict[tuple[str, int], tuple[dict, Path]] = {}

    # --- bookkeeping -----------------------------------------------------------------------

    def total_kills(self) -> int:
        return sum(self.kills.values())

    def figures(self, seconds: float) -> dict[str, Any]:
        return {"kills": self.total_kills(), "kills_per_command": dict(self.kills),
                "kills_per_backend": dict(self.kills_by_backend),
                "rounds": sum(self.rounds.values()), "rounds_per_kind": dict(self.rounds),
                "rounds_checked": self.rounds_checked,
                "acknowledged_commands": self.acknowledged, "lost": self.lost,
                "duplicated": self.duplicated, "check_failures": self.check_failures,
                "views_mismatches": self.views_mismatches,
                "rounds_differing_from_clean_run": self.mismatched_rounds,
                "tracebacks": self.tracebacks, "problems": self.problems[:20],
                **({"service": dict(self.service)} if self.service else {}),
                "seconds": round(seconds, 1), "ok": self.ok}

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.check_failures or self.views_mismatches
                    or self.mismatched_rounds or self.tracebacks or self.problems)

    def _location(self, backend: str, name: str) -> str:
        self.n += 1
        base = self.pg if backend == "postgresql" else str(self.tmp / "x.db")
        return ch._fresh_location(base, self.tmp, f"soak{self.n}_{name}")

    # --- rounds ----------------------------------------------------------------------------

    def apply_round(self, backend: str, kills: int) -> None:
        """``apply`` with follow/sync/rebuild beside it: the crash harness, reused."""
        rep = ch.harness(kills, orders=self.orders, seed=self.rng.randint(1, 10**6), batch_size=10,
                         tick_every=24, db=self.pg if backend == "postgresql" else None,
                         workdir=str(self.tmp / f"apply{self.n}"),
                         rng_seed=self.rng.randint(1, 10**6))
        self.n += 1
        self.kills["apply"] += rep.kills
        for what, k in rep.view_kills.items():
            self.kills[what] += k
        self.kills_by_backend[backend] += rep.kills + sum(rep.view_kills.values())
        self.rounds["apply"] += rep.rounds
        self.rounds_checked += rep.rounds  # the harness checks every round it runs
        self.acknowledged += rep.acknowledged_applied
        self.lost += rep.lost
        self.duplicated += rep.duplicated
        self.mismatched_rounds += rep.mismatched_rounds
        self.tracebacks += rep.tracebacks
        views = [p for p in rep.problems if "views after sync" in p]
        self.views_mismatches += len(views)
        self.check_failures += rep.check_problems - len(views)
        self.problems.extend(f"apply/{backend}: {p}" for p in rep.problems)

    def reference(self, kind: str, backend: str) -> tuple[dict, int | None, float]:
        if (kind, backend) not in self.refs:
            db = self._location(backend, "ref")
            try:
                _prepare(db, kind)
                began = time.monotonic()
                rc, _, err = _cli(_args(kind), db)
                took = time.monotonic() - began
                if rc not in (0, 1) or "Traceback" in err:
                    raise RuntimeError(f"the clean {kind} run failed ({rc}): {err[-500:]}")
                self.refs[(kind, backend)] = (ch.snapshot(db), rc, took)
            finally:
                ch._drop(db)
        return self.refs[(kind, backend)]

    def writer_round(self, kind: str, backend: str, kills: int) -> None:
        """Kill ``feed``/``import sp-api`` ``kills`` times, retry until it completes, verify."""
        ref, ref_rc, took = self.reference(kind, backend)
        db = self._location(backend, kind.replace("-", "_"))
        views = str(self.tmp / f"soak{self.n}.views.db")
        try:
            _prepare(db, kind)
            done = 0
            while True:
                t = self.rng.uniform(0.05, took * 0.95) if done < kills else None
                rc, killed, err = _cli(_args(kind), db, t)
                if "Traceback" in err:
                    self.tracebacks += 1
                    self.problems.append(f"{kind}/{backend}: traceback: {err[-500:]}")
                if killed:
                    done += 1
                    self.kills[kind] += 1
                    self.kills_by_backend[backend] += 1
                    problems, _ = ch.quick_check(db, {})
                    self.problems.extend(f"{kind}/{backend}: {p}" for p in problems)
                    continue
                if rc != ref_rc:
                    self.problems.append(f"{kind}/{backend}: the completing run ended with {rc}, "
                                         f"the clean run with {ref_rc}: {err[-300:]}")
                break
            self.rounds[kind] += 1
            self.verify(kind, backend, db, views, ref)
        finally:
            ch._drop(db)

    def service_reference(self, backend: str, seed: int) -> tuple[dict, list[list[dict]]]:
        """The clean ``apply`` of the service workload (cached per workload)."""
        lines, shares = service_workload(self.orders, seed, self.clients)
        if (backend, seed) not in self.service_refs:
            path = self.tmp / f"service-{seed}.jsonl"
            path.write_text("".join(json.dumps(c, ensure_ascii=False) + "\n" for c in lines),
                            encoding="utf-8")
            db = self._location(backend, "service_ref")
            try:
                rc, _, err = _cli(["apply", "--quiet", str(path)], db)
                if rc != 0 or "Traceback" in err:
                    raise RuntimeError(f"the clean apply of the service workload failed ({rc}): "
                                       f"{err[-500:]}")
                self.service_refs[(backend, seed)] = (ch.snapshot(db), path)
            finally:
                ch._drop(db)
        return self.service_refs[(backend, seed)][0], shares

    def service_round(self, backend: str, kills: int) -> None:
        """``order-ledger serve`` SIGKILLed ``kills`` times while clients post; then verify.

        A fresh ledger and an operator token; the server with one worker, or two (the
        kill takes the whole process group: the supervisor and its workers). Each
        client thread posts its share one to three lines a request; a request without an
        answer (connection refused or dropped, 503) is sent again with the same command
        ids, to whichever server is up, until it gets one. The harness kills the server
        at a random moment while requests are in flight, starts a new one on the same
        ledger, and so on; after the last kill the clients finish, the final tick is
        posted, and the server is stopped. Then: every line answered ``applied`` or
        ``duplicate`` (an acknowledgement) is in ``ledger_commands``; no command id was
        answered ``applied`` twice, none is stored twice and no event is there more often
        than in the clean run; ``check`` is clean; after ``sync`` the views equal a
        replay; and the state equals the clean ``apply`` of the same lines (every
        aggregate's events in the same order, the same order views, available
        quantities, command ids and clock).
        """
        from service_harness import ROLES, Server, make_token

        seed = self.rng.choice((11, 12, 13))  # a few workloads, each applied cleanly once
        ref, shares = self.service_reference(backend, seed)
        final = shares.pop() if shares and shares[-1][0]["command_id"] == "soak-final-tick" \
            else []
        db = self._location(backend, "service")
        views = str(self.tmp / f"soak{self.n}.views.db")
        log = self.tmp / f"soak{self.n}.serve.log"
        workers = self.rng.choice((1, 1, 2))
        self.service[f"rounds_with_{workers}_worker{'s' if workers > 1 else ''}"] += 1
        where = f"service/{backend}"
        server = None
        try:
            token = make_token(db, "operator", "soak")
            tokens = {r: token for r in ROLES}  # only the operator posts

            def start() -> Server:
                s = Server(db, views=views, workers=workers, tokens=tokens, log=log)
                return s.start(timeout=60)

            server = start()
            posting = _Posting(self, token, where)
            posting.url = server.url
            threads = [threading.Thread(target=posting.client,
                                        args=(share, random.Random(self.rng.random())),
                                        daemon=True) for share in shares]
            for th in threads:
                th.start()
            done = 0
            while done < kills and any(th.is_alive() for th in threads):
                time.sleep(self.rng.uniform(0.05, 0.8))
                wait_until = time.monotonic() + 5
                while posting.in_flight == 0 and time.monotonic() < wait_until and \
                        any(th.is_alive() for th in threads):
                    time.sleep(0.002)
                if posting.in_flight == 0:
                    break  # the clients are done: nothing left to kill mid-request
                self.service["in_flight_at_kill"] += posting.in_flight
                server.kill()  # SIGKILL to the process group
                done += 1
                self.kills["service"] += 1
                self.kills_by_backend[backend] += 1
                with posting.lock:  # the clients are still answering into it
                    acked = {cid: 1 for cid, st in posting.answers.items() if "applied" in st}
                problems, _ = ch.quick_check(db, acked)
                self.problems.extend(f"{where}: after a kill: {p}" for p in problems)
                server = start()
                posting.url = server.url
            for th in threads:
                th.join(timeout=600)
            if final:
                posting.post(final)
            server.stop()
            if "Traceback" in server.output():
                self.tracebacks += 1
                self.problems.append(f"{where}: traceback in the server's log: "
                                     f"{server.output()[-500:]}")
            self.rounds["service"] += 1
            answers = posting.answers
            self.service["requests"] += posting.requests
            self.service["requests_sent_again"] += posting.retries
            self.service["committed_unanswered_then_duplicate"] += sum(
                1 for st in answers.values() if "applied" not in st and "duplicate" in st)
            twice = [cid for cid, st in answers.items() if st.count("applied") > 1]
            self.duplicated += len(twice)
            if twice:
                self.problems.append(f"{where}: answered applied twice: {twice[:3]}")
            unanswered = ref["commands"] - set(answers)
            if unanswered:
                self.problems.append(f"{where}: {len(unanswered)} line(s) never answered")
            snap_commands = ch.snapshot(db)["commands"]
            lost = [cid for cid in answers if cid not in snap_commands]
            self.lost += len(lost)
            if lost:
                self.problems.append(f"{where}: acknowledged but not stored: {lost[:3]}")
            self.verify("service", backend, db, views, ref, ordered=False,
                        acknowledged=len(answers), kill_views=False)
        finally:
            if server is not None:
                server.kill()
            ch._drop(db)

    def verify(self, kind: str, backend: str, db: str, views: str, ref: dict, *,
               ordered: bool = True, acknowledged: int | None = None,
               kill_views: bool = True) -> None:
        """``ordered=False``: the events are compared as a multiset (concurrent clients
        interleave their lines; each aggregate's own events keep their order)."""
        snap = ch.snapshot(db)
        if not ordered:
            snap, ref = _unordered(snap), _unordered(ref)
        with Ledger(db) as led:
            ids = [r[0] for r in read_commands(led)]
            check = check_ledger(led)
        self.acknowledged += len(ref["commands"]) if acknowledged is None else acknowledged
        self.lost += len(ref["commands"] - snap["commands"])
        self.duplicated += len(ids) - len(set(ids)) + max(0, len(snap["events"])
                                                          - len(ref["events"]))
        diff = ch.differences(snap, ref)
        if diff:
            self.mismatched_rounds += 1
            self.problems.extend(f"{kind}/{backend}: {d}" for d in diff)
        if not check.ok:
            self.check_failures += 1
            self.problems.extend(f"{kind}/{backend}: check: {p}" for p in check.problems[:5])
        if ch.projections_available():
            if kill_views and self.rng.random() < 0.5:  # kill a sync or a rebuild of the views
                what = self.rng.choice(["sync", "rebuild"])
                proc = ch.start_views(what, db, views)
                timer = ch.kill_later(proc, self.rng.uniform(0.3, 1.2))
                proc.wait()
                timer.cancel()
                if proc.returncode == -signal.SIGKILL:
                    self.kills[what] += 1
                    self.kills_by_backend[backend] += 1
                self.problems.extend(f"{kind}/{backend}: {p}" for p in ch.views_problems(db, views))
            rc_sync, _, err_sync = _cli(["sync", "--quiet", "--views", views], db)
            rc_check, _, err_check = _cli(["check", "--views", views], db)
            if rc_sync != 0 or rc_check != 0:
                self.views_mismatches += 1
                self.problems.append(f"{kind}/{backend}: views after sync: {err_sync[-200:]} "
                                     f"{err_check[-300:]}")
        self.rounds_checked += 1

    # --- the loop --------------------------------------------------------------------------

    def run(self, *, minutes: float | None, kills: int | None, pg_kills: int | None) -> float:
        started = time.monotonic()
        deadline = started + minutes * 60 if minutes else None
        i = 0
        while True:
            pg_done = self.kills_by_backend["postgresql"]
            sqlite_done = self.kills_by_backend["sqlite"]
            if deadline is not None and time.monotonic() >= deadline:
                break
            if deadline is None and sqlite_done >= (kills or 0) and \
                    (not self.pg or pg_done >= (pg_kills or 0)):
                break
            if self.pg and (deadline is not None or pg_done < (pg_kills or 0)) and \
                    (i % 2 == 1 or (deadline is None and sqlite_done >= (kills or 0))):
                backend, left = "postgresql", (pg_kills or 2) - pg_done if deadline is None else 3
            else:
                backend, left = "sqlite", (kills or 0) - sqlite_done if deadline is None else 3
            kinds = self.kinds
            kind = kinds[i % len(kinds)] if not self.pg else kinds[(i // 2) % len(kinds)]
            n = max(1, min(3, left // len(self.kinds)))  # spread the kills over the kinds
            if kind == "service":  # each kill restarts the server: several a round
                n = self.service_kills if deadline is not None else \
                    max(1, min(self.service_kills, left))
            if self.verbose:
                print(f"round {i + 1}: {kind} on {backend}, {n} kill(s)", file=sys.stderr)
            if kind == "apply":
                self.apply_round(backend, n)
            elif kind == "service":
                self.service_round(backend, n)
            else:
                self.writer_round(kind, backend, n)
            i += 1
        return time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.soak",
                                description=__doc__.split("\n\n")[0])
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--minutes", type=float, help="run for this long")
    g.add_argument("--kills", type=int, help="stop after this many SIGKILLs on SQLite")
    p.add_argument("--pg", metavar="URL", default=None,
                   help="also run on PostgreSQL (fresh schemas, dropped after)")
    p.add_argument("--pg-kills", type=int, default=None,
                   help="with --kills: SIGKILLs on PostgreSQL (default: as many as --kills)")
    p.add_argument("--kinds", default=",".join(KINDS),
                   help=f"comma-separated writers to rotate through (default: {','.join(KINDS)}; "
                        f"also: service)")
    p.add_argument("--orders", type=int, default=20,
                   help="orders in each apply and service round's workload")
    p.add_argument("--service-kills", type=int, default=4,
                   help="SIGKILLs of the server in each service round (default 4)")
    p.add_argument("--clients", type=int, default=4,
                   help="client threads posting in each service round (default 4)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--workdir", default=None, help="keep files here instead of a temp dir")
    p.add_argument("-v", "--verbose", action="store_true")
    a = p.parse_args(argv)
    if (a.minutes is not None and a.minutes <= 0) or (a.kills is not None and a.kills < 0):
        p.error("--minutes and --kills must be positive")
    kinds = tuple(k.strip() for k in a.kinds.split(",") if k.strip())
    unknown = [k for k in kinds if k not in ALL_KINDS]
    if unknown or not kinds:
        p.error(f"--kinds: unknown {', '.join(unknown) or '(none given)'}; "
                f"choose from {', '.join(ALL_KINDS)}")
    tmp = Path(a.workdir or tempfile.mkdtemp(prefix="soak-"))
    tmp.mkdir(parents=True, exist_ok=True)
    if a.service_kills < 1 or a.clients < 1:
        p.error("--service-kills and --clients must be at least 1")
    soak = Soak(pg=a.pg, seed=a.seed, workdir=tmp, verbose=a.verbose, kinds=kinds,
                orders=a.orders, service_kills=a.service_kills, clients=a.clients)
    try:
        seconds = soak.run(minutes=a.minutes, kills=a.kills,
                           pg_kills=a.pg_kills if a.pg_kills is not None else a.kills)
    finally:
        if a.workdir is None:
            shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(soak.figures(seconds), indent=2))
    return 0 if soak.ok else 1


if __name__ == "__main__":
    sys.exit(main())
