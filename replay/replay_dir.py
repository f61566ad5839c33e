"""Replay to a directory: every view as of a point, written as files.

``write_replay(ledger, point, out_dir)`` rebuilds every seller-facing
projection in memory from the events up to ``point`` (the live views are not
touched) and writes:

| file | content |
|---|---|
| ``orders.txt`` | the Orders report (tab-separated, the bytes ``report orders`` writes) |
| ``unshipped.txt`` | the Unshipped Orders report at the evaluation time (likewise) |
| ``manage-orders.json`` | Manage Orders (as ``orders --json``) |
| ``inventory.json`` | Manage Inventory (as ``inventory --json``) |
| ``metrics.json`` | seller metrics at the evaluation time (as ``metrics --json``) |
| ``notifications.json`` | the notifications (as ``notifications --json``) |
| ``replay.json`` | the point (position, as-of, evaluation time) and each file's SHA-256 |

The same events and the same point give byte-identical files: nothing in
them depends on the wall clock, the machine, or the ledger's storage.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime
from decimal import Decimal
from typing import Any

from ledger.application import Ledger
from projections.read import ReportEncodingError, encode_report
from projections.rows import plain

from .asof import VIEW_NAMES, Point, evaluation_time, snapshot

FILES: tuple[str, ...] = ("orders.txt", "unshipped.txt", "manage-orders.json",
                          "inventory.json", "metrics.json", "notifications.json")
MANIFEST = "replay.json"


class ReplayDirError(ValueError):
    """The output directory cannot be used (message says why)."""


def _default(obj: Any) -> Any:
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, Decimal):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")


def dumps(obj: Any) -> bytes:
    """Stable JSON: keys in the views' own order, two-space indent, UTF-8, final newline."""
    return (json.dumps(obj, ensure_ascii=False, indent=2, default=_default) + "\n").encode()


def write_atomic(path: str, data: bytes) -> None:
    """Write a file so readers see the old one or the whole new one, never half."""
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def prepare_dir(out_dir: str) -> None:
    """Create ``out_dir`` if missing; its parent must exist (a typo does not make a tree)."""
    path = os.path.abspath(out_dir)
    if os.path.isdir(path):
        return
    if os.path.exists(path):
        raise ReplayDirError(f"{out_dir!r} exists and is not a directory")
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        raise ReplayDirError(f"cannot create {out_dir!r}: its parent directory {parent!r} "
                             "does not exist")
    try:
        os.mkdir(path)
    except OSError as exc:
        raise ReplayDirError(f"cannot create {out_dir!r}: {exc.strerror}") from None


def _report_bytes(text: str) -> bytes:
    """A report as ``report`` writes it by default (the marketplace's encoding); UTF-8
    when its orders' marketplaces use different encodings (``report`` then asks for
    ``--encoding``)."""
    try:
        return encode_report(text)[0]
    except ReportEncodingError:
        return text.encode("utf-8")


def render(ledger: Ledger, point: Point, at: datetime | None = None) -> dict[str, bytes]:
    """The files' contents (name -> bytes), manifest included."""
    when = evaluation_time(point, at)
    snap = snapshot(ledger, point, VIEW_NAMES)
    files = {
        "orders.txt": _report_bytes(snap.report_orders(when)),
        "unshipped.txt": _report_bytes(snap.report_unshipped(when)),
        "manage-orders.json": dumps(plain(snap.orders())),
        "inventory.json": dumps(plain(snap.inventory())),
        "metrics.json": dumps(plain(snap.metrics(when))),
        "notifications.json": dumps(plain(snap.notifications())),
    }
    manifest = {
        **point.as_dict(),
        "at": when.isoformat(),
        "files": {name: hashlib.sha256(data).hexdigest() for name, data in files.items()},
    }
    files[MANIFEST] = dumps(manifest)
    return files


def write_replay(ledger: Ledger, point: Point, out_dir: str,
                 at: datetime | None = None) -> dict[str, Any]:
    """Write the files into ``out_dir`` (each atomically); returns the manifest."""
    prepare_dir(out_dir)
    files = render(ledger, point, at)
    for name, data in files.items():
        target = os.path.join(out_dir, name)
        try:
            write_atomic(target, data)
        except OSError as exc:
            raise ReplayDirError(f"cannot write {target!r}: {exc.strerror}") from None
    return json.loads(files[MANIFEST])
