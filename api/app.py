"""The ASGI application: REST API, event streams and the Panel pages in one process."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.gzip import GZipMiddleware
from starlette.requests import HTTPConnection
from starlette.types import Scope

from api import logs, openapi, problems, security
from api.credentials import CredentialWatch
from api.headers import SecurityHeaders, tile_origin
from api.middleware import PageSignIn, RequestContext
from api.routes import ROUTERS
from api.routes.counter import mount_counter
from api.routes.overdue import refresh_at_start
from api.streams import Broadcaster
from api.workers import on_exit_signal
from db.database import libpq_url, make_engine, resolve_url, session_options
from fleet.settings import Settings, get_settings

log = logging.getLogger("fleet.api")

DESCRIPTION = """Live vehicle availability for car-rental staff: fleet status, availability
search, booking locks (holds), reservations, overdue returns, conflicts, transfers and the
audit trail, plus a live event stream over WebSocket and Server-Sent Events.

Authenticate with a session cookie (browsers, via `/login`; writes then need the
`X-CSRF-Token` header) or `Authorization: Bearer <token>` (`POST /api/auth/token`). Errors are
RFC 9457 problem documents."""


def create_app(settings: Settings | None = None, *, pages: bool = True) -> FastAPI:
    """Build the application; `pages=False` leaves out the Panel pages (API-only tests)."""
    settings = settings or get_settings()
    logs.configure(settings.log_format, settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        url = await asyncio.to_thread(resolve_url, settings.database_url, settings.data_dir)
        engine = make_engine(
            url,
            # As many pooled connections as requests a process runs at once: overflow
            # connections are closed on return, so a small pool churns under load.
            pool_size=settings.db_pool_size,
            max_overflow=max(0, settings.max_concurrent_requests - settings.db_pool_size),
            # No pre-ping round trip per request: after a database restart the first
            # request on a dead connection gets a 503 and SQLAlchemy drops the whole pool.
            pool_pre_ping=False,
            # A request's session left idle in a transaction (a hung worker) ends, locks and
            # all; requests themselves are short and never wait on a long lock by design.
            options=session_options(idle_in_transaction_s=settings.db_idle_in_transaction_seconds),
        )
        app.state.engine = engine
        broadcaster = Broadcaster(engine, libpq_url(url), settings.stream_queue_size)
        app.state.broadcaster = broadcaster
        await broadcaster.start()
        # uvicorn waits for open responses before this lifespan's stop, and streams never end
        # by themselves: end them as the exit signal comes, so shutdown takes no grace period.
        undo_signal = on_exit_signal(broadcaster.close)
        credentials = CredentialWatch(
            engine,
            interval=settings.credential_check_seconds,
            forget=app.state.token_cache.forget,
        )
        credentials.also_check(app.state.token_cache.token_ids)
        app.state.credentials = credentials
        await credentials.start()
        # Overdue alerts from the first page on, not only after the flow's first scheduled run.
        await asyncio.to_thread(refresh_at_start, engine, settings)
        if pages:
            from dashboard.app import import_views

            await asyncio.to_thread(import_views)
        # Panel and Bokeh leave ~250k long-lived objects; a full collection walking them all
        # stalled every stream for 70-80 ms. Frozen, the collector skips them.
        gc.collect()
        gc.freeze()
        log.info("serving; events from seq %s", broadcaster.last_seq)
        try:
            yield
        finally:
            undo_signal()
            broadcaster.close()
            await credentials.stop()
            await broadcaster.stop()
            await asyncio.to_thread(engine.dispose)

    app = FastAPI(
        title="Fleet availability API",
        version="1.0.0",
        description=DESCRIPTION,
        # Served by api/routes/docs.py behind authentication, like everything but /healthz.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.signer = security.Signer(
        security.secret_key(settings), max_age=settings.session_hours * 3600
    )
    app.state.rate_limiter = security.RateLimiter(settings.rate_limit_per_minute)
    app.state.token_cache = security.TokenCache()
    # Guessing passwords: a few tries a minute per username, and per client address.
    app.state.login_throttle = security.LoginThrottle(
        settings.login_attempts_per_minute, settings.login_attempts_per_address_per_minute
    )
    problems.install(app)
    for router in ROUTERS:
        app.include_router(router)

    async def page_user(scope: Scope) -> security.Principal | None:
        conn = HTTPConnection(scope)
        return await asyncio.to_thread(_cookie_user, app, conn.cookies.get(security.SESSION_COOKIE))

    mount_counter(app)
    tiles: list[str] = []
    if pages:
        from dashboard.app import mount_pages
        from dashboard.map import resolve_provider

        mount_pages(app)
        provider = resolve_provider(settings.map_tiles)
        origin = provider and tile_origin(provider.build_url())
        tiles = [origin] if origin else []

    app.openapi = lambda: openapi.build(app)  # type: ignore[method-assign]
    # Outermost first: ids and shedding wrap everything, then page sign-in, then compression.
    app.add_middleware(GZipMiddleware, minimum_size=1000)
    app.add_middleware(PageSignIn, resolve=page_user)
    app.add_middleware(SecurityHeaders, tile_origins=tiles, https=settings.cookie_secure)
    app.add_middleware(RequestContext, max_in_flight=settings.max_concurrent_requests)
    return app


def _cookie_user(app: FastAPI, cookie: str | None) -> security.Principal | None:
    if not cookie:
        return None
    return security.principal_from_cookie(app.state, cookie)


def factory() -> FastAPI:
    """Entry point for `uvicorn --factory` worker processes."""
    return create_app()
