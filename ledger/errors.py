"""Errors the ledger reports to people and programs."""

from __future__ import annotations

from typing import Any


class LedgerError(Exception):
    """Base of the ledger's own errors."""


class CommandRejected(LedgerError):
    """A command broke a rule or was malformed. Nothing was written.

    ``code`` is a stable machine-readable name, ``message`` says what was
    wrong, ``field`` where (a JSON path inside the command, when known), and
    ``hint`` how to fix it.
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        field: str | None = None,
        hint: str | None = None,
        violations: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.hint = hint
        self.violations = violations or []

    def __str__(self) -> str:
        text = self.message
        if self.field:
            text = f"{text} [field: {self.field}]"
        if self.hint:
            text = f"{text} (fix: {self.hint})"
        return text

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field:
            out["field"] = self.field
        if self.hint:
            out["hint"] = self.hint
        if self.violations:
            out["violations"] = self.violations
        return out


class LedgerBusy(LedgerError):
    """Another writer holds the ledger's lock for too long."""


class ConcurrencyConflict(LedgerError):
    """Another writer changed the same aggregates; retries were exhausted."""


class StoreError(LedgerError):
    """The store cannot be opened or read (bad URL, wrong key, corrupt data)."""


class StoreWriteFailed(StoreError):
    """A write failed while the command ran, not because of how it was called: the
    disk is full, the database server went away. Nothing of the batch in flight
    was written; the same command can be run again once the cause is gone (the
    command line exits 1 for these, 2 for the other store errors, which are about
    where the ledger is and how it is opened)."""


class StoreUnavailable(StoreWriteFailed):
    """The database server did not answer (restarted, down, or our connection was
    ended) for longer than the writer waits. Nothing of the batch in flight was
    acknowledged; running the same lines again is safe (applied ones come back
    as duplicates)."""


class LedgerNotFound(StoreError):
    """A reader named a ledger that does not exist (nothing was created)."""

    def __init__(self, location: str, why: str = "") -> None:
        self.location = location
        super().__init__(
            f"no ledger at {location}{': ' + why if why else ''} (give --db or ORDER_LEDGER_DB "
            "to name an existing ledger; only writes such as `apply` create one)")


class LedgerReadOnly(StoreError):
    """A write was asked of a ledger that cannot be written (read-only file or directory)."""

    def __init__(self, location: str, why: str) -> None:
        self.location = location
        super().__init__(
            f"the ledger at {location} is read-only: {why} (readers such as show, orders, "
            "report, audit, history, check and export still work)")


class CipherKeyMismatch(StoreError):
    """ORDER_LEDGER_CIPHER_KEY does not fit the ledger: set on a plain ledger, missing on
    an encrypted one, or another key than the one the events were written with."""

    NOT_ENCRYPTED = "this ledger is not encrypted: unset ORDER_LEDGER_CIPHER_KEY"
    ENCRYPTED = "this ledger is encrypted: set ORDER_LEDGER_CIPHER_KEY"
    OTHER_KEY = ("this ledger is encrypted with another key: set ORDER_LEDGER_CIPHER_KEY to "
                 "the key its events were written with")


class MessageDraftError(LedgerError):
    """A message given to check is malformed (not an object, an unknown or missing
    field, a time without a UTC offset): nothing was checked."""
