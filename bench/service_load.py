"""Load test of ``order-ledger serve`` on loopback, against the CLI's ``apply``.

16 clients (default) each post one command per request -- a ``place`` with
``at`` = now, every order distinct -- while readers poll ``GET /api/orders``
and one client follows ``GET /api/events``. Bounded: ``--commands`` in all and
``--max-seconds``. Reports requests/s, p50/p99 latency, the group commits the
requests shared, events lost on the stream (must be 0), and the ratio to
``order-ledger apply`` of the same commands (one file, one process) in the
same run, on a fresh ledger each.

    python -m bench.service_load --commands 2000 --workers 4
    python -m bench.service_load --db postgresql://postgres@127.0.0.1:5432/test --workers 2
    python -m bench.service_load --service-tree ../before   # a baseline's service, same run
    python -m bench.service_load --no-follow --readers 0    # the posts alone
    python -m bench.service_load --profile /tmp/prof        # py-spy (on PATH) on every process

The load generator is raw keep-alive HTTP/1.1 on asyncio (it shares the cores
with the service); the group commits are counted from the ledger afterwards
(the events of one commit share their recording time).

Prints one JSON object (``--json``) or a short table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def command(n: int, run: str) -> dict[str, Any]:
    order_id = f"203-{n % 10_000_000:07d}-{(n * 7919) % 10_000_000:07d}"
    return {"type": "place", "command_id": f"load-{run}-{n}", "order_id": order_id,
            "at": datetime.now(timezone.utc).isoformat(), "currency": "SEK",
            "ship_service_level": "Standard",
            "items": [{"order_item_id": f"{n:014d}", "sku": "LOAD-1", "title": "Load mug",
                       "quantity": 1, "item_price": "100.00"}],
            "buyer": {"name": "Load Tester", "email": "load@example.se", "language": "sv-SE"},
            "ship_to": {"name": "Load Tester", "address_1": "Gatan 1", "city": "Lund",
                        "postal_code": "22222", "country": "SE"}}


def fresh_location(base: str | None, workdir: Path, name: str) -> tuple[str, str | None]:
    if base and base.startswith("postgres"):
        schema = f"load_{name}_{uuid.uuid4().hex[:8]}"
        sep = "&" if "?" in base else "?"
        return f"{base}{sep}schema={schema}", schema
    return str(workdir / f"{name}.db"), None


def drop(schema: str | None, base: str | None) -> None:
    if schema and base:
        import psycopg

        with psycopg.connect(base.split("?")[0], autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by process ``pid`` and its descendants
    (Linux ``/proc``; 0.0 elsewhere)."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    stats: dict[int, tuple[int, float]] = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += stats.get(p, (0, 0.0))[1]
        todo.extend(c for c, (parent, _) in stats.items() if parent == p)
    return total


def cli_apply(db: str, commands: list[dict]) -> tuple[float, float]:
    """Seconds for ``order-ledger apply`` of the commands (one file, one process), and
    the CPU seconds it used."""
    import resource

    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
        for c in commands:
            f.write(json.dumps(c) + "\n")
        path = f.name
    try:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "order_ledger", "apply", path, "--db", db,
                              "-q"], env=env, capture_output=True, text=True)
        took = time.perf_counter() - start
        cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        if out.returncode != 0:
            raise RuntimeError(f"apply failed: {out.stdout}{out.stderr}")
        return took, (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    finally:
        os.unlink(path)


class RawClient:
    """One keep-alive HTTP/1.1 connection with as little client work as possible, so the
    load generator (on the same machine) leaves the CPU to the server."""

    def __init__(self, host: str, port: int, token: str) -> None:
        self.host, self.port = host, port
        self.auth = f"Authorization: Bearer {token}\r\n".encode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        return await self.request(
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\n".encode() + self.auth
            + b"Content-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\n\r\n" + body)

    async def get(self, path: str) -> tuple[int, bytes]:
        return await self.request(
            f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\n".encode() + self.auth + b"\r\n")

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        return status, await self.reader.readexactly(length)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def run_load(url: str, token: str, commands: list[dict], clients: int, readers: int,
                   max_seconds: float, follow_events: bool = True) -> dict[str, Any]:
    import httpx

    queue: asyncio.Queue = asyncio.Queue()
    for c in commands:
        queue.put_nowait(c)
    latencies: list[float] = []
    failures: list[str] = []
    acked: list[str] = []
    stop = asyncio.Event()
    headers = {"Authorization": f"Bearer {token}"}
    deadline = time.monotonic() + max_seconds
    reads = 0
    seen: set[int] = set()
    start_head = 0

    limits = httpx.Limits(max_connections=clients + readers + 2)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60,
                                 limits=limits) as http:
        start_head = (await http.get("/health")).json()["head"]

        from urllib.parse import urlparse

        u = urlparse(url)

        async def poster() -> None:
            raw = RawClient(u.hostname or "127.0.0.1", u.port or 80, token)
            try:
                while not queue.empty() and time.monotonic() < deadline:
                    c = queue.get_nowait()
                    body = json.dumps([c]).encode()
                    t0 = time.perf_counter()
                    status, text = await raw.post("/api/commands", body)
                    latencies.append(time.perf_counter() - t0)
                    if status != 200 or json.loads(text)[0]["status"] != "applied":
                        failures.append(text[:200].decode(errors="replace"))
                    else:
                        acked.append(c["command_id"])
            finally:
                await raw.close()

        async def reader() -> None:
            nonlocal reads
            raw = RawClient(u.hostname or "127.0.0.1", u.port or 80, token)
            try:
                while not stop.is_set():
                    status, _ = await raw.get("/api/orders?limit=10")
                    if status == 200:
                        reads += 1
                    await asyncio.sleep(0.05)
            finally:
                await raw.close()

        async def follower() -> None:
            # the stream's raw bytes (chunked): every line "id: N" is an event; a line
            # cut by a read is kept for the next one
            r, w = await asyncio.open_connection(u.hostname or "127.0.0.1", u.port or 80)
            w.write(f"GET /api/events?after={start_head} HTTP/1.1\r\nHost: x\r\n"
                    f"Authorization: Bearer {token}\r\n\r\n".encode())
            rest = b""
            top = 0
            try:
                while True:
                    data = await r.read(65536)
                    if not data:
                        return
                    lines = (rest + data).split(b"\r\n")
                    rest = lines.pop()
                    for line in lines:
                        if line[:4] == b"id: ":
                            top = int(line[4:])
                            seen.add(top)
                    if stop.is_set() and final_head and top >= final_head:
                        return
            finally:
                w.close()

        final_head = 0
        follow = asyncio.create_task(follower()) if follow_events else None
        read_tasks = [asyncio.create_task(reader()) for _ in range(readers)]
        await asyncio.sleep(0.3)
        t0 = time.perf_counter()
        await asyncio.gather(*(poster() for _ in range(clients)))
        elapsed = time.perf_counter() - t0
        stop.set()
        final_head = (await http.get("/health")).json()["head"]
        if follow is not None:
            try:
                await asyncio.wait_for(follow, timeout=30)
            except asyncio.TimeoutError:
                follow.cancel()
        for t in read_tasks:
            t.cancel()
        await asyncio.gather(*read_tasks, return_exceptions=True)
    expected = set(range(start_head + 1, final_head + 1))
    lat = sorted(latencies)
    return {"requests": len(latencies), "acked": len(acked), "failures": len(failures),
            "start_head": start_head,
            "failure_sample": failures[:3], "seconds": elapsed,
            "throughput": len(acked) / elapsed if elapsed else 0.0,
            "p50_ms": 1000 * statistics.median(lat) if lat else None,
            "p99_ms": 1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else None,
            "reads": reads, "events": len(expected),
            "events_lost": len(expected - seen) if follow_events else None}


def main(argv: list[str] | None = None) -> int:
    from service_harness import Server

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", default=None, help="a postgresql:// URL (default: SQLite files)")
    ap.add_argument("--commands", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--readers", type=int, default=2)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--max-seconds", type=float, default=120.0)
    ap.add_argument("--no-follow", action="store_true",
                    help="no client follows the event stream (to measure it apart)")
    ap.add_argument("--profile", metavar="DIR", default=None,
                    help="record the service's processes with py-spy (on PATH) into DIR")
    ap.add_argument("--service-tree", metavar="DIR", default=None,
                    help="run the service from another checkout (a baseline in the same run)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    run = uuid.uuid4().hex[:6]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cli_db, cli_schema = fresh_location(args.db, work, "cli")
        svc_db, svc_schema = fresh_location(args.db, work, "svc")
        try:
            cli_cmds = [command(n, run + "c") for n in range(1, args.commands + 1)]
            cli_seconds, cli_cpu = cli_apply(cli_db, cli_cmds)
            # the service's ledger exists (with its tokens) before the clock starts
            # the caller's PYTHONPATH after the project's: optional packages installed
            # aside (e.g. uvicorn's httptools and uvloop) reach the workers
            path = os.pathsep.join([args.service_tree or str(ROOT)] + [p for p in os.environ.get(
                "PYTHONPATH", "").split(os.pathsep) if p])
            server = Server(svc_db, workers=args.workers, extra=("--tick-interval", "0"),
                            env={"PYTHONPATH": path}).start(timeout=60)
            try:
                svc_cmds = [command(n, run + "s") for n in range(1, args.commands + 1)]
                assert server.proc is not None
                spy = _profile(server.proc.pid, args.profile) if args.profile else None
                cpu0, own0 = tree_cpu(server.proc.pid), time.process_time()
                result = asyncio.run(run_load(server.url, server.tokens["operator"], svc_cmds,
                                              args.clients, args.readers, args.max_seconds,
                                              follow_events=not args.no_follow))
                cpu1, own1 = tree_cpu(server.proc.pid), time.process_time()
                if spy is not None:
                    spy.send_signal(2)
                    spy.wait(timeout=60)
                commits = _group_commits(server, args.workers)
            finally:
                server.stop()
            commits["commits_seen"] = _commits_in_ledger(svc_db, result["start_head"])
        finally:
            drop(cli_schema, args.db)
            drop(svc_schema, args.db)
    cli_rate = args.commands / cli_seconds
    result.update({"backend": "postgresql" if args.db else "sqlite", "workers": args.workers,
                   "clients": args.clients, "commands": args.commands,
                   "cli_seconds": cli_seconds, "cli_throughput": cli_rate,
                   "ratio": result["throughput"] / cli_rate, **commits,
                   # CPU per command: the service's processes (readers and the event
                   # stream included) and the load generator's, against the CLI's
                   "cli_cpu_ms": 1000 * cli_cpu / args.commands,
                   "service_cpu_ms": 1000 * (cpu1 - cpu0) / max(1, result["acked"]),
                   "client_cpu_ms": 1000 * (own1 - own0) / max(1, result["acked"]),
                   "loadavg": os.getloadavg()[0] if hasattr(os, "getloadavg") else None})
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['backend']}, {args.workers} workers, {args.clients} clients, "
              f"{args.commands} commands (one per request)")
        print(f"  service: {result['throughput']:,.0f} commands/s, p50 "
              f"{result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms, "
              f"{result['failures']} failed, {result['reads']} reads, "
              f"events lost {result['events_lost']} of {result['events']}")
        print(f"  group commits: {result['commits_seen']} for {result['acked']} requests")
        print(f"  cli apply: {cli_rate:,.0f} commands/s ({cli_seconds:.2f} s with start-up)")
        print(f"  CPU per command: service {result['service_cpu_ms']:.2f} ms, load generator "
              f"{result['client_cpu_ms']:.2f} ms, cli {result['cli_cpu_ms']:.2f} ms "
              f"(load average {result['loadavg']})")
        print(f"  ratio service/cli: {result['ratio']:.2f}")
    ok = result["events_lost"] in (0, None) and result["failures"] == 0
    return 0 if ok else 1


def _profile(pid: int, out: str) -> subprocess.Popen:
    """py-spy recording every process of the service (raw collapsed stacks), until
    interrupted."""
    os.makedirs(out, exist_ok=True)
    spy = subprocess.Popen(["py-spy", "record", "--pid", str(pid), "--subprocesses",
                            "--threads", "--rate", "200", "--format", "raw",
                            "--nonblocking", "-o", os.path.join(out, "service.txt")],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.5)
    return spy


def _commits_in_ledger(db: str, after: int) -> int:
    """The durable transactions that recorded the run's events: the events of one batch
    share their recording time."""
    from ledger.application import Ledger

    times: set[Any] = set()
    with Ledger(db, mode="read") as led:
        pos = after
        while True:
            rows = led.read_events(pos, 1000)
            if not rows:
                return len(times)
            times.update(p.recorded_at for _, _, p in rows)
            pos = rows[-1][0]


def _group_commits(server: Any, workers: int) -> dict[str, int]:
    """Requests and commits summed over the worker processes /health reached."""
    import httpx

    by_pid: dict[int, dict] = {}
    with httpx.Client(base_url=server.url, timeout=5) as c:
        for _ in range(workers * 8):
            h = c.get("/health", headers={"Connection": "close"}).json()
            by_pid[h["pid"]] = h
    return {"requests_seen": sum(h["requests"] for h in by_pid.values()),
            "commits_seen": sum(h["commits"] for h in by_pid.values()),
            "processes_seen": len(by_pid)}


if __name__ == "__main__":
    sys.exit(main())
