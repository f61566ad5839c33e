"""Shared pieces of the command line: options, opening the ledger, output."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from decimal import Decimal
from typing import Any, Awaitable, Callable, Iterable, Literal

import click
from rich.console import Console

from ledger.application import Ledger
from ledger.clock import SystemClock
from ledger.errors import LedgerError, StoreError

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


class When(click.ParamType):
    """An ISO-8601 time with a UTC offset."""

    name = "TIME"

    def convert(self, value: Any, param: Any, ctx: Any) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            t = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            self.fail(f"{value!r} is not an ISO-8601 time (e.g. 2026-03-01T10:00:00+01:00)",
                      param, ctx)
        if t.tzinfo is None:
            self.fail(f"{value!r} has no UTC offset; add one such as +01:00 or Z", param, ctx)
        return t


WHEN = When()

db_option = click.option(
    "--db", envvar="ORDER_LEDGER_DB", default=None, metavar="PATH|URL",
    help="Ledger location: a SQLite file (default ./order-ledger.db) or a postgresql:// URL. "
         "Also ORDER_LEDGER_DB.")
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for programs.")
now_option = click.option(
    "--now", type=WHEN, default=None,
    help="The business time to act at (ISO-8601 with offset); default: the wall clock "
         "(asked first when that is more than a day past the ledger's time; see --yes).")
yes_option = click.option(
    "--yes", "-y", is_flag=True,
    help="Without --now: act at the wall clock even when it is more than a day past the "
         "ledger's latest time (letting every deadline due by then fire), without asking.")


def stdin_is_terminal() -> bool:
    """Whether someone can answer a question (tests replace this)."""
    return sys.stdin.isatty()


def guard_wall_clock(ledger: Ledger, now: datetime | None, yes: bool,
                     order_id: str | None = None) -> None:
    """Refuse to jump the ledger's clock to the wall clock by accident.

    A command without ``--now`` acts at the wall clock; when that is more than
    ``CLOCK_JUMP_LIMIT`` past the ledger's latest business time, every deadline
    due in between would fire first (a forgotten ``--now`` on an old ledger
    cancels its open orders for good). Then: ``--yes`` goes on; on a terminal
    the user is asked, naming what would fire; otherwise it is a usage error.
    """
    if now is not None or yes:
        return
    at = ledger.clock.now()
    p = ledger.clock_jump(at, order_id)
    if p is None or p.ledger_time is None or p.jump is None:
        return
    what = (f"no --now given, so this acts at the wall clock {at.isoformat(timespec='seconds')}, "
            f"{_days(p.jump)} after the ledger's latest time "
            f"{p.ledger_time.isoformat(timespec='seconds')}: {p.deadlines} deadline(s) would fire "
            f"first, canceling {p.orders_canceled} order(s)")
    if p.by_event:
        what += " (" + ", ".join(f"{n} {name}" for name, n in sorted(p.by_event.items())) + ")"
    if stdin_is_terminal():
        err_console.print(what, markup=False)
        try:
            if click.confirm("Go on at the wall clock?", default=False, err=True):
                return
        except click.Abort:  # end of input or Ctrl-C at the question: a no
            pass
        raise click.UsageError("nothing written; pass --now TIME to act at a business time")
    raise click.UsageError(
        f"{what}; nothing written. Pass --now TIME to act at a business time, "
        "or --yes to act at the wall clock anyway")


def _days(delta: Any) -> str:
    days = delta.total_seconds() / 86400
    return f"{days:.1f} days" if days < 10 else f"{days:.0f} days"


def _opened(db: str | None, opener: Callable[[], Ledger]) -> Ledger:
    """``opener()``, with the library's store errors (no ledger, read-only, unreachable
    server, bad URL) as usage errors: exit 2 with the reason."""
    try:
        return opener()
    except StoreError as exc:
        raise click.UsageError(str(exc)) from None
    except LedgerError as exc:
        raise click.ClickException(str(exc)) from None
    except Exception as exc:  # the library's connection errors, bad URLs
        raise click.UsageError(f"cannot open the ledger {db!r}: {exc}") from None


def closed_with_command(ledger: Ledger) -> Ledger:
    """Close ``ledger`` when the running command ends, however it ends (its click
    context's resources); outside a command the caller closes it."""
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.with_resource(ledger)
    return ledger


def open_ledger(db: str | None, now: datetime | None = None, *, mode: str = "write") -> Ledger:
    """Open the ledger for a command, closed when the command ends (errors: see
    :func:`_opened`)."""
    # the recording clock is always the system's: --now is a command's business time
    ledger = closed_with_command(_opened(db, lambda: Ledger(db, clock=SystemClock(), mode=mode)))
    # a writer waiting out a PostgreSQL restart says so on stderr
    ledger.notice = lambda message: err_console.print(message, markup=False, highlight=False)
    if mode == "write":
        try:
            ledger.probe_store()  # e.g. a cipher key that does not fit: refused before any work
        except StoreError as exc:
            raise click.UsageError(str(exc)) from None
    return ledger


def open_reader(db: str | None, now: datetime | None = None) -> Ledger:
    """Open an existing ledger read-only for a read command: exit 2 "no ledger at …"
    when there is none (nothing is created); works on read-only storage."""
    return open_ledger(db, now, mode="read")


def to_jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, Decimal):
        return str(obj)
    return obj


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(to_jsonable(obj), ensure_ascii=False) + "\n")


