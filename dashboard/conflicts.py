"""The conflicts page: bookings at risk and feed collisions, each with its ways out as buttons."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import panel as pn
from sqlalchemy import Connection

from dashboard.shell import PageContext, View
from db import conflicts
from db.blocks import Block, get_block
from db.conflicts import Conflict, FeedCollision, Suggestion
from db.fleet import Location, list_locations
from db.timeutil import zone

# Pushed events after which a booking may have come into or out of conflict, or a suggested
# car been taken: bookings, holds, rentals, work, transfers, status and the alerts themselves.
RELOAD_KINDS = (
    "conflict_",
    "status_changed",
    "reservation",
    "hold",
    "rental",
    "maintenance",
    "transfer",
    "block_",
)
# Each feed collision's ways out are a few searches; the newest ones are worked out first.
FEED_SUGGESTIONS_FOR = 10
TICK_MS = 60_000
KIND_WORDS = {
    "overdue_return": "car overdue from its rental",
    "maintenance_overrun": "maintenance running over",
    "late_transfer": "transfer arriving late",
    "not_back_in_time": "car not back in time",
    "out_of_service": "car out of service",
    "wrong_location": "car at the wrong lot",
}
ACTION_WORDS = {"swap": "Swap", "upgrade": "Upgrade", "transfer": "Transfer"}
# The engine words its causes with ISO times in UTC; staff read their lot's clock.
_ISO_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d(?::\d\d(?:\.\d+)?)?(?:[+-]\d\d:\d\d|Z)")

CARD_CSS = """
.card { font-size: 15px; line-height: 1.45; }
.card .badges { display: flex; flex-wrap: wrap; gap: 6px; align-items: center; }
.card .badge { padding: 2px 8px; border-radius: 4px; font-weight: 600; }
.card .severity-critical { background: #b00020; color: #fff; }
.card .severity-warning { background: #f2c200; color: #222; }
.card .source { background: #e8eaf0; color: #222; }
.card .soon { font-weight: 600; }
.card .why { color: #444; }
.card ul { margin: 4px 0 0 18px; padding: 0; }
"""
BUTTON_CSS = ".bk-btn { font-size: 15px; padding: 0 14px; }"
SUMMARY_CSS = ".count { font-size: 15px; margin: 4px 0; }"
BORDER = {"critical": "#b00020", "warning": "#f2c200"}


def local_time(value: datetime, tz_name: str | None) -> str:
    """Render a time as staff at that lot read it: 'Wed 25 Nov 14:00 CET'."""
    return value.astimezone(zone(tz_name or "UTC")).strftime("%a %d %b %H:%M %Z")


def duration_words(delta: timedelta) -> str:
    """Say a span the way staff do: '25 min', '2 h 5 min', '3 d 4 h'."""
    minutes = max(int(delta.total_seconds()) // 60, 0)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    if days:
        return f"{days} d {hours} h"
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


def how_soon(starts: datetime | None, now: datetime) -> str:
    """Say when the booking at risk bites: 'pickup in 2 h 5 min' or 'pickup was 20 min ago'."""
    if starts is None:
        return ""
    ahead = starts - now
    if abs(ahead) < timedelta(minutes=1):
        return "pickup now"
    if ahead > timedelta(0):
        return f"pickup in {duration_words(ahead)}"
    return f"pickup was {duration_words(-ahead)} ago"


def localize(text: str, tz_name: str | None) -> str:
    """Rewrite the ISO times in an engine sentence into the lot's local time."""

    def one(match: re.Match[str]) -> str:
        try:
            return local_time(datetime.fromisoformat(match.group(0)), tz_name)
        except ValueError:
            return match.group(0)

    return _ISO_TIME.sub(one, text)


def suggestion_label(s: Suggestion, zones: dict[str, str]) -> str:
    """The button text for one way out, e.g. 'Swap to B AP 103 (same category)'."""
    if s.action == "swap":
        return f"Swap to {s.plate} (same category)"
    if s.action == "upgrade":
        return f"Upgrade to {s.plate} ({s.category_code})"
    if s.action == "transfer":
        leave = ""
        if s.depart_by is not None:
            tz = zones.get(s.from_location_code or "")
            leave = f", leave by {local_time(s.depart_by, tz)}"
        return f"Transfer {s.plate} from {s.from_location_code}{leave}"
    return f"{s.action} {s.plate}"


@dataclass(frozen=True)
class Item:
    """One entry of the list: a booking at risk or a feed collision, ready to show."""

    key: str
    source: str  # conflict | feed
    severity: str  # critical | warning
    starts: datetime | None
    heading: str
    body: str  # escaped HTML
    block_id: int | None  # the booking a way out moves
    suggestions: tuple[Suggestion, ...]
    notes: tuple[str, ...] = ()  # ways out that cannot be applied here, as words


def conflict_item(c: Conflict) -> Item:
    """Shape an engine conflict for the page."""
    who = c.customer_name or "no customer named"
    if c.customer_phone:
        who += f" ({c.customer_phone})"
    span = f"{local_time(c.starts, c.time_zone)} to {local_time(c.ends, c.time_zone)}"
    body = (
        f"<div class='what'><b class='plate'>{html.escape(c.plate)}</b> at"
        f" {html.escape(c.location_code)}: {html.escape(c.block_kind)} #{c.block_id}"
        f" for {html.escape(who)}, {html.escape(span)}</div>"
        f"<div class='why'>Why: {html.escape(localize(c.cause, c.time_zone))}</div>"
    )
    return Item(
        key=f"conflict:{c.block_id}:{c.kind}",
        source="conflict",
        severity=c.severity,
        starts=c.starts,
        heading=f"Booking at risk: {KIND_WORDS.get(c.kind, c.kind.replace('_', ' '))}",
        body=body,
        block_id=c.block_id,
        suggestions=tuple(c.suggestions),
    )


def feed_item(
    f: FeedCollision, blocker: Block, ways: list[Suggestion], zones_by_id: dict[int, str]
) -> Item:
    """Shape a feed collision: what the feed wanted, the booking in its way, ways to move it."""
    tz = zones_by_id.get(f.location_id or blocker.start_location_id, blocker.time_zone)
    wanted = ""
    if f.wanted_start and f.wanted_end:
        wanted = f", wanted {local_time(f.wanted_start, tz)} to {local_time(f.wanted_end, tz)}"
    who = f" for {blocker.customer_name}" if blocker.customer_name else ""
    state = "" if blocker.state == "active" else f" (now {blocker.state})"
    in_the_way = (
        f"{blocker.kind} #{blocker.id}{who} on {blocker.plate},"
        f" {local_time(blocker.start, tz)} to {local_time(blocker.end, tz)}{state}"
    )
    reason = localize(f.reason or "it collides with a booking", tz)
    body = (
        f"<div class='what'>Record <b>{html.escape(f.external_id)}</b> for"
        f" <b class='plate'>{html.escape(f.plate)}</b> was not applied{html.escape(wanted)}:"
        f" {html.escape(reason)}</div>"
        f"<div class='why'>In the way: {html.escape(in_the_way)}</div>"
    )
    # Stored suggestions the page cannot apply (they are for the feed's own record) still
    # tell staff what the feed's next version could name.
    notes = () if ways else tuple(localize(s.description, tz) for s in f.suggestions)
    return Item(
        key=f"feed:{f.id}",
        source="feed",
        severity="critical",
        starts=blocker.start if blocker.state == "active" else f.wanted_start,
        heading="Feed collision",
        body=body,
        block_id=blocker.id if ways else None,
        suggestions=tuple(ways),
        notes=notes,
    )


def read_items(conn: Connection, *, location_id: int | None = None) -> list[Item]:
    """Read every open conflict and feed collision, most urgent first."""
    zones_by_id = {loc.id: loc.time_zone for loc in list_locations(conn)}
    items = [conflict_item(c) for c in conflicts.list_conflicts(conn, location_id=location_id)]
    for n, f in enumerate(conflicts.open_feed_collisions(conn, location_id=location_id)):
        blocker = get_block(conn, block_id=f.blocking_block_id)
        ways = (
            conflicts.suggest_for_booking(conn, block_id=blocker.id)
            if n < FEED_SUGGESTIONS_FOR
            else []
        )
        items.append(feed_item(f, blocker, ways, zones_by_id))
    far = datetime.max.replace(tzinfo=UTC)
    return sorted(items, key=lambda i: (i.severity != "critical", i.starts or far, i.key))


class _Card:
    """The shown form of one item: its text (re-rendered as the clock moves) and buttons."""

    def __init__(
        self,
        item: Item,
        buttons: list[pn.widgets.Button],
        now: datetime,
        ways_as_words: tuple[str, ...] = (),
    ) -> None:
        self.item = item
        self.buttons = buttons
        self.ways_as_words = ways_as_words
        self.text = pn.pane.HTML(
            self.render(now), sizing_mode="stretch_width", stylesheets=[CARD_CSS], margin=0
        )
        parts: list[Any] = [self.text]
        if buttons:
            parts.append(pn.FlexBox(*buttons, flex_wrap="wrap", css_classes=["ways-out"]))
        self.layout = pn.Column(
            *parts,
            css_classes=["conflict", f"severity-{item.severity}", f"source-{item.source}"],
            styles={
                "border-left": f"6px solid {BORDER.get(item.severity, '#888')}",
                "background": "#fff",
                "padding": "6px 10px",
            },
            sizing_mode="stretch_width",
            margin=(6, 10),
        )

    def render(self, now: datetime) -> str:
        i = self.item
        soon = how_soon(i.starts, now)
        notes = ""
        if i.notes:
            notes = (
                "<div class='notes'>The feed suggested (apply in the source system):<ul>"
                + "".join(f"<li>{html.escape(n)}</li>" for n in i.notes)
                + "</ul></div>"
            )
        if self.ways_as_words:
            notes += (
                "<div class='ways'>Ways out:<ul>"
                + "".join(f"<li>{html.escape(w)}</li>" for w in self.ways_as_words)
                + "</ul></div>"
            )
        return (
            f"<div class='card' data-key='{html.escape(i.key)}'>"
            "<div class='badges'>"
            f"<span class='badge severity-{i.severity}'>{i.severity.upper()}</span>"
            f"<span class='badge source'>{html.escape(i.heading)}</span>"
            f"<span class='soon'>{html.escape(soon)}</span></div>"
            f"{i.body}{notes}</div>"
        )


class ConflictsView(View):
    """Every booking at risk and every feed collision, soonest first, with one-click ways out."""

    title = "Conflicts"

    def __init__(self, ctx: PageContext, **params: Any) -> None:
        super().__init__(ctx, **params)
        locations: list[Location] = ctx.read(list_locations)
        self._zones = {loc.code: loc.time_zone for loc in locations}
        lots = {"All lots": 0} | {f"{loc.code} {loc.name}": loc.id for loc in locations}
        wanted = ctx.query.get("location", "").upper()
        self._lot = pn.widgets.Select(
            label="Pickup lot",
            options=lots,
            value=next((loc.id for loc in locations if loc.code == wanted), 0),
            width=260,
            css_classes=["lot-filter"],
        )
        self._lot.param.watch(self._lot_changed, "value")
        self._summary = pn.pane.HTML(
            "", css_classes=["summary"], sizing_mode="stretch_width", stylesheets=[SUMMARY_CSS]
        )
        self._list = pn.Column(sizing_mode="stretch_width", css_classes=["conflict-list"])
        self._cards: dict[str, _Card] = {}
        self._generation = 0
        self._show(ctx.read(lambda c: read_items(c, location_id=self._lot.value or None)))
        if pn.state.curdoc is not None and pn.state.curdoc.session_context is not None:
            pn.state.add_periodic_callback(self._tick, period=TICK_MS)

    async def on_events(self, messages: list[dict[str, Any]]) -> None:
        # A change to one car can free or take another conflict's suggested car, so the
        # whole list (a few dozen rows) is read again, once per batch of events.
        if any(str(m.get("kind", "")).startswith(RELOAD_KINDS) for m in messages):
            await self.reload()

    async def reload(self) -> None:
        """Read the list again and show it; a newer read overtakes an older one."""
        self._generation += 1
        mine = self._generation
        location_id = self._lot.value or None
        items = await self.ctx.aread(lambda c: read_items(c, location_id=location_id))
        if mine != self._generation:
            return
        self._show(items)
        self.ctx.fresh()

    async def _lot_changed(self, _event: Any) -> None:
        await self.reload()

    def _show(self, items: list[Item]) -> None:
        now = datetime.now(UTC)
        cards: dict[str, _Card] = {}
        for item in items:
            old = self._cards.get(item.key)
            # Unchanged entries keep their widgets: only what changed travels to the browser.
            cards[item.key] = old if old is not None and old.item == item else self._card(item, now)
        self._cards = cards
        self._list.objects = [card.layout for card in cards.values()]
        critical = sum(1 for i in items if i.severity == "critical")
        if not items:
            text = "No conflicts: every booking in the next 48 hours has its car."
        else:
            warnings = len(items) - critical
            text = (
                f"{len(items)} open: {critical} critical,"
                f" {warnings} warning{'' if warnings == 1 else 's'}."
            )
            if not self.ctx.can_write:
                text += " Your role can see the ways out but not apply them."
        self._summary.object = f"<p class='count'>{html.escape(text)}</p>"

    def _card(self, item: Item, now: datetime) -> _Card:
        buttons = []
        if self.ctx.can_write and item.block_id is not None:
            for s in item.suggestions:
                button = pn.widgets.Button(
                    label=suggestion_label(s, self._zones),
                    color="primary" if s.action == "swap" else "default",
                    css_classes=["suggestion", f"suggestion-{s.action}"],
                    height=44,
                    margin=(4, 6),
                    stylesheets=[BUTTON_CSS],
                )
                buttons.append(button)
        # Read-only roles still see what could be done, as words.
        words = () if buttons else tuple(suggestion_label(s, self._zones) for s in item.suggestions)
        card = _Card(item, buttons, now, words)
        for button, s in zip(buttons, item.suggestions if buttons else (), strict=True):
            button.on_click(partial(self._apply, card, s))
        return card

    async def _apply(self, card: _Card, suggestion: Suggestion, _event: Any = None) -> None:
        item = card.item
        for b in card.buttons:
            b.disabled = True
        try:
            self.ctx.act(
                lambda c: conflicts.apply_suggestion(
                    c, block_id=item.block_id, suggestion=suggestion, user_id=self.ctx.user.id
                ),
                done=f"Booking #{item.block_id} moved to {suggestion.plate}",
                allowed=self.ctx.can_write and item.block_id is not None,
            )
        finally:
            for b in card.buttons:
                b.disabled = False
        await self.reload()

    def _tick(self) -> None:
        now = datetime.now(UTC)
        for card in self._cards.values():
            rendered = card.render(now)
            if card.text.object != rendered:
                card.text.object = rendered

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(
            pn.FlexBox(self._lot, self._summary, flex_wrap="wrap", align_items="center"),
            self._list,
            sizing_mode="stretch_width",
        )
