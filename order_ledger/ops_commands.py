"""Operations: ``order-ledger check``, ``backup``, ``restore`` and ``keygen``.

Registered on the command group by :mod:`order_ledger.cli` through
:func:`register`. A ledger error escaping any command (a busy ledger, an
unreadable store, a wrong cipher key) ends with ``Error: ...`` and exit status
1 (2 for a store that cannot be read or opened) through the command group.

Exit status: 0 fine; 1 the check found problems, or the ledger is busy;
2 usage errors (no such ledger, a target directory that does not exist, a
PostgreSQL ledger given to ``backup``).
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from ledger.errors import StoreError
from ledger.backend import Backend

from .common import (console, db_option, err_console, json_option, open_ledger, open_reader,
                     print_json)


def register(main: click.Group) -> None:
    for command in (check_cmd, backup_cmd, restore_cmd, keygen_cmd, digest_cmd, migrate_cmd):
        main.add_command(command)


# --- check ---------------------------------------------------------------------------------


def projection_check(views: str | None, notes: list[str]) -> Any:
    """A :data:`ledger.check.EXTRA_CHECKS` function for the stored views.

    Each view's checkpoint must not be ahead of the ledger's head, and what the
    view holds must equal the projections replayed in memory from the events up
    to its checkpoint (orders, both reports, inventory, metrics, notifications).
    Read-only: the views are not caught up first, and a missing views file is
    not created.
    """

    def check_views(ledger: Any, state: Any) -> list[Any]:
        import asyncio

        from ledger.check import Problem

        try:
            from projections import Views, views_path
            from projections.verify import mismatches, view_points
        except ImportError:  # pragma: no cover - the package is optional
            notes.append("projections are not installed: views not checked")
            return []
        path = views_path(ledger.db, views)
        if path == ":memory:" or not os.path.exists(path):
            notes.append(f"no views file at {path}: views not checked")
            return []
        head = state.head
        at = ledger.now()
        problems: list[Any] = []

        async def run() -> None:
            async with Views(ledger, views, auto_sync=False) as v:
                points = await view_points(v, head)
                for p in sorted(points.values(), key=lambda p: p.name):
                    if p.ahead:
                        problems.append(Problem(
                            "view-ahead", f"the {p.name} view's checkpoint {p.checkpoint} is "
                            f"ahead of the ledger's head {head}", path))
                behind = sorted(p.name for p in points.values() if p.behind)
                if behind:
                    notes.append(f"views behind the head ({', '.join(behind)}): compared at "
                                 "their checkpoints; `order-ledger sync` catches them up")
                for m in await mismatches(v, ledger, points.values(), at):
                    problems.append(Problem(
                        "view-differs", f"{m.what} in the {m.view} view differ from a "
                        f"replay of the events up to its checkpoint {m.checkpoint}; rebuild it "
                        f"(`order-ledger rebuild {m.view}`)", path))

        asyncio.run(run())
        return problems

    return check_views


@click.command("check")
@db_option
@click.option("--views", envvar="ORDER_LEDGER_VIEWS", default=None, metavar="PATH",
              help="The views file to check too (default: beside the ledger, as for "
                   "`order-ledger sync`). Also ORDER_LEDGER_VIEWS.")
@json_option
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 1_000_000),
              help="Report at most this many problems (the rest are counted).")
@click.option("--digest", "digest", default=None, metavar="POSITION:HEXHASH",
              help="Also prove that today's history extends this digest (as printed by "
                   "`order-ledger digest` earlier) unchanged.")
def check_cmd(db: str | None, views: str | None, as_json: bool, limit: int,
              digest: str | None = None) -> None:
    """Verify the store: positions, decoding, replay, rules, indexes, clock, views.

    Replays every aggregate through the domain, re-checks the invariants
    (quantities, status, inventory never negative, time order), compares the
    deadline index with each open order, and the accepted command ids with the
    events. When a views file exists, its checkpoints must not be ahead of the
    ledger and its contents must equal a replay of the events. Nothing is
    changed. Exit 0 when clean, 1 when anything is wrong (each problem printed).

    Every event is verified against the ledger's hash chain; the first one
    that was edited, deleted, inserted or moved is named.
    """
    from ledger.chain import Digest
    from ledger.check import check_ledger

    try:
        wanted = Digest.parse(digest) if digest is not None else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--digest") from None
    ledger = open_reader(db)
    notes: list[str] = []
    report = check_ledger(ledger, limit=limit, extra=[projection_check(views, notes)],
                          digest=wanted)
    report.notes.extend(notes)
    if as_json:
        print_json(report.as_dict())
        sys.exit(0 if report.ok else 1)
    k = report.counts
    statuses = ", ".join(f"{n} {s}" for s, n in k["statuses"].items())
    summary = (f"{k['events']:,} events (head {k['head']}), {k['orders']:,} orders"
               f"{' (' + statuses + ')' if statuses else ''}, {k['skus']:,} SKUs, "
               f"{k['commands']:,} accepted commands, {k['deadlines']:,} open deadlines; "
               f"clock {k['clock'] or '-'}")
    for note in report.notes:
        console.print(f"note: {note}", markup=False)
    if report.ok:
        console.print(f"ledger OK: {summary}", markup=False)
        return
    for p in report.problems:
        console.print(str(p), markup=False)
    by_code = ", ".join(f"{code} {n}" for code, n in k["problems"].items())
    total = sum(k["problems"].values())
    console.print(f"ledger has {total} problem(s) ({by_code}"
                  f"{f'; {report.omitted} not listed' if report.omitted else ''}): {summary}",
                  markup=False)
    sys.exit(1)


# --- tamper evidence -------------------------------------------------------------------------


@click.command("digest")
@db_option
@json_option
def digest_cmd(db: str | None, as_json: bool) -> None:
    """Print the head of the ledger's hash chain as one token, POSITION:HEXHASH.

    Publish it or keep it somewhere else: later, `order-ledger check --digest
    TOKEN` proves that the history up to POSITION is still exactly what it was.
    """
    ledger = open_reader(db)
    head = ledger.digest()
    events = ledger.head()
    if head is None and events:
        raise click.UsageError("this ledger has no hash chain yet: run `order-ledger migrate` "
                               "once to add it")
    if as_json:
        print_json({"digest": str(head) if head else None,
                    "position": head.position if head else 0,
                    "hash": head.hash.hex() if head else None, "algorithm": "sha256",
                    "events": events})
        return
    click.echo(str(head) if head else "0:" + "0" * 64)


@click.command("migrate")
@db_option
@json_option
def migrate_cmd(db: str | None, as_json: bool) -> None:
    """Bring a ledger written by an older version up to date (once; safe to repeat).

    Today: hash every stored event into the tamper-evidence chain, in one
    transaction, under the writer lock.
    """
    open_reader(db).close()  # a ledger to migrate must exist: never create one here
    ledger = open_ledger(db)
    hashed = ledger.migrate()
    head = ledger.digest()
    if as_json:
        print_json({"chained": hashed, "digest": str(head) if head else None})
        return
    console.print(f"hash chain: {hashed:,} event(s) hashed" if hashed else
                  "hash chain: already in place, nothing to do", markup=False)
    if head:
        console.print(f"digest: {head}", markup=False)


# --- backup and restore ----------------------------------------------------------------------


def _print_copy(verb: str, result: Any, as_json: bool) -> None:
    if as_json:
        print_json(result.as_dict())
        return
    console.print(
        f"{verb} {result.events:,} events (head {result.head}, {result.commands:,} commands, "
        f"clock {result.clock or '-'}) to {result.path} in {result.seconds:.2f} s "
        f"({result.bytes / 1e6:.1f} MB)", markup=False)


@click.command("backup")
@click.argument("file", type=click.Path(dir_okay=False, path_type=str))
@db_option
@json_option
@click.option("--force", is_flag=True, help="Replace FILE if it exists.")
def backup_cmd(file: str, db: str | None, as_json: bool, force: bool) -> None:
    """Copy the live ledger to FILE, consistently, while writers keep writing.

    SQLite only (the backup API, one snapshot); for PostgreSQL this prints how
    to use pg_dump and exits 2. Restore with `order-ledger restore FILE`, or
    open the copy directly with --db FILE.
    """
    from ledger.backup import PG_GUIDANCE, backup

    backend = Backend.of(db)
    if not backend.copies_files:
        err_console.print(
            "Error: `order-ledger backup` copies SQLite ledgers; this ledger is on PostgreSQL.",
            markup=False)
        err_console.print(PG_GUIDANCE, markup=False)
        sys.exit(2)
    try:
        result = backup(backend.location, file, overwrite=force)  # "no ledger at …" when missing
    except StoreError as exc:
        raise click.UsageError(str(exc)) from None
    _print_copy("backed up", result, as_json)


@click.command("restore")
@click.argument("backup_file", metavar="BACKUP", type=click.Path(dir_okay=False, path_type=str))
@db_option
@json_option
@click.option("--force", is_flag=True, help="Replace the ledger at --db if it holds one.")
def restore_cmd(backup_file: str, db: str | None, as_json: bool, force: bool) -> None:
    """Copy a backup made by `order-ledger backup` into the ledger at --db.

    Refuses to replace an existing ledger without --force. Views kept beside
    the ledger are then ahead of it: rebuild them (`order-ledger rebuild`).
    """
    from ledger.backup import restore

    backend = Backend.of(db)
    if not backend.copies_files:
        raise click.UsageError("restore copies SQLite ledgers; restore PostgreSQL with "
                               "pg_restore (see `order-ledger backup --help`)")
    try:
        result = restore(backup_file, backend.location, overwrite=force)
    except StoreError as exc:
        raise click.UsageError(str(exc)) from None
    _print_copy("restored", result, as_json)
    if not as_json:
        console.print("next: run `order-ledger check`, then rebuild the views", markup=False)


# --- keys ------------------------------------------------------------------------------------


@click.command("keygen")
@click.option("--bytes", "size", type=click.Choice(["16", "24", "32"]), default="32",
              show_default=True, help="Key size (AES-128, AES-192, AES-256).")
def keygen_cmd(size: str) -> None:
    """Print a new random key for ORDER_LEDGER_CIPHER_KEY (encryption at rest).

    Keep it outside the ledger's directory and its backups: without it the
    events cannot be read. See docs/reliability.md.
    """
    try:
        from eventsourcing.cryptography import AESCipher
    except ImportError:  # pragma: no cover - the dependency is missing
        raise click.ClickException(
            "encryption needs the 'cryptography' package: pip install cryptography") from None
    click.echo(AESCipher.create_key(int(size)))
    if sys.stdout.isatty():
        err_console.print("set it with: export ORDER_LEDGER_CIPHER_KEY=<the key above>",
                          markup=False)
