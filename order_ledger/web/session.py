"""The page's session: a signed cookie (HMAC-SHA256), a CSRF token per session.

The cookie holds the role, the token's name and id (as ``token list`` shows
them, never the token itself), a CSRF token and an expiry; it is HttpOnly and
SameSite=Strict. A session ends when its token is revoked. The key is shared by every worker
of one ledger: ``ORDER_LEDGER_SESSION_KEY`` (hex), else a random key kept in a
file created once beside the ledger (``<ledger>.session-key``, mode 0600), else
in the working directory for a PostgreSQL ledger.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from typing import Any

COOKIE = "order_ledger_session"
#: the sign-in form's own CSRF cookie (a double-submit value; no session yet)
PRE_COOKIE = "order_ledger_signin"
LIFETIME = 8 * 3600


@dataclass(frozen=True)
class Session:
    role: str
    name: str | None
    csrf: str
    expires: int
    #: the id of the token signed in with (``order-ledger token list``), never the token
    token_id: str


def key_path(db: str) -> str:
    if db.startswith("postgresql://") or db.startswith("postgres://"):
        import re

        safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", db.split("://", 1)[1])[:80]
        return os.path.abspath(f"order-ledger-{safe}.session-key")
    return os.path.abspath(db) + ".session-key"


def load_key(db: str) -> bytes:
    """The session key (see the module doc); created on first use."""
    env = os.environ.get("ORDER_LEDGER_SESSION_KEY")
    if env:
        try:
            key = bytes.fromhex(env)
        except ValueError:
            key = env.encode()
        if len(key) < 16:
            raise ValueError("ORDER_LEDGER_SESSION_KEY must be at least 16 bytes (32 hex digits)")
        return key
    path = key_path(db)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):  # another worker is writing it: wait for its 64 hex digits
            with open(path, "rb") as f:
                data = f.read().strip()
            if len(data) >= 64:
                return bytes.fromhex(data[:64].decode())
            time.sleep(0.02)
        raise ValueError(f"the session key file {path!r} is damaged: remove it") from None
    key = secrets.token_bytes(32)
    with os.fdopen(fd, "wb") as f:
        f.write(key.hex().encode() + b"\n")
        f.flush()
        os.fsync(f.fileno())
    return key


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    def __init__(self, key: bytes) -> None:
        self.key = key

    def _mac(self, body: str) -> str:
        return _b64(hmac.new(self.key, body.encode(), hashlib.sha256).digest())

    def issue(self, role: str, name: str | None, token_id: str,
              now: float) -> tuple[str, Session]:
        s = Session(role, name, secrets.token_urlsafe(24), int(now) + LIFETIME, token_id)
        body = _b64(json.dumps({"r": s.role, "n": s.name, "c": s.csrf, "e": s.expires,
                                "t": s.token_id}, separators=(",", ":")).encode())
        return f"{body}.{self._mac(body)}", s

    def read(self, value: str | None, now: float) -> Session | None:
        """The session a cookie value carries; None when absent, forged or expired."""
        if not value or "." not in value or len(value) > 4096:
            return None
        body, _, mac = value.partition(".")
        if not hmac.compare_digest(mac, self._mac(body)):
            return None
        try:
            d: Any = json.loads(_unb64(body))
            s = Session(str(d["r"]), d["n"], str(d["c"]), int(d["e"]), str(d["t"]))
        except (ValueError, KeyError, TypeError):
            return None
        if s.expires <= now:
            return None
        return s


def same(a: object, b: object) -> bool:
    """Constant-time equality of two CSRF values (None, empty or not text never matches)."""
    if not isinstance(a, str) or not isinstance(b, str) or not a or not b:
        return False
    return hmac.compare_digest(a.encode(), b.encode())
