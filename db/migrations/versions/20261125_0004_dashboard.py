"""Dashboard: each user's notification preferences.

Why: a location manager watching a wall screen wants a toast for every escalation at their
lots and a sound only for the critical ones; an agent at a busy counter may want neither.
The preferences follow the person, not the browser, so they live with the user.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

UPGRADE = r"""
CREATE TABLE user_preferences (
    user_id          bigint PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    toasts           boolean NOT NULL DEFAULT true,
    sound            boolean NOT NULL DEFAULT true,
    -- Toasts for escalations at or above this level; the sound for this level and up.
    min_toast_level  integer NOT NULL DEFAULT 1 CHECK (min_toast_level BETWEEN 1 AND 9),
    sound_level      integer NOT NULL DEFAULT 3 CHECK (sound_level BETWEEN 1 AND 9),
    -- Empty: every location.
    location_ids     bigint[] NOT NULL DEFAULT '{}',
    updated_at       timestamptz NOT NULL DEFAULT now()
);
"""

DOWNGRADE = r"""
DROP TABLE user_preferences;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