def print_table(rows: list[dict], columns: list[str] | None = None, title: str | None = None,
                formats: dict[str, Callable[[Any], str]] | None = None) -> None:
    """Print rows as a table for people (see :func:`print_rows`)."""
    if not rows:
        console.print(f"{title + ': ' if title else ''}(no rows)", markup=False)
        return
    columns = columns or list(rows[0])
    formats = formats or {}
    print_rows([[formats[col](row.get(col)) if col in formats else _cell(row.get(col))
                 for col in columns] for row in rows], columns, title)


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "yes" if v else "no"
    return str(v)


def describe_error(err: dict) -> str:
    text = f"[{err.get('code')}] {err.get('message')}"
    if err.get("field"):
        text += f" (field: {err['field']})"
    if err.get("hint"):
        text += f" — fix: {err['hint']}"
    return text


def open_ledger_for_check(db: str | None, now: datetime | None = None) -> Ledger:
    """The ledger a ``--check`` decides against: the one at ``db``, else an empty one
    in memory (a check never creates a ledger); errors as :func:`open_ledger`."""
    from ledger.application import open_for_dry_run

    return closed_with_command(_opened(db, lambda: open_for_dry_run(db, clock=SystemClock())))


# --- big outputs ------------------------------------------------------------------------


#: characters that would break a plain table's lines or columns
_BREAKS = {ord(c): " " for c in "\t\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"}


