"""Bearer tokens, roles and redaction for the service.

- :func:`bearer_guard` (a Litestar guard): every ``/api`` route needs
  ``Authorization: Bearer <token>``; a missing, unknown or revoked token is 401,
  a role without the right (``opt={"need": "write" | "audit" | "read"}`` on the
  route) is 403. The caller's :class:`~ledger.tokens.Principal` is then
  ``request.state.principal`` (:func:`principal_of`).
- :func:`redact` blanks buyer personal data (name, e-mail, phone, address
  lines) for anyone but an operator; :func:`redact_tsv` does the same to a
  report's columns. Routes added beside the API (the browser pages) use both.

Tokens are looked up by their SHA-256 (:func:`ledger.tokens.verify_token`,
compared in constant time) and never logged. A verified token is remembered
for :data:`CACHE_SECONDS`, so a revoked token stops working within that time.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from ledger.tokens import ROLES, Principal, hash_token

from .errors import ServiceError

__all__ = ["ROLES", "Principal", "bearer_guard", "principal_of", "redact", "redact_tsv",
           "TokenCheck", "REDACTED"]

REDACTED = "[redacted]"
CACHE_SECONDS = 1.0

#: what each level needs
NEEDS: dict[str, Callable[[Principal], bool]] = {
    "read": lambda p: True,
    "audit": lambda p: p.can_audit,
    "write": lambda p: p.can_write,
}
WHO = {"read": "any role", "audit": "the operator or auditor role",
       "write": "the operator role"}


class TokenCheck:
    """Verifies presented tokens against the ledger's store, with a short cache.

    ``verify(token)`` is blocking (it reads the store): call it in a thread."""

    def __init__(self, lookup: Callable[[str], Principal | None]) -> None:
        self.lookup = lookup
        self._cache: dict[str, tuple[float, Principal | None]] = {}

    def cached(self, token: str) -> tuple[bool, Principal | None]:
        """(known, principal) from the cache alone: no store read, safe in the event loop."""
        hit = self._cache.get(hash_token(token))
        if hit is not None and time.monotonic() - hit[0] < CACHE_SECONDS:
            return True, hit[1]
        return False, None

    def verify(self, token: str) -> Principal | None:
        key = hash_token(token)
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and now - hit[0] < CACHE_SECONDS:
            return hit[1]
        principal = self.lookup(token)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key] = (now, principal)
        return principal


def bearer_token(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


async def bearer_guard(connection: ASGIConnection, handler: BaseRouteHandler) -> None:
    """401 without a valid token; 403 when the token's role lacks the route's need."""
    import anyio

    token = bearer_token(connection.headers.get("authorization"))
    if token is None:
        raise ServiceError(401, "unauthorized", "this needs a bearer token",
                           hint="send Authorization: Bearer <token> (make one with "
                                "`order-ledger token create --role viewer`)",
                           headers={"WWW-Authenticate": 'Bearer realm="order-ledger"'})
    check: TokenCheck = connection.app.state.tokens
    known, principal = check.cached(token)
    if not known:
        principal = await anyio.to_thread.run_sync(check.verify, token)
    if principal is None:
        raise ServiceError(401, "unauthorized", "the bearer token is unknown or revoked",
                           hint="ask an operator for a token (`order-ledger token create`)",
                           headers={"WWW-Authenticate":
                                    'Bearer realm="order-ledger", error="invalid_token"'})
    need = (handler.opt or {}).get("need", "read")
    if not NEEDS[need](principal):
        raise ServiceError(403, "forbidden",
                           f"the {principal.role} role may not do this; it needs {WHO[need]}",
                           hint="use a token with that role")
    connection.state.principal = principal


def principal_of(connection: ASGIConnection) -> Principal:
    """The caller, once :func:`bearer_guard` let the request through."""
    return connection.state.principal


#: keys whose value is buyer personal data wherever they appear
PERSONAL_KEYS = frozenset({
    "buyer_name", "buyer_email", "buyer_phone", "buyer_phone_number", "recipient_name",
    "ship_phone", "ship_phone_number", "email", "phone"})
#: inside these objects (a buyer, an address), these keys too
PERSON_OBJECTS = frozenset({"buyer", "ship_to", "address", "recipient"})
PERSON_FIELDS = frozenset({"name", "email", "phone", "address_1", "address_2", "address_3",
                           "city", "state", "county", "district", "postal_code"})
#: report (TSV) columns that are personal data
PERSONAL_COLUMNS = frozenset({
    "buyer-email", "buyer-name", "buyer-phone-number", "recipient-name", "ship-address-1",
    "ship-address-2", "ship-address-3", "ship-city", "ship-state", "ship-postal-code",
    "ship-phone-number"})


def _blank(v: Any) -> Any:
    return v if v in (None, "") else REDACTED


def _walk(obj: Any, inside_person: bool) -> Any:
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if k in PERSONAL_KEYS or (inside_person and k in PERSON_FIELDS):
                out[k] = _blank(v) if not isinstance(v, (dict, list)) else _walk(v, True)
            else:
                out[k] = _walk(v, k in PERSON_OBJECTS)
        return out
    if isinstance(obj, list):
        return [_walk(v, inside_person) for v in obj]
    return obj


def redact(obj: Any, principal: Principal | None) -> Any:
    """``obj`` (dicts and lists, as the library returns) with buyer personal data
    replaced by ``"[redacted]"`` unless ``principal`` is an operator; ``None``
    (no caller known) redacts. Empty values stay empty. Returns a copy."""
    if principal is not None and principal.sees_personal_data:
        return obj
    return _walk(obj, False)


def redact_tsv(text: str, principal: Principal | None) -> str:
    """A tab-separated report with its personal-data columns blanked likewise."""
    if principal is not None and principal.sees_personal_data:
        return text
    lines = text.split("\n")
    if not lines or not lines[0]:
        return text
    header = lines[0].split("\t")
    cols = [i for i, h in enumerate(header) if h in PERSONAL_COLUMNS]
    if not cols:
        return text
    out = [lines[0]]
    for line in lines[1:]:
        if not line:
            out.append(line)
            continue
        cells = line.split("\t")
        for i in cols:
            if i < len(cells) and cells[i]:
                cells[i] = REDACTED
        out.append("\t".join(cells))
    return "\n".join(out)
