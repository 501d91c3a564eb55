"""The frame every dashboard page shares.

Who is signed in and what their role lets them do, the navigation bar with a quick plate or
customer search (keyboard: `/`), the connection indicator with the data's freshness, toasts
and the alert sound, and the fan-out of pushed events to the page's view. A page is a `View`
subclass; the shell builds it once per browser session.
"""

from __future__ import annotations

import asyncio
import html
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import panel as pn
import param
from bokeh.models import CustomJS
from panel.custom import JSComponent
from sqlalchemy import Connection

from api.security import SUPERVISORS, WRITERS, Principal, page_principal
from db import auth, preferences
from db.errors import FleetError
from db.fleet import User

log = logging.getLogger("fleet.dashboard")
T = TypeVar("T")

# (path, label, shortcut key after `g`): the order of the navigation bar.
NAV: tuple[tuple[str, str, str], ...] = (
    ("/board", "Board", "b"),
    ("/map", "Map", "m"),
    ("/search", "Search", "s"),
    ("/overdue", "Overdue", "o"),
    ("/conflicts", "Conflicts", "c"),
    ("/transfers", "Transfers", "t"),
    ("/audit", "Audit", "a"),
    ("/vehicle", "Vehicle", "v"),
    ("/analytics", "Analytics", "y"),
    ("/feeds", "Feeds", "f"),
)
HEARTBEAT_MS = 2_000
ASSETS = Path(__file__).parent / "assets"


@dataclass
class PageContext:
    """What a view needs about its session: the app's state, the user, the Bokeh document."""

    state: Any
    user: User
    doc: Any
    query: dict[str, str] = field(default_factory=dict)
    bar: TopBar | None = None
    # The user's notification preferences; a page that saves new ones sets them here.
    prefs: preferences.NotificationPrefs = field(default_factory=preferences.NotificationPrefs)
    # The session token the page was opened with, and why it ended once it has.
    token_id: int | None = None
    ended: str | None = None

    @property
    def can_write(self) -> bool:
        """Agents, managers and admins change statuses, book and hold."""
        return self.user.role in WRITERS

    @property
    def can_supervise(self) -> bool:
        """Managers and admins roll back changes and resolve overdue alerts."""
        return self.user.role in SUPERVISORS

    @property
    def settings(self) -> Any:
        return self.state.settings

    def read(self, fn: Callable[[Connection], T]) -> T:
        """Run `fn` on a read-only connection (one consistent snapshot)."""
        with self.state.engine.begin() as conn:
            conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            return fn(conn)

    async def aread(self, fn: Callable[[Connection], T]) -> T:
        """`read` off the event loop, so one slow query never stalls other sessions."""
        return await asyncio.to_thread(self.read, fn)

    def act(
        self,
        fn: Callable[[Connection], T],
        *,
        done: str | None = None,
        allowed: bool | None = None,
    ) -> T | None:
        """Run one change in one transaction through the engine (the audited path).

        `allowed` is the role check done here on the server, whatever the page offered; a
        refused or failed action shows its reason as a toast and writes nothing.
        """
        if allowed is False:
            self.toast("error", f"your role ({self.user.role}) cannot do this")
            return None
        try:
            with self.state.engine.begin() as conn:
                # In the action's own transaction: a session revoked by another process a
                # moment ago is refused here, before its watch has noticed.
                if not self._signed_in(conn):
                    return None
                result = fn(conn)
        except FleetError as exc:
            self.toast("error", str(exc))
            return None
        if done:
            self.toast("success", done)
        return result

    def still_signed_in(self) -> bool:
        """Whether the page's session still admits its user; if not, send them to sign in."""
        with self.state.engine.connect() as conn:
            return self._signed_in(conn)

    def _signed_in(self, conn: Connection) -> bool:
        if self.ended is None and self.token_id is not None:
            self.ended = auth.ended_tokens(conn, token_ids=[self.token_id]).get(self.token_id)
        if self.ended is None:
            return True
        self.sign_out(self.ended)
        return False

    def sign_out(self, reason: str) -> None:
        """The session ended: refuse what the page would do and send the browser to sign in."""
        self.ended = reason
        if self.bar is not None:
            self.bar.sign_out(f"Your session ended: {reason}. Please sign in again.")

    def toast(self, level: str, text: str, *, sound: bool = False) -> None:
        """Show a toast in this session (levels: info, success, warning, error)."""
        if self.bar is not None:
            self.bar.toast(level, text, sound=sound)

    def fresh(self) -> None:
        """Say the view now shows the database as of this moment."""
        if self.bar is not None:
            self.bar.fresh(datetime.now(UTC).isoformat())