def print_rows(rows: list[list[str]], columns: list[str], title: str | None = None,
               keep: tuple[str, ...] = ()) -> None:
    """A table for people. On a terminal: a rich table fitted to its width
    (``keep`` columns -- ids, dates -- never wrapped or cut). Otherwise (a pipe,
    a file): plain aligned columns, two spaces apart, the title on the first
    line; never cut or wrapped, however wide, and fast for thousands of rows."""
    if console.is_terminal:
        from rich.table import Table
        from rich.text import Text

        table = Table(title=title)
        for col in columns:
            table.add_column(col, no_wrap=col in keep,
                             min_width=len(col) if col in keep else None)
        for row in rows:
            table.add_row(*[Text(v) for v in row])  # cells are data, never markup
        console.print(table)
        return
    cells = [[str(v).translate(_BREAKS) for v in row] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    out = [title] if title else []
    out.append("  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip())
    out.extend("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in cells)
    console.file.write("\n".join(out) + "\n")
    console.file.flush()


class Bar:
    """A rich progress bar on stderr for long work (rebuild, sync, apply): done,
    rate, time left; transient. Shown only when ``enabled`` and stderr is a
    terminal -- and, with ``needs_stdout_tty``, stdout too (a command that prints
    while the bar runs must not have its output taken into the terminal)."""

    def __init__(self, label: str, enabled: bool, *, unit: str = "events",
                 needs_stdout_tty: bool = False, out: Console | None = None) -> None:
        self.label = label
        self.unit = unit
        self.out = out or err_console
        self.enabled = enabled and self.out.is_terminal and (
            not needs_stdout_tty or console.is_terminal)
        self.progress: Any = None
        self.task: Any = None

    def __enter__(self) -> "Bar":
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                ProgressColumn,
                TextColumn,
                TimeRemainingColumn,
            )
            from rich.text import Text

            unit = self.unit

            class Rate(ProgressColumn):
                def render(self, task: Any) -> Text:
                    speed = task.finished_speed or task.speed
                    return Text("" if speed is None else f"{speed:,.0f} {unit}/s")

            self.progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn(unit), Rate(), TimeRemainingColumn(),
                console=self.out, transient=True)
            self.progress.__enter__()
        return self

    def __call__(self, done: int, total: int | None) -> None:
        if self.progress is None:
            return
        if self.task is None:
            self.task = self.progress.add_task(self.label, total=total or None)
        self.progress.update(self.task, completed=done, total=total or None)

    def __exit__(self, *exc: Any) -> None:
        if self.progress is not None:
            self.progress.__exit__(*exc)


# --- reading the past ----------------------------------------------------------------


def _keep_known_at(ctx: click.Context, param: Any, value: datetime | None) -> None:
    if value is not None:
        ctx.meta["order_ledger.known_at"] = value


def known_at() -> datetime | None:
    """The ``--known-at`` of the running command, if it was given."""
    ctx = click.get_current_context(silent=True)
    return ctx.meta.get("order_ledger.known_at") if ctx is not None else None


def past(as_of: datetime | None, at_position: int | None) -> bool:
    """Whether the command reads the past (--as-of, --at-position or --known-at)."""
    return as_of is not None or at_position is not None or known_at() is not None


known_at_option = click.option(
    "--known-at", "known_at", type=WHEN, default=None, metavar="TIME", expose_value=False,
    callback=_keep_known_at, is_eager=True,
    help="Only what the ledger had recorded by this time (its recording clock); with "
         "--as-of: what we knew then about that time (see docs/replay.md).")


def as_of_options(fn: Any) -> Any:
    """``--as-of TIME``, ``--at-position N`` and ``--known-at TIME``: read the past by
    replaying a prefix."""
    fn = known_at_option(fn)
    fn = click.option(
        "--at-position", "at_position", type=click.IntRange(min=0), default=None, metavar="N",
        help="What the seller saw right after the event at this global position (replayed "
             "in memory; the views are not touched).")(fn)
    fn = click.option(
        "--as-of", "as_of", type=WHEN, default=None, metavar="TIME",
        help="What the seller saw at this business time: only the commands applied up to "
             "it are replayed, in memory (see docs/replay.md). Report and metrics times "
             "default to it.")(fn)
    return fn


def resolve_point(ledger: Any, as_of: datetime | None, at_position: int | None,
                  known: datetime | None | Literal[True] = True) -> Any:
    """The point asked for; ``known``: a known-at time, None, or True for the
    command's own ``--known-at``."""
    from replay.asof import AsOfError, resolve

    try:
        return resolve(ledger, as_of, at_position, known_at() if known is True else known)
    except AsOfError as exc:
        raise click.UsageError(str(exc)) from None


def as_of_read(db: str | None, as_of: datetime | None, at_position: int | None,
               read: Callable[[Any, datetime], Any],
               names: Iterable[str] = ("orders", "inventory", "metrics", "notifications")) -> Any:
    """``read(snapshot, evaluation time)`` on the projections as of the point asked for."""
    from replay.asof import evaluation_time, snapshot

    ledger = open_reader(db)
    point = resolve_point(ledger, as_of, at_position)
    return read(snapshot(ledger, point, names), evaluation_time(point))


# --- the views ---------------------------------------------------------------------------

views_option = click.option(
    "--views", envvar="ORDER_LEDGER_VIEWS", default=None, metavar="PATH",
    help="The views file (default: beside the ledger, X.db -> X.views.db; for a PostgreSQL "
         "ledger ./order-ledger-<db>-<schema>.views.db). Also ORDER_LEDGER_VIEWS.")


def _wait_note(path: str) -> Callable[[], None]:
    def note() -> None:
        err_console.print(f"waiting for another sync or rebuild of {path} to finish...",
                          markup=False)
    return note


def run_views(db: str | None, views: str | None,
              work: Callable[[Any, Any], Awaitable[Any]], *, catch_up: bool = True,
              **options: Any) -> Any:
    """Open the ledger and its views, run ``work(views, ledger)``; errors to exit codes
    (the ledger's own through the command group). The ledger closes with the command.

    ``catch_up``: bring the views to the ledger's head first, with a progress bar.
    """
    import asyncio

    from projections import Views, ViewsError, ViewsLocationError, views_path

    options.setdefault("jobs", None)  # automatic: a big first build uses both cores
    ledger = open_reader(db)
    try:
        target = views_path(ledger.db, views)

        async def main() -> Any:
            async with Views(ledger, views, on_wait=_wait_note(target), **options) as v:
                if v.in_memory_because:
                    err_console.print(f"note: views computed in memory for this run: "
                                      f"{v.in_memory_because} (give --views PATH to keep them)",
                                      markup=False)
                # catch up first, with a progress bar when that takes a while (on a TTY)
                if catch_up:
                    with Bar("updating the views", True) as bar:
                        await v.sync(progress=bar)
                return await work(v, ledger)

        return asyncio.run(main())
    except ViewsLocationError as exc:
        raise click.UsageError(str(exc)) from None
    except ViewsError as exc:
        raise click.ClickException(str(exc)) from None


# --- the import group ----------------------------------------------------------------------


class DefaultCommandGroup(click.Group):
    """A group whose first argument, when it names none of its commands, is handed
    whole to its default command: ``import FILE`` runs ``import bundle FILE``."""

    def __init__(self, *args: Any, default_command: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.default_command = default_command

    def resolve_command(self, ctx: click.Context,
                        args: list[str]) -> tuple[str | None, click.Command | None, list[str]]:
        default = self.commands.get(self.default_command)
        if args and default is not None and args[0] not in self.commands:
            return default.name, default, args
        return super().resolve_command(ctx, args)


@click.group("import", cls=DefaultCommandGroup, default_command="bundle",
             context_settings={"help_option_names": ["-h", "--help"]})
def import_group() -> None:
    """Import events: `import BUNDLE --db NEW` (an exported bundle, into a new ledger)
    or `import sp-api FILE` (the marketplace's orders)."""
