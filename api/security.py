"""Who is asking: session cookies (signed, CSRF-checked) and bearer tokens, roles, rate limits."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
import time
from collections.abc import Callable, Hashable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Depends, Request
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import Engine
from starlette.requests import HTTPConnection

from api.problems import ApiProblem
from db import auth
from db.errors import Forbidden, NotAuthenticated
from db.fleet import User
from fleet.settings import Settings

SESSION_COOKIE = "fleet_session"
CSRF_COOKIE = "fleet_csrf"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

READERS = ("agent", "manager", "analyst", "admin")
WRITERS = ("agent", "manager", "admin")
SUPERVISORS = ("manager", "admin")


def secret_key(settings: Settings) -> str:
    """Return the signing key: FLEET_SECRET_KEY, or one kept beside the embedded database."""
    if settings.secret_key:
        return settings.secret_key
    path = Path(settings.data_dir) / "secret_key"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # Created once, owner-only; workers racing here all end up reading the winner's key.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


@dataclass(frozen=True)
class Principal:
    """The authenticated caller."""

    user: User
    via: str  # "session" (browser cookie) or "bearer" (API token)
    token_id: int
    expires_at: datetime

    @property
    def id(self) -> int:
        return self.user.id

    @property
    def role(self) -> str:
        return self.user.role


class Signer:
    """Signs session cookies and derives CSRF tokens from one secret."""

    def __init__(self, key: str, max_age: float) -> None:
        self._key = key.encode()
        self._cookie = URLSafeTimedSerializer(key, salt="fleet-session")
        self.max_age = max_age

    def cookie_value(self, session_token: str) -> str:
        return self._cookie.dumps(session_token)

    def session_token(self, cookie: str) -> str | None:
        """Return the session token a cookie carries, if its signature and age are good."""
        try:
            return self._cookie.loads(cookie, max_age=self.max_age)
        except BadSignature:
            return None

    def csrf_token(self, session_token: str) -> str:
        # Bound to the session: a token stolen from one session is useless in another.
        return hmac.new(self._key, b"csrf:" + session_token.encode(), hashlib.sha256).hexdigest()


class RateLimiter:
    """A token bucket per key (a user, a username, a client address): `per_minute`, refilled
    continuously."""

    def __init__(self, per_minute: int, max_keys: int = 100_000) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.max_keys = max_keys
        self._buckets: dict[Hashable, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: Hashable) -> float:
        """Take one request; return 0 when allowed, else the seconds until one is free."""
        now = time.monotonic()
        with self._lock:
            if len(self._buckets) >= self.max_keys:
                # A flood of made-up keys must not grow memory: keep only the throttled ones.
                self._buckets = {k: v for k, v in self._buckets.items() if v[0] < 1}
            tokens, last = self._buckets.get(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
            if tokens >= 1:
                self._buckets[key] = (tokens - 1, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1 - tokens) / self.rate

    def wait(self, key: Hashable) -> float:
        """Return the seconds until `key` may try again, taking nothing."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - last) * self.rate)
        return 0.0 if tokens >= 1 else (1 - tokens) / self.rate


class LoginThrottle:
    """Sign-in attempts per username and per client address.

    Per username (any address) stops guessing one user's password from many machines; per
    address (any username) stops one machine from sweeping usernames, so one attacker cannot
    lock every user out: once their address is throttled their attempts stop counting against
    the users they name.
    """

    def __init__(self, per_user: int, per_address: int) -> None:
        self.users = RateLimiter(per_user)
        self.addresses = RateLimiter(per_address)

    def take(self, *, username: str, address: str) -> float:
        """Count one attempt; return 0 when allowed, else the seconds to wait."""
        wait = self.addresses.take(address)
        if wait:
            return wait
        return self.users.take(username.strip().lower())


class TokenCache:
    """Bearer tokens resolved in the last few seconds, so a busy client costs no extra queries.

    An entry lives `ttl` seconds and never past the token's own expiry. A token revoked
    through this process is dropped at once; one revoked elsewhere (another process, the CLI,
    a deactivated user) is dropped by the credential watch within its interval, and in any
    case stops working within `ttl` seconds.
    """

    def __init__(self, ttl: float = 5.0, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, auth.Credential]] = {}
        self._lock = threading.Lock()

    def get(self, token: str) -> auth.Credential | None:
        with self._lock:
            hit = self._entries.get(token)
        if hit is None or hit[0] <= time.monotonic():
            return None
        if hit[1].expires_at <= datetime.now(UTC):
            return None
        return hit[1]

    def put(self, token: str, credential: auth.Credential) -> None:
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[token] = (time.monotonic() + self.ttl, credential)

    def forget(self, token_id: int) -> None:
        with self._lock:
            for key in [k for k, v in self._entries.items() if v[1].token_id == token_id]:
                del self._entries[key]

    def token_ids(self) -> set[int]:
        """The ids of the tokens held now (for the credential watch)."""
        with self._lock:
            return {v[1].token_id for v in self._entries.values()}


