"""The overdue page: late rentals by level with fee and contact links, notes, and alerts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from urllib.parse import unquote

from sqlalchemy import text

from dashboard.overdue import Late, card_html, contact_links, level_words, local, span
from db import overdue, preferences
from db.overdue import OverdueRental
from tests.dashboard.conftest import sign_in
from tests.db.factories import rental_under_way

BERLIN = "Europe/Berlin"


def _late_rental(engine, api, vehicle, *, late: timedelta, location=None, customer=None):
    """A rental picked up hours ago and due back `late` ago, committed for the server."""
    due = datetime.now(UTC) - late
    with engine.begin() as c:
        return rental_under_way(
            c,
            api.world,
            vehicle,
            start=due - timedelta(hours=4),
            end=due,
            location=location,
            customer=customer,
        )


def _refresh(engine, *, ahead: timedelta = timedelta(0)):
    """Run the overdue check as the scheduler would, on a clock `ahead` of now."""
    with engine.begin() as c:
        return overdue.refresh_overdue(c, now=datetime.now(UTC) + ahead)


def _alert(engine, block_id: int):
    with engine.connect() as c:
        return (
            c.execute(
                text("SELECT * FROM overdue_vehicles WHERE block_id = :b ORDER BY id DESC"),
                {"b": block_id},
            )
            .mappings()
            .first()
        )


def _card(page, block_id: int):
    card = page.locator(f".overdue-card.block-{block_id}")
    # The card's box arrives before its content is drawn: wait for the content.
    card.locator(".card").wait_for(timeout=10_000)
    return card


def _rental(**extra) -> OverdueRental:
    base = dict(
        block_id=1,
        vehicle_id=1,
        plate="B AP 101",
        make="VW",
        model="Golf",
        category_code="ECON",
        customer_id=1,
        customer_name="Zoë <Bob> & Co",
        customer_phone="+49 (30) 123-45#6",
        customer_email="o'brien+x@example.com",
        location_id=1,
        location_code="BER1",
        time_zone=BERLIN,
        expected_return=datetime(2026, 11, 25, 13, 0, tzinfo=UTC),
        overdue_by=timedelta(hours=3, minutes=5),
        escalation_level=2,
        estimated_late_fee=Decimal("48.00"),
        next_block_id=None,
        next_block_start=None,
    )
    return OverdueRental(**{**base, **extra})


def test_contact_links_are_percent_encoded_and_the_card_escapes_customer_text():
    r = _rental()
    links = contact_links(r)

    assert links["tel"] == "tel:+493012345%236"  # separators dropped, '#' encoded
    assert links["sms"].startswith("sms:+493012345%236?body=Hello%20Zo%C3%AB%2C%20")
    assert " " not in links["sms"] and "&" not in links["sms"]
    assert "B AP 101 was due back at BER1 on Wed 25 Nov 14:00 CET" in unquote(links["sms"])
    address, query = links["mailto"].split("?")
    assert address == "mailto:o%27brien+x@example.com"
    subject, body = query.split("&")
    assert subject == "subject=Your%20rental%20B%20AP%20101%20is%20overdue"
    assert unquote(body).startswith("body=Hello Zoë, your rental car B AP 101")

    shown = card_html(Late(r, None))
    assert "Zoë &lt;Bob&gt; &amp; Co" in shown and "<Bob>" not in shown
    assert "subject=Your%20rental%20B%20AP%20101%20is%20overdue&amp;body=" in shown
    assert "level 2 - escalated" in shown and "3 h 05 min" in shown and "48.00" in shown
    assert "No open alert" in shown
    # Without contact details there is nothing to tap, and the card says so.
    bare = _rental(customer_phone=None, customer_email=None)
    assert contact_links(bare) == {}
    assert "no phone or e-mail on file" in card_html(Late(bare, None))


def test_the_level_an_alert_was_escalated_to_wins_over_a_lower_recomputed_one():
    r = _rental(escalation_level=1)
    assert Late(r, None).level == 1
    assert Late(r, {"id": 5, "escalation_level": 3}).level == 3
    assert Late(_rental(escalation_level=4), {"id": 5, "escalation_level": 3}).level == 4
    assert level_words(3) == "level 3 - critical"
    assert level_words(6) == "level 6 - critical, a day or more"
    assert span(timedelta(days=1, hours=2, minutes=3)) == "1 d 2 h 03 min"
    assert span(timedelta(minutes=59)) == "59 min"


def test_agent_sees_late_rentals_by_level_with_fee_and_contact_links(browser, api, engine):
    w = api.world
    near = _late_rental(engine, api, api.vehicles[0], late=timedelta(minutes=90))
    far = _late_rental(
        engine,
        api,
        api.vehicles[1],
        late=timedelta(hours=3),
        location=w.muc,
        customer=w.bob,
    )
    _refresh(engine)
    context, page = sign_in(browser, api, "agent", "/overdue")
    try:
        card = _card(page, near.id)
        shown = card.locator(".card").inner_text()
        assert "level 1 - late" in shown and "B AP 101" in shown and "Alice Schmidt" in shown
        # 90 min late on ECON (12 an hour, 30 min grace): two started hours.
        assert card.locator(".fee").inner_text() == "24.00"
        assert local(near.end, BERLIN) in shown  # the lot's time, not UTC
        assert card.locator("a.tel").get_attribute("href") == "tel:+49301234567"
        sms = card.locator("a.sms").get_attribute("href")
        assert sms.startswith("sms:+49301234567?body=Hello%20Alice%2C%20your%20rental%20car")
        assert (
            card.locator("a.mailto")
            .get_attribute("href")
            .startswith(
                "mailto:alice@example.com?subject=Your%20rental%20B%20AP%20101%20is%20overdue&body="
            )
        )
        # Highest level first: the MUC car, three hours late, heads the list.
        order = page.locator(".overdue-card").evaluate_all("els => els.map(e => e.className)")
        assert [f"block-{far.id}" in c for c in order] == [True, False]
        assert "level 2 - escalated" in _card(page, far.id).locator(".badge").inner_text()

        # Agents chase customers but do not close alerts.
        assert card.locator("button", has_text="Resolve").count() == 0
        card.locator("textarea").fill("left a voicemail")
        card.locator("button", has_text="Log contact attempt").click()
        page.locator(".toast", has_text="Contact attempt logged for B AP 101").wait_for(
            timeout=5_000
        )
        alert = _alert(engine, near.id)
        assert alert["last_contact_attempt"] is not None and alert["resolved_at"] is None
        assert alert["resolution_notes"] == "left a voicemail"
        card.locator(".notes", has_text="left a voicemail").wait_for(timeout=5_000)

        # The location filter keeps only cars due back at that lot.
        page.locator(".location-filter select").select_option(label="BER1 - Berlin Airport")
        page.locator(f".overdue-card.block-{far.id}").wait_for(state="detached", timeout=5_000)
        assert page.locator(".overdue-card").count() == 1
    finally:
        context.close()


def test_manager_resolves_an_alert_only_with_a_note(browser, api, engine):
    late = _late_rental(engine, api, api.vehicles[0], late=timedelta(minutes=90))
    _refresh(engine)
    context, page = sign_in(browser, api, "manager", "/overdue")
    try:
        card = _card(page, late.id)
        card.locator("button", has_text="Resolve").click()
        page.locator(".toast.error", has_text="Write a note before resolving B AP 101").wait_for(
            timeout=5_000
        )
        assert _alert(engine, late.id)["resolved_at"] is None

        card.locator("textarea").fill("Customer called: back by 18:00, fee agreed")
        card.locator("button", has_text="Resolve").click()
        page.locator(".toast.success", has_text="Alert for B AP 101 resolved").wait_for(
            timeout=5_000
        )
        alert = _alert(engine, late.id)
        assert alert["resolved_at"] is not None
        assert alert["resolved_by"] == api.users["manager"].id
        assert alert["resolution_notes"] == "Customer called: back by 18:00, fee agreed"
        # Still late, so still listed, but with nothing left to resolve.
        card.locator(".no-alert").wait_for(timeout=5_000)
        assert card.locator("button", has_text="Resolve").is_hidden()
    finally:
        context.close()


def test_analyst_reads_the_list_without_any_action(browser, api, engine):
    late = _late_rental(engine, api, api.vehicles[0], late=timedelta(minutes=90))
    _refresh(engine)
    context, page = sign_in(browser, api, "analyst", "/overdue")
    try:
        card = _card(page, late.id)
        assert card.locator(".badge").inner_text() == "level 1 - late"
        assert card.locator("a.tel").count() == 1
        assert card.locator("button").count() == 0
        assert card.locator("textarea").is_hidden()
    finally:
        context.close()


def test_escalation_to_critical_toasts_sounds_and_updates_the_open_page(browser, api, engine):
    late = _late_rental(engine, api, api.vehicles[0], late=timedelta(minutes=90))
    _refresh(engine)
    context, page = sign_in(browser, api, "agent", "/overdue")
    try:
        card = _card(page, late.id)
        assert card.locator(".badge").inner_text() == "level 1 - late"
        assert page.locator(".topbar").get_attribute("data-sounds") is None

        _refresh(engine, ahead=timedelta(hours=7))  # 8.5 h late: level 3

        toast = page.locator(".toast", has_text="Overdue level 3: B AP 101 (Alice Schmidt)")
        toast.wait_for(timeout=5_000)
        assert page.locator(".topbar").get_attribute("data-sounds") == "1"
        card.locator(".badge", has_text="level 3 - critical").wait_for(timeout=5_000)
    finally:
        context.close()


def test_with_sound_switched_off_an_escalation_toasts_in_silence(browser, api, engine):
    late = _late_rental(engine, api, api.vehicles[0], late=timedelta(minutes=90))
    _refresh(engine)
    context, page = sign_in(browser, api, "agent", "/overdue")
    try:
        _card(page, late.id)
        settings = page.locator(".notification-settings")
        settings.get_by_role("button", name="My notification settings", exact=True).click()
        sound = page.locator(".pref-sound input[type=checkbox]")
        assert sound.is_checked()
        sound.uncheck()
        # Pushes to the counter app are chosen here too.
        rollbacks = settings.locator(".pref-push label", has_text="status rollbacks")
        assert rollbacks.locator("input").is_checked()
        rollbacks.locator("input").uncheck()
        page.locator(".save-prefs button").click()
        page.locator(".toast.success", has_text="Notification settings saved").wait_for(
            timeout=5_000
        )
        with engine.connect() as c:
            saved = preferences.get(c, user_id=api.users["agent"].id)
        assert saved.sound is False and saved.toasts is True
        assert (saved.push_overdue, saved.push_conflicts, saved.push_rollbacks) == (
            True,
            True,
            False,
        )

        _refresh(engine, ahead=timedelta(hours=7))

        page.locator(".toast", has_text="Overdue level 3: B AP 101").wait_for(timeout=5_000)
        # The sound and its toast travel in one message: had it sounded, it would count now.
        assert page.locator(".topbar").get_attribute("data-sounds") is None
    finally:
        context.close()
