"""Bearer tokens for the HTTP service, kept in the ledger's own store.

A token is 32 random bytes, URL-safe base64 (43 characters), prefixed ``olt_``
so it is recognisable in a secret scanner. Only its SHA-256 is stored (table
``ledger_tokens`` beside the events, on SQLite and PostgreSQL alike); the
plaintext is returned once by :func:`create_token` and never again. Lookups
hash the presented token and compare the stored hash with
:func:`hmac.compare_digest`.

Roles:

- ``operator``: writes (commands, feeds, imports) and reads everything;
- ``auditor``: reads everything, history and audit included; never writes;
- ``viewer``: reads the views (orders, inventory, metrics, notifications, reports).

Buyer personal data is shown to operators only (see
``order_ledger.service.auth.redact``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from .errors import LedgerError
from .store import from_us, to_us

ROLES = ("operator", "auditor", "viewer")
PREFIX = "olt_"


class TokenError(LedgerError):
    """A bad role, name or token id; nothing was written."""

    def __init__(self, code: str, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.hint = hint


@dataclass(frozen=True)
class TokenInfo:
    """What is known about a token, never the token itself."""

    token_id: str
    role: str
    name: str
    created_at: datetime
    revoked_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def as_dict(self) -> dict[str, Any]:
        return {"token_id": self.token_id, "role": self.role, "name": self.name,
                "created_at": self.created_at.isoformat(),
                "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None}


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's id, name and role.

    ``can_write`` (operator), ``can_audit`` (operator, auditor: history, explain,
    audit, conflicts, the event stream) and ``sees_personal_data`` (operator:
    buyer names, e-mails, phones and addresses)."""

    token_id: str
    name: str
    role: str

    @property
    def can_write(self) -> bool:
        return self.role == "operator"

    @property
    def can_audit(self) -> bool:
        return self.role in ("operator", "auditor")

    @property
    def sees_personal_data(self) -> bool:
        return self.role == "operator"


def hash_token(token: str) -> str:
    """The stored form of a token: hex SHA-256 of its UTF-8 text."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _recorder(ledger: Any) -> Any:
    return ledger.recorder


def _open(ledger_or_db: Any, mode: str) -> tuple[Any, bool]:
    """(ledger, opened here): a :class:`~ledger.application.Ledger` is used as is."""
    if hasattr(ledger_or_db, "recorder"):
        return ledger_or_db, False
    from .application import Ledger

    return Ledger(ledger_or_db, mode=mode), True


def create_token(ledger_or_db: Any, role: str, name: str | None = None, *,
                 now: datetime | None = None) -> tuple[str, TokenInfo]:
    """Make a token with ``role``; returns ``(plaintext, info)``. The plaintext is
    shown once: only its hash is stored. ``now`` is the creation time recorded."""
    if role not in ROLES:
        raise TokenError("bad-role", f"unknown role {role!r}", hint=f"one of {', '.join(ROLES)}")
    name = (name or role).strip()
    if not name or len(name) > 200 or any(ord(ch) < 32 for ch in name):
        raise TokenError("bad-name", "a token name is 1 to 200 printable characters",
                         hint="e.g. --name warehouse-tool")
    ledger, opened = _open(ledger_or_db, "write")
    try:
        rec = _recorder(ledger)
        rec.ensure_tokens_table()
        token = PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
        token_id = secrets.token_hex(6)
        created = now or datetime.now(timezone.utc)
        p = rec.P
        rec._write(f"INSERT INTO {rec.prefix}ledger_tokens (token_id, hash, role, name, "
                   f"created_us) VALUES ({p}, {p}, {p}, {p}, {p})",
                   (token_id, hash_token(token), role, name, to_us(created)))
        return token, TokenInfo(token_id, role, name, created)
    finally:
        if opened:
            ledger.close()


def _info(row: tuple[Any, ...]) -> TokenInfo:
    token_id, role, name, created_us, revoked_us = row
    return TokenInfo(token_id, role, name, from_us(created_us),
                     from_us(revoked_us) if revoked_us is not None else None)


def list_tokens(ledger_or_db: Any) -> list[TokenInfo]:
    """Every token (revoked ones too), oldest first."""
    ledger, opened = _open(ledger_or_db, "read")
    try:
        rec = _recorder(ledger)
        return [_info(r) for r in rec._rows_if_table(
            f"SELECT token_id, role, name, created_us, revoked_us FROM "
            f"{rec.prefix}ledger_tokens ORDER BY created_us, token_id")]
    finally:
        if opened:
            ledger.close()


def revoke_token(ledger_or_db: Any, token_id: str, *, now: datetime | None = None) -> TokenInfo:
    """Revoke a token by its id (as ``token list`` shows it); it stops working at once.
    Revoking a revoked token changes nothing. Unknown id: :class:`TokenError`."""
    ledger, opened = _open(ledger_or_db, "write")
    try:
        rec = _recorder(ledger)
        rec.ensure_tokens_table()
        p = rec.P
        rec._write(f"UPDATE {rec.prefix}ledger_tokens SET revoked_us = {p} "
                   f"WHERE token_id = {p} AND revoked_us IS NULL",
                   (to_us(now or datetime.now(timezone.utc)), token_id))
        rows = rec._rows(f"SELECT token_id, role, name, created_us, revoked_us FROM "
                         f"{rec.prefix}ledger_tokens WHERE token_id = {p}", (token_id,))
        if not rows:
            raise TokenError("unknown-token", f"no token with id {token_id!r}",
                             hint="`order-ledger token list` shows the ids")
        return _info(tuple(rows[0]))
    finally:
        if opened:
            ledger.close()


def verify_token(ledger_or_db: Any, token: str | None) -> Principal | None:
    """The principal a presented token stands for, or None (missing, unknown, revoked).

    The lookup is by hash; the stored hash is then compared in constant time."""
    if not token or len(token) > 256:
        return None
    digest = hash_token(token)
    ledger, opened = _open(ledger_or_db, "read")
    try:
        rec = _recorder(ledger)
        rows = rec._rows_if_table(
            f"SELECT token_id, hash, role, name FROM {rec.prefix}ledger_tokens "
            f"WHERE hash = {rec.P} AND revoked_us IS NULL", (digest,))
    finally:
        if opened:
            ledger.close()
    for token_id, stored, role, name in rows:
        if hmac.compare_digest(str(stored), digest) and role in ROLES:
            return Principal(token_id=token_id, name=name, role=role)
    return None
