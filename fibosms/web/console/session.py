"""The console's session cookie, CSRF tokens and sign-in throttle: pure, no I/O.

A session cookie is ``ID.EXPIRES.NONCE.MAC``: the operator's id, the Unix time it stops
being good, a random nonce, and an HMAC-SHA256 of the rest under the operator's own
``session_key`` (kept in ``console_operators``). Nothing secret is in the cookie; a new
key for the operator (sign-out, removal) makes every cookie of theirs worthless. The CSRF
token of a session is an HMAC of its nonce under the same key, so it needs no storage.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

#: the session cookie's name; its path is /console
COOKIE = "fibosms_console"
#: the sign-in form's CSRF cookie (double submit: the form's token must equal it)
LOGIN_COOKIE = "fibosms_console_login"
#: the form field every POST carries
CSRF_FIELD = "csrf_token"
#: seconds a session lasts from sign-in
SESSION_SECONDS = 8 * 3600


def _mac(key: str, text: str) -> str:
    digest = hmac.new(key.encode(), text.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@dataclass(frozen=True)
class SessionClaim:
    """What a cookie says before it is checked against the operator's key."""

    operator_id: int
    expires: int
    nonce: str
    mac: str

    def valid_for(self, session_key: str, *, now: float) -> bool:
        if self.expires <= now:
            return False
        expected = _mac(session_key, f"{self.operator_id}.{self.expires}.{self.nonce}")
        return hmac.compare_digest(expected, self.mac)


def make_cookie(operator_id: int, session_key: str, *, now: float,
                seconds: int = SESSION_SECONDS) -> str:
    """A fresh session cookie's value for the operator."""
    expires = int(now) + seconds
    nonce = secrets.token_urlsafe(16)
    signed = f"{operator_id}.{expires}.{nonce}"
    return f"{signed}.{_mac(session_key, signed)}"


def read_cookie(value: str | None) -> SessionClaim | None:
    """The cookie's parts, or None when it is not one of ours."""
    if not value or len(value) > 300:
        return None
    parts = value.split(".")
    if len(parts) != 4 or not parts[0].isdigit() or not parts[1].isdigit():
        return None
    if len(parts[0]) > 19:
        return None
    return SessionClaim(int(parts[0]), int(parts[1]), parts[2], parts[3])


def csrf_token(session_key: str, claim: SessionClaim) -> str:
    """The CSRF token of a session: every form of its pages carries it."""
    return _mac(session_key, f"csrf:{claim.nonce}")


def same_token(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


@dataclass
class SignInThrottle:
    """Failed sign-ins slow the next ones down, per name and per client address.

    After :attr:`free` failures within :attr:`window` seconds, each further attempt waits
    ``base × 2^(failures − free)`` seconds, at most :attr:`ceiling`. A success clears the
    name's count."""

    free: int = 3
    base: float = 0.5
    ceiling: float = 10.0
    window: float = 900.0
    clock: Callable[[], float] = time.monotonic
    _failures: dict[str, tuple[int, float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def delay(self, *keys: str) -> float:
        """Seconds the next attempt under these keys must wait."""
        now = self.clock()
        worst = 0
        with self._lock:
            for key in keys:
                count, last = self._failures.get(key, (0, 0.0))
                if now - last > self.window:
                    count = 0
                worst = max(worst, count)
        if worst < self.free:
            return 0.0
        return float(min(self.ceiling, self.base * 2 ** (worst - self.free)))

    def failed(self, *keys: str) -> None:
        now = self.clock()
        with self._lock:
            if len(self._failures) > 10_000:  # a flood of names must not grow it without end
                self._failures.clear()
            for key in keys:
                count, last = self._failures.get(key, (0, 0.0))
                if now - last > self.window:
                    count = 0
                self._failures[key] = (count + 1, now)

    def succeeded(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)
