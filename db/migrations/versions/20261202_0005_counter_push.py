"""Counter app: Web Push subscriptions per user and device, and which alerts each user pushes.

Why: staff walking the lot with a phone must hear about an overdue car, a new conflict or a
rolled-back status without the dashboard open. A browser's push subscription (its endpoint
and keys) belongs to one device; the user signed in there owns it, and a device moves to
whoever signs in next. The push service says when a subscription is gone, and then it is
deleted. Pushes go through notification_outbox (its channel 'push' exists since 0003).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

UPGRADE = r"""
CREATE TABLE push_subscriptions (
    id             bigserial PRIMARY KEY,
    user_id        bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    -- The app's own id for the device (kept in its IndexedDB), so re-subscribing replaces.
    device_id      text NOT NULL CHECK (device_id ~ '^[A-Za-z0-9_-]{8,64}$'),
    endpoint       text NOT NULL UNIQUE CHECK (length(endpoint) <= 2000),
    -- The browser's P-256 public key and auth secret, base64url as the browser gives them.
    p256dh         text NOT NULL CHECK (length(p256dh) BETWEEN 80 AND 100),
    auth           text NOT NULL CHECK (length(auth) BETWEEN 16 AND 32),
    device_label   text NOT NULL DEFAULT '' CHECK (length(device_label) <= 200),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    last_sent_at   timestamptz,
    UNIQUE (user_id, device_id)
);

-- Which alerts reach the user's devices. Where: the user's chosen locations, else their
-- home location, else every location (db/push.py).
ALTER TABLE user_preferences
    ADD COLUMN push_overdue   boolean NOT NULL DEFAULT true,
    ADD COLUMN push_conflicts boolean NOT NULL DEFAULT true,
    ADD COLUMN push_rollbacks boolean NOT NULL DEFAULT true;
"""

DOWNGRADE = r"""
ALTER TABLE user_preferences
    DROP COLUMN push_overdue, DROP COLUMN push_conflicts, DROP COLUMN push_rollbacks;
DROP TABLE push_subscriptions;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
