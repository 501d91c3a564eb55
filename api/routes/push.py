"""Web Push: the server's public key, each user's devices, and which alerts they push.

Every signed-in user may receive pushes for the alerts at their locations; a subscription
belongs to the caller and only the caller can see or remove it.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from api.deps import settings, transaction
from api.schemas import Input
from api.schemas_booking import STORABLE, Id
from api.security import Principal, reader
from db import preferences, push
from db.preferences import NotificationPrefs
from fleet import vapid

router = APIRouter(tags=["push"])

DeviceId = Annotated[
    str,
    Path(
        pattern=push.DEVICE_ID.pattern,
        description="The app's own id for this device (8-64 letters, digits, '-' or '_').",
    ),
]


class PushKey(BaseModel):
    application_server_key: str = Field(
        description="The VAPID public key (base64url) to pass to PushManager.subscribe."
    )


class SubscriptionKeys(Input):
    p256dh: Annotated[str, Field(min_length=1, max_length=200), STORABLE]
    auth: Annotated[str, Field(min_length=1, max_length=100), STORABLE]


class SubscriptionIn(Input):
    """PushSubscription.toJSON() as the browser gives it, plus a name for the device."""

    endpoint: Annotated[str, Field(min_length=1, max_length=push.MAX_ENDPOINT), STORABLE]
    keys: SubscriptionKeys
    expirationTime: int | None = Field(default=None, description="Ignored; browsers send it.")
    device_label: Annotated[str, Field(max_length=200), STORABLE] = ""


class Device(BaseModel):
    """One of the caller's devices that receive pushes (keys are never returned)."""

    device_id: str
    device_label: str
    push_service: str
    created_at: str
    updated_at: str
    last_sent_at: str | None


class PreferencesIn(Input):
    """Any of the caller's notification preferences; fields left out stay as they are."""

    toasts: bool | None = None
    sound: bool | None = None
    min_toast_level: int | None = Field(default=None, ge=1, le=9)
    sound_level: int | None = Field(default=None, ge=1, le=9)
    location_ids: list[Id] | None = Field(default=None, max_length=500)
    push_overdue: bool | None = None
    push_conflicts: bool | None = None
    push_rollbacks: bool | None = None


def _device(sub: push.Subscription) -> Device:
    return Device(
        device_id=sub.device_id,
        device_label=sub.device_label,
        push_service=sub.push_service,
        created_at=sub.created_at.isoformat(),
        updated_at=sub.updated_at.isoformat(),
        last_sent_at=sub.last_sent_at.isoformat() if sub.last_sent_at else None,
    )


@router.get(
    "/api/push/key",
    response_model=PushKey,
    summary="The key browsers subscribe with (applicationServerKey)",
)
def key(request: Request, principal: Principal = Depends(reader)) -> PushKey:
    return PushKey(application_server_key=vapid.application_server_key(settings(request)))


@router.get(
    "/api/push/subscriptions",
    response_model=list[Device],
    summary="Your devices that receive pushes, most recently subscribed first",
)
def list_devices(request: Request, principal: Principal = Depends(reader)) -> list[Device]:
    with transaction(request, read_only=True) as conn:
        return [_device(s) for s in push.list_for_user(conn, user_id=principal.id)]


@router.put(
    "/api/push/subscriptions/{device_id}",
    response_model=Device,
    summary="Receive pushes on this device (replaces its earlier subscription)",
    responses={422: {"description": "Not a browser push subscription (the body names why)"}},
)
def subscribe(
    request: Request,
    device_id: DeviceId,
    body: SubscriptionIn,
    principal: Principal = Depends(reader),
) -> Device:
    with transaction(request) as conn:
        sub = push.subscribe(
            conn,
            user_id=principal.id,
            device_id=device_id,
            endpoint=body.endpoint,
            p256dh=body.keys.p256dh,
            auth=body.keys.auth,
            device_label=body.device_label,
            services=settings(request).push_services,
        )
    return _device(sub)


@router.delete(
    "/api/push/subscriptions/{device_id}",
    status_code=204,
    response_class=Response,
    summary="Stop pushes to one of your devices",
    responses={404: {"description": "You receive no pushes on that device"}},
)
def unsubscribe(
    request: Request, device_id: DeviceId, principal: Principal = Depends(reader)
) -> Response:
    with transaction(request) as conn:
        push.unsubscribe(conn, user_id=principal.id, device_id=device_id)
    return Response(status_code=204)


@router.get(
    "/api/preferences",
    response_model=NotificationPrefs,
    summary="Your notification preferences (toasts, sound, locations, pushes)",
)
def get_preferences(request: Request, principal: Principal = Depends(reader)) -> NotificationPrefs:
    with transaction(request, read_only=True) as conn:
        return preferences.get(conn, user_id=principal.id)


@router.patch(
    "/api/preferences",
    response_model=NotificationPrefs,
    summary="Change some of your notification preferences",
    responses={422: {"description": "A value out of range or an unknown location"}},
)
def change_preferences(
    request: Request, body: PreferencesIn, principal: Principal = Depends(reader)
) -> NotificationPrefs:
    with transaction(request) as conn:
        current = preferences.get(conn, user_id=principal.id)
        changed = current.model_copy(update=body.model_dump(exclude_none=True))
        return preferences.save(conn, user_id=principal.id, prefs=changed)
