"""Shard files of a parallel rebuild.

A parallel rebuild splits the ledger by order id among forked workers (see
``Views._fill_parallel``). Worker 0 fills the views file's ``__new`` tables;
every other worker k fills the same tables in a scratch file of its own,
``<views>.shard<k>`` -- no journal, no syncs: if anything fails the rebuild is
simply run again -- so no worker ever waits for another to write. When all of
them are done, the parent copies each shard's rows into the views file's
``__new`` tables with one ``INSERT ... SELECT`` per table (SQLite's own loop,
no Python per row), in one transaction, and deletes the shard. The partitions'
rows are disjoint (each row depends on the events of one order, or on events
that are no order's, which all go to worker 0), so the copy needs no merging
logic; the indexes are then built once, at the swap, as for a one-process
rebuild.
"""

from __future__ import annotations

import os
from typing import Any, AsyncContextManager, Callable, Iterable

from .model import PROJECTIONS

NEW = "__new"
_SUFFIXES = ("", "-journal", "-wal", "-shm")


def shard_path(views_path: str, k: int) -> str:
    """The scratch file of worker ``k`` (k >= 1) of a rebuild of ``views_path``."""
    return f"{views_path}.shard{k}"


def remove(views_path: str, jobs: int) -> None:
    """Delete the shard files of a rebuild with ``jobs`` workers (and any leftover)."""
    for k in range(1, max(jobs, 2) + 8):
        for suffix in _SUFFIXES:
            try:
                os.remove(shard_path(views_path, k) + suffix)
            except FileNotFoundError:
                pass


async def prepare(db: Any, names: Iterable[str]) -> None:
    """Make the just-opened shard connection ``db`` a scratch file with empty
    ``__new`` tables of the projections ``names``."""
    await db.execute("PRAGMA journal_mode = OFF")
    await db.execute("PRAGMA synchronous = OFF")
    for n in names:
        for t in PROJECTIONS[n].tables:
            await db.execute(f"DROP TABLE IF EXISTS {t.name}{NEW}")
            await db.execute(t.ddl.format(t=t.name + NEW))


async def merge(db: Any, path: str, names: Iterable[str],
                transaction: Callable[[Any], AsyncContextManager[None]]) -> int:
    """Copy every ``__new`` table of the shard file at ``path`` into the same table of
    ``db`` (the views file), in one ``transaction(db)``; returns the rows copied."""
    copied = 0
    await db.execute("ATTACH DATABASE ? AS shard", (path,))  # not inside a transaction
    try:
        async with transaction(db):
            for n in names:
                for t in PROJECTIONS[n].tables:
                    table = t.name + NEW
                    # table_info leaves out generated columns, which cannot be inserted
                    cols = ", ".join(r[1] for r in await db.execute_fetchall(
                        f"PRAGMA shard.table_info({table})"))
                    cur = await db.execute(
                        f"INSERT INTO main.{table} ({cols}) SELECT {cols} FROM shard.{table}")
                    copied += max(cur.rowcount, 0)
    finally:
        await db.execute("DETACH DATABASE shard")
    return copied