class View(pn.viewable.Viewer):
    """A page's content. Subclasses set `title` and build their widgets in `__init__`."""

    title: ClassVar[str] = ""
    # False for pages whose figures come from a query the user runs (analytics): pushed
    # events then do not move the page's "data as of".
    live: ClassVar[bool] = True

    def __init__(self, ctx: PageContext, **params: Any) -> None:
        super().__init__(**params)
        self.ctx = ctx

    async def on_events(self, messages: list[dict[str, Any]]) -> None:
        """React to pushed events (in seq order). Runs in the session's own tick."""


class TopBar(JSComponent):
    """Navigation, quick find, connection state and freshness, toasts and the alert sound.

    The server sends a tick every two seconds. If none arrives for six, the page has
    lost its connection: the bar says so, probes /healthz, and reloads once the server
    answers, so the page catches up with a fresh session and leaves no stale rows behind.
    """

    page = param.String(default="")
    who = param.String(default="")
    server_live = param.Boolean(default=True)
    beat_ms = param.Integer(default=HEARTBEAT_MS, doc="How often the server says it is alive.")
    as_of = param.String(default="", doc="ISO time the page's data was first read.")
    nav = param.List(default=[])

    _esm = ASSETS / "topbar.js"

    _stylesheets: ClassVar[list[str]] = [(ASSETS / "topbar.css").read_text()]

    # Ticks and freshness travel as messages, not parameter changes: a parameter change runs
    # Panel's whole property sync for the component, which with twenty open pages ticking
    # every two seconds was a good part of the server's time (docs/benchmarks.md).
    def tick(self, server_live: bool) -> None:
        """Tell the page the server is alive (and whether its event feed is)."""
        self._send_msg({"beat": True, "server_live": server_live})

    def fresh(self, as_of: str) -> None:
        """Say the page's data is as of this ISO time."""
        self._send_msg({"as_of": as_of})

    def sign_out(self, reason: str) -> None:
        """Send the browser to the sign-in page, saying why, and back here afterwards."""
        self._send_msg({"signed_out": reason})

    def toast(self, level: str, text: str, *, sound: bool = False, sound_level: int = 3) -> None:
        """Show a toast in the browser; `sound` also plays the alert tone."""
        self._send_msg(
            {"toast": {"level": level, "text": text}, "sound": sound, "level": sound_level}
        )


# Page-wide styles: readable sizes and large touch targets on tablets.
PAGE_CSS = """
body { font-family: system-ui, sans-serif; }
.bk-btn, button { min-height: 40px; }
.view-title h1 { font-size: 1.4em; margin: 8px 0 4px; }
:host(.fleet-stale) .live-view { filter: grayscale(1); opacity: .55; }
"""


