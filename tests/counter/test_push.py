"""Push alerts in the counter app: turned on in Chromium, sent by the pipeline, shown by the worker.

Chromium can only subscribe at Google's push service (FCM), which this closed network cannot
reach, so the page's PushManager.subscribe is replaced by one handing out a subscription at
a local stand-in push service, with keys the test holds (as the browser would). Everything
else is real: the app's PUT, the outbox, encryption and VAPID, the stand-in receiving the
encrypted message, and the service worker showing what the test decrypted from it (given
to the worker through Chromium's own push delivery, DevTools' ServiceWorker domain).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from api.app import create_app
from db import audit, preferences, status
from fleet import vapid
from pipeline.notify import DeliverySummary, deliver_notifications
from tests.api.conftest import PASSWORD, ServerThread, free_port, server_settings
from tests.counter.conftest import PHONE, TABLET, open_app
from tests.pipeline.sinks import PushDevice, WebhookSink, unb64url, vapid_claims

# What PushManager would give: a subscription at the stand-in, kept across reloads as the
# browser keeps its own.
FAKE_PUSH_MANAGER = """
(() => {
  const fake = %s;
  const KEY = "test.push.subscribed";
  const make = (key) => ({
    endpoint: fake.endpoint, expirationTime: null,
    options: {userVisibleOnly: true, applicationServerKey: key},
    toJSON() { return {endpoint: fake.endpoint, expirationTime: null, keys: fake.keys}; },
    async unsubscribe() { localStorage.removeItem(KEY); return true; },
  });
  PushManager.prototype.subscribe = async function (options) {
    const key = new Uint8Array(options.applicationServerKey);
    localStorage.setItem(KEY, JSON.stringify({visible: options.userVisibleOnly, key: [...key]}));
    return make(key.buffer);
  };
  PushManager.prototype.getSubscription = async function () {
    const saved = JSON.parse(localStorage.getItem(KEY) || "null");
    return saved ? make(new Uint8Array(saved.key).buffer) : null;
  };
})();
"""


SPY_ON_NOTIFICATIONS = """
self.shownNotifications = [];
const show = ServiceWorkerRegistration.prototype.showNotification;
ServiceWorkerRegistration.prototype.showNotification = function (title, options) {
  const call = {title, body: options.body, tag: options.tag, url: options.data.url,
                requireInteraction: options.requireInteraction, outcome: null};
  self.shownNotifications.push(call);
  const shown = show.call(this, title, options);
  shown.then(() => { call.outcome = "shown"; }, (e) => { call.outcome = `refused: ${e}`; });
  return shown;
};
0
"""


@pytest.fixture(scope="module")
def push_service() -> Iterator[WebhookSink]:
    sink = WebhookSink(status=201).start()
    yield sink
    sink.stop()


@pytest.fixture(scope="module")
def push_server(database_url, tmp_path_factory, push_service) -> Iterator[ServerThread]:
    """A server that accepts subscriptions at the stand-in (the shared one knows only FCM & co)."""
    settings = server_settings(
        database_url, tmp_path_factory.mktemp("push-server"), push_services=[push_service.origin]
    )
    server = ServerThread(create_app(settings), free_port()).start()
    server.settings = settings
    yield server
    server.stop()


@pytest.fixture
def outbox_cleanup(engine) -> Iterator[None]:
    yield
    with engine.begin() as c:
        c.execute(text("TRUNCATE notification_outbox, pipeline_state"))


def _granting(device: PushDevice, origin: str):
    def prepare(context) -> None:
        context.grant_permissions(["notifications"], origin=origin)
        context.add_init_script(
            FAKE_PUSH_MANAGER % json.dumps({"endpoint": device.endpoint, "keys": device.keys})
        )

    return prepare


def _registration_id(cdp) -> str:
    seen: list[str] = []
    cdp.on(
        "ServiceWorker.workerRegistrationUpdated",
        lambda e: seen.extend(
            r["registrationId"]
            for r in e["registrations"]
            if r["scopeURL"].endswith("/counter/") and not r["isDeleted"]
        ),
    )
    cdp.send("ServiceWorker.enable")
    deadline = time.monotonic() + 5
    while not seen and time.monotonic() < deadline:
        cdp.send("Runtime.evaluate", {"expression": "1"})  # let the event arrive
    assert seen, "the counter app's service worker is not registered"
    return seen[-1]


@pytest.mark.parametrize("size", [PHONE, TABLET], ids=["phone", "tablet"])
def test_turn_alerts_on_and_a_pushed_rollback_is_shown_by_the_worker(
    browser, api, engine, push_service, push_server, outbox_cleanup, size
):
    car = api.vehicles[0]
    phone = PushDevice(endpoint=f"{push_service.origin}/push/{size['viewport']['width']}")
    server = dataclasses.replace(api, url=push_server.url)
    push_service.requests.clear()
    context, page = open_app(browser, server, size=size, prepare=_granting(phone, push_server.url))
    try:
        page.get_by_role("link", name="Alerts").click()
        toggle = page.locator("#push-toggle", has_text="Turn alerts on for this device")
        toggle.click()
        page.locator(".push-state", has_text="Alerts are on").wait_for(timeout=10_000)
        page.locator(".devices li", has_text="(this one)").wait_for(timeout=5_000)
        # Subscribed with the server's own key, for visible notifications only.
        asked = json.loads(page.evaluate("localStorage.getItem('test.push.subscribed')"))
        key = vapid.application_server_key(push_server.settings)
        assert asked["visible"] is True
        assert bytes(asked["key"]) == unb64url(key)
        with engine.connect() as c:
            [(user_id, endpoint, keys)] = c.execute(
                text(
                    "SELECT user_id, endpoint, json_build_array(p256dh, auth)"
                    " FROM push_subscriptions"
                )
            ).all()
        assert (user_id, endpoint) == (api.users["agent"].id, phone.endpoint)
        assert keys == [phone.keys["p256dh"], phone.keys["auth"]]

        # Conflicts off; rollbacks stay on.
        page.get_by_label("New conflicts on a car at my lot").uncheck()
        page.locator(".toast", has_text="New conflicts on a car at my lot: off").wait_for()
        with engine.connect() as c:
            prefs = preferences.get(c, user_id=api.users["agent"].id)
        assert (prefs.push_conflicts, prefs.push_rollbacks) == (False, True)

        # Someone sets the agent's car wrongly, the manager rolls it back: the pipeline pushes.
        with engine.begin() as c:
            wrong = status.change_status(
                c,
                vehicle_id=car.id,
                new_status="maintenance",
                changed_by=api.users["manager"].id,
                reason="wrong car",
            )
        with engine.begin() as c:
            audit.rollback_change(
                c, log_id=wrong.log_id, rolled_back_by=api.users["manager"].id, reason="oops"
            )
        summary = deliver_notifications(engine, push_server.settings)
        assert summary == DeliverySummary(enqueued=1, sent=1)
        [request] = push_service.requests
        assert vapid_claims(request, server_key=key)["aud"] == push_service.origin
        message = phone.decrypt(request.body)
        assert message["title"] == (
            f"Status rolled back: {car.plate} maintenance → available at BER1 by Maria Manager"
        )
        assert message["url"] == f"/counter/#/vehicle/{car.id}"

        # The browser hands what it decrypted to the worker, which shows it. Headless
        # Chromium sometimes closes a shown notification at once (getNotifications() then
        # lists nothing), so the worker's showNotification calls are recorded on the way
        # through, with whether the browser accepted each.
        [worker] = context.service_workers
        worker.evaluate(SPY_ON_NOTIFICATIONS)
        cdp = context.new_cdp_session(page)
        cdp.send(
            "ServiceWorker.deliverPushMessage",
            {
                "origin": push_server.url,
                "registrationId": _registration_id(cdp),
                "data": json.dumps(message),
            },
        )
        shown, deadline = [], time.monotonic() + 10
        while not any(s["outcome"] for s in shown) and time.monotonic() < deadline:
            shown = worker.evaluate("self.shownNotifications")
            time.sleep(0.05)
        assert shown == [
            {
                "title": message["title"],
                "body": f"Reason: rollback of #{wrong.log_id}: oops",
                "tag": message["tag"],
                "url": f"/counter/#/vehicle/{car.id}",
                "requireInteraction": False,  # a rollback; overdue level 3+ stays on screen
                "outcome": "shown",
            }
        ]

        # Off again: the server forgets the device and the browser its subscription.
        page.reload()
        page.locator("#push-toggle", has_text="Turn alerts off on this device").click()
        page.locator(".push-state", has_text="Alerts are off on this device").wait_for(
            timeout=10_000
        )
        with engine.connect() as c:
            assert c.execute(text("SELECT count(*) FROM push_subscriptions")).scalar_one() == 0
    finally:
        context.close()


def test_signing_out_stops_the_users_alerts_and_the_next_user_gets_the_device(
    browser, api, engine, push_service, push_server, outbox_cleanup
):
    tablet = PushDevice(endpoint=f"{push_service.origin}/push/shared")
    server = dataclasses.replace(api, url=push_server.url)
    prepare = _granting(tablet, push_server.url)
    context, page = open_app(browser, server, prepare=prepare)
    try:
        page.get_by_role("link", name="Alerts").click()
        page.locator("#push-toggle", has_text="Turn alerts on").click()
        page.locator(".push-state", has_text="Alerts are on").wait_for(timeout=10_000)
        page.get_by_role("button", name="Sign out").click()
        page.locator("form.login").wait_for(timeout=10_000)

        def owners() -> list[int]:
            with engine.connect() as c:
                return list(c.execute(text("SELECT user_id FROM push_subscriptions")).scalars())

        assert owners() == []
        page.fill("#username", api.users["manager"].username)
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        # Back on the alerts screen she left: the device's alerts are now the manager's.
        page.locator(".push-state", has_text="Alerts are on").wait_for(timeout=15_000)
        deadline = time.monotonic() + 10
        while owners() != [api.users["manager"].id] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert owners() == [api.users["manager"].id]
    finally:
        context.close()
