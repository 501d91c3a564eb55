"""Overdue and alerts: late rentals by escalation level, one-tap contact, notes, and my alerts."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

import panel as pn
from sqlalchemy import Connection

from dashboard.shell import PageContext, View
from db import fleet, overdue, preferences
from db.overdue import OverdueRental
from db.timeutil import zone

# Level words as staff say them; colours only repeat what the words already say.
LEVELS: dict[int, tuple[str, str]] = {
    1: ("late", "#7a5600"),
    2: ("escalated", "#b34700"),
    3: ("critical", "#b00020"),
    4: ("critical, a day or more", "#6d0014"),
}
TOP_LEVEL = max(LEVELS)
ALL_LOCATIONS = 0

CARD_CSS = """
:host { width: 100%; }
.card { font: 15px system-ui, sans-serif; color: #1d2b3a; }
.head { display: flex; flex-wrap: wrap; align-items: center; gap: 6px 12px; }
.badge { color: #fff; border-radius: 12px; padding: 4px 10px; font-weight: 700; }
.plate { font-size: 1.25em; font-weight: 700; letter-spacing: .03em; }
dl { display: grid; grid-template-columns: repeat(auto-fill, minmax(190px, 1fr));
  gap: 4px 16px; margin: 8px 0; }
dt { font-size: .8em; color: #52606d; } dd { margin: 0; font-weight: 600; }
.at-risk { color: #b00020; }
.contact { display: flex; flex-wrap: wrap; gap: 8px; margin: 6px 0; }
.contact a { display: inline-flex; align-items: center; min-height: 44px; padding: 0 18px;
  border-radius: 8px; background: #1d4e89; color: #fff; text-decoration: none;
  font-weight: 600; }
.contact a:focus, .contact a:hover { background: #163b68; }
.missing { color: #52606d; }
.notes { white-space: pre-line; color: #3e4c59; margin: 4px 0 0; }
.no-alert { color: #52606d; font-style: italic; }
"""
CARD_BOX_CSS = """
:host { border: 1px solid #d0d7de; border-left: 8px solid #7a5600; border-radius: 8px;
  padding: 6px 10px; margin: 6px 0; background: #fff; }
""" + "".join(
    f":host(.level-{n}) {{ border-left-color: {colour}; }}\n" for n, (_, colour) in LEVELS.items()
)
HEAD_CSS = "h3 { margin: 14px 0 2px; font: 700 1.1em system-ui, sans-serif; }"
# Select boxes and choice lists big enough for a thumb on a lot tablet.
TOUCH_CSS = ".bk-input, .choices__inner { min-height: 40px; font-size: 15px; }"
PREFS_CSS = """
input[type=checkbox] { width: 22px; height: 22px; }
label { min-height: 40px; display: flex; align-items: center; gap: 8px; }
"""


def level_words(level: int) -> str:
    """Return the level as staff read it, e.g. 'level 3 - critical'."""
    words = LEVELS[min(max(level, 1), TOP_LEVEL)][0]
    return f"level {level} - {words}"


def level_colour(level: int) -> str:
    """Return the badge colour of a level (levels past the last share its colour)."""
    return LEVELS[min(max(level, 1), TOP_LEVEL)][1]


def span(delta: timedelta) -> str:
    """Say how long a lateness or a wait is, in days, hours and minutes."""
    minutes = max(0, int(delta.total_seconds()) // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h {mins:02d} min"
    return f"{hours} h {mins:02d} min" if hours else f"{mins} min"


def local(when: datetime | None, tz_name: str) -> str:
    """Render a time in the lot's own zone, the way the fleet board does."""
    if when is None:
        return ""
    return when.astimezone(zone(tz_name or "UTC")).strftime("%a %d %b %H:%M %Z")


@dataclass(frozen=True)
class Late:
    """A late rental as the engine computes it, with its open alert if the check raised one."""

    rental: OverdueRental
    alert: dict[str, Any] | None

    @property
    def alert_id(self) -> int | None:
        return int(self.alert["id"]) if self.alert else None

    @property
    def level(self) -> int:
        # The alert remembers the level it was escalated to (and announced), which the
        # lateness recomputed now may not have reached yet if the check ran on another clock.
        recorded = int(self.alert["escalation_level"]) if self.alert else 0
        return max(self.rental.escalation_level, recorded)


def _dialable(phone: str) -> str:
    """Keep what a phone dials: digits, a leading plus, star and hash."""
    return re.sub(r"[^0-9+*#]", "", phone)


def message_text(r: OverdueRental) -> str:
    """The short prefilled SMS and e-mail text for a late customer."""
    first = r.customer_name.split()[0] if r.customer_name.strip() else "there"
    due = local(r.expected_return, r.time_zone)
    return (
        f"Hello {first}, your rental car {r.plate} was due back at {r.location_code} on {due}."
        " Please call us to arrange the return."
    )


def contact_links(r: OverdueRental) -> dict[str, str]:
    """Return the tel:, sms: and mailto: addresses for the customer, percent-encoded."""
    links: dict[str, str] = {}
    if r.customer_phone and _dialable(r.customer_phone):
        number = quote(_dialable(r.customer_phone), safe="+*")
        links["tel"] = f"tel:{number}"
        links["sms"] = f"sms:{number}?body={quote(message_text(r), safe='')}"
    if r.customer_email:
        subject = quote(f"Your rental {r.plate} is overdue", safe="")
        body = quote(message_text(r), safe="")
        address = quote(r.customer_email.strip(), safe="@+")
        links["mailto"] = f"mailto:{address}?subject={subject}&body={body}"
    return links


def _next_booking(r: OverdueRental) -> str:
    if r.next_block_start is None:
        return "none"
    now = r.expected_return + r.overdue_by  # the database's clock when the list was read
    when = html.escape(local(r.next_block_start, r.time_zone))
    if r.next_block_start <= now:
        wait = f"should have started {span(now - r.next_block_start)} ago"
    else:
        wait = f"in {span(r.next_block_start - now)}"
    return f'<span class="at-risk">{when} ({wait}) - at risk</span>'


def card_html(late: Late) -> str:
    """The facts of one late rental and its contact links, every value escaped."""
    r, esc = late.rental, html.escape
    links = contact_links(r)
    anchors = []
    for kind, label in (("tel", "Call"), ("sms", "Text (SMS)"), ("mailto", "E-mail")):
        if kind in links:
            anchors.append(f'<a class="{kind}" href="{esc(links[kind])}">{label}</a>')
    contact = "".join(anchors) or '<span class="missing">no phone or e-mail on file</span>'
    phone = esc(r.customer_phone or "no phone")
    email = esc(r.customer_email or "no e-mail")
    if late.alert is None:
        alert = (
            '<p class="no-alert">No open alert: it was resolved, or the overdue check has'
            " not flagged it yet.</p>"
        )
    else:
        tried = late.alert.get("last_contact_attempt")
        alert = (
            f'<p class="tried">Last contact attempt: {esc(local(tried, r.time_zone) or "none")}</p>'
        )
        if late.alert.get("resolution_notes"):
            alert += f'<p class="notes">{esc(late.alert["resolution_notes"])}</p>'
    return (
        f'<div class="card" data-plate="{esc(r.plate)}" data-level="{late.level}">'
        '<div class="head">'
        f'<span class="badge" style="background:{level_colour(late.level)}">'
        f"{esc(level_words(late.level))}</span>"
        f'<span class="plate">{esc(r.plate)}</span>'
        f"<span>{esc(r.make)} {esc(r.model)} ({esc(r.category_code)})</span></div>"
        "<dl>"
        f"<div><dt>Customer</dt><dd>{esc(r.customer_name)}</dd></div>"
        f"<div><dt>Phone / e-mail</dt><dd>{phone} / {email}</dd></div>"
        f"<div><dt>Expected back at {esc(r.location_code)}</dt>"
        f"<dd>{esc(local(r.expected_return, r.time_zone))}</dd></div>"
        f'<div><dt>Overdue by</dt><dd class="overdue-by">{esc(span(r.overdue_by))}</dd></div>'
        f'<div><dt>Estimated late fee</dt><dd class="fee">{r.estimated_late_fee:.2f}</dd></div>'
        f"<div><dt>Next booking</dt><dd>{_next_booking(r)}</dd></div>"
        "</dl>"
        f'<div class="contact">{contact}</div>{alert}</div>'
    )


class AlertCard:
    """One late rental on screen: its facts, a note, and the actions the user's role allows.

    Cards live as long as their rental stays late, so a note being typed survives re-reads.
    """

    def __init__(self, view: OverdueView, late: Late) -> None:
        self.late = late
        self.info = pn.pane.HTML(
            card_html(late), sizing_mode="stretch_width", stylesheets=[CARD_CSS]
        )
        buttons: list[pn.widgets.Button] = []
        if view.ctx.can_write:
            log = pn.widgets.Button(
                label="Log contact attempt", color="primary", height=44, css_classes=["log"]
            )
            log.on_click(lambda _e: view.log_contact(self))
            buttons.append(log)
        if view.ctx.can_supervise:
            resolve = pn.widgets.Button(
                label="Resolve", color="success", height=44, css_classes=["resolve"]
            )
            resolve.on_click(lambda _e: view.resolve(self))
            buttons.append(resolve)
        self.note = pn.widgets.TextAreaInput(
            placeholder="Note: who you reached, what was agreed, when the car comes back",
            rows=2,
            max_length=2000,
            sizing_mode="stretch_width",
            css_classes=["note"],
        )
        self.actions = pn.Column(
            self.note, pn.FlexBox(*buttons), sizing_mode="stretch_width", visible=False
        )
        self._can_act = bool(buttons)
        self.layout = pn.Column(
            self.info,
            self.actions,
            sizing_mode="stretch_width",
            stylesheets=[CARD_BOX_CSS],
            css_classes=self._classes(late),
        )
        self.actions.visible = self._can_act and late.alert is not None

    @staticmethod
    def _classes(late: Late) -> list[str]:
        return ["overdue-card", f"block-{late.rental.block_id}", f"level-{min(late.level, 4)}"]

    def note_text(self) -> str:
        """What the user typed, even if the box has not lost focus yet."""
        return (self.note.value_input or self.note.value or "").strip()

    def clear_note(self) -> None:
        self.note.value = ""
        self.note.value_input = ""

    def update(self, late: Late) -> None:
        """Show the rental's latest state; only what changed goes to the browser."""
        self.late = late
        content = card_html(late)
        if content != self.info.object:
            self.info.object = content
        classes = self._classes(late)
        if classes != self.layout.css_classes:
            self.layout.css_classes = classes
        self.actions.visible = self._can_act and late.alert is not None


PUSH_KINDS = ("push_overdue", "push_conflicts", "push_rollbacks")


class NotificationSettings:
    """The signed-in user's own alert preferences: toasts, sound, levels and locations."""

    def __init__(self, ctx: PageContext, locations: list[fleet.Location], top_level: int) -> None:
        self.ctx = ctx
        p = ctx.prefs
        top = max(top_level, p.min_toast_level, p.sound_level)
        levels = {level_words(n): n for n in range(1, top + 1)}
        self.toasts = pn.widgets.Checkbox(
            label="Show a toast for each new escalation",
            value=p.toasts,
            css_classes=["pref-toasts"],
            stylesheets=[PREFS_CSS],
        )
        self.sound = pn.widgets.Checkbox(
            label="Play a sound for critical escalations",
            value=p.sound,
            css_classes=["pref-sound"],
            stylesheets=[PREFS_CSS],
        )
        self.min_toast_level = pn.widgets.Select(
            label="Toasts from",
            options=levels,
            value=p.min_toast_level,
            width=240,
            stylesheets=[TOUCH_CSS],
        )
        self.sound_level = pn.widgets.Select(
            label="Sound from",
            options=levels,
            value=p.sound_level,
            width=240,
            stylesheets=[TOUCH_CSS],
        )
        self.locations = pn.widgets.MultiChoice(
            label="Only these locations (empty: every location)",
            options={f"{loc.code} - {loc.name}": loc.id for loc in locations},
            value=list(p.location_ids),
            sizing_mode="stretch_width",
            css_classes=["pref-locations"],
            stylesheets=[TOUCH_CSS],
        )
        # Web Push to the phones and tablets where the user turned alerts on (counter app).
        self.push = pn.widgets.CheckBoxGroup(
            options={
                "overdue level 2+": "push_overdue",
                "new conflicts": "push_conflicts",
                "status rollbacks": "push_rollbacks",
            },
            value=[k for k in PUSH_KINDS if getattr(p, k)],
            inline=True,
            css_classes=["pref-push"],
            stylesheets=[PREFS_CSS],
        )
        self.save_button = pn.widgets.Button(
            label="Save my notification settings",
            color="primary",
            height=44,
            css_classes=["save-prefs"],
        )
        self.save_button.on_click(lambda _e: self.save())
        self.layout = pn.Card(
            pn.FlexBox(self.toasts, self.sound),
            pn.FlexBox(self.min_toast_level, self.sound_level),
            self.locations,
            pn.pane.Markdown("Push to my devices (turned on per device in the counter app):"),
            self.push,
            self.save_button,
            title="My notification settings",
            collapsed=True,
            sizing_mode="stretch_width",
            css_classes=["notification-settings"],
        )

    def chosen(self) -> preferences.NotificationPrefs:
        """The preferences as the form shows them now."""
        return preferences.NotificationPrefs(
            toasts=self.toasts.value,
            sound=self.sound.value,
            min_toast_level=self.min_toast_level.value,
            sound_level=self.sound_level.value,
            location_ids=list(self.locations.value),
            **{k: k in self.push.value for k in PUSH_KINDS},
        )

    def save(self) -> None:
        """Store the form for this user; the shell uses them for the very next alert."""
        prefs, user_id = self.chosen(), self.ctx.user.id
        # Every role chooses its own alerts; the user id comes from the session, not the page.
        saved = self.ctx.act(
            lambda c: preferences.save(c, user_id=user_id, prefs=prefs),
            done="Notification settings saved",
            allowed=True,
        )
        if saved is not None:
            self.ctx.prefs = saved


class OverdueView(View):
    """Overdue rentals grouped by escalation level, highest first, kept current by push."""

    title = "Overdue and alerts"

    def __init__(self, ctx: PageContext, **params: Any) -> None:
        super().__init__(ctx, **params)
        self._thresholds = overdue.configured_thresholds(ctx.settings)
        locations = ctx.read(fleet.list_locations)
        wanted = ctx.query.get("location", "").strip().upper()
        self._where = pn.widgets.Select(
            label="Due back at",
            options={
                "All locations": ALL_LOCATIONS,
                **{f"{loc.code} - {loc.name}": loc.id for loc in locations},
            },
            value=next((loc.id for loc in locations if loc.code == wanted), ALL_LOCATIONS),
            width=300,
            css_classes=["location-filter"],
            stylesheets=[TOUCH_CSS],
        )
        self._summary = pn.pane.HTML(
            "",
            css_classes=["overdue-summary"],
            margin=(24, 10, 0, 10),
            styles={"font-size": "15px"},
        )
        self._list = pn.Column(sizing_mode="stretch_width", css_classes=["overdue-list"])
        self._cards: dict[int, AlertCard] = {}
        self._shown_vehicles: set[int] = set()
        self._reads = 0
        self._settings = NotificationSettings(ctx, locations, max(TOP_LEVEL, len(self._thresholds)))
        self._where.param.watch(lambda _e: self.reload(), "value")
        self._show(ctx.read(self._read))

    def _read(self, conn: Connection) -> list[Late]:
        late = overdue.list_overdue(
            conn, thresholds=self._thresholds, location_id=self._where.value or None
        )
        alerts = {a["block_id"]: a for a in overdue.open_alerts(conn)}
        return [Late(r, alerts.get(r.block_id)) for r in late]

    def reload(self) -> None:
        """Read the list again now (after a filter change or the user's own action)."""
        self._reads += 1
        self._show(self.ctx.read(self._read))
        self.ctx.fresh()

    async def on_events(self, messages: list[dict[str, Any]]) -> None:
        if not any(
            m["kind"].startswith("overdue_") or m.get("vehicle_id") in self._shown_vehicles
            for m in messages
        ):
            return
        self._reads += 1
        token = self._reads
        late = await self.ctx.aread(self._read)
        if token != self._reads:  # a newer read started meanwhile; it shows fresher data
            return
        self._show(late)
        self.ctx.fresh()

    def _show(self, rows: list[Late]) -> None:
        flagged = [x for x in rows if x.alert]  # the engine lists the longest overdue first
        unflagged = [x for x in rows if not x.alert]
        objects: list[Any] = []
        for level in sorted({x.level for x in flagged}, reverse=True):
            group = [x for x in flagged if x.level == level]
            objects.append(_heading(level_words(level).capitalize(), len(group), f"group-{level}"))
            objects.extend(self._card(x).layout for x in group)
        if unflagged:
            objects.append(_heading("Late, without an open alert", len(unflagged), "group-none"))
            objects.extend(self._card(x).layout for x in unflagged)
        if not rows:
            objects.append(pn.pane.HTML('<p class="nothing">No rentals are overdue.</p>'))
        keep = {x.rental.block_id for x in rows}
        self._cards = {b: c for b, c in self._cards.items() if b in keep}
        self._shown_vehicles = {x.rental.vehicle_id for x in rows}
        self._list.objects = objects
        self._summary.object = _summary(rows)

    def _card(self, late: Late) -> AlertCard:
        card = self._cards.get(late.rental.block_id)
        if card is None:
            card = self._cards[late.rental.block_id] = AlertCard(self, late)
        else:
            card.update(late)
        return card

    def _act(self, card: AlertCard, change: Callable[[Connection], None], **kw: Any) -> None:
        def run(conn: Connection) -> bool:
            change(conn)
            return True  # act() answers None when refused or failed

        if self.ctx.act(run, **kw):
            card.clear_note()
            self.reload()

    def log_contact(self, card: AlertCard) -> None:
        """Note an attempt to reach the customer on the rental's open alert."""
        alert_id, note, user_id = card.late.alert_id, card.note_text(), self.ctx.user.id
        if alert_id is None:
            self.ctx.toast("warning", "this rental has no open alert any more")
            return
        self._act(
            card,
            lambda c: overdue.record_contact(
                c, overdue_id=alert_id, contacted_by=user_id, note=note
            ),
            done=f"Contact attempt logged for {card.late.rental.plate}",
            allowed=self.ctx.can_write,
        )

    def resolve(self, card: AlertCard) -> None:
        """Close the rental's alert with the note saying how it was handled."""
        alert_id, note, user_id = card.late.alert_id, card.note_text(), self.ctx.user.id
        if not note:
            self.ctx.toast(
                "error",
                f"Write a note before resolving {card.late.rental.plate}:"
                " say how it was handled (car returned, rental extended, police informed).",
            )
            return
        if alert_id is None:
            self.ctx.toast("warning", "this rental has no open alert any more")
            return
        self._act(
            card,
            lambda c: overdue.resolve_alert(
                c, overdue_id=alert_id, resolved_by=user_id, notes=note
            ),
            done=f"Alert for {card.late.rental.plate} resolved",
            allowed=self.ctx.can_supervise,
        )

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(
            pn.FlexBox(self._where, self._summary, align_items="flex-start"),
            self._list,
            self._settings.layout,
            sizing_mode="stretch_width",
        )


def _heading(text: str, count: int, css: str) -> pn.pane.HTML:
    return pn.pane.HTML(
        f"<h3>{html.escape(text)} ({count})</h3>",
        css_classes=["overdue-group", css],
        stylesheets=[HEAD_CSS],
        sizing_mode="stretch_width",
    )


def _summary(rows: list[Late]) -> str:
    if not rows:
        return "<b>0 overdue</b>"
    critical = sum(1 for x in rows if x.level >= 3)
    fees = sum(x.rental.estimated_late_fee for x in rows)
    return f"<b>{len(rows)} overdue</b>, {critical} critical; estimated late fees {fees:.2f} in all"