class Shell:
    """One browser session's page: the bar, the view, and the wiring to the event stream."""

    def __init__(self, state: Any, view_cls: type[View], path: str) -> None:
        self.state = state
        # Set by the sign-in middleware from the real cookie, which Bokeh never sees.
        principal: Principal | None = page_principal.get()
        if principal is None:  # the sign-in middleware already refused; belt and braces
            raise PermissionError("sign in first")
        user = principal.user
        args = pn.state.session_args or {}
        query = {k: (v[0].decode() if v else "") for k, v in args.items()}
        doc = pn.state.curdoc
        self.ctx = PageContext(
            state=state, user=user, doc=doc, query=query, token_id=principal.token_id
        )
        self.bar = TopBar(
            page=path,
            who=f"{user.full_name} ({user.role})",
            nav=[list(n) for n in NAV],
            as_of=datetime.now(UTC).isoformat(),
            sizing_mode="stretch_width",
        )
        self.ctx.bar = self.bar
        with state.engine.connect() as conn:
            self.ctx.prefs = preferences.get(conn, user_id=user.id)
        self.view = view_cls(self.ctx)
        self.ctx.fresh()
        self._pending: list[dict[str, Any]] = []
        self._draining = False
        broadcaster = state.broadcaster
        self.bar.server_live = broadcaster.connected
        broadcaster.listeners.add(self._on_events)
        # A revoked, expired or deactivated session ends the page within seconds (the check
        # runs on the server's loop; Bokeh models change only in the session's own tick).
        watch = state.credentials.watch(
            principal.token_id,
            principal.expires_at,
            lambda reason: doc.add_next_tick_callback(lambda: self.ctx.sign_out(reason)),
        )

        def destroyed(_ctx: Any) -> None:
            broadcaster.listeners.discard(self._on_events)
            state.credentials.unwatch(watch)

        pn.state.on_session_destroyed(destroyed)
        # Bokeh says at once when the page's socket closes; the bar turns that into the
        # banner and its probing (Bokeh's own notice is off: the bar says it in our words).
        doc.config.notify_connection_status = False
        doc.js_on_event(
            "connection_lost",
            CustomJS(code="window.dispatchEvent(new CustomEvent('fleet-connection-lost'))"),
        )
        pn.state.add_periodic_callback(self._heartbeat, period=HEARTBEAT_MS)

    def _heartbeat(self) -> None:
        self.bar.tick(self.state.broadcaster.connected)

    def _on_events(self, messages: list[dict[str, Any]]) -> None:
        # Called on the server's event loop; Bokeh models change only in the session's tick.
        doc = self.ctx.doc
        if doc is None or doc.session_context is None:
            return
        self._pending.extend(messages)
        if not self._draining:
            self._draining = True
            doc.add_next_tick_callback(self._drain)

    async def _drain(self) -> None:
        # One batch at a time, in seq order: a view awaiting a read must not have a newer
        # batch overtake it (its older read would land last and leave a stale row). Batches
        # that arrive meanwhile are applied together, so a busy session catches up in one go.
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                await self._apply(batch)
        finally:
            self._draining = False

    async def _apply(self, messages: list[dict[str, Any]]) -> None:
        try:
            await self.view.on_events(messages)
        except Exception:  # one view's bug must not cut this page off its stream
            log.exception("view %s failed on pushed events", type(self.view).__name__)
        self._alert(messages)
        if self.view.live:
            self.ctx.fresh()

    def _alert(self, messages: list[dict[str, Any]]) -> None:
        for m in messages:
            if m.get("kind") != "overdue_escalated":
                continue
            data = m.get("data") or {}
            level = int(data.get("escalation_level") or 1)
            where = m.get("location_id")
            if not self.ctx.prefs.wants_toast(level=level, location_id=where):
                continue
            sound = self.ctx.prefs.wants_sound(level=level, location_id=where)
            plate = data.get("plate", "a vehicle")
            who = data.get("customer_name") or ""
            text = f"Overdue level {level}: {plate}" + (f" ({who})" if who else "")
            self.bar.toast(
                "warning" if level < 3 else "error", text, sound=sound, sound_level=level
            )

    def layout(self) -> pn.viewable.Viewable:
        title = pn.pane.HTML(
            f"<h1>{html.escape(self.view.title)}</h1>", css_classes=["view-title"], margin=(0, 10)
        )
        # The view in a box of its own: while the server is away the bar greys it (the page's
        # root carries `fleet-stale`, see topbar.js), the bar itself stays readable.
        content = pn.Column(
            title, self.view, css_classes=["live-view"], sizing_mode="stretch_width"
        )
        return pn.Column(self.bar, content, sizing_mode="stretch_width", stylesheets=[PAGE_CSS])