def authenticate_request(
    request: HTTPConnection, *, check_csrf: bool = True, query_token: bool = False
) -> Principal:
    """Return the caller of this request or raise NotAuthenticated.

    `query_token` accepts `?access_token=` too, for EventSource and WebSocket clients, which
    cannot set headers.
    """
    state = request.app.state
    engine: Engine = state.engine
    header = request.headers.get("authorization", "")
    if not header and query_token and request.query_params.get("access_token"):
        header = "Bearer " + request.query_params["access_token"]
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise NotAuthenticated(
                "the Authorization header must be 'Bearer <token>'",
                hint="get a token from POST /api/auth/token",
            )
        token = token.strip()
        cache: TokenCache = state.token_cache
        cached = cache.get(token)
        if cached is None:
            with engine.begin() as conn:
                cached = auth.resolve_token(conn, token=token, kind="api")
            cache.put(token, cached)
        return Principal(cached.user, "bearer", cached.token_id, cached.expires_at)
    if not request.cookies.get(SESSION_COOKIE):
        raise NotAuthenticated(
            "sign in first", hint="log in at /login, or send 'Authorization: Bearer <token>'"
        )
    raw = session_token(request)
    if raw is None:
        raise NotAuthenticated("the session cookie is invalid or expired", hint="log in again")
    if check_csrf and request.scope.get("method", "GET") not in SAFE_METHODS:
        require_csrf(request, request.headers.get(CSRF_HEADER, ""), raw)
    with engine.begin() as conn:
        found = auth.resolve_token(conn, token=raw, kind="session")
    return Principal(found.user, "session", found.token_id, found.expires_at)


def same_text(sent: str, expected: str) -> bool:
    """Compare a secret in constant time; any text (non-ASCII, lone surrogates) is just wrong."""
    # compare_digest refuses non-ASCII str with a TypeError: compare the bytes instead.
    return hmac.compare_digest(
        sent.encode("utf-8", "replace"),
        expected.encode("utf-8"),
    )


def require_csrf(request: HTTPConnection, sent: str, session_token: str) -> None:
    """Refuse a cookie-authenticated write whose CSRF token is missing or wrong."""
    if not same_text(sent, request.app.state.signer.csrf_token(session_token)):
        raise ApiProblem(
            403,
            "missing or wrong CSRF token",
            code="csrf_failed",
            title="CSRF check failed",
            field=CSRF_HEADER,
            hint=f"send the value of the {CSRF_COOKIE} cookie in the {CSRF_HEADER} header",
        )


def session_token(request: HTTPConnection) -> str | None:
    """Return the raw session token from a valid signed cookie, if any."""
    cookie = request.cookies.get(SESSION_COOKIE)
    return request.app.state.signer.session_token(cookie) if cookie else None


def principal_from_cookie(state: Any, cookie: str) -> Principal | None:
    """Return who a browser session cookie signs in, or None; for pages and their assets."""
    raw = state.signer.session_token(cookie)
    if raw is None:
        return None
    try:
        with state.engine.begin() as conn:
            found = auth.resolve_token(conn, token=raw, kind="session")
    except NotAuthenticated:
        return None
    return Principal(found.user, "session", found.token_id, found.expires_at)


# Who the page request being served is, as the sign-in middleware found from the real cookie.
# Pages read it here: the cookie itself never enters the Bokeh session (its token is in the
# page's HTML, where any script could read it).
page_principal: ContextVar[Principal | None] = ContextVar("page_principal", default=None)


def _rate_limit(request: Request, principal: Principal) -> None:
    wait = request.app.state.rate_limiter.take(principal.id)
    if wait:
        raise ApiProblem(
            429,
            "too many requests",
            code="rate_limited",
            hint=f"slow down; try again in {wait:.0f} s",
            headers={"Retry-After": str(max(1, round(wait + 0.5)))},
        )


def current(request: Request) -> Principal:
    """Dependency: the authenticated, rate-limited caller."""
    principal = authenticate_request(request)
    request.state.user_id = principal.id
    _rate_limit(request, principal)
    return principal


def require(*roles: str) -> Callable[[Principal], Principal]:
    """Dependency factory: the caller, if their role is one of `roles`."""

    def check(principal: Principal = Depends(current)) -> Principal:
        if principal.role not in roles:
            raise Forbidden(
                f"your role ({principal.role}) cannot do this",
                hint=f"ask someone with one of these roles: {', '.join(roles)}",
            )
        return principal

    return check


reader = require(*READERS)
writer = require(*WRITERS)
supervisor = require(*SUPERVISORS)
