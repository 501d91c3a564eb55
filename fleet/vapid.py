"""The server's VAPID key: it signs every Web Push, and browsers subscribe to its public half.

Browsers tie a subscription to the key the app subscribed with, so the key must stay the
same across restarts: FLEET_VAPID_PRIVATE_KEY, or one generated once and kept owner-only
beside the embedded database (like the session signing key).
"""

from __future__ import annotations

import base64
import os
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid02

from db.errors import InvalidInput
from fleet.settings import Settings

KEY_FILE = "vapid_private_key"


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _stored_key(settings: Settings) -> str:
    path = Path(settings.data_dir) / KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        raw = ec.generate_private_key(ec.SECP256R1()).private_numbers().private_value
        # Written whole to a temporary file, then linked into place: link fails if another
        # process won the race, and nobody ever reads a half-written key.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".vapid-")
        try:
            with os.fdopen(fd, "w") as out:
                out.write(_b64url(raw.to_bytes(32, "big")))
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    return path.read_text().strip()


def vapid(settings: Settings) -> Vapid02:
    """Return the signer for Web Push requests."""
    key = (settings.vapid_private_key or _stored_key(settings)).strip()
    try:
        if "-----BEGIN" in key:
            signer = Vapid02.from_pem(key.encode())
        else:
            raw = base64.urlsafe_b64decode(key + "=" * (-len(key) % 4))
            if len(raw) != 32:
                raise ValueError(f"{len(raw)} bytes, not 32")
            signer = Vapid02.from_raw(key.encode())
        if not isinstance(signer.private_key.curve, ec.SECP256R1):
            raise ValueError("not on the P-256 curve")
        return signer
    except Exception as exc:  # py_vapid and base64 raise several kinds for a malformed key
        raise InvalidInput(
            f"FLEET_VAPID_PRIVATE_KEY is not a P-256 private key ({exc})",
            field="vapid_private_key",
            hint="give the raw 32-byte key as base64url or a PEM; unset it to have one"
            " generated in FLEET_DATA_DIR",
        ) from None


def application_server_key(settings: Settings) -> str:
    """Return the public key browsers pass to PushManager.subscribe (base64url, 65 bytes)."""
    public = vapid(settings).public_key
    return _b64url(
        public.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
    )


def subject(settings: Settings) -> str:
    """Return the contact the push services see in each VAPID claim."""
    if settings.vapid_subject:
        return settings.vapid_subject
    return f"mailto:{settings.smtp_from}"
